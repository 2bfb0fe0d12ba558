"""HTTP routes of the event chain (brand staff with ``audit.read``; see ``app.chain.service``)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter, QueryParameter

from app.auth.principal import Principal
from app.chain import anchors, service
from app.chain.check import CheckReport
from app.chain.schemas import CheckIn
from app.config import Settings
from app.db import Conn
from app.paging import Page, PageNo, PerPage

From = Annotated[
    int | None,
    QueryParameter(name="from", ge=1, le=2**62, description="first position (default 1)"),
]
To = Annotated[
    int | None,
    Parameter(ge=1, le=2**62, description="last position (default: 10,000 links on, or the head)"),
]


class ChainController(Controller):
    path = "/chain"

    @get("/")
    async def head(self, conn: Conn, principal: Principal, settings: Settings) -> service.Head:
        """The caller's brand's chain head (position, hash, the last pass's error) and the
        anchors' public key."""
        brand_id = service.chain_brand(principal)
        return await service.head_of(conn, settings, brand_id)

    @get("/anchors")
    async def list_anchors(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[anchors.Anchor]:
        """The brand's signed anchors, newest first."""
        brand_id = service.chain_brand(principal)
        items, total = await anchors.list_anchors(conn, brand_id, page, per_page)
        return Page(items, page, per_page, total)

    @post("/anchors")
    async def anchor(
        self, conn: Conn, principal: Principal, settings: Settings
    ) -> Response[anchors.Anchor]:
        """Chain what is committed, then anchor the head: 201, or 200 with the anchor the head
        has already; 409 ``chain_empty`` before the first link, ``chain_broken`` when the
        stored chain was altered (its head's position signed with another hash among them); 503
        ``chain_behind`` when a transaction open since before the request still holds the chain
        back after a few seconds (retry)."""
        made, created = await service.anchor_now(conn, settings, principal)
        return Response(made, status_code=201 if created else 200)

    @get("/export", media_type="application/x-ndjson")
    async def export(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Principal,
        settings: Settings,
        from_: From = None,
        to: To = None,
    ) -> Response[bytes]:
        """Links ``from``..``to`` (at most 10,000) with their events and the anchors among
        them, as JSON lines an auditor verifies offline (``python -m
        app.events.chainverify``); audited. 400 ``bad_positions``."""
        body, name = await service.export_for(
            conn, settings, principal, from_, to, audited=request.method != "HEAD"
        )
        return Response(
            body,
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @post("/check", status_code=200)
    async def check(
        self, data: CheckIn, conn: Conn, principal: Principal, settings: Settings
    ) -> CheckReport:
        """Re-hash the stored events of positions ``from``..``to`` (default all, at most
        200,000) and name the first that no longer matches, with every problem found."""
        return await service.check_for(conn, settings, principal, data.from_, data.to)
