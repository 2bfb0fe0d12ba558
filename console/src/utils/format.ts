// Formatting for display: dates and times in China's time zone (Asia/Shanghai, whatever the
// browser's own zone), money in yuan, counts with digit grouping. null/undefined/'' -> '—'.
export const TIME_ZONE = 'Asia/Shanghai'
export const EMPTY = '—'

type DateInput = string | number | Date | null | undefined

function parts(value: Date, withTime: boolean): Record<string, string> {
  const format = new Intl.DateTimeFormat('en-GB', {
    timeZone: TIME_ZONE,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    ...(withTime ? { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' } : {}),
  })
  return Object.fromEntries(format.formatToParts(value).map((p) => [p.type, p.value]))
}

function toDate(value: DateInput): Date | null {
  if (value === null || value === undefined || value === '') return null
  const date = value instanceof Date ? value : new Date(value)
  return Number.isNaN(date.getTime()) ? null : date
}

/** 2024-03-01 08:05:09: the instant in Asia/Shanghai. */
export function formatDateTime(value: DateInput): string {
  const date = toDate(value)
  if (!date) return EMPTY
  const p = parts(date, true)
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`
}

/** 2024-03-01: the day in Asia/Shanghai (a plain date string such as "2024-03-01" stays as it is). */
export function formatDate(value: DateInput): string {
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value)) return value
  const date = toDate(value)
  if (!date) return EMPTY
  const p = parts(date, false)
  return `${p.year}-${p.month}-${p.day}`
}

/** The value-format of a date-time picker showing Asia/Shanghai wall-clock time, as the tables do
 * (whatever the browser's zone): its value from shanghaiWallClock, sent as shanghaiInstant. */
export const WALL_CLOCK = 'YYYY-MM-DD HH:mm:ss'

/** An instant as a picker shows it (WALL_CLOCK): its time in Asia/Shanghai; '' for none. */
export function shanghaiWallClock(value: DateInput): string {
  const text = formatDateTime(value)
  return text === EMPTY ? '' : text
}

/** A picked Asia/Shanghai wall-clock time (WALL_CLOCK) as the instant it names, with its offset
 * (China keeps +08:00 all year, no daylight saving); any other value as it is. */
export function shanghaiInstant(value: string): string
export function shanghaiInstant(value: string | null): string | null
export function shanghaiInstant(value: string | null): string | null {
  const match = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})$/.exec(value ?? '')
  return match ? `${match[1]}T${match[2]}+08:00` : value
}

/** Today in Asia/Shanghai, as YYYY-MM-DD (the API's day filters are Shanghai days). */
export function shanghaiToday(now: Date = new Date()): string {
  return formatDate(now)
}

function toNumber(value: number | string | null | undefined): number | null {
  if (value === null || value === undefined || value === '') return null
  const n = typeof value === 'number' ? value : Number(value)
  return Number.isFinite(n) ? n : null
}

/** ¥1,234.50 (zh-CN) or CN¥1,234.50 (en): yuan with two decimals; amounts may come as strings. */
export function formatMoney(value: number | string | null | undefined, locale = 'zh-CN'): string {
  const n = toNumber(value)
  if (n === null) return EMPTY
  return new Intl.NumberFormat(locale, { style: 'currency', currency: 'CNY' }).format(n)
}

/** 1,234,567 or 1,234.5: grouped digits, at most `digits` decimals. */
export function formatNumber(value: number | string | null | undefined, locale = 'zh-CN', digits = 2): string {
  const n = toNumber(value)
  if (n === null) return EMPTY
  return new Intl.NumberFormat(locale, { maximumFractionDigits: digits }).format(n)
}

/** 12.5% from 0.125. */
export function formatPercent(value: number | null | undefined, locale = 'zh-CN', digits = 1): string {
  const n = toNumber(value)
  if (n === null) return EMPTY
  return new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: digits }).format(n)
}
