-- Catalogue media (SPEC K1, W1): a product's image or video uploaded by the brand's office
-- (POST /media/catalog) and served to everyone at GET /media/catalog/{id} — the consumer pages
-- show them. The bytes live in the media store (as photos: a directory or an S3 bucket), the row
-- says whose and what. The same bytes uploaded again by the same brand are the same media
-- (one row per brand and digest: a retried upload keeps one object).
CREATE TABLE catalog_media (
    id           uuid PRIMARY KEY,
    brand_id     bigint NOT NULL REFERENCES orgs (id),
    kind         text NOT NULL CHECK (kind IN ('image', 'video')),
    content_type text NOT NULL CHECK (content_type IN
                     ('image/jpeg', 'image/png', 'image/webp', 'video/mp4', 'video/webm')),
    size_bytes   bigint NOT NULL CHECK (size_bytes > 0),
    sha256       bytea NOT NULL,
    storage_key  text NOT NULL UNIQUE,
    created_by   bigint REFERENCES users (id),  -- null: uploaded with an API key
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (brand_id, sha256)
);
