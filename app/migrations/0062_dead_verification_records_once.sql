-- A verification record set aside (app.verify.records._dead) is set aside once: the flusher
-- reads its elements again when Redis lost the trim after PostgreSQL committed, and buried the
-- same bad record a second time (probe). Its look-up: the payload's hash, in that queue only.
CREATE INDEX dead_letters_verification_md5_idx ON dead_letters (md5(payload))
    WHERE queue = 'verifications';
