-- A member's erasure (PIPL: the right to have one's personal information deleted; probe U found
-- no way to close a membership): the row stays, anonymous, for the business records that name
-- it (claims, the points ledger, redemptions: a code claimed stays claimed), with status
-- 'erased', its phone replaced by a tombstone that is no phone (15 digits from 0, the id), its
-- profile cleared and the time of the erasure (app/members/erasure.py).
ALTER TABLE members DROP CONSTRAINT members_status_check;
ALTER TABLE members ADD CONSTRAINT members_status_check
    CHECK (status IN ('active', 'frozen', 'erased'));
ALTER TABLE members ADD COLUMN erased_at timestamptz;
ALTER TABLE members ADD CONSTRAINT members_erased_check
    CHECK ((status = 'erased') = (erased_at IS NOT NULL));
