"""In/out documents: the lifecycle of the documents goods move by (L2–L8, L10).

A document is a draft while codes are scanned into it (``add_codes``); confirming it moves the
codes as its kind's movement says (``app.logistics.movements``: the table of kinds and the steps
— check the plan, move state, count against the order, write events and stock deltas, write the
document's lines — all in the caller's one transaction). An exception outbound waits for an
approver first (L4). A store's sale (``sell``) and a consumer's return (``consumer_return``) are
movements of the same table; a claim that sells a unit writes its sale document in the claim
round's own statement (``movements.claim_sale_documents``). Cases move with their contents.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, cast, get_args

import msgspec

from app import audit, idempotency, localtime
from app.auth.principal import Principal
from app.auth.service import org_status
from app.codes.lookup import VOID_STATES, Read, read_codes
from app.codes.scheme import Scheme
from app.db import Conn
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.events.epcis import Disposition
from app.field.checkins import check_client_at
from app.localtime import TODAY_SQL
from app.locks import Lock, xact_lock
from app.logistics import movements
from app.logistics.movements import (
    GIVEN_AWAY,
    MOVEMENTS,
    NOT_FOR_SALE,
    SHIPMENT_KINDS,
    Movement,
    Plan,
    UnitRow,
)
from app.logistics.orders import SENDERS, SHIPPED_BY, get_order, require_reader
from app.logistics.schemas import (
    CodesIn,
    DocumentIn,
    DocumentLineOut,
    DocumentOut,
    DocumentSummaryOut,
    ItemResult,
    ItemsOut,
    RemoveCodesIn,
    RemovedOut,
    RemovedResult,
    ReturnIn,
    ReturnOut,
    ReturnReason,
    SaleIn,
    SummaryLineOut,
)
from app.orgs.schemas import CHANNEL_KINDS

# who sells to consumers: the kinds a member's claim sells at too (``app.members.points``)
RETAIL_KINDS = ("store", "agent", "distributor")
OPEN = ("draft", "pending_approval")  # statuses whose goods are still to move

_DOC = """SELECT d.id, d.doc_no, d.direction, d.kind, d.org_id, o.name AS org_name,
       d.counterparty_id, c.name AS counterparty_name, d.order_id, r.erp_no AS order_no,
       d.shipment_id, d.doc_date, d.handler_id, u.display_name AS handler_name, d.signee,
       d.phone, d.customer, d.customer_type, d.destination_city, d.salesperson_id, d.reason,
       d.status, d.note, d.discrepancies, d.approved_by, d.approved_at, d.decision_note,
       d.confirmed_at, d.client_at, d.submitted_by,
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


# a document's running count per product: its loose units and the units inside its cases (and
# their inner cases), each unit once; a confirmed document's: the units it moved (its lines, fixed
# at confirmation: its cases' contents move on later). Beside the lines of its order (FULL JOIN:
# a product the order does not name is a line of its own). ``done`` is what the movement's order
# column (shipped or received) already counts; an open document's units (a draft's, or one
# awaiting approval) are still to be counted on it.
_SUMMARY = """WITH RECURSIVE boxes (sscc) AS (
        SELECT unnest(%(cases)s::bigint[])
        UNION SELECT c.sscc FROM case_state c JOIN boxes b ON c.parent_sscc = b.sscc),
    units AS (
        SELECT code, product_id FROM unit_state WHERE code = ANY(%(units)s::bigint[])
        UNION SELECT u.code, u.product_id FROM boxes b JOIN unit_state u ON u.parent_sscc = b.sscc),
    scanned AS (
        SELECT product_id, count(*) AS n FROM units WHERE NOT %(moved)s GROUP BY product_id
        UNION ALL
        SELECT product_id, sum(units) FROM document_lines
         WHERE %(moved)s AND document_id = %(doc)s GROUP BY product_id),
    ordered AS (
        SELECT line_no, product_id, quantity,
               CASE %(column)s::text WHEN 'shipped' THEN shipped WHEN 'received' THEN received
               END AS done
        FROM order_lines WHERE order_id = %(order)s::bigint)
    SELECT p.id AS product_id, p.name AS product_name, o.line_no, o.quantity AS ordered, o.done,
           coalesce(s.n, 0)::int AS scanned,
           o.quantity - o.done - CASE WHEN %(open)s THEN coalesce(s.n, 0) ELSE 0 END
               AS remaining
    FROM ordered o FULL JOIN scanned s ON s.product_id = o.product_id
    JOIN products p ON p.id = coalesce(o.product_id, s.product_id)
    ORDER BY o.line_no NULLS LAST, p.id"""


async def get_summary(conn: Conn, actor: Principal, doc_id: int) -> DocumentSummaryOut:
    """A document's running count per product against its order's lines (scoped like the
    document: one the caller may not read answers 404 ``unknown_document``). A receipt that
    scanned nothing counts what confirming it receives: its shipments' goods on their way to it
    (probe P: it counted nothing, and a confirmed document what its cases hold today)."""
    require_reader(actor)
    row = await _row(conn, actor, doc_id)
    column = MOVEMENTS[row["kind"]].order_column if row["order_id"] is not None else None
    moved, still_open = row["status"] == "confirmed", row["status"] in OPEN
    units, cases = await movements.items_of(conn, doc_id)
    if not moved and not still_open:  # cancelled or rejected: moved nothing, counts nothing
        units, cases = [], []  # (probe X: recounted from its cases' contents of the day)
    received_whole = not units and not cases and MOVEMENTS[row["kind"]].sender == "in_transit"
    if still_open and received_whole:
        units, cases = await movements.on_its_way(conn, row)
    rows = await (
        await conn.execute(
            _SUMMARY,
            {
                "doc": doc_id,
                "units": units,
                "cases": cases,
                "order": row["order_id"],
                "column": column,
                "moved": moved,
                "open": still_open,
            },
        )
    ).fetchall()
    lines = [
        SummaryLineOut(
            **r,
            over=row["order_id"] is not None
            and (r["ordered"] is None or (r["remaining"] is not None and r["remaining"] < 0)),
        )
        for r in rows
    ]
    return DocumentSummaryOut(
        id=doc_id,
        status=row["status"],
        order_id=row["order_id"],
        # the packages: a case inside a pallet scanned too is no package of its own (a probe:
        # a draft of 2,000 cases and 10 pallets of 100 of them said 2,008, its confirm 1,908)
        cases=await _packages(conn, doc_id) if moved else await _outermost(conn, cases),
        units=sum(line.scanned for line in lines),
        lines=lines,
    )


