// The device's position for inspections: watched while a scanning page is open, so a scan does
// not wait for a fix; the last fix (at most two minutes old) is used.
import { ref } from 'vue'

export interface Fix {
  lat: number
  lng: number
}

export const fix = ref<Fix | null>(null)
export const gpsError = ref('')
/** the last fix's accuracy in metres (the field check-in sends it) */
export const accuracy = ref<number | null>(null)
let fixedAt = 0
/** how old a fix may be and still be used */
export const MAX_AGE_MS = 120_000
let watching: number | null = null

/** When a position was taken: its own `timestamp` (a position from the browser's cache, as
 * `maximumAge` allows, is that old already: a probe dated it on arrival, and a fix ~2 minutes old
 * was used for two minutes more), the arrival only when it has none. */
function takenAt(p: GeolocationPosition): number {
  return Number.isFinite(p.timestamp) && p.timestamp > 0 ? Math.min(p.timestamp, Date.now()) : Date.now()
}

export function watchGps(): void {
  if (watching !== null || !('geolocation' in navigator)) return
  watching = navigator.geolocation.watchPosition(
    (p) => {
      fix.value = { lat: p.coords.latitude, lng: p.coords.longitude }
      accuracy.value = p.coords.accuracy
      fixedAt = takenAt(p)
      gpsError.value = ''
    },
    (e) => {
      gpsError.value = e.message
    },
    { enableHighAccuracy: true, maximumAge: 60_000, timeout: 20_000 },
  )
}

export function stopGps(): void {
  if (watching !== null) navigator.geolocation.clearWatch(watching)
  watching = null
}

/** The last fix when it is at most `MAX_AGE_MS` old, else null. */
function freshFix(): Fix | null {
  return fix.value && Date.now() - fixedAt < MAX_AGE_MS ? fix.value : null
}

/** The current position, waiting up to `ms` for one; null when there is none. A fresh request
 * that fails or times out falls back on the last fix only while it is at most two minutes old
 * (a probe: it answered the session's last fix however old, a check-in hours and kilometres
 * away from where the phone was). */
export function currentFix(ms = 5000): Promise<Fix | null> {
  const last = freshFix()
  if (last) return Promise.resolve(last)
  if (!('geolocation' in navigator)) return Promise.resolve(null)
  return new Promise((resolve) => {
    navigator.geolocation.getCurrentPosition(
      (p) => {
        fix.value = { lat: p.coords.latitude, lng: p.coords.longitude }
        accuracy.value = p.coords.accuracy
        fixedAt = takenAt(p)
        resolve(fix.value)
      },
      () => resolve(freshFix()),
      { enableHighAccuracy: true, maximumAge: MAX_AGE_MS, timeout: ms },
    )
  })
}
