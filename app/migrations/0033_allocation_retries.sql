-- Serial allocation, retries and re-fetches (issue 19 item 4).
--
-- A line system that lost the answer of POST /allocations sends it again with the same client
-- id: it gets the first allocation (the same ranges, the same codes), never a second range. A
-- client id belongs to the caller: an API key's to the key, a user's to the user's organisation
-- (caller_org_id). client_hash: SHA-256 of the request without its passphrase (a passphrase is
-- checked against the stored wrap instead, never stored).
--
-- The codes of an allocation can be fetched again (GET /allocations/{id}/codes): they are made
-- from the ranges; an encrypted file's data key is derived from the master key and the
-- allocation id (key_version) and only its wrap (passphrase or RSA) is kept, as exports do.
ALTER TABLE code_allocations
    ADD COLUMN caller_org_id bigint REFERENCES orgs (id),
    ADD COLUMN client_id text CHECK (client_id ~ '^[\x21-\x7e]{1,64}$'),
    ADD COLUMN client_hash bytea,
    ADD COLUMN key_version integer,
    ADD COLUMN wrap jsonb,
    ADD CHECK ((client_id IS NULL) = (client_hash IS NULL)),
    ADD CHECK (client_id IS NULL OR caller_org_id IS NOT NULL),
    ADD CHECK ((wrap IS NULL) = (key_version IS NULL));

CREATE UNIQUE INDEX code_allocations_key_client_idx ON code_allocations (api_key_id, client_id)
    WHERE client_id IS NOT NULL AND api_key_id IS NOT NULL;
CREATE UNIQUE INDEX code_allocations_org_client_idx ON code_allocations (caller_org_id, client_id)
    WHERE client_id IS NOT NULL AND api_key_id IS NULL;
-- GET /allocations for a printer or partner (the allocations it received), and ?pool_id=
CREATE INDEX code_allocations_recipient_idx ON code_allocations (recipient_org_id, created_at DESC);
CREATE INDEX code_allocations_pool_idx ON code_allocations (pool_id, created_at DESC)
    WHERE pool_id IS NOT NULL;
