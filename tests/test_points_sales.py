"""Member point claims count as sales (issue 17, A1–A3: "sales come from the store sale events,
member claims and rebate claims"), once per unit whichever comes first: a member's claim of a
unit a store holds and has not sold sells it in the claim's statement (as the till and a rebate
claim do); a store sale or a rebate claim after it records no second sale, nor does a member's
claim after them. A unit at an agent is sold there; one still at the factory is not sold."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import pytest

from app.analytics.sales import recount
from tests.helpers import assert_error, key_of
from tests.points_support import claim_body, member_client, new_member, set_rule
from tests.race_support import lock_waiters
from tests.rebates_support import rebate_body, set_rebate, store_goods, user_id
from tests.steady import clear_of_midnight
from tests.test_analytics_sales import STORES, auto, get, roll_all, shanghai
from tests.test_logistics import confirm, document
from tests.test_rebate_claims import _sale_of, code_of, damaged_and_written_off, one

__all__ = ["auto"]  # the fixture, used by name


@pytest.fixture(scope="module")
async def goods(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """Case 0 (units 0-9) at STORE-HZ-01, case 1 (10-19) at AGENT-ZJ, case 2 (20-29) at the
    factory; the product earns points and a rebate."""
    goods = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 5)
    await set_rebate(client, admin, goods["product_id"], 1.5)
    return goods


async def member_claim(app: Any, demo: Any, serial: str) -> dict[str, Any]:
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        made = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, serial)
        )
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


async def rebate_claim(app: Any, clerk: dict[str, str], serial: str) -> dict[str, Any]:
    async with member_client(app) as mc:
        made = await mc.post(
            "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, serial)
        )
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


async def sale_events(conn: Any, code: int) -> int:
    row = await one(
        conn,
        """SELECT count(*) AS n FROM event_codes ec JOIN events e ON e.id = ec.event_id
           WHERE ec.code = %s AND ec.kind = 'u' AND e.biz_step = 'retail_selling'""",
        code,
    )
    return int(row["n"])


async def claim_sale(conn: Any, code: int) -> int | None:
    row = await one(conn, "SELECT sale_event_id FROM point_claims WHERE code_id = %s", code)
    return row["sale_event_id"]  # type: ignore[no-any-return]


async def test_a_member_claim_is_a_sale_counted_once_whichever_comes_first(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], conn: Any, auto: Any
) -> None:
    """Unit 0: the member's claim first (sold at the store, +1), then a till sale (refused: it
    is sold) and a rebate claim (no second sale). Unit 1: the till first, the member after.
    Unit 2: a rebate claim first, the member after. Three units, three sales in the roll-up."""
    store, units = demo["STORE-HZ-01"], goods["units"]
    clerk, manager = await login("store_clerk"), await login("store_manager")
    await roll_all()
    await clear_of_midnight()  # today's figures: the day must not turn during the test
    today = shanghai(datetime.now(UTC)).isoformat()

    async def sold_here() -> int:
        out = await get(client, manager, STORES, **{"from": today, "to": today})
        return sum(i["units"] for i in out["items"] if i["store_id"] == store)

    before = await sold_here()
    first = await member_claim(app, demo, units[0])
    code = code_of(app, units[0])
    state = await one(
        conn, "SELECT status, disposition, holder_org_id FROM unit_state WHERE code = %s", code
    )
    assert (state["status"], state["disposition"], state["holder_org_id"]) == (
        "sold",
        "retail_sold",
        store,
    )
    sale_id = await claim_sale(conn, code)
    assert sale_id is not None and await sale_events(conn, code) == 1
    sale = await one(
        conn,
        """SELECT e.biz_location, e.details, d.doc_no FROM events e
           JOIN documents d ON d.event_id = e.id WHERE e.id = %s""",
        sale_id,
    )
    assert sale["biz_location"] == store
    assert sale["details"] == {"member_claim": True, "document": sale["doc_no"]}
    assert first["points"] > 0 and first["balance"] == first["points"]  # points as before
    assert await roll_all() >= 1
    assert await sold_here() == before + 1
    # later: the till refuses a sold unit, a rebate claim pays without a second sale
    till = await client.post("/sales", headers=clerk, json={"codes": [units[0]]})
    assert_error(till, 409, "not_held")
    assert (await rebate_claim(app, clerk, units[0]))["sale_recorded"] is False
    assert await sale_events(conn, code) == 1
    # the till first, then the member: the claim records no sale
    sold = await client.post("/sales", headers=clerk, json={"codes": [units[1]]})
    assert sold.status_code == 201, sold.text
    await member_claim(app, demo, units[1])
    assert await claim_sale(conn, code_of(app, units[1])) is None
    assert await sale_events(conn, code_of(app, units[1])) == 1
    # a rebate claim first (it sells), then the member
    assert (await rebate_claim(app, clerk, units[2]))["sale_recorded"] is True
    await member_claim(app, demo, units[2])
    assert await claim_sale(conn, code_of(app, units[2])) is None
    assert await sale_events(conn, code_of(app, units[2])) == 1
    await roll_all()
    assert await sold_here() == before + 3
    assert await recount(auto) == []


async def test_a_member_claim_sells_as_the_till_does(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], conn: Any
) -> None:
    """Two units of the same delivered case, one sold by a member's claim, one at the till: the
    same state, the same sale and unpacking events (but for who recorded them: a member is no
    user), the same stock delta."""
    clerk = await login("store_clerk")
    by_claim, at_till = goods["units"][6], goods["units"][9]
    await member_claim(app, demo, by_claim)
    sold = await client.post("/sales", headers=clerk, json={"codes": [at_till]})
    assert sold.status_code == 201, sold.text
    claimed = await _sale_of(conn, code_of(app, by_claim))
    tilled = await _sale_of(conn, code_of(app, at_till))
    assert claimed["state"] == tilled["state"]
    assert [e["biz_step"] for e in claimed["events"]] == ["retail_selling", "unpacking"]
    drop = {"recorded"}  # the till's clerk recorded its events; a member's claim has no user
    assert [{k: v for k, v in e.items() if k not in drop} for e in claimed["events"]] == [
        {k: v for k, v in e.items() if k not in drop} for e in tilled["events"]
    ]
    assert not any(e["recorded"] for e in claimed["events"])
    assert claimed["deltas"] == tilled["deltas"] and claimed["deltas"][0]["on_hand"] == -1


async def test_a_member_claims_sale_is_in_the_sellers_sales_query_once(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe (store manager / brand, seed 1.8 门店销售信息查询): a member's points claim sold a
    unit on the store's shelf, but the store sales query (``GET /center/documents?kind=sale``)
    never listed it: only ``POST /sales`` wrote a sale document. The claim's statement writes
    it now: one row at the store, the unit's product and lot, no handler (a member is no staff);
    the member's retry of the claim adds none."""
    goods = await store_goods(client, login, app, demo)
    await set_rule(client, await login("admin"), goods["product_id"], 5)
    store, serial = demo["STORE-HZ-01"], goods["units"][4]
    since = (await one(conn, "SELECT coalesce(max(id), 0) AS id FROM documents"))["id"]
    manager = await login("store_manager")

    async def sales_since() -> list[dict[str, Any]]:
        params = {"kind": "sale", "org_id": store, "per_page": 200}
        rows = await client.get("/center/documents", headers=manager, params=params)
        assert rows.status_code == 200, rows.text
        return [r for r in rows.json()["items"] if r["doc_id"] > since]

    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    body = claim_body(app.state.scheme, serial)
    async with member_client(app) as mc:
        made = await mc.post("/members/me/claims", headers=headers, json=body)
        assert made.status_code == 201, made.text
        again = await mc.post("/members/me/claims", headers=headers, json=body)
        assert again.status_code == 200, again.text
    unit = await one(conn, "SELECT lot FROM unit_state WHERE code = %s", code_of(app, serial))
    rows = await sales_since()
    assert [
        (r["org_id"], r["product_id"], r["lot"], r["units"], r["handler_name"], r["status"])
        for r in rows
    ] == [(store, goods["product_id"], unit["lot"], 1, None, "confirmed")], rows


