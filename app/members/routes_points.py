"""HTTP routes of points, gifts and redemptions: the member's (``/members/me/...``, a member
token) and the brand's and stores' (a staff token or API key)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, asgi, delete, get, patch, post, put
from litestar.datastructures import State
from litestar.openapi.spec import OpenAPI
from litestar.params import QueryParameter
from litestar.types import ControllerRouterHandler, Receive, Scope, Send

from app.auth.principal import Principal
from app.bodies import QueryTime
from app.claims import answer_claim, decode_claim, document_claim_route, read_claim
from app.config import Settings
from app.db import Conn
from app.errors import NotFound
from app.localtime import ZONE, aware, today
from app.members import gifts, points, redemptions
from app.members.limits import CODE_GUESS, member_limits
from app.members.principal import Member
from app.members.schemas_points import (
    AdjustmentIn,
    AdjustmentOut,
    CheckOut,
    ClaimOut,
    CodeIn,
    FulfilIn,
    Gift,
    GiftIn,
    GiftKind,
    GiftOut,
    GiftPatch,
    PointsOut,
    RedeemIn,
    RedemptionOut,
    RedemptionStatus,
    RuleIn,
    RuleOut,
    SettlementRow,
    StaffRedemptionRow,
)
from app.paging import Page, PageNo, PerPage
from app.tabular import download
from app.verify.schemas import Lang


@asgi("/members/me/claims", copy_scope=False)
async def claim(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /members/me/claims (documented in the OpenAPI schema by ``document_claims``): a
    plain ASGI handler (``app.claims.read_claim``); the member is looked up by the claimer with
    the other claims in flight (``app.members.points.Members``), never on a pooled connection."""
    request = await read_claim(scope, receive)
    claimer = scope["litestar_app"].state.claimer
    member = await claimer.members.member(request.authorization)  # 401 before the body is read
    data = decode_claim(request.body)
    out, created = await claimer.claim_points(member, data, request.ip, request.user_agent)
    await answer_claim(send, out, created)


_CLAIM_DOC = """Claim the points of a unit by its serial (or QR content) and PIN (201), as the
signed-in member (a member token). First a verification, with the same answers and lockout as
``/v1/verify``: 422 ``not_genuine`` (details: the verification, e.g. reason ``forged``, ``void``,
``not_activated``), 422 ``wrong_pin`` (``pin_attempts_left``), 429 ``locked`` or
``rate_limited`` (Retry-After). A code's points are credited once, ever: 409
``already_claimed``. The same ``client_id`` again answers the first claim (200); 409
``client_id_reused`` for another code. 422 ``other_brand`` (not this membership's brand),
``no_points`` (no rule), ``not_claimable``; 403 ``member_frozen``; 401 without a valid member
token (``unauthorized``, ``invalid_token``, ``token_expired``, ``token_revoked``); 400 on a bad
body (``invalid_character`` for a control character); 413 over 16 KB."""


def document_claims(openapi: OpenAPI) -> None:
    """Add POST /members/me/claims to the schema."""
    document_claim_route(
        openapi, "/members/me/claims", "members", "MembersMeClaimsClaim", _CLAIM_DOC, ClaimOut
    )


