"""Orders from ERP or by hand (L1): sales, purchase, transfer, return; idempotent by ERP number."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg.errors

from app import audit
from app.auth.principal import Principal
from app.auth.service import org_status
from app.db import Conn
from app.errors import Conflict, NotFound, Unprocessable
from app.localtime import TODAY_SQL
from app.logistics.schemas import OrderIn, OrderKind, OrderLineOut, OrderOut, OrderStatus
from app.orgs.schemas import SELLING_KINDS
from app.paging import Page, fetch_page

_COLUMNS = """o.id, o.erp_no, o.kind, o.from_org_id, o.to_org_id, o.status, o.order_date, o.note,
    o.source, o.created_at"""


def require_reader(actor: Principal) -> None:
    """Documents and orders are read by logistics staff, order writers and report readers."""
    actor.require_any("logistics.scan", "logistics.approve", "orders.write", "reports.read")


async def _lines(conn: Conn, order_ids: list[int]) -> dict[int, list[OrderLineOut]]:
    rows = await (
        await conn.execute(
            """SELECT l.order_id, l.line_no, l.product_id, p.name AS product_name, l.quantity,
                      l.shipped, l.received
               FROM order_lines l JOIN products p ON p.id = l.product_id
               WHERE l.order_id = ANY(%s) ORDER BY l.order_id, l.line_no""",
            (order_ids,),
        )
    ).fetchall()
    out: dict[int, list[OrderLineOut]] = {i: [] for i in order_ids}
    for row in rows:
        out[row.pop("order_id")].append(OrderLineOut(**row))
    return out


async def get_order(conn: Conn, actor: Principal, order_id: int) -> OrderOut:
    """An order is visible when either of its organisations is in the caller's subtree, or it
    is the caller's warehouse's to ship (``SHIPPED_BY``)."""
    require_reader(actor)
    row = await (
        await conn.execute(
            f"""SELECT {_COLUMNS}, f.path AS from_path, t.path AS to_path,
                       {SHIPPED_BY} AS mine
                FROM orders o
                JOIN orgs f ON f.id = o.from_org_id JOIN orgs t ON t.id = o.to_org_id
                WHERE o.id = %(id)s""",
            {"id": order_id, "me": actor.org_id},
        )
    ).fetchone()
    if row is None or not (
        actor.sees(row.pop("from_path")) or actor.sees(row.pop("to_path")) or row.pop("mine")
    ):
        raise NotFound("order not found", code="unknown_order")
    row.pop("to_path", None)
    row.pop("mine", None)
    return OrderOut(**row, lines=(await _lines(conn, [order_id]))[order_id])


_SELLING = ", ".join(f"'{kind}'" for kind in SELLING_KINDS)

# The senders whose orders the organisation ``%(me)s`` (``m``) ships (L3): itself and those above
# it with no organisation that sells on (agent, distributor, store: ``SELLING_KINDS``; a branch is
# the brand's side) between them, nor is it one — a factory's warehouse ships the factory's and
# the brand's orders, an agent's warehouse the agent's, never the brand's to the agent (a probe:
# an agent shipped its own goods against the brand's order to its store, counted as the brand's
# shipment). The one rule of who ships an order: ``documents._ships_for``, ``SHIPPED_BY``.
SENDERS = f"""SELECT s.id FROM orgs m
    JOIN orgs s ON s.id = ANY(string_to_array(trim(both '/' FROM m.path), '/')::bigint[])
    WHERE m.id = %(me)s AND NOT EXISTS (SELECT 1 FROM orgs a
        WHERE a.id = ANY(string_to_array(
                  trim(both '/' FROM substr(m.path, length(s.path) + 1)), '/')::bigint[])
          AND a.kind IN ({_SELLING}))"""

# The orders (``o``) a warehouse ``%(me)s`` ships though neither end is in its subtree: those of
# its ``SENDERS`` (a probe: the factory warehouse's clerk could neither list, read nor draft
# against the brand's order to an agent, which ``documents._ships_for`` lets it ship). Only a
# warehouse: a factory's or a branch's staff read no order of the brand's to another party.
SHIPPED_BY = f"o.from_org_id IN ({SENDERS} AND m.kind = 'warehouse')"


async def end_order(conn: Conn, actor: Principal, order_id: int, to: str) -> OrderOut:
    """Close an order (``to`` = ``closed``: no more shipped under it, what is on its way is
    still received) or cancel it (``cancelled``: only while nothing has been shipped or
    received under it, else 409 ``order_shipped``: close it instead). Either end of the order
    in the caller's subtree, with ``orders.write``; the same request again answers the order as
    it is (a retry); the other ending after one answers 409 ``order_closed``.

    The order's row is locked first, then its lines are read in a statement of their own: an
    outbound confirmed meanwhile (which locks the order after its lines,
    ``movements._check_order``) has either committed its counts, read here, or waits and then
    finds the order ended (409 ``order_closed``)."""
    actor.require("orders.write")
    row = await (
        await conn.execute(
            """SELECT o.status, f.path AS from_path, t.path AS to_path
               FROM orders o JOIN orgs f ON f.id = o.from_org_id
               JOIN orgs t ON t.id = o.to_org_id
               WHERE o.id = %s FOR UPDATE OF o""",
            (order_id,),
        )
    ).fetchone()
    if row is None or not (actor.sees(row["from_path"]) or actor.sees(row["to_path"])):
        raise NotFound("order not found", code="unknown_order")
    before = await get_order(conn, actor, order_id)
    if row["status"] == to:
        return before
    if row["status"] in ("closed", "cancelled"):
        raise Conflict(f"the order is {row['status']}", code="order_closed")
    if to == "cancelled" and any(line.shipped or line.received for line in before.lines):
        raise Conflict(
            "goods have moved under this order: close it instead of cancelling it",
            code="order_shipped",
        )
    await conn.execute(
        "UPDATE orders SET status = %s, updated_at = now() WHERE id = %s", (to, order_id)
    )
    after = await get_order(conn, actor, order_id)
    await audit.record(
        conn, actor, "close" if to == "closed" else "cancel", "order", order_id,
        before=before, after=after,
    )  # fmt: skip
    return after


def _reused(erp_no: str) -> Conflict:
    return Conflict(f"order {erp_no} exists with other content", code="order_no_reused")


async def create_order(
    conn: Conn, actor: Principal, data: OrderIn, source: str = "api"
) -> tuple[OrderOut, bool]:
    """Create an order (201) — or return the one with this ERP number if it is the same (200).

    No lock: the number's unique key decides a race. A creator that finds the number taken by
    another committed meanwhile (its insert waits for that one to end) reads that order and
    answers as for a repeat (200, or 409 ``order_no_reused``). Only a creator of the same
    number ever waits, and only for that one's transaction."""
    actor.require("orders.write")
    brand = actor.brand_id
    existing = await _same_order(conn, actor, brand, data)
    if existing is not None:
        return existing, False
    await _check_order(conn, actor, brand, data)
    try:
        async with conn.transaction():  # a savepoint: the request goes on after a lost race
            order_id = await _insert_order(conn, actor, brand, data, source)
    except psycopg.errors.UniqueViolation:
        existing = await _same_order(conn, actor, brand, data)
        if existing is None:  # the other creator's order is gone again (rolled back)
            raise
        return existing, False
    order = await get_order(conn, actor, order_id)
    await audit.record(conn, actor, "create", "order", order.id, after=order)
    return order, True


