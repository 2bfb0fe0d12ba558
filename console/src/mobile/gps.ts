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
let watching: number | null = null

export function watchGps(): void {
  if (watching !== null || !('geolocation' in navigator)) return
  watching = navigator.geolocation.watchPosition(
    (p) => {
      fix.value = { lat: p.coords.latitude, lng: p.coords.longitude }
      accuracy.value = p.coords.accuracy
      fixedAt = Date.now()
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

/** The current position, waiting up to `ms` for one; null when there is none. */
export function currentFix(ms = 5000): Promise<Fix | null> {
  if (fix.value && Date.now() - fixedAt < 120_000) return Promise.resolve(fix.value)
  if (!('geolocation' in navigator)) return Promise.resolve(null)
  return new Promise((resolve) => {
    navigator.geolocation.getCurrentPosition(
      (p) => {
        fix.value = { lat: p.coords.latitude, lng: p.coords.longitude }
      accuracy.value = p.coords.accuracy
        fixedAt = Date.now()
        resolve(fix.value)
      },
      () => resolve(fix.value),
      { enableHighAccuracy: true, maximumAge: 120_000, timeout: ms },
    )
  })
}
