import { describe, expect, it } from 'vitest'

import { adjustmentBody, adjustmentProblem, blankAdjustment, newClientId } from './adjust'

describe('points adjustment form', () => {
  it('signs the points by direction; an expiry always takes points', () => {
    const form = { ...blankAdjustment('c1'), amount: 30, reason: ' goodwill ' }
    expect(adjustmentBody(7, form)).toEqual({ member_id: 7, kind: 'adjustment', points: 30, reason: 'goodwill', client_id: 'c1' })
    expect(adjustmentBody(7, { ...form, direction: 'deduct' }).points).toBe(-30)
    expect(adjustmentBody(7, { ...form, kind: 'expiry', direction: 'add' }).points).toBe(-30)
  })

  it('refuses no amount, a fraction, too many points and a blank reason', () => {
    const form = { ...blankAdjustment('c1'), reason: 'x' }
    expect(adjustmentProblem(form)).toBe('')
    expect(adjustmentProblem({ ...form, amount: 0 })).toBe('amount')
    expect(adjustmentProblem({ ...form, amount: 1.5 })).toBe('amount')
    expect(adjustmentProblem({ ...form, amount: 1_000_001 })).toBe('amount')
    expect(adjustmentProblem({ ...form, reason: '  ' })).toBe('reason')
  })

  it('makes client ids the API takes, a new one each time', () => {
    const a = newClientId()
    expect(a).toMatch(/^[A-Za-z0-9._:-]{1,64}$/)
    expect(newClientId()).not.toBe(a)
  })
})