async def _same_order(conn: Conn, actor: Principal, brand: int, data: OrderIn) -> OrderOut | None:
    """The brand's order with this ERP number, if any and it is the same order (kind, the two
    organisations, products and quantities, note, and the order date when one is sent — one not
    sent is the stored one, the day the order was made); 409 ``order_no_reused`` if it is
    another (a probe: an order sent again with a corrected date or note was answered 200 with
    the first, the change dropped)."""
    existing = await (
        await conn.execute(
            "SELECT id FROM orders WHERE brand_id = %s AND erp_no = %s", (brand, data.erp_no)
        )
    ).fetchone()
    if existing is None:
        return None
    try:
        order = await get_order(conn, actor, existing["id"])
    except NotFound:
        # an ERP number is one per brand; another party's order with it is not shown
        raise _reused(data.erp_no) from None
    when = order.order_date if data.order_date is None else data.order_date
    same = (order.kind, order.from_org_id, order.to_org_id, order.order_date, order.note) == (
        data.kind,
        data.from_org_id,
        data.to_org_id,
        when,
        data.note,
    ) and sorted((ln.product_id, ln.quantity) for ln in order.lines) == sorted(
        (ln.product_id, ln.quantity) for ln in data.lines
    )
    if not same:
        raise _reused(data.erp_no)
    return order


