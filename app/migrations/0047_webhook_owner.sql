-- A webhook subscription belongs to the organisation that made it (probe K). It named only the
-- organisation whose events it receives, and followed that organisation: a store moved from
-- one agent to another kept sending its new agent's shipments to the old agent's endpoint,
-- which the old agent could no longer see nor delete (the new one could). Now:
-- * ``owner_org_id`` is the subscriber's organisation, and who may see and change the
--   subscription is decided by it (app/webhooks/service.py);
-- * events go out only while the subscribed organisation is within its owner's subtree, and
--   while it and every organisation above it are active (a deactivated partner's feed stops
--   with its users and API keys).
-- Existing subscriptions: the creator's organisation, or the subscribed one (made by a key).
ALTER TABLE webhook_subscriptions ADD COLUMN owner_org_id bigint REFERENCES orgs (id);
UPDATE webhook_subscriptions s
   SET owner_org_id = coalesce((SELECT u.org_id FROM users u WHERE u.id = s.created_by), s.org_id);
ALTER TABLE webhook_subscriptions ALTER COLUMN owner_org_id SET NOT NULL;

-- Whether a subscription may receive now: active, its organisation within its owner's subtree,
-- and that organisation and all above it active.
CREATE FUNCTION webhook_may_receive(sub_id bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM webhook_subscriptions s
          JOIN orgs so ON so.id = s.org_id
          JOIN orgs ow ON ow.id = s.owner_org_id
         WHERE s.id = sub_id AND s.active AND so.path LIKE ow.path || '%'
           AND NOT EXISTS (
               SELECT 1 FROM orgs a
                WHERE a.id = ANY (string_to_array(trim(both '/' FROM so.path), '/')::bigint[])
                  AND a.status <> 'active'))
$$;

CREATE OR REPLACE FUNCTION webhook_events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (subscription_id, event_id)
    SELECT s.id, e.id
      FROM new_events e
      JOIN webhook_subscriptions s ON s.brand_id = e.brand_id AND s.active
                                  AND e.kind = ANY (s.event_kinds)
      JOIN orgs so ON so.id = s.org_id
     WHERE EXISTS (SELECT 1 FROM orgs o
                    WHERE o.id = ANY (e.org_ids) AND o.path LIKE so.path || '%')
       AND webhook_may_receive(s.id);
    RETURN NULL;
END $$;
