"""HTTP routes of the field force (SPEC F1–F3): plans, nameplates, check-ins, reviews."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from litestar import Controller, Response, get, post, put
from litestar.params import QueryParameter

from app import tabular
from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.errors import BadRequest
from app.field import checkins, nameplates, plans, reps, reviews, stores
from app.field.schemas import (
    CheckinIn,
    CheckinOut,
    NameplateOut,
    Period,
    PlanEditIn,
    PlanIn,
    PlanOut,
    PlanReturnIn,
    PlanStatus,
    PositionIn,
    PositionOut,
    RepOut,
    ReviewIn,
    ReviewOut,
    StoreScoreOut,
    SupervisorIn,
    SupervisorOut,
    TrackOut,
)
from app.field.scope import SHANGHAI
from app.paging import Page, PageNo, PerPage

DateFrom = Annotated[
    date | None, QueryParameter(name="from", description="first day (Asia/Shanghai)")
]
DateTo = Annotated[date | None, QueryParameter(name="to", description="last day, inclusive")]
Format = Annotated[Literal["json", "csv"], QueryParameter(name="format")]


class PlanController(Controller):
    path = "/field/plans"

    @post("/")
    async def create(self, data: PlanIn, conn: Conn, principal: Principal) -> PlanOut:
        """Draft a visit plan of the caller's for a quarter, month or week (``starts_on`` its
        first day; a week starts on Monday). 409 ``duplicate_plan`` for a second one."""
        return await plans.create_plan(conn, principal, data)

    @get("/")
    async def list_plans(
        self,
        conn: Conn,
        principal: Principal,
        rep_id: int | None = None,
        status: PlanStatus | None = None,
        period: Period | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[PlanOut]:
        """Plans the caller sees (own; a supervisor's reps'; ``field.read``: the subtree's),
        newest period first, without items."""
        return await plans.list_plans(
            conn,
            principal,
            rep_id=rep_id,
            status=status,
            period=period,
            page=page,
            per_page=per_page,
        )

    @get("/{plan_id:int}")
    async def get_plan(self, plan_id: int, conn: Conn, principal: Principal) -> PlanOut:
        return await plans.get_plan(conn, principal, plan_id)

    @put("/{plan_id:int}")
    async def edit(
        self, plan_id: int, data: PlanEditIn, conn: Conn, principal: Principal
    ) -> PlanOut:
        """Replace a draft or returned plan's title and items (its rep; 409
        ``plan_not_editable`` in another state)."""
        return await plans.edit_plan(conn, principal, plan_id, data)

    @post("/{plan_id:int}/submit", status_code=200)
    async def submit(self, plan_id: int, conn: Conn, principal: Principal) -> PlanOut:
        """draft | returned → submitted (the plan's rep; 409 ``illegal_transition``)."""
        return await plans.transition(conn, principal, plan_id, "submit")

    @post("/{plan_id:int}/approve", status_code=200)
    async def approve(self, plan_id: int, conn: Conn, principal: Principal) -> PlanOut:
        """submitted → approved (the rep's supervisor; 403 ``not_supervisor``)."""
        return await plans.transition(conn, principal, plan_id, "approve")

    @post("/{plan_id:int}/return", status_code=200)
    async def return_plan(
        self, plan_id: int, data: PlanReturnIn, conn: Conn, principal: Principal
    ) -> PlanOut:
        """submitted → returned with a reason (the rep's supervisor)."""
        return await plans.transition(conn, principal, plan_id, "return", data.reason)


class StoreController(Controller):
    path = "/field/stores"

    @get("/{store_id:int}/nameplate")
    async def nameplate(
        self, store_id: int, conn: Conn, principal: Principal, settings: Settings
    ) -> NameplateOut:
        """The store's nameplate: its signed code and the URL its QR code holds."""
        return await stores.nameplate(conn, principal, settings, store_id)

    @get("/{store_id:int}/nameplate.png", media_type="image/png")
    async def nameplate_png(
        self, store_id: int, conn: Conn, principal: Principal, settings: Settings
    ) -> Response[bytes]:
        """The nameplate's QR code as a PNG."""
        plate = await stores.nameplate(conn, principal, settings, store_id)
        return Response(
            nameplates.png(plate.url),
            media_type="image/png",
            headers={"Content-Disposition": f'inline; filename="{plate.store_erp_code}.png"'},
        )

    @get("/{store_id:int}/nameplate.pdf", media_type="application/pdf")
    async def nameplate_pdf(
        self, store_id: int, conn: Conn, principal: Principal, settings: Settings
    ) -> Response[bytes]:
        """The nameplate as a printable A6 PDF: the QR code, the store's name and ERP code."""
        plate = await stores.nameplate(conn, principal, settings, store_id)
        return Response(
            nameplates.pdf(plate.url, plate.store_name, plate.store_erp_code),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{plate.store_erp_code}.pdf"'},
        )

    @put("/{store_id:int}/position")
    async def set_position(
        self, store_id: int, data: PositionIn, conn: Conn, principal: Principal
    ) -> PositionOut:
        """Record the store's position (WGS 84): check-ins are measured from it."""
        return await stores.set_position(conn, principal, store_id, data)

    @get("/scores")
    async def scores(
        self,
        conn: Conn,
        principal: Principal,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[StoreScoreOut]:
        """Per store: the reviews the caller sees, their average scores, the latest."""
        return await reviews.store_scores(
            conn, principal, date_from=date_from, date_to=date_to, page=page, per_page=per_page
        )


class RepController(Controller):
    path = "/field/reps"

    @get("/")
    async def list_reps(
        self,
        conn: Conn,
        principal: Principal,
        q: str | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[RepOut]:
        """The reps the caller's plans, check-ins and reviews can be filtered by (``rep_id``):
        itself, the reps it supervises, with ``field.read`` its subtree's users who visit
        stores; ``q`` searches the username and name."""
        return await reps.page_reps(conn, principal, q, page, per_page)

    @put("/{user_id:int}/supervisor")
    async def set_supervisor(
        self, user_id: int, data: SupervisorIn, conn: Conn, principal: Principal
    ) -> SupervisorOut:
        """Name (or clear, with null) a field rep's supervisor (``users.write``)."""
        return await stores.set_supervisor(conn, principal, user_id, data)


class CheckinController(Controller):
    path = "/field/checkins"

    @post("/")
    async def check_in(
        self, data: CheckinIn, conn: Conn, principal: Principal, settings: Settings
    ) -> Response[CheckinOut]:
        """Check in at a store by its nameplate (code or URL) with the phone's GPS fix. 201
        with the distance and flag (ok, out_of_range — kept —, no_store_position); the same
        ``client_id`` again answers the first check-in (200, ``replayed``). 422
        ``invalid_nameplate`` (forged), ``nameplate_mismatch`` (another store's)."""
        out = await checkins.check_in(conn, principal, settings, data)
        return Response(out, status_code=200 if out.replayed else 201)

    @get("/")
    async def list_checkins(
        self,
        conn: Conn,
        principal: Principal,
        rep_id: int | None = None,
        store_id: int | None = None,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        output: Format = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[CheckinOut]:
        """Check-ins the caller sees, newest first; ``?format=csv`` exports every match."""
        if output == "csv":
            chunks = await checkins.checkins_csv(
                conn,
                principal,
                rep_id=rep_id,
                store_id=store_id,
                date_from=date_from,
                date_to=date_to,
            )
            return tabular.download(chunks, "csv", "checkins.csv")  # type: ignore[return-value]
        return await checkins.list_checkins(
            conn,
            principal,
            rep_id=rep_id,
            store_id=store_id,
            date_from=date_from,
            date_to=date_to,
            page=page,
            per_page=per_page,
        )


class TrackController(Controller):
    path = "/field/track"

    @get("/")
    async def track(
        self,
        conn: Conn,
        principal: Principal,
        rep_id: int | None = None,
        day: date | None = None,
    ) -> TrackOut:
        """A rep's daily track (default: the caller, today in Asia/Shanghai): the day's
        check-ins in time order; an API key names the rep (400 ``rep_required``)."""
        day = day or datetime.now(SHANGHAI).date()
        rep = principal.user_id if rep_id is None else rep_id
        if rep is None:
            raise BadRequest("name the rep (rep_id): an API key has no track", code="rep_required")
        return TrackOut(
            rep_id=rep, day=day, checkins=await checkins.track(conn, principal, rep_id, day)
        )


class ReviewController(Controller):
    path = "/field/reviews"

    @post("/")
    async def create(self, data: ReviewIn, conn: Conn, principal: Principal) -> Response[ReviewOut]:
        """Review a store (shelf display, staff product knowledge 1–5, comment, photos). 201;
        the same ``client_id`` again answers the first review (200, ``replayed``)."""
        out = await reviews.create_review(conn, principal, data)
        return Response(out, status_code=200 if out.replayed else 201)

    @get("/")
    async def list_reviews(
        self,
        conn: Conn,
        principal: Principal,
        rep_id: int | None = None,
        store_id: int | None = None,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        output: Format = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[ReviewOut]:
        """Reviews the caller sees (per store with ``store_id``), newest first;
        ``?format=csv`` exports every match."""
        if output == "csv":
            chunks = await reviews.reviews_csv(
                conn,
                principal,
                rep_id=rep_id,
                store_id=store_id,
                date_from=date_from,
                date_to=date_to,
            )
            return tabular.download(chunks, "csv", "reviews.csv")  # type: ignore[return-value]
        return await reviews.list_reviews(
            conn,
            principal,
            rep_id=rep_id,
            store_id=store_id,
            date_from=date_from,
            date_to=date_to,
            page=page,
            per_page=per_page,
        )


route_handlers = [
    PlanController,
    StoreController,
    RepController,
    CheckinController,
    TrackController,
    ReviewController,
]
