"""Orders (L1, L5): documents drafted against an order, ``POST /orders/{id}/receive``, order
summaries, and orders sent again. The first three were a probe's findings (each failed on the
code before its fix); the rest guard what held up."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import pytest

from tests.helpers import (
    assert_error,
    issue_cases,
    issue_units,
    key_of,
    new_org,
    new_user,
    sales_order,
    signed_in,
)
from tests.test_hardening_logistics import document, move

_ids = itertools.count()


class Goods:
    def __init__(self, units: list[str], cases: list[str], product_id: int):
        self.units, self.cases, self.product_id = units, cases, product_id


async def pack(
    client: Any, login: Any, app: Any, demo: Any, cases: int, product_no: str = "LM-SC-30"
) -> Goods:
    """``cases`` inner cases of 10 units packed at the factory and taken into WH-SZ-01."""
    batch_no, product_id = await issue_units(client, login, demo, cases * 10, product_no)
    ssccs = await issue_cases(client, login, demo, "inner", cases)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(cases * 10)]
    operator = await login("operator")
    response = await client.put(
        "/lines/ZZORD/context",
        headers=operator,
        json={"product_id": product_id, "lot": "ZZORD", "production_date": "2026-11-10"},
    )
    assert response.status_code == 200, response.text
    scans = []
    for c in range(cases):
        for code in [*serials[c * 10 : c * 10 + 10], ssccs[c]]:
            scans.append({"id": f"zzord-{next(_ids)}-{code}", "code": code,
                          "at": "2026-11-10T08:00:00Z"})  # fmt: skip
    response = await client.post("/lines/ZZORD/scans", headers=operator, json={"scans": scans})
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text
    await move(client, await login("clerk"), ssccs, kind="factory_inbound")
    return Goods(serials, ssccs, product_id)


async def at_store(client: Any, login: Any, app: Any, demo: Any, cases: int) -> Goods:
    """Goods on hand at STORE-HZ-01 (factory warehouse → AGENT-ZJ → its store)."""
    goods = await pack(client, login, app, demo, cases)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    store = await login("store_clerk")
    leg = await move(client, clerk, goods.cases, kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    await move(client, agent, None, kind="inbound", shipment_id=leg["id"])
    leg = await move(
        client, agent, goods.cases, kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    await move(client, store, None, kind="inbound", shipment_id=leg["id"])
    return goods


async def order(client: Any, login: Any, demo: Any, frm: str, to: str, lines: list[Any]) -> Any:
    response = await client.post(
        "/orders",
        headers=await login("partner"),
        json={
            "erp_no": f"PRB-ORD-{next(_ids)}-{lines[0][0]}",
            "kind": "sales",
            "from_org_id": demo[frm],
            "to_org_id": demo[to],
            "lines": [{"product_id": p, "quantity": q} for p, q in lines],
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


async def receiving_event(client: Any, login: Any, serial: str) -> dict[str, Any]:
    trace = await client.get(f"/trace/{serial}", headers=await login("admin"))
    assert trace.status_code == 200, trace.text
    return [e for e in trace.json()["events"] if e["biz_step"] == "receiving"][-1]  # type: ignore[no-any-return]


async def test_a_store_cannot_ship_under_a_brand_order_it_may_not_read(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe. README: "An order or document the caller cannot see answers like one that does not
    exist"; GET /orders/{id} shows an order to "orders to or from the caller's subtree, and a
    warehouse's parent's it ships". STORE-HZ-01 (a store of AGENT-ZJ) gets 404 for a BRAND-LUMI →
    AGENT-GD order, yet ``documents._order_for`` takes it as the order of its outbound draft
    (the brand is "above" the store): the draft shows the order's ERP number, the summary its
    lines, and the store's own goods ship to the other agent counted as the brand's shipment."""
    goods = await at_store(client, login, app, demo, 1)
    brand_order = await order(
        client, login, demo, "BRAND-LUMI", "AGENT-GD", [(goods.product_id, 10)]
    )
    store = await login("store_clerk")
    assert_error(await client.get(f"/orders/{brand_order['id']}", headers=store), 404)
    draft = await client.post(
        "/documents", headers=store, json={"kind": "outbound", "order_id": brand_order["id"]}
    )
    if draft.status_code == 201:  # show what leaked before failing
        doc = draft.json()
        summary = (await client.get(f"/documents/{doc['id']}/summary", headers=store)).json()
        added = await client.post(
            f"/documents/{doc['id']}/codes", headers=store, json={"codes": goods.cases}
        )
        confirmed = await client.post(f"/documents/{doc['id']}/confirm", headers=store)
        after = await client.get(f"/orders/{brand_order['id']}", headers=await login("partner"))
        raise AssertionError(
            f"store drafted against an order it cannot read: order_no={doc['order_no']!r} "
            f"counterparty={doc['counterparty_name']!r}; summary lines={summary['lines']}; "
            f"scan={added.status_code}, confirm={confirmed.status_code}; brand order lines now "
            f"{after.json()['lines']}"
        )
    assert_error(draft, 422, "unknown_order")


