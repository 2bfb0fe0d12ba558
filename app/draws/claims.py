"""Members' lucky draws by scan + PIN (扫码抽奖, SPEC B4): one draw per code (per sale: a
consumer's return withdraws it), exactly once under any concurrency, and one owner per code with
its points claim; prizes never given beyond their stock.

A draw is a claim of ``app.claims`` (its docstring says how): the member looked up with the other
claims in flight (``app.members.points.Members``: a signed-out token 401, a frozen member 403
before any PIN is checked), then a verification through ``Verifier.verify`` — a wrong PIN counts
toward the code's lockout exactly as ``/v1/verify`` and a points claim do — then ``Drawer``
draws in rounds, one transaction per round on the round's own connection:

1. ``_INSERT`` inserts the round's draws, no prize yet, for members still active, units of the
   member's brand that are active or sold, shipped into the channel (``channel_org_id`` not
   null: rewards only on codes shipped through it), neither returned damaged or expired nor
   returned and not sold since (the points claims' ``SPOILT`` and ``RETURNED_UNSOLD``; locked
   ``FOR UPDATE`` as the claims and returns lock them), of a batch not void, covered by a
   campaign running at the draw's time (its product; its channel's province where the campaign
   names some; the earliest-starting one when several cover it). The campaign is picked after
   the unit's lock and locked ``FOR SHARE``: a stop, withdrawal or edit under way (``FOR
   UPDATE``, ``app.draws.service``, which then waits for no lock a round holds: no deadlock) is
   waited for, and one committed while the round waited for the unit is read (READ COMMITTED
   rechecks the locked row; the next covering campaign, if any, when it fails) — a
   probe: picked in the statement's snapshot and never locked, a campaign stopped, withdrawn or
   narrowed meanwhile still gave its prize. The batch is asked again after the lock, with a
   fresh snapshot (migration 0143): a void leaves a sold unit's row alone, so a void committed
   while the round waited for one was not seen (a probe). ``draws.code_id`` is unique
   among draws not withdrawn: a code drawn before — in this round, by another process, ever,
   unless a consumer's return withdrew its draw (``app.draws.returns``) — inserts nothing (``ON
   CONFLICT DO NOTHING``, the code's entry waited for when another transaction is inserting
   it), and so does a client id the member used before (``draws_member_client``).
   One owner per code: not a code whose points another member claimed (409
   ``claimed_by_another``; ``app.members.points`` refuses the mirror). That is asked AFTER the
   unit's lock, of the rows the lock step returned, by a VOLATILE function (migration 0119)
   whose query takes a fresh snapshot: asked inside the locking statement (as it was), the
   statement's snapshot predates the lock wait and READ COMMITTED rechecks only the locked row,
   so a points claim committed while the draw waited was not seen and both owned the code.
   A member on a fraud hold (``app.forensics.holds``, one probe of the open holds' unique
   index, as the points claims) draws as a held points claim is written: the draw takes the
   code with ``hold_id`` and ``hold_state`` ``held``, no prize is drawn, and the answer is 201
   with ``status`` ``under_review``. The hold's release draws it then (``holds.settle`` →
   ``app.draws.prizes.award``: the prizes' stock at that time, each draw once under its row
   lock however many releases or sweeps run); its confirmation makes it ``rejected`` (no prize;
   the code stays taken).
2.–4. ``app.draws.prizes.award`` draws the others: the prizes of the campaigns drawn locked
   (``FOR UPDATE``, in id order) and each one's wins of the day counted; ``choose`` draws each
   prize with ``secrets.randbelow`` (the OS CSPRNG) over the campaign's whole weight (a prize
   out of stock or at its daily cap keeps its share as "no prize"); the results written: each
   draw's prize, the prizes' stock (a CHECK keeps it ≥ 0), the points prizes' ledger rows (kind
   ``draw``) and balances (in member order, as the points claims), the voucher and gift prizes
   ``pending`` for the staff to fulfil.

A draw the round did not insert is then explained (``_why_not``): the same client id again (a
replay: the first draw's answer, 200 — ``under_review`` while held), a frozen or erased member,
a void batch, a client id used for another code (409 ``client_id_reused``) or for a draw a
consumer's return withdrew since (409 ``claim_withdrawn``: a new draw needs a new id), a code
drawn before (409 ``already_drawn``), a code whose points another member claimed (409
``claimed_by_another``), a unit that cannot be drawn (422 ``not_claimable``), returned damaged
(409 ``not_sellable``) or not sold since its return (409 ``not_sold_again``), another brand's
(422 ``other_brand``), never shipped (422 ``not_shipped``), no campaign covering its product or
province (422 ``draw_not_covered``) or one that covers it but is not running now (422
``draw_not_running``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app.claims import ClaimIn, Claims, Pending, judge, refuse, settle, void_answer
from app.codes.scheme import Scheme
from app.db import Conn
from app.draws.prizes import CAMPAIGNS, Prize, award, choose, fulfil_status
from app.draws.schemas import DrawOut, DrawPrize, draw_status
from app.draws.service import COVERS, RUNS_AT
from app.errors import Conflict, Forbidden, Unauthorized, Unprocessable
from app.localtime import REPORT_TZ
from app.logistics.movements import NOT_FOR_SALE
from app.members.points import RETURNED_UNSOLD, SPOILT, Members
from app.members.principal import Member
from app.verify.service import Verifier

__all__ = ["Drawer", "Prize", "choose"]  # ``Prize`` and ``choose``: of ``app.draws.prizes``

# One owner per code: a live points claim of the code by another member (``_why_not``:
# ``claimed_by_another``); ``app.members.points`` refuses a claim of a code another member drew.
_OTHERS_CLAIM = """EXISTS (SELECT 1 FROM point_claims pc WHERE pc.code_id = {unit}
                   AND pc.withdrawn_at IS NULL AND pc.member_id <> {member})"""

_INSERT = f"""
WITH r AS (
    SELECT * FROM unnest(%(ord)s::int[], %(member)s::bigint[], %(brand)s::bigint[],
                         %(code)s::bigint[], %(client)s::text[], %(at)s::timestamptz[],
                         %(result)s::text[], %(reason)s::text[])
           AS r(ord, member_id, brand_id, code_id, client_id, at, result, reason)
), ok AS MATERIALIZED (
    SELECT r.*, u.product_id, u.channel_org_id, fh.id AS hold_id
    FROM r
    JOIN members m ON m.id = r.member_id AND m.status = 'active'
    -- a member on hold (``app.forensics.holds``): one probe of the open holds' unique index
    LEFT JOIN fraud_holds fh ON fh.party_kind = 'member' AND fh.party_id = r.member_id
                            AND fh.state = 'open'
    JOIN unit_state u ON u.code = r.code_id AND u.brand_id = r.brand_id
                     AND u.status IN ('active', 'sold') AND u.channel_org_id IS NOT NULL
                     -- not returned damaged or expired, nor back from a consumer and not sold
                     -- since (the points claims' unit filters): it waits for its next sale
                     AND NOT {SPOILT} AND NOT {RETURNED_UNSOLD}
    JOIN orgs ch ON ch.id = u.channel_org_id
    -- as the snapshot has them (no unit locked for nothing): ``picked`` asks again, locked
    WHERE EXISTS (SELECT 1 FROM draw_campaigns c
                   WHERE c.brand_id = r.brand_id AND {COVERS} AND {RUNS_AT.format(at="r.at")})
      AND NOT EXISTS (SELECT 1 FROM code_batches b
                       WHERE b.batch_no = r.code_id >> 32 AND b.state = 'void')
    ORDER BY r.code_id
    -- an erasure under way holds the member: wait, and read what it committed (as points do);
    -- a consumer's return or a points claim holds the unit (FOR UPDATE, in code order, as
    -- ``app.members.points`` locks units): wait, and read it returned or claimed
    FOR SHARE OF m FOR UPDATE OF u
), picked AS MATERIALIZED (
    -- the campaign, picked after the unit's lock and locked FOR SHARE (the staff's change
    -- holds it FOR UPDATE): a stop, withdrawal or edit under way is waited for, and one
    -- committed meanwhile read (READ COMMITTED rechecks the locked row: a campaign stopped,
    -- withdrawn or no longer covering the unit is passed over for the next, if any)
    SELECT u.*, camp.id AS campaign_id
    FROM ok u
    JOIN orgs ch ON ch.id = u.channel_org_id
    CROSS JOIN LATERAL (
        SELECT c.id FROM draw_campaigns c
        WHERE c.brand_id = u.brand_id AND {COVERS} AND {RUNS_AT.format(at="u.at")}
        ORDER BY c.starts_at, c.id LIMIT 1
        FOR SHARE
    ) camp
)
INSERT INTO draws (campaign_id, brand_id, member_id, code_id, client_id, product_id,
                   channel_org_id, verify_result, verify_reason, day, drawn_at, fulfil_status,
                   hold_id, hold_state)
