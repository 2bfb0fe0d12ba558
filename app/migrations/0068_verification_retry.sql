-- A claim's retry key (app.claims: its kind, its claimant and its client id), on the records of
-- the verifications a claim made: `tracecode redis rebuild` sets the script's retry keys again
-- from them, and the Redis-down path finds a claim sent again by it (a probe: after a rebuild,
-- every retry of a claim made before the loss counted as a new query of the code). NULL for
-- everything else. Cleared with the rest of a member's personal data when the member is erased.
ALTER TABLE verifications ADD COLUMN retry text;
