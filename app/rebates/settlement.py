"""The stores' rebate statements (issue 16 item 5): generated per store and period, then
pending → approved → paid, or rejected.

Generation (``rebates.settle``, brand staff): for a period of the Asia/Shanghai calendar (a month,
or ``from``–``to`` inclusive) one pending statement per store that has unsettled claims
(``statement_id`` NULL) claimed in it; the claims are assigned to it and it carries their count
and sum. Running it again only picks up claims that are in no statement yet (a late claim): a
further statement. A period that has not ended may be settled (the claims so far); one that has
not started is refused. Concurrent generations of a brand take turns on an advisory lock
(``Lock.REBATE_STATEMENTS``, per brand), and each generation is one SQL statement (one snapshot)
that counts, inserts and assigns, so a claim lands in exactly one statement and every statement's
totals are those of its claims.

Transitions (``rebates.settle``, brand staff), each on the row locked ``FOR UPDATE`` so that of
two concurrent ones exactly one wins: approve (pending → approved), pay (approved → paid, with the
payment's reference and date), reject (pending or approved → rejected, with a reason). Anything
else is 409 ``invalid_transition`` naming the current status: approving twice, paying before
approval, and any change of a paid or rejected statement. A paid statement never changes (a
trigger of 0017 refuses even a direct UPDATE or DELETE). A rejected statement keeps its claims (a
claim belongs to exactly one statement; its settlement status is then ``rejected``) and they are
never settled again. Every generation and transition writes an audit row (before and after), with
the statement's store as its organisation.

A claim's settlement status is derived, not stored: ``unsettled`` without a statement, else the
statement's status (``CLAIM_SETTLEMENT`` below).

Reads (``rebates.read``) stay within the caller's subtree: the brand sees every statement, an agent
its stores', a store its own; any other answers 404 as if it did not exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from psycopg_pool import AsyncConnectionPool

from app import audit, locks, tabular
from app.auth.principal import Principal
from app.codes.scheme import Scheme
from app.db import Conn
from app.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from app.localtime import REPORT_TZ
from app.locks import Lock
from app.orgs.service import org_path
from app.paging import Page, check_period, fetch_page
from app.rebates.schemas_settlement import (
    ClaimLine,
    GenerateIn,
    GenerateOut,
    PayIn,
    RejectIn,
    StatementDetail,
    StatementOut,
    StatementStatus,
)

READ = "rebates.read"
SETTLE = "rebates.settle"
MAX_DAYS = 366  # the longest period one generation settles
_BATCH = 2000  # export rows fetched from the server-side cursor at a time
Format = Literal["json", "csv", "xlsx"]

# A claim's settlement status, for queries over rebate_claims c (no column of its own).
CLAIM_SETTLEMENT = (
    "COALESCE((SELECT s.status FROM rebate_statements s WHERE s.id = c.statement_id), 'unsettled')"
)

STATEMENT_COLUMNS = list(StatementOut.__struct_fields__)
CLAIM_COLUMNS = list(ClaimLine.__struct_fields__)


def shanghai_today() -> date:
    """Today in the calendar of periods (Asia/Shanghai)."""
    return datetime.now(ZoneInfo(REPORT_TZ)).date()


def month_start(month: str) -> date:
    """The first day of a ``YYYY-MM`` month."""
    year, number = month.split("-")
    return date(int(year), int(number), 1)


def next_month(day: date) -> date:
    """The first day of the month after ``day``'s."""
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    """Days [start, end) of the Asia/Shanghai calendar."""

    start: date
    end: date  # exclusive


