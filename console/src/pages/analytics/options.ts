// ECharts option builders of the dashboard and the analytics pages: plain data in, an option
// out (pure functions, unit-tested in options.test.ts; <EChart> draws them).
import type { ChartOption } from '@/charts/echarts'

export interface Slice {
  name: string
  value: number
}

export interface Series {
  name: string
  values: number[]
}

/** A stat card's 14-day trend: a small line without axes' labels, the last point marked. */
export function trendOption(days: string[], values: number[], color = '#409eff'): ChartOption {
  return {
    animation: false,
    grid: { left: 4, right: 4, top: 6, bottom: 4 },
    tooltip: { trigger: 'axis' },
    xAxis: { type: 'category', data: days.map((d) => d.slice(5)), show: false, boundaryGap: false },
    yAxis: { type: 'value', show: false, min: 0 },
    series: [
      {
        type: 'line',
        data: values,
        smooth: true,
        symbol: 'none',
        lineStyle: { color, width: 2 },
        areaStyle: { color, opacity: 0.12 },
      },
    ],
  }
}

/** Bars of named values, largest first as given; horizontal (a ranking) or vertical. */
export function barOption(slices: Slice[], name: string, horizontal = false): ChartOption {
  const names = slices.map((s) => s.name)
  const values = slices.map((s) => s.value)
  const category = { type: 'category', data: horizontal ? [...names].reverse() : names, axisLabel: { width: 110, overflow: 'truncate' } }
  const value = { type: 'value', minInterval: 1 }
  return {
    animation: false,
    tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
    grid: { left: 8, right: 24, top: 24, bottom: 8, containLabel: true },
    xAxis: horizontal ? value : category,
    yAxis: horizontal ? category : value,
    series: [{ name, type: 'bar', data: horizontal ? [...values].reverse() : values, barMaxWidth: 28 }],
  }
}

/** Lines over periods (one per series), with a legend when there are several. */
export function lineOption(periods: string[], series: Series[]): ChartOption {
  return {
    animation: false,
    tooltip: { trigger: 'axis' },
    legend: series.length > 1 ? { top: 0 } : undefined,
    grid: { left: 8, right: 24, top: series.length > 1 ? 32 : 16, bottom: 8, containLabel: true },
    xAxis: { type: 'category', data: periods, boundaryGap: false },
    yAxis: { type: 'value', minInterval: 1 },
    series: series.map((s) => ({ name: s.name, type: 'line', data: s.values, smooth: true })),
  }
}

/** A pie (a ring) of named values; the smallest beyond `top` grouped as `other`. */
export function pieOption(slices: Slice[], top = 12, other = 'Other'): ChartOption {
  const sorted = [...slices].sort((a, b) => b.value - a.value)
  const data = sorted.slice(0, top)
  const rest = sorted.slice(top).reduce((sum, s) => sum + s.value, 0)
  if (rest > 0) data.push({ name: other, value: rest })
  return {
    animation: false,
    tooltip: { trigger: 'item', formatter: '{b}: {c} ({d}%)' },
    legend: { type: 'scroll', orient: 'vertical', right: 0, top: 'middle' },
    series: [{ type: 'pie', radius: ['40%', '70%'], center: ['40%', '50%'], data }],
  }
}

/** Name of a possibly missing label (a region or agent the API answers as null). */
export function labelOf(value: string | null | undefined, missing: string): string {
  return value === null || value === undefined || value === '' ? missing : value
}

/** Bars side by side, one series per measure, over categories. */
export function groupedBarOption(categories: string[], series: Series[], stack?: string): ChartOption {
  return {
    animation: false,
    tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
    legend: { top: 0 },
    grid: { left: 8, right: 24, top: 32, bottom: 8, containLabel: true },
    xAxis: { type: 'category', data: categories },
    yAxis: { type: 'value' },
    series: series.map((s) => ({ name: s.name, type: 'bar', data: s.values, barMaxWidth: 28, ...(stack ? { stack } : {}) })),
  }
}

/** Bars stacked per period (findings of inspections: their sum is the period's total). */
export function stackedBarOption(periods: string[], series: Series[]): ChartOption {
  return groupedBarOption(periods, series, 'total')
}

export interface CycleLabels {
  since: string[]
  frequency: string[]
  sinceName: string
  frequencyName: string
}

interface CycleBuckets {
  since_last: { d0_30: number; d31_90: number; d91_180: number; d181_365: number; over_365: number }
  purchases_per_member: { once: number; twice: number; p3_5: number; p6_10: number; over_10: number }
}

/** A5: members by days since the last purchase (top) and by number of purchases (bottom). */
export function cycleOption(row: CycleBuckets | null, labels: CycleLabels): ChartOption {
  const s = row?.since_last
  const f = row?.purchases_per_member
  const since = s ? [s.d0_30, s.d31_90, s.d91_180, s.d181_365, s.over_365] : []
  const freq = f ? [f.once, f.twice, f.p3_5, f.p6_10, f.over_10] : []
  return {
    animation: false,
    tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
    title: [
      { text: labels.sinceName, left: 0, top: 0, textStyle: { fontSize: 13 } },
      { text: labels.frequencyName, left: 0, top: '50%', textStyle: { fontSize: 13 } },
    ],
    grid: [
      { left: 8, right: 24, top: 28, height: '36%', containLabel: true },
      { left: 8, right: 24, top: '58%', height: '36%', containLabel: true },
    ],
    xAxis: [
      { type: 'category', data: labels.since, gridIndex: 0 },
      { type: 'category', data: labels.frequency, gridIndex: 1 },
    ],
    yAxis: [
      { type: 'value', minInterval: 1, gridIndex: 0 },
      { type: 'value', minInterval: 1, gridIndex: 1 },
    ],
    series: [
      { name: labels.sinceName, type: 'bar', data: since, xAxisIndex: 0, yAxisIndex: 0, barMaxWidth: 36 },
      { name: labels.frequencyName, type: 'bar', data: freq, xAxisIndex: 1, yAxisIndex: 1, barMaxWidth: 36, itemStyle: { color: '#67c23a' } },
    ],
  }
}
