"""Rebate rankings (R3): stores and clerks ranked by rebate claims and amount per month(s) and
region, served from ``rebate_totals``, which a worker rolls up from the claims.

Every claim writes a ``rebate_tally_queue`` row (its claim id) in the claim's own transaction.
The roll-up takes queue rows under ``FOR UPDATE SKIP LOCKED``, deletes them and adds their
claims' counts and amounts to ``rebate_totals`` (brand, Asia/Shanghai month of ``claimed_at``,
store, clerk) in one statement, so concurrent roll-ups take disjoint rows and a claim is counted
exactly once; rows of claim transactions not yet committed are invisible and wait for a later
pass. A queue row whose claim does not exist, or that cannot be folded for a reason of its data,
goes to ``dead_letters`` (``app.deadletters.drain``) and the others are folded. ``recount``
proves the totals (plus the claims still queued) equal a count of ``rebate_claims``, exactly as
``app.logistics.rollup`` does for stock.

Serving: one month (``month=YYYY-MM``) or a span (``from_month``/``to_month``, a quarter, a year)
sums the month rows of the caller's brand by store (or by store and clerk), joins the stores'
organisations for the scope (the caller's subtree, or an agent's within it) and the region (the
store's ``province_code``/``city_code``, or their names), ranks by amount or count and returns
the first ``limit`` rows. The roll-up keeps the store sums of each month in
``rebate_store_totals`` too (migration 0019), indexed in ranking order, so a one-month store
ranking reads its first ``limit`` stores from an index instead of summing the month's
stores × clerks rows of ``rebate_totals`` (bench/RESULTS.md, issue 16).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

from app.auth.principal import Principal
from app.db import Conn
from app.deadletters import REBATE_TALLY, drain
from app.errors import BadRequest, NotFound
from app.localtime import REPORT_TZ
from app.locks import Lock, run_alone
from app.provinces import query_province
from app.rebates.schemas_ranking import ClerkRank, ClerkRanking, StoreRank, StoreRanking

MONTH_OF = f"date_trunc('month', c.claimed_at AT TIME ZONE '{REPORT_TZ}')::date"
MAX_MONTHS = 36  # the longest span one ranking sums (three years)

By = Literal["amount", "count"]

# -- roll-up ------------------------------------------------------------------------------------

# One batch: take and delete queue rows, sum their claims, add the sums to the totals. Totals
# rows are upserted in key order so two roll-ups touching the same rows wait for each other
# instead of deadlocking. ``taken`` counts the queue rows, ``folded`` the claims found for them.
_BATCH_OF = f"""
WITH taken AS (
    DELETE FROM rebate_tally_queue
    WHERE claim_id IN ({{take}})
    RETURNING claim_id
), summed AS (
    SELECT c.brand_id, {MONTH_OF} AS month, c.store_id, c.clerk_id,
           count(*) AS claims, sum(c.amount) AS amount
    FROM taken t JOIN rebate_claims c ON c.id = t.claim_id
    GROUP BY 1, 2, 3, 4
), upserted AS (
    INSERT INTO rebate_totals AS r (brand_id, month, store_id, clerk_id, claims, amount)
    SELECT brand_id, month, store_id, clerk_id, claims, amount FROM summed
    ORDER BY brand_id, month, store_id, clerk_id
    ON CONFLICT (brand_id, month, store_id, clerk_id) DO UPDATE
        SET claims = r.claims + EXCLUDED.claims, amount = r.amount + EXCLUDED.amount,
            updated_at = now()
    RETURNING 1
), stores AS (
    INSERT INTO rebate_store_totals AS r (brand_id, month, store_id, claims, amount)
    SELECT brand_id, month, store_id, sum(claims), sum(amount) FROM summed
    GROUP BY brand_id, month, store_id
    ORDER BY brand_id, month, store_id
    ON CONFLICT (brand_id, month, store_id) DO UPDATE
        SET claims = r.claims + EXCLUDED.claims, amount = r.amount + EXCLUDED.amount,
            updated_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM taken) AS taken,
       (SELECT coalesce(sum(claims), 0) FROM summed)::bigint AS folded,
       (SELECT count(*) FROM upserted) AS upserted, (SELECT count(*) FROM stores) AS stores
