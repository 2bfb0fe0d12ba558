import { describe, expect, it } from 'vitest'

import { barOption, cycleOption, labelOf, lineOption, pieOption, stackedBarOption, trendOption } from './options'

type Any = Record<string, any>

describe('chart options', () => {
  it('trend: days as MM-DD, values as one line from zero', () => {
    const o = trendOption(['2026-11-30', '2026-12-01'], [3, 5], '#f00') as Any
    expect(o.xAxis.data).toEqual(['11-30', '12-01'])
    expect(o.yAxis.min).toBe(0)
    expect(o.series).toHaveLength(1)
    expect(o.series[0].data).toEqual([3, 5])
    expect(o.series[0].lineStyle.color).toBe('#f00')
  })

  it('horizontal bar: the first of a ranking on top (ECharts draws categories bottom-up)', () => {
    const o = barOption([{ name: 'A', value: 9 }, { name: 'B', value: 4 }], 'units', true) as Any
    expect(o.yAxis.type).toBe('category')
    expect(o.yAxis.data).toEqual(['B', 'A'])
    expect(o.series[0].data).toEqual([4, 9])
    const v = barOption([{ name: 'A', value: 9 }, { name: 'B', value: 4 }], 'units') as Any
    expect(v.xAxis.data).toEqual(['A', 'B'])
    expect(v.series[0].data).toEqual([9, 4])
  })

  it('lines: one series each, a legend only for several', () => {
    const one = lineOption(['2026-11', '2026-12'], [{ name: 'u', values: [1, 2] }]) as Any
    expect(one.legend).toBeUndefined()
    expect(one.xAxis.data).toEqual(['2026-11', '2026-12'])
    const two = lineOption(['d'], [{ name: 'a', values: [1] }, { name: 'b', values: [2] }]) as Any
    expect(two.legend).toBeDefined()
    expect(two.series.map((s: Any) => s.name)).toEqual(['a', 'b'])
  })

  it('pie: largest first, the rest beyond top grouped as other', () => {
    const slices = [1, 5, 3, 2].map((value, i) => ({ name: `s${i}`, value }))
    const o = pieOption(slices, 2, 'Other') as Any
    expect(o.series[0].data).toEqual([
      { name: 's1', value: 5 },
      { name: 's2', value: 3 },
      { name: 'Other', value: 3 },
    ])
    expect((pieOption(slices, 10) as Any).series[0].data).toHaveLength(4)
  })

  it('stacked bars share one stack', () => {
    const o = stackedBarOption(['d1'], [{ name: 'a', values: [1] }, { name: 'b', values: [2] }]) as Any
    expect(o.series.every((s: Any) => s.stack === 'total')).toBe(true)
  })

  it('cycle: the buckets in order, empty without a row', () => {
    const labels = { since: ['a', 'b', 'c', 'd', 'e'], frequency: ['1', '2', '3', '4', '5'], sinceName: 's', frequencyName: 'f' }
    const row = {
      since_last: { d0_30: 1, d31_90: 2, d91_180: 3, d181_365: 4, over_365: 5 },
      purchases_per_member: { once: 6, twice: 7, p3_5: 8, p6_10: 9, over_10: 10 },
    }
    const o = cycleOption(row, labels) as Any
    expect(o.series[0].data).toEqual([1, 2, 3, 4, 5])
    expect(o.series[1].data).toEqual([6, 7, 8, 9, 10])
    expect((cycleOption(null, labels) as Any).series[0].data).toEqual([])
  })

  it('labels: missing names shown as the given word', () => {
    expect(labelOf(null, '—')).toBe('—')
    expect(labelOf('', '—')).toBe('—')
    expect(labelOf('浙江省', '—')).toBe('浙江省')
  })
})
