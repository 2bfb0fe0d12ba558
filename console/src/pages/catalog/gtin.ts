// GTINs as the API takes them (app/catalog/service.py ``_gtin14``, the Rust ``normalize_gtin``):
// 8, 12, 13 or 14 digits whose last is the GS1 check digit, never all zeros; stored as GTIN-14.
// Checked here before a form is sent, so a typo is named at its field (the API checks again:
// 400 ``invalid_gtin``).

export type GtinProblem = 'digits' | 'checkDigit' | 'zeros'

/** The GS1 check digit of the digits before it (mod 10, weights 3 and 1 from the right). */
export function checkDigit(body: string): number {
  let sum = 0
  for (let i = 0; i < body.length; i++) {
    const digit = body.charCodeAt(body.length - 1 - i) - 48
    sum += digit * (i % 2 === 0 ? 3 : 1)
  }
  return (10 - (sum % 10)) % 10
}

/** Why the text is not a GTIN, or null when it is one (surrounding blanks forgiven). */
export function gtinProblem(text: string): GtinProblem | null {
  const value = text.trim()
  if (!/^(\d{8}|\d{12,14})$/.test(value)) return 'digits'
  if (/^0+$/.test(value)) return 'zeros'
  return checkDigit(value.slice(0, -1)) === Number(value.slice(-1)) ? null : 'checkDigit'
}

/** The GTIN-14 of a valid GTIN (left-padded with zeros), as the API stores and answers it. */
export function gtin14(text: string): string {
  return text.trim().padStart(14, '0')
}
