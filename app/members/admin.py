"""Member admin for the brand's staff (M5): find members, see what they scanned and redeemed (and
who fulfilled it where), freeze them, export them.

Who sees members. A membership belongs to a brand, and the member directory is the brand's
head office's: staff (users and API keys) of the brand organisation itself, holding
``members.read``. Staff of organisations below it — factories, agents, distributors, stores —
see no member, whatever their permissions (a list answers 403 ``brand_staff_only``, a member 404):
consumers' personal data stays with the brand. A store sees the redemptions it fulfilled through
the redemption endpoints (``app.members.redemptions``), with masked phones, not the members.

Phones are masked (``138****1234``, ``app.members.mask``) unless the caller holds
``members.read_phone``, in the JSON and in the CSV alike. Freezing (``members.write``) takes a
reason (kept on the member's row while frozen; the audit records only that one was given),
is audited, and stops the member from claiming and redeeming (``Member.require_active``)
and its codes issued already from being handed out (``app.members.redemptions``); the member
may still sign in and read. A freeze outlives the erasure of the membership: the phone signed
up again starts frozen (``app.members.freezes``), and unfreezing it forgets the kept freeze.
Every CSV export is audited (who, which filters).

A whole-number phone search tells whether that number is a member's, and staff who see
``138****1234`` could walk the 10,000 numbers it leaves (a probe did): for them such searches,
JSON and CSV alike, count the ones finding no member per staff account, and past the limit are
refused (429 ``rate_limited``, ``MemberLimits.take_guess``; 503 while Redis is down). Each
takes its slot before the search and gives it back when it finds the member: counted after,
searches sent at once all passed the limit (a probe).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from app import audit, tabular
from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.errors import Conflict, NotFound, ValidationFailed
from app.localtime import REPORT_TZ
from app.members import erasure, freezes, points
from app.members.limits import PHONE_MISS, MemberLimits
from app.members.mask import mask_phone, sees_phones, shown_email, shown_phone, shown_wechat_id
from app.members.phones import phone_query
from app.members.principal import Member, brand_of_staff
from app.members.profile import AGE_BAND_SQL
from app.members.redemptions import STATUS_NOW, status_is
from app.members.schemas import MemberDetail, MemberRow, MemberStatus, RedemptionRow, ScanRow
from app.members.schemas_points import PointsOut
from app.paging import Page, check_period, fetch_page
from app.provinces import query_province
from app.verify.record import swept_retry

RECENT_SCANS = 20
RECENT_LEDGER = 20
CSV_BATCH = 2000

_COLUMNS = (
    "m.id, m.brand_id, m.phone, m.status, m.gender, m.birthday, "
    f"({AGE_BAND_SQL.format(m='m')}) AS age_band, m.email, m.wechat_id, m.province, m.city, "
    "m.marketing_opt_out, m.created_at, m.last_login_at, m.frozen_reason, m.frozen_at, m.frozen_by"
)
_SCAN_COLUMNS = (
    "v.at, v.serial, v.product_id, p.name AS product_name, p.spec, v.result, v.reason, "
    "v.province, v.city"
)
_SCAN_SOURCE = "verifications v LEFT JOIN products p ON p.id = v.product_id"


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """Search of the member list; ``date_from``/``date_to`` are registration days, inclusive."""

    phone: str | None = None  # a whole number, or its last 4 (to 10, for who sees phones whole)
    province: str | None = None
    status: MemberStatus | None = None
    date_from: date | None = None
    date_to: date | None = None


def _where(actor: Principal, f: Filters) -> tuple[list[str], dict[str, Any]]:
    where = ["m.brand_id = %(brand)s"]
    params: dict[str, Any] = {"brand": brand_of_staff(actor)}
    if f.phone is not None:
        term = phone_query(f.phone)
        if len(term) not in (4, 11) and not sees_phones(actor):
            # staff who see phones masked (138****1234) search by a whole number or by the
            # four digits they see: matching on 5 to 10 last digits told the hidden ones, one
            # digit a few requests (probe N)
            raise ValidationFailed(
                "invalid request (phone): a whole number, or its last 4 digits",
                details=[{"field": "phone", "message": "masked phones", "source": "query"}],
            )
        if len(term) == 11:
            where.append("m.phone = %(phone)s")
            params["phone"] = term
        else:  # the last digits, through the index on reverse(phone)
            where.append("reverse(m.phone) LIKE %(phone_rev)s")
            params["phone_rev"] = term[::-1] + "%"
    if f.province is not None:
        where.append("m.province = %(province)s")
        params["province"] = query_province(f.province)
    if f.status is not None:
        where.append("m.status = %(status)s")
        params["status"] = f.status
    else:  # an erased membership is nobody's: listed only when asked for
        where.append("m.status <> 'erased'")
    check_period(f.date_from, f.date_to)
    if f.date_from is not None:
        where.append(f"m.created_at >= (%(date_from)s::date::timestamp AT TIME ZONE '{REPORT_TZ}')")
        params["date_from"] = f.date_from
    if f.date_to is not None:
        where.append(
            f"m.created_at < ((%(date_to)s::date + 1)::timestamp AT TIME ZONE '{REPORT_TZ}')"
        )
        params["date_to"] = f.date_to
    return where, params


def _masked_whole_number(actor: Principal, f: Filters) -> bool:
    """A whole-number phone search by staff who see phones masked: whether it finds a member
    names a masked phone's hidden digits, so its misses are limited (``_where`` has checked the
    term)."""
    return f.phone is not None and not sees_phones(actor) and len(phone_query(f.phone)) == 11


def _row(actor: Principal, r: dict[str, Any]) -> MemberRow:
    return MemberRow(
        id=r["id"],
        phone=shown_phone(actor, r["phone"]),
        status=r["status"],
        gender=r["gender"],
        age_band=r["age_band"],
        province=r["province"],
        city=r["city"],
        created_at=r["created_at"],
        last_login_at=r["last_login_at"],
    )


# The list's order, and its file's (a probe: the CSV came out oldest first, the page newest first).
_ORDER = "m.created_at DESC, m.id DESC"


async def list_members(
    conn: Conn,
    actor: Principal,
    f: Filters,
    page: int,
    per_page: int,
    *,
    limits: MemberLimits,
) -> Page[MemberRow]:
    """The brand's members matching the filters, newest first (a masked whole-number search
    finding none counts against ``limits``)."""
    where, params = _where(actor, f)
    taken = _masked_whole_number(actor, f) and await limits.take_guess(actor, PHONE_MISS)
    missed = False
    try:
        found = await fetch_page(
            conn,
            columns=_COLUMNS,
            source="members m",
            where=where,
            params=params,
            order=_ORDER,
            page=page,
            per_page=per_page,
            make=lambda r: _row(actor, r),
        )
        missed = not found.total
    finally:
        if taken and not missed:
            await limits.give_back_guess(actor, PHONE_MISS)
    return found


async def _member(
    conn: Conn, actor: Principal, member_id: int, lock: bool = False
) -> dict[str, Any]:
    """The member row, if it is of the caller's brand and the caller is its staff (else 404)."""
    actor.require("members.read")
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM members m WHERE m.id = %s"
            + (" FOR NO KEY UPDATE" if lock else ""),
            (member_id,),
        )
    ).fetchone()
    if row is None or actor.org_id != actor.brand_id or row["brand_id"] != actor.brand_id:
        raise NotFound("member not found")
    return row


