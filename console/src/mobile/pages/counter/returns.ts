// L8 at the counter: a consumer brings a unit back. What the app shows before the return is
// sent — the unit's original information, from its trace (GET /trace/{serial}: product, lot,
// where and when it was sold) — and the body and answer of POST /returns. POST /returns takes no
// client id: a re-sent return would be refused (409 `not_sold`: it is no longer sold), so the
// page sends it online only and never queues it.
import type { Schemas } from '@/api/types'
import type { ParsedScan } from '../../scan/parse'

export type TraceOut = Schemas['TraceOut']
export type ReturnOut = Schemas['ReturnOut']
/** The API's ReturnReason (app/logistics/schemas.py). */
export const REASONS = ['damaged', 'expired', 'wrong_goods', 'other'] as const
export type Reason = (typeof REASONS)[number]

export interface Origin {
  product: string | null
  lot: string | null
  productionDate: string | null
  status: string | null
  /** the state in words (a key of `counter.ret.statuses`): a unit given away by an exception
   * outbound is `sold` in the database but no sale (409 `not_sold`) */
  stateKey: string
  disposition: string | null
  holder: string | null
  /** the unit's last sale: when and by which organisation */
  soldAt: string | null
  soldBy: string | null
  /** sold to a consumer (and not returned since): what POST /returns takes */
  sold: boolean
  /** it came back from a consumer before (a second return of the same unit) */
  returnedBefore: boolean
}

/** The unit's original information as its trace tells it. */
export function originOf(trace: TraceOut): Origin {
  const events = [...trace.events].sort((a, b) => a.event_time.localeCompare(b.event_time))
  const sale = events.filter((e) => e.biz_step === 'retail_selling' && e.via === null).pop()
  const returned = events.some((e) => e.details?.return === 'consumer')
  const product = trace.product ? [trace.product.name, trace.product.spec].filter(Boolean).join(' · ') : null
  return {
    product,
    lot: trace.lot,
    productionDate: trace.production_date,
    status: trace.state?.status ?? null,
    stateKey: stateKey(trace.state),
    disposition: trace.state?.disposition ?? null,
    holder: trace.state?.holder?.name ?? null,
    soldAt: sale?.event_time ?? null,
    soldBy: sale?.location?.name ?? null,
    sold: trace.state?.status === 'sold' && trace.state.disposition === 'retail_sold',
    returnedBefore: returned,
  }
}

function stateKey(state: TraceOut['state']): string {
  if (!state) return 'unknown'
  return state.status === 'sold' && state.disposition !== 'retail_sold' ? 'given_away' : state.status
}

/** The path segment the trace is asked by: the serial of a scanned URL (a segment holds no
 * slash), else what was scanned. */
export function tracePath(read: ParsedScan): string {
  return `/trace/${encodeURIComponent(read.serial ?? read.code)}`
}

/** Why a scan cannot be the returned unit or the one given in exchange (an i18n key under
 * `counter.ret`), or null. The API says the same (422 `not_a_unit`, `same_unit`); said here
 * before anything is sent. */
export function scanProblem(read: ParsedScan, returned: ParsedScan | null): string | null {
  if (read.kind === 'invalid') return 'invalid'
  if (read.kind !== 'unit') return 'notAUnit'
  if (returned && (read.serial ?? read.code).toUpperCase() === (returned.serial ?? returned.code).toUpperCase()) return 'sameUnit'
  return null
}

/** The body of POST /returns. */
export function returnBody(code: string, reason: Reason, exchangeFor: string | null, note: string): Record<string, unknown> {
  const body: Record<string, unknown> = { code, reason }
  if (exchangeFor) body.exchange_for = exchangeFor
  if (note.trim()) body.note = note.trim()
  return body
}

/** The answer's lines, each an i18n key under `counter.ret.answer` and its values. */
export function answerLines(out: ReturnOut): { key: string; values: Record<string, string | number> }[] {
  const lines: { key: string; values: Record<string, string | number> }[] = [
    { key: 'returned', values: { serial: out.returned } },
    { key: `disposition.${out.disposition}`, values: {} },
  ]
  if (out.exchanged_for) lines.push({ key: 'exchanged', values: { serial: out.exchanged_for, docs: out.documents.join(', ') } })
  if (out.rebate_withdrawn !== null && out.rebate_withdrawn !== undefined) lines.push({ key: 'rebateWithdrawn', values: { id: out.rebate_withdrawn } })
  if (out.points_withdrawn !== null && out.points_withdrawn !== undefined) lines.push({ key: 'pointsWithdrawn', values: { id: out.points_withdrawn } })
  if (out.draw_withdrawn !== null && out.draw_withdrawn !== undefined) lines.push({ key: 'drawWithdrawn', values: { id: out.draw_withdrawn } })
  return lines
}
