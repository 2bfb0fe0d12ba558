-- Dead letters made before two fixes of a probe lose what those fixes keep out of new ones.
--
-- * A failed SMS's copy (queue sms_outbox, app.sms.sender) was the whole row: with it the keyed
--   hash of an erased member's phone (migration 0126) that the retention sweep clears from the
--   row once the throttles' windows are over, and that nothing cleared from the copy. The copy
--   is made with a null hash now; the old ones get one, edited in their text (row_to_json's
--   form kept: the erasure reads a copy's id from its first bytes).
-- * A letter's reason was PostgreSQL's whole error, whose DETAIL and CONTEXT lines quote the
--   refused record (a client's address, a phone, "Failing row contains (...)"): the retention
--   and the erasure cleared the payload and kept the reason. A reason is the error's first line
--   now (app.deadletters.reason_of); the old reasons of the two queues the retention clears are
--   cut the same way — each line after the first, and what follows a DETAIL, HINT, QUERY,
--   CONTEXT, LOCATION or STATEMENT label on the first (a reason whose line breaks a control
--   character had made spaces) — keeping the note the sweep or the erasure added.

UPDATE dead_letters
   SET payload = convert_to(regexp_replace(convert_from(payload, 'UTF8'),
                                           '"phone_hash": ?"[^"]*"', '"phone_hash":null'),
                            'UTF8')
 WHERE queue = 'sms_outbox' AND position('"phone_hash":'::bytea IN payload) > 0
   AND convert_from(payload, 'UTF8') ~ '"phone_hash": ?"';

WITH cut AS (
    SELECT id, reason,
           rtrim(regexp_replace(split_part(reason, E'\n', 1),
                                '\s(DETAIL|HINT|QUERY|CONTEXT|LOCATION|STATEMENT):\s.*', ''))
             AS line
      FROM dead_letters WHERE queue IN ('verifications', 'sms_outbox')
), noted AS (
    SELECT id, reason, line,
           CASE WHEN reason LIKE '% (personal data cleared: past its retention)'
                     AND line NOT LIKE '% (personal data cleared: past its retention)'
                THEN ' (personal data cleared: past its retention)'
                WHEN reason LIKE '% (payload removed: its member was erased)'
                     AND line NOT LIKE '% (payload removed: its member was erased)'
                THEN ' (payload removed: its member was erased)'
                ELSE '' END AS note
      FROM cut
)
UPDATE dead_letters d SET reason = left(n.line || n.note, 2000)
  FROM noted n
 WHERE d.id = n.id AND n.line || n.note <> n.reason;
