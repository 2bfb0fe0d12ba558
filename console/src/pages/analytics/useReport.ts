// One analytics report: its filters bound to the URL query (shareable, kept on reload), the
// JSON answer of a GET endpoint for them, and exports of the same query (?format=csv|xlsx).
// Only the latest load's answer is shown: an earlier query's answer arriving late is dropped.
// A report with a paged list (`perPage` given: A7's stores) keeps its page and page size in the
// URL too and asks for them (?page, ?per_page), as usePagedList does; an export is every row.
// An export is of the report shown (its endpoint and filters; before the first answer, the one
// asked for), not of what is typed in the form meanwhile (a probe: a province typed over the one
// searched, not searched, was exported).
import { reactive, ref, shallowRef, watch } from 'vue'
import { useRoute, useRouter } from 'vue-router'

import { apiBase } from '@/api/base'
import { downloadExport, queryString } from '@/api/client'
import { failureOf } from '@/api/errors'
import { notifyError, notifyOk } from '@/composables/notify'
import { apiQuery, fromQuery, type Filters } from '@/composables/query'
import { urlPager } from '@/composables/urlPager'
import { i18n } from '@/i18n'
import { useAuthStore } from '@/stores/auth'

/** `path`: the endpoint, or a function of the filters choosing one (e.g. stores or clerks);
 * `defaultPerPage`: the page size of a report whose list is paged (none: not paged). */
export function useReport<T>(
  path: string | ((filters: Filters) => string),
  defaults: Filters,
  defaultPerPage?: number,
) {
  const route = useRoute()
  const router = useRouter()
  const routeName = route.name
  const auth = useAuthStore()
  const model = reactive<Filters>({ ...defaults })
  const data = shallowRef<T | null>(null)
  const loading = ref(false)
  const page = ref(1)
  const perPage = ref(defaultPerPage ?? 0)
  const paging = (): Record<string, number> =>
    defaultPerPage === undefined ? {} : { page: page.value, per_page: perPage.value }
  const endpoint = (): string => (typeof path === 'string' ? path : path(model))
  let latest = 0 // the number of the last load begun: only its answer is applied
  type Asked = { path: string; filters: Record<string, string> }
  let shown: Asked | null = null // the report shown
  let asking: Asked | null = null // the latest report asked for (shown once answered)

  async function load(): Promise<void> {
    const mine = ++latest
    loading.value = true
    try {
      const asked = (asking = { path: endpoint(), filters: apiQuery(model) })
      const response = await auth.send(new Request(`${apiBase()}${asked.path}${queryString({ ...asked.filters, ...paging() })}`))
      if (!response.ok) throw await failureOf(response)
      const answer = (await response.json()) as T
      if (mine !== latest) return // a later query was asked meanwhile: its answer counts
      data.value = answer
      shown = asked
    } catch (e) {
      if (mine === latest) notifyError(e)
    } finally {
      if (mine === latest) loading.value = false
    }
  }

  watch(
    () => route.query,
    (query) => {
      if (route.name !== routeName) return
      const wanted = fromQuery(query, defaults, defaultPerPage ?? 1)
      Object.assign(model, wanted.filters)
      if (defaultPerPage !== undefined) [page.value, perPage.value] = [wanted.page, wanted.perPage]
      void load()
    },
    { immediate: true },
  )

  return {
    model,
    data,
    loading,
    page,
    perPage,
    load,
    ...urlPager({ route, router, model, defaults, page, perPage, defaultPerPage: defaultPerPage ?? 0, load }),
    /** Export the report shown (its endpoint and filters; before any is, the one asked for). */
    async exportAs(format: 'csv' | 'xlsx', extra: Record<string, string> = {}): Promise<void> {
      const { path: from, filters } = shown ?? asking ?? { path: endpoint(), filters: apiQuery(model) }
      try {
        const name = await downloadExport(from, { ...filters, ...extra }, format)
        notifyOk(i18n.global.t('common.exported', { name }))
      } catch (e) {
        notifyError(e)
      }
    },
  }
}
