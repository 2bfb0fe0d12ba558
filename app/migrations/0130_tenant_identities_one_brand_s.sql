-- What identifies a brand to the outside is one brand's (probes of the multi-brand platform):
--
-- 1. A WeChat app id is one brand's account. An app id is public (every OAuth redirect of a
--    brand's sign-in page shows it): brand B saved brand A's with a made-up secret, and B's
--    template messages went out as A's service account (``app.wechat.account.put_account`` now
--    answers 409 ``wechat_app_id_taken``; this index decides two saves at once).
--
--    App ids stored twice already: the OLDEST account keeps it (created first, then the lower
--    brand id) — the brand that connected the app first is the one most likely to own it, and
--    a later one, saved by a tenant's admin with another brand's app id, is what the probe
--    showed. The later accounts are removed, as ``DELETE /wechat/account`` removes one (their
--    members' bindings stay; their messages not yet sent fail "the brand has no enabled WeChat
--    account"), each with an audit row naming this migration, so that their brand's staff see
--    why and set their own app id again.
--
-- 2. A brand's name is one brand's. It is the brand's face to consumers — every H5 page shows
--    it, every SMS of the brand is signed with it — and a tenant's admin renamed its brand to
--    another's exact name (``app.orgs.service._check_brand_name`` now answers 409
--    ``duplicate_brand_name``, under a lock). Names compare without blanks at either end and
--    in any case (``app.orgs.service.BRAND_NAME_KEY``: the index's expression below must stay
--    written alike).
--
--    Brands already sharing a name are not renamed (a name is the operator's and the brand's
--    to choose, not a migration's): the index always exists, and leaves out, by id, each such
--    brand but the oldest of its name. The oldest's name is then held by the index against
--    every new brand or rename; the ones left out are checked by the service's lock alone.

WITH removed AS (
    DELETE FROM wechat_accounts a
     USING wechat_accounts keeper
     WHERE keeper.app_id = a.app_id
       AND (keeper.created_at, keeper.brand_id) < (a.created_at, a.brand_id)
    RETURNING a.brand_id, a.app_id, a.templates, a.enabled
)
INSERT INTO audit_log (org_id, action, entity, entity_id, before, after)
SELECT brand_id, 'delete', 'wechat_account', brand_id::text,
       jsonb_build_object('app_id', app_id, 'templates', templates, 'enabled', enabled,
                          'secret_set', true),
       jsonb_build_object('by', 'migration 0130',
                          'reason', 'the app id is an older account''s of another brand')
  FROM removed;

CREATE UNIQUE INDEX wechat_accounts_app_id_uq ON wechat_accounts (app_id);

DO $$
DECLARE
    later bigint[];
BEGIN
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO later
      FROM (SELECT id, row_number() OVER (
                       PARTITION BY lower(regexp_replace(name,
                           '^[\s\u00a0\u3000\u200b-\u200f\u2060\ufeff]+|[\s\u00a0\u3000\u200b-\u200f\u2060\ufeff]+$',
                           '', 'g'))
                       ORDER BY created_at, id) AS nth
              FROM orgs WHERE kind = 'brand') AS named
     WHERE nth > 1;
    IF cardinality(later) > 0 THEN
        RAISE NOTICE 'brands sharing a name with an older brand, left out of orgs_brand_name_uq: %',
            later;
    END IF;
    EXECUTE $sql$CREATE UNIQUE INDEX orgs_brand_name_uq
               ON orgs ((lower(regexp_replace(name,
                   '^[\s\u00a0\u3000\u200b-\u200f\u2060\ufeff]+|[\s\u00a0\u3000\u200b-\u200f\u2060\ufeff]+$',
                   '', 'g'))))
               WHERE kind = 'brand'$sql$
        || CASE WHEN cardinality(later) > 0
                THEN format(' AND id <> ALL (%L::bigint[])', later) ELSE '' END;
END
$$;
