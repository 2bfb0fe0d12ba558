-- Catalogue media listed to their brand (GET /media/catalog): each with the products naming it,
-- and a filter for those no product names (a medium uploaded in the product dialog and never
-- saved on a product). A product names a medium by its path in image_url or video_url; these
-- look the path up instead of reading every product for each medium (and serve DELETE's in_use
-- check too). Hash indexes: equality is all that is asked, and a URL of any length fits one (a
-- B-tree entry is limited to about 2.7 kB, and a product's URL has no length limit of its own).
CREATE INDEX products_image_url_hash ON products USING hash (image_url);
CREATE INDEX products_video_url_hash ON products USING hash (video_url);
