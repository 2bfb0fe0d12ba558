"""Shapes of points rules, claims, the ledger, gifts and redemptions (K2 points, M2–M4)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.bodies import AwareTime
from app.catalog.schemas import Name  # the catalogue's: visible
from app.claims import ClientId
from app.forensics.status import ClaimStatus
from app.rebates.schemas_settlement import Reason  # the settlement's: not blank
from app.verify.schemas import Lang, ProductInfo, VerifyOut

Points = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Text = Annotated[str, msgspec.Meta(max_length=2000)]
Province = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
GiftKind = Literal["online", "offline"]
# a gift's picture: an http(s) URL with no blank, as the console's gift form takes it — not the
# catalogue's Url, whose /media/catalog/{id} paths are products' only; a catalogue medium named
# by its absolute_url is checked (the brand's image) and kept in use by app.members.gifts
PictureUrl = Annotated[
    str,
    msgspec.Meta(max_length=1000, pattern=r"^https?://\S+(?!\n)$", description="an http(s) URL"),
]
LedgerKind = Literal["claim", "redemption", "refund", "expiry", "adjustment", "draw"]
RedemptionStatus = Literal["issued", "fulfilled", "expired"]


class Input(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are refused."""


# -- rules ---------------------------------------------------------------------------------


class RuleIn(Input, frozen=True, kw_only=True):
    """The points of a product; with ``agent_id``, for units designated to that agent."""

    product_id: int
    agent_id: int | None = None
    points: Points


class RuleOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    product_id: int
    agent_id: int | None
    points: int
    updated_at: datetime


# -- claims and the ledger ------------------------------------------------------------------


class ClaimOut(msgspec.Struct, frozen=True, kw_only=True):
    claim_id: int
    serial: str
    points: int
    balance: int
    product_id: int
    agent_id: int | None
    claimed_at: datetime
    verification: VerifyOut | None  # None on a replay (the same client id again)
    # under_review: the member is on hold (app.forensics.holds): the code is taken, the points
    # are credited once a reviewer releases the hold (rejected: never)
    status: ClaimStatus = "credited"


class LedgerEntryOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    at: datetime
    kind: LedgerKind
    points: int
    claim_id: int | None
    redemption_id: int | None
    reason: str | None
    product: ProductInfo | None = None  # for claims
    gift_name: str | None = None  # for redemptions and refunds


class PointsOut(msgspec.Struct, frozen=True, kw_only=True):
    balance: int
    items: list[LedgerEntryOut]
    page: int
    per_page: int
    total: int


class AdjustmentIn(Input, frozen=True, kw_only=True):
    """A manual entry by the brand: ``adjustment`` (either sign) or ``expiry`` (negative)."""

    member_id: int
    points: Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
    reason: Reason
    client_id: ClientId
    kind: Literal["adjustment", "expiry"] = "adjustment"


