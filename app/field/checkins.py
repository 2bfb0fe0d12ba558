"""Check-ins (SPEC F2): a field rep scans the store's nameplate and sends the phone's GPS fix.

The nameplate names the store (``app.field.nameplates``: a forged code is 422
``invalid_nameplate``; with ``store_id`` given, another store's nameplate is 422
``nameplate_mismatch``). The distance to the store's recorded position is the great-circle
(haversine) distance on a 6,371,008.8 m sphere; a check-in farther than
``TRACECODE_FIELD_CHECKIN_RADIUS_M`` is kept and flagged ``out_of_range`` (the phone's reported
accuracy is stored beside it, not subtracted: a coarse fix is for the supervisor to judge), one
at a store without a position ``no_store_position``.

``client_id`` makes a check-in idempotent per rep: the same check-in sent again under its id
answers the first one (200, ``replayed``), so an offline queue sent twice counts once; the same
id with another check-in (another store, fix or time) is 409 ``client_id_reused``
(``app.idempotency``), not a visit silently dropped.

The daily track is a rep's check-ins of one day (Asia/Shanghai) in time order — the phone's
scan time when it sent one, else the server's.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app import idempotency, tabular
from app.auth.principal import Principal
from app.auth.service import org_status
from app.bodies import MAX_OFFSET
from app.config import Settings
from app.db import Conn
from app.errors import NotFound, Unprocessable, ValidationFailed
from app.field import nameplates, scope
from app.field.schemas import CheckinIn, CheckinOut
from app.paging import Page, fetch_page

EARTH_RADIUS_M = 6_371_008.8
CSV_MAX_ROWS = 100_000

_COLUMNS = (
    "c.id, c.client_id, c.rep_id, coalesce(nullif(u.display_name, ''), u.username) AS rep, "
    "c.store_id, s.name AS store_name, s.erp_code AS store_erp_code, c.at, c.client_at, "
    "c.lat, c.lng, c.accuracy_m, c.distance_m, c.radius_m, c.flag, c.plan_item_id, c.note"
)
_SOURCE = (
    "field_checkins c JOIN users u ON u.id = c.rep_id JOIN orgs o ON o.id = c.org_id "
    "JOIN orgs s ON s.id = c.store_id"
)
CSV_COLUMNS = [
    "id", "client_id", "rep", "store_erp_code", "store_name", "at", "client_at", "lat", "lng",
    "accuracy_m", "distance_m", "radius_m", "flag", "note",
]  # fmt: skip


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres between two WGS 84 points (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def judge(distance: float | None, radius: int) -> str:
    """The flag of a check-in ``distance`` metres from its store (None: no position)."""
    if distance is None:
        return "no_store_position"
    return "ok" if distance <= radius else "out_of_range"


def _out(row: dict[str, Any], replayed: bool = False) -> CheckinOut:
    in_range = None if row["flag"] == "no_store_position" else row["flag"] == "ok"
    return CheckinOut(**row, in_range=in_range, replayed=replayed)


async def _store(
    conn: Conn, actor: Principal, settings: Settings, data: CheckinIn
) -> dict[str, Any]:
    """The nameplate's store, checked: genuine, the one claimed, a store the rep covers."""
    store_id = nameplates.store_of(settings, data.nameplate)
    if data.store_id is not None and data.store_id != store_id:
        raise Unprocessable(
            "the nameplate belongs to another store",
            code="nameplate_mismatch",
            details={"store_id": data.store_id},
        )
    row = await (
        await conn.execute(
            f"SELECT id, path, kind, {org_status('o')} AS status, latitude, longitude "
            "FROM orgs o WHERE id = %s",
            (store_id,),
        )
    ).fetchone()
    if row is None or row["kind"] != "store" or not scope.covers(actor, row["path"]):
        raise NotFound("store not found")  # elsewhere, or the rep's own store
    if row["status"] != "active":  # closed, or under a closed organisation (a probe: taken)
        raise Unprocessable("the store is inactive", code="org_inactive")
    return row


async def _existing(conn: Conn, actor: Principal, data: CheckinIn) -> CheckinOut | None:
    """The check-in this rep made under ``data``'s client id, if any (409 if another)."""
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS}, c.client_hash FROM {_SOURCE} "
            "WHERE c.rep_id = %s AND c.client_id = %s",
            (actor.user_id, data.client_id),
        )
    ).fetchone()
    if row is None:
        return None
    idempotency.check(row.pop("client_hash"), data, "check-in")
    return _out(row, replayed=True)


async def _plan_item(
    conn: Conn, actor: Principal, store_id: int, item_id: int | None
) -> int | None:
    """The rep's plan item ``item_id`` at this store, held (``FOR KEY SHARE``) until the
    check-in commits; None (the check-in is kept unlinked) when there is none. A probe: a plan
    edit deleting the item between the read and the INSERT failed the foreign key, 409
    ``in_use``, and the phone's queue dropped the visit as final. Now an edit that deleted it
    first is waited for (the item is then gone), one that comes later waits for the check-in
    (``ON DELETE SET NULL`` unlinks it). Only the item is locked, never its plan: an edit holds
    its plan row, then deletes items, so no cycle can form."""
    if item_id is None:
        return None
    row = await (
        await conn.execute(
            "SELECT i.id FROM visit_plan_items i JOIN visit_plans p ON p.id = i.plan_id "
            "WHERE i.id = %s AND p.rep_id = %s AND i.store_id = %s FOR KEY SHARE OF i",
            (item_id, actor.user_id, store_id),
        )
    ).fetchone()
    return None if row is None else int(row["id"])


