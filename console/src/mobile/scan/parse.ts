// What a scan read, as the app shows it before (or without) asking the server: a unit (a bare
// serial, a …/c/{serial} URL or a GS1 Digital Link …/01/{GTIN}/…/21/{serial}), a case (an SSCC
// as 18 digits, 00…, (00)…, a GS1-128 element string with FNC1 or a symbology prefix or, typed
// by a keyboard wedge without either, digits only whose AIs after (00) all read, a Digital Link
// …/00/{SSCC} or an EPC URN urn:epc:id:sscc:{company}.{ref}), or a store nameplate. The server parses again (app/codes/scheme.py
// serial_from_scan, sscc_from_scan); `code` is what the app sends it.

export type ScanKind = 'unit' | 'case' | 'store' | 'invalid'

export interface ParsedScan {
  kind: ScanKind
  /** what to send to the API: the whole content for a unit, the 18 digits for a case */
  code: string
  raw: string
  serial?: string
  gtin?: string
  lot?: string
  sscc?: string
  /** a nameplate's store code (ERP code) or its signed token */
  store?: string
  /** the store's id, for a signed nameplate (app/field/nameplates.py: N<id>.<tag>) */
  storeId?: number
  /** why it is invalid (empty, bad_check_digit, too_long) */
  reason?: string
}

const MAX_CODE = 512

/** The GS1 mod-10 check digit of the digits before it (GTIN-8/12/13/14, SSCC). */
export function gs1CheckDigit(body: string): number {
  let sum = 0
  for (let i = 0; i < body.length; i++) {
    const digit = body.charCodeAt(body.length - 1 - i) - 48
    sum += digit * (i % 2 === 0 ? 3 : 1)
  }
  return (10 - (sum % 10)) % 10
}

/** Is this 8–18 digit string's last digit its GS1 check digit? */
export function validGs1(digits: string): boolean {
  if (!/^\d{8,18}$/.test(digits)) return false
  return gs1CheckDigit(digits.slice(0, -1)) === Number(digits.slice(-1))
}

/** Symbology identifiers (]C1 GS1-128, ]Q3 QR, ]d2 DataMatrix…) and FNC1 (GS, \x1d) removed. */
function clean(text: string): string {
  return text
    .trim()
    .replace(/^\][A-Za-z][0-9A-Za-z]/, '')
    .replace(/^\x1d/, '')
}

function pathOf(text: string): string | null {
  if (/^https?:\/\//i.test(text)) {
    try {
      return new URL(text).pathname
    } catch {
      return null
    }
  }
  return text.startsWith('/') ? text : null
}

/** A nameplate: …/n/{code} (the field force's signed N<id>.<tag>, printed as {public}/m/n/…),
 * …/nameplate/{code}, …/store/{code} or STORE:{code}. */
