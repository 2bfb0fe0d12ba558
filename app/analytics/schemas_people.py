"""Shapes of the people analytics answers (A4 members by region, A5 purchase cycle, A6 points
by age band, A7 verification and inspection statistics). Aggregates only: no member appears."""

from __future__ import annotations

from datetime import date
from typing import Literal

import msgspec

Granularity = Literal["day", "month"]


class RegionMembers(msgspec.Struct, frozen=True, kw_only=True):
    province: str | None  # None: members who gave no province
    city: str | None  # None at province level, or no city given
    members: int
    share: float  # of every member registered in the period (and province, if one is asked)


class PeriodMembers(msgspec.Struct, frozen=True, kw_only=True):
    period: str  # YYYY-MM-DD (day) or YYYY-MM (month)
    members: int


class MemberRegions(msgspec.Struct, frozen=True, kw_only=True):
    """A4: members registered in the period by province (by city within ``province``), and the
    registrations per day or month."""

    from_date: date | None  # None: since the first member
    to_date: date | None
    province: str | None
    granularity: Granularity
    members: int
    regions: list[RegionMembers]
    trend: list[PeriodMembers]


class SinceLast(msgspec.Struct, frozen=True, kw_only=True):
    """Members by days since their last purchase (as of today, Asia/Shanghai)."""

    d0_30: int
    d31_90: int
    d91_180: int
    d181_365: int
    over_365: int


class Frequency(msgspec.Struct, frozen=True, kw_only=True):
    """Members by their number of purchases."""

    once: int
    twice: int
    p3_5: int
    p6_10: int
    over_10: int


class CycleRow(msgspec.Struct, frozen=True, kw_only=True):
    """A product's, a category's or (``subject_id`` None) all products' purchase cycle."""

    subject_id: int | None
    name: str | None
    members: int  # members who bought it (claimed its points)
    purchases: int
    frequency: float  # purchases per member
    repeat_members: int  # members with two purchases or more
    avg_interval_days: float | None  # mean days between a member's consecutive purchases
    since_last: SinceLast
    purchases_per_member: Frequency


class MemberCycle(msgspec.Struct, frozen=True, kw_only=True):
    """A5: purchase frequency and days since the last purchase, by product or category, of the
    members whose last purchase falls in the period (every member when there is none)."""

    by: Literal["product", "category"]
    from_date: date | None
    to_date: date | None
    as_of: date
    total: CycleRow | None  # all products (only without a product or category filter)
    items: list[CycleRow]


class BandPoints(msgspec.Struct, frozen=True, kw_only=True):
    age_band: str | None  # under_18, 18_24, … 55_plus; None: neither birthday nor band given
    members: int
    claimed: int
    redeemed: int  # redemptions less refunds
    expired: int
    adjusted: int
    balance: int
    avg_balance: float


class PointsByAge(msgspec.Struct, frozen=True, kw_only=True):
    """A6: members and their points by age band (the band follows the birthday, as of today)."""

    as_of: date
    members: int
    balance: int
    bands: list[BandPoints]


class VerifyCounts(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    genuine: int
    unconfirmed: int
    suspicious: int
    not_genuine: int
    wrong_pin: int
    locked: int
    counterfeit: int  # = not_genuine: a code of the brand never activated, void or out of range


class PeriodVerifications(VerifyCounts, frozen=True, kw_only=True):
    period: str


class RegionVerifications(VerifyCounts, frozen=True, kw_only=True):
    province: str | None
    city: str | None


class VerificationStats(msgspec.Struct, frozen=True, kw_only=True):
    """A7: consumer verifications of the brand's codes per day (or month) and by region."""

    from_date: date
    to_date: date
    granularity: Granularity
    province: str | None
    product_ids: list[int] | None  # the products counted (a product or a category's); None: all
    totals: VerifyCounts
    periods: list[PeriodVerifications]
    regions: list[RegionVerifications]


class InspectCounts(msgspec.Struct, frozen=True, kw_only=True):
    inspections: int  # units inspected
    in_channel: int
    diverted: int
    unknown_route: int
    counterfeit: int


class PeriodInspections(InspectCounts, frozen=True, kw_only=True):
    period: str


class RegionInspections(InspectCounts, frozen=True, kw_only=True):
    province: str | None  # of the store


class StoreInspections(InspectCounts, frozen=True, kw_only=True):
    store_id: int
    store_name: str
    store_erp_code: str
    province: str | None
    city: str | None


class InspectionStats(msgspec.Struct, frozen=True, kw_only=True):
    """A7: inspections of the stores in your subtree per day (or month), by the stores' province
    and by store (most inspected first: ``stores`` is page ``stores_page`` of
    ``stores_per_page`` stores, ``stores_total`` counts them all). The leak report by agent is ``GET
    /inspections/summary?by=agent``."""

    from_date: date
    to_date: date
    granularity: Granularity
    province: str | None
    stores_page: int
    stores_per_page: int
    stores_total: int  # stores inspected in the period (every page)
    totals: InspectCounts
    periods: list[PeriodInspections]
    regions: list[RegionInspections]
    stores: list[StoreInspections]
