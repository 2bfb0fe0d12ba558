-- People analytics (A4, A6; app/analytics/people.py): an erased membership is no member. The
-- erasure clears the member's region, birthday and band, and the roll-up counted it on, under an
-- unknown province and band (its points moved there); the same phone signed up again, one
-- person was counted twice. The roll-up now counts only members not erased, and keeps an erased
-- member's points where it was last counted (its place kept in its facts, flagged ``erased``).
--
-- Idempotent (each statement may run again).

ALTER TABLE analytics_member_facts ADD COLUMN IF NOT EXISTS erased boolean NOT NULL DEFAULT false;

-- A change of status queues the member too (an erasure by SQL that sets the status alone).
DROP TRIGGER IF EXISTS members_analytics ON members;
CREATE TRIGGER members_analytics AFTER INSERT OR UPDATE OF province, city, birthday, age_band,
    created_at, brand_id, status ON members
FOR EACH ROW EXECUTE FUNCTION analytics_member_enqueue();

-- Members erased before: folded again by the next roll-up, which takes them out of the member
-- counts. Their points stay where they were counted: for those erased through the API, the
-- unknown band their erasure moved them to (the band they had is gone with their birthday).
INSERT INTO analytics_member_queue (member_id)
SELECT m.id FROM members m
WHERE m.status = 'erased'
  AND NOT EXISTS (SELECT 1 FROM analytics_member_facts f WHERE f.member_id = m.id AND f.erased)
ORDER BY m.id
ON CONFLICT (member_id) DO NOTHING;