function nameplate(text: string, path: string | null): string | null {
  const prefixed = /^STORE:([!-~]{1,512})$/i.exec(text)
  if (prefixed?.[1]) return prefixed[1]
  if (!path) return null
  const match = /\/(?:n|nameplate|store|stores)\/([^/?#]+)\/?$/.exec(path)
  return match?.[1] ? decodeURIComponent(match[1]) : null
}

/** An SSCC EPC URN (what an RFID reader or an EPCIS document names a case by):
 * urn:epc:id:sscc:{company prefix}.{extension digit + serial reference}, 17 digits in all; the
 * SSCC puts the extension digit first and adds the check digit. */
function ssccOfUrn(text: string): string | null {
  const match = /^urn:epc:id:sscc:(\d{6,12})\.(\d{5,11})$/i.exec(text)
  if (!match || match[1]!.length + match[2]!.length !== 17) return null
  const body = match[2]![0]! + match[1]! + match[2]!.slice(1)
  return body + String(gs1CheckDigit(body))
}

/** The AIs that may follow (00) on a case label, by their data's length: fixed (a number), or
 * variable up to a most (a pair), which can only come last when nothing separates the AIs. */
const LABEL_AIS: Record<string, number | [number, number]> = {
  '01': 14, '02': 14, '11': 6, '12': 6, '13': 6, '15': 6, '16': 6, '17': 6, '20': 2,
  '10': [1, 20], '21': [1, 20], '30': [1, 8], '37': [1, 8],
}

/** Do these digits (what followed 00 + SSCC) read as AIs and their data, a GTIN with its check
 * digit? Strict: a unit serial is never all digits past 20 characters, but nothing is guessed. */
function labelTail(digits: string): boolean {
  let at = 0
  while (at < digits.length) {
    const ai = digits.slice(at, at + 2)
    const size = LABEL_AIS[ai]
    const data = digits.slice(at + 2)
    if (size === undefined) return false
    if (Array.isArray(size)) return data.length >= size[0] && data.length <= size[1]
    if (data.length < size) return false
    if ((ai === '01' || ai === '02') && !validGs1(data.slice(0, size))) return false
    at += 2 + size
  }
  return true
}

/** A GS1-128 case label typed without its symbology prefix and FNC1 (a keyboard wedge's
 * default): 00, a valid SSCC, then AIs that all read (a probe: taken for a unit serial). */
function bareLabel(compact: string): boolean {
  return /^00\d{19,}$/.test(compact) && validGs1(compact.slice(2, 20)) && labelTail(compact.slice(20))
}

function caseOf(raw: string, sscc: string): ParsedScan {
  return validGs1(sscc)
    ? { kind: 'case', code: sscc, raw, sscc }
    : { kind: 'invalid', code: sscc, raw, sscc, reason: 'bad_check_digit' }
}

/** Parse one scan (camera, keyboard wedge or typed). A malformed percent escape in a URL's path
 * (`…/c/%zz`: a damaged or hostile label) is not a code: answered, never thrown (a probe). */
export function parseScan(input: string): ParsedScan {
  try {
    return parse(input)
  } catch (error) {
    if (!(error instanceof URIError)) throw error
    return { kind: 'invalid', code: clean(input), raw: input, reason: 'not_a_code' }
  }
}

function parse(input: string): ParsedScan {
  const raw = input
  const text = clean(input)
  if (!text) return { kind: 'invalid', code: '', raw, reason: 'empty' }
  if (text.length > MAX_CODE) return { kind: 'invalid', code: text, raw, reason: 'too_long' }
  const urn = ssccOfUrn(text)
  if (urn) return caseOf(raw, urn)
  const path = pathOf(text)
  const store = nameplate(text, path)
  if (store) {
    const signed = /^N([1-9]\d{0,17})\.[A-Za-z0-9_-]+$/.exec(store)
    return signed?.[1]
      ? { kind: 'store', code: text, raw, store, storeId: Number(signed[1]) }
      : { kind: 'store', code: text, raw, store }
  }
  if (path) {
    const parts = path.split('/').filter(Boolean)
    const sscc = parts.indexOf('00')
    if (sscc >= 0 && /^\d{18}$/.test(parts[sscc + 1] ?? '')) return caseOf(raw, parts[sscc + 1]!)
    const out: ParsedScan = { kind: 'unit', code: text, raw }
    for (let i = 0; i < parts.length - 1; i++) {
      const key = parts[i]!.toLowerCase()
      const value = decodeURIComponent(parts[i + 1]!)
      if (key === '01' && /^\d{14}$/.test(value)) out.gtin = value
      else if (key === '10') out.lot = value
      else if (key === '21' || key === 'c') out.serial = value
    }
    if (out.gtin && !validGs1(out.gtin)) return { ...out, kind: 'invalid', reason: 'bad_check_digit' }
    if (out.serial) return out
    return { kind: 'invalid', code: text, raw, reason: 'not_a_code' }
  }
  // element strings: (00)SSCC…, 00SSCC (GS1-128, maybe more AIs after it), a bare SSCC
  const compact = text.replace(/[\s\x1d]/g, '')
  const gs1 = /^\][Cc]1/.test(raw.trim()) || raw.includes('\x1d')
  const bracketed = /^\(00\)(\d{18})/.exec(compact)
  if (bracketed?.[1]) return caseOf(raw, bracketed[1])
  if (/^\d{18}$/.test(compact)) return caseOf(raw, compact)
  if (/^00\d{18}/.test(compact) && (compact.length === 20 || gs1 || bareLabel(compact))) {
    return caseOf(raw, compact.slice(2, 20))
  }
  if (/\s/.test(text)) return { kind: 'invalid', code: text, raw, reason: 'not_a_code' }
  return { kind: 'unit', code: text, raw, serial: text }
}

/** The code a path segment can carry (GET /trace/{code}: no slash) of a typed or scanned text: a
 * unit's serial (a bare one, …/c/{serial}, a Digital Link's …/21/{serial}), a case's 18 digits
 * (…/00/{sscc} and every other written form); any other text trimmed, the server's to refuse (a
 * probe: the console sent a unit's QR URL whole, always 404). */
export function segmentCode(input: string): string {
  const read = parseScan(input)
  if (read.kind === 'case' && read.sscc) return read.sscc
  if (read.kind === 'unit' && read.serial) return read.serial
  return input.trim()
}
