import { describe, expect, it } from 'vitest'

import { blankCampaign, blankPrize, campaignBody, campaignReady, odds } from './draw'

describe('campaign form', () => {
  it('sends points only on points prizes and a daily cap only when set', () => {
    const form = blankCampaign()
    form.name = ' Spring '
    form.period = ['2026-03-01T00:00:00+08:00', '2026-04-01T00:00:00+08:00']
    form.product_ids = [7]
    form.prizes = [
      { ...blankPrize(), name: '50 积分', kind: 'points', points: 50, quantity: 100, weight: 10 },
      { ...blankPrize(), name: 'Tote', kind: 'gift', points: 50, daily_cap: 2 },
    ]
    expect(campaignReady(form)).toBe(true)
    const body = campaignBody(form)
    expect(body.name).toBe('Spring')
    expect([body.starts_at, body.ends_at]).toEqual(['2026-03-01T00:00:00+08:00', '2026-04-01T00:00:00+08:00'])
    expect(body.prizes).toEqual([
      { name: '50 积分', kind: 'points', quantity: 100, weight: 10, points: 50 },
      { name: 'Tote', kind: 'gift', quantity: 1, weight: 1, daily_cap: 2 },
    ])
  })

  it('is not ready without products, a period or a points prize without points', () => {
    const form = blankCampaign()
    form.name = 'x'
    form.prizes = [{ ...blankPrize(), name: 'p' }]
    expect(campaignReady(form)).toBe(false)
    form.period = ['a', 'b']
    form.product_ids = [1]
    expect(campaignReady(form)).toBe(true)
    form.prizes[0]!.kind = 'points'
    expect(campaignReady(form)).toBe(false)
  })

  it('gives odds over the whole weight', () => {
    const campaign = { no_prize_weight: 90, prizes: [{ weight: 10 }, { weight: 0 }] }
    expect(odds(campaign as never, 10)).toBe('10.00%')
    expect(odds({ no_prize_weight: 0, prizes: [] } as never, 0)).toBe('0%')
  })
})

describe('campaign period (Shanghai wall clock, as the table shows it)', () => {
  it('sends the times picked in Shanghai time with +08:00', () => {
    const form = { ...blankCampaign(), period: ['2026-03-01 00:00:00', '2026-03-31 23:59:59'] as [string, string] }
    expect(campaignBody(form)).toMatchObject({ starts_at: '2026-03-01T00:00:00+08:00', ends_at: '2026-03-31T23:59:59+08:00' })
  })
})
