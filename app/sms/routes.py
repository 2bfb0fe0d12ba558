"""HTTP routes of the SMS domain: gateway callbacks, marketing opt-outs, templates, campaigns."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.params import Parameter

from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.edge import check_json
from app.errors import invalid_body
from app.paging import Page, PageNo, PerPage
from app.sms import service
from app.sms.schemas import (
    CampaignIn,
    CampaignOut,
    DeliveryReportsIn,
    DeliveryReportsOut,
    OptOutOut,
    RepliesIn,
    RepliesOut,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
)

Provider = Parameter(
    pattern=r"^[a-z0-9_-]{1,32}(?!\n)$", description="the gateway's name, e.g. http"
)


async def _signed_body(request: Request[Any, Any, Any], settings: Settings, kind: type) -> Any:
    body = await request.body()
    service.verify_signature(
        settings,
        request.headers.get(service.TIMESTAMP_HEADER),
        request.headers.get(service.SIGNATURE_HEADER),
        body,
    )
    check_json(body)  # signed or not, what enters is checked (a probe stored an ESC)
    try:
        return msgspec.json.decode(body, type=kind, strict=True)
    except msgspec.MsgspecError as exc:
        raise invalid_body(exc) from None


class CallbackController(Controller):
    """Called by the SMS gateway, signed with ``TRACECODE_SMS_CALLBACK_SECRET``: the headers
    ``X-Tracecode-Timestamp`` (unix seconds, within 5 minutes) and ``X-Tracecode-Signature``
    (hex HMAC-SHA256 of ``<timestamp>.<raw body>``). 403 ``callbacks_disabled`` without a
    configured secret, 401 ``invalid_signature`` for a wrong or stale signature."""

    path = "/sms/callbacks"

    @post("/{provider:str}", status_code=200)
    async def delivery(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        settings: Settings,
        provider: str = Provider,
    ) -> DeliveryReportsOut:
        """Delivery reports ``{"reports": [{"message_id", "status": "delivered"|"undelivered",
        "error", "at"}]}``: each ``sent`` message of ``provider`` becomes delivered or
        undelivered, once."""
        data = await _signed_body(request, settings, DeliveryReportsIn)
        return await service.delivery_reports(conn, provider, data)

    @post("/{provider:str}/replies", status_code=200)
    async def replies(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        settings: Settings,
        provider: str = Provider,
    ) -> RepliesOut:
        """Inbound messages ``{"replies": [{"phone", "text", "brand_id"}]}``: "TD" (退订, T, N,
        回复TD退订) opts the phone out of marketing of ``brand_id``, or of every brand that has
        written to it. One-time codes and redemption codes are still sent."""
        data = await _signed_body(request, settings, RepliesIn)
        return await service.replies(conn, data, settings)


class OptOutController(Controller):
    """Marketing opt-outs of the caller's brand (permission ``sms.campaigns``)."""

    path = "/sms/opt-outs"

    @get("/")
    async def list_opt_outs(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[OptOutOut]:
        """Newest first; phones masked unless the caller holds ``members.read_phone``. Below
        the brand, the opt-outs of the store managers its campaigns reach, never a member's."""
        return await service.list_opt_outs(conn, principal, page, per_page)

    # the phone in the path is not logged (app.logs.logged_path)
    @put("/{phone:str}", status_code=204, opt={"private_path": True})
    async def opt_out(self, phone: str, conn: Conn, principal: Principal) -> None:
        """Stop the brand's reminders and campaigns to ``phone`` (idempotent)."""
        await service.put_opt_out(conn, principal, phone, True)

    @delete("/{phone:str}", status_code=204, opt={"private_path": True})
    async def opt_in(self, phone: str, conn: Conn, principal: Principal) -> None:
        """Let the brand's reminders and campaigns reach ``phone`` again (idempotent)."""
        await service.put_opt_out(conn, principal, phone, False)


class TemplateController(Controller):
    """The brand's campaign templates: a body with ``{placeholders}``; the signature and
    "回复TD退订" are added when sent. The built-in names otp, redemption and reminder are taken."""

    path = "/sms/templates"

    @post("/")
    async def create(self, data: TemplateIn, conn: Conn, principal: Principal) -> TemplateOut:
        return await service.create_template(conn, principal, data)

    @get("/")
    async def list_templates(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[TemplateOut]:
        return await service.list_templates(conn, principal, page, per_page)

    @patch("/{template_id:int}")
    async def update(
        self, template_id: int, data: TemplatePatch, conn: Conn, principal: Principal
    ) -> TemplateOut:
        return await service.update_template(conn, principal, template_id, data)

    @delete("/{template_id:int}", status_code=204)
    async def remove(self, template_id: int, conn: Conn, principal: Principal) -> None:
        """409 ``in_use`` once a campaign used it."""
        await service.delete_template(conn, principal, template_id)


class CampaignController(Controller):
    """Marketing campaigns (seed 1.12) to the brand's members or the store managers of the
    caller's subtree; opted-out and recently-marketed phones are skipped."""

    path = "/sms/campaigns"

    @post("/")
    async def create(
        self, data: CampaignIn, conn: Conn, principal: Principal, settings: Settings
    ) -> Response[CampaignOut]:
        """Queue the campaign, 201 (``dry_run``: only count). Messages leave at most
        ``SMS_CAMPAIGN_RATE`` a second. A repeated ``client_id`` answers the first campaign
        (200); the same id with another campaign is 409 ``client_id_reused``."""
        campaign, replayed = await service.create_campaign(conn, principal, settings, data)
        return Response(campaign, status_code=200 if replayed else 201)

    @get("/")
    async def list_campaigns(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[CampaignOut]:
        return await service.list_campaigns(conn, principal, page, per_page)

    @get("/{campaign_id:int}")
    async def get_one(self, campaign_id: int, conn: Conn, principal: Principal) -> CampaignOut:
        """With the campaign's messages counted per state (pending, sent, delivered, …)."""
        return await service.get_campaign(conn, principal, campaign_id)
