-- Idempotency of scanner uploads beyond the first scan (0011): the client event ids of the later
-- scans an upload accepted for a code already there — a unit active before, packed or scanned
-- again; a case closed again over more units or packed onto a pallet — newest first, the last
-- 16. A retried upload's scans are then recognised from the state rows the upload reads and
-- locks anyway (a probe: such a retry answered `ok` again, counted twice). NULL on every code
-- scanned once (the hot path writes none).
ALTER TABLE unit_state ADD COLUMN rescan_client_event_ids text[];
ALTER TABLE case_state ADD COLUMN rescan_client_event_ids text[];
