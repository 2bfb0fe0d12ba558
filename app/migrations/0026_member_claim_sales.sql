-- Member point claims count as sales (issue 17): a claim of a unit not yet sold, held by a store
-- (or an agent or distributor, the retail channel), sells it in the claim's own statement as the
-- L7 sale movement does (app/members/points.py, _CREDIT); the sales_queue trigger of 0022 then
-- counts it once, whichever of the store sale, the rebate claim or the member claim comes first.
-- The claim keeps the sale event it recorded (NULL: the unit was sold before, or not sold by the
-- claim), as rebate_claims.sale_event_id does.
ALTER TABLE point_claims ADD COLUMN sale_event_id bigint;
