// Filters <-> URL query: a list's filters live in the address (shareable, kept on reload, Back
// works). Pure functions, unit-tested.
import type { LocationQuery, LocationQueryRaw } from 'vue-router'

export type Filters = Record<string, string>

function first(value: LocationQuery[string] | undefined): string | undefined {
  const one = Array.isArray(value) ? value[0] : value
  return one === null || one === undefined ? undefined : one
}

/** The API's page numbers (PageNo: 1..1_000_000) and page sizes (PerPage: at most 200): a URL
 * asking for more asks for the most (a probe: ?page=2000000 pasted by hand answered 400). */
export const MAX_PAGE = 1_000_000
export const MAX_PER_PAGE = 200

function positive(value: string | undefined, fallback: number): number {
  const n = Number(value)
  return Number.isInteger(n) && n > 0 ? n : fallback
}

/** The filters, page and page size a URL query asks for (defaults for what it doesn't name). */
export function fromQuery(
  query: LocationQuery,
  defaults: Filters,
  perPage: number,
): { filters: Filters; page: number; perPage: number } {
  const filters: Filters = {}
  for (const [key, fallback] of Object.entries(defaults)) filters[key] = first(query[key]) ?? fallback
  return {
    filters,
    page: Math.min(positive(first(query.page), 1), MAX_PAGE),
    perPage: Math.min(positive(first(query.per_page), perPage), MAX_PER_PAGE),
  }
}

/** The URL query of filters, page and page size: defaults and empty values left out. */
export function toQuery(
  filters: Filters,
  defaults: Filters,
  page: number,
  perPage: number,
  defaultPerPage: number,
): LocationQueryRaw {
  const query: LocationQueryRaw = {}
  for (const [key, value] of Object.entries(filters)) {
    if (value !== '' && value !== defaults[key]) query[key] = value
  }
  if (page > 1) query.page = String(page)
  if (perPage !== defaultPerPage) query.per_page = String(perPage)
  return query
}

/** The API query of filters: every non-empty filter value (defaults included). */
export function apiQuery(filters: Filters): Record<string, string> {
  return Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== ''))
}

export function sameQuery(a: LocationQueryRaw, b: LocationQuery): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  return [...keys].every((k) => String(a[k] ?? '') === String(first(b[k]) ?? ''))
}
