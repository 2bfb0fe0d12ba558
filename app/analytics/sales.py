"""Sales analytics (A1–A3): stores ranked by units sold, sales by product, type and period, and
by region and agent — served from summary tables a worker rolls up from the sales.

What a sale is. A unit sold to a consumer at a store: its ``unit_state`` row entering status
``sold`` with disposition ``retail_sold`` — the L7 ``sale`` movement (``POST /sales``, a
consumer's exchange) and the rebate claims, which sell a unit not yet sold through that same
movement (so a rebate claim is never a second sale). The store is the organisation that held
and sold the unit; its region is the store's province and city, its agent the store's nearest
agent ancestor (the subtree the agent sees), both as the organisation is now (kept per
organisation by a trigger on orgs, migration 0036, ``region_drift``), so a store moved to
another agent reports under the new one. A report lists the stores (regions, products) whose
net units in the period are not zero. A consumer's return (the row leaving that state,
``POST /returns``) cancels the sale: −1 on the sale's own day, store and product (net sales).
A member's point claim of a unit not yet sold, held by a store, sells it through that same
state change (migration 0026, ``app.members.points``), so it too is one sale, never a second.
Units that leave by an exception outbound (gifts, samples, staff welfare) are not sales either.

Exactly once. A trigger on ``unit_state`` (migration 0022) writes one ``sales_queue`` row per
unit entering (+1) or leaving (−1) the sold state, in the transaction that changes the state: a
sale and its queue rows commit together or not at all, whatever code path sold the unit. The
roll-up takes queue rows under ``FOR UPDATE SKIP LOCKED``, deletes them and adds their sums to
the summary tables in one statement (``_BATCH_OF``: the batch summed once by day, store and
product, then one upsert per summary table of the batch summed to its key), so concurrent
roll-ups take disjoint rows and a row is counted once; rows of transactions not yet committed
are invisible and wait for a later pass. A batch that fails for a reason of its data is split
and the rows that fail alone are dead-lettered (``app.deadletters.drain``). ``recount`` proves,
in one snapshot, that every summary table plus the rows still queued equals a count of the sold
units in ``unit_state`` (by the sale's day, store and product).

Serving (migration 0024). Net units per (brand, product, day | month, store) in
``sales_daily`` / ``sales_monthly`` (keyed product first: a product's or a category's cells of a
period are ranges of the key, which includes the units: migration 0039), per store and month
in ``sales_store_monthly``, per product and day | month in ``sales_product_daily`` /
``sales_product_monthly``, and per store and year the
running totals of the year's days in ``sales_store_years`` (``cum[n]``: net units of days 1..n).
A store's units over any period of days within a year are ``cum[last] - cum[first - 1]``: the
store ranking and the regions read one row per store and year, whatever the period. With a
product filter (and for the product report under store conditions) a period of days reads its
whole months from ``sales_monthly`` and only the days at either end from ``sales_daily``
(``split``). Product, category and type filters become a list of product ids; scope and region
conditions apply to the stores (``orgs``) of the sums.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

from app.analytics.schemas_sales import (
    AgentSales,
    PeriodSales,
    ProductReport,
    ProductSales,
    ProvinceSales,
    RegionReport,
    RegionSales,
    StoreRanking,
    StoreSales,
    TypeSales,
)
from app.auth.principal import Principal
from app.db import Conn
from app.deadletters import SALES_QUEUE, drain
from app.errors import BadRequest, NotFound
from app.localtime import REPORT_TZ
from app.locks import Lock, run_alone
from app.logistics.documents import RETAIL_KINDS
from app.provinces import CODE_OF, query_province

_TZ = ZoneInfo(REPORT_TZ)
MAX_YEARS = 3  # the longest period one report covers: three calendar years (``_within``)
MAX_SERIES_DAYS = 366  # a day-by-day series covers at most a year

Granularity = Literal["day", "month"]
Level = Literal["province", "city"]

# -- roll-up ------------------------------------------------------------------------------------

# Upserted in key order so two roll-ups touching the same rows wait for each other instead of
# deadlocking. ``{take}`` selects the queue ids of the batch. Each summary gets one upsert of
# the batch summed to its key (``summed``: the batch by day, store and product).
_UPSERT = """
{name} AS (
    INSERT INTO {table} AS t (brand_id, {keys}, units)
    SELECT brand_id, {keys}, sum(units) FROM summed
    GROUP BY brand_id, {keys} ORDER BY brand_id, {keys}
    ON CONFLICT (brand_id, {keys}) DO UPDATE SET units = t.units + EXCLUDED.units
    RETURNING 1
)"""
# (table, key columns besides the brand) of every summary of plain sums: the recount checks
# them all alike (and ``sales_store_years`` on its own, see ``_CHECK_YEARS``)
SUMMARIES: tuple[tuple[str, str], ...] = (
    ("sales_monthly", "product_id, month, store_id"),
    ("sales_store_monthly", "month, store_id"),
    ("sales_product_daily", "day, product_id"),
    ("sales_product_monthly", "month, product_id"),
)
# The month's cells of a product at a store also keep the running totals of the month's days
# (migration 0024): ``dK`` = net units of days 1..K, the batch's added column by column.
DAYS = tuple(f"d{k}" for k in range(1, 32))
_MONTHLY = (
    """
{name} AS (
    INSERT INTO {table} AS t (brand_id, {keys}, units, """
    + ", ".join(DAYS)
    + """)
    SELECT brand_id, {keys}, sum(units), """
    + ", ".join(f"coalesce(sum(units) FILTER (WHERE dom <= {k}), 0)" for k in range(1, 31))
    + ", sum(units)"
    + """
    FROM (SELECT brand_id, {keys}, units::integer AS units,
                 extract(day FROM day)::integer AS dom FROM summed) s
    GROUP BY brand_id, {keys} ORDER BY brand_id, {keys}
    ON CONFLICT (brand_id, {keys}) DO UPDATE SET units = t.units + EXCLUDED.units, """
    + ", ".join(f"{d} = t.{d} + EXCLUDED.{d}" for d in DAYS)
    + """
    RETURNING 1
)"""
)
# The stores' running totals per year (migration 0024): the batch's running totals per store
# and year over the 366 days (``cum[n]``: net units of days 1..n), added element-wise.
_YEARS = """
per_day AS (
    SELECT brand_id, extract(year FROM day)::integer AS year, store_id,
           extract(doy FROM day)::integer AS doy, sum(units)::bigint AS units
    FROM summed GROUP BY 1, 2, 3, 4
), years AS (
    INSERT INTO sales_store_years AS t (brand_id, year, store_id, cum)
    SELECT brand_id, year, store_id,
           sales_cum_of(array_agg(doy ORDER BY doy), array_agg(units ORDER BY doy))
    FROM per_day GROUP BY brand_id, year, store_id ORDER BY brand_id, year, store_id
    ON CONFLICT (brand_id, year, store_id) DO UPDATE SET cum = sales_cum_add(t.cum, EXCLUDED.cum)
    RETURNING 1
)"""
_BATCH_OF = (
    """