class MyPointsController(Controller):
    """The signed-in member's points, gifts and redemptions."""

    path = "/members/me"

    @get("/points")
    async def my_points(
        self, conn: Conn, member: Member, page: PageNo = 1, per_page: PerPage = 50
    ) -> PointsOut:
        """The balance and the ledger, newest first (claims with their product, redemptions
        and refunds with their gift)."""
        return await points.history(conn, member, page, per_page)

    @get("/gifts")
    async def my_gifts(
        self, conn: Conn, member: Member, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[Gift]:
        """The gifts offered to the member now (valid, in stock, in the member's province), in
        display order; ``affordable`` when the balance covers one."""
        return await gifts.member_gifts(conn, member, page, per_page)

    @post("/redemptions", status_code=201)
    async def redeem(
        self, data: RedeemIn, conn: Conn, member: Member, settings: Settings
    ) -> Response[RedemptionOut]:
        """Redeem a gift (201): its points are debited, one of its stock taken and a redemption
        code sent by SMS (and shown here). The same ``client_id`` again answers the first
        redemption (200; ``balance`` as it is now). 422 ``insufficient_points``,
        ``gift_not_offered``; 409 ``out_of_stock``, ``client_id_reused``; 404 unknown gift; 403
        ``member_frozen``."""
        out, created = await redemptions.redeem(conn, settings, member, data)
        return Response(out, status_code=201 if created else 200)

    @get("/redemptions")
    async def my_redemptions(
        self,
        conn: Conn,
        member: Member,
        settings: Settings,
        redemption_status: Annotated[
            RedemptionStatus | None, QueryParameter(name="status", required=False)
        ] = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
        lang: Lang = "zh",
    ) -> Page[RedemptionOut]:
        """The member's redemption codes, newest first: issued, fulfilled or expired (``lang``:
        of the default collection instructions of a gift that has none of its own)."""
        return await redemptions.member_redemptions(
            conn, settings, member, redemption_status, page, per_page, lang
        )


class PointRulesController(Controller):
    path = "/points"

    @get("/rules")
    async def list_rules(
        self,
        conn: Conn,
        principal: Principal,
        product_id: int | None = None,
        agent_id: int | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[RuleOut]:
        """The brand's points rules (``points.rules``): per product, the default (``agent_id``
        null) and the overrides for units designated to an agent."""
        return await points.list_rules(conn, principal, product_id, agent_id, page, per_page)

    @put("/rules")
    async def put_rule(self, data: RuleIn, conn: Conn, principal: Principal) -> RuleOut:
        """Set the points of a product (``agent_id`` null) or of its units designated to one
        channel agent (the organisation they were first shipped to); 0 earns nothing. 422
        ``unknown_product``, ``unknown_org``."""
        out, _ = await points.put_rule(conn, principal, data)
        return out

    @delete("/rules/{rule_id:int}")
    async def delete_rule(self, rule_id: int, conn: Conn, principal: Principal) -> None:
        await points.delete_rule(conn, principal, rule_id)

    @post("/adjustments", status_code=201)
    async def adjust(
        self, data: AdjustmentIn, conn: Conn, principal: Principal
    ) -> Response[AdjustmentOut]:
        """A manual ledger entry (``points.rules``): ``adjustment`` (either sign) or ``expiry``
        (negative), with its reason; never below zero (422 ``insufficient_points``). The same
        ``client_id`` again answers the first entry (200); it is the caller's own (an API
        key's, a user's organisation's): another caller's same id is another entry."""
        out, created = await points.adjust(conn, principal, data)
        return Response(out, status_code=201 if created else 200)


class GiftsController(Controller):
    path = "/gifts"

    @post("/")
    async def create(
        self, data: GiftIn, conn: Conn, principal: Principal, settings: Settings
    ) -> GiftOut:
        """A gift of the caller's brand (``gifts.write``): online (an e-shop voucher) or
        offline (collected at a store); ``provinces`` empty = everywhere; ``collect_days``: how
        long its redemption code is valid; a ``picture_url`` naming a catalogue medium of this
        server (its ``absolute_url``) names an image of the brand's (400
        ``unknown_catalog_media``), in use from then on."""
        return await gifts.create_gift(conn, principal, data, origin=settings.public_url)

    @get("/")
    async def list_gifts(
        self,
        conn: Conn,
        principal: Principal,
        kind: GiftKind | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[GiftOut]:
        """The brand's gifts, valid or not, in display order."""
        return await gifts.list_gifts(conn, principal, kind, page, per_page)

    @get("/{gift_id:int}")
    async def get_one(self, gift_id: int, conn: Conn, principal: Principal) -> GiftOut:
        return await gifts.get_gift(conn, principal, gift_id)

    @patch("/{gift_id:int}")
    async def update(
        self, gift_id: int, data: GiftPatch, conn: Conn, principal: Principal, settings: Settings
    ) -> GiftOut:
        """Change a gift (its ``picture_url`` checked as ``POST /gifts`` checks it)."""
        return await gifts.update_gift(conn, principal, gift_id, data, origin=settings.public_url)

    @delete("/{gift_id:int}")
    async def remove(self, gift_id: int, conn: Conn, principal: Principal) -> None:
        """Withdraw a gift: no longer listed or redeemable; codes already issued stay valid."""
        await gifts.delete_gift(conn, principal, gift_id)


async def _guarded(
    state: State, principal: Principal, lookup: Callable[[], Awaitable[CheckOut]]
) -> CheckOut:
    """A code looked up by staff, counted against guessing (``MemberLimits.take_guess``):
    refused while the account is over the limit; the slot is taken before the lookup and kept
    only when the code is unknown (a probe: counted after it, guesses sent at once were all
    looked up, a real one among them answered though the account was far over the limit)."""
    limits = member_limits(state)
    taken = await limits.take_guess(principal, CODE_GUESS)
    unknown = False
    try:
        return await lookup()
    except NotFound as exc:
        unknown = exc.code == "unknown_code"
        raise
    finally:
        if taken and not unknown:
            await limits.give_back_guess(principal, CODE_GUESS)


def _days(start: datetime, end: datetime) -> str:
    """The first and the last Beijing day of the period [start, end) in a file's name: December
    reads ``2026-12-01-2026-12-31`` however its bounds were given (a probe: given in UTC, the
    UTC dates of the bounds named it ``2026-11-30-2026-12-31``)."""
    first, last = _day(start, timedelta(0)), _day(end, timedelta(microseconds=1))
    return f"{first}-{max(first, last)}"


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The settlement's [start, end) with a bound left out defaulted as the sales reports'
    period (``app.analytics.sales.period``): this month to today in Beijing days; ``to`` alone
    from the first day of its last day's month (or this month's, if earlier), ``from`` alone to
    the end of today (or to itself, if later). A probe: both were required, and Litestar checks
    a missing query parameter before the credentials — an anonymous caller was answered 400
    naming the route's parameters, not 401."""
    if end is None:
        tomorrow = datetime.combine(today() + timedelta(days=1), time(), ZONE)
        end = tomorrow if start is None else max(tomorrow, aware(start))
    if start is None:
        month = min(today(), _day(end, timedelta(microseconds=1))).replace(day=1)
        start = datetime.combine(month, time(), ZONE)
    return start, end


def _day(moment: datetime, before: timedelta) -> date:
    """The Beijing day of ``moment - before``; the calendar's first or last day past its ends
    (a probe: a period to 9999-12-31T23:59:59Z was a 500)."""
    try:
        return (aware(moment) - before).astimezone(ZONE).date()
    except OverflowError:
        return date.min if moment.year == 1 else date.max


class RedemptionsController(Controller):
    path = "/redemptions"

    @get("/")
    async def list_redemptions(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Principal,
        state: State,
        store_id: int | None = None,
        start: Annotated[QueryTime | None, QueryParameter(name="from", required=False)] = None,
        end: Annotated[QueryTime | None, QueryParameter(name="to", required=False)] = None,
        redemption_status: Annotated[
            RedemptionStatus | None, QueryParameter(name="status", required=False)
        ] = None,
        kind: GiftKind | None = None,
        fmt: Annotated[Literal["json", "csv"], QueryParameter(name="format")] = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[StaffRedemptionRow]:
        """Redemptions one by one (``redemptions.read``), newest first: the member's phone
        (138****1234 unless ``members.read_phone``) and id (null below the brand, whose staff
        see no member), the gift, the status, and who fulfilled it
        at which organisation and when; never the code. Staff of the brand organisation see
        them all (``issued`` = outstanding, ``fulfilled``, ``expired``); staff below see those
        fulfilled in their subtree: a store its own, an agent its stores'. ``store_id``: those
        fulfilled there (404 outside the subtree); ``from``/``to``: [from, to) of the fulfilment
        time, or of the issue time for those not fulfilled. ``format=csv``: every match as a
        file (audited)."""
        filters = redemptions.ListFilters(
            store_id=store_id, start=start, end=end, status=redemption_status, kind=kind
        )
        if fmt == "csv":
            chunks = await redemptions.list_csv(
                conn, state.pool, principal, filters, audited=request.method != "HEAD"
            )
            return download(chunks, "csv", "redemptions.csv")  # type: ignore[return-value]
        return await redemptions.list_redemptions(conn, principal, filters, page, per_page)

    @post("/check", status_code=200)
    async def check(
        self, data: CodeIn, conn: Conn, principal: Principal, settings: Settings, state: State
    ) -> CheckOut:
        """What a redemption code is (``redemptions.fulfil``): ``valid``, or why not (used,
        expired), its gift and the member's masked phone. 404 ``unknown_code``, 400
        ``malformed_code``; 429 ``rate_limited`` after 30 unknown codes in 15 minutes."""
        return await _guarded(
            state, principal, lambda: redemptions.check(conn, settings, principal, data)
        )

    @post("/fulfil", status_code=200)
    async def fulfil(
        self, data: FulfilIn, conn: Conn, principal: Principal, settings: Settings, state: State
    ) -> CheckOut:
        """Hand the gift out (已兑换), recording who, where and when: e-shop vouchers by staff
        above the stores (422 ``online_gift`` at a store), physical gifts at the caller's store
        (or ``store_id``, a store of the caller's subtree; 422 ``store_required``). 409
        ``code_used`` (您的兑换码已使用，请勿重复兑换), 409 ``code_expired``."""
        return await _guarded(
            state, principal, lambda: redemptions.fulfil(conn, settings, principal, data)
        )

    @get("/settlement")
    async def settlement(
        self,
        conn: Conn,
        principal: Principal,
        start: Annotated[QueryTime | None, QueryParameter(name="from", required=False)] = None,
        end: Annotated[QueryTime | None, QueryParameter(name="to", required=False)] = None,
        store_id: int | None = None,
        fmt: Annotated[Literal["json", "csv"], QueryParameter(name="format")] = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[SettlementRow]:
        """Physical gifts fulfilled in [from, to) per store and gift — how many, their points —
        for settlement with the brand (``redemptions.read``): a store sees its own, an agent
        its stores', the brand all. Without ``from``/``to``: this month to today (Beijing days;
        either alone: to/from the other's default, as the sales reports); 400 ``bad_period``
        when ``to`` comes before ``from``. ``format=csv``: the whole period as a file."""
        since, until = _period(start, end)
        if fmt == "csv":
            chunks = await redemptions.settlement_csv(conn, principal, since, until, store_id)
            name = f"settlement-{_days(since, until)}.csv"
            return download(chunks, "csv", name)  # type: ignore[return-value]
        return await redemptions.settlement(conn, principal, since, until, store_id, page, per_page)


route_handlers: list[ControllerRouterHandler] = [
    claim,
    MyPointsController,
    PointRulesController,
    GiftsController,
    RedemptionsController,
]
