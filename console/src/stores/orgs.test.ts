import { describe, expect, it } from 'vitest'

import { buildTree } from './orgs'
import type { Org } from '@/api/types'

const org = (id: number, parent_id: number | null, name: string): Org =>
  ({ id, parent_id, name, kind: 'store', status: 'active' }) as Org

describe('the organisation tree', () => {
  it('puts children under their parents, in list order; a parent out of sight makes a root', () => {
    const tree = buildTree([org(1, null, 'Brand'), org(2, 1, 'Agent'), org(3, 2, 'Store A'), org(4, 2, 'Store B'), org(9, 8, 'Elsewhere')])
    expect(tree.map((n) => n.label)).toEqual(['Brand', 'Elsewhere'])
    expect(tree[0]!.children[0]!.children.map((n) => n.label)).toEqual(['Store A', 'Store B'])
  })
})
