-- Rebate webhooks (migration 0028), two probes:
-- * rebate.claimed went to the unit's first agent as well as to the store's subtree: goods an
--   agent shipped on into another agent's area told it that area's claims (store, clerk,
--   amount), which GET /rebates hides from it. The store's subtree, and those above it, only.
-- * rebate.statement's period_end was the stored bound, the day after the period (a January
--   statement ended "02-01"); it is the period's last day, as the API's `to`.
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
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_rebate_statement_data(s rebate_statements) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('statement_id', s.id, 'store_id', s.store_id, 'status', s.status,
                              'period_start', s.period_start, 'period_end', s.period_end - 1,
                              'claims', s.claims, 'amount', s.amount,
                              'payment_ref', s.payment_ref, 'reject_reason', s.reject_reason)
$$;
