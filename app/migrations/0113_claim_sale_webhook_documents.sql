-- A claim that sells its unit writes the sale's document since migration 0104's release
-- (app.logistics.movements.claim_sale_documents, in the claim round's statement), but its
-- sale.confirmed (0092) still said "no document": document_id and doc_no null, so an ERP that
-- books sales from the webhook could not match them to the documents of its cursor export.
-- Now each claim's sale.confirmed names the sale document its unit is on (a round's claims of
-- one store and clerk share one: each event still lists its own unit, one line); a claim made
-- before has none, as before.
CREATE INDEX documents_event_idx ON documents (event_id) WHERE event_id IS NOT NULL;

CREATE FUNCTION webhook_claim_sale_document(event_id bigint, seller bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT jsonb_build_object('document_id', d.id, 'doc_no', d.doc_no)
                       FROM documents d
                      WHERE d.event_id = webhook_claim_sale_document.event_id
                        AND d.kind = 'sale' AND d.org_id = seller
                      LIMIT 1), '{}'::jsonb)
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
               || webhook_claim_sale_document(r.sale_event_id, r.store_id)
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
               || webhook_claim_sale_document(p.sale_event_id, o.id)
          FROM new_claims p
          JOIN unit_state u ON u.code = p.code_id
          JOIN orgs o ON o.id = u.holder_org_id
         WHERE p.sale_event_id IS NOT NULL AND webhook_wanted(p.brand_id, 'sale.confirmed')
         ORDER BY p.id;
    END IF;
    RETURN NULL;
END $$;
