import { describe, expect, it } from 'vitest'

import { PAGES } from './pages'

describe('brand-staff pages', () => {
  it('are the pages whose API answers 403 brand_staff_only below the brand', () => {
    // a page missing here shows below the brand and every call of it is refused (a review:
    // the rebate rules page was shown to an agent's staff holding rebates.rules)
    const brandStaff = PAGES.filter((p) => p.brandStaff).map((p) => p.name)
    expect(brandStaff.sort()).toEqual(
      [
        'analytics-cycle',
        'analytics-members',
        'analytics-points',
        'analytics-verifications',
        'brand-story',
        'draws',
        'gifts',
        'promotions',
        'complaints',
        'forensics',
        'members',
        'rebates-rules',
        'points-rules',
        'wechat',
      ].sort(),
    )
  })

  it('leave the rebate reads to the whole subtree', () => {
    for (const name of ['rebates-claims', 'rebates-rankings', 'rebates-statements', 'rebates-refusals'])
      expect(PAGES.find((p) => p.name === name)?.brandStaff).toBeFalsy()
  })
})
