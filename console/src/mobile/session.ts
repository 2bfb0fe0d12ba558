// The signed-in staff user, shared with the console (the same auth store and tokens: signing in
// on one signs in on the other, on this origin). Who the user is (GET /auth/me) is also kept in
// localStorage, so the app opened offline still knows the user's tasks and queues their scans —
// kept with the user its tokens were issued to (the access token's JWT `sub`), and taken only
// while the stored tokens are still that user's: another user signed in on the console of the
// same browser must not be greeted, nor have the first user's queue sent, as the first (a probe).
import { sessionRefused } from '@/api/errors'
import type { Me } from '@/api/types'
import { subject, useAuthStore } from '@/stores/auth'
import { storage } from '@/utils/storage'

const ME_KEY = 'tracecode.m.me'

interface CachedMe {
  /** the subject of the access token /auth/me was answered for */
  sub: string
  me: Me
}

function tokenSubject(): string | null {
  return subject(useAuthStore().tokens?.access_token)
}

/** The last known user, if it is the one whose tokens are stored now; else null. */
export function cachedMe(): Me | null {
  try {
    const raw = storage.get(ME_KEY)
    const cached = raw ? (JSON.parse(raw) as Partial<CachedMe>) : null
    const sub = tokenSubject()
    return cached?.me && sub !== null && cached.sub === sub ? cached.me : null
  } catch {
    return null
  }
}

function keepMe(me: Me): void {
  const sub = tokenSubject()
  if (sub === null) storage.remove(ME_KEY)
  else storage.set(ME_KEY, JSON.stringify({ sub, me } satisfies CachedMe))
}

/** Who the user is: from the server when reachable, else the copy of the last sign-in. */
export async function ensureMe(): Promise<Me | null> {
  const auth = useAuthStore()
  if (!auth.loggedIn) return null
  if (auth.me) return auth.me
  try {
    const me = await auth.loadMe()
    keepMe(me)
    return me
  } catch (error) {
    if (sessionRefused(error)) {
      await auth.logout()
      storage.remove(ME_KEY)
      return null
    }
    // offline, or not answered (408, 429, 5xx): the last known user, if these tokens are theirs
    const cached = cachedMe()
    if (cached) auth.me = cached
    return cached
  }
}

export async function signIn(username: string, password: string): Promise<void> {
  const auth = useAuthStore()
  await auth.login(username, password)
  if (auth.me) keepMe(auth.me)
}

export async function signOut(): Promise<void> {
  storage.remove(ME_KEY)
  await useAuthStore().logout()
}

/**
 * POST /auth/password: the user's own password changed. Every other session of the user ends
 * (the tokens used for this call die too) and this one goes on with the pair answered, kept as
 * the auth store keeps its tokens — its state and localStorage (TOKENS_KEY), so a reload stays
 * signed in. The pair is the same user's (the same JWT `sub`): the copy of /auth/me and the
 * user's offline queue, both taken only with that user's tokens, go on as before.
 * Throws ApiFailure: 422 wrong_password, 429 login_locked, 400 validation_failed.
 */
export async function changePassword(current: string, next: string): Promise<void> {
  const auth = useAuthStore()
  await auth.changePassword(current, next)
  if (auth.me) keepMe(auth.me)
}