"""
_BATCH = _BATCH_OF.replace(
    "{take}",
    "SELECT claim_id FROM rebate_tally_queue ORDER BY claim_id LIMIT %(limit)s "
    "FOR UPDATE SKIP LOCKED",
)
# The same for given rows only: salvaging a batch that failed (see ``rollup``).
_BATCH_IDS = _BATCH_OF.replace(
    "{take}",
    "SELECT claim_id FROM rebate_tally_queue WHERE claim_id = ANY(%(ids)s) FOR UPDATE SKIP LOCKED",
)


class UnknownClaim(ValueError):
    """A queue row names a claim that does not exist: the row's fault (dead-lettered)."""


async def rollup(conn: Conn, limit: int = 100_000) -> int:
    """Fold queued claims into ``rebate_totals``, ``limit`` queue rows per transaction, until
    none are left; return how many queue rows were consumed. ``conn`` must not be inside a
    transaction. A row that cannot be folded (its claim is missing, a sum out of range) is
    dead-lettered and does not stop the others (``app.deadletters.drain``)."""
    return await drain(
        conn,
        "rebate_tally_queue",
        REBATE_TALLY,
        lambda: _fold(conn, _BATCH, {"limit": limit}),
        lambda ids: _fold(conn, _BATCH_IDS, {"ids": ids}),
        limit,
        key="claim_id",
    )


async def _fold(conn: Conn, sql: str, params: dict[str, Any]) -> int:
    """One batch in one transaction; rolled back when a queue row has no claim."""
    async with conn.transaction():
        row = await (await conn.execute(sql, params)).fetchone()
        assert row is not None
        if row["folded"] != row["taken"]:
            raise UnknownClaim(f"{row['taken'] - row['folded']} queued claim(s) do not exist")
        return int(row["taken"])


async def rollup_alone(conn: Conn, *, wait: bool = False, limit: int = 100_000) -> int | None:
    """``rollup`` with one roller at a time across processes; ``None`` when another roller is
    running and ``wait`` is false. ``conn`` should be in autocommit mode."""
    return await run_alone(conn, Lock.REBATE_ROLLUP, lambda: rollup(conn, limit), wait=wait)


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """A totals cell that differs from the count of the claims themselves: a store and clerk's
    month in ``rebate_totals``, or (``clerk_id`` None) a store's month in
    ``rebate_store_totals``."""

    brand_id: int
    month: date
    store_id: int
    clerk_id: int | None
    claims: int
    amount: Decimal
    expected_claims: int
    expected_amount: Decimal


