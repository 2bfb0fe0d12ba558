-- Shipping a unit changes only transit_to / disposition / last_event_id: with no index on
-- transit_to and free space in each page, PostgreSQL updates the row in place (a HOT update, no
-- new entries in the other indexes). Receiving finds in-transit units through the shipment's
-- documents, and the stock recount scans the table anyway. Measured by bench/bench_outbound.py.
DROP INDEX unit_state_transit_idx;
ALTER TABLE unit_state SET (fillfactor = 70);
ALTER TABLE case_state SET (fillfactor = 70);
