"""Every movement kind, table-driven, through the real service on the real database: the stock
each side gains or loses, the event's bizStep, disposition and route (issue 14 item 1).

One journey makes every kind of movement once — factory inbound, outbound to the agent, its
receipt, outbound to a store, the store's receipt, a sale, a consumer return, a return upstream
and an approved exception outbound — and records each movement's event. ``EXPECTED`` says, per
kind and independently of ``app.logistics.movements.MOVEMENTS``, what that event and its
``stock_deltas`` rows must be. A new kind adds its row here and its step to the journey.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args, get_type_hints

import pytest

from app.logistics import documents, movements
from app.logistics.movements import MOVEMENTS, Movement
from app.logistics.schemas import DocKind, DocumentIn
from tests.helpers import assert_error, sales_order
from tests.rebates_support import store_goods
from tests.test_logistics import confirm, document, pack

Side = str  # "org" (the organisation doing it) or "counterparty"


@dataclass(frozen=True)
class Expected:
    stock: dict[tuple[Side, str], int]  # (side, column) -> units per unit moved
    biz_step: str
    disposition: str
    route: tuple[Side | None, Side | None]  # the event's (source, destination)


EXPECTED: dict[str, Expected] = {
    "factory_inbound": Expected(
        {("counterparty", "on_hand"): -1, ("org", "on_hand"): 1},
        "receiving", "sellable_not_accessible", ("counterparty", "org"),
    ),
    "outbound": Expected(
        {("org", "on_hand"): -1, ("counterparty", "in_transit"): 1},
        "shipping", "in_transit", ("org", "counterparty"),
    ),
    "inbound": Expected(  # at the agent: not a store
        {("org", "in_transit"): -1, ("org", "on_hand"): 1},
        "receiving", "sellable_not_accessible", ("counterparty", "org"),
    ),
    "inbound at a store": Expected(
        {("org", "in_transit"): -1, ("org", "on_hand"): 1},
        "receiving", "sellable_accessible", ("counterparty", "org"),
    ),
    "sale": Expected({("org", "on_hand"): -1}, "retail_selling", "retail_sold", ("org", None)),
    "consumer_return": Expected({("org", "on_hand"): 1}, "receiving", "returned", (None, None)),
    "return": Expected(
        {("org", "on_hand"): -1, ("counterparty", "in_transit"): 1},
        "shipping", "returned", ("org", "counterparty"),
    ),
    "exception": Expected(
        {("org", "on_hand"): -1}, "shipping", "non_sellable_other", ("org", None)
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Moved:
    """One movement the journey made: its event, who did it, how many units moved."""

    event_id: int
    org: int
    counterparty: int | None
    units: int
    doc_no: str | None = None
    serials: tuple[str, ...] = ()


async def _event_of(conn: Any, doc_id: int) -> int:
    row = await (
        await conn.execute("SELECT event_id FROM documents WHERE id = %s", (doc_id,))
    ).fetchone()
    await conn.commit()
    assert row["event_id"] is not None
    return int(row["event_id"])


@pytest.fixture(scope="module")
async def journey(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Moved]:
    """Every kind of movement, once, in the order goods travel."""
    goods = await pack(client, login, app, demo, 3)
    units, cases = goods["units"], goods["cases"]
    clerk, agent = await login("clerk"), await login("agent_clerk")
    store, approver = await login("store_clerk"), await login("approver")
    wh, factory, zj, hz = (
        demo["WH-SZ-01"], demo["FACTORY-SZ"], demo["AGENT-ZJ"], demo["STORE-HZ-01"]
    )  # fmt: skip
    moved: dict[str, Moved] = {}
    async with app.state.pool.connection() as conn:

        async def made(key: str, headers: Any, doc: dict[str, Any], org: int, other: Any) -> Any:
            response = await confirm(client, headers, doc)
            assert response.status_code == 200, response.text
            body = response.json()
            event_id = await _event_of(conn, doc["id"])
            moved[key] = Moved(event_id, org, other, body["units"], body["doc_no"])
            return body

        inbound = await document(client, clerk, cases, kind="factory_inbound")
        await made("factory_inbound", clerk, inbound, wh, factory)
        ship = await document(client, clerk, cases[:2], kind="outbound", counterparty_id=zj)
        await made("outbound", clerk, ship, wh, zj)
        receipt = await document(client, agent, kind="inbound", shipment_id=ship["id"])
        await made("inbound", agent, receipt, zj, wh)
        to_store = await document(client, agent, cases[:1], kind="outbound", counterparty_id=hz)
        await confirm(client, agent, to_store)
        at_store = await document(client, store, kind="inbound", shipment_id=to_store["id"])
        await made("inbound at a store", store, at_store, hz, zj)

        sold = await client.post("/sales", headers=store, json={"codes": [units[0]]})
        assert sold.status_code == 201, sold.text
        moved["sale"] = Moved(await _event_of(conn, sold.json()["id"]), hz, None, 1)
        back = await client.post(
            "/returns", headers=store, json={"code": units[0], "reason": "other"}
        )
        assert back.status_code == 200, back.text
        batch_no, index, _ = app.state.scheme.verify(units[0])
        row = await (
            await conn.execute(
                "SELECT last_event_id FROM unit_state WHERE code = %s", ((batch_no << 32) | index,)
            )
        ).fetchone()
        await conn.commit()
        moved["consumer_return"] = Moved(row["last_event_id"], hz, None, 1)

        # back upstream to the store's parent (the default counterparty), out of their case
        upstream = await document(client, store, units[1:3], kind="return")
        assert upstream["counterparty_id"] == zj
        await made("return", store, upstream, hz, zj)

        # an exception outbound moves nothing until it is approved
        gift = await document(client, clerk, units[20:22], kind="exception", reason="gift")
        pending = await confirm(client, clerk, gift)
        assert pending.json()["status"] == "pending_approval"
        row = await (
            await conn.execute(
                """SELECT d.event_id, (SELECT count(*) FROM document_lines l
                                       WHERE l.document_id = d.id) AS lines
                   FROM documents d WHERE d.id = %s""",
                (gift["id"],),
            )
        ).fetchone()
        await conn.commit()
        assert (row["event_id"], row["lines"]) == (None, 0)
        approved = await client.post(f"/documents/{gift['id']}/approve", headers=approver, json={})
        assert approved.status_code == 200, approved.text
        event_id = await _event_of(conn, gift["id"])
        moved["exception"] = Moved(event_id, wh, None, 2, serials=tuple(units[20:22]))
    return moved


@pytest.mark.parametrize("kind", list(EXPECTED))
async def test_each_kind_moves_stock_and_records_its_event(
    kind: str, journey: dict[str, Moved], conn: Any
) -> None:
    moved, expected = journey[kind], EXPECTED[kind]
    sides = {"org": moved.org, "counterparty": moved.counterparty, None: None}
    want = {(sides[side], column): n * moved.units for (side, column), n in expected.stock.items()}
    rows = await (
        await conn.execute(
            "SELECT org_id, on_hand, in_transit FROM stock_deltas WHERE event_id = %s",
            (moved.event_id,),
        )
    ).fetchall()
    got: dict[tuple[int | None, str], int] = {}
    for row in rows:
        for column in ("on_hand", "in_transit"):
            if row[column]:
                key = (row["org_id"], column)
                got[key] = got.get(key, 0) + row[column]
    assert got == want
    event = await (
        await conn.execute(
            """SELECT event_type, action, biz_step, disposition, source_org, destination_org,
                      child_count
               FROM events WHERE id = %s""",
            (moved.event_id,),
        )
    ).fetchone()
    assert (event["event_type"], event["action"]) == ("ObjectEvent", "OBSERVE")
    assert (event["biz_step"], event["disposition"]) == (expected.biz_step, expected.disposition)
    source, destination = expected.route
    assert (event["source_org"], event["destination_org"]) == (sides[source], sides[destination])


async def test_units_moved_without_their_case_leave_it(
    journey: dict[str, Moved], conn: Any
) -> None:
    # the upstream return took two units out of the case they had arrived in: one unpacking
    rows = await (
        await conn.execute(
            """SELECT event_type, action, biz_step, child_count, parent_code FROM events
               WHERE details->>'document' = %s AND id <> %s""",
            (journey["return"].doc_no, journey["return"].event_id),
        )
    ).fetchall()
    assert [(r["event_type"], r["action"], r["biz_step"], r["child_count"]) for r in rows] == [
        ("AggregationEvent", "DELETE", "unpacking", 2)
    ]
    assert rows[0]["parent_code"] is not None


def test_the_table_has_every_kind_and_only_known_vocabulary() -> None:
    from app.events.epcis import BizStep, Disposition

    assert set(MOVEMENTS) == set(get_args(DocKind)) | {"consumer_return"}
    assert set(get_args(get_type_hints(DocumentIn)["kind"])) <= set(MOVEMENTS)
    assert {k for k in EXPECTED if k in MOVEMENTS} == set(MOVEMENTS)  # each kind is tested
    for m in MOVEMENTS.values():
        assert m.biz_step in get_args(BizStep) and m.disposition in get_args(Disposition)
        assert len({column for _, column, _ in m.stock}) <= 2
        assert m.receiver is None or any(side == m.receiver and n > 0 for side, _, n in m.stock)
        # only goods travelling along an order count on it: shipped down to the counterparty,
        # or received from a shipment (a factory inbound, exception, sale, return take no order)
        along = (m.receiver == "counterparty" and m.kind != "return") or m.sender == "in_transit"
        assert (m.order_column is not None) == along, m.kind
        assert not m.order_limit or m.order_column == "shipped"


async def test_a_new_kind_is_one_row(
    client: Any, login: Any, app: Any, demo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steps read the row, never the kind's name: a gift transfer (goods given to another
    organisation, who takes them straight into stock) runs through check and apply with only its
    row added. Applied in a transaction that is rolled back (the documents table does not know
    the kind: a real one also needs its name in the ``documents.kind`` CHECK)."""
    gift = Movement(
        kind="gift_transfer", prefix="ZS", direction="outbound",
        sender="org", receiver="counterparty",
        stock=(("org", "on_hand", -1), ("counterparty", "on_hand", 1)),
        unit_sets="holder_org_id = %(other)s", case_sets="holder_org_id = %(other)s",
        biz_step="shipping", disposition="sellable_not_accessible",
    )  # fmt: skip
    monkeypatch.setitem(MOVEMENTS, "gift_transfer", gift)
    goods = await pack(client, login, app, demo, 1)
    clerk = await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    draft = await document(
        client, clerk, goods["units"][:4], kind="outbound", counterparty_id=demo["AGENT-GD"]
    )
    wh, gd = demo["WH-SZ-01"], demo["AGENT-GD"]
    async with app.state.pool.connection() as conn, conn.transaction(force_rollback=True):
        row = await (
            await conn.execute(f"{documents._DOC} WHERE d.id = %s", (draft["id"],))
        ).fetchone()
        plan = await movements.check(conn, app.state.scheme, {**row, "kind": "gift_transfer"})
        assert plan.movement is gift
        event_id = await movements.apply(conn, plan, recorded_by=None, details={})
        deltas = await (
            await conn.execute(
                "SELECT org_id, on_hand, in_transit FROM stock_deltas WHERE event_id = %s",
                (event_id,),
            )
        ).fetchall()
        assert sorted((d["org_id"], d["on_hand"], d["in_transit"]) for d in deltas) == sorted(
            [(wh, -4, 0), (gd, 4, 0)]
        )
        event = await (
            await conn.execute(
                "SELECT biz_step, disposition, source_org, destination_org FROM events "
                "WHERE id = %s",
                (event_id,),
            )
        ).fetchone()
        assert tuple(event.values()) == ("shipping", "sellable_not_accessible", wh, gd)
        holders = await (
            await conn.execute(
                "SELECT DISTINCT holder_org_id FROM unit_state WHERE last_event_id = %s",
                (event_id,),
            )
        ).fetchall()
        assert [h["holder_org_id"] for h in holders] == [gd]


