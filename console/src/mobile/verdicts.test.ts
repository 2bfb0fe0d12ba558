import { describe, expect, it } from 'vitest'

import type { Outcome, QueuedAction } from './offline/queue'
import { errorCodes, errorMessage, reasonText, refusalOf } from './verdicts'
import { ZH_CN } from '@/i18n/apiErrors'

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
    expect(refusalOf(outcome('doc_codes', 200, { code: 'S', result: 'rejected', reason: 'not_packed' }), 'zh-CN')).toBe('此箱码未装箱，或不是本单位可收发的货品（not_packed）')
    expect(refusalOf(outcome('doc_codes', 200, { code: 'S', result: 'rejected', reason: 'not_packed' }), 'en')).toBe('not_packed')
    expect(refusalOf(outcome('doc_codes', 200, { code: 'S', result: 'added' }), 'zh-CN')).toBeNull()
    expect(refusalOf(outcome('sale', 409, { error: { code: 'not_draft', message: 'the document is confirmed' } }), 'zh-CN')).toBe('单据已不是草稿（not_draft）')
    expect(refusalOf(outcome('inspection', 201, {}), 'en')).toBeNull()
  })

  it("shows a code's reason inside a 200 in the clerk's language, with the reason", () => {
    // a probe: the phone showed 已拒绝：not_activated, the commonest refusal of a document scan
    expect(reasonText('not_activated', 'zh-CN')).toBe('此码未激活，或不是本单位可收发的货品（not_activated）')
    expect(reasonText('forged', 'zh-CN')).toBe(`${ZH_CN.forged}（forged）`) // read_codes' reasons alike
    expect(reasonText('not_activated', 'en')).toBe('not_activated')
    expect(reasonText('a_new_reason', 'zh-CN')).toBe('a_new_reason') // no text yet: as the API says it
    expect(reasonText(undefined, 'zh-CN')).toBe('rejected')
  })
})