async def scans(
    conn: Conn, actor: Principal, member_id: int, page: int, per_page: int
) -> Page[ScanRow]:
    """The member's verifications (points claims), newest first."""
    await _member(conn, actor, member_id)
    return await _scans(conn, member_id, page, per_page)


async def own_scans(conn: Conn, member: Member, page: int, per_page: int) -> Page[ScanRow]:
    """The signed-in member's own scans, newest first (the H5 page "my scans")."""
    return await _scans(conn, member.id, page, per_page)


# A claim made from the answer to the member's own PIN check (the H5 page: the claim's retry
# key is the check's), or a claim sent again, is recorded ``claim_retry``: one scan, listed once.
# Past its days the retention sweep keeps a stand-in of the key (``record.swept_retry``): the
# check's, swept first (it is the earlier), pairs with its claim's key not swept yet too.
_ONE_SCAN = f"""NOT (v.reason = 'claim_retry' AND EXISTS (
    SELECT 1 FROM verifications w
     WHERE w.member_id = v.member_id AND w.code_id = v.code_id
       AND w.retry IN (v.retry, {swept_retry("v.retry")}) AND w.reason <> 'claim_retry'))"""


async def _scans(conn: Conn, member_id: int, page: int, per_page: int) -> Page[ScanRow]:
    return await fetch_page(
        conn,
        columns=_SCAN_COLUMNS,
        source=_SCAN_SOURCE,
        where=["v.member_id = %(member)s", _ONE_SCAN],
        params={"member": member_id},
        order="v.at DESC, v.id DESC",
        page=page,
        per_page=per_page,
        make=lambda r: ScanRow(**r),
    )


