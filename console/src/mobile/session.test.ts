// Who the app thinks the user is offline, and whose token their queue goes with: the copy of
// GET /auth/me is taken only while the stored tokens are that user's (another user signed in on
// the console of the same browser), and a user's queued actions are never sent with another
// user's token (a probe).
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

import type { QueuedAction } from './offline/queue'
import { send } from './offline/sync'
import { cachedMe, changePassword, ensureMe, signIn } from './session'
import { ApiFailure } from '@/api/errors'
import { TOKENS_KEY, useAuthStore } from '@/stores/auth'
import { storage } from '@/utils/storage'

const json = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })

/** A token pair of the user (a JWT-shaped access token whose `sub` is the user's id). */
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

const meOf = (user: number, username: string) => ({
  org_id: 1,
  permissions: ['inspect.scan'],
  user_id: user,
  username,
  api_key_id: null,
})

/** Signed in as the inspector (user 7) while online; then the network is gone. */
async function inspectorThenOffline(): Promise<void> {
  vi.stubGlobal(
    'fetch',
    vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
      const path = new URL(new Request(input, init).url).pathname
      return path === '/auth/login' ? json(200, tokensOf(7)) : json(200, meOf(7, 'inspector'))
    }),
  )
  await signIn('inspector', 'secret')
  vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))))
}

/** The app opened anew (a new page) with these tokens stored. */
function reopenedWith(tokens: ReturnType<typeof tokensOf>): void {
  storage.set(TOKENS_KEY, JSON.stringify(tokens))
  setActivePinia(createPinia())
}

beforeEach(() => {
  storage.remove(TOKENS_KEY)
  storage.remove('tracecode.m.me')
  setActivePinia(createPinia())
})
afterEach(() => vi.unstubAllGlobals())

describe('the user known offline', () => {
  it('is the last signed-in user while the stored tokens are theirs (also refreshed)', async () => {
    await inspectorThenOffline()
    reopenedWith(tokensOf(7, 2))
    expect((await ensureMe())?.username).toBe('inspector')
  })

  it('is nobody when another user signed in since (the console of the same browser)', async () => {
    await inspectorThenOffline()
    reopenedWith(tokensOf(9))
    expect(cachedMe()).toBeNull()
    expect(await ensureMe()).toBeNull()
    expect(useAuthStore().me).toBeNull()
    expect(useAuthStore().loggedIn).toBe(true) // the admin's session is not ended by the phone
  })

  it('ignores a copy kept without its user (as the app kept it before)', () => {
    storage.set('tracecode.m.me', JSON.stringify(meOf(7, 'inspector')))
    reopenedWith(tokensOf(7))
    expect(cachedMe()).toBeNull()
  })
})

describe('GET /auth/me not answered at app start', () => {
  /** Signed in once online (the copy of /auth/me kept); the app reopened, GET /auth/me answered. */
  async function reopenedAnswered(response: () => Response): Promise<Awaited<ReturnType<typeof ensureMe>>> {
    await inspectorThenOffline()
    reopenedWith(tokensOf(7))
    vi.stubGlobal('fetch', vi.fn(async () => response()))
    return ensureMe()
  }

  it('keeps the clerk signed in, as the last known user, on a gateway 503', async () => {
    /** A probe: the server restarting behind the gateway (503 service_unavailable) signed the
     * clerk out at app start, as if the session had been refused; offline a minute later no
     * scan could be queued. The auth store keeps the session on a refresh's 5xx: so does this. */
    const unavailable = { error: { code: 'service_unavailable', message: 'the database is unavailable; retry shortly' } }
    const me = await reopenedAnswered(() => json(503, unavailable))
    expect(useAuthStore().loggedIn).toBe(true)
    expect(me?.user_id).toBe(7)
    expect(cachedMe()?.username).toBe('inspector') // the copy stays
  })

  it('keeps the clerk signed in on a proxy’s 502 HTML page, a 429 and a 408', async () => {
    for (const response of [
      () => new Response('<html>Bad Gateway</html>', { status: 502 }),
      () => json(429, { error: { code: 'rate_limited', message: 'slow down' } }),
      () => new Response('', { status: 408 }),
    ]) {
      const me = await reopenedAnswered(response)
      expect(useAuthStore().loggedIn).toBe(true)
      expect(me?.username).toBe('inspector')
    }
  })

  it('signs the clerk out when the session itself is refused (401, 403)', async () => {
    for (const [status, code] of [
      [401, 'token_revoked'],
      [403, 'forbidden'],
    ] as const) {
      const me = await reopenedAnswered(() => json(status, { error: { code, message: 'no' } }))
      expect(me).toBeNull()
      expect(useAuthStore().loggedIn).toBe(false)
      expect(storage.get('tracecode.m.me')).toBeNull()
    }
  })
})

/** An inspector's action waiting in the queue. */
const queued: QueuedAction = {
  id: 'm-1',
  kind: 'inspection',
  user: 7,
  body: { code: 'A' },
  label: 'A',
  created: 0,
  n: 0,
  attempts: 0,
}

describe('the user’s own password changed', () => {
  it('keeps the new pair: the app reopened offline knows the user and sends their queue with it', async () => {
    await inspectorThenOffline()
    const me = { ...useAuthStore().me, must_change_password: false } // read again after the change
    const bearers: (string | null)[] = []
    const fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init)
      const path = new URL(request.url).pathname
      if (path === '/auth/me') return json(200, me)
      bearers.push(request.headers.get('Authorization'))
      if (path !== '/auth/password') return json(201, {})
      expect(await request.json()).toEqual({ current_password: 'secret', new_password: 'new-secret' })
      return json(200, tokensOf(7, 2))
    })
    vi.stubGlobal('fetch', fetch)
    await changePassword('secret', 'new-secret')
    expect(useAuthStore().tokens).toEqual(tokensOf(7, 2))
    expect(JSON.parse(storage.get(TOKENS_KEY)!)).toEqual(tokensOf(7, 2))

    setActivePinia(createPinia()) // reopened: the tokens are read back from storage
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))))
    expect((await ensureMe())?.username).toBe('inspector')
    vi.stubGlobal('fetch', fetch)
    expect((await send([queued]))[0]!.status).toBe(201)
    expect(bearers).toEqual([`Bearer ${tokensOf(7).access_token}`, `Bearer ${tokensOf(7, 2).access_token}`])
  })

  it('refused (the current password wrong), leaves the user signed in with the same pair', async () => {
    await inspectorThenOffline()
    const wrong = { error: { code: 'wrong_password', message: 'the current password is wrong', details: null } }
    vi.stubGlobal('fetch', vi.fn(async () => json(422, wrong)))
    const failure = await changePassword('nope', 'new-secret').catch((e: unknown) => e)
    expect(failure).toBeInstanceOf(ApiFailure)
    expect(failure).toMatchObject({ status: 422, code: 'wrong_password' })
    expect(useAuthStore().tokens).toEqual(tokensOf(7))
    expect(JSON.parse(storage.get(TOKENS_KEY)!)).toEqual(tokensOf(7))
    expect(useAuthStore().me?.username).toBe('inspector')
  })
})

describe('the queue’s sender', () => {
  it('never sends a user’s actions with another user’s token', async () => {
    reopenedWith(tokensOf(9))
    const fetch = vi.fn(async () => json(201, {}))
    vi.stubGlobal('fetch', fetch)
    await expect(send([queued])).rejects.toThrow('another user')
    expect(fetch).not.toHaveBeenCalled()
    reopenedWith(tokensOf(7))
    expect((await send([queued]))[0]!.status).toBe(201)
    expect(fetch).toHaveBeenCalledOnce()
  })
})
