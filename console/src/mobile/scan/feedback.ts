// Immediate feedback of a scan: a tone (Web Audio, no sound file), a vibration where the device
// has one, and the colour the page shows (the message is the page's).
export type Tone = 'ok' | 'warn' | 'error' | 'pending'

export const COLOURS: Record<Tone, string> = {
  ok: '#07c160',
  warn: '#ff976a',
  error: '#ee0a24',
  pending: '#1989fa',
}

let audio: AudioContext | null = null

function beep(frequency: number, ms: number, at = 0): void {
  try {
    const Ctx = globalThis.AudioContext ?? (globalThis as { webkitAudioContext?: typeof AudioContext }).webkitAudioContext
    if (!Ctx) return
    audio ??= new Ctx()
    const start = audio.currentTime + at / 1000
    const osc = audio.createOscillator()
    const gain = audio.createGain()
    osc.frequency.value = frequency
    gain.gain.setValueAtTime(0.15, start)
    gain.gain.exponentialRampToValueAtTime(0.001, start + ms / 1000)
    osc.connect(gain).connect(audio.destination)
    osc.start(start)
    osc.stop(start + ms / 1000)
  } catch {
    // no audio (autoplay policy before the first tap, or none at all): the colour says it
  }
}

export function feedback(tone: Tone): void {
  const vibrate = (pattern: number | number[]) => {
    try {
      navigator.vibrate?.(pattern)
    } catch {
      // not allowed here
    }
  }
  if (tone === 'ok') {
    beep(1760, 90)
    vibrate(40)
  } else if (tone === 'pending') {
    beep(1320, 90)
    vibrate(40)
  } else if (tone === 'warn') {
    beep(880, 140)
    beep(880, 140, 180)
    vibrate([80, 60, 80])
  } else {
    beep(330, 400)
    vibrate([200, 80, 200])
  }
}
