"""HTTP routes of member sign-in, the member's own profile and the staff's member admin.

Member endpoints (``/members/me``, ``/members/logout``) take a member token
(``Authorization: Bearer``, from ``POST /members/login``); staff endpoints (``/members``,
``/members/{id}``…) take a staff token or API key. Neither kind of token works on the other's
endpoints (401).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import Parameter, QueryParameter

from app import localtime, tabular
from app.auth.principal import Principal
from app.auth.tokens import TOKENS_NOT_KEPT
from app.config import Settings
from app.db import Conn
from app.members import admin, auth, erasure, profile
from app.members.limits import member_limits
from app.members.phones import normalise_phone
from app.members.principal import Member
from app.members.schemas import (
    FreezeIn,
    LoginIn,
    MemberDetail,
    MemberOut,
    MemberRow,
    MemberStatus,
    MemberTokenOut,
    OtpIn,
    OtpSent,
    ProfilePatch,
    RedemptionRow,
    ScanRow,
    UnfreezeIn,
)
from app.members.schemas_points import PointsOut, RedemptionStatus
from app.paging import Page, PageNo, PerPage


def _ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


class MemberSignInController(Controller):
    path = "/members"
    tags = ["members: sign-in"]

    @post("/otp", status_code=202)
    async def request_code(
        self, request: Request[Any, Any, Any], data: OtpIn, conn: Conn, settings: Settings
    ) -> OtpSent:
        """Send a 6-digit one-time code by SMS to sign up or sign in (valid 5 minutes).

        A new code replaces the phone's earlier ones. 429 ``sms_throttled`` when a code was sent
        to the phone less than a minute ago or ten times today; 429 ``rate_limited`` when this
        address asked for too many codes; 404 for an unknown brand; 400 ``invalid_phone``.
        ``lang`` (``zh``, the default, or ``en``) is the language of the SMS."""
        limits = member_limits(request.app.state)
        phone = normalise_phone(data.phone)
        return await auth.request_code(
            conn, settings, limits, _ip(request), data.brand_id, phone, data.lang
        )

    @post("/login", status_code=200, cache_control=TOKENS_NOT_KEPT)
    async def login(
        self, request: Request[Any, Any, Any], data: LoginIn, conn: Conn, settings: Settings
    ) -> MemberTokenOut:
        """Sign in with the code; the first sign-in of a phone creates the membership.

        401 ``otp_wrong`` (``details.tries_left``), ``otp_exhausted`` (5 wrong tries),
        ``otp_expired``, ``otp_invalid`` (no code waiting: used, replaced or never sent);
        429 ``login_locked`` / ``rate_limited`` after repeated failures (``Retry-After``)."""
        limits = member_limits(request.app.state)
        phone = normalise_phone(data.phone)
        code = auth.sign_in_code(data.code)
        return await auth.login(conn, settings, limits, _ip(request), data.brand_id, phone, code)

    @post("/logout", status_code=204)
    async def logout(
        self, request: Request[Any, Any, Any], member: Member, conn: Conn, settings: Settings
    ) -> None:
        """Sign out: the presented member token stops working (other devices stay signed in)."""
        token = (request.headers.get("authorization") or "").partition(" ")[2].strip()
        await auth.logout(conn, settings, member.id, token)


class MemberSelfController(Controller):
    path = "/members/me"
    tags = ["members: profile"]

    @get("/")
    async def me(self, member: Member, conn: Conn) -> MemberOut:
        """The signed-in member's profile (with the whole phone number: it is theirs)."""
        return await profile.get_profile(conn, member)

    @patch("/")
    async def update_me(self, data: ProfilePatch, member: Member, conn: Conn) -> MemberOut:
        """Change the profile; ``null`` clears a field. The phone cannot change. A birthday sets
        the age band (422 ``age_band_mismatch`` when both disagree); a city needs a province."""
        return await profile.update_profile(conn, member, data)

    @get("/export")
    async def export_me(self, member: Member, conn: Conn) -> dict[str, Any]:
        """A copy of everything the brand holds about the signed-in member (PIPL): profile,
        points balance and ledger, claims, redemptions, the verifications made signed in (at
        most 10,000 of each, the newest scans)."""
        return await erasure.export(conn, member.id)

    @delete("/", status_code=204)
    async def erase_me(
        self, request: Request[Any, Any, Any], member: Member, conn: Conn, settings: Settings
    ) -> None:
        """Close the membership and erase the member's personal information (PIPL): the phone,
        the profile, the verifications' link and client data, the SMS sent to the number; the
        points are forfeited and open redemption codes expire. Claims and the ledger stay,
        anonymous; the phone may sign up again, anew. Afterwards the token is 401
        ``member_erased``."""
        limits = member_limits(request.app.state)
        await erasure.erase(conn, None, member.brand_id, member.id, settings, limits)


