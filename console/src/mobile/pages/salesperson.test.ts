import { describe, expect, it } from 'vitest'

import { keptSalesperson, salespersonLabel, showsSalesperson, type SalespersonOut } from './salesperson'

const rep: SalespersonOut = { id: 3, username: 'fieldrep', display_name: 'Li Lei', org_id: 5, org_name: 'Zhejiang Agent', org_kind: 'agent' }

describe('the salesperson of an outbound (L6)', () => {
  it('is asked for an outbound to a store only', () => {
    expect(showsSalesperson('outbound', { kind: 'store' })).toBe(true)
    expect(showsSalesperson('outbound', { kind: 'agent' })).toBe(false)
    expect(showsSalesperson('return', { kind: 'store' })).toBe(false)
    expect(showsSalesperson('outbound', undefined)).toBe(false)
  })

  it('reads by name, username and organisation', () => {
    expect(salespersonLabel(rep)).toBe('Li Lei (fieldrep) · Zhejiang Agent')
    expect(salespersonLabel({ ...rep, display_name: '' })).toBe('fieldrep · Zhejiang Agent')
  })

  it('stays chosen while listed for the store now chosen, else none', () => {
    expect(keptSalesperson(3, [rep])).toBe(3)
    expect(keptSalesperson(4, [rep])).toBeNull()
    expect(keptSalesperson(null, [rep])).toBeNull()
  })
})
