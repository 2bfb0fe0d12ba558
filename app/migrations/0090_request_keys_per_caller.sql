-- A batch's request key is the caller's own (probe): request keys of POST /batches and
-- POST /case-batches were unique per brand, so two contract printers' serialization servers
-- numbering their requests alike (run-1) collided — printer B got 409 request_key_reused for
-- printer A's batch, which B cannot see (and so learned A's keys). A key now belongs to its
-- caller as an allocation's client id does (0033): an API key's to the key, a user's to the
-- user's organisation (caller_org_id). The same caller's retry replays; another caller's same
-- key is another request.
--
-- The rows kept before are attributed from what they record: a user's batch by its creator's
-- organisation, an API key's by the key of its "issue" audit row. A row that cannot be
-- attributed (no creator, no audit row) keeps its key per brand, as before: any caller of the
-- brand sending it again is answered with that batch (or 409 request_key_reused).
ALTER TABLE code_batches
    ADD COLUMN api_key_id bigint REFERENCES api_keys (id),
    ADD COLUMN caller_org_id bigint REFERENCES orgs (id);
ALTER TABLE case_batches
    ADD COLUMN api_key_id bigint REFERENCES api_keys (id),
    ADD COLUMN caller_org_id bigint REFERENCES orgs (id);

UPDATE code_batches b SET api_key_id = a.actor_key
  FROM audit_log a
 WHERE a.entity = 'code_batch' AND a.entity_id = b.batch_no::text AND a.action = 'issue'
   AND a.actor_key IS NOT NULL AND b.created_by IS NULL;
UPDATE code_batches b SET caller_org_id = coalesce(k.org_id, u.org_id)
  FROM code_batches c
  LEFT JOIN api_keys k ON k.id = c.api_key_id
  LEFT JOIN users u ON u.id = c.created_by
 WHERE c.batch_no = b.batch_no AND coalesce(k.org_id, u.org_id) IS NOT NULL;

UPDATE case_batches b SET api_key_id = a.actor_key
  FROM audit_log a
 WHERE a.entity = 'case_batch' AND a.entity_id = b.id::text AND a.action = 'issue'
   AND a.actor_key IS NOT NULL AND b.created_by IS NULL;
UPDATE case_batches b SET caller_org_id = coalesce(k.org_id, u.org_id)
  FROM case_batches c
  LEFT JOIN api_keys k ON k.id = c.api_key_id
  LEFT JOIN users u ON u.id = c.created_by
 WHERE c.id = b.id AND coalesce(k.org_id, u.org_id) IS NOT NULL;

ALTER TABLE code_batches DROP CONSTRAINT code_batches_brand_id_request_key_key;
ALTER TABLE case_batches DROP CONSTRAINT case_batches_brand_id_request_key_key;

CREATE UNIQUE INDEX code_batches_key_request_idx ON code_batches (api_key_id, request_key)
    WHERE request_key IS NOT NULL AND api_key_id IS NOT NULL;
CREATE UNIQUE INDEX code_batches_org_request_idx ON code_batches (caller_org_id, request_key)
    WHERE request_key IS NOT NULL AND api_key_id IS NULL;
CREATE UNIQUE INDEX code_batches_brand_request_idx ON code_batches (brand_id, request_key)
    WHERE request_key IS NOT NULL AND caller_org_id IS NULL;
CREATE UNIQUE INDEX case_batches_key_request_idx ON case_batches (api_key_id, request_key)
    WHERE request_key IS NOT NULL AND api_key_id IS NOT NULL;
CREATE UNIQUE INDEX case_batches_org_request_idx ON case_batches (caller_org_id, request_key)
    WHERE request_key IS NOT NULL AND api_key_id IS NULL;
CREATE UNIQUE INDEX case_batches_brand_request_idx ON case_batches (brand_id, request_key)
    WHERE request_key IS NOT NULL AND caller_org_id IS NULL;
