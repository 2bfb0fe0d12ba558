// One analytics report: its filters bound to the URL query (shareable, kept on reload), the
// JSON answer of a GET endpoint for them, and exports of the same query (?format=csv|xlsx).
// Only the latest load's answer is shown: an earlier query's answer arriving late is dropped.
import { reactive, ref, shallowRef, watch } from 'vue'
import { useRoute, useRouter } from 'vue-router'

import { apiBase } from '@/api/base'
import { downloadExport, queryString } from '@/api/client'
import { failureOf } from '@/api/errors'
import { notifyError, notifyOk } from '@/composables/notify'
import { apiQuery, fromQuery, sameQuery, toQuery, type Filters } from '@/composables/query'
import { i18n } from '@/i18n'
import { useAuthStore } from '@/stores/auth'

/** `path`: the endpoint, or a function of the filters choosing one (e.g. stores or clerks). */
export function useReport<T>(path: string | ((filters: Filters) => string), defaults: Filters) {
  const route = useRoute()
  const router = useRouter()
  const routeName = route.name
  const auth = useAuthStore()
  const model = reactive<Filters>({ ...defaults })
  const data = shallowRef<T | null>(null)
  const loading = ref(false)
  const endpoint = (): string => (typeof path === 'string' ? path : path(model))
  let latest = 0 // the number of the last load begun: only its answer is applied

  async function load(): Promise<void> {
    const mine = ++latest
    loading.value = true
    try {
      const response = await auth.send(new Request(`${apiBase()}${endpoint()}${queryString(apiQuery(model))}`))
      if (!response.ok) throw await failureOf(response)
      const answer = (await response.json()) as T
      if (mine !== latest) return // a later query was asked meanwhile: its answer counts
      data.value = answer
    } catch (e) {
      if (mine === latest) notifyError(e)
    } finally {
      if (mine === latest) loading.value = false
    }
  }

  function go(): void {
    const query = toQuery(model, defaults, 1, 0, 0)
    if (sameQuery(query, route.query)) void load()
    else void router.replace({ query })
  }

  watch(
    () => route.query,
    (query) => {
      if (route.name !== routeName) return
      Object.assign(model, fromQuery(query, defaults, 1).filters)
      void load()
    },
    { immediate: true },
  )

  return {
    model,
    data,
    loading,
    load,
    search: go,
    reset(): void {
      Object.assign(model, defaults)
      go()
    },
    async exportAs(format: 'csv' | 'xlsx', extra: Record<string, string> = {}): Promise<void> {
      try {
        const name = await downloadExport(endpoint(), { ...apiQuery(model), ...extra }, format)
        notifyOk(i18n.global.t('common.exported', { name }))
      } catch (e) {
        notifyError(e)
      }
    },
  }
}
