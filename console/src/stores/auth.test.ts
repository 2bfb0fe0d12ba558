// The auth store's flows against a fake fetch: login, the authorised request, a silent refresh
// and one retry on 401 token_expired (shared by concurrent requests), log-out when the refresh
// is refused or the token is revoked (not when the refresh does not get through), two tabs
// refreshing at once, and log-out.
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

import { TOKENS_KEY, useAuthStore } from './auth'
import { ApiFailure } from '@/api/errors'
import { storage } from '@/utils/storage'

type Handler = (request: Request) => Response | Promise<Response>

const json = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
const error = (status: number, code: string): Response => json(status, { error: { code, message: code, details: null } })
const tokens = (n: number) => ({
  access_token: `access-${n}`,
  refresh_token: `refresh-${n}`,
  token_type: 'bearer',
  expires_at: 0,
  refresh_expires_at: 0,
})
/** The n-th pair of the user `sub`, its access token a JWT (the store reads its `sub`). */
const jwt = (sub: string, n: number) => {
  const part = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
  return { ...tokens(n), access_token: `${part({ alg: 'HS256' })}.${part({ sub, n })}.sig` }
}
const me = { org_id: 1, permissions: ['users.read', 'orgs.read'], user_id: 7, username: 'admin', api_key_id: null }

/** A fake server: records requests (method, path, Authorization, body) and answers by route. */
function fakeServer(routes: Record<string, Handler>) {
  const seen: { method: string; path: string; auth: string | null; body: string }[] = []
  const fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init)
    const path = new URL(request.url).pathname
    seen.push({ method: request.method, path, auth: request.headers.get('Authorization'), body: await request.clone().text() })
    const handler = routes[`${request.method} ${path}`]
    return handler ? handler(request) : error(404, 'not_found')
  })
  vi.stubGlobal('fetch', fetch)
  return { seen, fetch }
}

/** Signed in as admin against a fake server answering `routes` too; its record emptied. */
async function signedIn(routes: Record<string, Handler>) {
  const server = fakeServer({ 'POST /auth/login': () => json(200, tokens(1)), 'GET /auth/me': () => json(200, me), ...routes })
  const auth = useAuthStore()
  await auth.login('admin', 'secret')
  server.seen.length = 0
  return { auth, server }
}

beforeEach(() => {
  storage.remove(TOKENS_KEY)
  setActivePinia(createPinia())
})
afterEach(() => vi.unstubAllGlobals())

describe('login', () => {
  it('keeps the tokens and loads who the user is', async () => {
    const server = fakeServer({ 'POST /auth/login': () => json(200, tokens(1)), 'GET /auth/me': () => json(200, me) })
    const auth = useAuthStore()
    await auth.login('admin', 'secret')
    expect(auth.loggedIn).toBe(true)
    expect(auth.me?.username).toBe('admin')
    expect(JSON.parse(server.seen[0]!.body)).toEqual({ username: 'admin', password: 'secret' })
    expect(server.seen[1]!.auth).toBe('Bearer access-1')
    expect(JSON.parse(storage.get(TOKENS_KEY)!).refresh_token).toBe('refresh-1')
    expect(auth.can('users.read')).toBe(true)
    expect(auth.can(['audit.read', 'orgs.read'])).toBe(true)
    expect(auth.can('audit.read')).toBe(false)
    expect(auth.can(undefined)).toBe(true)
  })

  it('throws the API error and stays signed out on bad credentials', async () => {
    fakeServer({ 'POST /auth/login': () => error(401, 'invalid_credentials') })
    const auth = useAuthStore()
    const failure = await auth.login('admin', 'wrong').catch((e: unknown) => e)
    expect(failure).toBeInstanceOf(ApiFailure)
    expect((failure as ApiFailure).code).toBe('invalid_credentials')
    expect(auth.loggedIn).toBe(false)
  })
})

