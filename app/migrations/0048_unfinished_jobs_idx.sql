-- The workers' sweep of jobs left without a runner (app/ops/orphans.py) reads the unfinished
-- exports and captures every minute: a small index each, never the whole tables.
CREATE INDEX code_exports_unfinished_idx ON code_exports (created_at)
    WHERE state IN ('queued', 'running');
CREATE INDEX epcis_captures_unfinished_idx ON epcis_captures (created_at)
    WHERE state IN ('pending', 'running');
