import 'fake-indexeddb/auto'
import { IDBFactory } from 'fake-indexeddb'
import { afterEach, describe, expect, it, vi } from 'vitest'

import {
  batchOutcomes,
  clientId,
  INSPECTION_BATCH,
  OfflineQueue,
  retryable,
  RETRY_CONFLICTS,
  type Outcome,
  type QueuedAction,
} from './queue'
import { sender } from './sync'

function fresh(): OfflineQueue {
  return new OfflineQueue('test', new IDBFactory())
}

function answer(actions: QueuedAction[], status: number, body: unknown = {}): Outcome[] {
  return actions.map((action) => ({ action, ok: status < 300, status, body }))
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

/** The server of POST /documents/{id}/codes: a code added once; a code it holds answers `added`
 * again only to the client id that added it (app/logistics/documents.py add_codes); a request
 * with a code over 256 characters is refused as a whole (400, its schema). */
function documentServer() {
  const held = new Map<string, string>()
  return async (_method: string, _path: string, body?: unknown): Promise<Response> => {
    const { codes, client_id } = body as { codes: string[]; client_id: string }
    if (codes.some((code) => code.length > 256)) return json(400, { error: { code: 'validation_failed' } })
    const items = codes.map((code) => {
      const owner = held.get(code)
      if (owner === undefined) held.set(code, client_id)
      return { code, result: owner === undefined || owner === client_id ? 'added' : 'duplicate', kind: 'case' }
    })
    return json(200, { added: items.filter((i) => i.result === 'added').length, rejected: 0, items })
  }
}

/** A queue as the app stored it before its order became the database's counter (version 1:
 * ordered by the phone's clock, `created`, then a per-page counter `n`). */
async function version1(name: string, factory: IDBFactory, actions: QueuedAction[]): Promise<void> {
  const open = factory.open(name, 1)
  open.onupgradeneeded = () => {
    const store = open.result.createObjectStore('queue', { keyPath: 'id' })
    store.createIndex('order', ['created', 'n'])
    for (const action of actions) store.put(action)
  }
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    open.onsuccess = () => resolve(open.result)
    open.onerror = () => reject(open.error)
  })
  db.close()
}

afterEach(() => vi.restoreAllMocks())

