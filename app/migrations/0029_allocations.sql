-- Serial allocation (issue 19 item 4): line systems and partners' serialization servers ask for
-- N codes of a batch, or of a pool of batches that rolls over to the next batch when one is used
-- up. A batch hands out its indexes in order: code_batches.allocated is the next index not yet
-- given out, advanced under the batch row's lock, so no index is ever given out twice.

ALTER TABLE code_batches ADD COLUMN allocated bigint NOT NULL DEFAULT 0
    CHECK (allocated >= 0 AND allocated <= size);

CREATE TABLE code_pools (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id         bigint NOT NULL REFERENCES orgs (id),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- the organisation the pool is shared with (a partner's API keys allocate from it only)
    recipient_org_id bigint REFERENCES orgs (id),
    created_by       bigint REFERENCES users (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, name)
);
CREATE INDEX code_pools_recipient_idx ON code_pools (recipient_org_id);

-- A pool's batches in the order they are used up.
CREATE TABLE code_pool_batches (
    pool_id   bigint NOT NULL REFERENCES code_pools (id) ON DELETE CASCADE,
    position  integer NOT NULL CHECK (position >= 0),
    batch_no  bigint NOT NULL REFERENCES code_batches (batch_no),
    PRIMARY KEY (pool_id, position),
    UNIQUE (pool_id, batch_no)
);
CREATE INDEX code_pool_batches_batch_idx ON code_pool_batches (batch_no);

CREATE TABLE code_allocations (
    id               uuid PRIMARY KEY,
    brand_id         bigint NOT NULL REFERENCES orgs (id),
    pool_id          bigint REFERENCES code_pools (id),
    -- who received the codes: the caller's organisation (a partner's, for an API key)
    recipient_org_id bigint NOT NULL REFERENCES orgs (id),
    requested        bigint NOT NULL CHECK (requested >= 1),
    total            bigint NOT NULL CHECK (total >= 1 AND total <= requested),
    format           text NOT NULL CHECK (format IN ('text', 'file')),
    with_pins        boolean NOT NULL,
    note             text NOT NULL DEFAULT '',
    created_by       bigint REFERENCES users (id),
    api_key_id       bigint REFERENCES api_keys (id),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX code_allocations_brand_idx ON code_allocations (brand_id, created_at DESC);

-- The ranges an allocation received, first..last index inclusive. Keyed by (batch_no,
-- first_index): the allocation of any code is the range of its batch with the greatest first
-- index not above the code's index (one index probe).
CREATE TABLE code_allocation_ranges (
    batch_no      bigint NOT NULL REFERENCES code_batches (batch_no),
    first_index   bigint NOT NULL CHECK (first_index >= 0),
    last_index    bigint NOT NULL,
    allocation_id uuid NOT NULL REFERENCES code_allocations (id),
    position      integer NOT NULL,
    PRIMARY KEY (batch_no, first_index),
    CHECK (last_index >= first_index)
);
CREATE INDEX code_allocation_ranges_allocation_idx ON code_allocation_ranges (allocation_id);
