-- A unit whose points claim a consumer's return withdrew earns points again only once it is
-- sold again (app.members.points, ``RETURNED_UNSOLD``): the claims look its withdrawn claims up
-- by code. The disposition alone said so only while the unit stayed in the store: sent back to
-- its agent and received, the refunded buyer claimed the points again (a probe).
CREATE INDEX point_claims_code_withdrawn ON point_claims (code_id) WHERE withdrawn_at IS NOT NULL;