class AdjustmentOut(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: int
    member_id: int
    kind: str
    points: int
    balance: int


# -- gifts ---------------------------------------------------------------------------------


class GiftIn(Input, frozen=True, kw_only=True):
    name: Name
    points_cost: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
    kind: GiftKind
    stock: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
    picture_url: PictureUrl | None = None
    description: Text | None = None
    valid_from: AwareTime | None = None
    valid_to: AwareTime | None = None
    provinces: Annotated[list[Province], msgspec.Meta(max_length=40)] = msgspec.field(
        default_factory=list
    )
    display_order: Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)] = 0
    collect_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 30
    how_to_collect: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class GiftPatch(Input, frozen=True, kw_only=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    points_cost: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    kind: GiftKind | msgspec.UnsetType = msgspec.UNSET
    stock: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] | msgspec.UnsetType = msgspec.UNSET
    picture_url: PictureUrl | msgspec.UnsetType | None = msgspec.UNSET
    description: Text | msgspec.UnsetType | None = msgspec.UNSET
    valid_from: AwareTime | msgspec.UnsetType | None = msgspec.UNSET
    valid_to: AwareTime | msgspec.UnsetType | None = msgspec.UNSET
    provinces: Annotated[list[Province], msgspec.Meta(max_length=40)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    display_order: Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    collect_days: Annotated[int, msgspec.Meta(ge=1, le=365)] | msgspec.UnsetType = msgspec.UNSET
    how_to_collect: Annotated[str, msgspec.Meta(max_length=200)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )


class GiftOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    brand_id: int
    name: str
    picture_url: str | None
    description: str | None
    points_cost: int
    kind: GiftKind
    stock: int
    valid_from: datetime | None
    valid_to: datetime | None
    provinces: list[str]
    display_order: int
    collect_days: int
    how_to_collect: str | None
    created_at: datetime
    updated_at: datetime


class Gift(msgspec.Struct, frozen=True, kw_only=True):
    """A gift as a member sees it (``GET /members/me/gifts``, the reminder of M6)."""

    id: int
    name: str
    picture_url: str | None
    description: str | None
    points_cost: int
    kind: GiftKind
    stock: int
    valid_to: datetime | None
    collect_days: int
    how_to_collect: str | None
    affordable: bool = False


# -- redemptions ---------------------------------------------------------------------------


class RedeemIn(Input, frozen=True, kw_only=True):
    gift_id: int
    client_id: ClientId
    lang: Lang = "zh"


class RedemptionOut(msgspec.Struct, frozen=True, kw_only=True):
    """A member's own redemption, with its code (shown to the member only)."""

    id: int
    code: str | None  # null: sealed under another master key, unreadable here (logged)
    gift_id: int
    gift_name: str
    kind: GiftKind
    points: int
    status: RedemptionStatus
    created_at: datetime
    expires_at: datetime
    fulfilled_at: datetime | None
    how_to_collect: str | None
    balance: int | None = None  # after the redemption (its creation answer only)


CodeText = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class CodeIn(Input, frozen=True, kw_only=True):
    """A redemption code as the member reads it out (case, spaces and dashes do not matter)."""

    code: CodeText
    lang: Lang = "zh"


class FulfilIn(Input, frozen=True, kw_only=True):
    code: CodeText
    store_id: int | None = None  # an offline gift fulfilled by staff above the store
    lang: Lang = "zh"


class CheckOut(msgspec.Struct, frozen=True, kw_only=True):
    """What staff see of a code: valid or not, the gift and the member's masked phone;
    ``refusal`` names why an issued code is not valid (its member is frozen: nothing is handed
    out to it), ``status`` being the code's own."""

    redemption_id: int
    valid: bool
    status: RedemptionStatus
    refusal: Literal["member_frozen"] | None
    message: str
    gift_id: int
    gift_name: str
    kind: GiftKind
    points: int
    phone: str  # masked (138****1234)
    created_at: datetime
    expires_at: datetime
    fulfilled_at: datetime | None
    fulfilled_by: int | None
    fulfilled_org_id: int | None


class SettlementRow(msgspec.Struct, frozen=True, kw_only=True):
    store_id: int
    store_name: str
    store_erp_code: str
    gift_id: int
    gift_name: str
    fulfilled: int
    points: int


class StaffRedemptionRow(msgspec.Struct, frozen=True, kw_only=True):
    """A redemption in the staff list (``GET /redemptions``): the member's phone (masked unless
    ``members.read_phone``), the gift, where it stands, and who fulfilled it where and when;
    never the code. ``member_id``: null below the brand (the brand's staff alone see members)."""

    id: int
    member_id: int | None
    phone: str
    gift_id: int
    gift_name: str
    gift_kind: GiftKind
    points: int
    status: RedemptionStatus
    created_at: datetime
    expires_at: datetime
    fulfilled_at: datetime | None
    fulfilled_by: int | None
    fulfilled_by_name: str | None
    fulfilled_org_id: int | None
    fulfilled_org_name: str | None
    fulfilled_org_erp_code: str | None
    expired_at: datetime | None
