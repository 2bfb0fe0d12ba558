"""A consumer's return takes back the points of its sale (M2), as it takes back the store's
rebate (``app.rebates.returns``): the unit's points claim is withdrawn (kept, with the time,
for its ledger entry refers to it), the unit may be claimed again when it is sold again, and the
member's balance gives back the claim's points — what it still holds of them: the balance never
goes below zero; points already spent on gifts are owed (``point_balances.owed``) and taken from
the next refund of a gift code (``redemptions.expire_due``: a probe let the code expire and kept
its refund), and the audit row says how many were taken and owed. A probe found the refunded
buyer kept the points and the next buyer refused (``already_claimed``): buy, claim, return, and
the points of one sale paid again and again.

The caller holds the unit's state row locked (``FOR UPDATE``), as a claim's round reads it; the
member's balance is locked after the claim row, then debited (``take_back``, which the
withdrawal of the unit's lucky draw shares: ``app.draws.returns``).
"""

from __future__ import annotations

from typing import Any

from app import audit
from app.auth.principal import Principal
from app.db import Conn
from app.members.points import post_entry

# The reasons of the ledger entries a return makes (kind ``adjustment``, reason as text), and the
# stable key of each: the member pages show these in their own language (``app.web.i18n``,
# ``reason_<key>``), while a staff adjustment's reason is shown as typed.
WITHDRAWN = "consumer return: the returned unit's points claim withdrawn"
REPAID = "consumer return: points the return could not take back, taken from a refund"
DRAW_WITHDRAWN = "consumer return: the returned unit's lucky-draw points taken back"
SYSTEM_REASONS: dict[str, str] = {
    WITHDRAWN: "return_withdrawn",
    REPAID: "return_repaid",
    DRAW_WITHDRAWN: "return_draw_withdrawn",
}

_WITHDRAW = """
UPDATE point_claims SET withdrawn_at = now() WHERE code_id = %s AND withdrawn_at IS NULL
RETURNING id, member_id, brand_id,
          -- a claim held or rejected by a fraud hold (app.forensics.holds) credited nothing
          CASE WHEN hold_state IN ('held', 'rejected') THEN 0 ELSE points END AS points
"""


async def withdraw_points(conn: Conn, actor: Principal, code: int) -> dict[str, Any] | None:
    """Withdraw the points claim of a returned unit; what was withdrawn (the claim's id, the
    member, the points taken back), or None when the unit's points were never claimed."""
    claim = await (await conn.execute(_WITHDRAW, (code,))).fetchone()
    if claim is None:
        return None
    withdrawn = {
        "id": claim["id"],
        "member_id": claim["member_id"],
        **await take_back(conn, actor, claim["member_id"], claim["brand_id"], claim["points"]),
    }
    after = {**withdrawn, "claimed": claim["points"], "reason": "consumer_return"}
    # under the brand, as a member's other rows (its erasure, a kept freeze): below it nobody
    # reads members (a probe: the store's org_admin read the member's id through GET /audit)
    await audit.record(
        conn, actor, "withdraw", "point_claim", claim["id"], after=after, org_id=claim["brand_id"]
    )
    return withdrawn


async def take_back(
    conn: Conn,
    actor: Principal,
    member_id: int,
    brand_id: int,
    points: int,
    reason: str = WITHDRAWN,
) -> dict[str, int]:
    """Take ``points`` a return withdrew back from the member's balance (an ``adjustment`` of
    ``reason``): what it holds of them; the rest owed. ``{"points": taken}``, with ``"owed"``
    when the balance fell short."""
    held = await (  # locked: the debit below is of what it holds now
        await conn.execute(
            "SELECT balance FROM point_balances WHERE member_id = %s FOR UPDATE", (member_id,)
        )
    ).fetchone()
    taken = min(int(points), int(held["balance"]) if held else 0)
    if held is not None and taken < points:  # spent: owed (migration 0073)
        await conn.execute(
            "UPDATE point_balances SET owed = owed + %s WHERE member_id = %s",
            (points - taken, member_id),
        )
    if taken > 0:
        await post_entry(
            conn,
            member_id=member_id,
            brand_id=brand_id,
            kind="adjustment",
            points=-taken,
            reason=reason,
            recorded_by=actor.person,
        )
    return {"points": taken, **({"owed": points - taken} if taken < points else {})}
