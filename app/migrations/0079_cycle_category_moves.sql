-- A5 by category follows a product to its category (app/analytics/people.py): a member's state
-- per category (in analytics_member_facts, minus the category's id) was folded from each claim
-- with the category its product had then, so a product moved to another category left its
-- past purchases under the old one (a probe; the recount called them drift for ever). A
-- category's figures count distinct members, which its products' cells cannot give (a member
-- who bought two of its products is one member with two purchases), so category cells stay,
-- and the roll-up derives a member's categories from its products: the ledger fold after each
-- claim, and, for a product moved, a fold of the members who bought it, queued here.

-- A product moved to another category and not folded yet, with the category its purchases are
-- still counted under (the one it had when the first move since the last fold was queued;
-- NULL: none).
CREATE TABLE analytics_product_queue (
    product_id  bigint PRIMARY KEY,
    category_id bigint
);

CREATE FUNCTION analytics_product_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- DO UPDATE, not DO NOTHING: the move locks a row already queued, so a roll-up that has not
    -- taken it yet skips it (SKIP LOCKED) until this move is visible; the counted category
    -- stays the first one.
    INSERT INTO analytics_product_queue AS q (product_id, category_id)
    VALUES (NEW.id, OLD.category_id)
    ON CONFLICT (product_id) DO UPDATE SET category_id = q.category_id;
    RETURN NULL;
END $$;

CREATE TRIGGER products_analytics AFTER UPDATE OF category_id ON products
FOR EACH ROW WHEN (OLD.category_id IS DISTINCT FROM NEW.category_id)
EXECUTE FUNCTION analytics_product_enqueue();

-- The members' category entries derived again from their product entries with the products'
-- categories now (only the members whose entries differ are rewritten) ...
WITH entries AS (
    SELECT f.member_id, u.subject, u.n, u.first_day, u.last_day
    FROM analytics_member_facts f,
         unnest(f.subjects, f.purchases, f.first_days, f.last_days)
             AS u(subject, n, first_day, last_day)
    WHERE cardinality(f.subjects) > 0
), derived AS (
    SELECT e.member_id, -p.category_id AS subject, sum(e.n)::int AS n,
           min(e.first_day) AS first_day, max(e.last_day) AS last_day
    FROM entries e JOIN products p ON p.id = e.subject
    WHERE e.subject > 0 AND p.category_id IS NOT NULL
    GROUP BY 1, 2
), changed AS (
    SELECT member_id FROM (
        (SELECT * FROM entries WHERE subject < 0 EXCEPT SELECT * FROM derived)
        UNION ALL
        (SELECT * FROM derived EXCEPT SELECT * FROM entries WHERE subject < 0)
    ) d GROUP BY member_id
), state AS (
    SELECT member_id, array_agg(subject ORDER BY subject) AS subjects,
           array_agg(n ORDER BY subject) AS purchases,
           array_agg(first_day ORDER BY subject) AS first_days,
           array_agg(last_day ORDER BY subject) AS last_days
    FROM (SELECT * FROM entries WHERE subject >= 0 UNION ALL SELECT * FROM derived) x
    WHERE member_id IN (SELECT member_id FROM changed)
    GROUP BY member_id
)
UPDATE analytics_member_facts f
SET subjects = s.subjects, purchases = s.purchases, first_days = s.first_days,
    last_days = s.last_days
FROM state s WHERE f.member_id = s.member_id;

-- ... and the category cells counted again from them.
DELETE FROM analytics_cycle WHERE kind = 'c';
DELETE FROM analytics_cycle_m WHERE kind = 'c';

INSERT INTO analytics_cycle (brand_id, kind, subject_id, last_day, pairs, purchases, span_days,
                             repeaters, f1, f2, f3_5, f6_10, f11)
SELECT f.brand_id, 'c', -u.subject, u.last_day, count(*), sum(u.n), sum(u.last_day - u.first_day),
       count(*) FILTER (WHERE u.n >= 2), count(*) FILTER (WHERE u.n = 1),
       count(*) FILTER (WHERE u.n = 2), count(*) FILTER (WHERE u.n BETWEEN 3 AND 5),
       count(*) FILTER (WHERE u.n BETWEEN 6 AND 10), count(*) FILTER (WHERE u.n > 10)
FROM analytics_member_facts f,
     unnest(f.subjects, f.purchases, f.first_days, f.last_days)
         AS u(subject, n, first_day, last_day)
WHERE u.subject < 0
GROUP BY 1, 2, 3, 4;

INSERT INTO analytics_cycle_m (brand_id, kind, subject_id, month, pairs, purchases, span_days,
                               repeaters, f1, f2, f3_5, f6_10, f11)
SELECT brand_id, kind, subject_id, date_trunc('month', last_day)::date, sum(pairs),
       sum(purchases), sum(span_days), sum(repeaters), sum(f1), sum(f2), sum(f3_5), sum(f6_10),
       sum(f11)
FROM analytics_cycle WHERE kind = 'c' GROUP BY 1, 2, 3, 4;
