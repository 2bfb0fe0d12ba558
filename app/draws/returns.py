"""A consumer's return withdraws the unit's lucky draw (SPEC B4), as it withdraws the unit's
points claim (``app.members.returns``): the refunded buyer keeps no prize of the sale.

The draw is kept, ``withdrawn_at`` set (its ledger entry refers to it), and the code is free
again: ``draws.code_id`` is unique among draws not withdrawn, so the unit may be drawn again
once it is sold again (until then ``RETURNED_UNSOLD`` refuses it). Its prize:

- points (credited): taken back from the member's balance exactly as a withdrawn points claim's
  are (``take_back``: an ``adjustment`` entry; what the balance holds of them, the rest owed and
  taken from the next refund of a gift code). The prize's stock does not come back: it was
  given, and the points it gave are what the member returns;
- a voucher or gift still ``pending``: ``cancelled`` (the staff can no longer fulfil it: 409
  ``prize_not_pending``), and its stock comes back (``remaining + 1``, never above the prize's
  quantity) and its day's cap (``app.draws.prizes`` counts no cancelled prize): it was never
  handed over;
- a voucher or gift already ``fulfilled``: stays fulfilled (it was handed over), the draw marked
  withdrawn;
- no prize, or a held draw (``app.forensics.holds``): withdrawn; a hold released later draws no
  prize for it (``app.draws.prizes``' callers skip withdrawn draws).

The caller holds the unit's state row locked (``FOR UPDATE``), as a draw round reads it, so a
draw of the unit waits for the return and reads it returned. Two steps, for the lock order every
path shares — the draw's row, its prize, the points claim's row, the member's balance last (a
draw round: the unit, the prize, the balance; a hold's release: the draws, the prizes, the
claims, the balances; an erasure: the draws, the claims, the balance): ``withdraw_draw``
withdraws the draw and restocks a cancelled prize, the caller withdraws the points claim, then
``take_back_prize`` takes a points prize back from the balance (a review: the balance was locked
before the claim's row, the other way round from a release or an erasure at the same time).
"""

from __future__ import annotations

from typing import Any

from app import audit
from app.auth.principal import Principal
from app.db import Conn
from app.members.returns import DRAW_WITHDRAWN, take_back

_WITHDRAW = """
UPDATE draws SET withdrawn_at = now(),
       fulfil_status = CASE WHEN fulfil_status = 'pending' THEN 'cancelled' ELSE fulfil_status END
WHERE code_id = %s AND withdrawn_at IS NULL
RETURNING id, member_id, brand_id, prize_id, prize_kind, fulfil_status, hold_state,
          CASE WHEN prize_kind = 'points' THEN points ELSE 0 END AS points
"""

_RESTOCK = """
UPDATE draw_prizes SET remaining = remaining + 1, updated_at = now()
WHERE id = %s AND remaining < quantity
"""


async def withdraw_draw(conn: Conn, code: int) -> dict[str, Any] | None:
    """Withdraw the draw of a returned unit and restock its cancelled prize (step 1, see the
    module docstring); the draw's row, or None when the unit was never drawn."""
    draw = await (await conn.execute(_WITHDRAW, (code,))).fetchone()
    if draw is not None and draw["fulfil_status"] == "cancelled":
        await conn.execute(_RESTOCK, (draw["prize_id"],))
    return dict(draw) if draw is not None else None


async def take_back_prize(conn: Conn, actor: Principal, draw: dict[str, Any]) -> dict[str, Any]:
    """Take the withdrawn ``draw``'s points prize back and audit the withdrawal (step 2); what
    was withdrawn (the draw's id, the member, its prize's fate, the points taken back)."""
    withdrawn: dict[str, Any] = {
        "id": draw["id"],
        "member_id": draw["member_id"],
        "fulfil_status": draw["fulfil_status"],
    }
    if draw["points"]:
        withdrawn.update(
            await take_back(
                conn, actor, draw["member_id"], draw["brand_id"], draw["points"], DRAW_WITHDRAWN
            )
        )
    after = {**withdrawn, "prize_id": draw["prize_id"], "reason": "consumer_return"}
    await audit.record(  # under the brand, as the points claim's withdrawal
        conn, actor, "withdraw", "draw", draw["id"], after=after, org_id=draw["brand_id"]
    )
    return withdrawn
