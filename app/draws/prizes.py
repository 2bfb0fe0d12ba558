"""Drawing the prizes of draws already written (steps 2–4 of ``app.draws.claims``): a draw round
draws its draws at once; the release of a fraud hold (``app.forensics.holds.settle``) draws the
held draws of its member then, with the prizes' stock at that time — it locks the prizes
(``lock_prizes``) before its held points claims' rows, and draws after them, so its balances
come last, as a consumer's return takes them (``app.draws.returns``).

``award`` locks the prizes of the campaigns drawn (``FOR UPDATE``, in id order) and counts each
one's wins of the draws' days: a round of another process (or a release) giving the same prizes
waits for this one to commit, then reads the stock it left. A draw's day (``draws.day``, Asia/
Shanghai) is the day its prize is drawn: a round's, the draw's own; a released held draw's, the
release's (``holds.settle`` moves it there before it is drawn), so it counts toward the daily
cap of the day its prize goes out. ``choose`` draws each prize with
``secrets.randbelow`` (the OS CSPRNG) over the campaign's whole weight: the no-prize weight plus
every prize's. A prize out of stock, or at its daily cap, keeps its share of the odds as "no
prize" (the other prizes' odds never rise because one ran out); a weight of 0 is never drawn.
``_SETTLE`` then writes the results: each draw's prize (name, kind, points), the prizes' stock
(``remaining - n``; a CHECK keeps it ≥ 0 should anything else have taken it), the points prizes'
ledger rows (kind ``draw``) and balances (upserted in member order, as the points claims do),
the voucher and gift prizes ``pending`` for the staff to fulfil.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from typing import Any, NamedTuple

from app.db import Conn
from app.draws.schemas import PrizeKind
from app.members.points import BALANCE_TOUCHED

# The campaigns drawn, then their prizes locked (in id order), and the prizes' wins on the days
# drawn (counted under the prizes' locks: every draw that gives one holds it).
CAMPAIGNS = """
SELECT id, name, no_prize_weight FROM draw_campaigns WHERE id = ANY(%(campaigns)s)
"""
_PRIZES = """
SELECT id, campaign_id, name, kind, points, remaining, weight, daily_cap FROM draw_prizes
WHERE campaign_id = ANY(%(campaigns)s) ORDER BY id FOR UPDATE
"""
_WINS = """
SELECT prize_id, day, count(*) AS n FROM draws
WHERE prize_id = ANY(%(prizes)s) AND day = ANY(%(days)s)
  AND fulfil_status <> 'cancelled'  -- a return's: back in stock, and out of its day's cap
GROUP BY prize_id, day
"""

# ``at`` null: the ledger row's time is the transaction's (a release's).
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
    SELECT member_id, brand_id, 'draw', points, draw_id, reason, coalesce(at, now()) FROM w
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
        self.kind: PrizeKind = row["kind"]
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


class Awarded(NamedTuple):
    """What ``award`` gave: each draw's prize (None: no prize) by draw id, the balances of the
    members a points prize was credited to, and the names of the campaigns drawn."""

    won: dict[int, Prize | None]
    balances: dict[int, int]
    names: dict[int, str]


def fulfil_status(prize: Prize | None) -> str:
    return "none" if prize is None else ("credited" if prize.kind == "points" else "pending")


async def lock_prizes(conn: Conn, draws: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The prizes of the campaigns of ``draws`` (rows with a ``campaign_id``), locked ``FOR
    UPDATE`` in id order, as ``award`` locks them: a hold's release takes them before its held
    points claims' rows (``app.forensics.holds.settle``), its ``award`` then holds them
    already."""
    params = {"campaigns": sorted({d["campaign_id"] for d in draws})}
    return await (await conn.execute(_PRIZES, params)).fetchall()


async def award(conn: Conn, draws: list[dict[str, Any]], *, released: bool = False) -> Awarded:
    """Draw a prize for each of ``draws`` (rows: id, campaign_id, member_id, brand_id, day,
    drawn_at) and write the results, in the caller's transaction (see the module docstring).
    A points prize's ledger row is of the draw's time, or of now for ``released`` draws (a
    hold's release credits them now)."""
    if not draws:
        return Awarded({}, {}, {})
    params = {"campaigns": sorted({d["campaign_id"] for d in draws})}
    found = await (await conn.execute(CAMPAIGNS, params)).fetchall()
    names = {c["id"]: c["name"] for c in found}
    no_prize = {c["id"]: c["no_prize_weight"] for c in found}
    prize_rows = await lock_prizes(conn, draws)
    days: list[date] = sorted({d["day"] for d in draws})
    ids = [r["id"] for r in prize_rows]
    wins: dict[int, dict[date, int]] = defaultdict(dict)
    for w in await (await conn.execute(_WINS, {"prizes": ids, "days": days})).fetchall():
        wins[w["prize_id"]][w["day"]] = int(w["n"])
    prizes: dict[int, list[Prize]] = defaultdict(list)
    for row in prize_rows:  # in id order: the odds' order, as the console lists them
        prizes[row["campaign_id"]].append(Prize(row, wins[row["id"]]))
    won: dict[int, Prize | None] = {
        d["id"]: choose(prizes[d["campaign_id"]], no_prize[d["campaign_id"]], d["day"])
        for d in draws
    }
    winners = [(d, p) for d in draws if (p := won[d["id"]]) is not None]
    if not winners:
        return Awarded(won, {}, names)
    settled = await conn.execute(
        _SETTLE,
        {
            "draw": [d["id"] for d, _ in winners],
            "prize": [p.id for _, p in winners],
            "name": [p.name for _, p in winners],
            "kind": [p.kind for _, p in winners],
            "points": [p.points for _, p in winners],
            "status": [fulfil_status(p) for _, p in winners],
            "member": [d["member_id"] for d, _ in winners],
            "brand": [d["brand_id"] for d, _ in winners],
            "reason": [f"抽奖 {names[d['campaign_id']]}: {p.name}" for d, p in winners],
            "at": [None if released else d["drawn_at"] for d, _ in winners],
        },
    )
    balances = {r["member_id"]: int(r["balance"]) for r in await settled.fetchall()}
    return Awarded(won, balances, names)
