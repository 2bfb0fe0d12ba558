"""Stock and low-stock thresholds (SPEC L9): per organisation, product and lot, read within the
caller's subtree (an agent sees its own and its stores' stock). The service (queries and the
threshold write); the shapes are in ``schemas``, the controller in ``routes``."""

from __future__ import annotations

from typing import Any

from app import audit
from app.auth.principal import Principal, brand_of
from app.db import Conn
from app.errors import NotFound
from app.locks import Lock, xact_lock
from app.logistics.center import packages_on_hand, scoped_org_path
from app.logistics.rollup import check_thresholds
from app.logistics.schemas import StockOut, ThresholdIn, ThresholdOut
from app.paging import Page, fetch_page

READ = ("reports.read", "logistics.scan")
WRITE = ("orgs.write", "logistics.scan")


async def list_stock(
    conn: Conn,
    actor: Principal,
    *,
    org_id: int | None,
    product_id: int | None,
    lot: str | None,
    page: int,
    per_page: int,
) -> Page[StockOut]:
    actor.require_any(*READ)
    if org_id is not None:
        await scoped_org_path(conn, actor, org_id, visible=True)  # 404 unknown_org
    where = ["o.path LIKE %(prefix)s"]
    params: dict[str, Any] = {"prefix": actor.org_path + "%", "org": org_id}
    params.update(product=product_id, lot=lot)
    if org_id is not None:
        where.append("s.org_id = %(org)s")
    if product_id is not None:
        where.append("s.product_id = %(product)s")
    if lot is not None:
        where.append("s.lot = %(lot)s")
    return await fetch_page(
        conn,
        columns=f"""s.org_id, o.name AS org_name, s.product_id, p.name AS product_name, s.lot,
            s.on_hand, s.in_transit, s.updated_at,
            {packages_on_hand("s.org_id", "s.product_id", "s.lot")} AS packages""",
        source="stock s JOIN orgs o ON o.id = s.org_id JOIN products p ON p.id = s.product_id",
        where=where,
        params=params,
        order="o.path, s.org_id, p.name, s.product_id, s.lot",
        page=page,
        per_page=per_page,
        make=lambda row: StockOut(**row),
    )


_THRESHOLD_COLUMNS = """t.org_id, o.name AS org_name, t.product_id, p.name AS product_name,
    t.min_units, coalesce((SELECT sum(s.on_hand) FROM stock s
        WHERE s.org_id = t.org_id AND s.product_id = t.product_id), 0)::bigint AS on_hand"""
_THRESHOLD_SOURCE = (
    "stock_thresholds t JOIN orgs o ON o.id = t.org_id JOIN products p ON p.id = t.product_id"
)


def _threshold(row: dict[str, Any]) -> ThresholdOut:
    return ThresholdOut(**row, below=row["on_hand"] < row["min_units"])


async def list_thresholds(
    conn: Conn,
    actor: Principal,
    *,
    org_id: int | None,
    product_id: int | None,
    page: int,
    per_page: int,
) -> Page[ThresholdOut]:
    actor.require_any(*READ)
    if org_id is not None:
        await scoped_org_path(conn, actor, org_id, visible=True)  # 404 unknown_org
    where = ["o.path LIKE %(prefix)s"]
    params: dict[str, Any] = {"prefix": actor.org_path + "%", "org": org_id, "product": product_id}
    if org_id is not None:
        where.append("t.org_id = %(org)s")
    if product_id is not None:
        where.append("t.product_id = %(product)s")
    return await fetch_page(
        conn,
        columns=_THRESHOLD_COLUMNS,
        source=_THRESHOLD_SOURCE,
        where=where,
        params=params,
        order="o.path, t.org_id, p.name, t.product_id",
        page=page,
        per_page=per_page,
        make=_threshold,
    )


async def set_threshold(
    conn: Conn, actor: Principal, org_id: int, product_id: int, data: ThresholdIn
) -> ThresholdOut:
    """Set the threshold and evaluate it at once against the rolled-up stock. Thresholds are
    set one transaction at a time (``Lock.STOCK_THRESHOLDS``, which their evaluation takes
    anyway), taken before ``before`` is read: the audit log, their only history, shows each
    change's predecessor (a probe: two changes at once both read 5, and the 10 that the second
    replaced was never seen; a row lock would not do, a first setting has no row yet). The
    minimum it has already changes nothing: answered as it is, unwritten and unaudited."""
    actor.require_any(*WRITE)
    path = await scoped_org_path(conn, actor, org_id, visible=True)  # 404 unknown_org
    # the brand's product: of any organisation of its tree (one may be kept under its factory;
    # a probe: ``org_id = brand`` answered 404 for it, so no alert could ever be raised)
    product = await (
        await conn.execute(
            "SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id "
            "WHERE p.id = %s AND o.path LIKE %s",
            (product_id, f"/{brand_of(path)}/%"),
        )
    ).fetchone()
    if product is None:
        raise NotFound("product not found")
    await xact_lock(conn, Lock.STOCK_THRESHOLDS)
    before = await (
        await conn.execute(
            "SELECT min_units FROM stock_thresholds WHERE org_id = %s AND product_id = %s",
            (org_id, product_id),
        )
    ).fetchone()
    unchanged = before is not None and before["min_units"] == data.min_units
    if not unchanged:
        await conn.execute(
            """INSERT INTO stock_thresholds (org_id, product_id, min_units) VALUES (%s, %s, %s)
               ON CONFLICT (org_id, product_id) DO UPDATE SET min_units = EXCLUDED.min_units""",
            (org_id, product_id, data.min_units),
        )
    row = await (
        await conn.execute(
            f"SELECT {_THRESHOLD_COLUMNS} FROM {_THRESHOLD_SOURCE} "
            "WHERE t.org_id = %s AND t.product_id = %s",
            (org_id, product_id),
        )
    ).fetchone()
    assert row is not None
    out = _threshold(row)
    if unchanged:  # set to what it is (a form, a retry): no write, no row, its alert not bumped
        # (a probe: a ``set`` row each time, before and after the same)
        return out
    await audit.record(
        conn,
        actor,
        "set",
        "stock_threshold",
        f"{org_id}:{product_id}",
        before=dict(before) if before else None,
        after={"min_units": data.min_units},
        org_id=org_id,
    )
    await check_thresholds(conn, [(org_id, product_id)])
    return out
