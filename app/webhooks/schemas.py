"""Request and response bodies of the webhooks endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
Description = Annotated[str, msgspec.Meta(max_length=200)]
Kind = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Kinds = Annotated[list[Kind], msgspec.Meta(min_length=1, max_length=20)]
Overlap = Annotated[int, msgspec.Meta(ge=0, le=30 * 86400)]
DeliveryState = Literal["pending", "sending", "delivered", "dead"]


class Input(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Request bodies: unknown fields are refused."""


class SubscriptionIn(Input, frozen=True):
    url: Url
    event_kinds: Kinds
    description: Description = ""
    org_id: int | None = None  # whose subtree's events; default: the caller's organisation


class SubscriptionPatch(Input, frozen=True):
    url: Url | msgspec.UnsetType = msgspec.UNSET
    event_kinds: Kinds | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class RotateIn(Input, frozen=True):
    overlap_seconds: Overlap | None = None  # default: WEBHOOK_ROTATION_OVERLAP_SECONDS


class ReplayRangeIn(Input, frozen=True):
    """Send again every delivery of the subscription created in [``from_``, ``to``)."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    state: DeliveryState | None = None  # only deliveries in this state (e.g. dead)
    # an answer's ``next_after_id``: of the deliveries made at ``from``, those after this one
    after_id: Annotated[int, msgspec.Meta(ge=0)] | None = None


class SubscriptionOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    org_id: int
    url: str
    description: str
    event_kinds: list[str]
    active: bool
    # the last time a rotated-out secret signs (the latest of ``previous_secrets_until``)
    previous_secret_until: datetime | None
    # each rotated-out secret still signing beside the current one: until when, newest first
    previous_secrets_until: list[datetime]
    created_at: datetime
    updated_at: datetime
    secret: str | None = None  # only in the answer of a creation or a rotation


class AttemptOut(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None


class DeliveryOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    subscription_id: int
    webhook_id: str  # the webhook-id header (the same for every attempt and replay)
    event_kind: str
    occurred_at: datetime | None  # None: a time no client could read (set aside by the sender)
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    replay_of: int | None
    created_at: datetime
    log: list[AttemptOut] = msgspec.field(default_factory=list)


class ReplayOut(msgspec.Struct, frozen=True, kw_only=True):
    """``next_from``: when the range held more than 10,000 deliveries, the time of the first
    left out — replay again from there; null when the whole range was replayed.
    ``next_after_id``: set when more than 10,000 were made at ``from`` itself — send it back
    as ``after_id`` with the same ``from``."""

    replayed: int
    delivery_ids: list[int]
    next_from: datetime | None = None
    next_after_id: int | None = None
