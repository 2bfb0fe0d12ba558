-- EPCIS capture writes every captured event once (issue 19 target: >= 20,000 events/s), and
-- each index and trigger on epcis_events is paid per event. Measured on the capture bench's
-- database (bench/RESULTS.md, "Issue 19 — a captured event's PostgreSQL cost"):
--
-- 1. The three foreign keys (brand, organisation, capture job) cost ~5 µs each per row, as
--    RI triggers. The rows are written only by app.epcis.capture._write, with the three values
--    taken from the capture job row it holds locked, whose own foreign keys already hold them
--    to orgs and the job; orgs and jobs are never deleted. Dropped.
-- 2. Two b-tree indexes led by the eventID ((org_id, event_id) unique, (brand_id, event_id))
--    in the database's collation: one index serves both the per-organisation uniqueness and
--    the lookup of one brand's event by eventID, with the eventID first (near-unique: a UUID
--    URN or a CBV hash) and compared bytewise (eventIDs are only ever compared for equality).
--    brand_id is in the key so that the constraint holds the distribution column of the
--    Citus layout (docs/SCALING.md); it does not change what is unique (an organisation has
--    one brand).
ALTER TABLE epcis_events DROP CONSTRAINT epcis_events_brand_id_fkey;
ALTER TABLE epcis_events DROP CONSTRAINT epcis_events_org_id_fkey;
ALTER TABLE epcis_events DROP CONSTRAINT epcis_events_capture_id_fkey;
DROP INDEX epcis_events_brand_event_idx;
ALTER TABLE epcis_events DROP CONSTRAINT epcis_events_org_id_event_id_key;
ALTER TABLE epcis_events ALTER COLUMN event_id TYPE text COLLATE "C";
ALTER TABLE epcis_events
    ADD CONSTRAINT epcis_events_event_id_key UNIQUE (event_id, brand_id, org_id);
