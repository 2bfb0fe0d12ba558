"""Leaked print files and code packs (B5): suspicious consumer verifications attributed to the
export (the outer and inner printer files, ``app.codes.exports``) or the allocation (a line
system's or partner's code pack, ``app.codes.allocations``) whose range held the code.

A counterfeiter who has a file prints valid codes on fakes: consumers then verify codes that
were never activated on a packing line (or not yet: verified before the activation), activated
but never shipped, or shipped but verified in a province the batch never went to. A run
(``detect_leaks``; a periodic job in every worker, ``workers.forensics``, one process at a time
under ``Lock.FORENSICS_LEAKS``, and ``tracecode forensics leaks`` to run it now) reads the
verifications since its mark (less ``LEAK_OVERLAP_MINUTES``: records are flushed behind; the
first run reads back ``LEAK_WINDOW_HOURS``; the flusher moves the mark back to records it
stores later than that, ``app.verify.records.LEAK_MARK``) and, in ONE statement, judges each
against the unit's state and its batch's shipped provinces and writes a ``leak_findings`` row
per source (export or allocation) and suspicious verification — the primary key makes a
verification found twice (the overlap, a run again) count once — and adds what it found to the
source's count (``leak_sources``). A suspicious verification of a code in no file and no pack
is counted as ``unattributed`` and left: nothing to attribute it to.

Then each source with at least ``LEAK_MIN_FINDINGS`` findings and more than its newest
``leaked_file`` alert counted (``leak_sources.alerted``) is alerted through the alerts' one
statement (``app.verify.records.ALERT``: one open alert per source, ``dedup_key``
``leaked_file:<kind>:<id>``; raised again, it counts one more occurrence with the new details):
severity critical from ``LEAK_CRITICAL_FINDINGS`` on, details naming the source, its batch and
range, its recipients (the outer and inner printers of a file; the partner of a pack), the
counts by signal and sample serials. With a PIN entered (``with_pin``) the inner print leaked
too. A source whose alert cannot be made is logged, counted ``failed`` and tried again on the
next run (its findings are kept; its alert's count is behind).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.forensics.schemas import LeakOut, LeakRunOut, Recipient
from app.locks import Lock, run_alone
from app.members.principal import brand_of_staff
from app.paging import Page, fetch_page
from app.verify.records import ALERT, LEAK_MARK

log = logging.getLogger("tracecode.forensics")

MARK = LEAK_MARK  # the flusher moves it back for records stored late
SAMPLES = 5  # serials named by an alert
ALERT_KIND = "leaked_file"

# One statement: the verifications of the span judged (the unit's state now and at the time;
# the provinces its batch was shipped to: channel organisations and designated stores), the
# suspicious ones attributed to every export and allocation whose range holds the code, and
# how many had no source.
_FIND = """
WITH v AS MATERIALIZED (
    SELECT v.at, v.id, v.brand_id, v.code_id, v.serial, v.pin_given, v.province,
           v.code_id >> 32 AS batch_no, v.code_id & 4294967295 AS idx
    FROM verifications v
    WHERE v.at >= %(since)s AND v.at < %(until)s AND v.code_id IS NOT NULL
      AND v.brand_id IS NOT NULL AND v.reason <> 'claim_retry'
), shipped AS MATERIALIZED (
    SELECT DISTINCT b.batch_no, o.province_name
    FROM (SELECT DISTINCT batch_no FROM v) b
    JOIN unit_state u ON u.code BETWEEN b.batch_no << 32 AND (b.batch_no << 32) | 4294967295
    JOIN orgs o ON o.id IN (u.channel_org_id, u.store_org_id)
    WHERE u.shipped_at IS NOT NULL AND o.province_name IS NOT NULL
), judged AS MATERIALIZED (
    SELECT v.*, CASE
        WHEN u.code IS NULL OR u.activated_at > v.at THEN 'not_activated'
        WHEN u.status IN ('void', 'destroyed') THEN NULL  -- void: the verification says so
        WHEN u.shipped_at IS NULL OR u.shipped_at > v.at THEN 'never_shipped'
        WHEN v.province IS NOT NULL
             AND EXISTS (SELECT 1 FROM shipped s WHERE s.batch_no = v.batch_no)
             AND NOT EXISTS (SELECT 1 FROM shipped s
                              WHERE s.batch_no = v.batch_no AND s.province_name = v.province)
            THEN 'out_of_region'
    END AS signal
    FROM v LEFT JOIN unit_state u ON u.code = v.code_id
), sources AS MATERIALIZED (
    SELECT 'export' AS source_kind, e.id AS source_id, j.*
    FROM judged j JOIN code_exports e
      ON e.batch_no = j.batch_no AND e.brand_id = j.brand_id AND e.state = 'done'
     AND j.idx >= e.range_start AND j.idx < e.range_end
    WHERE j.signal IS NOT NULL
    UNION ALL
    SELECT 'allocation', r.allocation_id, j.*
    FROM judged j JOIN code_allocation_ranges r
      ON r.batch_no = j.batch_no AND j.idx BETWEEN r.first_index AND r.last_index
    WHERE j.signal IS NOT NULL
), found AS (
    INSERT INTO leak_findings (source_kind, source_id, verification_at, verification_id,
                               brand_id, code_id, serial, signal, pin_given, province)
    SELECT source_kind, source_id, at, id, brand_id, code_id, serial, signal, pin_given, province
    FROM sources
    ON CONFLICT DO NOTHING
    RETURNING source_kind, source_id, brand_id
), counted AS (
    INSERT INTO leak_sources AS s (source_kind, source_id, brand_id, findings)
    SELECT source_kind, source_id, min(brand_id), count(*) FROM found GROUP BY 1, 2
    ON CONFLICT (source_kind, source_id) DO UPDATE SET findings = s.findings + EXCLUDED.findings
)
SELECT (SELECT count(*) FROM found) AS findings,
       (SELECT count(*) FROM judged j WHERE j.signal IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM sources s WHERE s.at = j.at AND s.id = j.id))
           AS unattributed
