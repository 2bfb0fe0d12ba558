// Points of a product's rule (K2): whole numbers from 0 to 1,000,000 (app/members/
// schemas_points.py ``Points``), typed as text and checked before they are sent.

export const MAX_POINTS = 1_000_000

/** Whether the text is plain digits (blanks around forgiven) naming 0 … 1,000,000. A blank, a
 * sign, a decimal point, an exponent or a hex prefix is refused: Number(' ') is 0 and
 * Number('0x10') is 16, neither what was meant. */
export function isPoints(text: string | number | null | undefined): boolean {
  return parsePoints(text) !== null
}

/** The points of the text, or null when it is not a valid number of points. */
export function parsePoints(text: string | number | null | undefined): number | null {
  if (typeof text === 'number') return Number.isInteger(text) && text >= 0 && text <= MAX_POINTS ? text : null
  if (typeof text !== 'string') return null
  const value = text.trim()
  if (!/^\d{1,7}$/.test(value)) return null
  const n = Number(value)
  return n <= MAX_POINTS ? n : null
}
