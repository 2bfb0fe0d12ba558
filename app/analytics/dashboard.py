"""The console's dashboard (issue 17): today's figures (Asia/Shanghai) and their last 14 days.

Figures and where they come from — each an indexed range count, or a small table of days:

- verifications: consumer verifications of the brand (``verifications``, by ``at``), a claim
  sent again (``claim_retry``) not counted again (``app.analytics.people.NOT_RETRY``);
- counterfeits: those answered ``not_genuine`` (a serial that is no code of the brand, a
  destroyed unit and the like — ``app.verify``);
- activations: units activated on the packing lines (``commissioning`` events, their units);
- diversions: store inspections that found a unit ``diverted`` (``inspections``), on the day
  the phone scanned it (a scan queued offline is uploaded later); below the brand, those at the
  caller's stores and those of its goods found anywhere (``VISIBLE``, the scope of
  ``GET /inspections`` and of the diversion alerts);
- shipments: outbound documents confirmed (``documents``);
- low stock: today the low-stock alerts open now, per day those raised (``alerts``).

The first three are brand-wide (a consumer's scan and a factory's line belong to no agent or
store), so only the brand's own staff see them; the others count the caller's subtree.
Closed days of the brand-wide figures are kept in ``dashboard_days``: counted once from their
sources when first asked (or by the worker), and counted again by the worker until an hour
after the day ended, so records written late (the verification write-behind) are in; units
activated on a closed day that are written later still (an offline scanner's upload, days
late) send their day to be counted again (``app.events.log``, the one event writer, drops the
day's row); today is counted live. The subtree figures are counted live over the 14 days:
their sources are small next to verifications and events.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.analytics.people import NOT_RETRY
from app.analytics.sales import today
from app.analytics.schemas_sales import Dashboard, Figure
from app.auth.principal import Principal
from app.db import Conn
from app.field.checkins import CLOCK_SKEW
from app.inspect.service import SCAN_AT, VISIBLE
from app.localtime import REPORT_TZ
from app.locks import Lock, xact_lock

DAYS = 14
SETTLE = timedelta(hours=1)  # a closed day is counted again until this long after it ended

_BOUNDS = f"(%(day)s::timestamp AT TIME ZONE '{REPORT_TZ}')"
# The brand-wide figures of one day.
_COUNT_DAY = f"""
SELECT
  (SELECT count(*) FROM verifications
    WHERE brand_id = %(brand)s AND at >= {_BOUNDS} AND at < {_BOUNDS} + interval '1 day'
      AND {NOT_RETRY}) AS verifications,
  (SELECT count(*) FROM verifications
    WHERE brand_id = %(brand)s AND at >= {_BOUNDS} AND at < {_BOUNDS} + interval '1 day'
      AND result = 'not_genuine' AND {NOT_RETRY}) AS counterfeits,
  (SELECT coalesce(sum(child_count), 0) FROM events
    WHERE brand_id = %(brand)s AND event_time >= {_BOUNDS}
      AND event_time < {_BOUNDS} + interval '1 day' AND biz_step = 'commissioning')
    AS activations
"""
_SAVE_DAY = """
INSERT INTO dashboard_days (brand_id, day, verifications, counterfeits, activations, counted_at)
VALUES (%(brand)s, %(day)s, %(verifications)s, %(counterfeits)s, %(activations)s, %(at)s)
ON CONFLICT (brand_id, day) DO UPDATE
    SET verifications = EXCLUDED.verifications, counterfeits = EXCLUDED.counterfeits,
        activations = EXCLUDED.activations, counted_at = EXCLUDED.counted_at
"""
# When a closed day's row is final: counted more than SETTLE after the day ended.
_FINAL = f"counted_at >= ((day + 1)::timestamp AT TIME ZONE '{REPORT_TZ}') + interval '1 hour'"

# The subtree figures per day over the window (``{scope}``: a condition on the org ``o``;
# ``{visible}``: on the inspection's store ``s`` and source agent ``a``, as the records' list).
_LIVE = f"""
SELECT 'diversions' AS figure, ({SCAN_AT} AT TIME ZONE '{REPORT_TZ}')::date AS day, count(*) AS n
FROM inspections i JOIN inspection_scans sc ON sc.id = i.scan_id
  JOIN orgs s ON s.id = i.store_org_id LEFT JOIN orgs a ON a.id = i.source_org_id
WHERE i.brand_id = %(brand)s AND {SCAN_AT} >= %(since)s
  AND i.at >= %(since)s - interval '{CLOCK_SKEW.total_seconds():.0f} seconds' -- the index's range
  AND i.result = 'diverted' AND {{visible}}
GROUP BY 2
UNION ALL
SELECT 'shipments', (d.confirmed_at AT TIME ZONE '{REPORT_TZ}')::date, count(*)
FROM documents d JOIN orgs o ON o.id = d.org_id
WHERE d.brand_id = %(brand)s AND d.status = 'confirmed' AND d.confirmed_at >= %(since)s
  AND d.kind = 'outbound' AND {{scope}}
