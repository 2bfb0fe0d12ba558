-- An erasure (app.members.erasure) rewrites the phone of the member's SMS to a tombstone, and
-- the throttles counted the outbox's rows by phone: one sign-in code a minute and ten a day per
-- phone, one marketing message per brand and phone per interval (app.sms.outbox). A probe asked
-- for a code, signed in, erased the membership and asked again: 4 codes in seconds. The erasure
-- now keeps, on its rows the throttles still read (sign-in codes of the last day, marketing of
-- the last SMS_MARKETING_INTERVAL_HOURS), a keyed hash of the phone — HMAC-SHA256 under
-- Settings.subkey("sms-erased-phone"), a key the database never holds — and the throttles count
-- a phone's rows by the phone or by that hash. The retention sweep clears the hash once those
-- windows are over (app.retention). Rows before this migration have none (NULL): only erased
-- rows ever hold one, a small partial index serves the throttles' lookup and the sweep.
ALTER TABLE sms_outbox ADD COLUMN phone_hash bytea CHECK (octet_length(phone_hash) = 32);
CREATE INDEX sms_outbox_phone_hash ON sms_outbox (phone_hash, created_at)
    WHERE phone_hash IS NOT NULL;
