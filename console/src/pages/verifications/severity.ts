// A verification record's colour (seed 三: 以颜色标注), by the severity the API gives each record
// from its result: ok green (genuine), info grey (asked without the PIN), warning amber (wrong
// PIN, suspicious), critical red (not genuine, locked) — the alerts' colours plus green.
import { severityTag, type TagType } from '@/pages/alerts/severity'

export const RESULTS = ['genuine', 'unconfirmed', 'suspicious', 'wrong_pin', 'not_genuine', 'locked'] as const

export function recordTag(severity: string | null | undefined): TagType {
  return severity === 'ok' ? 'success' : severityTag(severity)
}
