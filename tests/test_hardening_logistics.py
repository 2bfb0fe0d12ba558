"""Issue 13, items 2–5: packing corrections only on goods on hand at their holder (and only by
the holder's subtree), receipts against a shipment count on its order, and receiving an order
in one action takes what is in transit now (split shipments). Every test ends with the stock
check of ``tracecode stock check`` (roll up, recount from the code state): no mismatch."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import psycopg
from psycopg.rows import dict_row

from app._core import gs1_check_digit
from app.logistics.rollup import recount, rollup_alone
from tests.helpers import assert_error, issue_cases, issue_units, sales_order

_ids = itertools.count()


class Goods:
    def __init__(self, units: list[str], spare: list[str], cases: list[str], product_id: int):
        self.units, self.spare, self.cases, self.product_id = units, spare, cases, product_id


async def pack(
    client: Any, login: Any, app: Any, demo: Any, cases: int, lot: str, *, spare: int = 4
) -> Goods:
    """``cases`` inner cases of 10 sun-cream units packed at the factory and taken into the
    factory warehouse WH-SZ-01; ``spare`` units of the same batch are never activated."""
    batch_no, product_id = await issue_units(client, login, demo, cases * 10 + spare)
    ssccs = await issue_cases(client, login, demo, "inner", cases + 1)  # the last: never packed
    serials = [app.state.scheme.serial(batch_no, i) for i in range(cases * 10 + spare)]
    operator = await login("operator")
    response = await client.put(
        "/lines/H13/context",
        headers=operator,
        json={"product_id": product_id, "lot": lot, "production_date": "2026-11-10"},
    )
    assert response.status_code == 200, response.text
    scans = []
    for c in range(cases):
        for code in [*serials[c * 10 : c * 10 + 10], ssccs[c]]:
            scans.append({"id": f"h13-{next(_ids)}", "code": code, "at": "2026-11-10T08:00:00Z"})
    response = await client.post("/lines/H13/scans", headers=operator, json={"scans": scans})
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text
    clerk = await login("clerk")
    await move(client, clerk, ssccs[:cases], kind="factory_inbound")
    return Goods(serials[: cases * 10], serials[cases * 10 :], ssccs, product_id)


async def document(
    client: Any, headers: Any, codes: list[str] | None = None, **fields: Any
) -> dict[str, Any]:
    created = await client.post("/documents", headers=headers, json=fields)
    assert created.status_code == 201, created.text
    doc: dict[str, Any] = created.json()
    if codes:
        added = await client.post(
            f"/documents/{doc['id']}/codes", headers=headers, json={"codes": codes}
        )
        assert added.status_code == 200 and added.json()["rejected"] == 0, added.text
    return doc


async def move(client: Any, headers: Any, codes: list[str] | None, **fields: Any) -> Any:
    """Create, fill and confirm a document; the confirmed document."""
    doc = await document(client, headers, codes, **fields)
    response = await client.post(f"/documents/{doc['id']}/confirm", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def order_state(client: Any, login: Any, order_id: int) -> tuple[str, int, int]:
    """(status, shipped, received) of a one-line order."""
    response = await client.get(f"/orders/{order_id}", headers=await login("partner"))
    assert response.status_code == 200, response.text
    body = response.json()
    [line] = body["lines"]
    return body["status"], line["shipped"], line["received"]


async def state_of(app: Any, serial: str) -> dict[str, Any] | None:
    batch_no, index, _ = app.state.scheme.verify(serial)
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """SELECT status, holder_org_id, transit_to, channel_org_id, store_org_id,
                          parent_sscc, shipped_at IS NOT NULL AS shipped
                   FROM unit_state WHERE code = %s""",
                ((batch_no << 32) | index,),
            )
        ).fetchone()
    return dict(row) if row else None


async def stock_check(settings: Any) -> list[Any]:
    """What ``tracecode stock check`` does: roll up (one roller at a time), then recount."""
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        await rollup_alone(conn, wait=True)
        return await recount(conn)


async def stock_at(settings: Any, org_id: int, product_id: int, lot: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        row = await (
            await conn.execute(
                "SELECT on_hand, in_transit FROM stock WHERE org_id = %s AND product_id = %s "
                "AND lot = %s",
                (org_id, product_id, lot),
            )
        ).fetchone()
    return (row["on_hand"], row["in_transit"]) if row else (0, 0)


def replace(old: str, new: str) -> dict[str, str]:
    return {"old": old, "new": new, "reason": "failed QC"}


# -- item 2: corrections only on goods on hand --------------------------------------------------


async def test_goods_in_transit_or_sold_are_not_corrected_and_stock_stays_right(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    lot = f"H13T{next(_ids)}"
    goods = await pack(client, login, app, demo, 2, lot)
    clerk, operator = await login("clerk"), await login("operator")
    agent_admin = await login("agent_admin")
    shipment = await move(
        client, clerk, goods.cases[:1], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    # the shipped case and its units are in transit: the sender's subtree and the receiver get a
    # clear 409, nothing changes
    old, new = goods.units[0], goods.spare[0]
    for headers in (operator, agent_admin):
        assert_error(
            await client.post("/packing/replace", headers=headers, json=replace(old, new)),
            *((409, "not_on_hand") if headers is operator else (422, "not_a_factory")),
        )
        assert_error(
            await client.post(
                "/packing/unpack",
                headers=headers,
                json={"parent": goods.cases[0], "reason": "recount"},
            ),
            409,
            "not_on_hand",
        )
    assert await state_of(app, new) is None
    assert (await state_of(app, old))["status"] == "active"  # type: ignore[index]
    assert await stock_check(settings) == []
    # the line's newest packing was moved (taken into the warehouse): undo refuses it, and
    # undoes no older packing instead
    assert_error(
        await client.post("/lines/H13/undo", headers=operator, json={"reason": "x"}),
        409,
        "packing_moved",
    )

    # received: the agent holds it, but a replacement activates a new code, which only a
    # factory or the brand does (probe: an agent activated a printer's unused codes); the
    # brand replaces a unit at the agent, and the new one takes over everything
    agent = await login("agent_clerk")
    await move(client, agent, None, kind="inbound", shipment_id=shipment["id"])
    assert_error(
        await client.post("/packing/replace", headers=agent_admin, json=replace(old, new)),
        422,
        "not_a_factory",
    )
    brand = await login("admin")
    response = await client.post("/packing/replace", headers=brand, json=replace(old, new))
    assert response.status_code == 200, response.text
    assert response.json()["parent"] == goods.cases[0]
    assert await state_of(app, new) == {
        "status": "active",
        "holder_org_id": demo["AGENT-ZJ"],
        "transit_to": None,
        "channel_org_id": demo["AGENT-ZJ"],
        "store_org_id": None,
        "parent_sscc": int(goods.cases[0]),
        "shipped": True,
    }
    assert (await state_of(app, old))["status"] == "void"  # type: ignore[index]
    assert await stock_check(settings) == []
    assert await stock_at(settings, demo["AGENT-ZJ"], goods.product_id, lot) == (10, 0)
    assert await stock_at(settings, demo["WH-SZ-01"], goods.product_id, lot) == (10, 0)

    # at the store, a sold unit is not on hand either (the agent is the store's ancestor)
    to_store = await move(
        client, agent, goods.cases[:1], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    store = await login("store_clerk")
    await move(client, store, None, kind="inbound", shipment_id=to_store["id"])
    sold = await client.post("/sales", headers=store, json={"codes": [goods.units[1]]})
    assert sold.status_code == 201, sold.text
    assert_error(
        await client.post(
            "/packing/replace", headers=brand, json=replace(goods.units[1], goods.spare[1])
        ),
        409,
        "not_on_hand",
    )
    # a unit on hand at the store: replaced with its designated store and channel kept
    response = await client.post(
        "/packing/replace", headers=brand, json=replace(goods.units[2], goods.spare[2])
    )
    assert response.status_code == 200, response.text
    kept = await state_of(app, goods.spare[2])
    assert kept is not None
    assert (kept["holder_org_id"], kept["store_org_id"], kept["channel_org_id"]) == (
        demo["STORE-HZ-01"],
        demo["STORE-HZ-01"],
        demo["AGENT-ZJ"],
    )
    assert await stock_check(settings) == []
    assert await stock_at(settings, demo["STORE-HZ-01"], goods.product_id, lot) == (9, 0)


# -- item 5: only the holder's subtree corrects --------------------------------------------------


async def test_only_the_holders_subtree_may_correct_others_get_404(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    goods = await pack(client, login, app, demo, 3, f"H13S{next(_ids)}")
    gd, operator = await login("gd_admin"), await login("operator")
    # another agent: the factory's goods answer exactly as a code that does not exist
    refused = [
        assert_error(
            await client.post("/packing/unpack", headers=gd, json=body), 404, "unknown_code"
        )
        for body in (
            {"parent": goods.cases[0], "reason": "x"},
            {"parent": goods.cases[0], "children": goods.units[:1], "reason": "x"},
        )
    ]
    assert_error(  # and no agent replaces (it would activate a new code)
        await client.post(
            "/packing/replace", headers=gd, json=replace(goods.units[0], goods.spare[0])
        ),
        422,
        "not_a_factory",
    )
    never_packed = goods.cases[-1]
    unknown = assert_error(
        await client.post(
            "/packing/unpack", headers=operator, json={"parent": never_packed, "reason": "x"}
        ),
        404,
        "unknown_code",
    )
    never_active = assert_error(
        await client.post(
            "/packing/replace", headers=operator, json=replace(goods.spare[0], goods.spare[1])
        ),
        404,
        "unknown_code",
    )
    assert [e["details"] for e in refused] == [unknown["details"]] * 2
    assert never_active["details"] == unknown["details"]
    not_issued = "16901234999999999"  # a valid SSCC of the brand's prefix that was never issued
    not_issued += str(gs1_check_digit(not_issued))
    assert_error(
        await client.post(
            "/packing/unpack", headers=operator, json={"parent": not_issued, "reason": "x"}
        ),
        404,
        "unknown_code",
    )
    assert (await state_of(app, goods.units[0]))["parent_sscc"] == int(goods.cases[0])  # type: ignore[index]
    assert await state_of(app, goods.spare[0]) is None

    # the factory (an ancestor of its warehouse) may correct what the warehouse holds
    response = await client.post(
        "/packing/unpack",
        headers=operator,
        json={"parent": goods.cases[2], "children": goods.units[20:21], "reason": "QC sample"},
    )
    assert response.status_code == 200, response.text

    # once the agent holds a case, the factory gets 404 and the agent may correct it
    clerk, agent = await login("clerk"), await login("agent_clerk")
    shipment = await move(
        client, clerk, goods.cases[:1], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    await move(client, agent, None, kind="inbound", shipment_id=shipment["id"])
    assert_error(
        await client.post(
            "/packing/unpack", headers=operator, json={"parent": goods.cases[0], "reason": "x"}
        ),
        404,
        "unknown_code",
    )
    assert_error(
        await client.post(
            "/packing/replace", headers=operator, json=replace(goods.units[1], goods.spare[1])
        ),
        404,
        "unknown_code",
    )
    assert_error(
        await client.post(
            "/packing/unpack", headers=gd, json={"parent": goods.cases[0], "reason": "x"}
        ),
        404,
        "unknown_code",
    )
    response = await client.post(
        "/packing/unpack",
        headers=await login("agent_admin"),
        json={"parent": goods.cases[0], "children": goods.units[:1], "reason": "shelf sample"},
    )
    assert response.status_code == 200, response.text
    assert (await state_of(app, goods.units[0]))["parent_sscc"] is None  # type: ignore[index]
    assert await stock_check(settings) == []


# -- item 3: a receipt against a shipment counts on the shipment's order --------------------------


async def test_receiving_against_a_shipment_counts_on_its_order(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    goods = await pack(client, login, app, demo, 3, f"H13R{next(_ids)}")
    order_id = await sales_order(client, login, demo, goods.product_id, 30)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    shipment = await move(client, clerk, goods.cases[:3], kind="outbound", order_id=order_id)
    assert await order_state(client, login, order_id) == ("shipped", 30, 0)
    # part of it, scanned
    part = await move(client, agent, goods.cases[:1], kind="inbound", shipment_id=shipment["id"])
    assert part["order_id"] == order_id and part["units"] == 10
    assert await order_state(client, login, order_id) == ("shipped", 30, 10)
    # the rest of the shipment in one action
    rest = await move(client, agent, None, kind="inbound", shipment_id=shipment["id"])
    assert rest["units"] == 20 and rest["discrepancies"] is None
    assert await order_state(client, login, order_id) == ("received", 30, 30)
    assert_error(await _receive_again(client, agent, shipment["id"]), 409, "nothing_in_transit")
    # a shipment of another order cannot be booked on this one
    other = await sales_order(client, login, demo, goods.product_id, 5)
    assert_error(
        await client.post(
            "/documents",
            headers=agent,
            json={"kind": "inbound", "shipment_id": shipment["id"], "order_id": other},
        ),
        422,
        "wrong_order",
    )
    assert await stock_check(settings) == []


async def _receive_again(client: Any, headers: Any, shipment_id: int) -> Any:
    doc = await document(client, headers, kind="inbound", shipment_id=shipment_id)
    return await client.post(f"/documents/{doc['id']}/confirm", headers=headers)


# -- item 4: receiving an order takes what is in transit now ---------------------------------------


async def test_receive_order_takes_each_part_of_a_split_shipment(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    lot = f"H13P{next(_ids)}"
    goods = await pack(client, login, app, demo, 3, lot)
    order_id = await sales_order(client, login, demo, goods.product_id, 30)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    await move(client, clerk, goods.cases[:2], kind="outbound", order_id=order_id)
    first = await client.post(f"/orders/{order_id}/receive", headers=agent)
    assert first.status_code == 200, first.text
    assert first.json()["units"] == 20
    assert await order_state(client, login, order_id) == ("open", 20, 20)
    await move(client, clerk, goods.cases[2:3], kind="outbound", order_id=order_id)
    second = await client.post(f"/orders/{order_id}/receive", headers=agent)
    assert second.status_code == 200, second.text
    assert (second.json()["units"], second.json()["packages"]) == (10, 1)
    assert await order_state(client, login, order_id) == ("received", 30, 30)
    # nothing is on its way any more: a clear answer, and nothing is written
    assert_error(
        await client.post(f"/orders/{order_id}/receive", headers=agent), 409, "nothing_in_transit"
    )
    # only the receiver receives; others do not see the order
    assert_error(
        await client.post(f"/orders/{order_id}/receive", headers=await login("gd_admin")),
        404,
        "unknown_order",
    )
    assert await stock_check(settings) == []
    assert await stock_at(settings, demo["AGENT-ZJ"], goods.product_id, lot) == (30, 0)


# -- decisions sent at once (probe D2–D4): exactly one wins, the goods follow the winner ----------


async def _at_once(client: Any, headers: Any, doc_id: int, actions: list[str], loses: str) -> None:
    """The actions sent at once: exactly one answers 200, every other 409 ``loses``."""
    answers = await asyncio.gather(
        *(client.post(f"/documents/{doc_id}/{a}", headers=headers, json={}) for a in actions)
    )
    assert sum(a.status_code == 200 for a in answers) == 1, [a.text for a in answers]
    for answer in answers:
        if answer.status_code != 200:
            assert_error(answer, 409, loses)


async def _outcome(
    client: Any, headers: Any, app: Any, doc_id: int, goods: Goods, case: str
) -> tuple[str, dict[str, Any]]:
    """The document's status afterwards, and the state of the case's first unit."""
    status = (await client.get(f"/documents/{doc_id}", headers=headers)).json()["status"]
    unit = await state_of(app, goods.units[goods.cases.index(case) * 10])
    assert unit is not None
    return status, unit


async def test_confirm_and_cancel_at_once_one_wins_and_the_goods_follow_it(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """The defect: the status was read before the row lock; a cancel that waited on a confirm
    still saw the draft, so both answered 200 and a shipment in transit ended ``cancelled``
    (its goods stranded: not receivable, not shippable)."""
    goods = await pack(client, login, app, demo, 3, f"H13C{next(_ids)}")
    clerk = await login("clerk")
    for case in goods.cases[:3]:
        doc = await document(
            client, clerk, [case], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
        )
        await _at_once(client, clerk, doc["id"], ["cancel", "confirm"] * 5, "not_draft")
        status, unit = await _outcome(client, clerk, app, doc["id"], goods, case)
        if status == "confirmed":
            assert unit["transit_to"] == demo["AGENT-ZJ"]
        else:
            assert status == "cancelled"
            assert unit["transit_to"] is None and unit["holder_org_id"] == demo["WH-SZ-01"]
    assert await stock_check(settings) == []


async def test_approve_and_reject_at_once_one_wins_and_the_goods_follow_it(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    goods = await pack(client, login, app, demo, 3, f"H13A{next(_ids)}")
    clerk, approver = await login("clerk"), await login("approver")
    for case in goods.cases[:3]:
        doc = await move(client, clerk, [case], kind="exception", reason="gift")
        assert doc["status"] == "pending_approval"
        await _at_once(client, approver, doc["id"], ["reject", "approve"] * 4, "not_pending")
        status, unit = await _outcome(client, clerk, app, doc["id"], goods, case)
        left = unit["holder_org_id"] != demo["WH-SZ-01"] or unit["status"] != "active"
        assert left == (status == "confirmed"), (status, unit)
        assert status in ("confirmed", "rejected")
    assert await stock_check(settings) == []


async def test_two_shipments_against_one_order_confirmed_at_once_never_exceed_it(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """The defect: the order's lines were read unlocked; two outbounds of different goods (whose
    unit locks do not serialise them) both passed, 20 shipped against 15 ordered."""
    goods = await pack(client, login, app, demo, 4, f"H13O{next(_ids)}")
    clerk = await login("clerk")
    for first, second in ((0, 1), (2, 3)):
        order_id = await sales_order(client, login, demo, goods.product_id, 15)
        docs = [
            await document(client, clerk, [goods.cases[i]], kind="outbound", order_id=order_id)
            for i in (first, second)
        ]
        answers = await asyncio.gather(
            *(client.post(f"/documents/{d['id']}/confirm", headers=clerk) for d in docs)
        )
        assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
        assert_error(next(a for a in answers if a.status_code == 409), 409, "over_shipment")
        assert await order_state(client, login, order_id) == ("open", 10, 0)
    assert await stock_check(settings) == []


async def test_goods_in_transit_are_never_packed_by_the_sender_or_the_receiver(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """The defect (probe F1): packing checked the holder or the destination, never whether the
    goods were on hand: the factory repacked units it had shipped, the agent packed units still
    on their way to it (and on receipt they left those cases silently)."""
    lot = f"H13T{next(_ids)}"
    goods = await pack(client, login, app, demo, 2, lot)
    clerk = await login("clerk")
    await move(client, clerk, goods.cases[:1], kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    moving, spare_case = goods.units[:10], goods.cases[-1]
    for user, line in (("operator", "H13"), ("agent_admin", f"ZJ{next(_ids)}")):
        headers = await login(user)
        context = {"product_id": goods.product_id, "lot": lot, "production_date": "2026-11-10"}
        response = await client.put(f"/lines/{line}/context", headers=headers, json=context)
        assert response.status_code == 200, response.text
        at = "2026-11-11T08:00:00Z"
        named = [{"id": f"t{next(_ids)}", "code": spare_case, "at": at, "children": moving[:2]}]
        body = await client.post(f"/lines/{line}/scans", headers=headers, json={"scans": named})
        assert body.status_code == 200, body.text
        [result] = body.json()["scans"]
        assert (result["result"], result["reason"]) == ("rejected", "child_rejected"), result
        assert f"child {moving[0]}: in_transit" in result["message"], result
        scanned = [
            {"id": f"t{next(_ids)}", "code": c, "at": at} for c in [*moving[2:4], spare_case]
        ]
        body = await client.post(f"/lines/{line}/scans", headers=headers, json={"scans": scanned})
        assert body.status_code == 200, body.text
        reasons = [r.get("reason") for r in body.json()["scans"]]
        assert reasons == ["in_transit", "in_transit", "empty_case"], body.json()
        unit = await state_of(app, moving[0])
        assert unit is not None and unit["parent_sscc"] is not None  # still in its shipped case
        assert unit["transit_to"] == demo["AGENT-ZJ"]
    assert await stock_check(settings) == []


async def test_code_status_is_for_who_sees_the_batch_or_holds_the_unit(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Probe B: anyone with ``orgs.read`` read any code's state, batch and index (a sibling's
    goods, a printer's unused codes) while ``/trace`` answered 404 for the same code."""
    goods = await pack(client, login, app, demo, 1, f"H13C{next(_ids)}")
    clerk = await login("clerk")
    await move(client, clerk, goods.cases[:1], kind="outbound", counterparty_id=demo["AGENT-ZJ"])

    async def status(user: str, serial: str) -> str:
        response = await client.get(f"/codes/{serial}/status", headers=await login(user))
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["batch_no"] is None) == (body["status"] == "unknown"), body
        return str(body["status"])

    shipped, unused = goods.units[0], goods.spare[0]
    assert [await status(u, shipped) for u in ("planner", "agent_admin", "clerk")] == ["active"] * 3
    for user in ("gd_admin", "gz_clerk", "store_clerk", "gd_fieldrep"):
        assert await status(user, shipped) == "unknown", user
        assert await status(user, unused) == "unknown", user
    assert await status("planner", unused) == "issued_not_active"


