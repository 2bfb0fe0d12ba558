"""Members' lucky draws by scan + PIN (扫码抽奖, SPEC B4): one draw per code, ever, exactly once
under any concurrency; prizes never given beyond their stock.

A draw is a claim of ``app.claims`` (its docstring says how): the member looked up with the other
claims in flight (``app.members.points.Members``: a signed-out token 401, a frozen member 403
before any PIN is checked), then a verification through ``Verifier.verify`` — a wrong PIN counts
toward the code's lockout exactly as ``/v1/verify`` and a points claim do — then ``Drawer``
draws in rounds, one transaction per round on the round's own connection:

1. ``_INSERT`` inserts the round's draws, no prize yet, for members still active and not on hold
   (``app.forensics.holds``: a held member takes no prize, 409 ``draw_under_review``), units of
   the member's brand that are active or sold, shipped into the channel (``channel_org_id`` not
   null: rewards only on codes shipped through it), neither returned damaged or expired nor
   returned and not sold since (the points claims' ``SPOILT`` and ``RETURNED_UNSOLD``; locked
   ``FOR UPDATE`` as the claims and returns lock them), whose points no other member claimed
   (one owner per code: 409 ``claimed_by_another``), of a batch not void, covered by a campaign
   running at the draw's time (its product; its channel's province where the campaign names
   some; the earliest-starting one when several cover it). ``draws.code_id`` is unique: a code
   drawn before — in this round, by another process, ever — inserts nothing (``ON CONFLICT DO
   NOTHING``, the code's entry waited for when another transaction is inserting it), and so
   does a client id the member used before (``draws_member_client``).
2. ``_PRIZES`` locks the prizes of the campaigns drawn (``FOR UPDATE``, in id order) and counts
   each one's wins of the day: a draw round of another process giving the same prizes waits for
   this one to commit, then reads the stock it left.
3. ``choose`` draws each prize with ``secrets.randbelow`` (the OS CSPRNG) over the campaign's
   whole weight: the no-prize weight plus every prize's. A prize out of stock, or at its daily cap,
   keeps its share of the odds as "no prize" (the other prizes' odds never rise because one ran
   out); a weight of 0 is never drawn.
4. ``_SETTLE`` writes the results: each draw's prize (name, kind, points), the prizes' stock
   (``remaining - n``; a CHECK keeps it ≥ 0 should anything else have taken it), the points prizes'
   ledger rows (kind ``draw``) and balances (upserted in member order, as the points claims do),
   the voucher and gift prizes ``pending`` for the staff to fulfil.

A draw the round did not insert is then explained (``_why_not``): the same client id again (a
replay: the first draw's answer, 200), a frozen or erased member, a void batch, a client id used
for another code (409 ``client_id_reused``), a code drawn before (409 ``already_drawn``), a held
member (409 ``draw_under_review``), a code whose points another member claimed (409
``claimed_by_another``), a unit that cannot be drawn (422 ``not_claimable``), returned damaged
(409 ``not_sellable``) or not sold since its return (409 ``not_sold_again``), another brand's
(422 ``other_brand``), never shipped (422 ``not_shipped``), no campaign covering its product or
province (422 ``draw_not_covered``) or one that covers it but is not running now (422
``draw_not_running``).
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app.claims import ClaimIn, Claims, Pending, judge, refuse, settle, void_answer
from app.codes.scheme import Scheme
from app.draws.schemas import DrawOut, DrawPrize
from app.draws.service import COVERS, RUNS_AT
from app.errors import Conflict, Forbidden, Unauthorized, Unprocessable
from app.localtime import REPORT_TZ
from app.logistics.movements import NOT_FOR_SALE
from app.members.points import BALANCE_TOUCHED, RETURNED_UNSOLD, SPOILT, Members
from app.members.principal import Member
from app.verify.service import Verifier

# A member on hold (``app.forensics.holds``) takes no prize: the draw is refused (409
# ``draw_under_review``) while the hold is open — a held draw settled on the hold's decision is
# not built (one probe of the open holds' unique index, as the points claims' ``_CREDIT``).
_HELD = """EXISTS (SELECT 1 FROM fraud_holds fh WHERE fh.party_kind = 'member'
                   AND fh.party_id = {member} AND fh.state = 'open')"""
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
    SELECT r.*, u.product_id, u.channel_org_id, camp.id AS campaign_id
    FROM r
    JOIN members m ON m.id = r.member_id AND m.status = 'active'
    JOIN unit_state u ON u.code = r.code_id AND u.brand_id = r.brand_id
                     AND u.status IN ('active', 'sold') AND u.channel_org_id IS NOT NULL
                     -- not returned damaged or expired, nor back from a consumer and not sold
                     -- since (the points claims' unit filters): it waits for its next sale
                     AND NOT {SPOILT} AND NOT {RETURNED_UNSOLD}
    JOIN orgs ch ON ch.id = u.channel_org_id
    CROSS JOIN LATERAL (
        SELECT c.id FROM draw_campaigns c
        WHERE c.brand_id = r.brand_id AND {COVERS} AND {RUNS_AT.format(at="r.at")}
        ORDER BY c.starts_at, c.id LIMIT 1
    ) camp
    WHERE NOT EXISTS (SELECT 1 FROM code_batches b
                       WHERE b.batch_no = r.code_id >> 32 AND b.state = 'void')
      AND NOT {_HELD.format(member="r.member_id")}
      AND NOT {_OTHERS_CLAIM.format(unit="r.code_id", member="r.member_id")}
    ORDER BY r.code_id
    -- an erasure under way holds the member: wait, and read what it committed (as points do);
    -- a consumer's return or a points claim holds the unit (FOR UPDATE, in code order, as
    -- ``app.members.points`` locks units): wait, and read it returned or claimed
    FOR SHARE OF m FOR UPDATE OF u
)
INSERT INTO draws (campaign_id, brand_id, member_id, code_id, client_id, product_id,
                   channel_org_id, verify_result, verify_reason, day, drawn_at, fulfil_status)
SELECT campaign_id, brand_id, member_id, code_id, client_id, product_id, channel_org_id,
       result, reason, (at AT TIME ZONE '{REPORT_TZ}')::date, at, 'none'
FROM ok ORDER BY code_id
ON CONFLICT DO NOTHING
RETURNING id, campaign_id, member_id, brand_id, code_id, day, drawn_at
"""

