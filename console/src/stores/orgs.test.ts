// The organisation tree, and the per-user stores (organisations, roles) forgotten at sign-out.
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

import { TOKENS_KEY, useAuthStore } from './auth'
import { buildTree, useOrgsStore } from './orgs'
import { useRolesStore } from './roles'
import type { Org } from '@/api/types'
import { storage } from '@/utils/storage'

const org = (id: number, parent_id: number | null, name: string): Org =>
  ({ id, parent_id, name, kind: 'store', status: 'active' }) as Org

describe('the organisation tree', () => {
  it('puts children under their parents, in list order; a parent out of sight makes a root', () => {
    const tree = buildTree([org(1, null, 'Brand'), org(2, 1, 'Agent'), org(3, 2, 'Store A'), org(4, 2, 'Store B'), org(9, 8, 'Elsewhere')])
    expect(tree.map((n) => n.label)).toEqual(['Brand', 'Elsewhere'])
    expect(tree[0]!.children[0]!.children.map((n) => n.label)).toEqual(['Store A', 'Store B'])
  })
})

describe('a new user of the tab', () => {
  const json = (body: unknown): Response => new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } })
  const page = (items: unknown[]) => json({ items, page: 1, per_page: 200, total: items.length })
  const USERS: Record<string, { id: number; orgs: Org[]; roles: string[] }> = {
    admin: { id: 1, orgs: [org(1, null, 'Brand'), org(2, 1, 'Agent GD'), org(3, 1, 'Agent ZJ')], roles: ['brand_role'] },
    clerk: { id: 2, orgs: [org(4, 3, 'Store ZJ')], roles: [] },
  }
  let gate: Promise<void> | null = null // while set, GET /orgs answers only when it resolves

  beforeEach(() => {
    storage.remove(TOKENS_KEY)
    setActivePinia(createPinia())
    gate = null
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
        const request = new Request(input, init)
        const path = new URL(request.url).pathname
        if (path === '/auth/login') {
          const { username } = (await request.json()) as { username: string }
          return json({ access_token: username, refresh_token: `r-${username}`, token_type: 'bearer', expires_at: 0, refresh_expires_at: 0 })
        }
        if (path === '/auth/logout') return new Response(null, { status: 204 })
        const name = (request.headers.get('Authorization') ?? '').replace('Bearer ', '')
        const user = USERS[name]!
        if (path === '/auth/me') return json({ user_id: user.id, username: name, org_id: user.orgs[0]!.id, permissions: [], api_key_id: null })
        if (path === '/orgs') {
          const answer = page(user.orgs)
          if (gate) await gate
          return answer
        }
        if (path === '/roles') return page(user.roles.map((r, i) => ({ id: i + 1, org_id: 1, name: r, description: '', permissions: [], builtin: false })))
        return new Response(null, { status: 404 })
      }),
    )
  })
  afterEach(() => vi.unstubAllGlobals())

  it('sees its own organisations and roles, not those of the user signed out before (a probe)', async () => {
    const auth = useAuthStore()
    const orgs = useOrgsStore()
    const roles = useRolesStore()
    await auth.login('admin', 'x')
    await Promise.all([orgs.load(), roles.loadRoles()])
    expect(orgs.all.map((o) => o.name)).toEqual(['Brand', 'Agent GD', 'Agent ZJ'])
    expect(roles.roles.map((r) => r.name)).toEqual(['brand_role'])

    await auth.logout()
    expect([orgs.all, orgs.tree, roles.roles]).toEqual([[], [], []])
    expect(orgs.loaded).toBe(false)

    await auth.login('clerk', 'x')
    await Promise.all([orgs.load(), roles.loadRoles()])
    expect(orgs.tree.map((n) => n.label)).toEqual(['Store ZJ'])
    expect(orgs.name(2)).toBe('#2')
    expect(roles.roles).toEqual([])
  })

  it('never gets the organisations of a load begun for the user signed out', async () => {
    const auth = useAuthStore()
    const orgs = useOrgsStore()
    await auth.login('admin', 'x')
    let open = (): void => {}
    gate = new Promise((resolve) => (open = resolve))
    const slow = orgs.load()
    await auth.logout()
    await auth.login('clerk', 'x')
    gate = null
    await orgs.load() // a load of its own, not the admin's still running
    open()
    await slow
    expect(orgs.all.map((o) => o.name)).toEqual(['Store ZJ'])
  })
})
