"""Inspection summaries (SPEC D4): rolled up by a worker, served from one small table.

Every inspection writes ``inspection_deltas`` rows (units per business day, store, source agent
and result) in its own transaction; the day is the scan's (the phone's time when it sent one: a
scan queued offline counts on the day it was made, ``app.inspect.service.scan_time``). The
roll-up takes delta rows under ``FOR UPDATE SKIP LOCKED`` and deletes them in the statement that
adds them to ``inspection_summary``, so a row is counted exactly once however many roll-ups run.
``recount`` proves the summary (plus the deltas not yet rolled up) equals a count of the raw
inspection records, by the same day. A delta that cannot be folded goes to
``dead_letters`` and the others are folded (``app.deadletters``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

import msgspec

from app.auth.principal import Principal
from app.db import Conn
from app.deadletters import INSPECTION_DELTAS, drain
from app.errors import ValidationFailed
from app.inspect.schemas import AgentLeak, LeakPlace, OrgRef, StoreDay, SummaryOut
from app.localtime import REPORT_TZ
from app.locks import Lock, run_alone

MAX_DAYS = 366

_BATCH_OF = """
WITH taken AS (
    DELETE FROM inspection_deltas
    WHERE id IN ({take})
    RETURNING brand_id, day, store_org_id, source_org_id, result, units
), summed AS (
    SELECT brand_id, day, store_org_id, source_org_id, result, sum(units) AS units,
           count(*) AS n
    FROM taken GROUP BY 1, 2, 3, 4, 5
), upserted AS (
    INSERT INTO inspection_summary AS s (brand_id, day, store_org_id, source_org_id, result, units)
    SELECT brand_id, day, store_org_id, source_org_id, result, units FROM summed
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (brand_id, day, store_org_id, source_org_id, result) DO UPDATE
        SET units = s.units + EXCLUDED.units, updated_at = now()
    RETURNING 1
)
SELECT (SELECT coalesce(sum(n), 0) FROM summed)::bigint AS taken,
       (SELECT count(*) FROM upserted) AS upserted
"""
_BATCH = _BATCH_OF.replace(
    "{take}", "SELECT id FROM inspection_deltas ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
)
# The same for given rows only: salvaging a batch that failed (see ``rollup``).
_BATCH_IDS = _BATCH_OF.replace(
    "{take}", "SELECT id FROM inspection_deltas WHERE id = ANY(%(ids)s) FOR UPDATE SKIP LOCKED"
)


async def rollup(conn: Conn, limit: int = 100_000) -> int:
    """Fold pending deltas into the summary, ``limit`` rows per transaction, until none are left;
    return how many were consumed. ``conn`` must not be inside a transaction. A delta that
    cannot be folded is dead-lettered and does not stop the others (``app.deadletters.drain``)."""
    return await drain(
        conn,
        "inspection_deltas",
        INSPECTION_DELTAS,
        lambda: _fold(conn, _BATCH, {"limit": limit}),
        lambda ids: _fold(conn, _BATCH_IDS, {"ids": ids}),
        limit,
    )


async def _fold(conn: Conn, sql: str, params: dict[str, Any]) -> int:
    async with conn.transaction():
        row = await (await conn.execute(sql, params)).fetchone()
        assert row is not None
        return int(row["taken"])


async def rollup_alone(conn: Conn, *, wait: bool = False, limit: int = 100_000) -> int | None:
    """``rollup`` with one roller at a time across processes; ``None`` when another roller is
    running and ``wait`` is false. ``conn`` should be in autocommit mode."""
    return await run_alone(conn, Lock.INSPECTION_ROLLUP, lambda: rollup(conn, limit), wait=wait)


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """A summary cell that differs from the count of raw inspection records."""

    brand_id: int
    day: date
    store_org_id: int
    source_org_id: int
    result: str
    units: int
    expected: int


# One statement, one snapshot: an inspection's records and its deltas are both visible or not.
_RECOUNT = f"""
WITH expected AS (
    SELECT i.brand_id, (coalesce(sc.client_at, i.at) AT TIME ZONE '{REPORT_TZ}')::date AS day,
           i.store_org_id, coalesce(i.source_org_id, 0) AS source_org_id, i.result,
           count(*) AS units
    FROM inspections i JOIN inspection_scans sc ON sc.id = i.scan_id GROUP BY 1, 2, 3, 4, 5
), recorded AS (
    SELECT brand_id, day, store_org_id, source_org_id, result, sum(units) AS units
    FROM (SELECT brand_id, day, store_org_id, source_org_id, result, units
          FROM inspection_summary
          UNION ALL
          SELECT brand_id, day, store_org_id, source_org_id, result, units
          FROM inspection_deltas) r
    GROUP BY 1, 2, 3, 4, 5
)
SELECT brand_id, day, store_org_id, source_org_id, result,
       coalesce(r.units, 0)::bigint AS units, coalesce(e.units, 0)::bigint AS expected
