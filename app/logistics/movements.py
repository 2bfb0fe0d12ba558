"""Movements of goods as data: one row per kind, and the named steps every movement runs.

A movement takes units and cases (cases move with everything inside them) from a sender to a
receiver. What differs between kinds is data, in ``MOVEMENTS``:

- ``sender``: who must have the goods now — the document's organisation (``org``) or its
  ``counterparty``, holding them in stock (active, not in transit); goods ``in_transit`` to the
  organisation (receiving a shipment: its codes, missing ones reported); or a ``consumer`` (a sold
  unit coming back; checked by ``documents.consumer_return``);
- ``receiver``: who gets them (``org``, ``counterparty``, or ``None``: they leave the chain);
- ``stock``: the change of each side's stock column per unit — ``("org", "on_hand", -1)``;
- ``unit_sets`` / ``case_sets``: the state columns set (SQL assignments; ``%(org)s``,
  ``%(other)s`` and ``%(now)s`` are the organisation, the counterparty and the time);
  ``designates``: the receiver becomes the units' designated channel (and store, with the
  document's salesperson, when it is a store); ``upstream_only``: a kind that designates
  nothing goes back up the channel only (``documents._ensure_upstream``); ``live_org``: the
  organisation itself must be active when the goods move (a closed store sells nothing);
- ``biz_step`` / ``disposition`` of the event (``store_disposition``: when the receiver is a
  store), ``order_column``: what the movement counts on the lines of the order its document
  is made against (``shipped`` or ``received``; ``None``: the kind moves no order's goods and a
  draft may not name one), ``order_limit`` (may not exceed them).

The steps (``check``, then ``apply``: move state, count against order lines, write events and
stock deltas, write document lines) read the row and never the kind's name.

Adding a kind — a gift transfer between two organisations, say — is one row::

    "gift_transfer": Movement(
        kind="gift_transfer", prefix="ZS", direction="outbound",
        sender="org", receiver="counterparty",
        stock=(("org", "on_hand", -1), ("counterparty", "in_transit", 1)),
        unit_sets=SHIP_UNITS, case_sets=SHIP_CASES,
        biz_step="shipping", disposition="in_transit",
    ),

plus its row in ``tests/test_movements.py`` (deltas, bizStep, disposition through the service).
The name is also an API and database value: it joins the ``DocKind`` literal (and
``DocumentIn.kind`` when drafted by ``POST /documents``) and the ``documents.kind`` CHECK (a
migration); ``test_movements`` checks the literal against this table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, cast

from psycopg.types.json import Jsonb

from app.codes.batches import serials_of
from app.codes.lookup import VOID_STATES, sscc_label
from app.codes.scheme import Scheme
from app.db import Conn
from app.errors import Conflict, Unprocessable
from app.events import builders
from app.events.epcis import BizStep, Disposition
from app.events.log import NewEvent, allocate_ids, write_events
from app.events.stock import Deltas, StockColumn, new_deltas, write_deltas
from app.localtime import REPORT_TZ
from app.orgs.schemas import CHANNEL_KINDS, SELLING_KINDS

Side = Literal["org", "counterparty"]
Sender = Literal["org", "counterparty", "in_transit", "consumer"]

_MAX_LISTED = 50  # codes named in an error's details

# the state columns set by a shipment (the goods are in transit to the counterparty; shipped,
# if nothing shipped them before — a case like its units: a probe's trace of a shipped case
# showed it never shipped)
SHIP_CASES = "transit_to = %(other)s, shipped_at = coalesce(shipped_at, %(now)s)"
SHIP_UNITS = SHIP_CASES
# … by goods leaving the supply chain (a sale, an approved gift or sample): the units are gone
# into the market — shipped, if nothing shipped them before — and their cases stay where they are
GONE_UNITS = "status = 'sold', sold_at = %(now)s, shipped_at = coalesce(shipped_at, %(now)s)"
GONE_CASES = "holder_org_id = holder_org_id"
# the disposition of units an approved exception outbound gave away: gone, but not sold
GIVEN_AWAY: Disposition = "non_sellable_other"


@dataclass(frozen=True, slots=True)
class Movement:
    """One kind of movement (see the module docstring)."""

    kind: str
    prefix: str  # of the document number ("" for a movement without a document)
    direction: Literal["inbound", "outbound"]
    sender: Sender
    receiver: Side | None
    stock: tuple[tuple[Side, StockColumn, int], ...]
    unit_sets: str
    case_sets: str
    biz_step: BizStep
    disposition: Disposition
    store_disposition: Disposition | None = None  # when the receiver is a store
    designates: bool = False  # the receiver becomes the channel (and the store) of the units
    # counted on the document's order; None: the kind moves no order's goods (422 on a draft)
    order_column: Literal["shipped", "received"] | None = None
    order_limit: bool = False  # may not ship more than the order's lines
    approval: bool = False  # confirmed → pending_approval; moves when approved
    reasons: tuple[str, ...] = ()  # the document must give one of these
    # when the draft names none: the parent, or who last shipped to the organisation (else the
    # parent)
    default_counterparty: Literal["parent", "shipper"] | None = None
    names_route: bool = True  # the event names source and destination organisations
    # to a consumer: not a unit a consumer brought back damaged or expired (``NOT_FOR_SALE``)
    sellable_only: bool = False
    # back up the channel only: the counterparty is upstream of the organisation (422 ``bad_org``
    # otherwise, ``documents._ensure_upstream``), as the movement designates no channel
    upstream_only: bool = False
    # the organisation itself must be active, it and every organisation above it, when its goods
    # move, as the receiver of a shipment must: a closed store sells nothing (409
    # ``org_inactive``, ``documents._hold_open``)
    live_org: bool = False


MOVEMENTS: dict[str, Movement] = {
    m.kind: m
    for m in (
        Movement(
            kind="factory_inbound", prefix="RK", direction="inbound",
            sender="counterparty", receiver="org",
            stock=(("counterparty", "on_hand", -1), ("org", "on_hand", 1)),
            unit_sets="holder_org_id = %(org)s", case_sets="holder_org_id = %(org)s",
            biz_step="receiving", disposition="sellable_not_accessible",
            default_counterparty="parent",
        ),
        Movement(
            kind="inbound", prefix="RK", direction="inbound",
            sender="in_transit", receiver="org",
            stock=(("org", "in_transit", -1), ("org", "on_hand", 1)),
            unit_sets="holder_org_id = %(org)s, transit_to = NULL",
            case_sets="holder_org_id = %(org)s, transit_to = NULL",
            biz_step="receiving", disposition="sellable_not_accessible",
            store_disposition="sellable_accessible", order_column="received",
        ),
        Movement(
            kind="outbound", prefix="CK", direction="outbound",
            sender="org", receiver="counterparty",
            stock=(("org", "on_hand", -1), ("counterparty", "in_transit", 1)),
            unit_sets=SHIP_UNITS, case_sets=SHIP_CASES,
            biz_step="shipping", disposition="in_transit",
            designates=True, order_column="shipped", order_limit=True,
        ),
        Movement(
            kind="return", prefix="TH", direction="outbound",
            sender="org", receiver="counterparty",
            stock=(("org", "on_hand", -1), ("counterparty", "in_transit", 1)),
            unit_sets=SHIP_UNITS, case_sets=SHIP_CASES,
            # no order's goods: a return goes back up the channel, and one against an order
            # shipped down it with neither the order's limit nor its channel (a probe)
            # back to who shipped the goods (a probe: an agent's went to the brand's head office,
            # its parent, which never shipped them)
            biz_step="shipping", disposition="returned", default_counterparty="shipper",
            upstream_only=True,
        ),
        Movement(
            kind="exception", prefix="CK", direction="outbound",
            sender="org", receiver=None,
            stock=(("org", "on_hand", -1),),
            unit_sets=GONE_UNITS, case_sets=GONE_CASES,
            biz_step="shipping", disposition=GIVEN_AWAY,
            approval=True, reasons=("staff_welfare", "gift", "sample", "other"),
        ),
        Movement(
            kind="sale", prefix="XS", direction="outbound",
            sender="org", receiver=None,
            stock=(("org", "on_hand", -1),),
            unit_sets=GONE_UNITS, case_sets=GONE_CASES,
            biz_step="retail_selling", disposition="retail_sold",
            sellable_only=True, live_org=True,
        ),
        Movement(  # no document: POST /returns (documents.consumer_return)
            kind="consumer_return", prefix="", direction="inbound",
            sender="consumer", receiver="org",
            stock=(("org", "on_hand", 1),),
            unit_sets="status = 'active', sold_at = NULL, returned_at = %(now)s", case_sets="",
            biz_step="receiving", disposition="returned",
            names_route=False,  # it comes back alone: out of a case it was sold in
        ),
    )
}  # fmt: skip

# the dispositions of goods that left the supply chain (a sale, an approved gift or sample): a
# case given away or sold whole stays ``active`` where it was (``GONE_CASES``; a case is never
# ``sold``), its units sold inside it; this disposition says it is gone with them, and a line
# packs it no more (``packing.scans._not_here``; a probe: a factory packed a case it had
# given away onto a new pallet)
GONE_DISPOSITIONS = tuple(sorted({m.disposition for m in MOVEMENTS.values() if not m.receiver}))

# kinds whose goods travel to the counterparty: an inbound receives their documents
SHIPMENT_KINDS = [m.kind for m in MOVEMENTS.values() if m.receiver == "counterparty"]


class UnitRow(TypedDict):
    """A unit's state row, locked for the movement."""

    code: int
    product_id: int
    lot: str
    status: str
    holder_org_id: int
    transit_to: int | None
    parent_sscc: int | None
    channel_org_id: int | None
    disposition: str | None
    last_event_id: int | None
    line_id: int | None  # the packing line that packed it (its organisation: the manufacturer)


