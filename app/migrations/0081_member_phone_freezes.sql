-- A probe: a member frozen (for fraud, say) closed the membership and signed up again with the
-- same phone a minute later, and the new membership was active: the erasure (PIPL) shed the
-- freeze. The erasure stays the member's right, and the freeze survives it without the phone:
-- a keyed hash of the normalised phone (HMAC-SHA256 under Settings.subkey("member-frozen-phone"),
-- derived from the master key, which never enters the database) per brand, with the freeze's
-- reason. A sign-up of a phone whose hash is kept starts frozen with that reason
-- (app/members/auth.py), the row naming that new membership (member_id) until staff unfreeze it,
-- which deletes the row; an erasure of it while still frozen keeps the hash again, unnamed. No
-- link to the erased membership is kept (its records stay anonymous).
CREATE TABLE member_phone_freezes (
    brand_id   bigint NOT NULL REFERENCES orgs (id),
    phone_hash bytea NOT NULL CHECK (length(phone_hash) = 32),
    reason     text,
    member_id  bigint REFERENCES members (id),  -- the new membership frozen by it, if any
    PRIMARY KEY (brand_id, phone_hash)
);
CREATE UNIQUE INDEX member_phone_freezes_member ON member_phone_freezes (member_id)
    WHERE member_id IS NOT NULL;
