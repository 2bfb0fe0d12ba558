"""Shapes of the field force: visit plans, nameplates, check-ins, reviews (SPEC F1–F3)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, ClassVar, Literal

import msgspec

from app.idempotency import ClientId
from app.textguard import VISIBLE

Period = Literal["quarter", "month", "week"]
PlanStatus = Literal["draft", "submitted", "approved", "returned"]
CheckinFlag = Literal["ok", "out_of_range", "no_store_position"]

Title = Annotated[str, msgspec.Meta(max_length=200)]
Note = Annotated[str, msgspec.Meta(max_length=1000)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=1000, pattern=VISIBLE)]
# the nameplate's code, or the whole URL of its QR code
NameplateText = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Score = Annotated[int, msgspec.Meta(ge=1, le=5)]
Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class _In(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Inputs: frozen, unknown fields refused."""


class PlanItemIn(_In, frozen=True, kw_only=True):
    store_id: Id
    planned_on: date
    note: Note = ""


class PlanIn(_In, frozen=True, kw_only=True):
    """A new plan (a draft): ``starts_on`` is the first day of its quarter, month or week
    (a Monday); every item's date lies within the period."""

    period: Period
    starts_on: date
    title: Title = ""
    items: Annotated[list[PlanItemIn], msgspec.Meta(max_length=500)] = []


class PlanEditIn(_In, frozen=True, kw_only=True):
    """A draft or returned plan's new title and items (the items are replaced)."""

    title: Title = ""
    items: Annotated[list[PlanItemIn], msgspec.Meta(max_length=500)] = []


class PlanReturnIn(_In, frozen=True, kw_only=True):
    reason: Reason


class PlanItemOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    store_id: int
    store_name: str
    store_erp_code: str
    planned_on: date
    note: str


class PlanOut(msgspec.Struct, frozen=True, kw_only=True):
    """A plan; ``supervisor_id`` is its rep's supervisor now, the one user who approves or
    returns it (so a client offers the decision to that user only)."""

    id: int
    rep_id: int
    rep: str
    supervisor_id: int | None
    period: Period
    starts_on: date
    ends_on: date
    title: str
    status: PlanStatus
    return_reason: str | None
    submitted_at: datetime | None
    decided_at: datetime | None
    decided_by: int | None
    created_at: datetime
    updated_at: datetime
    items: list[PlanItemOut] = []


class NameplateOut(msgspec.Struct, frozen=True, kw_only=True):
    """A store's nameplate: ``code`` is signed for this store only; ``url`` is the QR's text."""

    store_id: int
    store_name: str
    store_erp_code: str
    code: str
    url: str


class PositionIn(_In, frozen=True, kw_only=True):
    lat: Latitude
    lng: Longitude


class PositionOut(msgspec.Struct, frozen=True, kw_only=True):
    store_id: int
    lat: float | None
    lng: float | None


class RepOut(msgspec.Struct, frozen=True, kw_only=True):
    """A rep the caller's field lists can be filtered by (``rep_id``): its name as the lists
    show it (the display name, else the username)."""

    id: int
    name: str
    username: str
    status: str


class SupervisorIn(_In, frozen=True, kw_only=True):
    """The rep's supervisor (a user holding ``field.supervise`` in the same brand), or null."""

    supervisor_id: Id | None


class SupervisorOut(msgspec.Struct, frozen=True, kw_only=True):
    user_id: int
    supervisor_id: int | None


class CheckinIn(_In, frozen=True, kw_only=True):
    """A check-in: the nameplate scanned at the store and the phone's GPS fix.

    ``client_id``: the app's own id; sending it again answers the first check-in (200).
    ``store_id``, when given, must be the nameplate's store. ``client_at``: when the phone
    scanned (a check-in queued offline arrives later)."""

    client_id: ClientId
    nameplate: NameplateText
    lat: Latitude
    lng: Longitude
    accuracy: Annotated[float, msgspec.Meta(ge=0, le=100_000)]
    store_id: Id | None = None
    client_at: datetime | None = None
    plan_item_id: Id | None = None
    note: Note = ""


class CheckinOut(msgspec.Struct, frozen=True, kw_only=True):
    """``distance_m`` from the store's recorded position (null without one); ``flag``:
    ok (within ``radius_m``), out_of_range (kept, flagged), no_store_position."""

    id: int
    client_id: str
    rep_id: int
    rep: str
    store_id: int
    store_name: str
    store_erp_code: str
    at: datetime
    client_at: datetime | None
    lat: float
    lng: float
    accuracy_m: float
    distance_m: float | None
    radius_m: int
    flag: CheckinFlag
    in_range: bool | None
    plan_item_id: int | None
    note: str
    replayed: bool = False


class TrackOut(msgspec.Struct, frozen=True, kw_only=True):
    """A rep's day: the check-ins in time order (at most 1,000)."""

    rep_id: int
    day: date
    checkins: list[CheckinOut]


class ReviewIn(_In, frozen=True, kw_only=True):
    """A store review: shelf display and staff product knowledge scored 1–5, a comment, photos
    uploaded first (``POST /media/photos``, by the same user). ``client_id`` as for check-ins;
    ``client_at``: when the phone made it (a review queued offline with its check-in arrives
    later), checked as a check-in's."""

    # added after reviews were fingerprinted: left out of the fingerprint when not sent, so a
    # review recorded before it existed still replays (``app.idempotency``)
    fingerprint_late: ClassVar[tuple[str, ...]] = ("client_at",)

    client_id: ClientId
    store_id: Id
    shelf_score: Score
    knowledge_score: Score
    comment: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    photo_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=20)] = []
    checkin_id: Id | None = None
    client_at: datetime | None = None


class ReviewOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    client_id: str
    rep_id: int
    rep: str
    store_id: int
    store_name: str
    store_erp_code: str
    checkin_id: int | None
    at: datetime
    client_at: datetime | None
    shelf_score: int
    knowledge_score: int
    comment: str
    photo_ids: list[uuid.UUID]
    replayed: bool = False


class StoreScoreOut(msgspec.Struct, frozen=True, kw_only=True):
    """A store's reviews in the caller's view: how many, average scores, the last one's time
    (the phone's when it sent one)."""

    store_id: int
    store_name: str
    store_erp_code: str
    reviews: int
    shelf_avg: float
    knowledge_avg: float
    last_at: datetime