"""

# The sources to alert: enough findings, more than the newest alert of the source counted
# (``leak_sources``, kept by ``_FIND``: no count over every finding each run).
_DUE = """
SELECT brand_id, source_kind, source_id, findings FROM leak_sources
WHERE findings > alerted AND findings >= %(min)s
"""

_ALERTED = """
UPDATE leak_sources SET alerted = greatest(alerted, %(n)s)
WHERE source_kind = %(kind)s AND source_id = %(id)s
"""

# A source's counts and what names it: the export's batch, range and printers, or the
# allocation's batch, total and recipient.
_SUMMARY = """
SELECT f.source_kind, f.source_id::text AS source_id, count(*) AS findings,
       count(*) FILTER (WHERE f.signal = 'not_activated') AS not_activated,
       count(*) FILTER (WHERE f.signal = 'never_shipped') AS never_shipped,
       count(*) FILTER (WHERE f.signal = 'out_of_region') AS out_of_region,
       count(*) FILTER (WHERE f.pin_given) AS with_pin,
       min(f.verification_at) AS first_at, max(f.verification_at) AS last_at,
       (array_agg(f.serial ORDER BY f.verification_at DESC)
            FILTER (WHERE f.serial IS NOT NULL))[1:%(samples)s] AS samples,
       max(e.batch_no) AS e_batch, max(e.range_start) AS e_start, max(e.range_end) AS e_end,
       max(e.parts::text) AS e_parts,
       max(r.batch_no) AS a_batch, max(al.total) AS a_total, max(al.recipient_org_id) AS a_org,
       (SELECT a.id FROM alerts a
         WHERE a.dedup_key = 'leaked_file:' || f.source_kind || ':' || f.source_id
         ORDER BY a.id DESC LIMIT 1) AS alert_id
FROM leak_findings f
LEFT JOIN code_exports e ON f.source_kind = 'export' AND e.id = f.source_id
LEFT JOIN code_allocations al ON f.source_kind = 'allocation' AND al.id = f.source_id
LEFT JOIN LATERAL (SELECT batch_no FROM code_allocation_ranges
                    WHERE allocation_id = al.id ORDER BY position LIMIT 1) r ON true
