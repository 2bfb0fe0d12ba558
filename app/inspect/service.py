"""Anti-diversion inspection (SPEC D1, D2, D5): a scan on a store shelf, the verdict per unit,
the log, the event and the alerts — all in the caller's one transaction.

What "in channel" means. Outbound confirmation gives every unit its designated channel
(``unit_state.channel_org_id``: the organisation the brand's side — the factory, a branch — last
shipped it to, normally an agent) and, when an agent ships on to a store, its designated store
(``store_org_id``). Its designated agent is the nearest agent at or above that channel (the
channel itself when no agent is above it): goods the factory ships straight to an agent's store
or distributor are that agent's (a probe: a store's own subtree was taken as the area, and the
goods found at the agent's other store were "diverted" by the store). A unit found at store Z is

- ``in_channel`` when Z lies in the designated agent's subtree as the tree is now (the agent's
  own stores and its distributors' stores: the agent's sales area; reason ``designated_store``
  when Z is also its designated store);
- ``diverted`` when Z lies outside that subtree (another agent's store, a store elsewhere — its
  designated store too, once moved under another agent);
- ``unknown_route`` when it was activated but never shipped through a channel (``shipped_at``
  NULL — e.g. still "at the factory", or given away by exception outbound — or shipped without a
  designated channel), or when it is back in the brand's own stock (``returned_to_stock``: a
  return the factory received — its holder is outside the channel's subtree, under no channel
  organisation, and it is not on its way anywhere): the channel it keeps is no longer the
  agent's to answer for, so no agent is blamed, alerted or counted;
- ``counterfeit`` when the code is not a genuine unit of the brand in circulation: forged tag,
  malformed, unknown batch or index, void batch or unit, destroyed, printed but never activated;
  for a case scan, an unknown, void or never packed SSCC.

The organisation tree is the authority for "area": a store belongs to the agent above it. The
regions (province, city) of the store and of the agent are reported with the records and in the
leak report, so an analyst sees where goods went.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
from psycopg.rows import args_row, class_row
from psycopg.types.json import Jsonb

from app import audit, idempotency, tabular
from app.auth.principal import Principal
from app.auth.service import org_status
from app.codes.batches import codes_of, serials_of
from app.codes.lookup import VOID_STATES, read_codes, sscc_label
from app.codes.scheme import Scheme, serial_from_scan
from app.db import Conn
from app.errors import NotFound, Unprocessable
from app.events import builders
from app.events.log import NewEvent, allocate_ids, write_events
from app.field.checkins import CLOCK_SKEW, OFFLINE_DAYS, check_client_at
from app.inspect.schemas import (
    RESULTS,
    Gps,
    InspectionIn,
    InspectionOut,
    InspectorOut,
    OrgRef,
    ProductRef,
    ScanOut,
)
from app.inspect.summaries import require_reader
from app.localtime import REPORT_TZ, ZONE
from app.locks import Lock, xact_lock
from app.logistics.center import nearest_agent
from app.orgs.schemas import SELLING_KINDS
from app.paging import Page, check_period, contains, fetch_page

SEVERITY = {"diverted": "critical", "unknown_route": "warning", "counterfeit": "critical"}
# a counterfeit is a fake wherever it is found (alert.counterfeit to webhooks; probe K:
# inspections announced it as a diversion)
ALERT_KIND = {"diverted": "diversion", "unknown_route": "diversion", "counterfeit": "fake"}
_MAX_LISTED = 50  # serials named in an alert's details
_MAX_DEPTH = 4  # unit → inner → master → pallet


@dataclass(slots=True)
class Finding:
    """The verdict on one unit (or on a code that is not a genuine unit)."""

    serial: str
    result: str
    reason: str
    code: int | None = None
    product_id: int | None = None
    lot: str | None = None
    source: int | None = None  # designated agent (the agent it was shipped to)
    store: int | None = None  # designated store
    document_no: str | None = None
    store_document_no: str | None = None
    relabelled: bool = False  # it took a replaced unit's place (``_UNITS``' ``took_over``)


class Store(msgspec.Struct, frozen=True, gc=False):
    """The store inspected (a row of ``orgs``)."""

    id: int
    kind: str
    path: str
    name: str
    erp_code: str | None
    province_code: str | None
    province_name: str | None
    city_code: str | None
    city_name: str | None
    status: str


class _Unit(msgspec.Struct, frozen=True, gc=False):
    """A unit found by the scan, in the column order of ``_UNITS`` (a pallet: thousands)."""

    code: int
    product_id: int
    lot: str
    status: str
    channel_org_id: int | None
    store_org_id: int | None
    shipped_at: datetime | None
    agent_id: int | None  # the designated agent (see the module docstring)
    agent_path: str | None  # its subtree: the sales area
    in_stock: bool  # back in the brand's own stock (see ``_UNITS``)
    took_over: bool  # shipped before it was activated: a replacement (see ``_UNITS``)


class _Scanned(msgspec.Struct, frozen=True, gc=False):
    """What one scanned text is and the verdict on each unit it stands for."""

    kind: str  # unit or case
    label: str  # the canonical serial or SSCC
    case_sscc: int | None  # the case scanned (a genuine, packed one)
    findings: list[Finding]


# -- the store ----------------------------------------------------------------------------------


async def store_for(conn: Conn, actor: Principal, data: InspectionIn) -> Store:
    """The store inspected, by id or nameplate (ERP) code; only active stores in the caller's
    area (an inactive one — closed, or under a closed organisation — is 422 ``org_inactive``, as
    for a field check-in there)."""
    if data.store_id is None and data.store_code is None:
        raise Unprocessable("name the store: store_id or store_code", code="no_store")
    cur = conn.cursor(row_factory=class_row(Store))
    await cur.execute(
        f"""SELECT id, kind, path, name, erp_code, province_code, province_name, city_code,
                  city_name, {org_status("o")} AS status
           FROM orgs o
           WHERE (%(id)s::bigint IS NULL OR id = %(id)s)
             AND (%(code)s::text IS NULL OR erp_code = %(code)s) AND path LIKE %(brand)s""",
        {"id": data.store_id, "code": data.store_code, "brand": f"/{actor.brand_id}/%"},
    )
    row = await cur.fetchone()
    # outside the caller's area an organisation is as if it did not exist: no name, no kind
    if row is None or not row.path.startswith(f"/{actor.brand_id}/") or not actor.sees(row.path):
        raise Unprocessable("no such store in your area", code="unknown_store")
    if row.kind != "store":
        raise Unprocessable(f"{row.name} is a {row.kind}, not a store", code="not_a_store")
    if row.status != "active":
        raise Unprocessable(f"{row.name} is inactive", code="org_inactive")
    return row


# -- the verdict --------------------------------------------------------------------------------


def _in_channel(alias: str) -> str:
    """SQL: whether the organisation aliased ``alias`` sells on — it or one above it an agent,
    distributor or store (``app.logistics.movements``' rule) — rather than the brand's side (the
    brand, its factories and their warehouses, its branches), whose shipment designates anew."""
    kinds = ", ".join(f"'{k}'" for k in SELLING_KINDS)
    return f"""EXISTS (SELECT 1 FROM orgs a
        WHERE a.id = ANY(string_to_array(trim(both '/' FROM {alias}.path), '/')::bigint[])
          AND a.kind IN ({kinds}))"""


# ``in_stock``: the unit is back in the brand's own stock — held, and not on its way anywhere,
# outside its channel's subtree and in no organisation of the sales channel (an agent's return
# the factory received; a return still in transit is the agent's yet). Its channel stays (the
# logistics keep it through a return), but the agent no longer answers for it.
# ``ag``: the nearest agent at or above the channel (a store or distributor the factory shipped
# to straight is its agent's); none, and the channel itself is the area.
# ``took_over``: shipped before it was activated — a replacement (P5) took over the replaced
# unit's shipping time, and the shipments that brought it are the replaced code's (``_documents``)
_UNITS = f"""SELECT u.code, u.product_id, u.lot, u.status, u.channel_org_id, u.store_org_id,
       u.shipped_at, ag.id AS agent_id, ag.path AS agent_path,
       coalesce(u.transit_to IS NULL AND h.path NOT LIKE c.path || '%%'
                AND NOT {_in_channel("h")}, false) AS in_stock,
       coalesce(u.shipped_at < u.activated_at, false) AS took_over
    FROM unit_state u LEFT JOIN orgs c ON c.id = u.channel_org_id
    LEFT JOIN orgs ag ON ag.id = coalesce({nearest_agent("c.path")}, c.id)
    JOIN orgs h ON h.id = u.holder_org_id"""


def _judge(row: _Unit, serial: str, store: Store) -> Finding:
    found = Finding(
        serial=serial,
        result="in_channel",
        reason="agent_area",
        code=row.code,
        product_id=row.product_id,
        lot=row.lot,
        source=row.agent_id,
        store=row.store_org_id,
        relabelled=row.took_over,
    )
    if row.status in VOID_STATES:
        found.result, found.reason = "counterfeit", row.status
    elif row.channel_org_id is None:
        found.result = "unknown_route"
        found.reason = "never_shipped" if row.shipped_at is None else "no_channel"
    elif row.in_stock:  # returned to the brand: not the agent's leak (a probe blamed it)
        found.result, found.reason = "unknown_route", "returned_to_stock"
        found.source = found.store = None
    elif not store.path.startswith(row.agent_path):  # type: ignore[arg-type]  # set: shipped
        # first, whatever store a later shipment named: a probe — the agent shipped into another
        # agent's area itself, and the store it named there was "designated" (窜货 unseen)
        found.result, found.reason = "diverted", "outside_agent_area"
    elif row.store_org_id == store.id:
        found.reason = "designated_store"
    return found


async def _units(
    conn: Conn, scheme: Scheme, store: Store, codes: list[int], where: str
) -> list[Finding]:
    cur = conn.cursor(row_factory=args_row(_Unit))  # positional: the SELECT is in field order
    await cur.execute(f"{_UNITS} WHERE {where} ORDER BY u.code", (codes,))
    rows = await cur.fetchall()
    serials = await serials_of(conn, scheme, [row.code for row in rows])
    return [_judge(row, serials.get(row.code, str(row.code)), store) for row in rows]


async def _findings(
    conn: Conn, actor: Principal, scheme: Scheme, store: Store, text: str
) -> _Scanned:
    """What one scanned text is, and the verdict on each unit it stands for."""
    read = (await read_codes(conn, scheme, actor.brand_id, [text]))[0]
    if read.kind == "unit":
        if read.reason is not None:
            code = read.code if read.reason == "void" else None
            bad = Finding(read.label, "counterfeit", read.reason, code)
            return _Scanned("unit", read.label, None, [bad])
        found = await _units(conn, scheme, store, [read.code], "u.code = ANY(%s)")
        if not found:  # printed, never activated: not a product in circulation
            found = [Finding(read.label, "counterfeit", "not_activated", read.code)]
        return _Scanned("unit", read.label, None, found)
    if read.reason is not None:
        return _Scanned("case", read.label, None, [Finding(read.label, "counterfeit", read.reason)])
    case = await (
        await conn.execute("SELECT status FROM case_state WHERE sscc = %s", (read.code,))
    ).fetchone()
    if case is None or case["status"] != "active":
        reason = "not_packed" if case is None else "case_void"
        return _Scanned("case", read.label, read.code, [Finding(read.label, "counterfeit", reason)])
    found = await _units(
        conn,
        scheme,
        store,
        [read.code],
        """u.parent_sscc IN (
               WITH RECURSIVE boxes (sscc) AS (
                   SELECT unnest(%s::bigint[])
                   UNION SELECT c.sscc FROM case_state c JOIN boxes b ON c.parent_sscc = b.sscc)
               SELECT sscc FROM boxes)""",
    )
    if not found:
        raise Unprocessable("the case holds no units: scan the units", code="empty_case")
    return _Scanned("case", read.label, read.code, found)


# The shipping events of each unit: its own, and those of every case it was packed in while it
# was in it (a shipment lists the cases scanned, not their contents), by event id as the trace's
# stays (``app.codes.trace._containers``): a stay in a case runs from the packing to the next
# unpacking of the code from it or its decommissioning, and a stay in a case's case within both
# (a probe: a unit taken out of its case at the factory was blamed on the case's later
# shipment). Each unit is searched from itself and from each unit it replaced (``codes``, up to
# the replacement's event, ``until``: ``_replaced``). Oldest first.
_FOREVER = 9_223_372_036_854_775_807
_SHIPMENTS = f"""
WITH RECURSIVE anc (unit, kind, code, depth, lo, hi) AS (
    SELECT s.unit, 'u'::"char", s.code, 0, 0::bigint, s.until
    FROM unnest(%(units)s::bigint[], %(codes)s::bigint[], %(until)s::bigint[])
         AS s (unit, code, until)
    UNION
    SELECT a.unit, 'c'::"char", e.parent_code, a.depth + 1,
           -- a replacement takes over the replaced unit's stay (a probe: a unit relabelled in
           -- its case at the agent named no shipment)
           CASE WHEN e.biz_step = 'replacing' THEN a.lo ELSE greatest(a.lo, e.id) END,
           least(a.hi, coalesce((SELECT min(x.id) FROM event_codes xc
                                   JOIN events x ON x.id = xc.event_id
                                  WHERE xc.code = a.code AND xc.kind = a.kind AND x.id > e.id
                                    AND x.action = 'DELETE'
                                    AND (x.event_type = 'ObjectEvent'
                                         OR (x.event_type = 'AggregationEvent'
                                             AND x.parent_code = e.parent_code))),
                                {_FOREVER}))
    FROM anc a
    JOIN event_codes ec ON ec.code = a.code AND ec.kind = a.kind
    JOIN events e ON e.id = ec.event_id
    WHERE e.event_type = 'AggregationEvent' AND e.action = 'ADD'
      AND e.parent_code IS NOT NULL AND e.parent_code <> a.code AND a.depth < %(depth)s
      AND e.id < a.hi
)
SELECT DISTINCT h.unit, e.destination_org, e.details ->> 'document' AS document_no,
       e.source_org, e.disposition, e.event_time, e.id, d.path AS destination_path,
       s.path AS source_path
