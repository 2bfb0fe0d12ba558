// The typed API client: openapi-fetch over the paths of src/api/schema.d.ts (generated from the
// server's OpenAPI document by `npm run gen-api`; tests/test_console.py keeps it in sync), every
// request sent through the auth store (token, silent refresh, one retry).
import createClient from 'openapi-fetch'

import { apiBase } from './base'
import { failureOf } from './errors'
import type { paths } from './schema'
import { useAuthStore } from '@/stores/auth'

export const api = createClient<paths>({
  baseUrl: apiBase(),
  fetch: (request: Request) => useAuthStore().send(request),
})

/** A query string of the values that are set (empty strings, null and undefined left out). */
export function queryString(query: Record<string, unknown>): string {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue
    for (const one of Array.isArray(value) ? value : [value]) params.append(key, String(one))
  }
  const text = params.toString()
  return text ? `?${text}` : ''
}

/** The file name of a Content-Disposition header (RFC 6266 filename* or filename), else fallback. */
export function fileNameOf(disposition: string | null, fallback: string): string {
  if (!disposition) return fallback
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition)
  if (star?.[1]) return decodeURIComponent(star[1])
  const plain = /filename="?([^";]+)"?/i.exec(disposition)
  return plain?.[1] ?? fallback
}

/** Download an export (``?format=csv|xlsx`` of a list endpoint) with the auth header, as a file. */
export async function downloadExport(
  path: string,
  query: Record<string, unknown>,
  format: 'csv' | 'xlsx',
): Promise<string> {
  const url = `${apiBase()}${path}${queryString({ ...query, page: undefined, per_page: undefined, format })}`
  const response = await useAuthStore().send(new Request(url))
  if (!response.ok) throw await failureOf(response)
  const name = fileNameOf(response.headers.get('Content-Disposition'), `export.${format}`)
  const blob = await response.blob()
  const href = URL.createObjectURL(blob)
  const link = document.createElement('a')
  link.href = href
  link.download = name
  document.body.appendChild(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(href), 10_000)
  return name
}
