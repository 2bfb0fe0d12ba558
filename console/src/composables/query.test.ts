import { describe, expect, it } from 'vitest'

import { apiQuery, fromQuery, sameQuery, toQuery } from './query'
import { fileNameOf, queryString } from '@/api/client'

const defaults = { q: '', status: '' }

describe('filters in the URL', () => {
  it('reads filters, page and page size, defaults for the rest', () => {
    expect(fromQuery({ q: 'clerk', page: '3' }, defaults, 20)).toEqual({ filters: { q: 'clerk', status: '' }, page: 3, perPage: 20 })
    expect(fromQuery({ page: '-1', per_page: '999' }, defaults, 20)).toEqual({ filters: defaults, page: 1, perPage: 200 })
    expect(fromQuery({ q: ['a', 'b'], page: 'x' }, defaults, 50).filters.q).toBe('a')
  })

  it('keeps a page the API accepts (PageNo: 1..1_000_000), as it caps the page size', () => {
    // a probe: ?page=2000000 pasted by hand was sent as it is, and answered 400
    expect(fromQuery({ page: '2000000' }, defaults, 20).page).toBe(1_000_000)
    expect(fromQuery({ page: '1e9', per_page: '1e9' }, defaults, 20)).toEqual({ filters: defaults, page: 1_000_000, perPage: 200 })
    expect(fromQuery({ page: '1000000' }, defaults, 20).page).toBe(1_000_000)
  })

  it('writes only what differs from the defaults', () => {
    expect(toQuery({ q: 'clerk', status: '' }, defaults, 1, 20, 20)).toEqual({ q: 'clerk' })
    expect(toQuery({ q: '', status: 'active' }, defaults, 2, 50, 20)).toEqual({ status: 'active', page: '2', per_page: '50' })
  })

  it('round-trips', () => {
    const query = toQuery({ q: '张', status: 'inactive' }, defaults, 4, 100, 20)
    const back = fromQuery(query as Record<string, string>, defaults, 20)
    expect(back).toEqual({ filters: { q: '张', status: 'inactive' }, page: 4, perPage: 100 })
    expect(sameQuery(query, query as Record<string, string>)).toBe(true)
    expect(sameQuery({ q: 'a' }, { q: 'b' })).toBe(false)
  })

  it('sends the API only the filters that are set', () => {
    expect(apiQuery({ q: '', status: 'active', org_id: '3' })).toEqual({ status: 'active', org_id: '3' })
  })
})

describe('export URLs and file names', () => {
  it('builds a query string of the set values', () => {
    expect(queryString({ q: 'a b', status: '', org_id: 3, x: null, format: 'csv' })).toBe('?q=a+b&org_id=3&format=csv')
    expect(queryString({})).toBe('')
  })

  it('reads the file name of Content-Disposition', () => {
    expect(fileNameOf('attachment; filename="users-2024-03-01.csv"', 'x')).toBe('users-2024-03-01.csv')
    expect(fileNameOf("attachment; filename*=UTF-8''%E7%94%A8%E6%88%B7.csv", 'x')).toBe('用户.csv')
    expect(fileNameOf(null, 'export.csv')).toBe('export.csv')
  })
})
