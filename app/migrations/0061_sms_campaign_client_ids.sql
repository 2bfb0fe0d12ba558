-- A campaign's client id is its organisation's own, as the lookup that answers a retry now
-- reads it (app.sms.service.create_campaign): unique per brand, a sibling agent's campaign under
-- the same id refused another agent's (409 client_id_reused) or answered it 404 (probe). Ids
-- unique per brand are unique per organisation: nothing to merge.
ALTER TABLE sms_campaigns DROP CONSTRAINT sms_campaigns_brand_id_client_id_key;
CREATE UNIQUE INDEX sms_campaigns_org_client_idx ON sms_campaigns (org_id, client_id)
    WHERE client_id IS NOT NULL;
