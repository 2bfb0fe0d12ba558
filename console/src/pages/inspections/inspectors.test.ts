import { describe, expect, it } from 'vitest'

import { inspectorOptions } from './inspectors'

describe('inspector filter options', () => {
  it('names each inspector by the display name, else the username', () => {
    const rows = [
      { id: 1, username: 'li', display_name: 'Li Lei' },
      { id: 2, username: 'wang', display_name: '' },
      { id: 3, username: 'zhao', display_name: '  ' },
    ]
    expect(inspectorOptions(rows)).toEqual([
      { id: 1, name: 'Li Lei' },
      { id: 2, name: 'wang' },
      { id: 3, name: 'zhao' },
    ])
  })
})
