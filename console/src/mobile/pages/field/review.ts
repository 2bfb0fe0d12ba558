// The body of a store review as the staff app queues it (POST /field/reviews). It carries the
// phone's time of the review (`client_at`), as a check-in carries its scan's: a review queued
// offline with its check-in is uploaded later, and the server lists and scores it on the day of
// the visit, not of the upload (a probe: dated at its upload, it left the visit's day).

export interface ReviewForm {
  storeId: number
  shelf: number
  knowledge: number
  comment: string
  photoIds: string[]
  /** the check-in of the visit, when the review was opened from its answer */
  checkinId: number | null
}

export function reviewBody(form: ReviewForm, now: Date = new Date()): Record<string, unknown> {
  const body: Record<string, unknown> = {
    store_id: form.storeId,
    shelf_score: form.shelf,
    knowledge_score: form.knowledge,
    comment: form.comment,
    photo_ids: form.photoIds,
    client_at: now.toISOString(),
  }
  if (form.checkinId) body.checkin_id = form.checkinId
  return body
}
