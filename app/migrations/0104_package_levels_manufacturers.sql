-- What the seed's in/out documents and stock queries list beside units and packages (五.1.3):
-- 包装类型 (package type) and 生产商 (manufacturer) per document line, and 包装数量 (packages) per
-- stock row.
--
-- A document line's package_level: the level of the packages it moved (its outermost cases,
-- app.logistics.movements._packages), 'mixed' when they were of several levels, NULL when it moved
-- none (loose units). Its manufacturer_id: the organisation whose packing line packed its units
-- (lines.org_id of the units' line); of several, the one that packed most of them. Both are
-- written on confirmation, as units and packages are.
ALTER TABLE document_lines
    ADD COLUMN package_level   text CHECK (package_level IN ('inner', 'master', 'pallet', 'mixed')),
    ADD COLUMN manufacturer_id bigint REFERENCES orgs (id);

-- Lines confirmed before: the manufacturer of their product and lot (the packing line's
-- organisation that packed most of its units: one full pass over unit_state) ...
UPDATE document_lines l SET manufacturer_id = m.org_id
FROM (SELECT DISTINCT ON (u.product_id, u.lot) u.product_id, u.lot, n.org_id
        FROM unit_state u JOIN lines n ON n.id = u.line_id
       GROUP BY u.product_id, u.lot, n.org_id
       ORDER BY u.product_id, u.lot, count(*) DESC, n.org_id) m
WHERE m.product_id = l.product_id AND m.lot = l.lot;

-- ... and the level of their packages where the cases the document scanned (a receipt that
-- scanned none: those its shipment scanned) of the line's product and lot are all of one level;
-- otherwise it is not known now (the cases may have been repacked since) and stays NULL.
UPDATE document_lines l SET package_level = k.level
FROM (SELECT d.id AS document_id, c.product_id, c.lot, min(c.level) AS level
        FROM (SELECT s.id, CASE WHEN EXISTS (SELECT 1 FROM document_items o
                                              WHERE o.document_id = s.id)
                                THEN s.id ELSE s.shipment_id END AS scanned_in
                FROM documents s WHERE s.status = 'confirmed') d
        JOIN document_items i ON i.document_id = d.scanned_in AND i.kind = 'c'
        JOIN case_state c ON c.sscc = i.code
       GROUP BY d.id, c.product_id, c.lot
      HAVING count(DISTINCT c.level) = 1) k
WHERE k.document_id = l.document_id AND k.product_id = l.product_id AND k.lot = l.lot
  AND l.packages > 0;

-- The packages on hand of a stock row (app.logistics.center.packages_on_hand): the outermost
-- active cases an organisation holds, per product and lot. Shipping a case changes neither
-- its holder nor (packed with its pallet) its parent, so its update stays HOT (0010).
CREATE INDEX case_state_held_idx ON case_state (holder_org_id, product_id, lot)
    WHERE parent_sscc IS NULL AND status = 'active';
