// The signed-in user: tokens (kept in localStorage so a reload stays signed in), who they are
// and what they may do (GET /auth/me), and the one authorised fetch every API call goes through.
//
// Tokens: the access token is short-lived (TRACECODE_ACCESS_TOKEN_TTL, 15 min). A 401
// `token_expired` answer makes `send` spend the refresh token (POST /auth/refresh, which
// rotates it: each works once) and retry the request once with the new access token; concurrent
// requests share one refresh. A refused refresh (401, 400), or any other 401, signs the user
// out; a refresh that does not get through (no network, 30 s without an answer, 408, 429, a 5xx)
// fails the request as the network would, thrown, and the user stays signed in (a probe: a
// gateway's 503 signed a clerk out, a stalled refresh held the offline queue for ever).
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

/** Milliseconds before a log-in, refresh or log-out is given up (it then throws as a network
 * error does), as the staff app gives up every other request (REQUEST_TIMEOUT_MS). */
const AUTH_TIMEOUT_MS = 30_000
/** How long a refresh refused `invalid_token` looks for the pair of another tab that spent the
 * same refresh token at the same moment (the refusal may arrive before the winner keeps it). */
const RACE_WAIT_MS = 1_000

function post(path: string, body: unknown): Promise<Response> {
  return fetch(`${apiBase()}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(AUTH_TIMEOUT_MS),
  })
}

/** A refresh answer saying the refresh token is no good (spent, revoked, malformed): the session
 * is over. Any other failure (408, 429, a gateway's 5xx) says nothing of the token. */
function refusal(status: number): boolean {
  return status === 400 || status === 401
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

/** Were both access tokens issued to the same user? */
function sameUser(a: string | undefined, b: string | undefined): boolean {
  return subject(a) === subject(b)
}

/** The stored pair once it is no longer `used` — another tab's, after a refresh of its own or a
 * sign-in —, waiting up to RACE_WAIT_MS for it when `wait`; null when nothing is stored. */
async function storedAfter(used: Tokens, wait: boolean): Promise<Tokens | null> {
  const until = Date.now() + (wait ? RACE_WAIT_MS : 0)
  let other = stored()
  while (other?.refresh_token === used.refresh_token && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    other = stored()
  }
  return other
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

  /** Are the `used` tokens this tab's still (not signed out, nor signed in again, meanwhile)? */
  function stillUsing(used: Tokens): boolean {
    return tokens.value?.refresh_token === used.refresh_token
  }

  /** Are the tokens now, once not the `used` ones, the same user's (a pair kept meanwhile)? */
  function sameUserAs(used: Tokens): boolean {
    return tokens.value !== null && sameUser(tokens.value.access_token, used.access_token)
  }

  /** One refresh: true when there is a new pair of the same user to retry with; false when the
   * session is over here; throws when the refresh did not get through (the session is kept). */
  async function doRefresh(): Promise<boolean> {
    const used = tokens.value
    if (!used) return false
    // a network error or the time-out throws: offline, the session is kept
    const response = await post('/auth/refresh', { refresh_token: used.refresh_token })
    // signed out, or another user signed in, meanwhile: their session is left as it is (a probe:
    // the first user's new pair was kept over the next user's)
    if (!stillUsing(used)) return sameUserAs(used)
    if (response.ok) {
      keep((await response.json()) as Tokens)
      return true
    }
    if (!refusal(response.status)) throw new Error(`POST /auth/refresh: ${response.status}`)
    // Another tab may have spent this refresh token first and kept the new pair (its refusal,
    // `invalid_token`, may arrive before the pair is kept: waited for — a probe, two tabs back
    // online at once), taken only when it is the same user's as the token used (not as the
    // tokens now): a tab signed in as someone else meanwhile left another user's pair, and this
    // tab's request would have been sent as that user (a probe)
    const other = await storedAfter(used, (await errorCode(response)) === 'invalid_token')
    if (!stillUsing(used)) return sameUserAs(used)
    const otherUser = other !== null && !sameUser(other.access_token, used.access_token)
    if (other && !otherUser && other.refresh_token !== used.refresh_token) {
      tokens.value = other
      return true
    }
    if (otherUser) {
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

  /** fetch() with the access token; on 401 token_expired one silent refresh and one retry,
   * only as the user whose token the request went with. Throws as fetch() does offline, also when
   * the refresh does not get through (the session is kept). */
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
    // tokens other than those used: a refresh won meanwhile, or another user signed in, whose
    // token must not carry this request (a probe: a queued scan was recorded as theirs)
    const fresh = tokens.value?.access_token !== usedToken || (await refresh())
    const sameSigner = tokens.value !== null && sameUser(tokens.value.access_token, usedToken)
    return fresh && sameSigner ? fetch(authorised(retry)) : response
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
