"""HTTP routes of verification (partners' JSON API) and of alerts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import Parameter

from app.auth.principal import Principal
from app.db import Conn
from app.paging import Page, PageNo, PerPage
from app.verify import alerts
from app.verify.schemas import AlertOut, VerifyIn, VerifyOut


def client_ip(request: Request[Any, Any, Any]) -> str | None:
    return request.client.host if request.client else None


@post("/v1/verify", status_code=200, tags=["verify"])
async def verify(request: Request[Any, Any, Any], data: VerifyIn, state: State) -> VerifyOut:
    """Verify a serial (or the QR content), with or without the PIN. No login needed.

    ``result``: genuine, suspicious, not_genuine, wrong_pin or locked; ``reason`` says why;
    ``message`` is ready to show (``lang`` zh or en). 429 ``rate_limited`` past the per-IP limit.
    """
    return await state.verifier.verify(data, client_ip(request), request.headers.get("user-agent"))  # type: ignore[no-any-return]


class AlertController(Controller):
    path = "/alerts"
    tags = ["alerts"]

    @get("/")
    async def list_alerts(
        self,
        conn: Conn,
        principal: Principal,
        kind: str | None = None,
        severity: Literal["info", "warning", "critical"] | None = None,
        open_only: Annotated[bool, Parameter(query="open")] = False,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[AlertOut]:
        """Alerts of the caller's subtree, newest first (severity: info, warning, critical)."""
        return await alerts.list_alerts(
            conn,
            principal,
            kind=kind,
            severity=severity,
            open_only=open_only,
            page=page,
            per_page=per_page,
        )

    @post("/{alert_id:int}/acknowledge", status_code=200)
    async def acknowledge(self, alert_id: int, conn: Conn, principal: Principal) -> AlertOut:
        return await alerts.acknowledge(conn, principal, alert_id)
