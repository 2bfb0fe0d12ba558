-- A product naming a catalogue medium by an absolute URL (its upload's ``absolute_url``,
-- ``{scheme}://{host}/media/catalog/{id}``) was not seen as using it: the medium's in-use check
-- (DELETE /media/catalog/{id}) and its unused list (GET /media/catalog?unused=true) look for the
-- path, ``/media/catalog/{id}`` — a probe deleted a medium from under the published product that
-- showed it. The catalogue now keeps such a URL as the path (app.catalog.service.own_media_paths);
-- this does the same for the products saved before, where the medium is of the product's brand
-- and of the field's kind (what the catalogue checks of a path; the id is cast only once the URL
-- is known to hold one). Whatever the URL's host: a medium's id is random, so a URL naming one
-- was made from that medium's URL. Other URLs (another brand's medium, another site's file) stay
-- as they are.
UPDATE products p
   SET image_url = '/media/catalog/' || m.id
  FROM catalog_media m, orgs o
 WHERE m.id = CASE WHEN p.image_url ~ '^https?://[^/?#[:space:]]+/media/catalog/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}([?#][^[:space:]]*)?$'
                   THEN substring(p.image_url FROM '/media/catalog/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})')::uuid END
   AND m.kind = 'image'
   AND o.id = p.org_id
   AND o.path LIKE '/' || m.brand_id || '/%';

UPDATE products p
   SET video_url = '/media/catalog/' || m.id
  FROM catalog_media m, orgs o
 WHERE m.id = CASE WHEN p.video_url ~ '^https?://[^/?#[:space:]]+/media/catalog/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}([?#][^[:space:]]*)?$'
                   THEN substring(p.video_url FROM '/media/catalog/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})')::uuid END
   AND m.kind = 'video'
   AND o.id = p.org_id
   AND o.path LIKE '/' || m.brand_id || '/%';