describe('OfflineQueue', () => {
  it('keeps actions in IndexedDB oldest first, each with its own client id', async () => {
    const q = fresh()
    const a = await q.add({ kind: 'inspection', user: 1, body: { code: 'A' }, label: 'A' })
    const b = await q.add({ kind: 'inspection', user: 1, body: { code: 'B' }, label: 'B' })
    await q.add({ kind: 'inspection', user: 2, body: { code: 'C' }, label: 'C' })
    expect(a.id).not.toBe(b.id)
    expect(a.id).toMatch(/^m-[0-9a-f]{32}$/)
    expect((await q.all(1)).map((x) => x.label)).toEqual(['A', 'B'])
    expect(await q.count()).toBe(3)
  })

  it('sends a document’s codes in one request and inspections in one batch', async () => {
    const q = fresh()
    for (const code of ['S1', 'S2', 'S3']) {
      await q.add({ kind: 'doc_codes', user: 1, target: 7, body: { code }, label: code })
    }
    await q.add({ kind: 'doc_codes', user: 1, target: 8, body: { code: 'S4' }, label: 'S4' })
    await q.add({ kind: 'inspection', user: 1, body: { code: 'U1' }, label: 'U1' })
    await q.add({ kind: 'inspection', user: 1, body: { code: 'U2' }, label: 'U2' })
    const calls: string[][] = []
    const outcomes = await q.flush(1, async (group) => {
      calls.push(group.map((a) => a.label))
      return answer(group, 200)
    })
    expect(calls.map((c) => c.join(',')).sort()).toEqual(['S1,S2,S3', 'S4', 'U1,U2'])
    expect(outcomes).toHaveLength(6)
    expect(await q.count()).toBe(0)
  })

  it('keeps everything pending while offline and sends it once when the network returns', async () => {
    const q = fresh()
    const queued = []
    for (let i = 0; i < 5; i++) {
      queued.push(await q.add({ kind: 'inspection', user: 1, body: { code: `U${i}` }, label: `U${i}` }))
    }
    const offline = await q.flush(1, async () => {
      throw new TypeError('Failed to fetch')
    })
    expect(offline).toEqual([])
    const pending = await q.all(1)
    expect(pending.map((a) => a.id).sort()).toEqual(queued.map((a) => a.id).sort())
    expect(pending.filter((a) => a.attempts === 1).length).toBeGreaterThan(0)
    expect(pending.some((a) => a.error === 'Failed to fetch')).toBe(true)

    const sent = new Map<string, number>()
    const online = async (group: QueuedAction[]) => {
      for (const a of group) sent.set(a.id, (sent.get(a.id) ?? 0) + 1)
      return answer(group, 201)
    }
    // two flushes at once (the online event and a new scan) share one pass over the queue
    const [first, second] = await Promise.all([q.flush(1, online), q.flush(1, online)])
    expect(first).toBe(second)
    expect(first).toHaveLength(5)
    expect([...sent.keys()].sort()).toEqual(queued.map((a) => a.id).sort())
    expect([...sent.values()].every((n) => n === 1)).toBe(true)
    expect(await q.count(1)).toBe(0)
    expect(await q.flush(1, online)).toEqual([])
  })

  it('keeps an action the server could not take (401, 429, 5xx) and drops a refused one', () => {
    expect([0, 401, 408, 429, 500, 503].every((status) => retryable(status))).toBe(true)
    expect([200, 201, 400, 403, 404, 409, 422].some((status) => retryable(status))).toBe(false)
    expect(retryable(429, { error: { code: 'rate_limited' } })).toBe(true)
  })

  it('keeps an action refused until the user replaces a password given by an administrator', () => {
    /** Scans queued offline, then an administrator's reset asking for a change: every request
     * is 403 `password_change_required` until the user changes it — a re-send then goes through,
     * where a refused action would be lost. Any other 403 stays a refusal. */
    expect(retryable(403, { error: { code: 'password_change_required' } })).toBe(true)
    expect(retryable(403, { error: { code: 'forbidden' } })).toBe(false)
  })

  it('drops a 429 `locked` (a code locked after wrong PINs): a re-send would not change it', () => {
    /** A probe: a rebate claim refused 429 `locked` was kept and re-sent every 30 s, nobody
     * looking; the page said "queued". */
    expect(retryable(429, { error: { code: 'locked', message: 'try again in 15 minutes' } })).toBe(false)
  })

  it('keeps an action answered a 409 that says "try again" (RETRY_CONFLICTS), drops any other 409', () => {
    /** A probe: 409 `retry` (app/errors.py: a deadlock or serialization failure, "retry the
     * request") and 409 `claim_conflict` ("the claim met another one; try again") were taken for
     * refusals and the actions dropped. */
    const conflict = (code: string) => ({ error: { code, message: 'try again' } })
    expect(retryable(409, conflict('retry'))).toBe(true)
    expect(retryable(409, { error: { code: 'retry', message: 'a concurrent change conflicted; retry the request' } })).toBe(true)
    expect([...RETRY_CONFLICTS].sort()).toEqual(['busy', 'claim_conflict', 'orders_busy', 'retry'])
    expect([...RETRY_CONFLICTS].every((code) => retryable(409, conflict(code)))).toBe(true)
    for (const code of ['client_id_reused', 'already_claimed', 'claim_withdrawn', 'not_sold', 'conflict', 'in_use']) {
      expect(retryable(409, conflict(code))).toBe(false)
    }
    expect(retryable(409, null)).toBe(false)
    expect(retryable(422, conflict('retry'))).toBe(false) // the code counts only on a 409
  })

  it('orders the queue by its own counter: a re-sent document request keeps its client id when the clock is put back', async () => {
    /** A probe: two cases scanned, the request times out after the server added them; the
     * phone's clock is corrected 10 minutes back (NTP, once the network returns); a third case
     * is scanned; the queue re-sends. The queue was ordered by Date.now(): the third scan came
     * first, the re-sent request went under its client id, and the server answered the first
     * two `duplicate` (the phone counted 1 case added of 3). */
    const q = fresh()
    const now = vi.spyOn(Date, 'now')
    now.mockReturnValue(1_800_000_000_000)
    await q.add({ kind: 'doc_codes', user: 1, target: 7, body: { code: 'CASE-1' }, label: '1' })
    now.mockReturnValue(1_800_000_000_500)
    await q.add({ kind: 'doc_codes', user: 1, target: 7, body: { code: 'CASE-2' }, label: '2' })
    const send = sender(documentServer())
    await q.flush(1, async (group) => {
      await send(group) // it reaches the server; its answer is lost
      throw new TypeError('Failed to fetch')
    })
    expect(await q.count(1)).toBe(2)

    now.mockReturnValue(1_800_000_000_000 - 600_000)
    await q.add({ kind: 'doc_codes', user: 1, target: 7, body: { code: 'CASE-3' }, label: '3' })
    expect((await q.all(1)).map((a) => a.label)).toEqual(['1', '2', '3'])
    const outcomes = await q.flush(1, send)
    const results = outcomes.map((o) => [o.action.body.code, (o.body as { result: string }).result])
    expect(results).toEqual([['CASE-1', 'added'], ['CASE-2', 'added'], ['CASE-3', 'added']])
  })

  it('answers `added` for a code a lost send added when the re-sent group is split', async () => {
    /** A probe: two cases scanned, the request reaches the server (both added), its answer is
     * lost; a third, malformed code (over 256 characters) is scanned into the same document. The
     * re-sent request is refused as a whole (400) and split, each code sent alone under its own
     * client id: the second case came back `duplicate` (added by the first request's id) and the
     * phone counted 1 case added of 2. Each goes under the group's client id; a code scanned
     * twice is still a duplicate the second time. */
    const q = fresh()
    for (const code of ['CASE-1', 'CASE-2']) {
      await q.add({ kind: 'doc_codes', user: 1, target: 7, body: { code }, label: code })
    }
    const send = sender(documentServer())
    await q.flush(1, async (group) => {
      await send(group) // it reaches the server; its answer is lost
      throw new TypeError('Failed to fetch')
    })
    for (const code of ['CASE-2', 'X'.repeat(300), 'CASE-3']) {
      await q.add({ kind: 'doc_codes', user: 1, target: 7, body: { code }, label: code.slice(0, 6) })
    }
    const outcomes = await q.flush(1, send)
    const results = outcomes.map((o) => [o.action.label, o.status, (o.body as { result?: string }).result ?? null])
    expect(results).toEqual([
      ['CASE-1', 200, 'added'],
      ['CASE-2', 200, 'added'],
      ['CASE-2', 200, 'duplicate'], // scanned twice
      ['XXXXXX', 400, null],
      ['CASE-3', 200, 'added'],
    ])
    expect(await q.count(1)).toBe(0)
  })

  it('reads a queue stored by the previous version in its order, and queues after it', async () => {
    const factory = new IDBFactory()
    const stored = (label: string, created: number, n: number): QueuedAction => ({
      id: `m-${label}`, kind: 'inspection', user: 1, body: { code: label }, label, created, n, attempts: 0,
    })
    // n restarted at 1 with each page: the order was (created, n)
    await version1('old', factory, [stored('B', 2000, 1), stored('A', 1000, 5), stored('C', 2000, 2)])
    const q = new OfflineQueue('old', factory)
    expect((await q.all(1)).map((a) => [a.label, a.n])).toEqual([['A', 1], ['B', 2], ['C', 3]])
    await q.add({ kind: 'inspection', user: 1, body: { code: 'D' }, label: 'D' })
    expect((await q.all(1)).map((a) => a.label)).toEqual(['A', 'B', 'C', 'D'])
  })

  it('drops a refused action (4xx) with its outcome but keeps a 5xx or 429 for later', async () => {
    const q = fresh()
    await q.add({ kind: 'claim', user: 1, body: { serial: 'X' }, label: 'refused' })
    await q.add({ kind: 'claim', user: 1, body: { serial: 'Y' }, label: 'busy' })
    const outcomes = await q.flush(
      1,
      async (group) => answer(group, group[0]!.label === 'refused' ? 422 : 503),
      1,
    )
    expect(outcomes.map((o) => [o.action.label, o.status])).toEqual([['refused', 422]])
    const left = await q.all(1)
    expect(left.map((a) => [a.label, a.attempts, a.error])).toEqual([['busy', 1, '503']])
  })

  it('sends only the signed-in user’s actions', async () => {
    const q = fresh()
    await q.add({ kind: 'inspection', user: 1, body: {}, label: 'mine' })
    await q.add({ kind: 'inspection', user: 2, body: {}, label: 'theirs' })
    const outcomes = await q.flush(1, async (group) => answer(group, 201))
    expect(outcomes.map((o) => o.action.label)).toEqual(['mine'])
    expect((await q.all()).map((a) => a.label)).toEqual(['theirs'])
  })

  it('stores a plain copy of a body that IndexedDB could not clone as it is', async () => {
    const q = fresh()
    const gps = new Proxy({ lat: 30.1, lng: 120.2 }, {}) // as Vue's reactive() makes
    const body = { code: 'U1', gps, at: { toJSON: () => 'now' } }
    const action = await q.add({ kind: 'inspection', user: 1, body, label: 'U1' })
    const [stored] = await q.all(1)
    expect(stored!.body).toEqual({ code: 'U1', gps: { lat: 30.1, lng: 120.2 }, at: 'now' })
    expect(stored!.id).toBe(action.id)
  })

  it('makes printable client ids the API accepts', () => {
    for (let i = 0; i < 50; i++) expect(clientId()).toMatch(/^[\x21-\x7e]{1,64}$/)
  })

  it('sends queued inspections in batches of 500, oldest first, each sent once', async () => {
    const q = fresh()
    const added: QueuedAction[] = []
    for (let i = 0; i < 1203; i++) {
      added.push(await q.add({ kind: 'inspection', user: 1, body: { code: `U${i}` }, label: `U${i}` }))
    }
    await q.add({ kind: 'sale', user: 1, body: { codes: ['X'] }, label: 'sale' })
    const batches: string[][] = []
    const outcomes = await q.flush(1, async (group) => {
      if (group[0]!.kind === 'inspection') batches.push(group.map((a) => a.id))
      return answer(group, 201)
    })
    expect(INSPECTION_BATCH).toBe(500)
    expect(batches.map((b) => b.length).sort((a, b) => b - a)).toEqual([500, 500, 203])
    expect(batches.flat().sort()).toEqual(added.map((a) => a.id).sort())
    expect(outcomes).toHaveLength(1204)
    expect(await q.count()).toBe(0)
  })

  it('keeps a batch queued when the request fails, and answers each scan of a batch', async () => {
    const q = fresh()
    for (let i = 0; i < 3; i++) {
      await q.add({ kind: 'inspection', user: 1, body: { code: `U${i}` }, label: `U${i}` })
    }
    const down = await q.flush(1, async (group) => batchOutcomes(group, 503, null), 4, 2)
    expect(down).toHaveLength(0)
    expect((await q.all(1)).map((a) => a.attempts)).toEqual([1, 1, 1])

    const group = await q.all(1)
    const scan = { id: 9, result: 'in_channel' }
    const body = {
      items: [
        { client_id: group[0]!.id, status: 201, scan },
        { client_id: group[1]!.id, status: 200, scan },
        { client_id: group[2]!.id, status: 422, scan, error: { code: 'counterfeit', message: 'x', details: scan } },
      ],
    }
    const outcomes = batchOutcomes(group, 200, body)
    expect(outcomes.map((o) => [o.action.id, o.ok, o.status])).toEqual([
      [group[0]!.id, true, 201],
      [group[1]!.id, true, 200],
      [group[2]!.id, false, 422],
    ])
    expect(outcomes[0]!.body).toEqual(scan)
    expect(outcomes[2]!.body).toEqual({ error: { code: 'counterfeit', message: 'x', details: scan } })
    // a whole-request failure (401: signed out) keeps every scan pending
    expect(batchOutcomes(group, 401, { error: {} }).every((o) => retryable(o.status))).toBe(true)
    // an answer that does not match the batch is not taken as the scans' answers
    expect(batchOutcomes(group, 200, { items: [] }).every((o) => retryable(o.status))).toBe(true)
  })
})
