// Product names by id for lists that carry only ``product_id`` (the points rules): each id
// looked up once (GET /products/{id}) and kept until the signed-in user changes. A name not
// (yet) known reads ``#id``.
import { reactive } from 'vue'

import { api } from '@/api/client'
import { unwrap } from '@/api/errors'
import { onUserChange } from '@/stores/auth'

const names = reactive(new Map<number, string>())
const asked = new Set<number>()
let generation = 0
let watching = false

function forget(): void {
  generation++
  names.clear()
  asked.clear()
}

async function fetchName(id: number): Promise<void> {
  const mine = generation
  try {
    const product = await unwrap(await api.GET('/products/{product_id}', { params: { path: { product_id: id } } }))
    if (mine === generation) names.set(id, product.name)
  } catch {
    if (mine === generation) asked.delete(id) // asked again by the next render (e.g. after a reload)
  }
}

/** The product's name, looked up the first time it is asked (reactive: the cell shows it once
 * known). */
export function productName(id: number): string {
  // el-table renders a column's slot once with an empty row ({}) to see what it holds
  if (!Number.isInteger(id)) return ''
  if (!watching) {
    onUserChange(forget)
    watching = true
  }
  const known = names.get(id)
  if (known !== undefined) return known
  if (!asked.has(id)) {
    asked.add(id)
    void fetchName(id)
  }
  return `#${id}`
}

/** Remember a name already at hand (a product picked from a search). */
export function rememberProductName(id: number, name: string): void {
  names.set(id, name)
  asked.add(id)
}
