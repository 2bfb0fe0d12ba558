-- A fraud hold's reviewer's note on the release or confirmation in a column of its own. The
-- decision wrote its note over the hold's (why it was put on hold: a reviewer's by hand, or
-- nothing from the ring detector), so a released or confirmed hold no longer said why it had been
-- held (a review of the console's holds page). Notes of holds decided before this migration were
-- overwritten already: they stay as they are, in ``note``.
ALTER TABLE fraud_holds ADD COLUMN decision_note text NOT NULL DEFAULT '';
