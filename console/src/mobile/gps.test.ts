import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

type Success = (p: { coords: { latitude: number; longitude: number; accuracy: number } }) => void
type Failure = (e: { message: string }) => void

// A fake navigator.geolocation: each request answers as `next` says (a position, or an error).
let next: 'fix' | 'fail' = 'fix'
const geolocation = {
  watchPosition: vi.fn(() => 1),
  clearWatch: vi.fn(),
  getCurrentPosition: vi.fn((ok: Success, fail: Failure) => {
    if (next === 'fix') ok({ coords: { latitude: 30.25, longitude: 120.15, accuracy: 12 } })
    else fail({ message: 'Timeout expired' })
  }),
}

async function gps(): Promise<typeof import('./gps')> {
  vi.resetModules() // the module keeps the session's last fix: a fresh one per test
  return import('./gps')
}

describe('currentFix', () => {
  beforeEach(() => {
    vi.useFakeTimers()
    vi.stubGlobal('navigator', { geolocation })
    next = 'fix'
  })
  afterEach(() => {
    vi.useRealTimers()
    vi.unstubAllGlobals()
  })

  it('falls back on the last fix while it is at most two minutes old', async () => {
    const { currentFix } = await gps()
    expect(await currentFix()).toEqual({ lat: 30.25, lng: 120.15 })
    next = 'fail'
    vi.advanceTimersByTime(60_000)
    expect(await currentFix()).toEqual({ lat: 30.25, lng: 120.15 })
  })

  it('answers "GPS missing" (null) when the request fails and the last fix is older', async () => {
    const { currentFix, MAX_AGE_MS } = await gps()
    expect(await currentFix()).not.toBeNull()
    next = 'fail'
    vi.advanceTimersByTime(MAX_AGE_MS + 1)
    expect(await currentFix()).toBeNull()
    vi.advanceTimersByTime(3 * 3600_000) // hours later, far away: still never the old fix
    expect(await currentFix()).toBeNull()
  })

  it('takes a new fix when the request succeeds, however old the last one', async () => {
    const { currentFix, MAX_AGE_MS } = await gps()
    await currentFix()
    const before = geolocation.getCurrentPosition.mock.calls.length
    vi.advanceTimersByTime(MAX_AGE_MS + 1)
    expect(await currentFix()).toEqual({ lat: 30.25, lng: 120.15 })
    expect(geolocation.getCurrentPosition.mock.calls.length).toBe(before + 1)
  })
})
