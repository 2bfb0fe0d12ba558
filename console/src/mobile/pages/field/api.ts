// The field force's API shapes and the two calls that are not JSON: a photo goes up as the
// image's own bytes (POST /media/photos) and comes back only with the auth header, as a blob.
import { apiBase } from '@/api/base'
import { failureOf } from '@/api/errors'
import type { Schemas } from '@/api/types'
import { useAuthStore } from '@/stores/auth'

export type PlanOut = Schemas['PlanOut']
export type PlanItemOut = Schemas['PlanItemOut']
export type CheckinOut = Schemas['CheckinOut']
export type TrackOut = Schemas['TrackOut']
export type ReviewOut = Schemas['ReviewOut']
export type PhotoOut = Schemas['PhotoOut']

/** Upload one photo (JPEG, PNG or WebP; the server tells the type by its first bytes). */
export async function uploadPhoto(file: Blob): Promise<PhotoOut> {
  const request = new Request(`${apiBase()}/media/photos`, {
    method: 'POST',
    body: file,
    headers: { 'Content-Type': file.type || 'application/octet-stream', Accept: 'application/json' },
  })
  const response = await useAuthStore().send(request)
  if (!response.ok) throw await failureOf(response)
  return (await response.json()) as PhotoOut
}

/** A photo as an object URL (revoke it when done), fetched with the auth header. */
export async function photoObjectUrl(id: string): Promise<string> {
  const response = await useAuthStore().send(new Request(`${apiBase()}/media/photos/${id}`))
  if (!response.ok) throw await failureOf(response)
  return URL.createObjectURL(await response.blob())
}

