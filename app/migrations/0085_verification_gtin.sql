-- The GTIN a Digital Link named over a genuine serial of another product (`wrong_product`):
-- the brand owning that GTIN is alerted too, not only the serial's (its product is being
-- faked with another brand's code). NULL on every other record (the hot path writes none).
ALTER TABLE verifications ADD COLUMN gtin text;