SELECT campaign_id, brand_id, member_id, code_id, client_id, product_id, channel_org_id,
       result, reason, (at AT TIME ZONE '{REPORT_TZ}')::date, at, 'none',
       hold_id, CASE WHEN hold_id IS NOT NULL THEN 'held' END
FROM picked
-- one owner per code, asked of the unit's row ``ok`` returned locked: a fresh snapshot
-- (migration 0119) sees a points claim committed while this statement waited for the lock;
-- so does the batch's void (migration 0143: a void leaves a sold unit's row alone)
WHERE NOT code_claimed_by_another(code_id, member_id) AND NOT code_batch_void(code_id)
ORDER BY code_id
ON CONFLICT DO NOTHING
RETURNING id, campaign_id, member_id, brand_id, code_id, day, drawn_at, hold_state
"""


class Drawer(Claims[DrawOut]):
    """Members' draws: ``app.claims.Claims`` with the draws' ``credit`` and ``explain``."""

    name = "tracecode-draws"

    def __init__(self, pool: AsyncConnectionPool[Conn], verifier: Verifier, scheme: Scheme) -> None:
        super().__init__(pool, verifier, scheme)
        self.members = Members(pool, verifier.settings)

    async def close(self) -> None:
        await super().close()
        await self.members.close()

    async def draw(
        self,
        member: Member,
        data: ClaimIn,
        ip: str | None,
        user_agent: str | None,
        checked: str = "",
    ) -> tuple[DrawOut, bool]:
        """Verify, then draw; (the draw, created). Refusals raise ``AppError``s. A frozen
        member's draw sent again under its client id answers the first draw; anything else of
        a frozen member is 403 before any PIN is checked (as points claims). ``checked``: the
        retry key of the H5 answer page's check of the code (its ticket's), not counted again
        (``Claims.claim``)."""
        if member.status != "active" and not await self._drawn(member.id, data):
            member.require_active()
        out, answer, created = await self.claim(
            data, member.id, member.brand_id, None, ip, user_agent, member.id, checked
        )
        return msgspec.structs.replace(out, verification=answer) if created else out, created

    async def _drawn(self, member_id: int, data: ClaimIn) -> bool:
        code = self.code_of(data.serial)
        if code is None:
            return False
        async with self.pool.connection() as conn:
            found = await conn.execute(
                "SELECT 1 FROM draws WHERE member_id = %s AND client_id = %s AND code_id = %s",
                (member_id, data.client_id, code),
            )
            return await found.fetchone() is not None

    async def credit(
        self, conn: AsyncConnection[Any], group: list[Pending[DrawOut]]
    ) -> dict[int, DrawOut]:
        async with conn.transaction():
            return await _credit(conn, group)

    async def explain(self, conn: AsyncConnection[Any], rest: list[Pending[DrawOut]]) -> None:
        params = {
            "ord": list(range(len(rest))),
            "member": [p.claimant for p in rest],
            "code": [p.code for p in rest],
            "client": [p.client_id for p in rest],
            "at": [p.at for p in rest],
        }
        rows = await (await conn.execute(_EXPLAIN, params)).fetchall()
        settle(judge(rest, rows, _why_not))


async def _credit(conn: AsyncConnection[Any], group: list[Pending[DrawOut]]) -> dict[int, DrawOut]:
    """Steps 1–4 of the module docstring, in the caller's transaction."""
    answers = [p.answer for p in group]
    inserted = await (
        await conn.execute(
            _INSERT,
            {
                "ord": list(range(len(group))),
                "member": [p.claimant for p in group],
                "brand": [p.brand_id for p in group],
                "code": [p.code for p in group],
                "client": [p.client_id for p in group],
                "at": [p.at for p in group],
                "result": [a.result if a else "genuine" for a in answers],
                "reason": [a.reason if a else "" for a in answers],
            },
        )
    ).fetchall()
    if not inserted:
        return {}
    awarded = await award(conn, [d for d in inserted if d["hold_state"] is None])
    names = awarded.names
    if any(d["campaign_id"] not in names for d in inserted):  # held draws only (no prize yet)
        params = {"campaigns": sorted({d["campaign_id"] for d in inserted})}
        found = await (await conn.execute(CAMPAIGNS, params)).fetchall()
        names = {c["id"]: c["name"] for c in found}
    by_code = {p.code: p for p in group}
    out: dict[int, DrawOut] = {}
    for draw in inserted:
        prize = awarded.won.get(draw["id"])
        pending = by_code[draw["code_id"]]
        out[id(pending)] = DrawOut(
            draw_id=draw["id"],
            serial=pending.serial,
            campaign_id=draw["campaign_id"],
            campaign_name=names[draw["campaign_id"]],
            prize=None
            if prize is None
            else DrawPrize(id=prize.id, name=prize.name, kind=prize.kind, points=prize.points),
            fulfil_status=fulfil_status(prize),  # type: ignore[arg-type]
            balance=awarded.balances.get(draw["member_id"])
            if prize and prize.kind == "points"
            else None,
            drawn_at=draw["drawn_at"],
            status=draw_status(draw["hold_state"]),
        )
    return out


