-- The key that made a key (POST /api-keys called with an API key): revoking a key revokes the
-- keys it made, and theirs (probe T: a child key outlived its revoked parent, so whoever held a
-- leaked key with apikeys.write for a moment kept access).
ALTER TABLE api_keys ADD COLUMN made_by_key bigint REFERENCES api_keys (id);
CREATE INDEX api_keys_made_by_key_idx ON api_keys (made_by_key) WHERE made_by_key IS NOT NULL;
