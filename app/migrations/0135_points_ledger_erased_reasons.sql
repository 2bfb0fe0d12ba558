-- The points ledger is append-only (0016), and so kept the reasons staff wrote on a member's
-- adjustments and manual expiries (a call, a name, an address) after the member's erasure, which
-- wipes every other staff note about the member (a probe read them on the erased member's
-- points). The erasure (app/members/erasure.py) now replaces those reasons by "membership
-- erased"; the ledger allows that one change and nothing else:
--
-- * DELETE and TRUNCATE stay refused, per statement, as every UPDATE is outside an erasure;
-- * inside one (the transaction-local setting `tracecode.erasing` = 'on', which the erasure sets
--   around its statement and sets back), each updated row is checked: only its `reason` may
--   change, only to "membership erased", and only on a row of an erased member (the erasure
--   marks the member erased first). Points, kinds, times and links never change.
CREATE OR REPLACE FUNCTION points_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('tracecode.erasing', true) = 'on' THEN
        RETURN NULL;  -- each row is checked by points_ledger_erased_reason
    END IF;
    RAISE EXCEPTION 'points_ledger is append-only';
END $$;

CREATE FUNCTION points_ledger_erased_reason() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('tracecode.erasing', true) IS DISTINCT FROM 'on'
       OR NEW.reason IS DISTINCT FROM 'membership erased'
       OR (to_jsonb(NEW) - 'reason') IS DISTINCT FROM (to_jsonb(OLD) - 'reason')
       OR NOT EXISTS (SELECT 1 FROM members WHERE id = OLD.member_id AND status = 'erased') THEN
        RAISE EXCEPTION 'points_ledger is append-only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER points_ledger_erased_reason BEFORE UPDATE ON points_ledger
    FOR EACH ROW EXECUTE FUNCTION points_ledger_erased_reason();