PackageLevel = Literal["inner", "master", "pallet"]


class CaseRow(TypedDict):
    """A case's state row, locked for the movement."""

    sscc: int
    level: PackageLevel
    product_id: int
    status: str
    holder_org_id: int
    transit_to: int | None
    parent_sscc: int | None


@dataclass(slots=True)
class Plan:
    """A checked movement, ready to apply: the goods (locked) and who they move between.

    ``doc`` is the document's row (``documents._DOC``) for a document's movement, else None."""

    movement: Movement
    brand_id: int
    org: int
    other: int | None
    units: list[UnitRow]
    cases: list[CaseRow]
    scanned: set[int]  # the cases named in the document (the others are inside them)
    doc: dict[str, Any] | None = None
    salesperson: int | None = None
    discrepancies: dict[str, Any] = field(default_factory=dict)


async def _listed(conn: Conn, scheme: Scheme, units: list[int]) -> dict[str, Any]:
    """How many units, and the first of them by their printed serials."""
    serials = await serials_of(conn, scheme, units[:_MAX_LISTED])
    return {"count": len(units), "codes": [serials.get(u, str(u)) for u in units[:_MAX_LISTED]]}


async def refuse(conn: Conn, scheme: Scheme, code: str, message: str, bad: list[int]) -> Conflict:
    """409 naming the units that may not move."""
    return Conflict(message, code=code, details=await _listed(conn, scheme, bad))