describe('refresh', () => {
  it('refreshes silently on 401 token_expired and retries the request once', async () => {
    const { auth, server } = await signedIn({
      'GET /users': (r) => (r.headers.get('Authorization') === 'Bearer access-2' ? json(200, { items: [], page: 1, per_page: 20, total: 0 }) : error(401, 'token_expired')),
      'POST /auth/refresh': () => json(200, tokens(2)),
    })
    const response = await auth.send(new Request('http://localhost/users?q=x'))
    expect(response.status).toBe(200)
    expect(server.seen.map((s) => `${s.method} ${s.path} ${s.auth ?? ''}`)).toEqual([
      'GET /users Bearer access-1',
      'POST /auth/refresh ',
      'GET /users Bearer access-2',
    ])
    expect(JSON.parse(server.seen[1]!.body)).toEqual({ refresh_token: 'refresh-1' })
    expect(auth.tokens?.refresh_token).toBe('refresh-2')
  })

  it('retries a request with a body with the same body', async () => {
    const { auth, server } = await signedIn({
      'POST /orgs': (r) => (r.headers.get('Authorization') === 'Bearer access-2' ? json(200, { id: 1 }) : error(401, 'token_expired')),
      'POST /auth/refresh': () => json(200, tokens(2)),
    })
    const body = JSON.stringify({ name: 'Store' })
    const response = await auth.send(new Request('http://localhost/orgs', { method: 'POST', body }))
    expect(response.status).toBe(200)
    expect(server.seen.filter((s) => s.path === '/orgs').map((s) => s.body)).toEqual([body, body])
  })

  it('shares one refresh among concurrent requests', async () => {
    const { auth, server } = await signedIn({
      'GET /users': (r) => (r.headers.get('Authorization') === 'Bearer access-2' ? json(200, {}) : error(401, 'token_expired')),
      'POST /auth/refresh': async () => {
        await new Promise((resolve) => setTimeout(resolve, 10))
        return json(200, tokens(2))
      },
    })
    const answers = await Promise.all([1, 2, 3].map(() => auth.send(new Request('http://localhost/users'))))
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200])
    expect(server.seen.filter((s) => s.path === '/auth/refresh')).toHaveLength(1)
  })

  it('signs out when the refresh is refused, without retrying', async () => {
    const { auth, server } = await signedIn({
      'GET /users': () => error(401, 'token_expired'),
      'POST /auth/refresh': () => error(401, 'token_revoked'),
    })
    const response = await auth.send(new Request('http://localhost/users'))
    expect(response.status).toBe(401)
    expect(auth.loggedIn).toBe(false)
    expect(auth.me).toBeNull()
    expect(storage.get(TOKENS_KEY)).toBeNull()
    expect(server.seen.filter((s) => s.path === '/users')).toHaveLength(1)
  })

  it('takes the tokens another tab refreshed first', async () => {
    const { auth } = await signedIn({
      'GET /users': (r) => (r.headers.get('Authorization') === 'Bearer access-9' ? json(200, {}) : error(401, 'token_expired')),
      'POST /auth/refresh': () => {
        storage.set(TOKENS_KEY, JSON.stringify(tokens(9))) // the other tab won the rotation
        return error(401, 'invalid_token')
      },
    })
    const response = await auth.send(new Request('http://localhost/users'))
    expect(response.status).toBe(200)
    expect(auth.loggedIn).toBe(true)
  })

  it("signs out rather than take another user's tokens another tab saved", async () => {
    const server = fakeServer({
      'POST /auth/login': () => json(200, jwt('7', 1)),
      'GET /auth/me': () => json(200, me),
      'GET /users': () => error(401, 'token_expired'),
      'POST /auth/refresh': () => {
        storage.set(TOKENS_KEY, JSON.stringify(jwt('8', 9))) // another user signed in in a tab
        return error(401, 'invalid_token')
      },
    })
    const auth = useAuthStore()
    await auth.login('admin', 'secret')
    const response = await auth.send(new Request('http://localhost/users'))
    expect(response.status).toBe(401)
    expect(auth.loggedIn).toBe(false)
    expect(server.seen.filter((s) => s.path === '/users')).toHaveLength(1) // not sent as user 8
    expect(JSON.parse(storage.get(TOKENS_KEY)!).refresh_token).toBe('refresh-9') // its tab's own
  })

  it('stays signed in when the refresh does not get through: the request fails as offline', async () => {
    // a gateway's 503 (or 408, 429, a network error, the time-out) says nothing of the refresh
    // token: thrown as fetch throws offline, so the staff app keeps its copy of the user and its
    // queue (a 401 answer would read as a refusal)
    for (const down of [() => error(503, 'unavailable'), () => error(429, 'rate_limited'), () => Promise.reject(new TypeError('Failed to fetch'))]) {
      const { auth } = await signedIn({ 'GET /users': () => error(401, 'token_expired'), 'POST /auth/refresh': down })
      await expect(auth.send(new Request('http://localhost/users'))).rejects.toThrow()
      expect(auth.loggedIn).toBe(true)
      expect(JSON.parse(storage.get(TOKENS_KEY)!).refresh_token).toBe('refresh-1')
    }
  })

  it('two tabs back online refresh the same expired token at once: neither tab is signed out', async () => {
    /** A probe: the staff app is open in two tabs (or the app and the console) of one user; the
     * access token expired while the phone was offline. The network returns: the browser fires
     * `online` in both tabs at once and both send the queue: both get 401 token_expired and both
     * spend the same refresh token. The server rotates it for one and refuses the other (401
     * invalid_token, a client's race within REPLAY_GRACE: only refused). When the refusal reached
     * its tab before the winning tab had stored its new pair, that tab signed the user out (and
     * dropped the stored tokens): the login page, in the middle of a sync. It waits a moment for
     * the pair the other tab gets, as it takes it when the other tab was quicker. */
    storage.set(TOKENS_KEY, JSON.stringify(jwt('9', 1)))
    let release!: () => void
    const winnerMayAnswer = new Promise<void>((r) => (release = r))
    let refreshes = 0
    fakeServer({
      'POST /auth/refresh': async () => {
        refreshes++
        if (refreshes === 1) {
          await winnerMayAnswer // rotated; its answer still on the way
          return json(200, jwt('9', 2))
        }
        setTimeout(release, 20) // the refusal arrives first
        return error(401, 'invalid_token')
      },
      'POST /inspections/batch': (r) =>
        r.headers.get('Authorization') === `Bearer ${jwt('9', 2).access_token}` ? json(201, { id: 1 }) : error(401, 'token_expired'),
    })
    const tab = () => {
      setActivePinia(createPinia())
      return useAuthStore()
    }
    const [tab1, tab2] = [tab(), tab()]
    const req = () => new Request('http://localhost/inspections/batch', { method: 'POST', body: '{"items":[]}' })
    const answers = await Promise.all([tab1.send(req()), tab2.send(req())])
    expect(tab1.loggedIn).toBe(true)
    expect(tab2.loggedIn).toBe(true)
    expect(answers.map((r) => r.status)).toEqual([201, 201])
    expect(JSON.parse(storage.get(TOKENS_KEY)!)).toEqual(jwt('9', 2))
  })

  it('signs out on any other 401 (revoked, deactivated)', async () => {
    const { auth, server } = await signedIn({ 'GET /users': () => error(401, 'token_revoked') })
    const response = await auth.send(new Request('http://localhost/users'))
    expect(response.status).toBe(401)
    expect(auth.loggedIn).toBe(false)
    expect(server.seen.some((s) => s.path === '/auth/refresh')).toBe(false)
  })

  it('leaves a 403 alone', async () => {
    const { auth } = await signedIn({ 'GET /audit': () => error(403, 'forbidden') })
    expect((await auth.send(new Request('http://localhost/audit'))).status).toBe(403)
    expect(auth.loggedIn).toBe(true)
  })
})

