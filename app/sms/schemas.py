"""Request and response bodies of the SMS endpoints (callbacks, opt-outs, templates, campaigns)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.idempotency import ClientId
from app.members.schemas import AgeBand
from app.textguard import VISIBLE

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+(?!\n)$")]
Body = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=VISIBLE)]
Text = Annotated[str, msgspec.Meta(max_length=200)]
Phone = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class Input(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Request bodies: unknown fields are refused."""


# -- callbacks from the gateway -------------------------------------------------------------


class DeliveryReport(Input, frozen=True):
    message_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    status: Literal["delivered", "undelivered"]
    error: Text | None = None
    # when it was delivered; without an offset (as Chinese gateways send it): Beijing time
    at: datetime | None = None


class DeliveryReportsIn(Input, frozen=True):
    reports: Annotated[list[DeliveryReport], msgspec.Meta(min_length=1, max_length=1000)]


class DeliveryReportsOut(msgspec.Struct, frozen=True, kw_only=True):
    updated: int  # messages whose state changed
    unknown: int  # message ids of no row of this provider (or already final)


class Reply(Input, frozen=True):
    """An inbound SMS: the phone it came from and its text ("TD" opts out of marketing)."""

    phone: Phone
    text: Annotated[str, msgspec.Meta(max_length=500)]
    brand_id: int | None = None  # when the gateway knows which brand's number was answered


class RepliesIn(Input, frozen=True):
    replies: Annotated[list[Reply], msgspec.Meta(min_length=1, max_length=1000)]


class RepliesOut(msgspec.Struct, frozen=True, kw_only=True):
    opted_out: int  # (brand, phone) pairs newly opted out
    ignored: int  # replies that are not an opt-out, or from a phone no brand has written to


# -- opt-outs ---------------------------------------------------------------------------------


class OptOutOut(msgspec.Struct, frozen=True, kw_only=True):
    phone: str  # masked unless the caller holds members.read_phone
    source: Literal["reply", "api", "member"]
    at: datetime


# -- templates --------------------------------------------------------------------------------


class TemplateIn(Input, frozen=True):
    name: Name
    body: Body
    provider_template_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class TemplatePatch(Input, frozen=True):
    body: Body | msgspec.UnsetType = msgspec.UNSET
    provider_template_id: Annotated[str, msgspec.Meta(max_length=64)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )


class TemplateOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    body: str
    placeholders: list[str]
    provider_template_id: str | None
    created_at: datetime
    updated_at: datetime


# -- campaigns --------------------------------------------------------------------------------


class AudienceFilter(Input, frozen=True):
    """Who receives a campaign. Members: any of ``provinces`` and ``age_bands`` (empty: all),
    last points claim in [``last_claim_after``, ``last_claim_before``) (``never_claimed`` for
    members who never claimed). Store managers: users with a phone in the stores of the
    caller's subtree (``org_id``: of that organisation's subtree), in ``provinces`` if given."""

    provinces: Annotated[list[Text], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )
    age_bands: Annotated[list[AgeBand], msgspec.Meta(max_length=6)] = msgspec.field(
        default_factory=list
    )
    last_claim_after: date | None = None
    last_claim_before: date | None = None
    never_claimed: bool = False
    org_id: int | None = None


class CampaignIn(Input, frozen=True):
    template_id: int
    audience: Literal["members", "store_managers"]
    filter: AudienceFilter = msgspec.field(default_factory=AudienceFilter)
    variables: Annotated[dict[Name, Text], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=dict
    )
    client_id: ClientId | None = None  # 1–64 printable ASCII, as every client id
    dry_run: bool = False  # count the audience, send nothing


class CampaignOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int | None  # None for a dry run
    template_id: int
    audience: str
    filter: AudienceFilter
    variables: dict[str, str]
    recipients: int  # messages queued (or, for a dry run, that would be)
    skipped: int  # opted out, or sent marketing too recently
    created_at: datetime | None
    # outbox rows per state (GET of one campaign)
    states: dict[str, int] = msgspec.field(default_factory=dict)  # (GET of one campaign)
