"""Shapes of the stores' rebate statements (issue 16 item 5): generation, the statement and its
lines, and the bodies of the transitions."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.paging import Page
from app.textguard import VISIBLE

StatementStatus = Literal["pending", "approved", "paid", "rejected"]
# A calendar month of Asia/Shanghai, 2000-01 to 2099-12.
Month = Annotated[
    str, msgspec.Meta(pattern=r"^20[0-9]{2}-(0[1-9]|1[0-2])(?!\n)$", examples=["2025-03"])
]
# One line of printable text with something in it: no control character at all (not even a tab
# or a line break, which the edge lets through for free text), not blank — one character a reader
# sees (a probe: zero-width spaces alone were a paid statement's reference, never to be changed).
PaymentRef = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=100, pattern=rf"^(?=.*{VISIBLE})[^\x00-\x1f\x7f]+(?!\n)$"
    ),
]
# Free text: line breaks and tabs pass (the edge refuses the other control characters), not blank.
# not blank: one character a reader sees (a zero-width space alone is none)
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=VISIBLE)]


class Input(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are refused."""


class GenerateIn(Input, frozen=True, kw_only=True):
    """The period to settle: ``period`` (a month, ``YYYY-MM``) or ``from`` and ``to`` (dates,
    both inclusive), Asia/Shanghai calendar; ``store_id``: only this store."""

    period: Month | None = None
    date_from: date | None = msgspec.field(default=None, name="from")
    date_to: date | None = msgspec.field(default=None, name="to")
    store_id: int | None = None


class PayIn(Input, frozen=True, kw_only=True):
    """How the rebate was paid: the payment's reference (one line, 1–100 characters) and its
    date (not in the future)."""

    payment_ref: PaymentRef
    paid_on: date


class RejectIn(Input, frozen=True, kw_only=True):
    reason: Reason


class StatementOut(msgspec.Struct, frozen=True, kw_only=True):
    """A store's statement of rebates for a period: its claims and their amount (yuan).

    ``period_from`` and ``period_to`` are the period's first and last day (inclusive);
    ``period`` is ``YYYY-MM`` when the period is exactly one calendar month."""

    id: int
    store_id: int
    store_name: str
    store_code: str | None
    period: str | None
    period_from: date
    period_to: date
    claims: int
    amount: float
    status: StatementStatus
    created_by: int | None
    created_at: datetime
    approved_by: int | None
    approved_at: datetime | None
    paid_by: int | None
    paid_at: datetime | None
    payment_ref: str | None
    paid_on: date | None
    rejected_by: int | None
    rejected_at: datetime | None
    reject_reason: str | None


class GenerateOut(msgspec.Struct, frozen=True, kw_only=True):
    """The statements a generation created (one per store with unsettled claims in the period;
    none when there were none) and their totals."""

    period_from: date
    period_to: date
    statements: list[StatementOut]
    claims: int
    amount: float


class ClaimLine(msgspec.Struct, frozen=True, kw_only=True):
    """One claim of a statement: the unit (its serial when the code is one of the brand's
    batches), product, clerk, agent and amount."""

    claim_id: int
    serial: str | None
    claimed_at: datetime
    product_id: int
    product_no: str | None
    product_name: str | None
    clerk_id: int
    clerk_name: str | None
    agent_id: int | None
    amount: float


class StatementDetail(msgspec.Struct, frozen=True, kw_only=True):
    """A statement and one page of its claims (oldest first)."""

    statement: StatementOut
    claims: Page[ClaimLine]
