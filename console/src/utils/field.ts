// The field force's rules as the console and the staff app show them (SPEC F1–F3; the server's
// app/field is the authority): a plan's period (a quarter, a month or a week starting on Monday)
// and what its status allows, a check-in's flag as a colour, distances in words, the daily track.
// Days are ISO dates ('YYYY-MM-DD'), computed in UTC so no time zone shifts them.

export type Period = 'quarter' | 'month' | 'week'
export type PlanStatus = 'draft' | 'submitted' | 'approved' | 'returned'
export type CheckinFlag = 'ok' | 'out_of_range' | 'no_store_position'

export const PERIODS: readonly Period[] = ['quarter', 'month', 'week']
export const PLAN_STATUSES: readonly PlanStatus[] = ['draft', 'submitted', 'approved', 'returned']

function parse(day: string): Date {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day)
  if (!match) throw new Error(`not a date: ${day}`)
  return new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])))
}

function iso(date: Date): string {
  return date.toISOString().slice(0, 10)
}

/** The first day of the period that holds `day`: 1 Jan/Apr/Jul/Oct, the 1st, or the Monday. */
export function periodStart(period: Period, day: string): string {
  const d = parse(day)
  if (period === 'week') {
    const back = (d.getUTCDay() + 6) % 7 // Monday 0 … Sunday 6
    return iso(new Date(d.getTime() - back * 86_400_000))
  }
  const month = period === 'quarter' ? d.getUTCMonth() - (d.getUTCMonth() % 3) : d.getUTCMonth()
  return iso(new Date(Date.UTC(d.getUTCFullYear(), month, 1)))
}

/** The last day of the period starting on `start`. */
export function periodEnd(period: Period, start: string): string {
  const d = parse(start)
  if (period === 'week') return iso(new Date(d.getTime() + 6 * 86_400_000))
  const months = period === 'quarter' ? 3 : 1
  return iso(new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + months, 0)))
}

/** Does `day` lie within the period starting on `start`? */
export function inPeriod(period: Period, start: string, day: string): boolean {
  return day >= start && day <= periodEnd(period, start)
}

/** A plan's rep may edit it while it is a draft or returned (then submits it again). */
export function planEditable(status: PlanStatus): boolean {
  return status === 'draft' || status === 'returned'
}

/** What the user may do with a plan: its rep edits and submits; the rep's supervisor
 * (`supervisor_id`, holding field.supervise) decides a submitted plan, nobody else (the API
 * answers anyone else 403 not_supervisor, an org admin reading the plan too). */
export function planActions(
  plan: { rep_id: number; supervisor_id: number | null; status: PlanStatus },
  userId: number | null | undefined,
  supervises: boolean,
): { edit: boolean; submit: boolean; decide: boolean } {
  const known = userId !== null && userId !== undefined
  const own = known && plan.rep_id === userId
  return {
    edit: own && planEditable(plan.status),
    submit: own && planEditable(plan.status),
    decide: known && supervises && plan.supervisor_id === userId && plan.status === 'submitted',
  }
}

/** A distance for people: "85 m", "1.2 km", "36 km"; '—' when unknown. */
export function formatDistance(metres: number | null | undefined): string {
  if (metres === null || metres === undefined || !Number.isFinite(metres)) return '—'
  if (metres < 1000) return `${Math.round(metres)} m`
  const km = metres / 1000
  return `${km < 10 ? km.toFixed(1) : Math.round(km)} km`
}

/** A check-in flag's colour: green in range, red out of range (kept, flagged), amber unknown. */
export const FLAG_TONE: Record<CheckinFlag, 'ok' | 'error' | 'warn'> = {
  ok: 'ok',
  out_of_range: 'error',
  no_store_position: 'warn',
}

/** The same as Element Plus tag types. */
export const FLAG_TAG: Record<CheckinFlag, 'success' | 'danger' | 'warning'> = {
  ok: 'success',
  out_of_range: 'danger',
  no_store_position: 'warning',
}

/** A check-in's time as the rep lived it: the phone's scan time when it was sent, else the server's. */
export function checkinTime(row: { at: string; client_at?: string | null }): string {
  return row.client_at ?? row.at
}

/** The daily track: check-ins in time order (earliest first), ties by id. */
export function trackOrder<T extends { id: number; at: string; client_at?: string | null }>(rows: readonly T[]): T[] {
  return [...rows].sort((a, b) => {
    const diff = Date.parse(checkinTime(a)) - Date.parse(checkinTime(b))
    return diff !== 0 ? diff : a.id - b.id
  })
}

/** A nameplate's code from a scan or a typed text: the code itself, or the last part of its URL (…/m/n/<code>). */
export function nameplateCode(text: string): string {
  const trimmed = text.trim()
  const match = /\/n\/([^/?#]+)\/?(?:[?#].*)?$/.exec(trimmed)
  return match?.[1] ? decodeURIComponent(match[1]) : trimmed
}

/** The store id a nameplate code names (N<store id>.<tag>), or null; the server checks the tag. */
export function nameplateStoreId(text: string): number | null {
  const match = /^N(\d{1,18})\./.exec(nameplateCode(text))
  return match?.[1] ? Number(match[1]) : null
}
