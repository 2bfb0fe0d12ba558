"""Shapes of code batches, exports and jobs (SPEC C2–C6)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

MAX_BATCH = 1 << 32
BatchSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)]
RequestKey = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$")]
BatchState = Literal["issued", "exported", "active", "void"]


class BatchIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    size: BatchSize
    printer_id: int
    product_id: int | None = None
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""
    # Idempotency: a retried create with the same key returns the batch already made.
    request_key: RequestKey | None = None


class VoidIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


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