WITH taken AS (
    DELETE FROM sales_queue WHERE ctid = ANY(ARRAY({take}))
    RETURNING brand_id, day, store_id, product_id, units
), summed AS (
    SELECT brand_id, day, date_trunc('month', day)::date AS month, store_id, product_id,
           sum(units) AS units, count(*) AS n
    FROM taken GROUP BY brand_id, day, store_id, product_id
),"""
    + ",".join(
        (_MONTHLY if table == "sales_monthly" else _UPSERT).format(
            name=f"u{n}", table=table, keys=keys
        )
        for n, (table, keys) in enumerate(SUMMARIES)
    )
    + ","
    + _YEARS
    + """
SELECT (SELECT coalesce(sum(n), 0) FROM summed)::bigint AS taken, """
    + " + ".join(f"(SELECT count(*) FROM u{n})" for n in range(len(SUMMARIES)))
    + " + (SELECT count(*) FROM years) AS upserted"
)
# The rows are taken by their ctid (locked, they stay where they are until deleted): a scan of
# those tuples instead of an index look-up per row.
_BATCH = _BATCH_OF.replace(
    "{take}", "SELECT ctid FROM sales_queue ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
)
# The same for given rows only: salvaging a batch that failed (see ``rollup``).
_BATCH_IDS = _BATCH_OF.replace(
    "{take}", "SELECT ctid FROM sales_queue WHERE id = ANY(%(ids)s) FOR UPDATE SKIP LOCKED"
)


# Queue rows per batch (one transaction): a large batch sums more sales into each cell before
# it is written, and writes the cells in one pass of each key's order.
BATCH = 1_000_000


async def rollup(conn: Conn, limit: int = BATCH) -> int:
    """Fold queued sales into the summary tables, ``limit`` queue rows per transaction, until
    none are left; return how many rows were consumed. ``conn`` must not be inside a
    transaction. A row that cannot be folded is dead-lettered and does not stop the others."""
    return await drain(
        conn,
        "sales_queue",
        SALES_QUEUE,
        lambda: _fold(conn, _BATCH, {"limit": limit}),
        lambda ids: _fold(conn, _BATCH_IDS, {"ids": ids}),
        limit,
    )


async def _fold(conn: Conn, sql: str, params: dict[str, Any]) -> int:
    async with conn.transaction():
        # the batch's sums and sorts in memory (the server's default is a few MB)
        await conn.execute("SET LOCAL work_mem = '256MB'")
        row = await (await conn.execute(sql, params)).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return int(row["taken"])


async def rollup_alone(conn: Conn, *, wait: bool = False, limit: int = BATCH) -> int | None:
    """``rollup`` with one roller at a time across processes; ``None`` when another roller is
    running and ``wait`` is false. ``conn`` should be in autocommit mode."""
    return await run_alone(conn, Lock.SALES_ROLLUP, lambda: rollup(conn, limit), wait=wait)


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """A summary cell that differs from the count of sold units (``key``: the cell's columns
    besides the brand, e.g. ``{"day": ..., "store_id": ...}``)."""

    table: str
    brand_id: int
    key: dict[str, Any]
    units: int
    expected: int


# One statement, one snapshot: a sale's state change and its queue rows are both visible or
# neither. ``sold``: the sold units now, at the finest grain; each summary (plus the queue) is
# compared with ``sold`` summed to its key.
_SOLD = f"""
sold AS (
    SELECT brand_id, (coalesce(sold_at, updated_at) AT TIME ZONE '{REPORT_TZ}')::date AS day,
           holder_org_id AS store_id, product_id, count(*) AS units
    FROM unit_state WHERE status = 'sold' AND disposition = 'retail_sold'
    GROUP BY 1, 2, 3, 4
), facts AS (
    SELECT brand_id, day, date_trunc('month', day)::date AS month, store_id, product_id,
           units, 0::bigint AS recorded FROM sold
    UNION ALL
    SELECT brand_id, day, date_trunc('month', day)::date, store_id, product_id, 0, units
    FROM sales_queue
)"""
_CHECK = """
SELECT '{table}' AS "table", brand_id, json_build_object({pairs}) AS key,
       sum(recorded)::bigint AS units, sum(expected)::bigint AS expected
