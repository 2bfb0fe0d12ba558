// One server-paged list: filters bound to the URL query, the page fetched from a GET endpoint
// answering the API's Page shape ({items, page, per_page, total}), exports of the list shown.
// Only the latest load's answer is shown: an earlier query's answer arriving late is dropped.
// An export carries the filters of the rows shown, not what is typed in the form meanwhile (a
// probe: "admin" typed over a searched "clerk", not searched, exported the admins).
import { reactive, ref, shallowRef, watch } from 'vue'
import { useRoute, useRouter } from 'vue-router'

import { apiQuery, fromQuery, type Filters } from './query'
import { downloadExport } from '@/api/client'
import { unwrap } from '@/api/errors'
import { api } from '@/api/client'
import type { Page } from '@/api/types'
import { notifyError } from './notify'
import { urlPager } from './urlPager'

type LooseGet = (path: string, init: { params: { query: Record<string, unknown> } }) => Promise<{
  data?: unknown
  error?: unknown
  response: Response
}>

export function usePagedList<T>(path: string, defaults: Filters, defaultPerPage = 20) {
  const route = useRoute()
  const router = useRouter()
  const routeName = route.name
  const model = reactive<Filters>({ ...defaults })
  const rows = shallowRef<T[]>([])
  const total = ref(0)
  const page = ref(1)
  const perPage = ref(defaultPerPage)
  const loading = ref(false)
  let latest = 0 // the number of the last load begun: only its answer is applied
  let shown: Record<string, string> | null = null // the API filters of the rows shown

  async function load(): Promise<void> {
    const mine = ++latest
    loading.value = true
    try {
      const get = api.GET as unknown as LooseGet
      const filters = apiQuery(model)
      const query = { ...filters, page: page.value, per_page: perPage.value }
      const data = await unwrap<Page<T>>((await get(path, { params: { query } })) as never)
      if (mine !== latest) return // a later query was asked meanwhile: its answer counts
      rows.value = data.items
      total.value = data.total
      shown = filters
    } catch (e) {
      if (mine === latest) notifyError(e)
    } finally {
      if (mine === latest) loading.value = false
    }
  }

  watch(
    () => route.query,
    (query) => {
      if (route.name !== routeName) return // leaving the page
      const wanted = fromQuery(query, defaults, defaultPerPage)
      Object.assign(model, wanted.filters)
      page.value = wanted.page
      perPage.value = wanted.perPage
      void load()
    },
    { immediate: true },
  )

  return {
    model,
    rows,
    total,
    page,
    perPage,
    loading,
    load,
    ...urlPager({ route, router, model, defaults, page, perPage, defaultPerPage, load }),
    /** Export the list shown (its filters; before any is shown, those of the form). */
    async exportAs(format: 'csv' | 'xlsx'): Promise<string | null> {
      try {
        return await downloadExport(path, shown ?? apiQuery(model), format)
      } catch (e) {
        notifyError(e)
        return null
      }
    },
  }
}
