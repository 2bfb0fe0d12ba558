"""Rebate claims under one client id, and rules set at once (R1): what a refused claim leaves
behind, and the rules' audited history.

A probe found that a claim refused as ``client_id_reused`` by the claims' unique key still sold
its unit (state, sale event, stock) with no claim behind the sale; and that two first settings
of one rule at once both read "no rule yet" and audited two creations, the first amount lost.
The claims' rounds are guarded here too: many clerks and stores in one round, a store under
the brand, a unit with no channel agent.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from app.claims import Pending
from app.logistics.rollup import recount, rollup
from app.rebates import rules
from tests.helpers import assert_error
from tests.points_support import member_client
from tests.rebates_support import rebate_body, set_rebate, store_goods, user_id
from tests.test_logistics import confirm, document, pack
from tests.test_orgs import _new_org
from tests.test_rebate_claims import code_of, new_clerk, one

_SOLD = """SELECT u.status, u.sold_at,
                  (SELECT count(*) FROM event_codes ec JOIN events e ON e.id = ec.event_id
                    WHERE ec.code = u.code AND e.biz_step = 'retail_selling') AS sales
           FROM unit_state u WHERE u.code = %s"""


@pytest.fixture(scope="module")
async def goods(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    return await store_goods(client, login, app, demo)


async def test_a_claim_refused_for_a_reused_client_id_sells_nothing(
    client: Any, app: Any, login: Any, goods: dict[str, Any], conn: Any
) -> None:
    """README: the same client_id for another code is 409 client_id_reused — and the second
    unit stays on hand: not sold, no sale event."""
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rebate(client, admin, goods["product_id"], 2)
    first, second = goods["units"][5], goods["units"][6]
    async with member_client(app) as mc:
        made = await mc.post(
            "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, first, "till-1")
        )
        assert made.status_code == 201, made.text
        other = await mc.post(
            "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, second, "till-1")
        )
    assert_error(other, 409, "client_id_reused")
    state = await one(conn, _SOLD, code_of(app, second))
    assert (state["status"], state["sold_at"], state["sales"]) == ("active", None, 0)


async def test_two_codes_claimed_under_one_client_id_at_once_sell_one(
    client: Any, app: Any, login: Any, goods: dict[str, Any], conn: Any
) -> None:
    """Two claims of two codes under one client id at once (one round, or two): one 201, one
    409 client_id_reused, and only the credited claim's unit is sold."""
    admin, clerk = await login("admin"), await login("store_clerk")
    await set_rebate(client, admin, goods["product_id"], 2)
    serials = goods["units"][7], goods["units"][8]
    async with member_client(app) as mc:
        answers = await asyncio.gather(
            *[
                mc.post(
                    "/rebates/claims",
                    headers=clerk,
                    json=rebate_body(app.state.scheme, serial, "till-2"),
                )
                for serial in serials
            ]
        )
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert_error(refused, 409, "client_id_reused")
    states = [await one(conn, _SOLD, code_of(app, serial)) for serial in serials]
    credited = [a.status_code == 201 for a in answers]
    assert [s["status"] == "sold" for s in states] == credited, states
    assert [s["sales"] for s in states] == [int(c) for c in credited]


