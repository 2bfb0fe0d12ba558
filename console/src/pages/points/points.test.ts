import { describe, expect, it } from 'vitest'

import { isPoints, parsePoints } from './points'

describe('points of a rule', () => {
  it('are whole numbers from 0 to 1,000,000', () => {
    for (const ok of ['0', '1', ' 20 ', '007', '1000000', 5, 0]) expect(isPoints(ok), String(ok)).toBe(true)
    expect(parsePoints(' 20\t')).toBe(20)
  })

  // as the rebate amounts: Number(' ') is 0 and Number('0x10') is 16 — neither what was meant
  it('refuse blanks, signs, decimals, exponents, hex and anything over the maximum', () => {
    for (const bad of ['', ' ', '-1', '+1', '1.5', '1e3', '0x10', '1 000', '1000001', '99999999', 'abc', 1.5, -1, 1_000_001, null, undefined])
      expect(isPoints(bad as string), JSON.stringify(bad)).toBe(false)
  })
})
