import { describe, expect, it } from 'vitest'

import { parseScan } from '../../scan/parse'
import { answerLines, originOf, returnBody, scanProblem, tracePath, type TraceOut } from './returns'
import messages from './messages'

type Event = TraceOut['events'][number]
const store = { id: 7, name: 'Hangzhou West Lake Store', kind: 'store' }

function event(fields: Partial<Event>): Event {
  return {
    id: 1, event_id: 'urn:uuid:1', type: 'ObjectEvent', action: 'OBSERVE', biz_step: 'receiving',
    disposition: null, event_time: '2026-11-10T08:00:00Z', tz_offset: '+08:00', record_time: '2026-11-10T08:00:00Z',
    read_point: null, location: null, source: null, destination: null, biz_transactions: null, parent: null,
    child_count: 0, via: null, details: null, error_declaration: null, ...fields,
  }
}

function trace(status: string, disposition: string, events: Event[]): TraceOut {
  return {
    kind: 'unit', code: 'U1', lot: 'LOG1', production_date: '2026-11-10',
    product: { id: 1, name: 'Sun cream', spec: '50 ml', gtin: null },
    batch: { issued_at: '2026-11-01T00:00:00Z', printer: null, batch_no: 1, index: 0 },
    state: { status, disposition, holder: store, parent: null, channel: null, since: '2026-11-10T08:00:00Z', shipped_at: null, updated_at: '2026-11-12T08:00:00Z' },
    containers: [], contents: [], events,
  } as TraceOut
}

describe("a returned unit's original information (its trace)", () => {
  it('names the product, the lot and the last sale: when and where', () => {
    const sold = trace('sold', 'retail_sold', [
      event({ id: 3, biz_step: 'retail_selling', event_time: '2026-11-12T03:00:00Z', location: store }),
      event({ id: 2, biz_step: 'receiving', event_time: '2026-11-11T03:00:00Z' }),
      // a case's event seen through its container is not the unit's sale
      event({ id: 4, biz_step: 'retail_selling', event_time: '2026-11-13T03:00:00Z', via: 'C1', location: { ...store, name: 'Other' } }),
    ])
    const origin = originOf(sold)
    expect(origin).toMatchObject({
      product: 'Sun cream · 50 ml', lot: 'LOG1', sold: true, stateKey: 'sold',
      soldAt: '2026-11-12T03:00:00Z', soldBy: 'Hangzhou West Lake Store', returnedBefore: false,
    })
  })

  it('says a unit given away or still in stock is no sale to take back (the API: 409 not_sold)', () => {
    expect(originOf(trace('sold', 'non_sellable_other', [])).sold).toBe(false)
    expect(originOf(trace('sold', 'non_sellable_other', [])).stateKey).toBe('given_away')
    expect(originOf(trace('active', 'in_progress', [])).sold).toBe(false)
    expect(originOf({ ...trace('active', 'x', []), state: null }).stateKey).toBe('unknown')
  })

  it('tells a unit returned before', () => {
    const again = trace('sold', 'retail_sold', [event({ details: { return: 'consumer', reason: 'other' } })])
    expect(originOf(again).returnedBefore).toBe(true)
  })

  it('has a label in both languages for every state it can show', () => {
    for (const key of ['active', 'sold', 'void', 'destroyed', 'given_away', 'unknown']) {
      expect(messages['zh-CN'].ret.statuses).toHaveProperty(key)
      expect(messages.en.ret.statuses).toHaveProperty(key)
    }
  })

  it('asks the trace by the serial of a scanned URL (a path segment holds no slash)', () => {
    expect(tracePath(parseScan('https://t.example/c/ABC%2F1'))).toBe('/trace/ABC%2F1')
    expect(tracePath(parseScan('ABC123'))).toBe('/trace/ABC123')
  })
})

describe('the return as sent and answered', () => {
  it('refuses a case, a non-code and the returned unit itself before sending', () => {
    const unit = parseScan('ABC123')
    expect(scanProblem(unit, null)).toBeNull()
    expect(scanProblem(parseScan('(00)123456789012345675'), null)).toBe('notAUnit')
    expect(scanProblem(parseScan('https://t.example/c/abc123'), unit)).toBe('sameUnit')
    expect(scanProblem(parseScan('ABC124'), unit)).toBeNull()
    expect(scanProblem(parseScan('a b'), null)).toBe('invalid')
  })

  it('sends the exchange and the note only when given', () => {
    expect(returnBody('U1', 'damaged', null, '  ')).toEqual({ code: 'U1', reason: 'damaged' })
    expect(returnBody('U1', 'other', 'U2', ' box torn ')).toEqual({ code: 'U1', reason: 'other', exchange_for: 'U2', note: 'box torn' })
  })

  it('reads the answer: disposition, the exchange sale, a rebate and points withdrawn', () => {
    const lines = answerLines({ returned: 'U1', disposition: 'damaged', exchanged_for: 'U2', documents: ['XS1'], rebate_withdrawn: 4, points_withdrawn: null })
    expect(lines.map((l) => l.key)).toEqual(['returned', 'disposition.damaged', 'exchanged', 'rebateWithdrawn'])
    expect(lines[2]!.values).toEqual({ serial: 'U2', docs: 'XS1' })
    for (const d of ['returned', 'damaged', 'expired']) expect(messages.en.ret.answer.disposition).toHaveProperty(d)
  })

  it('names the lucky draw a return withdrew', () => {
    const lines = answerLines({ returned: 'U1', disposition: 'returned', exchanged_for: null, documents: [], points_withdrawn: 7, draw_withdrawn: 9 })
    expect(lines.map((l) => l.key)).toEqual(['returned', 'disposition.returned', 'pointsWithdrawn', 'drawWithdrawn'])
    expect(lines[3]!.values).toEqual({ id: 9 })
    expect(messages.en.ret.answer).toHaveProperty('drawWithdrawn')
  })
})