async def _outermost(conn: Conn, cases: list[int]) -> int:
    """How many of these scanned cases hold a unit and are inside no other of them
    (``movements.outermost``'s rule, on the cases' state now)."""
    held = await (
        await conn.execute(
            """WITH RECURSIVE down (top, sscc) AS (
                   SELECT sscc, sscc FROM case_state WHERE sscc = ANY(%(cases)s)
                   UNION
                   SELECT d.top, c.sscc FROM down d JOIN case_state c ON c.parent_sscc = d.sscc)
               SELECT DISTINCT d.top FROM down d
                WHERE EXISTS (SELECT 1 FROM unit_state u WHERE u.parent_sscc = d.sscc)""",
            {"cases": cases},
        )
    ).fetchall()
    cases = [r["top"] for r in held]
    if not cases:
        return 0
    row = await (
        await conn.execute(
            """WITH RECURSIVE up (sscc, above, depth) AS (
                   SELECT sscc, parent_sscc, 1 FROM case_state
                    WHERE sscc = ANY(%(cases)s) AND parent_sscc IS NOT NULL
                   UNION ALL
                   SELECT up.sscc, s.parent_sscc, up.depth + 1
                     FROM up JOIN case_state s ON s.sscc = up.above
                    WHERE s.parent_sscc IS NOT NULL AND up.depth < 8)
               SELECT count(DISTINCT sscc)::int AS n FROM up WHERE above = ANY(%(cases)s)""",
            {"cases": cases},
        )
    ).fetchone()
    assert row is not None
    return len(set(cases)) - int(row["n"])


async def _packages(conn: Conn, doc_id: int) -> int:
    """The cases a confirmed document moved by its lines (a receipt of a whole shipment scanned
    none of its own)."""
    row = await (
        await conn.execute(
            "SELECT coalesce(sum(packages), 0)::int AS n FROM document_lines "
            "WHERE document_id = %s",
            (doc_id,),
        )
    ).fetchone()
    assert row is not None
    return int(row["n"])


