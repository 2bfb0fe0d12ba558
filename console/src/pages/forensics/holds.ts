// Fraud holds (SPEC B5) in the console: which decisions a hold offers, what a confirmation may
// also do to its party, the freeze reason sent then, and the evidence as rows to read. Pure
// functions; the fetching is in HoldsTab.vue and HoldDrawer.vue.
import type { Schemas } from '@/api/types'

export type Hold = Schemas['HoldOut']
export type Leak = Schemas['LeakOut']
export type HoldAction = 'release' | 'confirm'
/** What a confirmation may also do: freeze the member, or deactivate the clerk's account. */
export type FollowUp = 'freeze' | 'deactivate'
type Can = (permission: string) => boolean

/** The longest note a decision or a manual hold takes, and the longest freeze reason (the API's
 * limits, counted in characters as the API counts them). */
export const NOTE_MAX = 500

/** The decisions offered on a hold: release and confirm while it is open, to a reviewer
 * (fraud.review); none once it is decided (the API answers a decided hold as it is, or 409). */
export function holdActions(hold: Pick<Hold, 'state'>, can: Can): HoldAction[] {
  return hold.state === 'open' && can('fraud.review') ? ['release', 'confirm'] : []
}

/** What confirming the hold may also do to its party, for a user allowed to: freeze a member
 * (POST /members/{id}/freeze, members.write) or deactivate a clerk's account (PATCH /users/{id}
 * status inactive, users.write); null when nothing. */
export function followUpOf(hold: Pick<Hold, 'party_kind'>, can: Can): FollowUp | null {
  if (hold.party_kind === 'member') return can('members.write') ? 'freeze' : null
  return can('users.write') ? 'deactivate' : null
}

/** The first `max` characters of `text` (code points: a character outside the BMP is not cut in
 * two, and the API counts it once). */
function clip(text: string, max: number): string {
  const chars = Array.from(text)
  return chars.length > max ? chars.slice(0, max).join('') : text
}

/** The reason a confirmation's freeze is given: `prefix` (naming the hold), then the reviewer's
 * note when there is one; never blank, at most NOTE_MAX characters (the API refuses more). */
export function freezeReason(prefix: string, note: string): string {
  const said = note.trim()
  return clip(said ? `${prefix}: ${said}` : prefix, NOTE_MAX)
}

export interface EvidenceRow {
  /** The value's path: a nested object's keys joined by dots, a list's items by [index]. */
  key: string
  /** The top-level key the row comes from (its label is looked up by it). */
  root: string
  value: string
}

const DEEPEST = 4 // nested further than this: shown as JSON on one row

function plain(value: unknown): value is string | number | boolean | null | undefined {
  return value === null || value === undefined || ['string', 'number', 'boolean'].includes(typeof value)
}

function text(value: string | number | boolean | null | undefined): string {
  return value === null || value === undefined || value === '' ? '—' : String(value)
}

function rowsOf(key: string, root: string, value: unknown, depth: number, out: EvidenceRow[]): void {
  if (plain(value)) {
    out.push({ key, root, value: text(value) })
  } else if (Array.isArray(value)) {
    if (value.length === 0) out.push({ key, root, value: '—' })
    else if (value.every(plain)) out.push({ key, root, value: value.map(text).join(', ') })
    else if (depth >= DEEPEST) out.push({ key, root, value: JSON.stringify(value) })
    else value.forEach((item, i) => rowsOf(`${key}[${i}]`, root, item, depth + 1, out))
  } else {
    const entries = Object.entries(value as Record<string, unknown>)
    if (entries.length === 0) out.push({ key, root, value: '—' })
    else if (depth >= DEEPEST) out.push({ key, root, value: JSON.stringify(value) })
    else for (const [k, v] of entries) rowsOf(`${key}.${k}`, root, v, depth + 1, out)
  }
}

/** The evidence as key/value rows, in its order: a nested object's values each on a row of its
 * own (keys joined by dots), a list of plain values on one row (joined by commas), a list of
 * objects item by item; empty values as "—". */
export function evidenceRows(evidence: Record<string, unknown> | null | undefined): EvidenceRow[] {
  const out: EvidenceRow[] = []
  for (const [key, value] of Object.entries(evidence ?? {})) rowsOf(key, key, value, 0, out)
  return out
}

/** A leak's codes: an export's serial range (end exclusive), an allocation's total; null when
 * neither is known. */
export function leakSpan(leak: Pick<Leak, 'source_kind' | 'range_start' | 'range_end'>):
  | { kind: 'range'; start: number; end: number }
  | { kind: 'total'; total: number }
  | null {
  if (leak.source_kind === 'export' && leak.range_start !== null && leak.range_end !== null)
    return { kind: 'range', start: leak.range_start, end: leak.range_end }
  if (leak.source_kind === 'allocation' && leak.range_end !== null) return { kind: 'total', total: leak.range_end }
  return null
}
