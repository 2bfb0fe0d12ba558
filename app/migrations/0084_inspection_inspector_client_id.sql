-- An inspector's scan client ids are the inspector's own, whatever organisation the inspector is
-- in (app.inspect.service.client_scope), as a field check-in's are its rep's (rep_id, client_id).
-- They were keyed by the inspector's organisation too (0009): after a move by the user import, a
-- re-sent queued scan was recorded a second time (or refused 422 unknown_store, and the app
-- dropped a scan the server holds) (probe). API keys keep theirs per key (0064); a key's scan
-- has no inspector, and the organisation stays in its lookup only.
--
-- A user's scans recorded twice under one client id before this migration: the first keeps the
-- client id (a re-send answers it); the later ones stay in the log (their records, events and
-- summary deltas are history) but lose the client id and its fingerprint, so they are answered
-- to no re-send.
UPDATE inspection_scans s SET client_id = NULL, client_hash = NULL
 WHERE s.inspector_id IS NOT NULL AND s.client_id IS NOT NULL
   AND EXISTS (SELECT 1 FROM inspection_scans f
                WHERE f.inspector_id = s.inspector_id AND f.client_id = s.client_id
                  AND f.id < s.id);

CREATE UNIQUE INDEX inspection_scans_inspector_client_idx
    ON inspection_scans (inspector_id, client_id)
    WHERE inspector_id IS NOT NULL AND client_id IS NOT NULL;
-- the new index is stricter for users; for keys (inspector_id NULL) the old key never applied
ALTER TABLE inspection_scans
    DROP CONSTRAINT inspection_scans_inspector_org_id_inspector_id_client_id_key;
