"""Logistics: orders, documents and the movements they make, factory → agent → store → sale,
exception approvals, returns, holder checks and scoping (SPEC L1–L8, L10, L11)."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app import localtime
from tests.helpers import (
    acting,
    assert_error,
    code_of,
    issue_cases,
    issue_units,
    key_of,
    new_org,
    sales_order,
)
from tests.race_support import lock_waiters
from tests.test_field_scoping import _user

_ids = itertools.count()


async def pack(client: Any, login: Any, app: Any, demo: Any, cases: int) -> dict[str, Any]:
    """Issue and pack ``cases`` inner cases of 10 sun-cream units on a factory line."""
    batch_no, product_id = await issue_units(client, login, demo, cases * 10)
    ssccs = await issue_cases(client, login, demo, "inner", cases)
    operator = await login("operator")
    response = await client.put(
        "/lines/L9/context",
        headers=operator,
        json={"product_id": product_id, "lot": "LOG1", "production_date": "2026-11-10"},
    )
    assert response.status_code == 200, response.text
    units = [app.state.scheme.serial(batch_no, i) for i in range(cases * 10)]
    scans = []
    for c in range(cases):
        for serial in units[c * 10 : c * 10 + 10]:
            scans.append({"id": f"lg{next(_ids)}", "code": serial, "at": "2026-11-10T08:00:00Z"})
        scans.append({"id": f"lg{next(_ids)}", "code": ssccs[c], "at": "2026-11-10T08:00:00Z"})
    body = (await client.post("/lines/L9/scans", headers=operator, json={"scans": scans})).json()
    assert body["rejected"] == 0, body
    return {"units": units, "cases": ssccs, "product_id": product_id, "batch_no": batch_no}


async def document(
    client: Any, headers: Any, codes: list[str] | None = None, **fields: Any
) -> dict[str, Any]:
    created = await client.post("/documents", headers=headers, json=fields)
    assert created.status_code == 201, created.text
    doc = created.json()
    if codes:
        added = await client.post(
            f"/documents/{doc['id']}/codes", headers=headers, json={"codes": codes}
        )
        assert added.status_code == 200, added.text
        assert added.json()["rejected"] == 0, added.json()
    return doc  # type: ignore[no-any-return]


async def confirm(client: Any, headers: Any, doc: dict[str, Any]) -> Any:
    return await client.post(f"/documents/{doc['id']}/confirm", headers=headers)


async def state_of(conn: Any, app: Any, serial: str) -> dict[str, Any]:
    batch_no, index, _ = app.state.scheme.verify(serial)
    row = await (
        await conn.execute(
            """SELECT status, disposition, holder_org_id, transit_to, channel_org_id,
                      store_org_id, parent_sscc, shipped_at IS NOT NULL AS shipped
               FROM unit_state WHERE code = %s""",
            ((batch_no << 32) | index,),
        )
    ).fetchone()
    await conn.commit()
    return dict(row)


@pytest.fixture
async def route(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    goods = await pack(client, login, app, demo, 3)
    clerk = await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound", signee="Li Lei")
    response = await confirm(client, clerk, inbound)
    assert response.status_code == 200, response.text
    assert response.json()["counterparty_id"] == demo["FACTORY-SZ"]
    assert response.json()["units"] == 30 and response.json()["packages"] == 3
    return goods


async def test_factory_to_agent_to_store_to_sale(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    units, cases = route["units"], route["cases"]
    partner, clerk = await login("partner"), await login("clerk")
    order = {
        "erp_no": f"SO-{next(_ids)}-{route['batch_no']}",
        "kind": "sales",
        "from_org_id": demo["FACTORY-SZ"],
        "to_org_id": demo["AGENT-ZJ"],
        "lines": [{"product_id": route["product_id"], "quantity": 25}],
    }
    created = await client.post("/orders", headers=partner, json=order)
    assert created.status_code == 201, created.text
    again = await client.post("/orders", headers=partner, json=order)
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    changed = {**order, "lines": [{"product_id": route["product_id"], "quantity": 26}]}
    assert_error(
        await client.post("/orders", headers=partner, json=changed), 409, "order_no_reused"
    )
    order_id = created.json()["id"]

    # over-shipment: three cases (30 units) against 25 ordered
    over = await document(client, clerk, cases, kind="outbound", order_id=order_id)
    error = assert_error(await confirm(client, clerk, over), 409, "over_shipment")
    assert error["details"][str(route["product_id"])] == {"ordered": 25, "shipped": 0, "now": 30}
    assert (await client.post(f"/documents/{over['id']}/cancel", headers=clerk)).status_code == 200

    # two cases and five loose units of the third: exactly the order
    ship = await document(
        client,
        clerk,
        cases[:2] + units[20:25],
        kind="outbound",
        order_id=order_id,
        signee="Wang Fang",
        phone="+86 138 0000 0000",
        destination_city="杭州市",
    )
    shipped = await confirm(client, clerk, ship)
    assert shipped.status_code == 200, shipped.text
    body = shipped.json()
    assert (body["status"], body["units"], body["packages"]) == ("confirmed", 25, 2)
    assert body["discrepancies"] is None
    moved = await state_of(conn, app, units[22])
    assert moved["transit_to"] == demo["AGENT-ZJ"] and moved["channel_org_id"] == demo["AGENT-ZJ"]
    assert moved["parent_sscc"] is None and moved["shipped"]  # left its case
    assert (await state_of(conn, app, units[25]))["parent_sscc"] == int(cases[2])
    assert (await client.get(f"/orders/{order_id}", headers=partner)).json()["status"] == "shipped"

    # the agent receives the whole order in one action
    agent = await login("agent_clerk")
    received = await client.post(f"/orders/{order_id}/receive", headers=agent)
    assert received.status_code == 200, received.text
    assert received.json()["units"] == 25 and received.json()["kind"] == "inbound"
    assert (await state_of(conn, app, units[3]))["holder_org_id"] == demo["AGENT-ZJ"]
    assert (await client.get(f"/orders/{order_id}", headers=partner)).json()["status"] == "received"

    # agent → store: a case; the store receives by scanning only part of it → discrepancy
    to_store = await document(
        client, agent, [cases[0]], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    assert (await confirm(client, agent, to_store)).status_code == 200
    at_store = await state_of(conn, app, units[4])
    assert at_store["store_org_id"] == demo["STORE-HZ-01"]
    assert at_store["channel_org_id"] == demo["AGENT-ZJ"]  # the designated channel stays
    store = await login("store_clerk")
    store_in = await document(client, store, units[:8], kind="inbound", shipment_id=to_store["id"])
    got = await confirm(client, store, store_in)
    assert got.status_code == 200, got.text
    assert got.json()["discrepancies"]["missing"] == {"count": 2, "codes": units[8:10]}
    rest = await document(client, store, units[8:10], kind="inbound", shipment_id=to_store["id"])
    assert (await confirm(client, store, rest)).json()["discrepancies"] is None

    # a sale, then verification still says genuine and the trace has the whole route
    sold = await client.post("/sales", headers=store, json={"codes": [units[1]]})
    assert sold.status_code == 201, sold.text
    assert (await state_of(conn, app, units[1]))["status"] == "sold"
    answer = await client.post(
        "/v1/verify", json={"serial": units[1], "pin": app.state.scheme.pin(units[1])}
    )
    assert answer.json()["result"] == "genuine", answer.text  # shipped, so not "never shipped"
    trace = (await client.get(f"/trace/{units[1]}", headers=await login("admin"))).json()
    steps = [(e["biz_step"], e["via"] is not None) for e in trace["events"]]
    assert steps == [
        ("commissioning", False),
        ("packing", False),
        ("receiving", True),  # factory inbound of its case
        ("shipping", True),  # factory → agent, in its case
        ("receiving", True),  # agent inbound, in its case
        ("shipping", True),  # agent → store, in its case
        ("receiving", False),  # store inbound, scanned as a unit:
        ("unpacking", False),  # so it left its case
        ("retail_selling", False),
    ]
    shipping = next(e for e in trace["events"] if e["biz_step"] == "shipping")
    assert shipping["source"]["id"] == demo["WH-SZ-01"]
    assert shipping["destination"]["id"] == demo["AGENT-ZJ"]
    assert [t["type"] for t in shipping["biz_transactions"]] == ["po", "desadv"]

    # probe X: a warehouse's "sale" ranked it among the stores; a unit exchanged for itself
    # was sold twice
    at_warehouse = await client.post(
        "/sales", headers=await login("clerk"), json={"codes": [units[1]]}
    )
    assert_error(at_warehouse, 422, "not_a_seller")
    itself = {"code": units[1], "reason": "other", "exchange_for": units[1]}
    assert_error(await client.post("/returns", headers=store, json=itself), 422, "same_unit")
    assert (await state_of(conn, app, units[1]))["status"] == "sold"
    # a consumer returns it damaged and takes another unit instead
    returned = await client.post(
        "/returns",
        headers=store,
        json={"code": units[1], "reason": "damaged", "exchange_for": units[2]},
    )
    assert returned.status_code == 200, returned.text
    assert returned.json()["disposition"] == "damaged"
    assert (await state_of(conn, app, units[1]))["status"] == "active"
    assert (await state_of(conn, app, units[2]))["status"] == "sold"
    # probe X: the damaged unit was sold on to the next consumer; it goes back upstream
    again = await client.post("/sales", headers=store, json={"codes": [units[1]]})
    assert_error(again, 409, "not_sellable")
    assert (await state_of(conn, app, units[1]))["status"] == "active"
    assert_error(
        await client.post("/returns", headers=store, json={"code": units[3], "reason": "expired"}),
        409,
        "not_sold",
    )

    # the documents list of the agent has its own documents; another agent sees none of them
    mine = (await client.get("/documents", headers=agent, params={"per_page": 200})).json()
    assert {ship["doc_no"], to_store["doc_no"]} <= {d["doc_no"] for d in mine["items"]}
    other = await login("gd_admin")
    assert_error(await client.get(f"/documents/{to_store['id']}", headers=other), 404)
    theirs = (await client.get("/documents", headers=other, params={"per_page": 200})).json()
    assert to_store["doc_no"] not in {d["doc_no"] for d in theirs["items"]}
    assert_error(await client.get(f"/orders/{order_id}", headers=other), 404, "unknown_order")


async def test_only_the_holder_moves_goods(
    client: Any, login: Any, demo: Any, route: dict[str, Any]
) -> None:
    agent = await login("agent_clerk")  # the goods are at the factory warehouse
    doc = await document(client, agent, kind="outbound", counterparty_id=demo["STORE-HZ-01"])
    # outside the agent's subtree they are not known to it: rejected like a case never packed
    added = await client.post(
        f"/documents/{doc['id']}/codes", headers=agent, json={"codes": route["cases"][:1]}
    )
    assert [(i["result"], i.get("reason")) for i in added.json()["items"]] == [
        ("rejected", "not_packed")
    ]
    assert_error(await confirm(client, agent, doc), 422, "empty_document")
    # the factory sees its warehouse's goods, but only their holder ships them
    factory = await login("factory_admin")
    theirs = await document(
        client, factory, route["cases"][:1], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    error = assert_error(await confirm(client, factory, theirs), 409, "not_held")
    assert error["details"]["count"] == 10  # named by their printed serials
    assert set(error["details"]["codes"]) == set(route["units"][:10])
    # the store cannot receive what was never shipped: the outbound was not confirmed
    store = await login("store_clerk")
    assert_error(
        await client.post(
            "/documents", headers=store, json={"kind": "inbound", "shipment_id": doc["id"]}
        ),
        409,
        "shipment_not_confirmed",
    )
    # nor a shipment to somebody else
    clerk = await login("clerk")
    elsewhere = await document(client, clerk, kind="outbound", counterparty_id=demo["AGENT-GD"])
    assert_error(
        await client.post(
            "/documents", headers=store, json={"kind": "inbound", "shipment_id": elsewhere["id"]}
        ),
        422,
        "unknown_shipment",
    )
    # bad input
    draft = await document(client, clerk, kind="outbound", counterparty_id=demo["AGENT-GD"])
    added = await client.post(
        f"/documents/{draft['id']}/codes",
        headers=clerk,
        json={"codes": ["FORGED-SERIAL-00000000", route["units"][0], route["units"][0], "12"]},
    )
    results = [(i["result"], i.get("reason")) for i in added.json()["items"]]
    assert results == [
        ("rejected", "forged"),  # 20 symbols once the hyphens go: a bad signature
        ("added", None),
        ("duplicate", None),
        ("rejected", "malformed"),
    ]
    # somebody else's document: invisible; the receiver's: visible but not theirs to confirm
    assert_error(await confirm(client, await login("store_clerk"), draft), 404, "unknown_document")
    assert_error(await confirm(client, await login("gd_admin"), draft), 403, "not_your_org")
    assert_error(
        await client.post("/documents", headers=clerk, json={"kind": "outbound"}),
        422,
        "no_destination",
    )
    assert_error(await client.post("/documents", headers=clerk, json={"kind": "teleport"}), 400)
    far = {"kind": "outbound", "counterparty_id": demo["AGENT-GD"], "doc_date": "9999-12-31"}
    assert_error(await client.post("/documents", headers=clerk, json=far), 400, "validation_failed")
    assert_error(await client.get("/documents/999999", headers=clerk), 404, "unknown_document")
    empty = await document(client, clerk, kind="outbound", counterparty_id=demo["AGENT-GD"])
    assert_error(await confirm(client, clerk, empty), 422, "empty_document")


async def test_exception_outbound_needs_approval(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    clerk, approver = await login("clerk"), await login("approver")
    gift = await document(
        client, clerk, route["units"][:2], kind="exception", reason="gift", note="trade fair"
    )
    pending = await confirm(client, clerk, gift)
    assert pending.json()["status"] == "pending_approval"
    assert (await state_of(conn, app, route["units"][0]))["status"] == "active"  # not yet
    assert_error(
        await client.post(f"/documents/{gift['id']}/approve", headers=clerk, json={}),
        403,
        "permission_denied",
    )
    approved = await client.post(
        f"/documents/{gift['id']}/approve", headers=approver, json={"note": "customer event"}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["approved_by"] is not None
    # a probe: the approver's note was written over the requester's — why the goods were asked
    # for was gone once the approval said why it was given; each keeps its own words
    assert (approved.json()["note"], approved.json()["decision_note"]) == (
        "trade fair",
        "customer event",
    )
    gone = await state_of(conn, app, route["units"][0])
    assert (gone["status"], gone["disposition"]) == ("sold", "non_sellable_other")
    # a gift the brand approved is genuine in its receiver's hands, not "never shipped" (probe H)
    serial = route["units"][0]
    answer = await client.post(
        "/v1/verify", json={"serial": serial, "pin": app.state.scheme.pin(serial)}
    )
    assert (answer.json()["result"], answer.json()["reason"]) == ("genuine", "first_query")
    assert_error(
        await client.post(f"/documents/{gift['id']}/approve", headers=approver, json={}),
        409,
        "not_pending",
    )
    # a probe: the warehouse took the gift back as a consumer's return (an approved exception
    # outbound undone with no document and no approval)
    assert_error(
        await client.post("/returns", headers=clerk, json={"code": serial, "reason": "other"}),
        409,
        "not_sold",
    )
    assert (await state_of(conn, app, serial))["status"] == "sold"
    # probe T: an admin holding both permissions approved its own exception outbound
    admin = await login("factory_admin")
    own = await document(
        client, admin, route["units"][3:4], kind="exception", reason="gift", org_id=demo["WH-SZ-01"]
    )
    assert (await confirm(client, admin, own)).json()["status"] == "pending_approval"
    own_approval = await client.post(f"/documents/{own['id']}/approve", headers=admin, json={})
    assert_error(own_approval, 403, "own_document")
    key = await client.post(  # review R5: nor through a key of its own making
        "/api-keys",
        headers=admin,
        json={"name": f"approve_{own['id']}", "permissions": ["logistics.approve"]},
    )
    assert key.status_code == 201, key.text
    by_key = await client.post(
        f"/documents/{own['id']}/approve", headers={"X-API-Key": key.json()["key"]}, json={}
    )
    assert_error(by_key, 403, "own_document")
    # review R5: nor one it confirmed for a clerk who drafted it
    sent_on = await document(client, clerk, route["units"][4:5], kind="exception", reason="gift")
    assert (await confirm(client, admin, sent_on)).json()["status"] == "pending_approval"
    confirmer = await client.post(f"/documents/{sent_on['id']}/approve", headers=admin, json={})
    assert_error(confirmer, 403, "own_document")
    third = await client.post(f"/documents/{sent_on['id']}/approve", headers=approver, json={})
    assert third.status_code == 200 and third.json()["status"] == "confirmed", third.text
    # probe Y: one an older release sent on (no submitted_by): the audit log says who did
    older = await document(client, clerk, route["units"][5:6], kind="exception", reason="gift")
    assert (await confirm(client, admin, older)).json()["status"] == "pending_approval"
    async with app.state.pool.connection() as pg:
        await pg.execute("UPDATE documents SET submitted_by = NULL WHERE id = %s", (older["id"],))
    by_confirmer = await client.post(f"/documents/{older['id']}/approve", headers=admin, json={})
    assert_error(by_confirmer, 403, "own_document")
    withdrawn = await client.post(f"/documents/{own['id']}/reject", headers=admin, json={})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "rejected"
    sample = await document(client, clerk, route["units"][2:3], kind="exception", reason="sample")
    await confirm(client, clerk, sample)
    rejected = await client.post(
        f"/documents/{sample['id']}/reject", headers=approver, json={"note": "samples ran out"}
    )
    assert rejected.json()["status"] == "rejected"
    assert (rejected.json()["note"], rejected.json()["decision_note"]) == ("", "samples ran out")
    assert (await state_of(conn, app, route["units"][2]))["status"] == "active"
    assert_error(
        await client.post(
            "/documents", headers=clerk, json={"kind": "exception", "reason": "party"}
        ),
        422,
        "bad_reason",
    )


# -- cases moved without their pallet (probe H) -------------------------------------------------


async def palletised(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """Two inner cases of 10 on a pallet, received into the factory warehouse."""
    goods = await pack(client, login, app, demo, 2)
    pallet = (await issue_cases(client, login, demo, "pallet", 1))[0]
    scan = {"id": f"lg{next(_ids)}", "code": pallet, "children": goods["cases"],
            "at": "2026-11-10T08:05:00Z"}  # fmt: skip
    body = (
        await client.post(
            "/lines/L9/scans", headers=await login("operator"), json={"scans": [scan]}
        )
    ).json()
    assert body["rejected"] == 0, body
    clerk = await login("clerk")
    inbound = await document(client, clerk, [pallet], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    return {**goods, "pallet": pallet}


async def parent_of(conn: Any, sscc: str) -> int | None:
    row = await (
        await conn.execute("SELECT parent_sscc FROM case_state WHERE sscc = %s", (int(sscc),))
    ).fetchone()
    await conn.commit()
    return row["parent_sscc"]  # type: ignore[no-any-return]


async def test_a_case_received_without_its_pallet_leaves_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """Probe H: the agent received one inner case of a shipped pallet; the case kept the pallet
    as its parent, so the rest of the shipment could never be received (409 not_in_transit,
    naming the case's units, already received) and the pallet never unpacked."""
    goods = await palletised(client, login, app, demo)
    first, second = goods["cases"]
    clerk, agent = await login("clerk"), await login("agent_clerk")
    order_id = await sales_order(client, login, demo, goods["product_id"], 20)
    ship = await document(client, clerk, [goods["pallet"]], kind="outbound", order_id=order_id)
    assert (await confirm(client, clerk, ship)).status_code == 200
    part = await document(client, agent, [first], kind="inbound", shipment_id=ship["id"])
    received = await confirm(client, agent, part)
    assert received.status_code == 200, received.text
    assert received.json()["discrepancies"]["missing"]["count"] == 10
    assert await parent_of(conn, first) is None  # out of the pallet, which still holds the other
    assert await parent_of(conn, second) == int(goods["pallet"])
    trace = (await client.get(f"/trace/{goods['pallet']}", headers=await login("admin"))).json()
    unpacked = [e for e in trace["events"] if e["biz_step"] == "unpacking"]
    assert len(unpacked) == 1, trace["events"]
    rest = await client.post(f"/orders/{order_id}/receive", headers=agent)
    assert rest.status_code == 200, rest.text
    assert rest.json()["units"] == 10
    for serial in goods["units"]:
        state = await state_of(conn, app, serial)
        assert (state["holder_org_id"], state["transit_to"]) == (demo["AGENT-ZJ"], None)


async def test_a_pallet_emptied_by_an_earlier_receipt_is_no_package_of_the_rest(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe (2,000 cases before the truck): a pallet of two cases and a loose case are
    shipped; the agent receives the pallet's two cases, scanned (the pallet left empty, still
    on its way); the rest of the shipment — the loose case — was received as 2 packages, the
    empty pallet counted too (on the truck: 9 packages for 3 cases, on one product's line),
    and a receipt's draft said so too. A case holding no unit is no package."""
    goods = await palletised(client, login, app, demo)
    loose = await pack(client, login, app, demo, 1)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    inbound = await document(client, clerk, loose["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    order_id = await sales_order(client, login, demo, goods["product_id"], 30)
    ship = await document(
        client, clerk, [goods["pallet"], *loose["cases"]], kind="outbound", order_id=order_id
    )
    shipped = await confirm(client, clerk, ship)
    assert (shipped.json()["units"], shipped.json()["packages"]) == (30, 2), shipped.json()
    part = await document(client, agent, goods["cases"], kind="inbound", shipment_id=ship["id"])
    got = await confirm(client, agent, part)
    assert (got.json()["units"], got.json()["packages"]) == (20, 2), got.json()
    draft = await document(client, agent, kind="inbound", shipment_id=ship["id"])
    said = (await client.get(f"/documents/{draft['id']}/summary", headers=agent)).json()
    assert (said["units"], said["cases"]) == (10, 1), said
    assert (await client.post(f"/documents/{draft['id']}/cancel", headers=agent)).status_code == 200
    rest = await client.post(f"/orders/{order_id}/receive", headers=agent)
    assert rest.status_code == 200, rest.text
    assert (rest.json()["units"], rest.json()["packages"]) == (10, 1), rest.json()


async def test_a_case_shipped_without_its_pallet_leaves_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """Probe H: after the warehouse shipped one inner case out of a pallet, the pallet could
    never be shipped (409 not_held, naming the case gone) nor unpacked again."""
    goods = await palletised(client, login, app, demo)
    first, second = goods["cases"]
    clerk = await login("clerk")
    alone = await document(
        client, clerk, [first], kind="outbound",
        order_id=await sales_order(client, login, demo, goods["product_id"], 10),
    )  # fmt: skip
    assert (await confirm(client, clerk, alone)).status_code == 200
    assert await parent_of(conn, first) is None
    rest = await document(
        client, clerk, [goods["pallet"]], kind="outbound",
        order_id=await sales_order(client, login, demo, goods["product_id"], 10),
    )  # fmt: skip
    shipped = await confirm(client, clerk, rest)
    assert shipped.status_code == 200, shipped.text
    assert (shipped.json()["units"], shipped.json()["packages"]) == (10, 1)
    assert await parent_of(conn, second) == int(goods["pallet"])


async def test_goods_back_in_the_factory_get_the_channel_of_their_next_shipment(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    """Probe H: a case returned by the Zhejiang agent to the factory warehouse and shipped to
    the Guangdong agent kept Zhejiang as its channel, so an inspection at a Guangdong store
    called it diverted and Zhejiang's rebate and points rules applied."""
    case, unit = route["cases"][0], route["units"][0]
    clerk, zj, gd = await login("clerk"), await login("agent_clerk"), await login("gd_admin")
    first = await sales_order(client, login, demo, route["product_id"], 10)
    ship = await document(client, clerk, [case], kind="outbound", order_id=first)
    assert (await confirm(client, clerk, ship)).status_code == 200
    assert (await client.post(f"/orders/{first}/receive", headers=zj)).status_code == 200
    back = await document(client, zj, [case], kind="return", counterparty_id=demo["WH-SZ-01"])
    assert (await confirm(client, zj, back)).status_code == 200
    home = await document(client, clerk, kind="inbound", shipment_id=back["id"])
    assert (await confirm(client, clerk, home)).status_code == 200
    assert (await state_of(conn, app, unit))["channel_org_id"] == demo["AGENT-ZJ"]
    second = await sales_order(client, login, demo, route["product_id"], 10, to="AGENT-GD")
    again = await document(client, clerk, [case], kind="outbound", order_id=second)
    assert (await confirm(client, clerk, again)).status_code == 200
    assert (await client.post(f"/orders/{second}/receive", headers=gd)).status_code == 200
    state = await state_of(conn, app, unit)
    assert (state["holder_org_id"], state["channel_org_id"]) == (demo["AGENT-GD"],) * 2
    assert state["store_org_id"] is None


async def test_a_unit_returned_from_a_case_sold_whole_comes_back_on_its_own(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    """Probe H: a consumer returned one unit of a case the store had sold whole; the unit was
    active again inside a case of sold units, so the store could not send the case back (409
    not_held, naming the others) nor unpack it."""
    case, unit = route["cases"][0], route["units"][0]
    clerk, agent, store = (
        await login("clerk"),
        await login("agent_clerk"),
        await login("store_clerk"),
    )
    order_id = await sales_order(client, login, demo, route["product_id"], 10)
    ship = await document(client, clerk, [case], kind="outbound", order_id=order_id)
    assert (await confirm(client, clerk, ship)).status_code == 200
    assert (await client.post(f"/orders/{order_id}/receive", headers=agent)).status_code == 200
    on = await document(client, agent, [case], kind="outbound", counterparty_id=demo["STORE-HZ-01"])
    assert (await confirm(client, agent, on)).status_code == 200
    shelf = await document(client, store, kind="inbound", shipment_id=on["id"])
    assert (await confirm(client, store, shelf)).status_code == 200
    sold = await client.post("/sales", headers=store, json={"codes": [case]})
    assert sold.status_code == 201, sold.text
    assert (await state_of(conn, app, unit))["parent_sscc"] == int(case)  # sold in its case
    back = await client.post("/returns", headers=store, json={"code": unit, "reason": "other"})
    assert back.status_code == 200, back.text
    state = await state_of(conn, app, unit)
    assert (state["status"], state["parent_sscc"]) == ("active", None)
    upstream = await document(client, store, [unit], kind="return")
    returned = await confirm(client, store, upstream)
    assert returned.status_code == 200, returned.text
    assert returned.json()["units"] == 1


async def test_void_codes_are_named_void(
    client: Any, login: Any, app: Any, demo: Any, route: dict[str, Any]
) -> None:
    """Probe H: a replaced (void) code was "added" to a draft and counted, then refused at
    confirmation as not_held; as a replacement's new code it was "already active"."""
    units, operator, clerk = route["units"], await login("operator"), await login("clerk")
    batch_no, _ = await issue_units(client, login, demo, 2)
    fresh = [app.state.scheme.serial(batch_no, i) for i in range(2)]

    async def replace(old: str, new: str) -> Any:
        return await client.post(
            "/packing/replace", headers=operator, json={"old": old, "new": new, "reason": "QC"}
        )

    draft = await document(client, clerk, [units[1]], kind="exception", reason="sample")
    assert (await replace(units[0], fresh[0])).status_code == 200
    assert (await replace(units[1], fresh[1])).status_code == 200  # voided after its scan-in
    added = await client.post(
        f"/documents/{draft['id']}/codes", headers=clerk, json={"codes": [units[0]]}
    )
    assert [i["reason"] for i in added.json()["items"]] == ["void"]
    error = assert_error(await confirm(client, clerk, draft), 409, "void")
    assert error["details"]["codes"] == [units[1]]
    assert_error(await replace(units[2], units[0]), 409, "void")


async def test_a_request_resent_under_its_client_id_answers_added_for_its_codes(
    client: Any, login: Any, demo: Any, route: dict[str, Any]
) -> None:
    """A probe: the staff app re-sends a document's codes when their answer was lost; the server,
    holding them, answered `duplicate` and the clerk's tally was wrong (the app guessed, wrongly
    when another phone had added the code). With the request's ``client_id``, a code that the
    same id added answers ``added`` again (counted in ``added``; a code twice in the request
    still once), one another request added — or one added without a client id — stays
    ``duplicate``, and nothing is added twice. Without a client id, as before."""
    cases, units, clerk = route["cases"], route["units"], await login("clerk")
    draft = await document(client, clerk, kind="outbound", counterparty_id=demo["AGENT-GD"])

    async def add(codes: list[str], client_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"codes": codes}
        if client_id is not None:
            body["client_id"] = client_id
        response = await client.post(f"/documents/{draft['id']}/codes", headers=clerk, json=body)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def results(answer: dict[str, Any]) -> list[str]:
        return [i["result"] for i in answer["items"]]

    assert results(await add(cases[:2], "m-first")) == ["added", "added"]  # its answer lost
    assert results(await add(cases[2:3], "m-other")) == ["added"]  # another phone's
    assert results(await add(units[:1])) == ["added"]  # without a client id
    again = await add([cases[0], cases[1], cases[2], cases[0], units[0]], "m-first")
    assert results(again) == ["added", "added", "duplicate", "duplicate", "duplicate"]
    assert (again["added"], again["rejected"]) == (2, 0)
    assert results(await add(cases[:1])) == ["duplicate"]  # without a client id: as before
    assert results(await add(cases[:1], "m-later")) == ["duplicate"]
    # the id is the caller's own: another user sending "m-first" re-sends nothing of the clerk's
    theirs = await client.post(
        f"/documents/{draft['id']}/codes",
        headers=await login("factory_admin"),
        json={"codes": cases[:1], "client_id": "m-first"},
    )
    assert theirs.status_code == 200, theirs.text
    assert results(theirs.json()) == ["duplicate"]
    doc = (await client.get(f"/documents/{draft['id']}", headers=clerk)).json()
    assert doc["items"] == 4  # nothing added twice
    bad = await client.post(
        f"/documents/{draft['id']}/codes",
        headers=clerk,
        json={"codes": cases[:1], "client_id": "m-1\n"},
    )
    assert_error(bad, 400, "validation_failed")


async def test_an_emptied_case_ships_nothing(
    client: Any, login: Any, app: Any, demo: Any, route: dict[str, Any]
) -> None:
    """Probe I: a case unpacked after it was scanned into two drafts was confirmed by both, with
    0 units: the case went to one agent and then to another while in transit."""
    case, clerk = route["cases"][0], await login("clerk")
    drafts = [
        await document(client, clerk, [case], kind="outbound", counterparty_id=demo[to])
        for to in ("AGENT-ZJ", "AGENT-GD")
    ]
    unpacked = await client.post(
        "/packing/unpack",
        headers=await login("factory_admin"),
        json={"parent": case, "reason": "QC"},
    )
    assert unpacked.status_code == 200, unpacked.text
    for draft in drafts:
        assert_error(await confirm(client, clerk, draft), 422, "empty_document")


# -- races decided by lock order (probe I) -------------------------------------------------------


async def waiting_for_a_lock(conn: Any) -> bool:
    """Whether some transaction of this database waits for a lock, within ~5 s."""
    for _ in range(200):
        row = await (
            await conn.execute(
                """SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND pid IN
                       (SELECT pid FROM pg_stat_activity WHERE datname = current_database())"""
            )
        ).fetchone()
        await conn.commit()
        if row["n"]:
            return True
        await asyncio.sleep(0.025)
    return False


async def test_a_batch_voided_during_an_upload_leaves_no_active_unit(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """Probe I: an upload read its batch live, the void committed, then the upload activated
    the units: active stock of a void batch. The void is held open here while the upload runs."""
    batch_no, product_id = await issue_units(client, login, demo, 3)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(3)]
    operator = await login("operator")
    context = {"product_id": product_id, "lot": "VOID1", "production_date": "2026-11-01"}
    assert (
        await client.put("/lines/T1/context", headers=operator, json=context)
    ).status_code == 200
    scans = [{"id": f"vd-{s}", "code": s, "at": "2026-11-01T08:00:00+08:00"} for s in serials]
    async with app.state.pool.connection() as voiding:
        await voiding.execute(
            "SELECT 1 FROM code_batches WHERE batch_no = %s FOR UPDATE", (batch_no,)
        )
        await voiding.execute(
            "UPDATE code_batches SET state = 'void' WHERE batch_no = %s", (batch_no,)
        )
        upload = asyncio.create_task(
            client.post("/lines/T1/scans", headers=operator, json={"scans": scans})
        )
        assert await waiting_for_a_lock(conn)  # the upload waits for the void
        await voiding.commit()
    body = (await upload).json()
    assert [s.get("reason") for s in body["scans"]] == ["void"] * 3, body
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM unit_state WHERE code >> 32 = %s AND status = 'active'",
            (batch_no,),
        )
    ).fetchone()
    assert row["n"] == 0


async def test_a_unit_packed_into_a_case_as_it_ships_goes_with_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    """Probe I: a confirm read a case's units before locking the case; a unit a replacement or
    an upload put into it meanwhile stayed behind, in a case gone in transit. The unit's entry
    is held open here (as an upload holds the case) while the confirm runs."""
    case, clerk = route["cases"][0], await login("clerk")
    extra = route["units"][20]  # of the third case: moved into the first by hand
    ship = await document(client, clerk, [case], kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    async with app.state.pool.connection() as packing:
        await packing.execute("SELECT 1 FROM case_state WHERE sscc = %s FOR UPDATE", (int(case),))
        batch_no, index, _ = app.state.scheme.verify(extra)
        await packing.execute(
            "UPDATE unit_state SET parent_sscc = %s WHERE code = %s",
            (int(case), (batch_no << 32) | index),
        )
        confirming = asyncio.create_task(confirm(client, clerk, ship))
        assert await waiting_for_a_lock(conn)
        await packing.commit()
    confirmed = await confirming
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["units"] == 11
    state = await state_of(conn, app, extra)
    assert (state["transit_to"], state["parent_sscc"]) == (demo["AGENT-ZJ"], int(case))


async def test_receiving_the_rest_leaves_what_another_receipt_took(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    """Probe I: "receive the rest" looked at what was in transit, then waited for the locks
    while a scanned receipt took part of it, and refused the whole (409 not_in_transit, naming
    that receipt's units). The scanned receipt of the first case is held open here."""
    from app.logistics.documents import confirm as confirm_document

    first, second = route["cases"][:2]
    clerk, agent = await login("clerk"), await login("agent_clerk")
    order_id = await sales_order(client, login, demo, route["product_id"], 20)
    ship = await document(client, clerk, [first, second], kind="outbound", order_id=order_id)
    assert (await confirm(client, clerk, ship)).status_code == 200
    part = await document(client, agent, [first], kind="inbound", shipment_id=ship["id"])
    async with app.state.pool.connection() as other:  # that receipt, confirmed, not committed
        actor = await acting(other, "agent_clerk")
        await confirm_document(other, actor, app.state.scheme, part["id"])
        rest = asyncio.create_task(client.post(f"/orders/{order_id}/receive", headers=agent))
        assert await waiting_for_a_lock(conn)
        await other.commit()
    received = await rest
    assert received.status_code == 200, received.text
    assert received.json()["units"] == 10


async def test_a_unit_replaced_as_its_case_ships_goes_with_the_case(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    """A replacement and an outbound of the unit's case at once: the replacement (done on
    another connection, not yet committed) holds the case; the confirm waits for it, then ships
    the new unit with the case. The old code stays void, out of the case."""
    from app.packing.edits import replace
    from app.packing.schemas import ReplaceIn

    spare, _ = await issue_units(client, login, demo, 1)
    case, old, new = route["cases"][0], route["units"][0], app.state.scheme.serial(spare, 0)
    clerk = await login("clerk")
    ship = await document(client, clerk, [case], kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    async with app.state.pool.connection() as other:
        actor = await acting(other, "operator")
        await replace(other, actor, app.state.scheme, ReplaceIn(old=old, new=new))
        confirming = asyncio.create_task(confirm(client, clerk, ship))
        assert await waiting_for_a_lock(conn)  # the confirm waits for the replacement
        await other.commit()
    confirmed = await confirming
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["units"] == 10
    replaced = await state_of(conn, app, new)
    assert (replaced["status"], replaced["transit_to"], replaced["parent_sscc"]) == (
        "active",
        demo["AGENT-ZJ"],
        int(case),
    )
    gone = await state_of(conn, app, old)
    assert (gone["status"], gone["transit_to"], gone["parent_sscc"]) == ("void", None, None)


async def test_a_replacement_as_its_case_ships_waits_and_is_refused(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    """The other order: the confirm (on another connection, not yet committed) holds the case;
    the replacement waits for it, then finds the unit in transit and is refused. Nothing else
    changes: the old unit travels in its case, the new code stays inactive."""
    from app.logistics.documents import confirm as confirm_document

    spare, _ = await issue_units(client, login, demo, 1)
    case, old, new = route["cases"][0], route["units"][0], app.state.scheme.serial(spare, 0)
    clerk = await login("clerk")
    ship = await document(client, clerk, [case], kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    async with app.state.pool.connection() as other:
        await confirm_document(other, await acting(other, "clerk"), app.state.scheme, ship["id"])
        replacing = asyncio.create_task(
            client.post(
                "/packing/replace", headers=await login("operator"), json={"old": old, "new": new}
            )
        )
        assert await waiting_for_a_lock(conn)  # the replacement waits for the confirm
        await other.commit()
    assert_error(await replacing, 409, "not_on_hand")
    kept = await state_of(conn, app, old)
    assert (kept["status"], kept["transit_to"], kept["parent_sscc"]) == (
        "active",
        demo["AGENT-ZJ"],
        int(case),
    )
    row = await (
        await conn.execute("SELECT count(*) AS n FROM unit_state WHERE code >> 32 = %s", (spare,))
    ).fetchone()
    assert row["n"] == 0


async def test_an_outbound_records_where_it_goes(
    client: Any, login: Any, demo: Any, route: dict[str, Any]
) -> None:
    """A probe: the agent ships a case to its Hangzhou store by scanning it; the seed's agent
    outbound (五.1.3.2) carries 客户名称、客户类型、发往地(市), all three known from the store it
    ships to, but ``customer``, ``customer_type`` and ``destination_city`` were only what the
    caller typed — the staff app's form has no field for them — and stayed null. Left out of an
    outbound (or a return), they are the counterparty's name, kind and city; typed, they stay
    as typed; a receipt (from its sender) fills none."""
    clerk, agent = await login("clerk"), await login("agent_clerk")
    ship = await document(client, clerk, route["cases"][:2], kind="outbound",
                          counterparty_id=demo["AGENT-ZJ"], customer="浙江代理")  # fmt: skip
    assert (ship["customer"], ship["customer_type"], ship["destination_city"]) == (
        "浙江代理",
        "agent",
        "杭州市",
    )
    assert (await confirm(client, clerk, ship)).status_code == 200
    receipt = await document(client, agent, kind="inbound", shipment_id=ship["id"])
    assert (receipt["customer"], receipt["customer_type"], receipt["destination_city"]) == (
        None,
        None,
        None,
    )
    assert (await confirm(client, agent, receipt)).status_code == 200
    out = await document(
        client, agent, [route["cases"][0]], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    assert (await confirm(client, agent, out)).status_code == 200
    rows = (
        await client.get("/center/documents", headers=agent, params={"doc_no": out["doc_no"]})
    ).json()["items"]
    assert [(r["customer"], r["customer_type"], r["destination_city"]) for r in rows] == [
        ("Hangzhou West Lake Store 杭州西湖店", "store", "杭州市")
    ]


async def test_a_documents_number_and_date_are_of_the_brands_calendar(
    client: Any, login: Any, demo: Any
) -> None:
    """Probe L: a document made at 00:00:19 in Beijing was numbered and dated the day before
    (the UTC date), so a day's filter missed it and a month's first hours went to the last."""
    from app.localtime import today

    clerk = await login("clerk")
    doc = await document(client, clerk, kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    day = today()
    assert doc["doc_date"] == day.isoformat()
    assert doc["doc_no"][2:10] == f"{day:%Y%m%d}"
    found = await client.get(
        "/center/documents",
        headers=await login("admin"),
        params={"doc_no": doc["doc_no"], "from": day.isoformat(), "to": day.isoformat()},
    )
    assert found.status_code == 200 and found.json()["total"] == 1, found.text


async def test_nothing_is_shipped_to_an_inactive_organisation(
    client: Any, login: Any, demo: Any
) -> None:
    """Probe U: goods were shipped to a deactivated agent and to its stores (drafts made
    before and after), where nobody can sign in to receive them; the sender cannot recall a
    confirmed shipment. Now 409 ``org_inactive`` at the draft and again at its confirmation."""
    admin, agent, clerk = await login("admin"), await login("agent_clerk"), await login("clerk")
    n = secrets.token_hex(3).upper()

    async def org(kind: str, parent: int) -> int:
        code = f"CLOSE-{kind}-{parent}-{n}"
        body = {"kind": kind, "name": f"Closing {kind} {parent} {n}", "erp_code": code}
        made = await client.post("/orgs", headers=admin, json={**body, "parent_id": parent})
        assert made.status_code == 201, made.text
        return int(made.json()["id"])

    store = await org("store", demo["AGENT-ZJ"])
    draft = await document(client, agent, kind="outbound", counterparty_id=store)
    assert (await client.post(f"/orgs/{store}/deactivate", headers=admin)).status_code == 200
    assert_error(await confirm(client, agent, draft), 409, "org_inactive")
    again = await client.post(
        "/documents", headers=agent, json={"kind": "outbound", "counterparty_id": store}
    )
    assert_error(again, 409, "org_inactive")
    # a store of an inactive agent: nobody there can sign in either
    other_agent = await org("agent", demo["BRAND-LUMI"])
    under = await org("store", other_agent)
    assert (await client.post(f"/orgs/{other_agent}/deactivate", headers=admin)).status_code == 200
    below = await client.post(
        "/documents", headers=clerk, json={"kind": "outbound", "counterparty_id": under}
    )
    assert_error(below, 409, "org_inactive")
    # active again: the draft goes on to its own checks (it holds nothing)
    assert (await client.post(f"/orgs/{store}/activate", headers=admin)).status_code == 200
    assert_error(await confirm(client, agent, draft), 422, "empty_document")


async def _store_of_its_own(
    client: Any, login: Any, app: Any, demo: Any
) -> tuple[int, list[str], str]:
    """A new store under AGENT-ZJ holding 3 units its agent received for it: (store, the units,
    a tag)."""
    admin, clerk, zj = await login("admin"), await login("clerk"), await login("agent_admin")
    tag = secrets.token_hex(3).upper()
    made = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "store",
            "name": f"Ending store {tag}",
            "erp_code": f"END-store-{tag}",
            "parent_id": demo["AGENT-ZJ"],
        },
    )
    assert made.status_code == 201, made.text
    store = int(made.json()["id"])
    goods = await pack(client, login, app, demo, 1)
    units = goods["units"]
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    ship = await document(client, clerk, units[:3], kind="outbound", counterparty_id=store)
    assert (await confirm(client, clerk, ship)).status_code == 200
    received = await document(client, zj, kind="inbound", org_id=store, shipment_id=ship["id"])
    assert (await confirm(client, zj, received)).status_code == 200
    return store, units[:3], tag


async def test_no_sale_is_recorded_at_a_deactivated_store(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a store closed (deactivated by the brand) with units still on its shelf; its
    agent, acting for it (``POST /sales`` with ``org_id``), still recorded a sale there (201),
    putting a closed store back in the sales ranking, though nothing can be shipped to it any
    more. Now 409 ``org_inactive``, as a shipment to it is; a re-send of a sale it made while
    open is still answered with that sale."""
    store, units, tag = await _store_of_its_own(client, login, app, demo)
    admin, zj = await login("admin"), await login("agent_admin")
    first = {"codes": units[:1], "org_id": store, "client_id": f"end-{tag}"}
    sold = await client.post("/sales", headers=zj, json=first)
    assert sold.status_code == 201, sold.text  # open: it sells
    off = await client.post(f"/orgs/{store}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    after = await client.post("/sales", headers=zj, json={"codes": units[1:2], "org_id": store})
    assert_error(after, 409, "org_inactive")
    again = await client.post("/sales", headers=zj, json=first)  # its answer lost: a retry
    assert again.status_code == 200 and again.json()["id"] == sold.json()["id"], again.text


async def test_a_sale_queued_offline_is_dated_by_the_phone_not_by_its_upload(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a store's clerk sold units on Saturday with the staff app offline; the sale
    reached the server on Monday and was dated Monday — the sales analytics (by sale day) put
    it on the wrong day, or month. The phone's ``client_at`` dates it: never before the units'
    receipt, never after the server's clock; a time out of the offline rule is 400."""
    store, units, tag = await _store_of_its_own(client, login, app, demo)
    zj = await login("agent_admin")
    now = datetime.now(UTC)
    receipt_at, saturday = now - timedelta(days=3), now - timedelta(days=2)
    code_ids = [(b << 32) | i for b, i, _ in map(app.state.scheme.verify, units)]
    async with app.state.pool.connection() as pg:  # the goods came in three days ago
        await pg.execute(
            "UPDATE events SET event_time = %s WHERE id IN "
            "(SELECT last_event_id FROM unit_state WHERE code = ANY(%s))",
            (receipt_at, code_ids),
        )
    body = {"codes": units[:1], "org_id": store, "client_id": f"off-{tag}"}
    sold = await client.post("/sales", headers=zj, json={**body, "client_at": saturday.isoformat()})
    assert sold.status_code == 201, sold.text
    doc = sold.json()
    assert datetime.fromisoformat(doc["client_at"]) == saturday
    assert doc["doc_date"] == str(saturday.astimezone(localtime.ZONE).date())
    async with app.state.pool.connection() as pg:
        row = await (
            await pg.execute(
                """SELECT u.sold_at, e.event_time, e.record_time FROM unit_state u
                   JOIN events e ON e.id = u.last_event_id WHERE u.code = %s""",
                (code_ids[0],),
            )
        ).fetchone()
    assert (row["sold_at"], row["event_time"]) == (saturday, saturday)
    assert row["record_time"] >= now  # EPCIS: recorded when it arrived
    # its answer lost, the queue sends it again: the same sale
    again = await client.post(
        "/sales", headers=zj, json={**body, "client_at": saturday.isoformat()}
    )
    assert again.status_code == 200 and again.json()["id"] == doc["id"], again.text

    # a phone whose clock ran days behind: not before the goods' receipt
    early = now - timedelta(days=5)
    behind = await client.post(
        "/sales",
        headers=zj,
        json={"codes": units[1:2], "org_id": store, "client_at": early.isoformat()},
    )
    assert behind.status_code == 201, behind.text
    async with app.state.pool.connection() as pg:
        found = await pg.execute("SELECT sold_at FROM unit_state WHERE code = %s", (code_ids[1],))
        assert (await found.fetchone())["sold_at"] == receipt_at
    for bad in (now + timedelta(hours=1), now - timedelta(days=31), "2026-12-01T10:00:00"):
        at = bad if isinstance(bad, str) else bad.isoformat()
        refused = await client.post(
            "/sales", headers=zj, json={"codes": units[2:3], "org_id": store, "client_at": at}
        )
        assert_error(refused, 400, "invalid_client_at")
    assert (await state_of(conn, app, units[2]))["status"] != "sold"  # nothing recorded


async def test_a_deactivated_store_takes_no_consumer_return(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a store closed (deactivated by the brand) after a sale there; its agent, acting
    for it, still took a consumer's return there (``POST /returns``, 200): the unit back in the
    stock of a store nothing can be shipped to nor sold at. Now 409 ``org_inactive``, as a sale
    there is, and the unit stays sold."""
    store, units, _ = await _store_of_its_own(client, login, app, demo)
    admin, zj = await login("admin"), await login("agent_admin")
    sold = await client.post("/sales", headers=zj, json={"codes": units[:1], "org_id": store})
    assert sold.status_code == 201, sold.text
    off = await client.post(f"/orgs/{store}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    back = await client.post("/returns", headers=zj, json={"code": units[0], "reason": "other"})
    assert assert_error(back, 409, "org_inactive")["details"] == {"org_id": store}
    assert (await state_of(conn, app, units[0]))["status"] == "sold"


async def test_a_sale_and_a_return_at_a_till_s_api_key_name_its_maker(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a store's till (an API key the agent's administrator made for the store,
    ``logistics.scan``) sold a unit and took it back from the consumer: the sale's
    ``handler_id`` was null, and so was the ``recorded_by`` of the selling and the return
    events — a sale and a return by nobody, where a document drafted through a key names its
    maker. They name the person behind the key now (``Principal.person``)."""
    store, units, _ = await _store_of_its_own(client, login, app, demo)
    zj = await login("agent_admin")
    till = await key_of(client, zj, ["logistics.scan", "orgs.read"], store)
    sold = await client.post("/sales", headers=till, json={"codes": units[:1]})
    assert sold.status_code == 201, sold.text
    back = await client.post("/returns", headers=till, json={"code": units[0], "reason": "other"})
    assert back.status_code == 200, back.text
    batch_no, index, _ = app.state.scheme.verify(units[0])
    events = await (
        await conn.execute(
            """SELECT e.biz_step, e.recorded_by FROM events e JOIN event_codes c
                 ON c.event_id = e.id AND c.kind = 'u' AND c.code = %s
                ORDER BY e.id DESC LIMIT 2""",
            ((batch_no << 32) | index,),
        )
    ).fetchall()
    await conn.commit()
    maker = (await client.get("/auth/me", headers=zj)).json()["user_id"]
    assert sold.json()["handler_id"] == maker, sold.json()
    assert [(e["biz_step"], e["recorded_by"]) for e in events] == [
        ("receiving", maker),  # the consumer's return, after the sale
        ("retail_selling", maker),
    ], events


async def test_a_sale_waiting_for_its_units_as_its_store_closes_is_refused(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: the agent recorded a sale at its store (``POST /sales`` with ``org_id``) while
    another transaction held the unit; the brand closed the store meanwhile (200, committed),
    and the sale, which checked the store before it waited for the unit and never again, was
    201 — recorded at the closed store after its closing. The store's line is checked again,
    and held, once the units are locked: 409 ``org_inactive``, and the unit stays on the
    shelf."""
    store, units, _ = await _store_of_its_own(client, login, app, demo)
    admin, zj = await login("admin"), await login("agent_admin")
    batch_no, index, _ = app.state.scheme.verify(units[0])
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute(
            "SELECT 1 FROM unit_state WHERE code = %s FOR UPDATE", ((batch_no << 32) | index,)
        )
        selling = asyncio.ensure_future(
            client.post("/sales", headers=zj, json={"codes": units[:1], "org_id": store})
        )
        assert await lock_waiters(watch, 1), "the sale waits for the held unit"
        off = await client.post(f"/orgs/{store}/deactivate", headers=admin)
        assert off.status_code == 200, off.text
        await holder.commit()
        sold = await asyncio.wait_for(selling, 30)
    assert assert_error(sold, 409, "org_inactive")["details"] == {"org_id": store}
    assert (await state_of(conn, app, units[0]))["status"] == "active"


async def test_a_shipment_waiting_for_its_goods_as_its_receiver_closes_is_refused(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: the factory's clerk confirmed an outbound to an agent while another
    transaction held the case; the brand deactivated the agent meanwhile (200, committed), and
    the confirmation, which checked the receiver before it waited for the goods, shipped them
    (200: in transit to an agent where nobody can sign in to receive them, nor can the sender
    recall them — probe U). The receiver's line is checked again, and held, once the goods are
    locked: 409 ``org_inactive``, nothing shipped."""
    goods = await pack(client, login, app, demo, 1)
    admin, clerk = await login("admin"), await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    agent = await new_org(client, admin, "agent", demo["BRAND-LUMI"])
    draft = await document(
        client, clerk, goods["cases"], kind="outbound", counterparty_id=agent["id"]
    )
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute(
            "SELECT 1 FROM case_state WHERE sscc = %s FOR UPDATE", (int(goods["cases"][0]),)
        )
        shipping = asyncio.ensure_future(confirm(client, clerk, draft))
        assert await lock_waiters(watch, 1), "the confirmation waits for the held case"
        off = await client.post(f"/orgs/{agent['id']}/deactivate", headers=admin)
        assert off.status_code == 200, off.text
        await holder.commit()
        shipped = await asyncio.wait_for(shipping, 30)
    assert assert_error(shipped, 409, "org_inactive")["details"] == {"org_id": agent["id"]}
    assert (await state_of(conn, app, goods["units"][0]))["transit_to"] is None


async def test_a_shipment_confirmed_as_its_receivers_deactivation_is_under_way_waits_for_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """The receiver's deactivation under way (its row changed, not yet committed: here held up
    clearing the supervisor of a rep its supervisor supervised) when the confirmation, its goods
    locked, checks the receiver: the confirmation waits for it (the receiver's line is held
    ``FOR SHARE``, not only read again) and is then refused, 409 ``org_inactive``; the
    deactivation, which takes no goods' rows, goes through (no deadlock)."""
    goods = await pack(client, login, app, demo, 1)
    admin, clerk = await login("admin"), await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    agent = await new_org(client, admin, "agent", demo["BRAND-LUMI"])
    rep_id, _ = await _user(client, admin, demo["BRAND-LUMI"], ["field_rep"])
    boss_id, _ = await _user(client, admin, agent["id"], ["field_supervisor"])
    named = await client.put(
        f"/field/reps/{rep_id}/supervisor", headers=admin, json={"supervisor_id": boss_id}
    )
    assert named.status_code == 200, named.text
    draft = await document(
        client, clerk, goods["cases"], kind="outbound", counterparty_id=agent["id"]
    )
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        # the rep's row: the deactivation waits for it after its UPDATE of the agent's row
        await holder.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (rep_id,))
        closing = asyncio.ensure_future(
            client.post(f"/orgs/{agent['id']}/deactivate", headers=admin)
        )
        assert await lock_waiters(watch, 1), "the deactivation waits for the rep's row"
        shipping = asyncio.ensure_future(confirm(client, clerk, draft))
        assert await lock_waiters(watch, 2), "the confirmation waits for the deactivation"
        await holder.commit()
        off, shipped = await asyncio.wait_for(asyncio.gather(closing, shipping), 30)
    assert off.status_code == 200, off.text
    assert assert_error(shipped, 409, "org_inactive")["details"] == {"org_id": agent["id"]}
    assert (await state_of(conn, app, goods["units"][0]))["transit_to"] is None


async def test_a_pallet_and_a_case_of_it_scanned_together_are_one_package(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: the pallet and one of its cases named in one document counted two packages,
    and its event named the case beside its pallet."""
    goods = await palletised(client, login, app, demo)
    clerk = await login("clerk")
    order_id = await sales_order(client, login, demo, goods["product_id"], 20)
    ship = await document(
        client, clerk, [goods["pallet"], goods["cases"][0]], kind="outbound", order_id=order_id
    )
    confirmed = await confirm(client, clerk, ship)
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["units"], confirmed.json()["packages"]) == (20, 1)
    assert [line["packages"] for line in confirmed.json()["lines"]] == [1]
    named = await (
        await conn.execute(
            """SELECT code FROM event_codes WHERE kind = 'c'
                 AND event_id = (SELECT event_id FROM documents WHERE id = %s)""",
            (ship["id"],),
        )
    ).fetchall()
    await conn.commit()
    assert [row["code"] for row in named] == [int(goods["pallet"])]


async def _received(
    client: Any, sender: Any, receiver: Any, codes: list[str], to: int
) -> dict[str, Any]:
    """Shipped and received whole: the outbound."""
    shipped = await document(client, sender, codes, kind="outbound", counterparty_id=to)
    assert (await confirm(client, sender, shipped)).status_code == 200
    received = await document(client, receiver, kind="inbound", shipment_id=shipped["id"])
    assert (await confirm(client, receiver, received)).status_code == 200
    return shipped


async def _org(client: Any, admin: Any, kind: str, parent: int, tag: str) -> int:
    made = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": kind, "name": f"{kind} {tag}", "erp_code": f"DT-{kind[:3]}-{tag}",
              "parent_id": parent, "province_code": "330000", "province_name": "浙江省"},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


@pytest.fixture
async def deep_tree(client: Any, login: Any, demo: Any) -> dict[str, Any]:
    """A channel deeper than brand → agent → store: brand → BR (a branch, 分公司) → A1, A2
    (agents); A1 → D1 (a distributor) → S1 (a store); A2 → S2 (a store). Warehouse clerks at
    BR, A1, A2 and D1 (``<org>_clerk``), store clerks at S1 and S2."""
    admin = await login("admin")
    tree: dict[str, Any] = {}
    tag = secrets.token_hex(3).upper()
    tree["BR"] = await _org(client, admin, "branch", demo["BRAND-LUMI"], tag + "B")
    for name, kind, parent in (
        ("A1", "agent", "BR"), ("A2", "agent", "BR"), ("D1", "distributor", "A1"),
        ("S1", "store", "D1"), ("S2", "store", "A2"),
    ):  # fmt: skip
        tree[name] = await _org(client, admin, kind, tree[parent], tag + name[-1])
    for org in ("BR", "A1", "A2", "D1", "S1", "S2"):
        role = "store_clerk" if org.startswith("S") else "warehouse_clerk"
        _, tree[f"{org}_clerk"] = await _user(client, admin, tree[org], [role])
    return tree


@pytest.fixture
async def via_branch(
    client: Any, login: Any, app: Any, demo: Any, deep_tree: dict[str, Any]
) -> dict[str, Any]:
    """3 cases of ``pack`` in the deep tree: factory → BR → A1 (cases 0 and 1), A1 → D1 → S1
    (case 0); case 2 stays at the factory warehouse."""
    goods = await pack(client, login, app, demo, 3)
    clerk, tree = await login("clerk"), deep_tree
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    cases = goods["cases"]
    await _received(client, clerk, tree["BR_clerk"], cases[:2], tree["BR"])
    await _received(client, tree["BR_clerk"], tree["A1_clerk"], cases[:2], tree["A1"])
    await _received(client, tree["A1_clerk"], tree["D1_clerk"], cases[:1], tree["D1"])
    await _received(client, tree["D1_clerk"], tree["S1_clerk"], cases[:1], tree["S1"])
    return goods


async def test_a_branch_reallocating_an_agents_returned_goods_designates_the_other_agent(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, deep_tree: dict[str, Any]
) -> None:
    """A probe: the factory ships a case to agent A1 (under branch BR); A1 returns it to its
    branch, which reallocates it to its other agent A2 (分公司调货), and A2 ships it to its store
    S2. The branch's outbound kept A1 as the units' channel (``movements.move_state`` kept the
    first designation for any sender in the channel, a branch too), so at S2 the inspection
    called the unit ``diverted``, blaming A1 (a diversion alert for it), and S2's clerk was
    refused the rebate ``wrong_agent``. A branch is the brand's side of the channel: its
    outbound designates anew, as one from the brand's own stock — A2 is the channel, the unit
    is in channel at S2 (shipped to A2) and the rebate is paid."""
    from tests.rebates_support import rebate_body, set_rebate  # it imports this module

    tree, clerk = deep_tree, await login("clerk")
    goods = await pack(client, login, app, demo, 1)
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    await _received(client, clerk, tree["A1_clerk"], goods["cases"], tree["A1"])
    back = await document(
        client, tree["A1_clerk"], goods["cases"], kind="return", counterparty_id=tree["BR"]
    )
    assert (await confirm(client, tree["A1_clerk"], back)).status_code == 200
    got = await document(client, tree["BR_clerk"], kind="inbound", shipment_id=back["id"])
    assert (await confirm(client, tree["BR_clerk"], got)).status_code == 200
    assert (await state_of(conn, app, goods["units"][0]))["channel_org_id"] == tree["A1"]
    await _received(client, tree["BR_clerk"], tree["A2_clerk"], goods["cases"], tree["A2"])
    await _received(client, tree["A2_clerk"], tree["S2_clerk"], goods["cases"], tree["S2"])
    assert (await state_of(conn, app, goods["units"][0]))["channel_org_id"] == tree["A2"]
    found = await client.post(
        "/inspections",
        headers=await login("inspector"),
        json={
            "code": goods["units"][0],
            "gps": {"lat": 30.26, "lng": 120.13},
            "store_id": tree["S2"],
        },
    )
    assert found.status_code == 201, found.text
    item = found.json()["items"][0]
    assert (item["result"], item["shipped_to"]["id"]) == ("in_channel", tree["A2"]), item
    await set_rebate(client, await login("admin"), goods["product_id"], 5, tree["A2"])
    claim = await client.post(
        "/rebates/claims",
        headers=tree["S2_clerk"],
        json=rebate_body(app.state.scheme, goods["units"][1]),
    )
    assert claim.status_code == 201, claim.text


async def test_a_trace_shows_a_case_s_history_only_from_when_the_unit_went_in(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Probes: a packing scan dated before the case's shipments (an offline scanner's clock)
    gave the unit the case's earlier history — and its trace to an agent that never had the
    unit; and a case's trace listed what another organisation packed into it since to anyone
    who once held the case."""
    from datetime import UTC, datetime

    goods = await pack(client, login, app, demo, 2)
    units, cases = goods["units"], goods["cases"]
    clerk, zj, gd = await login("clerk"), await login("agent_admin"), await login("gd_admin")
    inbound = await document(client, clerk, cases, kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    await _received(client, clerk, zj, [cases[0]], demo["AGENT-ZJ"])
    await _received(client, zj, gd, [cases[0]], demo["AGENT-GD"])
    await _received(client, clerk, gd, units[10:12], demo["AGENT-GD"])
    assert (await client.get(f"/trace/{units[10]}", headers=zj)).status_code == 404
    context = {"product_id": goods["product_id"], "lot": "LOG1", "production_date": "2026-11-10"}
    assert (await client.put("/lines/GDT/context", headers=gd, json=context)).status_code == 200
    late = [  # packed now, as the scanner's clock says: three weeks ago
        {"id": f"bd-{units[10]}", "code": units[10], "at": "2026-11-11T08:00:00Z"},
        {"id": f"bd-c-{units[10]}", "code": cases[0], "at": "2026-11-11T08:00:01Z"},
    ]
    up = await client.post("/lines/GDT/scans", headers=gd, json={"scans": late})
    assert up.status_code == 200 and up.json()["rejected"] == 0, up.text
    assert (await client.get(f"/trace/{units[10]}", headers=zj)).status_code == 404
    traced = (await client.get(f"/trace/{units[10]}", headers=await login("admin"))).json()
    shipped = [e for e in traced["events"] if e["biz_step"] == "shipping"]
    assert [e["destination"]["id"] for e in shipped] == [demo["AGENT-GD"]], shipped
    assert [c["code"] for c in traced["containers"]] == [cases[1], cases[0]]  # packed, repacked
    now = datetime.now(UTC).isoformat()
    more = [{"id": f"nw-{units[11]}", "code": units[11], "at": now}]
    more.append({"id": f"nw-c-{units[11]}", "code": cases[0], "at": now})
    assert (
        await client.post("/lines/GDT/scans", headers=gd, json={"scans": more})
    ).status_code == 200
    held = (await client.get(f"/trace/{cases[0]}", headers=gd)).json()
    assert {units[10], units[11]} <= {c["code"] for c in held["contents"]}
    former = await client.get(f"/trace/{cases[0]}", headers=zj)
    assert former.status_code == 200 and former.json()["contents"] == []


async def test_a_back_dated_packing_scan_does_not_widen_a_trace_to_the_history_before(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: goods went factory → WH-SZ-01 → AGENT-GD, whose trace of a unit starts at the
    shipment to it. The agent repacked the units into a case of its own, its scanner dating
    the scans 2001-01-01 (accepted: only before 2000 or over a day ahead is ``bad_time``); that
    packing became the oldest event, and the trace, scoped from the first event the agent took
    part in by event time, then showed it the commissioning, the factory's packing and the
    warehouse's receipt. The first event of the caller's part is the first in record order."""
    goods = await pack(client, login, app, demo, 1)
    units, [first_case] = goods["units"], goods["cases"]
    operator = await login("operator")  # repacked at the factory: a stay over before it shipped
    unpacked = await client.post(
        "/packing/unpack", headers=operator, json={"parent": first_case, "reason": "repack"}
    )
    assert unpacked.status_code == 200, unpacked.text
    [case] = await issue_cases(client, login, demo, "inner", 1)
    repack = [
        {"id": f"rp-{next(_ids)}", "code": code, "at": "2026-11-10T09:00:00Z"}
        for code in [*units, case]
    ]
    up = await client.post("/lines/L9/scans", headers=operator, json={"scans": repack})
    assert up.status_code == 200 and up.json()["rejected"] == 0, up.text
    clerk, gd = await login("clerk"), await login("gd_admin")
    inbound = await document(client, clerk, [case], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    await _received(client, clerk, gd, [case], demo["AGENT-GD"])
    before = (await client.get(f"/trace/{units[0]}", headers=gd)).json()
    assert [e["biz_step"] for e in before["events"]] == ["shipping", "receiving"], before
    unpacked = await client.post(
        "/packing/unpack", headers=gd, json={"parent": case, "reason": "repack"}
    )
    assert unpacked.status_code == 200, unpacked.text
    [own] = await issue_cases(client, login, demo, "inner", 1)
    context = {"product_id": goods["product_id"], "lot": "LOG1", "production_date": "2026-11-10"}
    assert (await client.put("/lines/GDT/context", headers=gd, json=context)).status_code == 200
    at = "2001-01-01T00:00:00Z"
    scans = [{"id": f"bk-{next(_ids)}", "code": code, "at": at} for code in [*units, own]]
    up = await client.post("/lines/GDT/scans", headers=gd, json={"scans": scans})
    assert up.status_code == 200 and up.json()["rejected"] == 0, up.text
    after = (await client.get(f"/trace/{units[0]}", headers=gd)).json()
    steps = [e["biz_step"] for e in after["events"]]
    assert steps == ["packing", "shipping", "receiving", "unpacking"], after["events"]
    assert after["events"][0]["location"]["id"] == demo["AGENT-GD"]  # its own, back-dated
    # nor the container stays ended before its part: the factory's first case is not shown
    assert [c["code"] for c in after["containers"]] == [case, own], after["containers"]
    whole = (await client.get(f"/trace/{units[0]}", headers=await login("admin"))).json()
    assert first_case in [c["code"] for c in whole["containers"]]
    assert [e["biz_step"] for e in whole["events"]][:2] == ["packing", "commissioning"]


async def test_a_relabelled_unit_s_trace_has_the_history_of_the_codes_it_replaced(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """L11 after P5. A probe: a unit relabelled loose at its agent, then shipped on to a store,
    had in its trace the agent's shipment but not the factory's outbound that brought it there
    (its untouched sibling's had it), though its state says shipped. The trace follows the
    replacements back (a relabel of a relabel too): each replaced code's events (``via`` its
    serial) and its containers' while it was in them (the stay names it, ``inside``) — as the
    caller may see them: the store, from the shipment to it on, as for the sibling."""
    goods = await pack(client, login, app, demo, 1)
    units, [case] = goods["units"], goods["cases"]
    clerk, zj, store = await login("clerk"), await login("agent_admin"), await login("store_clerk")
    inbound = await document(client, clerk, [case], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    await _received(client, clerk, zj, [case], demo["AGENT-ZJ"])
    unpacked = await client.post(
        "/packing/unpack", headers=zj, json={"parent": case, "reason": "pick"}
    )
    assert unpacked.status_code == 200, unpacked.text
    batch_no, _ = await issue_units(client, login, demo, 2)
    first, new = (app.state.scheme.serial(batch_no, i) for i in range(2))
    admin = await login("admin")
    for old, code in ((units[0], first), (first, new)):  # relabelled, then again
        body = {"old": old, "new": code, "reason": "torn label"}
        assert (await client.post("/packing/replace", headers=admin, json=body)).status_code == 200
    await _received(client, zj, store, [new, units[1]], demo["STORE-HZ-01"])

    async def traced(code: str, headers: Any) -> dict[str, Any]:
        answer = await client.get(f"/trace/{code}", headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def moves(trace: dict[str, Any]) -> list[tuple[str, int]]:
        steps = ("shipping", "receiving")
        return [
            (e["biz_step"], e["location"]["id"]) for e in trace["events"] if e["biz_step"] in steps
        ]

    whole, sibling = await traced(new, admin), await traced(units[1], admin)
    assert moves(whole) == moves(sibling), (moves(whole), moves(sibling))
    shipped = [
        (e["destination"]["id"], e["via"]) for e in whole["events"] if e["biz_step"] == "shipping"
    ]
    assert shipped == [(demo["AGENT-ZJ"], case), (demo["STORE-HZ-01"], None)], shipped
    lives = [(e["via"], e["biz_step"]) for e in whole["events"] if "commissioning" in e["biz_step"]]
    assert lives == [
        (units[0], "commissioning"),
        (units[0], "decommissioning"),
        (first, "commissioning"),
        (first, "decommissioning"),
        (None, "commissioning"),
    ], lives
    assert [(c["code"], c["inside"]) for c in whole["containers"]] == [(case, units[0])]
    for headers in (zj, store):  # each sees of it what it sees of its sibling
        mine, theirs = await traced(new, headers), await traced(units[1], headers)
        assert moves(mine) == moves(theirs), (moves(mine), moves(theirs))
        assert len(mine["containers"]) == len(theirs["containers"]), mine["containers"]
    assert all(e["via"] is None for e in (await traced(new, store))["events"])


async def test_a_case_of_a_voided_case_batch_is_still_traced(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the brand admin traced the SSCC of a case packed and emptied, after the planner
    voided its case batch: a 500 (``read_codes`` answered ``case_void`` without the case batch,
    and the trace looked up case batch 0). A void case's history is traced, as a void unit's."""
    goods = await pack(client, login, app, demo, 1)
    [case] = goods["cases"]
    admin, operator = await login("admin"), await login("operator")
    batch_id = (await client.get(f"/trace/{case}", headers=admin)).json()["batch"]["case_batch_id"]
    unpacked = await client.post(
        "/packing/unpack", headers=operator, json={"parent": case, "reason": "relabel"}
    )
    assert unpacked.status_code == 200, unpacked.text
    voided = await client.post(
        f"/case-batches/{batch_id}/void", headers=await login("planner"), json={"reason": "stolen"}
    )
    assert voided.status_code == 200, voided.text
    traced = await client.get(f"/trace/{case}", headers=admin)
    assert traced.status_code == 200, traced.text
    body = traced.json()
    assert (body["batch"]["case_batch_id"], body["batch"]["level"]) == (batch_id, "inner")
    assert [e["biz_step"] for e in body["events"]][-1] == "unpacking", body["events"]


async def test_a_unit_added_to_a_case_already_on_a_pallet_travels_in_the_pallet(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the line packed a case onto a pallet, then closed the case again over one more
    unit (a case takes more units of its product and lot wherever it sits); the pallet was
    received and shipped to AGENT-ZJ. The late unit's trace had neither the pallet nor the
    shipment, and AGENT-ZJ, to which it was on its way, got a 200 trace with no event at all:
    the trace followed only the containers its case entered *during* the unit's stay, not the
    one the case was already in. The pallet's stay, for the unit, starts at its packing."""
    goods = await pack(client, login, app, demo, 1)
    [case] = goods["cases"]
    [pallet] = await issue_cases(client, login, demo, "pallet", 1)
    batch_no, _ = await issue_units(client, login, demo, 1)
    late = app.state.scheme.serial(batch_no, 0)
    at = "2026-11-10T09:00:00Z", "2026-11-10T09:05:00Z"
    scans = [
        {"id": f"lp{next(_ids)}", "code": pallet, "at": at[0], "children": [case]},
        {"id": f"lp{next(_ids)}", "code": late, "at": at[1]},
        {"id": f"lp{next(_ids)}", "code": case, "at": at[1], "children": [late]},
    ]
    operator, clerk = await login("operator"), await login("clerk")
    up = await client.post("/lines/L9/scans", headers=operator, json={"scans": scans})
    assert up.status_code == 200 and up.json()["rejected"] == 0, up.text
    inbound = await document(client, clerk, [pallet], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    out = await document(client, clerk, [pallet], kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    assert (await confirm(client, clerk, out)).status_code == 200
    whole = (await client.get(f"/trace/{late}", headers=await login("admin"))).json()
    assert whole["state"]["parent"] == case
    stays = [(c["code"], c["inside"], c["added_at"]) for c in whole["containers"]]
    assert stays == [(case, late, "2026-11-10T09:05:00Z"), (pallet, case, "2026-11-10T09:05:00Z")]
    # the pallet's history from the unit's packing on: not the packing of the case onto it
    steps = [(e["biz_step"], e["via"]) for e in whole["events"]]
    assert steps == [
        ("commissioning", None),
        ("packing", None),
        ("receiving", pallet),
        ("shipping", pallet),
    ], steps
    agent = (await client.get(f"/trace/{late}", headers=await login("agent_admin"))).json()
    assert [e["biz_step"] for e in agent["events"]] == ["shipping"], agent["events"]
    assert pallet in [c["code"] for c in agent["containers"]]


async def _pallet_in_the_warehouse(
    client: Any, login: Any, app: Any, demo: Any
) -> tuple[str, list[str]]:
    """A pallet of two inner cases of three units each, taken into the factory warehouse."""
    batch_no, product_id = await issue_units(client, login, demo, 6)
    inner = await issue_cases(client, login, demo, "inner", 2)
    (pallet,) = await issue_cases(client, login, demo, "pallet", 1)
    units = [app.state.scheme.serial(batch_no, i) for i in range(6)]
    operator = await login("operator")
    context = {"product_id": product_id, "lot": "TRK", "production_date": "2026-11-10"}
    assert (await client.put("/lines/TRK/context", headers=operator, json=context)).is_success
    scans = [{"id": f"trk-{u}", "code": u, "at": "2026-11-10T08:00:00Z"} for u in units]
    scans.insert(3, {"id": f"trk-{inner[0]}", "code": inner[0], "at": "2026-11-10T08:00:00Z"})
    scans.append({"id": f"trk-{inner[1]}", "code": inner[1], "at": "2026-11-10T08:00:00Z"})
    scans.append(
        {"id": f"trk-{pallet}", "code": pallet, "at": "2026-11-10T08:00:00Z", "children": inner}
    )
    uploaded = await client.post("/lines/TRK/scans", headers=operator, json={"scans": scans})
    assert uploaded.status_code == 200 and uploaded.json()["rejected"] == 0, uploaded.text
    clerk = await login("clerk")
    inbound = await document(client, clerk, [pallet], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    return pallet, inner


async def test_a_draft_counts_packages_and_gives_codes_back_before_it_ships(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Two probes (a truck of 2,000 cases): a draft counted a case inside a pallet it held too
    as a package of its own (2,008 against the confirm's 1,908), and a draft holding a case
    that could no longer ship (confirmed on another document meanwhile) could only be
    cancelled and scanned again."""
    pallet, inner = await _pallet_in_the_warehouse(client, login, app, demo)
    clerk = await login("clerk")
    big = await document(
        client, clerk, [pallet, *inner], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    summary = (await client.get(f"/documents/{big['id']}/summary", headers=clerk)).json()
    assert (summary["cases"], summary["units"]) == (1, 6)
    other = await document(
        client, clerk, [inner[1]], kind="outbound", counterparty_id=demo["AGENT-GD"]
    )
    # the pallet taken off the big draft, the inner cases stay: two packages now
    gone = await client.post(
        f"/documents/{big['id']}/codes/remove", headers=clerk, json={"codes": [pallet, pallet]}
    )
    assert gone.status_code == 200, gone.text
    assert gone.json() == {
        "removed": 1,
        "items": [
            {"code": pallet, "result": "removed", "kind": "case"},
            {"code": pallet, "result": "not_on_document", "kind": "case"},
        ],
    }
    summary = (await client.get(f"/documents/{big['id']}/summary", headers=clerk)).json()
    assert (summary["cases"], summary["units"]) == (2, 6)
    assert (await confirm(client, clerk, other)).status_code == 200
    refused = await confirm(client, clerk, big)
    assert_error(refused, 409, "not_held")
    taken = await client.post(
        f"/documents/{big['id']}/codes/remove",
        headers=clerk,
        json={"codes": [inner[1], "NOT-A-CODE"]},
    )
    assert [i["result"] for i in taken.json()["items"]] == ["removed", "rejected"], taken.text
    shipped = await confirm(client, clerk, big)
    assert shipped.status_code == 200 and shipped.json()["units"] == 3, shipped.text
    after = (await client.get(f"/documents/{big['id']}/summary", headers=clerk)).json()
    assert (after["cases"], after["units"]) == (1, 3)
    # a confirmed document is no draft: nothing comes off it
    assert_error(
        await client.post(
            f"/documents/{big['id']}/codes/remove", headers=clerk, json={"codes": [inner[0]]}
        ),
        409,
        "not_draft",
    )


async def test_a_cancelled_draft_is_audited_as_it_was_and_as_it_is(
    client: Any, login: Any, demo: Any
) -> None:
    """README: every change writes an audit row with before/after (a probe: a draft's
    cancellation was recorded with neither — which draft, of what kind, to whom, was thrown
    away could not be told — while confirm, approve and reject record the document)."""
    clerk = await login("clerk")
    draft = await document(client, clerk, kind="outbound", counterparty_id=demo["AGENT-GD"])
    cancelled = await client.post(f"/documents/{draft['id']}/cancel", headers=clerk)
    assert cancelled.status_code == 200, cancelled.text
    rows = await client.get(
        "/audit",
        headers=await login("admin"),
        params={"entity": "document", "entity_id": draft["doc_no"], "action": "cancel"},
    )
    assert rows.status_code == 200, rows.text
    (row,) = rows.json()["items"]
    assert row["before"] == {**cancelled.json(), "status": "draft"}
    assert row["after"] == cancelled.json() and row["after"]["status"] == "cancelled"
    assert row["before"]["kind"] == "outbound"
    assert row["before"]["counterparty_id"] == demo["AGENT-GD"]


async def test_a_void_code_comes_off_a_draft_and_a_mixed_pallet_is_one_package(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Two probes of the draft's removal and package count: codes of a batch voided after they
    were scanned could not be taken off (rejected ``void``), though the confirm refuses them;
    a pallet of another product's cases counted no package once confirmed (0 against the
    draft's 1)."""
    from tests.helpers import activate

    batch_no, product_b = await issue_units(client, login, demo, 5)
    units = [app.state.scheme.serial(batch_no, i) for i in range(5)]
    await activate(client, login, units[3:], product_b)
    clerk = await login("clerk")
    draft = await document(client, clerk, units[3:], kind="factory_inbound")
    voided = await client.post(
        f"/batches/{batch_no}/void", headers=await login("planner"), json={"reason": "misprint"}
    )
    assert voided.status_code == 200, voided.text
    assert_error(await confirm(client, clerk, draft), 409, "void")
    gone = await client.post(
        f"/documents/{draft['id']}/codes/remove", headers=clerk, json={"codes": units[3:4]}
    )
    assert gone.json()["items"] == [{"code": units[3], "result": "removed", "kind": "unit"}]

    batch_no, product_b = await issue_units(client, login, demo, 2)
    units = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    (inner,) = await issue_cases(client, login, demo, "inner", 1)
    (pallet,) = await issue_cases(client, login, demo, "pallet", 1)
    found = await client.get("/products", headers=await login("planner"), params={"q": "LM-HY-50"})
    product_a = found.json()["items"][0]["id"]
    assert product_a != product_b
    operator, at = await login("operator"), "2026-11-10T08:00:00Z"
    for line, product, scans in (
        ("MX1", product_b, [*units, inner]),
        ("MX2", product_a, [pallet]),
    ):
        context = {"product_id": product, "lot": "MX", "production_date": "2026-11-10"}
        assert (
            await client.put(f"/lines/{line}/context", headers=operator, json=context)
        ).is_success
        body = [
            {"id": f"mx-{c}", "code": c, "at": at, **({"children": [inner]} if c == pallet else {})}
            for c in scans
        ]
        up = await client.post(f"/lines/{line}/scans", headers=operator, json={"scans": body})
        assert up.status_code == 200 and up.json()["rejected"] == 0, up.text
    inbound = await document(client, clerk, [pallet], kind="factory_inbound")
    summary = (await client.get(f"/documents/{inbound['id']}/summary", headers=clerk)).json()
    assert summary["cases"] == 1
    done = await confirm(client, clerk, inbound)
    assert done.status_code == 200 and done.json()["packages"] == 1, done.text
    after = (await client.get(f"/documents/{inbound['id']}/summary", headers=clerk)).json()
    assert (after["cases"], after["units"]) == (1, 2), after


async def test_a_case_of_another_lot_counts_as_a_package_of_its_own_lot_line(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: an outbound of two cases of one product, one of lot A and one of lot B, showed
    lot A: 10 units, 2 packages; lot B: 10 units, 0 packages — on the document's lines, the
    management center's rows and its export — lot B's case counted on lot A's line."""
    from tests.test_hardening_logistics import move
    from tests.test_hardening_logistics import pack as stocked

    lot_a, lot_b = f"PLA{next(_ids)}", f"PLB{next(_ids)}"
    first = await stocked(client, login, app, demo, 1, lot_a)
    second = await stocked(client, login, app, demo, 1, lot_b)
    clerk = await login("clerk")
    shipped = await move(
        client,
        clerk,
        [first.cases[0], second.cases[0]],
        kind="outbound",
        counterparty_id=demo["AGENT-ZJ"],
    )
    assert shipped["packages"] == 2
    lines = {line["lot"]: (line["units"], line["packages"]) for line in shipped["lines"]}
    center = await client.get(
        "/center/documents", headers=clerk, params={"doc_no": shipped["doc_no"]}
    )
    assert center.status_code == 200, center.text
    rows = {row["lot"]: (row["units"], row["packages"]) for row in center.json()["items"]}
    expected = {lot_a: (10, 1), lot_b: (10, 1)}
    assert (lines, rows) == (expected, expected)


async def test_an_exchange_is_for_another_unit_not_a_whole_case(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    """A probe: a consumer returning one unit with ``exchange_for`` naming a case code (SSCC)
    was answered 200, and the whole case of ten was sold in the unit's place."""
    units, cases = route["units"], route["cases"]
    clerk, agent = await login("clerk"), await login("agent_clerk")
    store = await login("store_clerk")
    await _received(client, clerk, agent, cases[:2], demo["AGENT-ZJ"])
    await _received(client, agent, store, cases[:2], demo["STORE-HZ-01"])
    sold = await client.post("/sales", headers=store, json={"codes": [units[0]]})
    assert sold.status_code == 201, sold.text
    whole = {"code": units[0], "reason": "other", "exchange_for": cases[1]}
    assert_error(await client.post("/returns", headers=store, json=whole), 422, "not_a_unit")
    assert (await state_of(conn, app, units[0]))["status"] == "sold"  # not returned either
    assert (await state_of(conn, app, units[10]))["status"] == "active"
    one = {"code": units[0], "reason": "other", "exchange_for": units[10]}
    exchanged = await client.post("/returns", headers=store, json=one)
    assert exchanged.status_code == 200, exchanged.text
    assert (await state_of(conn, app, units[10]))["status"] == "sold"


async def test_an_exchange_names_the_new_unit_by_its_printed_serial(
    client: Any, login: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    """A probe: a consumer's exchange typed at the till in lower case or full-width (a Chinese
    input method) answered ``returned`` with the canonical serial but ``exchanged_for`` — and
    the ``consumer_return`` audit row — with the text as typed (``consumer_return`` echoed
    ``data.exchange_for``): the receipt and the audit named a serial printed on no unit. Both
    name the printed serial."""
    units, cases = route["units"], route["cases"]
    clerk, agent = await login("clerk"), await login("agent_clerk")
    store = await login("store_clerk")
    await _received(client, clerk, agent, cases[:1], demo["AGENT-ZJ"])
    await _received(client, agent, store, cases[:1], demo["STORE-HZ-01"])
    sold = await client.post("/sales", headers=store, json={"codes": [units[0], units[2]]})
    assert sold.status_code == 201, sold.text
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in units[3].lower())
    for code, typed, printed in (
        (units[0], units[1].lower(), units[1]),
        (units[2], full_width, units[3]),
    ):
        body = {"code": code.lower(), "reason": "other", "exchange_for": typed}
        back = await client.post("/returns", headers=store, json=body)
        assert back.status_code == 200, back.text
        assert (back.json()["returned"], back.json()["exchanged_for"]) == (code, printed)
        row = await (
            await conn.execute(
                "SELECT after FROM audit_log WHERE action = 'consumer_return' AND entity_id = %s",
                (code,),
            )
        ).fetchone()
        await conn.commit()
        assert row["after"]["exchange_for"] == printed, row


async def case_state_of(conn: Any, sscc: str) -> dict[str, Any]:
    row = await (
        await conn.execute(
            "SELECT channel_org_id, shipped_at FROM case_state WHERE sscc = %s", (int(sscc),)
        )
    ).fetchone()
    await conn.commit()
    return dict(row)


async def test_a_shipped_case_has_its_units_shipment_and_channel(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: after a case (and the pallet around it) was shipped to an agent, its trace said
    it was never shipped and named no channel, while its units' said both: only the units'
    state rows were set. A case follows its units' rules: shipped once, its channel designated
    out of the brand's own stock and kept when shipped on."""
    goods = await palletised(client, login, app, demo)
    pallet, (first, second), unit = goods["pallet"], goods["cases"], goods["units"][0]
    clerk, agent = await login("clerk"), await login("agent_clerk")
    await _received(client, clerk, agent, [pallet], demo["AGENT-ZJ"])
    admin = await login("admin")
    shown = (await client.get(f"/trace/{unit}", headers=admin)).json()["state"]
    assert shown["shipped_at"] is not None and shown["channel"]["id"] == demo["AGENT-ZJ"]
    for code in (pallet, first):
        trace = await client.get(f"/trace/{code}", headers=admin)
        assert trace.status_code == 200, trace.text
        state = trace.json()["state"]
        assert (state["shipped_at"], state["channel"]) == (shown["shipped_at"], shown["channel"])
    shipped = await case_state_of(conn, second)
    await _received(client, agent, await login("store_clerk"), [second], demo["STORE-HZ-01"])
    assert await case_state_of(conn, second) == shipped  # shipped on: the first of both stays


async def test_a_case_and_a_unit_of_it_shipped_together_are_received_apart(
    client: Any, login: Any, app: Any, demo: Any, route: dict[str, Any]
) -> None:
    """A regression guard (a probe found it held): a case and a unit inside it named in one
    shipment move the unit once; the unit received alone leaves the case, whose other units
    stay on their way until the rest is received, and stock recounts to what was rolled up."""
    from app.logistics.rollup import recount, rollup

    cases, units = route["cases"], route["units"]
    clerk, agent = await login("clerk"), await login("agent_clerk")
    ship = await document(
        client, clerk, [cases[0], units[0], units[17]], kind="outbound",
        counterparty_id=demo["AGENT-ZJ"],
    )  # fmt: skip
    shipped = await confirm(client, clerk, ship)
    assert shipped.status_code == 200, shipped.text
    assert (shipped.json()["units"], shipped.json()["packages"]) == (11, 1)
    alone = await document(client, agent, [units[0]], kind="inbound", shipment_id=ship["id"])
    first = await confirm(client, agent, alone)
    assert first.status_code == 200, first.text
    assert first.json()["units"] == 1
    assert first.json()["discrepancies"]["missing"]["count"] == 10
    rest = await document(client, agent, kind="inbound", shipment_id=ship["id"])
    received = await confirm(client, agent, rest)
    assert received.status_code == 200, received.text
    assert received.json()["units"] == 10
    async with app.state.pool.connection() as conn:
        await rollup(conn)
        assert await recount(conn) == []


async def test_goods_moved_to_another_agents_store_stay_of_their_first_agent(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    """A regression guard (a probe found it held): a case a Zhejiang store ships to a Guangdong
    store is that store's, but its units and the case keep Zhejiang as their channel, so an
    inspection there finds them diverted; its other case at home is in channel."""
    cases, units = route["cases"], route["units"]
    clerk, agent = await login("clerk"), await login("agent_clerk")
    store, gz = await login("store_clerk"), await login("gz_clerk")
    await _received(client, clerk, agent, cases[:2], demo["AGENT-ZJ"])
    await _received(client, agent, store, cases[:2], demo["STORE-HZ-01"])
    await _received(client, store, gz, [cases[0]], demo["STORE-GZ-01"])
    state = await state_of(conn, app, units[0])
    assert (state["holder_org_id"], state["channel_org_id"], state["store_org_id"]) == (
        demo["STORE-GZ-01"], demo["AGENT-ZJ"], demo["STORE-GZ-01"],
    )  # fmt: skip
    assert (await case_state_of(conn, cases[0]))["channel_org_id"] == demo["AGENT-ZJ"]
    inspector, gps = await login("inspector"), {"lat": 23.13, "lng": 113.33}
    for unit, at, verdict in (
        (units[0], "STORE-GZ-01", "diverted"),
        (units[10], "STORE-HZ-01", "in_channel"),
    ):
        seen = await client.post(
            "/inspections", headers=inspector,
            json={"code": unit, "gps": gps, "store_id": demo[at]},
        )  # fmt: skip
        assert seen.status_code == 201, seen.text
        assert seen.json()["items"][0]["result"] == verdict, seen.json()


async def test_exchange_for_pallet_unknown_void_forged(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """An exchange for a pallet, an unknown, void or forged code is a 4xx; the sold unit stays."""
    goods = await palletised(client, login, app, demo)
    clerk, agent, store = (
        await login("clerk"),
        await login("agent_clerk"),
        await login("store_clerk"),
    )
    operator = await login("operator")
    units = goods["units"]
    # a void unit: replaced at the factory before anything ships
    batch_no, _ = await issue_units(client, login, demo, 1)
    fresh = app.state.scheme.serial(batch_no, 0)
    await _received(client, clerk, agent, [goods["pallet"]], demo["AGENT-ZJ"])
    await _received(client, agent, store, [goods["pallet"]], demo["STORE-HZ-01"])
    sold = await client.post("/sales", headers=store, json={"codes": [units[0]]})
    assert sold.status_code == 201, sold.text
    other = await pack(client, login, app, demo, 1)
    replaced = await client.post(
        "/packing/replace",
        headers=operator,
        json={"old": other["units"][0], "new": fresh, "reason": "QC"},
    )
    assert replaced.status_code == 200, replaced.text
    forged = units[1][:-1] + ("A" if units[1][-1] != "A" else "B")
    for bad, status in (
        (goods["pallet"], 422),
        ("ZZZZ", None),
        (other["units"][0], None),
        (forged, None),
        ("00" + "1" * 18, None),
    ):
        answer = await client.post(
            "/returns",
            headers=store,
            json={"code": units[0], "reason": "other", "exchange_for": bad},
        )
        assert 400 <= answer.status_code < 500, (bad, answer.status_code, answer.text)
        assert set(answer.json()) == {"error"}, answer.text
        if status is not None:
            assert answer.status_code == status
        assert (await state_of(conn, app, units[0]))["status"] == "sold", bad


async def test_case_channel_through_return_and_transfers(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A case's channel, as its units': designated anew after a return, kept through a transfer."""
    from app.logistics.rollup import recount, rollup
    from tests.test_rebate_claims import new_clerk  # it imports this module

    goods = await palletised(client, login, app, demo)
    pallet, (first, second), units = goods["pallet"], goods["cases"], goods["units"]
    clerk, agent = await login("clerk"), await login("agent_clerk")
    _, gd = await new_clerk(client, login, demo["AGENT-GD"], ["warehouse_clerk"])
    await _received(client, clerk, agent, [pallet], demo["AGENT-ZJ"])
    shipped_at = (await case_state_of(conn, first))["shipped_at"]
    # ZJ returns the first case upstream; the brand ships it to GD: designated anew
    back = await document(client, agent, [first], kind="return")
    assert (await confirm(client, agent, back)).status_code == 200
    got = await document(client, clerk, kind="inbound", shipment_id=back["id"])
    assert (await confirm(client, clerk, got)).status_code == 200
    assert (await case_state_of(conn, first))["channel_org_id"] == demo["AGENT-ZJ"]
    await _received(client, clerk, gd, [first], demo["AGENT-GD"])
    row, unit = await case_state_of(conn, first), await state_of(conn, app, units[0])
    assert row["channel_org_id"] == unit["channel_org_id"] == demo["AGENT-GD"], (row, unit)
    assert row["shipped_at"] == shipped_at
    # ZJ transfers the second case to GD: the first agent stays, for the case as its units
    await _received(client, agent, gd, [second], demo["AGENT-GD"])
    row, unit = await case_state_of(conn, second), await state_of(conn, app, units[10])
    assert row["channel_org_id"] == unit["channel_org_id"] == demo["AGENT-ZJ"], (row, unit)
    # trace of the case and of a unit, as GD sees them
    for code in (second, units[10], first, units[0]):
        trace = await client.get(f"/trace/{code}", headers=gd)
        assert trace.status_code == 200, (code, trace.text)
        assert trace.json()["state"]["shipped_at"] is not None
    async with app.state.pool.connection() as c:
        await rollup(c)
        assert await recount(c) == []


async def test_an_org_or_counterparty_id_of_zero_names_no_organisation(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``"org_id": 0`` on a document or a sale (``data.org_id or actor.org_id``), and
    ``"counterparty_id": 0`` where the movement has a default counterparty, were read as unset:
    the document was made for the caller's own organisation, or to its parent, where the
    client named something else (an unset form field sent as 0). 0 names no organisation:
    422 ``unknown_org`` as any other such id."""
    clerk, store = await login("clerk"), await login("store_clerk")
    for fields in (
        {"kind": "outbound", "org_id": 0, "counterparty_id": demo["AGENT-GD"]},
        {"kind": "return", "counterparty_id": 0},
        {"kind": "factory_inbound", "counterparty_id": 0},
    ):
        made = await client.post("/documents", headers=clerk, json=fields)
        assert_error(made, 422, "unknown_org")
    sold = await client.post("/sales", headers=store, json={"codes": ["X"], "org_id": 0})
    assert_error(sold, 422, "unknown_org")


async def test_a_return_goes_back_up_the_channel_never_down_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: the factory warehouse sent fresh goods to the Guangdong agent as a ``return``
    (``counterparty_id`` AGENT-GD: goods GD never had, the warehouse never got from it). A
    return designates no channel, so they reached GD undesignated; GD's outbound to the Hangzhou
    store then designated them to that store, in Zhejiang's area, and an inspection there called
    them ``in_channel``: GD's cross-region selling went unseen (goods ZJ had returned, sent on
    so, kept ZJ as their channel). A return goes back up — to an organisation above the sender,
    one that shipped it goods, or from the channel to the brand's own stock —, never down the
    channel (an outbound, which designates): 422 ``bad_org`` at the draft and at its
    confirmation."""
    goods = await pack(client, login, app, demo, 1)
    clerk = await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    down = {"kind": "return", "counterparty_id": demo["AGENT-GD"]}
    assert_error(await client.post("/documents", headers=clerk, json=down), 422, "bad_org")
    # up to the factory above the warehouse: a return; a draft sent down since (made before the
    # rule, say) is refused at its confirmation
    up = await document(
        client, clerk, goods["cases"], kind="return", counterparty_id=demo["FACTORY-SZ"]
    )
    await conn.execute(
        "UPDATE documents SET counterparty_id = %s WHERE id = %s", (demo["AGENT-GD"], up["id"])
    )
    await conn.commit()
    assert_error(await confirm(client, clerk, up), 422, "bad_org")


async def test_an_exception_outbound_approved_by_an_api_key_names_its_approver(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a factory's approval tool (an API key made by the factory administrator,
    holding ``logistics.approve``) approved a warehouse clerk's gift (L4): the goods were given
    away, but the document's ``approved_by`` was null — it no longer said who approved the
    write-off, though its ``handler_id`` and ``submitted_by`` name a key's maker and the
    four-eyes rule judges the key as its maker. ``approved_by`` names the key's maker."""
    from tests.rebates_support import store_goods  # it imports this module

    goods = await store_goods(client, login, app, demo)
    clerk, factory_admin = await login("clerk"), await login("factory_admin")
    key = await client.post(
        "/api-keys",
        headers=factory_admin,
        json={"name": "approval-tool", "permissions": ["logistics.approve", "orgs.read"]},
    )
    assert key.status_code == 201, key.text
    gift = await document(client, clerk, goods["units"][20:21], kind="exception", reason="gift")
    assert (await confirm(client, clerk, gift)).json()["status"] == "pending_approval"
    approved = await client.post(
        f"/documents/{gift['id']}/approve", headers={"X-API-Key": key.json()["key"]}, json={}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "confirmed"
    maker = (await client.get("/auth/me", headers=factory_admin)).json()["user_id"]
    assert approved.json()["approved_by"] == maker, approved.json()


def _long_qr(serial: str, length: int) -> str:
    """A unit's QR content as a label may carry it: the serial in a URL padded with parameters
    to ``length`` characters."""
    head = f"https://tc.example/c/{serial}?x="
    return head + "a" * (length - len(head))


async def test_a_whole_qr_content_the_app_sends_is_read_by_documents_sales_and_returns(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the staff app sends a unit's QR content as read, up to 512 characters (its
    scan/parse.ts ``MAX_CODE``), and ``POST /inspections`` reads the serial out of it; but
    ``POST /documents/{id}/codes``, ``POST /sales`` and ``POST /returns`` stopped at 256 and
    refused the whole request 400 ``validation_failed``: the same genuine unit, scanned from the
    same label, could not be received, sold or taken back. One limit for a scan everywhere
    (``SCAN_MAX``, 512); the answer names the unit by its serial, and a longer text is 400 as
    before."""
    from tests.rebates_support import store_goods  # it imports this module

    units = (await store_goods(client, login, app, demo))["units"]
    store = await login("store_clerk")
    draft = await document(client, store, kind="return")
    scanned = await client.post(
        f"/documents/{draft['id']}/codes", headers=store, json={"codes": [_long_qr(units[0], 512)]}
    )
    assert scanned.status_code == 200, scanned.text
    assert scanned.json()["items"] == [{"code": units[0], "result": "added", "kind": "unit"}]
    removed = await client.post(
        f"/documents/{draft['id']}/codes/remove",
        headers=store,
        json={"codes": [_long_qr(units[0], 400)]},
    )
    assert removed.status_code == 200 and removed.json()["removed"] == 1, removed.text
    sold = await client.post("/sales", headers=store, json={"codes": [_long_qr(units[1], 512)]})
    assert sold.status_code == 201 and sold.json()["units"] == 1, sold.text
    back = await client.post(
        "/returns",
        headers=store,
        json={"code": _long_qr(units[1], 300), "reason": "other",
              "exchange_for": _long_qr(units[2], 512)},
    )  # fmt: skip
    assert back.status_code == 200, back.text
    assert (back.json()["returned"], back.json()["exchanged_for"]) == (units[1], units[2])
    too_long = _long_qr(units[3], 513)
    for path, body in (
        (f"/documents/{draft['id']}/codes", {"codes": [too_long]}),
        ("/sales", {"codes": [too_long]}),
        ("/returns", {"code": too_long, "reason": "other"}),
    ):
        assert_error(await client.post(path, headers=store, json=body), 400, "validation_failed")


async def test_a_sold_unit_of_a_voided_batch_comes_back_void_and_withdraws_its_claims(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a unit sold at a store, its rebate and its points claimed, then its batch voided
    (a recall): the buyer's return was 422 ``bad_code`` ("void"), so the rebate was settled,
    the member kept the points and the refunded sale stayed counted. A sold unit of a void batch
    is taken back as any sold unit, its claims withdrawn, but comes back void — into no stock,
    never sold again (the recount agrees). A void code never sold is refused as before, and so
    is a void unit given in exchange."""
    from app.logistics.rollup import recount
    from tests.points_support import claim_body, member_client, new_member, set_rule
    from tests.rebates_support import rebate_body, set_rebate, store_goods

    goods = await store_goods(client, login, app, demo)
    units, scheme = goods["units"], app.state.scheme
    admin, store = await login("admin"), await login("store_clerk")
    await set_rule(client, admin, goods["product_id"], 10)
    await set_rebate(client, admin, goods["product_id"], 2.5)
    rebate = await client.post("/rebates/claims", headers=store, json=rebate_body(scheme, units[0]))
    assert rebate.status_code == 201, rebate.text  # it sells the unit
    brand = (await client.get("/auth/me", headers=admin)).json()["org_id"]
    _, member, _ = await new_member(app, int(brand))
    async with member_client(app) as mc:
        claimed = await mc.post(
            "/members/me/claims", headers=member, json=claim_body(scheme, units[0])
        )
    assert claimed.status_code == 201, claimed.text
    sold = await client.post("/sales", headers=store, json={"codes": [units[1]]})
    assert sold.status_code == 201, sold.text
    voided = await client.post(
        f"/batches/{goods['batch_no']}/void",
        headers=await login("planner"),
        json={"reason": "recall"},
    )
    assert voided.status_code == 200, voided.text

    back = await client.post("/returns", headers=store, json={"code": units[0], "reason": "other"})
    assert back.status_code == 200, back.text
    body = back.json()
    assert (body["returned"], body["disposition"]) == (units[0], "returned")
    assert body["rebate_withdrawn"] == rebate.json()["claim_id"]
    assert body["points_withdrawn"] is not None
    state = await state_of(conn, app, units[0])
    assert (state["status"], state["holder_org_id"]) == ("void", demo["STORE-HZ-01"])
    mismatches = [m for m in await recount(conn) if m.org_id == demo["STORE-HZ-01"]]
    await conn.commit()
    assert mismatches == []  # into no stock: the void unit is counted nowhere
    assert_error(await client.post("/sales", headers=store, json={"codes": units[:1]}), 422)
    again = {"code": units[0], "reason": "other"}
    assert_error(await client.post("/returns", headers=store, json=again), 422, "bad_code")
    never_sold = {"code": units[2], "reason": "other"}  # on the shelf when voided
    assert_error(await client.post("/returns", headers=store, json=never_sold), 422, "bad_code")
    for_void = {"code": units[1], "reason": "other", "exchange_for": units[2]}
    assert_error(await client.post("/returns", headers=store, json=for_void), 422, "bad_codes")
    assert (await state_of(conn, app, units[1]))["status"] == "sold"  # nothing recorded
    damaged = {"code": units[1], "reason": "damaged"}
    back = await client.post("/returns", headers=store, json=damaged)
    assert back.status_code == 200, back.text
    state = await state_of(conn, app, units[1])
    assert (state["status"], state["disposition"]) == ("void", "damaged")


async def test_units_a_store_returns_damaged_or_expired_are_not_sold_again_upstream(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, route: dict[str, Any]
) -> None:
    """A probe: a store's ``return`` document with reason ``damaged``, received by its agent,
    left the units sellable — the agent sold one (201). A return's reason ``damaged`` or
    ``expired`` is their disposition from then on, as a consumer's return makes it (409
    ``not_sellable`` wherever they move after); its shipping event stays ``returned``; any other
    reason leaves them sellable."""
    units, cases = route["units"], route["cases"]
    clerk, agent, store = (
        await login("clerk"),
        await login("agent_clerk"),
        await login("store_clerk"),
    )
    await _received(client, clerk, agent, [cases[0]], demo["AGENT-ZJ"])
    await _received(client, agent, store, [cases[0]], demo["STORE-HZ-01"])
    for reason, unit in (("damaged", units[0]), ("expired", units[1]), ("wrong_goods", units[2])):
        back = await document(client, store, [unit], kind="return", reason=reason)
        assert (await confirm(client, store, back)).status_code == 200
        got = await document(client, agent, kind="inbound", shipment_id=back["id"])
        assert (await confirm(client, agent, got)).status_code == 200
        event = await (
            await conn.execute(
                """SELECT e.disposition FROM events e JOIN event_codes ec ON ec.event_id = e.id
                    WHERE ec.code = %s AND e.details->>'document' = %s""",
                (code_of(app, unit), back["doc_no"]),
            )
        ).fetchone()
        assert event["disposition"] == "returned"
    for unit, disposition in ((units[0], "damaged"), (units[1], "expired")):
        assert (await state_of(conn, app, unit))["disposition"] == disposition
        sold = await client.post("/sales", headers=agent, json={"codes": [unit]})
        assert_error(sold, 409, "not_sellable")  # was 201
    sold = await client.post("/sales", headers=agent, json={"codes": [units[2]]})
    assert sold.status_code == 201, sold.text
    # a unit marked already keeps its first mark (a review: expired became damaged)
    await _received(client, agent, store, [units[1]], demo["STORE-HZ-01"])
    back = await document(client, store, [units[1]], kind="return", reason="damaged")
    assert (await confirm(client, store, back)).status_code == 200
    assert (await state_of(conn, app, units[1]))["disposition"] == "expired"
