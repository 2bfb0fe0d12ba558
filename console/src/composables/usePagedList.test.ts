// usePagedList against a fake route and a fake API whose answers arrive in the order the test
// chooses: only the latest query's answer is shown (a slow answer of an earlier filter is dropped),
// and an export carries the filters of the list shown.
import { effectScope, nextTick, reactive, type EffectScope } from 'vue'
import type { LocationQuery, LocationQueryRaw } from 'vue-router'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

type Answer = { data?: unknown; error?: unknown; response: Response }
interface Call {
  query: Record<string, unknown>
  answer: (items: string[]) => void
  fail: () => void
}

const route = reactive<{ name: string; query: LocationQuery }>({ name: 'users', query: {} })
const calls: Call[] = []

vi.mock('vue-router', () => ({
  useRoute: () => route,
  useRouter: () => ({
    replace: (to: { query: LocationQueryRaw }) => {
      route.query = to.query as LocationQuery
      return Promise.resolve()
    },
  }),
}))
vi.mock('@/api/client', () => ({
  api: {
    GET: (_path: string, init: { params: { query: Record<string, unknown> } }) =>
      new Promise<Answer>((resolve) => {
        calls.push({
          query: init.params.query,
          answer: (items) =>
            resolve({ data: { items, page: 1, per_page: 20, total: items.length }, response: new Response(null, { status: 200 }) }),
          fail: () =>
            resolve({
              error: { error: { code: 'boom', message: 'boom', details: null } },
              response: new Response(null, { status: 500 }),
            }),
        })
      }),
  },
  downloadExport: (...args: unknown[]) => downloadExport(...args),
}))
const downloadExport = vi.fn()
const notifyError = vi.fn()
vi.mock('./notify', () => ({ notifyError: (e: unknown) => notifyError(e) }))

const { usePagedList } = await import('./usePagedList')

/** Let the promises and the route watcher run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await nextTick()
    await Promise.resolve()
  }
}

let scope: EffectScope

/** A list of users as a page would hold it (its route watcher stopped after the test). */
function usersList() {
  scope = effectScope()
  return scope.run(() => usePagedList<string>('/users', { q: '' }))!
}

beforeEach(() => {
  route.query = {}
  calls.length = 0
  notifyError.mockReset()
  downloadExport.mockReset()
})
afterEach(() => scope.stop())

describe('usePagedList', () => {
  it('shows the answer of the latest query when an earlier one answers last', async () => {
    const list = usersList()
    calls[0]!.answer(['admin', 'store_clerk'])
    await settle()
    expect(list.rows.value).toEqual(['admin', 'store_clerk'])

    list.model.q = 'admin'
    list.search()
    await settle()
    list.model.q = 'clerk'
    list.search()
    await settle()
    expect(calls.map((c) => c.query.q)).toEqual([undefined, 'admin', 'clerk'])

    calls[2]!.answer(['store_clerk'])
    await settle()
    expect(list.rows.value).toEqual(['store_clerk'])
    expect(list.loading.value).toBe(false)

    calls[1]!.answer(['admin', 'agent_admin']) // the slow answer of the earlier filter
    await settle()
    expect(route.query).toEqual({ q: 'clerk' })
    expect(list.rows.value).toEqual(['store_clerk'])
    expect(list.total.value).toBe(1)
    expect(list.loading.value).toBe(false)
  })

  it('reports the failure of the latest load only, and loads until the latest has answered', async () => {
    const list = usersList()
    void list.load() // again, before the first answered
    calls[0]!.fail() // the earlier one fails: nobody needs to hear of it
    await settle()
    expect(notifyError).not.toHaveBeenCalled()
    expect(list.loading.value).toBe(true)
    calls[1]!.answer(['admin'])
    await settle()
    expect(list.rows.value).toEqual(['admin'])
    expect(list.loading.value).toBe(false)

    void list.load()
    calls[2]!.fail()
    await settle()
    expect(notifyError).toHaveBeenCalledTimes(1)
    expect(list.rows.value).toEqual(['admin'])
    expect(list.loading.value).toBe(false)
  })

  it('exports the filters of the list shown, not those typed and not searched', async () => {
    route.query = { q: 'clerk' }
    const list = usersList()
    calls[0]!.answer(['store_clerk'])
    await settle()
    list.model.q = 'admin' // typed, Search not pressed: the clerks are still listed
    await list.exportAs('csv')
    expect(downloadExport).toHaveBeenLastCalledWith('/users', { q: 'clerk' }, 'csv')

    list.search()
    await settle()
    await list.exportAs('xlsx') // asked, not answered yet: the clerks are still listed
    expect(downloadExport).toHaveBeenLastCalledWith('/users', { q: 'clerk' }, 'xlsx')
    calls[1]!.answer(['admin'])
    await settle()
    await list.exportAs('csv')
    expect(downloadExport).toHaveBeenLastCalledWith('/users', { q: 'admin' }, 'csv')
  })
})
