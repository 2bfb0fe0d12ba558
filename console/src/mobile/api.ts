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

export function query(params: Record<string, string | number | undefined | null>): string {
  const out = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') out.set(k, String(v))
  const text = out.toString()
  return text ? `?${text}` : ''
}
