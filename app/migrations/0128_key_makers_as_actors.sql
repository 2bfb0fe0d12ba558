-- Who did it, for what was done through an API key: the person who made the key
-- (``Principal.person``), as complaints, statements, redemptions and documents record it. These
-- workflows wrote the caller's user id, null for a key: a manual fraud hold read as made by the
-- ring detector (``created_by`` null) and was decided by nobody, a freeze, a draw prize handed
-- over, a campaign, a template, a rule, a gift and an acknowledged alert had nobody behind them
-- (probes). The service writes the key's maker from now on; the rows already written are
-- filled in here from the audit log, which names the acting key of each change
-- (``audit.record``: ``actor_key``), as migration 0055 did for documents.
--
-- Only where the audit log names the key for certain: the audit row of that very change — its
-- entity, id and action — written in the same transaction as the row (its ``at`` is the
-- transaction's now(), as the row's own time of the change), by a key (no user) whose maker is
-- known. A row without such an audit row (a system key's, one changed since by hand in the
-- database) keeps its null.
--
-- Not filled in: ``points_ledger.recorded_by`` (a manual adjustment, a return's take-back). The
-- ledger is append-only (its trigger ``points_ledger_append_only`` refuses every UPDATE): those
-- rows keep their null, and their audit rows (``points_entry``/``create``, with the key) still
-- say which key made each adjustment.

-- A manual hold (the ring detector's have no author: ``created_by`` null, no audit row).
UPDATE fraud_holds h SET created_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE h.rule = 'manual' AND h.created_by IS NULL
   AND l.entity = 'fraud_hold' AND l.action = 'create' AND l.entity_id = h.id::text
   AND l.at = h.created_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- A hold's decision: released or confirmed.
UPDATE fraud_holds h SET decided_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE h.state <> 'open' AND h.decided_by IS NULL
   AND l.entity = 'fraud_hold' AND l.entity_id = h.id::text
   AND l.action = CASE h.state WHEN 'released' THEN 'release' ELSE 'confirm' END
   AND l.at = h.decided_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- A member frozen now (one frozen at sign-up, carried over from an erased membership of its
-- phone, has no freeze of its own: it keeps its null).
UPDATE members m SET frozen_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE m.status = 'frozen' AND m.frozen_by IS NULL
   AND l.entity = 'member' AND l.action = 'freeze' AND l.entity_id = m.id::text
   AND l.at = m.frozen_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- A lucky draw's prize handed over, and a campaign.
UPDATE draws d SET fulfilled_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE d.fulfil_status = 'fulfilled' AND d.fulfilled_by IS NULL
   AND l.entity = 'draw' AND l.action = 'fulfil' AND l.entity_id = d.id::text
   AND l.at = d.fulfilled_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

UPDATE draw_campaigns c SET created_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE c.created_by IS NULL
   AND l.entity = 'draw_campaign' AND l.action = 'create' AND l.entity_id = c.id::text
   AND l.at = c.created_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- The rules' last change (made, or changed: ``updated_at`` is its time).
UPDATE rebate_rules r SET updated_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE r.updated_by IS NULL
   AND l.entity = 'rebate_rule' AND l.action IN ('create', 'update')
   AND l.entity_id = r.id::text
   AND l.at = r.updated_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

UPDATE point_rules r SET updated_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE r.updated_by IS NULL
   AND l.entity = 'point_rule' AND l.action IN ('create', 'update')
   AND l.entity_id = r.id::text
   AND l.at = r.updated_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- A gift, an SMS template and an SMS campaign.
UPDATE gifts g SET created_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE g.created_by IS NULL
   AND l.entity = 'gift' AND l.action = 'create' AND l.entity_id = g.id::text
   AND l.at = g.created_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

UPDATE sms_templates t SET created_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE t.created_by IS NULL
   AND l.entity = 'sms_template' AND l.action = 'sms.template.create'
   AND l.entity_id = t.id::text
   AND l.at = t.created_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

UPDATE sms_campaigns c SET created_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE c.created_by IS NULL
   AND l.entity = 'sms_campaign' AND l.action = 'sms.campaign.create'
   AND l.entity_id = c.id::text
   AND l.at = c.created_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;

-- An alert acknowledged (``acknowledge``), or closed by a verdict (``triage``, whose audit row
-- says whether that verdict closed it); one closed by the system (recovered stock) has neither.
UPDATE alerts a SET acknowledged_by = k.created_by
  FROM audit_log l JOIN api_keys k ON k.id = l.actor_key
 WHERE a.acknowledged_at IS NOT NULL AND a.acknowledged_by IS NULL
   AND l.entity = 'alert' AND l.entity_id = a.id::text
   AND (l.action = 'acknowledge'
        OR (l.action = 'triage' AND l.after ->> 'acknowledged' = 'true'))
   AND l.at = a.acknowledged_at AND l.actor_user IS NULL AND k.created_by IS NOT NULL;
