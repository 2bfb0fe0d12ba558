-- When the rep's phone says a field review was made (POST /field/reviews `client_at`): the staff
-- app queues a review offline with its check-in, and both are uploaded later. NULL: not sent,
-- the upload time `at` is the review's. The lists, the export and the scores filter and order
-- by coalesce(client_at, at), as check-ins do (0027): a review is listed on the day of its
-- visit, not of its upload (probe). Checked on the way in as a check-in's
-- (app.field.checkins.check_client_at).
ALTER TABLE field_reviews ADD COLUMN client_at timestamptz;
CREATE INDEX field_reviews_rep_at_idx ON field_reviews (rep_id, (coalesce(client_at, at)));
