-- Lucky draws (migration 0114) and the code's other owners, returns and fraud holds (app/draws/).
--
-- * One owner per code under a race: a draw checked another member's points claim (and a points
--   claim another member's draw) inside the statement that waited for the unit's row lock, with
--   the snapshot it took before waiting — READ COMMITTED rechecks only the locked row, so the
--   other's committed row was never seen and both owned the code. The check is now made after
--   the lock, by these VOLATILE functions: each of their queries takes a fresh snapshot, which
--   sees what the lock's holder committed (the draws' and the points claims' statements call
--   them on the rows their lock step returned).
-- * A consumer's return withdraws the unit's draw as it withdraws its points claim
--   (app.draws.returns): ``withdrawn_at``; a pending voucher or gift is ``cancelled``. The code
--   is unique among draws not withdrawn, so the unit may be drawn again once it is sold again.
-- * A member on a fraud hold draws as a held points claim is written: the draw takes the code,
--   ``hold_id`` and ``hold_state`` held, no prize until the hold is decided
--   (app.forensics.holds: released → drawn then, confirmed → rejected).

ALTER TABLE draws ADD COLUMN withdrawn_at timestamptz,
    ADD COLUMN hold_id bigint REFERENCES fraud_holds (id),
    ADD COLUMN hold_state text CHECK (hold_state IN ('held', 'released', 'rejected')),
    ADD CONSTRAINT draws_hold_check CHECK ((hold_id IS NULL) = (hold_state IS NULL));
ALTER TABLE draws DROP CONSTRAINT draws_fulfil_status_check;
ALTER TABLE draws ADD CONSTRAINT draws_fulfil_status_check
    CHECK (fulfil_status IN ('none', 'credited', 'pending', 'fulfilled', 'cancelled'));
DROP INDEX draws_code;
CREATE UNIQUE INDEX draws_code ON draws (code_id) WHERE withdrawn_at IS NULL;
CREATE INDEX draws_held_idx ON draws (hold_id) WHERE hold_state = 'held';
CREATE INDEX draws_hold_idx ON draws (hold_id) WHERE hold_id IS NOT NULL;

CREATE FUNCTION code_drawn_by_another(code bigint, member bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM draws d WHERE d.code_id = code AND d.member_id <> member
                      AND d.withdrawn_at IS NULL);
END $$;

CREATE FUNCTION code_claimed_by_another(code bigint, member bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM point_claims pc WHERE pc.code_id = code
                      AND pc.member_id <> member AND pc.withdrawn_at IS NULL);
END $$;
