-- GET /epcis/events answers the standard's error-declaration parameters (GE_/LT_errorDeclarationTime,
-- EXISTS_errorDeclaration, EQ_errorReason, EQ_correctiveEventID). The declaration's time is kept
-- beside the body, in UTC as capture reads it (app.epcis.document.declaration_time), so a query
-- compares times, not the body's text. Events declared before this migration take theirs from the
-- body they carry (capture refused any declarationTime that is not a date-time with a time zone).
ALTER TABLE epcis_events ADD COLUMN error_declared_at timestamptz;
UPDATE epcis_events
   SET error_declared_at = upper(convert_from(body, 'UTF8')::jsonb
                                 #>> '{errorDeclaration,declarationTime}')::timestamptz
 WHERE error_declared;
