"""HTTP routes of the rebate rankings (R3): stores and clerks ranked by rebate amount or count
over a month or a span of months, as JSON or, with ``?format=csv|xlsx``, as a file."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import get
from litestar.params import Parameter, QueryParameter

from app import tabular
from app.auth.principal import Principal
from app.db import Conn
from app.rebates import ranking
from app.rebates.ranking import By, Filters
from app.rebates.schemas_ranking import ClerkRanking, StoreRanking

Format = Literal["json", "csv", "xlsx"]
MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])(?!\n)$"  # ASCII digits, as the statements' period
Month = Annotated[
    str | None, Parameter(pattern=MONTH, description="one month, YYYY-MM (Asia/Shanghai)")
]
FromMonth = Annotated[
    str | None, Parameter(pattern=MONTH, description="first month of a span, YYYY-MM")
]
ToMonth = Annotated[
    str | None, Parameter(pattern=MONTH, description="last month of a span (inclusive), YYYY-MM")
]
Region = Annotated[
    str | None,
    Parameter(
        min_length=1, max_length=64, description="the store's region: a 6-digit code or a name"
    ),
]
AgentId = Annotated[
    int | None, Parameter(ge=1, description="only the stores under this agent (in your subtree)")
]
ByParam = Annotated[By, Parameter(description="rank by rebate amount or by claim count")]
Limit = Annotated[
    int | None,
    Parameter(ge=1, le=10_000, description="rows to return (default: 50 as JSON, all as a file)"),
]
FormatParam = Annotated[
    Format, QueryParameter(name="format", description="json, csv or xlsx (the same rows)")
]


def _filters(fmt: Format, limit: int | None, **fields: Any) -> Filters:
    return Filters(limit=limit if limit is not None or fmt != "json" else 50, **fields)


@get("/rebates/rankings/stores")
async def store_ranking(
    conn: Conn,
    principal: Principal,
    month: Month = None,
    from_month: FromMonth = None,
    to_month: ToMonth = None,
    province: Region = None,
    city: Region = None,
    agent_id: AgentId = None,
    by: ByParam = "amount",
    limit: Limit = None,
    fmt: FormatParam = "json",
) -> StoreRanking:
    """Stores of your subtree ranked by rebate amount (or count) over a month (``month``) or
    a span (``from_month``..``to_month``; default this month), optionally within a province,
    city or agent. Ties share a rank. Needs ``rebates.read``."""
    f = _filters(
        fmt,
        limit,
        month=month,
        from_month=from_month,
        to_month=to_month,
        province=province,
        city=city,
        agent_id=agent_id,
        by=by,
    )
    out = await ranking.store_ranking(conn, principal, f)
    if fmt == "json":
        return out
    name = f"rebate-store-ranking-{out.from_month}-{out.to_month}.{fmt}"
    return _file(fmt, "stores", ranking.STORE_COLUMNS, ranking.store_rows(out), name)  # type: ignore[return-value]


@get("/rebates/rankings/clerks")
async def clerk_ranking(
    conn: Conn,
    principal: Principal,
    month: Month = None,
    from_month: FromMonth = None,
    to_month: ToMonth = None,
    province: Region = None,
    city: Region = None,
    agent_id: AgentId = None,
    by: ByParam = "amount",
    limit: Limit = None,
    fmt: FormatParam = "json",
) -> ClerkRanking:
    """Clerks of your subtree (one row per clerk and store) ranked like the stores."""
    f = _filters(
        fmt,
        limit,
        month=month,
        from_month=from_month,
        to_month=to_month,
        province=province,
        city=city,
        agent_id=agent_id,
        by=by,
    )
    out = await ranking.clerk_ranking(conn, principal, f)
    if fmt == "json":
        return out
    name = f"rebate-clerk-ranking-{out.from_month}-{out.to_month}.{fmt}"
    return _file(fmt, "clerks", ranking.CLERK_COLUMNS, ranking.clerk_rows(out), name)  # type: ignore[return-value]


def _file(
    fmt: Format, sheet: str, columns: tuple[str, ...], rows: list[Any], name: str
) -> tabular.Download:
    batches = tabular.one_batch(rows)
    if fmt == "xlsx":
        return tabular.download(tabular.xlsx_chunks(sheet, columns, batches), fmt, name)
    return tabular.download(tabular.csv_chunks(columns, batches), fmt, name)


route_handlers: list[Any] = [store_ranking, clerk_ranking]