# -- step 1: check the plan -------------------------------------------------------------------


async def check(conn: Conn, scheme: Scheme, doc: dict[str, Any]) -> Plan:
    """Lock the document's goods and check them against its movement: who holds them, the
    shipment an inbound receives, the order an outbound may not exceed. Raises when the goods
    may not move; writes nothing."""
    movement = MOVEMENTS[doc["kind"]]
    org, other = doc["org_id"], doc["counterparty_id"]
    units, cases = await items_of(conn, doc["id"])
    discrepancies: dict[str, Any] = {}
    rest = False  # receiving in one action: what is on its way here now
    if movement.sender == "in_transit":
        shipped_units, shipped_cases, shipments = await _shipped_items(conn, doc)
        if not units and not cases:
            rest = True
            units, cases = await _in_transit(conn, org, shipped_units, shipped_cases, shipments)
    if not units and not cases and not rest:
        raise Unprocessable("scan codes into the document first", code="empty_document")
    expected_rows: list[UnitRow] = []
    if movement.sender == "in_transit":
        # the shipment's goods locked first, cases before units, as a receipt of all of it locks
        # them: locked after the document's own units, a scanned receipt of part of a shipment
        # deadlocked with a receipt of the whole (a probe: 409 retry)
        expected_rows, _ = await expand(conn, shipped_units, shipped_cases)
    unit_rows, case_rows = await expand(conn, units, cases)
    if rest:  # what another receipt took since the look, while this waited for the locks, stays
        unit_rows, case_rows = _still_coming(org, unit_rows, case_rows, shipments)
    void = [u["code"] for u in unit_rows if u["status"] in VOID_STATES]
    if void:  # replaced, destroyed, or of a batch voided since they were scanned in
        raise await refuse(conn, scheme, "void", "codes that are void: goods no more", void)
    if not unit_rows:  # its cases were emptied since they were scanned in
        raise Unprocessable("the document's cases hold no units now", code="empty_document")
    if movement.sender == "in_transit":
        missing = await _check_shipment(conn, scheme, org, unit_rows, expected_rows, shipments)
        if missing:
            discrepancies["missing"] = await _listed(conn, scheme, missing)
    else:
        source = other if movement.sender == "counterparty" else org
        bad = [u["code"] for u in unit_rows if not _on_hand_at(u, source)]
        if bad:
            message = "codes not held (in stock) by the shipping organisation"
            raise await refuse(conn, scheme, "not_held", message, bad)
    if movement.sellable_only:  # probe X: a unit a consumer brought back damaged was sold again
        spoilt = [u["code"] for u in unit_rows if u["disposition"] in NOT_FOR_SALE]
        if spoilt:
            message = "codes returned damaged or expired: back upstream, not to a consumer"
            raise await refuse(conn, scheme, "not_sellable", message, spoilt)
    _check_cases(movement, org, other, case_rows)  # after their units, named by serial
    if movement.order_limit and doc["order_id"] is not None:
        short = await _check_order(conn, doc["order_id"], unit_rows)
        if short:
            discrepancies["short"] = short
    return Plan(
        movement=movement,
        brand_id=doc["brand_id"],
        org=org,
        other=other,
        units=unit_rows,
        cases=case_rows,
        scanned=set(cases),
        doc=doc,
        salesperson=doc["salesperson_id"],
        discrepancies=discrepancies,
    )


NOT_FOR_SALE = ("damaged", "expired")  # dispositions a store does not sell on (consumer returns)


def _on_hand_at(row: UnitRow | CaseRow, org: int | None) -> bool:
    """Whether a unit or case is in ``org``'s stock: held by it, active, not on its way."""
    return row["holder_org_id"] == org and row["transit_to"] is None and row["status"] == "active"


def _check_cases(movement: Movement, org: int, other: int | None, cases: list[CaseRow]) -> None:
    """The cases move from where their units do: held by the sender, on hand (409 ``not_held``),
    or, received, in transit to the receiver (409 ``not_in_transit``). A case emptied and
    shipped had gone out twice, to two organisations (probe I)."""
    if movement.sender == "in_transit":
        bad = [c["sscc"] for c in cases if c["transit_to"] != org or c["status"] != "active"]
        code, message = "not_in_transit", "cases not in transit to this organisation"
    else:
        source = other if movement.sender == "counterparty" else org
        bad = [c["sscc"] for c in cases if not _on_hand_at(c, source)]
        code, message = "not_held", "cases not held (in stock) by the shipping organisation"
    if bad:
        labels = [sscc_label(sscc) for sscc in bad[:_MAX_LISTED]]
        raise Conflict(message, code=code, details={"count": len(bad), "codes": labels})


async def items_of(conn: Conn, doc_id: int) -> tuple[list[int], list[int]]:
    """A document's scanned (units, cases)."""
    rows = await (
        await conn.execute(
            "SELECT kind, code FROM document_items WHERE document_id = %s", (doc_id,)
        )
    ).fetchall()
    return _units_and_cases(rows)


