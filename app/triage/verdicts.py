"""Alert verdicts (SPEC B6): a brand's security staff mark each alert a true or a false positive.

One verdict per alert (``alert_verdicts``, keyed by the alert): who (the user, or an API key and
the user who made it), when, and a note. Marking again replaces it — ``revision`` + 1, the old
one kept in ``alert_verdict_history`` and both in the audit row (``triage``, before/after) —
and the same verdict with the same note again changes nothing and writes nothing (whatever
``expected_revision`` it names: a retry whose answer was lost, a double-click). A verdict
closes the alert (acknowledged, if it was open): a later trigger of its rule opens a new alert,
judged on its own, instead of counting into one already judged.

Races. The alert's row is locked first (``FOR UPDATE``): two people marking at once are served
one after the other, each audited against the verdict it replaced, and the last one stands;
the primary key keeps one verdict per alert, so the precision counts (``app.triage.precision``)
never count an alert twice. A marker who sends ``expected_revision`` (the console does) is told
instead, 409 ``verdict_changed`` with the verdict now, when another verdict came between —
unless it is the verdict and note standing, answered as they stand.

Scoping and permissions as for acknowledging (``alerts.read``, the caller's subtree): an alert
of another brand, or outside the caller's subtree, is the house's 404.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app import audit
from app.auth.principal import Principal
from app.db import Conn
from app.errors import Conflict
from app.paging import Page
from app.triage.schemas import VerdictIn, VerdictOut

READ = "alerts.read"

_VERDICT = """SELECT v.alert_id, v.verdict, v.note, v.revision, v.decided_at, v.decided_by,
       u.username AS decided_by_name, v.decided_key
  FROM {table} v LEFT JOIN users u ON u.id = v.decided_by
 WHERE v.alert_id = %s"""


async def visible_alert(conn: Conn, actor: Principal, alert_id: int, lock: bool = False) -> Any:
    """The alert's row (with its organisation's path and name) if the caller sees it, else the
    house's 404; ``lock``: held until the transaction ends."""
    row = await (
        await conn.execute(
            """SELECT a.*, o.path AS org_path, o.name AS org_name
                 FROM alerts a JOIN orgs o ON o.id = a.org_id
                WHERE a.id = %s AND a.brand_id = %s"""
            + (" FOR UPDATE OF a" if lock else ""),
            (alert_id, actor.brand_id),
        )
    ).fetchone()
    actor.ensure_sees(row["org_path"] if row else None, "alert")
    return row


async def current(conn: Conn, alert_id: int) -> VerdictOut | None:
    sql = _VERDICT.format(table="alert_verdicts")
    row = await (await conn.execute(sql, (alert_id,))).fetchone()
    return VerdictOut(**row) if row else None


async def history(
    conn: Conn, actor: Principal, alert_id: int, page: int, per_page: int
) -> Page[VerdictOut]:
    """The verdicts given on the alert, the first first: one page of them (an alert's are few,
    read whole)."""
    actor.require(READ)
    await visible_alert(conn, actor, alert_id)
    every = await verdicts_of(conn, alert_id)
    start = (page - 1) * per_page
    return Page(every[start : start + per_page], page, per_page, len(every))


async def verdicts_of(conn: Conn, alert_id: int) -> list[VerdictOut]:
    rows = await (
        await conn.execute(
            _VERDICT.format(table="alert_verdict_history") + " ORDER BY v.revision", (alert_id,)
        )
    ).fetchall()
    return [VerdictOut(**row) for row in rows]


async def set_verdict(conn: Conn, actor: Principal, alert_id: int, data: VerdictIn) -> VerdictOut:
    """Mark the alert (see the module's docstring): the verdict as it stands after the call."""
    actor.require(READ)
    alert = await visible_alert(conn, actor, alert_id, lock=True)
    before = await current(conn, alert_id)
    if before is not None and (before.verdict, before.note) == (data.verdict, data.note):
        # as it is: nothing changed, nothing audited — whatever revision it names (a retry
        # whose answer was lost, a double-click: a probe was told another had judged the alert)
        return before
    seen = before.revision if before else 0
    if data.expected_revision is not None and data.expected_revision != seen:
        raise Conflict(
            "another verdict was given on this alert meanwhile",
            code="verdict_changed",
            details={"revision": seen, "verdict": before.verdict if before else None},
        )
    params = {
        "alert": alert_id,
        "brand": alert["brand_id"],
        "verdict": data.verdict,
        "note": data.note,
        "by": actor.person,
        "key": actor.api_key_id,
        "revision": seen + 1,
    }
    await conn.execute(
        """INSERT INTO alert_verdicts (alert_id, brand_id, verdict, note, decided_by, decided_key,
                                       revision)
           VALUES (%(alert)s, %(brand)s, %(verdict)s, %(note)s, %(by)s, %(key)s, %(revision)s)
           ON CONFLICT (alert_id) DO UPDATE
              SET verdict = EXCLUDED.verdict, note = EXCLUDED.note,
                  decided_by = EXCLUDED.decided_by, decided_key = EXCLUDED.decided_key,
                  decided_at = now(), revision = EXCLUDED.revision""",
        params,
    )
    await conn.execute(
        """INSERT INTO alert_verdict_history (alert_id, revision, verdict, note, decided_by,
                                              decided_key, decided_at)
           VALUES (%(alert)s, %(revision)s, %(verdict)s, %(note)s, %(by)s, %(key)s, now())""",
        params,
    )
    closed = await conn.execute(
        """UPDATE alerts SET acknowledged_at = now(), acknowledged_by = %s
            WHERE id = %s AND acknowledged_at IS NULL""",
        (actor.person, alert_id),
    )
    after = await current(conn, alert_id)
    assert after is not None
    await audit.record(
        conn,
        actor,
        "triage",
        "alert",
        alert_id,
        before=before,
        after={**_plain(after), "acknowledged": closed.rowcount == 1},
        org_id=alert["org_id"],
    )
    return after


def _plain(verdict: VerdictOut) -> dict[str, Any]:
    return msgspec.to_builtins(verdict)  # type: ignore[no-any-return]
