-- An SMS's variables are always a JSON object of texts (app.sms.outbox writes them so). A row
-- holding an array, a scalar or null (written by hand, or by a future bug) stopped the sender's
-- sweeps: the claim of a batch failed after it was committed, and the wipe of the secrets
-- (`variables - text[]`) fails on a scalar, so one row kept every campaign from going out.
-- Existing such rows are failed (nothing renderable is in them); new ones are refused.
UPDATE sms_outbox
   SET variables = '{}',
       state = CASE WHEN state IN ('pending', 'sending') THEN 'failed' ELSE state END,
       last_error = coalesce(last_error, 'variables were not a JSON object')
 WHERE jsonb_typeof(variables) <> 'object';
ALTER TABLE sms_outbox
    ADD CONSTRAINT sms_outbox_variables_object CHECK (jsonb_typeof(variables) = 'object');
UPDATE sms_campaigns SET variables = '{}' WHERE jsonb_typeof(variables) <> 'object';
ALTER TABLE sms_campaigns
    ADD CONSTRAINT sms_campaigns_variables_object CHECK (jsonb_typeof(variables) = 'object');
