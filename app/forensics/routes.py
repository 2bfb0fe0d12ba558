"""HTTP routes of leak detection and fraud holds (B5)."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, get, post
from litestar.params import QueryParameter

from app.auth.principal import Principal
from app.db import Conn
from app.forensics import holds, leaks
from app.forensics.schemas import DecisionIn, HoldIn, HoldOut, LeakOut
from app.paging import Page, PageNo, PerPage


class ForensicsController(Controller):
    path = "/forensics"

    @get("/leaks")
    async def list_leaks(
        self,
        conn: Conn,
        principal: Principal,
        source_kind: Literal["export", "allocation"] | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[LeakOut]:
        """The brand's print files (exports) and code packs (allocations) with suspicious
        verifications, their counts by signal and recipients (brand staff, ``alerts.read``)."""
        return await leaks.list_leaks(
            conn, principal, source_kind=source_kind, page=page, per_page=per_page
        )

    @get("/holds")
    async def list_holds(
        self,
        conn: Conn,
        principal: Principal,
        hold_state: Annotated[
            Literal["open", "released", "confirmed"] | None, QueryParameter(name="state")
        ] = None,
        party_kind: Literal["member", "clerk"] | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[HoldOut]:
        """The brand's fraud holds, newest first (``fraud.review``)."""
        return await holds.list_holds(
            conn, principal, state=hold_state, party_kind=party_kind, page=page, per_page=per_page
        )

    @post("/holds")
    async def put_on_hold(self, data: HoldIn, conn: Conn, principal: Principal) -> HoldOut:
        """Put a member or a store clerk of the brand on hold (rule ``manual``); 409
        ``already_on_hold`` when it is."""
        return await holds.put_on_hold(conn, principal, data)

    @get("/holds/{hold_id:int}")
    async def get_hold(self, hold_id: int, conn: Conn, principal: Principal) -> HoldOut:
        return await holds.get_hold(conn, principal, hold_id)

    @post("/holds/{hold_id:int}/release", status_code=200)
    async def release(
        self, hold_id: int, conn: Conn, principal: Principal, data: DecisionIn | None = None
    ) -> HoldOut:
        """Release the hold: its held claims are credited, exactly once (released again: the
        hold as it is; 409 ``hold_decided`` when it was confirmed)."""
        return await holds.release(conn, principal, hold_id, data or DecisionIn())

    @post("/holds/{hold_id:int}/confirm", status_code=200)
    async def confirm(
        self, hold_id: int, conn: Conn, principal: Principal, data: DecisionIn | None = None
    ) -> HoldOut:
        """Confirm the hold: its held claims are rejected, audited (confirmed again: the hold
        as it is; 409 ``hold_decided`` when it was released)."""
        return await holds.confirm(conn, principal, hold_id, data or DecisionIn())
