-- People analytics (issue 17, A4–A7): see app/analytics/people.py.
--
-- Three queues, each filled in the transaction that writes its source rows (by a trigger, so
-- every writer is covered: the API, the verify flusher and its fallback, bulk SQL), folded by the
-- roll-up exactly once (DELETE … RETURNING under FOR UPDATE SKIP LOCKED):
--   analytics_member_queue   a member registered or changed its region, birthday or age band
--   analytics_ledger_queue   a points ledger row (claims feed the purchase cycle too)
--   analytics_verify_queue   verifications, pre-counted per statement by (brand, day, product,
--                            province, city, result)

CREATE TABLE analytics_member_queue (
    member_id bigint PRIMARY KEY,
    touched   bigint NOT NULL DEFAULT 0      -- bumped by each change (see the trigger)
);

CREATE FUNCTION analytics_member_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- DO UPDATE, not DO NOTHING: the change locks a row already queued, so a roll-up that has
    -- not taken it yet skips it (SKIP LOCKED) until this change is visible.
    INSERT INTO analytics_member_queue AS q (member_id) VALUES (NEW.id)
    ON CONFLICT (member_id) DO UPDATE SET touched = q.touched + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER members_analytics AFTER INSERT OR UPDATE OF province, city, birthday, age_band,
    created_at, brand_id ON members
FOR EACH ROW EXECUTE FUNCTION analytics_member_enqueue();

CREATE TABLE analytics_ledger_queue (ledger_id bigint PRIMARY KEY);

CREATE FUNCTION analytics_ledger_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_ledger_queue (ledger_id) SELECT id FROM new_rows;
    RETURN NULL;
END $$;

CREATE TRIGGER points_ledger_analytics AFTER INSERT ON points_ledger
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION analytics_ledger_enqueue();

CREATE TABLE analytics_verify_queue (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id   bigint NOT NULL,
    day        date NOT NULL,              -- Asia/Shanghai day of the verification
    product_id bigint,
    province   text NOT NULL,              -- '' unknown
    city       text NOT NULL,              -- '' unknown
    result     text NOT NULL,
    n          bigint NOT NULL
);

-- One INSERT per flushed statement (a flush writes thousands of records in one statement):
-- records without a brand (forged or malformed serials: no brand can be told) are not counted.
CREATE FUNCTION analytics_verify_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_verify_queue (brand_id, day, product_id, province, city, result, n)
    SELECT brand_id, (at AT TIME ZONE 'Asia/Shanghai')::date, product_id,
           coalesce(province, ''), coalesce(city, ''), result, count(*)
    FROM new_rows WHERE brand_id IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6;
    RETURN NULL;
END $$;

CREATE TRIGGER verifications_analytics AFTER INSERT ON verifications
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION analytics_verify_enqueue();

-- What the roll-up last counted for each member: where it sits (registration day, region,
-- birthday or chosen band) and its points. reg_day NULL: the member itself not folded yet (its
-- points are kept here and join its cell when it is).
CREATE TABLE analytics_member_facts (
    member_id bigint PRIMARY KEY,
    brand_id  bigint NOT NULL,
    reg_day   date,
    province  text NOT NULL DEFAULT '',
    city      text NOT NULL DEFAULT '',
    birthday  date NOT NULL DEFAULT 'infinity',   -- 'infinity': none
    age_band  text NOT NULL DEFAULT '',           -- the chosen band when there is no birthday
    claimed   bigint NOT NULL DEFAULT 0,
    redeemed  bigint NOT NULL DEFAULT 0,          -- redemptions less refunds
    expired   bigint NOT NULL DEFAULT 0,
    adjusted  bigint NOT NULL DEFAULT 0,
    balance   bigint NOT NULL DEFAULT 0
);

-- A4: members by registration day and region; level 0 the brand, 1 a province, 2 a city.
CREATE TABLE analytics_member_regions (
    brand_id bigint NOT NULL,
    level    smallint NOT NULL,
    province text NOT NULL,
    city     text NOT NULL,
    day      date NOT NULL,
    members  bigint NOT NULL,
    PRIMARY KEY (brand_id, level, province, city, day) INCLUDE (members)
);

-- A6: members and points by birthday (the band follows the birthday, so it is computed when
-- read) or, without one, by the band the member chose.
CREATE TABLE analytics_points_ages (
    brand_id bigint NOT NULL,
    birthday date NOT NULL,
    age_band text NOT NULL,
    members  bigint NOT NULL,
    claimed  bigint NOT NULL,
    redeemed bigint NOT NULL,
    expired  bigint NOT NULL,
    adjusted bigint NOT NULL,
    balance  bigint NOT NULL,
    PRIMARY KEY (brand_id, birthday, age_band)
);

-- A5: each member's purchases (point claims) of a subject: kind 'a' all products (subject 0),
-- 'p' a product, 'c' a category.
CREATE TABLE analytics_member_cycle (
    member_id  bigint NOT NULL,
    kind       "char" NOT NULL,
    subject_id bigint NOT NULL,
    brand_id   bigint NOT NULL,
    purchases  bigint NOT NULL,
    first_day  date NOT NULL,
    last_day   date NOT NULL,
    PRIMARY KEY (member_id, kind, subject_id)
);

-- A5 served: the (member, subject) pairs summed by the day of their last purchase, so any
-- range of last purchases, and the days since it, is a sum over this table.
CREATE TABLE analytics_cycle (
    brand_id   bigint NOT NULL,
    kind       "char" NOT NULL,
    subject_id bigint NOT NULL,
    last_day   date NOT NULL,
    pairs      bigint NOT NULL,   -- members
    purchases  bigint NOT NULL,
    span_days  bigint NOT NULL,   -- sum of (last - first purchase day)
    repeaters  bigint NOT NULL,   -- members with 2 or more purchases
    f1         bigint NOT NULL,   -- members with 1 purchase, 2, 3–5, 6–10, over 10
    f2         bigint NOT NULL,
    f3_5       bigint NOT NULL,
    f6_10      bigint NOT NULL,
    f11        bigint NOT NULL,
    PRIMARY KEY (brand_id, kind, subject_id, last_day)
);

-- A7: verifications by day; product 0 all products; level 0 the brand, 1 a province, 2 a city
-- (cities for all products only).
CREATE TABLE analytics_verifications (
    brand_id    bigint NOT NULL,
    product_id  bigint NOT NULL,
    level       smallint NOT NULL,
    province    text NOT NULL,
    city        text NOT NULL,
    day         date NOT NULL,
    total       bigint NOT NULL,
    genuine     bigint NOT NULL,
    unconfirmed bigint NOT NULL,
    suspicious  bigint NOT NULL,
    not_genuine bigint NOT NULL,
    wrong_pin   bigint NOT NULL,
    locked      bigint NOT NULL,
    PRIMARY KEY (brand_id, product_id, level, province, city, day)
);

-- the rows written before this migration, queued for the first roll-up
INSERT INTO analytics_member_queue (member_id) SELECT id FROM members;
INSERT INTO analytics_ledger_queue (ledger_id) SELECT id FROM points_ledger;
INSERT INTO analytics_verify_queue (brand_id, day, product_id, province, city, result, n)
SELECT brand_id, (at AT TIME ZONE 'Asia/Shanghai')::date, product_id,
       coalesce(province, ''), coalesce(city, ''), result, count(*)
FROM verifications WHERE brand_id IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6;
