-- WeChat service accounts (服务号, SPEC W5): app/wechat/.
--
-- One account per brand, set by its staff (`wechat.manage`, PUT /wechat/account): the app id,
-- the app secret sealed under the master key (AES-256-GCM, Settings.subkey("wechat-secret"):
-- a copy of the database alone does not give it away; it is never answered), the template id
-- of each kind of message we send, and whether the account is in use.
CREATE TABLE wechat_accounts (
    brand_id       bigint PRIMARY KEY REFERENCES orgs (id),
    app_id         text NOT NULL CHECK (app_id ~ '^wx[0-9a-f]{16}$'),
    secret_sealed  bytea NOT NULL,
    templates      jsonb NOT NULL DEFAULT '{}',  -- kind -> WeChat template id
    enabled        boolean NOT NULL DEFAULT false,
    updated_by     bigint REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- A member's WeChat: the openid the brand's account knows them by (snsapi_base OAuth). One
-- openid is one member of a brand, and a member has one openid per brand (a member is of one
-- brand: member_id is unique). Erasure deletes the row.
CREATE TABLE wechat_bindings (
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    openid      text NOT NULL CHECK (length(openid) BETWEEN 1 AND 128),
    member_id   bigint NOT NULL UNIQUE REFERENCES members (id),
    unionid     text CHECK (length(unionid) <= 128),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (brand_id, openid)
);

-- Template messages (模板消息): the outbox. A row per cause (kind + cause_key: a redemption's
-- id, a reminder's SMS id, a complaint's id and reply time), so a cause queued twice is one
-- message. pending -> sending (claimed by one sender: attempts + 1, claimed_at) -> sent (msgid)
-- | failed (WeChat refused it for good, or it cannot be made: no account, no template, no
-- binding, bad data) | dead (out of attempts). The openid is the binding's, read when sent.
CREATE TABLE wechat_messages (
    id               bigserial PRIMARY KEY,
    brand_id         bigint NOT NULL REFERENCES orgs (id),
    member_id        bigint NOT NULL REFERENCES members (id),
    kind             text NOT NULL
                       CHECK (kind IN ('redemption', 'points_reminder', 'complaint_reply')),
    cause_key        text NOT NULL CHECK (length(cause_key) BETWEEN 1 AND 200),
    data             jsonb NOT NULL DEFAULT '{}',
    url              text CHECK (length(url) <= 1000),
    openid           text,
    template_id      text,
    state            text NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    claimed_at       timestamptz,
    msgid            text,
    errcode          integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at          timestamptz,
    UNIQUE (brand_id, kind, cause_key)
);
CREATE INDEX wechat_messages_due ON wechat_messages (next_attempt_at)
    WHERE state IN ('pending', 'sending');
CREATE INDEX wechat_messages_brand ON wechat_messages (brand_id, id DESC);
CREATE INDEX wechat_messages_member ON wechat_messages (member_id);
