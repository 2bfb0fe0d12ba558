// The campaign form's logic (POST /sms/campaigns, README "SMS"): the placeholders a template
// needs (the server's rule, app/sms/templates.py), the filter each audience takes (members: provinces,
// age bands, last claim; store managers: organisation and provinces — anything else is 422
// bad_filter), and the request body. The client id is the form's, made when it opens: a second
// click on Send, or a retry after a lost answer, answers the first campaign (200), never a second.
import type { Schemas } from '@/api/types'

export type CampaignBody = Schemas['CampaignIn']
export type AgeBand = NonNullable<Schemas['AudienceFilter']['age_bands']>[number]
export type Audience = CampaignBody['audience']

export const AGE_BANDS: readonly AgeBand[] = ['under_18', '18_24', '25_34', '35_44', '45_54', '55_plus']

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]{0,39})\}/g

/** The placeholders of a template body, sorted, each once (as GET /sms/templates lists them). */
export function placeholdersOf(body: string): string[] {
  return [...new Set([...body.matchAll(PLACEHOLDER)].map((m) => m[1]!))].sort()
}

export interface CampaignForm {
  templateId: number | null
  audience: Audience
  provinces: string[]
  ageBands: AgeBand[]
  lastClaimAfter: string
  lastClaimBefore: string
  neverClaimed: boolean
  orgId: string
  variables: Record<string, string>
  clientId: string
}

export function blankCampaign(clientId: string, audience: Audience = 'members'): CampaignForm {
  return {
    templateId: null,
    audience,
    provinces: [],
    ageBands: [],
    lastClaimAfter: '',
    lastClaimBefore: '',
    neverClaimed: false,
    orgId: '',
    variables: {},
    clientId,
  }
}

/** The variables for a template's placeholders: the values typed so far for those it has, ''
 * for the others, none for placeholders of another template. */
export function variablesFor(placeholders: readonly string[], typed: Record<string, string>): Record<string, string> {
  return Object.fromEntries(placeholders.map((name) => [name, typed[name] ?? '']))
}

/** What keeps the form from being sent ('' when nothing): no template, an empty variable. */
export function campaignProblem(form: CampaignForm): '' | 'template' | 'variables' {
  if (form.templateId === null) return 'template'
  if (Object.values(form.variables).some((v) => !v.trim())) return 'variables'
  return ''
}

/** The request body: only the filters the audience takes; a dry run carries no client id. */
export function campaignBody(form: CampaignForm, dryRun: boolean): CampaignBody {
  const filter: Schemas['AudienceFilter'] = { never_claimed: false }
  if (form.provinces.length) filter.provinces = [...form.provinces]
  if (form.audience === 'members') {
    if (form.ageBands.length) filter.age_bands = [...form.ageBands]
    if (form.neverClaimed) filter.never_claimed = true
    else {
      if (form.lastClaimAfter) filter.last_claim_after = form.lastClaimAfter
      if (form.lastClaimBefore) filter.last_claim_before = form.lastClaimBefore
    }
  } else if (form.orgId) filter.org_id = Number(form.orgId)
  const variables = Object.fromEntries(Object.entries(form.variables).map(([k, v]) => [k, v.trim()]))
  const body: CampaignBody = { template_id: form.templateId ?? 0, audience: form.audience, filter, variables, dry_run: dryRun }
  if (!dryRun) body.client_id = form.clientId
  return body
}

/** The outbox states of a campaign (GET /sms/campaigns/{id}), in the order messages go
 * through them, then any other; zero counts left out. */
const STATE_ORDER = ['pending', 'sending', 'sent', 'delivered', 'undelivered', 'failed']
export function stateCounts(states: Record<string, number> | undefined): [string, number][] {
  const entries = Object.entries(states ?? {}).filter(([, n]) => n > 0)
  const rank = (s: string) => (STATE_ORDER.includes(s) ? STATE_ORDER.indexOf(s) : STATE_ORDER.length)
  return entries.sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b))
}

/** Is every message of the campaign past the outbox (nothing pending or being sent)? */
export function finished(states: Record<string, number> | undefined): boolean {
  return !stateCounts(states).some(([s]) => s === 'pending' || s === 'sending')
}
