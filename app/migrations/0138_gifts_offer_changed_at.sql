-- When a gift's offer to members last changed, for the points reminders (app/sms/reminders.py):
-- a member whose balance already reached a gift is looked at again when its brand's offer
-- changed since. `updated_at` was that signal, and every redemption moves it (the stock goes
-- down by one, `updated_at = now()`), so a review found every member who could afford a gift
-- re-reminded once a period, the same gift for the same balance, in any brand with redemptions,
-- and every opted-out one looked at again after each redemption. `offer_changed_at` moves only
-- when the offer may have become one a member did not have: a gift made, its cost, provinces or
-- window changed, or its stock back from none. Set by the table's trigger, so no writer of
-- gifts (the API, redemptions, cancellations, erasures, imports) can forget it. The time it was
-- written, not its transaction's start, as the balances' (app/members/points.py): a reminder
-- scan that began before the write must find it changed after the scan's check.
ALTER TABLE gifts ADD COLUMN offer_changed_at timestamptz;
UPDATE gifts SET offer_changed_at = created_at;
ALTER TABLE gifts ALTER COLUMN offer_changed_at SET DEFAULT clock_timestamp(),
                  ALTER COLUMN offer_changed_at SET NOT NULL;

CREATE FUNCTION gifts_offer_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.points_cost IS DISTINCT FROM OLD.points_cost
       OR NEW.provinces IS DISTINCT FROM OLD.provinces
       OR NEW.valid_from IS DISTINCT FROM OLD.valid_from
       OR NEW.valid_to IS DISTINCT FROM OLD.valid_to
       OR (OLD.stock <= 0 AND NEW.stock > 0) THEN
        NEW.offer_changed_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER gifts_offer_changed BEFORE UPDATE ON gifts
    FOR EACH ROW EXECUTE FUNCTION gifts_offer_changed();
