-- B5: leaked print files and code packs (app/forensics/leaks.py); reward-fraud holds
-- (app/forensics/holds.py, app/forensics/rings.py). alerts.kind has no CHECK: the new kind
-- ``leaked_file`` needs no change there.

-- A suspicious verification attributed to the export (printer files) or the allocation (a line
-- system's or partner's code pack) whose range held its code: once per source and verification
-- (the detector run twice, or two at once, finds each once).
CREATE TABLE leak_findings (
    source_kind     text NOT NULL CHECK (source_kind IN ('export', 'allocation')),
    source_id       uuid NOT NULL,            -- code_exports.id or code_allocations.id
    verification_at timestamptz NOT NULL,
    verification_id bigint NOT NULL,
    brand_id        bigint NOT NULL REFERENCES orgs (id),
    code_id         bigint NOT NULL,
    serial          text,
    -- not_activated: verified before (or without) its activation on a line; never_shipped:
    -- activated, not yet shipped; out_of_region: verified in a province its batch never went to
    signal          text NOT NULL CHECK (signal IN ('not_activated', 'never_shipped',
                                                    'out_of_region')),
    pin_given       boolean NOT NULL,         -- a PIN was entered: the inner file too
    province        text,
    found_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_kind, source_id, verification_at, verification_id)
);
CREATE INDEX leak_findings_brand_idx ON leak_findings (brand_id, source_kind, source_id);

-- How far the leak detector has read the verifications (one row; a run reads from a little
-- before it: records are flushed behind).
CREATE TABLE forensics_marks (
    name        text PRIMARY KEY,
    scanned_to  timestamptz NOT NULL
);

-- A party (a member, or a store clerk) on hold: its claims still consume their codes but
-- credit nothing until a reviewer releases the hold (then credited, once) or confirms it
-- (rejected). One open hold per party: the claim rounds look it up by the partial unique index.
CREATE TABLE fraud_holds (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    brand_id    bigint NOT NULL REFERENCES orgs (id),
    party_kind  text NOT NULL CHECK (party_kind IN ('member', 'clerk')),
    party_id    bigint NOT NULL,              -- members.id or users.id
    rule        text NOT NULL CHECK (rule IN ('shared_device', 'distant_stores',
                                              'verified_elsewhere', 'manual')),
    evidence    jsonb NOT NULL DEFAULT '{}',
    note        text NOT NULL DEFAULT '',
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'released', 'confirmed')),
    created_by  bigint REFERENCES users (id),  -- NULL: the ring detector
    created_at  timestamptz NOT NULL DEFAULT now(),
    decided_by  bigint REFERENCES users (id),
    decided_at  timestamptz,
    CHECK ((state = 'open') = (decided_at IS NULL))
);
CREATE UNIQUE INDEX fraud_holds_open_idx ON fraud_holds (party_kind, party_id)
    WHERE state = 'open';
CREATE INDEX fraud_holds_brand_idx ON fraud_holds (brand_id, created_at DESC);

-- A claim made while its party was on hold: the hold, and what became of it. NULL: an ordinary
-- claim. Only 'released' claims (and ordinary ones) are credited: the points ledger and
-- balances, the rebate rankings and statements skip 'held' and 'rejected'.
ALTER TABLE point_claims ADD COLUMN hold_id bigint REFERENCES fraud_holds (id),
    ADD COLUMN hold_state text CHECK (hold_state IN ('held', 'released', 'rejected')),
    ADD CONSTRAINT point_claims_hold_check CHECK ((hold_id IS NULL) = (hold_state IS NULL));
ALTER TABLE rebate_claims ADD COLUMN hold_id bigint REFERENCES fraud_holds (id),
    ADD COLUMN hold_state text CHECK (hold_state IN ('held', 'released', 'rejected')),
    ADD CONSTRAINT rebate_claims_hold_check CHECK ((hold_id IS NULL) = (hold_state IS NULL));
CREATE INDEX point_claims_held_idx ON point_claims (hold_id) WHERE hold_state = 'held';
CREATE INDEX rebate_claims_held_idx ON rebate_claims (hold_id) WHERE hold_state = 'held';
CREATE INDEX point_claims_hold_idx ON point_claims (hold_id) WHERE hold_id IS NOT NULL;
CREATE INDEX rebate_claims_hold_idx ON rebate_claims (hold_id) WHERE hold_id IS NOT NULL;