async def _out(conn: Conn, row: dict[str, Any]) -> DocumentOut:
    lines = await (
        await conn.execute(
            """SELECT l.product_id, p.name AS product_name, l.lot, l.units, l.packages,
                      l.package_level, l.manufacturer_id, f.name AS manufacturer
               FROM document_lines l JOIN products p ON p.id = l.product_id
               LEFT JOIN orgs f ON f.id = l.manufacturer_id
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
            "SELECT id, kind, path, parent_id, name, city_name FROM orgs WHERE id = %s",
            (org_id,),
        )
    ).fetchone()
    if row is None or (actor is not None and not row["path"].startswith(f"/{actor.brand_id}/")):
        raise _unknown_org(org_id)
    return row


async def _ensure_open(conn: Conn, movement: Movement, counterparty: int | None) -> None:
    """A shipment's receiver is active, and every organisation above it (probe U: goods were
    shipped to a deactivated agent and its stores, where nobody can sign in to receive them).
    409 ``org_inactive`` when a draft is made and again when it is confirmed or approved."""
    if movement.receiver != "counterparty" or counterparty is None:
        return
    await _ensure_active(conn, counterparty, "it cannot receive goods")


async def _ensure_active(conn: Conn, org_id: int, because: str) -> None:
    """409 ``org_inactive`` when the organisation, or one above it, is inactive."""
    row = await (
        await conn.execute(
            f"SELECT {org_status('o')} AS status FROM orgs o WHERE o.id = %s", (org_id,)
        )
    ).fetchone()
    if row is not None and row["status"] != "active":
        raise _inactive(org_id, because)


def _inactive(org_id: int, because: str) -> Conflict:
    return Conflict(
        f"organisation {org_id} is inactive (or one above it): {because}",
        code="org_inactive",
        details={"org_id": org_id},
    )


# The lines (each organisation and every one above it, ``org_status``'s) of the organisations
# a movement needs active, locked FOR SHARE top down (as ``app.auth.service._hold_org_line``
# locks a user's), with each one's path as read (``seen``) and as locked.
_LIVE_LINES = """
SELECT o.id AS org_id, o.path AS seen, a.id, a.path, a.status
  FROM orgs o
  JOIN orgs a ON a.id = ANY(string_to_array(trim(both '/' FROM o.path), '/')::bigint[])
 WHERE o.id = ANY(%s) ORDER BY length(a.path), a.id FOR SHARE OF a"""


async def _hold_open(conn: Conn, movement: Movement, row: dict[str, Any]) -> None:
    """Once the goods are locked (``movements.check``): the organisations the movement needs
    active — a shipment's receiver (``_ensure_open``), a sale's store (``Movement.live_org``)
    — still are, their lines held ``FOR SHARE`` to the end of the transaction, else 409
    ``org_inactive``. A deactivation committed while the confirmation waited for the goods is
    seen (a locked row is read as it is now), and one under way waits for this transaction
    (probes: a shipment to an agent and a sale at a store, each deactivated while the goods'
    locks were awaited, went through after the deactivation answered). After the goods, as
    the movement's writes reference the organisations (key share) after them; a deactivation or
    a move of organisations takes no goods' rows, so no deadlock. An organisation moved
    meanwhile (its path as locked is not the one read): read again, under the locks now held."""
    needed: dict[int, str] = {}
    if movement.receiver == "counterparty" and row["counterparty_id"] is not None:
        needed[row["counterparty_id"]] = "it cannot receive goods"
    if movement.live_org:
        needed.setdefault(row["org_id"], "it sells nothing")
    if not needed:
        return
    for _ in range(3):
        lines = await (await conn.execute(_LIVE_LINES, (list(needed),))).fetchall()
        if any(r["id"] == r["org_id"] and r["path"] != r["seen"] for r in lines):
            continue
        for org_id, because in needed.items():
            if any(r["status"] != "active" for r in lines if r["org_id"] == org_id):
                raise _inactive(org_id, because)
        return
    raise Conflict("the organisation moved meanwhile; try again", code="retry")


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
    """A draft document; its codes are scanned in with ``add_codes``. Who the counterparty is
    follows from the kind's movement: the sender or receiver the draft names, the order's other
    end, the shipment's sender, or by default the organisation's parent."""
    actor.require("logistics.scan")
    movement = MOVEMENTS[data.kind]
    if data.order_id is not None and movement.order_column is None:
        # a factory inbound or an exception outbound moves no order's goods: an order named
        # would count goods its counterparty never gets (refused before any order is looked up)
        raise Unprocessable(
            f"a {data.kind} document moves no order's goods: no order_id (use note)",
            code="order_not_allowed",
        )
    if data.shipment_id is not None and movement.sender != "in_transit":
        # only an inbound receives a shipment (a probe: an outbound stored any document's id
        # unchecked — another agent's draft, whose number the ERP export then gave as its
        # shipment — and a missing one answered 409 ``in_use``, telling which ids exist)
        raise Unprocessable(
            f"a {data.kind} document receives no shipment: no shipment_id",
            code="shipment_not_allowed",
        )
    if data.counterparty_id is not None and "counterparty" not in (
        movement.sender,
        movement.receiver,
    ):
        # an inbound's sender is who shipped what it receives, an exception outbound has none:
        # a counterparty named was dropped silently
        raise Unprocessable(
            f"a {data.kind} document names no counterparty: no counterparty_id",
            code="counterparty_not_allowed",
        )
    if data.salesperson_id is not None and not movement.designates:
        # only a store's outbound gives its units a salesperson (``_check_salesperson``)
        raise _salesperson_not_allowed(f"a {data.kind} document")
    _check_reason(movement, data)
    org = await _own_org(conn, actor, actor.org_id if data.org_id is None else data.org_id)
    order = await _order_for(conn, actor, org, data.order_id)
    counterparty, order_id = await _counterparty(conn, movement, data, org, order)
    other = await _check_counterparty(conn, actor, movement, org, counterparty)
    await _ensure_open(conn, movement, counterparty)
    if data.salesperson_id is not None:
        await _check_salesperson(conn, movement, org["path"], data.salesperson_id, other)
    customer = _customer(movement, data, other)
    doc_id = await _insert_document(
        conn, actor, movement, data, org["id"], counterparty, order_id, customer
    )
    out = await get_document(conn, actor, doc_id)
    await audit.record(conn, actor, "create", "document", out.doc_no, after=out, org_id=org["id"])
    return out


# a reason a kind may give though it needs none: a return's, one of a consumer return's
# (``ReturnReason``); an exception outbound must give one of its movement's ``reasons``
_OPTIONAL_REASONS: dict[str, tuple[str, ...]] = {"return": get_args(ReturnReason)}


def _check_reason(movement: Movement, data: DocumentIn) -> None:
    """A ``reason`` only on a kind that takes one (a probe: an ordinary outbound's "gift" was
    kept, and its shipping event and the ERP export read as a gift): 422 ``reason_not_allowed``
    on any other kind, ``bad_reason`` for a return's that is not a ``ReturnReason``. An
    exception outbound's is checked with its counterparty (``_counterparty``)."""
    if data.reason is None or movement.reasons:
        return
    allowed = _OPTIONAL_REASONS.get(movement.kind)
    if allowed is None:
        raise Unprocessable(
            f"a {movement.kind} document gives no reason: no reason (use note)",
            code="reason_not_allowed",
        )
    if data.reason not in allowed:
        *first, last = allowed
        raise Unprocessable(f"reason: {', '.join(first)} or {last}", code="bad_reason")


async def _check_counterparty(
    conn: Conn,
    actor: Principal,
    movement: Movement,
    org: dict[str, Any],
    counterparty: int | None,
) -> dict[str, Any] | None:
    """The draft's counterparty, if any, checked against its movement (422 ``bad_org``)."""
    if counterparty is None:
        if movement.sender == "counterparty":  # a factory inbound with no factory above
            raise Unprocessable(
                "a factory inbound needs the factory it receives from", code="bad_org"
            )
        return None
    # any organisation of the brand may be a counterparty (goods move between them); one of
    # another brand answers exactly like one that does not exist
    other = await _org(conn, counterparty, actor)
    if counterparty == org["id"]:
        raise Unprocessable("counterparty: the organisation itself", code="bad_org")
    if movement.sender == "counterparty" and not (
        org["kind"] == "warehouse"
        and other["kind"] == "factory"
        and org["path"].startswith(other["path"])
    ):
        # the goods come from the factory above the warehouse, never from another party:
        # a store or an agent taking what an organisation above it holds is a shipment
        # that organisation did not make
        raise Unprocessable(
            "a factory inbound is a warehouse receiving from the factory above it",
            code="bad_org",
        )
    await _ensure_upstream(conn, movement, org["id"], counterparty)
    return other


# Where a return may go, from organisation o to c: ``above``, c is above o in the tree;
# ``shipper``, c shipped goods to o (a confirmed outbound); ``from_channel`` / ``to_channel``,
# o / c is in the sales channel (it, or one above it, a branch, agent, distributor or store)
# rather than the brand's own stock (the brand, its factories and their warehouses).
_ROUTE = """SELECT starts_with(o.path, c.path) AS above,
       EXISTS (SELECT 1 FROM documents d
                WHERE d.kind = 'outbound' AND d.status = 'confirmed'
                  AND d.org_id = c.id AND d.counterparty_id = o.id) AS shipper,
       EXISTS (SELECT 1 FROM orgs a
                WHERE a.id = ANY(string_to_array(trim(both '/' FROM o.path), '/')::bigint[])
                  AND a.kind = ANY(%(kinds)s)) AS from_channel,
       EXISTS (SELECT 1 FROM orgs a
                WHERE a.id = ANY(string_to_array(trim(both '/' FROM c.path), '/')::bigint[])
                  AND a.kind = ANY(%(kinds)s)) AS to_channel
    FROM orgs o, orgs c WHERE o.id = %(org)s AND c.id = %(other)s"""


async def _ensure_upstream(
    conn: Conn, movement: Movement, org_id: int, counterparty: int | None
) -> None:
    """A return goes back up: to an organisation above the sender, to one that shipped it
    goods, or from the sales channel to the brand's own stock (whose next outbound designates
    the goods anew) — never from the brand's own stock into the channel, which is an outbound
    (it designates the goods' channel). A probe: the factory warehouse sent fresh goods to the
    Guangdong agent as a "return", designating nothing, and the agent passed them on into
    Zhejiang's area unseen by the anti-diversion checks. 422 ``bad_org`` at the draft and at its
    confirmation."""
    if not movement.upstream_only or counterparty is None:
        return
    row = await (
        await conn.execute(
            _ROUTE, {"org": org_id, "other": counterparty, "kinds": list(CHANNEL_KINDS)}
        )
    ).fetchone()
    assert row is not None
    into_channel = row["to_channel"] and not row["from_channel"]
    back = row["from_channel"] and not row["to_channel"]
    if not (row["above"] or back or (row["shipper"] and not into_channel)):
        raise Unprocessable(
            f"a {movement.kind} goes back upstream: to an organisation above this one or one "
            "that shipped it goods (down the channel, ship an outbound)",
            code="bad_org",
            details={"counterparty_id": counterparty},
        )


Customer = tuple[str | None, str | None, str | None]  # 客户名称, 客户类型, 发往地(市)


def _customer(movement: Movement, data: DocumentIn, other: dict[str, Any] | None) -> Customer:
    """The customer, its type and the destination city of a draft: what the caller typed, else,
    for goods going to the counterparty (an outbound, a return), its name, kind and city (a
    probe: an agent's outbound to its store listed none of the three, though the system knows
    them; the staff app's form has no field for them)."""
    typed = (data.customer, data.customer_type, data.destination_city)
    if movement.receiver != "counterparty" or other is None:
        return typed
    return (
        data.customer or other["name"],
        data.customer_type or other["kind"],
        data.destination_city or other["city_name"],
    )


async def _insert_document(
    conn: Conn,
    actor: Principal,
    movement: Movement,
    data: DocumentIn,
    org_id: int,
    counterparty: int | None,
    order_id: int | None,
    customer: Customer,
) -> int:
    """The draft's row under the next document number of its kind; its id."""
    doc_no = await _doc_no(conn, movement)
    row = await (
        await conn.execute(
            f"""INSERT INTO documents (brand_id, doc_no, direction, kind, org_id, counterparty_id,
                   order_id, shipment_id, doc_date, handler_id, signee, phone, customer,
                   customer_type, destination_city, salesperson_id, reason, note, created_by)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, {TODAY_SQL}), %s, %s, %s,
                       %s, %s, %s, %s, %s, %s, %s)
               RETURNING id""",
            (
                actor.brand_id,
                doc_no,
                movement.direction,
                data.kind,
                org_id,
                counterparty,
                order_id,
                data.shipment_id,
                data.doc_date,
                actor.person,  # the handler: the user, or the maker of the key (four eyes)
                data.signee,
                data.phone,
                *customer,
                data.salesperson_id,
                data.reason,
                data.note,
                actor.user_id,
            ),
        )
    ).fetchone()
    assert row is not None
    return int(row["id"])


async def _doc_no(conn: Conn, movement: Movement) -> str:
    """The next document number: the kind's prefix, the date, a sequence number."""
    seq = await (await conn.execute("SELECT nextval('document_no_seq') AS n")).fetchone()
    assert seq is not None
    return f"{movement.prefix}{localtime.now():%Y%m%d}{seq['n']:07d}"


async def _order_for(
    conn: Conn, actor: Principal, org: dict[str, Any], order_id: int | None
) -> dict[str, Any] | None:
    """The order a draft is made against: one the caller may read (``orders.get_order``: either
    end in the caller's subtree, or one the document's warehouse ships, ``orders.SHIPPED_BY``);
    any other does not exist (422 ``unknown_order``). A probe: every order from or to an
    organisation above the document's was taken — a store drafted against the brand's order to
    another agent, read its ERP number and lines through the draft (``GET /orders/{id}`` 404),
    and shipped its own goods under it."""
    if order_id is None:
        return None
    order = await (
        await conn.execute(
            f"""SELECT o.id, o.brand_id, o.from_org_id, o.to_org_id, o.status,
                       f.path AS from_path, t.path AS to_path, {SHIPPED_BY} AS shipped
                FROM orders o JOIN orgs f ON f.id = o.from_org_id
                JOIN orgs t ON t.id = o.to_org_id WHERE o.id = %(id)s""",
            {"id": order_id, "me": org["id"]},
        )
    ).fetchone()
    if order is None or not (
        actor.sees(order["from_path"]) or actor.sees(order["to_path"]) or order["shipped"]
    ):
        raise Unprocessable("no such order", code="unknown_order")
    return order


async def _counterparty(
    conn: Conn,
    movement: Movement,
    data: DocumentIn,
    org: dict[str, Any],
    order: dict[str, Any] | None,
) -> tuple[int | None, int | None]:
    """(counterparty, order id) of a draft, as its movement's sender and receiver decide."""
    counterparty, order_id = data.counterparty_id, data.order_id
    if movement.sender == "counterparty":  # taking goods from it (factory inbound)
        if movement.default_counterparty == "parent":
            counterparty = org["parent_id"] if counterparty is None else counterparty
    elif movement.receiver == "counterparty":  # shipping to it (outbound, return)
        if order is not None:
            if not await _ships_for(conn, org["id"], order["from_org_id"]):
                raise Unprocessable("the order ships from another organisation", code="wrong_order")
            if order["status"] in ("closed", "cancelled"):
                raise Conflict(f"the order is {order['status']}", code="order_closed")
            if counterparty is not None and counterparty != order["to_org_id"]:
                # a probe: the order's receiver silently replaced the one the draft named
                raise Unprocessable(
                    "the order goes to another organisation than counterparty_id",
                    code="wrong_order",
                )
            counterparty = order["to_org_id"]
        if counterparty is None and movement.default_counterparty == "shipper":
            counterparty = await _last_shipper(conn, org["id"])
        if movement.default_counterparty is not None:
            counterparty = org["parent_id"] if counterparty is None else counterparty
        if counterparty is None:
            raise Unprocessable("an outbound needs a destination", code="no_destination")
    elif movement.reasons:  # goods leaving the chain for a reason (exception)
        if data.reason not in movement.reasons:
            *first, last = movement.reasons
            raise Unprocessable(f"reason: {', '.join(first)} or {last}", code="bad_reason")
    elif movement.sender == "in_transit":  # receiving a shipment, or an order's shipments
        counterparty, order_id = await _shipment_sender(conn, data, org, order)
    return counterparty, order_id


async def _ships_for(conn: Conn, org_id: int, sender_id: int) -> bool:
    """Whether the organisation ``org_id`` ships an order of ``sender_id``: the sender itself, or
    its side below it — no organisation that sells on (agent, distributor, store) on the way
    down (``orders.SENDERS``, the rule the orders a warehouse reads follow too; a probe: an agent
    shipped its own goods against the brand's order to the agent's store, counted as the
    brand's shipment, and a distributor filled its agent's order so)."""
    row = await (
        await conn.execute(
            f"SELECT %(sender)s IN ({SENDERS}) AS own", {"me": org_id, "sender": sender_id}
        )
    ).fetchone()
    return bool(row and row["own"])


async def _last_shipper(conn: Conn, org_id: int) -> int | None:
    """Who last shipped goods to ``org_id`` (its latest confirmed outbound to it), if it is
    still active (a probe: a closed warehouse's made every default return 409 org_inactive)."""
    row = await (
        await conn.execute(
            f"""SELECT d.org_id, {org_status("o")} AS status FROM documents d
                 JOIN orgs o ON o.id = d.org_id
                WHERE d.kind = 'outbound' AND d.status = 'confirmed' AND d.counterparty_id = %s
                ORDER BY d.confirmed_at DESC, d.id DESC LIMIT 1""",
            (org_id,),
        )
    ).fetchone()
    return int(row["org_id"]) if row and row["status"] == "active" else None


async def _order_shipper(conn: Conn, order: dict[str, Any]) -> int:
    """Who shipped an order's goods to its receiver: the sender of its latest confirmed shipment
    (a warehouse shipping its factory's order), else the order's sender (a probe: a receipt by
    order named the factory, where a receipt of the same shipment by its id names the
    warehouse, as the shipping event does)."""
    row = await (
        await conn.execute(
            """SELECT org_id FROM documents
               WHERE order_id = %s AND counterparty_id = %s AND kind = ANY(%s)
                 AND status = 'confirmed'
               ORDER BY confirmed_at DESC, id DESC LIMIT 1""",
            (order["id"], order["to_org_id"], SHIPMENT_KINDS),
        )
    ).fetchone()
    return int(row["org_id"]) if row else int(order["from_org_id"])


async def _shipment_sender(
    conn: Conn, data: DocumentIn, org: dict[str, Any], order: dict[str, Any] | None
) -> tuple[int | None, int | None]:
    """(sender, order id) of what an inbound receives: a confirmed shipment to ``org`` (which
    counts on the order it was made against) or the shipments of an order to ``org``."""
    if data.shipment_id is None and order is None:
        raise Unprocessable("receive a shipment_id or an order_id", code="no_shipment")
    if order is not None and order["to_org_id"] != org["id"]:
        raise Unprocessable("the order goes to another organisation", code="wrong_order")
    if data.shipment_id is None:  # the order's shipments: the sender is who shipped them
        assert order is not None
        return await _order_shipper(conn, order), data.order_id
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
        or shipment["kind"] not in SHIPMENT_KINDS
    ):
        raise Unprocessable("no such shipment to this organisation", code="unknown_shipment")
    if shipment["status"] != "confirmed":
        raise Conflict("the shipment is not confirmed", code="shipment_not_confirmed")
    # receiving a shipment made against an order counts on that order
    if data.order_id is not None and data.order_id != shipment["order_id"]:
        raise Unprocessable("the shipment was made against another order", code="wrong_order")
    return shipment["org_id"], shipment["order_id"]


