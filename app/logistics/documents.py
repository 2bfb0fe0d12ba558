"""In/out documents and the movements they make (L2–L8, L10).

A document is a draft while codes are scanned into it; confirming it moves the codes: state rows
are locked, the rules checked (a code moves only from the organisation that holds it; an
outbound against an order may not exceed it), then state, one event, stock deltas, document lines
and the order's counts are written in the same transaction. Cases move with their contents.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from app import audit
from app.auth.principal import Principal
from app.codes.lookup import read_codes
from app.codes.scheme import Scheme
from app.db import Conn
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.events import builders
from app.events.log import allocate_ids, write_events
from app.events.stock import new_deltas, write_deltas
from app.logistics.orders import get_order, require_reader
from app.logistics.schemas import (
    CodesIn,
    DocumentIn,
    DocumentLineOut,
    DocumentOut,
    ItemResult,
    ItemsOut,
    ReturnIn,
    ReturnOut,
    SaleIn,
)

PREFIX = {
    "factory_inbound": "RK",
    "inbound": "RK",
    "outbound": "CK",
    "exception": "CK",
    "return": "TH",
    "sale": "XS",
}
DIRECTION = {"factory_inbound": "inbound", "inbound": "inbound"}
_MAX_LISTED = 50  # codes named in an error's details

_DOC = """SELECT d.id, d.doc_no, d.direction, d.kind, d.org_id, o.name AS org_name,
       d.counterparty_id, c.name AS counterparty_name, d.order_id, r.erp_no AS order_no,
       d.shipment_id, d.doc_date, d.handler_id, u.display_name AS handler_name, d.signee,
       d.phone, d.customer, d.customer_type, d.destination_city, d.salesperson_id, d.reason,
       d.status, d.note, d.discrepancies, d.approved_by, d.approved_at, d.confirmed_at,
       d.created_at, o.path AS org_path, c.path AS counterparty_path, d.brand_id,
       (SELECT count(*) FROM document_items i WHERE i.document_id = d.id) AS items
    FROM documents d JOIN orgs o ON o.id = d.org_id
    LEFT JOIN orgs c ON c.id = d.counterparty_id
    LEFT JOIN orders r ON r.id = d.order_id
    LEFT JOIN users u ON u.id = d.handler_id"""


# -- reading ----------------------------------------------------------------------------------


async def _row(conn: Conn, actor: Principal, doc_id: int) -> dict[str, Any]:
    row = await (await conn.execute(f"{_DOC} WHERE d.id = %s", (doc_id,))).fetchone()
    visible = row is not None and (
        actor.sees(row["org_path"])
        or (row["counterparty_path"] is not None and actor.sees(row["counterparty_path"]))
    )
    if not visible:
        raise NotFound("document not found", code="unknown_document")
    assert row is not None
    return row


async def get_document(conn: Conn, actor: Principal, doc_id: int) -> DocumentOut:
    require_reader(actor)
    return await _out(conn, await _row(conn, actor, doc_id))


async def _out(conn: Conn, row: dict[str, Any]) -> DocumentOut:
    lines = await (
        await conn.execute(
            """SELECT l.product_id, p.name AS product_name, l.lot, l.units, l.packages
               FROM document_lines l JOIN products p ON p.id = l.product_id
               WHERE l.document_id = %s ORDER BY l.product_id, l.lot""",
            (row["id"],),
        )
    ).fetchall()
    fields = {
        k: v for k, v in row.items() if k not in ("org_path", "counterparty_path", "brand_id")
    }
    return DocumentOut(
        **fields,
        units=sum(line["units"] for line in lines),
        packages=sum(line["packages"] for line in lines),
        lines=[DocumentLineOut(**line) for line in lines],
    )


async def _org(conn: Conn, org_id: int, actor: Principal | None = None) -> dict[str, Any]:
    """An organisation by id; with ``actor``, one of the caller's brand. One outside it answers
    exactly like one that does not exist."""
    row = await (
        await conn.execute(
            "SELECT id, kind, path, parent_id, name FROM orgs WHERE id = %s", (org_id,)
        )
    ).fetchone()
    if row is None or (actor is not None and not row["path"].startswith(f"/{actor.brand_id}/")):
        raise _unknown_org(org_id)
    return row


def _unknown_org(org_id: int) -> Unprocessable:
    return Unprocessable(f"organisation {org_id} not found", code="unknown_org")


async def _own_org(conn: Conn, actor: Principal, org_id: int) -> dict[str, Any]:
    """The organisation a document or sale is made for: one of the caller's subtree (another
    one answers exactly like an organisation that does not exist)."""
    org = await _org(conn, org_id)
    if not actor.sees(org["path"]):
        raise _unknown_org(org_id)
    return org


# -- drafting ---------------------------------------------------------------------------------


async def create_document(conn: Conn, actor: Principal, data: DocumentIn) -> DocumentOut:
    """A draft document; its codes are scanned in with ``add_codes``."""
    actor.require("logistics.scan")
    org = await _own_org(conn, actor, data.org_id or actor.org_id)
    counterparty = data.counterparty_id
    order_id = data.order_id
    order = None
    if data.order_id is not None:
        order = await (
            await conn.execute(
                """SELECT r.id, r.brand_id, r.from_org_id, r.to_org_id, r.status,
                          f.path AS from_path, t.path AS to_path
                   FROM orders r JOIN orgs f ON f.id = r.from_org_id
                   JOIN orgs t ON t.id = r.to_org_id WHERE r.id = %s""",
                (data.order_id,),
            )
        ).fetchone()
        # an order that neither involves the caller's subtree nor the organisations the document
        # works for (its own and those above it: a warehouse ships its factory's orders) is one
        # that does not exist
        ends = (order["from_path"], order["to_path"]) if order else ()
        if not any(actor.sees(end) or org["path"].startswith(end) for end in ends):
            raise Unprocessable("no such order", code="unknown_order")
        assert order is not None
    if data.kind == "factory_inbound":
        counterparty = counterparty or org["parent_id"]
    elif data.kind in ("outbound", "return"):
        if order is not None:
            if not org["path"].startswith(order["from_path"]):
                raise Unprocessable("the order ships from another organisation", code="wrong_order")
            if order["status"] in ("closed", "cancelled"):
                raise Conflict(f"the order is {order['status']}", code="order_closed")
            counterparty = order["to_org_id"]
        if data.kind == "return":
            counterparty = counterparty or org["parent_id"]
        if counterparty is None:
            raise Unprocessable("an outbound needs a destination", code="no_destination")
    elif data.kind == "exception":
        if data.reason not in ("staff_welfare", "gift", "sample", "other"):
            raise Unprocessable("reason: staff_welfare, gift, sample or other", code="bad_reason")
        counterparty = None
    elif data.kind == "inbound":
        if data.shipment_id is None and order is None:
            raise Unprocessable("receive a shipment_id or an order_id", code="no_shipment")
        if order is not None and order["to_org_id"] != org["id"]:
            raise Unprocessable("the order goes to another organisation", code="wrong_order")
        if data.shipment_id is not None:
            shipment = await (
                await conn.execute(
                    """SELECT org_id, counterparty_id, status, kind, order_id
                       FROM documents WHERE id = %s""",
                    (data.shipment_id,),
                )
            ).fetchone()
            if (
                shipment is None
                or shipment["counterparty_id"] != org["id"]
                or shipment["kind"] not in ("outbound", "return")
            ):
                raise Unprocessable(
                    "no such shipment to this organisation", code="unknown_shipment"
                )
            if shipment["status"] != "confirmed":
                raise Conflict("the shipment is not confirmed", code="shipment_not_confirmed")
            counterparty = shipment["org_id"]
            # receiving a shipment made against an order counts on that order
            if order_id is not None and order_id != shipment["order_id"]:
                raise Unprocessable(
                    "the shipment was made against another order", code="wrong_order"
                )
            order_id = shipment["order_id"]
        elif order is not None:
            counterparty = order["from_org_id"]
    other = None
    if counterparty is not None:
        # any organisation of the brand may be a counterparty (goods move between them); one of
        # another brand answers exactly like one that does not exist
        other = await _org(conn, counterparty, actor)
        if counterparty == org["id"]:
            raise Unprocessable("counterparty: the organisation itself", code="bad_org")
        if data.kind == "factory_inbound" and not org["path"].startswith(other["path"]):
            # the goods come from the factory above the warehouse, never from another party
            raise Unprocessable(
                "a factory inbound receives from an organisation above the warehouse",
                code="bad_org",
            )
    if data.salesperson_id is not None:
        # a user of the caller's subtree or of the store the goods go to; any other answers
        # like a user that does not exist
        user = await (
            await conn.execute(
                "SELECT o.path FROM users u JOIN orgs o ON o.id = u.org_id WHERE u.id = %s",
                (data.salesperson_id,),
            )
        ).fetchone()
        if user is None or not (
            actor.sees(user["path"])
            or (other and other["kind"] == "store" and user["path"].startswith(other["path"]))
        ):
            raise Unprocessable("salesperson_id: no such user", code="unknown_user")
    seq = await (await conn.execute("SELECT nextval('document_no_seq') AS n")).fetchone()
    assert seq is not None
    today = datetime.now(UTC)
    doc_no = f"{PREFIX[data.kind]}{today:%Y%m%d}{seq['n']:07d}"
    row = await (
        await conn.execute(
            """INSERT INTO documents (brand_id, doc_no, direction, kind, org_id, counterparty_id,
                   order_id, shipment_id, doc_date, handler_id, signee, phone, customer,
                   customer_type, destination_city, salesperson_id, reason, note, created_by)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, current_date), %s, %s, %s,
                       %s, %s, %s, %s, %s, %s, %s)
               RETURNING id""",
            (
                actor.brand_id,
                doc_no,
                DIRECTION.get(data.kind, "outbound"),
                data.kind,
                org["id"],
                counterparty,
                order_id,
                data.shipment_id,
                data.doc_date,
                actor.user_id,
                data.signee,
                data.phone,
                data.customer,
                data.customer_type,
                data.destination_city,
                data.salesperson_id,
                data.reason,
                data.note,
                actor.user_id,
            ),
        )
    ).fetchone()
    assert row is not None
    out = await get_document(conn, actor, row["id"])
    await audit.record(conn, actor, "create", "document", out.doc_no, after=out, org_id=org["id"])
    return out


async def _draft(conn: Conn, actor: Principal, doc_id: int) -> dict[str, Any]:
    actor.require("logistics.scan")
    row = await _row(conn, actor, doc_id)
    await conn.execute("SELECT 1 FROM documents WHERE id = %s FOR UPDATE", (doc_id,))
    if not actor.sees(row["org_path"]):
        raise Forbidden("only the organisation doing it may change a document", code="not_your_org")
    if row["status"] != "draft":
        raise Conflict(f"the document is {row['status']}", code="not_draft")
    return row


async def add_codes(
    conn: Conn, actor: Principal, scheme: Scheme, doc_id: int, data: CodesIn
) -> ItemsOut:
    """Scan codes into a draft: per-code results (a code that is not active is rejected).

    Scoping: only goods within the caller's reach are known here — held by or on their way to
    the caller's subtree, or, for a factory inbound, held by the factory it receives from. Any
    other code is rejected ``not_activated`` / ``not_packed``, exactly like one that was never
    activated or packed, so a draft cannot be used to probe where other parties' goods are."""
    doc = await _draft(conn, actor, doc_id)
    reads = await read_codes(conn, scheme, actor.brand_id, data.codes)
    units = [r.code for r in reads if r.reason is None and r.kind == "unit"]
    cases = [r.code for r in reads if r.reason is None and r.kind == "case"]
    source = doc["counterparty_id"] if doc["kind"] == "factory_inbound" else None
    known_units = await _in_reach(conn, actor, "unit_state", "code", units, source)
    known_cases = await _in_reach(conn, actor, "case_state", "sscc", cases, source)
    results: list[ItemResult] = []
    new: list[tuple[str, int]] = []
    for read in reads:
        reason = read.reason
        if reason is None and (
            read.code not in (known_units if read.kind == "unit" else known_cases)
        ):
            reason = "not_activated" if read.kind == "unit" else "not_packed"
        if reason is not None:
            results.append(
                ItemResult(code=read.label, result="rejected", kind=read.kind, reason=reason)
            )
        else:
            new.append(("u" if read.kind == "unit" else "c", read.code))
            results.append(ItemResult(code=read.label, result="added", kind=read.kind))
    inserted: set[tuple[str, int]] = set()
    if new:
        rows = await (
            await conn.execute(
                """INSERT INTO document_items (document_id, kind, code)
                   SELECT %s, k, c FROM unnest(%s::"char"[], %s::bigint[]) AS d (k, c)
                   ON CONFLICT DO NOTHING RETURNING kind, code""",
                (doc_id, [k for k, _ in new], [c for _, c in new]),
            )
        ).fetchall()
        inserted = {(row["kind"], row["code"]) for row in rows}
    added = iter(new)
    final = []
    for item in results:
        if item.result == "added":
            key = next(added)
            if key not in inserted:
                item = ItemResult(code=item.code, result="duplicate", kind=item.kind)
            else:
                inserted.discard(key)  # a code scanned twice in one request: once added
        final.append(item)
    return ItemsOut(
        added=sum(i.result == "added" for i in final),
        rejected=sum(i.result == "rejected" for i in final),
        items=final,
    )