_REDEMPTION_COLUMNS = (
    f"r.id, r.gift_id, g.name AS gift_name, r.gift_kind, r.points, {STATUS_NOW} AS status, "
    "r.created_at, r.expires_at, r.fulfilled_at, r.fulfilled_by, "
    "u.username AS fulfilled_by_name, r.fulfilled_org_id, o.name AS fulfilled_org_name, "
    "r.expired_at"
)
_REDEMPTION_SOURCE = (
    "redemptions r JOIN gifts g ON g.id = r.gift_id LEFT JOIN users u ON u.id = r.fulfilled_by "
    "LEFT JOIN orgs o ON o.id = r.fulfilled_org_id"
)


async def redemptions(
    conn: Conn,
    actor: Principal,
    member_id: int,
    status: str | None,
    page: int,
    per_page: int,
) -> Page[RedemptionRow]:
    """The member's redemptions and their fulfilment (who, where, when), newest first."""
    await _member(conn, actor, member_id)
    where, params = ["r.member_id = %(member)s"], {"member": member_id}
    if status is not None:  # a code past its date is expired already (``STATUS_NOW``)
        where.append(status_is(status))
    return await fetch_page(
        conn,
        columns=_REDEMPTION_COLUMNS,
        source=_REDEMPTION_SOURCE,
        where=where,
        params=params,
        order="r.id DESC",
        page=page,
        per_page=per_page,
        make=lambda r: RedemptionRow(**r),
    )


async def detail(conn: Conn, actor: Principal, member_id: int) -> MemberDetail:
    """One member: the profile, its freeze, its latest scans, its points balance and latest
    ledger entries."""
    row = await _member(conn, actor, member_id)
    recent = await _scans(conn, member_id, 1, RECENT_SCANS)
    entries = await points.ledger(conn, member_id, 1, RECENT_LEDGER)
    return MemberDetail(
        **{k: row[k] for k in row if k not in ("phone", "email", "wechat_id")},
        phone=shown_phone(actor, row["phone"]),
        email=shown_email(actor, row["email"]),
        wechat_id=shown_wechat_id(actor, row["wechat_id"]),
        scans=recent.items,
        scans_total=recent.total,
        points_balance=await points.balance(conn, member_id),
        ledger=entries.items,
        ledger_total=entries.total,
        freeze_carried_over=await freezes.carried_over(conn, member_id),
    )


async def ledger(
    conn: Conn, actor: Principal, member_id: int, page: int, per_page: int
) -> PointsOut:
    """The member's balance and ledger entries, newest first (``members.read``)."""
    await _member(conn, actor, member_id)
    entries = await points.ledger(conn, member_id, page, per_page)
    return PointsOut(
        balance=await points.balance(conn, member_id),
        items=entries.items,
        page=entries.page,
        per_page=entries.per_page,
        total=entries.total,
    )


async def erase(
    conn: Conn, actor: Principal, member_id: int, settings: Settings, limits: MemberLimits
) -> None:
    """Erase a member on their request (``app.members.erasure``; ``members.write``, brand
    staff)."""
    brand_id = brand_of_staff(actor, "members.write")
    await _member(conn, actor, member_id)  # 404 as for any member not of the caller's brand
    await erasure.erase(conn, actor, brand_id, member_id, settings, limits)


