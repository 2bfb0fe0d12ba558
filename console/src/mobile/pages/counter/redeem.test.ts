import { describe, expect, it } from 'vitest'

import { apiLang, canFulfil, fulfilBody, fulfilMode, groupCode, normaliseCode, verdictOf, type CheckOut } from './redeem'

const CHECK: CheckOut = {
  redemption_id: 1,
  valid: true,
  status: 'issued',
  refusal: null,
  message: '兑换码有效',
  gift_id: 2,
  gift_name: 'Silk scarf',
  kind: 'offline',
  points: 30,
  phone: '139****1234',
  created_at: '2026-12-01T02:00:00Z',
  expires_at: '2026-12-31T02:00:00Z',
  fulfilled_at: null,
  fulfilled_by: null,
  fulfilled_org_id: null,
}

describe('a redemption code as typed at the counter', () => {
  it('reads as the server reads it: case, spaces, dashes, look-alikes and full-width letters', () => {
    expect(normaliseCode('abcde-fghjk')).toBe('ABCDEFGHJK')
    expect(normaliseCode(' 0123 4567 8z ')).toBe('012345678Z')
    expect(normaliseCode('OIL0123456')).toBe('0110123456')
    // a Chinese input method types full-width letters and digits
    expect(normaliseCode('ａｂｃｄｅ１２３４５')).toBe('ABCDE12345')
  })

  it('is refused before it is sent when it cannot be one (the API: 400 malformed_code)', () => {
    expect(normaliseCode('ABC')).toBeNull()
    expect(normaliseCode('ABCDEFGHJKM')).toBeNull()
    expect(normaliseCode('ABCDEFGHJU')).toBeNull() // U is no Crockford letter
    expect(normaliseCode('')).toBeNull()
  })

  it('is grouped for reading aloud and asks the API in the reader\'s language', () => {
    expect(groupCode('ABCDEFGHJK')).toBe('ABCDE-FGHJK')
    expect(apiLang('en')).toBe('en')
    expect(apiLang('zh-CN')).toBe('zh')
  })
})

describe('what a checked code means', () => {
  it('is green when valid, amber when its member is frozen, red when used or expired', () => {
    expect(verdictOf(CHECK, 5)).toEqual({ tone: 'ok', mine: false })
    expect(verdictOf({ ...CHECK, valid: false, refusal: 'member_frozen' }, 5).tone).toBe('warn')
    expect(verdictOf({ ...CHECK, valid: false, status: 'expired' }, 5)).toEqual({ tone: 'error', mine: false })
  })

  it('says "you handed it out" when the reader fulfilled it (an answer lost, sent again)', () => {
    const used = { ...CHECK, valid: false, status: 'fulfilled' as const, fulfilled_by: 5, fulfilled_at: '2026-12-02T02:00:00Z' }
    expect(verdictOf(used, 5)).toEqual({ tone: 'error', mine: true })
    expect(verdictOf(used, 6).mine).toBe(false)
    expect(verdictOf(used, null).mine).toBe(false)
  })
})

describe('who hands out what, and where (as the API: online_gift, store_required)', () => {
  it('hands a physical gift out at the store, and lets staff above the stores name one', () => {
    expect(fulfilMode('offline', 'store')).toBe('here')
    expect(fulfilMode('offline', 'agent')).toBe('pick_store')
    expect(fulfilMode('offline', 'brand')).toBe('pick_store')
    expect(fulfilMode('offline', 'factory')).toBe('not_here')
  })

  it('hands an e-shop voucher out by customer service above the stores, never at a store or a factory', () => {
    expect(fulfilMode('online', 'brand')).toBe('here')
    expect(fulfilMode('online', 'agent')).toBe('here')
    expect(fulfilMode('online', 'store')).toBe('not_here')
    expect(fulfilMode('online', 'factory')).toBe('not_here')
    expect(fulfilMode('online', 'warehouse')).toBe('not_here')
  })

  it('leaves an organisation it could not read to the API', () => {
    expect(fulfilMode('online', null)).toBe('here')
  })

  it('offers the button for a valid code only, and a store chosen when one must be', () => {
    expect(canFulfil(CHECK, 'here', null)).toBe(true)
    expect(canFulfil(CHECK, 'pick_store', null)).toBe(false)
    expect(canFulfil(CHECK, 'pick_store', 9)).toBe(true)
    expect(canFulfil(CHECK, 'not_here', 9)).toBe(false)
    expect(canFulfil({ ...CHECK, valid: false, status: 'fulfilled' }, 'here', null)).toBe(false)
    expect(canFulfil(null, 'here', null)).toBe(false)
  })

  it('names the store only when one is picked', () => {
    expect(fulfilBody('ABCDEFGHJK', 'here', 9, 'zh-CN')).toEqual({ code: 'ABCDEFGHJK', lang: 'zh' })
    expect(fulfilBody('ABCDEFGHJK', 'pick_store', 9, 'en')).toEqual({ code: 'ABCDEFGHJK', lang: 'en', store_id: 9 })
  })
})
