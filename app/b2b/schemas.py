"""Shapes of B2B verification (SPEC B8): the GS1 Lightweight Messaging Standard's request and
response, the brand's lot data, and the request log.

Field names are the standard's (camelCase): a partner's VRS client sends and reads them as they
are. Values the Structs cannot check alone (check digits, dates) are checked in
``app.b2b.service`` with codes of their own.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.codes.scheme import CSET82_1_20  # GS1 CSET 82 (AI 21 and AI 10), 1–20 characters

SerialNumber = Annotated[str, msgspec.Meta(pattern=CSET82_1_20)]
LotNumber = Annotated[str, msgspec.Meta(pattern=CSET82_1_20)]
GtinText = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{8}(?!\n)$|^[0-9]{12,14}(?!\n)$")]
GlnText = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{13}(?!\n)$")]
# YYMMDD (AI 17; DD 00: the month's last day) or an ISO date YYYY-MM-DD
ExpiryText = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9]{6}(?!\n)$|^[0-9]{4}-[0-9]{2}-[0-9]{2}(?!\n)$")
]
# the standard's contexts are words such as dscsaSaleableReturn; any such word is recorded
Context = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}(?!\n)$")]

#: The failure reasons answered (``verificationFailureReason``): the standard's, plus
#: ``No_match_GTIN`` (a GTIN of no product of the brand — also another brand's).
FailureReason = Literal[
    "No_match_GTIN",
    "No_match_GTIN_Serial",
    "No_match_GTIN_Serial_Lot",
    "No_match_GTIN_Serial_Expiry",
    "No_match_GTIN_Serial_Lot_Expiry",
    "Not_for_re-distribution",
]
#: ``additionalInfo``: the standard's ``Recalled`` and ``Expired`` (also a unit returned expired),
#: plus the unit's own state when it is no saleable goods: ``Decommissioned`` (voided or replaced),
#: ``Destroyed``, ``Sold`` (sold or given out to the market: it left the supply chain),
#: ``Damaged`` (returned damaged; not the standard's ``Suspect``: README).
AdditionalInfo = Literal["Recalled", "Expired", "Decommissioned", "Destroyed", "Sold", "Damaged"]


class LmsVerifyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A verification request (the standard's query parameters, as a JSON object)."""

    gtin: GtinText
    serialNumber: SerialNumber  # the standard's names
    lotNumber: LotNumber
    expirationDate: ExpiryText
    requestorGLN: GlnText | None = None
    context: Context = "verify"
    corrUUID: uuid.UUID | None = None  # none: one is made, and nothing replays


class LmsData(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    verified: bool
    verificationFailureReason: FailureReason | None = None
    additionalInfo: AdditionalInfo | None = None


class LmsVerifyOut(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The standard's response: ``data.verified`` and, when false, why."""

    verificationTimestamp: datetime
    corrUUID: uuid.UUID
    data: LmsData
    responderGLN: str | None = None  # the brand's GLN, when one is on record


class LotIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the brand declares of a lot: its expiry (YYMMDD or ISO; null: none on record) and
    whether it is recalled (with a note)."""

    expirationDate: ExpiryText | None = None
    recalled: bool = False
    recall_note: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class LotOut(msgspec.Struct, frozen=True, kw_only=True):
    product_id: int
    gtin: str
    lot: str
    expiry: date | None
    recalled: bool
    recalled_at: datetime | None
    recall_note: str | None
    updated_at: datetime


class ResponderIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    gln: GlnText


class ResponderOut(msgspec.Struct, frozen=True, kw_only=True):
    gln: str | None


class LmsRequestOut(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded B2B verification. ``detail`` (brand staff with ``reports.read`` only): the
    check that decided it — matched, not_our_gtin, malformed, forged, unknown, not_activated,
    wrong_product, lot, expiry, lot_expiry, recalled, void, destroyed, sold, returned_damaged,
    returned_expired."""

    id: int
    at: datetime
    org_id: int
    org_name: str
    api_key_id: int | None
    user_id: int | None
    requestor_gln: str | None
    context: str
    corr_uuid: uuid.UUID
    gtin: str
    serial_number: str
    lot_number: str
    expiration_date: date
    verified: bool
    failure_reason: str | None
    additional_info: str | None
    product_id: int | None
    detail: str | None
