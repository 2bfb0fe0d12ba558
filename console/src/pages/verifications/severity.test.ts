import { describe, expect, it } from 'vitest'

import { recordTag } from './severity'

describe('recordTag', () => {
  it('colours a genuine record green and the others as alerts', () => {
    expect(recordTag('ok')).toBe('success')
    expect(recordTag('info')).toBe('info')
    expect(recordTag('warning')).toBe('warning')
    expect(recordTag('critical')).toBe('danger')
  })
  it('shows anything else as info', () => {
    expect(recordTag('bogus')).toBe('info')
    expect(recordTag(undefined)).toBe('info')
  })
})
