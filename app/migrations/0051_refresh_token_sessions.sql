-- A staff sign-in's session: the line of refresh tokens one log-in starts (each refresh spends
-- one and issues the next with the same session_id). Access tokens carry their session (the
-- JWT's sid) and are refused once it has no live refresh token: a sign-out ends its own
-- session's access tokens at once, and ending every session of a user (a password set, the
-- account deactivated or moved) no longer misses a token issued in the same second (probes T
-- and U; users.sessions_from stays for tokens issued before this migration, which carry no sid).
ALTER TABLE refresh_tokens ADD COLUMN session_id uuid;
CREATE INDEX refresh_tokens_live_session_idx ON refresh_tokens (session_id)
    WHERE revoked_at IS NULL;
