import { describe, expect, it } from 'vitest'

import { evidenceRows, followUpOf, freezeReason, holdActions, leakSpan, NOTE_MAX } from './holds'

const holding = (...permissions: string[]) => (p: string) => permissions.includes(p)

describe('holdActions', () => {
  it('offers release and confirm on an open hold to a reviewer', () => {
    expect(holdActions({ state: 'open' }, holding('fraud.review'))).toEqual(['release', 'confirm'])
  })

  it('offers nothing once the hold is decided', () => {
    expect(holdActions({ state: 'released' }, holding('fraud.review'))).toEqual([])
    expect(holdActions({ state: 'confirmed' }, holding('fraud.review'))).toEqual([])
  })

  it('offers nothing without fraud.review', () => {
    expect(holdActions({ state: 'open' }, holding('alerts.read', 'members.write'))).toEqual([])
  })
})

describe('followUpOf', () => {
  it('freezes a member for members.write only', () => {
    expect(followUpOf({ party_kind: 'member' }, holding('members.write'))).toBe('freeze')
    expect(followUpOf({ party_kind: 'member' }, holding('users.write'))).toBeNull()
  })

  it('deactivates a clerk for users.write only', () => {
    expect(followUpOf({ party_kind: 'clerk' }, holding('users.write'))).toBe('deactivate')
    expect(followUpOf({ party_kind: 'clerk' }, holding('members.write'))).toBeNull()
  })
})

describe('freezeReason', () => {
  it('names the hold, then the note', () => {
    expect(freezeReason('Fraud hold #7 confirmed', '  ring of five  ')).toBe('Fraud hold #7 confirmed: ring of five')
  })

  it('is never blank: the hold alone for a blank note', () => {
    expect(freezeReason('Fraud hold #7 confirmed', ' \n ')).toBe('Fraud hold #7 confirmed')
  })

  it('keeps to the API limit, counting characters as the API does', () => {
    const reason = freezeReason('审核 #7', '𠀀'.repeat(NOTE_MAX))
    expect(Array.from(reason)).toHaveLength(NOTE_MAX)
    expect(reason.endsWith('𠀀')).toBe(true) // no half of a surrogate pair left at the end
  })
})

describe('evidenceRows', () => {
  it('shows plain values and lists of them on one row each', () => {
    expect(evidenceRows({ client_ip: '10.0.0.1', members: [3, 5, 8], checks: 9, user_agent: '' })).toEqual([
      { key: 'client_ip', root: 'client_ip', value: '10.0.0.1' },
      { key: 'members', root: 'members', value: '3, 5, 8' },
      { key: 'checks', root: 'checks', value: '9' },
      { key: 'user_agent', root: 'user_agent', value: '—' },
    ])
  })

  it('flattens nested objects and lists of objects', () => {
    const rows = evidenceRows({ place: { province: '浙江省', at: { lat: 30.2 } }, seen: [{ store: 4 }, { store: null }] })
    expect(rows.map((r) => [r.key, r.root, r.value])).toEqual([
      ['place.province', 'place', '浙江省'],
      ['place.at.lat', 'place', '30.2'],
      ['seen[0].store', 'seen', '4'],
      ['seen[1].store', 'seen', '—'],
    ])
  })

  it('shows empty values, and data nested too deep as JSON', () => {
    const deep = { a: { b: { c: { d: { e: { f: 1 } } } } } }
    expect(evidenceRows({ none: [], nothing: {}, ...deep })).toEqual([
      { key: 'none', root: 'none', value: '—' },
      { key: 'nothing', root: 'nothing', value: '—' },
      { key: 'a.b.c.d.e', root: 'a', value: '{"f":1}' },
    ])
  })

  it('is empty for no evidence (a manual hold)', () => {
    expect(evidenceRows({})).toEqual([])
    expect(evidenceRows(null)).toEqual([])
  })
})

describe('leakSpan', () => {
  it("is an export's range and an allocation's total", () => {
    expect(leakSpan({ source_kind: 'export', range_start: 100, range_end: 200 })).toEqual({ kind: 'range', start: 100, end: 200 })
    expect(leakSpan({ source_kind: 'allocation', range_start: null, range_end: 5000 })).toEqual({ kind: 'total', total: 5000 })
  })

  it('is null when unknown', () => {
    expect(leakSpan({ source_kind: 'export', range_start: null, range_end: null })).toBeNull()
    expect(leakSpan({ source_kind: 'allocation', range_start: null, range_end: null })).toBeNull()
  })
})
