import { describe, expect, it } from 'vitest'

import {
  EMPTY,
  formatDate,
  formatDateTime,
  formatMoney,
  formatNumber,
  formatPercent,
  shanghaiInstant,
  shanghaiToday,
  shanghaiWallClock,
} from './format'

describe('dates and times are shown in Asia/Shanghai', () => {
  it('turns a UTC instant into Shanghai time (UTC+8, no daylight saving)', () => {
    expect(formatDateTime('2024-03-01T00:05:09Z')).toBe('2024-03-01 08:05:09')
    expect(formatDateTime('2024-07-01T12:00:00+00:00')).toBe('2024-07-01 20:00:00')
    expect(formatDateTime(new Date(Date.UTC(2024, 0, 1, 0, 0, 0)))).toBe('2024-01-01 08:00:00')
  })

  it('puts late UTC evenings on the next Shanghai day', () => {
    expect(formatDate('2024-12-31T16:30:00Z')).toBe('2025-01-01')
    expect(formatDate('2024-12-31T15:59:59Z')).toBe('2024-12-31')
    expect(shanghaiToday(new Date('2024-06-30T20:00:00Z'))).toBe('2024-07-01')
  })

  it('keeps a plain date as it is and shows nothing as a dash', () => {
    expect(formatDate('2024-02-29')).toBe('2024-02-29')
    expect(formatDateTime(null)).toBe(EMPTY)
    expect(formatDateTime(undefined)).toBe(EMPTY)
    expect(formatDateTime('')).toBe(EMPTY)
    expect(formatDateTime('not a date')).toBe(EMPTY)
  })

  it('shows midnight as 00, not 24', () => {
    expect(formatDateTime('2024-03-01T16:00:00Z')).toBe('2024-03-02 00:00:00')
  })
})

describe('money and numbers', () => {
  it('shows yuan with two decimals and grouping, from numbers or decimal strings', () => {
    expect(formatMoney(1234.5)).toBe('¥1,234.50')
    expect(formatMoney('1234567.891')).toBe('¥1,234,567.89')
    expect(formatMoney(0)).toBe('¥0.00')
    expect(formatMoney(-2.5)).toBe('-¥2.50')
    expect(formatMoney(2.5, 'en')).toBe('CN¥2.50')
    expect(formatMoney(null)).toBe(EMPTY)
    expect(formatMoney('abc')).toBe(EMPTY)
  })

  it('groups digits and limits decimals', () => {
    expect(formatNumber(1234567)).toBe('1,234,567')
    expect(formatNumber(1234.5678)).toBe('1,234.57')
    expect(formatNumber('42')).toBe('42')
    expect(formatNumber(0.5, 'en', 0)).toBe('1')
    expect(formatNumber(undefined)).toBe(EMPTY)
  })

  it('shows fractions as percentages', () => {
    expect(formatPercent(0.125)).toBe('12.5%')
    expect(formatPercent(1)).toBe('100%')
    expect(formatPercent(null)).toBe(EMPTY)
  })
})

describe('date-time pickers in Shanghai time (gifts, promotions, draws)', () => {
  it('show an instant as its Shanghai wall-clock time and send a picked one with +08:00', () => {
    // a probe: the pickers showed and sent the browser's zone while the tables show Shanghai's
    expect(shanghaiWallClock('2026-12-31T16:00:00Z')).toBe('2027-01-01 00:00:00')
    expect(shanghaiWallClock(null)).toBe('')
    expect(shanghaiInstant('2027-01-01 00:00:00')).toBe('2027-01-01T00:00:00+08:00')
    expect(Date.parse(shanghaiInstant(shanghaiWallClock('2026-05-04T03:02:01Z')))).toBe(Date.parse('2026-05-04T03:02:01Z'))
    expect(shanghaiInstant(null)).toBeNull()
    expect(shanghaiInstant('2027-01-01T00:00:00+08:00')).toBe('2027-01-01T00:00:00+08:00') // as it is
  })
})
