"""Organisation shapes (SPEC U1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.textguard import VISIBLE

Kind = Literal[
    "brand", "factory", "warehouse", "branch", "agent", "distributor", "store", "printer"
]
# The sales channel's kinds: the brand's own side is the rest (the brand, its factories and
# warehouses), printers aside.
CHANNEL_KINDS = ("branch", "agent", "distributor", "store")
# those that sell on (the channel but a branch): what one of them, or one below it, ships on
# keeps the designated channel; the brand's side — its own stock and its branches — designates
# anew (``app.logistics.movements.move_state``, ``app.inspect.service``)
SELLING_KINDS = ("agent", "distributor", "store")
# one character a reader sees: a name of blanks or zero-width marks showed as nothing
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=VISIBLE)]
ErpCode = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+(?!\n)$")
]
ProvinceCode = Annotated[
    str, msgspec.Meta(pattern=r"^[1-9][0-9]0000(?!\n)$")
]  # GB/T 2260, e.g. 310000
CityCode = Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]{3}00(?!\n)$")]  # e.g. 310100
Text = Annotated[str, msgspec.Meta(max_length=500)]
# A brand's GS1 company prefix: 6-12 digits, as GS1 allocates them (and as
# TRACECODE_GS1_COMPANY_PREFIX, the platform's, is checked); its case codes' SSCCs carry it.
# Not all zeros: GS1 allocates no such prefix (a probe: "000000" was given, and by the longest
# prefix rule it claimed every other brand's GTIN-8, whose GTIN-14 starts 000000).
CompanyPrefix = Annotated[str, msgspec.Meta(pattern=r"^(?!0+(?!\n)$)[0-9]{6,12}(?!\n)$")]
Phone = Annotated[str, msgspec.Meta(max_length=32, pattern=r"^[0-9+() -]*(?!\n)$")]
# WGS 84 degrees; both or neither (a store's position: field check-ins are measured from it)
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]


class OrgIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    kind: Kind
    name: Name
    erp_code: ErpCode
    parent_id: int | None = None
    province_code: ProvinceCode | None = None
    province_name: Name | None = None
    city_code: CityCode | None = None
    city_name: Name | None = None
    address: Text | None = None
    contact_name: Name | None = None
    contact_phone: Phone | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    # a brand's only, given by the platform operator (``app.orgs.service``)
    gs1_company_prefix: CompanyPrefix | None = None


class OrgPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    erp_code: ErpCode | msgspec.UnsetType = msgspec.UNSET
    province_code: ProvinceCode | msgspec.UnsetType | None = msgspec.UNSET
    province_name: Name | msgspec.UnsetType | None = msgspec.UNSET
    city_code: CityCode | msgspec.UnsetType | None = msgspec.UNSET
    city_name: Name | msgspec.UnsetType | None = msgspec.UNSET
    address: Text | msgspec.UnsetType | None = msgspec.UNSET
    contact_name: Name | msgspec.UnsetType | None = msgspec.UNSET
    contact_phone: Phone | msgspec.UnsetType | None = msgspec.UNSET
    latitude: Latitude | msgspec.UnsetType | None = msgspec.UNSET
    longitude: Longitude | msgspec.UnsetType | None = msgspec.UNSET
    gs1_company_prefix: CompanyPrefix | msgspec.UnsetType | None = msgspec.UNSET


class MoveIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    parent_id: int


class OrgOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    parent_id: int | None
    kind: str
    name: str
    erp_code: str
    province_code: str | None
    province_name: str | None
    city_code: str | None
    city_name: str | None
    address: str | None
    contact_name: str | None
    contact_phone: str | None
    latitude: float | None
    longitude: float | None
    # a brand's GS1 company prefix, its case codes' (SSCCs'); None: the platform's
    # (TRACECODE_GS1_COMPANY_PREFIX), and always for other kinds
    gs1_company_prefix: str | None
    status: str
    depth: int
    created_at: datetime
    updated_at: datetime
