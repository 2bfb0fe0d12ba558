"""Shapes of consumer and partner verification (SPEC V1–V5)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

# The structs of the hot path are gc=False: they hold no reference cycles, and verifications
# allocate many of them (the cyclic GC need not track, nor walk, any).

Lang = Literal["zh", "en"]
# ``unconfirmed``: a real code scanned without its PIN (reason ``pin_required``) — the label may
# be a copy, so it is never called genuine before the PIN proves the pack.
Result = Literal["genuine", "unconfirmed", "suspicious", "not_genuine", "wrong_pin", "locked"]


class Gps(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lng: Annotated[float, msgspec.Meta(ge=-180, le=180)]


class VerifyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, gc=False):
    # the serial, or the whole QR content (short form or GS1 Digital Link URI)
    serial: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    pin: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4,10}(?!\n)$")] | None = None
    client_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    gps: Gps | None = None
    lang: Lang = "zh"


class ProductInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    id: int
    name: str
    spec: str
    gtin: str | None
    image_url: str | None
    video_url: str | None


class VerifyOut(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The answer. ``result`` is what a consumer needs; ``reason`` says why, in a stable code.

    results: genuine (the PIN proved it), unconfirmed (a real code without its PIN: the label
    may be a copy; reason pin_required), suspicious, not_genuine, wrong_pin, locked.

    reasons: first_query, repeat_query, over_threshold, region_jump, never_shipped,
    not_activated, forged, unknown, void, malformed, wrong_product (a Digital Link naming
    another product's GTIN than the unit's), wrong_pin, locked (the code), client_locked (too
    many wrong PINs from the client over all codes), pin_required.
    """

    result: Result
    reason: str
    message: str
    serial: str | None = None
    product: ProductInfo | None = None
    lot: str | None = None
    production_date: str | None = None
    queries: int = 0
    first_query_at: datetime | None = None
    first_query_place: str | None = None
    pin_attempts_left: int | None = None
    retry_after: int | None = None


class AlertOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    at: datetime
    last_at: datetime
    brand_id: int
    org_id: int
    kind: str
    severity: str
    code_id: int | None
    serial: str | None
    message: str
    details: dict[str, object]
    occurrences: int
    acknowledged_at: datetime | None
    acknowledged_by: int | None
    # triage (app/triage/verdicts.py): true_positive / false_positive, or null (untriaged)
    verdict: Literal["true_positive", "false_positive"] | None = None
    verdict_note: str | None = None
    verdict_at: datetime | None = None
    verdict_by: int | None = None
    verdict_revision: int = 0  # PUT /alerts/{id}/verdict's expected_revision