async def test_a_movement_waiting_for_approval_is_checked_first(
    client: Any, login: Any, journey: dict[str, Moved]
) -> None:
    # the goods the approved exception gave away cannot be given away again: refused when
    # confirmed, not when approved — the document stays a draft and nothing moves
    clerk = await login("clerk")
    gone = list(journey["exception"].serials)
    again = await document(client, clerk, gone, kind="exception", reason="sample")
    error = assert_error(await confirm(client, clerk, again), 409, "not_held")
    assert error["details"]["count"] == 2
    got = await client.get(f"/documents/{again['id']}", headers=clerk)
    assert got.json()["status"] == "draft"


async def test_only_a_movement_along_the_order_counts_on_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A factory inbound (production into the factory's own warehouse) and an exception outbound
    (goods leaving the chain: they never reach the order's counterparty, who could never receive
    them) move no order's goods. Drafting one with an ``order_id`` is refused (422
    ``order_not_allowed``, whatever the id: the refusal looks no order up); a draft that carries
    one anyway (written before the refusal) moves without counting on the order. An outbound
    against the order still counts as shipped."""
    goods = await pack(client, login, app, demo, 1)
    units = goods["units"]
    clerk, partner, approver = await login("clerk"), await login("partner"), await login("approver")
    created = await client.post(
        "/orders",
        headers=partner,
        json={
            "erp_no": f"SO-MV-{goods['batch_no']}",
            "from_org_id": demo["FACTORY-SZ"],
            "to_org_id": demo["AGENT-ZJ"],
            "lines": [{"product_id": goods["product_id"], "quantity": 10}],
        },
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    before = await client.get("/documents", headers=clerk, params={"per_page": 1})
    for fields in ({"kind": "factory_inbound"}, {"kind": "exception", "reason": "gift"}):
        for order in (order_id, 2**62):
            error = assert_error(
                await client.post("/documents", headers=clerk, json={**fields, "order_id": order}),
                422,
                "order_not_allowed",
            )
            assert fields["kind"] in error["message"]
    after = await client.get("/documents", headers=clerk, params={"per_page": 1})
    assert after.json()["total"] == before.json()["total"]  # nothing drafted

    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    gift = await document(client, clerk, units[:2], kind="exception", reason="gift")
    await conn.execute("UPDATE documents SET order_id = %s WHERE id = %s", (order_id, gift["id"]))
    await conn.commit()
    assert (await confirm(client, clerk, gift)).json()["status"] == "pending_approval"
    approved = await client.post(f"/documents/{gift['id']}/approve", headers=approver, json={})
    assert approved.status_code == 200, approved.text

    async def counted() -> tuple[str, int, int]:
        got = (await client.get(f"/orders/{order_id}", headers=partner)).json()
        line = got["lines"][0]
        return got["status"], line["shipped"], line["received"]

    status, shipped, received = await counted()
    assert (shipped, received) == (0, 0) and status != "shipped"
    ship = await document(client, clerk, units[2:5], kind="outbound", order_id=order_id)
    assert (await confirm(client, clerk, ship)).status_code == 200
    assert (await counted())[1:] == (3, 0)


async def test_a_return_moves_no_order_s_goods(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A return goes back up the channel: against an order it is refused (422
    order_not_allowed). Before, the order's seller could draft one, and it shipped down to the
    buyer past the order's quantity, with no channel agent set (a probe: 20 shipped of 10)."""
    goods = await pack(client, login, app, demo, 1)
    order = await sales_order(client, login, demo, goods["product_id"], 10)
    refused = await client.post(
        "/documents", headers=await login("clerk"), json={"kind": "return", "order_id": order}
    )
    assert_error(refused, 422, "order_not_allowed")


