-- GET /epcis/events answers the standard's error-declaration parameters (GE_/LT_errorDeclarationTime,
-- EXISTS_errorDeclaration, EQ_errorReason, EQ_correctiveEventID). The declaration's time is kept
-- beside the body, in UTC as capture reads it (app.epcis.document.declaration_time), so a query
-- compares times, not the body's text. Events declared before this migration take theirs from the
-- body they carry (capture refused any declarationTime that is not a date-time with a time zone),
-- read as capture reads it: a time finer than a microsecond rounds up to the next.
ALTER TABLE epcis_events ADD COLUMN error_declared_at timestamptz;
UPDATE epcis_events e
   SET error_declared_at = upper(regexp_replace(d.sent, '(\.\d{6})\d+', '\1'))::timestamptz
                           + CASE WHEN d.sent ~ '\.\d{6}\d*[1-9]' THEN interval '1 microsecond'
                                  ELSE interval '0' END
  FROM (SELECT id, convert_from(body, 'UTF8')::jsonb #>> '{errorDeclaration,declarationTime}'
                   AS sent
          FROM epcis_events WHERE error_declared) d
 WHERE e.id = d.id;
