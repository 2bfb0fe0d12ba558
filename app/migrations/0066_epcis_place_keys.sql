-- Captured readPoint and bizLocation ids are stored canonical from now on
-- (app.epcis.identifiers.place_key): an SGLN URN and its GS1 Digital Link are one place, so
-- EQ_readPoint / EQ_bizLocation find it in either spelling. The query also compares the values
-- as sent, so rows this leaves as they were still match what they were sent as. This brings the
-- common form of earlier rows, an SGLN URN with a plain extension, to its Digital Link.
CREATE FUNCTION pg_temp.sgln_key(uri text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN m IS NULL OR length(m[1] || m[2]) <> 12 THEN uri
        ELSE 'https://id.gs1.org/414/' || m[1] || m[2]
            || ((10 - (SELECT sum(substr(m[1] || m[2], i, 1)::int * (1 + 2 * (1 - i % 2)))
                       FROM generate_series(1, 12) AS i) % 10) % 10)::text
            || CASE WHEN m[3] = '0' THEN '' ELSE '/254/' || m[3] END
    END
    FROM (SELECT regexp_match(uri, '^urn:epc:id:sgln:([0-9]{6,12})\.([0-9]{0,6})\.([A-Za-z0-9]{1,20})$') AS m) AS s
$$;

UPDATE epcis_events
SET read_point = pg_temp.sgln_key(read_point), biz_location = pg_temp.sgln_key(biz_location)
WHERE read_point LIKE 'urn:epc:id:sgln:%' OR biz_location LIKE 'urn:epc:id:sgln:%';