async def test_at_an_agent_the_agent_sells_at_the_factory_nobody_does(
    app: Any, demo: Any, goods: dict[str, Any], conn: Any
) -> None:
    """A unit at its agent (the retail channel) is sold by the agent; a unit still at the
    factory never reached the channel: the claim sells nothing — and, a probe (SPEC B4:
    rewards only on codes shipped through the channel), pays no points (it paid them)."""
    at_agent, at_factory = goods["units"][10], goods["units"][20]
    await member_claim(app, demo, at_agent)
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        refused = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, at_factory)
        )
    assert_error(refused, 422, "not_shipped")
    agent = await one(
        conn,
        "SELECT status, holder_org_id FROM unit_state WHERE code = %s",
        code_of(app, at_agent),
    )
    assert (agent["status"], agent["holder_org_id"]) == ("sold", demo["AGENT-ZJ"])
    assert await sale_events(conn, code_of(app, at_agent)) == 1
    factory = await one(
        conn, "SELECT status FROM unit_state WHERE code = %s", code_of(app, at_factory)
    )
    assert factory["status"] == "active"
    claimed = await one(
        conn, "SELECT count(*) AS n FROM point_claims WHERE code_id = %s", code_of(app, at_factory)
    )
    assert claimed["n"] == 0
    assert await sale_events(conn, code_of(app, at_factory)) == 0


