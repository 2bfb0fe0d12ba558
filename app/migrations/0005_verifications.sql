-- Consumer verification records and alerts (SPEC V3, V4; alerts are shared with D5, L9).

-- Every verification, written behind in batches by a worker (or directly when Redis is down).
-- Partitioned by month of the verification time; code-keyed reads use (code_id, at).
CREATE TABLE verifications (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    at          timestamptz NOT NULL,
    -- idempotency of the write-behind: a record flushed twice is stored once
    record_key  uuid NOT NULL,
    code_id     bigint,            -- batch_no << 32 | index; NULL for malformed or forged input
    serial      text,              -- as scanned (truncated), for forged and malformed ones
    brand_id    bigint,
    product_id  bigint,
    result      text NOT NULL,
    reason      text NOT NULL,
    queries     integer NOT NULL DEFAULT 0,
    pin_given   boolean NOT NULL DEFAULT false,
    client_ip   inet,
    client_id   text,
    user_agent  text,
    province    text,
    city        text,
    lat         double precision,
    lng         double precision,
    PRIMARY KEY (at, id),
    UNIQUE (at, record_key)
) PARTITION BY RANGE (at);
CREATE TABLE verifications_default PARTITION OF verifications DEFAULT;
CREATE INDEX verifications_code_idx ON verifications (code_id, at);
CREATE INDEX verifications_brand_idx ON verifications (brand_id, at);

CREATE TABLE alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    brand_id        bigint NOT NULL REFERENCES orgs (id),
    org_id          bigint NOT NULL REFERENCES orgs (id),  -- who sees it (its subtree's users)
    kind            text NOT NULL,    -- fake, repeat, region_jump, never_shipped, diversion, low_stock
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    code_id         bigint,
    serial          text,
    message         text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}',
    -- one open alert per (kind, subject): repeated triggers update it instead of piling up
    dedup_key       text NOT NULL,
    occurrences     integer NOT NULL DEFAULT 1,
    last_at         timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by bigint REFERENCES users (id)
);
CREATE UNIQUE INDEX alerts_open_dedup_idx ON alerts (dedup_key) WHERE acknowledged_at IS NULL;
CREATE INDEX alerts_org_idx ON alerts (org_id, at DESC);

-- Unit code ids (batch_no << 32 | index) are stored as bigint: keep batch numbers below 2^31 so
-- every code id of every batch fits (2 billion batches is far beyond any brand's needs).
ALTER SEQUENCE code_batch_no_seq MAXVALUE 2147483647;
