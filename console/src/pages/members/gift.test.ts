import { describe, expect, it } from 'vitest'

import { blankGift, giftCreateBody, giftForm, giftPatchBody, type Gift } from './gift'

const gift: Gift = {
  id: 4,
  brand_id: 1,
  name: '化妆包',
  picture_url: null,
  description: '限量',
  points_cost: 500,
  kind: 'offline',
  stock: 20,
  valid_from: null,
  valid_to: '2026-12-31T16:00:00Z',
  provinces: ['浙江省', '上海市'],
  display_order: 0,
  collect_days: 30,
  how_to_collect: null,
  created_at: '2026-12-01T00:00:00Z',
  updated_at: '2026-12-01T00:00:00Z',
}

describe('the gift form', () => {
  it('creates with blanks as null', () => {
    const body = giftCreateBody({ ...blankGift(), name: ' 杯子 ', description: ' ', picture_url: 'https://x.example/a.png' })
    expect(body).toMatchObject({ name: '杯子', description: null, picture_url: 'https://x.example/a.png', valid_from: null, valid_to: null, provinces: [] })
  })

  it('saved unchanged sends nothing (the same instant in another offset, provinces in another order)', () => {
    expect(giftPatchBody(gift, giftForm(gift))).toEqual({})
    const form = { ...giftForm(gift), valid_to: '2027-01-01T00:00:00+08:00', provinces: ['上海市', '浙江省'] }
    expect(giftPatchBody(gift, form)).toEqual({})
  })

  // the stock is taken by redemptions meanwhile: an edit of another field never writes it back
  it('an edit sends only what changed', () => {
    expect(giftPatchBody(gift, { ...giftForm(gift), stock: 50 })).toEqual({ stock: 50 })
    expect(giftPatchBody(gift, { ...giftForm(gift), name: '新包', points_cost: 800 })).toEqual({ name: '新包', points_cost: 800 })
    expect(giftPatchBody(gift, { ...giftForm(gift), kind: 'online', description: '', valid_to: null })).toEqual({
      kind: 'online',
      description: null,
      valid_to: null,
    })
    expect(giftPatchBody(gift, { ...giftForm(gift), provinces: [] })).toEqual({ provinces: [] })
  })
})

describe('the gift form’s times (Shanghai wall clock, as the table shows them)', () => {
  it('shows the validity in Shanghai time and sends the time picked with +08:00', () => {
    expect(giftForm(gift)).toMatchObject({ valid_from: '', valid_to: '2027-01-01 00:00:00' })
    const form = { ...giftForm(gift), valid_from: '2026-12-01 09:30:00' }
    expect(giftPatchBody(gift, form)).toEqual({ valid_from: '2026-12-01T09:30:00+08:00' })
    expect(giftCreateBody(form)).toMatchObject({ valid_from: '2026-12-01T09:30:00+08:00', valid_to: '2027-01-01T00:00:00+08:00' })
  })
})
