-- A claim sent again with the same client id (a till or phone that lost the answer retries) is
-- checked but not counted as a new query of its code: its record says reason = 'claim_retry'
-- (app.verify.service's script, app.verify.fallback COUNTED). The analytics counted every
-- record: a probe claimed a rebate and retried it twice, and the brand's verifications (A7,
-- GET /analytics/verifications) and the dashboard's today both grew by 3. They count a code's
-- queries as the code does: without its claim retries (app.analytics.people NOT_RETRY, the
-- recount and the dashboard's count use the same condition). GET /verifications still lists the
-- retry records, each with its reason.
--
-- The trigger queues only the records that count (INSERT is the only path it handles: the A7
-- summaries never follow an UPDATE or DELETE of a record).
CREATE OR REPLACE FUNCTION analytics_verify_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_verify_queue (brand_id, day, product_id, province, city, result, n)
    SELECT brand_id, (at AT TIME ZONE 'Asia/Shanghai')::date, product_id,
           coalesce(province, ''), coalesce(city, ''), result, count(*)
    FROM new_rows WHERE brand_id IS NOT NULL AND reason IS DISTINCT FROM 'claim_retry'
    GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END $$;

-- The retry records written before: each was queued once (by the trigger, or by 0023's first
-- queue), folded into the summaries or still queued. A negative count of each, queued, takes
-- them out at the next roll-up (as tests/helpers.verifications_changed uncounts a record). The
-- dashboard's kept days holding any are dropped: counted again from their sources when next
-- asked, or by the worker (app.analytics.dashboard). One scan of the records for both.
WITH retried AS (
    SELECT brand_id, (at AT TIME ZONE 'Asia/Shanghai')::date AS day, product_id,
           coalesce(province, '') AS province, coalesce(city, '') AS city, result, count(*) AS n
    FROM verifications WHERE brand_id IS NOT NULL AND reason = 'claim_retry'
    GROUP BY 1, 2, 3, 4, 5, 6
), uncounted AS (
    INSERT INTO analytics_verify_queue (brand_id, day, product_id, province, city, result, n)
    SELECT brand_id, day, product_id, province, city, result, -n FROM retried
    ORDER BY 1, 2, 3, 4, 5, 6
    RETURNING 1
)
DELETE FROM dashboard_days WHERE (brand_id, day) IN (SELECT brand_id, day FROM retried);
