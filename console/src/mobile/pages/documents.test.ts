import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

import { documentChoices } from './documents'

const json = (body: unknown): Response => new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } })

/** A server as GET /orders and GET /orgs answer: newest order first, `?status=` repeated keeps
 * the orders in any of those statuses, pages of `per_page` (at most 200) with the total. */
function server(orders: { id: number; status: string }[], orgs: number): void {
  vi.stubGlobal(
    'fetch',
    vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
      const url = new URL(new Request(input, init).url)
      const page = Number(url.searchParams.get('page') ?? 1)
      const perPage = Math.min(200, Number(url.searchParams.get('per_page') ?? 50))
      const wanted = url.searchParams.getAll('status')
      const all =
        url.pathname === '/orders'
          ? orders.filter((o) => wanted.length === 0 || wanted.includes(o.status))
          : Array.from({ length: orgs }, (_, i) => ({ id: i + 1, name: `org ${i + 1}`, depth: 0, kind: 'store' }))
      return json({ items: all.slice((page - 1) * perPage, page * perPage), page, per_page: perPage, total: all.length })
    }),
  )
}

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

describe('the new-document form', () => {
  it('offers an open order behind 300 newer cancelled ones, and an order shipped (to receive)', async () => {
    const cancelled = Array.from({ length: 300 }, (_, i) => ({ id: 1000 - i, status: 'cancelled' }))
    server([...cancelled, { id: 500, status: 'closed' }, { id: 400, status: 'shipped' }, { id: 1, status: 'open' }], 3)
    const { orders } = await documentChoices()
    expect(orders.map((o) => o.id)).toEqual([400, 1])
  })

  it('offers every organisation as a counterparty, past the first 200', async () => {
    server([], 450)
    const { orgs } = await documentChoices()
    expect(orgs).toHaveLength(450)
    expect(orgs.at(-1)?.name).toBe('org 450')
  })
})
