"""HTTP routes of rebate rules (``/rebates/rules``) and the rebate queries (``GET /rebates``: the
claims; ``/rebates/me``, ``/rebates/refusals``); the lists answer JSON pages or, with
``?format=csv|xlsx``, a streamed file of every matching row (``app.logistics.center_routes``).
``GET /rebates`` and ``/rebates/refusals`` read from the read replica when there is one
(``read_conn``/``read_pool``, app/replica.py).

The claims are listed at ``GET /rebates``, not ``GET /rebates/claims``: ``POST /rebates/claims``
is a plain ASGI handler (``routes_claims``, the claims' fast path), and Litestar gives an ASGI
handler its path alone."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from litestar import Controller, delete, get, put
from litestar.params import Parameter, QueryParameter
from psycopg_pool import AsyncConnectionPool

from app.auth.principal import Principal
from app.codes.scheme import Scheme
from app.db import Conn
from app.logistics.center_routes import FormatParam, answer
from app.paging import Page, PageNo, PerPage
from app.rebates import queries, rules
from app.rebates.schemas import (
    ClaimsPage,
    ClerkSummary,
    RefusalRow,
    RuleIn,
    RuleOut,
    Settlement,
)

DateFrom = Annotated[
    date | None, QueryParameter(name="from", description="first day (Asia/Shanghai)")
]
DateTo = Annotated[date | None, QueryParameter(name="to", description="last day, inclusive")]


class RebateRulesController(Controller):
    path = "/rebates/rules"

    @get("/")
    async def list_rules(
        self,
        conn: Conn,
        principal: Principal,
        product_id: int | None = None,
        agent_id: Annotated[int | None, Parameter(description="this agent's overrides")] = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[RuleOut]:
        """The brand's rebate rules (``rebates.rules``): per product, the default (``agent_id``
        null) first, then the overrides for an agent's stores (a claim at a store is paid its
        nearest agent's rule, else the default). Their history is the audit log (entity
        ``rebate_rule``)."""
        return await rules.list_rules(conn, principal, product_id, agent_id, page, per_page)

    @put("/")
    async def put_rule(self, data: RuleIn, conn: Conn, principal: Principal) -> RuleOut:
        """Set the rebate (yuan) of a product (``agent_id`` null) or its override at the stores
        whose nearest agent is ``agent_id``; created or updated, audited. ``amount``: a
        multiple of 0.5 from 0 to 100000 (else 400 ``validation_failed`` naming ``amount``); 0
        earns nothing. Claims made before keep their amount. 422 ``unknown_product``,
        ``unknown_org``; 403 ``brand_staff_only`` below the brand."""
        out, _ = await rules.put_rule(conn, principal, data)
        return out

    @delete("/{rule_id:int}")
    async def delete_rule(self, rule_id: int, conn: Conn, principal: Principal) -> None:
        """Remove a rule (audited): an override's units fall back to the product's default."""
        await rules.delete_rule(conn, principal, rule_id)


class RebateQueriesController(Controller):
    path = "/rebates"

    @get("/")
    async def claims(
        self,
        read_conn: Conn,
        read_pool: AsyncConnectionPool,
        principal: Principal,
        scheme: Scheme,
        store_id: int | None = None,
        clerk_id: int | None = None,
        product_id: int | None = None,
        category_id: int | None = None,
        agent_id: int | None = None,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        settlement: Annotated[Settlement | None, QueryParameter(name="status")] = None,
        fmt: FormatParam = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> ClaimsPage:
        """Rebate claims (``rebates.read``), newest first, of the stores in the caller's
        subtree (an agent its stores', a store its own): product, category, GTIN, colour,
        store, clerk, serial, amount, agent, settlement ``status`` (``unsettled`` or its
        statement's) and statement. ``total`` and ``amount``: count and sum of every match.
        ``format=csv|xlsx``: every match as a file. 400 ``bad_period``."""
        query = queries.claims_query(
            principal,
            scheme,
            queries.ClaimFilters(
                store_id=store_id,
                clerk_id=clerk_id,
                product_id=product_id,
                category_id=category_id,
                agent_id=agent_id,
                date_from=date_from,
                date_to=date_to,
                settlement=settlement,
            ),
        )
        if fmt == "json":
            return await queries.claims_page(read_conn, query, scheme, page, per_page)
        return await answer(read_conn, read_pool, query, fmt, None, page, per_page)  # type: ignore[no-any-return]

    @get("/me")
    async def me(
        self,
        conn: Conn,
        principal: Principal,
        scheme: Scheme,
        page: PageNo = 1,
        per_page: PerPage = 20,
    ) -> ClerkSummary:
        """The signed-in clerk's rebates (``sales.claim``): count and amount today, this month
        and in all, and the clerk's claims, newest first. 403 ``user_required`` for an API key."""
        return await queries.clerk_summary(conn, principal, page, per_page, scheme)

    @get("/refusals")
    async def refusals(
        self,
        read_conn: Conn,
        read_pool: AsyncConnectionPool,
        principal: Principal,
        store_id: Annotated[int | None, Parameter(description="where it was tried")] = None,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        fmt: FormatParam = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[RefusalRow]:
        """Refused claims kept as anti-diversion signals (``rebates.read``), newest first:
        where a clerk tried, why, and where the unit was supposed to be. The caller sees those
        tried at a store of its subtree or of units meant for a store or agent of it.
        ``format=csv|xlsx``: every match as a file. 400 ``bad_period``."""
        query = queries.refusals_query(principal, store_id, date_from, date_to)
        return await answer(  # type: ignore[no-any-return]
            read_conn, read_pool, query, fmt, queries.refusal_row, page, per_page
        )


route_handlers = [RebateRulesController, RebateQueriesController]