# The campaigns drawn, then their prizes locked (in id order), and the prizes' wins on the days
# drawn (counted under the prizes' locks: every draw that gives one holds it).
_CAMPAIGNS = """
SELECT id, name, no_prize_weight FROM draw_campaigns WHERE id = ANY(%(campaigns)s)
"""
_PRIZES = """
SELECT id, campaign_id, name, kind, points, remaining, weight, daily_cap FROM draw_prizes
WHERE campaign_id = ANY(%(campaigns)s) ORDER BY id FOR UPDATE
"""
_WINS = """
SELECT prize_id, day, count(*) AS n FROM draws
WHERE prize_id = ANY(%(prizes)s) AND day = ANY(%(days)s) GROUP BY prize_id, day
"""

_SETTLE = f"""
WITH w AS (
    SELECT * FROM unnest(%(draw)s::bigint[], %(prize)s::bigint[], %(name)s::text[],
                         %(kind)s::text[], %(points)s::int[], %(status)s::text[],
                         %(member)s::bigint[], %(brand)s::bigint[], %(reason)s::text[],
                         %(at)s::timestamptz[])
           AS w(draw_id, prize_id, name, kind, points, status, member_id, brand_id, reason, at)
), d AS (
    UPDATE draws SET prize_id = w.prize_id, prize_name = w.name, prize_kind = w.kind,
                     points = w.points, fulfil_status = w.status
    FROM w WHERE draws.id = w.draw_id
), p AS (
    UPDATE draw_prizes SET remaining = remaining - g.n, updated_at = now()
    FROM (SELECT prize_id, count(*) AS n FROM w GROUP BY prize_id) g
    WHERE draw_prizes.id = g.prize_id
), l AS (
    INSERT INTO points_ledger (member_id, brand_id, kind, points, draw_id, reason, at)
    SELECT member_id, brand_id, 'draw', points, draw_id, reason, at FROM w
    WHERE kind = 'points'
)
INSERT INTO point_balances AS b (member_id, balance, updated_at)  -- ``BALANCE_TOUCHED``
SELECT member_id, sum(points), {BALANCE_TOUCHED} FROM w WHERE kind = 'points'
GROUP BY member_id ORDER BY member_id
ON CONFLICT (member_id) DO UPDATE SET balance = b.balance + EXCLUDED.balance,
                                      updated_at = EXCLUDED.updated_at
RETURNING member_id, balance
"""


