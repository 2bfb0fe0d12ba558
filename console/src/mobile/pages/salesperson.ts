// L6 on the phone: an outbound to a store names its responsible salesperson (POST /documents
// `salesperson_id`); the units shipped then carry the store and the salesperson. The picker lists
// GET /documents/salespeople (those the draft accepts: active users of the caller's subtree and
// of the store shipped to) and is shown only for an outbound to a store.
import type { Schemas } from '@/api/types'

export type SalespersonOut = Schemas['SalespersonOut']

/** Is the salesperson picker shown: an outbound whose counterparty is a store. */
export function showsSalesperson(kind: string, counterparty: { kind: string } | null | undefined): boolean {
  return kind === 'outbound' && counterparty?.kind === 'store'
}

/** A person as the picker lists them: display name (username) · organisation. */
export function salespersonLabel(person: SalespersonOut): string {
  const name = person.display_name && person.display_name !== person.username ? `${person.display_name} (${person.username})` : person.username
  return `${name} · ${person.org_name}`
}

/** The salesperson still chosen once the list is read again (another store chosen): kept while
 * listed, else none — never an id the draft would refuse (422 `unknown_user`). */
export function keptSalesperson(chosen: number | null, listed: readonly SalespersonOut[]): number | null {
  return chosen !== null && listed.some((p) => p.id === chosen) ? chosen : null
}