async def test_another_agent_cannot_read_a_brand_order_through_a_draft(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe, the other agent's view: a BRAND-LUMI → AGENT-ZJ order is 404 to AGENT-GD's admin, yet
    its draft against the order's id is made (201) with the order's ERP number and AGENT-ZJ as
    counterparty, and the draft's summary lists the order's lines (product, ordered, shipped):
    any order from the brand can be read by id by every organisation of the brand. An order of
    the factory (tests/test_hardening_scoping.py) answers like no order, 422 ``unknown_order``."""
    found = await client.get("/products", headers=await login("partner"), params={"q": "LM-HY-50"})
    serum = found.json()["items"][0]["id"]
    zj_order = await order(client, login, demo, "BRAND-LUMI", "AGENT-ZJ", [(serum, 123)])
    gd = await login("gd_admin")
    assert_error(await client.get(f"/orders/{zj_order['id']}", headers=gd), 404, "unknown_order")
    reference = await client.post(
        "/documents", headers=gd, json={"kind": "outbound", "order_id": 999_999_999}
    )
    assert_error(reference, 422, "unknown_order")
    answer = await client.post(
        "/documents", headers=gd, json={"kind": "outbound", "order_id": zj_order["id"]}
    )
    if answer.status_code == 201:
        doc = answer.json()
        summary = (await client.get(f"/documents/{doc['id']}/summary", headers=gd)).json()
        raise AssertionError(
            f"AGENT-GD drafted against AGENT-ZJ's order: order_no={doc['order_no']!r}, "
            f"counterparty={doc['counterparty_name']!r}, lines={summary['lines']}"
        )
    assert_error(answer, 422, "unknown_order")


async def test_receiving_an_order_names_the_warehouse_that_shipped_not_the_orders_factory(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a receipt of the same goods names the organisation that shipped them (the warehouse
    WH-SZ-01, the source of their shipping event) when made by ``shipment_id``, but the order's
    from-organisation FACTORY-SZ — which never held them in this shipment — as counterparty and
    event source when made by ``POST /orders/{id}/receive`` (``documents._shipment_sender``
    returns ``order["from_org_id"]`` for a receipt by order)."""
    goods = await pack(client, login, app, demo, 2)
    order_id = await sales_order(client, login, demo, goods.product_id, 20)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    first = await move(client, clerk, goods.cases[:1], kind="outbound", order_id=order_id)
    by_shipment = await move(client, agent, None, kind="inbound", shipment_id=first["id"])
    assert by_shipment["counterparty_id"] == demo["WH-SZ-01"]
    event = await receiving_event(client, login, goods.units[0])
    assert event["source"]["id"] == demo["WH-SZ-01"]

    await move(client, clerk, goods.cases[1:2], kind="outbound", order_id=order_id)
    by_order = await client.post(f"/orders/{order_id}/receive", headers=agent)
    assert by_order.status_code == 200, by_order.text
    event = await receiving_event(client, login, goods.units[10])
    shipping = [
        e
        for e in (
            await client.get(f"/trace/{goods.units[10]}", headers=await login("admin"))
        ).json()["events"]
        if e["biz_step"] == "shipping"
    ][-1]
    assert shipping["source"]["id"] == demo["WH-SZ-01"]
    assert (by_order.json()["counterparty_id"], event["source"]["id"]) == (
        demo["WH-SZ-01"],
        demo["WH-SZ-01"],
    ), (by_order.json()["counterparty_name"], event["source"])


async def test_wrong_product_and_more_than_ordered_are_refused(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    goods = await pack(client, login, app, demo, 2)
    serum = (
        await client.get("/products", headers=await login("partner"), params={"q": "LM-HY-50"})
    ).json()["items"][0]["id"]
    clerk = await login("clerk")
    wrong = await order(client, login, demo, "FACTORY-SZ", "AGENT-ZJ", [(serum, 50)])
    doc = await document(client, clerk, goods.cases[:1], kind="outbound", order_id=wrong["id"])
    error = assert_error(
        await client.post(f"/documents/{doc['id']}/confirm", headers=clerk), 409, "over_shipment"
    )
    assert error["details"][str(goods.product_id)]["ordered"] == 0
    small = await order(client, login, demo, "FACTORY-SZ", "AGENT-ZJ", [(goods.product_id, 15)])
    doc = await document(client, clerk, goods.cases, kind="outbound", order_id=small["id"])
    assert_error(
        await client.post(f"/documents/{doc['id']}/confirm", headers=clerk), 409, "over_shipment"
    )
    summary = (await client.get(f"/documents/{doc['id']}/summary", headers=clerk)).json()
    assert summary["lines"][0]["remaining"] == -5 and summary["lines"][0]["over"]


async def test_resent_with_other_lines_is_refused_by_api_and_csv(
    client: Any, login: Any, demo: Any
) -> None:
    partner = await login("partner")
    found = await client.get("/products", headers=partner, params={"q": "LM-SC-30"})
    sun = found.json()["items"][0]["id"]
    first = await order(client, login, demo, "FACTORY-SZ", "AGENT-ZJ", [(sun, 7)])
    body = {
        "erp_no": first["erp_no"],
        "kind": "sales",
        "from_org_id": demo["FACTORY-SZ"],
        "to_org_id": demo["AGENT-ZJ"],
        "lines": [{"product_id": sun, "quantity": 7}],
    }
    assert (await client.post("/orders", headers=partner, json=body)).status_code == 200
    for lines in (
        [{"product_id": sun, "quantity": 8}],
        [],
        [{"product_id": sun, "quantity": 7}] * 2,
    ):
        answer = await client.post("/orders", headers=partner, json={**body, "lines": lines})
        assert answer.status_code in (400, 409, 422), answer.text
    csv = (
        "erp_no,from_erp_code,to_erp_code,product_no,quantity\n"
        f"{first['erp_no']},FACTORY-SZ,AGENT-ZJ,LM-SC-30,9\n"
    )
    imported = await client.post(
        "/orders/import", headers={**partner, "Content-Type": "text/csv"}, content=csv.encode()
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["rejected"] == 1
    assert imported.json()["errors"][0]["code"] == "order_no_reused"
    got = (await client.get(f"/orders/{first['id']}", headers=partner)).json()
    assert [(ln["product_id"], ln["quantity"]) for ln in got["lines"]] == [(sun, 7)]


async def test_an_order_sent_again_with_another_date_or_note_is_not_a_retry(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``POST /orders`` is idempotent by ``erp_no`` (the same order again: 200; other
    content: 409 ``order_no_reused``), but the date and note were not compared: an ERP sending
    order SO-… again with a corrected ``order_date`` (or note "deliver Friday") got 200 with the
    first order, its old date and note, the change silently dropped. So did a CSV import of it.
    A date not sent is the stored one (it defaulted to the day the order was made)."""
    partner = await login("partner")
    found = await client.get("/products", headers=partner, params={"q": "LM-SC-30"})
    pid = found.json()["items"][0]["id"]
    body = {
        "erp_no": f"SO-P{next(_ids)}-{pid}",
        "kind": "sales",
        "from_org_id": demo["FACTORY-SZ"],
        "to_org_id": demo["AGENT-ZJ"],
        "order_date": "2026-12-01",
        "note": "deliver Monday",
        "lines": [{"product_id": pid, "quantity": 5}],
    }
    first = await client.post("/orders", headers=partner, json=body)
    assert first.status_code == 201, first.text
    for same in (body, {k: v for k, v in body.items() if k != "order_date"}):
        again = await client.post("/orders", headers=partner, json=same)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
    other_date = await client.post(
        "/orders", headers=partner, json={**body, "order_date": "2026-12-03"}
    )
    assert_error(other_date, 409, "order_no_reused")  # was 200, order_date still 2026-12-01
    other_note = await client.post(
        "/orders", headers=partner, json={**body, "note": "deliver Friday"}
    )
    assert_error(other_note, 409, "order_no_reused")  # was 200, note still "deliver Monday"

    head = "erp_no,from_erp_code,to_erp_code,order_date,product_no,quantity,note\n"
    row = f"{body['erp_no']},FACTORY-SZ,AGENT-ZJ,{{}},LM-SC-30,5,deliver Monday\n"
    for day, result in (("2026-12-01", "existing"), ("2026-12-03", "rejected")):
        imported = await client.post(
            "/orders/import",
            headers={**partner, "Content-Type": "text/csv"},
            content=(head + row.format(day)).encode(),
        )
        assert imported.status_code == 200, imported.text
        assert imported.json()[result] == 1, imported.text
    got = (await client.get(f"/orders/{first.json()['id']}", headers=partner)).json()
    assert (got["order_date"], got["note"]) == ("2026-12-01", "deliver Monday")


async def test_a_number_taken_while_the_first_creator_commits_answers_409(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    import asyncio

    from app.logistics.orders import create_order
    from app.logistics.schemas import OrderIn, OrderLineIn
    from tests.helpers import acting
    from tests.test_logistics import waiting_for_a_lock

    partner = await login("partner")
    found = await client.get("/products", headers=partner, params={"q": "LM-SC-30"})
    sun = found.json()["items"][0]["id"]
    erp_no = f"PRB-RACE-{next(_ids)}-{sun}"
    body = {
        "erp_no": erp_no,
        "kind": "sales",
        "from_org_id": demo["FACTORY-SZ"],
        "to_org_id": demo["AGENT-ZJ"],
        "lines": [{"product_id": sun, "quantity": 3}],
    }
    async with app.state.pool.connection() as hold, app.state.pool.connection() as watch:
        actor = await acting(hold, "partner")
        await hold.commit()
        data = OrderIn(
            erp_no=erp_no,
            from_org_id=demo["FACTORY-SZ"],
            to_org_id=demo["AGENT-ZJ"],
            lines=[OrderLineIn(product_id=sun, quantity=3)],
        )
        held, _ = await create_order(hold, actor, data)
        other = {**body, "lines": [{"product_id": sun, "quantity": 4}]}
        racing = [
            asyncio.create_task(client.post("/orders", headers=partner, json=b))
            for b in (body, other)
        ]
        assert await waiting_for_a_lock(watch)
        await hold.commit()
        same, changed = await asyncio.gather(*racing)
    assert same.status_code == 200 and same.json()["id"] == held.id, same.text
    assert_error(changed, 409, "order_no_reused")


async def test_huge_ids_answer_like_unknown_ones(client: Any, login: Any, demo: Any) -> None:
    partner, clerk = await login("partner"), await login("clerk")
    found = await client.get("/products", headers=partner, params={"q": "LM-SC-30"})
    sun = found.json()["items"][0]["id"]
    base = {"erp_no": f"PRB-BIG-{next(_ids)}", "from_org_id": demo["FACTORY-SZ"],
            "to_org_id": demo["AGENT-ZJ"], "lines": [{"product_id": sun, "quantity": 1}]}  # fmt: skip
    for big in (2**63, 10**30, -(2**63) - 1):
        assert_error(
            await client.post("/orders", headers=partner, json={**base, "from_org_id": big}),
            422,
            "unknown_org",
        )
        bad_line = {**base, "lines": [{"product_id": big, "quantity": 1}]}
        assert_error(
            await client.post("/orders", headers=partner, json=bad_line), 422, "unknown_product"
        )
        assert_error(
            await client.post(
                "/documents", headers=clerk, json={"kind": "outbound", "order_id": big}
            ),
            422,
            "unknown_order",
        )
    for path in (f"/orders/{2**63}", f"/orders/{10**30}"):
        assert_error(await client.get(path, headers=partner), 404, "unknown_order")
    assert_error(
        await client.post(f"/orders/{2**63}/receive", headers=await login("agent_clerk")), 404
    )
    over = {**base, "lines": [{"product_id": sun, "quantity": 2**31}]}
    assert_error(await client.post("/orders", headers=partner, json=over), 400)


async def test_a_closed_order_ships_no_more_and_what_is_on_its_way_is_still_received(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """``POST /orders/{id}/close``: a draft made before is refused at its confirm, a new draft
    at once (409 ``order_closed``); the goods shipped before are received; the counts go on
    while the order stays closed. Closing again answers the order (a retry); cancelling it
    after is 409."""
    goods = await pack(client, login, app, demo, 2)
    order_id = await sales_order(client, login, demo, goods.product_id, 20)
    clerk, agent, partner = await login("clerk"), await login("agent_clerk"), await login("partner")
    await move(client, clerk, goods.cases[:1], kind="outbound", order_id=order_id)
    late = await document(client, clerk, goods.cases[1:], kind="outbound", order_id=order_id)

    closed = await client.post(f"/orders/{order_id}/close", headers=partner)
    assert closed.status_code == 200 and closed.json()["status"] == "closed", closed.text
    again = await client.post(f"/orders/{order_id}/close", headers=partner)
    assert again.status_code == 200 and again.json() == closed.json()
    assert_error(
        await client.post(f"/documents/{late['id']}/confirm", headers=clerk), 409, "order_closed"
    )
    assert_error(
        await client.post(
            "/documents", headers=clerk, json={"kind": "outbound", "order_id": order_id}
        ),
        409,
        "order_closed",
    )
    received = await client.post(f"/orders/{order_id}/receive", headers=agent)
    assert received.status_code == 200, received.text
    after = (await client.get(f"/orders/{order_id}", headers=partner)).json()
    assert after["status"] == "closed"
    assert [(ln["shipped"], ln["received"]) for ln in after["lines"]] == [(10, 10)]
    assert_error(
        await client.post(f"/orders/{order_id}/cancel", headers=partner), 409, "order_closed"
    )
    # the case of the refused draft is still at the warehouse: shipped without the order
    await move(client, clerk, goods.cases[1:], kind="outbound", counterparty_id=demo["AGENT-ZJ"])


async def test_an_order_is_cancelled_only_before_goods_move_and_only_by_its_parties(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    goods = await pack(client, login, app, demo, 1)
    partner, clerk = await login("partner"), await login("clerk")
    untouched = await sales_order(client, login, demo, goods.product_id, 5)
    assert_error(
        await client.post(f"/orders/{untouched}/cancel", headers=await login("gd_admin")),
        404,
        "unknown_order",
    )
    assert_error(await client.post(f"/orders/{untouched}/cancel", headers=clerk), 403)
    assert_error(await client.post(f"/orders/{2**63}/close", headers=partner), 404)
    cancelled = await client.post(f"/orders/{untouched}/cancel", headers=partner)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert (await client.post(f"/orders/{untouched}/cancel", headers=partner)).status_code == 200
    assert_error(
        await client.post(f"/orders/{untouched}/close", headers=partner), 409, "order_closed"
    )
    listed = await client.get("/orders", headers=partner, params={"status": "cancelled"})
    assert untouched in {o["id"] for o in listed.json()["items"]}

    shipped = await sales_order(client, login, demo, goods.product_id, 20)
    await move(client, clerk, goods.cases, kind="outbound", order_id=shipped)
    assert_error(
        await client.post(f"/orders/{shipped}/cancel", headers=partner), 409, "order_shipped"
    )
    assert (await client.get(f"/orders/{shipped}", headers=partner)).json()["status"] == "open"
    audit = await client.get(
        "/audit", headers=await login("admin"), params={"entity": "order", "entity_id": untouched}
    )
    assert audit.status_code == 200, audit.text
    assert "cancel" in {row["action"] for row in audit.json()["items"]}, audit.text


async def _all_pages(client: Any, headers: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every order of ``GET /orders`` with these filters, page after page, as the staff app
    reads them."""
    found: list[dict[str, Any]] = []
    for page in range(1, 100):
        answer = await client.get("/orders", headers=headers, params={**params, "page": page})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found += body["items"]
        if page * body["per_page"] >= body["total"]:
            return found
    raise AssertionError("more than 99 pages")


async def test_the_open_and_shipped_orders_are_asked_for_past_newer_cancelled_ones(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe (the staff app's order picker): it read the newest 100 orders and kept the open
    and shipped ones on the phone, so an open order behind 100 newer cancelled ones was lost to
    the clerk. ``status`` is given several times (``?status=open&status=shipped``): the orders
    in any of them, paged and counted as such; one value filters as before, an unknown one is
    400."""
    goods = await pack(client, login, app, demo, 1)
    partner, clerk = await login("partner"), await login("clerk")
    # an agent of the test's own: its orders alone are paged (``org_id``), not the open ones
    # every other test leaves to the demo's agents (more than 99 pages of 2 on a whole run)
    agent = await new_org(client, await login("admin"), "agent", demo["BRAND-LUMI"])
    ours = {**demo, "OURS": agent["id"]}
    still_open = await sales_order(client, login, ours, goods.product_id, 5, to="OURS")
    shipped = await sales_order(client, login, ours, goods.product_id, 10, to="OURS")
    await move(client, clerk, goods.cases, kind="outbound", order_id=shipped)
    closed = await sales_order(client, login, ours, goods.product_id, 5, to="OURS")
    assert (await client.post(f"/orders/{closed}/close", headers=partner)).status_code == 200
    cancelled = []
    for _ in range(3):  # newer than the open and shipped ones
        cancelled.append(await sales_order(client, login, ours, goods.product_id, 5, to="OURS"))
        answer = await client.post(f"/orders/{cancelled[-1]}/cancel", headers=partner)
        assert answer.status_code == 200, answer.text

    wanted = {"status": ["open", "shipped"], "per_page": 1, "org_id": agent["id"]}
    offered = await _all_pages(client, clerk, wanted)
    assert {o["status"] for o in offered} <= {"open", "shipped"}, offered
    ids = [o["id"] for o in offered]
    assert {still_open, shipped} <= set(ids) and len(ids) == len(set(ids))
    assert not {closed, *cancelled} & set(ids)
    assert ids == [shipped, still_open]  # newest first, one a page
    first = await client.get("/orders", headers=clerk, params={**wanted, "page": 1})
    assert first.json()["total"] == 2 and len(first.json()["items"]) == 1
    only_open = await _all_pages(client, clerk, {"status": "open", "org_id": agent["id"]})
    assert still_open in {o["id"] for o in only_open} and shipped not in {
        o["id"] for o in only_open
    }
    assert {o["status"] for o in only_open} == {"open"}
    assert_error(
        await client.get("/orders", headers=clerk, params={"status": ["open", "lost"]}), 400
    )


async def test_a_cancel_racing_a_confirm_one_wins(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Either the shipment is confirmed and the cancel refused (``order_shipped``), or the
    order is cancelled and the shipment refused (``order_closed``): never both through."""
    import asyncio

    partner, clerk = await login("partner"), await login("clerk")
    goods = await pack(client, login, app, demo, 3)
    outcomes = set()
    for case in goods.cases:
        order_id = await sales_order(client, login, demo, goods.product_id, 10)
        doc = await document(client, clerk, [case], kind="outbound", order_id=order_id)
        confirm, cancel = await asyncio.gather(
            client.post(f"/documents/{doc['id']}/confirm", headers=clerk),
            client.post(f"/orders/{order_id}/cancel", headers=partner),
        )
        state = (await client.get(f"/orders/{order_id}", headers=partner)).json()
        if confirm.status_code == 200:
            assert_error(cancel, 409, "order_shipped")
            assert (state["status"], state["lines"][0]["shipped"]) == ("shipped", 10)
        else:
            assert_error(confirm, 409, "order_closed")
            assert cancel.status_code == 200, cancel.text
            assert (state["status"], state["lines"][0]["shipped"]) == ("cancelled", 0)
        outcomes.add(confirm.status_code)
    assert outcomes <= {200, 409}


async def test_an_outbound_against_an_order_to_another_counterparty_is_refused(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a clerk drafts an outbound to the Guangdong agent (``counterparty_id``) against
    an order to the Zhejiang agent. The draft was made (201) to the Zhejiang agent: the
    counterparty named was silently replaced by the order's receiver, and the goods scanned for
    Guangdong shipped to Zhejiang on confirmation. Two contradicting fields are refused, 422
    ``wrong_order``, as an inbound naming a shipment of another order is; the order's own
    receiver named (as the staff app sends it) is taken."""
    clerk = await login("clerk")
    _, product_id = await issue_units(client, login, demo, 1)
    order_id = await sales_order(client, login, demo, product_id, 5, to="AGENT-ZJ")
    made = await client.post(
        "/documents",
        headers=clerk,
        json={"kind": "outbound", "order_id": order_id, "counterparty_id": demo["AGENT-GD"]},
    )
    assert made.status_code != 201 or made.json()["counterparty_id"] == demo["AGENT-GD"], (
        "the draft ships to the order's receiver, not the counterparty named",
        made.json()["counterparty_name"],
    )
    assert_error(made, 422, "wrong_order")
    same = await document(
        client, clerk, kind="outbound", order_id=order_id, counterparty_id=demo["AGENT-ZJ"]
    )
    assert same["counterparty_id"] == demo["AGENT-ZJ"] and same["order_id"] == order_id


async def test_one_order_date_written_two_accepted_ways_is_not_inconsistent(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the import takes an ``order_date`` as YYYY-MM-DD or YYYY/MM/DD, with or without
    leading zeros, and the rows of one order must agree on it; the rows were compared as text, so
    an order whose lines said ``2026-11-01`` and ``2026/11/1`` (a spreadsheet reformatting some
    cells) was refused whole as ``inconsistent_order``. Compared as dates now."""
    partner = await login("partner")
    no = f"DI-DATE-{secrets.token_hex(4)}"
    csv = (
        "erp_no,from_erp_code,to_erp_code,order_date,product_no,quantity\r\n"
        f"{no},FACTORY-SZ,AGENT-ZJ,2026-11-01,LM-SC-30,5\r\n"
        f"{no},FACTORY-SZ,AGENT-ZJ,2026/11/1,LM-HY-50,6\r\n"
    )
    answer = await client.post(
        "/orders/import", headers={**partner, "Content-Type": "text/csv"}, content=csv.encode()
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["errors"] == [] and body["created"] == 1, body
    order = await client.get(f"/orders/{body['orders'][0]['id']}", headers=partner)
    assert order.json()["order_date"] == "2026-11-01"
    assert sorted(line["quantity"] for line in order.json()["lines"]) == [5, 6]


@pytest.mark.parametrize(
    ("user", "path", "param", "value"),
    [
        ("partner", "/orders", "erp_no", ""),
        ("partner", "/orders", "erp_no", "X" * 65),
        ("clerk", "/documents", "doc_no", ""),
        ("clerk", "/documents", "doc_no", "X" * 65),
    ],
)
async def test_order_and_document_number_filters_refuse_impossible_values(
    client: Any, login: Any, demo: Any, user: str, path: str, param: str, value: str
) -> None:
    """A probe: ``GET /orders?erp_no=`` and ``GET /documents?doc_no=`` with an empty value (or one longer
    than 64 characters, which no order or document number can be) answer 200 with an empty page
    (``total`` 0, although the partner has orders), where the management centre's same
    filter (``/center/documents?doc_no=``) answers 400 ``validation_failed``. Expected: the same
    400 ``validation_failed`` naming the parameter (cause: the routes in
    app/logistics/routes.py declare ``erp_no``/``doc_no`` as a bare ``str | None``)."""
    await sales_order(client, login, demo, 1, 5)  # the partner has at least one order
    headers = await login(user)
    answer = await client.get(path, headers=headers, params={param: value})
    error = assert_error(answer, 400, "validation_failed")
    assert error["details"][0]["field"] == param, error


async def test_no_order_is_taken_to_or_from_a_deactivated_organisation(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: an agent's contract ended and the brand deactivated it (and with it the store
    below it); the ERP then pushed a sales order to that agent and a return order from its
    store, and both were created (201) and sat ``open`` in the order lists and the ERP export
    for good: nobody there can sign in, and no shipment to it can be drafted (409
    ``org_inactive``). Now both are 409 ``org_inactive``, by ``POST /orders`` and by the CSV
    import; an order sent again that was made while the agent was active is still a retry."""
    admin, partner = await login("admin"), await login("partner")
    tag = secrets.token_hex(3).upper()

    async def org(kind: str, parent: int) -> tuple[int, str]:
        code = f"END-{kind}-{tag}"
        body = {"kind": kind, "name": f"Ending {kind} {tag}", "erp_code": code}
        made = await client.post("/orgs", headers=admin, json={**body, "parent_id": parent})
        assert made.status_code == 201, made.text
        return int(made.json()["id"]), code

    agent, agent_code = await org("agent", demo["BRAND-LUMI"])
    store, _ = await org("store", agent)
    found = await client.get("/products", headers=admin, params={"q": "LM-SC-30"})
    product = found.json()["items"][0]["id"]

    def order(kind: str, src: int, dst: int) -> dict[str, Any]:
        return {
            "erp_no": f"SO-END-{secrets.token_hex(4)}",
            "kind": kind,
            "from_org_id": src,
            "to_org_id": dst,
            "lines": [{"product_id": product, "quantity": 20}],
        }

    before = order("sales", demo["FACTORY-SZ"], agent)
    assert (await client.post("/orders", headers=partner, json=before)).status_code == 201
    off = await client.post(f"/orgs/{agent}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    for body, closed in (
        (order("sales", demo["FACTORY-SZ"], agent), agent),
        (order("return", store, demo["FACTORY-SZ"]), store),
    ):
        answer = await client.post("/orders", headers=partner, json=body)
        error = assert_error(answer, 409, "org_inactive")
        assert error["details"] == {"org_id": closed}, error
    assert (await client.post("/orders", headers=partner, json=before)).status_code == 200
    csv = (
        "erp_no,from_erp_code,to_erp_code,product_no,quantity\n"
        f"SO-END-{secrets.token_hex(4)},FACTORY-SZ,{agent_code},LM-SC-30,20\n"
    )
    imported = await client.post(
        "/orders/import", headers={**partner, "Content-Type": "text/csv"}, content=csv.encode()
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["rejected"] == 1, imported.json()
    assert imported.json()["errors"][0]["code"] == "org_inactive", imported.json()


async def _agent_holds(client: Any, login: Any, app: Any, demo: Any) -> Any:
    """A case packed at the factory and received by AGENT-ZJ: its goods."""
    goods = await pack(client, login, app, demo, 1)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    leg = await move(client, clerk, goods.cases, kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    await move(client, agent, None, kind="inbound", shipment_id=leg["id"])
    return goods


async def _order(
    client: Any, headers: dict[str, str], sender: int, receiver: int, goods: Any
) -> int:
    made = await client.post(
        "/orders",
        headers=headers,
        json={
            "erp_no": f"SO-SIDE-{secrets.token_hex(3)}",
            "from_org_id": sender,
            "to_org_id": receiver,
            "lines": [{"product_id": goods.product_id, "quantity": 10}],
        },
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def test_only_the_senders_side_ships_its_order(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the brand's order to a store (straight from its own stock) was drafted and
    confirmed by the store's agent, its own goods counted as the brand's shipment (``shipped``
    10 of 10; the brand could not ship it any more: over_shipment), and a distributor filled its
    agent's order to the distributor's store so — the only check was that the shipper lay below
    the sender. An order ships from its sender or its side below it, never from an agent,
    distributor or store on the way down (422 ``wrong_order``); the agent ships its own order."""
    goods = await _agent_holds(client, login, app, demo)
    partner, agent, agent_admin = (
        await login("partner"),
        await login("agent_clerk"),
        await login("agent_admin"),
    )
    brands = await _order(client, partner, demo["BRAND-LUMI"], demo["STORE-HZ-01"], goods)
    by_agent = await client.post(
        "/documents", headers=agent, json={"kind": "outbound", "order_id": brands}
    )
    assert_error(by_agent, 422, "wrong_order")
    agents = await _order(client, agent_admin, demo["AGENT-ZJ"], demo["STORE-NB-01"], goods)
    leg = await move(client, agent, goods.cases, kind="outbound", counterparty_id=demo["DIST-NB"])
    user = await new_user(client, agent_admin, demo["DIST-NB"], ["warehouse_clerk"])
    signed = await client.post(
        "/auth/login", json={"username": user["username"], "password": user["password"]}
    )
    dist = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    await move(client, dist, None, kind="inbound", shipment_id=leg["id"])
    by_distributor = await client.post(
        "/documents", headers=dist, json={"kind": "outbound", "order_id": agents}
    )
    assert_error(by_distributor, 422, "wrong_order")
    own = await client.post(
        "/documents", headers=agent, json={"kind": "outbound", "order_id": agents}
    )
    assert own.status_code == 201, own.text
    assert own.json()["counterparty_id"] == demo["STORE-NB-01"]


async def test_an_order_made_through_an_api_key_names_its_maker(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe: the brand's ERP (an API key the admin made, ``orders.write``) sent an order and
    its ``created_by`` was null — an order made by nobody, where one sent by the ERP user names
    that user. It names the person behind the key now (``Principal.person``)."""
    admin = await login("admin")
    key = await key_of(client, admin, ["orders.write", "orgs.read", "catalog.read"])
    found = await client.get("/products", headers=admin, params={"q": "LM-SC-30"})
    sun = found.json()["items"][0]["id"]
    made = await client.post(
        "/orders",
        headers=key,
        json={"erp_no": f"KEY-{next(_ids)}-{secrets.token_hex(3)}", "kind": "sales",
              "from_org_id": demo["FACTORY-SZ"], "to_org_id": demo["AGENT-ZJ"],
              "lines": [{"product_id": sun, "quantity": 1}]},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    row = await (
        await conn.execute("SELECT created_by FROM orders WHERE id = %s", (made.json()["id"],))
    ).fetchone()
    maker = (await client.get("/auth/me", headers=admin)).json()["user_id"]
    assert row["created_by"] == maker, row


async def test_the_factory_warehouse_finds_reads_and_ships_the_brands_order(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the brand's order to an agent (BRAND-LUMI → AGENT-ZJ) ships from the brand's side
    below it — its factory's warehouse too (README, ``documents._ships_for``) — yet the
    warehouse's clerk found it in no list (``GET /orders?erp_no=`` 0 orders), read it nowhere
    (404) and drafting against it answered 422 ``unknown_order``: a warehouse read its parent's
    orders only. One rule now (``orders.SENDERS``): a warehouse reads and ships the orders of any
    sender above it with no agent, distributor or store in between — an agent's warehouse its
    agent's, never the brand's to the agent."""
    goods = await pack(client, login, app, demo, 1)
    partner, clerk, admin = await login("partner"), await login("clerk"), await login("admin")
    brands = await _order(client, partner, demo["BRAND-LUMI"], demo["AGENT-ZJ"], goods)
    erp_no = (await client.get(f"/orders/{brands}", headers=partner)).json()["erp_no"]
    listed = await client.get("/orders", headers=clerk, params={"erp_no": erp_no})
    assert [row["id"] for row in listed.json()["items"]] == [brands], listed.text
    read = await client.get(f"/orders/{brands}", headers=clerk)
    assert read.status_code == 200, read.text
    shipped = await move(client, clerk, goods.cases, kind="outbound", order_id=brands)
    assert shipped["counterparty_id"] == demo["AGENT-ZJ"]
    after = await client.get(f"/orders/{brands}", headers=partner)
    assert [line["shipped"] for line in after.json()["lines"]] == [10]
    # a warehouse of the agent: the agent's own orders, never the brand's (the agent between)
    warehouse = await new_org(client, admin, "warehouse", demo["AGENT-ZJ"])
    agent_wh = await signed_in(
        client, await new_user(client, admin, warehouse["id"], ["warehouse_clerk"])
    )
    agents = await _order(
        client, await login("agent_admin"), demo["AGENT-ZJ"], demo["STORE-HZ-01"], goods
    )
    assert (await client.get(f"/orders/{agents}", headers=agent_wh)).status_code == 200
    assert_error(await client.get(f"/orders/{brands}", headers=agent_wh), 404, "unknown_order")
    listed = await client.get("/orders", headers=agent_wh, params={"erp_no": erp_no})
    assert listed.json()["total"] == 0, listed.text
    draft = await client.post(
        "/documents", headers=agent_wh, json={"kind": "outbound", "order_id": brands}
    )
    assert_error(draft, 422, "unknown_order")
