"""Shapes of rebate rules and of the rebate queries: claims, the clerk's own summary, refusals
(K2 rebates, R2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

# Yuan, in steps of 0.5 (a float holds every such amount exactly): 0.3, -1, 100000.5, a string
# or a number out of range are 400 validation_failed naming ``amount``.
Amount = Annotated[float, msgspec.Meta(ge=0, le=100_000, multiple_of=0.5)]
Settlement = Literal["unsettled", "pending", "approved", "paid", "rejected"]


class Input(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are refused."""


# -- rules ------------------------------------------------------------------------------------


class RuleIn(Input, frozen=True, kw_only=True):
    """The rebate of a product in yuan; with ``agent_id``, at the stores whose nearest agent
    it is."""

    product_id: int
    agent_id: int | None = None
    amount: Amount


class RuleOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    product_id: int
    product_name: str
    agent_id: int | None  # null: the product's default
    agent_name: str | None
    amount: float
    updated_at: datetime


# -- claims -----------------------------------------------------------------------------------


class ClaimRow(msgspec.Struct, frozen=True, kw_only=True):
    """One rebate claim with what the seed's 门店返利查询 / 销售返利查询 show (also the columns of
    the CSV and XLSX exports, in this order)."""

    claim_id: int
    claimed_at: datetime  # 产品销售时间
    store_id: int
    store_name: str  # 门店
    store_city: str | None
    clerk_id: int
    clerk_name: str  # 产品销售人员
    agent_id: int | None
    agent_name: str | None  # 代理商
    product_id: int
    product_no: str
    product_name: str  # 产品名称
    category: str | None  # 产品分类
    gtin: str | None  # 产品条码
    colour_no: str | None  # 产品色号
    code_id: int
    serial: str | None  # the unit's printed serial (null if its batch is unknown)
    amount: float  # 产品返利点 / 返利金额: the amount in force when claimed
    settlement: Settlement
    statement_id: int | None


class ClaimsPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of claims and the totals of every matching claim (not only this page's)."""

    items: list[ClaimRow]
    page: int
    per_page: int
    total: int  # matching claims
    amount: float  # their amount, in yuan


class Totals(msgspec.Struct, frozen=True, kw_only=True):
    claims: int
    amount: float


class ClerkSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The signed-in clerk's rebates: totals (Asia/Shanghai today and month) and a page of the
    clerk's claims, newest first."""

    today: Totals
    month: Totals
    all_time: Totals
    items: list[ClaimRow]
    page: int
    per_page: int
    total: int


# -- refusals ---------------------------------------------------------------------------------


class RefusalRow(msgspec.Struct, frozen=True, kw_only=True):
    """A refused claim kept as an anti-diversion signal: who tried where, and where the unit
    was supposed to be."""

    id: int
    at: datetime
    reason: str
    serial: str
    code_id: int
    store_id: int
    store_name: str
    clerk_id: int
    clerk_name: str
    expected_store_id: int | None
    expected_store_name: str | None
    expected_agent_id: int | None
    expected_agent_name: str | None
    holder_org_id: int | None
    holder_org_name: str | None
