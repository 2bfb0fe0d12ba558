"""A consumer's return takes back the rebate of its sale (R1): the unit's claim, while no
statement holds it, is withdrawn — deleted, with its count and amount taken out of the rankings
(``rebate_totals``, ``rebate_store_totals``) if the roll-up folded it already, or its row taken
out of the roll-up's queue if not — so a refunded sale is never settled, and the unit earns a
rebate again when it is sold again (``rebate_claims.code_id`` is unique). A probe found the claim
of a refunded sale settled at its full amount. The claim's client id is kept
(``rebate_claims_withdrawn``): the till's retry of the withdrawn claim is 409 ``claim_withdrawn``.

A claim already in a statement stays as it is: the statement was computed (and perhaps paid) with
it, and a deduction from a later one is the brand's finance's to make (the return's answer
names a withdrawn claim only).

The caller holds the unit's state row locked (``FOR UPDATE``), as a claim's round locks it before
it writes a claim, so the two never run at once for one unit. The claim's row is locked (the
lock its delete takes) in a statement before the delete's, so a hold's release that queued it
meanwhile is seen queued (``_LOCK``): the same locks, in the same order (the unit, the claim,
its queue row, the totals). The queue row is deleted without ``SKIP LOCKED``: while a roll-up
folding it is uncommitted the delete waits, then finds nothing left, and the totals the roll-up
has just raised are lowered. Totals are updated in the roll-up's order (clerk totals, then the
store's), so the two never deadlock.
"""

from __future__ import annotations

from typing import Any

from app import audit
from app.auth.principal import Principal
from app.db import Conn
from app.rebates.ranking import MONTH_OF

# The unit's withdrawable claim: an unsettled one, but not one a confirmed fraud hold rejected
# (that stays, its code taken: a probe, a return deleted it and the decided hold's record lost it).
_WITHDRAWABLE = """
c.code_id = %(code)s AND c.statement_id IS NULL AND c.hold_state IS DISTINCT FROM 'rejected'
"""

# The claim's row locked first, in a statement of its own: a hold's release settling it (which
# queues it, ``app.forensics.holds``) is waited for, and ``_WITHDRAW``'s snapshot, taken after,
# sees the release's queue row. A probe: the DELETE waited for the release itself, but its
# queue read was of the snapshot taken before it waited — the released claim read unqueued,
# its count taken off totals that had never counted it, and its queue row left behind.
_LOCK = f"SELECT c.id FROM rebate_claims c WHERE {_WITHDRAWABLE} FOR UPDATE"

_WITHDRAW = f"""
WITH gone AS (
    DELETE FROM rebate_claims c WHERE {_WITHDRAWABLE}
    RETURNING c.id, c.brand_id, c.store_id, c.clerk_id, c.amount, c.client_id, c.code_id,
              c.hold_state, {MONTH_OF} AS month
), unqueued AS (
    DELETE FROM rebate_tally_queue q USING gone WHERE q.claim_id = gone.id RETURNING q.claim_id
), kept AS (  -- its client id: the till's retry of it is refused (migration 0071)
    INSERT INTO rebate_claims_withdrawn (clerk_id, client_id, code_id, claim_id)
    SELECT clerk_id, client_id, code_id, id FROM gone
    ON CONFLICT DO NOTHING  -- kept already: a claim made under it meanwhile (a probe: this
                            -- unit's return was 409 for ever)
)
SELECT gone.*, EXISTS (SELECT 1 FROM unqueued) AS was_queued FROM gone
"""

_UNCOUNT = """
WITH clerk AS (
    UPDATE rebate_totals SET claims = claims - 1, amount = amount - %(amount)s, updated_at = now()
    WHERE brand_id = %(brand_id)s AND month = %(month)s AND store_id = %(store_id)s
      AND clerk_id = %(clerk_id)s
    RETURNING 1
)
UPDATE rebate_store_totals SET claims = claims - 1, amount = amount - %(amount)s,
       updated_at = now()
WHERE brand_id = %(brand_id)s AND month = %(month)s AND store_id = %(store_id)s
  AND EXISTS (SELECT 1 FROM clerk)
"""


async def withdraw(conn: Conn, actor: Principal, code: int) -> dict[str, Any] | None:
    """Withdraw the unsettled rebate claim of a returned unit; what was withdrawn (its id, store,
    clerk and amount), or None when there was none (never claimed, already settled, or rejected
    by a confirmed fraud hold: that claim stays, as the hold decided)."""
    if await (await conn.execute(_LOCK, {"code": code})).fetchone() is None:
        return None
    claim = await (await conn.execute(_WITHDRAW, {"code": code})).fetchone()
    if claim is None:
        return None
    # folded into the rankings already: taken out again (a claim held or rejected by a fraud
    # hold, ``app.forensics.holds``, was never ranked)
    if not claim["was_queued"] and claim["hold_state"] in (None, "released"):
        await conn.execute(_UNCOUNT, claim)
    withdrawn = {k: claim[k] for k in ("id", "store_id", "clerk_id", "amount")}
    await audit.record(
        conn,
        actor,
        "withdraw",
        "rebate_claim",
        claim["id"],
        after={**withdrawn, "reason": "consumer_return"},
        org_id=claim["store_id"],
    )
    return withdrawn
