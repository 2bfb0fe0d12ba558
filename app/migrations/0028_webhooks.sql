-- Webhooks (I1, app/webhooks/): partners' endpoints, the events they receive, and each delivery
-- with its attempts.
--
-- The outbox is written by triggers, in the transaction of the change itself: a confirmed
-- document, a new alert, a rebate claim or statement, a member, a points claim, a fulfilled
-- redemption each insert a webhook_events row (only when some active subscription of the brand
-- asks for that kind), and each event one webhook_deliveries row per subscription whose
-- organisation's subtree holds one of the event's organisations. A rolled-back change sends
-- nothing; a committed one is never lost. The statement-level triggers see the statement's rows
-- as a transition table: one set-based insert per statement, nothing at all when nobody listens.
CREATE TABLE webhook_subscriptions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id        bigint NOT NULL REFERENCES orgs (id),
    org_id          bigint NOT NULL REFERENCES orgs (id),  -- receives its subtree's events
    url             text NOT NULL CHECK (length(url) BETWEEN 8 AND 2000),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    event_kinds     text[] NOT NULL CHECK (cardinality(event_kinds) > 0),
    -- the signing secret (whsec_…), sealed with AES-GCM under a key derived from the master key
    secret_sealed   bytea NOT NULL,
    -- rotation: the old secret also signs until previous_until
    previous_sealed bytea,
    previous_until  timestamptz,
    active          boolean NOT NULL DEFAULT true,
    created_by      bigint REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_subscriptions_brand ON webhook_subscriptions (brand_id) WHERE active;
CREATE INDEX webhook_subscriptions_org ON webhook_subscriptions (org_id);

CREATE TABLE webhook_events (
    id          bigserial PRIMARY KEY,
    msg_id      text NOT NULL UNIQUE DEFAULT 'msg_' || replace(gen_random_uuid()::text, '-', ''),
    brand_id    bigint NOT NULL,
    kind        text NOT NULL,
    org_ids     bigint[] NOT NULL,  -- the organisations the event concerns (scoping)
    data        jsonb NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- pending -> sending (claimed: attempts + 1) -> delivered | pending again (back-off) | dead.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_id        bigint NOT NULL REFERENCES webhook_events (id),
    state           text NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'sending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    claimed_at      timestamptz,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    replay_of       bigint REFERENCES webhook_deliveries (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_sub ON webhook_deliveries (subscription_id, created_at DESC);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

-- The delivery log: one row per HTTP attempt.
CREATE TABLE webhook_attempts (
    id          bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    status_code integer,
    latency_ms  integer NOT NULL,
    error       text
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- Each new event: one delivery per active subscription of its brand that asks for its kind
-- and whose organisation's subtree holds one of the event's organisations.
CREATE FUNCTION webhook_events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (subscription_id, event_id)
    SELECT s.id, e.id
      FROM new_events e
      JOIN webhook_subscriptions s ON s.brand_id = e.brand_id AND s.active
                                  AND e.kind = ANY (s.event_kinds)
      JOIN orgs so ON so.id = s.org_id
     WHERE EXISTS (SELECT 1 FROM orgs o
                    WHERE o.id = ANY (e.org_ids) AND o.path LIKE so.path || '%');
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_events_fan_out AFTER INSERT ON webhook_events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_events_fan_out();

-- Whether any active subscription of a brand asks for a kind (the triggers' cheap first test).
CREATE FUNCTION webhook_wanted(brand bigint, kind text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM webhook_subscriptions s
                    WHERE s.brand_id = brand AND s.active AND kind = ANY (s.event_kinds))
$$;

-- Documents: confirmed (outbound -> shipment.confirmed, inbound and factory inbound ->
-- receipt.confirmed, return -> return.confirmed), with their lines per product and lot.
CREATE FUNCTION webhook_documents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT d.brand_id, k.kind, array_remove(ARRAY[d.org_id, d.counterparty_id], NULL),
           jsonb_build_object(
               'document_id', d.id, 'doc_no', d.doc_no, 'kind', d.kind,
               'org_id', d.org_id, 'org_erp_code', o.erp_code,
               'counterparty_id', d.counterparty_id, 'counterparty_erp_code', c.erp_code,
               'order_id', d.order_id, 'shipment_id', d.shipment_id, 'doc_date', d.doc_date,
               'confirmed_at', d.confirmed_at, 'discrepancies', d.discrepancies,
               'lines', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                     'product_id', l.product_id, 'lot', l.lot,
                                     'units', l.units, 'packages', l.packages)
                                     ORDER BY l.product_id, l.lot)
                                    FROM document_lines l WHERE l.document_id = d.id), '[]'))
      FROM new_docs d
      JOIN (VALUES ('outbound', 'shipment.confirmed'), ('inbound', 'receipt.confirmed'),
                   ('factory_inbound', 'receipt.confirmed'), ('return', 'return.confirmed'))
           AS k (doc_kind, kind) ON k.doc_kind = d.kind
      JOIN orgs o ON o.id = d.org_id
      LEFT JOIN orgs c ON c.id = d.counterparty_id
     WHERE d.status = 'confirmed'
       AND NOT EXISTS (SELECT 1 FROM old_docs x WHERE x.id = d.id AND x.status = 'confirmed')
       AND webhook_wanted(d.brand_id, k.kind);
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_documents_update AFTER UPDATE ON documents
    REFERENCING OLD TABLE AS old_docs NEW TABLE AS new_docs FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_documents();

