// A deploy under an open tab: a failed chunk loads the page again once, never in a loop.
import { describe, expect, it } from 'vitest'

import { chunkReload, isChunkLoadError, RELOAD_KEY } from './chunkReload'

function memory(): Storage {
  const items = new Map<string, string>()
  return {
    getItem: (key: string) => items.get(key) ?? null,
    setItem: (key: string, value: string) => void items.set(key, value),
    removeItem: (key: string) => void items.delete(key),
    clear: () => items.clear(),
    key: () => null,
    get length() {
      return items.size
    },
  }
}

describe('a failed chunk reloads the page once', () => {
  it('reloads the target once, and not again for the same URL after the reload', () => {
    const store = memory()
    const loads: string[] = []
    expect(chunkReload(store, (url) => loads.push(url)).reload('/console/users')).toBe(true)
    expect(store.getItem(RELOAD_KEY)).toBe('/console/users')
    // the page loaded again: a new guard, the same session
    expect(chunkReload(store, (url) => loads.push(url)).reload('/console/users')).toBe(false)
    expect(loads).toEqual(['/console/users'])
  })

  it('reloads for another URL, and for the same one after a navigation succeeded', () => {
    const store = memory()
    const loads: string[] = []
    chunkReload(store, (url) => loads.push(url)).reload('/console/users')
    const after = chunkReload(store, (url) => loads.push(url))
    after.settled()
    expect(chunkReload(store, (url) => loads.push(url)).reload('/console/users')).toBe(true)
    expect(chunkReload(store, (url) => loads.push(url)).reload('/console/orgs')).toBe(true)
    expect(loads).toEqual(['/console/users', '/console/users', '/console/orgs'])
  })

  it('starts one reload per page, whatever else fails meanwhile', () => {
    const loads: string[] = []
    const guard = chunkReload(memory(), (url) => loads.push(url))
    expect(guard.reload('/m/documents')).toBe(true)
    expect(guard.reload('/m/')).toBe(true) // under way: nothing else to do
    expect(loads).toEqual(['/m/documents'])
  })

  it('never reloads without a session storage to remember it in', () => {
    const loads: string[] = []
    expect(chunkReload(null, (url) => loads.push(url)).reload('/console/users')).toBe(false)
    const full = { ...memory(), setItem: () => { throw new Error('QuotaExceededError') } }
    expect(chunkReload(full, (url) => loads.push(url)).reload('/console/users')).toBe(false)
    expect(loads).toEqual([])
  })
})

describe('what a failed chunk load looks like', () => {
  it('knows the browsers’ and Vite’s words for it, and nothing else', () => {
    for (const message of [
      'Failed to fetch dynamically imported module: https://x/console/assets/UsersPage-1.js', // Chromium
      'error loading dynamically imported module: https://x/m/assets/a.js', // Firefox
      'Importing a module script failed.', // Safari
      'Unable to preload CSS for /console/assets/UsersPage-1.css', // Vite
    ]) {
      expect(isChunkLoadError(new TypeError(message)), message).toBe(true)
    }
    expect(isChunkLoadError(new Error('Request failed with status 500'))).toBe(false)
    expect(isChunkLoadError(undefined)).toBe(false)
  })
})
