-- Delivery reports that came before their message was recorded as sent: the sender writes
-- `sent` and the gateway's message id only once the gateway has answered for the whole batch it
-- claimed, and a fast gateway's report can arrive in between (a probe: it was answered
-- "unknown" and dropped, and an undelivered message stayed `sent` for ever). Held here, applied
-- by the sender as it records the message sent; held ones older than a day are dropped.
CREATE TABLE sms_early_reports (
    provider    text NOT NULL,
    message_id  text NOT NULL,
    status      text NOT NULL CHECK (status IN ('delivered', 'undelivered')),
    error       text,
    at          timestamptz NOT NULL, -- the report's own time when plausible, else its arrival
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, message_id)
);
CREATE INDEX sms_early_reports_received ON sms_early_reports (received_at);
