import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

// A probe: a position the browser hands back from its cache (allowed by `maximumAge`) carries the
// time it was taken (`timestamp`); the app dated it from its arrival, so a fix ~2 minutes old was
// used for two minutes more: a check-in ~4 minutes (and maybe kilometres) from the phone.
let taken = 0
const geolocation = {
  watchPosition: vi.fn(() => 1),
  clearWatch: vi.fn(),
  getCurrentPosition: vi.fn((ok: (p: unknown) => void, fail: (e: { message: string }) => void) => {
    if (taken) ok({ coords: { latitude: 30.25, longitude: 120.15, accuracy: 12 }, timestamp: taken })
    else fail({ message: 'Timeout expired' })
  }),
}

describe('the age of a fix', () => {
  beforeEach(() => {
    vi.useFakeTimers()
    vi.stubGlobal('navigator', { geolocation })
  })
  afterEach(() => {
    vi.useRealTimers()
    vi.unstubAllGlobals()
  })

  it('never uses a fix taken more than two minutes ago', async () => {
    vi.resetModules()
    const { currentFix } = await import('./gps')
    taken = Date.now() - 110_000 // the browser's cached position, 110 s old (maximumAge: 120 s)
    expect(await currentFix()).not.toBeNull()
    taken = 0 // no new fix: GPS lost (a basement, a lift)
    vi.advanceTimersByTime(60_000) // the fix is now 170 s old
    expect(await currentFix()).toBeNull()
  })
})
