"""Shapes of the packing line API (SPEC P1–P6)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.bodies import OffsetTime
from app.codes.scheme import CSET82_1_20
from app.localtime import check_day
from app.textguard import VISIBLE

Level = Literal["inner", "master", "pallet"]
# printable ASCII without '"' and '\\' (a scanner's own ids: UUIDs, device + counter, …)
ClientEventId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=80, pattern=r"^[!#-\[\]-~]+(?!\n)$")
]
ScanCode = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# GS1 CSET 82, as the lot is printed (AI 10) and B2B verification (LMS) compares and recalls it
Lot = Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=CSET82_1_20)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=VISIBLE)]

MAX_SCANS = 20_000  # items per upload


class LineContextIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the line is producing now (P1): every unit activated on it gets this."""

    product_id: int
    lot: Lot
    production_date: date

    def __post_init__(self) -> None:
        check_day(self.production_date, 31, "production_date")  # printed ahead: a month


class LineOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    org_id: int
    code: str
    product_id: int | None
    product_name: str | None
    spec: str | None
    lot: str | None
    production_date: date | None
    updated_at: datetime


class PackingRuleIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    level: Level
    quantity: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    # strict: a short or over-full container is rejected; else accepted with a warning
    strict: bool = True


class PackingRuleOut(msgspec.Struct, frozen=True, kw_only=True):
    product_id: int
    level: Level
    quantity: int
    strict: bool


class ScanIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One scan: a unit (serial, /c/ URL or Digital Link) or a container (SSCC, (00) or /00/).

    A unit is activated with the line's context. A container closes over the items scanned
    before it in the same upload (units for an inner case, cases for a master case or pallet)
    unless ``children`` names them, e.g. codes activated in an earlier upload.
    """

    id: ClientEventId
    code: ScanCode
    at: OffsetTime
    children: Annotated[list[ScanCode], msgspec.Meta(max_length=MAX_SCANS)] | None = None


class ScanUploadIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    scans: Annotated[list[ScanIn], msgspec.Meta(min_length=1, max_length=MAX_SCANS)]
    # the production context at scan time, when the line's has changed since (offline scanners)
    context: LineContextIn | None = None


ScanResult = Literal["ok", "duplicate", "rejected"]


class ScanOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Per-item result. ``reason`` (rejected) and ``warning`` (accepted) are stable codes.

    ``duplicate``: this client event id was accepted before, by an earlier upload (the scan that
    activated the unit or first packed the case, or one of the code's last 16 later accepted
    scans) or earlier in this upload; a scan sent twice in one upload answers as its first copy,
    so the copy of a rejected scan is rejected alike.

    reasons: malformed, forged, unknown, void, not_activated, wrong_brand, wrong_product,
    already_active, already_bound, duplicate_scan, id_reused, in_transit, not_held, not_a_factory,
    invalid_sscc, unknown_case, case_void, bad_level, empty_case, short_case, over_full_case,
    child_rejected.
    """

    id: str
    result: ScanResult
    kind: Literal["unit", "case"] | None = None
    code: str | None = None
    parent: str | None = None
    reason: str | None = None
    warning: str | None = None
    message: str | None = None


class ScanUploadOut(msgspec.Struct, frozen=True, kw_only=True):
    accepted: int
    duplicates: int
    rejected: int
    scans: list[ScanOut]


class UnpackIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Undo (P4): take these children (default: all) out of the container."""

    parent: ScanCode
    children: Annotated[list[ScanCode], msgspec.Meta(min_length=1, max_length=MAX_SCANS)] | None = (
        None
    )
    reason: Reason


class ReplaceIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Replace (P5): the new code takes the old one's place; the old one is voided."""

    old: ScanCode
    new: ScanCode
    reason: Reason = "QC"


class EditOut(msgspec.Struct, frozen=True, kw_only=True):
    event_ids: list[int]
    parent: str | None
    codes: list[str]


class RejectionOut(msgspec.Struct, frozen=True, kw_only=True):
    """A scan an upload rejected: the scanner's id, the code as read, why (a stable reason code
    of ``ScanOut``) and the message."""

    id: str
    kind: Literal["unit", "case"] | None = None
    code: str | None = None
    reason: str | None = None
    message: str | None = None


class UploadOut(msgspec.Struct, frozen=True, kw_only=True):
    """One recent upload of a line (``app.packing.uploads``): when, by whom, its counts, and its
    rejected scans (the first ``rejections_kept``; ``rejected`` counts them all)."""

    at: datetime
    user_id: int | None
    username: str | None
    scans: int
    accepted: int
    duplicates: int
    rejected: int
    rejections: list[RejectionOut]
