-- Which master key this database's codes were made under (app.codes.keycheck): a check value,
-- HMAC-SHA256 of a fixed label under the master key's subkey "master-key-check" (never the key,
-- nor anything that finds it), recorded by the first process to serve the database. The API,
-- the workers and the CLI's commands that make codes compare theirs at start-up and refuse to
-- run on another key: every printed code answered forged to consumers under it.
CREATE TABLE master_key_check (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    value       bytea NOT NULL CHECK (octet_length(value) = 32),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
