-- Sales analytics (A1–A3) and the console's dashboard (issue 17): see app/analytics/sales.py.
--
-- A sale is a unit leaving a store's stock to a consumer: its unit_state row becoming
-- status 'sold' with disposition 'retail_sold' (the L7 sale movement, which the rebate claims
-- use too). A consumer's return (the row leaving that state) cancels it: -1 on the sale's own
-- day, store and product. The trigger below queues each such change in the transaction that
-- makes it; the roll-up folds the queue into the summary tables exactly once.

CREATE TABLE sales_queue (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id   bigint NOT NULL,
    day        date NOT NULL,            -- the sale's Asia/Shanghai day
    store_id   bigint NOT NULL,          -- the organisation that sold (held) the unit
    product_id bigint NOT NULL,
    units      integer NOT NULL          -- +1 a sale, -1 a sale returned
);

CREATE FUNCTION sales_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'sold' AND NEW.disposition = 'retail_sold' THEN
        INSERT INTO sales_queue (brand_id, day, store_id, product_id, units)
        VALUES (NEW.brand_id, (coalesce(NEW.sold_at, NEW.updated_at) AT TIME ZONE 'Asia/Shanghai')::date,
                NEW.holder_org_id, NEW.product_id, 1);
    ELSE
        INSERT INTO sales_queue (brand_id, day, store_id, product_id, units)
        VALUES (OLD.brand_id, (coalesce(OLD.sold_at, OLD.updated_at) AT TIME ZONE 'Asia/Shanghai')::date,
                OLD.holder_org_id, OLD.product_id, -1);
    END IF;
    RETURN NULL;
END $$;

-- Fires only when a row enters or leaves the sold-at-retail state (the WHEN is checked before
-- anything is queued, so shipping and receiving pay one comparison per row, nothing more).
CREATE TRIGGER unit_state_sales AFTER UPDATE OF status, disposition ON unit_state
FOR EACH ROW
WHEN ((OLD.status = 'sold' AND OLD.disposition = 'retail_sold')
      IS DISTINCT FROM (NEW.status = 'sold' AND NEW.disposition = 'retail_sold'))
EXECUTE FUNCTION sales_enqueue();

-- The summaries (net units): per day and per month (the first day), by store and product, by
-- store, and per day by product (the brand-wide product view). A period of days reads its whole
-- months from the month tables and the days at either end from the day tables.
CREATE TABLE sales_daily (
    brand_id   bigint NOT NULL,
    day        date NOT NULL,
    store_id   bigint NOT NULL,
    product_id bigint NOT NULL,
    units      bigint NOT NULL,
    PRIMARY KEY (brand_id, day, store_id, product_id)
);
CREATE INDEX sales_daily_product ON sales_daily (brand_id, product_id, day) INCLUDE (store_id, units);

CREATE TABLE sales_monthly (
    brand_id   bigint NOT NULL,
    month      date NOT NULL,
    store_id   bigint NOT NULL,
    product_id bigint NOT NULL,
    units      bigint NOT NULL,
    PRIMARY KEY (brand_id, month, store_id, product_id)
);
CREATE INDEX sales_monthly_product ON sales_monthly (brand_id, product_id, month)
    INCLUDE (store_id, units);

CREATE TABLE sales_store_daily (
    brand_id bigint NOT NULL,
    day      date NOT NULL,
    store_id bigint NOT NULL,
    units    bigint NOT NULL,
    PRIMARY KEY (brand_id, day, store_id) INCLUDE (units)
);

CREATE TABLE sales_store_monthly (
    brand_id bigint NOT NULL,
    month    date NOT NULL,
    store_id bigint NOT NULL,
    units    bigint NOT NULL,
    PRIMARY KEY (brand_id, month, store_id) INCLUDE (units)
);

CREATE TABLE sales_product_daily (
    brand_id   bigint NOT NULL,
    day        date NOT NULL,
    product_id bigint NOT NULL,
    units      bigint NOT NULL,
    PRIMARY KEY (brand_id, day, product_id) INCLUDE (units)
);

-- The dashboard's closed days (Asia/Shanghai) of the brand-wide figures, recounted from their
-- indexed sources by the worker (today is counted live).
CREATE TABLE dashboard_days (
    brand_id      bigint NOT NULL,
    day           date NOT NULL,
    verifications bigint NOT NULL,
    counterfeits  bigint NOT NULL,
    activations   bigint NOT NULL,
    counted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (brand_id, day)
);

-- shipments per day: confirmed outbound documents of a brand
CREATE INDEX documents_confirmed_idx ON documents (brand_id, confirmed_at)
    WHERE status = 'confirmed';
CREATE INDEX alerts_brand_kind_idx ON alerts (brand_id, kind, at);

-- the sales made before this migration, queued for the first roll-up
INSERT INTO sales_queue (brand_id, day, store_id, product_id, units)
SELECT brand_id, (coalesce(sold_at, updated_at) AT TIME ZONE 'Asia/Shanghai')::date, holder_org_id, product_id, 1
FROM unit_state WHERE status = 'sold' AND disposition = 'retail_sold';
