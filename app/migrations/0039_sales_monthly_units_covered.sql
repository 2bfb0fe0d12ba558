-- Sales analytics (issue 17): the store ranking of one product over whole months reads the
-- product's cells of those months (a range of this key: brand, product, month, store) from the
-- primary key alone, their units included, instead of one heap page per cell (~1,000 pages for
-- the 2,000 stores of a month: the cells of a product's month are written over many roll-ups,
-- far apart in the heap). The roll-up's updates of these cells are no longer HOT (a new index
-- entry per cell changed); measured in bench/RESULTS.md (issue 17, 2026-12-02).
ALTER TABLE sales_monthly DROP CONSTRAINT sales_monthly_pkey,
    ADD PRIMARY KEY (brand_id, product_id, month, store_id) INCLUDE (units);
