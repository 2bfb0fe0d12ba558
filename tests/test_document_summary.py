"""A document's running count per product (GET /documents/{id}/summary): cases counted as the
units inside them, each unit once, beside its order's lines — ordered, done, remaining, over —
and scoped exactly like the document (L2–L8 on the phone)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.helpers import assert_error
from tests.test_logistics import confirm, document, pack

_ids = itertools.count()


async def summary(client: Any, headers: Any, doc: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/documents/{doc['id']}/summary", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def by_product(body: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {line["product_id"]: line for line in body["lines"]}


@pytest.fixture
async def stock(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """Four cases of ten sun-cream units at the factory warehouse (a confirmed inbound)."""
    goods = await pack(client, login, app, demo, 4)
    clerk = await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    serum = await client.get("/products", headers=clerk, params={"q": "LM-HY-50"})
    goods["serum_id"] = serum.json()["items"][0]["id"]
    goods["inbound"] = inbound
    return goods


async def test_cases_and_loose_units_are_counted_as_confirmation_counts_them(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    goods = await pack(client, login, app, demo, 3)
    units, cases = goods["units"], goods["cases"]
    clerk = await login("clerk")
    # two cases, three loose units of the third, and a unit of the first case scanned too
    draft = await document(
        client, clerk, cases[:2] + units[20:23] + [units[0]], kind="factory_inbound"
    )
    body = await summary(client, clerk, draft)
    assert (body["status"], body["order_id"], body["cases"], body["units"]) == (
        "draft",
        None,
        2,
        23,
    )
    [line] = body["lines"]
    assert line["product_id"] == goods["product_id"]
    assert "Sun Cream" in line["product_name"]
    assert (line["scanned"], line["ordered"], line["remaining"], line["over"]) == (
        23,
        None,
        None,
        False,
    )
    # the count after one more batch; confirmation moves exactly the units counted
    added = await client.post(
        f"/documents/{draft['id']}/codes", headers=clerk, json={"codes": [units[23]]}
    )
    assert added.json()["added"] == 1
    assert (await summary(client, clerk, draft))["units"] == 24
    confirmed = await confirm(client, clerk, draft)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["units"] == 24


async def test_a_cancelled_document_counts_nothing(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Probe X: a cancelled draft's summary was recounted from its cases' contents of the day
    (6 units, later 4, later 0). It moved nothing: it counts nothing, whatever happens next."""
    goods = await pack(client, login, app, demo, 1)
    clerk = await login("clerk")
    draft = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await summary(client, clerk, draft))["units"] == 10
    assert (await client.post(f"/documents/{draft['id']}/cancel", headers=clerk)).status_code == 200
    body = await summary(client, clerk, draft)
    assert (body["status"], body["cases"], body["units"]) == ("cancelled", 0, 0)


