-- redemption.fulfilled (migration 0028) was one event for the brand and the fulfilling
-- organisation together (org_ids [brand, fulfilled_org_id]) with member_id: the store's
-- subscriptions — and its agent's, which receive what is at and below them — were told the
-- member behind every gift the store handed out, though members are the brand head office's
-- ("Who sees members": staff below the brand see none). Now two events per fulfilment, as
-- points.claimed's (0092): the brand's (org_ids [brand], with member_id) and the fulfilling
-- organisation's (org_ids [fulfilled_org_id], ``to_brand`` false: the subscriptions at and above
-- it but not the brand's own) without member_id — when a store or another organisation below
-- the brand fulfilled it. Each receiver gets one event per fulfilment.
CREATE OR REPLACE FUNCTION webhook_redemptions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (brand_id, kind, org_ids, data, to_brand)
    SELECT r.brand_id, 'redemption.fulfilled',
           ARRAY[CASE WHEN t.to_brand THEN r.brand_id ELSE r.fulfilled_org_id END],
           jsonb_build_object('redemption_id', r.id, 'gift_id', r.gift_id,
                              'gift_kind', r.gift_kind, 'points', r.points,
                              'fulfilled_at', r.fulfilled_at,
                              'fulfilled_org_id', r.fulfilled_org_id)
           || CASE WHEN t.to_brand THEN jsonb_build_object('member_id', r.member_id)
                   ELSE '{}'::jsonb END,
           t.to_brand
      FROM new_redemptions r
      JOIN old_redemptions x ON x.id = r.id AND x.status <> 'fulfilled'
      JOIN (VALUES (true), (false)) AS t (to_brand)
        ON t.to_brand OR r.fulfilled_org_id <> r.brand_id  -- the fulfiller's: when below the brand
     WHERE r.status = 'fulfilled' AND webhook_wanted(r.brand_id, 'redemption.fulfilled')
     ORDER BY r.id, t.to_brand DESC;
    RETURN NULL;
END $$;
