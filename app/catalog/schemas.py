"""Category and product shapes (SPEC K1)."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any

import msgspec

from app.textguard import BLANK, VISIBLE

Short = Annotated[str, msgspec.Meta(max_length=100)]
Text = Annotated[str, msgspec.Meta(max_length=2000)]
# the path a catalogue medium is served at (app.media.catalog), as a product's URL names it
CATALOG_PATH = "/media/catalog/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# a catalogue medium's id in a URL: a UUID's canonical hyphenated form, in either case — the one
# form the media checks (app.catalog.service) read and the download route serves (any other
# form uuid.UUID takes, 32 bare hex digits, braces, urn:uuid:…, is 404 there)
MEDIA_ID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# an http(s) URL, or the path of a catalogue medium uploaded here (POST /media/catalog): served by
# this server, it is same-origin for the console and the consumer pages
Url = Annotated[
    str,
    msgspec.Meta(
        max_length=1000,
        pattern=rf"^(?:https?://\S+|{CATALOG_PATH})(?!\n)$",
        description="an http(s) URL, or the `url` of a catalogue medium (`/media/catalog/{id}`)",
    ),
]
# a product's name: one visible character at least
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=VISIBLE)]
# Probe Q: numbers a clerk reads as one ("QDUP-1", " QDUP-1", "ＱＤＵＰ－１", "QDUP-1" with a
# no-break space) were different products, and a CSV cell (trimmed) named none of them or another:
# words one ASCII space apart, without other blanks, zero-width marks or full-width forms of ASCII
# characters (Chinese characters are welcome: "水乳-01").
_NO_LOOK_ALIKES = rf"[^{BLANK}\uff01-\uff5e]+"
PRODUCT_NO_MAX = 64  # products.product_no's CHECK
CATEGORY_NAME_MAX = 100  # categories.name's CHECK
ProductNo = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=PRODUCT_NO_MAX,
        pattern=rf"^{_NO_LOOK_ALIKES}(?: {_NO_LOOK_ALIKES})*(?!\n)$",
    ),
]
# no blank at either end: a CSV cell is trimmed, so such a name could never be named there
CategoryName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=CATEGORY_NAME_MAX,
        pattern=rf"^{VISIBLE}(?:.*{VISIBLE})?(?!\n)$",
    ),
]
Gtin = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{8}(?!\n)$|^[0-9]{12,14}(?!\n)$")]
Order = Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]


def nfc(struct: Any, **limits: int) -> None:
    """Each of the struct's fields named in ``limits`` given as text, in Unicode NFC (its
    ``__post_init__``, as it is decoded): a number or a name a clerk reads as one is one —
    "CAFÉ-1" typed on a Mac (NFD: "E" and U+0301) and on Windows (NFC: "É") were two products
    (a probe). Its maximum length (``limits``: the field's, its column's CHECK) is checked again
    in NFC, which lengthens a few characters (U+0958, a composition exclusion, is two): a
    ``ValueError`` naming the field, as msgspec names one (its decoding error: 400
    ``validation_failed``, the field named; a review: the column's CHECK, 422 with none)."""
    for field, limit in limits.items():
        value = getattr(struct, field)
        if isinstance(value, str) and not unicodedata.is_normalized("NFC", value):
            value = unicodedata.normalize("NFC", value)
            if len(value) > limit:
                raise ValueError(
                    f"Expected `str` of length <= {limit} in Unicode NFC - at `$.{field}`"
                )
            msgspec.structs.force_setattr(struct, field, value)


class CategoryIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: CategoryName
    display_order: Order = 0
    org_id: int | None = None

    def __post_init__(self) -> None:
        nfc(self, name=CATEGORY_NAME_MAX)


class CategoryPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: CategoryName | msgspec.UnsetType = msgspec.UNSET
    display_order: Order | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        nfc(self, name=CATEGORY_NAME_MAX)


class CategoryOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    org_id: int
    name: str
    display_order: int
    created_at: datetime
    updated_at: datetime


class ProductIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Name
    product_no: ProductNo
    category_id: int | None = None
    spec: Short = ""
    product_type: Short = ""
    barcode: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    gtin: Gtin | None = None
    image_url: Url | None = None
    colour_no: Short | None = None
    efficacy: Text | None = None
    video_url: Url | None = None
    display_order: Order = 0
    published: bool = False
    org_id: int | None = None

    def __post_init__(self) -> None:
        nfc(self, product_no=PRODUCT_NO_MAX)


class ProductPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    product_no: ProductNo | msgspec.UnsetType = msgspec.UNSET
    category_id: int | msgspec.UnsetType | None = msgspec.UNSET
    spec: Short | msgspec.UnsetType = msgspec.UNSET
    product_type: Short | msgspec.UnsetType = msgspec.UNSET
    barcode: Annotated[str, msgspec.Meta(max_length=64)] | msgspec.UnsetType | None = msgspec.UNSET
    gtin: Gtin | msgspec.UnsetType | None = msgspec.UNSET
    image_url: Url | msgspec.UnsetType | None = msgspec.UNSET
    colour_no: Short | msgspec.UnsetType | None = msgspec.UNSET
    efficacy: Text | msgspec.UnsetType | None = msgspec.UNSET
    video_url: Url | msgspec.UnsetType | None = msgspec.UNSET
    display_order: Order | msgspec.UnsetType = msgspec.UNSET
    published: bool | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        nfc(self, product_no=PRODUCT_NO_MAX)


class ProductOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    org_id: int
    category_id: int | None
    name: str
    spec: str
    product_type: str
    product_no: str
    barcode: str | None
    gtin: str | None
    image_url: str | None
    colour_no: str | None
    efficacy: str | None
    video_url: str | None
    display_order: int
    published: bool
    erp_code: Annotated[str | None, msgspec.Meta(description="the ERP's code (set by import)")]
    created_at: datetime
    updated_at: datetime
