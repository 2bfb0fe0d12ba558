"""HTTP routes of lucky draws: the brand's campaigns and results (``/draws``, a staff token,
``draws.write``) and the member's draw (``POST /members/me/draws``, a member token)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, asgi, delete, get, patch, post
from litestar.openapi.spec import OpenAPI
from litestar.params import QueryParameter
from litestar.types import ControllerRouterHandler, Receive, Scope, Send

from app.auth.principal import Principal
from app.claims import answer_claim, decode_claim, document_claim_route, read_claim
from app.db import Conn
from app.draws import service
from app.draws.schemas import (
    RESULT_FILTER,
    DrawCampaignIn,
    DrawCampaignOut,
    DrawCampaignPatch,
    DrawFulfilIn,
    DrawOut,
    DrawPrizeIn,
    DrawPrizeOut,
    DrawPrizePatch,
    DrawResultOut,
)
from app.paging import Page, PageNo, PerPage
from app.tabular import download


@asgi("/members/me/draws", copy_scope=False)
async def draw(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /members/me/draws (documented by ``document_draws``): a plain ASGI handler, as
    POST /members/me/claims (``app.claims.read_claim``)."""
    request = await read_claim(scope, receive)
    drawer = scope["litestar_app"].state.drawer
    member = await drawer.members.member(request.authorization)  # 401 before the body is read
    data = decode_claim(request.body)
    out, created = await drawer.draw(member, data, request.ip, request.user_agent)
    await answer_claim(send, out, created)


_DRAW_DOC = """Draw once in the lucky draw (扫码抽奖) running for a unit, by its serial (or QR
content) and PIN (201), as the signed-in member. First a verification, with the same answers and
lockout as ``/v1/verify`` and points claims: 422 ``not_genuine``, 422 ``wrong_pin``
(``pin_attempts_left``), 429 ``locked`` or ``rate_limited``. A code is drawn once, ever: 409
``already_drawn``. The same ``client_id`` again answers the first draw (200); 409
``client_id_reused`` for another code. ``prize`` null: no prize (谢谢参与); a points prize is
credited to the member's balance at once (``balance``), a voucher or gift is ``pending`` until
the brand hands it over. 422 ``not_shipped`` (the unit never reached the sales channel),
``other_brand``, ``not_claimable``, ``draw_not_covered`` (no campaign covers the product or its
province), ``draw_not_running`` (one does, but not now); 403 ``member_frozen``; 401 without a
valid member token; 400 on a bad body; 413 over 16 KB."""


def document_draws(openapi: OpenAPI) -> None:
    """Add POST /members/me/draws to the schema."""
    document_claim_route(
        openapi, "/members/me/draws", "draws", "MembersMeDrawsDraw", _DRAW_DOC, DrawOut
    )


class DrawsController(Controller):
    """The brand's draw campaigns (``draws.write``, brand staff only; every change audited)."""

    path = "/draws"

    @post("/")
    async def create(
        self, data: DrawCampaignIn, conn: Conn, principal: Principal
    ) -> DrawCampaignOut:
        """A campaign with its prizes (201): period [starts_at, ends_at), products covered,
        ``provinces`` (of the unit's channel organisation; empty: everywhere), the "no prize"
        weight and each prize's kind, quantity, weight and optional daily cap. 422
        ``unknown_product``, ``bad_window``, ``bad_prize_points``; 400 an unknown province."""
        return await service.create_campaign(conn, principal, data)

    @get("/")
    async def list_campaigns(
        self,
        conn: Conn,
        principal: Principal,
        running: bool | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[DrawCampaignOut]:
        """The brand's campaigns, newest first, with prizes, remaining stock and counts."""
        return await service.list_campaigns(conn, principal, running, page, per_page)

    @get("/{campaign_id:int}")
    async def get_one(self, campaign_id: int, conn: Conn, principal: Principal) -> DrawCampaignOut:
        return await service.get_campaign(conn, principal, campaign_id)

    @patch("/{campaign_id:int}")
    async def update(
        self, campaign_id: int, data: DrawCampaignPatch, conn: Conn, principal: Principal
    ) -> DrawCampaignOut:
        """Change a campaign; ``status`` ``stopped`` pauses it, ``active`` resumes it."""
        return await service.update_campaign(conn, principal, campaign_id, data)

    @delete("/{campaign_id:int}")
    async def remove(self, campaign_id: int, conn: Conn, principal: Principal) -> None:
        """Withdraw a campaign: no more draws; its results stay readable by id."""
        await service.delete_campaign(conn, principal, campaign_id)

    @post("/{campaign_id:int}/prizes")
    async def add_prize(
        self, campaign_id: int, data: DrawPrizeIn, conn: Conn, principal: Principal
    ) -> DrawPrizeOut:
        return await service.add_prize(conn, principal, campaign_id, data)

    @patch("/{campaign_id:int}/prizes/{prize_id:int}")
    async def update_prize(
        self,
        campaign_id: int,
        prize_id: int,
        data: DrawPrizePatch,
        conn: Conn,
        principal: Principal,
    ) -> DrawPrizeOut:
        """Change a prize; a new ``quantity`` moves its remaining stock by the difference (409
        ``quantity_below_given`` below what was already given)."""
        return await service.update_prize(conn, principal, campaign_id, prize_id, data)

    @get("/{campaign_id:int}/results")
    async def results(
        self,
        request: Request[Any, Any, Any],
        campaign_id: int,
        conn: Conn,
        principal: Principal,
        outcome: RESULT_FILTER | None = None,
        fmt: Annotated[Literal["json", "csv"], QueryParameter(name="format")] = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[DrawResultOut]:
        """The campaign's draws, newest first: the member (phone masked without
        ``members.read_phone``), the prize or none, the verification's result and reason, the
        fulfilment. ``outcome``: ``won``, ``lost``, ``pending`` (to hand over). ``format=csv``:
        every match as a file, audited (``export``/``draw_campaign``; not its HEAD)."""
        if fmt == "csv":
            audited = request.method != "HEAD"
            chunks = await service.results_csv(
                conn, principal, campaign_id, outcome, audited=audited
            )
            name = f"draw-{campaign_id}-results.csv"
            return download(chunks, "csv", name)  # type: ignore[return-value]
        return await service.results(conn, principal, campaign_id, outcome, page, per_page)

    @post("/{campaign_id:int}/results/{draw_id:int}/fulfil", status_code=200)
    async def fulfil(
        self, campaign_id: int, draw_id: int, data: DrawFulfilIn, conn: Conn, principal: Principal
    ) -> DrawResultOut:
        """Mark a voucher or gift prize handed over, with a note (the voucher code, the
        tracking number). 409 ``prize_not_pending`` for a draw with nothing to hand over."""
        return await service.fulfil(conn, principal, campaign_id, draw_id, data)


route_handlers: list[ControllerRouterHandler] = [draw, DrawsController]
