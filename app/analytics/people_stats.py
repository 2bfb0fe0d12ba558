"""People analytics served (A4–A7) from the summaries ``app.analytics.people`` rolls up, and
from ``inspection_summary`` (``app.inspect.summaries``' roll-up) for inspections.

Who reads what. Every answer is an aggregate (no member, phone or code appears) and needs
``reports.read``. Members, points and verifications are the brand's: only its own staff read
them (403 ``brand_staff_only`` below the brand, as the member lists). Inspections are read
within the caller's subtree: an agent's staff see its stores.

Periods are Asia/Shanghai days, ``from``/``to`` inclusive. Each answer is one statement over
the summaries: the whole months of its period from the month summaries (``…_m``), its partial
months day by day (``pieces``), through the primary key's prefix or the (…, level, day) indexes
— so its cost grows with the months and edge days of the period and the regions asked, not with
members or events (bench/RESULTS.md). A series by day reads days only; cuts that matter inside a
period (the days-since-last-purchase buckets, the age bands' birthdays) split it first, so each
month read falls on one side.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from functools import cache
from typing import Any, Literal

import msgspec
import msgspec.inspect

from app.analytics.sales import Filters as SalesFilters
from app.analytics.sales import products_of
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
from app.members.profile import BANDS, business_today
from app.provinces import CODE_OF, query_province

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
    """A province filter as the records spell it (浙江省), written as ``query_province`` takes
    it (浙江, Zhejiang, 330000); an unknown one is 400 (a probe: A4 and A7 read 330000 as a
    name no record has, and answered any unknown province with zeros)."""
    return None if text is None else query_province(text)


def _bounded(f: Filters, today: date) -> tuple[date, date]:
    """The period of a day-by-day statistic: default the last 30 days, at most 366; ``from``
    alone ends today, or on its own day if later (as A1; a probe: a future ``from`` was 400)."""
    end = f.date_to or max(today, f.date_from or today)
    start = f.date_from or max(end, date.min + timedelta(days=DEFAULT_DAYS)) - timedelta(
        days=DEFAULT_DAYS - 1
    )
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


async def _rows(conn: Conn, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return await (await conn.execute(sql, params)).fetchall()  # type: ignore[arg-type]


# -- periods: whole months from the month summaries, partial months day by day ------------------


def _month_after(d: date) -> date | None:
    """The first day of the month after ``d``'s (None past the calendar's end)."""
    if d.year == date.max.year and d.month == 12:
        return None
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def pieces(
    lo: date | None, hi: date | None
) -> tuple[list[tuple[date, date]], tuple[date, date] | None]:
    """``[lo, hi]`` (either end open) as day ranges and one range of whole months (their first
    days): the months are read from a month summary, the days from the day summary."""
    lo, hi = lo or date.min, hi or date.max
    if lo > hi:
        return [], None
    first = lo if lo.day == 1 else _month_after(lo)
    after = _month_after(hi)
    last: date | None = hi.replace(day=1)  # the last whole month: hi's when hi ends it
    if after is not None and after - timedelta(days=1) != hi:
        last = (
            None if hi < date(1, 2, 1) else (hi.replace(day=1) - timedelta(days=1)).replace(day=1)
        )
    if first is None or last is None or first > last:
        return [(lo, hi)], None
    days = []
    if lo < first:
        days.append((lo, first - timedelta(days=1)))
    end = _month_after(last)
    if end is not None and end <= hi:
        days.append((end, hi))
    return days, (first, last)


def _merged(ranges: list[tuple[date, date]]) -> list[tuple[date, date]]:
    """Day ranges that touch (the next starts the day after the last one ends) as one."""
    out: list[tuple[date, date]] = []
    for a, b in sorted(ranges):
        if out and out[-1][1] < date.max and out[-1][1] + timedelta(days=1) >= a:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _ranges(
    intervals: Sequence[tuple[date | None, date | None]],
    params: dict[str, Any],
    *,
    by_day: bool = False,
    day: str = "day",
    month: str = "month",
) -> tuple[str, str]:
    """Conditions on the day summary and on the month summary that together cover each of the
    (disjoint) ``intervals`` once; ``by_day``: everything from the day summary (a series by
    day). Ranges that touch are read as one."""
    days: list[tuple[date, date]] = []
    months: list[tuple[date, date]] = []
    for lo, hi in intervals:
        if by_day:
            if (lo or date.min) <= (hi or date.max):
                days.append((lo or date.min, hi or date.max))
            continue
        edges, whole = pieces(lo, hi)
        days.extend(edges)
        if whole is not None:
            months.append(whole)

    def terms(column: str, ranges: list[tuple[date, date]]) -> str:
        out = []
        for a, b in ranges:
            n = len(params)
            params[f"r{n}"], params[f"r{n + 1}"] = a, b
            out.append(f"{column} BETWEEN %(r{n})s AND %(r{n + 1})s")
        return "(" + (" OR ".join(out) or "false") + ")"

    return terms(day, _merged(days)), terms(month, _merge_months(months))


def _merge_months(ranges: list[tuple[date, date]]) -> list[tuple[date, date]]:
    """Month ranges (first days) where the next starts the month after the last one ends."""
    out: list[tuple[date, date]] = []
    for a, b in sorted(ranges):
        if out and _month_after(out[-1][1]) == a:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _both(
    day_table: str,
    where: str,
    columns: str,
    intervals: Sequence[tuple[date | None, date | None]],
    params: dict[str, Any],
    *,
    by_day: bool = False,
    day: str = "day",
) -> str:
    """The rows of ``day_table`` and of its month summary (``day_table``_m, its ``month`` read
    as ``day``) that cover ``intervals``: a subquery of ``columns`` and ``day``."""
    on_days, on_months = _ranges(intervals, params, by_day=by_day, day=day)
    return f"""(SELECT {columns}, {day} FROM {day_table} WHERE {where} AND {on_days}
        UNION ALL
        SELECT {columns}, month AS {day} FROM {day_table}_m WHERE {where} AND {on_months})"""


# -- A4 members by region ----------------------------------------------------------------------


async def member_regions(conn: Conn, actor: Principal, f: Filters) -> MemberRegions:
    """Members registered in the period by province, or by city within ``province``, and the
    registrations per day or month (Asia/Shanghai)."""
    require_brand_reader(actor)
    _open(f)
    province = province_of(f.province)
    period = [(f.date_from, f.date_to)]
    in_province = " AND province = %(province)s" if province is not None else ""
    params: dict[str, Any] = {
        "brand": actor.brand_id,
        "province": province,
        "by_city": 2 if province is not None else 1,
        "by_day": 1 if province is not None else 0,
    }
    where = f"brand_id = %(brand)s AND level = %({{}})s{in_province}"
    regions_of = _both(
        "analytics_member_regions",
        where.format("by_city"),
        "province, city, members",
        period,
        params,
    )
    trend_of = _both(
        "analytics_member_regions",
        where.format("by_day"),
        "members",
        period,
        params,
        by_day=f.granularity == "day",
    )
    # one statement: the regions (part 0) and the series (part 1)
    rows = await _rows(
        conn,
        f"""SELECT 0 AS part, province, city, NULL AS period, sum(members)::bigint AS members
            FROM {regions_of} x GROUP BY province, city HAVING sum(members) <> 0
            UNION ALL
            SELECT 1, NULL, NULL, {_period_sql(f.granularity)}, sum(members)::bigint
            FROM {trend_of} y GROUP BY 4 HAVING sum(members) <> 0""",
        params,
    )
    regions = sorted(
        (r for r in rows if r["part"] == 0),
        key=lambda r: (-r["members"], r["province"], r["city"]),
    )
    trend = sorted((r for r in rows if r["part"] == 1), key=lambda r: r["period"])
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


_CYCLE_COLUMNS = "pairs, purchases, span_days, repeaters, f1, f2, f3_5, f6_10, f11"


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


async def member_cycle(
    conn: Conn, actor: Principal, f: Filters, by: Literal["product", "category"]
) -> MemberCycle:
    """Per product (or category): members who bought it, purchases per member, mean days
    between a member's purchases, members by days since their last purchase and by number of
    purchases — of the members whose last purchase falls in the period."""
    require_brand_reader(actor)
    _open(f)
    today = business_today()
    if by == "category" and f.product_id is not None:
        raise BadRequest(
            "by=category takes category_id, not product_id",
            code="validation_failed",
            details={"field": "product_id"},
        )
    params: dict[str, Any] = {
        "brand": actor.brand_id,
        "kind": "p" if by == "product" else "c",
        "product": f.product_id,
        "category": f.category_id,
        **{f"d{n}": today - timedelta(days=n) for n in (30, 90, 180, 365)},
    }
    # the cells are the brand's; a product or category not the brand's is 404 (as in A1–A3)
    await _product_ids(conn, actor, f)
    filtered = f.product_id is not None or f.category_id is not None
    subjects = ""
    if by == "category" and filtered:
        subjects = " AND subject_id = %(category)s"
    elif filtered:
        subjects = (
            " AND subject_id IN (SELECT id FROM products"
            " WHERE (%(product)s::bigint IS NULL OR id = %(product)s)"
            " AND (%(category)s::bigint IS NULL OR category_id = %(category)s))"
        )
    # the period cut where the days since the last purchase change bucket (so that each whole
    # month read from the month summary falls in one bucket)
    starts = [None, *sorted(params[f"d{n}"] for n in (30, 90, 180, 365))]
    intervals: list[tuple[date | None, date | None]] = []
    for start, following in zip(starts, [*starts[1:], None], strict=True):
        end = following - timedelta(days=1) if following is not None else None
        lo = max(d for d in (start, f.date_from) if d is not None) if start or f.date_from else None
        hi = min(d for d in (end, f.date_to) if d is not None) if end or f.date_to else None
        if (lo or date.min) <= (hi or date.max):
            intervals.append((lo, hi))
    cells = _both(
        "analytics_cycle",
        f"brand_id = %(brand)s AND kind = %(kind)s{subjects}",
        f"subject_id, {_CYCLE_COLUMNS}",
        intervals,
        params,
        day="last_day",
    )
    total = ""
    if not filtered:  # all products in all: the row without a subject
        everything = _both(
            "analytics_cycle",
            "brand_id = %(brand)s AND kind = 'a' AND subject_id = 0",
            _CYCLE_COLUMNS,
            intervals,
            params,
            day="last_day",
        )
        total = f"UNION ALL SELECT NULL, {_CYCLE_SUMS}, NULL FROM {everything} y"
    names = "products" if by == "product" else "categories"
    # a subject that is gone is no row (a probe: a category emptied and deleted was listed with
    # no name until the roll-up folded its product's move into the new category's cells)
    rows = await _rows(
        conn,
        f"""SELECT items.*, n.name
            FROM (SELECT subject_id, {_CYCLE_SUMS} FROM {cells} x
                  GROUP BY subject_id HAVING sum(pairs) <> 0) items
            JOIN {names} n ON n.id = items.subject_id
            {total}""",
        params,
    )
    items = sorted(
        (r for r in rows if r["subject_id"] is not None),
        key=lambda r: (-r["pairs"], r["subject_id"]),
    )
    found = [r for r in rows if r["subject_id"] is None]
    return MemberCycle(
        by=by,
        from_date=f.date_from,
        to_date=f.date_to,
        as_of=today,
        total=_cycle_row(found[0], None, None) if found else None,
        items=[_cycle_row(r, r["subject_id"], r["name"]) for r in items],
    )


# -- A6 points by age band ---------------------------------------------------------------------

_BAND_ORDER = {band: i for i, (_, band) in enumerate(BANDS)}


def _years_before(today: date, years: int) -> date:
    """``today`` less ``years`` years as PostgreSQL counts it (29 February: the 28th)."""
    try:
        return today.replace(year=today.year - years)
    except ValueError:
        return today.replace(year=today.year - years, day=28)


async def points_by_age(conn: Conn, actor: Principal) -> PointsByAge:
    """Members and their points (claimed, redeemed, expired, adjusted, balance) by age band as
    of today: by birthday, or by the band chosen by members without one."""
    require_brand_reader(actor)
    today = business_today()
    params: dict[str, Any] = {"brand": actor.brand_id}
    # a birthday after today less N years: younger than N (AGE_BAND_SQL); the bands' birthday
    # ranges, so that each whole month read from the month summary falls in one band
    limits = [_years_before(today, lowest) for lowest, _ in BANDS[1:]]
    intervals: list[tuple[date | None, date | None]] = []
    for older, younger in zip([None, *limits[::-1]], [*limits[::-1], None], strict=True):
        intervals.append((older + timedelta(days=1) if older else None, younger))
    band = " ".join(
        f"WHEN birthday > %(b{i})s THEN '{name}'"
        for i, ((_, name), limit) in enumerate(zip(BANDS, limits, strict=False))
    )
    params.update({f"b{i}": limit for i, limit in enumerate(limits)})
    cells = _both(
        "analytics_points_ages",
        "brand_id = %(brand)s",
        "members, claimed, redeemed, expired, adjusted, balance",
        intervals,
        params,
        day="birthday",
    )
    rows = await _rows(
        conn,
        f"""SELECT band, sum(members)::bigint AS members,
                   sum(claimed)::bigint AS claimed, sum(redeemed)::bigint AS redeemed,
                   sum(expired)::bigint AS expired, sum(adjusted)::bigint AS adjusted,
                   sum(balance)::bigint AS balance
            FROM (SELECT CASE {band} ELSE '{BANDS[-1][1]}' END AS band, members, claimed,
                         redeemed, expired, adjusted, balance
                  FROM {cells} x
                  UNION ALL
                  SELECT nullif(age_band, ''), members, claimed, redeemed, expired, adjusted,
                         balance
                  FROM analytics_points_ages_m
                  WHERE brand_id = %(brand)s AND month = 'infinity') y
            GROUP BY 1 HAVING sum(members) <> 0""",
        params,
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
_VERIFY_COUNTS = ("total", *_RESULTS)
_VERIFY_SUMS = ", ".join(f"sum({c})::bigint AS {c}" for c in _VERIFY_COUNTS) + (
    ", sum(not_genuine)::bigint AS counterfeit"
)


async def _product_ids(conn: Conn, actor: Principal, f: Filters) -> list[int] | None:
    """The products a product or category filter names (None: all), by the sales reports'
    own check (``products_of``): a product or category not of the caller's brand, or of none,
    is 404 ``not_found`` as in A1–A3 (a probe: A5 and A7 answered 200 with nothing for it)."""
    return await products_of(
        conn, actor, SalesFilters(product_id=f.product_id, category_id=f.category_id)
    )


async def verifications(conn: Conn, actor: Principal, f: Filters) -> VerificationStats:
    """Verifications of the brand's codes by result (counterfeits: ``not_genuine``) per day or
    month, and by province (by city within ``province``; a product filter stops at provinces)."""
    require_brand_reader(actor)
    start, end = _bounded(f, business_today())
    province = province_of(f.province)
    products = await _product_ids(conn, actor, f)
    params: dict[str, Any] = {
        "brand": actor.brand_id,
        "products": [0] if products is None else products,  # a category: its products now
        "province": province,
        "from": start,
        "to": end,
    }
    level = 1 if province is None or products is not None else 2
    params["by_day"] = 0 if province is None else 1
    params["by_region"] = level
    where = "brand_id = %(brand)s AND product_id = ANY(%(products)s) AND level = %({})s" + (
        " AND province = %(province)s" if province is not None else ""
    )
    counts = ", ".join(("total", *_RESULTS))
    periods_of = _both(
        "analytics_verifications",
        where.format("by_day"),
        counts,
        [(start, end)],
        params,
        by_day=f.granularity == "day",
    )
    regions_of = _both(
        "analytics_verifications",
        where.format("by_region"),
        f"province, city, {counts}",
        [(start, end)],
        params,
    )
    # one statement: the series (part 0) and the regions (part 1), in order, shaped as answered
    city = "nullif(city, '')" if level == 2 else "NULL"
    rows = await _rows(
        conn,
        f"""SELECT 0 AS part, row_number() OVER (ORDER BY {_period_sql(f.granularity)}) AS ord,
                   {_period_sql(f.granularity)} AS period, NULL AS province, NULL AS city,
                   {_VERIFY_SUMS}
            FROM {periods_of} x GROUP BY 3
            UNION ALL
            SELECT 1, row_number() OVER (ORDER BY sum(total) DESC, province, city), NULL,
                   nullif(province, ''), {city}, {_VERIFY_SUMS}
            FROM {regions_of} y GROUP BY province, city""",
        params,
    )
    rows.sort(key=lambda r: (r["part"], r["ord"]))
    periods = [r for r in rows if r["part"] == 0]
    totals = {c: sum(r[c] for r in periods) for c in (*_VERIFY_COUNTS, "counterfeit")}
    return VerificationStats(
        from_date=start,
        to_date=end,
        granularity=f.granularity,
        province=province,
        product_ids=products,
        totals=VerifyCounts(**totals),
        periods=msgspec.convert(periods, list[PeriodVerifications]),
        regions=msgspec.convert([r for r in rows if r["part"] == 1], list[RegionVerifications]),
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
# the stores of a page as JSON unless ``per_page`` says (a file lists every store): a probe
# found the list, and the file, cut to the 100 most inspected without a word
STORES_LISTED = 100


async def inspections(
    conn: Conn, actor: Principal, f: Filters, page: int = 1, per_page: int | None = None
) -> InspectionStats:
    """Units inspected at the stores of the caller's subtree and what they were found to be,
    per day or month, by the stores' province and by store (page ``page`` of ``per_page``
    stores, most inspected first; None: every store, as a file lists them; ``stores_total``
    counts them all), from ``inspection_summary``."""
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
        "province_code": CODE_OF.get(province or ""),
        "from": start,
        "to": end,
        "limit": per_page,  # None: LIMIT NULL, every store
        "offset": (page - 1) * (per_page or 0),
    }
    base = f"""FROM inspection_summary m JOIN orgs s ON s.id = m.store_org_id
        WHERE m.brand_id = %(brand)s AND m.day BETWEEN %(from)s AND %(to)s
          AND s.path LIKE %(tree)s{
        " AND (s.province_name = %(province)s OR s.province_code = %(province_code)s)"
        if province is not None
        else ""
    }"""
    period = _period_sql(f.granularity, "m.day")
    # one statement: the series (part 0), the provinces (1) with their stores counted (a store
    # is of one province: their sum is every store's count), a page of the stores (2)
    rows = await _rows(
        conn,
        f"""WITH m AS MATERIALIZED (
                SELECT m.day, m.result, m.units, s.id, s.name, s.erp_code, s.province_name,
                       s.city_name {base}
            )
            SELECT 0 AS part, row_number() OVER (ORDER BY {period}) AS ord, {period} AS period,
                   NULL::bigint AS id, NULL AS name, NULL AS erp_code, NULL AS province,
                   NULL AS city, 0::bigint AS stores, {_INSPECT_SUMS}
            FROM m GROUP BY {period}
            UNION ALL
            SELECT 1, row_number() OVER (ORDER BY sum(m.units) DESC, m.province_name), NULL,
                   NULL, NULL, NULL, m.province_name, NULL, count(DISTINCT m.id),
                   {_INSPECT_SUMS}
            FROM m GROUP BY m.province_name
            UNION ALL
            (SELECT 2, row_number() OVER (ORDER BY sum(m.units) DESC, m.name, m.id), NULL,
                    m.id, m.name, m.erp_code, m.province_name, m.city_name, 0,
                    {_INSPECT_SUMS}
             FROM m GROUP BY m.id, m.name, m.erp_code, m.province_name, m.city_name
             ORDER BY 2 LIMIT %(limit)s OFFSET %(offset)s)""",
        params,
    )
    rows.sort(key=lambda r: (r["part"], r["ord"]))
    periods = [r for r in rows if r["part"] == 0]
    regions = [r for r in rows if r["part"] == 1]
    stores = [r for r in rows if r["part"] == 2]
    total = sum(int(r["stores"]) for r in regions)
    return InspectionStats(
        from_date=start,
        to_date=end,
        granularity=f.granularity,
        province=province,
        stores_page=page,
        stores_per_page=per_page if per_page is not None else total,
        stores_total=total,
        totals=InspectCounts(**{c: sum(r[c] for r in periods) for c in _INSPECT}),
        periods=[PeriodInspections(period=r["period"], **_counts(r)) for r in periods],
        regions=[RegionInspections(province=r["province"], **_counts(r)) for r in regions],
        stores=[
            StoreInspections(
                store_id=r["id"],
                store_name=r["name"],
                store_erp_code=r["erp_code"],
                province=r["province"],
                city=r["city"],
                **_counts(r),
            )
            for r in stores
        ],
    )


def _counts(r: dict[str, Any]) -> dict[str, int]:
    return {c: r[c] for c in _INSPECT}


# -- files ---------------------------------------------------------------------------------------


def table_of(out: msgspec.Struct, table: str) -> tuple[list[str], list[Sequence[Any]]]:
    """One list of an answer as a header and rows (nested counts flattened), for CSV/XLSX. The
    columns are the list's item fields, whatever the list holds (a probe: an empty list's file
    had one column, the list's name, so a job reading the file broke on a quiet period)."""
    columns = list(_columns_of(type(out), table))
    flat = [_flatten(msgspec.to_builtins(item)) for item in getattr(out, table)]
    return columns, [[row.get(c) for c in columns] for row in flat]


@cache
def _columns_of(answer: type[msgspec.Struct], table: str) -> tuple[str, ...]:
    """The flattened columns of the items of ``answer``'s list ``table``, as ``_flatten``
    names them."""
    info = msgspec.inspect.type_info(answer)
    assert isinstance(info, msgspec.inspect.StructType)
    listed = next(f.type for f in info.fields if f.name == table)
    assert isinstance(listed, msgspec.inspect.ListType)
    assert isinstance(listed.item_type, msgspec.inspect.StructType)
    return tuple(_field_names(listed.item_type))


def _field_names(struct: msgspec.inspect.StructType, prefix: str = "") -> list[str]:
    out: list[str] = []
    for field in struct.fields:
        if isinstance(field.type, msgspec.inspect.StructType):
            out.extend(_field_names(field.type, f"{prefix}{field.encode_name}_"))
        else:
            out.append(f"{prefix}{field.encode_name}")
    return out


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_flatten(item, f"{prefix}{key}_"))
        else:
            out[f"{prefix}{key}"] = item
    return out
