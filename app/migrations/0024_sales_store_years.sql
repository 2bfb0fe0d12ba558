-- Sales analytics (issue 17), faster roll-up and answers: see app/analytics/sales.py.
--
-- 1. The stores' day sums move from sales_store_daily (one row per store and day, ~0.9 upserts
--    per sale folded) to sales_store_years: one row per store and year holding the running
--    total of the year day by day (cum[n] = net units of days 1..n of the year, n = 1..366; in
--    a year of 365 days cum[366] = cum[365]). Any period of days within a year is then
--    cum[last] - cum[first - 1] for each store: one row per store and year whatever the period.
-- 2. sales_product_monthly: net units per product and month (the brand-wide series by month).
-- 3. No summary index INCLUDEs units, and the tables leave room on their pages, so adding to a
--    cell that exists is a HOT update (no new index entries).

CREATE TABLE sales_store_years (
    brand_id bigint NOT NULL,
    year     integer NOT NULL,
    store_id bigint NOT NULL,
    cum      integer[] NOT NULL,            -- 366 running totals, day 1 of the year first
    PRIMARY KEY (brand_id, year, store_id)
) WITH (fillfactor = 50);

-- Element-wise sum of two running-total arrays of the same length (the roll-up adds a batch's).
-- Overflow raises "integer out of range": the batch's rows are dead-lettered, nothing is lost.
CREATE FUNCTION sales_cum_add(a integer[], b integer[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT array_agg(x + y ORDER BY n) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, n)
$$;

-- The running totals (366) of the units of a year's days ``doys`` (ascending, 1..366, distinct).
CREATE FUNCTION sales_cum_of(doys integer[], units bigint[]) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    cum integer[] := '{}';
    run integer := 0;
    prev integer := 1;  -- the first position not filled yet
BEGIN
    FOR j IN 1..coalesce(array_length(doys, 1), 0) LOOP
        IF doys[j] > prev THEN
            cum := cum || array_fill(run, ARRAY[doys[j] - prev]);
            prev := doys[j];
        END IF;
        run := run + units[j];
    END LOOP;
    RETURN cum || array_fill(run, ARRAY[367 - prev]);
END $$;

INSERT INTO sales_store_years (brand_id, year, store_id, cum)
SELECT brand_id, year, store_id,
       sales_cum_of(array_agg(doy ORDER BY doy), array_agg(units ORDER BY doy))
FROM (SELECT brand_id, extract(year FROM day)::integer AS year, store_id,
             extract(doy FROM day)::integer AS doy, units
      FROM sales_store_daily) d
GROUP BY brand_id, year, store_id;

DROP TABLE sales_store_daily;

CREATE TABLE sales_product_monthly (
    brand_id   bigint NOT NULL,
    month      date NOT NULL,
    product_id bigint NOT NULL,
    units      bigint NOT NULL,
    PRIMARY KEY (brand_id, month, product_id)
) WITH (fillfactor = 70);
INSERT INTO sales_product_monthly (brand_id, month, product_id, units)
SELECT brand_id, date_trunc('month', day)::date, product_id, sum(units)
FROM sales_product_daily GROUP BY 1, 2, 3;

-- 4. sales_daily (a row per day, store and product: as many rows as sales, nearly) goes; its
--    days are kept in sales_monthly instead, as running totals of the month's days: dK = net
--    units of days 1..K of the month (for K past the month's end, the month's total). The
--    units of days a..b of a month are d<b> - d<a-1>: a product's store sums over any period
--    read one row per store and month. Keyed product first (a product's or a category's cells
--    of a period are ranges of the key), with no second index kept up by every sale.
ALTER TABLE sales_monthly
    ADD COLUMN d1 integer NOT NULL DEFAULT 0,
    ADD COLUMN d2 integer NOT NULL DEFAULT 0,
    ADD COLUMN d3 integer NOT NULL DEFAULT 0,
    ADD COLUMN d4 integer NOT NULL DEFAULT 0,
    ADD COLUMN d5 integer NOT NULL DEFAULT 0,
    ADD COLUMN d6 integer NOT NULL DEFAULT 0,
    ADD COLUMN d7 integer NOT NULL DEFAULT 0,
    ADD COLUMN d8 integer NOT NULL DEFAULT 0,
    ADD COLUMN d9 integer NOT NULL DEFAULT 0,
    ADD COLUMN d10 integer NOT NULL DEFAULT 0,
    ADD COLUMN d11 integer NOT NULL DEFAULT 0,
    ADD COLUMN d12 integer NOT NULL DEFAULT 0,
    ADD COLUMN d13 integer NOT NULL DEFAULT 0,
    ADD COLUMN d14 integer NOT NULL DEFAULT 0,
    ADD COLUMN d15 integer NOT NULL DEFAULT 0,
    ADD COLUMN d16 integer NOT NULL DEFAULT 0,
    ADD COLUMN d17 integer NOT NULL DEFAULT 0,
    ADD COLUMN d18 integer NOT NULL DEFAULT 0,
    ADD COLUMN d19 integer NOT NULL DEFAULT 0,
    ADD COLUMN d20 integer NOT NULL DEFAULT 0,
    ADD COLUMN d21 integer NOT NULL DEFAULT 0,
    ADD COLUMN d22 integer NOT NULL DEFAULT 0,
    ADD COLUMN d23 integer NOT NULL DEFAULT 0,
    ADD COLUMN d24 integer NOT NULL DEFAULT 0,
    ADD COLUMN d25 integer NOT NULL DEFAULT 0,
    ADD COLUMN d26 integer NOT NULL DEFAULT 0,
    ADD COLUMN d27 integer NOT NULL DEFAULT 0,
    ADD COLUMN d28 integer NOT NULL DEFAULT 0,
    ADD COLUMN d29 integer NOT NULL DEFAULT 0,
    ADD COLUMN d30 integer NOT NULL DEFAULT 0,
    ADD COLUMN d31 integer NOT NULL DEFAULT 0;
UPDATE sales_monthly m SET
    d1 = x.d1,
    d2 = x.d2,
    d3 = x.d3,
    d4 = x.d4,
    d5 = x.d5,
    d6 = x.d6,
    d7 = x.d7,
    d8 = x.d8,
    d9 = x.d9,
    d10 = x.d10,
    d11 = x.d11,
    d12 = x.d12,
    d13 = x.d13,
    d14 = x.d14,
    d15 = x.d15,
    d16 = x.d16,
    d17 = x.d17,
    d18 = x.d18,
    d19 = x.d19,
    d20 = x.d20,
    d21 = x.d21,
    d22 = x.d22,
    d23 = x.d23,
    d24 = x.d24,
    d25 = x.d25,
    d26 = x.d26,
    d27 = x.d27,
    d28 = x.d28,
    d29 = x.d29,
    d30 = x.d30,
    d31 = x.d31
FROM (SELECT brand_id, product_id, date_trunc('month', day)::date AS month, store_id,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 1), 0)::integer AS d1,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 2), 0)::integer AS d2,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 3), 0)::integer AS d3,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 4), 0)::integer AS d4,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 5), 0)::integer AS d5,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 6), 0)::integer AS d6,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 7), 0)::integer AS d7,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 8), 0)::integer AS d8,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 9), 0)::integer AS d9,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 10), 0)::integer AS d10,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 11), 0)::integer AS d11,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 12), 0)::integer AS d12,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 13), 0)::integer AS d13,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 14), 0)::integer AS d14,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 15), 0)::integer AS d15,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 16), 0)::integer AS d16,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 17), 0)::integer AS d17,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 18), 0)::integer AS d18,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 19), 0)::integer AS d19,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 20), 0)::integer AS d20,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 21), 0)::integer AS d21,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 22), 0)::integer AS d22,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 23), 0)::integer AS d23,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 24), 0)::integer AS d24,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 25), 0)::integer AS d25,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 26), 0)::integer AS d26,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 27), 0)::integer AS d27,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 28), 0)::integer AS d28,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 29), 0)::integer AS d29,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 30), 0)::integer AS d30,
           coalesce(sum(units) FILTER (WHERE extract(day FROM day) <= 31), 0)::integer AS d31
      FROM sales_daily GROUP BY 1, 2, 3, 4) x
WHERE m.brand_id = x.brand_id AND m.product_id = x.product_id AND m.month = x.month
  AND m.store_id = x.store_id;
DROP TABLE sales_daily;
DROP INDEX sales_monthly_product;
ALTER TABLE sales_monthly DROP CONSTRAINT sales_monthly_pkey,
    ADD PRIMARY KEY (brand_id, product_id, month, store_id);
ALTER TABLE sales_monthly SET (fillfactor = 70);
ALTER TABLE sales_store_monthly DROP CONSTRAINT sales_store_monthly_pkey,
    ADD PRIMARY KEY (brand_id, month, store_id);
ALTER TABLE sales_store_monthly SET (fillfactor = 70);
ALTER TABLE sales_product_daily DROP CONSTRAINT sales_product_daily_pkey,
    ADD PRIMARY KEY (brand_id, day, product_id);
ALTER TABLE sales_product_daily SET (fillfactor = 70);
