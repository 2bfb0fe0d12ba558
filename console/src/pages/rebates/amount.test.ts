import { describe, expect, it } from 'vitest'

import { isRebateAmount, previousMonth, statementActions } from './amount'

describe('rebate amounts', () => {
  it('multiples of 0.5 from 0 to 100000', () => {
    for (const ok of [0, 0.5, 1, 2.5, 10, '3.5', 100_000]) expect(isRebateAmount(ok)).toBe(true)
    for (const bad of [0.3, 1.25, -0.5, 100_000.5, Number.NaN, Number.POSITIVE_INFINITY, '', null, undefined, 'abc'])
      expect(isRebateAmount(bad)).toBe(false)
  })
})

describe('statement actions', () => {
  it('follow the state machine: pending -> approved -> paid, rejected from either', () => {
    expect(statementActions('pending')).toEqual(['approve', 'reject'])
    expect(statementActions('approved')).toEqual(['pay', 'reject'])
    expect(statementActions('paid')).toEqual([])
    expect(statementActions('rejected')).toEqual([])
  })
})

describe('previous month', () => {
  it('wraps the year', () => {
    expect(previousMonth('2026-01-15')).toBe('2025-12')
    expect(previousMonth('2026-12-01')).toBe('2026-11')
  })
})
