-- People analytics, made fast (issue 17, A4–A7 targets): see app/analytics/people.py.
--
-- 1. The purchase state of a member (its purchases, first and last day per subject: all
--    products, each product, each category) moves into the member's own facts row, as parallel
--    arrays, instead of one analytics_member_cycle row per (member, subject): a batch of claims
--    then rewrites one row per member (HOT, fillfactor) instead of three or more index upserts
--    per claim.
-- 2. Month summaries beside the day summaries (the same cells summed by the month of their
--    day), so a period reads its whole months from the month table and only its partial months
--    day by day: an answer reads tens to hundreds of rows, not days × regions × products.
-- 3. Indexes on the day summaries by (…, level, day), so the partial months of a period are
--    read by their days whatever the region.
-- 4. Verifications by category (product_id: minus the category's id).

-- subjects: 0 all products, a product id, or minus a category id; the other arrays follow it.
ALTER TABLE analytics_member_facts
    ADD COLUMN subjects   bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN purchases  int[]    NOT NULL DEFAULT '{}',
    ADD COLUMN first_days date[]   NOT NULL DEFAULT '{}',
    ADD COLUMN last_days  date[]   NOT NULL DEFAULT '{}';
ALTER TABLE analytics_member_facts SET (fillfactor = 80);

INSERT INTO analytics_member_facts AS f
    (member_id, brand_id, subjects, purchases, first_days, last_days)
SELECT member_id, min(brand_id),
       array_agg(CASE kind WHEN 'a' THEN 0 WHEN 'p' THEN subject_id ELSE -subject_id END
                 ORDER BY CASE kind WHEN 'a' THEN 0 WHEN 'p' THEN subject_id ELSE -subject_id END),
       array_agg(purchases::int
                 ORDER BY CASE kind WHEN 'a' THEN 0 WHEN 'p' THEN subject_id ELSE -subject_id END),
       array_agg(first_day
                 ORDER BY CASE kind WHEN 'a' THEN 0 WHEN 'p' THEN subject_id ELSE -subject_id END),
       array_agg(last_day
                 ORDER BY CASE kind WHEN 'a' THEN 0 WHEN 'p' THEN subject_id ELSE -subject_id END)
FROM analytics_member_cycle GROUP BY member_id
ON CONFLICT (member_id) DO UPDATE SET
    subjects = EXCLUDED.subjects, purchases = EXCLUDED.purchases,
    first_days = EXCLUDED.first_days, last_days = EXCLUDED.last_days;

DROP TABLE analytics_member_cycle;

ALTER TABLE analytics_member_regions SET (fillfactor = 80);
ALTER TABLE analytics_cycle SET (fillfactor = 80);
ALTER TABLE analytics_verifications SET (fillfactor = 80);
ALTER TABLE analytics_points_ages SET (fillfactor = 80);

CREATE INDEX analytics_member_regions_day ON analytics_member_regions (brand_id, level, day);
CREATE INDEX analytics_cycle_day ON analytics_cycle (brand_id, kind, last_day);
CREATE INDEX analytics_verifications_day
    ON analytics_verifications (brand_id, product_id, level, day);

-- A7 by category too: product_id minus the category's id, at the brand and province levels (a
-- category's statistics read one row a day, not one per product)
INSERT INTO analytics_verifications (brand_id, product_id, level, province, city, day, total,
                                     genuine, unconfirmed, suspicious, not_genuine, wrong_pin,
                                     locked)
SELECT v.brand_id, -p.category_id, v.level, v.province, v.city, v.day, sum(v.total),
       sum(v.genuine), sum(v.unconfirmed), sum(v.suspicious), sum(v.not_genuine),
       sum(v.wrong_pin), sum(v.locked)
FROM analytics_verifications v JOIN products p ON p.id = v.product_id
WHERE v.product_id > 0 AND v.level IN (0, 1) AND p.category_id IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6;

-- A4 by month (month: its first day)
CREATE TABLE analytics_member_regions_m (
    brand_id bigint NOT NULL,
    level    smallint NOT NULL,
    province text NOT NULL,
    city     text NOT NULL,
    month    date NOT NULL,
    members  bigint NOT NULL,
    PRIMARY KEY (brand_id, level, province, city, month) INCLUDE (members)
) WITH (fillfactor = 80);

INSERT INTO analytics_member_regions_m (brand_id, level, province, city, month, members)
SELECT brand_id, level, province, city, date_trunc('month', day)::date, sum(members)
FROM analytics_member_regions GROUP BY 1, 2, 3, 4, 5;

-- A5 by the month of the last purchase
CREATE TABLE analytics_cycle_m (
    brand_id   bigint NOT NULL,
    kind       "char" NOT NULL,
    subject_id bigint NOT NULL,
    month      date NOT NULL,
    pairs      bigint NOT NULL,
    purchases  bigint NOT NULL,
    span_days  bigint NOT NULL,
    repeaters  bigint NOT NULL,
    f1         bigint NOT NULL,
    f2         bigint NOT NULL,
    f3_5       bigint NOT NULL,
    f6_10      bigint NOT NULL,
    f11        bigint NOT NULL,
    PRIMARY KEY (brand_id, kind, subject_id, month)
) WITH (fillfactor = 80);

INSERT INTO analytics_cycle_m (brand_id, kind, subject_id, month, pairs, purchases, span_days,
                               repeaters, f1, f2, f3_5, f6_10, f11)
SELECT brand_id, kind, subject_id, date_trunc('month', last_day)::date, sum(pairs),
       sum(purchases), sum(span_days), sum(repeaters), sum(f1), sum(f2), sum(f3_5), sum(f6_10),
       sum(f11)
FROM analytics_cycle GROUP BY 1, 2, 3, 4;

-- A7 by month
CREATE TABLE analytics_verifications_m (
    brand_id    bigint NOT NULL,
    product_id  bigint NOT NULL,
    level       smallint NOT NULL,
    province    text NOT NULL,
    city        text NOT NULL,
    month       date NOT NULL,
    total       bigint NOT NULL,
    genuine     bigint NOT NULL,
    unconfirmed bigint NOT NULL,
    suspicious  bigint NOT NULL,
    not_genuine bigint NOT NULL,
    wrong_pin   bigint NOT NULL,
    locked      bigint NOT NULL,
    PRIMARY KEY (brand_id, product_id, level, province, city, month)
) WITH (fillfactor = 80);

INSERT INTO analytics_verifications_m (brand_id, product_id, level, province, city, month, total,
                                       genuine, unconfirmed, suspicious, not_genuine, wrong_pin,
                                       locked)
SELECT brand_id, product_id, level, province, city, date_trunc('month', day)::date, sum(total),
       sum(genuine), sum(unconfirmed), sum(suspicious), sum(not_genuine), sum(wrong_pin),
       sum(locked)
FROM analytics_verifications GROUP BY 1, 2, 3, 4, 5, 6;

-- A6 by the month of the birthday ('infinity': none, by the chosen band)
CREATE TABLE analytics_points_ages_m (
    brand_id bigint NOT NULL,
    month    date NOT NULL,
    age_band text NOT NULL,
    members  bigint NOT NULL,
    claimed  bigint NOT NULL,
    redeemed bigint NOT NULL,
    expired  bigint NOT NULL,
    adjusted bigint NOT NULL,
    balance  bigint NOT NULL,
    PRIMARY KEY (brand_id, month, age_band)
) WITH (fillfactor = 80);

INSERT INTO analytics_points_ages_m (brand_id, month, age_band, members, claimed, redeemed,
                                     expired, adjusted, balance)
SELECT brand_id, date_trunc('month', birthday)::date, age_band, sum(members), sum(claimed),
       sum(redeemed), sum(expired), sum(adjusted), sum(balance)
FROM analytics_points_ages GROUP BY 1, 2, 3;
