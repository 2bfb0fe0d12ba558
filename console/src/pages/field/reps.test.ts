import { describe, expect, it } from 'vitest'

import { distinctReps } from './reps'

describe('distinctReps', () => {
  it('lists each rep once, by name', () => {
    const rows = [
      { rep_id: 3, rep: 'fieldrep2' },
      { rep_id: 2, rep: 'fieldrep' },
      { rep_id: 3, rep: 'fieldrep2' },
    ]
    expect(distinctReps(rows)).toEqual([
      { id: 2, name: 'fieldrep' },
      { id: 3, name: 'fieldrep2' },
    ])
    expect(distinctReps([])).toEqual([])
  })
})
