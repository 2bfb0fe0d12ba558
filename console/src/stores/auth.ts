// The signed-in user: tokens (kept in localStorage so a reload stays signed in), who they are
// and what they may do (GET /auth/me), and the one authorised fetch every API call goes through.
//
// Tokens: the access token is short-lived (TRACECODE_ACCESS_TOKEN_TTL, 15 min). A 401
// `token_expired` answer makes `send` spend the refresh token (POST /auth/refresh, which
// rotates it: each works once) and retry the request once with the new access token; concurrent
// requests share one refresh. A failed refresh, or any other 401, signs the user out.
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'

import { apiBase } from '@/api/base'
import { failureOf } from '@/api/errors'
import type { Me, Tokens } from '@/api/types'
import { storage } from '@/utils/storage'

export const TOKENS_KEY = 'tracecode.console.tokens'

function stored(): Tokens | null {
  try {
    const raw = storage.get(TOKENS_KEY)
    return raw ? (JSON.parse(raw) as Tokens) : null
  } catch {
    return null
  }
}

function post(path: string, body: unknown): Promise<Response> {
  return fetch(`${apiBase()}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  })
}

/** The user a token was issued to (its JWT's `sub`), or null when it cannot be read. */
export function subject(token: string | undefined): string | null {
  const payload = token?.split('.')[1]
  if (!payload) return null
  try {
    const text = atob(payload.replace(/-/g, '+').replace(/_/g, '/'))
    return String((JSON.parse(text) as { sub?: unknown }).sub ?? '') || null
  } catch {
    return null
  }
}

async function errorCode(response: Response): Promise<string> {
  return (await failureOf(response)).code
}

export const useAuthStore = defineStore('auth', () => {
  const tokens = ref<Tokens | null>(stored())
  const me = ref<Me | null>(null)
  const loggedIn = computed(() => tokens.value !== null)
  const permissions = computed(() => new Set(me.value?.permissions ?? []))
  let refreshing: Promise<boolean> | null = null

  function keep(next: Tokens | null): void {
    tokens.value = next
    if (next) storage.set(TOKENS_KEY, JSON.stringify(next))
    else storage.remove(TOKENS_KEY)
  }

  function forget(): void {
    keep(null)
    me.value = null
  }

  /** Does the user hold the permission (or, given a list, any of them)? No permission: yes. */
  function can(permission?: string | readonly string[]): boolean {
    if (!permission) return true
    const wanted = typeof permission === 'string' ? [permission] : permission
    return wanted.length === 0 || wanted.some((p) => permissions.value.has(p))
  }

  /** POST /auth/login; then who the user is. Throws ApiFailure (401 invalid_credentials, 429 …). */
  async function login(username: string, password: string): Promise<void> {
    const response = await post('/auth/login', { username, password })
    if (!response.ok) throw await failureOf(response)
    keep((await response.json()) as Tokens)
    await loadMe()
  }

  async function doRefresh(): Promise<boolean> {
    const used = tokens.value?.refresh_token
    if (!used) return false
    let response: Response
    try {
      response = await post('/auth/refresh', { refresh_token: used })
    } catch {
      return false // offline: stay signed in, the request fails as it would
    }
    if (response.ok) {
      keep((await response.json()) as Tokens)
      return true
    }
    // Another tab of the console may have spent this refresh token first and kept the new pair
    // — taken only when it is the same user's: a tab signed in as someone else meanwhile left
    // another user's pair, and this tab's request would have been sent as that user (a probe)
    const other = stored()
    const sameUser = subject(other?.access_token) === subject(tokens.value?.access_token)
    if (other && other.refresh_token !== used && sameUser) {
      tokens.value = other
      return true
    }
    if (other && !sameUser) {
      tokens.value = me.value = null // signed out here; the other user's tab keeps its pair
      return false
    }
    forget()
    return false
  }

  /** Spend the refresh token for a new pair; concurrent callers share one request. */
  function refresh(): Promise<boolean> {
    refreshing ??= doRefresh().finally(() => {
      refreshing = null
    })
    return refreshing
  }

  function authorised(request: Request): Request {
    const copy = new Request(request)
    if (tokens.value) copy.headers.set('Authorization', `Bearer ${tokens.value.access_token}`)
    return copy
  }

  /** fetch() with the access token; on 401 token_expired one silent refresh and one retry. */
  async function send(request: Request): Promise<Response> {
    const retry = request.clone()
    const usedToken = tokens.value?.access_token
    const response = await fetch(authorised(request))
    if (response.status !== 401 || !usedToken) return response
    const code = await errorCode(response)
    if (code !== 'token_expired') {
      // revoked, deactivated, another key: this session is over (unless a refresh won meanwhile)
      if (tokens.value?.access_token === usedToken) forget()
      return response
    }
    const fresh = tokens.value?.access_token !== usedToken || (await refresh())
    return fresh ? fetch(authorised(retry)) : response
  }

  /** GET /auth/me: the user's id, organisation and permissions. */
  async function loadMe(): Promise<Me> {
    const response = await send(new Request(`${apiBase()}/auth/me`))
    if (!response.ok) throw await failureOf(response)
    me.value = (await response.json()) as Me
    return me.value
  }

  /** POST /auth/password: the user's own password changed (the current one asked). Every other
   * session of the user ends; this one goes on with the answer's new pair, and who the user is
   * is read again (a password given to be replaced is no longer due). Throws ApiFailure
   * (422 wrong_password, 429 login_locked, 400 for a new one too short). */
  async function changePassword(current: string, next: string): Promise<void> {
    const response = await send(
      new Request(`${apiBase()}/auth/password`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ current_password: current, new_password: next }),
      }),
    )
    if (!response.ok) throw await failureOf(response)
    keep((await response.json()) as Tokens)
    await loadMe() // a password to be replaced first (must_change_password) no more
  }

  /** POST /auth/logout (the refresh token dies on the server); signed out here whatever it says. */
  async function logout(): Promise<void> {
    const used = tokens.value?.refresh_token
    forget()
    if (!used) return
    try {
      await post('/auth/logout', { refresh_token: used })
    } catch {
      // offline: the refresh token expires by itself
    }
  }

  return { tokens, me, loggedIn, permissions, can, login, refresh, send, loadMe, changePassword, logout }
})

/** Call `reset` when the signed-in user signs out (or is signed out) or another user takes their
 * place: a store of what one user may see (organisations, roles) forgets it then, so the next user
 * of the tab (a shared till PC) sees only its own. Call it in the store's setup. */
export function onUserChange(reset: () => void): void {
  const auth = useAuthStore()
  watch(
    () => auth.me?.user_id ?? null,
    (now, before) => {
      if (before !== null && now !== before) reset()
    },
    { flush: 'sync' },
  )
}
