// Rebate amounts (yuan): the API takes multiples of 0.5 from 0 to 100000 (app/rebates/schemas.py);
// checked here too, so a wrong amount is shown at the field before it is sent.
export const MAX_AMOUNT = 100_000

// Plain decimal text, as the API's JSON number is typed: not blank (Number('  ') is 0, a probe:
// a rule saved as 0 yuan), nor hex ('0x10' is 16), an exponent, a sign or Infinity.
const DECIMAL = /^\d+(\.\d+)?$/

/** The amount in a field's text (trimmed), or null when it is not plain decimal text. */
export function parseRebateAmount(value: number | string | null | undefined): number | null {
  if (typeof value === 'number') return value
  const text = value?.trim() ?? ''
  return DECIMAL.test(text) ? Number(text) : null
}

/** Is `value` a rebate amount the API takes: a multiple of 0.5 in [0, 100000]? */
export function isRebateAmount(value: number | string | null | undefined): boolean {
  const n = parseRebateAmount(value)
  return n !== null && Number.isFinite(n) && n >= 0 && n <= MAX_AMOUNT && Number.isInteger(n * 2)
}

/** Statement actions the state allows (the buttons a finance user with rebates.settle sees). */
export function statementActions(status: string): ('approve' | 'pay' | 'reject')[] {
  if (status === 'pending') return ['approve', 'reject']
  if (status === 'approved') return ['pay', 'reject']
  return []
}

/** The previous month (YYYY-MM) of a day (YYYY-MM-DD): what finance usually settles. */
export function previousMonth(day: string): string {
  const [y, m] = day.split('-').map(Number) as [number, number]
  return m === 1 ? `${y - 1}-12` : `${y}-${String(m - 1).padStart(2, '0')}`
}
