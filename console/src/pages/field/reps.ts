// The reps a field list can be filtered by: those of the records the user sees (a supervisor may
// not read the user directory), collected from the first 200 rows of the list's endpoint.
import { onMounted, shallowRef } from 'vue'

import { apiBase } from '@/api/base'
import { useAuthStore } from '@/stores/auth'

export interface Rep {
  id: number
  name: string
}

/** Distinct reps of rows, by name. */
export function distinctReps(rows: readonly { rep_id: number; rep: string }[]): Rep[] {
  const seen = new Map<number, string>()
  for (const row of rows) if (!seen.has(row.rep_id)) seen.set(row.rep_id, row.rep)
  return [...seen].map(([id, name]) => ({ id, name })).sort((a, b) => a.name.localeCompare(b.name))
}

export function useReps(path: '/field/plans' | '/field/checkins' | '/field/reviews') {
  const reps = shallowRef<Rep[]>([])
  onMounted(async () => {
    try {
      const response = await useAuthStore().send(new Request(`${apiBase()}${path}?per_page=200`))
      if (response.ok) reps.value = distinctReps(((await response.json()) as { items: { rep_id: number; rep: string }[] }).items)
    } catch {
      reps.value = []
    }
  })
  return reps
}
