// How an answer reads on the phone: a tone (colour, sound) and a message.
import type { Tone } from './scan/feedback'
import type { ScanOut } from './api'

export const TONE_OF_RESULT: Record<string, Tone> = {
  in_channel: 'ok',
  diverted: 'warn',
  unknown_route: 'warn',
  counterfeit: 'error',
}

/** The ScanOut in an inspection's answer: the 201/200 body, or a 422 counterfeit's details. */
export function scanOutOf(status: number, body: unknown): ScanOut | null {
  if (status === 200 || status === 201) return body as ScanOut
  const error = (body as { error?: { code?: string; details?: unknown } } | null)?.error
  if (error?.code === 'counterfeit' && error.details) return error.details as ScanOut
  return null
}

export function errorMessage(body: unknown, status: number): string {
  const error = (body as { error?: { message?: string; code?: string } } | null)?.error
  return error?.message ?? error?.code ?? `HTTP ${status}`
}
