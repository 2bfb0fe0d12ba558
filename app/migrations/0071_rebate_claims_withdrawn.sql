-- A rebate claim a consumer's return withdrew (app.rebates.returns) is deleted, and with it
-- the clerk's client id that made it: the till's retry of that claim (its answer lost) was
-- credited as a new one, a second rebate, and "sold" the returned unit again (a probe). The
-- client id is kept here: a retry of the withdrawn claim is 409 claim_withdrawn.
CREATE TABLE rebate_claims_withdrawn (
    clerk_id     bigint NOT NULL,
    client_id    text NOT NULL,
    code_id      bigint NOT NULL,
    claim_id     bigint NOT NULL,
    withdrawn_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clerk_id, client_id)
);
