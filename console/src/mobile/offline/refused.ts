// Refusals kept until the user dismisses them: an action the server refused (a 4xx, or a
// document code `rejected` inside a 200) has left the queue, and its message must not be lost
// with the page (a scan queued offline is answered when nobody looks, maybe after a reload).
// Per user, in localStorage beside the queue.
import { storage } from '@/utils/storage'

import type { ActionKind } from './queue'

export interface Refusal {
  /** the action's client id */
  id: string
  kind: ActionKind
  /** what the queue showed for the action */
  label: string
  status: number
  /** the server's message, or a document code's reason (`not_packed`, …) */
  message: string
  at: number
}

/** The most refusals kept per user (the oldest go first). */
export const MAX_REFUSALS = 200

function key(user: number): string {
  return `tracecode.m.refused.${user}`
}

/** The user's refusals, newest first. */
export function refusals(user: number): Refusal[] {
  try {
    const raw = storage.get(key(user))
    const list = raw ? (JSON.parse(raw) as unknown) : []
    return Array.isArray(list) ? (list as Refusal[]) : []
  } catch {
    return []
  }
}

function save(user: number, list: Refusal[]): void {
  if (list.length) storage.set(key(user), JSON.stringify(list.slice(0, MAX_REFUSALS)))
  else storage.remove(key(user))
}

/** Keep these refusals (newest first; one per action). */
export function keepRefusals(user: number, fresh: Refusal[]): void {
  if (!fresh.length) return
  const ids = new Set(fresh.map((r) => r.id))
  save(user, [...fresh, ...refusals(user).filter((r) => !ids.has(r.id))])
}

/** Dismiss the given refusals, or all of them. */
export function dismissRefusals(user: number, ids?: readonly string[]): void {
  if (!ids) return save(user, [])
  const gone = new Set(ids)
  save(user, refusals(user).filter((r) => !gone.has(r.id)))
}
