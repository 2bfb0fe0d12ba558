-- Who did it, for what was done through an API key: the person who made the key
-- (``Principal.person``), as migration 0128 began. These wrote the caller's user id, null for a
-- key, in a column that names who did it and has no ``api_key_id`` beside it (probes): a batch
-- voided by nobody (``code_batches.voided_by``: the batch's ``api_key_id`` is its issuer's), a
-- code pool, a printer-file export, a webhook subscription, an order and a catalogue medium made
-- by nobody, a packing line set by nobody, a sale made at a till's key with no handler. The
-- service writes the key's maker from now on; the rows already written are filled in here.
--
-- From the audit log only where it is sure, as 0128: the audit row of that very change — its
-- entity, id and action — written in the same transaction as the row (its ``at`` is the
-- transaction's now(), as the row's own time of the change), by a key (no user) whose maker is
-- known. A row without such an audit row (a system key's, one changed since) keeps its null. A
-- sale names its key on its own row (``documents.api_key_id``): its handler is that key's maker.
--
-- Not filled in, their nulls kept:
-- * ``events.recorded_by`` (an inspection's, a void's decommissioning and unpacking, a line's
--   commissioning and packing, an unpacking, a replacement, a till's sale and a consumer
--   return): the event log is hash-chained (``app.chain``: every field of an event is hashed,
--   ``recorded_by`` among them); a change would break the chain and every anchor signed over
--   it. New events name the key's maker; the audit log still names the key of the old ones.
-- * ``points_ledger.recorded_by`` of an erasure's forfeited balance (``expiry``): the ledger is
--   append-only (``points_ledger_append_only``), as 0128 left its adjustments.

-- A batch voided (the issuer stays as it is: ``created_by`` beside ``api_key_id``).
UPDATE code_batches b SET voided_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE b.state = 'void' AND b.voided_by IS NULL
   AND l.entity = 'code_batch' AND l.action = 'void' AND l.entity_id = b.batch_no::text
   AND l.at = b.voided_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- A code pool and a printer-file export.
UPDATE code_pools p SET created_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE p.created_by IS NULL
   AND l.entity = 'code_pool' AND l.action = 'create' AND l.entity_id = p.id::text
   AND l.at = p.created_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

UPDATE code_exports e SET created_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE e.created_by IS NULL
   AND l.entity = 'code_export' AND l.action = 'create' AND l.entity_id = e.id::text
   AND l.at = e.created_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- A webhook subscription and an order.
UPDATE webhook_subscriptions s SET created_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE s.created_by IS NULL
   AND l.entity = 'webhook_subscription' AND l.action = 'create' AND l.entity_id = s.id::text
   AND l.at = s.created_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

UPDATE orders o SET created_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE o.created_by IS NULL
   AND l.entity = 'order' AND l.action = 'create' AND l.entity_id = o.id::text
   AND l.at = o.created_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- A packing line's context, as last set (``updated_at`` is its time).
UPDATE lines n SET updated_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE n.updated_by IS NULL
   AND l.entity = 'line' AND l.action = 'set_context' AND l.entity_id = n.id::text
   AND l.at = n.updated_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- A catalogue medium (``created_by`` null read "uploaded with an API key": now its maker).
UPDATE catalog_media m SET created_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE m.created_by IS NULL
   AND l.entity = 'catalog_media' AND l.action = 'upload' AND l.entity_id = m.id::text
   AND l.at = m.created_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- A sale made through a key (``POST /sales``): its handler, as another document's, is the key's
-- maker. A claim's sale (no key) keeps what it has.
UPDATE documents d SET handler_id = k.created_by
  FROM api_keys k
 WHERE d.kind = 'sale' AND d.handler_id IS NULL AND d.created_by IS NULL
   AND k.id = d.api_key_id AND k.created_by IS NOT NULL;