async def test_a_unit_returned_damaged_earns_neither_points_nor_a_rebate(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], conn: Any
) -> None:
    """Review R6: sold, brought back damaged, the unit is back in the store's stock but not for
    sale (as ``POST /sales`` refuses it): a member's claim and a rebate claim of it are refused
    too, and nothing is credited. A unit returned for another reason still earns both."""
    clerk, units = await login("store_clerk"), goods["units"]
    for serial, reason in ((units[7], "damaged"), (units[8], "wrong_goods")):
        sold = await client.post("/sales", headers=clerk, json={"codes": [serial]})
        assert sold.status_code == 201, sold.text
        back = await client.post("/returns", headers=clerk, json={"code": serial, "reason": reason})
        assert back.status_code == 200, back.text
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    scheme, damaged = app.state.scheme, units[7]
    async with member_client(app) as mc:
        points = await mc.post(
            "/members/me/claims", headers=member, json=claim_body(scheme, damaged)
        )
        assert_error(points, 409, "not_sellable")
        rebate = await mc.post("/rebates/claims", headers=clerk, json=rebate_body(scheme, damaged))
        assert_error(rebate, 409, "not_sellable")
    code = code_of(app, damaged)
    credited = await one(
        conn,
        """SELECT (SELECT count(*) FROM point_claims WHERE code_id = %s)
                + (SELECT count(*) FROM rebate_claims WHERE code_id = %s) AS n""",
        code,
        code,
    )
    assert credited["n"] == 0
    # returned for another reason: back on the shelf, its PIN known to the refunded buyer; a
    # member's claim waits for the store to sell it again (a probe: the refunded buyer claimed
    # its points again at once), which a rebate claim does
    async with member_client(app) as mc:
        early = await mc.post(
            "/members/me/claims", headers=member, json=claim_body(scheme, units[8])
        )
    assert_error(early, 409, "not_sold_again")
    assert (await rebate_claim(app, clerk, units[8]))["amount"] > 0
    assert (await member_claim(app, demo, units[8]))["points"] > 0


