-- ERP master data and the ERP export of confirmed documents (SPEC I1, L1; issue 19 item 3).

-- Products and staff carry the ERP's code of them (物料编码, 工号), unique within the brand whose
-- ERP it is (erp_brand_id: a product or user never leaves its brand); organisations have had
-- theirs since 0001. Set by the master-data import (app/erp/masterdata.py).
ALTER TABLE products
    ADD COLUMN erp_brand_id bigint REFERENCES orgs (id),
    ADD COLUMN erp_code     text CHECK (erp_code ~ '^[A-Za-z0-9_.-]{1,64}$'),
    ADD CONSTRAINT products_erp_code_pair CHECK ((erp_code IS NULL) = (erp_brand_id IS NULL));
CREATE UNIQUE INDEX products_erp_code_uq ON products (erp_brand_id, erp_code)
    WHERE erp_code IS NOT NULL;

ALTER TABLE users
    ADD COLUMN erp_brand_id bigint REFERENCES orgs (id),
    ADD COLUMN erp_code     text CHECK (erp_code ~ '^[A-Za-z0-9_.-]{1,64}$'),
    ADD CONSTRAINT users_erp_code_pair CHECK ((erp_code IS NULL) = (erp_brand_id IS NULL));
CREATE UNIQUE INDEX users_erp_code_uq ON users (erp_brand_id, erp_code)
    WHERE erp_code IS NOT NULL;

-- The export's order (app/erp/export.py): the transaction that confirmed a document. A page
-- reads documents confirmed by transactions older than every transaction still running
-- (pg_snapshot_xmin), in (confirm_xid, id) order, so a confirmation that commits late can never
-- land behind a cursor already handed out. Documents confirmed before this migration share its
-- transaction id and follow each other by id.
ALTER TABLE documents ADD COLUMN confirm_xid xid8;
UPDATE documents SET confirm_xid = pg_current_xact_id() WHERE status = 'confirmed';

CREATE FUNCTION documents_confirm_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.confirm_xid := pg_current_xact_id();
    RETURN NEW;
END $$;
CREATE TRIGGER documents_confirm_xid_insert BEFORE INSERT ON documents FOR EACH ROW
    WHEN (NEW.status = 'confirmed') EXECUTE FUNCTION documents_confirm_xid();
CREATE TRIGGER documents_confirm_xid_update BEFORE UPDATE OF status ON documents FOR EACH ROW
    WHEN (NEW.status = 'confirmed' AND OLD.status <> 'confirmed')
    EXECUTE FUNCTION documents_confirm_xid();
CREATE INDEX documents_export_idx ON documents (brand_id, confirm_xid, id)
    WHERE confirm_xid IS NOT NULL;