FROM (SELECT brand_id, {keys}, units AS expected, recorded FROM facts
      UNION ALL
      SELECT brand_id, {keys}, 0, units FROM {table}) x
GROUP BY brand_id, {keys}
HAVING sum(recorded) <> sum(expected)"""
# ``sales_store_years``: each day's units are the difference of two running totals (the
# 366th element of a year of 365 days must equal the 365th: it is checked as the next 1 January).
_CHECK_YEARS = """
SELECT 'sales_store_years' AS "table", brand_id,
       json_build_object('day', day, 'store_id', store_id) AS key,
       sum(recorded)::bigint AS units, sum(expected)::bigint AS expected
FROM (SELECT brand_id, day, store_id, units AS expected, recorded FROM facts
      UNION ALL
      SELECT y.brand_id, make_date(y.year, 1, 1) + (d.n - 1)::integer, y.store_id, 0,
             d.c - coalesce(y.cum[d.n - 1], 0)
      FROM sales_store_years y, unnest(y.cum) WITH ORDINALITY AS d(c, n)) x
GROUP BY brand_id, day, store_id
HAVING sum(recorded) <> sum(expected)"""
# ``sales_monthly``'s days: day K's units are dK - d(K-1) (past the month's end they must be 0:
# they are checked as the next month's first days).
_CHECK_MONTH_DAYS = (
    """
SELECT 'sales_monthly' AS "table", brand_id,
       json_build_object('day', day, 'store_id', store_id, 'product_id', product_id) AS key,
       sum(recorded)::bigint AS units, sum(expected)::bigint AS expected
FROM (SELECT brand_id, day, store_id, product_id, units AS expected, recorded FROM facts
      UNION ALL
      SELECT m.brand_id, m.month + (x.k - 1)::integer, m.store_id, m.product_id, 0, x.units
      FROM sales_monthly m
      CROSS JOIN LATERAL unnest(ARRAY[d1, """
    + ", ".join(f"d{k} - d{k - 1}" for k in range(2, 32))
    + """]) WITH ORDINALITY AS x(units, k)) y
GROUP BY brand_id, day, store_id, product_id
HAVING sum(recorded) <> sum(expected)"""
)
_RECOUNT = (
    "WITH"
    + _SOLD
    + "\n"
    + "\nUNION ALL\n".join(
        _CHECK.format(
            table=table,
            keys=keys,
            pairs=", ".join(f"'{k.strip()}', {k.strip()}" for k in keys.split(",")),
        )
        for table, keys in SUMMARIES
    )
    + "\nUNION ALL\n"
    + _CHECK_MONTH_DAYS
    + "\nUNION ALL\n"
    + _CHECK_YEARS
    + "\nORDER BY 1, 2"
)


async def recount(conn: Conn) -> list[Mismatch]:
    """Cells of every summary table (plus the sales still queued) that differ from a count of
    the units sold at retail now, by the sale's day, store and product."""
    rows = await (await conn.execute(_RECOUNT)).fetchall()  # type: ignore[arg-type]
    return [Mismatch(**row) for row in rows]


# Each organisation's kept region row (migration 0036) against its recomputation from orgs:
# the organisations whose agent, province group or city group differ, or that lack a row.
_REGION_DRIFT = """
WITH now AS (
    SELECT o.id AS org_id, ag.id AS agent_id, o.province_code, o.province_name, o.city_code,
           o.city_name
    FROM orgs o
    LEFT JOIN LATERAL (
        SELECT a.id FROM orgs a
        WHERE a.id = ANY(string_to_array(trim(both '/' from o.path), '/')::bigint[])
          AND a.kind = 'agent'
        ORDER BY length(a.path) DESC LIMIT 1
    ) ag ON true
)
SELECT n.org_id FROM now n
LEFT JOIN sales_org_regions r ON r.org_id = n.org_id
LEFT JOIN sales_region_groups p ON p.id = r.province_group
LEFT JOIN sales_region_groups c ON c.id = r.city_group
WHERE r.org_id IS NULL
   OR (r.agent_id, p.city, p.province_code, p.province_name, p.city_code, p.city_name, p.agent_id,
       c.city, c.province_code, c.province_name, c.city_code, c.city_name, c.agent_id)
      IS DISTINCT FROM
      (n.agent_id, false, n.province_code, n.province_name, NULL::char(6), NULL::text,
       n.agent_id, true, n.province_code, n.province_name, n.city_code, n.city_name, n.agent_id)
ORDER BY n.org_id
"""


async def region_drift(conn: Conn) -> list[int]:
    """The organisations whose kept region and agent (``sales_org_regions``) differ from what
    orgs say now (none: the regions report and the ranking's agents are right)."""
    rows = await (await conn.execute(_REGION_DRIFT)).fetchall()  # type: ignore[arg-type]
    return [int(r["org_id"]) for r in rows]


# -- the question -------------------------------------------------------------------------------


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """A report's question, as the routes (and the CLI, tests) pass it."""

    start: date | None = None  # first day (Asia/Shanghai), inclusive; default: this month's 1st
    end: date | None = None  # last day, inclusive; default today
    product_id: int | None = None
    category_id: int | None = None
    product_type: str | None = None
    province: str | None = None  # the store's province: a 6-digit code or a name
    city: str | None = None
    agent_id: int | None = None
    store_id: int | None = None
    limit: int | None = 50


