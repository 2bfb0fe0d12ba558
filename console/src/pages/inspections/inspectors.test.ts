import { describe, expect, it } from 'vitest'

import { inspectorsOf, matching, mergeInspectors } from './inspectors'

describe('inspector filter options', () => {
  it('takes each inspector of the records once, skipping records without one', () => {
    const rows = [
      { inspector_id: 2, inspector: 'Wang' },
      { inspector_id: null, inspector: null },
      { inspector_id: 1, inspector: 'Li' },
      { inspector_id: 2, inspector: 'Wang' },
      { inspector_id: 3, inspector: null },
    ]
    expect(inspectorsOf(rows)).toEqual([
      { id: 3, name: '#3' },
      { id: 1, name: 'Li' },
      { id: 2, name: 'Wang' },
    ])
  })

  it('merges the records and a user search, each id once', () => {
    expect(mergeInspectors([{ id: 1, name: 'Li' }], [{ id: 1, name: 'li (user)' }, { id: 4, name: 'Zhao' }])).toEqual([
      { id: 1, name: 'Li' },
      { id: 4, name: 'Zhao' },
    ])
  })

  it('filters by the text typed, any case', () => {
    const list = [
      { id: 1, name: 'Li Lei' },
      { id: 2, name: 'Wang' },
    ]
    expect(matching(list, ' li ')).toEqual([{ id: 1, name: 'Li Lei' }])
    expect(matching(list, '')).toHaveLength(2)
  })
})
