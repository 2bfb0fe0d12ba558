-- The all-zero GTIN is no GTIN (probe): GS1 allocates none, but its check digit is right, and
-- an ERP writing "no barcode" as zeros stored it on a product; the Rust core now refuses it
-- (normalize_gtin: 400 invalid_gtin), so a Digital Link built from it would fail. Such a
-- product has no GTIN.
UPDATE products SET gtin = NULL WHERE gtin = '00000000000000';
