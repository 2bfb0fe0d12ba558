-- Lucky draws (扫码抽奖, SPEC B4): a brand's draw campaigns, their prizes (stock never below
-- zero), and the draws members make by scan + PIN — one per code, ever (app/draws/).

CREATE TABLE draw_campaigns (
    id               bigserial PRIMARY KEY,
    brand_id         bigint NOT NULL REFERENCES orgs (id),
    name             text NOT NULL,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    product_ids      bigint[] NOT NULL CHECK (cardinality(product_ids) > 0),
    provinces        text[] NOT NULL DEFAULT '{}',   -- none: everywhere
    no_prize_weight  integer NOT NULL CHECK (no_prize_weight >= 0),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'stopped')),
    created_by       bigint REFERENCES users (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    CHECK (ends_at > starts_at)
);
CREATE INDEX draw_campaigns_brand ON draw_campaigns (brand_id, id) WHERE deleted_at IS NULL;
CREATE INDEX draw_campaigns_products ON draw_campaigns USING gin (product_ids)
    WHERE deleted_at IS NULL;

-- A prize: its stock (``remaining``) is taken under the prize's row lock by the draw round that
-- gives it, and can never go below zero (the CHECK is the last word under any concurrency).
CREATE TABLE draw_prizes (
    id           bigserial PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES draw_campaigns (id),
    name         text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('points', 'voucher', 'gift')),
    points       integer CHECK (points > 0),
    quantity     integer NOT NULL CHECK (quantity >= 0),
    remaining    integer NOT NULL CHECK (remaining >= 0),
    weight       integer NOT NULL CHECK (weight >= 0),
    daily_cap    integer CHECK (daily_cap > 0),
    position     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'points') = (points IS NOT NULL)),
    CHECK (remaining <= quantity)
);
CREATE INDEX draw_prizes_campaign ON draw_prizes (campaign_id, position, id);

-- A draw: the code's only one (``draws_code``), with its verification's answer and its result
-- (a prize, or none). A points prize is credited to the member's ledger in the draw's
-- transaction (``fulfil_status`` credited); a voucher or a gift waits for the brand's staff
-- (pending → fulfilled, with their note: the voucher code, the parcel's tracking number).
CREATE TABLE draws (
    id              bigserial PRIMARY KEY,
    campaign_id     bigint NOT NULL REFERENCES draw_campaigns (id),
    brand_id        bigint NOT NULL REFERENCES orgs (id),
    member_id       bigint NOT NULL REFERENCES members (id),
    code_id         bigint NOT NULL,
    client_id       text NOT NULL,
    product_id      bigint NOT NULL REFERENCES products (id),
    channel_org_id  bigint NOT NULL REFERENCES orgs (id),
    prize_id        bigint REFERENCES draw_prizes (id),
    prize_name      text,
    prize_kind      text,
    points          integer,
    verify_result   text NOT NULL,
    verify_reason   text NOT NULL,
    day             date NOT NULL,                   -- Asia/Shanghai day (daily caps)
    drawn_at        timestamptz NOT NULL,
    fulfil_status   text NOT NULL
                    CHECK (fulfil_status IN ('none', 'credited', 'pending', 'fulfilled')),
    fulfilled_at    timestamptz,
    fulfilled_by    bigint REFERENCES users (id),
    fulfil_note     text,
    CHECK ((prize_id IS NULL) = (fulfil_status = 'none')),
    CHECK ((fulfil_status = 'fulfilled') = (fulfilled_at IS NOT NULL))
);
CREATE UNIQUE INDEX draws_code ON draws (code_id);
CREATE UNIQUE INDEX draws_member_client ON draws (member_id, client_id);
CREATE INDEX draws_campaign ON draws (campaign_id, id);
CREATE INDEX draws_member ON draws (member_id, id);
CREATE INDEX draws_prize_day ON draws (prize_id, day) WHERE prize_id IS NOT NULL;

-- The ledger's new kind: a draw's points prize (one entry per draw).
ALTER TABLE points_ledger ADD COLUMN draw_id bigint REFERENCES draws (id);
ALTER TABLE points_ledger DROP CONSTRAINT points_ledger_kind_check;
ALTER TABLE points_ledger ADD CONSTRAINT points_ledger_kind_check
    CHECK (kind IN ('claim', 'redemption', 'refund', 'expiry', 'adjustment', 'draw'));
ALTER TABLE points_ledger ADD CONSTRAINT points_ledger_draw_check
    CHECK ((kind = 'draw') = (draw_id IS NOT NULL) AND (kind <> 'draw' OR points > 0));
CREATE UNIQUE INDEX points_ledger_draw ON points_ledger (draw_id) WHERE draw_id IS NOT NULL;
