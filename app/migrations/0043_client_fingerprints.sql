-- The fingerprint of the request each client id was first used with (app.idempotency): the
-- same id with another request is 409 client_id_reused, not the first request's answer (an
-- inspection of a counterfeit under a reused id was answered with an earlier genuine unit's
-- verdict and never recorded). Rows kept before have none and still answer retries.
ALTER TABLE inspection_scans ADD COLUMN client_hash bytea;
ALTER TABLE field_checkins ADD COLUMN client_hash bytea;
ALTER TABLE sms_campaigns ADD COLUMN client_hash bytea;
