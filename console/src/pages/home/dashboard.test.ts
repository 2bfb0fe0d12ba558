import { describe, expect, it } from 'vitest'

import { cardsOf, type DashboardData } from './dashboard'

const fig = (today: number) => ({ today, trend: [...Array(13).fill(1), today] })

describe('dashboard cards', () => {
  it('every figure in order, with its 14-day sum', () => {
    const data = {
      today: '2026-12-01',
      days: Array.from({ length: 14 }, (_, i) => `2026-11-${String(18 + i).padStart(2, '0')}`),
      verifications: fig(7),
      counterfeits: fig(2),
      activations: fig(0),
      diversions: fig(1),
      shipments: fig(4),
      low_stock: fig(3),
    } as DashboardData
    const cards = cardsOf(data)
    expect(cards.map((c) => c.key)).toEqual(['verifications', 'counterfeits', 'diversions', 'activations', 'shipments', 'low_stock'])
    expect(cards[0]).toMatchObject({ today: 7, total: 13 + 7 })
    expect(cards[0]!.days).toHaveLength(14)
  })

  it('null figures (not the brand staff) are left out', () => {
    const data = {
      today: '2026-12-01',
      days: [],
      verifications: null,
      counterfeits: null,
      activations: null,
      diversions: fig(1),
      shipments: fig(2),
      low_stock: fig(0),
    } as unknown as DashboardData
    expect(cardsOf(data).map((c) => c.key)).toEqual(['diversions', 'shipments', 'low_stock'])
  })
})