_EXPLAIN = f"""
SELECT r.ord, d.id, d.member_id, d.client_id, d.campaign_id, d.prize_id, d.prize_name,
       d.prize_kind, d.points, d.fulfil_status, d.drawn_at, dc.name AS campaign_name,
       cc.code_id AS client_code, cc.withdrawn_at IS NOT NULL AS client_withdrawn, pb.balance,
       u.brand_id AS unit_brand, u.status AS unit_status, u.channel_org_id AS unit_channel,
       d.hold_state, m.status AS member_status, b.state = 'void' AS batch_void,
       u.disposition AS unit_disposition, {RETURNED_UNSOLD} AS returned_unsold,
       {_OTHERS_CLAIM.format(unit="r.code_id", member="r.member_id")} AS claimed_by_another,
       EXISTS (SELECT 1 FROM draw_campaigns c WHERE c.brand_id = u.brand_id AND {COVERS})
           AS covered,
       EXISTS (SELECT 1 FROM draw_campaigns c WHERE c.brand_id = u.brand_id AND {COVERS}
                  AND {RUNS_AT.format(at="r.at")}) AS running
FROM unnest(%(ord)s::int[], %(member)s::bigint[], %(code)s::bigint[], %(client)s::text[],
            %(at)s::timestamptz[])
     AS r(ord, member_id, code_id, client_id, at)
LEFT JOIN members m ON m.id = r.member_id
LEFT JOIN draws d ON d.code_id = r.code_id AND d.withdrawn_at IS NULL
LEFT JOIN draw_campaigns dc ON dc.id = d.campaign_id
LEFT JOIN draws cc ON cc.member_id = r.member_id AND cc.client_id = r.client_id
LEFT JOIN unit_state u ON u.code = r.code_id
LEFT JOIN orgs ch ON ch.id = u.channel_org_id
LEFT JOIN point_balances pb ON pb.member_id = r.member_id
LEFT JOIN code_batches b ON b.batch_no = r.code_id >> 32
"""


