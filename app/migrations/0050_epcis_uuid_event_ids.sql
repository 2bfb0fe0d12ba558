-- A ``urn:uuid:`` eventID is now kept in lower case (probe Q: the same UUID sent again in
-- capitals was stored as a second event; ``app.epcis.identifiers.event_key``), and looked up in
-- lower case. Events stored before in capitals would be found by no spelling, stored again
-- when their document is sent again, and not declared erroneous by an errorDeclaration
-- (review R3): they are lowered too, the first of each spelling of one UUID. Where the capture
-- kept several spellings as several events, the others stay as they are (the lower one answers
-- for the eventID from now on).
UPDATE epcis_events e
   SET event_id = lower(e.event_id)
  FROM (SELECT DISTINCT ON (lower(event_id), brand_id, org_id) id
          FROM epcis_events
         WHERE event_id ILIKE 'urn:uuid:%' AND event_id <> lower(event_id)
         ORDER BY lower(event_id), brand_id, org_id, id) first
 WHERE e.id = first.id
   AND NOT EXISTS (SELECT 1 FROM epcis_events o
                    WHERE o.event_id = lower(e.event_id)
                      AND o.brand_id = e.brand_id AND o.org_id = e.org_id);
