// Low-stock thresholds (seed 门店产品库存预警设置, SPEC L9; PUT /stock/thresholds/{org}/{product},
// orgs.write or logistics.scan): below the minimum, the organisation's low_stock alert opens
// (critical at zero stock); 0 turns it off.
import type { Schemas } from '@/api/types'

export type Threshold = Schemas['ThresholdOut']
export type ThresholdState = 'off' | 'below' | 'empty' | 'ok'

/** Permissions that may set a threshold (app/logistics/stock.py WRITE). */
export const THRESHOLD_WRITE = ['orgs.write', 'logistics.scan'] as const

/** How a threshold stands: off (0), empty (nothing on hand, under a minimum: critical),
 * below its minimum, or ok. */
export function thresholdState(t: Pick<Threshold, 'min_units' | 'on_hand'>): ThresholdState {
  if (t.min_units === 0) return 'off'
  if (t.on_hand <= 0) return 'empty'
  return t.on_hand < t.min_units ? 'below' : 'ok'
}

/** The minimum the form may send: a whole number of 0 to 1,000,000,000, else null. */
export function validMinimum(value: unknown): number | null {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 1_000_000_000 ? n : null
}
