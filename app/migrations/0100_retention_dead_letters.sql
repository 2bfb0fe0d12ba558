-- The retention sweep (app.retention) clears the personal part of the operators' dead letters
-- too: a refused verification record's details, a failed SMS's number and variables, each with
-- its own mark, (done_at, done_id) the last letter read in (time, id) order.
ALTER TABLE retention_marks DROP CONSTRAINT retention_marks_what_check;
ALTER TABLE retention_marks ADD CONSTRAINT retention_marks_what_check
    CHECK (what IN ('scans', 'sms', 'dead:verifications', 'dead:sms_outbox'));