WHERE {where}
GROUP BY f.source_kind, f.source_id
"""


# The run's mark, unless the flusher moved it back meanwhile (``app.verify.records.LEAK_MARK``:
# records stored late, which this run's statement did not see) — the next run goes back to them
_MARK = """
INSERT INTO forensics_marks (name, scanned_to) VALUES (%(name)s, %(now)s)
ON CONFLICT (name) DO UPDATE
    SET scanned_to = CASE WHEN forensics_marks.scanned_to < %(read)s
                          THEN forensics_marks.scanned_to ELSE EXCLUDED.scanned_to END
"""


async def detect_leaks(conn: Conn, settings: Settings, *, wait: bool = False) -> LeakRunOut:
    """One run (see the module docstring); ``ran`` false when another process is running it
    (``wait``: wait for it instead). ``conn``: autocommit."""

    async def work() -> LeakRunOut:
        async with conn.transaction():
            now, mark, since = await _span(conn, settings)
            row = await (await conn.execute(_FIND, {"since": since, "until": now})).fetchone()
            assert row is not None
            await conn.execute(_MARK, {"name": MARK, "now": now, "read": mark})
        alerts, failed = await _alert(conn, settings)
        return LeakRunOut(
            ran=True,
            scanned_from=since,
            scanned_to=now,
            findings=int(row["findings"]),
            unattributed=int(row["unattributed"]),
            alerts=alerts,
            failed=failed,
        )

    out = await run_alone(conn, Lock.FORENSICS_LEAKS, work, wait=wait)
    return out if out is not None else LeakRunOut(ran=False)


async def _span(conn: Conn, settings: Settings) -> tuple[Any, Any, Any]:
    """(now, the mark, from when): the mark less the overlap, or the window on a first run."""
    row = await (
        await conn.execute(
            "SELECT now() AS now, (SELECT scanned_to FROM forensics_marks WHERE name = %s) AS mark",
            (MARK,),
        )
    ).fetchone()
    assert row is not None
    now, mark = row["now"], row["mark"]
    if mark is None:
        return now, None, now - timedelta(hours=settings.leak_window_hours)
    return now, mark, min(mark, now) - timedelta(minutes=settings.leak_overlap_minutes)


async def _alert(conn: Conn, settings: Settings) -> tuple[int, int]:
    """Alert the sources due (``_DUE``), each in a transaction of its own; (raised, failed)."""
    due = await (await conn.execute(_DUE, {"min": settings.leak_min_findings})).fetchall()
    raised = failed = 0
    for source in due:
        try:
            async with conn.transaction():
                await _raise(conn, settings, source)
            raised += 1
        except Exception:  # one source's bad record never stops the others
            failed += 1
            log.exception("leak alert of %s %s failed", source["source_kind"], source["source_id"])
    return raised, failed


async def _raise(conn: Conn, settings: Settings, source: dict[str, Any]) -> None:
    rows = await _summaries(
        conn,
        "f.source_kind = %(kind)s AND f.source_id = %(id)s",
        {"kind": source["source_kind"], "id": source["source_id"]},
    )
    leak = rows[0]
    severity = "critical" if leak.findings >= settings.leak_critical_findings else "warning"
    names = ", ".join(f"{r.part}: {r.name or r.org_id}" for r in leak.recipients) or "unknown"
    what = "print file" if leak.source_kind == "export" else "code pack"
    message = (
        f"Leaked {what}? {leak.findings} suspicious verifications of codes of "
        f"{leak.source_kind} {leak.source_id} (batch {leak.batch_no}; {names})"
    )
    details = {
        "source_kind": leak.source_kind,
        "source_id": leak.source_id,
        "batch_no": leak.batch_no,
        "range": [leak.range_start, leak.range_end],
        "recipients": [
            {"part": r.part, "org_id": r.org_id, "name": r.name} for r in leak.recipients
        ],
        "findings": leak.findings,
        "not_activated": leak.not_activated,
        "never_shipped": leak.never_shipped,
        "out_of_region": leak.out_of_region,
        "with_pin": leak.with_pin,
        "inner_leaked": leak.with_pin > 0,
        "samples": leak.samples,
        "first_at": leak.first_at.isoformat(),
        "last_at": leak.last_at.isoformat(),
    }
    await conn.execute(
        ALERT,
        {
            "brand": source["brand_id"],
            "kind": ALERT_KIND,
            "severity": severity,
            "code": None,
            "serial": None,
            "message": message,
            "details": Jsonb(details),
            "dedup": f"{ALERT_KIND}:{leak.source_kind}:{leak.source_id}",
        },
    )
    await conn.execute(
        _ALERTED, {"n": leak.findings, "kind": source["source_kind"], "id": source["source_id"]}
    )


class _Leak(LeakOut, frozen=True, kw_only=True):
    samples: list[str]


async def _summaries(conn: Conn, where: str, params: dict[str, Any]) -> list[_Leak]:
    rows = await (
        await conn.execute(
            _SUMMARY.format(where=where) + " ORDER BY max(f.verification_at) DESC",
            {**params, "samples": SAMPLES},
        )
    ).fetchall()
    return [await _leak(conn, row) for row in rows]


async def _leak(conn: Conn, row: dict[str, Any]) -> _Leak:
    """A source's summary with its recipients named."""
    import json

    recipients: list[tuple[str, int | None]] = []
    if row["source_kind"] == "export":
        parts = json.loads(row["e_parts"]) if row["e_parts"] else {}
        for part in ("outer", "inner", "cases"):
            got = parts.get(part) if isinstance(parts, dict) else None
            if isinstance(got, dict):
                org = got.get("printer_id")
                recipients.append((part, org if isinstance(org, int) else None))
        batch, start, end = row["e_batch"], row["e_start"], row["e_end"]
    else:
        recipients.append(("pack", row["a_org"]))
        batch, start, end = row["a_batch"], None, row["a_total"]
    ids = [org for _, org in recipients if org is not None]
    names: dict[int, str] = {}
    if ids:
        found = await conn.execute("SELECT id, name FROM orgs WHERE id = ANY(%s)", (ids,))
        names = {r["id"]: r["name"] for r in await found.fetchall()}
    return _Leak(
        source_kind=row["source_kind"],
        source_id=row["source_id"],
        batch_no=batch,
        range_start=start,
        range_end=end,
        recipients=[
            Recipient(part=part, org_id=org, name=names.get(org) if org else None)
            for part, org in recipients
        ],
        findings=row["findings"],
        not_activated=row["not_activated"],
        never_shipped=row["never_shipped"],
        out_of_region=row["out_of_region"],
        with_pin=row["with_pin"],
        first_at=row["first_at"],
        last_at=row["last_at"],
        alert_id=row["alert_id"],
        samples=list(row["samples"] or []),
    )


