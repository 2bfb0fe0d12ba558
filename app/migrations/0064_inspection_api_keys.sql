-- The API key that recorded an inspection scan: a key's client ids are its own, as a user's are
-- the user's. Keys record scans with no inspector (inspector_id NULL), and every key of an
-- organisation shared one set of client ids: a second key's scan was answered with the first
-- key's verdict, or refused 409 client_id_reused (probe). Scans recorded by a key before this
-- migration have no key here: a re-send of one is a new scan.
ALTER TABLE inspection_scans ADD COLUMN api_key_id bigint REFERENCES api_keys (id);
CREATE UNIQUE INDEX inspection_scans_key_client_idx ON inspection_scans (api_key_id, client_id)
    WHERE client_id IS NOT NULL AND api_key_id IS NOT NULL;
