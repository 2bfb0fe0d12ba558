-- Runs of an EPCIS capture job (app.epcis.capture.run): each run counts itself before it
-- applies the document, in a transaction of its own, so a job whose runs keep failing for a
-- reason that is not the document's (a worker killed, an error of the implementation) is failed
-- after MAX_RUNS instead of being sent again by the orphan sweeper for ever (probe).
ALTER TABLE epcis_captures ADD COLUMN runs integer NOT NULL DEFAULT 0;