async def test_a_damaged_return_written_off_earns_its_points_again(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: buy, claim the points, return the pack ``damaged`` (refund, points withdrawn);
    the store wrote the damaged pack off (approved exception outbound) and the refunded buyer's
    claim of the same code again was credited 201 — the points of one refunded sale paid twice
    (the claim refused a damaged unit only while ``active``; the write-off makes it ``sold``
    and keeps ``damaged``). A damaged or expired return is no sale to claim wherever it moves
    after: 409 ``not_sellable``."""
    _, serial, headers = await damaged_and_written_off(client, login, app, demo)
    async with member_client(app) as mc:
        again = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, serial)
        )
    assert_error(again, 409, "not_sellable")


async def test_a_returned_pack_given_away_is_not_claimed_again_by_the_refunded_buyer(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: buy, claim the points, return the pack (refund, points withdrawn); the store
    then gave the returned pack away as a sample (approved exception outbound) and the refunded
    buyer, who still knows the PIN, was credited 201 again (``RETURNED_UNSOLD`` looked only at
    ``active`` units; the exception outbound makes it ``sold``). After a return the unit is
    claimed again only once it is sold again (a retail sale): a gift or sample is no sale, 409
    ``not_sold_again``."""
    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rule(client, admin, goods["product_id"], 10)
    scheme = app.state.scheme
    serial = goods["units"][4]
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        made = await mc.post("/members/me/claims", headers=headers, json=claim_body(scheme, serial))
        assert made.status_code == 201, made.text
        back = await client.post(
            "/returns", headers=clerk, json={"code": serial, "reason": "other"}
        )
        assert back.status_code == 200, back.text
        early = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(scheme, serial)
        )
        assert_error(early, 409, "not_sold_again")
        gone = await document(client, clerk, [serial], kind="exception", reason="sample")
        assert (await confirm(client, clerk, gone)).status_code == 200
        approved = await client.post(
            f"/documents/{gone['id']}/approve", headers=await login("store_manager"), json={}
        )
        assert approved.status_code == 200, approved.text
        again = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(scheme, serial)
        )
    assert_error(again, 409, "not_sold_again")


async def test_a_return_takes_the_points_back_and_the_unit_earns_them_again(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], conn: Any
) -> None:
    """A probe: a consumer's return withdrew the rebate but not the points: the refunded buyer
    kept them, and the next buyer's claim of the unit sold again was 409 already_claimed (buy,
    claim, return, again). What the balance no longer holds (spent) stays spent."""
    from app.members.points import balance, check_balances

    clerk, serial = await login("store_clerk"), goods["units"][5]
    first_id, first, _ = await new_member(app, demo["BRAND-LUMI"])
    scheme = app.state.scheme
    made_body = claim_body(scheme, serial)
    async with member_client(app) as mc:
        made = await mc.post("/members/me/claims", headers=first, json=made_body)
    assert made.status_code == 201, made.text
    points = made.json()["points"]
    spent = await client.post(  # two of them spent meanwhile
        "/points/adjustments",
        headers=await login("admin"),
        json={"member_id": first_id, "points": -2, "reason": "spent", "client_id": "ret-1"},
    )
    assert spent.status_code == 201, spent.text
    back = await client.post("/returns", headers=clerk, json={"code": serial, "reason": "other"})
    assert back.status_code == 200, back.text
    assert back.json()["points_withdrawn"] == made.json()["claim_id"]
    assert await balance(conn, first_id) == 0
    taken = await (
        await conn.execute(
            "SELECT points FROM points_ledger WHERE member_id = %s ORDER BY id DESC LIMIT 1",
            (first_id,),
        )
    ).fetchone()
    assert taken["points"] == -(points - 2)
    await conn.commit()
    async with member_client(app) as mc:
        # the refunded buyer: the claim sent again is withdrawn (a probe: "try again", for
        # ever), and a new one waits for the unit to be sold again
        resent = await mc.post(
            "/members/me/claims", headers=first, json={**claim_body(scheme, serial),
                                                       "client_id": made_body["client_id"]}
        )  # fmt: skip
        assert_error(resent, 409, "claim_withdrawn")
        early = await mc.post("/members/me/claims", headers=first, json=claim_body(scheme, serial))
        assert_error(early, 409, "not_sold_again")
    sold = await client.post("/sales", headers=clerk, json={"codes": [serial]})
    assert sold.status_code == 201, sold.text
    second_id, second, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        again = await mc.post("/members/me/claims", headers=second, json=claim_body(scheme, serial))
        assert again.status_code == 201, again.text
        # the first buyer claims again: the unit is the second buyer's now
        refused = await mc.post(
            "/members/me/claims", headers=first, json=claim_body(scheme, serial)
        )
    assert_error(refused, 409, "already_claimed")
    assert await balance(conn, second_id) == points
    assert not await check_balances(conn)
    await conn.commit()


