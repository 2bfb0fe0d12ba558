-- The points.claimed and rebate.claimed webhook events in one place each. The claims' statement
-- triggers (migration 0118) wrote them, and the release of a fraud hold (app.forensics.holds)
-- wrote the same events for the held claims it credits with a copy of the triggers' SQL: a
-- change to one shape had to be made twice. Each event is now written by a function of the
-- claims to announce, which the triggers (bodies of 0118, unchanged otherwise) and the release
-- both call; the events are the same rows in the same order as before.

-- points.claimed: one event to the brand (with the member's id) and, when the claim has a
-- channel agent other than the brand, one to the agent (without it); in claim order, the
-- brand's first. How many events were written.
CREATE FUNCTION webhook_points_claimed(claims point_claims[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    written integer;
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
      FROM unnest(claims) p
      JOIN (VALUES (true), (false)) AS t (to_brand)
        ON t.to_brand OR p.agent_id <> p.brand_id  -- the agent's: when there is one
     WHERE webhook_wanted(p.brand_id, 'points.claimed')
     ORDER BY p.id, t.to_brand DESC;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

-- rebate.claimed: one event to the claim's store, in claim order. How many were written.
CREATE FUNCTION webhook_rebate_claimed(claims rebate_claims[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    written integer;
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT r.brand_id, 'rebate.claimed', ARRAY[r.store_id],
           jsonb_build_object('claim_id', r.id, 'code_id', r.code_id, 'store_id', r.store_id,
                              'agent_id', r.agent_id, 'clerk_id', r.clerk_id,
                              'product_id', r.product_id, 'amount', r.amount,
                              'claimed_at', r.claimed_at)
      FROM unnest(claims) r
     WHERE webhook_wanted(r.brand_id, 'rebate.claimed')
     ORDER BY r.id;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

-- The triggers: a transition table's row is a record, cast to the table's row type; the rows
-- copied into an array only when a brand of the statement's claims wants the event.
CREATE OR REPLACE FUNCTION webhook_rebate_claims() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT brand_id FROM new_claims) b
                WHERE webhook_wanted(b.brand_id, 'rebate.claimed')) THEN
        PERFORM webhook_rebate_claimed(ARRAY(
            SELECT r::rebate_claims FROM new_claims r
             WHERE r.hold_state IS DISTINCT FROM 'held'));  -- announced on its release
    END IF;
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
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT brand_id FROM new_claims) b
                WHERE webhook_wanted(b.brand_id, 'points.claimed')) THEN
        PERFORM webhook_points_claimed(ARRAY(
            SELECT p::point_claims FROM new_claims p
             WHERE p.hold_state IS DISTINCT FROM 'held'));  -- announced on its release
    END IF;
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