class Prize:
    """A prize as a round draws it: its stock and its wins per day move as the round gives it."""

    __slots__ = ("daily_cap", "id", "kind", "name", "points", "remaining", "weight", "wins")

    def __init__(self, row: dict[str, Any], wins: dict[date, int]) -> None:
        self.id: int = row["id"]
        self.name: str = row["name"]
        self.kind: str = row["kind"]
        self.points: int | None = row["points"]
        self.remaining: int = row["remaining"]
        self.weight: int = row["weight"]
        self.daily_cap: int | None = row["daily_cap"]
        self.wins = wins

    def available(self, day: date) -> bool:
        return self.remaining > 0 and (
            self.daily_cap is None or self.wins.get(day, 0) < self.daily_cap
        )


def choose(
    prizes: list[Prize],
    no_prize_weight: int,
    day: date,
    below: Callable[[int], int] = secrets.randbelow,
) -> Prize | None:
    """One draw over the campaign's whole weight (no prize + every prize): the prize it falls
    on if that one is still available on ``day``, else none (see the module docstring); takes
    the prize's stock and a win of its day."""
    total = no_prize_weight + sum(p.weight for p in prizes)
    if total <= 0:
        return None
    x = below(total)
    if x < no_prize_weight:
        return None
    x -= no_prize_weight
    for prize in prizes:
        if x < prize.weight:
            if not prize.available(day):
                return None
            prize.remaining -= 1
            prize.wins[day] = prize.wins.get(day, 0) + 1
            return prize
        x -= prize.weight
    return None  # unreachable: x < total


