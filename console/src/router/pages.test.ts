import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

import { PAGES } from './pages'
import { TOKENS_KEY, useAuthStore } from '@/stores/auth'
import { storage } from '@/utils/storage'

describe('brand-staff pages', () => {
  it('are the pages whose API answers 403 brand_staff_only below the brand', () => {
    // a page missing here shows below the brand and every call of it is refused (a review:
    // the rebate rules page was shown to an agent's staff holding rebates.rules)
    const brandStaff = PAGES.filter((p) => p.brandStaff).map((p) => p.name)
    expect(brandStaff.sort()).toEqual(
      [
        'analytics-cycle',
        'analytics-members',
        'analytics-points',
        'analytics-verifications',
        'brand-story',
        'draws',
        'gifts',
        'promotions',
        'complaints',
        'forensics',
        'members',
        'rebates-rules',
        'points-rules',
        'wechat',
      ].sort(),
    )
  })

  it('leave the rebate reads to the whole subtree', () => {
    for (const name of ['rebates-claims', 'rebates-rankings', 'rebates-statements', 'rebates-refusals'])
      expect(PAGES.find((p) => p.name === name)?.brandStaff).toBeFalsy()
  })
})

// --- the route guard: who the user is, at a reload ---------------------------------------------
vi.mock('vue-router', async (orig) => {
  const real = await orig<typeof import('vue-router')>()
  return { ...real, createWebHistory: () => real.createMemoryHistory() }
})
vi.mock('@/layouts/ConsoleLayout.vue', () => ({ default: { render: () => null } }))
vi.mock('@/pages/login/LoginPage.vue', () => ({ default: { render: () => null } }))
vi.mock('@/pages/errors/ForbiddenPage.vue', () => ({ default: { render: () => null } }))
vi.mock('@/pages/errors/UnavailablePage.vue', () => ({ default: { render: () => null } }))
vi.mock('@/pages/users/UsersPage.vue', () => ({ default: { render: () => null } }))

const json = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
const pair = { access_token: 'a.b.c', refresh_token: 'r1', token_type: 'bearer', expires_at: 0, refresh_expires_at: 0 }

describe('the route guard at a reload (tokens kept, who the user is not yet known)', () => {
  beforeEach(() => {
    storage.set(TOKENS_KEY, JSON.stringify(pair))
    setActivePinia(createPinia())
  })
  afterEach(() => {
    vi.unstubAllGlobals()
    storage.remove(TOKENS_KEY)
  })

  /** Open /users with GET /auth/me answered by `me`: where the router went, and the calls made. */
  async function reload(me: () => Promise<Response>) {
    const seen: string[] = []
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
        const r = new Request(input, init)
        const path = new URL(r.url).pathname
        seen.push(`${r.method} ${path}`)
        return path === '/auth/me' ? me() : json(200, {})
      }),
    )
    const { router } = await import('@/router')
    await router.push('/users').catch(() => undefined)
    const auth = useAuthStore()
    const at = router.currentRoute.value
    await router.replace('/login') // the next test starts afresh
    return { route: at.name, redirect: at.query.redirect, loggedIn: auth.loggedIn, stored: storage.get(TOKENS_KEY) !== null, calls: seen }
  }

  it('keeps the session when GET /auth/me answers a gateway 503 or the network fails: a retry shown', async () => {
    // a probe: the console threw the tokens away and revoked the refresh token on the server,
    // signing out the staff app sharing them too
    const kept = { route: 'unavailable', redirect: '/users', loggedIn: true, stored: true, calls: ['GET /auth/me'] }
    expect(await reload(async () => new Response('<html>503 Service Unavailable</html>', { status: 503 }))).toEqual(kept)
    setActivePinia(createPinia())
    expect(await reload(() => Promise.reject(new TypeError('Failed to fetch')))).toEqual(kept)
  })

  it('signs out when the server refuses the session (401, 403)', async () => {
    const refused = await reload(async () => json(401, { error: { code: 'invalid_token', message: '', details: null } }))
    expect(refused).toMatchObject({ route: 'login', redirect: '/users', loggedIn: false, stored: false })
    storage.set(TOKENS_KEY, JSON.stringify(pair))
    setActivePinia(createPinia())
    const forbidden = await reload(async () => json(403, { error: { code: 'forbidden', message: '', details: null } }))
    expect(forbidden).toMatchObject({ route: 'login', loggedIn: false, stored: false })
    expect(forbidden.calls).toEqual(['GET /auth/me', 'POST /auth/logout']) // the refresh token revoked
  })
})
