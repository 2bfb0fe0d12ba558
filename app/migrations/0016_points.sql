-- Points, gifts and redemption (K2 points, M2–M4).

-- Points per product (agent_id NULL: the product's default), overridden per channel agent (the
-- organisation the unit was first shipped to: unit_state.channel_org_id).
CREATE TABLE point_rules (
    id          bigserial PRIMARY KEY,
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    product_id  bigint NOT NULL REFERENCES products (id),
    agent_id    bigint REFERENCES orgs (id),
    points      integer NOT NULL CHECK (points BETWEEN 0 AND 1000000),
    updated_by  bigint REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (product_id, agent_id)
);
CREATE INDEX point_rules_brand ON point_rules (brand_id, product_id);

-- One claim per code, ever, across all members: the unique code_id is the guarantee.
CREATE TABLE point_claims (
    id          bigserial PRIMARY KEY,
    code_id     bigint NOT NULL UNIQUE,
    member_id   bigint NOT NULL REFERENCES members (id),
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    product_id  bigint NOT NULL REFERENCES products (id),
    agent_id    bigint REFERENCES orgs (id),
    points      integer NOT NULL CHECK (points > 0),
    client_id   text NOT NULL,
    event_id    bigint NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (member_id, client_id)
);
CREATE INDEX point_claims_member ON point_claims (member_id, id);

-- Gifts a brand offers for points: online (an e-shop voucher) or offline (collected at a store).
CREATE TABLE gifts (
    id              bigserial PRIMARY KEY,
    brand_id        bigint NOT NULL REFERENCES orgs (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    picture_url     text,
    description     text,
    points_cost     integer NOT NULL CHECK (points_cost BETWEEN 1 AND 100000000),
    kind            text NOT NULL CHECK (kind IN ('online', 'offline')),
    stock           integer NOT NULL CHECK (stock >= 0),
    valid_from      timestamptz,
    valid_to        timestamptz,
    provinces       text[] NOT NULL DEFAULT '{}',   -- empty: offered everywhere
    display_order   integer NOT NULL DEFAULT 0,
    collect_days    integer NOT NULL DEFAULT 30 CHECK (collect_days BETWEEN 1 AND 365),
    how_to_collect  text,
    deleted_at      timestamptz,
    created_by      bigint REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_from IS NULL OR valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX gifts_brand_order ON gifts (brand_id, display_order, id) WHERE deleted_at IS NULL;

-- A redemption: its code is stored as an HMAC (lookup, unique) and sealed (AES-GCM, for the
-- member's own list); neither key is in the database.
CREATE TABLE redemptions (
    id                bigserial PRIMARY KEY,
    brand_id          bigint NOT NULL REFERENCES orgs (id),
    member_id         bigint NOT NULL REFERENCES members (id),
    gift_id           bigint NOT NULL REFERENCES gifts (id),
    gift_kind         text NOT NULL CHECK (gift_kind IN ('online', 'offline')),
    points            integer NOT NULL CHECK (points > 0),
    code_digest       bytea NOT NULL UNIQUE,
    code_sealed       bytea NOT NULL,
    status            text NOT NULL DEFAULT 'issued'
                      CHECK (status IN ('issued', 'fulfilled', 'expired')),
    client_id         text NOT NULL,
    sms_id            bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    fulfilled_at      timestamptz,
    fulfilled_by      bigint REFERENCES users (id),
    fulfilled_org_id  bigint REFERENCES orgs (id),
    expired_at        timestamptz,
    UNIQUE (member_id, client_id),
    CHECK ((status = 'fulfilled') = (fulfilled_at IS NOT NULL)),
    CHECK ((status = 'expired') = (expired_at IS NOT NULL))
);
CREATE INDEX redemptions_member ON redemptions (member_id, id);
CREATE INDEX redemptions_due ON redemptions (expires_at) WHERE status = 'issued';
CREATE INDEX redemptions_fulfilled ON redemptions (fulfilled_org_id, fulfilled_at)
    WHERE status = 'fulfilled';

-- The points ledger: append-only; a member's balance is the sum of its rows.
CREATE TABLE points_ledger (
    id             bigserial PRIMARY KEY,
    member_id      bigint NOT NULL REFERENCES members (id),
    brand_id       bigint NOT NULL REFERENCES orgs (id),
    kind           text NOT NULL
                   CHECK (kind IN ('claim', 'redemption', 'refund', 'expiry', 'adjustment')),
    points         integer NOT NULL CHECK (points <> 0),
    claim_id       bigint REFERENCES point_claims (id),
    redemption_id  bigint REFERENCES redemptions (id),
    reason         text,
    recorded_by    bigint REFERENCES users (id),
    client_id      text,
    at             timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'claim') = (claim_id IS NOT NULL)),
    CHECK ((kind IN ('redemption', 'refund')) = (redemption_id IS NOT NULL)),
    CHECK (kind NOT IN ('expiry', 'adjustment') OR reason IS NOT NULL),
    CHECK (CASE kind WHEN 'claim' THEN points > 0 WHEN 'refund' THEN points > 0
                     WHEN 'redemption' THEN points < 0 WHEN 'expiry' THEN points < 0
                     ELSE true END)
);
CREATE INDEX points_ledger_member ON points_ledger (member_id, id);
-- one debit and at most one refund per redemption; one entry per client id of a member
CREATE UNIQUE INDEX points_ledger_redemption ON points_ledger (redemption_id, kind)
    WHERE redemption_id IS NOT NULL;
CREATE UNIQUE INDEX points_ledger_client ON points_ledger (member_id, client_id)
    WHERE client_id IS NOT NULL;

CREATE FUNCTION points_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'points_ledger is append-only';
END $$;
CREATE TRIGGER points_ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON points_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION points_ledger_append_only();

-- The balance, kept in the same transaction as each ledger row (`tracecode points check`
-- proves it equals the ledger sum); never negative.
CREATE TABLE point_balances (
    member_id   bigint PRIMARY KEY REFERENCES members (id),
    balance     bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
