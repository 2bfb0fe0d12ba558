"""Shapes of anti-diversion inspection (SPEC D1–D5)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from app.bodies import SCAN_MAX
from app.idempotency import ClientId
from app.textguard import VISIBLE

Result = Literal["in_channel", "diverted", "unknown_route", "counterfeit"]
# the worst first: a scan's overall result is the worst of its units
RESULTS: tuple[Result, ...] = ("counterfeit", "diverted", "unknown_route", "in_channel")

# a scan of something: blanks only (spaces, a lone BOM, zero-width marks: ``VISIBLE``) read
# nothing, and are refused as invalid, never recorded as a counterfeit with an empty serial and a
# critical fake alert (a probe); whatever else a scanner sends is read and judged
ScannedCode = Annotated[str, msgspec.Meta(min_length=1, max_length=SCAN_MAX, pattern=VISIBLE)]
ErpCode = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+(?!\n)$")
]
Note = Annotated[str, msgspec.Meta(max_length=1000)]
PhotoUrl = Annotated[str, msgspec.Meta(max_length=1000, pattern=r"^https?://[^\s]+(?!\n)$")]


class Gps(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)]


class InspectionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A scan on a store shelf: a unit serial (or the whole QR content) or a case SSCC.

    The store by ``store_id`` or by its nameplate code (the store's ERP code, ``store_code``).
    ``client_id``: the app's own id of this scan; sending it again answers the first result.
    ``client_at``: when the phone scanned (a scan queued offline arrives later), with its zone;
    at most 10 minutes ahead of the server's clock and 30 days old, as a field check-in's.
    """

    # added after scans were fingerprinted: left out of the fingerprint when not sent, so a
    # scan recorded before it existed still replays (``app.idempotency``)
    fingerprint_late: ClassVar[tuple[str, ...]] = ("client_at",)

    code: ScannedCode
    gps: Gps
    store_id: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None = None
    store_code: ErpCode | None = None
    note: Note = ""
    photo_url: PhotoUrl | None = None
    photo_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=10)] = []
    client_id: ClientId | None = None
    client_at: datetime | None = None


class OrgRef(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    erp_code: str
    province_name: str | None = None
    city_name: str | None = None


class ProductRef(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str


class InspectorOut(msgspec.Struct, frozen=True, kw_only=True):
    """Someone who made inspection records the caller sees: the console's inspector filter."""

    id: int
    username: str
    display_name: str
    records: int  # of those the caller sees, within the last year
    last_at: datetime  # when the newest of them was recorded


class InspectionOut(msgspec.Struct, frozen=True, kw_only=True):
    """One unit inspected (one record of the log).

    ``reason`` says why: designated_store, agent_area (in channel); outside_agent_area
    (diverted); never_shipped, no_channel, returned_to_stock (unknown route: no agent answers
    for it); forged, malformed, unknown, void, destroyed, not_activated, unknown_case,
    case_void, not_packed, invalid_sscc (counterfeit).
    """

    id: int
    scan_id: int
    at: datetime  # when the server recorded it
    client_at: datetime | None  # when the phone scanned, if it said (a scan queued offline)
    store: OrgRef
    inspector_id: int | None
    inspector: str | None
    serial: str
    product: ProductRef | None
    lot: str | None
    result: Result
    reason: str
    shipped_to: OrgRef | None  # the source agent: the designated channel the unit was shipped to
    designated_store: OrgRef | None
    document_no: str | None  # the outbound that shipped it to that agent
    store_document_no: str | None  # the outbound to its designated store
    case: str | None  # the case scanned, for a case scan
    gps: Gps
    note: str
    photo_url: str | None
    photo_ids: list[uuid.UUID] = []


class ScanOut(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a scan: its overall (worst) result, counts and one record per unit."""

    id: int
    at: datetime  # when the server recorded it
    client_at: datetime | None  # when the phone scanned, if it said
    store: OrgRef
    scanned: str
    kind: Literal["unit", "case"]
    result: Result
    units: int
    counts: dict[str, int]
    event_id: int
    replayed: bool = False
    items: list[InspectionOut]


class StoreDay(msgspec.Struct, frozen=True, kw_only=True):
    """Units inspected at one store on one day, by result."""

    day: date
    store: OrgRef
    inspections: int
    in_channel: int
    diverted: int
    unknown_route: int
    counterfeit: int


class LeakPlace(msgspec.Struct, frozen=True, kw_only=True):
    store: OrgRef
    units: int


class AgentLeak(msgspec.Struct, frozen=True, kw_only=True):
    """The leak report of one source agent: its units inspected, those found outside its area
    (diverted) and where they were found."""

    agent: OrgRef
    inspected: int
    diverted: int
    found_at: list[LeakPlace]


class SummaryOut(msgspec.Struct, frozen=True, kw_only=True):
    by: Literal["store", "agent"]
    date_from: date
    date_to: date
    stores: list[StoreDay] = []
    agents: list[AgentLeak] = []


BATCH_MAX = 1000  # scans in one POST /inspections/batch


class InspectionBatchIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Queued scans sent together (the staff app's offline queue): each with its ``client_id``."""

    items: list[InspectionIn]


class ItemError(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str
    details: Any = None


class BatchItemOut(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to one scan of a batch, as ``POST /inspections`` would have answered it:
    ``status`` 201 (recorded), 200 (its client id was recorded before: the first answer), 422
    ``counterfeit`` (recorded; ``scan`` holds it) or another 4xx with ``error`` (not recorded)."""

    client_id: str | None
    status: int
    scan: ScanOut | None = None
    error: ItemError | None = None


class InspectionBatchOut(msgspec.Struct, frozen=True, kw_only=True):
    recorded: int  # scans recorded by this request
    replayed: int  # scans whose client id had been recorded before
    refused: int  # scans not recorded (an error)
    items: list[BatchItemOut]
