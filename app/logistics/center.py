"""Management center (管理中心, SPEC L10): documents and stock as report rows, filtered, paged and
exported as CSV or XLSX.

A document row is one line of a document (product and lot, units and cases, the cases' level and
the manufacturer) with the document's fields from the seed: number, kind, warehouse,
counterparty, date, handler, signee, phone, customer, customer type, destination city, status.
A draft has no lines yet (lines are written on confirmation): it is one row with empty product
columns. A stock row is the rolled-up units of an organisation, product and lot, with the
packages (cases) it holds, counted when read. The caller sees the documents whose organisation or
counterparty lies in its subtree, and the stock of its subtree.

Exports do not page: they run the same query on a server-side cursor of a connection of their
own and stream it through ``app.tabular`` (the one CSV/XLSX writer, with the formula guard).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import msgspec
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from app import tabular
from app.auth.principal import Principal
from app.db import Conn
from app.errors import NotFound, Unprocessable
from app.logistics.schemas import DocKind, DocStatus, PackageLevel
from app.orgs.service import org_path
from app.paging import Page, check_period, fetch_page

READ = ("reports.read", "logistics.scan")
OrgKind = Literal["factory", "warehouse", "branch", "agent", "distributor", "store"]
Format = Literal["json", "csv", "xlsx"]
_BATCH = 2000  # rows fetched from the server-side cursor at a time


class DocumentRow(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a document (入库单/出库单/销售单) with the document's fields."""

    doc_id: int
    doc_no: str  # 单据编号
    direction: Literal["inbound", "outbound"]
    kind: DocKind  # 类型
    status: DocStatus  # 状态
    doc_date: date  # 日期
    org_id: int
    org_name: str  # 仓库 / 门店
    org_kind: str
    org_city: str | None  # 所在地(市)
    counterparty_id: int | None
    counterparty_name: str | None  # 代理商 / 发货方
    order_no: str | None
    handler_name: str | None  # 经办人 / 店员
    signee: str | None  # 签收人
    phone: str | None  # 电话
    customer: str | None  # 客户
    customer_type: str | None  # 客户类型
    destination_city: str | None  # 目的城市 / 发往地(市)
    product_id: int | None
    product_no: str | None
    product_name: str | None  # 产品名称
    category: str | None  # 产品分类
    gtin: str | None  # 产品条码
    spec: str | None  # 产品规格
    colour_no: str | None  # 产品色号
    lot: str | None
    units: int | None  # 产品数量
    packages: int | None  # 包装数量
    confirmed_at: datetime | None
    manufacturer_id: int | None
    manufacturer: str | None  # 生产商: whose packing line packed the units
    package_level: PackageLevel | None  # 包装类型: inner, master, pallet, mixed


class StockRow(msgspec.Struct, frozen=True, kw_only=True):
    """Rolled-up stock of one organisation, product and lot."""

    org_id: int
    org_name: str
    org_kind: str
    org_city: str | None
    product_id: int
    product_no: str
    product_name: str
    category: str | None
    gtin: str | None
    spec: str
    colour_no: str | None
    lot: str
    on_hand: int
    in_transit: int
    updated_at: datetime
    rebate: float | None  # 产品返利点: the product's rebate in force here (yuan), null: none
    packages: int  # 包装数量: outermost cases on hand holding units (``packages_on_hand``)


DOCUMENT_COLUMNS = list(DocumentRow.__struct_fields__)
STOCK_COLUMNS = list(StockRow.__struct_fields__)

_DOC_SELECT = """d.id AS doc_id, d.doc_no, d.direction, d.kind, d.status, d.doc_date, d.org_id,
    o.name AS org_name, o.kind AS org_kind, o.city_name AS org_city, d.counterparty_id,
    c.name AS counterparty_name, r.erp_no AS order_no, u.display_name AS handler_name, d.signee,
    d.phone, d.customer, d.customer_type, d.destination_city, l.product_id, p.product_no,
    p.name AS product_name, g.name AS category, p.gtin, p.spec, p.colour_no, l.lot, l.units,
    l.packages, d.confirmed_at, l.manufacturer_id, f.name AS manufacturer, l.package_level"""