async def test_a_unit_returned_damaged_is_never_sold_again_after_it_moves(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A unit a consumer brought back damaged goes up the channel by a return document; the
    agent that receives it cannot sell it either (409 not_sellable), nor a store it is shipped
    on to. Before, the receipt's disposition replaced "damaged" and the agent sold it (a stock
    probe)."""
    goods = await store_goods(client, login, app, demo)
    store, agent = await login("store_clerk"), await login("agent_clerk")
    unit = goods["units"][0]
    assert (await client.post("/sales", headers=store, json={"codes": [unit]})).status_code == 201
    back = await client.post("/returns", headers=store, json={"code": unit, "reason": "damaged"})
    assert back.status_code == 200, back.text
    upstream = await document(client, store, [unit], kind="return")
    assert (await confirm(client, store, upstream)).status_code == 200
    received = await document(client, agent, kind="inbound", shipment_id=upstream["id"])
    assert (await confirm(client, agent, received)).status_code == 200
    sale = await client.post("/sales", headers=agent, json={"codes": [unit]})
    assert_error(sale, 409, "not_sellable")


async def test_goods_shipped_again_are_received_under_their_new_shipment_only(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Ten units shipped against an order and received; three go back to the factory warehouse
    and are shipped again by an outbound that names no order. Receiving the order again finds
    nothing in transit under it (409 nothing_in_transit) and the order stays at 10 of 10; the
    three are received under their new shipment. Before, the order took them again: received 13
    of 10 (a stock probe)."""
    goods = await pack(client, login, app, demo, 1)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    order = await sales_order(client, login, demo, goods["product_id"], 10)
    first = await document(client, clerk, goods["units"], kind="outbound", order_id=order)
    assert (await confirm(client, clerk, first)).status_code == 200
    assert (await client.post(f"/orders/{order}/receive", headers=agent)).status_code == 200
    back = await document(
        client, agent, goods["units"][:3], kind="return", counterparty_id=demo["WH-SZ-01"]
    )
    assert (await confirm(client, agent, back)).status_code == 200
    home = await document(client, clerk, kind="inbound", shipment_id=back["id"])
    assert (await confirm(client, clerk, home)).status_code == 200
    again = await document(
        client, clerk, goods["units"][:3], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await confirm(client, clerk, again)).status_code == 200
    assert_error(
        await client.post(f"/orders/{order}/receive", headers=agent), 409, "nothing_in_transit"
    )
    old = await document(client, agent, kind="inbound", shipment_id=first["id"])
    assert_error(await confirm(client, agent, old), 409, "nothing_in_transit")
    new = await document(client, agent, kind="inbound", shipment_id=again["id"])
    assert (await confirm(client, agent, new)).status_code == 200
    shown = await client.get(f"/orders/{order}", headers=agent)
    assert [(line["shipped"], line["received"]) for line in shown.json()["lines"]] == [(10, 10)]


