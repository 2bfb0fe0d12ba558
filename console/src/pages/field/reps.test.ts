import { describe, expect, it } from 'vitest'

import { repOptions } from './reps'

describe('repOptions', () => {
  const found = [
    { id: 2, name: 'fieldrep' },
    { id: 3, name: 'fieldrep2' },
  ]

  it('are the reps found, the chosen one among them', () => {
    expect(repOptions(found, '', new Map())).toEqual(found)
    expect(repOptions(found, '3', new Map())).toEqual(found)
    expect(repOptions([], '', new Map())).toEqual([])
  })

  it('keep the chosen rep a search left out, by the name it was seen with', () => {
    expect(repOptions(found, '9', new Map([[9, 'quiet rep']]))).toEqual([{ id: 9, name: 'quiet rep' }, ...found])
    expect(repOptions(found, '9', new Map())).toEqual([{ id: 9, name: '#9' }, ...found]) // from the address
  })
})
