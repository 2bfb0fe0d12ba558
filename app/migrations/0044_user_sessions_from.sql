-- When a user's sessions last ended (a password set, the account deactivated or moved): an
-- access token issued before is refused, not left working until it expires (up to
-- TRACECODE_ACCESS_TOKEN_TTL after a reset meant to lock a thief out).
ALTER TABLE users ADD COLUMN sessions_from timestamptz;
