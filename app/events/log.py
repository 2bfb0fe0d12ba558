"""The one event writer, and the code-keyed reads of the log.

Events are written in bulk: ids come from the sequence in one round trip, then the events and
their codes go in by COPY. Callers write the matching state projection in the same transaction.
Nothing here updates or deletes an event.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from psycopg.types.json import Jsonb

from app.bodies import MAX_OFFSET
from app.db import Conn, in_utc
from app.events.epcis import Action, BizStep, Disposition, EventType
from app.localtime import REPORT_TZ
from app.locks import Lock, xact_each, xact_lock

UNIT: Literal["u"] = "u"
CASE: Literal["c"] = "c"
CodeKind = Literal["u", "c"]

PARTITION_SIZE = 100_000_000  # event ids per partition of the events table
_HEADROOM = 10_000_000  # add the next partition when fewer ids than this are left
_partition_limit = 0  # highest event id the existing partitions hold (cached per process)

_EVENT_COLUMNS = (
    "id, event_uuid, brand_id, event_type, action, biz_step, disposition, event_time, tz_offset, "
    "read_point, biz_location, source_org, destination_org, biz_transactions, parent_kind, "
    "parent_code, child_count, recorded_by, client_event_id, details, error_declaration"
)


class NewEvent(msgspec.Struct, kw_only=True):
    """One EPCIS event to record. ``units`` and ``cases`` are the epcList / childEPCs.

    Built by the constructors of ``app.events.builders`` (one per event shape), not directly."""

    id: int | None = None  # from ``allocate_ids`` when the caller needs it before writing
    brand_id: int
    event_type: EventType
    action: Action
    biz_step: BizStep
    disposition: Disposition | None
    event_time: datetime
    units: list[int] = []
    cases: list[int] = []
    parent: int | None = None  # a case's SSCC (AggregationEvent parentID)
    read_point: str | None = None
    biz_location: int | None = None
    source_org: int | None = None
    destination_org: int | None = None
    biz_transactions: list[dict[str, str]] | None = None
    recorded_by: int | None = None
    client_event_id: str | None = None
    details: dict[str, Any] | None = None
    error_declaration: dict[str, Any] | None = None


def tz_offset(moment: datetime) -> str:
    """EPCIS eventTimeZoneOffset (``+08:00``) of an aware datetime: its own offset, or, beyond
    EPCIS's -14:00..+14:00 (``app.bodies.MAX_OFFSET``; RFC 3339 writes up to ±23:59), the
    brands' zone's (Asia/Shanghai, ``+08:00``) — the services refuse such times on the way in
    (a scan's ``bad_time``, ``invalid_client_at``), but an event is never served with an offset
    our own ``POST /epcis/capture`` (and any EPCIS repository) refuses (a probe: a scan at +14:30
    was served as ``"eventTimeZoneOffset": "+14:30"``). A naive one: ``+00:00``."""
    offset = moment.utcoffset()
    if offset is not None and abs(offset) > MAX_OFFSET:
        offset = _CHINA.utcoffset(moment.replace(tzinfo=None))
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


async def allocate_ids(conn: Conn, count: int) -> list[int]:
    """``count`` new event ids, in one round trip."""
    if count == 0:
        return []
    rows = await (
        await conn.execute(
            "SELECT nextval('events_id_seq') AS id FROM generate_series(1, %s)", (count,)
        )
    ).fetchall()
    ids = [row["id"] for row in rows]
    if ids[-1] > _partition_limit - _HEADROOM:
        await ensure_partitions(conn)
    return ids


async def write_events(conn: Conn, events: list[NewEvent]) -> list[int]:
    """Append the events and their codes; return their ids in order."""
    if not events:
        return []
    missing = iter(await allocate_ids(conn, sum(e.id is None for e in events)))
    ids = [e.id if e.id is not None else next(missing) for e in events]
    async with conn.cursor().copy(f"COPY events ({_EVENT_COLUMNS}) FROM STDIN") as copy:
        for event_id, e in zip(ids, events, strict=True):
            await copy.write_row(
                (
                    event_id,
                    uuid.uuid4(),
                    e.brand_id,
                    e.event_type,
                    e.action,
                    e.biz_step,
                    e.disposition,
                    in_utc(e.event_time),  # COPY is text: PostgreSQL reads its offset
                    tz_offset(e.event_time),
                    e.read_point,
                    e.biz_location,
                    e.source_org,
                    e.destination_org,
                    Jsonb(e.biz_transactions) if e.biz_transactions else None,
                    CASE if e.parent is not None else None,
                    e.parent,
                    len(e.units) + len(e.cases),
                    e.recorded_by,
                    e.client_event_id,
                    Jsonb(e.details) if e.details else None,
                    Jsonb(e.error_declaration) if e.error_declaration else None,
                )
            )
    # The code rows are the bulk (one per code per event): written as one COPY text buffer.
    lines: list[str] = []
    for event_id, e in zip(ids, events, strict=True):
        lines += [f"{code}\tu\t{event_id}\n" for code in e.units]
        lines += [f"{code}\tc\t{event_id}\n" for code in e.cases]
        if e.parent is not None:
            lines.append(f"{e.parent}\tc\t{event_id}\n")
    async with conn.cursor().copy("COPY event_codes (code, kind, event_id) FROM STDIN") as copy:
        await copy.write("".join(lines).encode())
    await _late_activations(conn, events)
    return ids


_CHINA = ZoneInfo(REPORT_TZ)


async def _late_activations(conn: Conn, events: list[NewEvent]) -> None:
    """Units activated on a closed day and written only now (an offline scanner's upload, days
    late): the dashboard's row of that day (``app.analytics.dashboard``, settled an hour after
    the day ended) is dropped, to be counted again (a probe: they were never counted). Most
    uploads are of today: nothing to do."""
    today = datetime.now(_CHINA).date()
    late = sorted(
        {
            (e.brand_id, day)
            for e in events
            if e.biz_step == "commissioning"
            and (day := e.event_time.astimezone(_CHINA).date()) < today
        }
    )
    if late:  # a recount of the day under way counts after this commits
        keys = [f"{brand}:{day}" for brand, day in late]
        await conn.execute(*xact_each(Lock.DASHBOARD_DAY, keys))  # as the records' flusher
        await conn.execute(
            "DELETE FROM dashboard_days WHERE (brand_id, day) IN "
            "(SELECT * FROM unnest(%s::bigint[], %s::date[]))",
            ([b for b, _ in late], [d for _, d in late]),
        )


async def ensure_partitions(conn: Conn) -> None:
    """Create the next range partition of ``events`` before the ids reach the last one's end."""
    global _partition_limit
    await xact_lock(conn, Lock.EVENT_PARTITIONS, 0)
    row = await (
        await conn.execute(
            """SELECT coalesce(max(substring(pg_get_expr(c.relpartbound, c.oid)
                                 FROM 'TO \\(''?(\\d+)''?\\)')::bigint), 1) AS upper
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'events'::regclass"""
        )
    ).fetchone()
    upper = row["upper"] if row else 1
    # the cache holds the partitions there were, never those made here: made in a transaction
    # that rolls back (a savepoint's, as an EPCIS declared event's dry run), they are gone, and a
    # cache past them stopped this process making them until its inserts failed (a review)
    _partition_limit = upper - 1
    used = (await (await conn.execute("SELECT last_value FROM events_id_seq")).fetchone())[
        "last_value"
    ]  # type: ignore[index]
    while used > upper - _HEADROOM:
        name = f"events_p{upper // PARTITION_SIZE}"
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events "
            f"FOR VALUES FROM ({upper}) TO ({upper + PARTITION_SIZE})"
        )
        upper += PARTITION_SIZE


async def events_of(
    conn: Conn,
    kind: CodeKind,
    code: int,
    after: int | None = None,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """The events naming one code (as object, child or parent), in event-time order; with
    ``after`` / ``before``, only those written after / before the events of these ids (event
    ids are handed out as events are written: a scanner's clock cannot reorder them)."""
    return await (
        await conn.execute(
            """SELECT e.id, e.event_uuid, e.event_type, e.action, e.biz_step, e.disposition,
                      e.event_time, e.tz_offset, e.record_time, e.read_point, e.biz_location,
                      e.source_org, e.destination_org, e.biz_transactions, e.parent_kind,
                      e.parent_code, e.child_count, e.recorded_by, e.details,
                      e.error_declaration
               FROM event_codes ec JOIN events e ON e.id = ec.event_id
               WHERE ec.code = %(code)s AND ec.kind = %(kind)s
                 AND (%(after)s::bigint IS NULL OR e.id > %(after)s)
                 AND (%(before)s::bigint IS NULL OR e.id < %(before)s)
               ORDER BY e.event_time, e.id""",
            {"code": code, "kind": kind, "after": after, "before": before},
        )
    ).fetchall()
