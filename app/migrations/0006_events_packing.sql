-- The event log (SPEC L, EPCIS 2.0), code state projections and the packing line (P1–P6).
--
-- Unit codes are keyed by their 64-bit id (batch_no << 32 | index), cases by their SSCC-18 read
-- as a number (18 digits fit a bigint). Code-keyed tables and queries always carry the code, so
-- they can be distributed by it (Citus) when one server is not enough.

-- Every state change in the product is an event here first. Rows are never updated or deleted:
-- a correction is a new event whose error_declaration names the events it corrects.
-- Range-partitioned by id (ids grow with time); app.events.ensure_partitions adds the next
-- partition before the current one fills.
CREATE SEQUENCE events_id_seq AS bigint MINVALUE 1;
CREATE TABLE events (
    id               bigint NOT NULL,
    event_uuid       uuid NOT NULL,                -- EPCIS eventID urn:uuid:…
    brand_id         bigint NOT NULL,
    event_type       text NOT NULL CHECK (event_type IN ('ObjectEvent', 'AggregationEvent',
                         'TransactionEvent', 'TransformationEvent', 'AssociationEvent')),
    action           text NOT NULL CHECK (action IN ('ADD', 'OBSERVE', 'DELETE')),
    biz_step         text NOT NULL,
    disposition      text,
    event_time       timestamptz NOT NULL,
    tz_offset        text NOT NULL CHECK (tz_offset ~ '^[+-][0-9]{2}:[0-9]{2}$'),
    record_time      timestamptz NOT NULL DEFAULT now(),
    read_point       text,                         -- e.g. the packing line
    biz_location     bigint,                       -- organisation id
    source_org       bigint,
    destination_org  bigint,
    biz_transactions jsonb,                        -- [{"type": "po", "id": "…"}]
    parent_kind      "char" CHECK (parent_kind IN ('u', 'c')),
    parent_code      bigint,                       -- AggregationEvent parentID (a case: SSCC)
    child_count      integer NOT NULL DEFAULT 0,   -- epcList / childEPCs, listed in event_codes
    recorded_by      bigint,
    client_event_id  text,
    details          jsonb,                        -- product, lot, production date, reason, …
    error_declaration jsonb,                       -- {declarationTime, reason, correctiveEventIDs}
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE TABLE events_p0 PARTITION OF events FOR VALUES FROM (1) TO (100000000);
CREATE INDEX events_brand_time_idx ON events (brand_id, event_time);
CREATE INDEX events_location_idx ON events (biz_location, event_time);

-- The codes of each event (epcList, childEPCs and parentID): the code-keyed access path.
-- kind 'u' = unit code id, 'c' = case SSCC. Hash-partitioned by code.
CREATE TABLE event_codes (
    code     bigint NOT NULL,
    kind     "char" NOT NULL CHECK (kind IN ('u', 'c')),
    event_id bigint NOT NULL,
    PRIMARY KEY (code, kind, event_id)
) PARTITION BY HASH (code);
CREATE TABLE event_codes_0 PARTITION OF event_codes FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE event_codes_1 PARTITION OF event_codes FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE event_codes_2 PARTITION OF event_codes FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE event_codes_3 PARTITION OF event_codes FOR VALUES WITH (MODULUS 4, REMAINDER 3);

-- Current state of each activated unit: a projection of the events, written in the same
-- transaction. Issued-but-never-activated codes have no row (the batch says they exist).
CREATE TABLE unit_state (
    code            bigint PRIMARY KEY,            -- batch_no << 32 | index
    brand_id        bigint NOT NULL,
    product_id      bigint NOT NULL,
    lot             text NOT NULL,
    production_date date NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'void', 'sold', 'destroyed')),
    disposition     text NOT NULL,
    holder_org_id   bigint NOT NULL,               -- who holds it now (owning/possessing party)
    parent_sscc     bigint,                        -- the case it is in
    channel_org_id  bigint,                        -- designated sales channel (logistics)
    line_id         bigint,
    activated_at    timestamptz NOT NULL,
    shipped_at      timestamptz,                   -- first left the factory (logistics)
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_event_id   bigint NOT NULL
);
CREATE INDEX unit_state_parent_idx ON unit_state (parent_sscc) WHERE parent_sscc IS NOT NULL;

-- Current state of each case / pallet that was ever packed.
CREATE TABLE case_state (
    sscc            bigint PRIMARY KEY,
    brand_id        bigint NOT NULL,
    case_batch_id   bigint NOT NULL REFERENCES case_batches (id),
    level           text NOT NULL CHECK (level IN ('inner', 'master', 'pallet')),
    product_id      bigint,
    lot             text,
    status          text NOT NULL CHECK (status IN ('active', 'void', 'destroyed')),
    disposition     text NOT NULL,
    holder_org_id   bigint NOT NULL,
    parent_sscc     bigint,
    channel_org_id  bigint,
    line_id         bigint,
    packed_at       timestamptz NOT NULL,
    shipped_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_event_id   bigint NOT NULL
);
CREATE INDEX case_state_parent_idx ON case_state (parent_sscc) WHERE parent_sscc IS NOT NULL;

-- Packing lines and their production context (P1).
CREATE TABLE lines (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          bigint NOT NULL REFERENCES orgs (id),
    code            text NOT NULL CHECK (code ~ '^[A-Za-z0-9._-]{1,32}$'),
    product_id      bigint REFERENCES products (id),
    lot             text,
    production_date date,
    updated_by      bigint REFERENCES users (id),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, code)
);

-- Packing rules per product and level (P3): children per container; strict = reject mismatches.
CREATE TABLE packing_rules (
    product_id bigint NOT NULL REFERENCES products (id),
    level      text NOT NULL CHECK (level IN ('inner', 'master', 'pallet')),
    quantity   integer NOT NULL CHECK (quantity BETWEEN 1 AND 100000),
    strict     boolean NOT NULL DEFAULT true,
    PRIMARY KEY (product_id, level)
);

-- Idempotency of scanner uploads (P6): one row per accepted client event id.
CREATE TABLE scan_receipts (
    org_id          bigint NOT NULL,
    client_event_id text NOT NULL,
    event_id        bigint,
    code            bigint NOT NULL,
    parent_sscc     bigint,
    warning         text,
    PRIMARY KEY (org_id, client_event_id)
);
