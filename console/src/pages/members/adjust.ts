// A manual points entry (POST /points/adjustments, points.rules): an adjustment adds or takes
// points, an expiry takes them; the form asks for how many and which way, the API for a signed
// number. The client id is the form's: made when the form opens, so a second click (or a retry
// after a lost answer) is the same entry, answered 200, never a second one.
import type { Schemas } from '@/api/types'

export type AdjustmentBody = Schemas['AdjustmentIn']
export type Direction = 'add' | 'deduct'

export interface AdjustmentForm {
  kind: 'adjustment' | 'expiry'
  direction: Direction
  amount: number
  reason: string
  clientId: string
}

/** A fresh form: a new client id, nothing filled. */
export function blankAdjustment(clientId: string = newClientId()): AdjustmentForm {
  return { kind: 'adjustment', direction: 'add', amount: 1, reason: '', clientId }
}

/** A random client id the API takes (printable, ≤ 64 characters); getRandomValues, not
 * randomUUID, which a console served over plain http (no secure context) lacks. */
export function newClientId(prefix = 'adj'): string {
  const bytes = new Uint8Array(16)
  globalThis.crypto.getRandomValues(bytes)
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`
}

/** What the form lacks before it can be sent ('' when nothing): a whole amount of 1 to
 * 1,000,000, and a reason. */
export function adjustmentProblem(form: AdjustmentForm): '' | 'amount' | 'reason' {
  if (!Number.isInteger(form.amount) || form.amount < 1 || form.amount > 1_000_000) return 'amount'
  if (!form.reason.trim()) return 'reason'
  return ''
}

/** The request body: an expiry always takes points away, whatever direction is chosen. */
export function adjustmentBody(memberId: number, form: AdjustmentForm): AdjustmentBody {
  const negative = form.kind === 'expiry' || form.direction === 'deduct'
  return {
    member_id: memberId,
    kind: form.kind,
    points: negative ? -form.amount : form.amount,
    reason: form.reason.trim(),
    client_id: form.clientId,
  }
}
