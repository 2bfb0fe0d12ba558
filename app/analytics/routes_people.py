"""HTTP routes of the people analytics (A4–A7): members by region, the members' purchase
cycle, points by age band, verification and inspection statistics — JSON, or one of the
answer's lists as a file with ``?format=csv|xlsx`` (``&table=`` names which). Read from the read
replica when there is one (``read_conn``, app/replica.py)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import msgspec
from litestar import get
from litestar.params import Parameter, QueryParameter

from app import tabular
from app.analytics import people_stats
from app.analytics.people_stats import Filters
from app.analytics.schemas_people import (
    Granularity,
    InspectionStats,
    MemberCycle,
    MemberRegions,
    PointsByAge,
    VerificationStats,
)
from app.auth.principal import Principal
from app.db import Conn
from app.paging import PageNo

Format = Literal["json", "csv", "xlsx"]
DateFrom = Annotated[
    date | None, QueryParameter(name="from", description="first day (Asia/Shanghai)")
]
DateTo = Annotated[date | None, QueryParameter(name="to", description="last day, inclusive")]
Province = Annotated[
    str | None,
    Parameter(
        min_length=1,
        max_length=64,
        description="a province: 浙江省, 浙江, Zhejiang or 330000 (unknown: 400)",
    ),
]
ProductId = Annotated[int | None, Parameter(ge=1, description="one product of the brand")]
CategoryId = Annotated[
    int | None, Parameter(ge=1, description="the products of one category of the brand")
]
GranularityParam = Annotated[Granularity, Parameter(description="periods of the series")]
FormatParam = Annotated[
    Format, QueryParameter(name="format", description="json, or one list as csv or xlsx")
]
StoresPerPage = Annotated[
    int | None,
    Parameter(ge=1, le=200, description="stores per page (max 200; default 100); a file: all"),
]


def _file(out: msgspec.Struct, table: str, fmt: Format, name: str) -> tabular.Download:
    columns, rows = people_stats.table_of(out, table)
    batches = tabular.one_batch(rows)
    filename = f"{name}-{table}.{fmt}"
    if fmt == "xlsx":
        return tabular.download(tabular.xlsx_chunks(table, columns, batches), fmt, filename)
    return tabular.download(tabular.csv_chunks(columns, batches), fmt, filename)


@get("/analytics/members/regions")
async def member_regions(
    read_conn: Conn,
    principal: Principal,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    province: Province = None,
    granularity: GranularityParam = "month",
    fmt: FormatParam = "json",
    table: Annotated[
        Literal["regions", "trend"], Parameter(description="the list a file holds")
    ] = "regions",
) -> MemberRegions:
    """A4: members registered in the period (default: all) by province — by city within
    ``province`` — with their share, and registrations per month (or day). ``reports.read``,
    brand staff."""
    f = Filters(date_from=date_from, date_to=date_to, province=province, granularity=granularity)
    out = await people_stats.member_regions(read_conn, principal, f)
    if fmt == "json":
        return out
    return _file(out, table, fmt, "member-regions")  # type: ignore[return-value]


@get("/analytics/members/cycle")
async def member_cycle(
    read_conn: Conn,
    principal: Principal,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    product_id: ProductId = None,
    category_id: CategoryId = None,
    by: Annotated[
        Literal["product", "category"], Parameter(description="one row per product or category")
    ] = "product",
    fmt: FormatParam = "json",
) -> MemberCycle:
    """A5: per product (or category), the members who bought it (claimed its points), their
    purchases per member, mean days between a member's purchases, and members by days since
    their last purchase (0–30, 31–90, 91–180, 181–365, over 365) and by number of purchases; of
    the members whose last purchase is in the period (``from``/``to``; default: all).
    ``reports.read``, brand staff."""
    f = Filters(
        date_from=date_from, date_to=date_to, product_id=product_id, category_id=category_id
    )
    out = await people_stats.member_cycle(read_conn, principal, f, by)
    if fmt == "json":
        return out
    return _file(out, "items", fmt, "member-cycle")  # type: ignore[return-value]


@get("/analytics/points/ages")
async def points_by_age(
    read_conn: Conn, principal: Principal, fmt: FormatParam = "json"
) -> PointsByAge:
    """A6: members and their points (claimed, redeemed, expired, adjusted, balance) by age band,
    as of today. ``reports.read``, brand staff."""
    out = await people_stats.points_by_age(read_conn, principal)
    if fmt == "json":
        return out
    return _file(out, "bands", fmt, "points-by-age")  # type: ignore[return-value]


@get("/analytics/verifications")
async def verification_stats(
    read_conn: Conn,
    principal: Principal,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    province: Province = None,
    product_id: ProductId = None,
    category_id: CategoryId = None,
    granularity: GranularityParam = "day",
    fmt: FormatParam = "json",
    table: Annotated[
        Literal["periods", "regions"], Parameter(description="the list a file holds")
    ] = "periods",
) -> VerificationStats:
    """A7: consumer verifications of the brand's codes by result — counterfeits are
    ``not_genuine`` — per day (or month) and by province (by city within ``province``), over at
    most 366 days (default: the last 30). ``reports.read``, brand staff."""
    f = Filters(
        date_from=date_from,
        date_to=date_to,
        province=province,
        product_id=product_id,
        category_id=category_id,
        granularity=granularity,
    )
    out = await people_stats.verifications(read_conn, principal, f)
    if fmt == "json":
        return out
    return _file(out, table, fmt, "verifications")  # type: ignore[return-value]


@get("/analytics/inspections")
async def inspection_stats(
    read_conn: Conn,
    principal: Principal,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    province: Province = None,
    granularity: GranularityParam = "day",
    fmt: FormatParam = "json",
    table: Annotated[
        Literal["periods", "regions", "stores"], Parameter(description="the list a file holds")
    ] = "periods",
    page: PageNo = 1,
    per_page: StoresPerPage = None,
) -> InspectionStats:
    """A7: units inspected at the stores of your subtree and their findings (in channel,
    diverted, unknown route, counterfeit) per day (or month), by the stores' province and by
    store — as JSON a page of the stores (``stores_page``, ``stores_per_page``,
    ``stores_total``), in a file every store — over at most 366 days (default: the last 30).
    The leak report by agent is ``GET /inspections/summary?by=agent``. ``reports.read``."""
    f = Filters(date_from=date_from, date_to=date_to, province=province, granularity=granularity)
    if fmt != "json":
        out = await people_stats.inspections(read_conn, principal, f)
        return _file(out, table, fmt, "inspections")  # type: ignore[return-value]
    listed = per_page if per_page is not None else people_stats.STORES_LISTED
    return await people_stats.inspections(read_conn, principal, f, page, listed)


route_handlers: list[Any] = [
    member_regions,
    member_cycle,
    points_by_age,
    verification_stats,
    inspection_stats,
]
