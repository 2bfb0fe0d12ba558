"""HTTP routes of the management center (SPEC L10): ``/center/documents`` and ``/center/stock``,
as JSON pages or, with ``?format=csv|xlsx``, as a streamed file of every matching row. Both read
from the read replica when there is one (``read_conn``/``read_pool``, app/replica.py)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from litestar import Controller, get
from litestar.params import Parameter, QueryParameter
from psycopg_pool import AsyncConnectionPool

from app import localtime, tabular
from app.auth.principal import Principal
from app.db import Conn
from app.logistics import center
from app.logistics.center import DocumentRow, Format, OrgKind, Query, StockRow
from app.logistics.schemas import DocKind, DocStatus
from app.paging import Page, PageNo, PerPage

FormatParam = Annotated[
    Format, QueryParameter(name="format", description="json (a page), csv or xlsx (every row)")
]
DocNo = Annotated[
    str | None, Parameter(min_length=1, max_length=64, description="number or its start")
]


async def answer(
    conn: Conn,
    pool: AsyncConnectionPool,
    query: Query,
    fmt: Format,
    make: Any,
    page: int,
    per_page: int,
) -> Any:
    """A report query's answer: a JSON page of ``make(row)`` read on ``conn``, or every row as a
    CSV or XLSX download streamed from a connection of ``pool`` (the rebate queries answer this
    way too)."""
    if fmt == "json":
        return await center.page_of(conn, query, make, page, per_page)
    if fmt == "xlsx":
        await center.check_xlsx_size(conn, query)
        chunks = center.xlsx_chunks(pool, query)
    else:
        chunks = center.csv_chunks(pool, query)
    return tabular.download(chunks, fmt, f"{query.name}-{localtime.today()}.{fmt}")


class CenterController(Controller):
    path = "/center"
    tags = ["management center"]

    @get("/documents")
    async def documents(
        self,
        read_conn: Conn,
        read_pool: AsyncConnectionPool,
        principal: Principal,
        org_id: Annotated[int | None, Parameter(description="this organisation's subtree")] = None,
        counterparty_id: int | None = None,
        product_id: int | None = None,
        category_id: int | None = None,
        date_from: Annotated[date | None, QueryParameter(name="from")] = None,
        date_to: Annotated[date | None, QueryParameter(name="to")] = None,
        doc_no: DocNo = None,
        handler_id: int | None = None,
        kind: DocKind | None = None,
        doc_status: Annotated[DocStatus | None, QueryParameter(name="status")] = None,
        direction: Literal["inbound", "outbound"] | None = None,
        org_kind: OrgKind | None = None,
        fmt: FormatParam = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[DocumentRow]:
        """Document lines (one row per product and lot of a document) visible to the caller:
        documents whose organisation or counterparty lies in its subtree."""
        query = await center.document_query(
            read_conn,
            principal,
            center.DocumentFilters(
                org_id=org_id,
                counterparty_id=counterparty_id,
                product_id=product_id,
                category_id=category_id,
                date_from=date_from,
                date_to=date_to,
                doc_no=doc_no,
                handler_id=handler_id,
                kind=kind,
                status=doc_status,
                direction=direction,
                org_kind=org_kind,
            ),
        )
        return await answer(  # type: ignore[no-any-return]
            read_conn, read_pool, query, fmt, lambda row: DocumentRow(**row), page, per_page
        )

    @get("/stock")
    async def stock(
        self,
        read_conn: Conn,
        read_pool: AsyncConnectionPool,
        principal: Principal,
        org_id: Annotated[int | None, Parameter(description="this organisation's subtree")] = None,
        product_id: int | None = None,
        category_id: int | None = None,
        org_kind: OrgKind | None = None,
        lot: Annotated[str | None, Parameter(min_length=1, max_length=64)] = None,
        include_zero: bool = False,
        fmt: FormatParam = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[StockRow]:
        """Rolled-up stock per organisation, product and lot in the caller's subtree."""
        query = await center.stock_query(
            read_conn,
            principal,
            center.StockFilters(
                org_id=org_id,
                product_id=product_id,
                category_id=category_id,
                org_kind=org_kind,
                lot=lot,
                include_zero=include_zero,
            ),
        )
        return await answer(  # type: ignore[no-any-return]
            read_conn, read_pool, query, fmt, lambda row: StockRow(**row), page, per_page
        )
