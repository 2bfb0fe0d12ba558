"""HTTP routes of the stores' rebate statements (issue 16 item 5): generation, the statements
(JSON pages or CSV/XLSX files), a statement with its claims, and the transitions approve, pay and
reject. The rules live in ``app.rebates.settlement``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.params import Parameter, QueryParameter

from app.auth.principal import Principal
from app.codes.scheme import Scheme
from app.db import Conn
from app.paging import Page, PageNo, PerPage
from app.rebates import settlement
from app.rebates.schemas_settlement import (
    ClaimLine,
    GenerateIn,
    GenerateOut,
    PayIn,
    RejectIn,
    StatementDetail,
    StatementOut,
    StatementStatus,
)
from app.rebates.settlement import Format

FormatParam = Annotated[
    Format, QueryParameter(name="format", description="json (a page), csv or xlsx (every row)")
]
MonthParam = Annotated[
    str | None,
    Parameter(
        pattern=r"^20[0-9]{2}-(0[1-9]|1[0-2])(?!\n)$",
        description="YYYY-MM: statements whose period lies within that month",
    ),
]


class StatementsController(Controller):
    path = "/rebates/statements"

    @post("/", status_code=201)
    async def generate(
        self, data: GenerateIn, conn: Conn, principal: Principal
    ) -> Response[GenerateOut]:
        """Settle a period (``rebates.settle``, brand staff): one pending statement per store
        with claims in the period that are in no statement yet, the claims assigned to it.
        ``period`` (``YYYY-MM``) or ``from`` and ``to`` (dates, both inclusive, at most 366
        days), Asia/Shanghai calendar; ``store_id``: only this store. Always 201 with the
        statements made — an empty list when nothing was unsettled; running it again makes a
        further statement only for claims that came in since (a late claim). A period that has
        not ended may be settled (the claims so far). 400 ``bad_period``; 422
        ``period_not_started``, ``not_a_store``; 404 ``unknown_org``; 403
        ``brand_staff_only``."""
        out = await settlement.generate(conn, principal, data)
        return Response(out, status_code=201)

    @get("/")
    async def list_statements(
        self,
        conn: Conn,
        principal: Principal,
        state: State,
        statement_status: Annotated[
            StatementStatus | None, QueryParameter(name="status", required=False)
        ] = None,
        store_id: int | None = None,
        period: MonthParam = None,
        date_from: Annotated[
            date | None,
            QueryParameter(name="from", description="statements whose period starts on or after"),
        ] = None,
        date_to: Annotated[
            date | None,
            QueryParameter(name="to", description="statements whose period ends on or before"),
        ] = None,
        fmt: FormatParam = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[StatementOut]:
        """Statements visible to the caller (``rebates.read``): the brand's staff see all, an
        agent its stores', a store its own; newest period first. ``period`` and ``from``/``to``
        (inclusive dates) keep those whose period lies within. 404 ``unknown_org`` for a
        ``store_id`` outside the subtree; 400 ``bad_period``."""
        query = await settlement.statement_query(
            conn,
            principal,
            settlement.Filters(
                status=statement_status,
                store_id=store_id,
                period=period,
                date_from=date_from,
                date_to=date_to,
            ),
        )
        if fmt != "json":
            return settlement.export_statements(state.pool, query, fmt)  # type: ignore[return-value]
        return await settlement.list_statements(conn, query, page, per_page)

    @get("/{statement_id:int}")
    async def get_statement(
        self,
        statement_id: int,
        conn: Conn,
        principal: Principal,
        scheme: Scheme,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> StatementDetail:
        """A statement of the caller's subtree (``rebates.read``) and a page of its claims,
        oldest first; 404 for any other."""
        return await settlement.detail(conn, principal, scheme, statement_id, page, per_page)

    @get("/{statement_id:int}/claims")
    async def statement_claims(
        self,
        statement_id: int,
        conn: Conn,
        principal: Principal,
        scheme: Scheme,
        state: State,
        fmt: FormatParam = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[ClaimLine]:
        """A statement's claims (the store's copy for reconciliation): serial, product, clerk,
        agent, amount and time; ``format=csv|xlsx`` every one as a file."""
        statement = await settlement.visible_statement(conn, principal, statement_id)
        if fmt != "json":
            return settlement.export_claims(state.pool, scheme, statement, fmt)  # type: ignore[return-value]
        return await settlement.claims_page(conn, scheme, statement_id, page, per_page)

    @post("/{statement_id:int}/approve", status_code=200)
    async def approve(self, statement_id: int, conn: Conn, principal: Principal) -> StatementOut:
        """pending → approved (``rebates.settle``, brand staff). 409 ``invalid_transition``
        (details: the current ``status``) from any other status: approving twice included."""
        return await settlement.approve(conn, principal, statement_id)

    @post("/{statement_id:int}/pay", status_code=200)
    async def pay(
        self, statement_id: int, data: PayIn, conn: Conn, principal: Principal
    ) -> StatementOut:
        """approved → paid, with ``payment_ref`` (one line, 1–100 characters) and ``paid_on``
        (a date, not in the future: 422 ``paid_on_in_future``; not before the period: 422
        ``paid_on_before_period``). 409 ``invalid_transition`` unless approved (paying before
        approval, or twice); a paid statement never changes again."""
        return await settlement.pay(conn, principal, statement_id, data)

    @post("/{statement_id:int}/reject", status_code=200)
    async def reject(
        self, statement_id: int, data: RejectIn, conn: Conn, principal: Principal
    ) -> StatementOut:
        """pending or approved → rejected, with ``reason`` (1–500 characters). The claims stay in
        the rejected statement (settlement status ``rejected``) and are never settled again. 409
        ``invalid_transition`` from paid or rejected."""
        return await settlement.reject(conn, principal, statement_id, data)


route_handlers: list[Any] = [StatementsController]
