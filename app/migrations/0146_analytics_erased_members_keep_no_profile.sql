-- People analytics (A6; app/analytics/people.py): an erased member's facts keep no more of its
-- profile than the summaries count its points by. A probe: the erasure cleared the profile, and
-- ``analytics_member_facts`` kept the erased member's exact birthday, province and city under its
-- id for ever. The roll-up now keeps, for an erased member, the birthday's month (the cell of
-- ``analytics_points_ages_m`` its points stay in; in the day summary they move to the month's
-- first day) and the band it chose, and no region (an erased member counts in no region cell).
-- Here the members erased before: their points move from the birthday's cell to the month's
-- first day (the month cells unchanged), then their facts lose the day, the province and city.
--
-- One people roller at a time (the roller's lock, Lock.PEOPLE_ROLLUP in app/locks.py: one key):
-- a fold under way moves the cells and facts this reads. Idempotent (each statement may run
-- again: a member moved already has its birthday on a month's first day).

SELECT pg_advisory_xact_lock(7245018);

WITH gone AS (
    SELECT brand_id, birthday, age_band, claimed, redeemed, expired, adjusted, balance
    FROM analytics_member_facts
    WHERE erased AND reg_day IS NOT NULL
      AND birthday <> date_trunc('month', birthday)::date
), moved AS (
    SELECT brand_id, birthday, age_band, -claimed AS claimed, -redeemed AS redeemed,
           -expired AS expired, -adjusted AS adjusted, -balance AS balance
    FROM gone
    UNION ALL
    SELECT brand_id, date_trunc('month', birthday)::date, age_band, claimed, redeemed, expired,
           adjusted, balance
    FROM gone
)
INSERT INTO analytics_points_ages AS a
    (brand_id, birthday, age_band, members, claimed, redeemed, expired, adjusted, balance)
SELECT brand_id, birthday, age_band, 0, sum(claimed), sum(redeemed), sum(expired),
       sum(adjusted), sum(balance)
FROM moved GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (brand_id, birthday, age_band) DO UPDATE SET
    claimed = a.claimed + EXCLUDED.claimed, redeemed = a.redeemed + EXCLUDED.redeemed,
    expired = a.expired + EXCLUDED.expired, adjusted = a.adjusted + EXCLUDED.adjusted,
    balance = a.balance + EXCLUDED.balance;

UPDATE analytics_member_facts
SET province = '', city = '', birthday = date_trunc('month', birthday)::date
WHERE erased
  AND (province <> '' OR city <> '' OR birthday <> date_trunc('month', birthday)::date);
