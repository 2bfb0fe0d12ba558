"""HTTP routes of the sales analytics (A1–A3) and the dashboard: JSON, or with
``?format=csv|xlsx`` the same rows as a file. Periods are Asia/Shanghai days, ``from`` and
``to`` inclusive (default: this month to today). Scoped by ``reports.read`` to the caller's
subtree (``app.analytics.sales``). The reports read from the read replica when there is one
(``read_conn``, app/replica.py); the dashboard does not: it stores the days it counts."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from litestar import Request, get
from litestar.params import Parameter, QueryParameter

from app import tabular
from app.analytics import dashboard as board
from app.analytics import sales
from app.analytics.sales import Filters, Granularity, Level
from app.analytics.schemas_sales import Dashboard, ProductReport, RegionReport, StoreRanking
from app.auth.principal import Principal
from app.db import Conn

Format = Literal["json", "csv", "xlsx"]
From = Annotated[
    date | None, QueryParameter(name="from", description="first day (Asia/Shanghai), inclusive")
]
To = Annotated[date | None, QueryParameter(name="to", description="last day, inclusive")]
ProductId = Annotated[int | None, Parameter(ge=1, description="only this product")]
CategoryId = Annotated[int | None, Parameter(ge=1, description="only this category's products")]
ProductType = Annotated[
    str | None,
    QueryParameter(name="type", min_length=1, max_length=100, description="product type"),
]
Province = Annotated[
    str | None,
    Parameter(
        min_length=1,
        max_length=64,
        description="the store's province: 浙江省, 浙江, Zhejiang or 330000 (unknown: 400)",
    ),
]
City = Annotated[
    str | None,
    Parameter(
        min_length=1,
        max_length=64,
        description="the store's city: a 6-digit code or the name as stored (杭州市)",
    ),
]
AgentId = Annotated[
    int | None, Parameter(ge=1, description="only the stores under this agent (in your subtree)")
]
StoreId = Annotated[int | None, Parameter(ge=1, description="only this store (in your subtree)")]
Limit = Annotated[
    int | None,
    Parameter(ge=1, le=10_000, description="rows to return (default: 50 as JSON, all as a file)"),
]
# A2's products and A3's rows: every row unless ``limit`` (their totals count them all)
RowLimit = Annotated[
    int | None, Parameter(ge=1, le=10_000, description="rows to return (default: all)")
]
FormatParam = Annotated[
    Format, QueryParameter(name="format", description="json, csv or xlsx (the same rows)")
]


def _limit(fmt: Format, limit: int | None) -> int | None:
    return limit if limit is not None or fmt != "json" else 50


@get("/analytics/sales/stores")
async def store_ranking(
    read_conn: Conn,
    principal: Principal,
    start: From = None,
    end: To = None,
    product_id: ProductId = None,
    category_id: CategoryId = None,
    product_type: ProductType = None,
    province: Province = None,
    city: City = None,
    agent_id: AgentId = None,
    limit: Limit = None,
    fmt: FormatParam = "json",
) -> StoreRanking:
    """A1: stores of your subtree ranked by net units sold (sales less consumer returns) over
    the period, of every product or of a product, category or type; within a province, city
    or agent. Ties share a rank. Needs ``reports.read``."""
    f = Filters(
        start=start, end=end, product_id=product_id, category_id=category_id,
        product_type=product_type, province=province, city=city, agent_id=agent_id,
        limit=_limit(fmt, limit),
    )  # fmt: skip
    out = await sales.store_ranking(read_conn, principal, f)
    if fmt == "json":
        return out
    columns = ("rank", "store_id", "store", "store_erp_code", "province", "city", "agent",
               "units", "share")  # fmt: skip
    rows = [
        (r.rank, r.store_id, r.store_name, r.store_erp_code, r.province_name, r.city_name,
         r.agent_name, r.units, r.share)
        for r in out.items
    ]  # fmt: skip
    return _file(fmt, "stores", columns, rows, f"sales-stores-{out.from_date}-{out.to_date}")  # type: ignore[return-value]


@get("/analytics/sales/products")
async def product_report(
    read_conn: Conn,
    principal: Principal,
    start: From = None,
    end: To = None,
    granularity: Annotated[
        Granularity, Parameter(description="the series by day or by month")
    ] = "month",
    product_id: ProductId = None,
    category_id: CategoryId = None,
    product_type: ProductType = None,
    province: Province = None,
    city: City = None,
    agent_id: AgentId = None,
    store_id: StoreId = None,
    limit: RowLimit = None,
    fmt: FormatParam = "json",
) -> ProductReport:
    """A2: net units by product and by product type over the period, and the series by day or
    month; of your subtree's stores (or a region's, an agent's, one store's). The file has one
    row per product; ``limit``: the first products only (the types, series and units count
    them all). Needs ``reports.read``."""
    f = Filters(
        start=start, end=end, product_id=product_id, category_id=category_id,
        product_type=product_type, province=province, city=city, agent_id=agent_id,
        store_id=store_id, limit=limit,
    )  # fmt: skip
    out = await sales.product_report(read_conn, principal, f, granularity)
    if fmt == "json":
        return out
    columns = ("product_id", "product", "product_no", "type", "category", "units")
    rows = [
        (p.product_id, p.product_name, p.product_no, p.product_type, p.category_name, p.units)
        for p in out.products
    ]
    return _file(fmt, "products", columns, rows, f"sales-products-{out.from_date}-{out.to_date}")  # type: ignore[return-value]


@get("/analytics/sales/regions")
async def region_report(
    read_conn: Conn,
    principal: Principal,
    start: From = None,
    end: To = None,
    level: Annotated[Level, Parameter(description="group by province or by city")] = "province",
    product_id: ProductId = None,
    category_id: CategoryId = None,
    product_type: ProductType = None,
    province: Province = None,
    city: City = None,
    agent_id: AgentId = None,
    limit: RowLimit = None,
    fmt: FormatParam = "json",
) -> RegionReport:
    """A3: net units by the stores' province (or city) and agent over the period, with the
    totals per province and per agent; the filters of A1. ``limit``: the first rows only (the
    totals count them all). Needs ``reports.read``."""
    f = Filters(
        start=start, end=end, product_id=product_id, category_id=category_id,
        product_type=product_type, province=province, city=city, agent_id=agent_id,
        limit=limit,
    )  # fmt: skip
    out = await sales.region_report(read_conn, principal, f, level)
    if fmt == "json":
        return out
    columns = ("province_code", "province", "city_code", "city", "agent_id", "agent", "stores",
               "units")  # fmt: skip
    rows = [
        (r.province_code, r.province_name, r.city_code, r.city_name, r.agent_id, r.agent_name,
         r.stores, r.units)
        for r in out.items
    ]  # fmt: skip
    return _file(fmt, "regions", columns, rows, f"sales-regions-{out.from_date}-{out.to_date}")  # type: ignore[return-value]


@get("/analytics/dashboard")
async def dashboard(conn: Conn, principal: Principal, request: Request[Any, Any, Any]) -> Dashboard:
    """Today's verifications, counterfeits, activations (brand staff only), diversions,
    shipments and low-stock alerts (your subtree), each with its last 14 days (Asia/Shanghai,
    today last). Needs ``reports.read``."""
    return await board.dashboard(conn, principal, keep=request.method != "HEAD")


def _file(
    fmt: Format, sheet: str, columns: tuple[str, ...], rows: list[Any], name: str
) -> tabular.Download:
    batches = tabular.one_batch(rows)
    if fmt == "xlsx":
        return tabular.download(tabular.xlsx_chunks(sheet, columns, batches), fmt, f"{name}.xlsx")
    return tabular.download(tabular.csv_chunks(columns, batches), fmt, f"{name}.csv")


route_handlers: list[Any] = [store_ranking, product_report, region_report, dashboard]
