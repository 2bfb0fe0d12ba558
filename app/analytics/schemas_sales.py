"""Shapes of the sales analytics (A1–A3) and the dashboard answers."""

from __future__ import annotations

from datetime import date

import msgspec


class StoreSales(msgspec.Struct, frozen=True, kw_only=True):
    """A store's net units sold in the period, its rank (ties share one: 1, 1, 3) and share."""

    rank: int
    store_id: int
    store_name: str
    store_erp_code: str
    province_code: str | None
    province_name: str | None
    city_code: str | None
    city_name: str | None
    agent_id: int | None
    agent_name: str | None
    units: int
    share: float  # of the units of every store that matches (not only the rows listed)


class StoreRanking(msgspec.Struct, frozen=True, kw_only=True):
    """A1: stores ranked by net units sold from ``from_date`` to ``to_date`` (inclusive)."""

    from_date: date
    to_date: date
    stores: int  # stores with sales that match the filters (the items are the first ``limit``)
    units: int  # their units
    items: list[StoreSales]


class ProductSales(msgspec.Struct, frozen=True, kw_only=True):
    product_id: int
    product_name: str
    product_no: str
    product_type: str
    category_id: int | None
    category_name: str | None
    units: int


class TypeSales(msgspec.Struct, frozen=True, kw_only=True):
    product_type: str  # "" for products without a type
    units: int


class PeriodSales(msgspec.Struct, frozen=True, kw_only=True):
    period: str  # YYYY-MM-DD (day) or YYYY-MM (month)
    units: int


class ProductReport(msgspec.Struct, frozen=True, kw_only=True):
    """A2: units by product and by product type over the period, and the period's series."""

    from_date: date
    to_date: date
    granularity: str
    units: int
    products: list[ProductSales]
    types: list[TypeSales]
    series: list[PeriodSales]


class RegionSales(msgspec.Struct, frozen=True, kw_only=True):
    """Units sold by the stores of one province (or city) under one agent (None: no agent)."""

    province_code: str | None
    province_name: str | None
    city_code: str | None
    city_name: str | None
    agent_id: int | None
    agent_name: str | None
    stores: int
    units: int


class ProvinceSales(msgspec.Struct, frozen=True, kw_only=True):
    province_code: str | None
    province_name: str | None
    units: int


class AgentSales(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: int | None
    agent_name: str | None
    units: int


class RegionReport(msgspec.Struct, frozen=True, kw_only=True):
    """A3: units by region (province, or city) and agent; totals by province and by agent."""

    from_date: date
    to_date: date
    level: str
    units: int
    items: list[RegionSales]
    provinces: list[ProvinceSales]
    agents: list[AgentSales]


class Figure(msgspec.Struct, frozen=True, kw_only=True):
    """Today's value of one dashboard figure and its last 14 days (oldest first, today last)."""

    today: int
    trend: list[int]


class Dashboard(msgspec.Struct, frozen=True, kw_only=True):
    """The console's first page. Brand-wide figures (verifications, counterfeits, activations)
    are ``None`` for users below the brand; the others count the caller's subtree."""

    today: date
    days: list[date]
    verifications: Figure | None
    counterfeits: Figure | None
    activations: Figure | None
    diversions: Figure
    shipments: Figure
    low_stock: Figure  # today: alerts open now; trend: alerts raised per day
