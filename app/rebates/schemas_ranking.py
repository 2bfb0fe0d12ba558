"""Answers of the rebate rankings (R3): ``GET /rebates/rankings/stores`` and ``/clerks``."""

from __future__ import annotations

from typing import Literal

import msgspec


class StoreRank(msgspec.Struct, frozen=True, kw_only=True):
    """One store's place: ``rank`` is shared by ties of the ranking measure (1, 1, 3)."""

    rank: int
    store_id: int
    store_name: str
    store_erp_code: str
    province_code: str | None
    province_name: str | None
    city_code: str | None
    city_name: str | None
    agent_id: int | None  # the store's nearest agent up the organisation tree
    agent_name: str | None
    claims: int
    amount: float  # yuan


class ClerkRank(StoreRank, frozen=True, kw_only=True):
    """One clerk's place, at the store the claims were made for."""

    clerk_id: int
    clerk_name: str
    clerk_username: str


class StoreRanking(msgspec.Struct, frozen=True, kw_only=True):
    from_month: str  # YYYY-MM, Asia/Shanghai months
    to_month: str
    by: Literal["amount", "count"]
    items: list[StoreRank]


class ClerkRanking(msgspec.Struct, frozen=True, kw_only=True):
    from_month: str
    to_month: str
    by: Literal["amount", "count"]
    items: list[ClerkRank]
