// The brand's categories for the catalogue pages: every page of GET /categories (a brand has a
// few dozen; the pickers and the ordering need them all), and the display orders that move one
// up or down.
import { api } from '@/api/client'
import { unwrap } from '@/api/errors'
import type { Schemas } from '@/api/types'

export type Category = Schemas['CategoryOut']

const PER_PAGE = 200
const MAX_PAGES = 10 // 2,000 categories

/** Every category the caller reads, in display order. */
export async function loadCategories(): Promise<Category[]> {
  const found: Category[] = []
  for (let page = 1; page <= MAX_PAGES; page++) {
    const data = await unwrap(await api.GET('/categories', { params: { query: { page, per_page: PER_PAGE } } }))
    found.push(...data.items)
    if (page * PER_PAGE >= data.total) break
  }
  return found
}

export interface OrderChange {
  id: number
  display_order: number
}

const STEP = 10

/** The display orders to write so that the category at ``index`` of ``list`` (in display
 * order) moves one place up (-1) or down (+1). Two neighbours of different orders swap them; a
 * tie (new categories are all 0) cannot be broken by a swap, so the list is numbered again in
 * steps of 10 from its first order and only the orders that differ are written. */
export function moveCategory(list: readonly Category[], index: number, delta: -1 | 1): OrderChange[] {
  const other = index + delta
  if (index < 0 || index >= list.length || other < 0 || other >= list.length) return []
  const a = list[index]!
  const b = list[other]!
  if (a.display_order !== b.display_order) {
    return [
      { id: a.id, display_order: b.display_order },
      { id: b.id, display_order: a.display_order },
    ]
  }
  const moved = [...list]
  moved[index] = b
  moved[other] = a
  const start = Math.min(list[0]!.display_order, 0)
  const changes: OrderChange[] = []
  moved.forEach((c, i) => {
    const order = start + i * STEP
    if (c.display_order !== order) changes.push({ id: c.id, display_order: order })
  })
  return changes
}
