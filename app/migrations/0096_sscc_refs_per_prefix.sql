-- SSCC serial references counted per GS1 company prefix. One platform-wide sequence served
-- every prefix, so a brand with a long prefix (a 10-digit one leaves room for 999,999 serial
-- references) was out of room once the other brands together had issued that many pallets and
-- cases under theirs. An SSCC is extension digit + prefix + serial reference, so serial
-- references need be unique only within a prefix — and prefixes in use never start one another
-- (app.orgs.service.check_company_prefix, app.codes.cases): 0614141 + 012345678 and
-- 06141410 + 12345678 would be one SSCC.
CREATE TABLE sscc_refs (
    company_prefix text PRIMARY KEY CHECK (company_prefix ~ '^[0-9]{6,12}$'),
    last_ref bigint NOT NULL CHECK (last_ref >= 0)  -- the last serial reference handed out
);
-- Every prefix already in use goes on from where the shared sequence was (a restore's
-- after-restore may have moved it past batches no row records) where its room reaches that
-- far; a prefix the shared sequence had run past (a long one: the very brand this is for, a
-- probe) from the last reference its own batches took, or from 1. A prefix first used from now
-- on starts at 1.
INSERT INTO sscc_refs (company_prefix, last_ref)
SELECT p,
       CASE WHEN shared.last <= (10::numeric ^ (16 - length(p)))::bigint - 1 THEN shared.last
            ELSE coalesce((SELECT max(b.first_ref + b.size - 1) FROM case_batches b
                            WHERE b.company_prefix = p), 0) END
  FROM (SELECT company_prefix FROM case_batches
        UNION SELECT gs1_company_prefix FROM orgs WHERE gs1_company_prefix IS NOT NULL) AS used(p),
       (SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS last
          FROM sscc_serial_ref_seq) AS shared;
DROP SEQUENCE sscc_serial_ref_seq;
