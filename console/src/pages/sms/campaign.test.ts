import { describe, expect, it } from 'vitest'

import { blankCampaign, campaignBody, campaignProblem, finished, placeholdersOf, stateCounts, variablesFor } from './campaign'

describe('campaign form', () => {
  it('finds placeholders as the server does: each once, sorted, names only', () => {
    expect(placeholdersOf('{name}您好，{gift}已到，{name}! {1x} {a-b} {}')).toEqual(['gift', 'name'])
  })

  it('keeps typed values of the placeholders the new template has, drops the others', () => {
    expect(variablesFor(['gift', 'store'], { gift: '面霜', name: '张' })).toEqual({ gift: '面霜', store: '' })
  })

  it('sends members only the member filters, store managers only organisation and provinces', () => {
    const form = {
      ...blankCampaign('cid-1'),
      templateId: 4,
      provinces: ['浙江省'],
      ageBands: ['25_34' as const],
      lastClaimAfter: '2025-01-01',
      orgId: '12',
      variables: { gift: ' 面霜 ' },
    }
    expect(campaignBody(form, true)).toEqual({
      template_id: 4,
      audience: 'members',
      filter: { never_claimed: false, provinces: ['浙江省'], age_bands: ['25_34'], last_claim_after: '2025-01-01' },
      variables: { gift: '面霜' },
      dry_run: true,
    })
    const managers = campaignBody({ ...form, audience: 'store_managers' }, false)
    expect(managers.filter).toEqual({ never_claimed: false, provinces: ['浙江省'], org_id: 12 })
    expect(managers.client_id).toBe('cid-1')
    expect(managers.dry_run).toBe(false)
  })

  it('never claimed drops the last-claim range (the API refuses both)', () => {
    const form = { ...blankCampaign('c'), templateId: 1, neverClaimed: true, lastClaimAfter: '2025-01-01', lastClaimBefore: '2025-02-01' }
    expect(campaignBody(form, true).filter).toEqual({ never_claimed: true })
  })

  it('wants a template and every variable filled', () => {
    expect(campaignProblem(blankCampaign('c'))).toBe('template')
    expect(campaignProblem({ ...blankCampaign('c'), templateId: 1, variables: { gift: ' ' } })).toBe('variables')
    expect(campaignProblem({ ...blankCampaign('c'), templateId: 1, variables: { gift: 'x' } })).toBe('')
  })
})

describe('campaign states', () => {
  it('orders states as messages go through them, zeros left out', () => {
    expect(stateCounts({ failed: 1, delivered: 3, pending: 0, sent: 2, other: 1 })).toEqual([
      ['sent', 2],
      ['delivered', 3],
      ['failed', 1],
      ['other', 1],
    ])
    expect(stateCounts(undefined)).toEqual([])
  })

  it('is finished when nothing waits or is being sent', () => {
    expect(finished({ sent: 2, pending: 1 })).toBe(false)
    expect(finished({ sending: 1 })).toBe(false)
    expect(finished({ delivered: 2, failed: 1, pending: 0 })).toBe(true)
  })
})
