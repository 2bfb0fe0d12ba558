-- EPCIS 2.0 capture and query (issue 19 item 1, SPEC I3). Tracecode's own events stay in
-- events / event_codes and are served through the query interface as they are; these tables
-- hold what partners capture: one row per capture job, one per captured event (kept exactly as
-- sent, with the fields the query filters on), and the identifiers each event names.

CREATE TABLE epcis_captures (
    id           uuid PRIMARY KEY,
    brand_id     bigint NOT NULL REFERENCES orgs (id),
    org_id       bigint NOT NULL REFERENCES orgs (id),   -- the capturer's organisation (scope)
    user_id      bigint REFERENCES users (id),
    api_key_id   bigint REFERENCES api_keys (id),
    state        text NOT NULL CHECK (state IN ('pending', 'running', 'success', 'failed')),
    event_count  integer NOT NULL CHECK (event_count >= 0),
    stored       integer,          -- events written (the others were already there: same eventID)
    body         bytea,            -- the document until it has been applied or refused
    errors       jsonb,            -- why it was refused (the EPCIS exception and its detail)
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX epcis_captures_org_idx ON epcis_captures (org_id, created_at);

CREATE TABLE epcis_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id         bigint NOT NULL REFERENCES orgs (id),
    org_id           bigint NOT NULL REFERENCES orgs (id),
    capture_id       uuid NOT NULL REFERENCES epcis_captures (id),
    event_id         text NOT NULL,          -- as sent, or the CBV 2.0 event hash
    event_type       text NOT NULL,
    action           text,
    biz_step         text,                   -- CBV bare word, or the URI as sent
    disposition      text,
    event_time       timestamptz NOT NULL,
    record_time      timestamptz NOT NULL DEFAULT now(),
    read_point       text,
    biz_location     text,
    biz_transactions text[],                 -- 'type id' pairs ('' type when none was given)
    applied          boolean NOT NULL DEFAULT false,  -- also changed Tracecode's code state
    error_declared   boolean NOT NULL DEFAULT false,  -- carries an errorDeclaration
    context          jsonb,                  -- the document's and event's namespace prefixes
    body             bytea NOT NULL,         -- the event as sent (JSON)
    UNIQUE (brand_id, event_id)              -- idempotent by eventID
);
CREATE INDEX epcis_events_time_idx ON epcis_events (brand_id, event_time);

-- The identifiers of each captured event, canonical (GS1 Digital Link on id.gs1.org); C
-- collation so that a class pattern (all serials of a GTIN) is a range scan.
-- role: e = epcList / childEPCs, p = parentID, x = input / output of a transformation.
CREATE TABLE epcis_event_epcs (
    epc       text COLLATE "C" NOT NULL,
    role      "char" NOT NULL CHECK (role IN ('e', 'p', 'x')),
    event_id  bigint NOT NULL
);
CREATE INDEX epcis_event_epcs_epc_idx ON epcis_event_epcs (epc, event_id);

-- GET /epcis/events/{eventID} of one of Tracecode's own events (urn:uuid:…).
CREATE INDEX events_uuid_idx ON events (event_uuid);