async def salesperson_paths(conn: Conn, org_path: str, store: dict[str, Any] | None) -> list[str]:
    """The organisation paths (``LIKE`` patterns) whose active users an outbound of the
    organisation at ``org_path`` to ``store`` may name as its salesperson (L6): its own subtree's
    and, when it is of the brand's own stock (which supplies any store), the store's. The one
    rule of the draft (``_check_salesperson``) and the picker (``salespeople``): judged by the
    organisation shipping, never the caller (a probe: the brand's admin drafting the Zhejiang
    agent's outbound to its store named the Guangdong agent's store clerk)."""
    paths = [org_path + "%"]
    if store and store["kind"] == "store" and not await in_channel(conn, org_path):
        paths.append(store["path"] + "%")
    return paths


def _salesperson_not_allowed(what: str) -> Unprocessable:
    return Unprocessable(
        f"{what} names no salesperson: no salesperson_id", code="salesperson_not_allowed"
    )


async def _check_salesperson(
    conn: Conn,
    movement: Movement,
    org_path: str,
    user_id: int,
    other: dict[str, Any] | None,
) -> None:
    """A salesperson only on an outbound to a store (L6: its units get the store and the
    salesperson, ``movements.move_state``; a probe: one named on an outbound to a distributor,
    or on an inbound, was shown on the document and on no unit), else 422
    ``salesperson_not_allowed``; and one the picker lists for the document's organisation
    (``salesperson_paths``): an active user (of an organisation line still active) under it, or
    under the store the goods go to when it is of the brand's own stock. Any other answers like
    a user that does not exist (a probe: a salesperson who had left was named on new shipments).
    Checked at the draft and again at its confirmation."""
    if not movement.designates:
        raise _salesperson_not_allowed(f"a {movement.kind} document")
    if other is None or other["kind"] != "store":
        raise _salesperson_not_allowed("an outbound to other than a store")
    user = await (
        await conn.execute(
            f"""SELECT 1 FROM users u JOIN orgs o ON o.id = u.org_id
                 WHERE u.id = %s AND u.status = 'active' AND {org_status("o")} = 'active'
                   AND o.path LIKE ANY(%s)""",
            (user_id, await salesperson_paths(conn, org_path, other)),
        )
    ).fetchone()
    if user is None:
        raise Unprocessable("salesperson_id: no such user", code="unknown_user")


