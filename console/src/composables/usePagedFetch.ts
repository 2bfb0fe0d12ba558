// A server-paged list that is not the page's own (a drawer's tab, a dialog's table): the same
// Page answer as usePagedList, its page kept in memory instead of the URL (two lists on one
// page would fight over ?page=). Only the latest load's answer is shown.
import { ref, shallowRef } from 'vue'

import type { Page } from '@/api/types'
import { notifyError } from './notify'

export function usePagedFetch<T>(fetchPage: (page: number, perPage: number) => Promise<Page<T>>, defaultPerPage = 20) {
  const rows = shallowRef<T[]>([])
  const total = ref(0)
  const page = ref(1)
  const perPage = ref(defaultPerPage)
  const loading = ref(false)
  let latest = 0

  /** Fetch the current page; an answer overtaken by a later load is dropped. */
  async function load(): Promise<void> {
    const mine = ++latest
    loading.value = true
    try {
      const data = await fetchPage(page.value, perPage.value)
      if (mine !== latest) return
      rows.value = data.items
      total.value = data.total
    } catch (e) {
      if (mine === latest) notifyError(e)
    } finally {
      if (mine === latest) loading.value = false
    }
  }

  return {
    rows,
    total,
    page,
    perPage,
    loading,
    load,
    /** Back to the first page and load it (another member, another filter). */
    reset(): Promise<void> {
      page.value = 1
      return load()
    },
    /** Forget what was shown (the list is hidden) without loading. */
    clear(): void {
      latest++
      rows.value = []
      total.value = 0
      page.value = 1
      loading.value = false
    },
    setPage(n: number): Promise<void> {
      page.value = n
      return load()
    },
    setPerPage(n: number): Promise<void> {
      perPage.value = n
      page.value = 1
      return load()
    },
  }
}
