"""Rebate queries (R2): claims filtered, paged, totalled and exported; the clerk's own summary;
the kept refusals (anti-diversion signals).

Claims. One row per claim with what the seed's 门店返利查询 (1.3.2) and 销售返利查询 (1.3.3) show:
product, category, barcode (GTIN), colour number, store, clerk, the unit's serial, the amount
copied at claim time, the agent (the store's nearest agent, whose rule applied), and the
settlement status (``unsettled`` while the claim is on no statement, else its statement's
status). A caller (``rebates.read``) sees the claims of the stores of its subtree: the brand
all of them, an agent its stores', a store its own; a filter naming an organisation, clerk or
product outside that answers an empty result, never another subtree's rows. Periods are
Asia/Shanghai calendar days, ``from`` and ``to`` inclusive. A page comes with the count and
amount of every matching claim (one aggregate query beside the page's). A claim made on hold
(``app.forensics.holds``) is earned only once its hold is released: while held, or rejected, it
is in no list, total, export or summary (the statements and rankings skip it too).

Exports run the same query (``app.logistics.center.Query``) on a server-side cursor of a
connection of their own and stream it through ``app.tabular`` (CSV or XLSX, formula guard);
the serial is rendered from the code id and its batch's key version as the rows stream
(``Query.convert``), null when that key version is retired (as on a statement).

The clerk's summary (``clerk_summary``, ``GET /rebates/me`` and the clerk's H5 page): today's,
this month's and all-time count and amount of the signed-in clerk's claims, and a page of them,
newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from app.auth.principal import Principal
from app.codes.batches import split_code_id
from app.codes.scheme import Scheme, UnknownKeyVersion
from app.db import Conn
from app.errors import Forbidden
from app.localtime import REPORT_TZ
from app.logistics.center import Query
from app.paging import check_period
from app.rebates.schemas import (
    ClaimRow,
    ClaimsPage,
    ClerkSummary,
    RefusalRow,
    Settlement,
    Totals,
)

READ = "rebates.read"
CLAIM = "sales.claim"
CLAIM_COLUMNS = list(ClaimRow.__struct_fields__)
REFUSAL_COLUMNS = list(RefusalRow.__struct_fields__)
_SERIAL_AT = CLAIM_COLUMNS.index("serial")
_CODE_AT = CLAIM_COLUMNS.index("code_id")

# ``serial`` is selected as the batch's key version and rendered by ``_serial`` (the scheme is
# not in SQL); the column order is ClaimRow's, which the exports' header follows.
_CLAIM_SELECT = """c.id AS claim_id, c.claimed_at, c.store_id, s.name AS store_name,
    s.city_name AS store_city, c.clerk_id, COALESCE(NULLIF(u.display_name, ''), u.username)
    AS clerk_name, c.agent_id, ag.name AS agent_name, c.product_id, p.product_no,
    p.name AS product_name, g.name AS category, p.gtin, p.colour_no, c.code_id,
    b.key_version AS serial, c.amount::float8 AS amount,
    COALESCE(st.status, 'unsettled') AS settlement, c.statement_id"""
_CLAIM_SOURCE = """rebate_claims c JOIN orgs s ON s.id = c.store_id
    JOIN users u ON u.id = c.clerk_id
    JOIN products p ON p.id = c.product_id
    LEFT JOIN orgs ag ON ag.id = c.agent_id
    LEFT JOIN categories g ON g.id = p.category_id
    LEFT JOIN rebate_statements st ON st.id = c.statement_id
    LEFT JOIN code_batches b ON b.batch_no = c.code_id >> 32"""
_CLAIM_ORDER = "c.claimed_at DESC, c.id DESC"
# What a clerk earned: a claim made on hold (app.forensics.holds) counts once its hold is released,
# never while held nor once rejected — as the statements and rankings take claims.
EARNED = "(c.hold_state IS NULL OR c.hold_state = 'released')"
# The totals join only what the conditions name (by alias): a count over many claims stays lean.
_TOTAL_JOINS = (
    ("s.", "JOIN orgs s ON s.id = c.store_id"),
    ("p.", "JOIN products p ON p.id = c.product_id"),
    ("st.", "LEFT JOIN rebate_statements st ON st.id = c.statement_id"),
)

_REFUSAL_SELECT = """f.id, f.at, f.reason, f.serial, f.code_id, f.store_id, s.name AS store_name,
    f.clerk_id, COALESCE(NULLIF(u.display_name, ''), u.username) AS clerk_name,
    f.expected_store_id, es.name AS expected_store_name, f.expected_agent_id,
    ea.name AS expected_agent_name, f.holder_org_id, h.name AS holder_org_name"""
_REFUSAL_SOURCE = """rebate_refusals f JOIN orgs s ON s.id = f.store_id
    JOIN users u ON u.id = f.clerk_id
    LEFT JOIN orgs es ON es.id = f.expected_store_id
    LEFT JOIN orgs ea ON ea.id = f.expected_agent_id
    LEFT JOIN orgs h ON h.id = f.holder_org_id"""

_DAY = f"(date_trunc('day', now() AT TIME ZONE '{REPORT_TZ}') AT TIME ZONE '{REPORT_TZ}')"
_MONTH = f"(date_trunc('month', now() AT TIME ZONE '{REPORT_TZ}') AT TIME ZONE '{REPORT_TZ}')"


@dataclass(frozen=True)
class ClaimFilters:
    store_id: int | None = None
    clerk_id: int | None = None
    product_id: int | None = None
    category_id: int | None = None
    agent_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None
    settlement: Settlement | None = None


def _serial(scheme: Scheme | None, code: int, key_version: int | None) -> str | None:
    """The printed serial of a unit code: None without its batch, without a scheme, or of a
    key version this deployment no longer holds (a retired one broke the list with 422
    ``not_genuine`` and its files mid-stream, probe), as a statement's claims show it."""
    if scheme is None or key_version is None:
        return None
    batch_no, index = split_code_id(code)
    try:
        return scheme.serial(batch_no, index, key_version)
    except UnknownKeyVersion:
        return None


