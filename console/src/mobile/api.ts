// JSON calls of the staff app, through the auth store (token, silent refresh, one retry).
import { apiBase } from '@/api/base'
import { failureOf } from '@/api/errors'
import type { Schemas } from '@/api/types'
import { useAuthStore } from '@/stores/auth'

export type ScanOut = Schemas['inspect_schemas_ScanOut']
export type InspectionOut = Schemas['InspectionOut']
export type DocumentOut = Schemas['DocumentOut']
export type DocumentSummaryOut = Schemas['DocumentSummaryOut']
export type ItemsOut = Schemas['ItemsOut']
export type OrderOut = Schemas['OrderOut']
export type OrgOut = Schemas['OrgOut']
export type RebateClaimOut = Schemas['RebateClaimOut']

export interface Page<T> {
  items: T[]
  total: number
}

/** Seconds before a request is given up (a stalled mobile connection, a captive portal): it then
 * throws like a network error, and a queued action stays queued. */
export const REQUEST_TIMEOUT_MS = 30_000

/** A raw request: the Response (a network error or the time-out throws, as fetch does). */
export function request(method: string, path: string, body?: unknown): Promise<Response> {
  const init: RequestInit = {
    method,
    headers: { Accept: 'application/json' },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  }
  if (body !== undefined) {
    init.body = JSON.stringify(body)
    init.headers = { ...init.headers, 'Content-Type': 'application/json' }
  }
  return useAuthStore().send(new Request(`${apiBase()}${path}`, init))
}

/** The JSON answer, or its ApiFailure thrown. */
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await request(method, path, body)
  if (!response.ok) throw await failureOf(response)
  return (await response.json()) as T
}

type Param = string | number | undefined | null

/** A query string of the parameters given a value; a list repeats its name (`?status=open&status=shipped`). */
export function query(params: Record<string, Param | readonly Param[]>): string {
  const out = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) {
    for (const one of Array.isArray(v) ? v : [v]) if (one !== undefined && one !== null && one !== '') out.append(k, String(one))
  }
  const text = out.toString()
  return text ? `?${text}` : ''
}

/** The API's largest page (`per_page` at most 200). */
export const PAGE_SIZE = 200
/** Pages read at most by allPages: 10,000 items, a bound on what a phone loads into a list. */
export const MAX_PAGES = 50

/** Every item of a paged list (`GET path?params`), page after page of PAGE_SIZE until its
 * `total`: a list the page filters on the phone, or shows whole, must not stop at one page (an
 * open order behind 100 newer cancelled ones was never offered: a probe). */
export async function allPages<T>(path: string, params: Record<string, Param | readonly Param[]> = {}): Promise<T[]> {
  const items: T[] = []
  for (let page = 1; page <= MAX_PAGES; page++) {
    const got = await call<Page<T>>('GET', `${path}${query({ ...params, page, per_page: PAGE_SIZE })}`)
    items.push(...got.items)
    if (got.items.length < PAGE_SIZE || page * PAGE_SIZE >= got.total) break
  }
  return items
}