def period_of(data: GenerateIn, today: date) -> Period:
    """The period a generation asks for: ``period`` (a month) or ``from``–``to`` (inclusive).

    400 ``bad_period`` unless exactly one of the two forms is given, ``to`` is not before
    ``from`` and the period is at most ``MAX_DAYS`` long; 422 ``period_not_started`` when it
    starts after today."""
    ranged = data.date_from is not None or data.date_to is not None
    if (data.period is None) == (not ranged) or (ranged and None in (data.date_from, data.date_to)):
        raise BadRequest(
            "give either period (YYYY-MM) or both from and to (dates, inclusive)",
            code="bad_period",
            details={"field": "period"},
        )
    if data.period is not None:
        start = month_start(data.period)
        period = Period(start, next_month(start))
    else:
        assert data.date_from is not None and data.date_to is not None
        if data.date_to < data.date_from:
            raise BadRequest("the period ends before it starts", code="bad_period")
        if (data.date_to - data.date_from).days >= MAX_DAYS:
            raise BadRequest(
                f"a period is at most {MAX_DAYS} days",
                code="bad_period",
                details={"max_days": MAX_DAYS},
            )
        if data.date_to == date.max:  # the day after the end must still be a date
            raise BadRequest(
                "the period ends after the calendar does",
                code="bad_period",
                details={"field": "to"},
            )
        period = Period(data.date_from, data.date_to + timedelta(days=1))
    if period.start > today:
        raise Unprocessable(
            f"the period starts after today ({today})",
            code="period_not_started",
            details={"period_from": period.start.isoformat()},
        )
    return period


def settler_brand(actor: Principal) -> int:
    """The brand whose statements the caller settles: its own, if it is the brand's staff with
    ``rebates.settle`` (403 otherwise; ``brand_staff_only`` below the brand)."""
    actor.require(SETTLE)
    if actor.org_id != actor.brand_id:
        raise Forbidden(
            "rebate statements are settled by the brand's own staff", code="brand_staff_only"
        )
    return actor.brand_id


# -- statements as rows -----------------------------------------------------------------------

_SELECT = """s.id, s.store_id, o.name AS store_name, o.erp_code AS store_code, s.period_start,
    s.period_end, s.claims, s.amount, s.status, s.created_by, s.created_at, s.approved_by,
    s.approved_at, s.paid_by, s.paid_at, s.payment_ref, s.paid_on, s.rejected_by, s.rejected_at,
    s.reject_reason, o.path AS store_path"""
_SOURCE = "rebate_statements s JOIN orgs o ON o.id = s.store_id"
_ORDER = "s.period_start DESC, s.id DESC"