def claim_maker(scheme: Scheme | None) -> Any:
    """Row dict → ClaimRow, the serial rendered."""

    def make(row: dict[str, Any]) -> ClaimRow:
        row["serial"] = _serial(scheme, row["code_id"], row["serial"])
        return ClaimRow(**row)

    return make


def _claim_converter(scheme: Scheme | None) -> Any:
    """Exported row tuple → the same with the serial rendered."""

    def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
        serial = _serial(scheme, row[_CODE_AT], row[_SERIAL_AT])
        return (*row[:_SERIAL_AT], serial, *row[_SERIAL_AT + 1 :])

    return convert


def _period(
    column: str, date_from: date | None, date_to: date | None, where: list[str], params: dict
) -> None:
    """``from``/``to``: inclusive Asia/Shanghai calendar days of ``column`` (a timestamptz)."""
    check_period(date_from, date_to)
    if date_from is not None:
        where.append(f"{column} >= (%(date_from)s::date::timestamp AT TIME ZONE '{REPORT_TZ}')")
        params["date_from"] = date_from
    if date_to is not None:
        where.append(f"{column} < ((%(date_to)s::date + 1)::timestamp AT TIME ZONE '{REPORT_TZ}')")
        params["date_to"] = date_to


def claims_query(actor: Principal, scheme: Scheme | None, f: ClaimFilters) -> Query:
    """The claims of the stores in the caller's subtree matching ``f``, newest first."""
    actor.require(READ)
    where = ["c.brand_id = %(brand)s", EARNED]
    params: dict[str, Any] = {"brand": actor.brand_id, "scope": actor.org_path + "%"}
    if actor.org_path != f"/{actor.brand_id}/":  # below the brand: its stores only
        where.append("s.path LIKE %(scope)s")
    for column, key, value in (
        ("c.store_id", "store", f.store_id),
        ("c.clerk_id", "clerk", f.clerk_id),
        ("c.product_id", "product", f.product_id),
        ("p.category_id", "category", f.category_id),
        ("c.agent_id", "agent", f.agent_id),
    ):
        if value is not None:
            where.append(f"{column} = %({key})s")
            params[key] = value
    _period("c.claimed_at", f.date_from, f.date_to, where, params)
    if f.settlement == "unsettled":
        where.append("c.statement_id IS NULL")
    elif f.settlement is not None:
        where.append("st.status = %(settlement)s")
        params["settlement"] = f.settlement
    return Query(
        _CLAIM_SELECT,
        _CLAIM_SOURCE,
        where,
        params,
        _CLAIM_ORDER,
        CLAIM_COLUMNS,
        "rebates",
        convert=_claim_converter(scheme),
    )