async def test_running_counts_against_the_order_lines(
    client: Any, login: Any, demo: Any, stock: dict[str, Any]
) -> None:
    cases, sun, serum = stock["cases"], stock["product_id"], stock["serum_id"]
    partner, clerk = await login("partner"), await login("clerk")
    order = await client.post(
        "/orders",
        headers=partner,
        json={
            "erp_no": f"SUM-{next(_ids)}-{stock['batch_no']}",
            "from_org_id": demo["FACTORY-SZ"],
            "to_org_id": demo["AGENT-ZJ"],
            "lines": [{"product_id": sun, "quantity": 25}, {"product_id": serum, "quantity": 5}],
        },
    )
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]

    draft = await document(client, clerk, cases[:2], kind="outbound", order_id=order_id)
    body = await summary(client, clerk, draft)
    assert body["order_id"] == order_id and body["units"] == 20
    assert [line["product_id"] for line in body["lines"]] == [sun, serum]  # in line order
    lines = by_product(body)
    assert {k: lines[sun][k] for k in ("line_no", "ordered", "done", "scanned", "remaining")} == {
        "line_no": 1, "ordered": 25, "done": 0, "scanned": 20, "remaining": 5
    }  # fmt: skip
    assert not lines[sun]["over"]
    assert (lines[serum]["scanned"], lines[serum]["remaining"], lines[serum]["over"]) == (
        0,
        5,
        False,
    )

    # a third case: five over the line, flagged — and confirmation refuses it alike
    await client.post(f"/documents/{draft['id']}/codes", headers=clerk, json={"codes": cases[2:3]})
    lines = by_product(await summary(client, clerk, draft))
    assert (lines[sun]["scanned"], lines[sun]["remaining"], lines[sun]["over"]) == (30, -5, True)
    assert_error(await confirm(client, clerk, draft), 409, "over_shipment")
    assert (await client.post(f"/documents/{draft['id']}/cancel", headers=clerk)).status_code == 200

    # one case shipped: the next draft counts on what the order still lacks
    first = await document(client, clerk, cases[:1], kind="outbound", order_id=order_id)
    assert (await confirm(client, clerk, first)).status_code == 200
    shipped = by_product(await summary(client, clerk, first))[sun]  # confirmed: as it stands
    assert (shipped["done"], shipped["scanned"], shipped["remaining"]) == (10, 10, 15)
    second = await document(client, clerk, cases[1:2], kind="outbound", order_id=order_id)
    line = by_product(await summary(client, clerk, second))[sun]
    assert (line["done"], line["scanned"], line["remaining"], line["over"]) == (10, 10, 5, False)

    # the agent receiving against the order counts on what it received (nothing yet)
    agent = await login("agent_clerk")
    receiving = await document(client, agent, cases[:1], kind="inbound", order_id=order_id)
    line = by_product(await summary(client, agent, receiving))[sun]
    assert (line["ordered"], line["done"], line["scanned"], line["remaining"]) == (25, 0, 10, 15)

    # a product the order does not name: a line of its own, flagged
    serum_only = await client.post(
        "/orders",
        headers=partner,
        json={
            "erp_no": f"SUM-{next(_ids)}-{stock['batch_no']}",
            "from_org_id": demo["FACTORY-SZ"],
            "to_org_id": demo["AGENT-ZJ"],
            "lines": [{"product_id": serum, "quantity": 5}],
        },
    )
    wrong = await document(
        client, clerk, cases[3:4], kind="outbound", order_id=serum_only.json()["id"]
    )
    lines = by_product(await summary(client, clerk, wrong))
    assert (lines[serum]["scanned"], lines[serum]["over"]) == (0, False)
    assert {k: lines[sun][k] for k in ("line_no", "ordered", "scanned", "remaining", "over")} == {
        "line_no": None, "ordered": None, "scanned": 10, "remaining": None, "over": True
    }  # fmt: skip


async def test_the_summary_is_scoped_like_the_document(
    client: Any, login: Any, demo: Any, stock: dict[str, Any]
) -> None:
    clerk = await login("clerk")
    draft = await document(
        client, clerk, stock["cases"][:1], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await summary(client, clerk, draft))["units"] == 10
    # the receiving agent sees the document, and so its count
    assert (await summary(client, await login("agent_clerk"), draft))["units"] == 10
    for other in ("gd_admin", "store_clerk"):  # another organisation: as if it did not exist
        answer = await client.get(f"/documents/{draft['id']}/summary", headers=await login(other))
        assert_error(answer, 404, "unknown_document")
    assert_error(await client.get("/documents/999999999/summary", headers=clerk), 404)


async def test_a_receipt_counts_what_it_receives_and_a_confirmed_document_what_it_moved(
    client: Any, login: Any, demo: Any, stock: dict[str, Any]
) -> None:
    """Probe P: a receipt that scanned nothing (confirming it takes the whole shipment) counted
    nothing, and a confirmed document counted what its cases hold today, not what it moved."""
    clerk, agent = await login("clerk"), await login("agent_clerk")
    shipment = await document(
        client, clerk, stock["cases"][:2], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await confirm(client, clerk, shipment)).status_code == 200
    receipt = await document(client, agent, kind="inbound", shipment_id=shipment["id"])
    body = await summary(client, agent, receipt)
    assert (body["status"], body["cases"], body["units"]) == ("draft", 2, 20)
    confirmed = await confirm(client, agent, receipt)
    assert confirmed.status_code == 200 and confirmed.json()["units"] == 20, confirmed.text
    body = await summary(client, agent, receipt)
    assert (body["cases"], body["units"]) == (2, 20)  # as its lines say (review R3)

    # awaiting approval, a document still counts what it holds (review R3: it counted nothing)
    gift = await document(client, clerk, stock["cases"][2:3], kind="exception", reason="gift")
    pending = await confirm(client, clerk, gift)
    assert pending.json()["status"] == "pending_approval", pending.text
    assert (await summary(client, clerk, gift))["units"] == 10

    emptied = await client.post(
        "/packing/unpack",
        headers=await login("operator"),
        json={"parent": stock["cases"][3], "reason": "opened for the shelf"},
    )
    assert emptied.status_code == 200, emptied.text
    body = await summary(client, clerk, stock["inbound"])  # the four cases it received: 40
    assert (body["status"], body["units"]) == ("confirmed", 40)
    assert [line["scanned"] for line in body["lines"]] == [40]
