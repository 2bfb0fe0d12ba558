"""Shapes of promotions (W2) and complaints and suggestions (W3).

Inputs are frozen and refuse unknown fields. A promotion's provinces are named as a gift's and an
SMS campaign's (``浙江省``, ``浙江`` or ``Zhejiang``; stored by the full Chinese name); its
picture and link are https URLs. A complaint's text needs one visible character; the staff's
answers carry the member's phone masked unless the caller sees phones whole
(``app.members.mask``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.bodies import AwareTime
from app.idempotency import ClientId
from app.members.schemas_points import Province
from app.textguard import VISIBLE

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=VISIBLE)]
Body = Annotated[str, msgspec.Meta(max_length=5000)]
HttpsUrl = Annotated[
    str,
    msgspec.Meta(
        max_length=1000, pattern=r"^https://\S+(?!\n)$", description="an https:// address"
    ),
]
Provinces = Annotated[
    list[Province],
    msgspec.Meta(max_length=40, description="where it is shown; empty: every province"),
]
ComplaintKind = Literal["complaint", "suggestion"]
ComplaintStatus = Literal["open", "handling", "closed"]
Contact = Literal["phone", "sms", "none"]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=VISIBLE)]
Serial = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=200,
        pattern=VISIBLE,
        description="the code on the pack, or the link its QR code holds",
    ),
]
Gtin = Annotated[str, msgspec.Meta(min_length=8, max_length=14, pattern=r"^[0-9]+(?!\n)$")]
StoreName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=VISIBLE)]


class _In(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


# -- promotions -----------------------------------------------------------------------------------


class PromotionIn(_In, frozen=True):
    title: Title
    body: Body = ""
    image_url: HttpsUrl | None = None
    link_url: HttpsUrl | None = None
    starts_at: AwareTime | None = None
    ends_at: AwareTime | None = None
    provinces: Provinces = msgspec.field(default_factory=list)
    published: bool = False


class PromotionPatch(_In, frozen=True):
    """Fields to change; ``null`` clears an optional one."""

    title: Title | msgspec.UnsetType = msgspec.UNSET
    body: Body | msgspec.UnsetType = msgspec.UNSET
    image_url: HttpsUrl | msgspec.UnsetType | None = msgspec.UNSET
    link_url: HttpsUrl | msgspec.UnsetType | None = msgspec.UNSET
    starts_at: AwareTime | msgspec.UnsetType | None = msgspec.UNSET
    ends_at: AwareTime | msgspec.UnsetType | None = msgspec.UNSET
    provinces: Provinces | msgspec.UnsetType = msgspec.UNSET
    published: bool | msgspec.UnsetType = msgspec.UNSET


class PromotionOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    brand_id: int
    title: str
    body: str
    image_url: str | None
    link_url: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    provinces: list[str]
    published: bool
    created_at: datetime
    updated_at: datetime


class Promotion(msgspec.Struct, frozen=True, kw_only=True):
    """A promotion as a member sees it."""

    id: int
    title: str
    body: str
    image_url: str | None
    link_url: str | None
    starts_at: datetime | None
    ends_at: datetime | None


# -- complaints -----------------------------------------------------------------------------------


class ComplaintIn(_In, frozen=True):
    """A complaint or suggestion filed by the signed-in member. ``serial`` (a pack's code, or
    the scanned link) or ``gtin`` name the product; ``store_name`` where it was bought.
    ``client_id``: the same filing sent again answers the first one (200)."""

    kind: ComplaintKind
    body: Text
    contact: Contact = "phone"
    serial: Serial | None = None
    gtin: Gtin | None = None
    store_name: StoreName | None = None
    client_id: ClientId | None = None


class ComplaintReplyIn(_In, frozen=True):
    reply: Text


class ComplaintCloseIn(_In, frozen=True):
    """``reply``: the answer, when it was not given before (or a last word replacing it)."""

    reply: Text | None = None


class MyComplaint(msgspec.Struct, frozen=True, kw_only=True):
    """One of the member's own complaints: where it stands and the brand's reply."""

    id: int
    kind: ComplaintKind
    body: str
    status: ComplaintStatus
    serial: str | None
    gtin: str | None
    product_name: str | None
    store_name: str | None
    contact: Contact
    reply: str | None
    replied_at: datetime | None
    created_at: datetime
    closed_at: datetime | None


class ComplaintOut(msgspec.Struct, frozen=True, kw_only=True):
    """A complaint as the brand's staff see it (the phone masked without
    ``members.read_phone``)."""

    id: int
    kind: ComplaintKind
    body: str
    status: ComplaintStatus
    member_id: int
    phone: str | None
    province: str | None
    serial: str | None
    gtin: str | None
    product_id: int | None
    product_name: str | None
    store_name: str | None
    contact: Contact
    handler_id: int | None
    handler_name: str | None
    handling_at: datetime | None
    reply: str | None
    replied_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
