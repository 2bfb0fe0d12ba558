import { describe, expect, it } from 'vitest'

import type { components } from '@/api/schema'
import messages from './messages'

type Schemas = components['schemas']
// Every value of the API's enums the page shows (the compiler checks each list against the schema).
const STATES: Record<Schemas['HoldOut']['state'], true> = { open: true, released: true, confirmed: true }
const RULES: Record<Schemas['HoldOut']['rule'], true> = { shared_device: true, distant_stores: true, verified_elsewhere: true, manual: true }
const KINDS: Record<Schemas['HoldOut']['party_kind'], true> = { member: true, clerk: true }
const SOURCES: Record<Schemas['LeakOut']['source_kind'], true> = { export: true, allocation: true }
// a recipient's part is a plain string in the API (app/forensics/leaks.py names these four)
const PARTS = ['outer', 'inner', 'cases', 'pack']

type Tree = { [key: string]: string | Tree }
const at = (tree: Tree, path: string): Tree => path.split('.').reduce((t, k) => t[k] as Tree, tree)

describe('fraud and leak labels', () => {
  it('names every state, rule, party kind, source kind and recipient part in both languages', () => {
    const wanted: [string, string[]][] = [
      ['forensics.holds.states', Object.keys(STATES)],
      ['forensics.holds.rules', Object.keys(RULES)],
      ['forensics.holds.partyKinds', Object.keys(KINDS)],
      ['forensics.leaks.sourceKinds', Object.keys(SOURCES)],
      ['forensics.leaks.parts', PARTS],
    ]
    for (const locale of ['zh-CN', 'en'] as const) {
      for (const [path, keys] of wanted) {
        const labels = at(messages[locale] as Tree, path)
        expect({ locale, path, missing: keys.filter((k) => typeof labels[k] !== 'string') }).toEqual({ locale, path, missing: [] })
      }
    }
  })
})
