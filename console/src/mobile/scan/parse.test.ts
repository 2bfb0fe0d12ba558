import { describe, expect, it } from 'vitest'

import { gs1CheckDigit, parseScan, segmentCode, validGs1 } from './parse'

// 00 + 0 + company 0614141 + serial ref 123456789 + check digit 2: the GS1 General
// Specifications' example SSCC (check digit computed by the mod-10 rule).
const SSCC = '106141411234567897'

describe('GS1 check digits', () => {
  it('computes the mod-10 digit of a GTIN and an SSCC', () => {
    expect(gs1CheckDigit('0950110153000')).toBe(3) // GTIN-14 09501101530003
    expect(validGs1('09501101530003')).toBe(true)
    expect(validGs1('09501101530004')).toBe(false)
    expect(validGs1(SSCC)).toBe(true)
    expect(validGs1('12345')).toBe(false)
  })
})

describe('parseScan', () => {
  it('reads a GS1 Digital Link URL: GTIN, lot and serial; sends the whole content', () => {
    const url = 'https://id.example.com/01/09501101530003/10/L2026A/21/AB12CD34EF?17=270101'
    const read = parseScan(url)
    expect(read).toMatchObject({ kind: 'unit', gtin: '09501101530003', lot: 'L2026A' })
    expect(read.serial).toBe('AB12CD34EF')
    expect(read.code).toBe(url)
  })

  it('refuses a Digital Link whose GTIN check digit is wrong', () => {
    const read = parseScan('https://id.example.com/01/09501101530004/21/AB12')
    expect(read.kind).toBe('invalid')
    expect(read.reason).toBe('bad_check_digit')
  })

  it('reads the verification URL …/c/{serial} and a bare serial', () => {
    expect(parseScan('https://t.example.cn/c/K7P2M9Q4X8R3')).toMatchObject({
      kind: 'unit',
      serial: 'K7P2M9Q4X8R3',
    })
    expect(parseScan('  K7P2M9Q4X8R3\n')).toMatchObject({
      kind: 'unit',
      code: 'K7P2M9Q4X8R3',
      serial: 'K7P2M9Q4X8R3',
    })
  })

  it('reads an SSCC in every written form, the 18 digits being what is sent', () => {
    for (const text of [
      SSCC,
      `00${SSCC}`,
      `(00)${SSCC}`,
      `(00) ${SSCC}`,
      `]C100${SSCC}`,
      `]C100${SSCC}\x1d02095011015300033712`,
      `https://id.example.com/00/${SSCC}`,
    ]) {
      const read = parseScan(text)
      expect(read.kind, text).toBe('case')
      expect(read.code, text).toBe(SSCC)
      expect(read.sscc, text).toBe(SSCC)
    }
  })

  it('reads a combined case label a keyboard wedge typed without ]C1 and GS: (00) (02) (37)', () => {
    /** A probe: most wedge scanners send no symbology identifier and a browser field drops the
     * FNC1 (GS): `00{SSCC}02{GTIN}37{count}` came as digits only and was taken for a unit
     * serial — "rejected · malformed" for a genuine case (on a shelf: a counterfeit). */
    for (const text of [
      `00${SSCC}02095011015300033712`,
      `00${SSCC}0209501101530003`,
      `00${SSCC}0209501101530003151231103712345`,
    ]) {
      expect(parseScan(text), text).toMatchObject({ kind: 'case', code: SSCC, sscc: SSCC })
    }
  })

  it('does not read digits after 00 + SSCC as a case unless every AI after it reads', () => {
    for (const text of [
      `00${SSCC}0209501101530004` + '3712', // the GTIN's check digit is wrong
      `00${SSCC}99123`, // an AI a case label does not carry
      `00${SSCC}020950110153`, // (02) cut short
      `00${SSCC}37123456789`, // a count of 9 digits
      `00${SSCC.slice(0, 17)}0` + '02095011015300033712', // the SSCC's check digit is wrong
    ]) {
      expect(parseScan(text).kind, text).not.toBe('case')
    }
  })

  it('reads an SSCC EPC URN (an RFID reader, the EPCIS documents) as the case', () => {
    /** A probe: an RFID sled typing the tag's EPC URI, `urn:epc:id:sscc:{company}.{ext+ref}`,
     * was sent as a unit serial and refused as malformed. The 18 digits are sent. */
    expect(parseScan('urn:epc:id:sscc:0614141.1123456789')).toMatchObject({ kind: 'case', code: SSCC, sscc: SSCC })
    expect(parseScan('URN:EPC:ID:SSCC:061414112.13456789')).toMatchObject({ kind: 'case', code: '106141411234567897' })
    for (const text of ['urn:epc:id:sscc:0614141.123456789', 'urn:epc:id:sscc:0614141.12345678901', 'urn:epc:id:sscc:0614141']) {
      expect(parseScan(text).kind, text).not.toBe('case')
    }
  })

  it('refuses an SSCC with a wrong check digit', () => {
    const read = parseScan(`(00)${SSCC.slice(0, 17)}0`)
    expect(read).toMatchObject({ kind: 'invalid', reason: 'bad_check_digit' })
  })

  it('reads a store nameplate by URL or prefix', () => {
    expect(parseScan('https://t.example.cn/n/SH-0001')).toMatchObject({
      kind: 'store',
      store: 'SH-0001',
    })
    expect(parseScan('STORE:GZ-STORE-7')).toMatchObject({ kind: 'store', store: 'GZ-STORE-7' })
    expect(parseScan('STORE:GZ-STORE-7').storeId).toBeUndefined()
  })

  it('reads a signed field-force nameplate: the store id with its tag', () => {
    const read = parseScan('https://t.example.cn/m/n/N1234.AbC_9-xYz012345678')
    expect(read).toMatchObject({ kind: 'store', storeId: 1234, store: 'N1234.AbC_9-xYz012345678' })
  })

  it('refuses empty, over-long and spaced text', () => {
    expect(parseScan('   ').reason).toBe('empty')
    expect(parseScan('x'.repeat(513)).reason).toBe('too_long')
    expect(parseScan('two words').kind).toBe('invalid')
    expect(parseScan('https://example.com/about').kind).toBe('invalid')
  })
})