def _units_and_cases(rows: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Document item rows (kind 'u' or 'c', code) as (units, cases)."""
    return [r["code"] for r in rows if r["kind"] == "u"], [
        r["code"] for r in rows if r["kind"] == "c"
    ]


def _still_coming(
    org: int, unit_rows: list[UnitRow], case_rows: list[CaseRow], shipments: set[int]
) -> tuple[list[UnitRow], list[CaseRow]]:
    """Of the goods a receipt that scanned nothing takes, those still in transit to ``org``
    under its shipments once locked; 409 ``nothing_in_transit`` when none are."""
    units = [
        u
        for u in unit_rows
        if u["transit_to"] == org and u["status"] == "active" and u["last_event_id"] in shipments
    ]
    if not units:
        raise Conflict(
            "nothing of this shipment or order is in transit to this organisation",
            code="nothing_in_transit",
        )
    return units, [c for c in case_rows if c["transit_to"] == org]


async def _shipped_items(conn: Conn, doc: dict[str, Any]) -> tuple[list[int], list[int], set[int]]:
    """What the shipment(s) an inbound receives carried, and their moves' events: goods are in
    transit under a shipment while its event is their last (a stock probe: goods a shipment once
    carried, returned and shipped again by another, were received under the first, and counted
    on its order twice)."""
    where, args = (
        ("s.id = %s", (doc["shipment_id"],))
        if doc["shipment_id"] is not None
        else (
            "s.order_id = %s AND s.counterparty_id = %s AND s.status = 'confirmed' "
            "AND s.kind = ANY(%s)",
            (doc["order_id"], doc["org_id"], SHIPMENT_KINDS),
        )
    )
    rows = await (
        await conn.execute(
            "SELECT s.event_id, i.kind, i.code FROM documents s "
            f"JOIN document_items i ON i.document_id = s.id WHERE {where}",
            args,
        )
    ).fetchall()
    units, cases = _units_and_cases(rows)
    return units, cases, {r["event_id"] for r in rows if r["event_id"] is not None}


async def on_its_way(conn: Conn, doc: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The units and cases a receipt that scanned nothing takes when confirmed: what of the
    shipment(s) it receives is in transit to its organisation now (``check``'s ``rest``)."""
    return await _in_transit(conn, doc["org_id"], *await _shipped_items(conn, doc))


async def _in_transit(
    conn: Conn, org: int, units: list[int], cases: list[int], shipments: set[int]
) -> tuple[list[int], list[int]]:
    """Those of these units and cases that are in transit to ``org`` now under these shipments'
    moves (an earlier part of a split shipment, or part of a shipment, may have been received
    already; goods shipped again since, by another shipment, are that one's)."""
    events = sorted(shipments)
    unit_rows = await (
        await conn.execute(
            """SELECT code FROM unit_state
               WHERE code = ANY(%s) AND transit_to = %s AND status = 'active'
                 AND last_event_id = ANY(%s)""",
            (units, org, events),
        )
    ).fetchall()
    case_rows = await (
        await conn.execute(
            "SELECT sscc FROM case_state WHERE sscc = ANY(%s) AND transit_to = %s "
            "AND last_event_id = ANY(%s)",
            (cases, org, events),
        )
    ).fetchall()
    return [r["code"] for r in unit_rows], [r["sscc"] for r in case_rows]


async def expand(
    conn: Conn, units: list[int], cases: list[int]
) -> tuple[list[UnitRow], list[CaseRow]]:
    """The state rows (locked) of these units and cases and of everything inside the cases.

    The cases are locked first (``lock_cases``), the units after: whatever puts a unit or a
    case into a case (a line's upload, a replacement) locks that case first, so once the cases
    are locked nothing enters them, and the units read after are all that is inside. Read
    before the locks, a unit packed or swapped in meanwhile was left behind in a case shipped
    without it (probe I)."""
    boxes = await lock_cases(conn, cases)
    unit_rows = await (
        await conn.execute(
            """SELECT code, product_id, lot, status, holder_org_id, transit_to, parent_sscc,
                      channel_org_id, disposition, last_event_id, line_id
               FROM unit_state WHERE code = ANY(%s) OR parent_sscc = ANY(%s)
               ORDER BY code FOR UPDATE""",
            (units, boxes),
        )
    ).fetchall()
    case_rows = await (
        await conn.execute(
            """SELECT sscc, level, product_id, status, holder_org_id, transit_to, parent_sscc
               FROM case_state WHERE sscc = ANY(%s) ORDER BY sscc FOR UPDATE""",
            (boxes,),
        )
    ).fetchall()
    return cast(list[UnitRow], unit_rows), cast(list[CaseRow], case_rows)


async def lock_cases(conn: Conn, cases: list[int]) -> list[int]:
    """Lock these cases and every case inside them, in SSCC order (a pallet's cases, issued
    before it, come before it), and answer them so sorted. Cases found inside after a lock are
    locked in turn, until none is new. Whatever else takes a case tree's rows takes them this
    way, then the units (``app.packing.edits``: an unpacking took the pallet, then its cases,
    and deadlocked with a document moving the pallet — a probe)."""
    boxes: list[int] = []
    locked: set[int] = set()
    while cases:
        rows = await (
            await conn.execute(
                """WITH RECURSIVE boxes (sscc) AS (
                       SELECT unnest(%s::bigint[])
                       UNION SELECT c.sscc FROM case_state c JOIN boxes b ON c.parent_sscc = b.sscc)
                   SELECT sscc FROM boxes ORDER BY sscc""",
                (cases,),
            )
        ).fetchall()
        boxes = [row["sscc"] for row in rows]
        fresh = [sscc for sscc in boxes if sscc not in locked]
        if not fresh:
            break
        await conn.execute(
            "SELECT 1 FROM case_state WHERE sscc = ANY(%s) ORDER BY sscc FOR UPDATE", (fresh,)
        )
        locked.update(fresh)
    return boxes


async def _check_shipment(
    conn: Conn,
    scheme: Scheme,
    org: int,
    unit_rows: list[UnitRow],
    expected_rows: list[UnitRow],
    shipments: set[int],
) -> list[int]:
    """Receiving: every unit is in transit to ``org`` and was shipped to it by these shipments
    (``expected_rows``: the units of their goods, locked; ``shipments``: their events); the
    shipped units still in transit under them but not received are returned (reported
    missing)."""
    bad = [u["code"] for u in unit_rows if u["transit_to"] != org or u["status"] != "active"]
    if bad:
        message = "codes not in transit to this organisation"
        raise await refuse(conn, scheme, "not_in_transit", message, bad)
    expected = {u["code"] for u in expected_rows}
    unexpected = [
        u["code"]
        for u in unit_rows
        if u["code"] not in expected or u["last_event_id"] not in shipments
    ]
    if unexpected:
        message = "codes that this shipment did not carry"
        raise await refuse(conn, scheme, "not_in_shipment", message, unexpected)
    received = {u["code"] for u in unit_rows}
    return [
        u["code"]
        for u in expected_rows
        if u["code"] not in received and u["transit_to"] == org and u["last_event_id"] in shipments
    ]


async def _check_order(conn: Conn, order_id: int, unit_rows: list[UnitRow]) -> dict[str, int]:
    """An outbound against an order may not exceed its lines (409 ``over_shipment``); what it
    leaves unshipped, per product, is returned (reported short)."""
    counts = Counter(u["product_id"] for u in unit_rows)
    lines = {
        r["product_id"]: r
        for r in await (
            await conn.execute(
                # locked: two documents of other goods against one order must not both pass
                # (their units do not serialise them); in product order, as apply updates them
                "SELECT product_id, quantity, shipped FROM order_lines WHERE order_id = %s "
                "ORDER BY product_id FOR UPDATE",
                (order_id,),
            )
        ).fetchall()
    }
    order = await (
        await conn.execute(  # after its lines, as ``count_order`` updates them
            "SELECT status FROM orders WHERE id = %s FOR NO KEY UPDATE", (order_id,)
        )
    ).fetchone()
    if order is not None and order["status"] in ("closed", "cancelled"):
        # a draft made before the order ended (``orders.end_order``): its goods stay
        raise Conflict(f"the order is {order['status']}", code="order_closed")
    over = {
        str(p): {"ordered": lines[p]["quantity"] if p in lines else 0,
                 "shipped": lines[p]["shipped"] if p in lines else 0, "now": n}
        for p, n in counts.items()
        if p not in lines or lines[p]["shipped"] + n > lines[p]["quantity"]
    }  # fmt: skip
    if over:
        raise Conflict("more than the order allows", code="over_shipment", details=over)
    return {
        str(p): line["quantity"] - line["shipped"] - counts.get(p, 0)
        for p, line in lines.items()
        if line["shipped"] + counts.get(p, 0) < line["quantity"]
    }


# -- step 2 on: apply -------------------------------------------------------------------------


async def apply(
    conn: Conn,
    plan: Plan,
    *,
    recorded_by: int | None,
    details: dict[str, Any],
    disposition: Disposition | None = None,
) -> int:
    """Move the goods of a checked plan, in the caller's transaction: state, order counts,
    events, stock deltas and (for a document) its lines and status. Returns the event id.
    ``disposition`` overrides the movement's (a consumer return says why it came back).
    A document with the phone's time (an offline sale's ``client_at``) is dated by it."""
    now = datetime.now(UTC)
    if plan.doc is not None and plan.doc.get("client_at") is not None:
        now = await _happened_at(conn, plan, plan.doc["client_at"], now)
    loose = _loose_cases(plan)
    ids = await allocate_ids(conn, 1 + len(loose))
    if disposition is None:
        disposition = await _disposition(conn, plan)
    await move_state(conn, plan, ids[0], disposition, now)
    if plan.doc is not None and plan.doc["order_id"] is not None and plan.movement.order_column:
        await count_order(conn, plan)  # a kind without one moves no order's goods
    events = [_movement_event(plan, ids[0], disposition, now, recorded_by, details)]
    events += _unpacking_events(plan, ids[1:], loose, now, recorded_by)
    await write_events(conn, events)
    await write_deltas(conn, stock_deltas(plan), ids[0])
    if plan.doc is not None:
        await write_lines(conn, plan, ids[0], now)
    return ids[0]


async def _happened_at(conn: Conn, plan: Plan, client_at: datetime, now: datetime) -> datetime:
    """When a movement the phone timed happened: its time, but never after the server's clock
    (a phone's runs ahead by up to ``CLOCK_SKEW``) nor before the units' last movement (a
    phone's running behind would put a sale before the goods' receipt in their trace)."""
    last = await (
        await conn.execute(
            "SELECT max(event_time) AS at FROM events WHERE id = ANY(%s)",
            ([u["last_event_id"] for u in plan.units if u["last_event_id"] is not None],),
        )
    ).fetchone()
    floor = last["at"] if last is not None and last["at"] is not None else client_at
    return min(max(client_at, floor), now)


def _loose_cases(plan: Plan) -> list[int]:
    """The cases that units, or inner cases, leave by moving without them (an implicit
    unpacking), in order."""
    moved = {c["sscc"] for c in plan.cases}
    parents = [u["parent_sscc"] for u in plan.units] + [c["parent_sscc"] for c in plan.cases]
    return sorted({p for p in parents if p is not None and p not in moved})


async def _org_kind(conn: Conn, org_id: int) -> str:
    row = await (await conn.execute("SELECT kind FROM orgs WHERE id = %s", (org_id,))).fetchone()
    assert row is not None
    return str(row["kind"])


async def _sells_on(conn: Conn, org_id: int) -> bool:
    """Whether the organisation sells on — it, or one above it, is an agent, distributor or
    store (``SELLING_KINDS``) — rather than the brand's side: its own stock (the brand, its
    factories and their warehouses) and its branches (分公司) and their warehouses, whose
    outbound designates the goods' channel. A probe: a branch's outbound to its agent kept the
    branch as the channel, so the whole branch was the agent's area — diversion between its
    agents unseen, the agent's points rule not applied, goods the branch reallocated from one
    agent to another still blamed on the first."""
    row = await (
        await conn.execute(
            """SELECT EXISTS (SELECT 1 FROM orgs o JOIN orgs a ON o.path LIKE a.path || '%%'
                              WHERE o.id = %s AND a.kind = ANY(%s)) AS sells_on""",
            (org_id, list(SELLING_KINDS)),
        )
    ).fetchone()
    assert row is not None
    return bool(row["sells_on"])


async def _channel_of(conn: Conn, org_id: int) -> int:
    """The channel a shipment to the organisation designates: the nearest organisation of the
    sales channel at or above it (a store, distributor, agent or branch) — the agent itself for
    goods received at its own warehouse (a probe: the warehouse was designated, a subtree with
    no store, and the agent's own stores' inspections called the goods diverted and their
    rebate claims were refused) —, else the organisation itself (the brand's own stock, which
    designates anew when it ships them on)."""
    row = await (
        await conn.execute(
            """SELECT coalesce((SELECT a.id FROM orgs a  -- the path's organisations, by id
                                WHERE a.id = ANY(string_to_array(trim(both '/' FROM o.path),
                                                                 '/')::bigint[])
                                  AND a.kind = ANY(%s)
                                ORDER BY length(a.path) DESC LIMIT 1), o.id) AS channel
               FROM orgs o WHERE o.id = %s""",
            (list(CHANNEL_KINDS), org_id),
        )
    ).fetchone()
    assert row is not None
    return int(row["channel"])


def _receiver(plan: Plan) -> int | None:
    side = plan.movement.receiver
    return plan.org if side == "org" else plan.other if side == "counterparty" else None


async def _disposition(conn: Conn, plan: Plan) -> Disposition:
    """The movement's disposition, or its store disposition when the receiver is a store."""
    movement, receiver = plan.movement, _receiver(plan)
    if movement.store_disposition and receiver and await _org_kind(conn, receiver) == "store":
        return movement.store_disposition
    return movement.disposition


async def move_state(
    conn: Conn, plan: Plan, event_id: int, disposition: Disposition, now: datetime
) -> None:
    """Step 2: the units' and cases' state rows, as the movement sets them."""
    movement = plan.movement
    unit_sets, case_sets = movement.unit_sets, movement.case_sets
    params: dict[str, Any] = {
        "org": plan.org, "other": plan.other, "now": now, "event": event_id, "disp": disposition
    }  # fmt: skip
    if movement.designates and plan.other is not None:
        to_store = await _org_kind(conn, plan.other) == "store"
        params["channel"] = await _channel_of(conn, plan.other)
        # the cases moved are designated as their units are (a probe: a shipped case's trace
        # named no channel); a case has no store of its own
        if await _sells_on(conn, plan.org):  # shipped on: the first designation stays
            channel = ", channel_org_id = coalesce(channel_org_id, %(channel)s)"
        else:  # from the brand's side (its stock, a branch): designated anew, even when back
            # from a first one (a branch reallocating an agent's returned goods to another)
            channel = ", channel_org_id = %(channel)s"
            if not to_store:
                unit_sets += ", store_org_id = NULL, salesperson_id = NULL"
        unit_sets += channel
        case_sets += channel
        if to_store:
            unit_sets += ", store_org_id = %(other)s, salesperson_id = %(salesperson)s"
            params["salesperson"] = plan.salesperson
    boxes = [c["sscc"] for c in plan.cases]
    # units and inner cases moved without their case (or pallet) leave it
    parent = "parent_sscc = CASE WHEN parent_sscc = ANY(%(boxes)s) THEN parent_sscc END"
    # a unit a consumer brought back damaged or expired stays so through every later move, up
    # the channel and back down (a stock probe: a receipt made it sellable again)
    await conn.execute(
        f"""UPDATE unit_state SET {unit_sets}, last_event_id = %(event)s, updated_at = %(now)s,
                disposition = CASE WHEN disposition IN ('damaged', 'expired') THEN disposition
                                   ELSE %(disp)s END, {parent}
            WHERE code = ANY(%(codes)s)""",
        {**params, "codes": [u["code"] for u in plan.units], "boxes": boxes},
    )
    if boxes:
        await conn.execute(
            f"""UPDATE case_state SET {case_sets}, disposition = %(disp)s,
                    last_event_id = %(event)s, updated_at = %(now)s, {parent}
                WHERE sscc = ANY(%(boxes)s)""",
            {**params, "boxes": boxes},
        )


async def count_order(conn: Conn, plan: Plan) -> None:
    """Step 3: the units moved count on the order's lines (shipped or received, per product);
    the order is ``shipped`` / ``received`` when every line is."""
    assert plan.doc is not None
    order_id = plan.doc["order_id"]
    column = plan.movement.order_column
    assert column is not None
    counts = Counter(u["product_id"] for u in plan.units)
    for product, n in sorted(counts.items()):  # the lock order of _check_order: no deadlock
        await conn.execute(
            f"UPDATE order_lines SET {column} = {column} + %s "
            "WHERE order_id = %s AND product_id = %s",
            (n, order_id, product),
        )
    await conn.execute(
        """UPDATE orders SET updated_at = now(), status = CASE
               WHEN NOT EXISTS (SELECT 1 FROM order_lines WHERE order_id = %(o)s
                                AND received < quantity) THEN 'received'
               WHEN NOT EXISTS (SELECT 1 FROM order_lines WHERE order_id = %(o)s
                                AND shipped < quantity) THEN 'shipped'
               ELSE status END
           WHERE id = %(o)s AND status NOT IN ('closed', 'cancelled')""",
        {"o": order_id},
    )


def _movement_event(
    plan: Plan,
    event_id: int,
    disposition: Disposition,
    now: datetime,
    recorded_by: int | None,
    details: dict[str, Any],
) -> NewEvent:
    """Step 4: the movement's one ObjectEvent OBSERVE — the top-level codes (units outside
    the cases moved, and the cases named), the route and the business transactions."""
    movement, doc = plan.movement, plan.doc
    moved = {c["sscc"] for c in plan.cases}
    source = destination = None
    if movement.names_route:
        source = plan.other if movement.sender in ("counterparty", "in_transit") else plan.org
        destination = _receiver(plan)
    transactions = None
    if doc is not None:
        kind = "desadv" if movement.direction == "outbound" else "recadv"
        transactions = [{"type": kind, "id": doc["doc_no"]}]
        if doc["order_id"] is not None and doc["order_no"]:
            transactions.insert(0, {"type": "po", "id": doc["order_no"]})
    return builders.observe(
        id=event_id,
        brand_id=plan.brand_id,
        at=now,
        biz_step=movement.biz_step,
        disposition=disposition,
        units=[u["code"] for u in plan.units if u["parent_sscc"] not in moved],
        cases=[c["sscc"] for c in outermost(plan)],
        biz_location=plan.org,
        source_org=source,
        destination_org=destination,
        biz_transactions=transactions,
        recorded_by=recorded_by,
        details=details,
    )


def _unpacking_events(
    plan: Plan, ids: list[int], loose: list[int], now: datetime, recorded_by: int | None
) -> list[NewEvent]:
    """Step 4: one AggregationEvent DELETE per case that units or inner cases left by moving
    without it."""
    details = {"document": plan.doc["doc_no"]} if plan.doc is not None else None
    return [
        builders.disaggregate(
            id=event_id,
            brand_id=plan.brand_id,
            at=now,
            parent=parent,
            units=[u["code"] for u in plan.units if u["parent_sscc"] == parent],
            cases=[c["sscc"] for c in plan.cases if c["parent_sscc"] == parent],
            biz_location=plan.org,
            recorded_by=recorded_by,
            details=details,
        )
        for event_id, parent in zip(ids, loose, strict=True)
    ]


def stock_deltas(plan: Plan) -> Deltas:
    """Step 4: each side's stock change, per product and lot, as the movement's row says."""
    sides = {"org": plan.org, "counterparty": plan.other}
    changes = [(sides[side], column, sign) for side, column, sign in plan.movement.stock]
    deltas = new_deltas()
    for (product, lot), n in Counter((u["product_id"], u["lot"]) for u in plan.units).items():
        for org, column, sign in changes:
            assert org is not None
            deltas[(org, product, lot, column)] += sign * n
    return deltas


def outermost(plan: Plan) -> list[CaseRow]:
    """The scanned cases not inside another scanned one and holding a unit: the packages that
    moved (a probe: a pallet and a case of it scanned into one document counted as two, and the
    event named the case beside its pallet; another: a pallet whose cases an earlier receipt
    had taken out, received empty with the rest of its shipment, counted as a package)."""
    parent = {c["sscc"]: c["parent_sscc"] for c in plan.cases}
    holding: set[int] = set()
    for unit in plan.units:
        up = unit["parent_sscc"]
        while up is not None and up not in holding:
            holding.add(up)
            up = parent.get(up)
    found = []
    for case in plan.cases:
        if case["sscc"] not in plan.scanned or case["sscc"] not in holding:
            continue
        up = case["parent_sscc"]
        while up is not None and up not in plan.scanned:
            up = parent.get(up)
        if up is None:
            found.append(case)
    return found


Line = tuple[int, str]  # a document line: product, lot


def _packages(plan: Plan, lines: Counter[Line]) -> dict[Line, Counter[PackageLevel]]:
    """The packages that moved (``outermost``), per line and level: each on the line (product,
    lot) of the units inside it (a probe: a case of lot B counted on lot A's line, lot B's
    showing 0); one matching no single line (a pallet of mixed lots) on its product's first
    line, else on the document's first (a pallet of another product's cases: dropped, a
    confirmed document counted no package for it — a probe)."""
    parent = {c["sscc"]: c["parent_sscc"] for c in plan.cases}
    outer = outermost(plan)
    inside: dict[int, set[Line]] = {c["sscc"]: set() for c in outer}
    top: dict[int | None, int | None] = {}  # each case moved: the package it is in
    for sscc in parent:
        up: int | None = sscc
        while up is not None and up not in inside:
            up = parent.get(up)
        top[sscc] = up
    for unit in plan.units:
        package = top.get(unit["parent_sscc"])
        if package is not None:
            inside[package].add((unit["product_id"], unit["lot"]))
    first: dict[int, Line] = {}
    for key in lines:
        first.setdefault(key[0], key)
    packages: dict[Line, Counter[PackageLevel]] = {}
    for case in outer:
        held = inside[case["sscc"]]
        home = next(iter(held)) if len(held) == 1 else first.get(case["product_id"])
        home = home or next(iter(lines), None)
        if home is not None:  # no line at all: no unit moved, nothing to count it on
            packages.setdefault(home, Counter())[case["level"]] += 1
    return packages


def _package_level(levels: Counter[PackageLevel] | None) -> str | None:
    """A line's 包装类型: the level of its packages, ``mixed`` of several, None: none moved."""
    if not levels:
        return None
    return next(iter(levels)) if len(levels) == 1 else "mixed"


async def _manufacturers(conn: Conn, units: list[UnitRow]) -> dict[Line, int]:
    """Each line's 生产商: the organisation whose packing line packed its units (of several,
    the one that packed most of them; a line of units packed on no line has none)."""
    packed = Counter((u["product_id"], u["lot"], u["line_id"]) for u in units)
    line_ids = sorted({line_id for _, _, line_id in packed if line_id is not None})
    rows = await (
        await conn.execute("SELECT id, org_id FROM lines WHERE id = ANY(%s)", (line_ids,))
    ).fetchall()
    org_of = {r["id"]: r["org_id"] for r in rows}
    made: dict[Line, Counter[int]] = {}
    for (product, lot, line_id), n in packed.items():
        if line_id in org_of:
            made.setdefault((product, lot), Counter())[org_of[line_id]] += n
    return {line: min(c, key=lambda org: (-c[org], org)) for line, c in made.items()}


async def write_lines(conn: Conn, plan: Plan, event_id: int, now: datetime) -> None:
    """Step 5: the document's lines (units, packages and their level per product and lot,
    ``_packages``; the manufacturer, ``_manufacturers``) and its status: confirmed, with its
    event and discrepancies."""
    assert plan.doc is not None
    doc_id = plan.doc["id"]
    lines = Counter((u["product_id"], u["lot"]) for u in plan.units)
    packages = _packages(plan, lines)
    makers = await _manufacturers(conn, plan.units)
    for (product, lot), n in lines.items():
        levels = packages.get((product, lot))
        await conn.execute(
            "INSERT INTO document_lines (document_id, product_id, lot, units, packages, "
            "package_level, manufacturer_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                doc_id, product, lot, n, sum(levels.values()) if levels else 0,
                _package_level(levels), makers.get((product, lot)),
            ),
        )  # fmt: skip
    await conn.execute(  # a sale the phone timed is of the day it happened
        f"""UPDATE documents SET status = 'confirmed', confirmed_at = %(now)s, event_id = %(event)s,
               discrepancies = %(discrepancies)s, doc_date = CASE WHEN client_at IS NULL
               THEN doc_date ELSE (%(now)s AT TIME ZONE '{REPORT_TZ}')::date END
             WHERE id = %(doc)s""",
        {
            "now": now,
            "event": event_id,
            "discrepancies": Jsonb(plan.discrepancies) if plan.discrepancies else None,
            "doc": doc_id,
        },
    )


