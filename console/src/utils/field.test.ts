import { describe, expect, it } from 'vitest'

import {
  formatDistance,
  inPeriod,
  nameplateCode,
  nameplateStoreId,
  periodEnd,
  periodStart,
  planActions,
  planEditable,
  trackOrder,
} from './field'

describe('periods', () => {
  it('starts a week on its Monday, also across a month and a year', () => {
    expect(periodStart('week', '2026-12-02')).toBe('2026-11-30') // a Wednesday
    expect(periodStart('week', '2026-11-30')).toBe('2026-11-30') // the Monday itself
    expect(periodStart('week', '2026-12-06')).toBe('2026-11-30') // the Sunday
    expect(periodStart('week', '2027-01-01')).toBe('2026-12-28')
    expect(periodEnd('week', '2026-12-28')).toBe('2027-01-03')
  })

  it('starts a month on the 1st and ends it on its last day (leap years too)', () => {
    expect(periodStart('month', '2028-02-17')).toBe('2028-02-01')
    expect(periodEnd('month', '2028-02-01')).toBe('2028-02-29')
    expect(periodEnd('month', '2027-02-01')).toBe('2027-02-28')
    expect(periodEnd('month', '2026-12-01')).toBe('2026-12-31')
  })

  it('starts a quarter in January, April, July or October', () => {
    expect(periodStart('quarter', '2026-05-31')).toBe('2026-04-01')
    expect(periodStart('quarter', '2026-12-31')).toBe('2026-10-01')
    expect(periodStart('quarter', '2026-01-01')).toBe('2026-01-01')
    expect(periodEnd('quarter', '2026-04-01')).toBe('2026-06-30')
    expect(periodEnd('quarter', '2026-10-01')).toBe('2026-12-31')
  })

  it('knows whether a day lies within a period', () => {
    expect(inPeriod('week', '2026-11-30', '2026-12-06')).toBe(true)
    expect(inPeriod('week', '2026-11-30', '2026-12-07')).toBe(false)
    expect(inPeriod('month', '2026-12-01', '2026-11-30')).toBe(false)
    expect(inPeriod('quarter', '2026-10-01', '2026-12-31')).toBe(true)
  })

  it('refuses what is not a date', () => {
    expect(() => periodStart('week', '2026-1-2')).toThrow()
  })
})

describe('plan actions', () => {
  it('lets the rep edit and submit a draft or returned plan only', () => {
    expect(planEditable('draft')).toBe(true)
    expect(planEditable('returned')).toBe(true)
    expect(planEditable('submitted')).toBe(false)
    expect(planEditable('approved')).toBe(false)
    expect(planActions({ rep_id: 7, supervisor_id: 9, status: 'returned' }, 7, false)).toEqual({ edit: true, submit: true, decide: false })
    expect(planActions({ rep_id: 7, supervisor_id: 9, status: 'submitted' }, 7, true)).toEqual({ edit: false, submit: false, decide: false })
  })

  it('lets the rep\'s supervisor decide a submitted plan, not a draft', () => {
    expect(planActions({ rep_id: 7, supervisor_id: 9, status: 'submitted' }, 9, true).decide).toBe(true)
    expect(planActions({ rep_id: 7, supervisor_id: 9, status: 'draft' }, 9, true).decide).toBe(false)
    expect(planActions({ rep_id: 7, supervisor_id: 9, status: 'submitted' }, 9, false).decide).toBe(false)
    expect(planActions({ rep_id: 7, supervisor_id: 9, status: 'draft' }, null, true).edit).toBe(false)
  })

  it('offers the decision to no other holder of field.supervise (a probe: an org admin was offered it, 403)', () => {
    expect(planActions({ rep_id: 7, supervisor_id: 9, status: 'submitted' }, 11, true).decide).toBe(false)
    expect(planActions({ rep_id: 7, supervisor_id: null, status: 'submitted' }, 11, true).decide).toBe(false)
    expect(planActions({ rep_id: 7, supervisor_id: null, status: 'submitted' }, null, true).decide).toBe(false)
  })
})

describe('check-ins', () => {
  it('writes distances in metres, then kilometres', () => {
    expect(formatDistance(0)).toBe('0 m')
    expect(formatDistance(84.6)).toBe('85 m')
    expect(formatDistance(999.4)).toBe('999 m')
    expect(formatDistance(1234)).toBe('1.2 km')
    expect(formatDistance(36_400)).toBe('36 km')
    expect(formatDistance(null)).toBe('—')
  })

  it('orders the track by the phone\'s scan time, then the server\'s, then id', () => {
    const rows = [
      { id: 3, at: '2026-12-01T03:00:00Z', client_at: '2026-12-01T01:00:00Z' }, // queued offline
      { id: 1, at: '2026-12-01T02:00:00Z', client_at: null },
      { id: 2, at: '2026-12-01T02:00:00Z' },
    ]
    expect(trackOrder(rows).map((r) => r.id)).toEqual([3, 1, 2])
    expect(rows.map((r) => r.id)).toEqual([3, 1, 2]) // not sorted in place
  })

  it('reads a nameplate code from its URL or as typed', () => {
    expect(nameplateCode('https://t.example/m/n/N12.ABCDEF')).toBe('N12.ABCDEF')
    expect(nameplateCode('http://127.0.0.1:8000/m/n/N3.XY/?utm=1')).toBe('N3.XY')
    expect(nameplateCode('  N5.QQ ')).toBe('N5.QQ')
  })

  it('reads the store id a nameplate names, for a review queued offline', () => {
    expect(nameplateStoreId('https://t.example/m/n/N12.ABCDEF')).toBe(12)
    expect(nameplateStoreId('N7.X')).toBe(7)
    expect(nameplateStoreId('STORE-HZ-01')).toBeNull()
    expect(nameplateStoreId('N12')).toBeNull()
  })
})
