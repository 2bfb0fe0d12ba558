// The change-password page's checks before anything is sent.
import { describe, expect, it } from 'vitest'

import { confirmationProblem, newPasswordProblem } from './password'

describe('a new password as the phone checks it', () => {
  it('is 8 to 256 characters, counted as the server counts them', () => {
    expect(newPasswordProblem('old-secret', '1234567')).toBe('tooShort')
    expect(newPasswordProblem('old-secret', '12345678')).toBeNull()
    expect(newPasswordProblem('old-secret', '🔑🔑🔑🔑🔑🔑🔑')).toBe('tooShort') // 14 UTF-16 units, 7 characters
    // "e" + a combining accent, four times: 8 as typed, 4 composed (the server hashes those)
    expect(newPasswordProblem('old-secret', 'e\u0301'.repeat(4))).toBe('tooShort')
    expect(newPasswordProblem('old-secret', 'x'.repeat(256))).toBeNull()
    expect(newPasswordProblem('old-secret', 'x'.repeat(257))).toBe('tooLong')
  })

  it('is not the current one, also when only its composition differs', () => {
    expect(newPasswordProblem('old-secret', 'old-secret')).toBe('same')
    expect(newPasswordProblem('caf\u00e9-latte', 'cafe\u0301-latte')).toBe('same')
    expect(newPasswordProblem('old-secret', 'Old-secret')).toBeNull()
  })

  it('is confirmed by typing it the same again', () => {
    expect(confirmationProblem('new-secret', 'new-secret')).toBeNull()
    expect(confirmationProblem('new-secret', 'new-secreT')).toBe('mismatch')
    expect(confirmationProblem('new-secret', '')).toBe('mismatch')
  })
})
