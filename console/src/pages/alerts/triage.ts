// Alert triage helpers (SPEC B6): the precision report flattened into table rows, its figures
// formatted, and an alert's evidence pack downloaded as the file the API names.
import { failureOf } from '@/api/errors'
import { apiBase } from '@/api/base'
import { fileNameOf } from '@/api/client'
import type { Schemas } from '@/api/types'
import { useAuthStore } from '@/stores/auth'

export type PrecisionReport = Schemas['PrecisionOut']

/** One line of the precision table: a kind's totals (rule undefined) or one of its rules. */
export interface PrecisionRow {
  key: string
  kind: string
  rule: string | null | undefined
  alerts: number
  truePositive: number
  falsePositive: number
  untriaged: number
  open: number
  precision: number | null
  settings: string
}

/** The report's kinds, each followed by its rules (a rule of no name shows as "—"). */
export function precisionRows(report: PrecisionReport | null | undefined): PrecisionRow[] {
  const rows: PrecisionRow[] = []
  for (const kind of report?.kinds ?? []) {
    rows.push(row(`${kind.kind}`, kind.kind, undefined, kind, ''))
    for (const rule of kind.rules) {
      const settings = Object.entries(rule.settings ?? {})
        .map(([name, value]) => `${name}=${String(value)}`)
        .join(', ')
      rows.push(row(`${kind.kind}/${rule.rule ?? ''}`, kind.kind, rule.rule, rule, settings))
    }
  }
  return rows
}

function row(
  key: string,
  kind: string,
  rule: string | null | undefined,
  counts: Schemas['Counts'],
  settings: string,
): PrecisionRow {
  return {
    key,
    kind,
    rule,
    alerts: counts.alerts,
    truePositive: counts.true_positive,
    falsePositive: counts.false_positive,
    untriaged: counts.untriaged,
    open: counts.open,
    precision: counts.precision ?? null,
    settings,
  }
}

/** "75.0%", or "—" before any verdict. */
export function precisionText(value: number | null | undefined): string {
  return value === null || value === undefined ? '—' : `${(value * 100).toFixed(1)}%`
}

/** POST /alerts/{id}/evidence and save the signed pack under the name the API gives it. */
export async function downloadEvidence(alertId: number, reference?: string): Promise<string> {
  const query = reference ? `?reference=${encodeURIComponent(reference)}` : ''
  const request = new Request(`${apiBase()}/alerts/${alertId}/evidence${query}`, { method: 'POST' })
  const response = await useAuthStore().send(request)
  if (!response.ok) throw await failureOf(response)
  const name = fileNameOf(response.headers.get('Content-Disposition'), `evidence-alert-${alertId}.json`)
  const href = URL.createObjectURL(await response.blob())
  const link = document.createElement('a')
  link.href = href
  link.download = name
  document.body.appendChild(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(href), 10_000)
  return name
}
