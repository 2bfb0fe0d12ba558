// Every page of a list a picker needs whole (the printers of a batch, the SMS templates of a
// campaign): the API pages every list (at most 200 a page), and a picker filled from its first
// page alone could not offer the 201st item. Pages are read until the total is reached, up to
// a bound; lists that may grow past it are searched as typed instead (ProductSelect.vue).
import type { Page } from './types'

export const PER_PAGE = 200
export const MAX_PAGES = 25 // 5,000 items

/** The items of every page of ``fetchPage`` (page 1, 2, … of PER_PAGE), in the API's order. */
export async function everyPage<T>(
  fetchPage: (page: number, perPage: number) => Promise<Page<T>>,
  maxPages: number = MAX_PAGES,
): Promise<T[]> {
  const found: T[] = []
  for (let page = 1; page <= maxPages; page++) {
    const data = await fetchPage(page, PER_PAGE)
    found.push(...data.items)
    if (data.items.length === 0 || page * PER_PAGE >= data.total) break
  }
  return found
}