_DOC_SOURCE = """documents d JOIN orgs o ON o.id = d.org_id
    LEFT JOIN orgs c ON c.id = d.counterparty_id
    LEFT JOIN orders r ON r.id = d.order_id
    LEFT JOIN users u ON u.id = d.handler_id
    LEFT JOIN document_lines l ON l.document_id = d.id
    LEFT JOIN orgs f ON f.id = l.manufacturer_id
    LEFT JOIN products p ON p.id = l.product_id
    LEFT JOIN categories g ON g.id = p.category_id"""
_DOC_ORDER = "d.doc_date DESC, d.id DESC, l.product_id, l.lot"


def nearest_agent(path: str) -> str:
    """The SQL expression of the nearest agent on an organisation's path (itself when it is
    one; NULL: none), given the SQL of the path: the agent whose rebate rule is in force there
    and whom a rebate claim at a store names (``app.rebates.claims``). Its cost: a primary-key
    probe of ``orgs`` per level of the path."""
    return f"""(SELECT near.id FROM orgs near
            WHERE near.kind = 'agent'
              AND near.id = ANY (string_to_array(trim(both '/' FROM {path}), '/')::bigint[])
            ORDER BY length(near.path) DESC LIMIT 1)"""


def agents_rebate(product: str, agent: str) -> str:
    """The SQL expression of a product's rebate in force under an agent (numeric; NULL: no
    rule), given the SQL of the product's id and of the agent's id (NULL: no agent): the agent's
    rule, else the product's default (``app.rebates.rules``). At most two probes of
    ``rebate_rules``' unique (product_id, agent_id) index."""
    return f"""coalesce((
        SELECT rule_agent.amount FROM rebate_rules rule_agent
        WHERE rule_agent.product_id = {product} AND rule_agent.agent_id = {agent}
    ), (
        SELECT rule_default.amount FROM rebate_rules rule_default
        WHERE rule_default.product_id = {product} AND rule_default.agent_id IS NULL
    ))"""


def rebate_in_force(product: str, path: str) -> str:
    """The SQL expression of a product's rebate in force at an organisation (numeric; NULL: no
    rule), given the SQL of the product's id and of the organisation's path: the rule of the
    nearest agent on the path (``nearest_agent``), else the product's default
    (``agents_rebate``). The stock rows' ``rebate`` is this expression; a rebate claim at a
    store (``app.rebates.claims``) is paid ``agents_rebate`` of the store's ``nearest_agent``,
    computed once and stored as the claim's agent: the same two parts, so the amounts cannot
    disagree."""
    return agents_rebate(product, nearest_agent(path))


# a case holds goods: a unit inside it, or inside a case inside it (a pallet's cases' cases)
_HOLDS_UNITS = """(EXISTS (SELECT 1 FROM unit_state pu
                   WHERE pu.parent_sscc = pk.sscc AND pu.status = 'active')
     OR pk.level <> 'inner' AND EXISTS (
            SELECT 1 FROM case_state pc JOIN unit_state pu ON pu.parent_sscc = pc.sscc
             WHERE pc.parent_sscc = pk.sscc AND pu.status = 'active')
     OR pk.level = 'pallet' AND EXISTS (
            SELECT 1 FROM case_state pc JOIN case_state pg ON pg.parent_sscc = pc.sscc
                 JOIN unit_state pu ON pu.parent_sscc = pg.sscc
             WHERE pc.parent_sscc = pk.sscc AND pu.status = 'active'))"""


