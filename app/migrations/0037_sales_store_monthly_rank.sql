-- Sales analytics (issue 17): the store ranking of one whole month, brand-wide, reads the first
-- stores in ranking order from this index (units descending, then the store) instead of sorting
-- every store's cell of the month on each request (app/analytics/sales.py, ``_RANKING_MONTH``).
-- The roll-up's updates of these cells are no longer HOT: ~2,000 cells a month per brand, each
-- updated once per roll-up batch, a cost too small to weigh against the answers'.
CREATE INDEX sales_store_monthly_rank ON sales_store_monthly (brand_id, month, units DESC, store_id);