async def totals(conn: Conn, query: Query) -> Totals:
    """The count and amount of every claim the query matches."""
    condition = query.condition
    joins = " ".join(join for alias, join in _TOTAL_JOINS if alias in condition)
    row = await (
        await conn.execute(
            f"SELECT count(*) AS claims, COALESCE(sum(c.amount), 0)::float8 AS amount "
            f"FROM rebate_claims c {joins} WHERE {condition}",
            query.params,
        )
    ).fetchone()
    assert row is not None
    return Totals(claims=int(row["claims"]), amount=float(row["amount"]))


async def _page(
    conn: Conn, query: Query, scheme: Scheme | None, page: int, per_page: int
) -> list[ClaimRow]:
    rows = await (
        await conn.execute(
            query.sql() + " LIMIT %(limit__)s OFFSET %(offset__)s",
            {**query.params, "limit__": per_page, "offset__": (page - 1) * per_page},
        )
    ).fetchall()
    make = claim_maker(scheme)
    return [make(row) for row in rows]


async def claims_page(
    conn: Conn, query: Query, scheme: Scheme | None, page: int, per_page: int
) -> ClaimsPage:
    """A page of the query's claims and the totals of all of them."""
    sums = await totals(conn, query)
    items = await _page(conn, query, scheme, page, per_page) if sums.claims else []
    return ClaimsPage(
        items=items, page=page, per_page=per_page, total=sums.claims, amount=sums.amount
    )


async def clerk_summary(
    conn: Conn, principal: Principal, page: int, per_page: int, scheme: Scheme | None = None
) -> ClerkSummary:
    """The signed-in clerk's own rebates (``sales.claim``, a user, not an API key): count and
    amount today, this month (Asia/Shanghai) and in all, and a page of the clerk's claims,
    newest first (serials rendered when ``scheme`` is given): what the clerk earned, a claim
    held or rejected (``EARNED``) in neither."""
    principal.require(CLAIM)
    if principal.user_id is None:
        raise Forbidden("only a signed-in clerk has rebates of their own", code="user_required")
    row = await (
        await conn.execute(
            f"""SELECT count(*) FILTER (WHERE claimed_at >= {_DAY}) AS today_n,
                       COALESCE(sum(amount) FILTER (WHERE claimed_at >= {_DAY}), 0)::float8
                           AS today_amount,
                       count(*) FILTER (WHERE claimed_at >= {_MONTH}) AS month_n,
                       COALESCE(sum(amount) FILTER (WHERE claimed_at >= {_MONTH}), 0)::float8
                           AS month_amount,
                       count(*) AS all_n, COALESCE(sum(amount), 0)::float8 AS all_amount
                FROM rebate_claims c WHERE clerk_id = %s AND {EARNED}""",
            (principal.user_id,),
        )
    ).fetchone()
    assert row is not None
    query = Query(
        _CLAIM_SELECT,
        _CLAIM_SOURCE,
        ["c.clerk_id = %(clerk)s", EARNED],
        {"clerk": principal.user_id},
        "c.id DESC",
        CLAIM_COLUMNS,
        "rebates",
    )
    items = await _page(conn, query, scheme, page, per_page) if row["all_n"] else []
    return ClerkSummary(
        today=Totals(claims=row["today_n"], amount=row["today_amount"]),
        month=Totals(claims=row["month_n"], amount=row["month_amount"]),
        all_time=Totals(claims=row["all_n"], amount=row["all_amount"]),
        items=items,
        page=page,
        per_page=per_page,
        total=row["all_n"],
    )


def refusals_query(
    actor: Principal, store_id: int | None, date_from: date | None, date_to: date | None
) -> Query:
    """Refused claims kept as anti-diversion signals, newest first: those tried at a store of
    the caller's subtree, or of units meant for a store or agent of it."""
    actor.require(READ)
    where = [
        "f.brand_id = %(brand)s",
        "(s.path LIKE %(scope)s OR es.path LIKE %(scope)s OR ea.path LIKE %(scope)s)",
    ]
    params: dict[str, Any] = {"brand": actor.brand_id, "scope": actor.org_path + "%"}
    if store_id is not None:
        where.append("f.store_id = %(store)s")
        params["store"] = store_id
    _period("f.at", date_from, date_to, where, params)
    return Query(
        _REFUSAL_SELECT,
        _REFUSAL_SOURCE,
        where,
        params,
        "f.at DESC, f.id DESC",
        REFUSAL_COLUMNS,
        "refusals",
    )


def refusal_row(row: dict[str, Any]) -> RefusalRow:
    return RefusalRow(**row)
