-- EPCIS eventIDs are kept per capturing organisation, not per brand: another organisation of
-- the brand sending an event with the same eventID stores its own record (the same real event
-- told by two parties, or a clash) instead of being skipped as a duplicate, and only the
-- organisation that captured an event can declare it erroneous (app/epcis/capture.py).
ALTER TABLE epcis_events DROP CONSTRAINT epcis_events_brand_id_event_id_key;
ALTER TABLE epcis_events ADD CONSTRAINT epcis_events_org_id_event_id_key UNIQUE (org_id, event_id);
-- GET /epcis/events/{eventID}: one brand's events by eventID
CREATE INDEX epcis_events_brand_event_idx ON epcis_events (brand_id, event_id);
