-- Field force (SPEC F1–F3, issue 18 items 6–7): visit plans approved by the rep's supervisor,
-- store positions for the check-in distance, nameplate check-ins with GPS, store reviews, photos.

-- A store's recorded position (WGS 84), both or neither; set by PUT /field/stores/{id}/position.
ALTER TABLE orgs
    ADD COLUMN latitude  double precision CHECK (latitude BETWEEN -90 AND 90),
    ADD COLUMN longitude double precision CHECK (longitude BETWEEN -180 AND 180),
    ADD CONSTRAINT orgs_position_pair CHECK ((latitude IS NULL) = (longitude IS NULL));

-- A field rep's supervisor: approves the rep's plans and sees the rep's check-ins and reviews.
ALTER TABLE users ADD COLUMN supervisor_id bigint REFERENCES users (id) ON DELETE SET NULL,
    ADD CONSTRAINT users_not_own_supervisor CHECK (supervisor_id <> id);
CREATE INDEX users_supervisor_idx ON users (supervisor_id) WHERE supervisor_id IS NOT NULL;

CREATE TABLE visit_plans (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rep_id        bigint NOT NULL REFERENCES users (id),
    org_id        bigint NOT NULL REFERENCES orgs (id),  -- the rep's organisation (scoping)
    period        text NOT NULL CHECK (period IN ('quarter', 'month', 'week')),
    starts_on     date NOT NULL,
    ends_on       date NOT NULL CHECK (ends_on >= starts_on),
    title         text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT 'draft'
                  CHECK (status IN ('draft', 'submitted', 'approved', 'returned')),
    return_reason text,
    submitted_at  timestamptz,
    decided_at    timestamptz,
    decided_by    bigint REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rep_id, period, starts_on)
);
CREATE INDEX visit_plans_org_idx ON visit_plans (org_id, status);

CREATE TABLE visit_plan_items (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id    bigint NOT NULL REFERENCES visit_plans (id) ON DELETE CASCADE,
    store_id   bigint NOT NULL REFERENCES orgs (id),
    planned_on date NOT NULL,
    note       text NOT NULL DEFAULT '',
    UNIQUE (plan_id, store_id, planned_on)
);

-- Photos (item 7): the bytes live in the media store (var/media by default), the row says whose.
CREATE TABLE media_photos (
    id           uuid PRIMARY KEY,
    owner_id     bigint NOT NULL REFERENCES users (id),
    org_id       bigint NOT NULL REFERENCES orgs (id),  -- the owner's organisation (scoping)
    content_type text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    size_bytes   integer NOT NULL CHECK (size_bytes > 0),
    sha256       bytea NOT NULL,
    storage_key  text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_photos_owner_idx ON media_photos (owner_id, created_at);

CREATE TABLE field_checkins (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rep_id      bigint NOT NULL REFERENCES users (id),
    org_id      bigint NOT NULL REFERENCES orgs (id),  -- the rep's organisation (scoping)
    store_id    bigint NOT NULL REFERENCES orgs (id),
    client_id   text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),  -- received by the server
    client_at   timestamptz,  -- when the phone says it scanned (queued offline)
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng         double precision NOT NULL CHECK (lng BETWEEN -180 AND 180),
    accuracy_m  double precision NOT NULL CHECK (accuracy_m >= 0),
    distance_m  double precision,  -- NULL: the store has no recorded position
    radius_m    integer NOT NULL,  -- the radius in force when it was checked
    flag        text NOT NULL CHECK (flag IN ('ok', 'out_of_range', 'no_store_position')),
    plan_item_id bigint REFERENCES visit_plan_items (id) ON DELETE SET NULL,
    note        text NOT NULL DEFAULT '',
    UNIQUE (rep_id, client_id)
);
CREATE INDEX field_checkins_rep_at_idx ON field_checkins (rep_id, (coalesce(client_at, at)));
CREATE INDEX field_checkins_store_idx ON field_checkins (store_id, at);

CREATE TABLE field_reviews (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rep_id          bigint NOT NULL REFERENCES users (id),
    org_id          bigint NOT NULL REFERENCES orgs (id),
    store_id        bigint NOT NULL REFERENCES orgs (id),
    checkin_id      bigint REFERENCES field_checkins (id),
    client_id       text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    shelf_score     smallint NOT NULL CHECK (shelf_score BETWEEN 1 AND 5),
    knowledge_score smallint NOT NULL CHECK (knowledge_score BETWEEN 1 AND 5),
    comment         text NOT NULL DEFAULT '',
    photo_ids       uuid[] NOT NULL DEFAULT '{}',
    UNIQUE (rep_id, client_id)
);
CREATE INDEX field_reviews_store_idx ON field_reviews (store_id, at);
