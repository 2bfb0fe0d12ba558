-- The API key that made a document (a store's till or a partner's system selling through
-- POST /sales): a sale's client id is the key's own, as a user's is the user's. Keys make
-- documents with no user (created_by NULL), and the client id was looked up among every key's
-- sales of the brand: another organisation's sale under the same id refused or answered the
-- caller's (probe). A key's sales made before this migration have no key here: a re-send of
-- one is a new sale of units already sold (422 bad_codes), never a second sale.
ALTER TABLE documents ADD COLUMN api_key_id bigint REFERENCES api_keys (id);
CREATE UNIQUE INDEX documents_key_client_idx ON documents (api_key_id, client_id)
    WHERE client_id IS NOT NULL AND api_key_id IS NOT NULL;