async def test_two_first_settings_of_a_rule_at_once_keep_its_history(
    client: Any, login: Any, goods: dict[str, Any], conn: Any, monkeypatch: Any
) -> None:
    """rules.py: every change is audited with its before and after. Two PUTs of a product's
    first rule at once: the first to commit is the creation, the second an update whose
    ``before`` is the first's amount (the second waits for the first's read-and-write)."""
    admin = await login("admin")
    row = await one(
        conn,
        """SELECT p.id FROM products p
           WHERE p.org_id = (SELECT org_id FROM products WHERE id = %s)
             AND NOT EXISTS (SELECT 1 FROM rebate_rules r WHERE r.product_id = p.id)
           ORDER BY p.id LIMIT 1""",
        goods["product_id"],
    )
    assert row is not None
    product = row["id"]
    real, read_before, go = rules._rule, asyncio.Event(), asyncio.Event()

    async def paused(c: Any, where: str, params: Any) -> Any:
        out = await real(c, where, params)
        if "FOR UPDATE" in where and not read_before.is_set():  # the first: "no rule yet"
            read_before.set()
            await go.wait()
        return out

    monkeypatch.setattr(rules, "_rule", paused)

    def put(amount: float) -> Any:
        body = {"product_id": product, "amount": amount}
        return asyncio.ensure_future(client.put("/rebates/rules", headers=admin, json=body))

    first = put(1.5)
    await read_before.wait()
    second = put(2.5)
    await asyncio.sleep(0.3)  # before the fix it ran through here, read "no rule" too
    go.set()
    assert [(await first).status_code, (await second).status_code] == [200, 200]
    audits = await (
        await conn.execute(
            """SELECT action, before, after FROM audit_log
               WHERE entity = 'rebate_rule' AND after->>'product_id' = %s ORDER BY id""",
            (str(product),),
        )
    ).fetchall()
    await conn.commit()
    assert [a["action"] for a in audits] == ["create", "update"]
    assert (audits[1]["before"]["amount"], audits[1]["after"]["amount"]) == (1.5, 2.5)


async def _credit(app: Any, pendings: list[Pending[Any]]) -> dict[int, Any]:
    """Credit ``pendings`` as one round, on a connection of its own."""
    async with await psycopg.AsyncConnection.connect(
        app.state.pool.conninfo, autocommit=True, row_factory=dict_row
    ) as own:
        return await app.state.rebate_claimer.credit(own, pendings)


