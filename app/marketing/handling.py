"""Complaints and suggestions in the back office (SPEC W3): the brand's list, one complaint, and
its handling — taken, answered, closed.

Complaints are the brand head office's, as its members are: the brand's own staff holding
``complaints.handle`` read and handle them (403 ``brand_staff_only`` below the brand, whatever
role grants it; another brand's complaint is 404). The member's phone is shown masked unless the
caller sees phones whole (``app.members.mask``); an erased member's is none.

States: ``open`` → ``handling`` → ``closed``. ``take`` moves an open complaint to handling and
records its handler (the user, or the maker of an API key: ``Principal.person``); ``reply``
answers an open or handled one (an open one is taken by the replier on the way) — a later reply
replaces the earlier; ``close`` ends an open or handled one, with a last reply if given. Any other
move is 409: ``already_taken`` (taking one being handled) or ``complaint_closed`` (anything on a
closed one). Each runs on the complaint's row locked, so of two at once one wins and the other
meets the state the first left (a second ``take``: 409). Every step is audited, without the
member's phone or text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import msgspec

from app import audit, tabular
from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.errors import Conflict, NotFound, Unprocessable
from app.field.scope import day_bounds
from app.marketing.schemas import ComplaintKind, ComplaintOut, ComplaintStatus
from app.members.mask import shown_phone
from app.members.principal import brand_of_staff
from app.paging import Page, check_period, fetch_page

HANDLE = "complaints.handle"
CSV_MAX_ROWS = 100_000

_COLUMNS = """c.id, c.kind, c.body, c.status, c.member_id,
    CASE WHEN m.status = 'erased' THEN NULL ELSE m.phone END AS phone, m.province, c.serial,
    c.gtin, c.product_id, p.name AS product_name, c.store_name, c.contact, c.handler_id,
    coalesce(nullif(u.display_name, ''), u.username) AS handler_name, c.handling_at, c.reply,
    c.replied_at, c.closed_at, c.created_at, c.updated_at"""
_SOURCE = """complaints c JOIN members m ON m.id = c.member_id
    LEFT JOIN products p ON p.id = c.product_id LEFT JOIN users u ON u.id = c.handler_id"""
CSV_COLUMNS = [
    "id", "created_at", "kind", "status", "phone", "province", "body", "serial", "gtin",
    "product_name", "store_name", "contact", "handler_name", "reply", "replied_at", "closed_at",
]  # fmt: skip


def _brand(actor: Principal) -> int:
    return brand_of_staff(actor, HANDLE, "complaints are handled")


def _out(actor: Principal, row: dict[str, Any]) -> ComplaintOut:
    phone = row.pop("phone")
    return ComplaintOut(**row, phone=shown_phone(actor, phone) if phone else None)


@dataclass(frozen=True)
class Filters:
    kind: ComplaintKind | None = None
    status: ComplaintStatus | None = None
    product_id: int | None = None
    date_from: date | None = None  # filed on or after (Asia/Shanghai days)
    date_to: date | None = None  # filed on or before


def _where(brand: int, f: Filters) -> tuple[list[str], dict[str, Any]]:
    check_period(f.date_from, f.date_to)
    where = ["c.brand_id = %(brand)s"]
    params: dict[str, Any] = {"brand": brand}
    for name in ("kind", "status", "product_id"):
        value = getattr(f, name)
        if value is not None:
            where.append(f"c.{name} = %({name})s")
            params[name] = value
    if f.date_from is not None:
        where.append("c.created_at >= %(t0)s")
        params["t0"] = day_bounds(f.date_from)[0]
    if f.date_to is not None:
        where.append("c.created_at < %(t1)s")
        params["t1"] = day_bounds(f.date_to)[1]
    return where, params


async def list_complaints(
    conn: Conn, actor: Principal, f: Filters, page: int, per_page: int
) -> Page[ComplaintOut]:
    """The brand's complaints and suggestions matching ``f``, newest first."""
    where, params = _where(_brand(actor), f)
    return await fetch_page(
        conn,
        columns=_COLUMNS,
        source=_SOURCE,
        where=where,
        params=params,
        order="c.created_at DESC, c.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: _out(actor, row),
    )


async def complaints_csv(
    conn: Conn, actor: Principal, f: Filters, *, audited: bool = True
) -> AsyncIterator[bytes]:
    """Every matching complaint as CSV (``app.tabular``: BOM, formula guard), oldest first, the
    phones as the caller sees them; the export is audited (``audited=False``: a HEAD). More
    than ``CSV_MAX_ROWS`` is 422 ``too_many_rows`` before the file starts."""
    brand = _brand(actor)
    where, params = _where(brand, f)
    rows = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM {_SOURCE} WHERE {' AND '.join(where)} "
            "ORDER BY c.created_at, c.id LIMIT %(limit__)s",
            {**params, "limit__": CSV_MAX_ROWS + 1},
        )
    ).fetchall()
    if len(rows) > CSV_MAX_ROWS:
        raise Unprocessable(
            f"more than {CSV_MAX_ROWS} complaints: narrow the period", code="too_many_rows"
        )
    if audited:
        filters = {k: str(v) if v is not None else None for k, v in asdict(f).items()}
        await audit.record(
            conn, actor, "export", "complaint", None, after={"filters": filters}, org_id=brand
        )
    shown = [msgspec.structs.asdict(_out(actor, row)) for row in rows]
    table = [[r[c] for c in CSV_COLUMNS] for r in shown]
    return tabular.csv_chunks(CSV_COLUMNS, tabular.one_batch(table))


