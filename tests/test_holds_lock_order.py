"""A fraud hold's release takes its locks in the order a consumer's return takes them — the
draw, its prize, the points claim, the member's balance last (``app.draws.returns``) — so the
two never deadlock (``app.forensics.holds.settle``)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.points_support import claim_body, member_client, new_member, set_rule, shipped_goods
from tests.test_draws import campaign_body, draw, new_campaign, prize

PRIZE_POINTS = 7
CLAIM_POINTS = 10


async def _blocked_by(conn: Any, pid: int, deadline: float) -> int:
    """The backend waiting on a lock ``pid`` holds (polled until ``deadline``, monotonic).
    ``conn``: autocommit (a transaction reads one snapshot of ``pg_stat_activity``)."""
    while True:
        row = await (
            await conn.execute(
                """SELECT pid FROM pg_stat_activity
                    WHERE wait_event_type = 'Lock' AND %s = ANY(pg_blocking_pids(pid))""",
                (pid,),
            )
        ).fetchone()
        if row is not None:
            return int(row["pid"])
        assert time.monotonic() < deadline, "the release never waited on the claim's row"
        await asyncio.sleep(0.02)


async def _member_points(conn: Any, member_id: int) -> tuple[int, list[tuple[str, int]]]:
    """(balance, ledger rows as (kind, points) in id order) of a member."""
    balance = await (
        await conn.execute("SELECT balance FROM point_balances WHERE member_id = %s", (member_id,))
    ).fetchone()
    ledger = await (
        await conn.execute(
            "SELECT kind, points FROM points_ledger WHERE member_id = %s ORDER BY id", (member_id,)
        )
    ).fetchall()
    return int(balance["balance"]), [(r["kind"], int(r["points"])) for r in ledger]


async def test_a_release_and_a_return_of_a_held_claims_unit_do_not_deadlock(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A review: a hold's release locked the member's balance (its held draw's points prize)
    before the held points claims' rows, a consumer's return the claim's row before the balance:
    the two at once deadlocked (PostgreSQL aborted one, a 409 ``retry``). The return's locks are
    taken here on a connection of its own — the claim's row, then once the release waits on it,
    the balance: the release waits without holding the balance, then credits the claim and the
    prize, once."""
    goods = await shipped_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], CLAIM_POINTS)
    body = campaign_body(
        goods["product_id"], [prize("Lock points", "points", 5, 1, points=PRIZE_POINTS)]
    )
    # the earliest-starting campaign covering the unit is the one drawn (``app.draws.claims``)
    body["starts_at"] = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    campaign = await new_campaign(client, admin, body)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    scheme = app.state.scheme
    plain, drawn, claimed = goods["units"][:3]
    try:
        async with member_client(app) as mc:  # a balance row to lock: a claim before the hold
            first = await mc.post(
                "/members/me/claims", headers=headers, json=claim_body(scheme, plain)
            )
            assert first.json()["status"] == "credited", first.text
            made = await client.post(
                "/forensics/holds",
                headers=admin,
                json={"party_kind": "member", "party_id": member_id},
            )
            assert made.status_code == 201, made.text
            held_draw = await draw(app, headers, drawn)
            assert held_draw.json()["status"] == "under_review", held_draw.text
            held = await mc.post(
                "/members/me/claims", headers=headers, json=claim_body(scheme, claimed)
            )
            assert held.json()["status"] == "under_review", held.text
        claim_id = held.json()["claim_id"]
        assert held_draw.json()["campaign_id"] == campaign["id"]

        conninfo = app.state.pool.conninfo
        async with (
            await psycopg.AsyncConnection.connect(conninfo, row_factory=dict_row) as ret,
            await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, row_factory=dict_row
            ) as watch,
        ):
            mine = (await (await ret.execute("SELECT pg_backend_pid() AS pid")).fetchone())["pid"]
            # the return's first locks: (the draw, its prize,) the points claim's row
            await ret.execute("SELECT id FROM point_claims WHERE id = %s FOR UPDATE", (claim_id,))
            release = asyncio.create_task(
                client.post(f"/forensics/holds/{made.json()['id']}/release", headers=admin)
            )
            await _blocked_by(watch, mine, time.monotonic() + 30)
            # then the balance, as ``take_back`` locks it: free, the release holds none yet
            await ret.execute("SET lock_timeout = '5s'")
            await ret.execute(
                "SELECT balance FROM point_balances WHERE member_id = %s FOR UPDATE", (member_id,)
            )
            await ret.commit()
            answer = await asyncio.wait_for(release, 30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["claims"] == {"held": 0, "released": 2, "rejected": 0}
        balance, ledger = await _member_points(conn, member_id)
        assert sorted(ledger) == [
            ("claim", CLAIM_POINTS),
            ("claim", CLAIM_POINTS),
            ("draw", PRIZE_POINTS),
        ]
        assert balance == 2 * CLAIM_POINTS + PRIZE_POINTS
    finally:
        await client.delete(f"/draws/{campaign['id']}", headers=admin)
