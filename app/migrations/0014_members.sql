-- Members (M1): consumers of a brand, signed up by phone with an SMS one-time code.
-- A member belongs to one brand (the brand whose code they scanned); a phone is one member per brand.

CREATE TABLE members (
    id bigserial PRIMARY KEY,
    brand_id bigint NOT NULL REFERENCES orgs (id),
    phone text NOT NULL CHECK (phone ~ '^[0-9]{6,15}$'),  -- digits only, e.g. 13812341234
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen')),
    gender text CHECK (gender IN ('male', 'female', 'other')),
    birthday date,
    age_band text CHECK (age_band IN ('under_18', '18_24', '25_34', '35_44', '45_54', '55_plus')),
    email text,
    wechat_id text,
    province text,
    city text,
    marketing_opt_out boolean NOT NULL DEFAULT false,
    frozen_reason text,
    frozen_by bigint REFERENCES users (id),
    frozen_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    UNIQUE (brand_id, phone)
);
CREATE INDEX members_brand_created ON members (brand_id, created_at);
CREATE INDEX members_brand_province ON members (brand_id, province);