async def _recheck_salesperson(conn: Conn, movement: Movement, row: dict[str, Any]) -> None:
    """The draft's salesperson, checked again when it is confirmed (a probe: a store clerk
    deactivated after the draft was named on every unit shipped; the counterparty is checked at
    both steps too). Read as the draft's checks are: no lock beyond the document's. A draft
    kept before a salesperson was refused on other documents than an outbound to a store (its
    salesperson named on no unit) loses it instead: it could not be confirmed, and no request
    takes a salesperson off a draft (a review)."""
    if row["salesperson_id"] is None:
        return
    other = None if row["counterparty_id"] is None else await _org(conn, row["counterparty_id"])
    if not movement.designates or other is None or other["kind"] != "store":
        await conn.execute("UPDATE documents SET salesperson_id = NULL WHERE id = %s", (row["id"],))
        row["salesperson_id"] = None
        return
    await _check_salesperson(conn, movement, row["org_path"], row["salesperson_id"], other)


async def in_channel(conn: Conn, org_path: str) -> bool:
    """Whether the organisation at ``org_path``, or one above it, is of the sales channel (a
    branch, agent, distributor or store) rather than the brand's own stock (the brand, its
    factories and their warehouses, which supply any store of the brand)."""
    row = await (
        await conn.execute(
            """SELECT EXISTS (SELECT 1 FROM orgs a
                WHERE a.id = ANY(string_to_array(trim(both '/' FROM %s), '/')::bigint[])
                  AND a.kind = ANY(%s)) AS in_channel""",
            (org_path, list(CHANNEL_KINDS)),
        )
    ).fetchone()
    return bool(row and row["in_channel"])


async def _locked(conn: Conn, actor: Principal, doc_id: int) -> dict[str, Any]:
    """``_row`` of a document locked for this transaction: read after the lock is taken, so its
    status is the one a request that held the lock before left (a confirm and a cancel sent at
    once: the second sees the first's outcome, not the draft both started from)."""
    await conn.execute("SELECT 1 FROM documents WHERE id = %s FOR UPDATE", (doc_id,))
    return await _row(conn, actor, doc_id)


async def _draft(conn: Conn, actor: Principal, doc_id: int) -> dict[str, Any]:
    actor.require("logistics.scan")
    row = await _locked(conn, actor, doc_id)
    if not actor.sees(row["org_path"]):
        raise Forbidden("only the organisation doing it may change a document", code="not_your_org")
    if row["status"] != "draft":
        raise Conflict(f"the document is {row['status']}", code="not_draft")
    return row


async def add_codes(
    conn: Conn, actor: Principal, scheme: Scheme, doc_id: int, data: CodesIn
) -> ItemsOut:
    """Scan codes into a draft: per-code results (a code that is not active is rejected; one on
    the draft already is ``duplicate``, unless this request's ``client_id`` added it: a re-send
    whose answer was lost answers ``added`` again, see ``_resent``).

    Scoping: only goods within the caller's reach are known here — held by or on their way to
    the caller's subtree, or, for a factory inbound, held by the factory it receives from. Any
    other code is rejected ``not_activated`` / ``not_packed``, exactly like one that was never
    activated or packed, so a draft cannot be used to probe where other parties' goods are."""
    doc = await _draft(conn, actor, doc_id)
    reads = await read_codes(conn, scheme, actor.brand_id, data.codes)
    units = [r.code for r in reads if r.reason is None and r.kind == "unit"]
    cases = [r.code for r in reads if r.reason is None and r.kind == "case"]
    source = doc["counterparty_id"] if MOVEMENTS[doc["kind"]].sender == "counterparty" else None
    known_units = await _in_reach(conn, actor, "unit_state", "code", units, source)
    known_cases = await _in_reach(conn, actor, "case_state", "sscc", cases, source)
    results: list[ItemResult] = []
    new: list[tuple[str, int]] = []
    for read in reads:
        reason = read.reason
        if reason is None:
            status = (known_units if read.kind == "unit" else known_cases).get(read.code)
            if status is None:
                reason = "not_activated" if read.kind == "unit" else "not_packed"
            elif status in VOID_STATES:  # replaced, or destroyed: never goods to move
                reason = "void" if read.kind == "unit" else "case_void"
        if reason is not None:
            results.append(
                ItemResult(code=read.label, result="rejected", kind=read.kind, reason=reason)
            )
        else:
            new.append(("u" if read.kind == "unit" else "c", read.code))
            results.append(ItemResult(code=read.label, result="added", kind=read.kind))
    inserted: set[tuple[str, int]] = set()
    # the client id as the caller's own: another user's (or key's) request under the same id,
    # or a client sending one fixed id, never turns a real duplicate into "added" (a review)
    client = (
        None
        if data.client_id is None
        else f"{actor.user_id or ''}:{actor.api_key_id or ''}:{data.client_id}"
    )
    if new:
        rows = await (
            await conn.execute(
                """INSERT INTO document_items (document_id, kind, code, client_id)
                   SELECT %s, k, c, %s FROM unnest(%s::"char"[], %s::bigint[]) AS d (k, c)
                   ON CONFLICT DO NOTHING RETURNING kind, code""",
                (doc_id, client, [k for k, _ in new], [c for _, c in new]),
            )
        ).fetchall()
        inserted = {(row["kind"], row["code"]) for row in rows}
        if client is not None:
            inserted |= await _resent(conn, doc_id, client, set(new) - inserted)
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


