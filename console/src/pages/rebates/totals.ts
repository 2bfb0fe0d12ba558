// The count and amount of every rebate claim matching the filters in the URL (GET /rebates asked
// for one row: its answer carries both), shown above the claims list. Only the latest query's
// answer is shown (an earlier one arriving late is dropped, as in usePagedList); a failure (the
// list shows it) or no network shows none, not the totals of other filters; another page or page
// size of the same filters asks nothing.
import { ref, watch } from 'vue'
import { useRoute } from 'vue-router'

import { apiBase } from '@/api/base'
import { queryString } from '@/api/client'
import type { Schemas } from '@/api/types'
import { apiQuery, fromQuery, type Filters } from '@/composables/query'
import { useAuthStore } from '@/stores/auth'

export interface ClaimTotals {
  total: number
  amount: number
}

/** The totals of the claims the URL's filters (`filters`: their defaults) match, on `routeName`. */
export function useClaimTotals(filters: Filters, routeName: string) {
  const route = useRoute()
  const auth = useAuthStore()
  const totals = ref<ClaimTotals | null>(null)
  let latest = 0 // the number of the last request begun: only its answer is applied
  let asked: string | null = null // the query of the totals shown or asked for

  async function load(query: string): Promise<void> {
    const mine = ++latest
    let answer: ClaimTotals | null = null
    try {
      const response = await auth.send(new Request(`${apiBase()}/rebates${query}`))
      if (response.ok) {
        const page = (await response.json()) as Schemas['ClaimsPage']
        answer = { total: page.total, amount: page.amount }
      }
    } catch {
      // offline, or not JSON: no totals (the list shows the failure)
    }
    if (mine !== latest) return // a later query was asked meanwhile: its answer counts
    totals.value = answer
    if (answer === null) asked = null // asked again at the next change, the page's too
  }

  watch(
    () => route.query,
    (query) => {
      if (route.name !== routeName) return // leaving the page
      const wanted = queryString({ ...apiQuery(fromQuery(query, filters, 1).filters), per_page: 1 })
      if (wanted === asked) return // only the page or the page size changed
      asked = wanted
      void load(wanted)
    },
    { immediate: true },
  )

  return totals
}
