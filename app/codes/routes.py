"""HTTP routes of code issuance: batches, case batches, exports (printer files), code status."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
import psycopg
from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.params import Parameter, QueryParameter
from litestar.response import Stream

from app import jobs
from app.auth.principal import Principal
from app.bodies import QueryTime
from app.byteranges import file_answer
from app.codes import allocation_records, allocation_stream, allocations, cases, exports, service
from app.codes.batches import VoidWatch
from app.codes.schemas import (
    AllocationIn,
    AllocationOut,
    BatchDetailOut,
    BatchIn,
    BatchOut,
    BatchState,
    CaseBatchIn,
    CaseBatchOut,
    CaseExportIn,
    CodeAllocationOut,
    CodeStatusOut,
    ExportIn,
    ExportOrder,
    ExportOut,
    PoolIn,
    PoolOut,
    PrinterOut,
    PublicKeyIn,
    VoidIn,
)
from app.codes.scheme import Scheme
from app.codes.trace import TraceOut, trace
from app.config import Settings
from app.db import Conn
from app.errors import BadRequest, ServerError, ServiceUnavailable, Unprocessable
from app.paging import Page, PageNo, PerPage
from app.verify.service import forget_batch

Part = Annotated[str, Parameter(pattern=r"^(outer|inner|cases)(?!\n)$")]
Since = Annotated[QueryTime | None, QueryParameter(name="from", description="made at or after")]
Until = Annotated[QueryTime | None, QueryParameter(name="to", description="made before")]
ClientIdParam = Annotated[
    str | None,
    QueryParameter(
        max_length=64, pattern=r"^[\x21-\x7e]+(?!\n)$", description="the caller's client id"
    ),
]
MAX_SERIAL = 64


async def _start(
    conn: Conn, state: State, settings: Settings, scheme: Scheme, export: ExportOut
) -> Response[ExportOut]:
    """Run a small export now (201, files ready); queue a large one as a job (202 + Location).

    A batch voided during the run stops it (``failed``): 422 ``batch_void``, as for a batch void
    before the request, never a 201 without files."""
    await conn.commit()  # the runner (thread or worker) reads the export row on its own connection
    if export.total > settings.export_async_threshold:
        # workers/codes.py; a job the broker cannot take now is sent by app.ops.orphans
        await jobs.hand_over("run_export_job", export.id)
        return Response(export, status_code=202, headers={"Location": f"/exports/{export.id}"})
    try:
        ended = await asyncio.to_thread(
            exports.run_export, state.db_url, settings, scheme, export.id
        )
    except psycopg.errors.QueryCanceled as exc:  # a statement past its time: the export failed
        raise ServerError(
            f"the export failed: {exports.failure_text(exc)}", code="export_failed"
        ) from exc
    except psycopg.OperationalError as exc:  # the export is left to app.ops.orphans
        raise ServiceUnavailable(
            "the database is unavailable; the export will be finished by a worker",
            details={"export_id": export.id},
        ) from exc
    except Exception as exc:
        raise ServerError(
            f"the export failed: {exports.failure_text(exc)}", code="export_failed"
        ) from exc
    if ended != "done":  # returned "failed": its batch was voided during the run (a probe: a
        # 201 Created with that failed export, no files); other failures raise
        raise Unprocessable(
            "the batch is void", code="batch_void", details={"export_id": export.id}
        )
    return Response(await exports.load_export(conn, export.id), status_code=201)


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
        batch_state: Annotated[BatchState | None, QueryParameter(name="state")] = None,
        printer_id: int | None = None,
        product_id: int | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[BatchOut]:
        return await service.list_batches(
            conn,
            principal,
            state=batch_state,
            printer_id=printer_id,
            product_id=product_id,
            page=page,
            per_page=per_page,
        )

    @get("/{batch_no:int}")
    async def get_one(self, batch_no: int, conn: Conn, principal: Principal) -> BatchDetailOut:
        """Size, state, who and when, and the exports the caller sees (planners all; printers
        those with a file addressed to them: ``exports.list_exports``)."""
        batch = await service.get_batch(conn, principal, batch_no)
        made = await exports.list_exports(conn, principal, batch_no)
        return BatchDetailOut(**msgspec.structs.asdict(batch), exports=made)

    @post("/{batch_no:int}/void", status_code=200)
    async def void(self, batch_no: int, data: VoidIn, conn: Conn, principal: Principal) -> BatchOut:
        voided = await service.void_batch(conn, principal, batch_no, data.reason)
        await conn.commit()
        # this process's verifications read the void now, not after ``BATCH_TTL``; forgotten
        # only once committed (before, a verification in between cached the batch as live)
        forget_batch(batch_no)
        return voided

    @post("/{batch_no:int}/exports")
    async def export(
        self,
        batch_no: int,
        data: ExportIn,
        conn: Conn,
        principal: Principal,
        settings: Settings,
        scheme: Scheme,
        state: State,
    ) -> Response[ExportOut]:
        """Printer files for the batch (or ``[start, end)`` of it): outer and inner print."""
        made = await exports.create_unit_export(conn, principal, settings, scheme, batch_no, data)
        return await _start(conn, state, settings, scheme, made)

    @get("/{batch_no:int}/exports")
    async def list_exports(
        self,
        batch_no: int,
        read_conn: Conn,
        principal: Principal,
        order: ExportOrder = "oldest",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[ExportOut]:
        """The batch's printer-file exports, oldest first (``order=newest``: newest first), from
        the read replica when there is one: an export's progress may show a moment late."""
        return await exports.page_exports(read_conn, principal, batch_no, page, per_page, order)


