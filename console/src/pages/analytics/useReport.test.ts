// useReport against a fake route and a fake auth store that records the requests: a report with
// a paged list (A7's stores) asks for the page and page size of the URL, a pager's page or size
// goes into the URL and is loaded, a search goes back to page 1, an export is every row; a report
// without a paged list asks for no page.
import { effectScope, nextTick, reactive, type EffectScope } from 'vue'
import type { LocationQuery, LocationQueryRaw } from 'vue-router'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

const route = reactive<{ name: string; query: LocationQuery }>({ name: 'analytics-inspections', query: {} })
const asked: URLSearchParams[] = []

vi.mock('vue-router', () => ({
  useRoute: () => route,
  useRouter: () => ({
    replace: (to: { query: LocationQueryRaw }) => {
      route.query = to.query as LocationQuery
      return Promise.resolve()
    },
  }),
}))
vi.mock('@/stores/auth', () => ({
  useAuthStore: () => ({
    send: (request: Request) => {
      asked.push(new URL(request.url).searchParams)
      return Promise.resolve(new Response('{"stores": []}', { status: 200 }))
    },
  }),
}))
vi.mock('@/api/base', () => ({ apiBase: () => 'http://localhost' }))
vi.mock('@/api/client', async (importOriginal) => ({
  ...(await importOriginal<typeof import('@/api/client')>()),
  downloadExport: (...args: unknown[]) => downloadExport(...args),
}))
vi.mock('@/composables/notify', () => ({ notifyError: vi.fn(), notifyOk: vi.fn() }))
vi.mock('@/i18n', () => ({ i18n: { global: { t: (key: string) => key } } }))
const downloadExport = vi.fn()

const { useReport } = await import('./useReport')

/** Let the promises and the route watcher run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await nextTick()
    await Promise.resolve()
  }
}

const lastAsked = (): Record<string, string> => Object.fromEntries(asked.at(-1)!)
const defaults = { from: '', province: '' }
let scope: EffectScope

/** A report as a page would hold it (its route watcher stopped after the test). */
function report(perPage?: number) {
  scope = effectScope()
  return scope.run(() => useReport<unknown>('/analytics/inspections', defaults, perPage))!
}

beforeEach(() => {
  route.query = {}
  asked.length = 0
  downloadExport.mockReset()
})
afterEach(() => scope.stop())

describe('useReport with a paged list', () => {
  it('asks for the page and page size of the URL, and puts the pager’s in it', async () => {
    route.query = { page: '3', per_page: '50', province: '浙江省' }
    const r = report(100)
    await settle()
    expect(lastAsked()).toEqual({ page: '3', per_page: '50', province: '浙江省' })
    expect([r.page.value, r.perPage.value]).toEqual([3, 50])

    r.setPage(4)
    await settle()
    expect(route.query).toEqual({ page: '4', per_page: '50', province: '浙江省' })
    expect(lastAsked()).toEqual({ page: '4', per_page: '50', province: '浙江省' })

    r.setPerPage(100) // the default: back to page 1, neither in the URL
    await settle()
    expect(route.query).toEqual({ province: '浙江省' })
    expect(lastAsked()).toEqual({ page: '1', per_page: '100', province: '浙江省' })

    r.setPage(2)
    await settle()
    r.model.province = '江苏省'
    r.search() // another filter: its first page
    await settle()
    expect(route.query).toEqual({ province: '江苏省' })
    expect(lastAsked()).toEqual({ page: '1', per_page: '100', province: '江苏省' })
    expect(r.page.value).toBe(1)

    await r.exportAs('csv', { table: 'stores' }) // every store, not a page
    expect(downloadExport).toHaveBeenLastCalledWith('/analytics/inspections', { province: '江苏省', table: 'stores' }, 'csv')
  })

  it('asks for no page when the report has no paged list', async () => {
    route.query = { page: '2', from: '2026-01-01' }
    report()
    await settle()
    expect(lastAsked()).toEqual({ from: '2026-01-01' })
  })
})

describe('useReport export', () => {
  it('exports the report shown, not filters typed and not searched', async () => {
    // a probe: a province typed over the one shown, not searched, was the one exported
    route.query = { province: '浙江省' }
    const r = report()
    await settle()
    r.model.province = '江苏省'
    await r.exportAs('csv', { table: 'regions' })
    expect(downloadExport).toHaveBeenLastCalledWith('/analytics/inspections', { province: '浙江省', table: 'regions' }, 'csv')
  })

  it('exports from the endpoint of the report shown, the one asked for before the first answer', async () => {
    const byKind = (f: Record<string, string>) => (f.from ? '/analytics/sales/clerks' : '/analytics/sales/stores')
    route.query = { province: '浙江省' }
    scope = effectScope()
    const r = scope.run(() => useReport<unknown>(byKind, defaults))!
    r.model.from = '2026-02-01' // typed before the first answer: not searched
    await r.exportAs('xlsx')
    expect(downloadExport).toHaveBeenLastCalledWith('/analytics/sales/stores', { province: '浙江省' }, 'xlsx')
    await settle()
    r.search() // searched: the clerks' report is shown once answered
    await settle()
    await r.exportAs('xlsx')
    expect(downloadExport).toHaveBeenLastCalledWith('/analytics/sales/clerks', { from: '2026-02-01', province: '浙江省' }, 'xlsx')
  })
})
