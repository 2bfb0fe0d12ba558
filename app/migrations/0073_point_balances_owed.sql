-- Points a consumer's return could not take back (spent on a gift already: the balance never
-- goes below zero) are owed (app.members.returns), and taken from the next refund of a gift
-- code (app.members.redemptions.expire_due). A probe: claim, redeem the points at once, return
-- the unit, let the code expire: its refund gave the member the points of a refunded sale.
ALTER TABLE point_balances ADD COLUMN owed integer NOT NULL DEFAULT 0 CHECK (owed >= 0);
