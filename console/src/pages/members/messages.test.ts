import { describe, expect, it } from 'vitest'

import type { components } from '@/api/schema'
import messages from './messages'

type Status = components['schemas']['MemberOut']['status']
// Every value of the API's member status (the compiler checks this list against the schema).
const STATUSES: Record<Status, true> = { active: true, frozen: true, erased: true }

describe('members status labels', () => {
  it('has a label in both languages for every status GET /members can list', () => {
    /** A probe: GET /members lists erased members with status=erased (the page takes its
     * filters from the URL, /console/members?status=erased), and each erased row showed the raw
     * key "members.status.erased" in its tag, in Chinese and in English. It reads 已注销 /
     * Erased, and the status filter offers it. */
    for (const locale of ['zh-CN', 'en'] as const) {
      const labels = (messages[locale] as { members: { status: Record<string, string> } }).members.status
      const missing = Object.keys(STATUSES).filter((s) => !labels[s])
      expect({ locale, missing }).toEqual({ locale, missing: [] })
    }
  })
})

describe('member detail labels', () => {
  it('names every ledger kind of the API in both languages', () => {
    type Kind = components['schemas']['LedgerEntryOut']['kind']
    const KINDS: Record<Kind, true> = { claim: true, redemption: true, refund: true, expiry: true, adjustment: true, draw: true }
    for (const locale of ['zh-CN', 'en'] as const) {
      const kinds = (messages[locale] as { members: { detail: { kinds: Record<string, string> } } }).members.detail.kinds
      expect({ locale, missing: Object.keys(KINDS).filter((k) => !kinds[k]) }).toEqual({ locale, missing: [] })
    }
  })
})
