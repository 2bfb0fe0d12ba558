-- A brand's name is compared as it shows (a probe: the platform operator made brands named as the
-- demo brand "Lumière Cosmetics 丽美化妆品" shows, written with a decomposed "e" and U+0301, a
-- zero-width space inside, a no-break or an ideographic space between the words — each a new
-- brand signing its SMS and heading its H5 pages with the demo brand's name; migration 0130's
-- key only trimmed blanks at the ends and lowered the case).
--
-- ``brand_name_key(name)`` is the name as brands are told apart:
--   1. without the characters that show nothing themselves (``app.textguard.FORMAT`` and
--      ``MARKS``: the format characters but the prepended concatenation marks, the combining
--      grapheme joiner, the variation selectors, the tags, U+17B4, U+17B5), anywhere;
--   2. in Unicode NFKC (a decomposed accent as the composed one, the fullwidth and compatibility
--      forms as the plain ones), lower case;
--   3. each run of blanks (``app.textguard.SPACES``: Unicode whitespace, the Hangul fillers, the
--      braille blank) one space, none at either end.
-- Its character classes are written as app/textguard.py writes them (tests/test_textguard.py
-- compares the two, character by character). ``app.orgs.service._check_brand_name`` asks the
-- function itself, and the unique index below is on it: the check and the index cannot differ.
--
-- The index replaces 0130's (same name, ``orgs_brand_name_uq``: 409 ``duplicate_brand_name``).
-- Brands whose names become one by the new key are not renamed (a name is the operator's and the
-- brand's to choose, not a migration's): as 0130 did, the index leaves out, by id, each such
-- brand but the oldest of its key (the ids are in the migration's NOTICE; README "Organisations"
-- says what an operator does about them).

CREATE FUNCTION brand_name_key(name text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN btrim(
    regexp_replace(
        lower(normalize(
            regexp_replace(
                name,
                '[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\u034f\u17b4\u17b5\u180b-\u180d\u180f\ufe00-\ufe0f\U000e0020-\U000e007f\U000e0100-\U000e01ef]+',
                '', 'g'),
            NFKC)),
        '[\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u115f\u1160\u2800\u3164\uffa0]+',
        ' ', 'g'),
    ' ');

DROP INDEX orgs_brand_name_uq;

DO $$
DECLARE
    later bigint[];
BEGIN
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO later
      FROM (SELECT id, row_number() OVER (PARTITION BY brand_name_key(name)
                                          ORDER BY created_at, id) AS nth
              FROM orgs WHERE kind = 'brand') AS named
     WHERE nth > 1;
    IF cardinality(later) > 0 THEN
        RAISE NOTICE 'brands whose names show as an older brand''s, left out of orgs_brand_name_uq (rename them: PATCH /orgs/{id}): %',
            later;
    END IF;
    EXECUTE 'CREATE UNIQUE INDEX orgs_brand_name_uq ON orgs (brand_name_key(name))' ||
            ' WHERE kind = ''brand'''
        || CASE WHEN cardinality(later) > 0
                THEN format(' AND id <> ALL (%L::bigint[])', later) ELSE '' END;
END
$$;
