"""Shapes of alert triage (verdicts, precision) and of the evidence key (SPEC B6)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.textguard import VISIBLE

Verdict = Literal["true_positive", "false_positive"]
VerdictFilter = Literal["untriaged", "true_positive", "false_positive"]
# a note a person reads in a court file: one visible character at least, a page at most
Note = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=VISIBLE)]


class VerdictIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A verdict on an alert. ``expected_revision``: the verdict's revision the marker saw (0:
    none yet); another one now is 409 ``verdict_changed`` (someone marked it meanwhile). Left
    out, the last marker's verdict stands."""

    verdict: Verdict
    note: Note
    expected_revision: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None


class VerdictOut(msgspec.Struct, frozen=True, kw_only=True):
    alert_id: int
    verdict: Verdict
    note: str
    revision: int  # 1 for the first verdict, + 1 for each change
    decided_at: datetime
    decided_by: int | None  # the user (an API key's maker)
    decided_by_name: str | None
    decided_key: int | None  # the API key, when one marked it


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """Alerts raised in the period: triaged true and false positives, untriaged, still open,
    and the precision true / (true + false) — null before any verdict."""

    alerts: int
    true_positive: int
    false_positive: int
    untriaged: int
    open: int
    precision: float | None


class RulePrecision(Counts, frozen=True, kw_only=True):
    """One rule of a kind: the ``reason`` its alerts' details name (``over_threshold``,
    ``region_jump``, ``forged``, …; null for a kind whose alerts name none, ``low_stock``), and
    the settings that tune it now (environment variable → value), when it has any."""

    rule: str | None
    settings: dict[str, int | bool] | None


class KindPrecision(Counts, frozen=True, kw_only=True):
    kind: str
    rules: list[RulePrecision]


class PrecisionOut(msgspec.Struct, frozen=True, kw_only=True):
    date_from: date = msgspec.field(name="from")
    date_to: date = msgspec.field(name="to")
    total: Counts
    kinds: list[KindPrecision]


class EvidenceKeyOut(msgspec.Struct, frozen=True, kw_only=True):
    """The evidence packs' public key: its id, the PEM (SubjectPublicKeyInfo), the 32 raw bytes
    in base64url, and the same as a JWK (RFC 8037)."""

    key_id: str
    algorithm: Literal["Ed25519"]
    format: str
    canonicalization: str
    public_key_pem: str
    public_key: str
    jwk: dict[str, str]
