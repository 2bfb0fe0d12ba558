// The reps a field list (plans, check-ins, reviews) can be filtered by: GET /field/reps, the
// API's answer for the user (itself, the reps it supervises, with field.read its subtree's reps
// who visit stores), searched by name as typed. The filter took the reps of the list's newest 200
// rows: a quiet rep behind a busy one's 200 check-ins could not be picked (a probe).
import { api } from '@/api/client'
import { unwrap } from '@/api/errors'

export interface Rep {
  id: number
  name: string
}

export const REPS_SHOWN = 50 // a search narrows it

/** The reps whose name or username holds ``typed`` (all for none), by name. */
export async function findReps(typed: string): Promise<Rep[]> {
  const query = { q: typed.trim() || undefined, per_page: REPS_SHOWN }
  const page = await unwrap(await api.GET('/field/reps', { params: { query } }))
  return page.items.map((r) => ({ id: r.id, name: r.name }))
}

/** The options of a filter: the reps found, and the rep chosen (``value``, its id as text) when
 * not among them, under the name it was known by (``#id`` when never seen). */
export function repOptions(found: readonly Rep[], value: string, known: ReadonlyMap<number, string>): Rep[] {
  const id = Number(value)
  if (value === '' || !Number.isInteger(id) || found.some((r) => r.id === id)) return [...found]
  return [{ id, name: known.get(id) ?? `#${id}` }, ...found]
}
