// usePagedFetch with answers arriving in the order the test chooses: a later load wins over an
// earlier one answering late, a failure of an overtaken load says nothing, clear() drops what
// is on its way.
import { describe, expect, it, vi } from 'vitest'

import type { Page } from '@/api/types'

const errors: unknown[] = []
vi.mock('./notify', () => ({ notifyError: (e: unknown) => errors.push(e) }))

const { usePagedFetch } = await import('./usePagedFetch')

interface Pending {
  page: number
  perPage: number
  resolve: (items: string[]) => void
  reject: (e: unknown) => void
}

function fake() {
  const pending: Pending[] = []
  const fetchPage = (page: number, perPage: number) =>
    new Promise<Page<string>>((resolve, reject) => {
      pending.push({ page, perPage, resolve: (items) => resolve({ items, page, per_page: perPage, total: items.length }), reject })
    })
  return { pending, fetchPage }
}

describe('usePagedFetch', () => {
  it('shows the answer of the latest load only', async () => {
    const { pending, fetchPage } = fake()
    const list = usePagedFetch(fetchPage, 10)
    const first = list.load()
    const second = list.setPage(2)
    pending[1].resolve(['b'])
    await second
    pending[0].resolve(['a'])
    await first
    expect(list.rows.value).toEqual(['b'])
    expect(list.page.value).toBe(2)
    expect(pending.map((p) => [p.page, p.perPage])).toEqual([
      [1, 10],
      [2, 10],
    ])
    expect(list.loading.value).toBe(false)
  })

  it('reports the failure of the latest load, not of an overtaken one', async () => {
    errors.length = 0
    const { pending, fetchPage } = fake()
    const list = usePagedFetch(fetchPage)
    const first = list.load()
    const second = list.load()
    pending[0].reject(new Error('old'))
    await first
    expect(errors).toEqual([])
    pending[1].reject(new Error('new'))
    await second
    expect(errors).toHaveLength(1)
    expect(list.loading.value).toBe(false)
  })

  it('a new page size starts at the first page; clear() forgets an answer on its way', async () => {
    const { pending, fetchPage } = fake()
    const list = usePagedFetch(fetchPage)
    list.page.value = 3
    const sized = list.setPerPage(50)
    expect([pending[0].page, pending[0].perPage]).toEqual([1, 50])
    list.clear()
    pending[0].resolve(['late'])
    await sized
    expect(list.rows.value).toEqual([])
    expect(list.total.value).toBe(0)
  })
})
