-- Organisations, users, roles, auth, audit, catalogue (SPEC U1-U4, K1).

CREATE TABLE orgs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent_id     bigint REFERENCES orgs (id),
    -- materialised path of ids, e.g. '/1/4/9/': subtree = path LIKE '/1/4/%'
    path          text NOT NULL DEFAULT '',
    kind          text NOT NULL CHECK (kind IN
                    ('brand', 'factory', 'warehouse', 'branch', 'agent', 'distributor', 'store', 'printer')),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    erp_code      text NOT NULL UNIQUE CHECK (length(erp_code) BETWEEN 1 AND 64),
    province_code char(6),
    province_name text,
    city_code     char(6),
    city_name     text,
    address       text,
    contact_name  text,
    contact_phone text,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'brand') = (parent_id IS NULL))
);
CREATE INDEX orgs_path_idx ON orgs (path text_pattern_ops);
CREATE INDEX orgs_parent_idx ON orgs (parent_id);

CREATE TABLE roles (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL: a built-in role available everywhere; otherwise a custom role of that org subtree
    org_id      bigint REFERENCES orgs (id),
    name        text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{1,39}$'),
    description text NOT NULL DEFAULT '',
    permissions text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX roles_name_uq ON roles (coalesce(org_id, 0), name);

CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          bigint NOT NULL REFERENCES orgs (id),
    username        text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.@-]{3,64}$'),
    password_hash   text NOT NULL,
    display_name    text NOT NULL DEFAULT '',
    phone           text,
    email           text,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    last_login_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_org_idx ON users (org_id);

CREATE TABLE user_roles (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id bigint NOT NULL REFERENCES roles (id),
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_idx ON user_roles (role_id);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       bigint NOT NULL REFERENCES orgs (id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- the public part of the key ("tck_<prefix>_<secret>"); the secret is stored as SHA-256 only
    prefix       text NOT NULL UNIQUE,
    secret_hash  bytea NOT NULL,
    permissions  text[] NOT NULL,
    created_by   bigint REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_org_idx ON api_keys (org_id);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_user  bigint,
    actor_key   bigint,
    org_id      bigint,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   text,
    before      jsonb,
    after       jsonb,
    request_id  text
);
CREATE INDEX audit_log_entity_idx ON audit_log (entity, entity_id);
CREATE INDEX audit_log_org_at_idx ON audit_log (org_id, at);

CREATE TABLE categories (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        bigint NOT NULL REFERENCES orgs (id),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    display_order integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);

CREATE TABLE products (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        bigint NOT NULL REFERENCES orgs (id),
    category_id   bigint REFERENCES categories (id),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    spec          text NOT NULL DEFAULT '',
    product_type  text NOT NULL DEFAULT '',
    product_no    text NOT NULL CHECK (length(product_no) BETWEEN 1 AND 64),
    barcode       text,
    gtin          char(14) UNIQUE,
    image_url     text,
    colour_no     text,
    efficacy      text,
    video_url     text,
    display_order integer NOT NULL DEFAULT 0,
    published     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, product_no)
);
CREATE INDEX products_org_idx ON products (org_id, display_order, id);
CREATE INDEX products_category_idx ON products (category_id);