async def _resent(
    conn: Conn, doc_id: int, client_id: str, duplicates: set[tuple[str, int]]
) -> set[tuple[str, int]]:
    """Those of a request's duplicates that the same caller's ``client_id`` added (``client``:
    user, API key and client id): the request sent again, its first answer lost (the staff
    app's queue re-sends after a time-out); they answer ``added`` again. One added under another
    client id, by another caller, or under none, stays a duplicate."""
    if not duplicates:
        return set()
    rows = await (
        await conn.execute(
            """SELECT kind, code FROM document_items
               WHERE document_id = %s AND client_id = %s AND (kind, code) IN
                   (SELECT * FROM unnest(%s::"char"[], %s::bigint[]))""",
            (doc_id, client_id, [k for k, _ in duplicates], [c for _, c in duplicates]),
        )
    ).fetchall()
    return {(row["kind"], row["code"]) for row in rows}


_IDENTIFIED = (None, "void", "case_void", "wrong_product")  # read_codes' reasons of a known code


async def remove_codes(
    conn: Conn, actor: Principal, scheme: Scheme, doc_id: int, data: RemoveCodesIn
) -> RemovedOut:
    """Take codes off a draft, as they were scanned (a unit serial, a case SSCC): per-code
    results. A case that can no longer ship (confirmed on another document meanwhile, one too
    many for the order) is taken off, and the rest confirmed (a probe: the clerk had to cancel
    a draft of 2,000 cases and scan them all again)."""
    await _draft(conn, actor, doc_id)
    reads = await read_codes(conn, scheme, actor.brand_id, data.codes)
    # a code read whole: a void one too (its batch voided since it was scanned: a probe), which
    # the confirm refuses and must therefore come off
    known = [r for r in reads if r.reason in _IDENTIFIED]
    keys = [("u" if r.kind == "unit" else "c", r.code) for r in known]
    rows = await (
        await conn.execute(
            """DELETE FROM document_items WHERE document_id = %s AND (kind, code) IN
                   (SELECT * FROM unnest(%s::"char"[], %s::bigint[])) RETURNING kind, code""",
            (doc_id, [k for k, _ in keys], [c for _, c in keys]),
        )
    ).fetchall()
    removed = {(row["kind"], row["code"]) for row in rows}
    items = []
    for read in reads:
        key = ("u" if read.kind == "unit" else "c", read.code)
        result: Literal["removed", "not_on_document", "rejected"] = "not_on_document"
        if read.reason not in _IDENTIFIED:
            result = "rejected"
        elif key in removed:
            removed.discard(key)  # the same code twice in one request: removed once
            result = "removed"
        items.append(
            RemovedResult(
                code=read.label,
                result=result,
                kind=read.kind,
                reason=read.reason if result == "rejected" else None,
            )
        )
    return RemovedOut(removed=sum(i.result == "removed" for i in items), items=items)


async def _in_reach(
    conn: Conn, actor: Principal, table: str, key: str, codes: list[int], source: int | None
) -> dict[int, str]:
    """Those of these codes that have a state row and whose goods are held by or on their way
    to the caller's subtree (or held by ``source``), with their status."""
    if not codes:
        return {}
    rows = await (
        await conn.execute(
            f"""SELECT s.{key} AS code, s.status FROM {table} s
                JOIN orgs h ON h.id = s.holder_org_id
                LEFT JOIN orgs t ON t.id = s.transit_to
                WHERE s.{key} = ANY(%(codes)s)
                  AND (starts_with(h.path, %(scope)s) OR starts_with(t.path, %(scope)s)
                       OR s.holder_org_id = %(source)s)""",
            {"codes": codes, "scope": actor.org_path, "source": source},
        )
    ).fetchall()
    return {row["code"]: row["status"] for row in rows}


async def cancel(conn: Conn, actor: Principal, doc_id: int) -> DocumentOut:
    """Cancel a draft; audited with the draft as it was (its kind, counterparty and codes) and
    as it is."""
    await _draft(conn, actor, doc_id)
    before = await get_document(conn, actor, doc_id)
    await conn.execute("UPDATE documents SET status = 'cancelled' WHERE id = %s", (doc_id,))
    out = msgspec.structs.replace(before, status="cancelled")  # its codes not read twice
    await audit.record(
        conn, actor, "cancel", "document", out.doc_no, before=before, after=out, org_id=out.org_id
    )
    return out


# -- confirming: the movement ------------------------------------------------------------------


async def confirm(conn: Conn, actor: Principal, scheme: Scheme, doc_id: int) -> DocumentOut:
    """Apply the document. One whose movement needs approval (an exception outbound) is only
    checked, and waits for an approver (L4)."""
    row = await _draft(conn, actor, doc_id)
    movement = MOVEMENTS[row["kind"]]
    await _ensure_open(conn, movement, row["counterparty_id"])
    await _ensure_upstream(conn, movement, row["org_id"], row["counterparty_id"])
    await _recheck_salesperson(conn, movement, row)
    plan = await movements.check(conn, scheme, row)
    await _hold_open(conn, movement, row)
    if plan.movement.approval:
        await conn.execute(
            "UPDATE documents SET status = 'pending_approval', submitted_by = %s WHERE id = %s",
            (actor.person, doc_id),
        )
    else:
        await _move(conn, plan)
    out = await get_document(conn, actor, doc_id)
    await audit.record(conn, actor, "confirm", "document", out.doc_no, after=out, org_id=out.org_id)
    return out


async def decide(
    conn: Conn, actor: Principal, scheme: Scheme, doc_id: int, approve: bool, note: str
) -> DocumentOut:
    """An approver of the warehouse's organisation approves (goods move) or rejects (L4)."""
    actor.require("logistics.approve")
    row = await _locked(conn, actor, doc_id)
    if not actor.sees(row["org_path"]):
        raise Forbidden("approve documents of your own organisations", code="not_your_org")
    if row["status"] != "pending_approval":
        raise Conflict(f"the document is {row['status']}", code="not_pending")
    if approve and actor.person is not None:
        # an approval is another person's (probe T: an organisation's admin, who holds both
        # permissions, drafted, confirmed and approved its own exception outbound; review R5:
        # or confirmed a clerk's draft and approved it)
        confirmer = row["submitted_by"] or await _confirmer(conn, row)
        if actor.person in (row["handler_id"], confirmer):
            raise Forbidden(
                "a document is approved by someone other than its handler and its confirmer",
                code="own_document",
            )
    if approve:
        movement = MOVEMENTS[row["kind"]]
        await _ensure_open(conn, movement, row["counterparty_id"])
        plan = await movements.check(conn, scheme, row)
        await _hold_open(conn, movement, row)
        await _move(conn, plan)
    else:
        await conn.execute("UPDATE documents SET status = 'rejected' WHERE id = %s", (doc_id,))
    await conn.execute(  # the requester's note stays; the decision's words beside it
        "UPDATE documents SET approved_by = %s, approved_at = now(), decision_note = %s "
        "WHERE id = %s",
        (actor.person, note, doc_id),  # a key's approval: its maker's (as its handler)
    )
    out = await get_document(conn, actor, doc_id)
    action = "approve" if approve else "reject"
    await audit.record(conn, actor, action, "document", out.doc_no, after=out, org_id=out.org_id)
    return out


