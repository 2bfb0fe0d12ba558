// Catalogue media: a product's image or video uploaded to this server (POST /media/catalog, the
// body the file's own bytes, as the field force's photos) and served from it to everyone at the
// path the answer's `url` names (/media/catalog/{id}): same-origin, so the console's
// Content-Security-Policy (img-src 'self') shows it as a thumbnail, where another site's image
// stays a link.
import { apiBase } from '@/api/base'
import { failureOf } from '@/api/errors'
import type { Schemas } from '@/api/types'
import { useAuthStore } from '@/stores/auth'

export type CatalogMedia = Schemas['CatalogMediaOut']
/** A medium as the brand's list shows it: with the products naming it. */
export type ListedMedia = Schemas['CatalogMediaListed']
export type MediaUsage = Schemas['CatalogUsageOut']
export type MediaKind = 'image' | 'video'

/** The file types the API takes of each kind (it tells them by their first bytes). */
export const ACCEPT: Readonly<Record<MediaKind, string>> = {
  image: 'image/jpeg,image/png,image/webp',
  video: 'video/mp4,video/webm',
}

const OWN = /^\/media\/catalog\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const HTTP = /^https?:\/\/\S+$/

/** Whether a product's URL names a medium uploaded to this server. */
export function isOwnMedia(url: string | null | undefined): url is string {
  return typeof url === 'string' && OWN.test(url)
}

/** Whether the API takes `text` (trimmed) as a product's image or video URL: http(s) without
 * blanks, or an uploaded medium's path. */
export function isProductUrl(text: string): boolean {
  const value = text.trim()
  return HTTP.test(value) || OWN.test(value)
}

/** Upload one product image or video of `kind` (the API refuses a file of the other kind). */
export async function uploadCatalogMedia(file: Blob, kind: MediaKind): Promise<CatalogMedia> {
  const request = new Request(`${apiBase()}/media/catalog?kind=${kind}`, {
    method: 'POST',
    body: file,
    headers: { 'Content-Type': file.type || 'application/octet-stream', Accept: 'application/json' },
  })
  const response = await useAuthStore().send(request)
  if (!response.ok) throw await failureOf(response)
  return (await response.json()) as CatalogMedia
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'] as const

/** 1.5 MB: a size in bytes, in binary units (1 KB = 1024 B), at most one decimal. */
export function formatBytes(bytes: number): string {
  let value = Math.max(0, bytes)
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit += 1
  }
  const shown = unit === 0 ? String(value) : value.toFixed(1).replace(/\.0$/, '')
  return `${shown} ${UNITS[unit]}`
}

/** The share of the quota used, 0–100 (a bar's percentage; full at or past the quota). */
export function usedPercent(usage: MediaUsage): number {
  if (usage.quota_bytes <= 0) return 100
  return Math.min(100, Math.round((usage.used_bytes / usage.quota_bytes) * 1000) / 10)
}
