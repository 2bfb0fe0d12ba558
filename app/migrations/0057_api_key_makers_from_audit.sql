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
-- revocation does now (review R6).
WITH RECURSIVE dead AS (
    SELECT id FROM api_keys WHERE revoked_at IS NOT NULL
    UNION SELECT k.id FROM api_keys k JOIN dead ON k.made_by_key = dead.id
)
UPDATE api_keys k SET revoked_at = now() FROM dead
 WHERE k.id = dead.id AND k.revoked_at IS NULL;
