-- Migration 0047 gave an existing subscription its creator's organisation at upgrade time as its
-- owner, or the subscribed organisation when an API key made it (probe O): a store then owned
-- the subscription its agent's key made for it (it could read it and rotate its secret, and the
-- feed followed the store to a new agent), and one whose creator had moved since belonged to the
-- creator's new organisation. The maker's organisation when it made the subscription is in the
-- audit log's record of the creation (``audit.record``: the actor's organisation): taken from
-- there wherever it is. The service sets an owner from the same value, so subscriptions made
-- since 0047 are unchanged.
UPDATE webhook_subscriptions s
   SET owner_org_id = made.org_id
  FROM (SELECT DISTINCT ON (entity_id) entity_id, org_id
          FROM audit_log
         WHERE entity = 'webhook_subscription' AND action = 'create' AND org_id IS NOT NULL
         ORDER BY entity_id, id) made
 WHERE made.entity_id = s.id::text
   AND s.owner_org_id <> made.org_id
   AND EXISTS (SELECT 1 FROM orgs o WHERE o.id = made.org_id);
