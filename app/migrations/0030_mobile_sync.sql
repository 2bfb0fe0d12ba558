-- Staff app (issue 18): photos on an inspection, and an idempotent store sale.
--
-- An inspection carries the ids of photos its inspector uploaded first (POST /media/photos); whoever
-- may read the inspection may read its photos (app.media.service.visible_row).
ALTER TABLE inspection_scans ADD COLUMN photo_ids uuid[] NOT NULL DEFAULT '{}';
CREATE INDEX inspection_scans_photos_idx ON inspection_scans USING gin (photo_ids)
    WHERE photo_ids <> '{}';

-- A sale sent again with the same client id (the answer was lost) answers the first sale; the
-- same id with another body is refused (409 client_id_reused). client_hash: SHA-256 of the body.
ALTER TABLE documents ADD COLUMN client_id text, ADD COLUMN client_hash bytea;
CREATE UNIQUE INDEX documents_client_idx ON documents (created_by, client_id)
    WHERE client_id IS NOT NULL;
