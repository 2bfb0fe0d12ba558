-- When a consumer last brought the unit back (POST /returns), never cleared: only such a return
-- makes a sold unit active again and every sale makes it sold, so an active unit with one was
-- returned and not sold since — its PIN is the refunded buyer's, and a member's points claim of
-- it waits for a sale (app.members.points.RETURNED_UNSOLD). A probe found the unit's
-- disposition, which later movements change, missed one sent back to its agent; reading the
-- unit's events instead cost claims three quarters of their rate (bench/RESULTS.md).
ALTER TABLE unit_state ADD COLUMN returned_at timestamptz;

UPDATE unit_state u SET returned_at = r.at
FROM (SELECT x.code, max(e.event_time) AS at
        FROM event_codes x JOIN events e ON e.id = x.event_id
       WHERE x.kind = 'u' AND e.biz_step = 'receiving' AND e.details ->> 'return' = 'consumer'
       GROUP BY x.code) r
WHERE u.code = r.code AND u.status = 'active';