async def test_a_refunded_buyer_claims_the_points_again_once_the_unit_went_back_upstream(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: bought, claimed, returned for a refund (points withdrawn), sent back to the
    agent and received there: the refunded buyer's claim was credited again, and "sold" the
    unit at the agent. It waits for a sale (409 not_sold_again)."""
    from tests.test_logistics import confirm, document
    from tests.test_redemptions import balance_of

    goods = await store_goods(client, login, app, demo)
    admin, clerk, agent = (
        await login("admin"),
        await login("store_clerk"),
        await login("agent_clerk"),
    )
    await set_rule(client, admin, goods["product_id"], 30)
    serial = goods["units"][6]
    sold = await client.post("/sales", headers=clerk, json={"codes": [serial]})
    assert sold.status_code == 201, sold.text
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    scheme = app.state.scheme
    async with member_client(app) as mc:
        made = await mc.post("/members/me/claims", headers=headers, json=claim_body(scheme, serial))
    assert made.status_code == 201, made.text
    back = await client.post("/returns", headers=clerk, json={"code": serial, "reason": "other"})
    assert back.status_code == 200, back.text
    assert await balance_of(app, member_id) == 0
    upstream = await document(client, clerk, [serial], kind="return")
    assert (await confirm(client, clerk, upstream)).status_code == 200, upstream
    received = await document(client, agent, kind="inbound", shipment_id=upstream["id"])
    assert (await confirm(client, agent, received)).status_code == 200
    async with member_client(app) as mc:
        again = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(scheme, serial)
        )
    assert_error(again, 409, "not_sold_again")
    assert await balance_of(app, member_id) == 0


async def test_a_points_claim_meeting_a_consumer_return_waits_for_it(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A probe: a buyer claimed the points on the phone while the unit was being returned at
    the till. The return withdrew "its" claim (none yet); the claim read the sold unit unlocked
    and was credited: the points of a refunded sale kept for good. The claim waits for the
    return (the audit table is held a moment to keep the return's transaction open)."""
    import asyncio

    import psycopg

    from tests.test_redemptions import balance_of

    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rule(client, admin, goods["product_id"], 25)
    serial = goods["units"][8]
    sold = await client.post("/sales", headers=clerk, json={"codes": [serial]})
    assert sold.status_code == 201, sold.text
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    hold = await psycopg.AsyncConnection.connect(settings.database_url)
    await hold.execute("BEGIN")
    await hold.execute("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
    returning = asyncio.create_task(
        client.post("/returns", headers=clerk, json={"code": serial, "reason": "other"})
    )
    # waits seen in pg_locks, not sleeps: on a loaded machine the return had not started yet
    async with member_client(app) as mc, app.state.pool.connection() as watch:
        # the unit locked, nothing withdrawn, its audit row waiting
        assert await lock_waiters(watch, 1), "the return should wait at its audit row"
        claiming = asyncio.create_task(
            mc.post(
                "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, serial)
            )
        )
        assert await lock_waiters(watch, 2), "the claim should wait for the return"
        assert not claiming.done()  # it waits for the return
        await hold.execute("ROLLBACK")
        await hold.close()
        back, made = await returning, await asyncio.wait_for(claiming, 20)
    assert back.status_code == 200, back.text
    assert_error(made, 409, "not_sold_again")
    assert await balance_of(app, member_id) == 0


async def test_points_withdrawn_at_a_return_come_back_when_the_spent_code_expires(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: buy, claim 50 points, redeem them for a gift at once, return the product for a
    refund (nothing to take back: spent), never collect the gift: the code expired and its
    refund left the member 50 points of a refunded purchase (and again, and again). The points
    owed are taken from the refund."""
    from tests.test_redemptions import _expire_now, _sweep, balance_of, new_gift, redeem

    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rule(client, admin, goods["product_id"], 50)
    serial = goods["units"][4]
    sold = await client.post("/sales", headers=clerk, json={"codes": [serial]})
    assert sold.status_code == 201, sold.text
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        made = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, serial)
        )
    assert made.status_code == 201, made.text
    points = made.json()["points"]  # an agent's own rule a test before set may be in force
    gift = await new_gift(
        client, login, points_cost=points, stock=5, name=f"g-{secrets.token_hex(3)}"
    )
    red = await redeem(app, headers, gift["id"])
    assert red.status_code == 201, red.text
    back = await client.post("/returns", headers=clerk, json={"code": serial, "reason": "other"})
    assert back.status_code == 200, back.text
    assert back.json()["points_withdrawn"] == made.json()["claim_id"]
    await _expire_now(app, red.json()["id"])
    await _sweep(app)
    # the only points this member ever earned were of a refunded purchase
    assert await balance_of(app, member_id) == 0
    async with app.state.pool.connection() as conn:
        owed = await (
            await conn.execute("SELECT owed FROM point_balances WHERE member_id = %s", (member_id,))
        ).fetchone()
    assert owed["owed"] == 0  # paid


async def test_a_return_with_exchange_and_a_claim_round_of_both_units_do_not_deadlock(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A probe: a claim round locks its units in code order, sold ones too; a consumer's return
    of unit A exchanged for unit B locked A, then sold B. A round of B's and A's claims (B's code
    below A's) held B and waited for A, the return waited for B: a deadlock. The return locks
    both units at once, in code order."""
    import asyncio

    import psycopg

    from tests.points_support import claim_body, member_client, new_member, set_rule
    from tests.rebates_support import store_goods

    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rule(client, admin, goods["product_id"], 10)
    scheme = app.state.scheme

    def code(serial: str) -> int:
        b, i, _ = scheme.verify(serial)
        return (b << 32) | i

    units = sorted(goods["units"][:10], key=code)
    b_unit, c_unit, a_unit = units[1], units[2], units[6]  # code(B) < code(A)
    sold = await client.post("/sales", headers=clerk, json={"codes": [a_unit]})
    assert sold.status_code == 201, sold.text
    brand = demo["BRAND-LUMI"]
    (_, m1, _), (_, m2, _), (_, m3, _) = [await new_member(app, brand) for _ in range(3)]
    async with member_client(app) as mc:
        made = await mc.post("/members/me/claims", headers=m1, json=claim_body(scheme, a_unit))
    assert made.status_code == 201, made.text

    hold = await psycopg.AsyncConnection.connect(settings.database_url)
    blocker = await psycopg.AsyncConnection.connect(settings.database_url)
    try:
        await hold.execute("BEGIN")
        await hold.execute("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE")
        returning = asyncio.create_task(
            client.post(
                "/returns",
                headers=clerk,
                json={"code": a_unit, "reason": "other", "exchange_for": b_unit},
            )
        )
        await asyncio.sleep(1.0)  # A locked, its audit row waiting
        await blocker.execute("BEGIN")
        await blocker.execute(
            "SELECT 1 FROM unit_state WHERE code = %s FOR UPDATE", (code(c_unit),)
        )
        async with member_client(app) as mc1, member_client(app) as mc2, member_client(app) as mc3:
            first = asyncio.create_task(
                mc3.post("/members/me/claims", headers=m3, json=claim_body(scheme, c_unit))
            )
            await asyncio.sleep(0.5)  # round 1 waits for C
            claims = [
                asyncio.create_task(
                    mc1.post("/members/me/claims", headers=m1, json=claim_body(scheme, a_unit))
                ),
                asyncio.create_task(
                    mc2.post("/members/me/claims", headers=m2, json=claim_body(scheme, b_unit))
                ),
            ]
            await asyncio.sleep(1.0)  # both queued for the next round
            await blocker.execute("ROLLBACK")
            await asyncio.sleep(1.0)  # round 2: B locked, A waited for
            await hold.execute("ROLLBACK")
            back = await asyncio.wait_for(returning, 30)
            answers = [await asyncio.wait_for(t, 30) for t in [first, *claims]]
    finally:
        await hold.close()
        await blocker.close()
    summary = [(r.status_code, r.text[:100]) for r in [back, *answers]]
    assert back.status_code == 200, summary
    assert all(r.status_code != 409 or "retry" not in r.text for r in answers), summary
    assert all(r.status_code < 500 for r in answers), summary


async def test_points_a_return_before_the_upgrade_could_not_take_back_are_owed_after_it(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A probe: returns made before migration 0073 that could not take points back (spent on a
    gift) left nothing owed once migrated, and an expiring gift code gave the points back. The
    database as the code before 0073 left it is rebuilt in a transaction (the column dropped,
    the audit row in its old form) and 0073 and 0075 run on it: the shortfall is owed."""
    import psycopg
    from psycopg.rows import dict_row

    from app.db import migrations
    from tests.test_redemptions import new_gift, redeem

    def _migration(number: int) -> str:
        return next(text for version, _, text in migrations() if version == number)

    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rule(client, admin, goods["product_id"], 40)
    serial = goods["units"][3]
    assert (await client.post("/sales", headers=clerk, json={"codes": [serial]})).status_code == 201
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        made = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, serial)
        )
    assert made.status_code == 201, made.text
    points = made.json()["points"]
    gift = await new_gift(client, login, points_cost=points, name=f"g-{secrets.token_hex(3)}")
    assert (await redeem(app, headers, gift["id"])).status_code == 201
    back = await client.post("/returns", headers=clerk, json={"code": serial, "reason": "other"})
    assert back.status_code == 200, back.text

    async with await psycopg.AsyncConnection.connect(
        settings.database_url, row_factory=dict_row
    ) as conn:
        # what the code before 0073 wrote: no owed column, the audit row without "owed"
        await conn.execute(
            "UPDATE audit_log SET after = after - 'owed' "
            "WHERE entity = 'point_claim' AND entity_id = %s AND action = 'withdraw'",
            (str(made.json()["claim_id"]),),
        )
        await conn.execute("ALTER TABLE point_balances DROP COLUMN owed")
        await conn.execute(_migration(73))  # type: ignore[arg-type]
        await conn.execute(_migration(75))  # type: ignore[arg-type]
        row = await (
            await conn.execute("SELECT owed FROM point_balances WHERE member_id = %s", (member_id,))
        ).fetchone()
        await conn.rollback()
    assert row is not None and row["owed"] == points


async def test_a_refunded_unit_never_claimed_waits_for_a_sale_after_going_back_upstream(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: sold at the till, never claimed, returned by the consumer for a refund, sent
    back to the agent and received there. The refunded buyer's claim was credited (and "sold"
    the unit at the agent): ``RETURNED_UNSOLD`` knew the return only by the store's
    ``returned`` disposition, which the agent's receipt replaced, or by a withdrawn claim, and
    there was none. The unit's consumer-return event says so now: 409 not_sold_again."""
    from tests.test_logistics import confirm, document
    from tests.test_redemptions import balance_of

    goods = await store_goods(client, login, app, demo)
    admin, clerk, agent = (
        await login("admin"),
        await login("store_clerk"),
        await login("agent_clerk"),
    )
    await set_rule(client, admin, goods["product_id"], 30)
    serial = goods["units"][3]
    sold = await client.post("/sales", headers=clerk, json={"codes": [serial]})
    assert sold.status_code == 201, sold.text
    back = await client.post("/returns", headers=clerk, json={"code": serial, "reason": "other"})
    assert back.status_code == 200, back.text
    upstream = await document(client, clerk, [serial], kind="return")
    assert (await confirm(client, clerk, upstream)).status_code == 200, upstream
    received = await document(client, agent, kind="inbound", shipment_id=upstream["id"])
    assert (await confirm(client, agent, received)).status_code == 200
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])  # the refunded buyer
    async with member_client(app) as mc:
        made = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, serial)
        )
    assert_error(made, 409, "not_sold_again")
    assert await balance_of(app, member_id) == 0


