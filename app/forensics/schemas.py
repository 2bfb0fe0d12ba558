"""Shapes of leak detection and fraud holds (B5)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

PartyKind = Literal["member", "clerk"]
HoldState = Literal["open", "released", "confirmed"]
HoldRule = Literal["shared_device", "distant_stores", "verified_elsewhere", "manual"]
SourceKind = Literal["export", "allocation"]


class HoldIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Put a member or a store clerk of the caller's brand on hold by hand."""

    party_kind: PartyKind
    party_id: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class DecisionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A reviewer's note on a release or a confirmation (optional)."""

    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class HoldClaims(msgspec.Struct, frozen=True, kw_only=True):
    """The hold's claims by what became of them: still held, credited on release, rejected."""

    held: int
    released: int
    rejected: int


class HoldOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    brand_id: int
    party_kind: PartyKind
    party_id: int
    party_name: str | None  # a clerk's username (a member: none, the phone is personal)
    rule: HoldRule
    evidence: dict[str, Any]
    note: str  # why it was put on hold (by hand; the ring detector's: empty)
    decision_note: str  # the reviewer's, on the release or confirmation
    state: HoldState
    created_by: int | None  # None: the ring detector
    created_at: datetime
    decided_by: int | None
    decided_at: datetime | None
    claims: HoldClaims


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """Who received a file or a code pack: a printer (the outer or inner print) or a partner."""

    part: str  # outer, inner (a printer file) or pack (an allocation)
    org_id: int | None
    name: str | None


class LeakOut(msgspec.Struct, frozen=True, kw_only=True):
    """A print file (an export) or a code pack (an allocation) with suspicious verifications."""

    source_kind: SourceKind
    source_id: str
    batch_no: int | None
    range_start: int | None  # an export's range (end exclusive); an allocation's: its total
    range_end: int | None
    recipients: list[Recipient]
    findings: int
    not_activated: int
    never_shipped: int
    out_of_region: int
    with_pin: int  # of them with a PIN entered: the inner print leaked too
    first_at: datetime
    last_at: datetime
    alert_id: int | None  # the newest leaked_file alert of the source


class LeakRunOut(msgspec.Struct, frozen=True, kw_only=True):
    """One run of the leak detector."""

    ran: bool  # false: another run held the lock
    scanned_from: datetime | None = None
    scanned_to: datetime | None = None
    findings: int = 0  # new findings attributed
    unattributed: int = 0  # suspicious verifications of codes in no file or pack
    alerts: int = 0  # alerts raised or updated
    failed: int = 0  # sources whose alert could not be raised (logged; tried again next run)


class RingRunOut(msgspec.Struct, frozen=True, kw_only=True):
    """One run of the ring detector."""

    ran: bool
    held: dict[str, int] = {}  # new holds by rule
    settled: int = 0  # held claims of holds decided meanwhile, settled now
    failed: int = 0  # the settling or rules that failed (logged; run again next time)
