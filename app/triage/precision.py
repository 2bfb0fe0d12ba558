"""Precision per rule (SPEC B6): how many of a rule's alerts the brand's staff judged real.

For the alerts raised in a period (Asia/Shanghai days of ``alerts.at``; the last 30 days by
default, at most 366: 400 ``bad_period``) within the caller's subtree: per kind, and per rule
of a kind — the ``reason`` the alert's details name (a verification's V4 rule:
``over_threshold``, ``region_jump``, ``never_shipped``; a fake's ``forged``, ``void``, …; an
inspection's finding; null where there is none, ``low_stock``) — the alerts, the true and the
false positives, those without a verdict (``untriaged``), those still open, and the precision
true / (true + false), null before any verdict. A rule's row names the settings that tune it
now (``TRACECODE_VERIFY_REPEAT_THRESHOLD`` for ``repeat``/``over_threshold``, …).

Counted once per alert: one verdict per alert (``app.triage.verdicts``). A finding an inspection
raised for the brand and for the agent the goods were shipped to (the agent's alert is the
brand's ``brand_twin``, migration 0087) is one finding: the brand's own staff count the brand's
alert only, an agent its own.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.localtime import REPORT_TZ, today
from app.triage.schemas import Counts, KindPrecision, PrecisionOut, RulePrecision
from app.verify.listing import RecordFilters, period

_COUNTS = f"""
SELECT a.kind, a.details ->> 'reason' AS rule, grouping(a.details ->> 'reason') AS all_rules,
       grouping(a.kind) AS all_kinds,
       count(*) AS alerts,
       count(*) FILTER (WHERE v.verdict = 'true_positive') AS true_positive,
       count(*) FILTER (WHERE v.verdict = 'false_positive') AS false_positive,
       count(*) FILTER (WHERE v.alert_id IS NULL) AS untriaged,
       count(*) FILTER (WHERE a.acknowledged_at IS NULL) AS open
  FROM alerts a
  JOIN orgs o ON o.id = a.org_id
  LEFT JOIN alert_verdicts v ON v.alert_id = a.id
 WHERE a.brand_id = %(brand)s AND o.path LIKE %(prefix)s
   AND a.at >= (%(start)s::date::timestamp AT TIME ZONE '{REPORT_TZ}')
   AND a.at < ((%(end)s::date + 1)::timestamp AT TIME ZONE '{REPORT_TZ}')
   AND NOT (a.brand_twin AND %(brand_level)s)
   AND (%(kind)s::text IS NULL OR a.kind = %(kind)s)
 GROUP BY GROUPING SETS ((a.kind, a.details ->> 'reason'), (a.kind), ())
 ORDER BY a.kind NULLS FIRST, all_rules DESC, rule NULLS FIRST
"""


def rule_settings(settings: Settings, kind: str, rule: str | None) -> dict[str, int | bool] | None:
    """The settings that tune a rule now (environment variable → value), or None."""
    if kind == "repeat" and rule == "over_threshold":
        return {"TRACECODE_VERIFY_REPEAT_THRESHOLD": settings.verify_repeat_threshold}
    if kind == "never_shipped" and rule == "never_shipped":
        return {"TRACECODE_VERIFY_FLAG_NEVER_SHIPPED": settings.verify_flag_never_shipped}
    return None


async def precision(
    conn: Conn,
    actor: Principal,
    settings: Settings,
    *,
    date_from: date | None,
    date_to: date | None,
    kind: str | None,
) -> PrecisionOut:
    actor.require("alerts.read")
    start, end = period(RecordFilters(date_from=date_from, date_to=date_to), today())
    params = {
        "brand": actor.brand_id,
        "prefix": actor.org_path + "%",
        "start": start,
        "end": end,
        "brand_level": actor.org_id == actor.brand_id,
        "kind": kind,
    }
    rows = await (await conn.execute(_COUNTS, params)).fetchall()
    total = Counts(**_counts(None))
    kinds: dict[str, KindPrecision] = {}
    for row in rows:
        counts = _counts(row)
        if row["all_kinds"]:
            total = Counts(**counts)
        elif row["all_rules"]:
            kinds[row["kind"]] = KindPrecision(kind=row["kind"], rules=[], **counts)
        else:
            kinds[row["kind"]].rules.append(
                RulePrecision(
                    rule=row["rule"],
                    settings=rule_settings(settings, row["kind"], row["rule"]),
                    **counts,
                )
            )
    return PrecisionOut(date_from=start, date_to=end, total=total, kinds=list(kinds.values()))


def _counts(row: Any) -> dict[str, Any]:
    """The counts of a row (None: all zero) and their precision."""
    names = ("alerts", "true_positive", "false_positive", "untriaged", "open")
    counts: dict[str, Any] = {name: int(row[name]) if row else 0 for name in names}
    judged = counts["true_positive"] + counts["false_positive"]
    counts["precision"] = counts["true_positive"] / judged if judged else None
    return counts
