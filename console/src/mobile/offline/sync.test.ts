import { describe, expect, it } from 'vitest'

import type { QueuedAction } from './queue'
import { sender } from './sync'

function action(kind: QueuedAction['kind'], body: Record<string, unknown>, target?: number): QueuedAction {
  const id = `m-${Math.random().toString(16).slice(2)}`
  return { id, kind, user: 1, body, label: id, created: Date.now(), n: 0, attempts: 0, target }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

describe('sender', () => {
  it('sends each scan of a batch the server refused as a whole alone: only the bad one is refused', async () => {
    const calls: string[] = []
    const send = sender(async (_method, path, body) => {
      calls.push(path)
      const bad = (b: Record<string, unknown>) => String(b.store_code).includes(' ')
      if (path === '/inspections/batch') {
        const items = (body as { items: Record<string, unknown>[] }).items
        return items.some(bad) ? json(400, { error: { code: 'validation_failed' } }) : json(200, { items: [] })
      }
      return bad(body as Record<string, unknown>)
        ? json(400, { error: { code: 'validation_failed' } })
        : json(201, { id: 1, result: 'in_channel' })
    })
    const group = [
      action('inspection', { code: 'A', store_code: 'STORE-1' }),
      action('inspection', { code: 'B', store_code: 'NOT A CODE' }),
      action('inspection', { code: 'C', store_code: 'STORE-1' }),
    ]
    const outcomes = await send(group)
    expect(calls).toEqual(['/inspections/batch', '/inspections', '/inspections', '/inspections'])
    expect(outcomes.map((o) => [o.action.id, o.status])).toEqual([
      [group[0]!.id, 201],
      [group[1]!.id, 400],
      [group[2]!.id, 201],
    ])
  })

  it('sends a document’s codes one by one when one too long a code fails the request', async () => {
    const calls: number[] = []
    const send = sender(async (_method, _path, body) => {
      const codes = (body as { codes: string[] }).codes
      calls.push(codes.length)
      if (codes.some((c) => c.length > 256)) return json(400, { error: { code: 'validation_failed' } })
      return json(200, { items: codes.map((code) => ({ code, result: 'added' })) })
    })
    const group = [action('doc_codes', { code: 'U1' }, 7), action('doc_codes', { code: 'X'.repeat(300) }, 7)]
    const outcomes = await send(group)
    expect(calls).toEqual([2, 1, 1])
    expect(outcomes.map((o) => o.status)).toEqual([200, 400])
    expect(outcomes[0]!.body).toEqual({ code: 'U1', result: 'added' })
  })

  it('sends a document’s codes under their first action’s id, the same on a re-send', async () => {
    const bodies: unknown[] = []
    const send = sender(async (_method, _path, body) => {
      bodies.push(body)
      const codes = (body as { codes: string[] }).codes
      return json(200, { items: codes.map((code) => ({ code, result: 'added' })) })
    })
    const group = [action('doc_codes', { code: 'U1' }, 7), action('doc_codes', { code: 'U2' }, 7)]
    await send(group)
    await send([...group, action('doc_codes', { code: 'U3' }, 7)]) // its answer was lost
    expect(bodies).toEqual([
      { codes: ['U1', 'U2'], client_id: group[0]!.id },
      { codes: ['U1', 'U2', 'U3'], client_id: group[0]!.id },
    ])
  })

  it('keeps a whole-request failure that a re-send could change (5xx) without splitting', async () => {
    let calls = 0
    const send = sender(async () => {
      calls++
      return json(503, { error: { code: 'unavailable' } })
    })
    const outcomes = await send([action('inspection', { code: 'A' }), action('inspection', { code: 'B' })])
    expect(calls).toBe(1)
    expect(outcomes.every((o) => o.status === 503)).toBe(true)
  })
})
