// The totals above the claims list against a fake route and a fake auth store whose answers the
// test releases: the latest query's answer wins, a failure or no network shows no totals, and a
// page change of the same filters asks nothing.
import { effectScope, nextTick, reactive, type EffectScope } from 'vue'
import type { LocationQuery } from 'vue-router'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

const route = reactive<{ name: string; query: LocationQuery }>({ name: 'rebates-claims', query: {} })
const pending: { store: string | null; answer: (r: Response | Error) => void }[] = []

vi.mock('vue-router', () => ({ useRoute: () => route }))
vi.mock('@/api/base', () => ({ apiBase: () => 'http://localhost' }))
vi.mock('@/stores/auth', () => ({
  useAuthStore: () => ({
    send: (request: Request) =>
      new Promise<Response>((resolve, reject) => {
        const store = new URL(request.url).searchParams.get('store_id')
        pending.push({ store, answer: (r) => (r instanceof Error ? reject(r) : resolve(r)) })
      }),
  }),
}))

const { useClaimTotals } = await import('./totals')

const FILTERS = { store_id: '', status: '' }
const page = (total: number, amount: number) => new Response(JSON.stringify({ items: [], total, amount, page: 1, per_page: 1 }))
let scope: EffectScope

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await nextTick()
    await Promise.resolve()
  }
}

function totals() {
  scope = effectScope()
  return scope.run(() => useClaimTotals(FILTERS, 'rebates-claims'))!
}

beforeEach(() => {
  route.query = {}
  pending.length = 0
})
afterEach(() => scope.stop())

describe('the claims page totals', () => {
  it('shows the latest query’s totals, not an earlier answer arriving late', async () => {
    route.query = { store_id: '1' }
    const shown = totals()
    route.query = { store_id: '2' }
    await settle()
    expect(pending.map((p) => p.store)).toEqual(['1', '2'])
    pending[1]!.answer(page(2, 20))
    await settle()
    pending[0]!.answer(page(1, 10)) // the slow one: dropped
    await settle()
    expect(shown.value).toEqual({ total: 2, amount: 20 })
  })

  it('shows none on a failure or offline (not the totals of other filters), caught', async () => {
    const shown = totals()
    pending[0]!.answer(page(5, 50))
    await settle()
    route.query = { store_id: '3' }
    await settle()
    pending[1]!.answer(new Response('<html>503</html>', { status: 503 }))
    await settle()
    expect(shown.value).toBeNull()
    route.query = { store_id: '4' }
    await settle()
    pending[2]!.answer(new TypeError('Failed to fetch')) // no unhandled rejection
    await settle()
    expect(shown.value).toBeNull()
    route.query = { store_id: '4', page: '2' } // failed: asked again, the page's change too
    await settle()
    expect(pending).toHaveLength(4)
  })

  it('asks nothing when only the page or the page size changed', async () => {
    route.query = { status: 'paid' }
    const shown = totals()
    pending[0]!.answer(page(7, 70))
    await settle()
    route.query = { status: 'paid', page: '3' }
    await settle()
    route.query = { status: 'paid', page: '3', per_page: '50' }
    await settle()
    expect(pending).toHaveLength(1)
    expect(shown.value).toEqual({ total: 7, amount: 70 })
    route.name = 'rebates-statements' // leaving the page: nothing asked
    route.query = {}
    await settle()
    route.name = 'rebates-claims'
    expect(pending).toHaveLength(1)
  })
})
