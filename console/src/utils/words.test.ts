import { describe, expect, it } from 'vitest'

import { wordsOf } from './words'

const messages: Record<string, string> = { 'inspections.reasons.never_shipped': '从未出货' }
const t = (key: string) => messages[key] ?? key
const te = (key: string) => key in messages

describe('wordsOf', () => {
  it('gives the words of a code, the code without words, a dash for none', () => {
    expect(wordsOf(t, te, 'inspections.reasons', 'never_shipped')).toBe('从未出货')
    expect(wordsOf(t, te, 'inspections.reasons', 'added_later')).toBe('added_later')
    expect(wordsOf(t, te, 'inspections.reasons', null)).toBe('—')
    expect(wordsOf(t, te, 'inspections.reasons', '')).toBe('—')
  })
})