class Period(msgspec.Struct, frozen=True):
    """A period of days as whole months (``m1``..``m2``, first days; none when ``m2 < m1``)
    and the days before (``d1``..``d2``) and after (``d3``..``d4``) them."""

    start: date
    end: date
    m1: date
    m2: date
    d1: date
    d2: date
    d3: date
    d4: date


def _month_after(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def split(start: date, end: date) -> Period:
    """The whole months of ``start``..``end`` and the days at either end (see ``Period``)."""
    first = start if start.day == 1 else _month_after(start)
    stop = (end + timedelta(days=1)).replace(day=1)  # the whole months end before it
    if first >= stop:  # no whole month: every day from the day tables
        return Period(start, end, first, first - timedelta(days=1), start, end, end, start)
    last = (stop - timedelta(days=1)).replace(day=1)
    return Period(start, end, first, last, start, first - timedelta(days=1), stop, end)


async def today(conn: Conn) -> date:
    """Today in Asia/Shanghai (by this host's clock, as the rebate rankings; ``conn`` unused,
    kept for the callers)."""
    return datetime.now(_TZ).date()


def _within(start: date, end: date, years: int) -> bool:
    """Whether ``start``..``end`` is at most ``years`` calendar years: it ends before the same
    day ``years`` later (from 29 February, before 1 March; a probe: 3 * 366 days let a period
    run two days past the README's 3 years)."""
    if start.year + years > date.max.year:
        return True
    try:
        return end < start.replace(year=start.year + years)
    except ValueError:  # 29 February
        return end < date(start.year + years, 3, 1)


def period(f: Filters, now: date, longest: int | None = None) -> tuple[date, date]:
    """``start``..``end``: default this month to today (either alone: to/from the other's
    default); at most ``longest`` days, or (None) ``MAX_YEARS`` years."""
    end = f.end or max(now, f.start or now)
    start = f.start or min(now.replace(day=1), end.replace(day=1))
    if end < start:
        raise BadRequest("the period ends before it starts", code="bad_period",
                         details={"field": "to"})  # fmt: skip
    if longest is None and not _within(start, end, MAX_YEARS):
        raise BadRequest(f"a report covers at most {MAX_YEARS} years", code="bad_period",
                         details={"field": "from"})  # fmt: skip
    if longest is not None and (end - start).days + 1 > longest:
        raise BadRequest(f"a report covers at most {longest} days", code="bad_period",
                         details={"field": "from"})  # fmt: skip
    # the month after the end's must still be a date (a probe: December 9999 was a 500)
    if end >= date(date.max.year, 12, 1):
        raise BadRequest("the period ends after the calendar does", code="bad_period",
                         details={"field": "to"})  # fmt: skip
    if start <= date.min + timedelta(days=1):  # and the day before the start
        raise BadRequest("the period starts before the calendar does", code="bad_period",
                         details={"field": "from"})  # fmt: skip
    return start, end


def brand_tree(actor: Principal) -> str:
    """The ``LIKE`` pattern of the caller's brand's tree (``orgs_path_idx``): the brand's
    products and categories are those of its organisations (``%(tree)s`` below)."""
    return f"/{actor.brand_id}/%"


async def products_of(conn: Conn, actor: Principal, f: Filters) -> list[int] | None:
    """The product ids the product, category and type filters leave (None: no such filter).
    A product or category not of the caller's brand is 404: the brand's are those of any
    organisation of its tree (``brand_tree``: one may be kept under its factory, as the
    catalogue allows and the codes take; a probe: ``org_id = brand`` answered 404 for it)."""
    if f.product_id is None and f.category_id is None and f.product_type is None:
        return None
    row = await (
        await conn.execute(
            """SELECT
                 (%(product)s::bigint IS NULL OR EXISTS (
                    SELECT 1 FROM products p JOIN orgs o ON o.id = p.org_id
                    WHERE p.id = %(product)s AND o.path LIKE %(tree)s)) AS product_found,
                 (%(category)s::bigint IS NULL OR EXISTS (
                    SELECT 1 FROM categories c JOIN orgs o ON o.id = c.org_id
                    WHERE c.id = %(category)s AND o.path LIKE %(tree)s)) AS category_found,
                 ARRAY(SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id
                       WHERE o.path LIKE %(tree)s
                         AND (%(product)s::bigint IS NULL OR p.id = %(product)s)
                         AND (%(category)s::bigint IS NULL OR p.category_id = %(category)s)
                         AND (%(type)s::text IS NULL OR p.product_type = %(type)s)
                       ORDER BY p.id) AS ids""",
            {
                "tree": brand_tree(actor),
                "product": f.product_id,
                "category": f.category_id,
                "type": f.product_type,
            },
        )
    ).fetchone()
    assert row is not None
    if not row["product_found"]:
        raise NotFound("product not found")
    if not row["category_found"]:
        raise NotFound("category not found")
    return list(row["ids"])


async def scope(conn: Conn, actor: Principal, f: Filters) -> tuple[list[str], dict[str, Any]]:
    """The conditions on the store ``o`` — the caller's subtree (none for the brand's own
    staff: every sale of the brand is in it), an agent's stores, one store, a region — and
    their parameters. An agent filter names an agent (its subtree's sales); a store filter one
    seller as the store ranking lists it (``RETAIL_KINDS``: a store, or an agent or distributor
    selling to consumers), its own sales — a probe: given an agent's or the brand's id, it
    reported the whole subtree as one store."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if actor.org_path != f"/{actor.brand_id}/":
        where.append("o.path LIKE %(scope)s")
        params["scope"] = actor.org_path + "%"
    for name, kinds, value in (
        ("agent", ("agent",), f.agent_id),
        ("store", RETAIL_KINDS, f.store_id),
    ):
        if value is None:
            continue
        row = await (
            await conn.execute("SELECT path, kind FROM orgs WHERE id = %s", (value,))
        ).fetchone()
        if row is None or row["kind"] not in kinds or not actor.sees(row["path"]):
            raise NotFound(f"{name} not found")
        if name == "store":
            where.append("o.id = %(store)s")
            params["store"] = value
        else:
            where.append("o.path LIKE %(agent)s")
            params["agent"] = row["path"] + "%"
    if f.province is not None:  # 浙江省, 浙江, Zhejiang or 330000 as A4-A7 take it; else 400
        params["province"] = query_province(f.province)
        params["province_code"] = CODE_OF[params["province"]]
        where.append("(o.province_code = %(province_code)s OR o.province_name = %(province)s)")
    if f.city is not None:  # a 6-digit code or the name as stored (杭州市): no list of cities
        code = f.city.isascii() and f.city.isdigit() and len(f.city) == 6
        where.append(f"o.city_{'code' if code else 'name'} = %(city)s")
        params["city"] = f.city
    return where, params


def _period_params(p: Period) -> dict[str, Any]:
    return {"m1": p.m1, "m2": p.m2, "d1": p.d1, "d2": p.d2, "d3": p.d3, "d4": p.d4}


def _month_end(day: date) -> date:
    return _month_after(day) - timedelta(days=1)


def store_sums(by_product: bool, start: date, end: date, one: bool = False) -> str:
    """Units per store over the period: of the products ``%(products)s`` (``by_product``) from
    ``sales_monthly``, one row per product, store and month (``month_units``); of every
    product, from the stores' running totals of each year (``sales_store_years``:
    ``cum[last day] - cum[day before the first]``, one row per store and year whatever the
    period), or for up to three whole months from ``sales_store_monthly`` (narrower rows). A
    period of whole months reads the products' units from ``sales_monthly``'s key alone (it
    includes them, migration 0039); with ``one`` product asked, a month's cells are one row per
    store (no sum).
    Parameters: ``_store_params``."""
    if by_product and one:  # one product: a row per store and month
        if start.replace(day=1) == end.replace(day=1):  # of one month: no sum
            return f"""(SELECT store_id, {month_units(start, end)} AS units FROM sales_monthly
            WHERE brand_id = %(brand)s AND product_id = ANY(%(products)s)
              AND month = %(ms)s)"""
    if by_product:
        return f"""(SELECT store_id, sum({month_units(start, end)})::bigint AS units
            FROM sales_monthly
            WHERE brand_id = %(brand)s AND product_id = ANY(%(products)s)
              AND month BETWEEN %(ms)s AND %(me)s
            GROUP BY store_id)"""
    p = split(start, end)
    months = (p.m2.year - p.m1.year) * 12 + p.m2.month - p.m1.month + 1
    if p.d1 > p.d2 and p.d3 > p.d4 and months == 1:  # one whole month: a row per store
        return """(SELECT store_id, units FROM sales_store_monthly
            WHERE brand_id = %(brand)s AND month = %(m1)s)"""
    if p.d1 > p.d2 and p.d3 > p.d4 and months <= 3:  # a few whole months: the narrow rows
        return """(SELECT store_id, sum(units)::bigint AS units FROM sales_store_monthly
            WHERE brand_id = %(brand)s AND month BETWEEN %(m1)s AND %(m2)s GROUP BY store_id)"""
    if start.year == end.year:
        return """(SELECT store_id,
                (cum[%(de)s::integer] - coalesce(cum[%(ds)s::integer - 1], 0))::bigint AS units
            FROM sales_store_years WHERE brand_id = %(brand)s AND year = %(ys)s::integer)"""
    return """(SELECT store_id,
            sum(cum[CASE WHEN year = %(ye)s::integer THEN %(de)s::integer ELSE 366 END]
                - coalesce(cum[CASE WHEN year = %(ys)s::integer THEN %(ds)s::integer - 1
                                    ELSE 0 END], 0))::bigint AS units
        FROM sales_store_years
        WHERE brand_id = %(brand)s AND year BETWEEN %(ys)s::integer AND %(ye)s::integer
        GROUP BY store_id)"""


def month_units(start: date, end: date, alias: str = "") -> str:
    """The units of a ``sales_monthly`` row (``alias``) within
    ``start``..``end``, the row's month being between the months of ``start`` (``%(ms)s``) and
    ``end`` (``%(me)s``): the whole month's, less the days before ``start``, up to ``end``'s
    day only (``dK`` past a month's end is its total: a period ending on a month's last day
    reads ``units``)."""
    a = alias
    if end == _month_end(end):
        last = f"{a}units"
    else:
        last = f"CASE WHEN {a}month = %(me)s THEN {a}d{end.day} ELSE {a}units END"
    if start.day == 1:
        return last
    return f"{last} - CASE WHEN {a}month = %(ms)s THEN {a}d{start.day - 1} ELSE 0 END"


def _store_params(start: date, end: date) -> dict[str, Any]:
    """The parameters of ``store_sums``: the first months and days of the period, and its
    first and last days as year and day of the year."""
    return _period_params(split(start, end)) | {
        "ms": start.replace(day=1),
        "me": end.replace(day=1),
        "ys": start.year,
        "ds": start.timetuple().tm_yday,
        "ye": end.year,
        "de": end.timetuple().tm_yday,
    }


class Asked(msgspec.Struct, frozen=True):
    """A question resolved: its period, product ids (None: all) and store conditions."""

    start: date
    end: date
    products: list[int] | None
    where: list[str]
    params: dict[str, Any]


async def resolve(
    conn: Conn, actor: Principal, f: Filters, longest: int | None = None, *, defer: bool = False
) -> Asked:
    """Check the permission and resolve the filters (see ``Asked``). With ``defer``, a lone
    product (``one_product``) is taken as asked: the caller's query checks it is the brand's
    (``_PRODUCT_FOUND``) instead of a query of its own."""
    actor.require("reports.read")
    start, end = period(f, await today(conn), longest)
    if defer and one_product(f):
        products: list[int] | None = [f.product_id]  # type: ignore[list-item]
    else:
        products = await products_of(conn, actor, f)
    where, params = await scope(conn, actor, f)
    params |= {"brand": actor.brand_id, "products": products, "product": f.product_id}
    params["tree"] = brand_tree(actor)
    return Asked(start, end, products, where, params)


def one_product(f: Filters) -> bool:
    """A product filter alone: its ids are the product's if it is the brand's (no agent or
    store either, whose look-ups would otherwise answer 404 before the product's)."""
    return (
        f.product_id is not None
        and f.category_id is None
        and f.product_type is None
        and f.agent_id is None
        and f.store_id is None
    )


# -- A1: stores ranked --------------------------------------------------------------------------

# The stores with sales (net units not zero) of the period in ranking order, the first
# ``{limit}`` (a literal: a prepared statement's generic plan is made for it), with the count
# and sum of them all; the organisations are joined before ranking only when a condition needs
# them (``{join}``), and for the names and the agent (``sales_org_regions``) of the rows
# listed. Without sales, one row of the totals and no store.
_RANKED = """
SELECT total.total, total.stores, r.store_id, r.units, o.name AS store_name,
       o.erp_code AS store_erp_code, o.province_code, o.province_name, o.city_code,
       o.city_name, ag.id AS agent_id, ag.name AS agent_name
FROM total
LEFT JOIN ranked r ON true
LEFT JOIN orgs o ON o.id = r.store_id
LEFT JOIN sales_org_regions rg ON rg.org_id = r.store_id
LEFT JOIN orgs ag ON ag.id = rg.agent_id
ORDER BY r.units DESC, r.store_id
"""
# The joins of a short list (``_listed``): each listed store's organisation and agent looked up
# by key (nested loops) instead of hashing every organisation for a few rows.
_JOINS = """LEFT JOIN orgs o ON o.id = r.store_id
LEFT JOIN sales_org_regions rg ON rg.org_id = r.store_id
LEFT JOIN orgs ag ON ag.id = rg.agent_id
"""
_JOINS_FEW = """LEFT JOIN LATERAL (
    SELECT name, erp_code, province_code, province_name, city_code, city_name FROM orgs
    WHERE id = r.store_id OFFSET 0) o ON true
LEFT JOIN LATERAL (
    SELECT ag.id, ag.name FROM sales_org_regions rg JOIN orgs ag ON ag.id = rg.agent_id
    WHERE rg.org_id = r.store_id OFFSET 0) ag ON true
"""
FEW = 100  # up to this many listed stores: ``_JOINS_FEW``


def _listed(sql: str, limit: int | None) -> str:
    """``sql`` (a ranking) with the joins of a short list when at most ``FEW`` are listed."""
    assert _JOINS in sql
    return sql.replace(_JOINS, _JOINS_FEW) if limit is not None and limit <= FEW else sql


_RANKING = (
    """
WITH t AS {source}, scoped AS (
    SELECT t.store_id, t.units FROM t{join}
    WHERE t.units <> 0 AND {where}
), total AS (
    SELECT coalesce(sum(units), 0)::bigint AS total, count(*) AS stores FROM scoped
), ranked AS (
    SELECT store_id, units FROM scoped ORDER BY units DESC, store_id LIMIT {limit}
)"""
    + _RANKED
)
# One whole month, brand-wide (no store condition, every product): the first stores straight
# from the month's cells in ranking order (index ``sales_store_monthly_rank``, migration 0037).
_RANKING_MONTH = (
    """
WITH total AS (
    SELECT coalesce(sum(units), 0)::bigint AS total, count(*) FILTER (WHERE units <> 0) AS stores
    FROM sales_store_monthly WHERE brand_id = %(brand)s AND month = %(m1)s
), ranked AS (
    SELECT store_id, units FROM sales_store_monthly
    WHERE brand_id = %(brand)s AND month = %(m1)s AND units <> 0
    ORDER BY units DESC, store_id LIMIT {limit}
)"""
    + _RANKED
)


# The ranking with the check that the product asked (``resolve(defer=True)``) is the brand's.
_PRODUCT_FOUND = """EXISTS (SELECT 1 FROM products p JOIN orgs po ON po.id = p.org_id
           WHERE p.id = %(product)s AND po.path LIKE %(tree)s) AS product_found, """
_RANKING_PRODUCT = _RANKING.replace(
    "SELECT total.total,", "SELECT " + _PRODUCT_FOUND + "total.total,"
)
assert _RANKING_PRODUCT != _RANKING


def _limit_sql(limit: int | None) -> str:
    return str(int(limit)) if limit is not None else "ALL"


async def store_ranking(conn: Conn, actor: Principal, f: Filters) -> StoreRanking:
    """A1: the stores of the caller's subtree (an agent's, a region's) ranked by net units
    sold over the period, of every product or of those asked; ties share a rank. Stores whose
    net units in the period are zero are not listed."""
    asked = await resolve(conn, actor, f, defer=True)
    p = split(asked.start, asked.end)
    whole_month = p.m1 == p.m2 and p.d1 > p.d2 and p.d3 > p.d4
    if not asked.where and asked.products is None and whole_month:
        sql = _RANKING_MONTH.format(limit=_limit_sql(f.limit))
    else:
        deferred = one_product(f)
        sql = (_RANKING_PRODUCT if deferred else _RANKING).format(
            source=store_sums(
                asked.products is not None,
                asked.start,
                asked.end,
                one=asked.products is not None and len(asked.products) == 1,
            ),
            join=" JOIN orgs o ON o.id = t.store_id" if asked.where else "",
            where=" AND ".join(asked.where) or "true",
            limit=_limit_sql(f.limit),
        )
    params = asked.params | _store_params(asked.start, asked.end)
    sql = _listed(sql, f.limit)
    rows = await (await conn.execute(sql, params)).fetchall()  # type: ignore[arg-type]
    if rows and rows[0].get("product_found") is False:
        raise NotFound("product not found")
    total = int(rows[0]["total"]) if rows else 0
    stores = int(rows[0]["stores"]) if rows else 0
    rows = [r for r in rows if r["store_id"] is not None]
    items: list[StoreSales] = []
    for n, r in enumerate(rows):
        tied = n > 0 and rows[n - 1]["units"] == r["units"]
        rank = items[-1].rank if tied else n + 1
        fields = {k: r[k] for k in StoreSales.__struct_fields__ if k not in ("rank", "share")}
        items.append(
            StoreSales(rank=rank, share=round(r["units"] / total, 4) if total else 0.0, **fields)
        )
    return StoreRanking(
        from_date=asked.start, to_date=asked.end, stores=stores, units=total, items=items
    )


# -- A2: by product, type and period ------------------------------------------------------------

# Brand-wide (no store condition): the small per-product day table, by day; by month its
# whole months from the per-product month table and the days at either end from the day table.
_PRODUCTS_BRAND = """
SELECT product_id, day AS bucket, sum(units)::bigint AS units
FROM sales_product_daily
WHERE brand_id = %(brand)s AND day BETWEEN %(start)s AND %(end)s{only}
GROUP BY GROUPING SETS ((product_id), (day))
"""
_PRODUCTS_BRAND_MONTHS = """
WITH s AS (
    SELECT product_id, month AS bucket, units FROM sales_product_monthly
    WHERE brand_id = %(brand)s AND month BETWEEN %(m1)s AND %(m2)s{only}
    UNION ALL
    SELECT product_id, date_trunc('month', day)::date, units FROM sales_product_daily
    WHERE brand_id = %(brand)s{only}
      AND (day BETWEEN %(d1)s AND %(d2)s OR day BETWEEN %(d3)s AND %(d4)s)
)
SELECT product_id, bucket, sum(units)::bigint AS units FROM s
GROUP BY GROUPING SETS ((product_id), (bucket))
"""
# Under store conditions: the cells of the stores' products (``sales_monthly``), the months'
# units within the period (``{units}``) or, by day, each day's (dK - d(K-1)) within it.
_PRODUCTS_STORES_MONTHS = """
WITH s AS (
    SELECT m.product_id, m.month AS bucket, {units} AS units
    FROM sales_monthly m JOIN orgs o ON o.id = m.store_id
    WHERE m.brand_id = %(brand)s AND {where}{only} AND m.month BETWEEN %(ms)s AND %(me)s
)
SELECT product_id, bucket, sum(units)::bigint AS units FROM s WHERE units <> 0
GROUP BY GROUPING SETS ((product_id), (bucket))
"""
_PRODUCTS_STORES_DAYS = (
    """
WITH s AS (
    SELECT m.product_id, m.month + (x.k - 1)::integer AS bucket, x.units
    FROM sales_monthly m JOIN orgs o ON o.id = m.store_id
    CROSS JOIN LATERAL unnest(ARRAY[m.d1, """
    + ", ".join(f"m.d{k} - m.d{k - 1}" for k in range(2, 32))
    + """]) WITH ORDINALITY AS x(units, k)
    WHERE m.brand_id = %(brand)s AND {where}{only} AND m.month BETWEEN %(ms)s AND %(me)s
      AND x.units <> 0 AND m.month + (x.k - 1)::integer BETWEEN %(start)s AND %(end)s
)
SELECT product_id, bucket, sum(units)::bigint AS units FROM s
GROUP BY GROUPING SETS ((product_id), (bucket))
"""
)
# The sums per product (and per bucket: ``product_id`` NULL) with the products' names.
_PRODUCT_NAMES = """
WITH r AS ({sums})
SELECT r.product_id, r.bucket, r.units, p.id, p.name, p.product_no, p.product_type,
       p.category_id, c.name AS category_name
FROM r LEFT JOIN products p ON p.id = r.product_id
LEFT JOIN categories c ON c.id = p.category_id
"""


def _label(day: date, granularity: Granularity) -> str:
    return day.isoformat() if granularity == "day" else f"{day.year:04d}-{day.month:02d}"


async def _product_rows(conn: Conn, asked: Asked, granularity: Granularity) -> list[dict[str, Any]]:
    only = " AND product_id = ANY(%(products)s)" if asked.products is not None else ""
    params = asked.params | {"start": asked.start, "end": asked.end}
    if not asked.where and granularity == "day":
        sql = _PRODUCTS_BRAND.format(only=only)
    elif not asked.where:
        sql = _PRODUCTS_BRAND_MONTHS.format(only=only)
        params |= _period_params(split(asked.start, asked.end))
    else:
        # the cells are keyed product first: every product of the brand when none is asked
        every = """ AND product_id = ANY(ARRAY(SELECT p.id FROM products p
            JOIN orgs po ON po.id = p.org_id WHERE po.path LIKE %(tree)s))"""
        where = " AND ".join(asked.where)
        if granularity == "day":
            sql = _PRODUCTS_STORES_DAYS.format(where=where, only=only or every)
        else:
            units = month_units(asked.start, asked.end, "m.")
            sql = _PRODUCTS_STORES_MONTHS.format(where=where, only=only or every, units=units)
        params |= _store_params(asked.start, asked.end)
    sql = _PRODUCT_NAMES.format(sums=sql)
    return await (await conn.execute(sql, params)).fetchall()  # type: ignore[arg-type]


async def product_report(
    conn: Conn, actor: Principal, f: Filters, granularity: Granularity = "month"
) -> ProductReport:
    """A2: net units by product and by product type over the period, and the period's series
    by day or month (of the products asked, at the stores asked); the first ``f.limit``
    products listed (None: all), the types, series and units of them all."""
    longest = MAX_SERIES_DAYS if granularity == "day" else None
    asked = await resolve(conn, actor, f, longest)
    # what nets to nothing is left out, by every path alike (a probe: the brand-wide one listed
    # a product sold and given back with 0 units, the stores' path did not)
    rows = [r for r in await _product_rows(conn, asked, granularity) if r["units"]]
    series = sorted((r["bucket"], r["units"]) for r in rows if r["product_id"] is None)
    products = sorted(
        (
            ProductSales(
                product_id=r["product_id"],
                product_name=r["name"],
                product_no=r["product_no"],
                product_type=r["product_type"],
                category_id=r["category_id"],
                category_name=r["category_name"],
                units=r["units"],
            )
            for r in rows
            if r["product_id"] is not None and r["id"] is not None
        ),
        key=lambda s: (-s.units, s.product_id),
    )
    types: dict[str, int] = defaultdict(int)
    for s in products:
        types[s.product_type] += s.units
    return ProductReport(
        from_date=asked.start,
        to_date=asked.end,
        granularity=granularity,
        units=sum(s.units for s in products),
        products=products[: f.limit] if f.limit else products,
        types=[
            TypeSales(product_type=t, units=u)
            for t, u in sorted(types.items(), key=lambda x: -x[1])
        ],
        series=[PeriodSales(period=_label(b, granularity), units=u) for b, u in series],
    )


# -- A3: by region and agent --------------------------------------------------------------------

# The stores with sales of the period summed by their region group (migration 0036: the
# province or city and the nearest agent of each organisation, kept by a trigger on orgs), then
# the groups' names and their agents'. The organisations are joined only when a condition needs
# them (``{join}``).
_REGIONS = """
WITH t AS {source}, s AS (
    SELECT r.{group} AS grp, count(*) AS stores, sum(t.units)::bigint AS units
    FROM t JOIN sales_org_regions r ON r.org_id = t.store_id{join}
    WHERE t.units <> 0 AND {where}
    GROUP BY r.{group}
)
SELECT g.province_code, g.province_name, {city_cols} g.agent_id, ag.name AS agent_name,
       s.stores, s.units
FROM s JOIN sales_region_groups g ON g.id = s.grp LEFT JOIN orgs ag ON ag.id = g.agent_id
ORDER BY s.units DESC, g.province_code NULLS LAST, {city_order} g.agent_id NULLS LAST
"""


async def region_report(
    conn: Conn, actor: Principal, f: Filters, level: Level = "province"
) -> RegionReport:
    """A3: net units by the stores' province (or city) and agent over the period, with totals
    per province and per agent."""
    asked = await resolve(conn, actor, f)
    by_city = level == "city"
    sql = _REGIONS.format(
        source=store_sums(asked.products is not None, asked.start, asked.end),
        group="city_group" if by_city else "province_group",
        join=" JOIN orgs o ON o.id = t.store_id" if asked.where else "",
        city_cols="g.city_code, g.city_name," if by_city else "",
        city_order="g.city_code NULLS LAST," if by_city else "",
        where=" AND ".join(asked.where) or "true",
    )
    params = asked.params | _store_params(asked.start, asked.end)
    rows = await (await conn.execute(sql, params)).fetchall()  # type: ignore[arg-type]
    items = [
        RegionSales(
            province_code=r["province_code"],
            province_name=r["province_name"],
            city_code=r.get("city_code"),
            city_name=r.get("city_name"),
            agent_id=r["agent_id"],
            agent_name=r["agent_name"],
            stores=r["stores"],
            units=r["units"],
        )
        for r in rows
    ]
    provinces: dict[tuple[str | None, str | None], int] = defaultdict(int)
    agents: dict[tuple[int | None, str | None], int] = defaultdict(int)
    for i in items:
        provinces[(i.province_code, i.province_name)] += i.units
        agents[(i.agent_id, i.agent_name)] += i.units
    return RegionReport(
        from_date=asked.start,
        to_date=asked.end,
        level=level,
        units=sum(i.units for i in items),
        items=items[: f.limit] if f.limit else items,
        provinces=[
            ProvinceSales(province_code=c, province_name=n, units=u)
            for (c, n), u in sorted(provinces.items(), key=lambda x: -x[1])
        ],
        agents=[
            AgentSales(agent_id=a, agent_name=n, units=u)
            for (a, n), u in sorted(agents.items(), key=lambda x: -x[1])
        ],
    )