describe('parseScan of a malformed percent escape', () => {
  it('answers not a code instead of throwing (a damaged or hostile label)', () => {
    for (const text of ['https://t.example.cn/c/%zz', 'https://t.example.cn/n/%E0%A4%A', '/01/%zz/21/AB12']) {
      expect(parseScan(text), text).toMatchObject({ kind: 'invalid', reason: 'not_a_code' })
    }
  })
})

describe('segmentCode (the console’s trace: GET /trace/{code}, a path segment)', () => {
  it('sends the serial of a unit’s QR URL or Digital Link and the SSCC of a case’s', () => {
    // a probe: the URL the hint offers was sent whole as the path segment, always 404
    expect(segmentCode(' https://t.example.cn/c/K7P2M9Q4X8R3 ')).toBe('K7P2M9Q4X8R3')
    expect(segmentCode('https://id.example.com/01/09501101530003/10/L2026A/21/AB12CD34EF?17=270101')).toBe('AB12CD34EF')
    expect(segmentCode(`https://id.example.com/00/${SSCC}#shelf`)).toBe(SSCC)
    expect(segmentCode(`(00)${SSCC}`)).toBe(SSCC)
  })

  it('sends any other text as typed (trimmed): a bare serial, or what the server refuses', () => {
    expect(segmentCode('  K7P2M9Q4X8R3\n')).toBe('K7P2M9Q4X8R3')
    expect(segmentCode('https://example.com/about')).toBe('https://example.com/about')
    expect(segmentCode('https://t.example.cn/c/%zz')).toBe('https://t.example.cn/c/%zz')
  })
})
