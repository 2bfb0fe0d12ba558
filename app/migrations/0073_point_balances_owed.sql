-- Points a consumer's return could not take back (spent on a gift already: the balance never
-- goes below zero) are owed (app.members.returns), and taken from the next refund of a gift
-- code (app.members.redemptions.expire_due). A probe: claim, redeem the points at once, return
-- the unit, let the code expire: its refund gave the member the points of a refunded sale.
ALTER TABLE point_balances ADD COLUMN owed integer NOT NULL DEFAULT 0 CHECK (owed >= 0);
-- What the returns made before this migration could not take back: each wrote its audit row
-- (app.members.returns: the claim's points as "claimed", those taken back as "points"). A
-- probe: migrated with nothing owed, a code bought with a refunded sale's points expired and
-- gave them back.
UPDATE point_balances b SET owed = o.owed
  FROM (SELECT (after ->> 'member_id')::bigint AS member_id,
               sum((after ->> 'claimed')::integer - (after ->> 'points')::integer) AS owed
          FROM audit_log
         WHERE entity = 'point_claim' AND action = 'withdraw'
           AND (after ->> 'claimed')::integer > (after ->> 'points')::integer
         GROUP BY 1) o
 WHERE b.member_id = o.member_id;