async def _row(conn: Conn, brand: int, complaint_id: int, lock: bool = False) -> dict[str, Any]:
    if lock:  # the complaint's row alone (the joins' rows are only read)
        await conn.execute(
            "SELECT 1 FROM complaints WHERE id = %s AND brand_id = %s FOR NO KEY UPDATE",
            (complaint_id, brand),
        )
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM {_SOURCE} WHERE c.id = %s AND c.brand_id = %s",
            (complaint_id, brand),
        )
    ).fetchone()
    if row is None:
        raise NotFound("complaint not found")
    return row


async def get_complaint(conn: Conn, actor: Principal, complaint_id: int) -> ComplaintOut:
    """One complaint of the caller's brand (another brand's is 404)."""
    return _out(actor, await _row(conn, _brand(actor), complaint_id))


# action: (the states it moves from, the UPDATE it runs)
_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "take": (
        ("open",),
        """UPDATE complaints SET status = 'handling', handler_id = %(user)s,
               handling_at = now(), updated_at = now() WHERE id = %(id)s""",
    ),
    "reply": (
        ("open", "handling"),
        """UPDATE complaints SET status = 'handling',
               handler_id = CASE WHEN status = 'open' THEN %(user)s ELSE handler_id END,
               handling_at = coalesce(handling_at, now()), reply = %(reply)s,
               replied_at = now(), updated_at = now() WHERE id = %(id)s""",
    ),
    "close": (
        ("open", "handling"),
        """UPDATE complaints SET status = 'closed',
               handler_id = CASE WHEN status = 'open' THEN %(user)s ELSE handler_id END,
               handling_at = coalesce(handling_at, now()),
               reply = coalesce(%(reply)s, reply),
               replied_at = CASE WHEN %(reply)s::text IS NULL THEN replied_at ELSE now() END,
               closed_at = now(), updated_at = now() WHERE id = %(id)s""",
    ),
}


def _refusal(complaint: ComplaintOut, action: str) -> Conflict:
    details = {"status": complaint.status, "action": action}
    if complaint.status == "closed":
        return Conflict(
            f"complaint {complaint.id} is closed", code="complaint_closed", details=details
        )
    return Conflict(
        f"complaint {complaint.id} is being handled already",
        code="already_taken",
        details={**details, "handler_id": complaint.handler_id},
    )


def _audited(c: ComplaintOut) -> dict[str, Any]:
    """What the audit keeps of a complaint: its state and handling, not the member's words."""
    return {
        "status": c.status,
        "handler_id": c.handler_id,
        "replied": c.reply is not None,
        "closed_at": c.closed_at,
    }


async def _transition(
    conn: Conn, actor: Principal, complaint_id: int, action: str, reply: str | None = None
) -> ComplaintOut:
    """Move a complaint by ``action`` on its row locked; 404 unknown (or another brand's), 409
    from a state the action does not move from; audited."""
    brand = _brand(actor)
    before = _out(actor, await _row(conn, brand, complaint_id, lock=True))
    allowed, update = _TRANSITIONS[action]
    if before.status not in allowed:
        raise _refusal(before, action)
    await conn.execute(update, {"id": complaint_id, "user": actor.person, "reply": reply})
    after = _out(actor, await _row(conn, brand, complaint_id))
    await audit.record(
        conn,
        actor,
        action,
        "complaint",
        complaint_id,
        before=_audited(before),
        after=_audited(after),
        org_id=brand,
    )
    return after


async def take(conn: Conn, actor: Principal, complaint_id: int) -> ComplaintOut:
    """open → handling, the caller its handler."""
    return await _transition(conn, actor, complaint_id, "take")


async def reply(
    conn: Conn, settings: Settings, actor: Principal, complaint_id: int, text: str
) -> ComplaintOut:
    """The brand's answer (open or handling → handling); the member reads it (and, bound to
    the brand's WeChat, gets a template message linking to the app's public host)."""
    out = await _transition(conn, actor, complaint_id, "reply", text.strip())
    await _tell_wechat(conn, settings, actor, out)
    return out


async def close(
    conn: Conn, settings: Settings, actor: Principal, complaint_id: int, text: str | None
) -> ComplaintOut:
    """open or handling → closed, with a last answer if given."""
    out = await _transition(conn, actor, complaint_id, "close", text.strip() if text else None)
    if text and text.strip():
        await _tell_wechat(conn, settings, actor, out)
    return out


async def _tell_wechat(conn: Conn, settings: Settings, actor: Principal, c: ComplaintOut) -> None:
    """The WeChat template message of a reply (``app.wechat.outbox``: only for a member bound
    to the brand's WeChat)."""
    from app.wechat.outbox import complaint_replied  # the WeChat domain sits beside this one

    if c.reply and c.replied_at is not None:
        await complaint_replied(
            conn,
            settings,
            brand_id=actor.brand_id,
            member_id=c.member_id,
            complaint_id=c.id,
            reply=c.reply,
            replied_at=c.replied_at,
        )