async def set_frozen(
    conn: Conn, actor: Principal, member_id: int, frozen: bool, reason: str | None
) -> MemberDetail:
    """Freeze (with a reason) or unfreeze a member; audited. 409 when it already is so."""
    brand_of_staff(actor, "members.write")
    row = await _member(conn, actor, member_id, lock=True)
    if row["status"] == "erased":
        raise Conflict("the member is erased", code="member_erased")
    if (row["status"] == "frozen") == frozen:
        raise Conflict(
            "the member is already frozen" if frozen else "the member is not frozen",
            code="member_already_frozen" if frozen else "member_not_frozen",
        )
    if frozen:
        await conn.execute(
            """UPDATE members SET status = 'frozen', frozen_reason = %s, frozen_by = %s,
                      frozen_at = now(), updated_at = now() WHERE id = %s""",
            (reason, actor.person, member_id),
        )
    else:
        await conn.execute(
            """UPDATE members SET status = 'active', frozen_reason = NULL, frozen_by = NULL,
                      frozen_at = NULL, updated_at = now() WHERE id = %s""",
            (member_id,),
        )
    # whether a reason was given, not its words (a phone rung, an address): the audit log, which
    # no erasure clears, keeps no words about the member (a probe read them after the erasure);
    # the reason stays on the member's row while frozen, beside who froze it
    before = {"status": row["status"], "reasoned": row["frozen_reason"] is not None}
    if not frozen and await freezes.release(conn, member_id):  # the phone's kept freeze too
        before["carried_over"] = True
    await audit.record(
        conn,
        actor,
        "freeze" if frozen else "unfreeze",
        "member",
        member_id,
        before=before,
        after={"status": "frozen" if frozen else "active", "reasoned": reason is not None},
    )
    return await detail(conn, actor, member_id)


CSV_COLUMNS = [
    "id", "phone", "status", "gender", "birthday", "age_band", "email", "wechat_id", "province",
    "city", "marketing_opt_out", "registered_at", "last_login_at", "frozen_reason",
]  # fmt: skip


async def export_csv(
    conn: Conn,
    pool: AsyncConnectionPool,
    actor: Principal,
    f: Filters,
    *,
    limits: MemberLimits,
    audited: bool = True,
) -> AsyncIterator[bytes]:
    """Every matching member as CSV (``app.tabular``: BOM, formula guard), streamed from a
    server-side cursor; the export is audited in the request's transaction first
    (``audited=False``: a HEAD, which sends nothing). A masked whole-number search finding none
    counts against ``limits``, as the list's."""
    where, params = _where(actor, f)
    if _masked_whole_number(actor, f) and await limits.take_guess(actor, PHONE_MISS):
        missed = False
        try:
            found = await (
                await conn.execute(
                    f"SELECT EXISTS (SELECT 1 FROM members m WHERE {' AND '.join(where)}) AS found",
                    params,
                )
            ).fetchone()
            missed = not (found and found["found"])
        finally:
            if not missed:
                await limits.give_back_guess(actor, PHONE_MISS)
    if audited:
        await audit.record(
            conn,
            actor,
            "export",
            "member",
            None,
            # the audit is read by staff who may see phones masked only
            after={"filters": _audited(f), "phones": sees_phones(actor)},
        )
    sql = f"SELECT {_COLUMNS} FROM members m WHERE {' AND '.join(where)} ORDER BY {_ORDER}"
    return tabular.csv_chunks(CSV_COLUMNS, _csv_batches(pool, actor, sql, params))


def _audited(f: Filters) -> dict[str, Any]:
    filters: dict[str, Any] = msgspec.to_builtins(f)
    if f.phone is not None:
        filters["phone"] = mask_phone(phone_query(f.phone))
    return filters


def _csv_batches(
    pool: AsyncConnectionPool, actor: Principal, sql: str, params: dict[str, Any]
) -> AsyncIterator[tabular.Rows]:
    """The members' rows from a connection of ``pool`` (``app.tabular.pooled_batches``: 429
    ``exports_busy`` now when the pool's export streams are all taken)."""
    return tabular.pooled_batches(
        pool, sql, params, lambda r: _csv_row(actor, r), name="members", batch=CSV_BATCH
    )


def _csv_row(actor: Principal, r: dict[str, Any]) -> list[Any]:
    return [
        r["id"], shown_phone(actor, r["phone"]), r["status"], r["gender"], r["birthday"],
        r["age_band"], shown_email(actor, r["email"]), shown_wechat_id(actor, r["wechat_id"]),
        r["province"], r["city"],
        r["marketing_opt_out"], r["created_at"], r["last_login_at"], r["frozen_reason"],
    ]  # fmt: skip
