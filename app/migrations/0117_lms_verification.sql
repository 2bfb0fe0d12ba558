-- B2B verification for trade partners (SPEC B8; app/b2b/): the GS1 Lightweight Messaging
-- Standard's verification of product identifiers, as a pharmacy chain's or a distributor's
-- receiving system asks it (POST/GET /v1/lms/verify).

-- What the brand declares of a lot of one of its products beyond what packing records (the lot
-- itself and the production date, on unit_state): the expiry date printed on its packs (AI 17)
-- and its recall. A verification compares the expiry a partner read off the pack with this one,
-- and refuses a recalled lot's units (Not_for_re-distribution, additionalInfo Recalled).
CREATE TABLE lms_lots (
    product_id   bigint NOT NULL REFERENCES products (id),
    lot          text NOT NULL CHECK (length(lot) BETWEEN 1 AND 20),
    brand_id     bigint NOT NULL REFERENCES orgs (id),
    expiry       date,
    recalled_at  timestamptz,
    recall_note  text CHECK (length(recall_note) <= 500),
    updated_by   bigint REFERENCES users (id),
    updated_key  bigint REFERENCES api_keys (id),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (product_id, lot)
);
CREATE INDEX lms_lots_brand_idx ON lms_lots (brand_id, updated_at DESC);

-- The brand's own GLN, answered as responderGLN (none on record: the field is left out).
CREATE TABLE lms_responders (
    brand_id   bigint PRIMARY KEY REFERENCES orgs (id),
    gln        char(13) NOT NULL CHECK (gln ~ '^[0-9]{13}$'),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every B2B verification asked: who asked (organisation, API key or user, requestorGLN), what
-- (the identifier as sent), the answer as sent (``response``) and why (``detail``: the check
-- that decided it, for the brand). ``corr_uuid`` is unique per asking organisation: the same
-- request sent again under it is answered from ``response``, another one is 409.
-- Consumer verifications (verifications, the Redis counters) are never touched by these.
CREATE TABLE lms_requests (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id          bigint NOT NULL REFERENCES orgs (id),
    org_id            bigint NOT NULL REFERENCES orgs (id),
    api_key_id        bigint REFERENCES api_keys (id),
    user_id           bigint REFERENCES users (id),
    corr_uuid         uuid NOT NULL,
    fingerprint       bytea NOT NULL,
    requestor_gln     char(13),
    context           text NOT NULL,
    gtin              char(14) NOT NULL,
    serial_number     text NOT NULL,
    lot_number        text NOT NULL,
    expiration_date   date NOT NULL,
    verified          boolean NOT NULL,
    failure_reason    text,
    additional_info   text,
    detail            text NOT NULL,
    product_id        bigint,
    code_id           bigint,
    response          jsonb NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, corr_uuid)
);
CREATE INDEX lms_requests_brand_idx ON lms_requests (brand_id, id DESC);
CREATE INDEX lms_requests_code_idx ON lms_requests (code_id) WHERE code_id IS NOT NULL;
