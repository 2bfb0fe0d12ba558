-- B5 fixes (a review of migration 0111's leak detection and fraud holds).
--
-- * A claim of a party on hold (``hold_state = 'held'``) announced ``points.claimed`` /
--   ``rebate.claimed`` with its points or amount as its statement wrote it: an ERP mirroring
--   rebates from the webhook paid claims a reviewer later rejected. The claims' statement
--   triggers (bodies of migration 0113, unchanged otherwise) now skip held claims; the release
--   of a hold announces them, shaped the same, when it credits them (app.forensics.holds), and
--   a confirmed hold's claims are never announced. A claim's sale.confirmed is written as ever:
--   the unit was sold either way.
-- * The periodic queries of app.forensics read by time with no index leading on it:
--   point_claims and rebate_claims by claimed_at, rebate_refusals by at (their indexes lead on
--   brand or store), and the newest alert of a dedup key (the open one's index is partial).
-- * Leak detection re-counted every finding of every source each run to find the sources due
--   an alert: each source's count of findings and the count its newest alert named are kept in
--   ``leak_sources`` (the detector's statement adds what it finds), the sources due found by a
--   partial index.

CREATE OR REPLACE FUNCTION webhook_rebate_claims() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT r.brand_id, 'rebate.claimed', ARRAY[r.store_id],
           jsonb_build_object('claim_id', r.id, 'code_id', r.code_id, 'store_id', r.store_id,
                              'agent_id', r.agent_id, 'clerk_id', r.clerk_id,
                              'product_id', r.product_id, 'amount', r.amount,
                              'claimed_at', r.claimed_at)
      FROM new_claims r
     WHERE r.hold_state IS DISTINCT FROM 'held'  -- announced when its hold is released
       AND webhook_wanted(r.brand_id, 'rebate.claimed');
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
     WHERE p.hold_state IS DISTINCT FROM 'held'  -- announced when its hold is released
       AND webhook_wanted(p.brand_id, 'points.claimed')
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

CREATE INDEX point_claims_claimed_at_idx ON point_claims (claimed_at);
CREATE INDEX rebate_claims_claimed_at_idx ON rebate_claims (claimed_at);
CREATE INDEX rebate_refusals_at_idx ON rebate_refusals (at);
CREATE INDEX alerts_dedup_idx ON alerts (dedup_key, id);

-- A source's findings (leak_findings rows) and how many its newest leaked_file alert counted.
CREATE TABLE leak_sources (
    source_kind text NOT NULL CHECK (source_kind IN ('export', 'allocation')),
    source_id   uuid NOT NULL,
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    findings    bigint NOT NULL DEFAULT 0,
    alerted     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (source_kind, source_id)
);
CREATE INDEX leak_sources_due_idx ON leak_sources (findings) WHERE findings > alerted;

INSERT INTO leak_sources (source_kind, source_id, brand_id, findings, alerted)
SELECT f.source_kind, f.source_id, min(f.brand_id), count(*),
       coalesce((SELECT (a.details ->> 'findings')::bigint FROM alerts a
                  WHERE a.dedup_key = 'leaked_file:' || f.source_kind || ':' || f.source_id
                  ORDER BY a.id DESC LIMIT 1), 0)
FROM leak_findings f
GROUP BY f.source_kind, f.source_id;