async def _in_reach(
    conn: Conn, actor: Principal, table: str, key: str, codes: list[int], source: int | None
) -> set[int]:
    """Those of these codes that have a state row and whose goods are held by or on their way
    to the caller's subtree (or held by ``source``)."""
    if not codes:
        return set()
    rows = await (
        await conn.execute(
            f"""SELECT s.{key} AS code FROM {table} s JOIN orgs h ON h.id = s.holder_org_id
                LEFT JOIN orgs t ON t.id = s.transit_to
                WHERE s.{key} = ANY(%(codes)s)
                  AND (starts_with(h.path, %(scope)s) OR starts_with(t.path, %(scope)s)
                       OR s.holder_org_id = %(source)s)""",
            {"codes": codes, "scope": actor.org_path, "source": source},
        )
    ).fetchall()
    return {row["code"] for row in rows}


async def cancel(conn: Conn, actor: Principal, doc_id: int) -> DocumentOut:
    await _draft(conn, actor, doc_id)
    await conn.execute("UPDATE documents SET status = 'cancelled' WHERE id = %s", (doc_id,))
    out = await get_document(conn, actor, doc_id)
    await audit.record(conn, actor, "cancel", "document", out.doc_no, org_id=out.org_id)
    return out


# -- confirming: the movement ------------------------------------------------------------------


