// The organisations the user can see, as a tree (for tree views and organisation pickers):
// GET /orgs pages of 200 in tree order, loaded once and again after a change; forgotten when the
// signed-in user signs out or changes (the next user of the tab sees only its own subtree).
import { defineStore } from 'pinia'
import { ref, shallowRef } from 'vue'

import { api } from '@/api/client'
import { unwrap } from '@/api/errors'
import type { Org } from '@/api/types'
import { onUserChange } from '@/stores/auth'

export interface OrgNode {
  id: number
  label: string
  kind: string
  status: string
  children: OrgNode[]
}

const MAX_PAGES = 25 // 5,000 organisations: beyond that, pick by search instead of by tree

/** Nodes of the organisations, children under their parents (roots: parents not in the list). */
export function buildTree(orgs: readonly Org[]): OrgNode[] {
  const nodes = new Map<number, OrgNode>()
  for (const o of orgs) nodes.set(o.id, { id: o.id, label: o.name, kind: o.kind, status: o.status, children: [] })
  const roots: OrgNode[] = []
  for (const o of orgs) {
    const node = nodes.get(o.id)!
    const parent = o.parent_id === null ? undefined : nodes.get(o.parent_id)
    if (parent) parent.children.push(node)
    else roots.push(node)
  }
  return roots
}

export const useOrgsStore = defineStore('orgs', () => {
  const all = shallowRef<Org[]>([])
  const tree = shallowRef<OrgNode[]>([])
  const loaded = ref(false)
  let pending: Promise<void> | null = null
  let generation = 0 // bumped by reset: a load begun for the previous user is not kept

  async function fetchAll(): Promise<void> {
    const mine = generation
    const found: Org[] = []
    for (let page = 1; page <= MAX_PAGES; page++) {
      const data = await unwrap(await api.GET('/orgs', { params: { query: { page, per_page: 200 } } }))
      if (mine !== generation) return
      found.push(...data.items)
      if (page * 200 >= data.total) break
    }
    all.value = found
    tree.value = buildTree(found)
    loaded.value = true
  }

  /** Load once (force: again, after a change). */
  function load(force = false): Promise<void> {
    if (loaded.value && !force) return Promise.resolve()
    if (pending) return pending
    const running: Promise<void> = fetchAll().finally(() => {
      if (pending === running) pending = null
    })
    pending = running
    return running
  }

  /** Forget the organisations (another user signs in next). */
  function reset(): void {
    generation++
    pending = null
    all.value = []
    tree.value = []
    loaded.value = false
  }

  onUserChange(reset)

  function name(id: number | null | undefined): string {
    return all.value.find((o) => o.id === id)?.name ?? (id === null || id === undefined ? '' : `#${id}`)
  }

  return { all, tree, loaded, load, name, reset }
})
