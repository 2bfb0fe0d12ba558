-- Product numbers and category names are kept in Unicode NFC (app.catalog.schemas.nfc: the API
-- and the ERP import normalise what they are sent), but the rows stored before kept the form
-- they were typed in: one typed decomposed (NFD, as on a Mac: "E" and U+0301 for "É") was then
-- found by nothing sent in NFC — a re-import of yesterday's file met its category as
-- unknown_category and made a second product of the "same" number, an order import found no
-- such product. This stores them in NFC, but leaves a row as it is (for the brand to rename)
-- where that would collide on the column's unique key, (org_id, product_no) or (org_id, name):
-- another row of its organisation holds the NFC form already, or another row not in NFC yet
-- has the same NFC form (both left); or where the NFC form is over the column's length limit
-- (NFC lengthens a few characters, U+0958 into two).
WITH candidates AS (
    SELECT id, org_id, normalize(product_no, NFC) AS nfc
      FROM products
     WHERE NOT (product_no IS NFC NORMALIZED)
)
UPDATE products p
   SET product_no = c.nfc
  FROM candidates c
 WHERE p.id = c.id
   AND length(c.nfc) <= 64
   AND NOT EXISTS (SELECT 1 FROM products o WHERE o.org_id = c.org_id AND o.product_no = c.nfc)
   AND NOT EXISTS (SELECT 1 FROM candidates d
                    WHERE d.org_id = c.org_id AND d.nfc = c.nfc AND d.id <> c.id);

WITH candidates AS (
    SELECT id, org_id, normalize(name, NFC) AS nfc
      FROM categories
     WHERE NOT (name IS NFC NORMALIZED)
)
UPDATE categories k
   SET name = c.nfc
  FROM candidates c
 WHERE k.id = c.id
   AND length(c.nfc) <= 100
   AND NOT EXISTS (SELECT 1 FROM categories o WHERE o.org_id = c.org_id AND o.name = c.nfc)
   AND NOT EXISTS (SELECT 1 FROM candidates d
                    WHERE d.org_id = c.org_id AND d.nfc = c.nfc AND d.id <> c.id);
