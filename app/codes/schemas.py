"""Shapes of code batches, exports and jobs (SPEC C2–C6)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from app.idempotency import ClientId
from app.textguard import VISIBLE

MAX_BATCH = 1 << 32
BatchSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)]
RequestKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+(?!\n)$")
]
BatchState = Literal["issued", "exported", "active", "void"]


class BatchIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    size: BatchSize
    printer_id: int
    product_id: int | None = None
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""
    # Idempotency: a retried create with the same key returns the batch already made.
    request_key: RequestKey | None = None


class VoidIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # read by everyone tracing the batch's units: one visible character at least (a probe:
    # batches voided for "   ", U+200B or U+FEFF alone)
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=VISIBLE)]


class BatchOut(msgspec.Struct, frozen=True, kw_only=True):
    batch_no: int
    brand_id: int
    printer_id: int
    product_id: int | None
    size: int
    key_version: int
    state: str
    note: str
    request_key: str | None
    created_by: int | None
    created_at: datetime
    voided_at: datetime | None
    void_reason: str | None


# No blank at either end: `tracecode export decrypt --passphrase-file` strips the file's text
# (its trailing newline), so such a passphrase could not open its file from one.
Passphrase = Annotated[
    str, msgspec.Meta(min_length=12, max_length=1024, pattern=r"^\S(?:.*\S)?(?!\n)$")
]


class PartIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One printer file: who gets it (default: the batch's printer) and how its key is wrapped.

    With a passphrase the key is wrapped by scrypt; without one, by the printer's registered RSA
    public key. The passphrase is used once and never stored or logged.
    """

    # an organisation id (a probe: 0 was taken for "the batch's printer" without a word)
    printer_id: Annotated[int, msgspec.Meta(ge=1)] | None = None
    passphrase: Passphrase | None = None


class ExportIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    start: Annotated[int, msgspec.Meta(ge=0, le=MAX_BATCH)] | None = None
    end: Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)] | None = None
    outer: PartIn = PartIn()
    inner: PartIn = PartIn()


class CaseExportIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    cases: PartIn = PartIn()


class PartOut(msgspec.Struct, frozen=True):
    printer_id: int
    method: str


ExportOrder = Literal["oldest", "newest"]  # the order of a batch's exports listed


class ExportOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    batch_no: int | None
    case_batch_id: int | None
    range_start: int
    range_end: int
    total: int
    state: str
    progress: int
    parts: dict[str, PartOut]
    files: dict[str, Any]
    error: str | None
    attempts: int
    created_by: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


CaseLevel = Literal["inner", "master", "pallet"]


class CaseBatchIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    level: CaseLevel
    size: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
    printer_id: int
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""
    request_key: RequestKey | None = None


class CaseBatchOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    brand_id: int
    printer_id: int
    level: str
    extension_digit: int
    company_prefix: str
    first_ref: int
    size: int
    first_sscc: str
    last_sscc: str
    state: str
    note: str
    created_by: int | None
    created_at: datetime


class PublicKeyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    public_key_pem: Annotated[str, msgspec.Meta(min_length=100, max_length=20_000)]


class CodeStatusOut(msgspec.Struct, frozen=True, kw_only=True):
    serial: str
    status: str  # issued_not_active | active | void | unknown
    batch_no: int | None
    index: int | None
    key_version: int | None


class PrinterOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    erp_code: str
    status: str
    has_public_key: bool


class BatchDetailOut(BatchOut, frozen=True, kw_only=True):
    """One batch as shown to a planner: the row plus every export made of it."""

    exports: list[ExportOut]


# Serial allocation (issue 19 item 4) ------------------------------------------------------------

# read by the partners it is shared with (GET /pools): one visible character at least (a probe:
# pools named " ", U+200B, U+FEFF and U+3000 side by side)
PoolName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=VISIBLE)]
AllocationFormat = Literal["text", "file"]


class PoolIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A pool: batches used up in the order given, optionally shared with an organisation."""

    name: PoolName
    batches: Annotated[
        list[Annotated[int, msgspec.Meta(ge=1)]], msgspec.Meta(min_length=1, max_length=1000)
    ]
    recipient_org_id: int | None = None


class PoolBatchOut(msgspec.Struct, frozen=True, kw_only=True):
    batch_no: int
    size: int
    allocated: int
    remaining: int  # 0 for a void batch
    state: str


class PoolOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    brand_id: int
    name: str
    recipient_org_id: int | None
    batches: list[PoolBatchOut]
    remaining: int
    created_by: int | None
    created_at: datetime


class AllocationIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """N codes of one batch (``batch_no``) or of a pool (``pool_id``): exactly one of the two.

    ``format="text"`` streams ``SERIAL,PIN`` lines (``SERIAL`` without ``pins``);
    ``format="file"`` streams the same lines as an encrypted printer file (TCPF1) wrapped for the
    recipient organisation's RSA public key, or for ``passphrase`` (a passphrase with
    ``format="text"`` is refused: 400 ``passphrase_needs_file``). With ``partial`` an
    allocation of more than is left gets what is left; without it, 409 ``not_enough_codes``.

    ``client_id`` makes a retry safe: the same id and request again answer the first allocation
    (its codes again, 200); the same id with another request is 409 ``client_id_reused``. An API
    key's client ids are its own; a user's are shared by the user's organisation.
    """

    # over TRACECODE_ALLOCATION_MAX (at most 2**32): 400 count_over_maximum, whatever the size
    count: Annotated[int, msgspec.Meta(ge=1)]
    batch_no: int | None = None
    pool_id: int | None = None
    partial: bool = False
    format: AllocationFormat = "text"
    pins: bool = True
    passphrase: Passphrase | None = None
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""
    client_id: ClientId | None = None


class AllocationRangeOut(msgspec.Struct, frozen=True, kw_only=True):
    batch_no: int
    first_index: int
    last_index: int  # inclusive
    count: int


class AllocationOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    brand_id: int
    pool_id: int | None
    recipient_org_id: int
    requested: int
    total: int
    format: str
    with_pins: bool
    note: str
    created_by: int | None
    api_key_id: int | None
    client_id: str | None
    created_at: datetime
    ranges: list[AllocationRangeOut]


class CodeAllocationOut(msgspec.Struct, frozen=True, kw_only=True):
    """Which allocation gave out a serial: the code's batch and index, and the allocation."""

    serial: str
    batch_no: int
    index: int
    allocation: AllocationOut
