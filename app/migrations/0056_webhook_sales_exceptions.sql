-- Webhooks for two more kinds of confirmed document (probe X: an ERP that books sales had to
-- poll for them): a store's sale (POST /sales) -> sale.confirmed, an exception outbound once
-- approved (gift, sample, destruction: goods leaving the chain) -> exception.confirmed. The
-- event's data gains the document's reason (an exception's; null for the others).
CREATE OR REPLACE FUNCTION webhook_documents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT d.brand_id, k.kind, array_remove(ARRAY[d.org_id, d.counterparty_id], NULL),
           jsonb_build_object(
               'document_id', d.id, 'doc_no', d.doc_no, 'kind', d.kind,
               'org_id', d.org_id, 'org_erp_code', o.erp_code,
               'counterparty_id', d.counterparty_id, 'counterparty_erp_code', c.erp_code,
               'order_id', d.order_id, 'shipment_id', d.shipment_id, 'doc_date', d.doc_date,
               'confirmed_at', d.confirmed_at, 'discrepancies', d.discrepancies,
               'reason', d.reason,
               'lines', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                     'product_id', l.product_id, 'lot', l.lot,
                                     'units', l.units, 'packages', l.packages)
                                     ORDER BY l.product_id, l.lot)
                                    FROM document_lines l WHERE l.document_id = d.id), '[]'))
      FROM new_docs d
      JOIN (VALUES ('outbound', 'shipment.confirmed'), ('inbound', 'receipt.confirmed'),
                   ('factory_inbound', 'receipt.confirmed'), ('return', 'return.confirmed'),
                   ('sale', 'sale.confirmed'), ('exception', 'exception.confirmed'))
           AS k (doc_kind, kind) ON k.doc_kind = d.kind
      JOIN orgs o ON o.id = d.org_id
      LEFT JOIN orgs c ON c.id = d.counterparty_id
     WHERE d.status = 'confirmed'
       AND NOT EXISTS (SELECT 1 FROM old_docs x WHERE x.id = d.id AND x.status = 'confirmed')
       AND webhook_wanted(d.brand_id, k.kind);
    RETURN NULL;
END $$;
