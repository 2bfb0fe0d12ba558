import { describe, expect, it } from 'vitest'

import type { components } from '@/api/schema'
import messages from './messages'
import { PROVINCES, provinceLabel } from './provinces'

type Complaint = components['schemas']['ComplaintOut']
// Every value the API answers (the compiler checks these lists against the schema).
const STATUSES: Record<Complaint['status'], true> = { open: true, handling: true, closed: true }
const KINDS: Record<Complaint['kind'], true> = { complaint: true, suggestion: true }
const CONTACTS: Record<Complaint['contact'], true> = { phone: true, sms: true, none: true }

describe('complaint labels', () => {
  it('has a label in both languages for every status, kind and contact GET /complaints lists', () => {
    for (const locale of ['zh-CN', 'en'] as const) {
      const words = messages[locale].marketing as unknown as Record<string, Record<string, string>>
      const missing = [
        ...Object.keys(STATUSES).filter((s) => !words.status[s]),
        ...Object.keys(KINDS).filter((k) => !words.kinds[k]),
        ...Object.keys(CONTACTS).filter((c) => !words.contacts[c]),
      ]
      expect({ locale, missing }).toEqual({ locale, missing: [] })
    }
  })
})

describe('provinces', () => {
  it('are the 34 province-level divisions, shown in English in English', () => {
    expect(PROVINCES).toHaveLength(34)
    expect(new Set(PROVINCES.map((p) => p.name)).size).toBe(34)
    expect(provinceLabel('浙江省', 'en')).toBe('Zhejiang')
    expect(provinceLabel('浙江省', 'zh-CN')).toBe('浙江省')
    expect(provinceLabel('Atlantis', 'en')).toBe('Atlantis')
  })
})
