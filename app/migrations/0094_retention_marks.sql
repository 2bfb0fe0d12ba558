-- How far the personal-information retention sweep (app.retention) has gone: verification
-- records' details cleared up to done_at, SMS tombstoned up to done_id.
CREATE TABLE retention_marks (
    what    text PRIMARY KEY CHECK (what IN ('scans', 'sms')),
    done_at timestamptz,
    done_id bigint NOT NULL DEFAULT 0
);
