-- A member's freeze and unfreeze were audited with the reasons staff wrote (a phone rung, a name,
-- an address): the audit log, which no erasure clears, kept them after the erasure had wiped the
-- member's `frozen_reason` (a probe). app.members.admin and app.members.freezes now record only
-- whether a reason was given (`reasoned`); the rows written before lose the words the same way,
-- as migration 0122 took the client details out of the holds' audit rows.
UPDATE audit_log
   SET before = CASE WHEN jsonb_typeof(before) = 'object' AND before ? 'reason'
                     THEN (before - 'reason')
                          || jsonb_build_object('reasoned',
                                                jsonb_typeof(before -> 'reason') = 'string')
                     ELSE before END,
       after = CASE WHEN jsonb_typeof(after) = 'object' AND after ? 'reason'
                    THEN (after - 'reason')
                         || jsonb_build_object('reasoned',
                                               jsonb_typeof(after -> 'reason') = 'string')
                    ELSE after END
 WHERE entity = 'member' AND action IN ('freeze', 'unfreeze')
   AND (jsonb_typeof(before) = 'object' AND before ? 'reason'
        OR jsonb_typeof(after) = 'object' AND after ? 'reason');
