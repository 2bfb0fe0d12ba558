-- The keys made with a key before migration 0052 recorded their maker (``made_by_key``) have it
-- from the audit log, which names the acting key of every key created (probe Y: revoking a key
-- made before the upgrade left the keys it had made working). Keys made by an older release
-- while a rolling deploy was under way after 0052 ran are not covered: revoke them by hand.
UPDATE api_keys k
   SET made_by_key = l.actor_key
  FROM audit_log l
 WHERE l.entity = 'api_key' AND l.action = 'create' AND l.entity_id = k.id::text
   AND l.actor_key IS NOT NULL AND l.actor_key <> k.id AND k.made_by_key IS NULL;
-- The keys so found whose maker (or its maker) is revoked already are revoked with it, as a
-- revocation does now (review R6), each with an audit row as a revocation writes (no actor:
-- the upgrade), so an integration refused after the upgrade finds why.
WITH RECURSIVE dead AS (
    SELECT id, id AS root FROM api_keys WHERE revoked_at IS NOT NULL
    UNION SELECT k.id, dead.root FROM api_keys k JOIN dead ON k.made_by_key = dead.id
), revoked AS (
    UPDATE api_keys k SET revoked_at = now()
      FROM (SELECT id, min(root) AS root FROM dead GROUP BY id) d
     WHERE k.id = d.id AND k.revoked_at IS NULL
    RETURNING k.id, k.org_id, d.root
)
INSERT INTO audit_log (org_id, action, entity, entity_id, after)
SELECT org_id, 'revoke', 'api_key', id::text,
       jsonb_build_object('revoked_with', root, 'by', 'migration 0057')
  FROM revoked;
