"""Shapes of the ERP interface: master-data rows, import results, the document export (SPEC I1).

A master-data row names its record by the ERP's code (``erp_code``); every other field may be
left out (a CSV column not in the header, a JSON key not in the item): it is then left as it is.
An empty CSV cell or a JSON ``null`` clears an optional field; an empty cell of a field that is
never empty (``name``, ``kind``, ``status``, ``published`` …) says nothing. A new record needs the
fields its kind marks "required on create".
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from app.catalog.schemas import (
    CATEGORY_NAME_MAX,
    PRODUCT_NO_MAX,
    CategoryName,
    ProductNo,
    nfc,
)
from app.catalog.schemas import Name as ProductName  # one visible character (a probe)
from app.orgs.schemas import (
    CityCode,
    ErpCode,
    Latitude,
    Longitude,
    Name,
    Phone,
    ProvinceCode,
    Text,
)
from app.users.schemas import DisplayName, Email, RoleName, Username

Entity = Literal["orgs", "products", "users"]
Status = Literal["active", "inactive"]
OrgKind = Literal["factory", "warehouse", "branch", "agent", "distributor", "store", "printer"]
Short = Annotated[str, msgspec.Meta(max_length=100)]
Url = Annotated[str, msgspec.Meta(max_length=1000, pattern=r"^https?://\S+(?!\n)$")]


class _Row(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    erp_code: ErpCode


class OrgRow(_Row, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An organisation. Required on create: ``kind``, ``name``, ``parent_erp_code`` (the parent:
    an organisation you administer, or a row of the same file). A changed parent moves the
    organisation with its subtree; ``kind`` never changes."""

    kind: OrgKind | UnsetType = UNSET
    name: Name | UnsetType = UNSET
    parent_erp_code: ErpCode | UnsetType = UNSET
    province_code: ProvinceCode | UnsetType | None = UNSET
    province_name: Name | UnsetType | None = UNSET
    city_code: CityCode | UnsetType | None = UNSET
    city_name: Name | UnsetType | None = UNSET
    address: Text | UnsetType | None = UNSET
    contact_name: Name | UnsetType | None = UNSET
    contact_phone: Phone | UnsetType | None = UNSET
    latitude: Latitude | UnsetType | None = UNSET
    longitude: Longitude | UnsetType | None = UNSET
    status: Status | UnsetType = UNSET


class ProductRow(_Row, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A product of the caller's organisation (the brand's catalogue). Required on create:
    ``product_no``, ``name``. ``category``: the name of one of the owner's categories."""

    product_no: ProductNo | UnsetType = UNSET
    name: ProductName | UnsetType = UNSET
    category: CategoryName | UnsetType | None = UNSET
    spec: Short | UnsetType | None = UNSET
    product_type: Short | UnsetType | None = UNSET
    barcode: Annotated[str, msgspec.Meta(max_length=64)] | UnsetType | None = UNSET
    gtin: (
        Annotated[str, msgspec.Meta(pattern=r"^[0-9]{8}(?!\n)$|^[0-9]{12,14}(?!\n)$")]
        | UnsetType
        | None
    ) = UNSET
    image_url: Url | UnsetType | None = UNSET
    colour_no: Short | UnsetType | None = UNSET
    efficacy: Annotated[str, msgspec.Meta(max_length=2000)] | UnsetType | None = UNSET
    video_url: Url | UnsetType | None = UNSET
    display_order: Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)] | UnsetType = UNSET
    published: bool | UnsetType = UNSET

    def __post_init__(self) -> None:
        # compared with the catalogue's, kept in NFC (and no longer there than it may be)
        nfc(self, product_no=PRODUCT_NO_MAX, category=CATEGORY_NAME_MAX)


class UserRow(_Row, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A staff user. Required on create: ``username``, ``org_erp_code`` (an organisation you
    administer), ``roles`` (role names; in CSV separated by spaces, commas or ``|``). A new user
    gets a one-time initial password, answered once; passwords are never imported."""

    username: Username | UnsetType = UNSET
    org_erp_code: ErpCode | UnsetType = UNSET
    roles: Annotated[list[RoleName], msgspec.Meta(max_length=20)] | UnsetType = UNSET
    display_name: DisplayName | UnsetType | None = UNSET
    phone: Phone | UnsetType | None = UNSET
    email: Email | UnsetType | None = UNSET
    status: Status | UnsetType = UNSET


class MasterDataIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A JSON import: the rows as objects (the CSV columns as keys); at most 50,000 (users
    20,000), else 413 ``too_many_rows``."""

    items: list[dict[str, Any]]


class MasterDataError(msgspec.Struct, frozen=True, kw_only=True):
    """One problem of one row: ``row`` counts the data rows from 1 (CSV and JSON alike),
    ``line`` is the CSV file line it starts on (the header is line 1; null for JSON)."""

    row: int
    line: int | None
    erp_code: str | None
    column: str | None
    code: str
    message: str


class MasterDataResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What became of one row. ``changed``: the fields an update changed. ``initial_password``:
    a new user's one-time password, in this answer only (never stored in clear, never shown
    again; not on a dry run)."""

    row: int
    erp_code: str | None
    result: Literal["created", "updated", "unchanged", "rejected"]
    id: int | None = None
    changed: list[str] = []
    initial_password: str | None = None


class MasterDataOut(msgspec.Struct, frozen=True, kw_only=True):
    entity: Entity
    format: Literal["csv", "json"]
    dry_run: Annotated[bool, msgspec.Meta(description="true: checked and rolled back")]
    rows: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    errors: list[MasterDataError]
    errors_total: int
    results: list[MasterDataResult]


# -- the export ---------------------------------------------------------------------------------


class ExportLine(msgspec.Struct, frozen=True, kw_only=True):
    """Units per product and lot of a document (``packages``: the cases scanned whole;
    ``package_level``: their level — inner, master, pallet, or mixed — null when none moved or not
    known; the manufacturer: the organisation whose packing line packed the units)."""

    product_id: int
    product_erp_code: str | None
    product_no: str
    gtin: str | None
    product_name: str
    lot: str
    units: int
    packages: int
    package_level: Literal["inner", "master", "pallet", "mixed"] | None = None
    manufacturer_erp_code: str | None = None
    manufacturer_name: str | None = None


class ExportDocument(msgspec.Struct, frozen=True, kw_only=True):
    """A confirmed inbound or outbound document, with the ERP codes of what it names."""

    id: int
    doc_no: str
    direction: Literal["inbound", "outbound"]
    kind: str
    org_id: int
    org_erp_code: str
    org_name: str
    counterparty_id: int | None
    counterparty_erp_code: str | None
    counterparty_name: str | None
    order_id: int | None
    order_erp_no: str | None
    shipment_id: int | None
    shipment_doc_no: str | None
    doc_date: date
    confirmed_at: datetime | None
    handler_username: str | None
    signee: str | None
    phone: str | None
    customer: str | None
    customer_type: str | None
    destination_city: str | None
    salesperson_erp_code: str | None
    reason: str | None
    note: str
    discrepancies: Any
    units: int
    packages: int
    lines: list[ExportLine]


class ExportPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of the export. Ask again with ``cursor=next_cursor`` for the documents confirmed
    after these; ``has_more``: more are ready now (else poll later with the same cursor)."""

    items: list[ExportDocument]
    next_cursor: str
    has_more: bool
