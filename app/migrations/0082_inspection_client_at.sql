-- When the inspector's phone says it scanned (POST /inspections `client_at`): a scan queued
-- offline is uploaded later. NULL: not sent, the upload time `at` is the scan's. The lists, the
-- export, the event's eventTime and the summary's business day use coalesce(client_at, at), as
-- field check-ins do (0027). Checked on the way in (app.field.checkins.check_client_at): at most
-- 10 minutes after `at`, at most 30 days before it — the lists bound `at` by that to keep their
-- period on the indexes of `at`.
ALTER TABLE inspection_scans ADD COLUMN client_at timestamptz;
