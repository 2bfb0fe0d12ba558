-- Who confirmed a document that waits for approval (an exception outbound): its approver must
-- be a third person's eyes, neither the handler who drafted it nor the one who sent it on
-- (review R5: an admin confirmed a clerk's draft and approved it).
-- The constraint NOT VALID: every row has NULL now (no scan of the table under its lock);
-- rows written from here on, the backfill's too, are checked.
ALTER TABLE documents ADD COLUMN submitted_by bigint;
ALTER TABLE documents ADD CONSTRAINT documents_submitted_by_fkey
    FOREIGN KEY (submitted_by) REFERENCES users (id) NOT VALID;
-- The documents waiting for approval now: their confirmer from the audit log (a key's maker for
-- one confirmed with an API key). One confirmed by an older release during a rolling deploy has
-- none here; ``app.logistics.documents.decide`` asks the audit log for it then.
UPDATE documents d
   SET submitted_by = (SELECT coalesce(l.actor_user, k.created_by)
                         FROM audit_log l LEFT JOIN api_keys k ON k.id = l.actor_key
                        WHERE l.entity = 'document' AND l.entity_id = d.doc_no
                          AND l.org_id = d.org_id AND l.action = 'confirm'
                        ORDER BY l.id DESC LIMIT 1)
 WHERE d.status = 'pending_approval';
