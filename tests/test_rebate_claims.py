"""Store clerks' rebate claims (R1): POST /rebates/claims by scan + PIN, once per code, the rule
in force at the claim, the sale the claim records, and every refusal."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from app.claims import Pending
from app.logistics.rollup import rollup as stock_rollup
from app.verify import messages
from tests.helpers import acting, assert_error, code_of
from tests.points_support import claim_body, member_client, new_member, set_rule
from tests.race_support import answered_while_unit_held, lock_waiters, voiding
from tests.rebates_support import rebate_body, set_rebate, store_goods, user_id
from tests.test_inspect import forge, moved_by_import, scan
from tests.test_logistics import (  # noqa: F401 (deep_tree, via_branch: fixtures)
    _received,
    _store_of_its_own,
    confirm,
    deep_tree,
    document,
    pack,
    via_branch,
)


@pytest.fixture
async def agent_rebates(client: Any, login: Any) -> AsyncIterator[list[int]]:
    """The agents' rebate rules a test sets (their ids), deleted after it: an agent's rule
    outranks the product's rule that the worker's later tests set, and their claims at the
    agent's stores were paid the agent's."""
    made: list[int] = []
    yield made
    admin = await login("admin")
    for rule_id in made:
        gone = await client.delete(f"/rebates/rules/{rule_id}", headers=admin)
        assert gone.status_code == 204, gone.text


@pytest.fixture(scope="module")
async def goods(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """Case 0 at STORE-HZ-01, case 1 at AGENT-ZJ, case 2 at the factory (``store_goods``)."""
    return await store_goods(client, login, app, demo)


async def new_clerk(client: Any, login: Any, org_id: int, roles: list[str] | None = None) -> Any:
    """A user of ``org_id`` (a store clerk by default), signed in: (user id, headers)."""
    admin = await login("admin")
    name = f"clerk-{secrets.token_hex(4)}"
    created = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": org_id,
            "username": name,
            "password": "Clerk-pass-2026",
            "display_name": name,
            "roles": roles or ["store_clerk"],
        },
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], await login(name, "Clerk-pass-2026")


async def one(conn: Any, sql: str, *args: Any) -> Any:
    row = await (await conn.execute(sql, args)).fetchone()
    await conn.commit()
    return row


async def test_a_claim_pays_the_rule_in_force_and_records_the_sale(
    client: Any,
    app: Any,
    login: Any,
    demo: Any,
    goods: dict[str, Any],
    conn: Any,
    agent_rebates: list[int],
) -> None:
    admin, clerk = await login("admin"), await login("store_clerk")
    scheme, product = app.state.scheme, goods["product_id"]
    await set_rebate(client, admin, product, 2.5)
    rule = await set_rebate(client, admin, product, 4, demo["AGENT-ZJ"])  # the units' agent
    agent_rebates.append(rule["id"])  # (changed to 5.5 below: the same rule)
    serial = goods["units"][0]
    async with member_client(app) as mc:
        body = rebate_body(scheme, serial)
        made = await mc.post("/rebates/claims", headers=clerk, json=body)
        assert made.status_code == 201, made.text
        out = made.json()
        assert out["amount"] == 4.0 and out["agent_id"] == demo["AGENT-ZJ"]
        assert out["store_id"] == demo["STORE-HZ-01"] and out["sale_recorded"] is True
        assert out["clerk_id"] == await user_id(conn, "store_clerk")
        assert out["verification"]["result"] == "genuine"
        # the same client id again: the first claim (200), no second claim, no second sale
        again = await mc.post("/rebates/claims", headers=clerk, json=body)
        assert again.status_code == 200, again.text
        assert again.json()["claim_id"] == out["claim_id"] and again.json()["amount"] == 4.0
        # the rule changes: later claims get the new amount, the first keeps its own
        await set_rebate(client, admin, product, 5.5, demo["AGENT-ZJ"])
        later = await mc.post(
            "/rebates/claims", headers=clerk, json=rebate_body(scheme, goods["units"][1])
        )
        assert later.status_code == 201, later.text
        assert later.json()["amount"] == 5.5
        # another claim of the first code, by anyone: already claimed
        other_id = rebate_body(scheme, serial)
        assert_error(await mc.post("/rebates/claims", headers=clerk, json=other_id), 409)
        # probe X: each retry was a new check of the code, and a few made it "probably copied"
        # to its buyer; retries are checked (the PIN) but not counted
        for _ in range(3):
            assert (await mc.post("/rebates/claims", headers=clerk, json=body)).status_code == 200
        buyer = await mc.post("/v1/verify", json={"serial": serial, "pin": scheme.pin(serial)})
        assert (buyer.json()["result"], buyer.json()["queries"]) == ("genuine", 3), buyer.text
    # review R5: PostgreSQL's counts (the outage path, ``tracecode redis rebuild``) agree
    import redis as redis_sync

    from app.verify import records
    from app.verify.fallback import COUNTED

    settings = app.state.settings
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        queue = redis_sync.Redis.from_url(settings.redis_url)
        while records.flush(queue, pg, settings.redis_namespace):
            pass
        counted, retries = pg.execute(
            f"""SELECT count(*) FILTER (WHERE {COUNTED}),
                       count(*) FILTER (WHERE reason = 'claim_retry')
                  FROM verifications WHERE code_id = %s""",
            (code_of(app, serial),),
        ).fetchone()
    assert (counted, retries) == (3, 4)  # the first claim, the other id's, the buyer; retries
    code = code_of(app, serial)
    state = await one(conn, "SELECT status, sold_at FROM unit_state WHERE code = %s", code)
    assert state["status"] == "sold" and state["sold_at"] is not None
    claim = await one(
        conn,
        """SELECT amount, sale_event_id, (SELECT count(*) FROM rebate_tally_queue q
                                          WHERE q.claim_id = c.id) AS queued
           FROM rebate_claims c WHERE code_id = %s""",
        code,
    )
    assert float(claim["amount"]) == 4.0 and claim["queued"] == 1
    sale = await one(
        conn,
        "SELECT biz_step, disposition FROM events WHERE id = %s",
        claim["sale_event_id"],
    )
    assert (sale["biz_step"], sale["disposition"]) == ("retail_selling", "retail_sold")
    events = await one(
        conn,
        """SELECT count(*) FILTER (WHERE e.biz_step = 'retail_selling') AS sales,
                  count(*) FILTER (WHERE e.biz_step = 'claiming') AS claims
           FROM event_codes ec JOIN events e ON e.id = ec.event_id
           WHERE ec.code = %s AND ec.kind = 'u'""",
        code,
    )
    assert (events["sales"], events["claims"]) == (1, 1)
    assert rule["amount"] == 4.0


async def straight_to_the_store(
    client: Any, app: Any, login: Any, demo: Any, cases: int
) -> dict[str, Any]:
    """Fresh goods (``cases`` cases of 10 units) the factory shipped straight to STORE-HZ-01
    (under AGENT-ZJ), received by its clerk: the units' channel organisation is the store."""
    goods = await pack(client, login, app, demo, cases)
    fclerk, store_clerk = await login("clerk"), await login("store_clerk")
    inbound = await document(client, fclerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, fclerk, inbound)).status_code == 200
    ship = await document(
        client, fclerk, goods["cases"], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    assert (await confirm(client, fclerk, ship)).status_code == 200
    got = await document(client, store_clerk, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, store_clerk, got)).status_code == 200
    return goods


