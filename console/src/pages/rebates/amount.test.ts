import { describe, expect, it } from 'vitest'

import { isRebateAmount, parseRebateAmount, previousMonth, statementActions } from './amount'

describe('rebate amounts', () => {
  it('multiples of 0.5 from 0 to 100000', () => {
    for (const ok of [0, 0.5, 1, 2.5, 10, '3.5', 100_000]) expect(isRebateAmount(ok)).toBe(true)
    for (const bad of [0.3, 1.25, -0.5, 100_000.5, Number.NaN, Number.POSITIVE_INFINITY, '', null, undefined, 'abc'])
      expect(isRebateAmount(bad)).toBe(false)
  })

  // A probe: a brand admin who cleared the amount field but left a space (or a tab) in it was not
  // told "amount required": the check passed (Number('  ') is 0) and the rule was saved as 0 yuan,
  // silently removing the stores' rebate; '0x10' passed too and was sent as 16.
  it('refuses blank text and anything but plain decimal text', () => {
    for (const bad of [' ', '\t', ' \n ', '0x10', '0b1', '1e2', '+1', '-0', '.5', '5.', '1 2', 'Infinity'])
      expect(isRebateAmount(bad), JSON.stringify(bad)).toBe(false)
    for (const ok of [' 2.5 ', '0', '007', '100000.0']) expect(isRebateAmount(ok), ok).toBe(true)
  })

  it('sends the number of the trimmed text', () => {
    expect(parseRebateAmount(' 2.5\t')).toBe(2.5)
    expect(parseRebateAmount('0x10')).toBeNull()
    expect(parseRebateAmount('   ')).toBeNull()
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
