import { describe, expect, it } from 'vitest'

import { severityTag } from './severity'

describe('severityTag', () => {
  it('colours the three severities', () => {
    expect(severityTag('info')).toBe('info')
    expect(severityTag('warning')).toBe('warning')
    expect(severityTag('critical')).toBe('danger')
  })
  it('shows anything else as info', () => {
    expect(severityTag('fatal')).toBe('info')
    expect(severityTag(null)).toBe('info')
    expect(severityTag(undefined)).toBe('info')
  })
})
