-- SMS (I2, M6, W4): every message is a row of the outbox first, sent by a worker (app/sms/).
--
-- A row moves pending -> sending (claimed by one sender: attempts + 1, claimed_at) -> sent
-- (the gateway accepted it: provider and provider_message_id) -> delivered | undelivered (the
-- gateway's delivery-status callback). A failed attempt puts it back to pending with a later
-- next_attempt_at (exponential back-off); a row that fails for good (rejected by the gateway,
-- not renderable, out of attempts, or of unknown outcome when re-sending is off) is 'failed'
-- and copied to dead_letters (queue 'sms_outbox'). ``idem_key`` goes to the gateway with every
-- attempt of the row, so a re-sent attempt is recognised there and not delivered twice.
-- member_id refers to members (0014, applied after this file): no foreign key.
CREATE TABLE sms_outbox (
    id                  bigserial PRIMARY KEY,
    brand_id            bigint NOT NULL REFERENCES orgs (id),
    member_id           bigint,
    campaign_id         bigint,
    phone               text NOT NULL CHECK (phone ~ '^[0-9]{6,15}$'),
    template            text NOT NULL CHECK (length(template) BETWEEN 1 AND 64),
    variables           jsonb NOT NULL DEFAULT '{}',
    purpose             text NOT NULL
                          CHECK (purpose IN ('otp', 'redemption', 'reminder', 'campaign', 'notice')),
    state               text NOT NULL DEFAULT 'pending'
                          CHECK (state IN ('pending', 'sending', 'sent', 'delivered',
                                           'undelivered', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    claimed_at          timestamptz,
    idem_key            uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    provider            text,
    provider_message_id text,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at             timestamptz,
    status_at           timestamptz
);
-- The senders' queue: rows still to send (or in flight), by due time.
CREATE INDEX sms_outbox_due ON sms_outbox (next_attempt_at) WHERE state IN ('pending', 'sending');
-- Throttling: one-time codes per phone, marketing messages per phone and brand.
CREATE INDEX sms_outbox_phone ON sms_outbox (phone, created_at);
CREATE INDEX sms_outbox_provider ON sms_outbox (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX sms_outbox_campaign ON sms_outbox (campaign_id) WHERE campaign_id IS NOT NULL;

-- Opt-out of marketing messages (reminders, campaigns) per brand and phone: from an inbound
-- "TD" reply, the API, or the member. One-time codes, redemption codes and notices ignore it.
CREATE TABLE sms_opt_outs (
    brand_id   bigint NOT NULL REFERENCES orgs (id),
    phone      text NOT NULL CHECK (phone ~ '^[0-9]{6,15}$'),
    source     text NOT NULL CHECK (source IN ('reply', 'api', 'member')),
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (brand_id, phone)
);

-- Campaign templates, managed by a brand: a body with {placeholders} (the sender adds the
-- signature and "回复TD退订").
CREATE TABLE sms_templates (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id   bigint NOT NULL REFERENCES orgs (id),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    body       text NOT NULL CHECK (length(body) BETWEEN 1 AND 500),
    provider_template_id text,
    created_by bigint REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, name)
);

-- A campaign: one template sent to an audience (members by province, age band and last claim;
-- or the store managers of the brand's tree), within the creator's subtree.
CREATE TABLE sms_campaigns (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    org_id      bigint NOT NULL REFERENCES orgs (id),
    template_id bigint NOT NULL REFERENCES sms_templates (id),
    audience    text NOT NULL CHECK (audience IN ('members', 'store_managers')),
    filter      jsonb NOT NULL DEFAULT '{}',
    variables   jsonb NOT NULL DEFAULT '{}',
    client_id   text,
    recipients  integer NOT NULL DEFAULT 0,
    skipped     integer NOT NULL DEFAULT 0,
    created_by  bigint REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, client_id)
);

-- Reminders (M6): when each member's balance was last looked at, and last reminded.
CREATE TABLE sms_reminders (
    member_id  bigint PRIMARY KEY,
    checked_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    outbox_id  bigint
);
