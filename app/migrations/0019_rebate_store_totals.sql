-- Rebate rankings (R3): the store sums of rebate_totals per month, kept by the same roll-up
-- statement, so a one-month store ranking reads the month's stores in ranking order from an
-- index (the first rows of 5,000) instead of summing 15,000 clerk rows and sorting them.

CREATE TABLE rebate_store_totals (
    brand_id   bigint NOT NULL,
    month      date NOT NULL,                     -- the first day of the claims' month (UTC+8)
    store_id   bigint NOT NULL,
    claims     bigint NOT NULL DEFAULT 0,
    amount     numeric(16, 1) NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (brand_id, month, store_id)
);
CREATE INDEX rebate_store_totals_by_amount
    ON rebate_store_totals (brand_id, month, amount DESC, claims DESC, store_id);
CREATE INDEX rebate_store_totals_by_count
    ON rebate_store_totals (brand_id, month, claims DESC, amount DESC, store_id);

INSERT INTO rebate_store_totals (brand_id, month, store_id, claims, amount)
SELECT brand_id, month, store_id, sum(claims), sum(amount)
FROM rebate_totals GROUP BY brand_id, month, store_id;
