-- Logistics and inventory (SPEC L1–L10): orders, in/out documents, movements of code state,
-- stock roll-ups. Every movement is an event (shipping, receiving, retail_selling, …) written
-- with its state change and its stock deltas in one transaction.

-- Orders from ERP (API, CSV) or by hand (L1). Idempotent by ERP order number per brand.
CREATE TABLE orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    erp_no      text NOT NULL CHECK (length(erp_no) BETWEEN 1 AND 64),
    kind        text NOT NULL CHECK (kind IN ('sales', 'purchase', 'transfer', 'return')),
    from_org_id bigint NOT NULL REFERENCES orgs (id),
    to_org_id   bigint NOT NULL REFERENCES orgs (id),
    status      text NOT NULL DEFAULT 'open'
                  CHECK (status IN ('open', 'shipped', 'received', 'closed', 'cancelled')),
    order_date  date NOT NULL DEFAULT current_date,
    note        text NOT NULL DEFAULT '',
    source      text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'csv', 'manual')),
    created_by  bigint REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, erp_no),
    CHECK (from_org_id <> to_org_id)
);
CREATE INDEX orders_from_idx ON orders (from_org_id, created_at DESC);
CREATE INDEX orders_to_idx ON orders (to_org_id, created_at DESC);

CREATE TABLE order_lines (
    order_id   bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no    integer NOT NULL,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity   integer NOT NULL CHECK (quantity > 0),   -- units
    shipped    integer NOT NULL DEFAULT 0,
    received   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, line_no),
    UNIQUE (order_id, product_id)
);

-- Inbound and outbound documents (入库单 / 出库单, L10) and the codes scanned for them.
CREATE SEQUENCE document_no_seq AS bigint MINVALUE 1;
CREATE TABLE documents (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id         bigint NOT NULL REFERENCES orgs (id),
    doc_no           text NOT NULL UNIQUE,
    direction        text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    -- factory_inbound, outbound (to a downstream org), exception (L4), inbound (receiving a
    -- shipment), sale (L7), return (back upstream, L8)
    kind             text NOT NULL CHECK (kind IN ('factory_inbound', 'outbound', 'exception',
                         'inbound', 'sale', 'return')),
    org_id           bigint NOT NULL REFERENCES orgs (id),  -- the warehouse / org doing it
    counterparty_id  bigint REFERENCES orgs (id),          -- destination or source org
    order_id         bigint REFERENCES orders (id),
    shipment_id      bigint REFERENCES documents (id),     -- the outbound an inbound receives
    doc_date         date NOT NULL DEFAULT current_date,
    handler_id       bigint REFERENCES users (id),
    signee           text,
    phone            text,
    customer         text,
    customer_type    text,
    destination_city text,
    salesperson_id   bigint REFERENCES users (id),
    reason           text,      -- exception: staff_welfare, gift, sample, other; return: …
    status           text NOT NULL DEFAULT 'draft' CHECK (status IN
                         ('draft', 'pending_approval', 'confirmed', 'rejected', 'cancelled')),
    note             text NOT NULL DEFAULT '',
    discrepancies    jsonb,
    approved_by      bigint REFERENCES users (id),
    approved_at      timestamptz,
    confirmed_at     timestamptz,
    event_id         bigint,
    created_by       bigint REFERENCES users (id),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX documents_org_idx ON documents (org_id, created_at DESC);
CREATE INDEX documents_counterparty_idx ON documents (counterparty_id, created_at DESC);
CREATE INDEX documents_order_idx ON documents (order_id);

CREATE TABLE document_items (
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    kind        "char" NOT NULL CHECK (kind IN ('u', 'c')),
    code        bigint NOT NULL,
    PRIMARY KEY (document_id, kind, code)
);

-- Per product and lot: units and packages (cases) of a document, filled on confirmation.
CREATE TABLE document_lines (
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    product_id  bigint NOT NULL REFERENCES products (id),
    lot         text NOT NULL,
    units       integer NOT NULL,
    packages    integer NOT NULL,
    PRIMARY KEY (document_id, product_id, lot)
);

-- Where a unit / case is going (in transit) and who sells it (designated store, salesperson).
ALTER TABLE unit_state
    ADD COLUMN transit_to     bigint,
    ADD COLUMN store_org_id   bigint,
    ADD COLUMN salesperson_id bigint,
    ADD COLUMN sold_at        timestamptz;
ALTER TABLE case_state ADD COLUMN transit_to bigint;
CREATE INDEX unit_state_holder_idx ON unit_state (holder_org_id, product_id);
CREATE INDEX unit_state_transit_idx ON unit_state (transit_to) WHERE transit_to IS NOT NULL;

-- Stock (L9): rolled up by a worker from the deltas each movement writes with its event.
-- A delta row is consumed exactly once (DELETE … RETURNING under SKIP LOCKED).
CREATE TABLE stock_deltas (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     bigint NOT NULL,
    product_id bigint NOT NULL,
    lot        text NOT NULL,
    on_hand    integer NOT NULL,
    in_transit integer NOT NULL,
    event_id   bigint NOT NULL
);
CREATE TABLE stock (
    org_id     bigint NOT NULL,
    product_id bigint NOT NULL,
    lot        text NOT NULL,
    on_hand    bigint NOT NULL DEFAULT 0,
    in_transit bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, product_id, lot)
);
CREATE TABLE stock_thresholds (
    org_id     bigint NOT NULL REFERENCES orgs (id),
    product_id bigint NOT NULL REFERENCES products (id),
    min_units  integer NOT NULL CHECK (min_units >= 0),
    PRIMARY KEY (org_id, product_id)
);
