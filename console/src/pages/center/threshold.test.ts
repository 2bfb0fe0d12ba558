import { describe, expect, it } from 'vitest'

import { thresholdState, validMinimum } from './threshold'

describe('low-stock thresholds', () => {
  it('tells off, empty, below and ok apart', () => {
    expect(thresholdState({ min_units: 0, on_hand: 0 })).toBe('off')
    expect(thresholdState({ min_units: 5, on_hand: 0 })).toBe('empty')
    expect(thresholdState({ min_units: 5, on_hand: 4 })).toBe('below')
    expect(thresholdState({ min_units: 5, on_hand: 5 })).toBe('ok')
  })

  it('takes whole minimums of 0 to a billion, typed or numbers', () => {
    expect(validMinimum(0)).toBe(0)
    expect(validMinimum('12')).toBe(12)
    expect(validMinimum(1_000_000_000)).toBe(1_000_000_000)
    expect(validMinimum(-1)).toBeNull()
    expect(validMinimum(2.5)).toBeNull()
    expect(validMinimum('')).toBeNull()
    expect(validMinimum(1_000_000_001)).toBeNull()
    expect(validMinimum(undefined)).toBeNull()
  })
})
