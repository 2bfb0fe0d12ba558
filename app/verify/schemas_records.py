"""Shapes of the verification records list (``app.verify.listing``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from app.verify.schemas import Result

# the colour of a record in the console, from its result (the alerts' severities, plus ok)
Severity = Literal["ok", "info", "warning", "critical"]


class VerificationRow(msgspec.Struct, frozen=True, kw_only=True):
    """One stored verification: when, the answer (result, reason, its severity), the code as
    scanned and its product, the n-th query of the code, whether the PIN was given, where the IP
    was placed, the client address and the member of a points claim."""

    id: int
    at: datetime
    result: Result
    severity: Severity
    reason: str
    serial: str | None
    code_id: int | None
    product_id: int | None
    product_name: str | None
    queries: int
    pin_given: bool
    province: str | None
    city: str | None
    client_ip: str | None
    member_id: int | None