async def test_a_store_supplied_directly_is_paid_its_agents_rebate_as_its_stock_shows(
    client: Any, app: Any, login: Any, demo: Any, agent_rebates: list[int]
) -> None:
    """A probe: a claim is paid the amount in force at the clerk's store (SPEC R1: "the
    product's rule for the store's agent"), the very amount the store's stock row shows (the
    nearest agent's rule, else the default). Goods the factory shipped straight to STORE-HZ-01
    (under AGENT-ZJ) showed AGENT-ZJ's override (20) on the store's stock row, but the claim
    looked the override up by the unit's channel organisation only — here the store itself —
    and paid the default (5)."""
    admin, store_clerk = await login("admin"), await login("store_clerk")
    goods = await straight_to_the_store(client, app, login, demo, 1)
    product = goods["product_id"]
    await set_rebate(client, admin, product, 5)
    agent_rebates.append((await set_rebate(client, admin, product, 20, demo["AGENT-ZJ"]))["id"])
    async with await psycopg.AsyncConnection.connect(
        app.state.settings.database_url, autocommit=True, row_factory=dict_row
    ) as c:
        await stock_rollup(c)
    stock = await client.get(
        "/center/stock",
        headers=admin,
        params={"org_id": demo["STORE-HZ-01"], "product_id": product, "lot": "LOG1"},
    )
    assert stock.status_code == 200, stock.text
    shown = {row["rebate"] for row in stock.json()["items"] if row["org_id"] == demo["STORE-HZ-01"]}
    assert shown == {20.0}, stock.json()
    async with member_client(app) as mc:
        made = await mc.post(
            "/rebates/claims",
            headers=store_clerk,
            json=rebate_body(app.state.scheme, goods["units"][0]),
        )
    assert made.status_code == 201, made.text
    assert made.json()["amount"] == 20.0, made.json()


async def test_a_claim_names_the_agent_whose_rule_it_was_paid(
    client: Any, app: Any, login: Any, demo: Any, agent_rebates: list[int]
) -> None:
    """A probe: a claim's ``agent_id`` is the store's nearest agent, whose rule it was paid
    (NULL when no agent is above the store). Goods the factory shipped straight to STORE-HZ-01
    were paid AGENT-ZJ's override, but the claim stored the units' channel organisation — the
    store itself — as its agent, so ``GET /rebates?agent_id=`` of AGENT-ZJ, the statements'
    lines and the claims list's agent column missed or misnamed what AGENT-ZJ's rule paid."""
    admin, store_clerk = await login("admin"), await login("store_clerk")
    goods = await straight_to_the_store(client, app, login, demo, 1)
    product, agent = goods["product_id"], demo["AGENT-ZJ"]
    await set_rebate(client, admin, product, 5)
    agent_rebates.append((await set_rebate(client, admin, product, 20, agent_id=agent))["id"])
    body = rebate_body(app.state.scheme, goods["units"][0])
    async with member_client(app) as mc:
        made = await mc.post("/rebates/claims", headers=store_clerk, json=body)
        assert made.status_code == 201, made.text
        assert (made.json()["amount"], made.json()["agent_id"]) == (20.0, agent), made.json()
        again = await mc.post("/rebates/claims", headers=store_clerk, json=body)
        assert again.status_code == 200 and again.json()["agent_id"] == agent, again.text
    listed = await client.get(
        "/rebates", headers=admin, params={"agent_id": agent, "product_id": product}
    )
    assert listed.status_code == 200, listed.text
    rows = [(r["claim_id"], r["agent_id"], r["agent_name"]) for r in listed.json()["items"]]
    assert (made.json()["claim_id"], agent, "Zhejiang Agent 浙江代理") in rows, rows


async def test_a_unit_sold_before_keeps_its_sale(
    client: Any, app: Any, login: Any, goods: dict[str, Any], conn: Any
) -> None:
    """Sold at the till first (L7), claimed after: the claim records no second sale."""
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rebate(client, admin, goods["product_id"], 3)
    serial = goods["units"][2]
    sold = await client.post("/sales", headers=clerk, json={"codes": [serial]})
    assert sold.status_code in (200, 201), sold.text
    async with member_client(app) as mc:
        made = await mc.post(
            "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, serial)
        )
    assert made.status_code == 201, made.text
    assert made.json()["sale_recorded"] is False
    sales = await one(
        conn,
        """SELECT count(*) AS n FROM event_codes ec JOIN events e ON e.id = ec.event_id
           WHERE ec.code = %s AND e.biz_step = 'retail_selling'""",
        code_of(app, serial),
    )
    assert sales["n"] == 1


async def test_refusals(
    client: Any, app: Any, login: Any, demo: Any, goods: dict[str, Any], conn: Any
) -> None:
    admin, clerk = await login("admin"), await login("store_clerk")
    scheme, units = app.state.scheme, goods["units"]
    await set_rebate(client, admin, goods["product_id"], 2)
    async with member_client(app) as mc:

        async def claim(body: dict[str, Any], headers: Any = clerk) -> Any:
            return await mc.post("/rebates/claims", headers=headers, json=body)

        # forged, malformed, wrong PIN and the lockout: the verification's answers
        forged = assert_error(
            await claim({**rebate_body(scheme, units[3]), "serial": forge(units[3])}), 422
        )
        assert forged["code"] == "not_genuine" and forged["details"]["reason"] == "forged"
        wrong = {**rebate_body(scheme, units[4]), "pin": "0000"}
        if wrong["pin"] == scheme.pin(units[4]):
            wrong["pin"] = "0001"
        first = assert_error(await claim(wrong), 422, "wrong_pin")
        assert first["details"]["pin_attempts_left"] >= 1
        for _ in range(first["details"]["pin_attempts_left"] - 1):
            assert_error(await claim(wrong), 422, "wrong_pin")
        locked = await claim(wrong)
        assert_error(locked, 429, "locked")
        assert_error(await claim(rebate_body(scheme, units[4])), 429, "locked")
        # a unit still at the store's agent, and one that never left the factory
        at_agent = assert_error(await claim(rebate_body(scheme, units[10])), 422, "not_delivered")
        assert at_agent["details"]["held_by"]["id"] == demo["AGENT-ZJ"]
        assert at_agent["details"]["expected_agent"]["id"] == demo["AGENT-ZJ"]
        never = assert_error(await claim(rebate_body(scheme, units[20])), 422, "not_delivered")
        assert never["details"]["expected_agent"] is None
        # a clerk of another store (of another agent): the unit was meant for STORE-HZ-01
        gz = await login("gz_clerk")
        elsewhere = assert_error(await claim(rebate_body(scheme, units[5]), gz), 422, "wrong_store")
        assert elsewhere["details"]["expected_store"]["id"] == demo["STORE-HZ-01"]
        assert "Hangzhou" in elsewhere["message"]
        # not a store's clerk, no permission, not signed in, a bad token
        assert_error(await claim(rebate_body(scheme, units[5]), admin), 403, "not_a_store")
        _, stocker = await new_clerk(client, login, demo["STORE-HZ-01"], ["warehouse_clerk"])
        assert_error(await claim(rebate_body(scheme, units[5]), stocker), 403, "permission_denied")
        assert_error(await claim(rebate_body(scheme, units[5]), {}), 401, "unauthorized")
        bad = {"Authorization": "Bearer nope"}
        assert_error(await claim(rebate_body(scheme, units[5]), bad), 401, "invalid_token")
        # bad bodies
        for body in (
            {"serial": units[5], "client_id": "x"},
            {**rebate_body(scheme, units[5]), "client_id": "a\u0000b"},
            {**rebate_body(scheme, units[5]), "extra": 1},
        ):
            assert_error(await claim(body), 400)
        # the refusals of undelivered units are kept, with an alert for the brand
    kept = await (
        await conn.execute(
            """SELECT reason, expected_store_id, store_id FROM rebate_refusals
               WHERE code_id = ANY(%s) ORDER BY id""",
            ([code_of(app, units[i]) for i in (10, 20, 5)],),
        )
    ).fetchall()
    await conn.commit()
    assert [r["reason"] for r in kept] == ["not_delivered", "not_delivered", "wrong_store"]
    assert kept[2]["expected_store_id"] == demo["STORE-HZ-01"]
    assert kept[2]["store_id"] == demo["STORE-GZ-01"]
    alert = await one(
        conn,
        "SELECT kind, org_id FROM alerts WHERE dedup_key = %s",
        f"diversion:rebate:{code_of(app, units[5])}",
    )
    assert alert["kind"] == "diversion" and alert["org_id"] == demo["BRAND-LUMI"]
    # nothing was credited for any refusal
    none = await one(
        conn,
        "SELECT count(*) AS n FROM rebate_claims WHERE code_id = ANY(%s)",
        [code_of(app, units[i]) for i in (3, 4, 5, 10, 20)],
    )
    assert none["n"] == 0


