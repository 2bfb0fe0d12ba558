import { describe, expect, it } from 'vitest'

import { REASON_MAX, reasonFits } from './reason'

describe('reasonFits', () => {
  it('takes up to 500 characters once trimmed', () => {
    expect(REASON_MAX).toBe(500)
    expect(reasonFits('x'.repeat(500))).toBe(true)
    expect(reasonFits(`  ${'x'.repeat(500)}\n`)).toBe(true)
    expect(reasonFits('x'.repeat(501))).toBe(false)
    expect(reasonFits('')).toBe(true) // blank: the prompt's pattern says so
    expect(reasonFits(null)).toBe(true)
  })

  it('counts characters as the API does, not UTF-16 units', () => {
    expect(reasonFits('😀'.repeat(500))).toBe(true) // 1,000 UTF-16 units
    expect(reasonFits('😀'.repeat(501))).toBe(false)
  })
})
