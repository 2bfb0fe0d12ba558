-- A ledger entry moves what a balance holds: balances are bigint, entries were integer, so the
-- erasure of a member holding more than 2,147,483,647 points (its one forfeiting entry) failed
-- on every try (a probe: 400 "integer out of range" on DELETE /members/me). Rewrites the table.
ALTER TABLE points_ledger ALTER COLUMN points TYPE bigint;