-- Alerts, when raised (a repeat of an open alert only counts on it): fake -> alert.counterfeit,
-- diversion -> alert.diversion.
CREATE FUNCTION webhook_alerts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT a.brand_id, k.kind, ARRAY[a.org_id],
           jsonb_build_object('alert_id', a.id, 'kind', a.kind, 'severity', a.severity,
                              'org_id', a.org_id, 'code_id', a.code_id, 'serial', a.serial,
                              'message', a.message, 'details', a.details, 'at', a.at)
      FROM new_alerts a
      JOIN (VALUES ('fake', 'alert.counterfeit'), ('diversion', 'alert.diversion'))
           AS k (alert_kind, kind) ON k.alert_kind = a.kind
     WHERE webhook_wanted(a.brand_id, k.kind);
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_alerts AFTER INSERT ON alerts
    REFERENCING NEW TABLE AS new_alerts FOR EACH STATEMENT EXECUTE FUNCTION webhook_alerts();

-- Rebates: a clerk's claim (rebate.claimed), a store's statement created or moved on
-- (rebate.statement, with its status).
CREATE FUNCTION webhook_rebate_claims() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT r.brand_id, 'rebate.claimed', array_remove(ARRAY[r.store_id, r.agent_id], NULL),
           jsonb_build_object('claim_id', r.id, 'code_id', r.code_id, 'store_id', r.store_id,
                              'agent_id', r.agent_id, 'clerk_id', r.clerk_id,
                              'product_id', r.product_id, 'amount', r.amount,
                              'claimed_at', r.claimed_at)
      FROM new_claims r
     WHERE webhook_wanted(r.brand_id, 'rebate.claimed');
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_rebate_claims AFTER INSERT ON rebate_claims
    REFERENCING NEW TABLE AS new_claims FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_rebate_claims();

CREATE FUNCTION webhook_rebate_statement_data(s rebate_statements) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('statement_id', s.id, 'store_id', s.store_id, 'status', s.status,
                              'period_start', s.period_start, 'period_end', s.period_end,
                              'claims', s.claims, 'amount', s.amount,
                              'payment_ref', s.payment_ref, 'reject_reason', s.reject_reason)
$$;
CREATE FUNCTION webhook_rebate_statements_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT s.brand_id, 'rebate.statement', ARRAY[s.store_id], webhook_rebate_statement_data(s)
      FROM new_statements s
     WHERE webhook_wanted(s.brand_id, 'rebate.statement');
    RETURN NULL;
END $$;
CREATE FUNCTION webhook_rebate_statements_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT s.brand_id, 'rebate.statement', ARRAY[s.store_id], webhook_rebate_statement_data(s)
      FROM new_statements s
      JOIN old_statements x ON x.id = s.id AND x.status <> s.status
     WHERE webhook_wanted(s.brand_id, 'rebate.statement');
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_rebate_statements_insert AFTER INSERT ON rebate_statements
    REFERENCING NEW TABLE AS new_statements FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_rebate_statements_new();
CREATE TRIGGER webhook_rebate_statements_update AFTER UPDATE ON rebate_statements
    REFERENCING OLD TABLE AS old_statements NEW TABLE AS new_statements FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_rebate_statements_moved();

-- Members: a sign-up (member.registered: no phone, ever), a points claim (points.claimed), a
-- redemption fulfilled at a store or by customer service (redemption.fulfilled).
CREATE FUNCTION webhook_members() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT m.brand_id, 'member.registered', ARRAY[m.brand_id],
           jsonb_build_object('member_id', m.id, 'province', m.province, 'city', m.city,
                              'registered_at', m.created_at)
      FROM new_members m
     WHERE webhook_wanted(m.brand_id, 'member.registered');
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_members AFTER INSERT ON members
    REFERENCING NEW TABLE AS new_members FOR EACH STATEMENT EXECUTE FUNCTION webhook_members();

CREATE FUNCTION webhook_point_claims() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT p.brand_id, 'points.claimed', array_remove(ARRAY[p.brand_id, p.agent_id], NULL),
           jsonb_build_object('claim_id', p.id, 'member_id', p.member_id, 'code_id', p.code_id,
                              'product_id', p.product_id, 'agent_id', p.agent_id,
                              'points', p.points, 'claimed_at', p.claimed_at)
      FROM new_claims p
     WHERE webhook_wanted(p.brand_id, 'points.claimed');
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_point_claims AFTER INSERT ON point_claims
    REFERENCING NEW TABLE AS new_claims FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_point_claims();

CREATE FUNCTION webhook_redemptions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data)
    SELECT r.brand_id, 'redemption.fulfilled',
           array_remove(ARRAY[r.brand_id, r.fulfilled_org_id], NULL),
           jsonb_build_object('redemption_id', r.id, 'member_id', r.member_id,
                              'gift_id', r.gift_id, 'gift_kind', r.gift_kind,
                              'points', r.points, 'fulfilled_at', r.fulfilled_at,
                              'fulfilled_org_id', r.fulfilled_org_id)
      FROM new_redemptions r
      JOIN old_redemptions x ON x.id = r.id AND x.status <> 'fulfilled'
     WHERE r.status = 'fulfilled' AND webhook_wanted(r.brand_id, 'redemption.fulfilled');
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_redemptions AFTER UPDATE ON redemptions
    REFERENCING OLD TABLE AS old_redemptions NEW TABLE AS new_redemptions FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_redemptions();
