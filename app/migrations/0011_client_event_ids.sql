-- Idempotency of scanner uploads lives in the state rows: each unit keeps the client event id
-- of the scan that activated it, each case that of the scan that first packed it. A replayed
-- scan is recognised from the row the upload reads (and locks) anyway, so no receipt table is
-- written or searched on the packing hot path.
ALTER TABLE unit_state ADD COLUMN client_event_id text;
ALTER TABLE case_state ADD COLUMN client_event_id text;
DROP TABLE scan_receipts;
