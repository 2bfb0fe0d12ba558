-- Anti-diversion inspection (SPEC D1–D5): scans on store shelves, one record per unit inspected,
-- summaries rolled up by a worker, diversion alerts (in the shared alerts table, kind 'diversion').

-- One scan by an inspector at a store: a unit serial (or its QR content) or a case SSCC.
CREATE TABLE inspection_scans (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id        bigint NOT NULL REFERENCES orgs (id),
    at              timestamptz NOT NULL DEFAULT now(),
    store_org_id    bigint NOT NULL REFERENCES orgs (id),
    inspector_id    bigint REFERENCES users (id),
    inspector_org_id bigint NOT NULL REFERENCES orgs (id),
    scanned         text NOT NULL,                -- canonical serial / SSCC, or the text as read
    scan_kind       text NOT NULL CHECK (scan_kind IN ('unit', 'case')),
    case_sscc       bigint,                       -- a case scan: the case inspected
    lat             double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng             double precision NOT NULL CHECK (lng BETWEEN -180 AND 180),
    note            text NOT NULL DEFAULT '',
    photo_url       text,
    client_id       text,                         -- the app's id of the scan: replays answer once
    result          text NOT NULL,                -- the worst result among its units
    units           integer NOT NULL,
    event_id        bigint NOT NULL,              -- the ObjectEvent (bizStep inspecting)
    UNIQUE (inspector_org_id, inspector_id, client_id)
);
CREATE INDEX inspection_scans_store_idx ON inspection_scans (store_org_id, at DESC);

-- One record per unit inspected (a case scan makes one per unit in it; a code that is not a
-- genuine unit makes one with code NULL). The D2/D3 log: who, where, when, what, the result and,
-- for shipped goods, the source agent (designated channel) and the documents that shipped them.
CREATE TABLE inspections (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scan_id             bigint NOT NULL REFERENCES inspection_scans (id),
    brand_id            bigint NOT NULL REFERENCES orgs (id),
    at                  timestamptz NOT NULL,
    store_org_id        bigint NOT NULL REFERENCES orgs (id),
    inspector_id        bigint REFERENCES users (id),
    code                bigint,                   -- unit code id (batch_no << 32 | index)
    serial              text NOT NULL,            -- canonical serial, or the text as read
    product_id          bigint REFERENCES products (id),
    lot                 text,
    result              text NOT NULL
                          CHECK (result IN ('in_channel', 'diverted', 'unknown_route', 'counterfeit')),
    reason              text NOT NULL,
    source_org_id       bigint REFERENCES orgs (id),  -- designated channel: the agent it went to
    designated_store_id bigint REFERENCES orgs (id),
    document_no         text,                     -- the outbound that shipped it to the agent
    store_document_no   text                      -- the outbound to its designated store
);
CREATE INDEX inspections_brand_at_idx ON inspections (brand_id, at DESC, id DESC);
CREATE INDEX inspections_store_idx ON inspections (store_org_id, at DESC);
CREATE INDEX inspections_source_idx ON inspections (source_org_id, at DESC)
    WHERE source_org_id IS NOT NULL;
CREATE INDEX inspections_inspector_idx ON inspections (inspector_id, at DESC);
CREATE INDEX inspections_product_idx ON inspections (product_id, at DESC);
CREATE INDEX inspections_scan_idx ON inspections (scan_id);
CREATE INDEX inspections_code_idx ON inspections (code) WHERE code IS NOT NULL;

-- Summaries (D4): units inspected per business day (Asia/Shanghai), store, source agent
-- (0 = none: never shipped or not genuine) and result. Rolled up by a worker from the deltas each
-- inspection writes in its own transaction; a delta row is consumed exactly once.
CREATE TABLE inspection_deltas (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id      bigint NOT NULL,
    day           date NOT NULL,
    store_org_id  bigint NOT NULL,
    source_org_id bigint NOT NULL,
    result        text NOT NULL,
    units         integer NOT NULL
);
CREATE TABLE inspection_summary (
    brand_id      bigint NOT NULL,
    day           date NOT NULL,
    store_org_id  bigint NOT NULL,
    source_org_id bigint NOT NULL,
    result        text NOT NULL,
    units         bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (brand_id, day, store_org_id, source_org_id, result)
);
CREATE INDEX inspection_summary_store_idx ON inspection_summary (store_org_id, day);
CREATE INDEX inspection_summary_source_idx ON inspection_summary (source_org_id, day);