async def confirm(conn: Conn, actor: Principal, scheme: Scheme, doc_id: int) -> DocumentOut:
    """Apply the document. An exception outbound goes to an approver first (L4)."""
    row = await _draft(conn, actor, doc_id)
    if row["kind"] == "exception":
        await _movement(conn, row, dry_run=True)
        await conn.execute(
            "UPDATE documents SET status = 'pending_approval' WHERE id = %s", (doc_id,)
        )
    else:
        await _movement(conn, row)
    out = await get_document(conn, actor, doc_id)
    await audit.record(conn, actor, "confirm", "document", out.doc_no, after=out, org_id=out.org_id)
    return out


async def decide(
    conn: Conn, actor: Principal, doc_id: int, approve: bool, note: str
) -> DocumentOut:
    """An approver of the warehouse's organisation approves (goods move) or rejects (L4)."""
    actor.require("logistics.approve")
    row = await _row(conn, actor, doc_id)
    await conn.execute("SELECT 1 FROM documents WHERE id = %s FOR UPDATE", (doc_id,))
    if not actor.sees(row["org_path"]):
        raise Forbidden("approve documents of your own organisations", code="not_your_org")
    if row["status"] != "pending_approval":
        raise Conflict(f"the document is {row['status']}", code="not_pending")
    if approve:
        await _movement(conn, row)
    else:
        await conn.execute("UPDATE documents SET status = 'rejected' WHERE id = %s", (doc_id,))
    await conn.execute(
        "UPDATE documents SET approved_by = %s, approved_at = now(), "
        "note = CASE WHEN %s = '' THEN note ELSE %s END WHERE id = %s",
        (actor.user_id, note, note, doc_id),
    )
    out = await get_document(conn, actor, doc_id)
    action = "approve" if approve else "reject"
    await audit.record(conn, actor, action, "document", out.doc_no, after=out, org_id=out.org_id)
    return out


