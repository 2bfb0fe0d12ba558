"""People analytics served (A4–A7) from the summaries ``app.analytics.people`` rolls up, and
from ``inspection_summary`` (``app.inspect.summaries``' roll-up) for inspections.

Who reads what. Every answer is an aggregate (no member, phone or code appears) and needs
``reports.read``. Members, points and verifications are the brand's: only its own staff read
them (403 ``brand_staff_only`` below the brand, as the member lists). Inspections are read
within the caller's subtree: an agent's staff see its stores.

Periods are Asia/Shanghai days, ``from``/``to`` inclusive. Each query reads one summary through
its primary key's prefix — (brand, level[, province]) for regions and registrations, (brand,
kind) for the purchase cycle, (brand, product, level[, province]) for verifications — so its
cost grows with days × regions of the period, not with members or events (bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, Literal

import msgspec

from app.analytics.schemas_people import (
    BandPoints,
    CycleRow,
    Frequency,
    Granularity,
    InspectCounts,
    InspectionStats,
    MemberCycle,
    MemberRegions,
    PeriodInspections,
    PeriodMembers,
    PeriodVerifications,
    PointsByAge,
    RegionInspections,
    RegionMembers,
    RegionVerifications,
    SinceLast,
    StoreInspections,
    VerificationStats,
    VerifyCounts,
)
from app.auth.principal import Principal
from app.db import Conn
from app.errors import BadRequest, Forbidden
from app.members.profile import AGE_BAND_SQL, BANDS, PROVINCES, business_today

MAX_DAYS = 366  # the longest period of the day-by-day statistics (verifications, inspections)
DEFAULT_DAYS = 30


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """The question, as the routes (and tests) pass it."""

    date_from: date | None = None
    date_to: date | None = None
    granularity: Granularity = "day"
    province: str | None = None
    product_id: int | None = None
    category_id: int | None = None


def require_brand_reader(actor: Principal) -> None:
    """``reports.read``, held by the brand's own staff: members and verifications are the
    brand's."""
    actor.require("reports.read")
    if actor.org_id != actor.brand_id:
        raise Forbidden(
            "member and verification statistics are read by the brand's own staff",
            code="brand_staff_only",
        )


def province_of(text: str | None) -> str | None:
    """A province as the records spell it (浙江省); English names accepted (Zhejiang)."""
    if text is None:
        return None
    text = text.strip()
    return PROVINCES.get(text.casefold(), text)


def _bounded(f: Filters, today: date) -> tuple[date, date]:
    """The period of a day-by-day statistic: default the last 30 days, at most 366."""
    end = f.date_to or today
    start = f.date_from or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise BadRequest("from is after to", code="bad_period", details={"field": "from"})
    if (end - start).days >= MAX_DAYS:
        raise BadRequest(
            f"a period of at most {MAX_DAYS} days", code="bad_period", details={"field": "from"}
        )
    return start, end


def _open(f: Filters) -> None:
    if f.date_from and f.date_to and f.date_from > f.date_to:
        raise BadRequest("from is after to", code="bad_period", details={"field": "from"})


def _period_sql(granularity: Granularity, column: str = "day") -> str:
    if granularity == "month":
        return f"to_char({column}, 'YYYY-MM')"
    return f"to_char({column}, 'YYYY-MM-DD')"


def _days(f: Filters, params: dict[str, Any], column: str = "day") -> str:
    """The period's terms on ``column`` (either end may be open)."""
    terms = ""
    if f.date_from is not None:
        terms += f" AND {column} >= %(from)s"
        params["from"] = f.date_from
    if f.date_to is not None:
        terms += f" AND {column} <= %(to)s"
        params["to"] = f.date_to
    return terms