class CaseBatchController(Controller):
    path = "/case-batches"
    tags = ["codes"]

    @post("/")
    async def create(
        self, data: CaseBatchIn, conn: Conn, principal: Principal, settings: Settings
    ) -> Response[CaseBatchOut]:
        """Issue SSCC-18 case codes for a packing level (inner case, master case, pallet)."""
        batch, created = await cases.create_case_batch(conn, principal, settings, data)
        return Response(batch, status_code=201 if created else 200)

    @get("/")
    async def list_batches(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[CaseBatchOut]:
        return await cases.list_case_batches(conn, principal, page, per_page)

    @get("/{batch_id:int}")
    async def get_one(self, batch_id: int, conn: Conn, principal: Principal) -> CaseBatchOut:
        return await cases.get_case_batch(conn, principal, batch_id)

    @post("/{batch_id:int}/void", status_code=200)
    async def void(
        self, batch_id: int, data: VoidIn, conn: Conn, principal: Principal
    ) -> CaseBatchOut:
        """Void a case batch (labels misprinted or stolen): its codes are refused from now on.
        409 ``case_batch_in_use`` while a case of it holds goods."""
        return await cases.void_case_batch(conn, principal, batch_id, data.reason)

    @post("/{batch_id:int}/exports")
    async def export(
        self,
        batch_id: int,
        data: CaseExportIn,
        conn: Conn,
        principal: Principal,
        settings: Settings,
        scheme: Scheme,
        state: State,
    ) -> Response[ExportOut]:
        made = await exports.create_case_export(conn, principal, settings, scheme, batch_id, data)
        return await _start(conn, state, settings, scheme, made)

    @get("/{batch_id:int}/exports")
    async def list_exports(
        self,
        batch_id: int,
        read_conn: Conn,
        principal: Principal,
        order: ExportOrder = "oldest",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[ExportOut]:
        """The case batch's SSCC file exports, oldest first (``order=newest``: newest first),
        seen as the unit batch's (brand staff: all; a printer: those with a file addressed to
        it), from the read replica when there is one."""
        return await exports.page_exports(
            read_conn, principal, batch_id, page, per_page, order, case_batch=True
        )


class ExportController(Controller):
    path = "/exports"
    tags = ["codes"]

    @get("/{export_id:str}")
    async def get_one(self, export_id: str, conn: Conn, principal: Principal) -> ExportOut:
        """An export job: state, progress (codes written of total), and its files when done."""
        return await exports.get_export(conn, principal, export_id)

    @get("/{export_id:str}/files/{part:str}", media_type="application/octet-stream")
    async def download(
        self,
        request: Request[Any, Any, Any],
        export_id: str,
        part: Part,
        conn: Conn,
        principal: Principal,
        settings: Settings,
        state: State,
    ) -> Stream:
        """Download one encrypted file (audited); printers get only the files addressed to them.
        A ``Range`` of one span resumes a broken download (206; ``If-Range`` the file's ETag;
        416 ``range_not_satisfiable`` past its end: ``app.byteranges``). The batch voided while
        the file is sent cuts the download off (its batch asked every 4 MiB, on the primary's
        pool: ``VoidWatch``).

        HEAD answers the same checks and headers and is no download (not audited)."""
        path, still_live = await exports.watched_file(
            conn, principal, settings, state.pool, export_id, part,
            audited=request.method != "HEAD",
        )  # fmt: skip
        return file_answer(request, path, f"{export_id}-{part}.tcpf", still_live)


@get("/printers", tags=["codes"])
async def list_printers(
    conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
) -> Page[PrinterOut]:
    """Printer organisations of the caller's brand, and whether each has an RSA key."""
    return await service.list_printers(conn, principal, page, per_page)


@put("/printers/{printer_id:int}/public-key", tags=["codes"], status_code=204)
async def set_printer_key(
    printer_id: int, data: PublicKeyIn, conn: Conn, principal: Principal
) -> None:
    """Register the printer's RSA public key (PEM, >= 2048 bits) for wrapping its files."""
    await service.set_printer_key(conn, principal, printer_id, data.public_key_pem)


@get("/codes/{serial:str}/status", tags=["codes"])
async def code_status(
    serial: str, conn: Conn, principal: Principal, scheme: Scheme
) -> CodeStatusOut:
    """Lifecycle of a serial: issued_not_active, active, void or unknown (forged: 422,
    malformed: 400)."""
    if len(serial) > MAX_SERIAL:  # as the Rust core would say, without decoding a long text
        raise BadRequest(f"not a serial: at most {MAX_SERIAL} characters", code="malformed_serial")
    return await service.code_status(conn, principal, scheme, serial)


@get("/trace/{code:str}", tags=["trace"])
async def get_trace(code: str, read_conn: Conn, principal: Principal, scheme: Scheme) -> TraceOut:
    """Trace of a unit serial or a case SSCC (of a QR URL, the serial: a path segment holds
    no slash, so the whole URL cannot be given here): product, batch, state, events,
    containers and contents. 400 malformed, 422 forged, 404 not this brand's, or (below the
    brand) never in the caller's subtree; below the brand the history starts with the caller's
    part, and later movements of others come without their documents. Read from the read
    replica when there is one (app/replica.py)."""
    return await trace(read_conn, principal, scheme, code)


class PoolController(Controller):
    path = "/pools"
    tags = ["codes"]

    @post("/")
    async def create(
        self, data: PoolIn, conn: Conn, principal: Principal, scheme: Scheme
    ) -> PoolOut:
        """A pool of batches used up in order, optionally shared with a partner organisation."""
        return await allocations.create_pool(conn, principal, data, scheme.versions)

    @get("/")
    async def list_pools(
        self,
        conn: Conn,
        principal: Principal,
        scheme: Scheme,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[PoolOut]:
        """The pools the caller may allocate from, each with the codes left."""
        return await allocations.list_pools(conn, principal, page, per_page, scheme.versions)

    @get("/{pool_id:int}")
    async def get_one(
        self, pool_id: int, conn: Conn, principal: Principal, scheme: Scheme
    ) -> PoolOut:
        return await allocations.get_pool(conn, principal, pool_id, scheme.versions)


def _codes(
    state: State,
    scheme: Scheme,
    made: allocation_records.Allocated,
    status_code: int,
    head: bool = False,
) -> Stream:
    """An allocation's codes as a stream: ``SERIAL,PIN`` lines or its TCPF1 file (nothing is made
    for a HEAD: its body is dropped anyway), cut off once one of its batches is voided (asked
    before each piece, on the primary's pool: ``VoidWatch``)."""
    out = made.out
    still_live = VoidWatch(state.pool, (take.batch_no for take in made.takes))
    headers = {
        "X-Allocation-Id": out.id,
        "X-Allocation-Count": str(out.total),
        "X-Allocation-Replayed": "true" if made.replayed else "false",
        "Location": f"/allocations/{out.id}",
    }
    if out.format == "file":
        headers["Content-Disposition"] = f'attachment; filename="{out.id}.tcpf"'
        body = allocation_stream.encrypted(scheme, made, still_live)
        media_type = "application/octet-stream"
    else:
        body = allocation_stream.lines(scheme, made.takes, out.with_pins, still_live)
        media_type = "text/plain"  # Litestar adds "; charset=" + the encoding to text/*
    return Stream(
        iter(()) if head else body,
        media_type=media_type,
        encoding="us-ascii",
        headers=headers,
        status_code=status_code,
    )


class AllocationController(Controller):
    path = "/allocations"
    tags = ["codes"]

    @post(
        "/",
        status_code=201,
        response_description="the codes: SERIAL,PIN lines, or a TCPF1 file (format=file)",
    )
    async def create(
        self,
        data: AllocationIn,
        conn: Conn,
        principal: Principal,
        settings: Settings,
        scheme: Scheme,
        state: State,
    ) -> Stream:
        """Allocate N codes of a batch or pool, given out once (audited), streamed as they are
        made. Headers: ``X-Allocation-Id``, ``X-Allocation-Count``, ``X-Allocation-Replayed``,
        ``Location``. A retry with the same ``client_id`` and request answers 200 with the first
        allocation's codes; another request under the id: 409 ``client_id_reused``."""
        made = await allocations.allocate(conn, principal, settings, scheme, data)
        await conn.commit()  # the codes are given out (and the rows unlocked) before streaming
        return _codes(state, scheme, made, 200 if made.replayed else 201)

    @get("/")
    async def list_allocations(
        self,
        conn: Conn,
        principal: Principal,
        batch_no: int | None = None,
        pool_id: int | None = None,
        client_id: ClientIdParam = None,
        since: Since = None,
        until: Until = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[AllocationOut]:
        """The allocations the caller sees (brand staff: the brand's; printers and partners:
        those their organisation received), newest first, with their ranges."""
        return await allocation_records.list_allocations(
            conn, principal, batch_no=batch_no, pool_id=pool_id, client_id=client_id,
            since=since, until=until, page=page, per_page=per_page,
        )  # fmt: skip

    @get("/{allocation_id:str}")
    async def get_one(self, allocation_id: str, conn: Conn, principal: Principal) -> AllocationOut:
        """Who received the allocation, when, and its ranges (batch, first..last index)."""
        return await allocation_records.get_allocation(conn, principal, allocation_id)

    @get(
        "/{allocation_id:str}/codes",
        response_description="the same SERIAL,PIN lines, or a TCPF1 file for the same key",
    )
    async def codes(
        self,
        request: Request[Any, Any, Any],
        allocation_id: str,
        conn: Conn,
        principal: Principal,
        settings: Settings,
        scheme: Scheme,
        state: State,
    ) -> Stream:
        """The allocation's codes again, as first given (``codes.allocate``; audited
        ``fetch_codes``): the same lines, or a file that opens with the same passphrase or RSA
        key. Seen as ``GET /allocations/{id}`` is (404 otherwise)."""
        head = request.method == "HEAD"
        made = await allocation_records.fetch_codes(
            conn, principal, scheme, settings, allocation_id, audited=not head
        )
        await conn.commit()  # audited before the codes go out
        return _codes(state, scheme, made, 200, head=head)


@get("/codes/{serial:str}/allocation", tags=["codes"])
async def code_allocation(
    serial: str, conn: Conn, principal: Principal, scheme: Scheme
) -> CodeAllocationOut:
    """The allocation (and so the recipient) that received a serial: 404 ``not_allocated``."""
    if len(serial) > MAX_SERIAL:
        raise BadRequest(f"not a serial: at most {MAX_SERIAL} characters", code="malformed_serial")
    return await allocation_records.allocation_of(conn, principal, scheme, serial)
