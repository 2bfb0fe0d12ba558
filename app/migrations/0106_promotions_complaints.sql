-- Promotions per province (SPEC W2, seed 1.10.2 促销信息设置) and consumers' complaints and
-- suggestions (SPEC W3, seed 1.10.1 客户投诉与建议): app/marketing/.
--
-- A promotion is the brand's: a title, a plain-text body (line breaks kept), an optional https
-- picture and link, a window and the provinces it is shown in (the full Chinese names members'
-- provinces are stored as; empty: every province). Members see the published ones in their
-- window whose provinces include their own. Withdrawn ones keep their row (deleted_at).
--
-- A complaint (or suggestion) is a member's, filed from the phone: its text, optionally the
-- product (a serial or GTIN as typed, and the product found from it) or the store, and how the
-- member wants to be contacted. The brand's staff take it (open -> handling, the handler
-- recorded), reply and close it (closed); no other move. client_id makes the phone's filing
-- idempotent per member (client_hash: the request's fingerprint, app/idempotency.py).
-- The permissions (promotions.write, complaints.handle) are the code's built-in roles'
-- (app/auth/permissions.py, synchronised at start-up): nothing to add here.

CREATE TABLE promotions (
    id          bigserial PRIMARY KEY,
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 100),
    body        text NOT NULL DEFAULT '' CHECK (length(body) <= 5000),
    image_url   text CHECK (image_url ~ '^https://'),
    link_url    text CHECK (link_url ~ '^https://'),
    starts_at   timestamptz,
    ends_at     timestamptz,
    provinces   text[] NOT NULL DEFAULT '{}',   -- empty: every province
    published   boolean NOT NULL DEFAULT false,
    created_by  bigint REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CHECK (starts_at IS NULL OR ends_at IS NULL OR ends_at > starts_at)
);
CREATE INDEX promotions_brand_idx ON promotions (brand_id, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE complaints (
    id           bigserial PRIMARY KEY,
    brand_id     bigint NOT NULL REFERENCES orgs (id),
    member_id    bigint NOT NULL REFERENCES members (id),
    kind         text NOT NULL CHECK (kind IN ('complaint', 'suggestion')),
    body         text NOT NULL CHECK (length(body) BETWEEN 1 AND 2000),
    serial       text CHECK (length(serial) <= 200),  -- as printed, or as typed (a fake's link)
    gtin         text CHECK (gtin ~ '^[0-9]{14}$'),
    product_id   bigint REFERENCES products (id),
    store_name   text CHECK (length(store_name) <= 100),
    contact      text NOT NULL CHECK (contact IN ('phone', 'sms', 'none')),
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'handling', 'closed')),
    client_id    text,
    client_hash  bytea,
    handler_id   bigint REFERENCES users (id),
    handling_at  timestamptz,
    reply        text CHECK (length(reply) <= 2000),
    replied_at   timestamptz,
    closed_at    timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (member_id, client_id)
);
CREATE INDEX complaints_brand_idx ON complaints (brand_id, created_at DESC, id DESC);
CREATE INDEX complaints_member_idx ON complaints (member_id, id DESC);