async def test_a_returns_withdrawal_is_audited_under_the_brand_not_the_store(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a consumer returned a unit a member had claimed points for; the store clerk's
    ``POST /returns`` wrote the ``withdraw`` row of the ``point_claim`` under the store, and the
    store's manager (``org_admin``: ``audit.read``, no ``members.read``) read the member's id in
    it through ``GET /audit``: below the brand nobody sees members. The row is the brand's, as
    a member's other rows: its staff read it whole."""
    goods = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 5)
    serial = goods["units"][3]
    member_id, member, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        claimed = await mc.post(
            "/members/me/claims", headers=member, json=claim_body(app.state.scheme, serial)
        )
    assert claimed.status_code == 201, claimed.text
    claim_id = claimed.json()["claim_id"]
    clerk = await login("store_clerk")
    back = await client.post("/returns", headers=clerk, json={"code": serial, "reason": "other"})
    assert back.status_code == 200 and back.json()["points_withdrawn"] == claim_id, back.text
    params = {"entity": "point_claim", "entity_id": claim_id}
    store = await client.get("/audit", headers=await login("store_manager"), params=params)
    assert store.status_code == 200 and store.json()["items"] == [], store.text
    brand = await client.get("/audit", headers=admin, params=params)
    assert brand.status_code == 200, brand.text
    [row] = brand.json()["items"]
    assert (row["action"], row["org_id"]) == ("withdraw", demo["BRAND-LUMI"])
    assert row["after"]["member_id"] == member_id


async def test_points_a_return_through_an_api_key_takes_back_name_its_maker(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a return taken through the brand's returns system (an API key the admin made,
    ``logistics.scan``) took the member's points back with a ledger row ``recorded_by`` null:
    points moved by nobody. It names the person behind the key now (``Principal.person``)."""
    goods = await store_goods(client, login, app, demo)
    await set_rule(client, await login("admin"), goods["product_id"], 5)
    serial = goods["units"][2]
    member_id, member, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        claimed = await mc.post(
            "/members/me/claims", headers=member, json=claim_body(app.state.scheme, serial)
        )
    assert claimed.status_code == 201, claimed.text
    key = await key_of(client, await login("admin"), ["logistics.scan"])
    back = await client.post("/returns", headers=key, json={"code": serial, "reason": "other"})
    assert back.status_code == 200, back.text
    taken = await one(
        conn,
        "SELECT points, recorded_by FROM points_ledger WHERE member_id = %s ORDER BY id DESC "
        "LIMIT 1",
        member_id,
    )
    assert taken["points"] < 0 and taken["recorded_by"] == await user_id(conn, "admin"), taken
