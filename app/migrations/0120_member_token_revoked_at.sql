-- When a member token was signed out: a verification made with it before then stays the
-- member's (the flusher stores it later), one made after is anonymous (app.verify.records).
ALTER TABLE member_token_revocations ADD COLUMN revoked_at timestamptz NOT NULL DEFAULT now();
