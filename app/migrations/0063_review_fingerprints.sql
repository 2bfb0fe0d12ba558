-- A field review's request fingerprint (app.idempotency), as check-ins have had since 0043: the
-- same client id with another review is 409 client_id_reused, not the first review's answer
-- (probe: a second review under a reused id was lost without a word). Reviews kept before have
-- none and still answer retries.
ALTER TABLE field_reviews ADD COLUMN client_hash bytea;