# One statement, one snapshot: a claim and its queue row are both visible or neither. Both
# tables are compared with the claims; a store's row carries clerk_id -1 until the end.
_RECOUNT = f"""
WITH claimed AS (
    SELECT c.brand_id, {MONTH_OF} AS month, c.store_id, c.clerk_id,
           count(*) AS claims, sum(c.amount) AS amount
    FROM rebate_claims c
    WHERE c.hold_state IS DISTINCT FROM 'held' AND c.hold_state IS DISTINCT FROM 'rejected'
    GROUP BY 1, 2, 3, 4
), expected AS (
    SELECT brand_id, month, store_id, clerk_id, claims, amount FROM claimed
    UNION ALL
    SELECT brand_id, month, store_id, -1, sum(claims), sum(amount) FROM claimed GROUP BY 1, 2, 3
), queued AS (
    SELECT c.brand_id, {MONTH_OF} AS month, c.store_id, c.clerk_id, c.amount
    FROM rebate_tally_queue q JOIN rebate_claims c ON c.id = q.claim_id
), recorded AS (
    SELECT brand_id, month, store_id, clerk_id, sum(claims) AS claims, sum(amount) AS amount
    FROM (SELECT brand_id, month, store_id, clerk_id, claims, amount FROM rebate_totals
          UNION ALL
          SELECT brand_id, month, store_id, -1, claims, amount FROM rebate_store_totals
          UNION ALL
          SELECT brand_id, month, store_id, clerk_id, 1, amount FROM queued
          UNION ALL
          SELECT brand_id, month, store_id, -1, 1, amount FROM queued) r
    GROUP BY 1, 2, 3, 4
)
SELECT brand_id, month, store_id, nullif(clerk_id, -1) AS clerk_id,
       coalesce(r.claims, 0)::bigint AS claims, coalesce(r.amount, 0) AS amount,
       coalesce(e.claims, 0)::bigint AS expected_claims, coalesce(e.amount, 0) AS expected_amount
FROM expected e FULL JOIN recorded r USING (brand_id, month, store_id, clerk_id)
WHERE coalesce(r.claims, 0) <> coalesce(e.claims, 0)
   OR coalesce(r.amount, 0) <> coalesce(e.amount, 0)
ORDER BY 1, 2, 3, 4
"""


async def recount(conn: Conn) -> list[Mismatch]:
    """Totals cells of either table (plus the claims still queued) that differ from a count of
    the claims."""
    rows = await (await conn.execute(_RECOUNT)).fetchall()
    return [Mismatch(**row) for row in rows]


# -- serving ------------------------------------------------------------------------------------

_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")  # ASCII digits (\d takes any script's)
_CODE = re.compile(r"[0-9]{6}")


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """A ranking's question, as the routes (and the CLI, tests) pass it."""

    month: str | None = None
    from_month: str | None = None
    to_month: str | None = None
    province: str | None = None
    city: str | None = None
    agent_id: int | None = None
    by: By = "amount"
    limit: int | None = 50


def _parse_month(text: str, field: str) -> date:
    found = _MONTH.fullmatch(text)
    try:
        if found:
            return date(int(found[1]), int(found[2]), 1)
    except ValueError:  # year 0000
        pass
    raise BadRequest(
        f"{field} must be a month as YYYY-MM", code="bad_period", details={"field": field}
    )


def _months_between(first: date, last: date) -> int:
    return (last.year - first.year) * 12 + last.month - first.month + 1


def period(f: Filters, today: date) -> tuple[date, date]:
    """The first and last month (first days) asked: ``month``, or ``from_month``..``to_month``
    (either alone: that one month to the other end's default, this month), or this month."""
    if f.month is not None:
        if f.from_month is not None or f.to_month is not None:
            raise BadRequest(
                "month or from_month/to_month, not both",
                code="bad_period",
                details={"field": "month"},
            )
        month = _parse_month(f.month, "month")
        return month, month
    this_month = today.replace(day=1)
    last = _parse_month(f.to_month, "to_month") if f.to_month is not None else None
    first = _parse_month(f.from_month, "from_month") if f.from_month is not None else None
    first, last = first or last or this_month, last or max(first or this_month, this_month)
    if last < first:
        raise BadRequest(
            "the period ends before it starts", code="bad_period", details={"field": "to_month"}
        )
    if _months_between(first, last) > MAX_MONTHS:
        raise BadRequest(
            f"a ranking spans at most {MAX_MONTHS} months",
            code="bad_period",
            details={"field": "from_month"},
        )
    return first, last


