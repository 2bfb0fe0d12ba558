import { describe, expect, it } from 'vitest'

import { isOwnMedia, isProductUrl } from './media'

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
