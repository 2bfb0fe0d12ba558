-- Code batches (SPEC C2): one row per batch, never one row per code.
-- A unit code's 64-bit id is batch_no << 32 | index; a batch holds indexes 0 .. size-1.

CREATE SEQUENCE code_batch_no_seq AS bigint MINVALUE 1 MAXVALUE 4294967295;

CREATE TABLE code_batches (
    batch_no     bigint PRIMARY KEY CHECK (batch_no BETWEEN 1 AND 4294967295),
    brand_id     bigint NOT NULL REFERENCES orgs (id),
    printer_id   bigint NOT NULL REFERENCES orgs (id),
    product_id   bigint REFERENCES products (id),
    size         bigint NOT NULL CHECK (size BETWEEN 1 AND 4294967296),
    key_version  integer NOT NULL CHECK (key_version BETWEEN 1 AND 65535),
    state        text NOT NULL DEFAULT 'issued'
                   CHECK (state IN ('issued', 'exported', 'active', 'void')),
    note         text NOT NULL DEFAULT '',
    -- the client's idempotency key: retrying a create returns the same batch
    request_key  text,
    created_by   bigint REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    voided_at    timestamptz,
    voided_by    bigint REFERENCES users (id),
    void_reason  text,
    UNIQUE (brand_id, request_key)
);
CREATE INDEX code_batches_brand_idx ON code_batches (brand_id, created_at DESC);
CREATE INDEX code_batches_printer_idx ON code_batches (printer_id);