def _replayed(row: dict[str, Any], serial: str) -> DrawOut:
    prize = None
    if row["prize_id"] is not None:
        prize = DrawPrize(
            id=row["prize_id"], name=row["prize_name"], kind=row["prize_kind"], points=row["points"]
        )
    return DrawOut(
        draw_id=row["id"],
        serial=serial,
        campaign_id=row["campaign_id"],
        campaign_name=row["campaign_name"],
        prize=prize,
        fulfil_status=row["fulfil_status"],
        balance=int(row["balance"] or 0) if row["prize_kind"] == "points" else None,
        drawn_at=row["drawn_at"],
        status=draw_status(row["hold_state"]),
    )


def _why_not(row: dict[str, Any], p: Pending[DrawOut]) -> DrawOut:
    if row["id"] is not None and row["member_id"] == p.claimant and row["client_id"] == p.client_id:
        return _replayed(row, p.serial)  # the same draw again: answered as the first time
    if row["member_status"] == "erased":
        raise Unauthorized("the membership was erased", code="member_erased")
    if row["member_status"] != "active":
        raise Forbidden("this membership is frozen", code="member_frozen")
    if row["batch_void"]:
        refuse(void_answer(p.serial, p.lang))
    if row["client_code"] is not None and row["client_code"] != p.code:
        raise Conflict("this client id was used for another draw", code="client_id_reused")
    if row["client_code"] == p.code and row["client_withdrawn"]:  # (a probe: "try again")
        raise Conflict(
            "此抽奖已因退货撤回 / this draw was withdrawn: the unit was returned",
            code="claim_withdrawn",
        )
    if row["id"] is not None:
        raise Conflict("此防伪码已抽过奖 / this code has already been drawn", code="already_drawn")
    if row["claimed_by_another"]:
        raise Conflict(
            "此防伪码的积分已被其他会员领取 / another member claimed this code's points",
            code="claimed_by_another",
        )
    if row["unit_brand"] is None or row["unit_status"] not in ("active", "sold"):
        raise Unprocessable("this unit cannot be drawn", code="not_claimable")
    if row["unit_brand"] != p.brand_id:
        raise Unprocessable("this product is not of your membership's brand", code="other_brand")
    if row["unit_disposition"] in NOT_FOR_SALE:  # ``SPOILT``: returned damaged or expired
        raise Conflict(
            "此产品已因损坏或过期被退回 / this unit was returned damaged or expired",
            code="not_sellable",
        )
    if row["returned_unsold"]:
        raise Conflict(
            "此产品已被退回，门店再次售出后方可抽奖 / this unit was returned: it can be drawn "
            "once the store sells it again",
            code="not_sold_again",
        )
    if row["unit_channel"] is None:
        raise Unprocessable(
            "此产品尚未发往销售渠道，不能抽奖 / this unit was never shipped to a seller: no draw",
            code="not_shipped",
        )
    if not row["covered"]:
        raise Unprocessable(
            "此产品没有抽奖活动 / no lucky draw covers this product here",
            code="draw_not_covered",
        )
    if not row["running"]:
        raise Unprocessable(
            "抽奖活动未在进行 / the lucky draw for this product is not running now",
            code="draw_not_running",
        )
    raise Conflict("the draw met another one; try again", code="claim_conflict")