def packages_on_hand(org: str, product: str, lot: str) -> str:
    """The SQL expression of the packages (包装数量) an organisation holds of a product and lot,
    given the SQL of the three: its outermost cases on hand — active, inside no other case, not
    on their way — that still hold an active unit (a case emptied unit by unit, as a store
    sells, or sold or given away whole, its units with it, stays active where it is). Counted
    when read (only for the rows of the page: the planner evaluates it past the LIMIT), not
    rolled up: the index ``case_state_held_idx`` finds the cases, and each costs a probe of
    ``unit_state``'s parent index (a pallet's, one or two more) — proportional to the packages
    held, ~4 µs each (a page of 50 warehouse rows of ~1,000 cases, 0.2–0.3 s, on 7.4 million
    units in 370,000 cases). An exact roll-up would need package deltas from every packing,
    unpacking, correction and movement."""
    return f"""(SELECT count(*) FROM case_state pk
        WHERE pk.holder_org_id = {org} AND pk.product_id = {product} AND pk.lot = {lot}
          AND pk.parent_sscc IS NULL AND pk.status = 'active' AND pk.transit_to IS NULL
          AND {_HOLDS_UNITS})"""


_STOCK_SELECT = f"""s.org_id, o.name AS org_name, o.kind AS org_kind, o.city_name AS org_city,
    s.product_id, p.product_no, p.name AS product_name, g.name AS category, p.gtin, p.spec,
    p.colour_no, s.lot, s.on_hand, s.in_transit, s.updated_at,
    {rebate_in_force("s.product_id", "o.path")}::float8 AS rebate,
    {packages_on_hand("s.org_id", "s.product_id", "s.lot")} AS packages"""
_STOCK_SOURCE = """stock s JOIN orgs o ON o.id = s.org_id JOIN products p ON p.id = s.product_id
    LEFT JOIN categories g ON g.id = p.category_id"""
_STOCK_ORDER = "o.path, s.org_id, p.name, s.product_id, s.lot"


@dataclass(frozen=True)
class Query:
    """A filtered report query: enough to page it, count it or stream it."""

    select: str
    source: str
    where: list[str]
    params: dict[str, Any]
    order: str
    columns: list[str]
    name: str
    convert: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None  # each exported row

    @property
    def condition(self) -> str:
        return " AND ".join(self.where) or "true"

    def sql(self) -> str:
        return (
            f"SELECT {self.select} FROM {self.source} WHERE {self.condition} ORDER BY {self.order}"
        )


@dataclass(frozen=True)
class DocumentFilters:
    org_id: int | None = None
    counterparty_id: int | None = None
    product_id: int | None = None
    category_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None
    doc_no: str | None = None
    handler_id: int | None = None
    kind: DocKind | None = None
    status: DocStatus | None = None
    direction: Literal["inbound", "outbound"] | None = None
    org_kind: OrgKind | None = None


@dataclass(frozen=True)
class StockFilters:
    org_id: int | None = None
    product_id: int | None = None
    category_id: int | None = None
    org_kind: OrgKind | None = None
    lot: str | None = None
    include_zero: bool = False


def require_reader(actor: Principal) -> None:
    actor.require_any(*READ)


async def scoped_org_path(conn: Conn, actor: Principal, org_id: int, visible: bool) -> str:
    """The path of an organisation of the caller's brand (of its subtree when ``visible``)."""
    path = await org_path(conn, org_id)
    # one outside the brand (or the subtree) answers exactly like one that does not exist
    if (
        path is None
        or not path.startswith(f"/{actor.brand_id}/")
        or (visible and not actor.sees(path))
    ):
        raise NotFound(f"organisation {org_id} not found", code="unknown_org")
    return str(path)


