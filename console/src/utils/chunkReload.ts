// A deploy under an open tab: every chunk's name carries a hash of its content and `make console`
// empties dist/, so a tab opened before the deploy still runs the old entry script and its next
// lazy import (a page, a chart) asks for a chunk that is gone (404). Such a failure loads the page
// again, once, at the URL the tab was going to: the new build's index.html and chunks. The console
// and the staff app install it (main.ts) before their router starts.
//
// Never a loop: sessionStorage keeps the URL reloaded for, and the same URL failing again (a broken
// deploy, a server answering HTML) is left to show its error. A later in-app navigation that
// succeeds forgets it, so the next deploy is handled too. No sessionStorage (disabled): no reload.
import { START_LOCATION, type Router } from 'vue-router'

export const RELOAD_KEY = 'tracecode.chunk-reload'

type Store = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>

/** Whether an error is a failed load of a chunk of the build (each browser words it its own way,
 * Vite's preload helper its own for a stylesheet). */
export function isChunkLoadError(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error)
  return /dynamically imported module|Importing a module script failed|Unable to preload CSS|Loading (CSS )?chunk/i.test(
    message,
  )
}

function session(): Store | null {
  try {
    return typeof globalThis.sessionStorage === 'undefined' ? null : globalThis.sessionStorage
  } catch {
    return null // storage disabled by the browser's privacy settings
  }
}

export interface ChunkReload {
  /** Load `url` again for a failed chunk, unless it was already for this URL; true when a reload
   * is under way (then nothing else is to be done on this page). */
  reload(url: string): boolean
  /** A navigation succeeded: the next failure may reload again. */
  settled(): void
}

export function chunkReload(
  store: Store | null = session(),
  go: (url: string) => void = (url) => window.location.assign(url),
): ChunkReload {
  let underway = false
  return {
    reload(url) {
      if (underway) return true
      try {
        if (store === null || store.getItem(RELOAD_KEY) === url) return false
        store.setItem(RELOAD_KEY, url)
      } catch {
        return false
      }
      underway = true
      go(url)
      return true
    },
    settled() {
      try {
        store?.removeItem(RELOAD_KEY)
      } catch {
        // nothing kept, nothing to forget
      }
    },
  }
}

/** Reload on a failed chunk: a navigation's (router.onError) at the URL it was going to, any
 * other (Vite's `vite:preloadError`: a chart, a component loaded later) at the page's own URL. */
export function installChunkReload(router: Router, guard: ChunkReload = chunkReload()): void {
  let navigating = false
  router.beforeEach(() => {
    navigating = true
  })
  router.afterEach((_to, from, failure) => {
    navigating = false
    // not the first navigation of a load: that one follows the reload and proves nothing yet
    if (!failure && from !== START_LOCATION) guard.settled()
  })
  router.onError((error, to) => {
    navigating = false
    if (isChunkLoadError(error)) guard.reload(router.resolve(to.fullPath).href)
  })
  window.addEventListener('vite:preloadError', (event) => {
    if (navigating) return // the import's error reaches router.onError, which knows the target
    if (guard.reload(window.location.href)) event.preventDefault()
  })
}
