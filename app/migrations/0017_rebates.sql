-- Store sales rebates (K2 rebates, R1–R3, settlement).

-- The rebate of a product in yuan, a multiple of 0.5 (agent_id NULL: the product's default),
-- overridden per channel agent (the organisation the unit was first shipped to:
-- unit_state.channel_org_id). A claim copies the amount in force when it is made.
CREATE TABLE rebate_rules (
    id          bigserial PRIMARY KEY,
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    product_id  bigint NOT NULL REFERENCES products (id),
    agent_id    bigint REFERENCES orgs (id),
    amount      numeric(10, 1) NOT NULL
                CHECK (amount >= 0 AND amount <= 100000 AND amount * 2 = trunc(amount * 2)),
    updated_by  bigint REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (product_id, agent_id)
);
CREATE INDEX rebate_rules_brand ON rebate_rules (brand_id, product_id);

-- A store's statement of rebates for a period: pending → approved → paid, or rejected.
CREATE TABLE rebate_statements (
    id             bigserial PRIMARY KEY,
    brand_id       bigint NOT NULL REFERENCES orgs (id),
    store_id       bigint NOT NULL REFERENCES orgs (id),
    period_start   date NOT NULL,
    period_end     date NOT NULL,                 -- exclusive
    claims         integer NOT NULL CHECK (claims > 0),
    amount         numeric(14, 1) NOT NULL CHECK (amount >= 0),
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'approved', 'paid', 'rejected')),
    created_by     bigint REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    approved_by    bigint REFERENCES users (id),
    approved_at    timestamptz,
    paid_by        bigint REFERENCES users (id),
    paid_at        timestamptz,
    payment_ref    text,
    paid_on        date,
    rejected_by    bigint REFERENCES users (id),
    rejected_at    timestamptz,
    reject_reason  text,
    CHECK (period_end > period_start),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL AND payment_ref IS NOT NULL)),
    CHECK ((status = 'rejected') = (rejected_at IS NOT NULL AND reject_reason IS NOT NULL)),
    CHECK (status NOT IN ('approved', 'paid') OR approved_at IS NOT NULL)
);
CREATE INDEX rebate_statements_brand ON rebate_statements (brand_id, period_start DESC, id);
CREATE INDEX rebate_statements_store ON rebate_statements (store_id, period_start DESC);

-- A paid statement never changes.
CREATE FUNCTION rebate_statements_paid_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'paid' THEN
        RAISE EXCEPTION 'rebate statement % is paid and cannot change', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER rebate_statements_paid_final BEFORE UPDATE OR DELETE ON rebate_statements
    FOR EACH ROW EXECUTE FUNCTION rebate_statements_paid_final();

-- One rebate per code, ever, across all clerks and stores: the unique code_id is the guarantee.
CREATE TABLE rebate_claims (
    id             bigserial PRIMARY KEY,
    code_id        bigint NOT NULL UNIQUE,
    brand_id       bigint NOT NULL REFERENCES orgs (id),
    store_id       bigint NOT NULL REFERENCES orgs (id),
    clerk_id       bigint NOT NULL REFERENCES users (id),
    agent_id       bigint REFERENCES orgs (id),
    product_id     bigint NOT NULL REFERENCES products (id),
    amount         numeric(10, 1) NOT NULL CHECK (amount > 0),
    client_id      text NOT NULL,
    event_id       bigint NOT NULL,               -- the claiming event
    sale_event_id  bigint,                        -- the sale the claim recorded (L7), if it did
    claimed_at     timestamptz NOT NULL DEFAULT now(),
    statement_id   bigint REFERENCES rebate_statements (id),
    UNIQUE (clerk_id, client_id)
);
CREATE INDEX rebate_claims_store ON rebate_claims (store_id, claimed_at);
CREATE INDEX rebate_claims_clerk ON rebate_claims (clerk_id, id);
CREATE INDEX rebate_claims_brand ON rebate_claims (brand_id, claimed_at);
CREATE INDEX rebate_claims_unsettled ON rebate_claims (brand_id, store_id, claimed_at)
    WHERE statement_id IS NULL;
CREATE INDEX rebate_claims_statement ON rebate_claims (statement_id) WHERE statement_id IS NOT NULL;

-- Claims not yet folded into the ranking totals: written with each claim, taken exactly once by
-- the roll-up (DELETE … RETURNING under SKIP LOCKED), as stock_deltas are.
CREATE TABLE rebate_tally_queue (
    claim_id  bigint PRIMARY KEY
);

-- Ranking totals (R3): claims and amount per brand, month, store and clerk.
CREATE TABLE rebate_totals (
    brand_id   bigint NOT NULL,
    month      date NOT NULL,                     -- the first day of the claims' month (UTC+8)
    store_id   bigint NOT NULL,
    clerk_id   bigint NOT NULL,
    claims     bigint NOT NULL DEFAULT 0,
    amount     numeric(16, 1) NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (brand_id, month, store_id, clerk_id)
);

-- Refused claims that point at diversion (a unit designated to another store or agent), kept as
-- anti-diversion signals with where the unit was supposed to be.
CREATE TABLE rebate_refusals (
    id                 bigserial PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT now(),
    brand_id           bigint NOT NULL REFERENCES orgs (id),
    code_id            bigint NOT NULL,
    serial             text NOT NULL,
    clerk_id           bigint NOT NULL REFERENCES users (id),
    store_id           bigint NOT NULL REFERENCES orgs (id),
    reason             text NOT NULL,
    expected_store_id  bigint REFERENCES orgs (id),
    expected_agent_id  bigint REFERENCES orgs (id),
    holder_org_id      bigint REFERENCES orgs (id)
);
CREATE INDEX rebate_refusals_brand ON rebate_refusals (brand_id, at DESC);
CREATE INDEX rebate_refusals_store ON rebate_refusals (store_id, at DESC);
