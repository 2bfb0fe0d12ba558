-- EPCIS query paging in commit order (probe M). A page's nextPageToken named the last event id
-- handed out, and ids are taken when a transaction starts writing, not when it commits: a
-- confirm or capture committing after a later one had been paged past was never served.
-- Each event now records the id of the transaction that wrote it (``xact``); the query pages
-- in ``(xact, id)`` order, and below the transaction horizon (pg_snapshot_xmin) that order is
-- final, as the ERP export's is (app/erp/export.py, migration 0031). Rows written before this
-- migration keep 0: they are all committed, and come first in id order.
ALTER TABLE events ADD COLUMN xact xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN xact SET DEFAULT pg_current_xact_id();
CREATE INDEX events_brand_xact_idx ON events (brand_id, xact, id);

ALTER TABLE epcis_events ADD COLUMN xact xid8 NOT NULL DEFAULT '0';
ALTER TABLE epcis_events ALTER COLUMN xact SET DEFAULT pg_current_xact_id();
CREATE INDEX epcis_events_brand_xact_idx ON epcis_events (brand_id, xact, id);
