// What the new-document form (DocumentsPage) offers: the organisations a document may name as its
// counterparty and the orders it may be made against, every one of them — asked of the server
// (the orders still open or shipped: `?status=open&status=shipped`) and read page after page. A
// probe: the form read the newest 100 orders and kept the open ones on the phone, so an open
// order behind 100 newer cancelled ones was never offered; and the first 200 organisations only.
import { allPages, type OrderOut, type OrgOut } from '../api'

/** The orders a document may still name: those open (to ship) or shipped (to receive). */
export const OPEN_ORDERS = ['open', 'shipped'] as const

export interface DocumentChoices {
  orgs: OrgOut[]
  orders: OrderOut[]
}

/** Every organisation and every order still open or shipped that the user may see. */
export async function documentChoices(): Promise<DocumentChoices> {
  const [orgs, orders] = await Promise.all([allPages<OrgOut>('/orgs'), allPages<OrderOut>('/orders', { status: OPEN_ORDERS })])
  return { orgs, orders }
}
