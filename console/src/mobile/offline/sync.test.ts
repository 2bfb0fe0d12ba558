import 'fake-indexeddb/auto'
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, describe, expect, it, vi } from 'vitest'

import { OfflineQueue, type QueuedAction } from './queue'
import { refusals } from './refused'
import { enqueue, flush, sender, startSync, stopSync } from './sync'
import { subject, TOKENS_KEY, useAuthStore } from '@/stores/auth'
import { storage } from '@/utils/storage'

function action(kind: QueuedAction['kind'], body: Record<string, unknown>, target?: number): QueuedAction {
  const id = `m-${Math.random().toString(16).slice(2)}`
  return { id, kind, user: 1, body, label: id, created: Date.now(), n: 0, attempts: 0, target }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

/** The user's n-th token pair (a JWT-shaped access token whose `sub` is the user's id). */
function tokensOf(user: number, n = 1) {
  const payload = btoa(JSON.stringify({ sub: String(user), n })).replace(/=+$/, '')
  return {
    access_token: `eyJhbGciOiJIUzI1NiJ9.${payload}.sig`,
    refresh_token: `refresh-${user}-${n}`,
    token_type: 'bearer',
    expires_at: 0,
    refresh_expires_at: 0,
  }
}

/** The app signed in as the user and syncing (its own queue, the database tracecode-m). */
function signedIn(user: number): void {
  storage.set(TOKENS_KEY, JSON.stringify(tokensOf(user)))
  setActivePinia(createPinia())
  vi.stubGlobal('window', { addEventListener() {} })
  startSync(user)
}

/** Another user signs in on the same phone (the first signed out): the auth store's state. */
function otherUserSignsIn(user: number): void {
  useAuthStore().tokens = tokensOf(user)
  storage.set(TOKENS_KEY, JSON.stringify(tokensOf(user)))
}

const expired = { error: { code: 'token_expired', message: 'token expired' } }

// read without constructing a Request from a Request (that would take its body)
function pathOf(input: RequestInfo | URL): string {
  return new URL(input instanceof Request ? input.url : String(input)).pathname
}

function bearerOf(input: RequestInfo | URL, init?: RequestInit): string | null {
  if (input instanceof Request) return input.headers.get('Authorization')
  return new Headers(init?.headers).get('Authorization')
}

function signalOf(input: RequestInfo | URL, init?: RequestInit): AbortSignal | null {
  return input instanceof Request ? input.signal : (init?.signal ?? null)
}

/** Has the promise settled within `ms`? */
async function settles<T>(p: Promise<T>, ms = 500): Promise<boolean> {
  let done = false
  void p.then(
    () => (done = true),
    () => (done = true),
  )
  await new Promise((r) => setTimeout(r, ms))
  return done
}

afterEach(() => {
  stopSync()
  vi.unstubAllGlobals()
  vi.restoreAllMocks()
})

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

describe('the sync pass', () => {
  it('keeps a refusal the moment its action leaves the queue, not when the whole pass is over', async () => {
    /** A probe: codes scanned offline into two documents; back online the first document's
     * request is answered at once (one code `rejected`, not_packed) while the second's stalls on
     * the flaky network (up to 30 s). The clerk closes the app: reopened, the refused code was
     * nowhere — not pending, not among the queue page's refusals (they were written when the
     * pass ended). It is kept as soon as its group is answered. */
    const user = 7
    const queue = new OfflineQueue() // the app's own database
    const refused = await queue.add({ kind: 'doc_codes', user, target: 1, body: { code: '000000000000000017' }, label: 'case 17' })
    const stalled = await queue.add({ kind: 'doc_codes', user, target: 2, body: { code: '000000000000000024' }, label: 'case 24' })
    let firstAnswered!: () => void
    const answered = new Promise<void>((resolve) => (firstAnswered = resolve))
    const stalls: ((error: Error) => void)[] = []
    let down = false
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL) => {
        if (new URL(new Request(input).url).pathname === '/documents/1/codes') {
          setTimeout(firstAnswered, 50)
          const item = { code: '000000000000000017', result: 'rejected', kind: 'case', reason: 'not_packed' }
          return json(200, { added: 0, rejected: 1, items: [item] })
        }
        if (down) throw new TypeError('Failed to fetch')
        return new Promise<Response>((_resolve, reject) => stalls.push(reject)) // stalls
      }),
    )
    signedIn(user)
    const pass = flush()
    await answered

    // the app is closed here: what is left is IndexedDB and localStorage
    const queued = (await queue.all(user)).map((a) => a.id)
    expect(queued).toEqual([stalled.id])
    expect(refusals(user).map((r) => [r.id, r.message])).toEqual([[refused.id, '此箱码未装箱，或不是本单位可收发的货品（not_packed）']]) // in the app's zh-CN

    down = true // the stalled request fails at last
    for (const reject of stalls) reject(new TypeError('Failed to fetch'))
    await pass
    expect(refusals(user).map((r) => r.id)).toEqual([refused.id]) // kept once
    expect((await queue.all(user)).map((a) => a.id)).toEqual([stalled.id])
  })

  it('answers a claim refused 429 `locked` to the page instead of queueing it', async () => {
    /** A probe: a store clerk's rebate claim whose code is locked after too many wrong PINs
     * (POST /rebates/claims answers 429 `locked`, app/claims.py). The queue kept every 429 for a
     * re-send: the page said "queued", cleared the serial and the PIN, and the claim was sent
     * again every 30 s, nobody looking. The page gets the answer (the lock and its wait). */
    const user = 11
    const locked = {
      error: {
        code: 'locked',
        message: 'too many wrong PINs for this code: try again in 15 minutes',
        details: { result: 'locked', retry_after: 900 },
      },
    }
    vi.stubGlobal('fetch', vi.fn(async () => json(429, locked)))
    signedIn(user)
    const { outcome } = await enqueue('claim', { serial: 'K7P2M9Q4X8R3ABCDEFGH', pin: '123456', lang: 'zh' }, 'K7P2')
    expect(outcome).toMatchObject({ ok: false, status: 429, body: locked })
    expect(await new OfflineQueue().count(user)).toBe(0)
  })

  it('keeps a sale answered 409 `retry` queued and sends it again under its client id', async () => {
    /** A probe: a sale met a deadlock (app/errors.py: 409 `retry`, "a concurrent change
     * conflicted; retry the request"); the queue took every 409 for a refusal and dropped the
     * sale, shown as refused, though the server asked for it again. */
    const user = 31
    const retry = { error: { code: 'retry', message: 'a concurrent change conflicted; retry the request' } }
    const ids: unknown[] = []
    let conflicted = true
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL) => {
        ids.push(((await (input as Request).clone().json()) as { client_id: unknown }).client_id)
        return conflicted ? json(409, retry) : json(201, { id: 1 })
      }),
    )
    signedIn(user)
    const { action, outcome } = await enqueue('sale', { codes: ['U1'] }, 'sale')
    expect(outcome).toBeNull() // still queued: the page says so
    expect((await new OfflineQueue().all(user)).map((a) => [a.id, a.error])).toEqual([[action.id, '409']])
    expect(refusals(user)).toEqual([])

    conflicted = false // the next pass
    await flush()
    expect(await new OfflineQueue().count(user)).toBe(0)
    expect(new Set(ids)).toEqual(new Set([action.id]))
  })

  it('keeps a rebate claim answered 409 `claim_conflict` ("try again") queued', async () => {
    /** A probe: app/rebates/claims.py answers a claim that met another one 409 `claim_conflict`,
     * "the claim met another one; try again"; the till dropped it as refused. */
    const user = 32
    const conflict = { error: { code: 'claim_conflict', message: 'the claim met another one; try again' } }
    vi.stubGlobal('fetch', vi.fn(async () => json(409, conflict)))
    signedIn(user)
    await enqueue('claim', { serial: 'K7P2M9Q4X8R3ABCDEFGH', pin: '123456', lang: 'zh' }, 'K7P2')
    expect(await new OfflineQueue().count(user)).toBe(1)
    expect(refusals(user)).toEqual([])
  })

  it('still answers a claim refused by another 409 (`already_claimed`) to the page', async () => {
    const user = 33
    const claimed = { error: { code: 'already_claimed', message: 'the code was claimed already' } }
    vi.stubGlobal('fetch', vi.fn(async () => json(409, claimed)))
    signedIn(user)
    const { outcome } = await enqueue('claim', { serial: 'K7P2M9Q4X8R3ABCDEFGH', pin: '123456', lang: 'zh' }, 'K7P2')
    expect(outcome).toMatchObject({ ok: false, status: 409, body: claimed })
    expect(await new OfflineQueue().count(user)).toBe(0)
  })
})

