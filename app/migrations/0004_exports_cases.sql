-- Printer files (SPEC C3), SSCC case-code batches (C4), export jobs (C6).

-- A printer's RSA public key (PEM) for wrapping export keys; public, so it may live here.
ALTER TABLE orgs ADD COLUMN public_key_pem text;

-- SSCC serial references come from this sequence, allocated in contiguous blocks.
CREATE SEQUENCE sscc_serial_ref_seq AS bigint MINVALUE 1;

CREATE TABLE case_batches (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id        bigint NOT NULL REFERENCES orgs (id),
    printer_id      bigint NOT NULL REFERENCES orgs (id),
    level           text NOT NULL CHECK (level IN ('inner', 'master', 'pallet')),
    extension_digit smallint NOT NULL CHECK (extension_digit BETWEEN 0 AND 9),
    company_prefix  text NOT NULL CHECK (company_prefix ~ '^[0-9]{6,12}$'),
    first_ref       bigint NOT NULL CHECK (first_ref >= 1),
    size            bigint NOT NULL CHECK (size BETWEEN 1 AND 10000000),
    state           text NOT NULL DEFAULT 'issued' CHECK (state IN ('issued', 'exported', 'void')),
    note            text NOT NULL DEFAULT '',
    request_key     text,
    created_by      bigint REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, request_key)
);
CREATE INDEX case_batches_brand_idx ON case_batches (brand_id, created_at DESC);

-- One export = one job: the files for a range of a unit batch (outer + inner) or a case batch.
-- Data keys are never stored: they are derived from the master key and the export id, and only
-- their wrapped forms (passphrase/RSA, not secret) are kept here.
CREATE TABLE code_exports (
    id            uuid PRIMARY KEY,
    brand_id      bigint NOT NULL REFERENCES orgs (id),
    batch_no      bigint REFERENCES code_batches (batch_no),
    case_batch_id bigint REFERENCES case_batches (id),
    range_start   bigint NOT NULL CHECK (range_start >= 0),
    range_end     bigint NOT NULL,
    key_version   integer NOT NULL,
    url_prefix    text NOT NULL,
    -- per file: {"outer": {"printer_id", "wrap"}, "inner": {...}} (a case export has "cases")
    parts         jsonb NOT NULL,
    state         text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed')),
    progress      bigint NOT NULL DEFAULT 0,
    -- per file after the run: {"outer": {"bytes", "plain_bytes", "plain_sha256"}, ...}
    files         jsonb NOT NULL DEFAULT '{}',
    error         text,
    attempts      integer NOT NULL DEFAULT 0,
    created_by    bigint REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    CHECK ((batch_no IS NULL) <> (case_batch_id IS NULL)),
    CHECK (range_end > range_start)
);
CREATE INDEX code_exports_batch_idx ON code_exports (batch_no);
CREATE INDEX code_exports_brand_idx ON code_exports (brand_id, created_at DESC);