def statement_of(row: dict[str, Any]) -> StatementOut:
    """A statement row (``_SELECT``) as the API shows it: the period's last day inclusive, and
    ``period`` when it is one calendar month."""
    start, end = row["period_start"], row["period_end"]
    month = start.strftime("%Y-%m") if start.day == 1 and end == next_month(start) else None
    return StatementOut(
        id=row["id"],
        store_id=row["store_id"],
        store_name=row["store_name"],
        store_code=row["store_code"],
        period=month,
        period_from=start,
        period_to=end - timedelta(days=1),
        claims=row["claims"],
        amount=float(row["amount"]),
        status=row["status"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        approved_by=row["approved_by"],
        approved_at=row["approved_at"],
        paid_by=row["paid_by"],
        paid_at=row["paid_at"],
        payment_ref=row["payment_ref"],
        paid_on=row["paid_on"],
        rejected_by=row["rejected_by"],
        rejected_at=row["rejected_at"],
        reject_reason=row["reject_reason"],
    )


async def _statement_row(
    conn: Conn, brand_id: int, statement_id: int, *, lock: bool = False
) -> dict[str, Any] | None:
    return await (
        await conn.execute(
            f"SELECT {_SELECT} FROM {_SOURCE} WHERE s.id = %s AND s.brand_id = %s"
            + (" FOR UPDATE OF s" if lock else ""),
            (statement_id, brand_id),
        )
    ).fetchone()


def _not_found(statement_id: int) -> NotFound:
    return NotFound(f"rebate statement {statement_id} not found", details={"id": statement_id})


async def visible_statement(conn: Conn, actor: Principal, statement_id: int) -> StatementOut:
    """A statement of the caller's subtree (``rebates.read``); 404 otherwise."""
    actor.require(READ)
    row = await _statement_row(conn, actor.brand_id, statement_id)
    if row is None or not actor.sees(row["store_path"]):
        raise _not_found(statement_id)
    return statement_of(row)


# -- generation -------------------------------------------------------------------------------

# One statement (one snapshot): the unsettled claims of the period, one statement per store,
# the claims assigned to it, locked. ``linked`` is checked against the totals: a claim assigned
# by anyone else meanwhile would show as a shortfall (and roll the whole generation back).
_GENERATE = f"""
WITH claims AS (
    SELECT c.id, c.store_id, c.amount FROM rebate_claims c
    WHERE c.brand_id = %(brand)s AND c.statement_id IS NULL
      AND c.hold_state IS DISTINCT FROM 'held' AND c.hold_state IS DISTINCT FROM 'rejected'
      AND c.claimed_at >= (%(start)s::date::timestamp AT TIME ZONE '{REPORT_TZ}')
      AND c.claimed_at < (%(end)s::date::timestamp AT TIME ZONE '{REPORT_TZ}')
      AND (%(store)s::bigint IS NULL OR c.store_id = %(store)s::bigint)
    ORDER BY c.id
    -- a consumer's return withdrawing one (deleting it, ``app.rebates.returns``) is waited
    -- for: a claim it deleted is left out (a probe: counted, then not linked, 409 "retry")
    FOR UPDATE OF c
), made AS (
    INSERT INTO rebate_statements (brand_id, store_id, period_start, period_end, claims, amount,
                                   created_by)
    SELECT %(brand)s, store_id, %(start)s, %(end)s, count(*), sum(amount), %(user)s
    FROM claims GROUP BY store_id ORDER BY store_id
    RETURNING id, store_id, claims
), linked AS (
    UPDATE rebate_claims c SET statement_id = made.id
    FROM claims JOIN made ON made.store_id = claims.store_id
    WHERE c.id = claims.id AND c.statement_id IS NULL
    RETURNING c.id
)
SELECT (SELECT array_agg(id ORDER BY id) FROM made) AS ids,
       (SELECT coalesce(sum(claims), 0) FROM made) AS counted,
       (SELECT count(*) FROM linked) AS linked
"""


async def _check_store(conn: Conn, actor: Principal, store_id: int) -> None:
    """``store_id`` names a store of the caller's brand (404 ``unknown_org``, 422
    ``not_a_store``)."""
    path = await org_path(conn, store_id)
    if path is None or not actor.sees(path):
        raise NotFound(f"organisation {store_id} not found", code="unknown_org")
    row = await (await conn.execute("SELECT kind FROM orgs WHERE id = %s", (store_id,))).fetchone()
    if row is None or row["kind"] != "store":
        raise Unprocessable(f"organisation {store_id} is not a store", code="not_a_store")


async def generate(conn: Conn, actor: Principal, data: GenerateIn) -> GenerateOut:
    """Settle a period: one pending statement per store with unsettled claims in it (see the
    module's docstring); none when there are none."""
    brand = settler_brand(actor)
    period = period_of(data, shanghai_today())
    if data.store_id is not None:
        await _check_store(conn, actor, data.store_id)
    await locks.xact_lock(conn, Lock.REBATE_STATEMENTS, brand)
    made = await (
        await conn.execute(
            _GENERATE,
            {
                "brand": brand,
                "start": period.start,
                "end": period.end,
                "store": data.store_id,
                "user": actor.person,  # an API key's: its maker (as documents name them)
            },
        )
    ).fetchone()
    assert made is not None
    if made["linked"] != made["counted"]:  # cannot happen under the lock; never commit it
        raise Conflict("claims changed during the generation; retry", code="retry")
    ids = made["ids"] or []
    rows = await (
        await conn.execute(
            f"SELECT {_SELECT} FROM {_SOURCE} WHERE s.id = ANY(%s) ORDER BY s.id", (ids,)
        )
    ).fetchall()
    statements = [statement_of(row) for row in rows]
    for statement in statements:
        await audit.record(
            conn,
            actor,
            "create",
            "rebate_statement",
            statement.id,
            after=statement,
            org_id=statement.store_id,
        )
    return GenerateOut(
        period_from=period.start,
        period_to=period.end - timedelta(days=1),
        statements=statements,
        claims=sum(s.claims for s in statements),
        amount=float(sum(row["amount"] for row in rows)),
    )


# -- transitions ------------------------------------------------------------------------------

# The statuses each action may start from, and its UPDATE.
_TRANSITIONS: dict[str, tuple[tuple[StatementStatus, ...], str]] = {
    "approve": (
        ("pending",),
        """UPDATE rebate_statements SET status = 'approved', approved_by = %(user)s,
               approved_at = now() WHERE id = %(id)s""",
    ),
    "pay": (
        ("approved",),
        """UPDATE rebate_statements SET status = 'paid', paid_by = %(user)s, paid_at = now(),
               payment_ref = %(ref)s, paid_on = %(paid_on)s WHERE id = %(id)s""",
    ),
    "reject": (
        ("pending", "approved"),
        """UPDATE rebate_statements SET status = 'rejected', rejected_by = %(user)s,
               rejected_at = now(), reject_reason = %(reason)s WHERE id = %(id)s""",
    ),
}


async def _transition(
    conn: Conn,
    actor: Principal,
    statement_id: int,
    action: str,
    params: dict[str, Any],
    check: Callable[[StatementOut], None] | None = None,
) -> StatementOut:
    """Move a statement by ``action`` (``_TRANSITIONS``), on its row locked: 404 unknown (or
    another brand's), 409 ``invalid_transition`` from any other status; audited."""
    brand = settler_brand(actor)
    row = await _statement_row(conn, brand, statement_id, lock=True)
    if row is None:
        raise _not_found(statement_id)
    before = statement_of(row)
    allowed, update = _TRANSITIONS[action]
    if before.status not in allowed:
        raise Conflict(
            f"rebate statement {statement_id} is {before.status}: it cannot be {action}d"
            if action != "pay"
            else f"rebate statement {statement_id} is {before.status}: only an approved one "
            "can be paid",
            code="invalid_transition",
            details={"status": before.status, "action": action, "allowed_from": list(allowed)},
        )
    if check is not None:
        check(before)
    # who approved, paid or rejected: the user, or the maker of an API key (a probe: null)
    await conn.execute(update, {**params, "id": statement_id, "user": actor.person})
    after_row = await _statement_row(conn, brand, statement_id)
    assert after_row is not None
    after = statement_of(after_row)
    await audit.record(
        conn,
        actor,
        action,
        "rebate_statement",
        statement_id,
        before=before,
        after=after,
        org_id=after.store_id,
    )
    return after


async def approve(conn: Conn, actor: Principal, statement_id: int) -> StatementOut:
    """pending → approved."""
    return await _transition(conn, actor, statement_id, "approve", {})


async def pay(conn: Conn, actor: Principal, statement_id: int, data: PayIn) -> StatementOut:
    """approved → paid, with the payment's reference and date: not in the future (422
    ``paid_on_in_future``) and not before the period starts (422 ``paid_on_before_period``).
    The date is checked once the caller may pay and the statement is found (a probe: a store
    clerk's or a missing statement's payment answered 422, not 403 or 404)."""

    def payable(statement: StatementOut) -> None:
        if data.paid_on > shanghai_today():
            raise Unprocessable(
                "paid_on is in the future", code="paid_on_in_future", details={"field": "paid_on"}
            )
        if data.paid_on < statement.period_from:
            raise Unprocessable(
                f"paid_on is before the statement's period ({statement.period_from})",
                code="paid_on_before_period",
                details={"field": "paid_on"},
            )

    params = {"ref": data.payment_ref.strip(), "paid_on": data.paid_on}
    return await _transition(conn, actor, statement_id, "pay", params, payable)


async def reject(conn: Conn, actor: Principal, statement_id: int, data: RejectIn) -> StatementOut:
    """pending or approved → rejected, with the reason; the claims stay in the statement."""
    return await _transition(conn, actor, statement_id, "reject", {"reason": data.reason.strip()})


# -- reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    status: StatementStatus | None = None
    store_id: int | None = None
    period: str | None = None  # YYYY-MM: statements whose period lies within that month
    date_from: date | None = None  # statements whose period lies within [from, to]
    date_to: date | None = None


@dataclass(frozen=True)
class Query:
    """A filtered query: enough to page it or stream it."""

    select: str
    source: str
    where: list[str]
    params: dict[str, Any]
    order: str

    def sql(self) -> str:
        return (
            f"SELECT {self.select} FROM {self.source} WHERE {' AND '.join(self.where)} "
            f"ORDER BY {self.order}"
        )


async def statement_query(conn: Conn, actor: Principal, f: Filters) -> Query:
    """The caller's statements (``rebates.read``, its subtree) matching ``f``: 400
    ``bad_period`` when ``to`` is before ``from``, 404 ``unknown_org`` for a store outside."""
    actor.require(READ)
    check_period(f.date_from, f.date_to)
    where = ["s.brand_id = %(brand)s", "o.path LIKE %(scope)s"]
    params: dict[str, Any] = {"brand": actor.brand_id, "scope": actor.org_path + "%"}
    if f.store_id is not None:
        path = await org_path(conn, f.store_id)
        if path is None or not actor.sees(path):
            raise NotFound(f"organisation {f.store_id} not found", code="unknown_org")
        where.append("s.store_id = %(store)s")
        params["store"] = f.store_id
    if f.status is not None:
        where.append("s.status = %(status)s")
        params["status"] = f.status
    if f.period is not None:
        start = month_start(f.period)
        where.append("s.period_start >= %(month)s AND s.period_end <= %(month_end)s")
        params |= {"month": start, "month_end": next_month(start)}
    if f.date_from is not None:
        where.append("s.period_start >= %(date_from)s")
        params["date_from"] = f.date_from
    if f.date_to is not None:
        where.append("s.period_end <= %(date_to)s::date + 1")
        params["date_to"] = f.date_to
    return Query(_SELECT, _SOURCE, where, params, _ORDER)


async def list_statements(conn: Conn, query: Query, page: int, per_page: int) -> Page[StatementOut]:
    return await fetch_page(
        conn,
        columns=query.select,
        source=query.source,
        where=query.where,
        params=query.params,
        order=query.order,
        page=page,
        per_page=per_page,
        make=statement_of,
    )


_CLAIM_SELECT = """c.id AS claim_id, c.code_id, b.key_version, c.claimed_at, c.product_id,
    p.product_no, p.name AS product_name, c.clerk_id,
    COALESCE(NULLIF(u.display_name, ''), u.username) AS clerk_name, c.agent_id, c.amount"""
_CLAIM_SOURCE = """rebate_claims c
    LEFT JOIN code_batches b ON b.batch_no = c.code_id >> 32 AND b.brand_id = c.brand_id
    LEFT JOIN products p ON p.id = c.product_id
    LEFT JOIN users u ON u.id = c.clerk_id"""


def claim_line(scheme: Scheme, row: dict[str, Any]) -> ClaimLine:
    """A claim row (``_CLAIM_SELECT``) as a line: the serial spelled from its code and batch."""
    serial = None
    if row["key_version"] is not None:
        code = row["code_id"]
        try:
            serial = scheme.serial(code >> 32, code & 0xFFFFFFFF, row["key_version"])
        except ValueError:  # a key version this deployment no longer holds
            serial = None
    return ClaimLine(
        claim_id=row["claim_id"],
        serial=serial,
        claimed_at=row["claimed_at"],
        product_id=row["product_id"],
        product_no=row["product_no"],
        product_name=row["product_name"],
        clerk_id=row["clerk_id"],
        clerk_name=row["clerk_name"],
        agent_id=row["agent_id"],
        amount=float(row["amount"]),
    )


def claims_query(statement_id: int) -> Query:
    """The claims of a statement (already found visible), oldest first."""
    return Query(
        _CLAIM_SELECT,
        _CLAIM_SOURCE,
        ["c.statement_id = %(statement)s"],
        {"statement": statement_id},
        "c.claimed_at, c.id",
    )


async def claims_page(
    conn: Conn, scheme: Scheme, statement_id: int, page: int, per_page: int
) -> Page[ClaimLine]:
    query = claims_query(statement_id)
    return await fetch_page(
        conn,
        columns=query.select,
        source=query.source,
        where=query.where,
        params=query.params,
        order=query.order,
        page=page,
        per_page=per_page,
        make=lambda row: claim_line(scheme, row),
    )


async def detail(
    conn: Conn, actor: Principal, scheme: Scheme, statement_id: int, page: int, per_page: int
) -> StatementDetail:
    """A statement of the caller's subtree and one page of its claims."""
    statement = await visible_statement(conn, actor, statement_id)
    return StatementDetail(
        statement=statement, claims=await claims_page(conn, scheme, statement_id, page, per_page)
    )


# -- exports ----------------------------------------------------------------------------------


def _batches(
    pool: AsyncConnectionPool, query: Query, make: Callable[[dict[str, Any]], msgspec.Struct]
) -> AsyncIterator[tabular.Rows]:
    """The query's rows as export rows (``make``, in field order), batch by batch, from a
    server-side cursor of a connection of their own (memory stays flat; ``app.tabular``: 429
    ``exports_busy`` now when the pool's export streams are all taken)."""
    return tabular.pooled_batches(
        pool,
        query.sql(),
        query.params,
        lambda row: msgspec.structs.astuple(make(row)),
        name="rebate_export",
        batch=_BATCH,
    )


def export(
    pool: AsyncConnectionPool,
    query: Query,
    make: Callable[[dict[str, Any]], msgspec.Struct],
    columns: list[str],
    fmt: Format,
    name: str,
) -> tabular.Download:
    """Every row of ``query`` as a CSV or XLSX download (``app.tabular``: formula guard)."""
    batches = _batches(pool, query, make)
    if fmt == "xlsx":
        chunks = tabular.xlsx_chunks(name, columns, batches)
    else:
        chunks = tabular.csv_chunks(columns, batches)
    return tabular.download(chunks, fmt, f"{name}.{fmt}")


def export_statements(pool: AsyncConnectionPool, query: Query, fmt: Format) -> tabular.Download:
    return export(
        pool, query, statement_of, STATEMENT_COLUMNS, fmt, f"rebate-statements-{shanghai_today()}"
    )


def export_claims(
    pool: AsyncConnectionPool, scheme: Scheme, statement: StatementOut, fmt: Format
) -> tabular.Download:
    """A statement's lines as a file (the store's copy for reconciliation); 422
    ``too_many_rows`` when they do not fit one XLSX sheet."""
    if fmt == "xlsx" and statement.claims > tabular.XLSX_MAX_ROWS:
        raise Unprocessable(
            f"more than {tabular.XLSX_MAX_ROWS:,} rows do not fit one XLSX sheet: export CSV",
            code="too_many_rows",
            details={"max_rows": tabular.XLSX_MAX_ROWS},
        )
    return export(
        pool,
        claims_query(statement.id),
        lambda row: claim_line(scheme, row),
        CLAIM_COLUMNS,
        fmt,
        f"rebate-statement-{statement.id}",
    )