GROUP BY 2
UNION ALL
SELECT 'low_stock', (a.at AT TIME ZONE '{REPORT_TZ}')::date, count(*)
FROM alerts a JOIN orgs o ON o.id = a.org_id
WHERE a.brand_id = %(brand)s AND a.kind = 'low_stock' AND a.at >= %(since)s AND {{scope}}
GROUP BY 2
UNION ALL
SELECT 'open_low_stock', NULL, count(*)
FROM alerts a JOIN orgs o ON o.id = a.org_id
WHERE a.brand_id = %(brand)s AND a.kind = 'low_stock' AND a.acknowledged_at IS NULL
  AND {{scope}}
"""


async def count_day(conn: Conn, brand_id: int, day: date) -> dict[str, int]:
    """The brand-wide figures of one day, counted from their sources."""
    row = await (await conn.execute(_COUNT_DAY, {"brand": brand_id, "day": day})).fetchone()
    assert row is not None
    return {k: int(v) for k, v in row.items()}


async def save_day(conn: Conn, brand_id: int, day: date) -> dict[str, int]:
    """Count a closed day and keep it in ``dashboard_days``, under the day's lock: units
    activated on it late, written meanwhile, would drop a row not yet committed, and the
    count kept would miss them for good (a probe)."""
    async with conn.transaction():
        await xact_lock(conn, Lock.DASHBOARD_DAY, f"{brand_id}:{day}")
        counts = await count_day(conn, brand_id, day)
        await conn.execute(
            _SAVE_DAY,
            {"brand": brand_id, "day": day, "at": await _now(conn), **counts},
        )
    return counts


async def _now(conn: Conn) -> Any:
    row = await (await conn.execute("SELECT now() AS now")).fetchone()
    assert row is not None
    return row["now"]


async def refresh(conn: Conn) -> int:
    """The worker's pass: count every closed day of the window that is missing or not final
    yet, for every brand; return how many days were counted."""
    now = await today(conn)
    days = [now - timedelta(days=n) for n in range(1, DAYS)]
    brands = await (await conn.execute("SELECT id FROM orgs WHERE kind = 'brand'")).fetchall()
    counted = 0
    for brand in brands:
        final = await (
            await conn.execute(
                f"SELECT day FROM dashboard_days WHERE brand_id = %s AND day >= %s AND {_FINAL}",
                (brand["id"], days[-1]),
            )
        ).fetchall()
        done = {r["day"] for r in final}
        for day in days:
            if day not in done:
                await save_day(conn, brand["id"], day)
                counted += 1
    return counted


async def _brand_wide(conn: Conn, brand_id: int, days: list[date], keep: bool) -> dict[str, Figure]:
    """The brand-wide figures: closed days from ``dashboard_days`` (those missing counted, and
    kept unless ``keep`` is false: a HEAD has no side effect of its GET), today live."""
    rows = await (
        await conn.execute(
            "SELECT * FROM dashboard_days WHERE brand_id = %s AND day BETWEEN %s AND %s",
            (brand_id, days[0], days[-2]),
        )
    ).fetchall()
    by_day: dict[date, dict[str, int]] = {r["day"]: r for r in rows}
    for day in days[:-1]:
        if day not in by_day:
            by_day[day] = await (save_day if keep else count_day)(conn, brand_id, day)
    by_day[days[-1]] = await count_day(conn, brand_id, days[-1])
    return {
        name: Figure(today=by_day[days[-1]][name], trend=[by_day[d][name] for d in days])
        for name in ("verifications", "counterfeits", "activations")
    }


async def dashboard(conn: Conn, actor: Principal, keep: bool = True) -> Dashboard:
    """Today's figures and their 14 days, for the caller (``reports.read``); ``keep``: the
    closed days counted are kept (``_brand_wide``)."""
    actor.require("reports.read")
    now = await today(conn)
    days = [now - timedelta(days=n) for n in range(DAYS - 1, -1, -1)]
    brand_staff = actor.org_path == f"/{actor.brand_id}/"
    wide = await _brand_wide(conn, actor.brand_id, days, keep) if brand_staff else {}
    scope = "true" if brand_staff else "o.path LIKE %(scope)s"
    visible = "true" if brand_staff else VISIBLE
    since = datetime.combine(days[0], time(), ZoneInfo(REPORT_TZ))  # the first day's midnight
    prefix = actor.org_path + "%"
    rows = await (
        await conn.execute(
            _LIVE.format(scope=scope, visible=visible),
            {"brand": actor.brand_id, "since": since, "scope": prefix, "prefix": prefix},
        )
    ).fetchall()
    live: dict[str, dict[Any, int]] = {}
    for r in rows:
        live.setdefault(r["figure"], {})[r["day"]] = int(r["n"])

    def figure(name: str, today_value: int | None = None) -> Figure:
        per_day = live.get(name, {})
        trend = [per_day.get(d, 0) for d in days]
        return Figure(today=trend[-1] if today_value is None else today_value, trend=trend)

    return Dashboard(
        today=now,
        days=days,
        verifications=wide.get("verifications"),
        counterfeits=wide.get("counterfeits"),
        activations=wide.get("activations"),
        diversions=figure("diversions"),
        shipments=figure("shipments"),
        low_stock=figure("low_stock", live.get("open_low_stock", {}).get(None, 0)),
    )
