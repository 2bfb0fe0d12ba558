// How an answer reads on the phone: a tone (colour, sound) and a message.
import type { Tone } from './scan/feedback'
import type { ScanOut } from './api'
import type { Outcome } from './offline/queue'
import { errorText, isChinese, ZH_CN } from '@/i18n/apiErrors'

/** One code's answer in a 200 of POST /documents/{id}/codes. */
export interface ItemResult {
  code: string
  result: 'added' | 'duplicate' | 'rejected'
  kind?: string
  reason?: string
}

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

/** The codes an error names in `details.codes` (a sale's 422 `bad_codes`, a movement's refused
 * cases): what the user has to take out. */
export function errorCodes(body: unknown): string[] {
  const codes = (body as { error?: { details?: { codes?: unknown } | null } } | null)?.error?.details?.codes
  return Array.isArray(codes) ? codes.filter((c): c is string => typeof c === 'string') : []
}

/** An error answer in the app's language (`locale`) with its stable code (errorText), and the
 * codes it names. */
export function errorMessage(body: unknown, status: number, locale: string): string {
  const error = (body as { error?: { message?: string; code?: string; details?: unknown } } | null)?.error
  const code = typeof error?.code === 'string' ? error.code : `http_${status}`
  const text = errorText({ code, message: error?.message ?? `HTTP ${status}`, details: error?.details }, locale)
  const codes = errorCodes(body)
  return codes.length ? `${text}${isChinese(locale) ? '：' : ': '}${codes.join(', ')}` : text
}

/** A document code's reason inside a 200 (`not_activated`, `not_packed`, …) as an error code
 * reads (errorText: the reasons have their texts in the same map): in zh-CN its Chinese
 * text（reason）; in English, or for a reason without a text, the reason itself (the API's word). */
export function reasonText(reason: string | undefined, locale: string): string {
  const code = reason || 'rejected'
  return isChinese(locale) && code in ZH_CN ? errorText({ code, message: code }, locale) : code
}

/** Why the server refused an action that has left the queue: a 4xx's words (errorMessage), or a
 * document code's reason when it was `rejected` inside a 200 (reasonText); null when it was
 * taken. */
export function refusalOf(outcome: Outcome, locale: string): string | null {
  if (!outcome.ok) return errorMessage(outcome.body, outcome.status, locale)
  if (outcome.action.kind !== 'doc_codes') return null
  const item = outcome.body as ItemResult | undefined
  return item?.result === 'rejected' ? reasonText(item.reason, locale) : null
}
