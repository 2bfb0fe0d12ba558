-- Two probes:
-- * A webhook subscription kept one rotated-out secret (previous_sealed, migration 0028): a
--   second rotation within the first one's overlap (a double click, a retried request) dropped
--   the original secret before the previous_secret_until the first answer had promised, and
--   its receiver, still holding it, refused every delivery. Each rotated-out secret is now a
--   row of its own that signs until its own end (at most
--   app.webhooks.service.MAX_PREVIOUS_SECRETS at once), sealed as the current one is.
-- * A campaign's messages were rendered with its template's body as it was when they left: an
--   edit of the template while the campaign was still queued (a placeholder added for next
--   month's) failed every queued message as not renderable. A campaign keeps the body and the
--   provider's template id it was accepted with (those of its template now, for the campaigns
--   made before).
CREATE TABLE webhook_previous_secrets (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    sealed          bytea NOT NULL,  -- AES-GCM, as webhook_subscriptions.secret_sealed
    valid_until     timestamptz NOT NULL  -- it signs beside the current secret until then
);
CREATE INDEX webhook_previous_secrets_sub ON webhook_previous_secrets (subscription_id);

INSERT INTO webhook_previous_secrets (subscription_id, sealed, valid_until)
SELECT id, previous_sealed, previous_until FROM webhook_subscriptions
 WHERE previous_sealed IS NOT NULL AND previous_until > now();

ALTER TABLE webhook_subscriptions DROP COLUMN previous_sealed, DROP COLUMN previous_until;

ALTER TABLE sms_campaigns ADD COLUMN body text, ADD COLUMN provider_template_id text;
UPDATE sms_campaigns c SET body = t.body, provider_template_id = t.provider_template_id
  FROM sms_templates t
 WHERE t.id = c.template_id;
ALTER TABLE sms_campaigns ALTER COLUMN body SET NOT NULL;
