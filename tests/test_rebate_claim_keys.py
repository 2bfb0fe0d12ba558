"""Rebate claims under one client id, and rules set at once (R1): what a refused claim leaves
behind, and the rules' audited history.

A probe found that a claim refused as ``client_id_reused`` by the claims' unique key still sold
its unit (state, sale event, stock) with no claim behind the sale; and that two first settings
of one rule at once both read "no rule yet" and audited two creations, the first amount lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.rebates import rules
from tests.helpers import assert_error
from tests.points_support import member_client
from tests.rebates_support import rebate_body, set_rebate, store_goods
from tests.test_rebate_claims import code_of, one

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
