"""Shapes of lucky draws (扫码抽奖, SPEC B4): campaigns and their prizes, a member's draw, the
campaign's results."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.bodies import AwareTime
from app.catalog.schemas import Name
from app.verify.schemas import VerifyOut

PrizeKind = Literal["points", "voucher", "gift"]
# cancelled: a voucher or gift still pending when its unit was returned (``app.draws.returns``)
FulfilStatus = Literal["none", "credited", "pending", "fulfilled", "cancelled"]
# drawn: as ever; under_review: the member is on a fraud hold (``app.forensics.holds``): the
# code is taken, no prize drawn yet; rejected: a reviewer confirmed the hold (never drawn)
DrawStatus = Literal["drawn", "under_review", "rejected"]
_STATUS: dict[str | None, DrawStatus] = {
    None: "drawn",
    "released": "drawn",
    "held": "under_review",
    "rejected": "rejected",
}
CampaignStatus = Literal["active", "stopped"]
Province = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
Weight = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
Quantity = Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
DailyCap = Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
PrizePoints = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
ProductIds = Annotated[list[int], msgspec.Meta(min_length=1, max_length=200)]
Provinces = Annotated[list[Province], msgspec.Meta(max_length=40)]
Note = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
# the prizes of one campaign, at its creation and added later (``POST /draws/{id}/prizes``: 422
# ``too_many_prizes``): the campaign lists them whole and each draw round locks them all
MAX_PRIZES = 50


class Input(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are refused."""


class DrawPrizeIn(Input, frozen=True, kw_only=True):
    """A prize: ``points`` (only for kind ``points``: credited to the member's ledger),
    ``quantity`` its stock, ``weight`` its odds against the other prizes' and the campaign's
    ``no_prize_weight``; ``daily_cap``: at most that many given per day (Asia/Shanghai)."""

    name: Name
    kind: PrizeKind
    quantity: Quantity
    weight: Weight
    points: PrizePoints | None = None
    daily_cap: DailyCap | None = None


class DrawPrizePatch(Input, frozen=True, kw_only=True):
    """A prize changed: a new ``quantity`` moves the remaining stock by the difference (never
    below what was given)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    quantity: Quantity | msgspec.UnsetType = msgspec.UNSET
    weight: Weight | msgspec.UnsetType = msgspec.UNSET
    points: PrizePoints | msgspec.UnsetType = msgspec.UNSET
    daily_cap: DailyCap | msgspec.UnsetType | None = msgspec.UNSET


class DrawCampaignIn(Input, frozen=True, kw_only=True):
    name: Name
    starts_at: AwareTime
    ends_at: AwareTime
    product_ids: ProductIds
    no_prize_weight: Weight
    prizes: Annotated[list[DrawPrizeIn], msgspec.Meta(max_length=MAX_PRIZES)]
    provinces: Provinces = msgspec.field(default_factory=list)


class DrawCampaignPatch(Input, frozen=True, kw_only=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    starts_at: AwareTime | msgspec.UnsetType = msgspec.UNSET
    ends_at: AwareTime | msgspec.UnsetType = msgspec.UNSET
    product_ids: ProductIds | msgspec.UnsetType = msgspec.UNSET
    provinces: Provinces | msgspec.UnsetType = msgspec.UNSET
    no_prize_weight: Weight | msgspec.UnsetType = msgspec.UNSET
    status: CampaignStatus | msgspec.UnsetType = msgspec.UNSET


class DrawPrizeOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    campaign_id: int
    name: str
    kind: PrizeKind
    points: int | None
    quantity: int
    remaining: int
    weight: int
    daily_cap: int | None
    position: int


class DrawCampaignOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    brand_id: int
    name: str
    starts_at: datetime
    ends_at: datetime
    product_ids: list[int]
    provinces: list[str]
    no_prize_weight: int
    status: CampaignStatus
    running: bool  # active and inside its period now
    draws: int  # drawn so far
    winners: int  # of which won a prize
    created_at: datetime
    updated_at: datetime
    prizes: list[DrawPrizeOut]


class DrawPrize(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    kind: PrizeKind
    points: int | None


def draw_status(hold_state: str | None) -> DrawStatus:
    """A draw's status from its ``hold_state`` column."""
    return _STATUS[hold_state]


class DrawOut(msgspec.Struct, frozen=True, kw_only=True):
    """A member's draw: ``prize`` null is "no prize" (谢谢参与) — or not drawn yet, ``status``
    ``under_review`` (the member is on hold: drawn when the hold is released). ``balance``: the
    member's points after a points prize. ``verification``: the draw's verification (the first
    answer only)."""

    draw_id: int
    serial: str
    campaign_id: int
    campaign_name: str
    prize: DrawPrize | None
    fulfil_status: FulfilStatus
    balance: int | None
    drawn_at: datetime
    status: DrawStatus
    verification: VerifyOut | None = None


class DrawResultOut(msgspec.Struct, frozen=True, kw_only=True):
    """A draw as the brand's staff see it (the member's phone masked)."""

    id: int
    campaign_id: int
    member_id: int
    phone: str
    product_id: int
    channel_org_id: int
    prize_id: int | None
    prize_name: str | None
    prize_kind: PrizeKind | None
    points: int | None
    verify_result: str
    verify_reason: str
    drawn_at: datetime
    fulfil_status: FulfilStatus
    fulfilled_at: datetime | None
    fulfil_note: str | None
    status: DrawStatus  # under_review / rejected: the member's fraud hold
    withdrawn_at: datetime | None  # the unit was returned by the consumer (its prize withdrawn)


class DrawFulfilIn(Input, frozen=True, kw_only=True):
    """The voucher code sent, the parcel's tracking number… (shown to staff only)."""

    note: Note


class DrawRunningOut(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a draw is running for a product (the H5 answer page's 抽奖 link)."""

    campaign_id: int | None
    campaign_name: str | None
    brand_id: int | None = None  # the campaign's brand (the answer page's claim ticket)


RESULT_FILTER = Literal["won", "lost", "pending"]
