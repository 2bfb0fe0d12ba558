-- EPCIS query of one EPC's events (issue 19 target: p99 <= 20 ms on 10M events;
-- bench/bench_epcis_query.py). MATCH_epc / MATCH_anyEPC look the EPC up in epcis_event_epcs and
-- filter on its role (e for MATCH_epc, e/p/x for MATCH_anyEPC); with the role outside the index
-- every match cost a read of the identifier row's heap page (4 random pages per unit's EPC, one
-- per event, on a 9 GB table at 10M events). With the role in the key the lookup is an
-- index-only scan. The tuple stays the same size: the "char" fits in the alignment padding
-- before event_id. Class patterns (range scans on epc) still use the leading column.
CREATE INDEX epcis_event_epcs_epc_role_idx ON epcis_event_epcs (epc, role, event_id);
DROP INDEX epcis_event_epcs_epc_idx;

-- An index-only scan skips the heap only on pages the visibility map marks all-visible, which
-- for an insert-only table autovacuum does after 20% new rows by default (20M identifier rows
-- at 10M events): the newest captures, the ones most asked about, would still cost heap reads.
-- Vacuum after every million new rows (~100,000 events); an insert-only vacuum only visits the
-- new pages.
ALTER TABLE epcis_event_epcs SET (
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 1000000
);
