-- Alert triage (SPEC B6): a verdict per alert — true or false positive, with a note, who and
-- when — and every verdict ever given (the history the evidence packs quote). The alerts table
-- itself is untouched: one row here per alert triaged (its primary key), so two people marking
-- at once leave one final verdict and the precision figures (app/triage/precision.py) count each
-- alert once, whatever the race; a change of verdict replaces the row (``revision`` + 1) and
-- appends to the history.
CREATE TABLE alert_verdicts (
    alert_id    bigint PRIMARY KEY REFERENCES alerts (id) ON DELETE CASCADE,
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    verdict     text NOT NULL CHECK (verdict IN ('true_positive', 'false_positive')),
    note        text NOT NULL,
    decided_by  bigint REFERENCES users (id),      -- the person (an API key's maker)
    decided_key bigint,                            -- the API key, when one made the call
    decided_at  timestamptz NOT NULL DEFAULT now(),
    revision    integer NOT NULL DEFAULT 1 CHECK (revision >= 1)
);
-- the precision report reads a brand's verdicts by alert
CREATE INDEX alert_verdicts_brand_idx ON alert_verdicts (brand_id, alert_id);

-- Append-only: each verdict as it was given (the current one is also alert_verdicts's row).
CREATE TABLE alert_verdict_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    revision    integer NOT NULL,
    verdict     text NOT NULL CHECK (verdict IN ('true_positive', 'false_positive')),
    note        text NOT NULL,
    decided_by  bigint REFERENCES users (id),
    decided_key bigint,
    decided_at  timestamptz NOT NULL,
    UNIQUE (alert_id, revision)
);
