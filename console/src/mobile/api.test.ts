// The staff app's list requests: a filter of several values, and a list read whole, page after
// page (a probe: the new-document form read the newest 100 orders and kept the open ones on the
// phone, so an open order behind 100 newer cancelled ones was never offered to the clerk).
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

import { allPages, MAX_PAGES, PAGE_SIZE, query } from './api'

const json = (body: unknown): Response => new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } })

/** A server of `total` numbered items, answering GET path?page&per_page; the URLs asked. */
function serving(total: number): URL[] {
  const asked: URL[] = []
  vi.stubGlobal(
    'fetch',
    vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
      const url = new URL(new Request(input, init).url)
      asked.push(url)
      const page = Number(url.searchParams.get('page'))
      const perPage = Number(url.searchParams.get('per_page'))
      const first = (page - 1) * perPage
      const items = Array.from({ length: Math.max(0, Math.min(perPage, total - first)) }, (_, i) => ({ id: first + i }))
      return json({ items, page, per_page: perPage, total })
    }),
  )
  return asked
}

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

describe('a query string', () => {
  it('repeats the name of a list and leaves out what has no value', () => {
    expect(query({ status: ['open', 'shipped'], kind: null, q: '', page: 2 })).toBe('?status=open&status=shipped&page=2')
    expect(query({ status: [] })).toBe('')
    expect(query({ q: '西湖' })).toBe(`?q=${encodeURIComponent('西湖')}`)
  })
})

describe('a list read whole', () => {
  it('asks the server for what it needs and reads every page up to the total', async () => {
    const asked = serving(2 * PAGE_SIZE + 50)
    const orders = await allPages<{ id: number }>('/orders', { status: ['open', 'shipped'] })
    expect(orders.map((o) => o.id)).toEqual(Array.from({ length: 2 * PAGE_SIZE + 50 }, (_, i) => i))
    expect(asked.map((u) => u.pathname)).toEqual(['/orders', '/orders', '/orders'])
    expect(asked.map((u) => u.searchParams.getAll('status'))).toEqual(Array(3).fill(['open', 'shipped']))
    expect(asked.map((u) => [u.searchParams.get('page'), u.searchParams.get('per_page')])).toEqual([
      ['1', '200'],
      ['2', '200'],
      ['3', '200'],
    ])
  })

  it('asks once for a list of one page, or none', async () => {
    let asked = serving(3)
    expect(await allPages('/orgs')).toHaveLength(3)
    expect(asked).toHaveLength(1)
    asked = serving(0)
    expect(await allPages('/orgs')).toEqual([])
    expect(asked).toHaveLength(1)
  })

  it('stops at MAX_PAGES pages', async () => {
    const asked = serving((MAX_PAGES + 5) * PAGE_SIZE)
    expect(await allPages('/orgs')).toHaveLength(MAX_PAGES * PAGE_SIZE)
    expect(asked).toHaveLength(MAX_PAGES)
  })

  it('throws what the server refused, as call does', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ error: { code: 'forbidden', message: 'no' } }), { status: 403 })))
    await expect(allPages('/orders')).rejects.toMatchObject({ code: 'forbidden', status: 403 })
  })
})
