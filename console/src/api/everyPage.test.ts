import { describe, expect, it } from 'vitest'

import { everyPage, MAX_PAGES, PER_PAGE } from './everyPage'
import type { Page } from './types'

/** A list of ``total`` numbers served by page, and the pages asked for. */
function serving(total: number) {
  const asked: number[] = []
  const fetchPage = async (page: number, perPage: number): Promise<Page<number>> => {
    asked.push(page)
    const start = (page - 1) * perPage
    const items = Array.from({ length: Math.max(0, Math.min(perPage, total - start)) }, (_, i) => start + i)
    return { items, page, per_page: perPage, total }
  }
  return { asked, fetchPage }
}

describe('everyPage', () => {
  it('reads past the first page: the 201st item is there', async () => {
    const { asked, fetchPage } = serving(PER_PAGE + 1)
    const items = await everyPage(fetchPage)
    expect(items).toHaveLength(PER_PAGE + 1)
    expect(items.at(-1)).toBe(PER_PAGE)
    expect(asked).toEqual([1, 2])
  })

  it('asks once for a list of one page or none', async () => {
    for (const total of [0, 1, PER_PAGE]) {
      const { asked, fetchPage } = serving(total)
      expect(await everyPage(fetchPage)).toHaveLength(total)
      expect(asked).toEqual([1])
    }
  })

  it('stops at the bound', async () => {
    const { asked, fetchPage } = serving((MAX_PAGES + 3) * PER_PAGE)
    expect(await everyPage(fetchPage)).toHaveLength(MAX_PAGES * PER_PAGE)
    expect(asked).toHaveLength(MAX_PAGES)
  })

  it('fails as a page fails', async () => {
    const failing = async (): Promise<Page<number>> => {
      throw new Error('down')
    }
    await expect(everyPage(failing)).rejects.toThrow('down')
  })
})
