// The signed-in staff user, shared with the console (the same auth store and tokens: signing in
// on one signs in on the other, on this origin). Who the user is (GET /auth/me) is also kept in
// localStorage, so the app opened offline still knows the user's tasks and queues their scans.
import { ApiFailure } from '@/api/errors'
import type { Me } from '@/api/types'
import { useAuthStore } from '@/stores/auth'
import { storage } from '@/utils/storage'

const ME_KEY = 'tracecode.m.me'

export function cachedMe(): Me | null {
  try {
    const raw = storage.get(ME_KEY)
    return raw ? (JSON.parse(raw) as Me) : null
  } catch {
    return null
  }
}

/** Who the user is: from the server when reachable, else the copy of the last sign-in. */
export async function ensureMe(): Promise<Me | null> {
  const auth = useAuthStore()
  if (!auth.loggedIn) return null
  if (auth.me) return auth.me
  try {
    const me = await auth.loadMe()
    storage.set(ME_KEY, JSON.stringify(me))
    return me
  } catch (error) {
    if (error instanceof ApiFailure) {
      await auth.logout()
      storage.remove(ME_KEY)
      return null
    }
    // offline: the last known user, if it is the one whose tokens these are
    const cached = cachedMe()
    if (cached) auth.me = cached
    return cached
  }
}

export async function signIn(username: string, password: string): Promise<void> {
  const auth = useAuthStore()
  await auth.login(username, password)
  if (auth.me) storage.set(ME_KEY, JSON.stringify(auth.me))
}

export async function signOut(): Promise<void> {
  storage.remove(ME_KEY)
  await useAuthStore().logout()
}
