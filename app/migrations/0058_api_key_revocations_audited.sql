-- Migration 0057 revoked the keys whose maker was revoked already, and wrote no audit row: each
-- gets one now, dated when it was revoked (review: an integration refused after the upgrade found
-- nothing saying why). A key revoked through the API has its row; these are the keys revoked
-- with none.
INSERT INTO audit_log (at, org_id, action, entity, entity_id, after)
SELECT k.revoked_at, k.org_id, 'revoke', 'api_key', k.id::text,
       jsonb_build_object('revoked_with', k.made_by_key, 'by', 'migration 0057')
  FROM api_keys k
 WHERE k.revoked_at IS NOT NULL AND k.made_by_key IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM audit_log l
                    WHERE l.entity = 'api_key' AND l.entity_id = k.id::text
                      AND l.action = 'revoke');
