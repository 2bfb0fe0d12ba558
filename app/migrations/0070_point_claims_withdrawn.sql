-- A consumer's return withdraws the points claim of its unit (app.members.returns): the claim
-- stays (its ledger entry refers to it), withdrawn, and the unit may be claimed again when it
-- is sold again. A probe: the refunded buyer kept the points, the next buyer's claim was 409
-- already_claimed (buy, claim, return, again: the points of one sale paid over and over).
ALTER TABLE point_claims ADD COLUMN withdrawn_at timestamptz;
ALTER TABLE point_claims DROP CONSTRAINT point_claims_code_id_key;
CREATE UNIQUE INDEX point_claims_code_live ON point_claims (code_id) WHERE withdrawn_at IS NULL;