async def test_rebate_round_of_many_clerks_stores_and_a_till_sale(
    client: Any, app: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A round of clerks and stores, one unit till-sold: each sold once, stock and roll-up agree."""
    goods = await store_goods(client, login, app, demo)  # case0 at HZ, case1 at ZJ
    admin, agent = await login("admin"), await login("agent_clerk")
    await set_rebate(client, admin, goods["product_id"], 2)
    _, dist = await new_clerk(client, login, demo["DIST-NB"], ["warehouse_clerk"])
    nb_id, nb = await new_clerk(client, login, demo["STORE-NB-01"])
    ship = await document(
        client, agent, goods["cases"][1:2], kind="outbound", counterparty_id=demo["DIST-NB"]
    )
    assert (await confirm(client, agent, ship)).status_code == 200
    got = await document(client, dist, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, dist, got)).status_code == 200
    ship2 = await document(
        client, dist, goods["cases"][1:2], kind="outbound", counterparty_id=demo["STORE-NB-01"]
    )
    assert (await confirm(client, dist, ship2)).status_code == 200, ship2
    got2 = await document(client, nb, kind="inbound", shipment_id=ship2["id"])
    assert (await confirm(client, nb, got2)).status_code == 200
    clerk = await login("store_clerk")
    till = goods["units"][3]
    sold = await client.post("/sales", headers=clerk, json={"codes": [till]})
    assert sold.status_code == 201, sold.text
    async with app.state.pool.connection() as c:
        await rollup(c)
    hz_clerk = await user_id(conn, "store_clerk")
    c2_id, _ = await new_clerk(client, login, demo["STORE-HZ-01"])
    brand, hz, nbs = demo["BRAND-LUMI"], demo["STORE-HZ-01"], demo["STORE-NB-01"]
    now = datetime.now(UTC)

    def p(clerk_id: int, store: int, serial: str) -> Pending[Any]:
        return Pending(
            clerk_id, brand, store, code_of(app, serial), serial, secrets.token_hex(6), now
        )

    u = goods["units"]
    round_ = [
        p(hz_clerk, hz, u[0]),
        p(hz_clerk, hz, u[1]),
        p(c2_id, hz, u[2]),
        p(hz_clerk, hz, till),
        p(nb_id, nbs, u[10]),
        p(nb_id, nbs, u[11]),
    ]
    credited = await _credit(app, round_)
    assert len(credited) == 6, credited
    assert [credited[id(x)].sale_recorded for x in round_] == [True, True, True, False, True, True]
    codes = [code_of(app, s) for s in (u[0], u[1], u[2], till, u[10], u[11])]
    events = await (
        await conn.execute(
            """SELECT e.event_type, e.biz_step, e.biz_location, e.parent_code, e.child_count,
                  array_agg(ec.code ORDER BY ec.code) AS codes
           FROM events e JOIN event_codes ec ON ec.event_id = e.id
           WHERE ec.code = ANY(%s) AND e.biz_step IN ('retail_selling', 'unpacking')
             AND e.details->>'rebate_claim' IS NOT NULL OR (ec.code = ANY(%s)
             AND e.biz_step = 'unpacking' AND e.recorded_by IS NOT NULL)
           GROUP BY e.id ORDER BY e.id""",
            (codes, codes),
        )
    ).fetchall()
    await conn.commit()
    sales = [e for e in events if e["biz_step"] == "retail_selling"]
    assert sorted((e["biz_location"], e["child_count"], len(e["codes"])) for e in sales) == sorted(
        [(hz, 2, 2), (hz, 1, 1), (nbs, 2, 2)]
    ), events
    per_code = await (
        await conn.execute(
            """SELECT ec.code, count(*) AS n FROM event_codes ec JOIN events e ON e.id = ec.event_id
           WHERE ec.code = ANY(%s) AND e.biz_step = 'retail_selling' GROUP BY ec.code""",
            (codes,),
        )
    ).fetchall()
    await conn.commit()
    assert {r["code"]: r["n"] for r in per_code} == dict.fromkeys(codes, 1)
    deltas = await (
        await conn.execute(
            """SELECT d.org_id, sum(d.on_hand) AS n FROM stock_deltas d
           WHERE d.event_id IN (SELECT sale_event_id FROM rebate_claims WHERE code_id = ANY(%s))
           GROUP BY d.org_id""",
            (codes,),
        )
    ).fetchall()
    await conn.commit()
    assert {r["org_id"]: r["n"] for r in deltas} == {hz: -3, nbs: -2}
    unpack = await (
        await conn.execute(
            """SELECT e.id, e.child_count, e.recorded_by, count(ec.code) AS n
           FROM events e JOIN event_codes ec ON ec.event_id = e.id AND ec.kind = 'u'
           WHERE e.biz_step = 'unpacking' AND ec.code = ANY(%s) GROUP BY e.id ORDER BY e.id""",
            (codes[:3] + codes[4:],),
        )
    ).fetchall()
    await conn.commit()
    assert sorted((r["recorded_by"], r["child_count"], r["n"]) for r in unpack) == sorted(
        [(hz_clerk, 2, 2), (c2_id, 1, 1), (nb_id, 2, 2)]
    ), unpack
    async with app.state.pool.connection() as c:
        await rollup(c)
        assert await recount(c) == []


async def test_rebate_unit_without_channel_and_store_under_brand(
    client: Any, app: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A store under the brand, and a unit with no channel agent at a store: both credited."""
    goods = await pack(client, login, app, demo, 2)
    fclerk, admin, platform = await login("clerk"), await login("admin"), await login("admin")
    await set_rebate(client, admin, goods["product_id"], 1.5)
    store = await _new_org(client, platform, "store", demo["BRAND-LUMI"])
    _, sclerk = await new_clerk(client, login, store)
    inbound = await document(client, fclerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, fclerk, inbound)).status_code == 200
    ship = await document(client, fclerk, goods["cases"], kind="outbound", counterparty_id=store)
    assert (await confirm(client, fclerk, ship)).status_code == 200
    got = await document(client, sclerk, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, sclerk, got)).status_code == 200
    async with member_client(app) as mc:
        made = await mc.post(
            "/rebates/claims", headers=sclerk, json=rebate_body(app.state.scheme, goods["units"][0])
        )
        assert made.status_code == 201, made.text
        await conn.execute(
            "UPDATE unit_state SET channel_org_id = NULL WHERE code = %s",
            (code_of(app, goods["units"][1]),),
        )
        await conn.commit()
        made = await mc.post(
            "/rebates/claims", headers=sclerk, json=rebate_body(app.state.scheme, goods["units"][1])
        )
        assert made.status_code == 201, made.text
        assert made.json()["agent_id"] is None