# How far a phone's clock may run ahead, and how long a scan may wait in an offline queue: the
# track, the lists and the CSV order and filter by the phone's time, so a time outside these
# would put a visit on another day (a planned one) or on top of every list for years. The same
# rule holds for an inspection's ``client_at`` (``app.inspect``).
CLOCK_SKEW = timedelta(minutes=10)
OFFLINE_DAYS = 30


def check_client_at(client_at: datetime | None) -> None:
    """400 ``invalid_client_at`` unless a phone's scan time (None: not sent) has its zone, one
    from -14:00 to +14:00 (``app.bodies.MAX_OFFSET``: RFC 3339 writes up to ±23:59, which
    PostgreSQL and EPCIS refuse — a probe's inspection at +23:59 failed its whole batch), is at
    most ``CLOCK_SKEW`` ahead of the server's clock and at most ``OFFLINE_DAYS`` old."""
    if client_at is None:
        return
    now = datetime.now(UTC)
    offset = client_at.utcoffset()
    if offset is None:
        reason = "a time with its zone (the phone's offset, or Z)"
    elif abs(offset) > MAX_OFFSET:
        reason = "a time at a UTC offset from -14:00 to +14:00"
    elif client_at > now + CLOCK_SKEW:
        reason = "not in the future"
    elif client_at < now - timedelta(days=OFFLINE_DAYS):
        reason = f"at most {OFFLINE_DAYS} days ago (a scan queued offline longer is stale)"
    else:
        return
    raise ValidationFailed(
        f"client_at: {reason}",
        code="invalid_client_at",
        details=[{"field": "client_at", "message": reason, "source": "body"}],
    )


async def check_in(conn: Conn, actor: Principal, settings: Settings, data: CheckinIn) -> CheckinOut:
    """Record a check-in (see the module's docstring); ``replayed`` when ``client_id`` was
    seen before."""
    scope.require_rep(actor)
    if (found := await _existing(conn, actor, data)) is not None:
        return found
    check_client_at(data.client_at)
    store = await _store(conn, actor, settings, data)
    distance = None
    if store["latitude"] is not None:
        distance = distance_m(data.lat, data.lng, store["latitude"], store["longitude"])
    radius = settings.field_checkin_radius_m
    item_id = await _plan_item(conn, actor, store["id"], data.plan_item_id)
    row = await (
        await conn.execute(
            """INSERT INTO field_checkins (rep_id, org_id, store_id, client_id, client_hash,
                   client_at, lat, lng, accuracy_m, distance_m, radius_m, flag, plan_item_id, note)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (rep_id, client_id) DO NOTHING RETURNING id""",
            (actor.user_id, actor.org_id, store["id"], data.client_id,
             idempotency.fingerprint(data), data.client_at,
             data.lat, data.lng, data.accuracy, distance, radius, judge(distance, radius),
             item_id, data.note),
        )
    ).fetchone()  # fmt: skip
    if row is None:  # a concurrent retry won: answer its check-in
        found = await _existing(conn, actor, data)
        assert found is not None
        return found
    made = await (
        await conn.execute(f"SELECT {_COLUMNS} FROM {_SOURCE} WHERE c.id = %s", (row["id"],))
    ).fetchone()
    assert made is not None
    return _out(made)


def _where(
    actor: Principal,
    rep_id: int | None,
    store_id: int | None,
    date_from: date | None,
    date_to: date | None,
) -> tuple[list[str], dict[str, Any]]:
    at = "coalesce(c.client_at, c.at)"  # the scan's time on the phone when it was queued
    return scope.filters(actor, "c", at, rep_id, store_id, date_from, date_to)


async def list_checkins(
    conn: Conn,
    actor: Principal,
    *,
    rep_id: int | None,
    store_id: int | None,
    date_from: date | None,
    date_to: date | None,
    page: int,
    per_page: int,
) -> Page[CheckinOut]:
    """Check-ins the caller sees, newest first."""
    where, params = _where(actor, rep_id, store_id, date_from, date_to)
    return await fetch_page(
        conn,
        columns=_COLUMNS,
        source=_SOURCE,
        where=where,
        params=params,
        order="coalesce(c.client_at, c.at) DESC, c.id DESC",
        page=page,
        per_page=per_page,
        make=_out,
    )


async def track(conn: Conn, actor: Principal, rep_id: int | None, day: date) -> list[CheckinOut]:
    """A rep's check-ins of one day (default: the caller's), in time order."""
    rep = actor.user_id if rep_id is None else rep_id
    where, params = _where(actor, rep, None, day, day)
    rows = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM {_SOURCE} WHERE {' AND '.join(where)} "
            "ORDER BY coalesce(c.client_at, c.at), c.id LIMIT 1000",
            params,
        )
    ).fetchall()
    return [_out(r) for r in rows]


async def checkins_csv(
    conn: Conn,
    actor: Principal,
    *,
    rep_id: int | None,
    store_id: int | None,
    date_from: date | None,
    date_to: date | None,
) -> AsyncIterator[bytes]:
    """Every matching check-in as CSV (``app.tabular``: BOM, formula guard), oldest first; more
    than ``CSV_MAX_ROWS`` is 422 ``too_many_rows`` before the file starts."""
    where, params = _where(actor, rep_id, store_id, date_from, date_to)
    rows = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM {_SOURCE} WHERE {' AND '.join(where)} "
            "ORDER BY coalesce(c.client_at, c.at), c.id LIMIT %(limit__)s",
            {**params, "limit__": CSV_MAX_ROWS + 1},
        )
    ).fetchall()
    if len(rows) > CSV_MAX_ROWS:
        raise Unprocessable(
            f"more than {CSV_MAX_ROWS} check-ins: narrow the period", code="too_many_rows"
        )
    table = [[r[c] if c in r else None for c in CSV_COLUMNS] for r in rows]
    return tabular.csv_chunks(CSV_COLUMNS, tabular.one_batch(table))
