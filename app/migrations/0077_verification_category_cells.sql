-- A7 reads a category as its products' cells (app/analytics/people.py): the cells kept per
-- category (product_id = minus the category's id) stayed with the category a product had when
-- it was verified, and a product moved to another category left its verifications behind (a
-- probe; the recount called them drift). They are no longer written or read.
DELETE FROM analytics_verifications WHERE product_id < 0;
DELETE FROM analytics_verifications_m WHERE product_id < 0;