FROM anc h
JOIN event_codes ec ON ec.code = h.code AND ec.kind = h.kind
JOIN events e ON e.id = ec.event_id
JOIN orgs d ON d.id = e.destination_org
LEFT JOIN orgs s ON s.id = e.source_org
WHERE e.biz_step = 'shipping' AND e.destination_org IS NOT NULL
  AND e.id >= h.lo AND e.id < h.hi
ORDER BY e.event_time, e.id
"""


# The replacing events (P5) of relabelled units: the commissioning naming the replaced serial.
_REPLACED = """
SELECT x.code, e.id, e.details ->> 'replaces' AS replaces
FROM event_codes x JOIN events e ON e.id = x.event_id
WHERE x.kind = 'u' AND x.code = ANY(%s) AND e.event_type = 'ObjectEvent' AND e.action = 'ADD'
  AND e.biz_step = 'commissioning' AND e.details ->> 'replaces' IS NOT NULL"""
_MAX_RELABELS = 8  # replacements of replacements followed back, at most


async def _replaced(conn: Conn, scheme: Scheme, units: list[int]) -> list[tuple[int, int, int]]:
    """(unit, a code it replaced, the id of the replacement's commissioning event) for these
    relabelled units (``Finding.relabelled``): the replaced serial is in the new code's
    commissioning (``details.replaces``), and so back through a replacement of a replacement.
    One indexed query per step back (none for units that were not relabelled): a unit relabelled
    on the agent's shelf took over its shipping time, and its own events have no shipment to the
    agent (a probe: its inspection named no document, its untouched sibling's the outbound)."""
    found: list[tuple[int, int, int]] = []
    step = {code: code for code in units}  # code to search from: the unit found
    for _ in range(_MAX_RELABELS):
        if not step:
            break
        rows = await (await conn.execute(_REPLACED, (sorted(step),))).fetchall()
        olds = codes_of(scheme, [row["replaces"] for row in rows])
        took = [(r, old) for r, old in zip(rows, olds, strict=True) if old is not None]
        found += [(step[r["code"]], old, r["id"]) for r, old in took]
        step = {old: step[r["code"]] for r, old in took}
    return found


async def _documents(conn: Conn, findings: list[Finding], scheme: Scheme) -> None:
    """Name the outbound that shipped each unit to its agent, and the one to its store.

    To the agent: the shipment that gave it the unit's current designation — the latest
    outbound into the agent's area (to the agent or one of its warehouses: a probe found none
    named for goods the factory shipped to the agent's own warehouse) from outside it, from the
    brand's own stock (an outbound from there designates anew, so after a return and another
    shipment the first one is a closed matter: a probe named it), else the latest from within
    the channel. A return to the agent (from its store) designates nothing and is never named."""
    shipped = {f.code: f for f in findings if f.source is not None and f.code is not None}
    if not shipped:
        return
    relabelled = [code for code, f in shipped.items() if f.relabelled]
    seeds = [(code, code, _FOREVER) for code in shipped]
    seeds += await _replaced(conn, scheme, relabelled) if relabelled else []
    units, codes, until = (list(column) for column in zip(*seeds, strict=True))
    params = {"units": units, "codes": codes, "until": until, "depth": _MAX_DEPTH}
    rows = await (await conn.execute(_SHIPMENTS, params)).fetchall()
    agents = sorted({f.source for f in shipped.values() if f.source is not None})
    area = {
        r["id"]: r["path"]
        for r in await (
            await conn.execute("SELECT id, path FROM orgs WHERE id = ANY(%s)", (agents,))
        ).fetchall()
    }

    def into_area(row: dict[str, Any], agent: int | None) -> bool:
        path = area.get(agent) if agent is not None else None
        if path is None:
            return False
        if row["destination_org"] == agent:
            return True
        inside = (row["source_path"] or "").startswith(path)
        return row["destination_path"].startswith(path) and not inside

    senders = sorted({r["source_org"] for r in rows if r["source_org"] is not None})
    channel = {
        r["id"]
        for r in await (
            await conn.execute(
                f"SELECT o.id FROM orgs o WHERE o.id = ANY(%s) AND {_in_channel('o')}",
                (senders,),
            )
        ).fetchall()
    }
    from_stock: dict[int, str | None] = {}
    for row in rows:  # oldest first: the latest of each kind wins
        found = shipped[row["unit"]]
        if into_area(row, found.source) and row["disposition"] != "returned":
            found.document_no = row["document_no"]
            if row["source_org"] is not None and row["source_org"] not in channel:
                from_stock[row["unit"]] = row["document_no"]
        if row["destination_org"] == found.store and found.store is not None:
            found.store_document_no = row["document_no"]  # the latest to the store
    for unit, document_no in from_stock.items():
        shipped[unit].document_no = document_no


# -- recording ----------------------------------------------------------------------------------


async def inspect(conn: Conn, actor: Principal, scheme: Scheme, data: InspectionIn) -> ScanOut:
    """Inspect a unit or a case at a store: verdicts, log, event, summary deltas and alerts.
    A retried upload (same ``client_id``) answers the first scan's result, before the store is
    looked at again: one moved out of the caller's area or closed since still replays (a probe:
    422 ``unknown_store``, and the app dropped a scan the server holds) — and before its
    ``client_at`` is checked (a replay of a scan queued long ago is still its answer)."""
    actor.require("inspect.scan")
    if data.client_id is not None:
        earlier = await _earlier_scan(conn, actor, data.client_id)
        if earlier is not None:
            idempotency.check(earlier["client_hash"], data, "scan")
            return await get_scan(conn, actor, earlier["id"], replayed=True)
    check_client_at(data.client_at)
    store = await store_for(conn, actor, data)
    if data.photo_ids:
        missing = await missing_photos(conn, actor, [str(p) for p in data.photo_ids])
        if missing:
            raise unknown_photos(missing)
    scanned = await _findings(conn, actor, scheme, store, data.code)
    await _documents(conn, scanned.findings, scheme)
    counts = Counter(f.result for f in scanned.findings)
    overall = next(r for r in RESULTS if counts[r])
    now = datetime.now(UTC)
    [event_id] = await allocate_ids(conn, 1)
    scan_id = await _record_scan(conn, actor, data, store, scanned, overall, event_id, now)
    await _record_findings(conn, actor, store, scan_id, now, scanned.findings)
    await write_events(
        conn, [_event(actor, data, store, scanned, scan_id, overall, counts, event_id, now)]
    )
    await deltas(conn, actor.brand_id, [(scan_time(data, now), store.id, scanned.findings)])
    await _alerts(conn, actor, store, scan_id, scanned)
    await audit.record(
        conn, actor, "inspect", "inspection", scan_id,
        after={"store": store.erp_code, "scanned": scanned.label, "result": overall,
               "counts": dict(counts)},
        org_id=store.id,
    )  # fmt: skip
    return await get_scan(conn, actor, scan_id)


async def missing_photos(conn: Conn, actor: Principal, photo_ids: list[str]) -> set[str]:
    """Of these photo ids, those not uploaded by the caller (as for field reviews, a photo is
    attached by the user who uploaded it)."""
    rows = await (
        await conn.execute(
            "SELECT id::text AS id FROM media_photos WHERE id = ANY(%s::uuid[]) AND owner_id = %s",
            (photo_ids, actor.user_id),
        )
    ).fetchall()
    return set(photo_ids) - {r["id"] for r in rows}


def unknown_photos(missing: set[str]) -> Unprocessable:
    return Unprocessable(
        "photos must be uploaded first (POST /media/photos), by the same user",
        code="unknown_photo",
        details={"photo_ids": sorted(missing)},
    )


def client_scope(actor: Principal) -> tuple[str, str, tuple[Any, ...]]:
    """Whose client ids a scan's ``client_id`` is among: the lock key's prefix, the SQL condition
    on ``inspection_scans`` and its parameters. A user's are the user's own, whatever
    organisation the user is in now (a probe: one moved to another organisation by the user
    import re-sent a queued scan and it was recorded twice, or refused 422 ``unknown_store``);
    an API key's are the key's, within its organisation (a key has no inspector)."""
    if actor.user_id is not None:
        return f"user:{actor.user_id}:", "inspector_id = %s", (actor.user_id,)
    return (
        f"{actor.org_id}:key:{actor.api_key_id}:",
        "inspector_id IS NULL AND inspector_org_id = %s AND api_key_id = %s",
        (actor.org_id, actor.api_key_id),
    )


# A caller's client ids are locked in this many slots (``client_id_locks``), not one lock each.
CLIENT_ID_SLOTS = 16


def client_id_locks(prefix: str, client_ids: Iterable[str]) -> list[str]:
    """The keys of ``Lock.INSPECTION_CLIENT_ID`` that guard these client ids of one caller
    (``client_scope``'s prefix), sorted: a client id's slot is a hash of it among
    ``CLIENT_ID_SLOTS``. A batch of a thousand ids takes at most that many locks (a probe: one
    lock per id, and seven such batches at once filled PostgreSQL's shared lock table — every
    other transaction failed "out of shared memory"); two requests with one id still share its
    slot, and two sets of slots are taken in the same order (no deadlock)."""
    return sorted({f"{prefix}{zlib.crc32(c.encode()) % CLIENT_ID_SLOTS}" for c in client_ids})


async def _earlier_scan(conn: Conn, actor: Principal, client_id: str) -> dict[str, Any] | None:
    """The scan this inspector already recorded under ``client_id`` (id, client_hash), if any;
    locks the client id (its slot) until the transaction ends, so a concurrent retry waits and
    finds it."""
    prefix, owner, params = client_scope(actor)
    [key] = client_id_locks(prefix, [client_id])
    await xact_lock(conn, Lock.INSPECTION_CLIENT_ID, key)
    return await (
        await conn.execute(
            f"SELECT id, client_hash FROM inspection_scans WHERE {owner} AND client_id = %s",
            (*params, client_id),
        )
    ).fetchone()


async def _record_scan(
    conn: Conn,
    actor: Principal,
    data: InspectionIn,
    store: Store,
    scanned: _Scanned,
    overall: str,
    event_id: int,
    now: datetime,
) -> int:
    """The scan's row in the inspection log (its overall result, how many units); its id."""
    scan = await (
        await conn.execute(
            """INSERT INTO inspection_scans (brand_id, at, store_org_id, inspector_id,
                   api_key_id, inspector_org_id, scanned, scan_kind, case_sscc, lat, lng, note,
                   photo_url, client_id, client_hash, result, units, event_id, photo_ids,
                   client_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                       %s, %s)
               RETURNING id""",
            (
                actor.brand_id,
                now,
                store.id,
                actor.user_id,
                actor.api_key_id,
                actor.org_id,
                scanned.label,
                scanned.kind,
                scanned.case_sscc,
                data.gps.lat,
                data.gps.lng,
                data.note,
                data.photo_url,
                data.client_id,
                idempotency.fingerprint(data) if data.client_id is not None else None,
                overall,
                len(scanned.findings),
                event_id,
                list(data.photo_ids),
                data.client_at,
            ),
        )
    ).fetchone()
    assert scan is not None
    return int(scan["id"])


async def _record_findings(
    conn: Conn, actor: Principal, store: Store, scan_id: int, now: datetime, findings: list[Finding]
) -> None:
    """One inspection record per unit (one statement for all of them)."""
    await record_findings(conn, actor, now, [(scan_id, store.id, f) for f in findings])


async def record_findings(
    conn: Conn, actor: Principal, now: datetime, rows: list[tuple[int, int, Finding]]
) -> None:
    """One inspection record per (scan, store, unit found), of one scan or of many: one
    statement."""
    await conn.execute(
        """INSERT INTO inspections (scan_id, brand_id, at, store_org_id, inspector_id, code,
               serial, product_id, lot, result, reason, source_org_id, designated_store_id,
               document_no, store_document_no)
           SELECT f.scan, %(brand)s, %(at)s, f.store, %(inspector)s, f.code, f.serial,
                  f.product, f.lot, f.result, f.reason, f.source, f.dstore, f.doc, f.sdoc
           FROM unnest(%(scans)s::bigint[], %(stores)s::bigint[], %(codes)s::bigint[],
                       %(serials)s::text[], %(products)s::bigint[],
                       %(lots)s::text[], %(results)s::text[], %(reasons)s::text[],
                       %(sources)s::bigint[], %(dstores)s::bigint[], %(docs)s::text[],
                       %(sdocs)s::text[])
                AS f (scan, store, code, serial, product, lot, result, reason, source, dstore,
                      doc, sdoc)""",
        {
            "brand": actor.brand_id,
            "at": now,
            "inspector": actor.user_id,
            "scans": [scan for scan, _, _ in rows],
            "stores": [store for _, store, _ in rows],
            "codes": [f.code for _, _, f in rows],
            "serials": [f.serial for _, _, f in rows],
            "products": [f.product_id for _, _, f in rows],
            "lots": [f.lot for _, _, f in rows],
            "results": [f.result for _, _, f in rows],
            "reasons": [f.reason for _, _, f in rows],
            "sources": [f.source for _, _, f in rows],
            "dstores": [f.store for _, _, f in rows],
            "docs": [f.document_no for _, _, f in rows],
            "sdocs": [f.store_document_no for _, _, f in rows],
        },
    )


def _event(
    actor: Principal,
    data: InspectionIn,
    store: Store,
    scanned: _Scanned,
    scan_id: int,
    overall: str,
    counts: Counter[str],
    event_id: int,
    now: datetime,
) -> NewEvent:
    """The inspection's ObjectEvent (bizStep inspecting) at the store: the unit scanned, or the
    case. Its eventTime is the scan's time (``scan_time``: the phone's, when it sent one, with
    its offset); its recordTime the server's."""
    findings, case_sscc = scanned.findings, scanned.case_sscc
    return builders.observe(
        id=event_id,
        brand_id=actor.brand_id,
        at=scan_time(data, now),
        biz_step="inspecting",
        disposition=None,
        units=[f.code for f in findings if f.code is not None] if scanned.kind == "unit" else [],
        cases=[case_sscc] if case_sscc is not None else [],
        read_point=builders.geo_uri(data.gps.lat, data.gps.lng),
        biz_location=store.id,
        recorded_by=actor.person,
        details={
            "inspection": scan_id,
            "scanned": scanned.label,
            "result": overall,
            "counts": dict(counts),
            "note": data.note or None,
            "photo_url": data.photo_url,
            "photos": [str(p) for p in data.photo_ids] or None,
        },
    )


def scan_time(data: InspectionIn, now: datetime) -> datetime:
    """When the scan was made: the phone's time when it sent one (a scan queued offline), else
    the server's. The event's eventTime and the summary's business day are this time."""
    return data.client_at if data.client_at is not None else now


async def deltas(conn: Conn, brand: int, scans: list[tuple[datetime, int, list[Finding]]]) -> None:
    """Units per (business day of the scan time, store, source agent, result) of these scans
    (scan time, store, findings), for the summary roll-up (D4): one statement."""
    groups = Counter(
        (at.astimezone(ZONE).date(), store, f.source or 0, f.result)
        for at, store, findings in scans
        for f in findings
    )
    keys = sorted(groups)
    await conn.execute(
        """INSERT INTO inspection_deltas (brand_id, day, store_org_id, source_org_id, result,
               units)
           SELECT %(brand)s, k.day, k.store, k.source, k.result, k.units
           FROM unnest(%(days)s::date[], %(stores)s::bigint[], %(sources)s::bigint[],
                       %(results)s::text[], %(units)s::int[])
                AS k (day, store, source, result, units)""",
        {
            "brand": brand,
            "days": [k[0] for k in keys],
            "stores": [k[1] for k in keys],
            "sources": [k[2] for k in keys],
            "results": [k[3] for k in keys],
            "units": [groups[k] for k in keys],
        },
    )


# The agent's alert is the brand alert's twin: webhooks send the brand's subscriptions the
# brand's one only (migration 0087; a probe: two deliveries for one diverted unit).
_ALERT = """
INSERT INTO alerts (brand_id, org_id, kind, severity, code_id, serial, message, details, dedup_key,
                    brand_twin)
VALUES (%(brand)s, %(org)s, %(kind)s, %(severity)s, %(code)s, %(serial)s, %(message)s,
        %(details)s, %(dedup)s, %(org)s <> %(brand)s)
ON CONFLICT (dedup_key) WHERE acknowledged_at IS NULL
DO UPDATE SET occurrences = alerts.occurrences + 1, last_at = now(), severity = EXCLUDED.severity,
              message = EXCLUDED.message, details = EXCLUDED.details
"""


def _subject(kind: str, label: str) -> str:
    """The alert's subject of a code that is no unit of the brand: the serial as read from any
    spelling of it — bare, in a QR URL, in lower case (a probe: one forged serial scanned three
    ways opened three alerts, where a scan again bumps the open one)."""
    return f"{kind[0]}:{serial_from_scan(label).upper() if kind == 'unit' else label}"


def _listed(names: list[str], several: str) -> str | None:
    """One name as it is, a few joined, many counted (``several`` holds ``{n}``); None: none."""
    if not names:
        return None
    if len(names) <= 3:
        return ", ".join(names)
    return several.format(n=len(names))


def _message(
    result: str,
    first: Finding,
    what: str,
    agent: str | None,
    where: str,
    label: str,
    documents: list[str],
) -> str:
    """An alert's message: what was found where, and whose it was (the documents that shipped
    it to that agent: one named, a few listed, many counted)."""
    if result == "diverted":
        shipped = _listed(documents, "{n} documents")
        shipped = f" ({shipped})" if shipped else ""
        return f"Diverted: {what} shipped to {agent}{shipped} found at {where}"
    if result == "unknown_route" and first.reason == "returned_to_stock":
        return f"Returned to the brand's stock: {what} found at {where}"
    if result == "unknown_route":
        return f"Never shipped: {what} found at {where}"
    return f"Counterfeit: {label} ({first.reason}) found at {where}"


async def _alerts(
    conn: Conn, actor: Principal, store: Store, scan_id: int, scanned: _Scanned
) -> None:
    """D5: at once, for the brand and for the agent the goods were shipped to (the brand's
    twin: one webhook delivery per finding to the brand, migration 0087). One open alert per
    (result, organisation, source agent, scanned code): scanning the same unit or case again
    bumps it."""
    await write_alerts(conn, await alert_rows(conn, actor, store, scan_id, scanned))


async def write_alerts(conn: Conn, rows: list[dict[str, Any]]) -> None:
    """Open or bump these alerts (``alert_rows``, of one scan or many) in the order of their
    dedup keys: transactions bumping the same open alerts lock them in one order (a probe: two
    inspectors' offline batches of the same units, in opposite orders, deadlocked)."""
    if rows:
        ordered = sorted(rows, key=lambda r: r["dedup"])
        await conn.cursor().executemany(_ALERT, ordered)


def _alert_groups(brand: int, findings: list[Finding]) -> dict[tuple[str, int, int], list[Finding]]:
    """The findings of each alert, by (result, organisation alerted, source agent or 0): the
    agent's own goods to the agent, and to the brand one alert per source agent too — a case
    mixing two agents' goods is two leaks (a probe: the brand's alert put all its units on the
    first unit's agent and its document, and never named the other)."""
    groups: dict[tuple[str, int, int], list[Finding]] = defaultdict(list)
    for f in findings:
        if f.result == "in_channel":
            continue
        groups[(f.result, brand, f.source or 0)].append(f)
        if f.source is not None:
            groups[(f.result, f.source, f.source)].append(f)
    return groups


async def alert_rows(
    conn: Conn, actor: Principal, store: Store, scan_id: int, scanned: _Scanned
) -> list[dict[str, Any]]:
    """The parameters of ``_ALERT`` for one scan's alerts (see ``_alerts``, ``_alert_groups``).
    The product and the document are those of the alert's units: one named, several listed (a
    mixed pallet is not one product's). The brand's alert of an agent's goods has the agent in
    its dedup key; the agent's own alert, the brand's alert of no agent's goods do not need it."""
    kind, label, findings = scanned.kind, scanned.label, scanned.findings
    groups = _alert_groups(actor.brand_id, findings)
    if not groups:
        return []
    names = await _names(conn, {f.source for f in findings} | {f.product_id for f in findings})
    where = store.name + (f" ({store.city_name})" if store.city_name else "")
    params = []
    for (result, org, source), found in sorted(groups.items()):
        first, n = found[0], len(found)
        what = f"{n} unit{'s' if n != 1 else ''}" if kind == "case" else first.serial
        known = names["products"]
        products = sorted({known[f.product_id] for f in found if f.product_id in known})
        product = _listed(products, "{n} products")
        if product:
            what += f" of {product}"
        agent = names["orgs"].get(source)
        documents = sorted({f.document_no for f in found if f.document_no is not None})
        subject = f"u{first.code}" if kind == "unit" and first.code else _subject(kind, label)
        by_agent = f":{source}" if org == actor.brand_id and source else ""
        details = {
            "result": result,
            "inspection": scan_id,
            "store_id": store.id,
            "store": store.name,
            "province": store.province_name,
            "city": store.city_name,
            "units": n,
            "serials": [f.serial for f in found[:_MAX_LISTED]],
            "reason": first.reason,
            "shipped_to": source or None,
            "shipped_to_name": agent,
            "document_no": documents[0] if len(documents) == 1 else None,
            "document_nos": documents[:_MAX_LISTED],
            "inspector_id": actor.user_id,
        }
        params.append(
            {
                "brand": actor.brand_id,
                "org": org,
                "kind": ALERT_KIND[result],
                "severity": SEVERITY[result],
                "code": first.code if kind == "unit" else None,
                "serial": label,
                "message": _message(result, first, what, agent, where, label, documents),
                "details": Jsonb(details),
                "dedup": f"inspect:{result}:{org}:{subject}{by_agent}",
            }
        )
    return params


async def _names(conn: Conn, ids: set[int | None]) -> dict[str, dict[int, str]]:
    wanted = [i for i in ids if i is not None]
    orgs = await (
        await conn.execute("SELECT id, name FROM orgs WHERE id = ANY(%s)", (wanted,))
    ).fetchall()
    products = await (
        await conn.execute("SELECT id, name FROM products WHERE id = ANY(%s)", (wanted,))
    ).fetchall()
    return {
        "orgs": {r["id"]: r["name"] for r in orgs},
        "products": {r["id"]: r["name"] for r in products},
    }


# -- reading ------------------------------------------------------------------------------------

RECORD_COLUMNS = """i.id, i.scan_id, i.at, sc.client_at, i.inspector_id, us.username AS inspector,
    i.serial, i.product_id, p.name AS product_name, i.lot, i.result, i.reason, i.document_no,
    i.store_document_no, sc.case_sscc, sc.lat, sc.lng, sc.note, sc.photo_url, sc.photo_ids,
    s.id AS s_id, s.name AS s_name, s.erp_code AS s_erp_code, s.province_name AS s_province_name,
    s.city_name AS s_city_name,
    a.id AS a_id, a.name AS a_name, a.erp_code AS a_erp_code, a.province_name AS a_province_name,
    a.city_name AS a_city_name,
    d.id AS d_id, d.name AS d_name, d.erp_code AS d_erp_code, d.province_name AS d_province_name,
    d.city_name AS d_city_name"""
RECORD_SOURCE = """inspections i
    JOIN inspection_scans sc ON sc.id = i.scan_id
    JOIN orgs s ON s.id = i.store_org_id
    LEFT JOIN orgs a ON a.id = i.source_org_id
    LEFT JOIN orgs d ON d.id = i.designated_store_id
    LEFT JOIN products p ON p.id = i.product_id
    LEFT JOIN users us ON us.id = i.inspector_id"""
# Visible: inspections at the caller's stores, and of the caller's goods found anywhere.
# The time of a record in the lists: its scan's on the phone when it sent one, else the upload's.
SCAN_AT = "coalesce(sc.client_at, i.at)"
VISIBLE = "(s.path LIKE %(prefix)s OR a.path LIKE %(prefix)s)"


def org_ref(row: dict[str, Any], prefix: str) -> OrgRef | None:
    if row[f"{prefix}_id"] is None:
        return None
    return OrgRef(
        id=row[f"{prefix}_id"],
        name=row[f"{prefix}_name"],
        erp_code=row[f"{prefix}_erp_code"],
        province_name=row[f"{prefix}_province_name"],
        city_name=row[f"{prefix}_city_name"],
    )


def record_out(row: dict[str, Any]) -> InspectionOut:
    store = org_ref(row, "s")
    assert store is not None
    return InspectionOut(
        id=row["id"],
        scan_id=row["scan_id"],
        at=row["at"],
        client_at=row["client_at"],
        store=store,
        inspector_id=row["inspector_id"],
        inspector=row["inspector"],
        serial=row["serial"],
        product=ProductRef(id=row["product_id"], name=row["product_name"])
        if row["product_id"] is not None
        else None,
        lot=row["lot"],
        result=row["result"],
        reason=row["reason"],
        shipped_to=org_ref(row, "a"),
        designated_store=org_ref(row, "d"),
        document_no=row["document_no"],
        store_document_no=row["store_document_no"],
        case=sscc_label(row["case_sscc"]) if row["case_sscc"] is not None else None,
        gps=Gps(lat=row["lat"], lng=row["lng"]),
        note=row["note"],
        photo_url=row["photo_url"],
        photo_ids=row["photo_ids"],
    )


async def get_scan(conn: Conn, actor: Principal, scan_id: int, replayed: bool = False) -> ScanOut:
    """One scan with its records, as the caller may see it; ``replayed``: the caller's own scan
    answered again, whole, as first answered (its store may have left the caller's area)."""
    require_reader(actor)
    scan = await (
        await conn.execute(
            """SELECT sc.id, sc.at, sc.client_at, sc.scanned, sc.scan_kind, sc.result, sc.units,
                      sc.event_id, s.path
               FROM inspection_scans sc JOIN orgs s ON s.id = sc.store_org_id
               WHERE sc.id = %s""",
            (scan_id,),
        )
    ).fetchone()
    rows = await (
        await conn.execute(
            f"""SELECT {RECORD_COLUMNS}, s.path AS s_path, a.path AS a_path
                FROM {RECORD_SOURCE} WHERE i.scan_id = %s ORDER BY i.id""",
            (scan_id,),
        )
    ).fetchall()
    whole = scan is not None and (replayed or actor.sees(scan["path"]))
    if not whole:  # the source agent of some of its goods: the records of those only, as the
        # list shows them (probe: a case mixing two agents' goods showed one the other's)
        rows = [r for r in rows if r["a_path"] and actor.sees(r["a_path"])]
    if scan is None or not rows:
        raise NotFound("inspection not found", code="unknown_inspection")
    items = [record_out(r) for r in rows]
    counts = Counter(i.result for i in items)
    return ScanOut(
        id=scan["id"],
        at=scan["at"],
        client_at=scan["client_at"],
        store=items[0].store,
        scanned=scan["scanned"],
        kind=scan["scan_kind"],
        result=scan["result"] if whole else next(r for r in RESULTS if counts[r]),
        units=scan["units"] if whole else len(items),
        counts={r: counts[r] for r in RESULTS},
        event_id=scan["event_id"],
        replayed=replayed,
        items=items,
    )


async def get_record(conn: Conn, actor: Principal, record_id: int) -> InspectionOut:
    require_reader(actor)
    row = await (
        await conn.execute(
            f"SELECT {RECORD_COLUMNS}, s.path AS s_path, a.path AS a_path "
            f"FROM {RECORD_SOURCE} WHERE i.id = %s",
            (record_id,),
        )
    ).fetchone()
    if row is None or not (
        actor.sees(row["s_path"]) or (row["a_path"] is not None and actor.sees(row["a_path"]))
    ):
        raise NotFound("inspection not found", code="unknown_inspection")
    return record_out(row)


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    """D3 filters of the records; ``date_from``/``date_to`` are business days, inclusive."""

    store_id: int | None = None
    product_id: int | None = None
    inspector_id: int | None = None
    source_id: int | None = None
    result: str | None = None
    scan_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None


def _where(actor: Principal, filters: Filters) -> tuple[list[str], dict[str, Any]]:
    where = [VISIBLE]
    params: dict[str, Any] = {"prefix": actor.org_path + "%"}
    for column, value in (
        ("i.store_org_id", filters.store_id),
        ("i.product_id", filters.product_id),
        ("i.inspector_id", filters.inspector_id),
        ("i.source_org_id", filters.source_id),
        ("i.result", filters.result),
        ("i.scan_id", filters.scan_id),
    ):
        if value is not None:
            key = column.split(".")[1]
            where.append(f"{column} = %({key})s")
            params[key] = value
    check_period(filters.date_from, filters.date_to)
    # by the scan's time (the phone's when it sent one), as check-ins are; the bounds on the
    # upload time ``i.at`` follow from ``check_client_at`` (at most CLOCK_SKEW before, at most
    # OFFLINE_DAYS after the scan's time) and keep the range on the indexes of ``at``
    if filters.date_from is not None:
        start = f"(%(date_from)s::date::timestamp AT TIME ZONE '{REPORT_TZ}')"
        where.append(f"{SCAN_AT} >= {start}")
        where.append(f"i.at >= {start} - %(skew)s")
        params["date_from"], params["skew"] = filters.date_from, CLOCK_SKEW
    if filters.date_to is not None:
        end = f"((%(date_to)s::date + 1)::timestamp AT TIME ZONE '{REPORT_TZ}')"
        where.append(f"{SCAN_AT} < {end}")
        where.append(f"i.at < {end} + %(queued)s")
        params["date_to"], params["queued"] = filters.date_to, timedelta(days=OFFLINE_DAYS + 1)
    return where, params


async def list_records(
    conn: Conn, actor: Principal, filters: Filters, page: int, per_page: int
) -> Page[InspectionOut]:
    """Inspection records, newest first: at the caller's stores, or of the caller's goods."""
    require_reader(actor)
    where, params = _where(actor, filters)
    return await fetch_page(
        conn,
        columns=RECORD_COLUMNS,
        source=RECORD_SOURCE,
        where=where,
        params=params,
        order=f"{SCAN_AT} DESC, i.id DESC",
        page=page,
        per_page=per_page,
        make=record_out,
    )


INSPECTORS_DAYS = 365  # the inspector filter's choices: who inspected within this many days


async def list_inspectors(
    conn: Conn, actor: Principal, q: str | None, page: int, per_page: int
) -> Page[InspectorOut]:
    """The people who made the records the caller sees (``list_records``' scope) within the last
    ``INSPECTORS_DAYS`` days, by name; ``q``: part of the username or display name. An
    inspector or a report reader may not read the user directory, and the newest records alone
    missed those who inspect rarely. The brand's records of the period only, on the index of
    ``(brand_id, at)`` (a review: every inspection of the platform was grouped per call)."""
    require_reader(actor)
    source = f"""(SELECT i.inspector_id AS id, count(*) AS records, max(i.at) AS last_at
                 FROM inspections i JOIN orgs s ON s.id = i.store_org_id
                 LEFT JOIN orgs a ON a.id = i.source_org_id
                 WHERE i.brand_id = %(brand)s AND i.at >= now() - %(days)s * interval '1 day'
                   AND {VISIBLE} AND i.inspector_id IS NOT NULL
                 GROUP BY i.inspector_id) x JOIN users u ON u.id = x.id"""
    params: dict[str, Any] = {
        "brand": actor.brand_id,
        "days": INSPECTORS_DAYS,
        "prefix": actor.org_path + "%",
    }
    if q:
        params["q"] = contains(q)
    return await fetch_page(
        conn,
        columns="x.id, u.username, u.display_name, x.records, x.last_at",
        source=source,
        where=["(u.username ILIKE %(q)s OR u.display_name ILIKE %(q)s)"] if q else [],
        params=params,
        order="lower(coalesce(nullif(u.display_name, ''), u.username)), x.id",
        page=page,
        per_page=per_page,
        make=lambda row: InspectorOut(**row),
    )


CSV_MAX_ROWS = 100_000
CSV_COLUMNS = [
    "id", "scan_id", "at", "client_at", "store_code", "store", "province", "city", "inspector",
    "serial", "product", "lot", "result", "reason", "shipped_to_code", "shipped_to",
    "designated_store", "document_no", "store_document_no", "case", "lat", "lng", "note",
    "photo_url",
]  # fmt: skip


async def records_csv(conn: Conn, actor: Principal, filters: Filters) -> AsyncIterator[bytes]:
    """The matching records as CSV through ``app.tabular`` (BOM, formula guard). At most
    ``CSV_MAX_ROWS``: more is refused (422) before the file starts."""
    require_reader(actor)
    where, params = _where(actor, filters)
    rows = await (
        await conn.execute(
            f"SELECT {RECORD_COLUMNS} FROM {RECORD_SOURCE} WHERE {' AND '.join(where)} "
            f"ORDER BY {SCAN_AT} DESC, i.id DESC LIMIT %(limit__)s",
            {**params, "limit__": CSV_MAX_ROWS + 1},
        )
    ).fetchall()
    if len(rows) > CSV_MAX_ROWS:
        raise Unprocessable(
            f"more than {CSV_MAX_ROWS} records: narrow the period or the filters",
            code="too_many_rows",
        )
    return tabular.csv_chunks(CSV_COLUMNS, tabular.one_batch([_csv_row(r) for r in rows]))


def _csv_row(row: dict[str, Any]) -> list[Any]:
    r = record_out(row)
    return [
        r.id, r.scan_id, r.at, r.client_at, r.store.erp_code, r.store.name,
        r.store.province_name, r.store.city_name, r.inspector,
        r.serial, r.product.name if r.product else None, r.lot, r.result, r.reason,
        r.shipped_to.erp_code if r.shipped_to else None,
        r.shipped_to.name if r.shipped_to else None,
        r.designated_store.name if r.designated_store else None,
        r.document_no, r.store_document_no, r.case,
        r.gps.lat, r.gps.lng, r.note, r.photo_url,
    ]  # fmt: skip