async def _expand(
    conn: Conn, units: list[int], cases: list[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The state rows (locked) of these units and cases and of everything inside the cases."""
    boxes = cases
    if cases:
        rows = await (
            await conn.execute(
                """WITH RECURSIVE boxes (sscc) AS (
                       SELECT unnest(%s::bigint[])
                       UNION SELECT c.sscc FROM case_state c JOIN boxes b ON c.parent_sscc = b.sscc)
                   SELECT sscc FROM boxes""",
                (cases,),
            )
        ).fetchall()
        boxes = [row["sscc"] for row in rows]
    unit_rows = await (
        await conn.execute(
            """SELECT code, product_id, lot, status, holder_org_id, transit_to, parent_sscc,
                      channel_org_id
               FROM unit_state WHERE code = ANY(%s) OR parent_sscc = ANY(%s)
               ORDER BY code FOR UPDATE""",
            (units, boxes),
        )
    ).fetchall()
    case_rows = await (
        await conn.execute(
            """SELECT sscc, product_id, status, holder_org_id, transit_to, parent_sscc
               FROM case_state WHERE sscc = ANY(%s) ORDER BY sscc FOR UPDATE""",
            (boxes,),
        )
    ).fetchall()
    return unit_rows, case_rows


async def _items(conn: Conn, doc_id: int) -> tuple[list[int], list[int]]:
    rows = await (
        await conn.execute(
            "SELECT kind, code FROM document_items WHERE document_id = %s", (doc_id,)
        )
    ).fetchall()
    return [r["code"] for r in rows if r["kind"] == "u"], [
        r["code"] for r in rows if r["kind"] == "c"
    ]


async def _shipped_items(conn: Conn, doc: dict[str, Any]) -> tuple[list[int], list[int]]:
    """What the shipment(s) an inbound receives carried."""
    if doc["shipment_id"] is not None:
        return await _items(conn, doc["shipment_id"])
    rows = await (
        await conn.execute(
            """SELECT i.kind, i.code FROM documents s JOIN document_items i ON i.document_id = s.id
               WHERE s.order_id = %s AND s.counterparty_id = %s AND s.status = 'confirmed'
                 AND s.kind IN ('outbound', 'return')""",
            (doc["order_id"], doc["org_id"]),
        )
    ).fetchall()
    return [r["code"] for r in rows if r["kind"] == "u"], [
        r["code"] for r in rows if r["kind"] == "c"
    ]


async def _in_transit(
    conn: Conn, org: int, units: list[int], cases: list[int]
) -> tuple[list[int], list[int]]:
    """Those of these units and cases that are in transit to ``org`` now (an earlier part of a
    split shipment, or part of a shipment, may have been received already)."""
    unit_rows = await (
        await conn.execute(
            """SELECT code FROM unit_state
               WHERE code = ANY(%s) AND transit_to = %s AND status = 'active'""",
            (units, org),
        )
    ).fetchall()
    case_rows = await (
        await conn.execute(
            "SELECT sscc FROM case_state WHERE sscc = ANY(%s) AND transit_to = %s", (cases, org)
        )
    ).fetchall()
    return [r["code"] for r in unit_rows], [r["sscc"] for r in case_rows]


def _refuse(code: str, message: str, bad: list[int]) -> Conflict:
    return Conflict(message, code=code, details={"count": len(bad), "codes": bad[:_MAX_LISTED]})


async def _movement(conn: Conn, doc: dict[str, Any], dry_run: bool = False) -> None:
    kind, org, other = doc["kind"], doc["org_id"], doc["counterparty_id"]
    units, cases = await _items(conn, doc["id"])
    discrepancies: dict[str, Any] = {}
    if kind == "inbound":
        shipped_units, shipped_cases = await _shipped_items(conn, doc)
        if not units and not cases:  # receiving in one action: what is on its way here now
            units, cases = await _in_transit(conn, org, shipped_units, shipped_cases)
            if not units and not cases:
                raise Conflict(
                    "nothing of this shipment or order is in transit to this organisation",
                    code="nothing_in_transit",
                )
    if not units and not cases:
        raise Unprocessable("scan codes into the document first", code="empty_document")
    unit_rows, case_rows = await _expand(conn, units, cases)
    # who must hold the goods now
    if kind == "inbound":
        bad = [u["code"] for u in unit_rows if u["transit_to"] != org or u["status"] != "active"]
        if bad:
            raise _refuse("not_in_transit", "codes not in transit to this organisation", bad)
        expected_rows, _ = await _expand(conn, shipped_units, shipped_cases)
        expected = {u["code"] for u in expected_rows}
        unexpected = [u["code"] for u in unit_rows if u["code"] not in expected]
        if unexpected:
            raise _refuse("not_in_shipment", "codes that this shipment did not carry", unexpected)
        received = {u["code"] for u in unit_rows}
        missing = [
            u["code"] for u in expected_rows if u["code"] not in received and u["transit_to"] == org
        ]
        if missing:
            discrepancies["missing"] = {"count": len(missing), "codes": missing[:_MAX_LISTED]}
    else:
        source = other if kind == "factory_inbound" else org
        bad = [
            u["code"]
            for u in unit_rows
            if u["holder_org_id"] != source
            or u["transit_to"] is not None
            or u["status"] != "active"
        ]
        if bad:
            raise _refuse("not_held", "codes not held (in stock) by the shipping organisation", bad)
    counts = Counter(u["product_id"] for u in unit_rows)
    if kind == "outbound" and doc["order_id"] is not None:
        lines = {
            r["product_id"]: r
            for r in await (
                await conn.execute(
                    "SELECT product_id, quantity, shipped FROM order_lines WHERE order_id = %s",
                    (doc["order_id"],),
                )
            ).fetchall()
        }
        over = {
            str(p): {"ordered": lines[p]["quantity"] if p in lines else 0,
                     "shipped": lines[p]["shipped"] if p in lines else 0, "now": n}
            for p, n in counts.items()
            if p not in lines or lines[p]["shipped"] + n > lines[p]["quantity"]
        }  # fmt: skip
        if over:
            raise Conflict("more than the order allows", code="over_shipment", details=over)
        short = {
            str(p): line["quantity"] - line["shipped"] - counts.get(p, 0)
            for p, line in lines.items()
            if line["shipped"] + counts.get(p, 0) < line["quantity"]
        }
        if short:
            discrepancies["short"] = short
    if dry_run:
        return
    await _apply(conn, doc, units, cases, unit_rows, case_rows, discrepancies)


async def _apply(
    conn: Conn,
    doc: dict[str, Any],
    units: list[int],
    cases: list[int],
    unit_rows: list[dict[str, Any]],
    case_rows: list[dict[str, Any]],
    discrepancies: dict[str, Any],
) -> None:
    kind, org, other = doc["kind"], doc["org_id"], doc["counterparty_id"]
    now = datetime.now(UTC)
    codes = [u["code"] for u in unit_rows]
    boxes = [c["sscc"] for c in case_rows]
    moved_boxes = set(boxes)
    # units moved without their case leave it (an implicit unpacking)
    loose = Counter(
        u["parent_sscc"]
        for u in unit_rows
        if u["parent_sscc"] is not None and u["parent_sscc"] not in moved_boxes
    )
    ids = await allocate_ids(conn, 1 + len(loose))
    event_id = ids[0]
    org_kind = (await _org(conn, org))["kind"]
    other_kind = (await _org(conn, other))["kind"] if other else None
    deltas = new_deltas()
    for u in unit_rows:
        key = (u["product_id"], u["lot"])
        if kind == "factory_inbound":
            deltas[(other, *key, "on_hand")] -= 1
            deltas[(org, *key, "on_hand")] += 1
        elif kind in ("outbound", "return"):
            deltas[(org, *key, "on_hand")] -= 1
            deltas[(other, *key, "in_transit")] += 1
        elif kind == "inbound":
            deltas[(org, *key, "in_transit")] -= 1
            deltas[(org, *key, "on_hand")] += 1
        else:  # exception, sale: the goods leave the stock
            deltas[(org, *key, "on_hand")] -= 1
    # what changes, per kind: (unit columns, case columns, bizStep, disposition)
    if kind == "factory_inbound":
        unit_sets = case_sets = "holder_org_id = %(org)s"
        biz_step, disposition = "receiving", "sellable_not_accessible"
    elif kind in ("outbound", "return"):
        case_sets = "transit_to = %(other)s"
        unit_sets = case_sets + ", shipped_at = coalesce(shipped_at, %(now)s)"
        biz_step, disposition = "shipping", ("returned" if kind == "return" else "in_transit")
    elif kind == "inbound":
        unit_sets = case_sets = "holder_org_id = %(org)s, transit_to = NULL"
        biz_step = "receiving"
        disposition = "sellable_accessible" if org_kind == "store" else "sellable_not_accessible"
    else:  # exception, sale: the units leave the supply chain; their cases stay where they are
        unit_sets, case_sets = "status = 'sold', sold_at = %(now)s", "holder_org_id = holder_org_id"
        biz_step = "shipping" if kind == "exception" else "retail_selling"
        disposition = "non_sellable_other" if kind == "exception" else "retail_sold"
    params: dict[str, Any] = {
        "org": org, "other": other, "now": now, "event": event_id, "disp": disposition
    }  # fmt: skip
    if kind == "outbound":
        unit_sets += ", channel_org_id = coalesce(channel_org_id, %(other)s)"
        if other_kind == "store":
            unit_sets += ", store_org_id = %(other)s, salesperson_id = %(salesperson)s"
            params["salesperson"] = doc["salesperson_id"]
    await conn.execute(
        f"""UPDATE unit_state SET {unit_sets}, disposition = %(disp)s, last_event_id = %(event)s,
                updated_at = %(now)s,
                parent_sscc = CASE WHEN parent_sscc = ANY(%(boxes)s) THEN parent_sscc END
            WHERE code = ANY(%(codes)s)""",
        {**params, "codes": codes, "boxes": boxes},
    )
    if boxes:
        await conn.execute(
            f"""UPDATE case_state SET {case_sets}, disposition = %(disp)s,
                    last_event_id = %(event)s, updated_at = %(now)s
                WHERE sscc = ANY(%(boxes)s)""",
            {**params, "boxes": boxes},
        )
    order_no = None
    if doc["order_id"] is not None:
        order_no = doc["order_no"]
        column = "received" if kind == "inbound" else "shipped"
        counts = Counter(u["product_id"] for u in unit_rows)
        for product, n in counts.items():
            await conn.execute(
                f"UPDATE order_lines SET {column} = {column} + %s "
                "WHERE order_id = %s AND product_id = %s",
                (n, doc["order_id"], product),
            )
        await conn.execute(
            """UPDATE orders SET updated_at = now(), status = CASE
                   WHEN NOT EXISTS (SELECT 1 FROM order_lines WHERE order_id = %(o)s
                                    AND received < quantity) THEN 'received'
                   WHEN NOT EXISTS (SELECT 1 FROM order_lines WHERE order_id = %(o)s
                                    AND shipped < quantity) THEN 'shipped'
                   ELSE status END
               WHERE id = %(o)s AND status NOT IN ('closed', 'cancelled')""",
            {"o": doc["order_id"]},
        )
    transactions = [
        {"type": "desadv" if doc["direction"] == "outbound" else "recadv", "id": doc["doc_no"]}
    ]
    if order_no:
        transactions.insert(0, {"type": "po", "id": order_no})
    source, destination = {
        "factory_inbound": (other, org),
        "inbound": (other, org),
        "outbound": (org, other),
        "return": (org, other),
    }.get(kind, (org, None))
    top_units = [u["code"] for u in unit_rows if u["parent_sscc"] not in moved_boxes]
    events = [
        builders.observe(
            id=event_id,
            brand_id=doc["brand_id"],
            at=now,
            biz_step=biz_step,
            disposition=disposition,
            units=top_units,
            cases=[c for c in boxes if c in set(cases)] or [],
            biz_location=org,
            source_org=source,
            destination_org=destination,
            biz_transactions=transactions,
            recorded_by=doc["handler_id"],
            details={"document": doc["doc_no"], "kind": kind, "reason": doc["reason"]},
        )
    ]
    for extra_id, (parent, _) in zip(ids[1:], sorted(loose.items()), strict=True):
        events.append(
            builders.disaggregate(
                id=extra_id,
                brand_id=doc["brand_id"],
                at=now,
                parent=parent,
                units=[u["code"] for u in unit_rows if u["parent_sscc"] == parent],
                biz_location=org,
                recorded_by=doc["handler_id"],
                details={"document": doc["doc_no"]},
            )
        )
    await write_events(conn, events)
    await write_deltas(conn, deltas, event_id)
    lines = Counter((u["product_id"], u["lot"]) for u in unit_rows)
    packages = Counter(c["product_id"] for c in case_rows if c["sscc"] in set(cases))
    for (product, lot), n in lines.items():
        await conn.execute(
            "INSERT INTO document_lines (document_id, product_id, lot, units, packages) "
            "VALUES (%s, %s, %s, %s, %s)",
            (doc["id"], product, lot, n, packages.pop(product, 0)),
        )
    await conn.execute(
        """UPDATE documents SET status = 'confirmed', confirmed_at = %s, event_id = %s,
               discrepancies = %s WHERE id = %s""",
        (now, event_id, _json(discrepancies), doc["id"]),
    )


def _json(value: dict[str, Any]) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(value) if value else None


# -- one-step flows ---------------------------------------------------------------------------


async def receive_order(conn: Conn, actor: Principal, scheme: Scheme, order_id: int) -> DocumentOut:
    """Receive what is in transit to the caller's organisation under an order, in one action
    (each part of a split shipment as it arrives)."""
    await get_order(conn, actor, order_id)  # 404 for an order outside the caller's subtree
    doc = await create_document(conn, actor, DocumentIn(kind="inbound", order_id=order_id))
    return await confirm(conn, actor, scheme, doc.id)


async def sell(conn: Conn, actor: Principal, scheme: Scheme, data: SaleIn) -> DocumentOut:
    """A store sells units by scanning them (retail_selling)."""
    actor.require("logistics.scan")
    org = await _own_org(conn, actor, data.org_id or actor.org_id)
    seq = await (await conn.execute("SELECT nextval('document_no_seq') AS n")).fetchone()
    assert seq is not None
    doc_no = f"XS{datetime.now(UTC):%Y%m%d}{seq['n']:07d}"
    row = await (
        await conn.execute(
            """INSERT INTO documents (brand_id, doc_no, direction, kind, org_id, handler_id,
                   customer, phone, created_by)
               VALUES (%s, %s, 'outbound', 'sale', %s, %s, %s, %s, %s) RETURNING id""",
            (
                actor.brand_id,
                doc_no,
                org["id"],
                actor.user_id,
                data.customer,
                data.phone,
                actor.user_id,
            ),
        )
    ).fetchone()
    assert row is not None
    items = await add_codes(conn, actor, scheme, row["id"], CodesIn(codes=data.codes))
    if items.rejected:
        bad = [i.code for i in items.items if i.result == "rejected"]
        raise Unprocessable("codes that cannot be sold", code="bad_codes", details={"codes": bad})
    return await confirm(conn, actor, scheme, row["id"])


async def consumer_return(
    conn: Conn, actor: Principal, scheme: Scheme, data: ReturnIn
) -> ReturnOut:
    """A sold unit comes back to the store that sold it; optionally exchanged for another.

    A unit not issued to this brand, never activated, or held outside the caller's subtree (sold
    by another organisation) answers 404 ``unknown_code`` alike: as if it did not exist."""
    actor.require("logistics.scan")
    read = (await read_codes(conn, scheme, actor.brand_id, [data.code]))[0]
    if read.kind != "unit" or read.reason not in (None, "unknown"):
        raise Unprocessable(f"{data.code}: {read.reason or 'not a unit code'}", code="bad_code")
    state = None
    if read.reason is None:
        state = await (
            await conn.execute(
                """SELECT u.status, u.holder_org_id, u.product_id, u.lot, o.path
                   FROM unit_state u JOIN orgs o ON o.id = u.holder_org_id
                   WHERE u.code = %s FOR UPDATE OF u""",
                (read.code,),
            )
        ).fetchone()
    if state is None or not actor.sees(state["path"]):
        raise NotFound(f"{read.label}: no such code here", code="unknown_code")
    if state["status"] != "sold":
        raise Conflict("only a sold unit can be returned by a consumer", code="not_sold")
    disposition = {"damaged": "damaged", "expired": "expired"}.get(data.reason, "returned")
    [event_id] = await allocate_ids(conn, 1)
    now = datetime.now(UTC)
    await conn.execute(
        """UPDATE unit_state SET status = 'active', sold_at = NULL, disposition = %s,
               last_event_id = %s, updated_at = %s WHERE code = %s""",
        (disposition, event_id, now, read.code),
    )
    await write_events(
        conn,
        [
            builders.observe(
                id=event_id,
                brand_id=actor.brand_id,
                at=now,
                biz_step="receiving",
                disposition=disposition,
                units=[read.code],
                biz_location=state["holder_org_id"],
                recorded_by=actor.user_id,
                details={"reason": data.reason, "return": "consumer", "note": data.note},
            )
        ],
    )
    deltas = new_deltas()
    deltas[(state["holder_org_id"], state["product_id"], state["lot"], "on_hand")] += 1
    await write_deltas(conn, deltas, event_id)
    documents: list[str] = []
    exchanged = None
    if data.exchange_for is not None:
        sale = await sell(
            conn, actor, scheme, SaleIn(codes=[data.exchange_for], org_id=state["holder_org_id"])
        )
        documents.append(sale.doc_no)
        exchanged = data.exchange_for
    await audit.record(
        conn, actor, "consumer_return", "unit", read.label,
        after={"reason": data.reason, "exchange_for": exchanged}, org_id=state["holder_org_id"],
    )  # fmt: skip
    return ReturnOut(
        returned=read.label, disposition=disposition, exchanged_for=exchanged, documents=documents
    )


async def list_documents(
    conn: Conn,
    actor: Principal,
    *,
    kind: str | None,
    status: str | None,
    org_id: int | None,
    doc_no: str | None,
    page: int,
    per_page: int,
) -> Any:
    from app.paging import fetch_page

    require_reader(actor)
    where = ["(o.path LIKE %(prefix)s OR c.path LIKE %(prefix)s)"]
    params: dict[str, Any] = {"prefix": actor.org_path + "%"}
    for column, value in (("d.kind", kind), ("d.status", status), ("d.doc_no", doc_no)):
        if value is not None:
            key = column.split(".")[1]
            where.append(f"{column} = %({key})s")
            params[key] = value
    if org_id is not None:
        where.append("(d.org_id = %(org)s OR d.counterparty_id = %(org)s)")
        params["org"] = org_id
    rows = await fetch_page(
        conn,
        columns="d.id",
        source="""documents d JOIN orgs o ON o.id = d.org_id
                  LEFT JOIN orgs c ON c.id = d.counterparty_id""",
        where=where,
        params=params,
        order="d.created_at DESC, d.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: row["id"],
    )
    items = [await get_document(conn, actor, doc_id) for doc_id in rows.items]
    from app.paging import Page

    return Page(items, rows.page, rows.per_page, rows.total)