async def document_query(conn: Conn, actor: Principal, f: DocumentFilters) -> Query:
    require_reader(actor)
    check_period(f.date_from, f.date_to)
    where = ["(o.path LIKE %(scope)s OR c.path LIKE %(scope)s)"]
    params: dict[str, Any] = {"scope": actor.org_path + "%"}
    if f.org_id is not None:
        where.append("o.path LIKE %(org)s")
        params["org"] = await scoped_org_path(conn, actor, f.org_id, visible=True) + "%"
    if f.counterparty_id is not None:
        where.append("c.path LIKE %(counterparty)s")
        params["counterparty"] = await scoped_org_path(conn, actor, f.counterparty_id, False) + "%"
    for column, key, value in (
        ("l.product_id", "product", f.product_id),
        ("p.category_id", "category", f.category_id),
        ("d.handler_id", "handler", f.handler_id),
        ("d.kind", "kind", f.kind),
        ("d.status", "status", f.status),
        ("d.direction", "direction", f.direction),
        ("o.kind", "org_kind", f.org_kind),
    ):
        if value is not None:
            where.append(f"{column} = %({key})s")
            params[key] = value
    if f.date_from is not None:
        where.append("d.doc_date >= %(date_from)s")
        params["date_from"] = f.date_from
    if f.date_to is not None:
        where.append("d.doc_date <= %(date_to)s")
        params["date_to"] = f.date_to
    if f.doc_no:
        where.append("starts_with(d.doc_no, %(doc_no)s)")
        params["doc_no"] = f.doc_no
    return Query(_DOC_SELECT, _DOC_SOURCE, where, params, _DOC_ORDER, DOCUMENT_COLUMNS, "documents")


async def stock_query(conn: Conn, actor: Principal, f: StockFilters) -> Query:
    require_reader(actor)
    where = ["o.path LIKE %(scope)s"]
    params: dict[str, Any] = {"scope": actor.org_path + "%"}
    if f.org_id is not None:
        where.append("o.path LIKE %(org)s")
        params["org"] = await scoped_org_path(conn, actor, f.org_id, visible=True) + "%"
    for column, key, value in (
        ("s.product_id", "product", f.product_id),
        ("p.category_id", "category", f.category_id),
        ("o.kind", "org_kind", f.org_kind),
        ("s.lot", "lot", f.lot),
    ):
        if value is not None:
            where.append(f"{column} = %({key})s")
            params[key] = value
    if not f.include_zero:
        where.append("(s.on_hand <> 0 OR s.in_transit <> 0)")
    return Query(_STOCK_SELECT, _STOCK_SOURCE, where, params, _STOCK_ORDER, STOCK_COLUMNS, "stock")


async def page_of(
    conn: Conn, query: Query, make: Callable[[dict[str, Any]], Any], page: int, per_page: int
) -> Page[Any]:
    return await fetch_page(
        conn,
        columns=query.select,
        source=query.source,
        where=query.where,
        params=query.params,
        order=query.order,
        page=page,
        per_page=per_page,
        make=make,
    )


async def check_xlsx_size(conn: Conn, query: Query) -> None:
    """An XLSX sheet holds about a million rows: bigger results are refused up front (use CSV)."""
    row = await (
        await conn.execute(
            f"SELECT count(*) AS n FROM (SELECT 1 FROM {query.source} WHERE {query.condition} "
            f"LIMIT {tabular.XLSX_MAX_ROWS + 1}) t",
            query.params,
        )
    ).fetchone()
    if row is not None and row["n"] > tabular.XLSX_MAX_ROWS:
        raise Unprocessable(
            f"more than {tabular.XLSX_MAX_ROWS:,} rows do not fit one XLSX sheet: export CSV or "
            "narrow the filters",
            code="too_many_rows",
            details={"max_rows": tabular.XLSX_MAX_ROWS},
        )


def _batches(pool: AsyncConnectionPool, query: Query) -> AsyncIterator[tabular.Rows]:
    """The query's rows, batch by batch, from a server-side cursor (memory stays flat); 429
    ``exports_busy`` now when the pool's export streams are all taken (``app.tabular``)."""
    return tabular.pooled_batches(
        pool,
        query.sql(),
        query.params,
        query.convert,
        name="export",
        batch=_BATCH,
        row_factory=tuple_row,
    )


def csv_chunks(pool: AsyncConnectionPool, query: Query) -> AsyncIterator[bytes]:
    """Every row as CSV (app.tabular: BOM, header, formula guard), one chunk per batch."""
    return tabular.csv_chunks(query.columns, _batches(pool, query))


def xlsx_chunks(pool: AsyncConnectionPool, query: Query) -> AsyncIterator[bytes]:
    """Every row as an XLSX sheet (app.tabular), written in constant memory."""
    return tabular.xlsx_chunks(query.name, query.columns, _batches(pool, query))