async def _confirmer(conn: Conn, row: dict[str, Any]) -> int | None:
    """Who confirmed a document an older release sent for approval (during a rolling deploy:
    it recorded no ``submitted_by``), from the audit log; a key's maker for a key."""
    found = await (
        await conn.execute(
            """SELECT coalesce(l.actor_user, k.created_by) AS person
                 FROM audit_log l LEFT JOIN api_keys k ON k.id = l.actor_key
                WHERE l.entity = 'document' AND l.entity_id = %s AND l.org_id = %s
                  AND l.action = 'confirm'
                ORDER BY l.id DESC LIMIT 1""",
            (row["doc_no"], row["org_id"]),
        )
    ).fetchone()
    return found["person"] if found else None


# Why goods came back, as their disposition: a unit returned damaged or expired — by a consumer
# (``_take_back``) or by a store or agent up the channel (a ``return`` document) — is not sold
# again, wherever it moves after (``movements.move_state`` keeps it; a probe: a store's damaged
# return, received by its agent, was sold by the agent)
_RETURNED_AS: dict[str | None, Disposition] = {"damaged": "damaged", "expired": "expired"}


async def _move(conn: Conn, plan: Plan) -> None:
    """A document's checked movement: recorded by its handler, the event names the document.
    A return's reason, when ``_RETURNED_AS`` names one, is its units' disposition from now on;
    its shipping event stays ``returned``, as every return's (an inspection tells a return from
    a shipment into an area by it)."""
    doc = plan.doc
    assert doc is not None
    details = {"document": doc["doc_no"], "kind": doc["kind"], "reason": doc["reason"]}
    await movements.apply(conn, plan, recorded_by=doc["handler_id"], details=details)
    if doc["kind"] == "return" and doc["reason"] in _RETURNED_AS:
        await conn.execute(  # a unit marked already keeps its first mark, as move_state keeps it
            """UPDATE unit_state SET disposition = %s
                WHERE code = ANY(%s)
                  AND coalesce(disposition NOT IN ('damaged', 'expired'), true)""",
            (_RETURNED_AS[doc["reason"]], [u["code"] for u in plan.units]),
        )


# -- one-step flows ---------------------------------------------------------------------------


async def receive_order(conn: Conn, actor: Principal, scheme: Scheme, order_id: int) -> DocumentOut:
    """Receive what is in transit to the caller's organisation under an order, in one action
    (each part of a split shipment as it arrives)."""
    await get_order(conn, actor, order_id)  # 404 for an order outside the caller's subtree
    doc = await create_document(conn, actor, DocumentIn(kind="inbound", order_id=order_id))
    return await confirm(conn, actor, scheme, doc.id)


async def sell(
    conn: Conn, actor: Principal, scheme: Scheme, data: SaleIn
) -> tuple[DocumentOut, bool]:
    """A store sells units by scanning them (retail_selling); with whether it is a re-send of a
    sale already made under the same ``client_id`` (answered with that sale). A store that is
    inactive, or under an inactive organisation, sells nothing (409 ``org_inactive``)."""
    actor.require("logistics.scan")
    if data.client_id is not None:  # a re-send answers the first sale, before anything else
        earlier = await _earlier_sale(conn, actor, data.client_id)
        if earlier is not None:
            idempotency.check(earlier["client_hash"], data, "sale")
            return await _replayed_sale(conn, earlier["id"]), True
    org = await _own_org(conn, actor, actor.org_id if data.org_id is None else data.org_id)
    if org["kind"] not in RETAIL_KINDS:  # probe X: a warehouse's "sale" ranked it as a store
        raise Unprocessable(
            "only the channel sells to consumers: a store, an agent or a distributor (L7)",
            code="not_a_seller",
        )
    # a closed store sells nothing (a probe: its agent, acting for it, still recorded sales
    # there, which put it back in the sales ranking); a re-send of an earlier sale is answered
    await _ensure_active(conn, org["id"], "it sells nothing")
    check_client_at(data.client_at)
    doc_no = await _doc_no(conn, MOVEMENTS["sale"])
    row = await (
        await conn.execute(
            """INSERT INTO documents (brand_id, doc_no, direction, kind, org_id, handler_id,
                   customer, phone, created_by, api_key_id, client_id, client_hash, client_at)
               VALUES (%s, %s, 'outbound', 'sale', %s, %s, %s, %s, %s, %s, %s, %s, %s)
               RETURNING id""",
            (
                actor.brand_id,
                doc_no,
                org["id"],
                actor.person,  # the handler: a till's key's maker (as another document's)
                data.customer,
                data.phone,
                actor.user_id,
                actor.api_key_id,
                data.client_id,
                idempotency.fingerprint(data) if data.client_id is not None else None,
                data.client_at,
            ),
        )
    ).fetchone()
    assert row is not None
    items = await add_codes(conn, actor, scheme, row["id"], CodesIn(codes=data.codes))
    if items.rejected:
        bad = [i.code for i in items.items if i.result == "rejected"]
        raise Unprocessable("codes that cannot be sold", code="bad_codes", details={"codes": bad})
    return await confirm(conn, actor, scheme, row["id"]), False


async def _earlier_sale(conn: Conn, actor: Principal, client_id: str) -> dict[str, Any] | None:
    """The sale this user (or API key) already made under ``client_id``, in whatever
    organisation of the brand; the client id stays locked until the transaction ends, so a
    concurrent re-send waits and then finds it. The lock's key is the lookup's scope (the user
    or key, not its organisation: a re-send of a user moved meanwhile took another lock)."""
    who = f"{actor.user_id}:{actor.api_key_id}"
    await xact_lock(conn, Lock.SALE_CLIENT_ID, f"{who}:{client_id}")
    return await (
        await conn.execute(
            """SELECT id, client_hash FROM documents WHERE kind = 'sale' AND client_id = %s
               AND created_by IS NOT DISTINCT FROM %s AND api_key_id IS NOT DISTINCT FROM %s
               AND org_id IN (SELECT id FROM orgs WHERE path LIKE %s)""",
            (client_id, actor.user_id, actor.api_key_id, f"/{actor.brand_id}/%"),
        )
    ).fetchone()


async def _replayed_sale(conn: Conn, doc_id: int) -> DocumentOut:
    """The sale a re-send answers: the caller's own sale, read whatever organisation the caller
    is in now (a probe: a clerk moved to another store or to an agent by the user import re-sent
    a queued sale and it was 404 ``unknown_document``, and the app dropped a sale the server
    holds), as a moved inspector's re-sent scan answers its first scan."""
    row = await (await conn.execute(f"{_DOC} WHERE d.id = %s", (doc_id,))).fetchone()
    assert row is not None
    return await _out(conn, row)