async def test_a_replacement_racing_a_void_of_the_new_code_s_batch_waits_and_is_refused(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the replacement read the new code before the void committed and activated it,
    an active unit in a void batch (stocked and shipped, while verification called it void)."""
    from app.codes.service import void_batch
    from tests.helpers import acting

    goods = await pack(client, login, app, demo, 1, f"H13V{next(_ids)}", spare=0)
    new_batch, _ = await issue_units(client, login, demo, 2)
    new = app.state.scheme.serial(new_batch, 0)
    brand = await login("factory_admin")
    async with app.state.pool.connection() as hold:
        planner = await acting(hold, "planner")
        await hold.commit()
        await void_batch(hold, planner, new_batch, "stolen labels")  # held open
        racing = asyncio.create_task(
            client.post("/packing/replace", headers=brand, json=replace(goods.units[0], new))
        )
        await asyncio.sleep(1)
        assert not racing.done()  # it waits for the void
        await hold.commit()
    assert_error(await racing, 409, "void")
    assert await state_of(app, new) is None
    assert (await state_of(app, goods.units[0]))["status"] == "active"


async def test_an_unpack_waits_for_a_document_holding_its_case_without_a_deadlock(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A probe: the unpack locked the case's units, then the case; a confirm locks the case,
    then its units — so the two deadlocked (one of them rolled back, 409 ``retry``). Here a
    transaction takes the locks in a confirm's order while an unpack of the case is sent."""
    goods = await pack(client, login, app, demo, 1, f"H13D{next(_ids)}", spare=0)
    case = goods.cases[0]
    brand = await login("factory_admin")
    async with app.state.pool.connection() as hold:
        await hold.execute("SELECT 1 FROM case_state WHERE sscc = %s FOR UPDATE", (int(case),))
        racing = asyncio.create_task(
            client.post("/packing/unpack", headers=brand, json={"parent": case, "reason": "x"})
        )
        await asyncio.sleep(1)
        assert not racing.done()
        await hold.execute("SET LOCAL lock_timeout = '5s'")
        await hold.execute(  # the confirm's next step (movements.expand): the case's units
            "SELECT 1 FROM unit_state WHERE parent_sscc = %s ORDER BY code FOR UPDATE",
            (int(case),),
        )
        await hold.commit()
    answer = await racing
    assert answer.status_code == 200, answer.text
    assert (await state_of(app, goods.units[0]))["parent_sscc"] is None
    assert await stock_check(settings) == []


_return_ids = itertools.count()


async def test_a_factory_warehouse_clerk_sees_the_orders_it_ships(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the clerk of WH-SZ-01 ships the factory's orders (a draft takes them), but GET
    /orders listed none and GET /orders/{id} was 404: the staff app's order picker was empty."""
    goods = await pack(client, login, app, demo, 1, f"ORD{next(_return_ids)}")
    order_id = await sales_order(client, login, demo, goods.product_id, 10)
    clerk = await login("clerk")
    doc = await document(client, clerk, goods.cases[:1], kind="outbound", order_id=order_id)
    assert doc["order_id"] == order_id  # the clerk may ship against it
    listed = await client.get("/orders", headers=clerk, params={"per_page": 200})
    assert listed.status_code == 200, listed.text
    assert order_id in [o["id"] for o in listed.json()["items"]], listed.json()["total"]
    shown = await client.get(f"/orders/{order_id}", headers=clerk)
    assert shown.status_code == 200, shown.text


async def test_a_return_without_counterparty_goes_back_to_who_shipped_the_goods(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: an agent's ``{"kind": "return"}`` of goods the factory warehouse shipped it went
    to its parent, the brand's head office, which never shipped them. It goes back to the last
    shipper (``DocumentIn``: "default: who shipped the goods to us")."""
    goods = await pack(client, login, app, demo, 1, f"RET{next(_return_ids)}")
    clerk, agent = await login("clerk"), await login("agent_clerk")
    ship = await move(
        client, clerk, goods.cases[:1], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    await move(client, agent, None, kind="inbound", shipment_id=ship["id"])
    back = await document(client, agent, goods.cases[:1], kind="return")
    assert back["counterparty_id"] == demo["WH-SZ-01"], back["counterparty_name"]


async def test_a_return_whose_last_shipper_was_deactivated_goes_to_the_parent(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the warehouse that last supplied the store was closed, and the store's default
    return was 409 ``org_inactive``. It goes to the parent, active."""
    import secrets

    admin, clerk = await login("admin"), await login("clerk")
    agent, store = await login("agent_clerk"), await login("store_clerk")
    tag = secrets.token_hex(3).upper()
    made = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "warehouse",
            "name": f"ZJ warehouse {tag}",
            "erp_code": f"WZ-{tag}",
            "parent_id": demo["AGENT-ZJ"],
        },
    )
    assert made.status_code == 201, made.text
    depot = int(made.json()["id"])
    goods = await pack(client, login, app, demo, 1, f"RG{tag}")
    case = goods.cases[:1]
    ship = await move(client, clerk, case, kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    await move(client, agent, None, kind="inbound", shipment_id=ship["id"])
    ship = await move(client, agent, case, kind="outbound", counterparty_id=depot)
    await move(client, agent, None, kind="inbound", shipment_id=ship["id"], org_id=depot)
    ship = await move(
        client, agent, case, kind="outbound", org_id=depot, counterparty_id=demo["STORE-HZ-01"]
    )
    await move(client, store, None, kind="inbound", shipment_id=ship["id"])
    closed = await client.post(f"/orgs/{depot}/deactivate", headers=admin)
    assert closed.status_code == 200, closed.text
    back = await client.post("/documents", headers=store, json={"kind": "return"})
    assert back.status_code == 201, back.text
    assert back.json()["counterparty_id"] == demo["AGENT-ZJ"]


async def _export_all(client: Any, headers: Any) -> list[dict[str, Any]]:
    """Every document of ``GET /documents/export`` the caller may read, page by page."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/documents/export", headers=headers, params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            break
    return items


async def test_a_shipment_id_on_an_outbound_names_any_document_unchecked(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a clerk drafts an outbound with a ``shipment_id`` — a field only an inbound uses.
    It was stored unchecked: the id of the Guangdong agent's own draft (404 ``unknown_document``
    to the clerk) was accepted (201), and once confirmed the clerk's ERP export (``GET
    /documents/export``) named that foreign document's number as its ``shipment_doc_no``; an id
    that does not exist answered 409 ``in_use`` (a foreign-key violation): an existence oracle
    for every document id. A ``shipment_id`` on any kind but an inbound is refused, 422
    ``shipment_not_allowed``, as an ``order_id`` where it does not belong is."""
    clerk, gd = await login("clerk"), await login("gd_admin")
    foreign = await document(client, gd, None, kind="outbound", counterparty_id=demo["STORE-GZ-01"])
    assert_error(
        await client.get(f"/documents/{foreign['id']}", headers=clerk), 404, "unknown_document"
    )
    goods = await pack(client, login, app, demo, 1, f"PDS{next(_ids)}")
    made = await client.post(
        "/documents",
        headers=clerk,
        json={
            "kind": "outbound",
            "counterparty_id": demo["AGENT-ZJ"],
            "shipment_id": foreign["id"],
        },
    )
    if made.status_code == 201:  # accepted: see what leaks once it is confirmed
        doc = made.json()
        added = await client.post(
            f"/documents/{doc['id']}/codes", headers=clerk, json={"codes": goods.cases[:1]}
        )
        assert added.status_code == 200, added.text
        confirmed = await client.post(f"/documents/{doc['id']}/confirm", headers=clerk)
        assert confirmed.status_code == 200, confirmed.text
        exported = [d for d in await _export_all(client, clerk) if d["id"] == doc["id"]]
        assert exported and exported[0]["shipment_doc_no"] != foreign["doc_no"], (
            "the clerk's export names another agent's document number",
            exported[0]["shipment_doc_no"] if exported else None,
        )
    assert_error(made, 422, "shipment_not_allowed")
    for fields in (
        {"kind": "outbound", "counterparty_id": demo["AGENT-ZJ"]},
        {"kind": "return"},
        {"kind": "exception", "reason": "gift"},
        {"kind": "factory_inbound"},
    ):  # an id that does not exist answers the same: no oracle
        for shipment_id in (10**12, foreign["id"]):
            missing = await client.post(
                "/documents", headers=clerk, json={**fields, "shipment_id": shipment_id}
            )
            assert_error(missing, 422, "shipment_not_allowed")


async def test_a_counterparty_on_an_inbound_or_an_exception_is_refused_not_dropped(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """An inbound's sender is who shipped what it receives and an exception outbound has no
    counterparty: a ``counterparty_id`` on either was silently dropped (the draft named another
    organisation than the one sent). Refused, 422 ``counterparty_not_allowed``."""
    clerk, agent = await login("clerk"), await login("agent_clerk")
    goods = await pack(client, login, app, demo, 1, f"PDC{next(_ids)}")
    ship = await move(
        client, clerk, goods.cases[:1], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    inbound = await client.post(
        "/documents",
        headers=agent,
        json={"kind": "inbound", "shipment_id": ship["id"], "counterparty_id": demo["AGENT-GD"]},
    )
    assert_error(inbound, 422, "counterparty_not_allowed")
    gift = await client.post(
        "/documents",
        headers=clerk,
        json={"kind": "exception", "reason": "gift", "counterparty_id": demo["AGENT-ZJ"]},
    )
    assert_error(gift, 422, "counterparty_not_allowed")
    received = await move(client, agent, None, kind="inbound", shipment_id=ship["id"])
    assert received["counterparty_id"] == demo["WH-SZ-01"]


async def test_a_reason_only_on_a_kind_that_gives_one(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: ``reason`` was free text on every kind — an ordinary outbound with reason "gift"
    was kept, and its shipping event's ``details.reason`` and the ERP export read a sale
    channel's shipment as a gift. An exception outbound gives one of its reasons and a return
    may give a consumer return's (``ReturnReason``; else 422 ``bad_reason``); any other kind
    answers 422 ``reason_not_allowed``, as a counterparty or an order it does not take."""
    clerk, agent = await login("clerk"), await login("agent_clerk")
    goods = await pack(client, login, app, demo, 1, f"PDR{next(_ids)}")
    ship = await move(
        client, clerk, goods.cases[:1], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    refused = {
        "outbound": (agent, {"counterparty_id": demo["STORE-HZ-01"]}),
        "inbound": (agent, {"shipment_id": ship["id"]}),
        "factory_inbound": (clerk, {}),
    }
    for kind, (headers, fields) in refused.items():
        for reason in ("gift", "damaged"):
            answer = await client.post(
                "/documents", headers=headers, json={"kind": kind, "reason": reason, **fields}
            )
            assert_error(answer, 422, "reason_not_allowed")
            assert "no reason" in answer.json()["error"]["message"]
    bad = await client.post("/documents", headers=agent, json={"kind": "return", "reason": "gift"})
    assert_error(bad, 422, "bad_reason")
    back = await document(client, agent, None, kind="return", reason="damaged")
    assert back["reason"] == "damaged"
    assert (await document(client, agent, None, kind="return"))["reason"] is None
    gift = await document(client, clerk, None, kind="exception", reason="gift")
    assert gift["reason"] == "gift"
    # without a reason, each is made as before
    received = await move(client, agent, None, kind="inbound", shipment_id=ship["id"])
    assert received["reason"] is None
