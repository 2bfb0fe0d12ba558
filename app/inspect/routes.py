"""HTTP routes of anti-diversion inspection (SPEC D1–D5)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import Parameter, QueryParameter

from app import tabular
from app.auth.principal import Principal
from app.codes.scheme import Scheme
from app.db import Conn
from app.errors import Unprocessable
from app.inspect import batch, service, summaries
from app.inspect.schemas import (
    InspectionBatchIn,
    InspectionBatchOut,
    InspectionIn,
    InspectionOut,
    InspectorOut,
    Result,
    ScanOut,
    SummaryOut,
)
from app.paging import Page, PageNo, PerPage

DateFrom = Annotated[
    date | None, QueryParameter(name="from", description="first business day (Asia/Shanghai)")
]
DateTo = Annotated[
    date | None, QueryParameter(name="to", description="last business day, inclusive")
]


class InspectionController(Controller):
    path = "/inspections"

    @post("/")
    async def inspect(
        self, data: InspectionIn, conn: Conn, principal: Principal, scheme: Scheme
    ) -> Response[ScanOut]:
        """Inspect a unit (serial or QR content) or a case (SSCC) at a store, with GPS.

        201 with the verdict per unit: in_channel, diverted (with the agent it was shipped to and
        the document that shipped it), unknown_route (never shipped), counterfeit. A code that is
        not genuine at all is recorded (and alerted) too, and answered 422 ``counterfeit`` with
        the recorded scan in ``details``. The same ``client_id`` again answers the first scan
        (200, ``replayed``), even after its store left the caller's area or closed. A closed
        store (or one under a closed organisation) is 422 ``org_inactive``.
        """
        out = await service.inspect(conn, principal, scheme, data)
        if out.result == "counterfeit" and all(i.result == "counterfeit" for i in out.items):
            await conn.commit()  # the finding is evidence: recorded although the answer is 4xx
            raise Unprocessable(
                f"{out.scanned}: not a genuine code ({out.items[0].reason}); recorded",
                code="counterfeit",
                details=msgspec.to_builtins(out),
            )
        return Response(out, status_code=200 if out.replayed else 201)

    @post("/batch", status_code=200)
    async def inspect_batch(
        self, data: InspectionBatchIn, conn: Conn, principal: Principal, scheme: Scheme
    ) -> InspectionBatchOut:
        """Many scans at once (the staff app's offline queue), each with its ``client_id``.

        200 with one answer per scan, in order, as ``POST /inspections`` would answer it:
        ``status`` 201 recorded, 200 its client id was recorded before (the first scan's answer;
        never counted twice, also when repeated within the batch), 422 ``counterfeit``
        (recorded), or another 4xx ``error`` (``unknown_store``, ``not_a_store``,
        ``org_inactive``, ``unknown_photo``, ``empty_case``, ``client_id_required``; not
        recorded). One transaction. 400 ``empty_batch``; 413 ``batch_too_large`` over
        1000 scans.
        """
        return await batch.inspect_batch(conn, principal, scheme, list(data.items))

    @get("/")
    async def list_records(
        self,
        conn: Conn,
        principal: Principal,
        store_id: int | None = None,
        product_id: int | None = None,
        inspector_id: int | None = None,
        source_id: Annotated[
            int | None, Parameter(description="the source agent the goods were shipped to")
        ] = None,
        result: Result | None = None,
        scan_id: int | None = None,
        date_from: DateFrom = None,
        date_to: DateTo = None,
        output: Annotated[Literal["json", "csv"], QueryParameter(name="format")] = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[InspectionOut]:
        """Inspection records (one per unit inspected), newest first: at the caller's stores, or
        of the caller's goods found anywhere. ``?format=csv`` exports every match (no paging)."""
        filters = service.Filters(
            store_id=store_id,
            product_id=product_id,
            inspector_id=inspector_id,
            source_id=source_id,
            result=result,
            scan_id=scan_id,
            date_from=date_from,
            date_to=date_to,
        )
        if output == "csv":
            chunks = await service.records_csv(conn, principal, filters)
            return tabular.download(chunks, "csv", "inspections.csv")  # type: ignore[return-value]
        return await service.list_records(conn, principal, filters, page, per_page)

    @get("/summary")
    async def summary(
        self,
        conn: Conn,
        principal: Principal,
        by: Literal["store", "agent"] = "store",
        date_from: DateFrom = None,
        date_to: DateTo = None,
        store_id: Annotated[int | None, Parameter(description="of this store only")] = None,
    ) -> SummaryOut:
        """Rolled-up summaries (every second by the workers): ``by=store`` units inspected and
        found diverted per day and store; ``by=agent`` the leak report — per source agent, its
        units inspected, those found outside its area and at which stores. Default: 30 days.
        ``store_id`` narrows either to the inspections at that store."""
        return await summaries.summary(conn, principal, by, date_from, date_to, store_id)

    @get("/inspectors")
    async def list_inspectors(
        self,
        conn: Conn,
        principal: Principal,
        q: Annotated[str | None, Parameter(min_length=1, max_length=64)] = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[InspectorOut]:
        """Who made the records the caller sees within the last year, by name, with how many
        and the newest: the inspector filter's choices. ``q``: part of a username or display
        name."""
        return await service.list_inspectors(conn, principal, q, page, per_page)

    @get("/{record_id:int}")
    async def get_record(self, record_id: int, conn: Conn, principal: Principal) -> InspectionOut:
        return await service.get_record(conn, principal, record_id)

    @get("/scans/{scan_id:int}")
    async def get_scan(self, scan_id: int, conn: Conn, principal: Principal) -> ScanOut:
        """One scan with the record of every unit it inspected."""
        return await service.get_scan(conn, principal, scan_id)
