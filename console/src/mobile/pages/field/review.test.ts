import { describe, expect, it } from 'vitest'

import { reviewBody } from './review'

describe('a store review as the staff app queues it', () => {
  const form = { storeId: 7, shelf: 2, knowledge: 3, comment: 'half empty', photoIds: ['p1'], checkinId: 42 }

  it('carries the phone\'s time of the review, so one queued offline is dated at the visit', () => {
    const visit = new Date('2026-12-01T02:30:00Z')
    expect(reviewBody(form, visit)).toEqual({
      store_id: 7,
      shelf_score: 2,
      knowledge_score: 3,
      comment: 'half empty',
      photo_ids: ['p1'],
      client_at: '2026-12-01T02:30:00.000Z',
      checkin_id: 42,
    })
  })

  it('names a check-in only when the review was opened from one', () => {
    const body = reviewBody({ ...form, checkinId: null })
    expect(body).not.toHaveProperty('checkin_id')
    expect(Date.parse(String(body.client_at))).not.toBeNaN()
  })
})
