-- Dead letters: a record a write-behind queue, an outbox roll-up or a job could not write or
-- process (issue 13). It is set aside here with the reason, so it never blocks the records
-- behind it; /health and /metrics count them per queue. ``payload`` is bytea: it holds the
-- record exactly as it was queued, whatever it contains (even what text or jsonb cannot).
CREATE TABLE dead_letters (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue   text NOT NULL,
    payload bytea NOT NULL,
    reason  text NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_queue_idx ON dead_letters (queue, at);
