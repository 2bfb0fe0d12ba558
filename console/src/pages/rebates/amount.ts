// Rebate amounts (yuan): the API takes multiples of 0.5 from 0 to 100000 (app/rebates/schemas.py);
// checked here too, so a wrong amount is shown at the field before it is sent.
export const MAX_AMOUNT = 100_000

/** Is `value` a rebate amount the API takes: a multiple of 0.5 in [0, 100000]? */
export function isRebateAmount(value: number | string | null | undefined): boolean {
  if (value === null || value === undefined || value === '') return false
  const n = typeof value === 'number' ? value : Number(value)
  return Number.isFinite(n) && n >= 0 && n <= MAX_AMOUNT && Number.isInteger(n * 2)
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