def claim_sale_documents(sold: str, seller: str, handler: str, sold_at: str) -> str:
    """The CTEs writing the ``sale`` documents of the sales a claim round records, in the round's
    one statement (``app.rebates.claims``, ``app.members.points``), as ``sell`` writes a
    till's (``app.logistics.documents.sell``): one confirmed document per sale event (the
    round's sales of one store and clerk), numbered as ``documents._doc_no`` numbers it and
    dated the sale's day, its handler and creator the clerk (NULL: a member's claim, no
    staff), its event the sale's; one line per product and lot (units; no packages: a claim
    sells loose units; the manufacturer as ``_manufacturers`` picks it, the organisation
    whose line packed most units, the lowest id of a tie). No items: nothing was scanned
    into a draft, and the sale event (which names the document, as a till sale's does) lists
    the units: a round stays one statement, ~25 µs a claim more (a round of 64 rebate
    claims, 9.4 → 10.9 ms). So the store sales query (``/center/documents?kind=sale``), its
    exports and the ERP export list every sale (a probe: only ``POST /sales`` wrote a sale
    document, so 门店销售信息查询 missed the units a claim sold). ``sold``: the CTE of the units
    sold, one row per unit with ``sale_event_id``, ``brand_id``, ``product_id``, ``lot`` and
    ``line_id``; ``seller``, ``handler`` and ``sold_at``: the SQL of its seller, handler and
    sale-time columns. ``sale_docs`` returns each document's ``event_id`` and ``doc_no``."""
    prefix, tz = MOVEMENTS["sale"].prefix, REPORT_TZ
    return f"""sale_docs AS (
    INSERT INTO documents (brand_id, doc_no, direction, kind, org_id, doc_date, handler_id,
                           status, confirmed_at, event_id, created_by)
    SELECT brand_id,
           '{prefix}' || to_char(sold_at AT TIME ZONE '{tz}', 'YYYYMMDD')
               || lpad(n::text, greatest(7, length(n::text)), '0'),
           'outbound', 'sale', seller, (sold_at AT TIME ZONE '{tz}')::date, handler,
           'confirmed', sold_at, sale_event_id, handler
    FROM (SELECT sale_event_id, brand_id, {seller} AS seller, {handler} AS handler,
                 min({sold_at}) AS sold_at, nextval('document_no_seq') AS n
          FROM {sold} GROUP BY sale_event_id, brand_id, {seller}, {handler} OFFSET 0) g
    RETURNING id, event_id, doc_no
), sale_lines AS (
    INSERT INTO document_lines (document_id, product_id, lot, units, packages, manufacturer_id)
    SELECT d.id, s.product_id, s.lot, count(*), 0, mode() WITHIN GROUP (ORDER BY ln.org_id)
    FROM {sold} s JOIN sale_docs d ON d.event_id = s.sale_event_id
    LEFT JOIN lines ln ON ln.id = s.line_id
    GROUP BY d.id, s.product_id, s.lot
)"""
