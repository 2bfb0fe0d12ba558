-- Claims' webhook events (migration 0028), two probes:
-- * points.claimed was one event for the brand and the unit's channel agent together (org_ids
--   [brand, agent]), member_id included: an agent's endpoint was told the member behind every
--   claim of its goods, though members are the brand head office's ("Who sees members": staff
--   below the brand see none). Now two events per claim, as an alert and its twin (0087): the
--   brand's (org_ids [brand], with member_id), and the channel agent's (org_ids [agent],
--   ``to_brand`` false, so it reaches the subscriptions at and above the agent but not the
--   brand's own) without member_id. Each receiver gets one event per claim (one webhook-id).
-- * A claim that sells its unit (a clerk's rebate claim, a member's points claim of an unsold
--   unit on a shelf) recorded a sale, but no sale.confirmed was written: webhook_documents
--   (0056) hears sale documents only. Now each such claim is one sale.confirmed to the seller's
--   subtree and those above it (org_ids [seller], as a sale document's), shaped as a sale
--   document's event with one line (the unit), the document's own fields null, and the claim
--   named: ``source`` (rebate_claim | points_claim) and ``claim_id``. The claims' statement
--   triggers already read the claims' transition tables; the sale events are looked for only
--   when a claim of the statement recorded a sale and some subscription of its brand wants them.

-- A claim-made sale's event data: a sale document's (0056) with one line and no document.
CREATE FUNCTION webhook_claim_sale_data(source text, claim_id bigint, seller orgs,
                                        product_id bigint, lot text, sold_at timestamptz)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
               'document_id', NULL, 'doc_no', NULL, 'kind', 'sale',
               'org_id', seller.id, 'org_erp_code', seller.erp_code,
               'counterparty_id', NULL, 'counterparty_erp_code', NULL,
               'order_id', NULL, 'shipment_id', NULL,
               'doc_date', (sold_at AT TIME ZONE 'Asia/Shanghai')::date,
               'confirmed_at', sold_at, 'discrepancies', NULL, 'reason', NULL,
               'lines', jsonb_build_array(jsonb_build_object(
                            'product_id', product_id, 'lot', lot, 'units', 1, 'packages', 0)),
               'source', source, 'claim_id', claim_id)
$$;

CREATE OR REPLACE FUNCTION webhook_rebate_claims() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT r.brand_id, 'rebate.claimed', ARRAY[r.store_id],
           jsonb_build_object('claim_id', r.id, 'code_id', r.code_id, 'store_id', r.store_id,
                              'agent_id', r.agent_id, 'clerk_id', r.clerk_id,
                              'product_id', r.product_id, 'amount', r.amount,
                              'claimed_at', r.claimed_at)
      FROM new_claims r
     WHERE webhook_wanted(r.brand_id, 'rebate.claimed');
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT brand_id FROM new_claims
                               WHERE sale_event_id IS NOT NULL) b
                WHERE webhook_wanted(b.brand_id, 'sale.confirmed')) THEN
        INSERT INTO webhook_events (brand_id, kind, org_ids, data)
        SELECT r.brand_id, 'sale.confirmed', ARRAY[r.store_id],
               webhook_claim_sale_data('rebate_claim', r.id, o, r.product_id, u.lot,
                                       r.claimed_at)
          FROM new_claims r
          JOIN unit_state u ON u.code = r.code_id
          JOIN orgs o ON o.id = r.store_id
         WHERE r.sale_event_id IS NOT NULL AND webhook_wanted(r.brand_id, 'sale.confirmed')
         ORDER BY r.id;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_point_claims() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data, to_brand)
    SELECT p.brand_id, 'points.claimed',
           ARRAY[CASE WHEN t.to_brand THEN p.brand_id ELSE p.agent_id END],
           jsonb_build_object('claim_id', p.id, 'code_id', p.code_id,
                              'product_id', p.product_id, 'agent_id', p.agent_id,
                              'points', p.points, 'claimed_at', p.claimed_at)
           || CASE WHEN t.to_brand THEN jsonb_build_object('member_id', p.member_id)
                   ELSE '{}'::jsonb END,
           t.to_brand
      FROM new_claims p
      JOIN (VALUES (true), (false)) AS t (to_brand)
        ON t.to_brand OR p.agent_id <> p.brand_id  -- the agent's: when there is one
     WHERE webhook_wanted(p.brand_id, 'points.claimed')
     ORDER BY p.id, t.to_brand DESC;
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT brand_id FROM new_claims
                               WHERE sale_event_id IS NOT NULL) b
                WHERE webhook_wanted(b.brand_id, 'sale.confirmed')) THEN
        -- the seller: the unit's holder, which the claim's statement sold it at
        INSERT INTO webhook_events (brand_id, kind, org_ids, data)
        SELECT p.brand_id, 'sale.confirmed', ARRAY[o.id],
               webhook_claim_sale_data('points_claim', p.id, o, p.product_id, u.lot,
                                       p.claimed_at)
          FROM new_claims p
          JOIN unit_state u ON u.code = p.code_id
          JOIN orgs o ON o.id = u.holder_org_id
         WHERE p.sale_event_id IS NOT NULL AND webhook_wanted(p.brand_id, 'sale.confirmed')
         ORDER BY p.id;
    END IF;
    RETURN NULL;
END $$;
