import { describe, expect, it } from 'vitest'

import type { Outcome, QueuedAction } from './offline/queue'
import { errorCodes, errorMessage, refusalOf } from './verdicts'

function outcome(kind: QueuedAction['kind'], status: number, body: unknown): Outcome {
  const action: QueuedAction = { id: 'm-1', kind, user: 1, body: {}, label: 'x', created: 0, n: 0, attempts: 0 }
  return { action, ok: status < 300, status, body }
}

describe('answers as the phone shows them', () => {
  it('names the codes a refused sale names (422 bad_codes)', () => {
    const body = { error: { code: 'bad_codes', message: 'codes that cannot be sold', details: { codes: ['K7P2'] } } }
    expect(errorCodes(body)).toEqual(['K7P2'])
    expect(errorMessage(body, 422)).toBe('codes that cannot be sold: K7P2')
    expect(errorMessage({ error: { code: 'x', message: 'no', details: null } }, 409)).toBe('no')
    expect(errorMessage(null, 500)).toBe('HTTP 500')
  })

  it('finds the refusal of a document code inside a 200, not only a 4xx', () => {
    expect(refusalOf(outcome('doc_codes', 200, { code: 'S', result: 'rejected', reason: 'not_packed' }))).toBe('not_packed')
    expect(refusalOf(outcome('doc_codes', 200, { code: 'S', result: 'added' }))).toBeNull()
    expect(refusalOf(outcome('sale', 422, { error: { message: 'no' } }))).toBe('no')
    expect(refusalOf(outcome('inspection', 201, {}))).toBeNull()
  })
})
