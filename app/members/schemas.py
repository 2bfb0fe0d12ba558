"""Shapes of member sign-in, the member's own profile and the staff's member admin (M1, M5).

Inputs are frozen and refuse unknown fields. A member's own answers carry the whole phone; the
staff's carry it masked (``138****1234``) unless the caller holds ``members.read_phone``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from app.members.schemas_points import GiftKind, LedgerEntryOut, RedemptionStatus
from app.rebates.schemas_settlement import Reason  # not blank (a probe: a freeze for "   ")
from app.textguard import BLANK, VISIBLE
from app.verify.schemas import Lang

Gender = Literal["male", "female", "other"]
AgeBand = Literal["under_18", "18_24", "25_34", "35_44", "45_54", "55_plus"]
MemberStatus = Literal["active", "frozen", "erased"]

BrandId = Annotated[
    int, msgspec.Meta(ge=1, le=2**63 - 1, description="the brand's organisation id")
]
PhoneIn = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=32,
        description="mainland China mobile number; spaces, hyphens and +86/0086 are accepted",
        examples=["13812341234", "+86 138 1234 1234"],
    ),
]
OtpCode = Annotated[
    str,
    msgspec.Meta(
        min_length=6,
        max_length=24,
        description="the 6-digit SMS code (full-width digits and blanks are read as typed: "
        "app.members.auth.sign_in_code)",
    ),
]
# no blank and no zero-width mark in the address (a probe: "\u200b@\u200b.\u200b" was taken)
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=254,
        pattern=rf"^[^@{BLANK}]+@[^@{BLANK}]+\.[^@{BLANK}]+(?!\n)$",
        examples=["a@b.cn"],
    ),
]
WechatId = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{5,40}(?!\n)$", description="WeChat id (微信号)")
]
Province = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=40,
        description="a province-level division by its Chinese name (浙江省) or English (Zhejiang)",
    ),
]
City = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=VISIBLE)]  # a probe


class _In(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class OtpIn(_In, frozen=True):
    brand_id: BrandId
    phone: PhoneIn
    lang: Lang = "zh"  # the SMS's language (built-in template ``otp``), as the pages' ``lang``


class OtpSent(msgspec.Struct, frozen=True, kw_only=True):
    phone: str  # masked: the page may show where the code went
    expires_at: datetime
    expires_in: int  # seconds the code is valid
    resend_after: int  # seconds before another code may be asked for


class LoginIn(_In, frozen=True):
    brand_id: BrandId
    phone: PhoneIn
    code: OtpCode


class MemberOut(msgspec.Struct, frozen=True, kw_only=True):
    """The member's own view of the membership (the whole phone: it is theirs)."""

    id: int
    brand_id: int
    phone: str
    status: MemberStatus
    gender: Gender | None
    birthday: date | None
    age_band: AgeBand | None  # derived from the birthday when there is one
    email: str | None
    wechat_id: str | None
    province: str | None
    city: str | None
    marketing_opt_out: bool
    created_at: datetime
    last_login_at: datetime | None


class MemberTokenOut(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    token_type: str
    expires_at: int  # unix seconds
    signed_up: bool  # this log-in created the membership
    member: MemberOut


class ProfilePatch(_In, frozen=True):
    """Fields to change; ``null`` clears one. The phone is the membership and cannot change."""

    gender: Gender | msgspec.UnsetType | None = msgspec.UNSET
    birthday: date | msgspec.UnsetType | None = msgspec.UNSET
    age_band: AgeBand | msgspec.UnsetType | None = msgspec.UNSET
    email: Email | msgspec.UnsetType | None = msgspec.UNSET
    wechat_id: WechatId | msgspec.UnsetType | None = msgspec.UNSET
    province: Province | msgspec.UnsetType | None = msgspec.UNSET
    city: City | msgspec.UnsetType | None = msgspec.UNSET
    marketing_opt_out: bool | msgspec.UnsetType = msgspec.UNSET


class MemberRow(msgspec.Struct, frozen=True, kw_only=True):
    """A member in the staff's list (phone masked without ``members.read_phone``)."""

    id: int
    phone: str
    status: MemberStatus
    gender: Gender | None
    age_band: AgeBand | None
    province: str | None
    city: str | None
    created_at: datetime
    last_login_at: datetime | None


class ScanRow(msgspec.Struct, frozen=True, kw_only=True):
    """One verification (points claim) a member made: what, where, when."""

    at: datetime
    serial: str | None
    product_id: int | None
    product_name: str | None
    spec: str | None
    result: str
    reason: str
    province: str | None
    city: str | None


class MemberDetail(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    brand_id: int
    phone: str
    status: MemberStatus
    gender: Gender | None
    birthday: date | None
    age_band: AgeBand | None
    email: str | None
    wechat_id: str | None
    province: str | None
    city: str | None
    marketing_opt_out: bool
    created_at: datetime
    last_login_at: datetime | None
    frozen_reason: str | None
    frozen_at: datetime | None
    frozen_by: int | None
    scans: list[ScanRow]  # the latest 20; GET /members/{id}/scans pages through all
    scans_total: int
    points_balance: int
    ledger: list[LedgerEntryOut]  # the latest 20; GET /members/{id}/points pages through all
    ledger_total: int
    # frozen at sign-up: a membership of the same phone was erased while frozen
    # (app.members.freezes); unfreezing forgets it
    freeze_carried_over: bool


class RedemptionRow(msgspec.Struct, frozen=True, kw_only=True):
    """A member's redemption as staff see it: the gift, the points, where it stands, and who
    fulfilled it where (never the code: it is the member's to hand over)."""

    id: int
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
    expired_at: datetime | None


class FreezeIn(_In, frozen=True):
    reason: Reason


class UnfreezeIn(_In, frozen=True):
    reason: Reason | None = None
