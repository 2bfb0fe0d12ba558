-- The brand story (品牌介绍, seed 1.10.1/1.10.2, SPEC W1): one per brand, written by its staff
-- (`content.write`, PUT /brand-story) and shown on the phone site (/brand/story). `html` is kept
-- as the allow-list sanitiser left it (app.content.sanitise), never as typed. `version` counts
-- the saves: a save names the version it was made from, and one made from an older version is
-- 409 `story_changed` (two editors never overwrite each other unseen).
CREATE TABLE brand_stories (
    brand_id    bigint PRIMARY KEY REFERENCES orgs (id),
    title       text NOT NULL DEFAULT '' CHECK (length(title) <= 100),
    html        text NOT NULL DEFAULT '' CHECK (length(html) <= 200000),  -- story.KEPT_MAX
    version     integer NOT NULL CHECK (version >= 1),
    updated_by  bigint REFERENCES users (id),  -- the user, or the maker of the API key
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The phone site's product list: a brand's published products in display order.
CREATE INDEX products_published_order_idx ON products (display_order, id) WHERE published;
