import { describe, expect, it } from 'vitest'

import type { Outcome, QueuedAction } from './offline/queue'
import { errorCodes, errorMessage, refusalOf } from './verdicts'

function outcome(kind: QueuedAction['kind'], status: number, body: unknown): Outcome {
  const action: QueuedAction = { id: 'm-1', kind, user: 1, body: {}, label: 'x', created: 0, n: 0, attempts: 0 }
  return { action, ok: status < 300, status, body }
}

describe('answers as the phone shows them', () => {
  it('names the codes a refused sale names (422 bad_codes), in the app\'s language with the code', () => {
    const body = { error: { code: 'bad_codes', message: 'codes that cannot be sold', details: { codes: ['K7P2'] } } }
    expect(errorCodes(body)).toEqual(['K7P2'])
    expect(errorMessage(body, 422, 'en')).toBe('codes that cannot be sold (bad_codes): K7P2')
    expect(errorMessage(body, 422, 'zh-CN')).toBe('部分码不能售出（bad_codes）：K7P2')
    expect(errorMessage({ error: { code: 'x', message: 'no', details: null } }, 409, 'zh-CN')).toBe('no（x）')
    expect(errorMessage(null, 500, 'en')).toBe('HTTP 500 (http_500)')
  })

  it('finds the refusal of a document code inside a 200, not only a 4xx', () => {
    expect(refusalOf(outcome('doc_codes', 200, { code: 'S', result: 'rejected', reason: 'not_packed' }), 'zh-CN')).toBe('not_packed')
    expect(refusalOf(outcome('doc_codes', 200, { code: 'S', result: 'added' }), 'zh-CN')).toBeNull()
    expect(refusalOf(outcome('sale', 409, { error: { code: 'not_draft', message: 'the document is confirmed' } }), 'zh-CN')).toBe('单据已不是草稿（not_draft）')
    expect(refusalOf(outcome('inspection', 201, {}), 'en')).toBeNull()
  })
})
