-- A mainland mobile typed with brackets, dots or a spaced "+ 86" (a staff user's phone, an
-- opt-out entered so) was kept by the SMS code with its country code: "86" + the mobile, or
-- "0086" + it (app.sms.outbox.outbox_phone before this release). An opt-out of the mobile
-- missed such a row, and a "TD" reply found no brand. Such a form is always the mobile (86 is
-- China's code): it becomes the mobile as members store it, and a brand's opt-out is kept once.
INSERT INTO sms_opt_outs (brand_id, phone, source, at)
SELECT DISTINCT ON (brand_id, right(phone, 11)) brand_id, right(phone, 11), source, at
  FROM sms_opt_outs
 WHERE phone ~ '^(00)?861[3-9][0-9]{9}$'
 ORDER BY brand_id, right(phone, 11), at
ON CONFLICT (brand_id, phone) DO NOTHING;

DELETE FROM sms_opt_outs WHERE phone ~ '^(00)?861[3-9][0-9]{9}$';

UPDATE sms_outbox SET phone = right(phone, 11) WHERE phone ~ '^(00)?861[3-9][0-9]{9}$';