async def list_leaks(
    conn: Conn, actor: Principal, *, source_kind: str | None, page: int, per_page: int
) -> Page[LeakOut]:
    """The brand's files and packs with suspicious verifications, most recently seen first."""
    brand = brand_of_staff(actor, "alerts.read", "leaks are read")
    where = ["s.brand_id = %(brand)s"]
    if source_kind:
        where.append("s.source_kind = %(kind)s")
    keys = await fetch_page(
        conn,
        columns="s.source_kind, s.source_id, s.last_at",
        source="""(SELECT brand_id, source_kind, source_id, max(verification_at) AS last_at
                     FROM leak_findings GROUP BY 1, 2, 3) s""",
        where=where,
        params={"brand": brand, "kind": source_kind},
        order="s.last_at DESC, s.source_id",
        page=page,
        per_page=per_page,
        make=lambda row: (row["source_kind"], row["source_id"]),
    )
    items: list[LeakOut] = []
    for kind, source_id in keys.items:
        (leak,) = await _summaries(
            conn,
            "f.source_kind = %(kind)s AND f.source_id = %(id)s",
            {"kind": kind, "id": source_id},
        )
        items.append(LeakOut(**{f: getattr(leak, f) for f in LeakOut.__struct_fields__}))
    return Page(items=items, page=keys.page, per_page=keys.per_page, total=keys.total)
