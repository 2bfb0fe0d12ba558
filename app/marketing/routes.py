"""HTTP routes of promotions (W2) and complaints and suggestions (W3): the brand's staff's
(``/promotions``, ``/complaints``: a staff token or API key) and the member's own
(``/members/me/promotions``, ``/members/me/complaints``: a member token)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import Parameter, QueryParameter

from app import localtime, tabular
from app.auth.principal import Principal
from app.codes.scheme import Scheme
from app.config import Settings
from app.db import Conn
from app.marketing import complaints, handling, promotions
from app.marketing.schemas import (
    ComplaintCloseIn,
    ComplaintIn,
    ComplaintKind,
    ComplaintOut,
    ComplaintReplyIn,
    ComplaintStatus,
    MyComplaint,
    Promotion,
    PromotionIn,
    PromotionOut,
    PromotionPatch,
)
from app.members.principal import Member
from app.paging import Page, PageNo, PerPage

DateFrom = Annotated[
    date | None, QueryParameter(name="from", description="filed on or after (Asia/Shanghai)")
]
DateTo = Annotated[date | None, QueryParameter(name="to", description="filed on or before")]
Format = Annotated[
    Literal["json", "csv"],
    QueryParameter(name="format", description="json (a page) or csv (every match)"),
]

_FILED = {
    200: ResponseSpec(
        MyComplaint, generate_examples=False, description="the same client_id again: the first"
    ),
    429: ResponseSpec(None, description="too many filed by the member; see Retry-After"),
}


class PromotionController(Controller):
    path = "/promotions"
    tags = ["marketing: promotions"]

    @post("/")
    async def create(
        self, data: PromotionIn, conn: Conn, principal: Principal, settings: Settings
    ) -> PromotionOut:
        """A promotion of the brand (``promotions.write``, brand staff), shown to members of its
        ``provinces`` (empty: every province) while ``published`` and in its window. 400 for an
        unknown province or a URL that is not https, ``unknown_catalog_media`` for one naming a
        catalogue medium of this server that is not the brand's (the picture: not its image);
        422 ``bad_window``. Audited."""
        return await promotions.create(conn, principal, data, origin=settings.public_url)

    @get("/")
    async def list_promotions(
        self,
        conn: Conn,
        principal: Principal,
        published: bool | None = None,
        province: Annotated[str | None, Parameter(max_length=40)] = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[PromotionOut]:
        """The brand's promotions, newest first; ``province``: those shown there."""
        return await promotions.list_promotions(
            conn, principal, published, province, page, per_page
        )

    @get("/{promotion_id:int}")
    async def get_one(self, promotion_id: int, conn: Conn, principal: Principal) -> PromotionOut:
        return await promotions.get(conn, principal, promotion_id)

    @patch("/{promotion_id:int}")
    async def update(
        self,
        promotion_id: int,
        data: PromotionPatch,
        conn: Conn,
        principal: Principal,
        settings: Settings,
    ) -> PromotionOut:
        """Change a promotion (``null`` clears an optional field; its URLs checked as ``POST``
        checks them); audited."""
        return await promotions.update(
            conn, principal, promotion_id, data, origin=settings.public_url
        )

    @delete("/{promotion_id:int}")
    async def remove(self, promotion_id: int, conn: Conn, principal: Principal) -> None:
        """Withdraw a promotion: no longer shown or listed. Audited."""
        await promotions.delete(conn, principal, promotion_id)


class MemberMarketingController(Controller):
    path = "/members/me"
    tags = ["members: promotions and complaints"]

    @get("/promotions")
    async def my_promotions(
        self, conn: Conn, member: Member, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[Promotion]:
        """The promotions shown to the member now: published, in their window, in the member's
        province (a member without one sees those of every province only)."""
        return await promotions.member_promotions(conn, member, page, per_page)

    @post("/complaints", status_code=201, responses=_FILED)
    async def file_complaint(
        self, data: ComplaintIn, conn: Conn, member: Member, scheme: Scheme, state: State
    ) -> Response[MyComplaint]:
        """File a complaint or a suggestion (201). The same ``client_id`` again answers the
        first (200); 409 ``client_id_reused`` for another. 400 ``invalid_gtin``; 429
        ``rate_limited`` past 10 an hour (``Retry-After``); 401 ``member_erased``."""
        limit = complaints.filing_limit(state)
        out, created = await complaints.file(conn, scheme, limit, member, data)
        return Response(out, status_code=201 if created else 200)

    @get("/complaints")
    async def my_complaints(
        self, conn: Conn, member: Member, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[MyComplaint]:
        """The member's complaints and suggestions, newest first: status and the reply."""
        return await complaints.my_complaints(conn, member, page, per_page)


class ComplaintController(Controller):
    path = "/complaints"
    tags = ["marketing: complaints"]

    @get("/")
    async def list_complaints(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Principal,
        kind: ComplaintKind | None = None,
        complaint_status: Annotated[
            ComplaintStatus | None, QueryParameter(name="status", required=False)
        ] = None,
        product_id: Annotated[int | None, Parameter(ge=1, le=2**63 - 1)] = None,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        fmt: Format = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[ComplaintOut]:
        """The brand's complaints and suggestions, newest first (``complaints.handle``, brand
        staff); phones masked without ``members.read_phone``. ``?format=csv`` exports every
        match (audited); 400 ``bad_period``."""
        f = handling.Filters(kind, complaint_status, product_id, date_from, date_to)
        if fmt == "csv":
            audited = request.method != "HEAD"
            chunks = await handling.complaints_csv(conn, principal, f, audited=audited)
            name = f"complaints-{localtime.today()}.csv"
            return tabular.download(chunks, "csv", name)  # type: ignore[return-value]
        return await handling.list_complaints(conn, principal, f, page, per_page)

    @get("/{complaint_id:int}")
    async def get_one(self, complaint_id: int, conn: Conn, principal: Principal) -> ComplaintOut:
        return await handling.get_complaint(conn, principal, complaint_id)

    @post("/{complaint_id:int}/take", status_code=200)
    async def take(self, complaint_id: int, conn: Conn, principal: Principal) -> ComplaintOut:
        """open → handling, the caller its handler. 409 ``already_taken``,
        ``complaint_closed``."""
        return await handling.take(conn, principal, complaint_id)

    @post("/{complaint_id:int}/reply", status_code=200)
    async def reply(
        self,
        complaint_id: int,
        data: ComplaintReplyIn,
        conn: Conn,
        settings: Settings,
        principal: Principal,
    ) -> ComplaintOut:
        """Answer the member (an open complaint is taken on the way; a later answer replaces
        the earlier). 409 ``complaint_closed``."""
        return await handling.reply(conn, settings, principal, complaint_id, data.reply)

    @post("/{complaint_id:int}/close", status_code=200)
    async def close(
        self,
        complaint_id: int,
        conn: Conn,
        settings: Settings,
        principal: Principal,
        data: ComplaintCloseIn | None = None,
    ) -> ComplaintOut:
        """Close it, with a last answer if given (no body: none). 409 ``complaint_closed``."""
        reply = (data or ComplaintCloseIn()).reply
        return await handling.close(conn, settings, principal, complaint_id, reply)


route_handlers = [PromotionController, MemberMarketingController, ComplaintController]