async def test_a_damaged_unit_given_away_is_not_returned_by_a_consumer(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a consumer brings a unit back `damaged`; the store then gives it away by an approved
    exception outbound (a sample). A second POST /returns of it is accepted (200): the given-away
    unit goes back into the store's stock as `active`. SPEC (README `POST /returns`): a return
    is "only of a unit sold to a consumer — a gift or sample given away is 409 not_sold". The
    check in `_sold_unit` looks at disposition == non_sellable_other only, but move_state keeps
    'damaged'/'expired' through every later move, so a damaged gift looks like a sale."""
    goods = await store_goods(client, login, app, demo)
    store, admin = await login("store_clerk"), await login("admin")
    unit = goods["units"][8]
    assert (await client.post("/sales", headers=store, json={"codes": [unit]})).status_code == 201
    back = await client.post("/returns", headers=store, json={"code": unit, "reason": "damaged"})
    assert back.status_code == 200, back.text
    gift = await document(client, store, [unit], kind="exception", reason="sample")
    assert (await confirm(client, store, gift)).json()["status"] == "pending_approval"
    approved = await client.post(f"/documents/{gift['id']}/approve", headers=admin, json={})
    assert approved.status_code == 200, approved.text
    again = await client.post("/returns", headers=store, json={"code": unit, "reason": "other"})
    assert_error(again, 409, "not_sold")
