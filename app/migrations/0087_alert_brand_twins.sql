-- One webhook delivery per finding (probe): an inspection's finding (a diverted unit, a case,
-- a counterfeit of an agent's goods) raises two alerts, the brand's and the agent's the goods
-- were shipped to (app/inspect/service.py: _alerts), so that each sees it in GET /alerts. The
-- webhook_alerts trigger (0028) made each alert row an event, and webhook_events_fan_out
-- (0028, 0047) sends an event to every subscription at or above its organisation: the brand's
-- alert.diversion subscription got both, two deliveries for one scan (its ERP opened two
-- tickets).
--
-- The rule, in the trigger and the fan-out (the one place every alert goes through): the
-- agent's alert is marked as the brand alert's twin (``alerts.brand_twin``, set by whoever
-- raises the pair; the inspections are the only ones: verification, rebate-claim diversion and
-- low-stock alerts are raised once, for one organisation), and its event does not go to the
-- brand's own subscriptions (``webhook_events.to_brand``), which receive the brand's alert. So
-- a brand's subscription gets one delivery per finding, an agent's subscription (and any
-- between it and the brand) its own alert's, as before. Which of the two is new does not
-- matter: an acknowledged alert found again is raised again, an open one only counts, and
-- each subscription hears of exactly the alert its organisation has. An alert raised only for
-- an organisation below the brand (no twin) still reaches the brand's subscriptions.
ALTER TABLE alerts ADD COLUMN brand_twin boolean NOT NULL DEFAULT false;
ALTER TABLE webhook_events ADD COLUMN to_brand boolean NOT NULL DEFAULT true;

CREATE OR REPLACE FUNCTION webhook_alerts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data, to_brand)
    SELECT a.brand_id, k.kind, ARRAY[a.org_id],
           jsonb_build_object('alert_id', a.id, 'kind', a.kind, 'severity', a.severity,
                              'org_id', a.org_id, 'code_id', a.code_id, 'serial', a.serial,
                              'message', a.message, 'details', a.details, 'at', a.at),
           NOT a.brand_twin
      FROM new_alerts a
      JOIN (VALUES ('fake', 'alert.counterfeit'), ('diversion', 'alert.diversion'))
           AS k (alert_kind, kind) ON k.alert_kind = a.kind
     WHERE webhook_wanted(a.brand_id, k.kind);
    RETURN NULL;
END $$;

-- As 0047's, and an event not for the brand's own subscriptions skips them (the brand is the
-- root of its tree: its subscriptions are those naming it).
CREATE OR REPLACE FUNCTION webhook_events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (subscription_id, event_id)
    SELECT s.id, e.id
      FROM new_events e
      JOIN webhook_subscriptions s ON s.brand_id = e.brand_id AND s.active
                                  AND e.kind = ANY (s.event_kinds)
                                  AND (e.to_brand OR s.org_id <> e.brand_id)
      JOIN orgs so ON so.id = s.org_id
     WHERE EXISTS (SELECT 1 FROM orgs o
                    WHERE o.id = ANY (e.org_ids) AND o.path LIKE so.path || '%')
       AND webhook_may_receive(s.id);
    RETURN NULL;
END $$;