# A sold unit of a batch voided since (a recall, a leaked print file) brought back by its buyer:
# the return is recorded and withdraws what any return does (rebate, points, draw), but the unit
# comes back void — goods no more (``VOID_STATES``), as the void made the batch's units in the
# chain — and into no stock: the roll-up's recount counts active units only, so no stock delta.
# A probe: the refund of a recalled unit could not be recorded (422 ``bad_code``), and its
# rebate was settled, its points kept, its sale counted.
VOID_RETURN = replace(
    MOVEMENTS["consumer_return"],
    stock=(),
    unit_sets="status = 'void', sold_at = NULL, returned_at = %(now)s",
)


def _sold(state: dict[str, Any]) -> bool:
    """Whether a unit's state row is a sale: sold, and not given away (a gift, a sample, staff
    welfare — a probe: a warehouse took its gift back); a damaged or expired unit is never sold,
    so "sold" with one is a gift that kept it (a probe: a damaged unit given away as a sample
    came back into stock as a return)."""
    return state["status"] == "sold" and state["disposition"] not in (GIVEN_AWAY, *NOT_FOR_SALE)


async def _sold_unit(
    conn: Conn, actor: Principal, scheme: Scheme, text: str
) -> tuple[Read, dict[str, Any]]:
    """The unit a consumer brings back, its state row locked: sold to a consumer in the caller's
    subtree, else 404 ``unknown_code`` (as if it did not exist) or 409 ``not_sold``. A unit of a
    void batch is returned only when so sold (``VOID_RETURN``), else 422 ``bad_code`` as any
    other void code is (and one named by another product's GTIN, which ``read_codes`` does not
    check of a void code)."""
    read = (await read_codes(conn, scheme, actor.brand_id, [text]))[0]
    if read.kind != "unit" or read.reason not in (None, "unknown", "void"):
        raise Unprocessable(f"{text}: {read.reason or 'not a unit code'}", code="bad_code")
    state = None
    if read.reason in (None, "void"):
        state = await (
            await conn.execute(
                """SELECT u.code, u.product_id, u.lot, u.status, u.holder_org_id, u.transit_to,
                          u.parent_sscc, u.channel_org_id, u.disposition, o.path, p.gtin
                   FROM unit_state u JOIN orgs o ON o.id = u.holder_org_id
                   LEFT JOIN products p ON p.id = u.product_id
                   WHERE u.code = %s FOR UPDATE OF u""",
                (read.code,),
            )
        ).fetchone()
    if read.reason == "void" and (
        state is None
        or not actor.sees(state["path"])
        or not _sold(state)
        or read.gtin not in (None, state["gtin"])
    ):
        raise Unprocessable(f"{text}: void", code="bad_code")
    if state is None or not actor.sees(state["path"]):
        raise NotFound(f"{read.label}: no such code here", code="unknown_code")
    if not _sold(state):
        raise Conflict("only a sold unit can be returned by a consumer", code="not_sold")
    return read, state


async def _take_back(
    conn: Conn, actor: Principal, read: Read, state: dict[str, Any], data: ReturnIn
) -> Disposition:
    """Step of ``consumer_return``: the unit's movement back into the store (its disposition:
    why it came back); a unit of a void batch comes back void, into no stock (``VOID_RETURN``)."""
    disposition = _RETURNED_AS.get(data.reason, "returned")
    plan = Plan(
        movement=VOID_RETURN if read.reason == "void" else MOVEMENTS["consumer_return"],
        brand_id=actor.brand_id,
        org=state["holder_org_id"],
        other=None,
        units=[cast(UnitRow, state)],
        cases=[],
        scanned=set(),
    )
    details = {"reason": data.reason, "return": "consumer", "note": data.note}
    await movements.apply(
        conn, plan, recorded_by=actor.person, details=details, disposition=disposition
    )
    return disposition


def _exchanged_for(text: str, returned: Read, other: Read) -> Read:
    """The unit given in exchange for ``returned``: another unit, never a case nor itself."""
    if other.kind != "unit":  # a probe: one unit brought back sold a whole case in its place
        raise Unprocessable(
            f"{text}: a unit is exchanged for another unit, not a case", code="not_a_unit"
        )
    if other.code == returned.code:  # probe X: sold twice, in no hands
        raise Unprocessable("a unit is not exchanged for itself", code="same_unit")
    return other


async def consumer_return(
    conn: Conn, actor: Principal, scheme: Scheme, data: ReturnIn
) -> ReturnOut:
    """A sold unit comes back to the store that sold it; optionally exchanged for another.

    A unit not issued to this brand, never activated, or held outside the caller's subtree (sold
    by another organisation) answers 404 ``unknown_code`` alike: as if it did not exist. A store
    that is inactive, or under an inactive organisation, takes none back (409 ``org_inactive``)."""
    actor.require("logistics.scan")
    if data.exchange_for is not None:  # both units locked at once, in code order, as a claim
        # round locks them (a probe: the return held one, the round the other: a deadlock)
        both = await read_codes(conn, scheme, actor.brand_id, [data.code, data.exchange_for])
        units = sorted(
            {r.code for r in both if r.kind == "unit" and r.reason in (None, "void")}
        )  # a void one too: a sold unit of a void batch comes back (``VOID_RETURN``)
        await conn.execute(
            "SELECT code FROM unit_state WHERE code = ANY(%s) ORDER BY code FOR UPDATE", (units,)
        )
    read, state = await _sold_unit(conn, actor, scheme, data.code)
    # a closed store takes nothing back, as it sells nothing (a probe: its return was taken)
    await _ensure_active(conn, state["holder_org_id"], "it takes no returns")
    if data.exchange_for is not None:
        other = _exchanged_for(data.exchange_for, read, both[1])
    disposition = await _take_back(conn, actor, read, state, data)
    # here, not at the top: app.rebates' routes import the claims, which import logistics
    from app.draws.returns import take_back_prize, withdraw_draw
    from app.members.returns import withdraw_points
    from app.rebates.returns import withdraw

    withdrawn = await withdraw(conn, actor, read.code)  # a refunded sale earns no rebate
    # nor its lucky draw's prize, nor points: the draw, its prize, the claim, then the balance
    # (``app.draws.returns``: the order a draw round, a hold's release and an erasure take)
    draw = await withdraw_draw(conn, read.code)
    points = await withdraw_points(conn, actor, read.code)
    drawn = await take_back_prize(conn, actor, draw) if draw is not None else None
    documents: list[str] = []
    exchanged = None
    if data.exchange_for is not None:
        sale, _ = await sell(
            conn, actor, scheme, SaleIn(codes=[data.exchange_for], org_id=state["holder_org_id"])
        )
        documents.append(sale.doc_no)
        exchanged = other.label  # the printed serial, not the text as typed (a probe)
    await audit.record(
        conn, actor, "consumer_return", "unit", read.label,
        after={"reason": data.reason, "exchange_for": exchanged}, org_id=state["holder_org_id"],
    )  # fmt: skip
    return ReturnOut(
        returned=read.label,
        disposition=disposition,
        exchanged_for=exchanged,
        documents=documents,
        rebate_withdrawn=withdrawn["id"] if withdrawn else None,
        points_withdrawn=points["id"] if points else None,
        draw_withdrawn=drawn["id"] if drawn else None,
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
