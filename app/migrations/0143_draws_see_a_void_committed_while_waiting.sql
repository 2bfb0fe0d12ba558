-- A lucky draw's round (app/draws/claims.py) checked its code's batch not void inside the
-- statement that waited for the unit's row lock, with the snapshot it took before waiting: a
-- void leaves a sold unit's row alone (only active units are voided), so READ COMMITTED never
-- rechecked the batch, and a draw that waited for a sold unit (a points claim or a sale of it
-- holding the row) while the batch was voided (200) was still drawn on the void code (a probe).
-- The check is now also made after the lock, by this VOLATILE function: its query takes a fresh
-- snapshot, which sees a void committed while the statement waited (as migration 0119's
-- ``code_claimed_by_another`` sees another member's points claim).

CREATE FUNCTION code_batch_void(code bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM code_batches b WHERE b.batch_no = code >> 32
                      AND b.state = 'void');
END $$;
