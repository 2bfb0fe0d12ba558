-- Member sign-up and log-in by SMS one-time code (M1), member log-out, member admin (M5).

-- One-time codes: only an HMAC of the code is stored (keyed from the master key, which never
-- enters the database). The newest code of a phone is the only one that works; it dies when used,
-- when a newer one is sent, after its expiry, or after too many wrong tries.
CREATE TABLE member_otps (
    id          bigserial PRIMARY KEY,
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    phone       text NOT NULL CHECK (phone ~ '^[0-9]{6,15}$'),
    code_hash   bytea NOT NULL,
    tries       integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    spent_at    timestamptz,          -- logged in with, or superseded by a newer code
    client_ip   inet
);
CREATE INDEX member_otps_phone ON member_otps (brand_id, phone, id DESC);
CREATE INDEX member_otps_created ON member_otps (created_at);

-- Member tokens revoked by log-out before they expire (kept until then).
CREATE TABLE member_token_revocations (
    jti         uuid PRIMARY KEY,
    member_id   bigint NOT NULL REFERENCES members (id),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX member_token_revocations_expiry ON member_token_revocations (expires_at);

-- Phone search by its last digits (the admin's "ends with 1234").
CREATE INDEX members_brand_phone_rev ON members (brand_id, reverse(phone) text_pattern_ops);

-- A verification made by a signed-in member (a points claim) names the member: the member's
-- scan history. NULL for every anonymous verification (the hot path writes nothing new).
ALTER TABLE verifications ADD COLUMN member_id bigint;
CREATE INDEX verifications_member_idx ON verifications (member_id, at) WHERE member_id IS NOT NULL;