async def test_void_no_rule_inactive_clerk_and_in_transit(
    client: Any, app: Any, login: Any, demo: Any, conn: Any
) -> None:
    """Fresh goods: a unit in transit to the store, a voided unit, a product without a rebate,
    and a clerk made inactive."""
    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    scheme, units = app.state.scheme, goods["units"]
    await set_rebate(client, admin, goods["product_id"], 2)
    agent = await login("agent_clerk")
    ship = await document(
        client, agent, [units[10]], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    assert (await confirm(client, agent, ship)).status_code == 200
    async with member_client(app) as mc:

        async def claim(serial: str, headers: Any = clerk) -> Any:
            return await mc.post(
                "/rebates/claims", headers=headers, json=rebate_body(scheme, serial)
            )

        assert_error(await claim(units[10]), 422, "not_received")
        # on its way back from the store (probe H: "not delivered to your store (it is recorded
        # at <that store>)", with a diversion alert and a refusal kept, though nothing diverted)
        back = await document(client, clerk, [units[9]], kind="return")
        assert (await confirm(client, clerk, back)).status_code == 200
        assert_error(await claim(units[9]), 422, "not_on_hand")
        alerts = await one(
            conn,
            "SELECT count(*) AS n FROM alerts WHERE dedup_key = %s",
            f"diversion:rebate:{code_of(app, units[9])}",
        )
        assert alerts["n"] == 0
        # no rule for the product (0 is no rebate)
        rules = await client.get(
            "/rebates/rules", headers=admin, params={"product_id": goods["product_id"]}
        )
        for rule in rules.json()["items"]:
            await client.delete(f"/rebates/rules/{rule['id']}", headers=admin)
        assert_error(await claim(units[6]), 422, "no_rebate")
        await set_rebate(client, admin, goods["product_id"], 0)
        assert_error(await claim(units[6]), 422, "no_rebate")
        await set_rebate(client, admin, goods["product_id"], 1.5)
        # an inactive clerk
        clerk_id, headers = await new_clerk(client, login, demo["STORE-HZ-01"])
        made = await claim(units[6], headers)
        assert made.status_code == 201 and made.json()["amount"] == 1.5
        # a password set ends the clerk's sessions: the old token claims no more (probe U:
        # the claims' own look-up of the clerk did not ask, and paid a rebate)
        reset_id, reset_clerk = await new_clerk(client, login, demo["STORE-HZ-01"])
        reset = await client.patch(
            f"/users/{reset_id}", headers=admin, json={"password": "Other-pass-2026"}
        )
        assert reset.status_code == 200, reset.text
        assert_error(await claim(units[7], reset_clerk), 401, "token_revoked")
        off = await client.patch(f"/users/{clerk_id}", headers=admin, json={"status": "inactive"})
        assert off.status_code == 200, off.text
        assert_error(await claim(units[7], headers), 401, "account_inactive")
        # a void batch: the verification says so
        voided = await client.post(
            f"/batches/{goods['batch_no']}/void",
            headers=await login("planner"),
            json={"reason": "test"},
        )
        assert voided.status_code == 200, voided.text
        refused = assert_error(await claim(units[8]), 422, "not_genuine")
        assert refused["details"]["reason"] == "void"


async def test_a_hundred_concurrent_claims_of_one_code_credit_one(
    client: Any, app: Any, login: Any, demo: Any, goods: dict[str, Any], conn: Any
) -> None:
    """100 claims of one code at once — by two clerks of the store, with their own client ids —
    through the API: exactly one 201, the others 409 already_claimed; one claim, one sale."""
    admin = await login("admin")
    await set_rebate(client, admin, goods["product_id"], 2)
    _, second = await new_clerk(client, login, demo["STORE-HZ-01"])
    clerks = [await login("store_clerk"), second]
    serial = goods["units"][7]
    async with member_client(app) as mc:
        answers = await asyncio.gather(
            *[
                mc.post(
                    "/rebates/claims",
                    headers=clerks[i % 2],
                    json=rebate_body(app.state.scheme, serial),
                )
                for i in range(100)
            ]
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(201) == 1 and statuses.count(409) == 99, statuses
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {
        "already_claimed"
    }
    code = code_of(app, serial)
    counts = await one(
        conn,
        """SELECT (SELECT count(*) FROM rebate_claims WHERE code_id = %(c)s) AS claims,
                  (SELECT count(*) FROM event_codes ec JOIN events e ON e.id = ec.event_id
                   WHERE ec.code = %(c)s AND e.biz_step = 'retail_selling') AS sales""".replace(
            "%(c)s", "%s"
        ),
        code,
        code,
    )
    assert (counts["claims"], counts["sales"]) == (1, 1)


async def test_one_code_credited_once_across_connections(
    client: Any, app: Any, login: Any, demo: Any, goods: dict[str, Any], conn: Any
) -> None:
    """The unique code and the unit's lock, not the process: 20 rounds on 20 connections of
    their own race for one unsold code; exactly one is credited and the unit is sold once."""
    admin = await login("admin")
    await set_rebate(client, admin, goods["product_id"], 2)
    serial = goods["units"][8]
    code = code_of(app, serial)
    clerk = await user_id(conn, "store_clerk")
    claimer = app.state.rebate_claimer

    async def race(i: int) -> int:
        async with await psycopg.AsyncConnection.connect(
            app.state.pool.conninfo, autocommit=True, row_factory=dict_row
        ) as own:
            pending: Pending[Any] = Pending(
                clerk,
                demo["BRAND-LUMI"],
                demo["STORE-HZ-01"],
                code,
                serial,
                f"race-{i}",
                datetime.now(UTC),
            )
            return len(await claimer.credit(own, [pending]))

    assert sum(await asyncio.gather(*[race(i) for i in range(20)])) == 1
    sales = await one(
        conn,
        """SELECT count(*) AS n FROM event_codes ec JOIN events e ON e.id = ec.event_id
           WHERE ec.code = %s AND e.biz_step = 'retail_selling'""",
        code,
    )
    assert sales["n"] == 1


async def _sale_of(conn: Any, code: int) -> dict[str, Any]:
    """What selling a unit wrote: its state, its sale and unpacking events, its stock delta."""
    state = await one(
        conn,
        """SELECT status, disposition, parent_sscc, sold_at IS NOT NULL AS sold, last_event_id
           FROM unit_state WHERE code = %s""",
        code,
    )
    events = await (
        await conn.execute(
            """SELECT e.id, e.event_type, e.action, e.biz_step, e.disposition, e.biz_location,
                      e.source_org, e.destination_org, e.parent_kind, e.parent_code,
                      e.recorded_by IS NOT NULL AS recorded
               FROM event_codes ec JOIN events e ON e.id = ec.event_id
               WHERE ec.code = %s AND ec.kind = 'u'
                 AND e.biz_step IN ('retail_selling', 'unpacking')
               ORDER BY e.id""",
            (code,),
        )
    ).fetchall()
    sale = next(e for e in events if e["biz_step"] == "retail_selling")
    deltas = await (
        await conn.execute(
            """SELECT org_id, product_id, lot, on_hand, in_transit FROM stock_deltas
               WHERE event_id = %s""",
            (sale["id"],),
        )
    ).fetchall()
    await conn.commit()
    assert state.pop("last_event_id") == sale["id"]
    return {
        "state": state,
        "events": [{k: v for k, v in e.items() if k != "id"} for e in events],
        "deltas": deltas,
    }


async def test_a_claim_sells_as_the_till_does(
    client: Any, app: Any, login: Any, goods: dict[str, Any], conn: Any
) -> None:
    """The sale a claim records (one statement, ``_CREDIT``) is the sale ``POST /sales`` makes:
    the same state, the same sale and unpacking events (the unit leaves its case), the same
    stock delta — two units of the same delivered case, one sold each way."""
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rebate(client, admin, goods["product_id"], 2)
    by_claim, at_till = goods["units"][6], goods["units"][9]
    async with member_client(app) as mc:
        made = await mc.post(
            "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, by_claim)
        )
    assert made.status_code == 201 and made.json()["sale_recorded"] is True, made.text
    sold = await client.post("/sales", headers=clerk, json={"codes": [at_till]})
    assert sold.status_code == 201, sold.text
    claimed, tilled = (
        await _sale_of(conn, code_of(app, by_claim)),
        await _sale_of(conn, code_of(app, at_till)),
    )
    assert (
        claimed["state"]
        == tilled["state"]
        == {
            "status": "sold",
            "disposition": "retail_sold",
            "parent_sscc": None,
            "sold": True,
        }
    )
    assert [e["biz_step"] for e in claimed["events"]] == ["retail_selling", "unpacking"]
    assert claimed["events"] == tilled["events"]
    assert claimed["deltas"] == tilled["deltas"] and claimed["deltas"][0]["on_hand"] == -1


async def test_a_claims_sale_is_in_the_store_sales_query_once(
    client: Any, app: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe (store manager / brand, seed 1.8 门店销售信息查询): a clerk's rebate claim sold
    its unit (``sale_recorded: true``), but ``GET /center/documents?kind=sale&org_id=<store>``
    stayed at 0 units: only ``POST /sales`` wrote a sale document, so the store sales query and
    its exports showed fewer sales than the store made. The claim's statement writes the sale's
    document now: one row, the row a till sale of the next unit makes (store, product, lot,
    clerk as handler, day) but for its number; the till's retry of the claim adds none; the
    sale's event names the document; and a consumer's return of the unit is as after a till
    sale: the sale stays listed, the return has no document, the rebate is withdrawn."""
    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rebate(client, admin, goods["product_id"], 2.5)
    store, (by_claim, at_till) = demo["STORE-HZ-01"], goods["units"][:2]
    since = (await one(conn, "SELECT coalesce(max(id), 0) AS id FROM documents"))["id"]

    async def sales_since() -> list[dict[str, Any]]:
        params = {"kind": "sale", "org_id": store, "per_page": 200}
        rows = await client.get("/center/documents", headers=admin, params=params)
        assert rows.status_code == 200, rows.text
        return [r for r in rows.json()["items"] if r["doc_id"] > since]

    body = rebate_body(app.state.scheme, by_claim)
    async with member_client(app) as mc:
        made = await mc.post("/rebates/claims", headers=clerk, json=body)
        assert made.status_code == 201 and made.json()["sale_recorded"] is True, made.text
        again = await mc.post("/rebates/claims", headers=clerk, json=body)  # the till's retry
        assert again.status_code == 200, again.text
    sold = await client.post("/sales", headers=clerk, json={"codes": [at_till]})
    assert sold.status_code == 201, sold.text
    rows = await sales_since()
    claimed = [r for r in rows if r["doc_no"] != sold.json()["doc_no"]]
    tilled = [r for r in rows if r["doc_no"] == sold.json()["doc_no"]]
    assert len(claimed) == len(tilled) == 1, rows
    row = claimed[0]
    unit = await one(conn, "SELECT lot FROM unit_state WHERE code = %s", code_of(app, by_claim))
    assert (row["org_id"], row["product_id"], row["lot"], row["units"]) == (
        store,
        goods["product_id"],
        unit["lot"],
        1,
    )
    assert row["handler_name"] == "Hangzhou store clerk" and row["doc_no"].startswith("XS")
    differ = {"doc_id", "doc_no", "confirmed_at"}
    assert {k: v for k, v in row.items() if k not in differ} == {
        k: v for k, v in tilled[0].items() if k not in differ
    }
    claim = await one(
        conn,
        """SELECT d.doc_no, e.details FROM rebate_claims c JOIN events e ON e.id = c.sale_event_id
           JOIN documents d ON d.event_id = e.id WHERE c.id = %s""",
        made.json()["claim_id"],
    )
    assert claim["doc_no"] == row["doc_no"] and claim["details"]["document"] == row["doc_no"]
    doc = await client.get(f"/documents/{row['doc_id']}", headers=clerk)
    assert doc.status_code == 200, doc.text
    assert (doc.json()["status"], doc.json()["units"]) == ("confirmed", 1), doc.text
    back = await client.post("/returns", headers=clerk, json={"code": by_claim, "reason": "other"})
    assert back.status_code == 200, back.text
    assert back.json()["rebate_withdrawn"] == made.json()["claim_id"]
    assert back.json()["documents"] == []
    assert await sales_since() == rows  # the sale stays listed; the return is no document


async def test_a_clerk_of_another_brand_gets_nothing(
    client: Any, app: Any, login: Any, goods: dict[str, Any], conn: Any
) -> None:
    """A store of another tenant scans a unit of ours: refused as not of its brand, nothing
    credited, the unit's state untouched, no refusal kept as a diversion signal."""
    platform = await login("platform")
    tag = secrets.token_hex(3).upper()
    brand = await client.post(
        "/orgs",
        headers=platform,
        json={"kind": "brand", "name": f"Rebates tenant {tag}", "erp_code": f"RT-{tag}"},
    )
    assert brand.status_code == 201, brand.text
    store = await client.post(
        "/orgs",
        headers=platform,
        json={
            "kind": "store",
            "name": f"Tenant store {tag}",
            "erp_code": f"RT-S-{tag}",
            "parent_id": brand.json()["id"],
        },
    )
    assert store.status_code == 201, store.text
    username = f"rt-clerk-{tag.lower()}"
    user = await client.post(
        "/users",
        headers=platform,
        json={
            "org_id": store.json()["id"],
            "username": username,
            "password": "Clerk-pass-2026",
            "roles": ["store_clerk"],
        },
    )
    assert user.status_code == 201, user.text
    stranger = await login(username, "Clerk-pass-2026")
    serial = goods["units"][9]
    code = code_of(app, serial)
    before = await one(conn, "SELECT status FROM unit_state WHERE code = %s", code)
    async with member_client(app) as mc:
        refused = await mc.post(
            "/rebates/claims", headers=stranger, json=rebate_body(app.state.scheme, serial)
        )
    assert_error(refused, 422, "other_brand")
    left = await one(
        conn,
        """SELECT (SELECT count(*) FROM rebate_claims WHERE code_id = %s) AS claims,
                  (SELECT count(*) FROM rebate_refusals WHERE code_id = %s) AS refusals,
                  (SELECT status FROM unit_state WHERE code = %s) AS status""",
        code,
        code,
        code,
    )
    assert left == {"claims": 0, "refusals": 0, "status": before["status"]}


async def test_a_claim_s_retry_key_is_its_claimant_s(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A claim sent again is checked but not counted as a new query of the code — the same
    claimant's only: a member's claim of a unit under the client id a clerk's rebate claim of it
    used is a query of its own (queries 2, then the buyer's scan 3). Before, the retry key was
    the client id alone, and the member's check went uncounted (probe)."""
    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rebate(client, admin, goods["product_id"], 2.5)
    await set_rule(client, admin, goods["product_id"], 10)
    serial, scheme = goods["units"][0], app.state.scheme
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        rebate = await mc.post(
            "/rebates/claims", headers=clerk, json=rebate_body(scheme, serial, "c-1")
        )
        assert rebate.status_code == 201, rebate.text
        assert rebate.json()["verification"]["queries"] == 1
        points = await mc.post(
            "/members/me/claims", headers=member, json=claim_body(scheme, serial, "c-1")
        )
        assert points.status_code == 201, points.text
        assert points.json()["verification"]["queries"] == 2
        again = await mc.post(
            "/members/me/claims", headers=member, json=claim_body(scheme, serial, "c-1")
        )
        assert again.status_code == 200  # the member's own retry: answered, not counted
        scan = await mc.post("/v1/verify", json={"serial": serial, "pin": scheme.pin(serial)})
    assert scan.json()["queries"] == 3


async def test_a_gift_earns_no_rebate_and_a_refund_withdraws_the_rebate(
    client: Any, app: Any, login: Any, demo: Any, settings: Any
) -> None:
    """Probes: a unit the store gave away (an approved staff-welfare outbound) earned a sale's
    rebate and could be taken back as a consumer's return; and a sale refunded by a consumer's
    return kept its rebate claim, settled at its full amount in the month's statement."""
    from app.rebates.ranking import recount, rollup

    autocommit = await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, row_factory=dict_row
    )
    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rebate(client, admin, goods["product_id"], 10)
    scheme = app.state.scheme
    given, folded, queued = goods["units"][3:6]
    gift = await document(client, clerk, [given], kind="exception", reason="staff_welfare")
    assert (await confirm(client, clerk, gift)).status_code == 200
    approved = await client.post(
        f"/documents/{gift['id']}/approve", headers=await login("store_manager"), json={}
    )
    assert approved.status_code == 200, approved.text
    async with member_client(app) as mc:

        async def claim(serial: str) -> Any:
            return await mc.post("/rebates/claims", headers=clerk, json=rebate_body(scheme, serial))

        assert_error(await claim(given), 422, "not_a_sale")
        back = await client.post("/returns", headers=clerk, json={"code": given, "reason": "other"})
        assert_error(back, 409, "not_sold")
        first_body = rebate_body(scheme, folded)
        first = await mc.post("/rebates/claims", headers=clerk, json=first_body)
        assert first.status_code == 201, first.text
        await rollup(autocommit)  # folded into the rankings before its return
        second = await claim(queued)
        assert second.status_code == 201, second.text
        for serial, made in ((folded, first), (queued, second)):
            back = await client.post(
                "/returns", headers=clerk, json={"code": serial, "reason": "other"}
            )
            assert back.status_code == 200, back.text
            assert back.json()["rebate_withdrawn"] == made.json()["claim_id"]
        left = await autocommit.execute(
            "SELECT count(*) AS n FROM rebate_claims WHERE code_id = ANY(%s)",
            ([made.json()["claim_id"] for made in (first, second)],),
        )
        assert (await left.fetchone())["n"] == 0
        # the till's retry of the withdrawn claim (its answer lost): refused, nothing sold (a
        # probe: a second rebate, and the returned unit "sold" again)
        retried = await mc.post("/rebates/claims", headers=clerk, json=first_body)
        assert_error(retried, 409, "claim_withdrawn")
        shelf = await autocommit.execute(
            "SELECT status FROM unit_state WHERE code = %s", (code_of(app, folded),)
        )
        assert (await shelf.fetchone())["status"] == "active"
        await rollup(autocommit)
        assert await recount(autocommit) == []  # the rankings without them, exactly
        again = await claim(folded)  # sold again, to another consumer: a rebate again
        assert again.status_code == 201, again.text
        assert again.json()["claim_id"] != first.json()["claim_id"]
        retried = await mc.post("/rebates/claims", headers=clerk, json=first_body)
        assert_error(retried, 409, "claim_withdrawn")
    await autocommit.close()


async def damaged_and_written_off(client: Any, login: Any, app: Any, demo: Any) -> Any:
    """A unit at STORE-HZ-01 claimed by a member (the claim sells it), brought back ``damaged``
    (refunded, points withdrawn), then written off by the store with an approved exception
    outbound (reason ``other``: the damaged pack destroyed): (goods, serial, member headers)."""
    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rule(client, admin, goods["product_id"], 10)
    await set_rebate(client, admin, goods["product_id"], 5)
    scheme = app.state.scheme
    serial = goods["units"][2]
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        made = await mc.post("/members/me/claims", headers=headers, json=claim_body(scheme, serial))
        assert made.status_code == 201, made.text
    back = await client.post("/returns", headers=clerk, json={"code": serial, "reason": "damaged"})
    assert back.status_code == 200, back.text
    assert back.json()["points_withdrawn"] == made.json()["claim_id"]
    gone = await document(client, clerk, [serial], kind="exception", reason="other")
    assert (await confirm(client, clerk, gone)).status_code == 200
    approved = await client.post(
        f"/documents/{gone['id']}/approve", headers=await login("store_manager"), json={}
    )
    assert approved.status_code == 200, approved.text
    return goods, serial, headers


async def test_a_rebate_claim_of_a_written_off_damaged_unit_is_refused_with_a_reason(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the store clerk claimed the rebate of a pack returned damaged and then written
    off (approved exception outbound) and read 409 ``claim_conflict`` ("the claim met another
    one; try again") — a till retries that for ever. It is a stable refusal: 409
    ``not_sellable``, returned damaged (given away without that mark: 422 ``not_a_sale``)."""
    _, serial, _ = await damaged_and_written_off(client, login, app, demo)
    clerk = await login("store_clerk")
    async with member_client(app) as mc:
        answer = await mc.post(
            "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, serial)
        )
    assert_error(answer, 409, "not_sellable")


async def test_a_claim_under_a_kept_client_id_can_still_be_returned(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a claim made under a client id already kept as withdrawn (a till's claim of
    another unit under it while that unit's return was committing; a rollback to the code
    before migration 0071 and forward again) made its own unit's return 409 for ever: the
    withdrawal kept the client id a second time."""
    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rebate(client, admin, goods["product_id"], 3)
    serial, key = goods["units"][1], f"k-{secrets.token_hex(4)}"
    async with member_client(app) as mc:
        made = await mc.post(
            "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, serial, key)
        )
    assert made.status_code == 201, made.text
    async with app.state.pool.connection() as conn:  # the client id kept for another claim
        await conn.execute(
            """INSERT INTO rebate_claims_withdrawn (clerk_id, client_id, code_id, claim_id)
               VALUES (%s, %s, 1, 1)""",
            (await user_id(conn, "store_clerk"), key),
        )
    back = await client.post("/returns", headers=clerk, json={"code": serial, "reason": "other"})
    assert back.status_code == 200, back.text
    assert back.json()["rebate_withdrawn"] == made.json()["claim_id"]


async def test_goods_moved_store_to_store_into_another_agents_area_are_a_diversion(
    client: Any, app: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe: AGENT-ZJ's goods shipped by STORE-HZ-01 on to STORE-GZ-01 (AGENT-GD's area) and
    received there earned the GZ clerk the rebate at ZJ's rule, with no refusal and no alert,
    while an inspection at GZ calls them diverted. Refused now as ``wrong_agent``, kept."""
    goods = await store_goods(client, login, app, demo)
    admin, hz, gz = await login("admin"), await login("store_clerk"), await login("gz_clerk")
    await set_rebate(client, admin, goods["product_id"], 2)
    moved = await document(
        client, hz, goods["cases"][:1], kind="outbound", counterparty_id=demo["STORE-GZ-01"]
    )
    assert (await confirm(client, hz, moved)).status_code == 200
    received = await document(client, gz, kind="inbound", shipment_id=moved["id"])
    assert (await confirm(client, gz, received)).status_code == 200
    serial = goods["units"][0]
    async with member_client(app) as mc:
        away = await mc.post(
            "/rebates/claims", headers=gz, json=rebate_body(app.state.scheme, serial)
        )
    assert_error(away, 422, "wrong_agent")
    assert away.json()["error"]["details"]["expected_agent"]["id"] == demo["AGENT-ZJ"]
    kept = await one(
        conn,
        """SELECT (SELECT reason FROM rebate_refusals WHERE code_id = %s) AS reason,
                  (SELECT count(*) FROM rebate_claims WHERE code_id = %s) AS claims""",
        code_of(app, serial),
        code_of(app, serial),
    )
    assert (kept["reason"], kept["claims"]) == ("wrong_agent", 0)


async def test_goods_passed_between_two_stores_of_one_agent_earn_the_rebate(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: goods the factory shipped straight to STORE-HZ-01 (under AGENT-ZJ) have the
    store itself as their channel organisation; passed on to STORE-NB-01 — another store of
    AGENT-ZJ, under DIST-NB — and received there, every claim of NB's clerk was refused 422
    ``wrong_agent`` ("supposed to be sold by Hangzhou West Lake Store's stores") and kept with
    a ``diversion`` alert: the claims' area was the channel organisation's own subtree, while
    an inspection (``app.inspect.service``) takes the subtree of the designated agent, the
    nearest agent at or above the channel, and finds the goods in channel at NB. Now 201, the
    rebate in force at NB, credited under AGENT-ZJ; passed on into another agent's area they
    are ``wrong_agent``, naming AGENT-ZJ (not the store) as the agent they were meant for."""
    admin = await login("admin")
    goods = await straight_to_the_store(client, app, login, demo, 2)
    await set_rebate(client, admin, goods["product_id"], 3)
    hz = await login("store_clerk")
    _, nb = await new_clerk(client, login, demo["STORE-NB-01"])
    moved = await document(
        client, hz, goods["cases"][:1], kind="outbound", counterparty_id=demo["STORE-NB-01"]
    )
    assert (await confirm(client, hz, moved)).status_code == 200
    received = await document(client, nb, kind="inbound", shipment_id=moved["id"])
    assert (await confirm(client, nb, received)).status_code == 200
    async with member_client(app) as mc:
        made = await mc.post(
            "/rebates/claims", headers=nb, json=rebate_body(app.state.scheme, goods["units"][0])
        )
        assert made.status_code == 201, made.text
        assert made.json()["amount"] == 3.0 and made.json()["agent_id"] == demo["AGENT-ZJ"]
        gz = await login("gz_clerk")
        away = await document(
            client, hz, goods["cases"][1:], kind="outbound", counterparty_id=demo["STORE-GZ-01"]
        )
        assert (await confirm(client, hz, away)).status_code == 200
        there = await document(client, gz, kind="inbound", shipment_id=away["id"])
        assert (await confirm(client, gz, there)).status_code == 200
        refused = await mc.post(
            "/rebates/claims", headers=gz, json=rebate_body(app.state.scheme, goods["units"][10])
        )
    assert_error(refused, 422, "wrong_agent")
    assert refused.json()["error"]["details"]["expected_agent"]["id"] == demo["AGENT-ZJ"]


async def test_a_rebate_claim_right_after_a_void_is_refused(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """A probe: a void voids only a batch's ``active`` units, and a unit sold at the till keeps
    ``status = 'sold'``; the claim round never looked at the batch, and the verification read
    it from the verifier's per-process cache (``BATCH_TTL``, 5 s), which the void did not clear.
    A clerk's claim in the seconds after the void (or on any other API process) was verified
    "genuine" and paid — no reward on a void code (SPEC B4). Refused now, 422 ``not_genuine`` /
    ``void``: this process's verification reads the void at once, and the round itself checks
    the batch (a process whose cache still calls the batch live), in the claim's language (it
    was always Chinese)."""
    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    planner, scheme, batch_no = await login("planner"), app.state.scheme, goods["batch_no"]
    await set_rebate(client, admin, goods["product_id"], 3)
    sold = await client.post("/sales", headers=clerk, json={"codes": goods["units"][:2]})
    assert sold.status_code == 201, sold.text
    async with member_client(app) as mc:
        # anyone's scan of the batch in the seconds before (a consumer, another claim)
        assert (await mc.post("/v1/verify", json={"serial": goods["units"][5]})).status_code == 200
        live = app.state.verifier._batches[batch_no]
        void = await client.post(
            f"/batches/{batch_no}/void", headers=planner, json={"reason": "leaked labels"}
        )
        assert void.status_code == 200 and void.json()["state"] == "void", void.text
        here = await mc.post(
            "/rebates/claims", headers=clerk, json=rebate_body(scheme, goods["units"][0])
        )
        # another API process's verifier: the batch still live in its cache
        app.state.verifier._batches[batch_no] = (time.monotonic(), live[1])
        elsewhere = await mc.post(  # refused by the round, in the claim's language
            "/rebates/claims",
            headers=clerk,
            json=rebate_body(scheme, goods["units"][1], lang="en"),
        )
    for claim in (here, elsewhere):
        refused = assert_error(claim, 422, "not_genuine")
        assert refused["details"]["reason"] == "void", claim.text
    english = assert_error(elsewhere, 422, "not_genuine")
    assert english["message"] == messages.text("void", "en") != messages.text("void", "zh")
    assert english["details"]["message"] == english["message"]
    paid = await one(
        conn,
        "SELECT count(*) AS n FROM rebate_claims WHERE code_id = ANY(%s)",
        [code_of(app, s) for s in goods["units"][:2]],
    )
    assert paid["n"] == 0


async def test_a_rebate_claim_racing_a_void_waits_for_it_and_is_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe (the void's other side): a claim of an active unit verified while the void runs
    reaches its round as the void holds the batch's units; the round waits for them and, once
    the void commits, reads them again (void): nothing paid, 422 ``not_genuine`` / ``void``
    (not ``not_claimable``: as the verification answers a void code)."""
    from app.codes.service import void_batch

    goods = await store_goods(client, login, app, demo)
    await set_rebate(client, await login("admin"), goods["product_id"], 3)
    clerk, scheme = await login("store_clerk"), app.state.scheme
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        planner = await acting(holder, "planner")
        await void_batch(holder, planner, goods["batch_no"], "leaked labels")  # not committed
        async with member_client(app) as mc:
            claiming = asyncio.ensure_future(
                mc.post(
                    "/rebates/claims", headers=clerk, json=rebate_body(scheme, goods["units"][3])
                )
            )
            assert await lock_waiters(watch, 1), "the claim's round should wait for the void"
            await holder.commit()
            claim = await claiming
    refused = assert_error(claim, 422, "not_genuine")
    assert refused["details"]["reason"] == "void", claim.text


async def test_a_batch_voided_while_a_rebate_claim_waits_for_its_sold_unit_is_refused(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """A probe: a void voids a batch's active units under their locks but leaves a sold unit's
    row alone, and the round read the batch in the snapshot its statement took before waiting
    for the unit: a clerk's claim of a unit sold at the till whose round waited for the unit's
    row (a member's claim, a draw or a return of it in flight) while the batch was voided (200)
    was paid on the void code. The round asks again after the unit's lock, with a fresh
    snapshot (migration 0143): 422 ``not_genuine`` / ``void``, nothing paid."""
    goods = await store_goods(client, login, app, demo)
    clerk, planner, scheme = await login("store_clerk"), await login("planner"), app.state.scheme
    await set_rebate(client, await login("admin"), goods["product_id"], 3)
    serial = goods["units"][0]
    sold = await client.post("/sales", headers=clerk, json={"codes": [serial]})
    assert sold.status_code == 201, sold.text
    async with member_client(app) as mc:
        claim = await answered_while_unit_held(
            app,
            serial,
            lambda: mc.post("/rebates/claims", headers=clerk, json=rebate_body(scheme, serial)),
            voiding(client, goods["batch_no"], planner, "leaked"),
            "the claim's round should wait for the unit",
        )
    refused = assert_error(claim, 422, "not_genuine")
    assert refused["details"]["reason"] == "void", claim.text
    code = code_of(app, serial)
    paid = await one(conn, "SELECT count(*) AS n FROM rebate_claims WHERE code_id = %s", code)
    assert paid["n"] == 0


async def test_a_tills_retried_refused_claim_does_not_count_the_diversion_again(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a Guangdong store's till claimed the rebate of a unit meant for a Hangzhou store
    (422 ``wrong_store``, a refusal kept, a ``diversion`` alert for the brand); its network
    dropped the answer and it sent the very same claim, same ``client_id``, twice more. The
    brand's anti-diversion officer saw three refusals and the alert at ``occurrences`` 3, as if
    the store had tried three times. Now a retry is answered again and neither kept nor counted;
    a new attempt (another ``client_id``) still counts."""
    goods = await store_goods(client, login, app, demo)
    await set_rebate(client, await login("admin"), goods["product_id"], 2)
    gz, serial = await login("gz_clerk"), goods["units"][5]  # case 0: at STORE-HZ-01
    body = rebate_body(app.state.scheme, serial, client_id="till-" + secrets.token_hex(6))
    code = code_of(app, serial)

    async def kept() -> tuple[int, int]:
        refusals = await one(
            conn, "SELECT count(*) AS n FROM rebate_refusals WHERE code_id = %s", code
        )
        alert = await one(
            conn,
            "SELECT occurrences FROM alerts WHERE dedup_key = %s",
            f"diversion:rebate:{code}",
        )
        return refusals["n"], alert["occurrences"]

    async with member_client(app) as mc:
        for _ in range(3):
            refused = await mc.post("/rebates/claims", headers=gz, json=body)
            assert_error(refused, 422, "wrong_store")
        assert await kept() == (1, 1)
        again = {**body, "client_id": "till-" + secrets.token_hex(6)}  # the clerk tries again
        assert_error(await mc.post("/rebates/claims", headers=gz, json=again), 422, "wrong_store")
    assert await kept() == (2, 2)


async def test_a_unit_the_store_sent_back_to_its_agent_is_no_diversion_at_that_store(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: the Hangzhou store returned a unit to its agent (a ``return`` AGENT-ZJ received),
    and its clerk then claimed it (a till mistake, or the return not yet physically made). While
    the return was on its way the claim was 422 ``not_on_hand``; once received it was 422
    ``not_delivered`` — "not delivered to your store", its expected store that very store —
    kept as a refusal with a diversion alert for the brand, though an inspection of it at that
    store calls it ``in_channel``. A unit the clerk's store returned, held above it within its
    designated agent's area, is ``not_on_hand``, with no refusal kept and no alert."""
    goods = await store_goods(client, login, app, demo)
    unit = goods["units"][5]
    store, agent, admin = (
        await login("store_clerk"),
        await login("agent_clerk"),
        await login("admin"),
    )
    await set_rebate(client, admin, goods["product_id"], 2.5)
    up = await document(client, store, [unit], kind="return")
    assert (await confirm(client, store, up)).status_code == 200
    got = await document(client, agent, kind="inbound", shipment_id=up["id"])
    assert (await confirm(client, agent, got)).status_code == 200
    seen = await scan(client, await login("inspector"), unit, demo["STORE-HZ-01"])
    assert seen.status_code == 201, seen.text
    assert seen.json()["result"] == "in_channel"  # the inspection: in its channel here
    async with member_client(app) as mc:
        claim = await mc.post(
            "/rebates/claims", headers=store, json=rebate_body(app.state.scheme, unit)
        )
    error = assert_error(claim, 422)
    refusals = await (
        await conn.execute(
            "SELECT reason FROM rebate_refusals WHERE code_id = %s", (code_of(app, unit),)
        )
    ).fetchall()
    alert = await (
        await conn.execute(
            "SELECT kind FROM alerts WHERE dedup_key = %s",
            (f"diversion:rebate:{code_of(app, unit)}",),
        )
    ).fetchone()
    await conn.commit()
    assert (error["code"], refusals, alert) == ("not_on_hand", [], None), (error, refusals, alert)


async def test_a_rebate_for_goods_an_agent_supplied_by_its_branch_diverted_is_refused(
    client: Any,
    login: Any,
    app: Any,
    deep_tree: dict[str, Any],  # noqa: F811
    via_branch: dict[str, Any],  # noqa: F811
) -> None:
    """A probe (store clerk / brand finance, SPEC R1 and B4: rewards only on codes shipped
    through the right channel): goods branch BR shipped to its agent A1 are shipped by A1 into
    S2, a store of the sister agent A2; S2's clerk claimed the rebate and was paid A2's rule
    (201): the branch's outbound kept the branch as the unit's channel, so its "designated
    agent" was the branch and S2 lay under it. A branch's outbound designates anew: 422
    ``wrong_agent`` naming A1, kept as a refusal, as for goods the factory shipped to A1."""
    tree = deep_tree
    await set_rebate(client, await login("admin"), via_branch["product_id"], 5, tree["A2"])
    await _received(
        client, tree["A1_clerk"], tree["S2_clerk"], via_branch["cases"][1:2], tree["S2"]
    )
    claim = await client.post(
        "/rebates/claims",
        headers=tree["S2_clerk"],
        json=rebate_body(app.state.scheme, via_branch["units"][13]),
    )
    error = assert_error(claim, 422, "wrong_agent")
    assert error["details"]["expected_agent"]["id"] == tree["A1"]


async def test_a_moved_clerks_resent_claim_answers_the_first(
    client: Any, app: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe: a clerk's claim (client id c) re-sent after the brand moved the clerk by the
    user import: store to store it replayed (200), but moved to an agent it was 403
    ``not_a_store`` — checked before the replay — and the app dropped from its queue a claim the
    server holds (a moved inspector's scan replays). The re-send answers the first claim after
    either move; anything else of the clerk of no store is still 403 ``not_a_store``."""
    from tests.test_field_scoping import _login, _user
    from tests.test_inspect import moved_by_import

    goods = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rebate(client, admin, goods["product_id"], 2)
    name = f"mc{secrets.token_hex(4)}"
    _, clerk = await _user(client, admin, demo["STORE-HZ-01"], ["store_clerk"], name)
    scheme, units = app.state.scheme, goods["units"]
    body = rebate_body(scheme, units[0], f"mv-claim-{secrets.token_hex(4)}")
    async with member_client(app) as mc:
        first = await mc.post("/rebates/claims", headers=clerk, json=body)
        assert first.status_code == 201, first.text
        for org in ("STORE-GZ-01", "AGENT-GD"):
            await moved_by_import(client, admin, name, org)
            clerk = await _login(client, name)
            again = await mc.post("/rebates/claims", headers=clerk, json=body)
            assert again.status_code == 200, (org, again.text)
            assert again.json()["claim_id"] == first.json()["claim_id"], org
            assert again.json()["store_id"] == demo["STORE-HZ-01"]
        # the same id for another unit, a new id: refused as before
        for other in (
            {**rebate_body(scheme, units[1]), "client_id": body["client_id"]},
            rebate_body(scheme, units[1]),
        ):
            refused = await mc.post("/rebates/claims", headers=clerk, json=other)
            assert_error(refused, 403, "not_a_store")
    claims = await one(
        conn, "SELECT count(*) AS n FROM rebate_claims WHERE client_id = %s", body["client_id"]
    )
    assert claims["n"] == 1


async def _claimed_behind_a_held_round(
    app: Any, clerk: Any, units: list[str], meanwhile: Any
) -> Any:
    """Units 0 and 1 claimed by ``clerk``: the first claim's round waits for unit 0 (held by a
    third transaction), the second is verified, its clerk looked up, and queued for the next
    round; then ``meanwhile()`` runs and commits, and unit 0 is released. The second claim's
    answer: its round runs entirely after ``meanwhile``."""
    scheme = app.state.scheme
    async with (
        app.state.pool.connection() as holder,
        app.state.pool.connection() as watch,
        member_client(app) as mc,
    ):
        await holder.execute(
            "SELECT 1 FROM unit_state WHERE code = %s FOR UPDATE", (code_of(app, units[0]),)
        )
        ahead = asyncio.ensure_future(
            mc.post("/rebates/claims", headers=clerk, json=rebate_body(scheme, units[0]))
        )
        assert await lock_waiters(watch, 1), "the first round waits for the held unit"
        queued = asyncio.ensure_future(
            mc.post("/rebates/claims", headers=clerk, json=rebate_body(scheme, units[1]))
        )
        await asyncio.sleep(1.5)  # verified, its clerk looked up: queued behind the round
        assert not queued.done(), queued.result().text
        await meanwhile()
        await holder.commit()
        await asyncio.wait_for(ahead, 30)
        return await asyncio.wait_for(queued, 30)


async def _store_with_a_rule(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> tuple[int, list[str]]:
    """A store of the test's own under AGENT-ZJ holding 3 units, with a rebate of 2 on their
    product: (store, units)."""
    store, units, _ = await _store_of_its_own(client, login, app, demo)
    product = await one(
        conn, "SELECT product_id FROM unit_state WHERE code = %s", code_of(app, units[0])
    )
    await set_rebate(client, await login("admin"), product["product_id"], 2)
    return store, units


async def test_a_claim_queued_as_its_store_closes_is_not_paid(
    client: Any, app: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe: a clerk's claim was verified and queued behind a round held up by a unit; the
    brand closed the clerk's store meanwhile (200, committed), and the next round — run
    entirely after the closing — paid the closed store (201, its unit sold there): the round
    checked the clerk's account but not the store. Now 401 ``account_inactive``, as the
    clerk's look-up answers a clerk of a closed store (or of one under a closed organisation);
    nothing credited, the unit not sold."""
    store, units = await _store_with_a_rule(client, login, app, demo, conn)
    admin = await login("admin")
    _, clerk = await new_clerk(client, login, store)

    async def close() -> None:
        off = await client.post(f"/orgs/{store}/deactivate", headers=admin)
        assert off.status_code == 200, off.text

    claimed = await _claimed_behind_a_held_round(app, clerk, units, close)
    assert_error(claimed, 401, "account_inactive")
    code = code_of(app, units[1])
    paid = await one(conn, "SELECT count(*) AS n FROM rebate_claims WHERE code_id = %s", code)
    assert paid["n"] == 0
    state = await one(conn, "SELECT status FROM unit_state WHERE code = %s", code)
    assert state["status"] == "active"


async def test_a_claim_queued_as_its_clerk_moves_is_not_paid_to_the_old_store(
    client: Any, app: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe: a clerk's claim was verified and queued behind a round held up by a unit; the
    brand moved the clerk to another store by the user import meanwhile (which ends the clerk's
    sessions), and the next round paid the old store under a clerk now of another (201): the
    round took the store from the look-up made before the move and checked neither. Now 401
    ``token_revoked``, as the clerk's look-up answers the moved clerk's old token; nothing
    credited."""
    from tests.test_field_scoping import _user

    store, units = await _store_with_a_rule(client, login, app, demo, conn)
    admin = await login("admin")
    name = f"mq{secrets.token_hex(4)}"
    _, clerk = await _user(client, admin, store, ["store_clerk"], name)

    async def move() -> None:
        await moved_by_import(client, admin, name, "STORE-GZ-01")

    claimed = await _claimed_behind_a_held_round(app, clerk, units, move)
    assert_error(claimed, 401, "token_revoked")
    code = code_of(app, units[1])
    paid = await one(conn, "SELECT count(*) AS n FROM rebate_claims WHERE code_id = %s", code)
    assert paid["n"] == 0
