// The lucky draw campaign form (POST /draws): the form's state and the body it sends.
import type { components } from '@/api/schema'
import { shanghaiInstant } from '@/utils/format'

export type Campaign = components['schemas']['DrawCampaignOut']
export type CampaignIn = components['schemas']['DrawCampaignIn']
export type PrizeKind = 'points' | 'voucher' | 'gift'

export interface PrizeForm {
  name: string
  kind: PrizeKind
  quantity: number
  weight: number
  points: number
  daily_cap: number // 0: none
}

export interface CampaignForm {
  name: string
  /** Asia/Shanghai wall-clock times (the picker's WALL_CLOCK), sent with their offset */
  period: [string, string] | null
  product_ids: number[]
  provinces: string[]
  no_prize_weight: number
  prizes: PrizeForm[]
}

export function blankPrize(): PrizeForm {
  return { name: '', kind: 'gift', quantity: 1, weight: 1, points: 0, daily_cap: 0 }
}

export function blankCampaign(): CampaignForm {
  return { name: '', period: null, product_ids: [], provinces: [], no_prize_weight: 100, prizes: [blankPrize()] }
}

/** Whether the form can be sent: a name, a period, products, named prizes (a points prize with
 * its points). */
export function campaignReady(form: CampaignForm): boolean {
  return (
    !!form.name.trim() &&
    form.period !== null &&
    form.product_ids.length > 0 &&
    form.prizes.every((p) => !!p.name.trim() && (p.kind !== 'points' || p.points >= 1))
  )
}

/** The body of POST /draws: points only on points prizes, a daily cap only when set. */
export function campaignBody(form: CampaignForm): CampaignIn {
  const [starts_at, ends_at] = form.period ?? ['', '']
  return {
    name: form.name.trim(),
    starts_at: shanghaiInstant(starts_at),
    ends_at: shanghaiInstant(ends_at),
    product_ids: form.product_ids,
    provinces: form.provinces,
    no_prize_weight: form.no_prize_weight,
    prizes: form.prizes.map((p) => ({
      name: p.name.trim(),
      kind: p.kind,
      quantity: p.quantity,
      weight: p.weight,
      ...(p.kind === 'points' ? { points: p.points } : {}),
      ...(p.daily_cap > 0 ? { daily_cap: p.daily_cap } : {}),
    })),
  }
}

/** A prize's odds as a percentage of the campaign's whole weight (no prize + every prize). */
export function odds(campaign: Pick<Campaign, 'no_prize_weight' | 'prizes'>, weight: number): string {
  const total = campaign.no_prize_weight + campaign.prizes.reduce((sum, p) => sum + p.weight, 0)
  return total > 0 ? `${((100 * weight) / total).toFixed(2)}%` : '0%'
}
