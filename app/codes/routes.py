"""HTTP routes of code issuance."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import Parameter

from app.auth.principal import Principal
from app.codes import service
from app.codes.schemas import BatchIn, BatchOut, BatchState, VoidIn
from app.config import Settings
from app.db import Conn
from app.paging import Page, PageNo, PerPage


class BatchController(Controller):
    path = "/batches"
    tags = ["codes"]

    @post("/")
    async def create(
        self, data: BatchIn, conn: Conn, principal: Principal, settings: Settings
    ) -> Response[BatchOut]:
        """Issue a batch of unit codes (201); a repeated ``request_key`` answers 200 with it."""
        batch, created = await service.create_batch(conn, principal, settings, data)
        return Response(batch, status_code=201 if created else 200)

    @get("/")
    async def list_batches(
        self,
        conn: Conn,
        principal: Principal,
        batch_state: Annotated[BatchState | None, Parameter(query="state")] = None,
        printer_id: int | None = None,
        product_id: int | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[BatchOut]:
        return await service.list_batches(
            conn, principal, state=batch_state, printer_id=printer_id, product_id=product_id,
            page=page, per_page=per_page,
        )  # fmt: skip

    @get("/{batch_no:int}")
    async def get_one(self, batch_no: int, conn: Conn, principal: Principal) -> BatchOut:
        return await service.get_batch(conn, principal, batch_no)

    @post("/{batch_no:int}/void", status_code=200)
    async def void(self, batch_no: int, data: VoidIn, conn: Conn, principal: Principal) -> BatchOut:
        return await service.void_batch(conn, principal, batch_no, data.reason)
