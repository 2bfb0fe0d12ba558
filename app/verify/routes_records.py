"""HTTP route of the verification records list: ``GET /verifications`` as a JSON page or, with
``?format=csv|xlsx``, a streamed file of every match (``app.logistics.center_routes.answer``)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Annotated, Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.params import Parameter, QueryParameter

from app import audit
from app.auth.principal import Principal
from app.db import Conn
from app.localtime import REPORT_TZ
from app.logistics.center_routes import FormatParam, answer
from app.paging import Page, PageNo, PerPage
from app.verify import listing
from app.verify.schemas import Result
from app.verify.schemas_records import VerificationRow

Text = Annotated[str | None, Parameter(min_length=1, max_length=64)]


@get("/verifications", tags=["verify"])
async def list_verifications(
    request: Request[Any, Any, Any],
    conn: Conn,
    principal: Principal,
    state: State,
    date_from: Annotated[
        date | None, QueryParameter(name="from", description="first day (Asia/Shanghai)")
    ] = None,
    date_to: Annotated[
        date | None, QueryParameter(name="to", description="last day, inclusive")
    ] = None,
    result: Result | None = None,
    reason: Text = None,
    product_id: int | None = None,
    province: Annotated[str | None, Parameter(max_length=32, description="e.g. 浙江省")] = None,
    city: Annotated[str | None, Parameter(max_length=32, description="e.g. 杭州市")] = None,
    serial: Annotated[str | None, Parameter(max_length=64, description="its start")] = None,
    member_id: int | None = None,
    fmt: FormatParam = "json",
    page: PageNo = 1,
    per_page: PerPage = 50,
) -> Page[VerificationRow]:
    """Verification records of the caller's brand (``alerts.read`` or ``reports.read``), newest
    first; staff below the brand see those of their subtree's units, without the client address
    and the member (null; ``member_id`` is 403 ``brand_staff_only``). Each with its ``severity``
    (ok, info, warning, critical) by result. Period: ``from``/``to`` (Asia/Shanghai days; the
    last 30 days by default, at most 366: 400 ``bad_period``). ``format=csv|xlsx``: every
    match as a file."""
    today = await _today(conn)
    filters = listing.RecordFilters(
        date_from=date_from,
        date_to=date_to,
        result=result,
        reason=reason,
        product_id=product_id,
        province=province,
        city=city,
        serial=serial,
        member_id=member_id,
    )
    query = listing.records_query(principal, filters, today)
    # consumers' addresses and member ids leave in a file (probe T); a HEAD sends nothing
    if fmt != "json" and request.method != "HEAD":
        asked = {k: v for k, v in asdict(filters).items() if v is not None}
        await audit.record(
            conn, principal, "export", "verification", None, after={"filters": asked, "format": fmt}
        )
    return await answer(  # type: ignore[no-any-return]
        conn, state.pool, query, fmt, listing.record_row, page, per_page
    )


async def _today(conn: Conn) -> date:
    row = await (
        await conn.execute(f"SELECT (now() AT TIME ZONE '{REPORT_TZ}')::date AS d")
    ).fetchone()
    assert row is not None
    return row["d"]  # type: ignore[no-any-return]
