import { describe, expect, it } from 'vitest'

import type { Category } from './categories'
import { moveCategory } from './categories'
import { checkDigit, gtin14, gtinProblem } from './gtin'
import { blankProduct, createBody, formOf, patchBody, type Product } from './product'
import messages from './messages'

describe('GTINs', () => {
  it('take 8, 12, 13 or 14 digits with their GS1 check digit', () => {
    for (const ok of ['96385074', '036000291452', '4006381333931', '6901234567892', '00012345600012', ' 6901234567892 '])
      expect(gtinProblem(ok), ok).toBeNull()
    expect(checkDigit('690123456789')).toBe(2)
  })

  it('name what is wrong: digits, check digit, all zeros', () => {
    for (const bad of ['', '1234567', '123456789', '12345678901', '690123456789X', '６９０１２３４５６７８９２', '6901234567892\n1'])
      expect(gtinProblem(bad), bad).toBe('digits')
    expect(gtinProblem('6901234567893')).toBe('checkDigit')
    expect(gtinProblem('96385075')).toBe('checkDigit')
    expect(gtinProblem('00000000')).toBe('zeros')
    expect(gtinProblem('00000000000000')).toBe('zeros')
  })

  it('are stored as GTIN-14', () => {
    expect(gtin14('6901234567892')).toBe('06901234567892')
    expect(gtin14('96385074')).toBe('00000096385074')
  })

  it('have a message for every problem in both languages', () => {
    for (const locale of ['zh-CN', 'en'] as const)
      for (const problem of ['digits', 'checkDigit', 'zeros'])
        expect(messages[locale].catalog.gtinProblem[problem as 'digits']).toBeTruthy()
  })
})

const product: Product = {
  id: 7,
  org_id: 1,
  category_id: 3,
  name: '水乳',
  spec: '100ml',
  product_type: '护肤',
  product_no: 'P-1',
  barcode: null,
  gtin: '06901234567892',
  image_url: null,
  colour_no: null,
  efficacy: '保湿',
  video_url: null,
  display_order: 0,
  published: false,
  erp_code: null,
  created_at: '2026-12-01T00:00:00Z',
  updated_at: '2026-12-01T00:00:00Z',
}

describe('the product form', () => {
  it('creates with blanks as null, trimmed, the owner and category as numbers', () => {
    const form = { ...blankProduct(), name: ' 面霜 ', product_no: 'P-2 ', gtin: ' 6901234567892', category_id: '3', org_id: '5', image_url: '  ' }
    expect(createBody(form)).toEqual({
      name: '面霜',
      product_no: 'P-2',
      category_id: 3,
      spec: '',
      product_type: '',
      barcode: null,
      gtin: '6901234567892',
      image_url: null,
      colour_no: null,
      efficacy: null,
      video_url: null,
      display_order: 0,
      published: false,
      org_id: 5,
    })
    expect(createBody(blankProduct()).org_id).toBeNull()
  })

  it('saved unchanged sends nothing (the GTIN compared as GTIN-14)', () => {
    expect(patchBody(product, formOf(product))).toEqual({})
    expect(patchBody(product, { ...formOf(product), gtin: '6901234567892' })).toEqual({})
  })

  it('an edit sends only what changed, never the GTIN printed on labels by the way', () => {
    const form = { ...formOf(product), name: '新水乳', published: true, category_id: '', video_url: 'https://v.example/1.mp4' }
    expect(patchBody(product, form)).toEqual({ name: '新水乳', published: true, category_id: null, video_url: 'https://v.example/1.mp4' })
    expect(patchBody(product, { ...formOf(product), gtin: '' })).toEqual({ gtin: null })
    expect(patchBody(product, { ...formOf(product), gtin: '96385074' })).toEqual({ gtin: '96385074' })
    expect(patchBody({ ...product, gtin: null }, { ...formOf(product), gtin: '96385074' })).toEqual({ gtin: '96385074' })
  })
})

function cat(id: number, display_order: number): Category {
  return { id, org_id: 1, name: `c${id}`, display_order, created_at: '', updated_at: '' }
}

describe('moving a category', () => {
  it('swaps the orders of two neighbours that differ', () => {
    const list = [cat(1, 10), cat(2, 20), cat(3, 30)]
    expect(moveCategory(list, 1, -1)).toEqual([
      { id: 2, display_order: 10 },
      { id: 1, display_order: 20 },
    ])
    expect(moveCategory(list, 1, 1)).toEqual([
      { id: 2, display_order: 30 },
      { id: 3, display_order: 20 },
    ])
  })

  it('numbers a tied list again, writing only the orders that differ', () => {
    // new categories are all 0: a swap of two zeros would change nothing
    const list = [cat(1, 0), cat(2, 0), cat(3, 0)]
    expect(moveCategory(list, 2, -1)).toEqual([
      { id: 3, display_order: 10 },
      { id: 2, display_order: 20 },
    ])
    const applied = [cat(1, 0), cat(3, 10), cat(2, 20)]
    expect(moveCategory(applied, 0, 1)).toEqual([
      { id: 1, display_order: 10 },
      { id: 3, display_order: 0 },
    ])
  })

  it('keeps negative orders in order', () => {
    // numbered from the first order: the one moved up keeps -5, the other goes after it
    expect(moveCategory([cat(1, -5), cat(2, -5)], 1, -1)).toEqual([{ id: 1, display_order: 5 }])
  })

  it('does nothing past either end', () => {
    const list = [cat(1, 0), cat(2, 1)]
    expect(moveCategory(list, 0, -1)).toEqual([])
    expect(moveCategory(list, 1, 1)).toEqual([])
    expect(moveCategory([], 0, 1)).toEqual([])
  })
})