describe('the queue against token expiry, sign-out and the network', () => {
  it('gives up a stalled token refresh like any request: the pass ends, the scan stays queued', async () => {
    /** A probe: an inspector's access token expired while offline. Back on a flaky connection
     * the queue is sent: 401 token_expired, and POST /auth/refresh stalls (a captive portal, a
     * half-open connection). Every other request of the app is given up after
     * REQUEST_TIMEOUT_MS (30 s) and its action stays queued; the refresh was not: the pass never
     * ended, every flush joined it, and a new scan's page waited for a verdict for ever (and,
     * once the refresh had a time-out, for twice its time: the scan was sent again at once). */
    const user = 101
    const timers: AbortController[] = []
    vi.spyOn(AbortSignal, 'timeout').mockImplementation(() => {
      const c = new AbortController()
      timers.push(c)
      return c.signal
    })
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
        if (pathOf(input) === '/auth/refresh') {
          return new Promise<Response>((_resolve, reject) => {
            signalOf(input, init)?.addEventListener('abort', () => reject(new DOMException('timed out', 'TimeoutError')))
          })
        }
        return json(401, expired)
      }),
    )
    signedIn(user)
    const result = enqueue('inspection', { code: 'U1', store_code: 'S1' }, 'U1')
    await new Promise((r) => setTimeout(r, 50))
    for (const t of timers) t.abort() // 30 s pass
    expect(await settles(result)).toBe(true)
    expect(await new OfflineQueue().count(user)).toBe(1)
    expect(useAuthStore().loggedIn).toBe(true)
  })

  it('keeps the user signed in when the refresh is answered 503 (server or gateway down)', async () => {
    /** A probe: back from a day offline, the clerk's queue is sent; the access token expired and
     * the refresh request meets a 503 from the gateway (the server is restarting). The app signed
     * the clerk out (the same as a refused refresh token): offline again a minute later, the app
     * showed only the login page and no scan could be queued until the network was back, although
     * the refresh token was still good. A 5xx (or a network error) is not a refusal. */
    const user = 201
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL) => {
        if (pathOf(input) === '/auth/refresh') return json(503, { error: { code: 'unavailable', message: 'down' } })
        return json(401, expired)
      }),
    )
    signedIn(user)
    await flush()
    await enqueue('inspection', { code: 'U1', store_code: 'S1' }, 'U1')
    expect(await new OfflineQueue().count(user)).toBe(1)
    expect(useAuthStore().loggedIn).toBe(true)
  })

  it('never retries the first user’s queued scan with the next user’s token (token_expired in flight)', async () => {
    /** A probe: the inspector's queued scan is being sent on a slow connection with an expired
     * token; meanwhile the inspector signs out and a colleague signs in on the same phone. The
     * 401 token_expired arrives: the auth store saw a new access token, took it for "a refresh
     * won meanwhile", and sent the inspector's scan again with the colleague's token: the scan
     * was recorded as the colleague's. It stays the inspector's (kept queued). */
    const a = 301
    const b = 401
    const bearerB = `Bearer ${tokensOf(b).access_token}`
    const sentAsB: string[] = []
    let first = true
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
        const path = pathOf(input)
        if (path === '/auth/refresh' || path === '/auth/logout') return json(401, { error: { code: 'token_revoked' } })
        if (bearerOf(input, init) === bearerB) {
          sentAsB.push(path)
          return json(201, { id: 1, result: 'in_channel' })
        }
        if (first) {
          first = false
          otherUserSignsIn(b)
        }
        return json(401, expired)
      }),
    )
    signedIn(a)
    await new OfflineQueue().add({ kind: 'inspection', user: a, body: { code: 'U1', store_code: 'S1' }, label: 'U1' })
    await flush()
    expect(sentAsB).toEqual([])
    expect(await new OfflineQueue().count(a)).toBe(1)
  })

  it('never sends the first user’s scan with the next user’s token after a refused refresh', async () => {
    /** A probe: as above, but the inspector's token expired and the refresh is in flight when the
     * inspector signs out and the colleague signs in; the server refuses the refresh (the
     * sign-out revoked it). The auth store then found "another tab's" pair stored — the
     * colleague's, compared with the store's tokens, now the colleague's too —, took it as the
     * same user's and the scan was retried with the colleague's token. */
    const a = 501
    const b = 601
    const bearerB = `Bearer ${tokensOf(b).access_token}`
    const sentAsB: string[] = []
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
        const path = pathOf(input)
        if (path === '/auth/refresh') {
          otherUserSignsIn(b)
          return json(401, { error: { code: 'token_revoked' } })
        }
        if (bearerOf(input, init) === bearerB) {
          sentAsB.push(path)
          return json(201, { id: 1, result: 'in_channel' })
        }
        return json(401, expired)
      }),
    )
    signedIn(a)
    await new OfflineQueue().add({ kind: 'inspection', user: a, body: { code: 'U1', store_code: 'S1' }, label: 'U1' })
    await flush()
    expect(sentAsB).toEqual([])
    expect(subject(useAuthStore().tokens?.access_token)).toBe(String(b)) // the colleague's session left alone
  })

  it('does not put the first user’s refreshed pair over the next user’s session', async () => {
    /** A probe: the inspector's refresh is in flight when the inspector signs out and a colleague
     * signs in; the refresh is answered (the server spent it before the sign-out arrived). The
     * auth store kept the inspector's new pair over the colleague's: the colleague, greeted as
     * themselves, then worked with the inspector's token (their calls were the inspector's). */
    const a = 701
    const b = 801
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
        if (pathOf(input) === '/auth/refresh') {
          otherUserSignsIn(b)
          return json(200, tokensOf(a, 2))
        }
        if (bearerOf(input, init) === `Bearer ${tokensOf(a, 2).access_token}`) return json(201, { id: 1, result: 'in_channel' })
        return json(401, expired)
      }),
    )
    signedIn(a)
    await new OfflineQueue().add({ kind: 'inspection', user: a, body: { code: 'U1', store_code: 'S1' }, label: 'U1' })
    await flush()
    expect(subject(useAuthStore().tokens?.access_token)).toBe(String(b))
    expect(JSON.parse(storage.get(TOKENS_KEY)!)).toEqual(tokensOf(b))
  })
})