async def _check_order(conn: Conn, actor: Principal, brand: int, data: OrderIn) -> None:
    """422 unless both organisations are the brand's, one of them in the caller's subtree, they
    differ, and each line names another product of the brand; 409 ``org_inactive`` when either
    is inactive, or one above it (a probe: an order to a deactivated agent, or from its store,
    was created and stayed open for good: nothing can be shipped to it, nobody there signs in)."""
    ends = (data.from_org_id, data.to_org_id)
    rows = await (
        await conn.execute(
            f"SELECT o.id, o.path, {org_status('o')} AS status FROM orgs o WHERE o.id = ANY(%s)",
            (list(ends),),
        )
    ).fetchall()
    orgs = {row["id"]: row for row in rows}
    for org_id, what in zip(ends, ("from_org_id", "to_org_id"), strict=True):
        if org_id not in orgs or not orgs[org_id]["path"].startswith(f"/{brand}/"):
            raise Unprocessable(f"{what}: no such organisation", code="unknown_org")
    if not any(actor.sees(orgs[org_id]["path"]) for org_id in ends):
        raise Unprocessable(
            "an order goes from or to an organisation of your subtree", code="not_your_org"
        )
    if data.from_org_id == data.to_org_id:
        raise Unprocessable("an order goes between two organisations", code="same_org")
    for org_id in ends:
        if orgs[org_id]["status"] != "active":
            raise Conflict(
                f"organisation {org_id} is inactive (or one above it): no order goes to or from it",
                code="org_inactive",
                details={"org_id": org_id},
            )
    products = [line.product_id for line in data.lines]
    if len(set(products)) != len(products):
        raise Unprocessable("one line per product", code="duplicate_product")
    found = await (
        await conn.execute(
            """SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id
               WHERE p.id = ANY(%s) AND o.path LIKE %s""",
            (products, f"/{brand}/%"),
        )
    ).fetchall()
    missing = sorted(set(products) - {row["id"] for row in found})
    if missing:
        raise Unprocessable(
            "unknown products", code="unknown_product", details={"product_ids": missing}
        )


async def _insert_order(
    conn: Conn, actor: Principal, brand: int, data: OrderIn, source: str
) -> int:
    """The order's row and its lines (numbered from 1); the new order's id."""
    row = await (
        await conn.execute(
            f"""INSERT INTO orders (brand_id, erp_no, kind, from_org_id, to_org_id, order_date,
                   note, source, created_by)
               VALUES (%s, %s, %s, %s, %s, coalesce(%s, {TODAY_SQL}), %s, %s, %s)
               RETURNING id""",
            (
                brand,
                data.erp_no,
                data.kind,
                data.from_org_id,
                data.to_org_id,
                data.order_date,
                data.note,
                source,
                actor.person,  # an ERP key's order: its maker's
            ),
        )
    ).fetchone()
    assert row is not None
    for line_no, line in enumerate(data.lines, start=1):
        await conn.execute(
            "INSERT INTO order_lines (order_id, line_no, product_id, quantity) "
            "VALUES (%s, %s, %s, %s)",
            (row["id"], line_no, line.product_id, line.quantity),
        )
    return int(row["id"])


async def list_orders(
    conn: Conn,
    actor: Principal,
    *,
    kind: OrderKind | None,
    status: Sequence[OrderStatus] | None,
    org_id: int | None,
    erp_no: str | None,
    page: int,
    per_page: int,
) -> Page[OrderOut]:
    """A page of the orders the caller may read; ``status``: in any of these (none: all)."""
    require_reader(actor)
    where = [f"(f.path LIKE %(prefix)s OR t.path LIKE %(prefix)s OR {SHIPPED_BY})"]
    params: dict[str, Any] = {"prefix": actor.org_path + "%", "me": actor.org_id}
    for column, value in (("o.kind", kind), ("o.erp_no", erp_no)):
        if value is not None:
            key = column.split(".")[1]
            where.append(f"{column} = %({key})s")
            params[key] = value
    if status:
        where.append("o.status = ANY(%(statuses)s)")
        params["statuses"] = sorted(set(status))
    if org_id is not None:
        where.append("(o.from_org_id = %(org)s OR o.to_org_id = %(org)s)")
        params["org"] = org_id
    page_out = await fetch_page(
        conn,
        columns=_COLUMNS,
        source="orders o JOIN orgs f ON f.id = o.from_org_id JOIN orgs t ON t.id = o.to_org_id",
        where=where,
        params=params,
        order="o.created_at DESC, o.id DESC",
        page=page,
        per_page=per_page,
        make=dict,
    )
    lines = await _lines(conn, [row["id"] for row in page_out.items])
    return Page(
        items=[OrderOut(**row, lines=lines[row["id"]]) for row in page_out.items],
        total=page_out.total,
        page=page_out.page,
        per_page=page_out.per_page,
    )