describe('logout', () => {
  it('spends the refresh token on the server and forgets everything', async () => {
    const server = fakeServer({
      'POST /auth/login': () => json(200, tokens(1)),
      'GET /auth/me': () => json(200, me),
      'POST /auth/logout': () => new Response(null, { status: 204 }),
    })
    const auth = useAuthStore()
    await auth.login('admin', 'secret')
    await auth.logout()
    expect(auth.loggedIn).toBe(false)
    expect(auth.me).toBeNull()
    expect(storage.get(TOKENS_KEY)).toBeNull()
    const logout = server.seen.find((s) => s.path === '/auth/logout')!
    expect(JSON.parse(logout.body)).toEqual({ refresh_token: 'refresh-1' })
  })

  it('signs out even when the server cannot be reached', async () => {
    const server = fakeServer({ 'POST /auth/login': () => json(200, tokens(1)), 'GET /auth/me': () => json(200, me) })
    const auth = useAuthStore()
    await auth.login('admin', 'secret')
    server.fetch.mockRejectedValueOnce(new TypeError('offline'))
    await auth.logout()
    expect(auth.loggedIn).toBe(false)
  })
})

describe('own password', () => {
  it('sends the current and the new one as the user, and goes on with the new pair', async () => {
    const { auth, server } = await signedIn({ 'POST /auth/password': () => json(200, tokens(2)) })
    await auth.changePassword('secret', 'a new secret')
    expect(server.seen[0]!.auth).toBe('Bearer access-1')
    expect(JSON.parse(server.seen[0]!.body)).toEqual({ current_password: 'secret', new_password: 'a new secret' })
    expect(auth.tokens?.access_token).toBe('access-2')
    expect(JSON.parse(storage.get(TOKENS_KEY)!).refresh_token).toBe('refresh-2')
  })

  it('throws a wrong current password and keeps the session as it was', async () => {
    const { auth } = await signedIn({ 'POST /auth/password': () => error(422, 'wrong_password') })
    const failure = await auth.changePassword('wrong', 'a new secret').catch((e: unknown) => e)
    expect((failure as ApiFailure).code).toBe('wrong_password')
    expect(auth.loggedIn).toBe(true)
    expect(auth.tokens?.access_token).toBe('access-1')
  })
})
