-- A till's retried refusal counts once (probe): a refused rebate claim (422 wrong_store,
-- wrong_agent, not_delivered) sent again by the till under the same client id — its network
-- dropped the answer — added a refusal and bumped the unit's diversion alert each time, as if
-- the store had tried three times. A refusal keeps the claim's client id; the same clerk, client
-- id and code again is the same attempt (app/rebates/claims.py: _REFUSALS, ON CONFLICT DO
-- NOTHING): answered again, neither kept nor counted. The code is part of the key: a till that
-- reuses a client id for another unit it should not sell still leaves that unit's signal.
-- NULL on the refusals kept before (none of them is recognised as a retry).
ALTER TABLE rebate_refusals ADD COLUMN client_id text;
CREATE UNIQUE INDEX rebate_refusals_attempt ON rebate_refusals (clerk_id, client_id, code_id)
    WHERE client_id IS NOT NULL;
