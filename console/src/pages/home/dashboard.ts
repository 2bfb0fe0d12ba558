// The dashboard's cards from GET /analytics/dashboard: the figures the caller may see (null
// ones left out), in a fixed order, each with its colour. Pure, unit-tested.
import type { Schemas } from '@/api/types'

export type DashboardData = Schemas['Dashboard']

export const FIGURES = {
  verifications: { color: '#409eff' },
  counterfeits: { color: '#f56c6c' },
  diversions: { color: '#e6a23c' },
  activations: { color: '#67c23a' },
  shipments: { color: '#7b61ff' },
  low_stock: { color: '#909399' },
} as const

export type FigureKey = keyof typeof FIGURES

export interface Card {
  key: FigureKey
  today: number
  total: number
  trend: number[]
  days: string[]
}

export function cardsOf(data: DashboardData): Card[] {
  const days = data.days.map(String)
  const cards: Card[] = []
  for (const key of Object.keys(FIGURES) as FigureKey[]) {
    const figure = data[key]
    if (!figure) continue
    cards.push({ key, today: figure.today, total: figure.trend.reduce((a, b) => a + b, 0), trend: figure.trend, days })
  }
  return cards
}
