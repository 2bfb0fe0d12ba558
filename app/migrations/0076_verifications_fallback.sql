-- A record stored by the Redis-down path (app.verify.fallback: answered from PostgreSQL) is
-- marked: Redis never counted it. Restoring a code's query counter (`tracecode redis rebuild`
-- step 2, and the reconcile after an outage) adds such records once, and the records Redis lost,
-- to what Redis counts now — it had set the counter to the larger of the two, and lost the
-- queries made meanwhile (a probe: "4 times" shown for a fifth query). Records stored before
-- this migration count as Redis's own (false).
ALTER TABLE verifications ADD COLUMN fallback boolean NOT NULL DEFAULT false;
