"""Alerts (SPEC V3 colours, D5, L9): listed and acknowledged within the caller's subtree."""

from __future__ import annotations

from typing import Any

from app import audit
from app.auth.principal import Principal
from app.db import Conn
from app.errors import NotFound
from app.paging import Page, fetch_page
from app.verify.schemas import AlertOut

_COLUMNS = """a.id, a.at, a.last_at, a.brand_id, a.org_id, a.kind, a.severity, a.code_id,
    a.serial, a.message, a.details, a.occurrences, a.acknowledged_at, a.acknowledged_by,
    v.verdict, v.note AS verdict_note, v.decided_at AS verdict_at, v.decided_by AS verdict_by,
    coalesce(v.revision, 0) AS verdict_revision"""
# the alert's verdict (app/triage/verdicts.py), if it was triaged
_VERDICT = "LEFT JOIN alert_verdicts v ON v.alert_id = a.id"


async def list_alerts(
    conn: Conn,
    actor: Principal,
    *,
    kind: str | None,
    severity: str | None,
    open_only: bool,
    page: int,
    verdict: str | None = None,
    per_page: int,
) -> Page[AlertOut]:
    actor.require("alerts.read")
    where = ["o.path LIKE %(prefix)s"]
    params: dict[str, Any] = {"prefix": actor.org_path + "%", "kind": kind, "severity": severity}
    if kind:
        where.append("a.kind = %(kind)s")
    if severity:
        where.append("a.severity = %(severity)s")
    if open_only:
        where.append("a.acknowledged_at IS NULL")
    if verdict == "untriaged":
        where.append("v.alert_id IS NULL")
    elif verdict:
        where.append("v.verdict = %(verdict)s")
        params["verdict"] = verdict
    return await fetch_page(
        conn,
        columns=_COLUMNS,
        source=f"alerts a JOIN orgs o ON o.id = a.org_id {_VERDICT}",
        where=where,
        params=params,
        order="a.last_at DESC, a.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: AlertOut(**row),
    )


async def acknowledge(conn: Conn, actor: Principal, alert_id: int) -> AlertOut:
    """Acknowledge the alert, once: the first acknowledger stays, and only the call that
    acknowledged it is audited; a later one answers the alert as it is (a probe: every call
    was audited, so the log named users who acknowledged nothing)."""
    actor.require("alerts.read")
    row = await (
        await conn.execute(
            "SELECT o.path FROM alerts a JOIN orgs o ON o.id = a.org_id WHERE a.id = %s",
            (alert_id,),
        )
    ).fetchone()
    actor.ensure_sees(row["path"] if row else None, "alert")
    updated = await (
        await conn.execute(
            "UPDATE alerts a SET acknowledged_at = now(), acknowledged_by = %s "
            "WHERE id = %s AND acknowledged_at IS NULL RETURNING id",
            (actor.person, alert_id),
        )
    ).fetchone()
    out = await _alert(conn, alert_id)
    if updated is None:  # acknowledged already (or meanwhile): answered as it is
        return out
    await audit.record(conn, actor, "acknowledge", "alert", alert_id, after=out, org_id=out.org_id)
    return out


async def _alert(conn: Conn, alert_id: int) -> AlertOut:
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM alerts a {_VERDICT} WHERE a.id = %s", (alert_id,)
        )
    ).fetchone()
    if row is None:
        raise NotFound("alert not found")
    return AlertOut(**row)