async def _rows(conn: Conn, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return await (await conn.execute(sql, params)).fetchall()  # type: ignore[arg-type]


# -- A4 members by region ----------------------------------------------------------------------


async def member_regions(conn: Conn, actor: Principal, f: Filters) -> MemberRegions:
    """Members registered in the period by province, or by city within ``province``, and the
    registrations per day or month (Asia/Shanghai)."""
    require_brand_reader(actor)
    _open(f)
    province = province_of(f.province)
    params: dict[str, Any] = {"brand": actor.brand_id, "province": province}
    days = _days(f, params)
    where = "brand_id = %(brand)s AND level = %(level)s" + days
    in_province = " AND province = %(province)s" if province is not None else ""
    regions = await _rows(
        conn,
        f"""SELECT province, city, sum(members)::bigint AS members
            FROM analytics_member_regions WHERE {where}{in_province}
            GROUP BY province, city HAVING sum(members) <> 0
            ORDER BY 3 DESC, 1, 2""",
        {**params, "level": 2 if province is not None else 1},
    )
    trend = await _rows(
        conn,
        f"""SELECT {_period_sql(f.granularity)} AS period, sum(members)::bigint AS members
            FROM analytics_member_regions WHERE {where}{in_province}
            GROUP BY 1 HAVING sum(members) <> 0 ORDER BY 1""",
        {**params, "level": 1 if province is not None else 0},
    )
    total = sum(r["members"] for r in trend)
    return MemberRegions(
        from_date=f.date_from,
        to_date=f.date_to,
        province=province,
        granularity=f.granularity,
        members=total,
        regions=[
            RegionMembers(
                province=r["province"] or None,
                city=(r["city"] or None) if province is not None else None,
                members=r["members"],
                share=round(r["members"] / total, 4) if total else 0.0,
            )
            for r in regions
        ],
        trend=[PeriodMembers(period=r["period"], members=r["members"]) for r in trend],
    )


# -- A5 purchase cycle ---------------------------------------------------------------------------

_CYCLE_SUMS = """
sum(pairs)::bigint AS pairs, sum(purchases)::bigint AS purchases,
sum(span_days)::bigint AS span_days, sum(repeaters)::bigint AS repeaters,
sum(f1)::bigint AS f1, sum(f2)::bigint AS f2, sum(f3_5)::bigint AS f3_5,
sum(f6_10)::bigint AS f6_10, sum(f11)::bigint AS f11,
coalesce(sum(pairs) FILTER (WHERE last_day >= %(d30)s), 0)::bigint AS d0_30,
coalesce(sum(pairs) FILTER (WHERE last_day < %(d30)s AND last_day >= %(d90)s), 0)::bigint
    AS d31_90,
coalesce(sum(pairs) FILTER (WHERE last_day < %(d90)s AND last_day >= %(d180)s), 0)::bigint
    AS d91_180,
coalesce(sum(pairs) FILTER (WHERE last_day < %(d180)s AND last_day >= %(d365)s), 0)::bigint
    AS d181_365,
coalesce(sum(pairs) FILTER (WHERE last_day < %(d365)s), 0)::bigint AS over_365
"""


def _cycle_row(r: dict[str, Any], subject_id: int | None, name: str | None) -> CycleRow:
    pairs, purchases = r["pairs"] or 0, r["purchases"] or 0
    gaps = purchases - pairs  # consecutive purchases of the same member
    return CycleRow(
        subject_id=subject_id,
        name=name,
        members=pairs,
        purchases=purchases,
        frequency=round(purchases / pairs, 3) if pairs else 0.0,
        repeat_members=r["repeaters"] or 0,
        avg_interval_days=round(r["span_days"] / gaps, 1) if gaps else None,
        since_last=SinceLast(
            d0_30=r["d0_30"],
            d31_90=r["d31_90"],
            d91_180=r["d91_180"],
            d181_365=r["d181_365"],
            over_365=r["over_365"],
        ),
        purchases_per_member=Frequency(
            once=r["f1"] or 0,
            twice=r["f2"] or 0,
            p3_5=r["f3_5"] or 0,
            p6_10=r["f6_10"] or 0,
            over_10=r["f11"] or 0,
        ),
    )


async def _subjects(
    conn: Conn, actor: Principal, by: str, f: Filters
) -> tuple[list[int] | None, dict[int, str]]:
    """The subjects asked (None: every one) and the names of the brand's subjects."""
    table = "products" if by == "product" else "categories"
    rows = await _rows(
        conn,
        f"""SELECT t.id, t.name, {"t.category_id" if by == "product" else "NULL"} AS category_id
            FROM {table} t JOIN orgs o ON o.id = t.org_id WHERE o.path LIKE %(tree)s""",
        {"tree": f"/{actor.brand_id}/%"},
    )
    names = {r["id"]: r["name"] for r in rows}
    if f.product_id is None and f.category_id is None:
        return None, names
    if by == "product":
        return [
            r["id"]
            for r in rows
            if (f.product_id is None or r["id"] == f.product_id)
            and (f.category_id is None or r["category_id"] == f.category_id)
        ], names
    if f.product_id is not None:
        raise BadRequest(
            "by=category takes category_id, not product_id",
            code="validation_failed",
            details={"field": "product_id"},
        )
    return [f.category_id] if f.category_id in names else [], names


async def member_cycle(
    conn: Conn, actor: Principal, f: Filters, by: Literal["product", "category"]
) -> MemberCycle:
    """Per product (or category): members who bought it, purchases per member, mean days
    between a member's purchases, members by days since their last purchase and by number of
    purchases — of the members whose last purchase falls in the period."""
    require_brand_reader(actor)
    _open(f)
    today = business_today()
    ids, names = await _subjects(conn, actor, by, f)
    params: dict[str, Any] = {
        "brand": actor.brand_id,
        "kind": "p" if by == "product" else "c",
        "ids": ids,
        **{f"d{n}": today - timedelta(days=n) for n in (30, 90, 180, 365)},
    }
    days = _days(f, params, "last_day")
    subjects = " AND subject_id = ANY(%(ids)s)" if ids is not None else ""
    rows = await _rows(
        conn,
        f"""SELECT subject_id, {_CYCLE_SUMS} FROM analytics_cycle
            WHERE brand_id = %(brand)s AND kind = %(kind)s{subjects}{days}
            GROUP BY subject_id HAVING sum(pairs) <> 0 ORDER BY pairs DESC, subject_id""",
        params,
    )
    total = None
    if ids is None:
        found = await _rows(
            conn,
            f"""SELECT {_CYCLE_SUMS} FROM analytics_cycle
                WHERE brand_id = %(brand)s AND kind = 'a' AND subject_id = 0{days}""",
            params,
        )
        total = _cycle_row(found[0], None, None)
    return MemberCycle(
        by=by,
        from_date=f.date_from,
        to_date=f.date_to,
        as_of=today,
        total=total,
        items=[_cycle_row(r, r["subject_id"], names.get(r["subject_id"])) for r in rows],
    )


# -- A6 points by age band ---------------------------------------------------------------------

_BAND_ORDER = {band: i for i, (_, band) in enumerate(BANDS)}


async def points_by_age(conn: Conn, actor: Principal) -> PointsByAge:
    """Members and their points (claimed, redeemed, expired, adjusted, balance) by age band as
    of today: by birthday, or by the band chosen by members without one."""
    require_brand_reader(actor)
    rows = await _rows(
        conn,
        f"""SELECT {AGE_BAND_SQL.format(m="x")} AS band, sum(members)::bigint AS members,
                   sum(claimed)::bigint AS claimed, sum(redeemed)::bigint AS redeemed,
                   sum(expired)::bigint AS expired, sum(adjusted)::bigint AS adjusted,
                   sum(balance)::bigint AS balance
            FROM (SELECT nullif(birthday, 'infinity') AS birthday, nullif(age_band, '') AS age_band,
                         members, claimed, redeemed, expired, adjusted, balance
                  FROM analytics_points_ages WHERE brand_id = %(brand)s) x
            GROUP BY 1 HAVING sum(members) <> 0""",
        {"brand": actor.brand_id},
    )
    rows.sort(key=lambda r: _BAND_ORDER.get(r["band"], len(_BAND_ORDER)))
    return PointsByAge(
        as_of=business_today(),
        members=sum(r["members"] for r in rows),
        balance=sum(r["balance"] for r in rows),
        bands=[
            BandPoints(
                age_band=r["band"],
                members=r["members"],
                claimed=r["claimed"],
                redeemed=r["redeemed"],
                expired=r["expired"],
                adjusted=r["adjusted"],
                balance=r["balance"],
                avg_balance=round(r["balance"] / r["members"], 1),
            )
            for r in rows
        ],
    )


# -- A7 verifications ----------------------------------------------------------------------------

_RESULTS = ("genuine", "unconfirmed", "suspicious", "not_genuine", "wrong_pin", "locked")
_VERIFY_SUMS = ", ".join(f"sum({c})::bigint AS {c}" for c in ("total", *_RESULTS))


def _verify_counts(r: dict[str, Any]) -> dict[str, int]:
    counts = {c: r[c] or 0 for c in ("total", *_RESULTS)}
    return {**counts, "counterfeit": counts["not_genuine"]}


async def _product_ids(conn: Conn, actor: Principal, f: Filters) -> list[int] | None:
    """The products a product or category filter names (of the caller's brand); None: all."""
    if f.product_id is None and f.category_id is None:
        return None
    rows = await _rows(
        conn,
        """SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id
           WHERE o.path LIKE %(tree)s
             AND (%(product)s::bigint IS NULL OR p.id = %(product)s)
             AND (%(category)s::bigint IS NULL OR p.category_id = %(category)s)
           ORDER BY p.id""",
        {"tree": f"/{actor.brand_id}/%", "product": f.product_id, "category": f.category_id},
    )
    return [r["id"] for r in rows]


async def verifications(conn: Conn, actor: Principal, f: Filters) -> VerificationStats:
    """Verifications of the brand's codes by result (counterfeits: ``not_genuine``) per day or
    month, and by province (by city within ``province``; a product filter stops at provinces)."""
    require_brand_reader(actor)
    start, end = _bounded(f, business_today())
    province = province_of(f.province)
    products = await _product_ids(conn, actor, f)
    params: dict[str, Any] = {
        "brand": actor.brand_id,
        "products": products if products is not None else [0],
        "province": province,
        "from": start,
        "to": end,
    }
    where = (
        "brand_id = %(brand)s AND product_id = ANY(%(products)s) AND level = %(level)s"
        " AND day BETWEEN %(from)s AND %(to)s"
        + (" AND province = %(province)s" if province is not None else "")
    )
    periods = await _rows(
        conn,
        f"""SELECT {_period_sql(f.granularity)} AS period, {_VERIFY_SUMS}
            FROM analytics_verifications WHERE {where} GROUP BY 1 ORDER BY 1""",
        {**params, "level": 0 if province is None else 1},
    )
    level = 1 if province is None or products is not None else 2
    regions = await _rows(
        conn,
        f"""SELECT province, city, {_VERIFY_SUMS}
            FROM analytics_verifications WHERE {where}
            GROUP BY province, city ORDER BY total DESC, province, city""",
        {**params, "level": level},
    )
    totals = {c: sum(r[c] or 0 for r in periods) for c in ("total", *_RESULTS)}
    return VerificationStats(
        from_date=start,
        to_date=end,
        granularity=f.granularity,
        province=province,
        product_ids=products,
        totals=VerifyCounts(**_verify_counts(totals)),
        periods=[PeriodVerifications(period=r["period"], **_verify_counts(r)) for r in periods],
        regions=[
            RegionVerifications(
                province=r["province"] or None,
                city=(r["city"] or None) if level == 2 else None,
                **_verify_counts(r),
            )
            for r in regions
        ],
    )


# -- A7 inspections ------------------------------------------------------------------------------

_INSPECT_SUMS = """
sum(m.units)::bigint AS inspections,
coalesce(sum(m.units) FILTER (WHERE m.result = 'in_channel'), 0)::bigint AS in_channel,
coalesce(sum(m.units) FILTER (WHERE m.result = 'diverted'), 0)::bigint AS diverted,
coalesce(sum(m.units) FILTER (WHERE m.result = 'unknown_route'), 0)::bigint AS unknown_route,
coalesce(sum(m.units) FILTER (WHERE m.result = 'counterfeit'), 0)::bigint AS counterfeit
"""
_INSPECT = ("inspections", "in_channel", "diverted", "unknown_route", "counterfeit")
STORES_LISTED = 100


async def inspections(conn: Conn, actor: Principal, f: Filters) -> InspectionStats:
    """Units inspected at the stores of the caller's subtree and what they were found to be,
    per day or month, by the stores' province and by store (the ``STORES_LISTED`` most
    inspected), from ``inspection_summary``."""
    actor.require("reports.read")
    if f.product_id is not None or f.category_id is not None:
        raise BadRequest(
            "inspection statistics are not kept by product",
            code="validation_failed",
            details={"field": "product_id" if f.product_id is not None else "category_id"},
        )
    start, end = _bounded(f, business_today())
    province = province_of(f.province)
    params: dict[str, Any] = {
        "brand": actor.brand_id,
        "tree": actor.org_path + "%",
        "province": province,
        "from": start,
        "to": end,
        "limit": STORES_LISTED,
    }
    base = f"""FROM inspection_summary m JOIN orgs s ON s.id = m.store_org_id
        WHERE m.brand_id = %(brand)s AND m.day BETWEEN %(from)s AND %(to)s
          AND s.path LIKE %(tree)s{
        " AND (s.province_name = %(province)s OR s.province_code = %(province)s)"
        if province is not None
        else ""
    }"""
    periods = await _rows(
        conn,
        f"SELECT {_period_sql(f.granularity, 'm.day')} AS period, {_INSPECT_SUMS} {base} "
        "GROUP BY 1 ORDER BY 1",
        params,
    )
    regions = await _rows(
        conn,
        f"SELECT s.province_name AS province, {_INSPECT_SUMS} {base} "
        "GROUP BY 1 ORDER BY inspections DESC, 1",
        params,
    )
    stores = await _rows(
        conn,
        f"""SELECT s.id, s.name, s.erp_code, s.province_name, s.city_name, {_INSPECT_SUMS} {base}
            GROUP BY s.id ORDER BY inspections DESC, s.name, s.id LIMIT %(limit)s""",
        params,
    )
    return InspectionStats(
        from_date=start,
        to_date=end,
        granularity=f.granularity,
        province=province,
        totals=InspectCounts(**{c: sum(r[c] for r in periods) for c in _INSPECT}),
        periods=[PeriodInspections(period=r["period"], **_counts(r)) for r in periods],
        regions=[RegionInspections(province=r["province"], **_counts(r)) for r in regions],
        stores=[
            StoreInspections(
                store_id=r["id"],
                store_name=r["name"],
                store_erp_code=r["erp_code"],
                province=r["province_name"],
                city=r["city_name"],
                **_counts(r),
            )
            for r in stores
        ],
    )


def _counts(r: dict[str, Any]) -> dict[str, int]:
    return {c: r[c] for c in _INSPECT}


# -- files ---------------------------------------------------------------------------------------


def table_of(out: msgspec.Struct, table: str) -> tuple[list[str], list[Sequence[Any]]]:
    """One list of an answer as a header and rows (nested counts flattened), for CSV/XLSX."""
    items: list[Any] = getattr(out, table)
    if not items:
        return [table], []
    flat = [_flatten(msgspec.to_builtins(item)) for item in items]
    columns = list(flat[0])
    return columns, [[row.get(c) for c in columns] for row in flat]


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_flatten(item, f"{prefix}{key}_"))
        else:
            out[f"{prefix}{key}"] = item
    return out
