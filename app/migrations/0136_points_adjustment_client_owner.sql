-- A points adjustment's client id is the caller's own (probe), as a batch's request key (0090),
-- an allocation's (0033), a sale's and an inspection's client ids are: an API key's its own, a
-- user's shared by the user's organisation. It was unique per member, so the brand's CRM key and
-- a person at the brand numbering their credits alike collided: the key's "welcome-1" was
-- answered 200 with the person's entry (its credit silently dropped), or 409
-- client_id_reused for an id the key had never used.
--
-- client_owner: "key:<api key id>" or "org:<organisation id>" (``app.codes.service
-- .request_key_owner``'s owner text), set on every entry with a client id (only adjustments
-- and expiries by staff carry one). The entries kept before are attributed from the audit
-- row of their creation (``points_entry`` / ``create``): its key, else its user's organisation.
-- One the audit log does not name keeps "brand": its client id stays shared by every caller of
-- the brand, as it was (a retry by any of them is answered with it, or 409).
--
-- The ledger is append-only (0016, 0135): the triggers are disabled for this one statement,
-- inside the migration's transaction, which fills in the new column only.
ALTER TABLE points_ledger ADD COLUMN client_owner text;

ALTER TABLE points_ledger DISABLE TRIGGER points_ledger_append_only;
ALTER TABLE points_ledger DISABLE TRIGGER points_ledger_erased_reason;
UPDATE points_ledger l
   SET client_owner = coalesce(
           (SELECT CASE WHEN a.actor_key IS NOT NULL THEN 'key:' || a.actor_key
                        WHEN a.actor_user IS NOT NULL AND a.org_id IS NOT NULL
                        THEN 'org:' || a.org_id END
              FROM audit_log a
             WHERE a.entity = 'points_entry' AND a.entity_id = l.id::text
               AND a.action = 'create'
             ORDER BY a.id LIMIT 1),
           'brand')
 WHERE l.client_id IS NOT NULL;
ALTER TABLE points_ledger ENABLE TRIGGER points_ledger_append_only;
ALTER TABLE points_ledger ENABLE TRIGGER points_ledger_erased_reason;

ALTER TABLE points_ledger ADD CONSTRAINT points_ledger_client_owner_check
    CHECK ((client_id IS NULL) = (client_owner IS NULL));
DROP INDEX points_ledger_client;
CREATE UNIQUE INDEX points_ledger_client ON points_ledger (member_id, client_owner, client_id)
    WHERE client_id IS NOT NULL;
