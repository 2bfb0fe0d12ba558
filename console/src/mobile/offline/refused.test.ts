import { describe, expect, it } from 'vitest'

import { dismissRefusals, keepRefusals, MAX_REFUSALS, refusals, type Refusal } from './refused'

function refusal(id: string): Refusal {
  return { id, kind: 'doc_codes', label: id, status: 200, message: 'not_packed', at: 0 }
}

describe('refusals kept until dismissed', () => {
  it('keeps them per user, newest first, once per action, until dismissed', () => {
    keepRefusals(1, [refusal('a')])
    keepRefusals(1, [refusal('b'), refusal('a')])
    keepRefusals(2, [refusal('c')])
    expect(refusals(1).map((r) => r.id)).toEqual(['b', 'a'])
    dismissRefusals(1, ['b'])
    expect(refusals(1).map((r) => r.id)).toEqual(['a'])
    dismissRefusals(1)
    expect(refusals(1)).toEqual([])
    expect(refusals(2).map((r) => r.id)).toEqual(['c'])
    dismissRefusals(2)
  })

  it('keeps the newest few hundred', () => {
    keepRefusals(3, Array.from({ length: MAX_REFUSALS + 5 }, (_, i) => refusal(`r${i}`)))
    expect(refusals(3)).toHaveLength(MAX_REFUSALS)
    dismissRefusals(3)
  })
})