async def _scope(conn: Conn, actor: Principal, f: Filters) -> tuple[list[str], dict[str, Any]]:
    """The WHERE terms on the store ``o`` (caller's subtree, agent, region) and their params."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if actor.org_path != f"/{actor.brand_id}/":  # the brand's own staff see every store
        where.append("o.path LIKE %(scope)s")
        params["scope"] = actor.org_path + "%"
    if f.agent_id is not None:
        row = await (
            await conn.execute("SELECT path, kind FROM orgs WHERE id = %s", (f.agent_id,))
        ).fetchone()
        if row is None or row["kind"] != "agent" or not actor.sees(row["path"]):
            raise NotFound("agent not found")
        where.append("o.path LIKE %(agent)s")
        params["agent"] = row["path"] + "%"
    if f.province is not None:  # any spelling or its code, as stored (a probe: 浙江 found none)
        where.append("o.province_name = %(province)s")
        params["province"] = query_province(f.province)
    if f.city is not None:
        column = "city_code" if _CODE.fullmatch(f.city) else "city_name"
        where.append(f"o.{column} = %(city)s")
        params["city"] = f.city
    return where, params


def _month_label(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


# The ranked rows: ``{source}`` the sums per store (or store and clerk) over the period, ``{join}``
# what the rows need besides the store, ``{where}`` the scope; in ranking order (the measure, then
# the other measure, then the ids), the first ``limit``. No window function: for one month the
# store rows come in this order from an index of ``rebate_store_totals`` and the scan stops after
# ``limit`` rows (a window over the whole month would read all of them); the shared ranks of ties
# (1, 1, 3) follow from the order (``_ranks``). The brand's own staff get no path filter (every
# store of the brand is theirs), so nothing stands between the index order and the LIMIT; the
# LIMIT is a literal so that a prepared statement's generic plan is made for it.
_RANKED = """
WITH ranked AS (
    SELECT t.*, o.name AS store_name, o.erp_code AS store_erp_code, o.path,
           o.province_code, o.province_name, o.city_code, o.city_name{columns}
    FROM {source} t JOIN orgs o ON o.id = t.store_id{join}
    WHERE {where}
    ORDER BY t.{by} DESC, t.{other} DESC, {key}
    LIMIT {limit}
)
SELECT r.*, ag.id AS agent_id, ag.name AS agent_name
FROM ranked r
LEFT JOIN LATERAL (
    SELECT a.id, a.name FROM orgs a
    WHERE a.id = ANY(string_to_array(trim(both '/' from r.path), '/')::bigint[])
      AND a.kind = 'agent'
    ORDER BY length(a.path) DESC LIMIT 1
) ag ON true
ORDER BY r.{by} DESC, r.{other} DESC, {key}
"""
_MONTH_OF_STORES = """(SELECT store_id, claims, amount FROM rebate_store_totals
    WHERE brand_id = %(brand)s AND month = %(first)s)"""
_SPAN_OF_STORES = """(SELECT store_id, sum(claims)::bigint AS claims, sum(amount) AS amount
    FROM rebate_store_totals WHERE brand_id = %(brand)s AND month BETWEEN %(first)s AND %(last)s
    GROUP BY store_id)"""
_SPAN_OF_CLERKS = """(SELECT store_id, clerk_id, sum(claims)::bigint AS claims,
           sum(amount) AS amount
    FROM rebate_totals WHERE brand_id = %(brand)s AND month BETWEEN %(first)s AND %(last)s
    GROUP BY store_id, clerk_id)"""
_STORES = {"key": "store_id", "columns": "", "join": ""}
_CLERKS = {
    "key": "store_id, clerk_id",
    "columns": ", u.display_name AS clerk_name, u.username AS clerk_username",
    "join": " JOIN users u ON u.id = t.clerk_id",
}


async def _ranked(
    conn: Conn, actor: Principal, f: Filters, clerks: bool
) -> tuple[date, date, list[dict[str, Any]]]:
    actor.require("rebates.read")
    first, last = period(f, datetime.now(ZoneInfo(REPORT_TZ)).date())
    where, params = await _scope(conn, actor, f)
    measure, other = ("amount", "claims") if f.by == "amount" else ("claims", "amount")
    if clerks:
        shape, source = _CLERKS, _SPAN_OF_CLERKS
    else:
        shape, source = _STORES, _MONTH_OF_STORES if first == last else _SPAN_OF_STORES
    sql = _RANKED.format(
        by=measure,
        other=other,
        # a store (or clerk) whose claims were all withdrawn (returns) keeps its emptied cells:
        # not ranked (a probe: ranked with 0 claims, in the first ``limit`` rows too)
        where=" AND ".join([*where, "t.claims <> 0"]),
        source=source,
        limit=int(f.limit) if f.limit is not None else "ALL",  # a literal: planned for it
        **shape,
    )
    params |= {"brand": actor.brand_id, "first": first, "last": last}
    rows = await (await conn.execute(sql, params)).fetchall()  # type: ignore[arg-type]
    return first, last, _ranks(rows, measure)


def _ranks(rows: list[dict[str, Any]], measure: str) -> list[dict[str, Any]]:
    """Competition ranks (1, 1, 3) of rows in ranking order: every row before a row with a
    larger measure is in the list (the order is by the measure first), so a row's rank is one
    more than the number of rows before the first of its tie."""
    for n, row in enumerate(rows):
        tied = n > 0 and rows[n - 1][measure] == row[measure]
        row["rank"] = rows[n - 1]["rank"] if tied else n + 1
    return rows


def _store_rank(row: dict[str, Any]) -> StoreRank:
    return StoreRank(
        rank=row["rank"],
        store_id=row["store_id"],
        store_name=row["store_name"],
        store_erp_code=row["store_erp_code"],
        province_code=row["province_code"],
        province_name=row["province_name"],
        city_code=row["city_code"],
        city_name=row["city_name"],
        agent_id=row["agent_id"],
        agent_name=row["agent_name"],
        claims=row["claims"],
        amount=float(row["amount"]),
    )


async def store_ranking(conn: Conn, actor: Principal, f: Filters) -> StoreRanking:
    """Stores of the caller's subtree (or an agent's, a region's) ranked by rebate amount or
    count over the months asked."""
    first, last, rows = await _ranked(conn, actor, f, clerks=False)
    return StoreRanking(
        from_month=_month_label(first),
        to_month=_month_label(last),
        by=f.by,
        items=[_store_rank(r) for r in rows],
    )


async def clerk_ranking(conn: Conn, actor: Principal, f: Filters) -> ClerkRanking:
    """Clerks (per store they claimed at) of the caller's subtree ranked like the stores."""
    first, last, rows = await _ranked(conn, actor, f, clerks=True)
    return ClerkRanking(
        from_month=_month_label(first),
        to_month=_month_label(last),
        by=f.by,
        items=[
            ClerkRank(
                clerk_id=r["clerk_id"],
                clerk_name=r["clerk_name"],
                clerk_username=r["clerk_username"],
                **msgspec.structs.asdict(_store_rank(r)),
            )
            for r in rows
        ],
    )


STORE_COLUMNS = (
    "rank",
    "store_id",
    "store",
    "store_erp_code",
    "province",
    "city",
    "agent",
    "claims",
    "amount",
)
CLERK_COLUMNS = ("rank", "clerk_id", "clerk", "username", *STORE_COLUMNS[1:])


def store_rows(ranking: StoreRanking) -> list[tuple[Any, ...]]:
    """The export rows of a store ranking (``STORE_COLUMNS``)."""
    return [
        (
            r.rank,
            r.store_id,
            r.store_name,
            r.store_erp_code,
            r.province_name,
            r.city_name,
            r.agent_name,
            r.claims,
            r.amount,
        )
        for r in ranking.items
    ]


def clerk_rows(ranking: ClerkRanking) -> list[tuple[Any, ...]]:
    """The export rows of a clerk ranking (``CLERK_COLUMNS``)."""
    return [
        (
            r.rank,
            r.clerk_id,
            r.clerk_name,
            r.clerk_username,
            r.store_id,
            r.store_name,
            r.store_erp_code,
            r.province_name,
            r.city_name,
            r.agent_name,
            r.claims,
            r.amount,
        )
        for r in ranking.items
    ]
