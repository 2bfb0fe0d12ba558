// The rules of a new password the phone checks before sending it (POST /auth/password checks
// them again): 8 to 256 characters counted as the server counts them — as typed (the schema,
// app/auth/schemas.py: code points, not UTF-16 units) and composed (NFKC, app/auth/passwords.py
// hashes that) — not the current password, and typed the same twice.
export const MIN_LENGTH = 8
export const MAX_LENGTH = 256

export type NewPasswordProblem = 'tooShort' | 'tooLong' | 'same'

const length = (text: string): number => [...text].length

/** What is wrong with the new password beside the current one; null when nothing is. */
export function newPasswordProblem(current: string, next: string): NewPasswordProblem | null {
  const composed = next.normalize('NFKC')
  if (Math.min(length(next), length(composed)) < MIN_LENGTH) return 'tooShort'
  if (length(next) > MAX_LENGTH) return 'tooLong'
  if (composed === current.normalize('NFKC')) return 'same'
  return null
}

/** 'mismatch' when the confirmation is not the new password as typed; else null. */
export function confirmationProblem(next: string, confirmation: string): 'mismatch' | null {
  return next === confirmation ? null : 'mismatch'
}