class Drawer(Claims[DrawOut]):
    """Members' draws: ``app.claims.Claims`` with the draws' ``credit`` and ``explain``."""

    name = "tracecode-draws"

    def __init__(self, pool: AsyncConnectionPool, verifier: Verifier, scheme: Scheme) -> None:
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
    campaigns = sorted({r["campaign_id"] for r in inserted})
    params = {"campaigns": campaigns}
    found = await (await conn.execute(_CAMPAIGNS, params)).fetchall()
    names = {c["id"]: c["name"] for c in found}
    no_prize = {c["id"]: c["no_prize_weight"] for c in found}
    prize_rows = await (await conn.execute(_PRIZES, params)).fetchall()
    days: list[date] = sorted({r["day"] for r in inserted})
    ids = [r["id"] for r in prize_rows]
    wins: dict[int, dict[date, int]] = defaultdict(dict)
    for w in await (await conn.execute(_WINS, {"prizes": ids, "days": days})).fetchall():
        wins[w["prize_id"]][w["day"]] = int(w["n"])
    prizes: dict[int, list[Prize]] = defaultdict(list)
    for row in prize_rows:  # in id order: the odds' order, as the console lists them
        prizes[row["campaign_id"]].append(Prize(row, wins[row["id"]]))
    won: dict[int, Prize | None] = {
        draw["id"]: choose(prizes[draw["campaign_id"]], no_prize[draw["campaign_id"]], draw["day"])
        for draw in inserted
    }
    winners = [d for d in inserted if won[d["id"]] is not None]
    balances: dict[int, int] = {}
    if winners:
        settled = await conn.execute(
            _SETTLE,
            {
                "draw": [d["id"] for d in winners],
                "prize": [won[d["id"]].id for d in winners],  # type: ignore[union-attr]
                "name": [won[d["id"]].name for d in winners],  # type: ignore[union-attr]
                "kind": [won[d["id"]].kind for d in winners],  # type: ignore[union-attr]
                "points": [won[d["id"]].points for d in winners],  # type: ignore[union-attr]
                "status": [
                    "credited" if won[d["id"]].kind == "points" else "pending"  # type: ignore[union-attr]
                    for d in winners
                ],
                "member": [d["member_id"] for d in winners],
                "brand": [d["brand_id"] for d in winners],
                "reason": [
                    f"抽奖 {names[d['campaign_id']]}: {won[d['id']].name}"  # type: ignore[union-attr]
                    for d in winners
                ],
                "at": [d["drawn_at"] for d in winners],
            },
        )
        balances = {r["member_id"]: int(r["balance"]) for r in await settled.fetchall()}
    by_code = {p.code: p for p in group}
    out: dict[int, DrawOut] = {}
    for draw in inserted:
        prize = won[draw["id"]]
        pending = by_code[draw["code_id"]]
        out[id(pending)] = DrawOut(
            draw_id=draw["id"],
            serial=pending.serial,
            campaign_id=draw["campaign_id"],
            campaign_name=names[draw["campaign_id"]],
            prize=None
            if prize is None
            else DrawPrize(id=prize.id, name=prize.name, kind=prize.kind, points=prize.points),
            fulfil_status="none"
            if prize is None
            else ("credited" if prize.kind == "points" else "pending"),
            balance=balances.get(draw["member_id"]) if prize and prize.kind == "points" else None,
            drawn_at=draw["drawn_at"],
        )
    return out


_EXPLAIN = f"""
SELECT r.ord, d.id, d.member_id, d.client_id, d.campaign_id, d.prize_id, d.prize_name,
       d.prize_kind, d.points, d.fulfil_status, d.drawn_at, dc.name AS campaign_name,
       cc.code_id AS client_code, pb.balance,
       u.brand_id AS unit_brand, u.status AS unit_status, u.channel_org_id AS unit_channel,
       m.status AS member_status, b.state = 'void' AS batch_void,
       u.disposition AS unit_disposition, {RETURNED_UNSOLD} AS returned_unsold,
       {_HELD.format(member="r.member_id")} AS member_held,
       {_OTHERS_CLAIM.format(unit="r.code_id", member="r.member_id")} AS claimed_by_another,
       EXISTS (SELECT 1 FROM draw_campaigns c WHERE c.brand_id = u.brand_id AND {COVERS})
           AS covered,
       EXISTS (SELECT 1 FROM draw_campaigns c WHERE c.brand_id = u.brand_id AND {COVERS}
                  AND {RUNS_AT.format(at="r.at")}) AS running
FROM unnest(%(ord)s::int[], %(member)s::bigint[], %(code)s::bigint[], %(client)s::text[],
            %(at)s::timestamptz[])
     AS r(ord, member_id, code_id, client_id, at)
LEFT JOIN members m ON m.id = r.member_id
LEFT JOIN draws d ON d.code_id = r.code_id
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
    if row["id"] is not None:
        raise Conflict("此防伪码已抽过奖 / this code has already been drawn", code="already_drawn")
    if row["member_held"]:
        raise Conflict(
            "您的会员账户正在审核中，暂不能抽奖 / your membership is under review: no draw for now",
            code="draw_under_review",
        )
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