FROM expected e FULL JOIN recorded r USING (brand_id, day, store_org_id, source_org_id, result)
WHERE coalesce(r.units, 0) <> coalesce(e.units, 0)
ORDER BY 1, 2, 3, 4, 5
"""


async def recount(conn: Conn) -> list[Mismatch]:
    """Summary cells (plus pending deltas) that differ from the raw inspection records."""
    rows = await (await conn.execute(_RECOUNT)).fetchall()
    return [Mismatch(**row) for row in rows]


# -- serving ------------------------------------------------------------------------------------


def require_reader(actor: Principal) -> None:
    """Inspection records and summaries are read by inspectors and report readers."""
    actor.require_any("inspect.scan", "reports.read")


def _period(date_from: date | None, date_to: date | None, today: date) -> tuple[date, date]:
    end = date_to or today
    start = date_from or date.fromordinal(max(1, end.toordinal() - 29))  # no overflow at 0001
    if start > end:
        raise ValidationFailed("from is after to", code="bad_period")
    if (end - start).days >= MAX_DAYS:
        raise ValidationFailed(f"a period of at most {MAX_DAYS} days", code="bad_period")
    return start, end


def _ref(row: dict[str, Any], prefix: str) -> OrgRef:
    return OrgRef(
        id=row[f"{prefix}_id"],
        name=row[f"{prefix}_name"],
        erp_code=row[f"{prefix}_erp_code"],
        province_name=row[f"{prefix}_province_name"],
        city_name=row[f"{prefix}_city_name"],
    )


def _org_columns(alias: str) -> str:
    return ", ".join(
        f"{alias}.{c} AS {alias}_{c}"
        for c in ("id", "name", "erp_code", "province_name", "city_name")
    )


async def summary(
    conn: Conn,
    actor: Principal,
    by: str,
    date_from: date | None,
    date_to: date | None,
    store_id: int | None = None,
) -> SummaryOut:
    """By day and store (stores of the caller's area), or by source agent (agents of the
    caller's area: where their goods were found outside it). ``store_id``: of that store only
    (稽查汇总 by period and store), a filter as on the records: one outside the area, or no
    store, answers an empty summary (a probe: it was ignored, and every store answered)."""
    require_reader(actor)
    today_row = await (
        await conn.execute(f"SELECT (now() AT TIME ZONE '{REPORT_TZ}')::date AS today")
    ).fetchone()
    assert today_row is not None
    start, end = _period(date_from, date_to, today_row["today"])
    params = {"prefix": actor.org_path + "%", "start": start, "end": end, "store": store_id}
    one_store = "" if store_id is None else "AND m.store_org_id = %(store)s"
    if by == "store":
        rows = await (
            await conn.execute(
                f"""SELECT m.day, {_org_columns("s")},
                           sum(m.units)::bigint AS inspections,
                           (sum(m.units) FILTER (WHERE m.result = 'in_channel'))::bigint AS ok,
                           (sum(m.units) FILTER (WHERE m.result = 'diverted'))::bigint AS diverted,
                           (sum(m.units) FILTER (WHERE m.result = 'unknown_route'))::bigint
                               AS unknown,
                           (sum(m.units) FILTER (WHERE m.result = 'counterfeit'))::bigint AS fake
                    FROM inspection_summary m JOIN orgs s ON s.id = m.store_org_id
                    WHERE s.path LIKE %(prefix)s AND m.day BETWEEN %(start)s AND %(end)s
                          {one_store}
                    GROUP BY m.day, s.id ORDER BY m.day DESC, s.name, s.id""",
                params,
            )
        ).fetchall()
        stores = [
            StoreDay(
                day=r["day"],
                store=_ref(r, "s"),
                inspections=r["inspections"],
                in_channel=r["ok"] or 0,
                diverted=r["diverted"] or 0,
                unknown_route=r["unknown"] or 0,
                counterfeit=r["fake"] or 0,
            )
            for r in rows
        ]
        return SummaryOut(by="store", date_from=start, date_to=end, stores=stores)
    rows = await (
        await conn.execute(
            f"""SELECT {_org_columns("a")}, {_org_columns("s")}, m.result,
                       sum(m.units)::bigint AS units
                FROM inspection_summary m
                JOIN orgs a ON a.id = m.source_org_id
                JOIN orgs s ON s.id = m.store_org_id
                WHERE a.path LIKE %(prefix)s AND m.day BETWEEN %(start)s AND %(end)s
                      {one_store}
                GROUP BY a.id, s.id, m.result""",
            params,
        )
    ).fetchall()
    agents: dict[int, dict[str, Any]] = {}
    places: dict[int, dict[int, int]] = defaultdict(dict)
    stores_by_id: dict[int, OrgRef] = {}
    for r in rows:
        entry = agents.setdefault(r["a_id"], {"agent": _ref(r, "a"), "inspected": 0, "diverted": 0})
        entry["inspected"] += r["units"]
        if r["result"] == "diverted":
            entry["diverted"] += r["units"]
            places[r["a_id"]][r["s_id"]] = places[r["a_id"]].get(r["s_id"], 0) + r["units"]
            stores_by_id[r["s_id"]] = _ref(r, "s")
    leaks = [
        AgentLeak(
            agent=e["agent"],
            inspected=e["inspected"],
            diverted=e["diverted"],
            found_at=[
                LeakPlace(store=stores_by_id[s], units=n)
                for s, n in sorted(
                    places[a].items(), key=lambda p: (-p[1], stores_by_id[p[0]].name)
                )
            ],
        )
        for a, e in agents.items()
    ]
    leaks.sort(key=lambda leak: (-leak.diverted, leak.agent.name))
    return SummaryOut(by="agent", date_from=start, date_to=end, agents=leaks)
