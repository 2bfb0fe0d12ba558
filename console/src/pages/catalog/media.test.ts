import { describe, expect, it } from 'vitest'

import { formatBytes, isOwnMedia, isProductUrl, usedPercent } from './media'

const OWN = '/media/catalog/0f8fad5b-d9cb-469f-a165-70867728950e'

describe('product media URLs', () => {
  it('are http(s) addresses or the path of a medium uploaded here', () => {
    for (const ok of ['https://img.example.com/a.png', 'http://x/y', OWN, ` ${OWN} `]) expect(isProductUrl(ok), ok).toBe(true)
    for (const bad of ['', 'ftp://x/y', 'https://a b', '/media/photos/0f8fad5b-d9cb-469f-a165-70867728950e', `${OWN}/x`, 'media/catalog/x', 'javascript:alert(1)'])
      expect(isProductUrl(bad), bad).toBe(false)
  })

  it('show as thumbnails only when served by this server', () => {
    expect(isOwnMedia(OWN)).toBe(true)
    expect(isOwnMedia('https://img.example.com/a.png')).toBe(false)
    expect(isOwnMedia(`https://evil.example${OWN}`)).toBe(false)
    expect(isOwnMedia(null)).toBe(false)
    expect(isOwnMedia(undefined)).toBe(false)
  })
})

describe('media sizes and usage', () => {
  it('are told in binary units, one decimal at most', () => {
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(1023)).toBe('1023 B')
    expect(formatBytes(1024)).toBe('1 KB')
    expect(formatBytes(1536)).toBe('1.5 KB')
    expect(formatBytes(5 * 1024 * 1024)).toBe('5 MB')
    expect(formatBytes(2 * 1024 ** 3)).toBe('2 GB')
  })

  it('fill the bar to the quota and no further', () => {
    expect(usedPercent({ used_bytes: 0, quota_bytes: 1000, count: 0 })).toBe(0)
    expect(usedPercent({ used_bytes: 333, quota_bytes: 1000, count: 1 })).toBe(33.3)
    expect(usedPercent({ used_bytes: 1000, quota_bytes: 1000, count: 2 })).toBe(100)
    expect(usedPercent({ used_bytes: 1500, quota_bytes: 1000, count: 3 })).toBe(100)
  })
})