FromDate = Annotated[date | None, QueryParameter(name="from", description="registered on or after")]
ToDate = Annotated[date | None, QueryParameter(name="to", description="registered on or before")]
PhoneQuery = Annotated[
    str | None,
    Parameter(
        max_length=32,
        description="a whole phone number, or its last 4 digits (4 to 10 with members.read_phone)",
    ),
]


class MemberAdminController(Controller):
    path = "/members"
    tags = ["members: admin"]

    @get("/")
    async def list_members(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Principal,
        state: State,
        phone: PhoneQuery = None,
        province: Annotated[str | None, Parameter(max_length=40)] = None,
        member_status: Annotated[MemberStatus | None, QueryParameter(name="status")] = None,
        date_from: FromDate = None,
        date_to: ToDate = None,
        fmt: Annotated[
            Literal["json", "csv"],
            QueryParameter(name="format", description="json (a page) or csv (every match)"),
        ] = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[MemberRow]:
        """The brand's members, newest first (``members.read``, brand staff only). Phones are
        masked without ``members.read_phone``. ``?format=csv`` exports every match (audited)."""
        filters = admin.Filters(
            phone=phone,
            province=province,
            status=member_status,
            date_from=date_from,
            date_to=date_to,
        )
        if fmt == "csv":
            chunks = await admin.export_csv(
                conn,
                state.pool,
                principal,
                filters,
                limits=member_limits(state),
                audited=request.method != "HEAD",
            )
            return tabular.download(chunks, "csv", f"members-{localtime.today()}.csv")  # type: ignore[return-value]
        return await admin.list_members(
            conn, principal, filters, page, per_page, limits=member_limits(state)
        )

    @get("/{member_id:int}")
    async def get_member(self, member_id: int, conn: Conn, principal: Principal) -> MemberDetail:
        """One member: profile, freeze, the latest 20 scans, the points balance and the latest
        20 ledger entries (``members.read``)."""
        return await admin.detail(conn, principal, member_id)

    @get("/{member_id:int}/scans")
    async def member_scans(
        self,
        member_id: int,
        conn: Conn,
        principal: Principal,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[ScanRow]:
        """The member's scans (points claims): product, spec, region, time; newest first."""
        return await admin.scans(conn, principal, member_id, page, per_page)

    @get("/{member_id:int}/points")
    async def member_points(
        self,
        member_id: int,
        conn: Conn,
        principal: Principal,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> PointsOut:
        """The member's points balance and ledger entries, newest first: claims with their
        product, redemptions and refunds with their gift, adjustments and expiries with their
        reason (``members.read``)."""
        return await admin.ledger(conn, principal, member_id, page, per_page)

    @get("/{member_id:int}/redemptions")
    async def member_redemptions(
        self,
        member_id: int,
        conn: Conn,
        principal: Principal,
        redemption_status: Annotated[RedemptionStatus | None, QueryParameter(name="status")] = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[RedemptionRow]:
        """The member's redemptions, newest first: gift, points, status, and for fulfilled ones
        who fulfilled it at which organisation and when (``members.read``; never the code)."""
        return await admin.redemptions(
            conn, principal, member_id, redemption_status, page, per_page
        )

    @post("/{member_id:int}/freeze", status_code=200)
    async def freeze(
        self, member_id: int, data: FreezeIn, conn: Conn, principal: Principal
    ) -> MemberDetail:
        """Freeze a member (``members.write``): no more claims or redemptions. Audited."""
        return await admin.set_frozen(conn, principal, member_id, True, data.reason)

    @post("/{member_id:int}/erase", status_code=204)
    async def erase(
        self, member_id: int, conn: Conn, principal: Principal, settings: Settings, state: State
    ) -> None:
        """Erase a member on their request (as ``DELETE /members/me``; ``members.write``, brand
        staff; audited). 409 ``member_erased`` when it is already."""
        await admin.erase(conn, principal, member_id, settings, member_limits(state))

    @post("/{member_id:int}/unfreeze", status_code=200)
    async def unfreeze(
        self, member_id: int, data: UnfreezeIn, conn: Conn, principal: Principal
    ) -> MemberDetail:
        """Lift a freeze (``members.write``). Audited."""
        return await admin.set_frozen(conn, principal, member_id, False, data.reason)


route_handlers = [MemberSignInController, MemberSelfController, MemberAdminController]
