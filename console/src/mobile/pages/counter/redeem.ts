// M4 at the counter: what a redemption code's check (POST /redemptions/check) means to the person
// holding the phone — or the office service desk (console/src/pages/members/VerifyPage.vue uses
// the same rules) — and whether, and where, its gift may be handed out here. The server decides
// (app/members/redemptions.py); these rules only keep a button from being shown that the API
// would refuse: an e-shop voucher is handed out by customer service above the stores (422
// `online_gift` at a store or a factory), a physical gift at a store — the caller's own, or one
// of the caller's subtree named by `store_id` (422 `store_required`).
import type { Schemas } from '@/api/types'

export type CheckOut = Schemas['CheckOut']
export type Tone = 'ok' | 'warn' | 'error'

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ' // Crockford's base32, as the server's
export const CODE_LENGTH = 10
/** The organisation kinds that may have stores below them (app/orgs/service.py CHILD_KINDS). */
const ABOVE_STORES = new Set(['brand', 'branch', 'agent', 'distributor'])

/** The code as the server reads it: full-width letters (a Chinese input method's) as ASCII, upper
 * case, without spaces or dashes, I and L as 1, O as 0 — or null when it cannot be one (10
 * letters and digits): the server would answer 400 `malformed_code`. */
export function normaliseCode(text: string): string | null {
  const code = text
    .normalize('NFKC')
    .toUpperCase()
    .replace(/[\s-]/g, '')
    .replace(/[IL]/g, '1')
    .replace(/O/g, '0')
  if (code.length !== CODE_LENGTH || [...code].some((c) => !ALPHABET.includes(c))) return null
  return code
}

/** Grouped for reading aloud: ABCDE-FGHJK. */
export function groupCode(code: string): string {
  return code.length === CODE_LENGTH ? `${code.slice(0, 5)}-${code.slice(5)}` : code
}

/** The API's `lang` for the app's locale: its message (您的兑换码已使用…) in the reader's words. */
export function apiLang(locale: string): 'zh' | 'en' {
  return locale.toLowerCase().startsWith('en') ? 'en' : 'zh'
}

/** How a checked code reads: a valid one green, an issued one not to be handed out (its member
 * frozen) amber, a used or expired one red. `mine`: it was fulfilled by the reader (an answer
 * lost on the way, the fulfil sent again: 409 `code_used`, yet the gift was handed out). */
export function verdictOf(check: CheckOut, userId: number | null): { tone: Tone; mine: boolean } {
  if (check.valid) return { tone: 'ok', mine: false }
  if (check.status === 'issued') return { tone: 'warn', mine: false }
  return { tone: 'error', mine: check.status === 'fulfilled' && userId !== null && check.fulfilled_by === userId }
}

/** Where the gift can be handed out by someone of an organisation of `orgKind`: `here` (no store
 * to name), `pick_store` (a physical gift handed out by staff above the stores: which store),
 * or `not_here` (an e-shop voucher at a store, a factory or a warehouse; a physical gift where
 * no store is below). An organisation whose kind could not be read (null) is left to the API
 * (`here`): the button is one the permission allows, and a refusal is shown in words. */
export type FulfilMode = 'here' | 'pick_store' | 'not_here'

export function fulfilMode(kind: CheckOut['kind'], orgKind: string | null): FulfilMode {
  if (orgKind === null) return 'here'
  if (kind === 'online') return ABOVE_STORES.has(orgKind) ? 'here' : 'not_here'
  if (orgKind === 'store') return 'here'
  return ABOVE_STORES.has(orgKind) ? 'pick_store' : 'not_here'
}

/** The body of POST /redemptions/fulfil. */
export function fulfilBody(code: string, mode: FulfilMode, storeId: number | null, locale: string): Record<string, unknown> {
  const body: Record<string, unknown> = { code, lang: apiLang(locale) }
  if (mode === 'pick_store' && storeId !== null) body.store_id = storeId
  return body
}

/** May the fulfil button be pressed: a valid code, handed out here or at a store chosen. */
export function canFulfil(check: CheckOut | null, mode: FulfilMode, storeId: number | null): boolean {
  if (!check?.valid || mode === 'not_here') return false
  return mode === 'here' || storeId !== null
}
