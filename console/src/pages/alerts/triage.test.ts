import { describe, expect, it } from 'vitest'

import { precisionRows, precisionText, type PrecisionReport } from './triage'

const counts = (alerts: number, tp: number, fp: number, precision: number | null) => ({
  alerts,
  true_positive: tp,
  false_positive: fp,
  untriaged: alerts - tp - fp,
  open: 0,
  precision,
})

describe('precisionRows', () => {
  it('lists each kind before its rules, with the settings that tune a rule', () => {
    const report = {
      from: '2026-11-01',
      to: '2026-11-30',
      total: counts(5, 3, 1, 0.75),
      kinds: [
        {
          kind: 'repeat',
          ...counts(5, 3, 1, 0.75),
          rules: [
            {
              rule: 'over_threshold',
              settings: { TRACECODE_VERIFY_REPEAT_THRESHOLD: 5 },
              ...counts(4, 3, 1, 0.75),
            },
            { rule: null, settings: null, ...counts(1, 0, 0, null) },
          ],
        },
      ],
    } as unknown as PrecisionReport
    const rows = precisionRows(report)
    expect(rows.map((r) => r.key)).toEqual(['repeat', 'repeat/over_threshold', 'repeat/'])
    expect(rows[0]!.rule).toBeUndefined()
    expect(rows[1]!.settings).toBe('TRACECODE_VERIFY_REPEAT_THRESHOLD=5')
    expect(rows[2]!.precision).toBeNull()
  })
  it('is empty without a report', () => {
    expect(precisionRows(null)).toEqual([])
  })
})

describe('precisionText', () => {
  it('shows a share, or a dash before any verdict', () => {
    expect(precisionText(0.75)).toBe('75.0%')
    expect(precisionText(0)).toBe('0.0%')
    expect(precisionText(null)).toBe('—')
  })
})
