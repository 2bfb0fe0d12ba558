-- A mainland mobile written with the trunk 0 ("0137…", "+86 (0)137…") or with the odd "+0086" or
-- "086" in front was no mobile to the SMS code before this release: app.sms.outbox.outbox_phone
-- kept its digits ("0137…", "86013…", "008613…", "08613…", "086013…"). It is the mobile now
-- (app.members.phones._WRITTEN), so such a row matched nothing any more: an opt-out of it no
-- longer stopped a campaign to the mobile, a "TD" to a message sent under it found no brand, and
-- staff could not take the opt-out off the list (every spelling of it is the mobile now). Each
-- stored form the new rule reads as a mobile — a country code (0086, 086, 86) and the trunk 0,
-- either or both, before "1[3-9]" and nine more digits — becomes the mobile as members store it;
-- a brand's opt-out is kept once (the first), and a member of the phone is switched off as the
-- list says (migration 0139). A foreign number (kept with its "00" + country code, as
-- "0013955550142") reads as no such form and is left alone.
INSERT INTO sms_opt_outs (brand_id, phone, source, at)
SELECT DISTINCT ON (brand_id, right(phone, 11)) brand_id, right(phone, 11), source, at
  FROM sms_opt_outs
 WHERE phone ~ '^((0086|086|86)0?|0)1[3-9][0-9]{9}$'
 ORDER BY brand_id, right(phone, 11), at
ON CONFLICT (brand_id, phone) DO NOTHING;

UPDATE members m SET marketing_opt_out = true
  FROM sms_opt_outs o
 WHERE o.phone ~ '^((0086|086|86)0?|0)1[3-9][0-9]{9}$'
   AND o.brand_id = m.brand_id AND m.phone = right(o.phone, 11)
   AND NOT m.marketing_opt_out AND m.status <> 'erased';

DELETE FROM sms_opt_outs WHERE phone ~ '^((0086|086|86)0?|0)1[3-9][0-9]{9}$';

UPDATE sms_outbox SET phone = right(phone, 11) WHERE phone ~ '^((0086|086|86)0?|0)1[3-9][0-9]{9}$';
