"""HTTP routes of the packing line: context, scans upload, undo, replace, packing rules."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get, post, put
from litestar.params import Parameter

from app.auth.principal import Principal
from app.codes.scheme import Scheme
from app.config import Settings
from app.db import Conn
from app.packing import edits, lines, scans, uploads
from app.packing.schemas import (
    EditOut,
    LineContextIn,
    LineOut,
    PackingRuleIn,
    PackingRuleOut,
    Reason,
    ReplaceIn,
    ScanUploadIn,
    ScanUploadOut,
    UnpackIn,
    UploadOut,
)
from app.paging import Page, PageNo, PerPage
from app.redisconn import RedisClient

LineCode = Annotated[str, Parameter(pattern=r"^[A-Za-z0-9._-]{1,32}(?!\n)$")]


class UndoIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Reason


class LineController(Controller):
    path = "/lines"

    @get("/")
    async def list_lines(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[LineOut]:
        """The packing lines of the caller's organisation with their production context."""
        return await lines.list_lines(conn, principal, page, per_page)

    @get("/{line:str}")
    async def get_line(self, line: LineCode, conn: Conn, principal: Principal) -> LineOut:
        principal.require("packing.scan")
        return await lines.get_line(conn, principal, line)

    @put("/{line:str}/context")
    async def set_context(
        self, line: LineCode, data: LineContextIn, conn: Conn, principal: Principal
    ) -> LineOut:
        """Set what the line produces now: product, lot, production date (P1)."""
        return await lines.set_context(conn, principal, line, data)

    @post("/{line:str}/scans", status_code=200)
    async def upload(
        self,
        line: LineCode,
        data: ScanUploadIn,
        conn: Conn,
        principal: Principal,
        scheme: Scheme,
        redis: RedisClient,
        settings: Settings,
    ) -> ScanUploadOut:
        """Upload scans in scan order (P2, P3, P6): per-item results; retries are duplicates."""
        out = await scans.upload(conn, principal, scheme, line, data)
        await uploads.remember(redis, settings.redis_namespace, principal, line, out)
        return out

    @get("/{line:str}/uploads")
    async def recent_uploads(
        self,
        line: LineCode,
        conn: Conn,
        principal: Principal,
        redis: RedisClient,
        settings: Settings,
        rejected_only: bool = False,
        page: PageNo = 1,
        per_page: PerPage = 20,
    ) -> Page[UploadOut]:
        """The line's recent uploads (its newest 200), newest first: when, by whom, counts and
        the rejected scans with their reasons; ``rejected_only``: those that rejected a scan.
        404 ``unknown_line`` for a line not of the caller's organisation."""
        return await uploads.recent(
            conn,
            redis,
            settings.redis_namespace,
            principal,
            line,
            rejected_only=rejected_only,
            page=page,
            per_page=per_page,
        )

    @post("/{line:str}/undo", status_code=200)
    async def undo(
        self, line: LineCode, data: UndoIn, conn: Conn, principal: Principal, scheme: Scheme
    ) -> EditOut:
        """Undo the line's newest packing still in place (P4)."""
        return await edits.undo_last(conn, principal, scheme, line, data.reason)


class PackingController(Controller):
    path = "/packing"

    @post("/unpack", status_code=200)
    async def unpack(
        self, data: UnpackIn, conn: Conn, principal: Principal, scheme: Scheme
    ) -> EditOut:
        """Take named children (default: all) out of a container (P4)."""
        return await edits.unpack(conn, principal, scheme, data)

    @post("/replace", status_code=200)
    async def replace(
        self, data: ReplaceIn, conn: Conn, principal: Principal, scheme: Scheme
    ) -> EditOut:
        """The new code takes the old one's place; the old one is voided (P5)."""
        return await edits.replace(conn, principal, scheme, data)

    @get("/rules/{product_id:int}")
    async def get_rules(
        self, product_id: int, conn: Conn, principal: Principal
    ) -> list[PackingRuleOut]:
        return await lines.get_rules(conn, principal, product_id)

    @put("/rules/{product_id:int}")
    async def set_rules(
        self, product_id: int, data: list[PackingRuleIn], conn: Conn, principal: Principal
    ) -> list[PackingRuleOut]:
        """Replace the product's packing rules: children per container level (P3)."""
        return await lines.set_rules(conn, principal, product_id, data)
