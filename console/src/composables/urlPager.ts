// The pager of a list whose filters, page and page size are kept in the URL query (usePagedList,
// a report's paged list in useReport): a search or a reset goes back to page 1, a page or a page
// size goes into the URL, and the route's watcher loads it; a query the URL already holds (the
// watcher would not run) is loaded at once.
import type { Ref } from 'vue'
import type { RouteLocationNormalizedLoaded, Router } from 'vue-router'

import { sameQuery, toQuery, type Filters } from './query'

export interface UrlPaging {
  route: RouteLocationNormalizedLoaded
  router: Router
  model: Filters
  defaults: Filters
  page: Ref<number>
  perPage: Ref<number>
  /** The page size left out of the URL (the default one). */
  defaultPerPage: number
  load: () => Promise<void>
}

/** The pager's actions: each puts the filters, page and page size in the URL (or loads them). */
export function urlPager({ route, router, model, defaults, page, perPage, defaultPerPage, load }: UrlPaging) {
  function go(): void {
    const query = toQuery(model, defaults, page.value, perPage.value, defaultPerPage)
    if (sameQuery(query, route.query)) void load()
    else void router.replace({ query })
  }

  return {
    search(): void {
      page.value = 1
      go()
    },
    reset(): void {
      Object.assign(model, defaults)
      page.value = 1
      go()
    },
    setPage(n: number): void {
      page.value = n
      go()
    },
    setPerPage(n: number): void {
      perPage.value = n
      page.value = 1
      go()
    },
  }
}
