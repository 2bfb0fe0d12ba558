"""Visit plans (SPEC F1): a field rep plans store visits by quarter, month or week; the rep's
supervisor approves the plan or returns it with a reason.

States: ``draft`` → (submit) ``submitted`` → (approve) ``approved`` | (return) ``returned``;
a returned plan is edited and submitted again. A draft or returned plan may be edited by its
rep; nothing else may be. Any other move is 409 ``illegal_transition`` (details: from, action),
editing a plan in another state 409 ``plan_not_editable``. Every change is audited
(``app.audit``, entity ``visit_plan``), in the same transaction as the change.

Only the rep's supervisor (``users.supervisor_id``, holding ``field.supervise``) decides; a
reader who sees the plan but is not its rep's supervisor gets 403 ``not_supervisor``.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any

from app import audit
from app.auth.principal import Principal
from app.auth.service import ORG_STATUS
from app.db import Conn
from app.errors import Conflict, Forbidden, NotFound, Unprocessable, ValidationFailed
from app.field import scope
from app.field.schemas import (
    Period,
    PlanEditIn,
    PlanIn,
    PlanItemIn,
    PlanItemOut,
    PlanOut,
    PlanStatus,
)
from app.paging import Page, fetch_page

# action -> (the states it leaves from, the state it reaches)
TRANSITIONS: dict[str, tuple[frozenset[str], PlanStatus]] = {
    "submit": (frozenset({"draft", "returned"}), "submitted"),
    "approve": (frozenset({"submitted"}), "approved"),
    "return": (frozenset({"submitted"}), "returned"),
}
EDITABLE = frozenset({"draft", "returned"})
# a plan's period starts within these (a week plan of 9999-12-27 would end past the calendar)
FIRST_START, LAST_START = date(2000, 1, 1), date(2099, 12, 31)

_COLUMNS = (
    "p.id, p.rep_id, coalesce(nullif(u.display_name, ''), u.username) AS rep, u.supervisor_id, "
    "p.period, p.starts_on, p.ends_on, p.title, p.status, p.return_reason, p.submitted_at, "
    "p.decided_at, p.decided_by, p.created_at, p.updated_at"
)
_SOURCE = "visit_plans p JOIN users u ON u.id = p.rep_id JOIN orgs o ON o.id = p.org_id"


def period_end(period: Period, starts_on: date) -> date:
    """The last day of the period starting on ``starts_on``; 400 ``bad_period_start`` when it
    is not the first day of a quarter, a month or a week (Monday)."""
    if not FIRST_START <= starts_on <= LAST_START:
        raise ValidationFailed(
            f"a plan's period starts between {FIRST_START} and {LAST_START}",
            code="bad_period_start",
        )
    if period == "week":
        if starts_on.weekday() != 0:
            raise ValidationFailed("a week starts on a Monday", code="bad_period_start")
        return starts_on + timedelta(days=6)
    months = 3 if period == "quarter" else 1
    if starts_on.day != 1 or (period == "quarter" and starts_on.month % 3 != 1):
        raise ValidationFailed(f"a {period} starts on its first day", code="bad_period_start")
    last_month = starts_on.month + months - 1
    return date(starts_on.year, last_month, calendar.monthrange(starts_on.year, last_month)[1])


async def _check_items(
    conn: Conn, actor: Principal, items: list[PlanItemIn], starts_on: date, ends_on: date
) -> None:
    """Every item's store is an active store in the rep's subtree and its day in the period.
    Active as far as access goes (``ORG_STATUS``: the store and every organisation above it), as
    a check-in or a review there judges it (a probe: a store under a deactivated distributor was
    taken into a plan, its own row being active)."""
    outside = [i.planned_on.isoformat() for i in items if not starts_on <= i.planned_on <= ends_on]
    if outside:
        raise Unprocessable(
            "a planned visit lies outside the plan's period",
            code="date_outside_period",
            details={"dates": outside, "starts_on": starts_on, "ends_on": ends_on},
        )
    await _check_stores(conn, actor.org_path, {i.store_id for i in items})


async def _check_stores(conn: Conn, rep_path: str, store_ids: set[int]) -> None:
    """422 ``unknown_store`` (details: ``store_ids``) unless every store is an active store
    (``ORG_STATUS``) strictly below the rep's organisation at ``rep_path``: never the rep's own
    store, where it may not check in (``scope.covers``)."""
    ids = sorted(store_ids)
    rows = await (
        await conn.execute(
            f"SELECT id FROM orgs o WHERE id = ANY(%s) AND kind = 'store' "
            f"AND {ORG_STATUS} = 'active' AND path LIKE %s AND path <> %s",
            (ids, rep_path + "%", rep_path),
        )
    ).fetchall()
    unknown = sorted(set(ids) - {r["id"] for r in rows})
    if unknown:
        raise Unprocessable(
            "not a store of yours", code="unknown_store", details={"store_ids": unknown}
        )


async def _write_items(conn: Conn, plan_id: int, items: list[PlanItemIn]) -> None:
    """The plan's items as given, one visit per store and day: an item of the same store and
    day as before keeps its id, so check-ins made against it stay linked (probe: every edit
    deleted and re-made them, and ``ON DELETE SET NULL`` unlinked every visit); the others are
    removed or added."""
    seen = {(i.store_id, i.planned_on): i for i in items}
    await conn.execute(
        """DELETE FROM visit_plan_items WHERE plan_id = %s AND (store_id, planned_on) NOT IN (
               SELECT * FROM unnest(%s::bigint[], %s::date[]))""",
        (plan_id, [k[0] for k in seen], [k[1] for k in seen]),
    )
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO visit_plan_items (plan_id, store_id, planned_on, note) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (plan_id, store_id, planned_on) "
            "DO UPDATE SET note = EXCLUDED.note",
            [(plan_id, i.store_id, i.planned_on, i.note) for i in seen.values()],
        )


async def _items(conn: Conn, plan_id: int) -> list[PlanItemOut]:
    rows = await (
        await conn.execute(
            "SELECT i.id, i.store_id, s.name AS store_name, s.erp_code AS store_erp_code, "
            "i.planned_on, i.note FROM visit_plan_items i JOIN orgs s ON s.id = i.store_id "
            "WHERE i.plan_id = %s ORDER BY i.planned_on, s.erp_code",
            (plan_id,),
        )
    ).fetchall()
    return [PlanItemOut(**r) for r in rows]


async def _row(conn: Conn, actor: Principal, plan_id: int, lock: bool = False) -> dict[str, Any]:
    """The plan's row (with its rep's supervisor, ``supervisor_id``) when the caller sees it;
    404 otherwise."""
    scope.require_reader(actor)
    where, params = scope.condition(actor, "p.rep_id", "o.path")
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM {_SOURCE} WHERE p.id = %(id)s AND {where}"
            + (" FOR UPDATE OF p" if lock else ""),
            {**params, "id": plan_id},
        )
    ).fetchone()
    if row is None:
        raise NotFound("visit plan not found")
    return row


async def _out(conn: Conn, row: dict[str, Any]) -> PlanOut:
    return PlanOut(**row, items=await _items(conn, row["id"]))


async def get_plan(conn: Conn, actor: Principal, plan_id: int) -> PlanOut:
    return await _out(conn, await _row(conn, actor, plan_id))


async def create_plan(conn: Conn, actor: Principal, data: PlanIn) -> PlanOut:
    """A new draft of the caller's; 409 ``duplicate_plan`` when the caller has one for that
    period already."""
    scope.require_rep(actor)
    ends_on = period_end(data.period, data.starts_on)
    await _check_items(conn, actor, data.items, data.starts_on, ends_on)
    row = await (
        await conn.execute(
            "INSERT INTO visit_plans (rep_id, org_id, period, starts_on, ends_on, title) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (rep_id, period, starts_on) DO NOTHING "
            "RETURNING id",
            (actor.user_id, actor.org_id, data.period, data.starts_on, ends_on, data.title),
        )
    ).fetchone()
    if row is None:
        raise Conflict(
            f"you have a {data.period} plan starting {data.starts_on} already",
            code="duplicate_plan",
        )
    await _write_items(conn, row["id"], data.items)
    out = await get_plan(conn, actor, row["id"])
    await audit.record(conn, actor, "create", "visit_plan", out.id, after=out)
    return out


async def edit_plan(conn: Conn, actor: Principal, plan_id: int, data: PlanEditIn) -> PlanOut:
    """Replace a draft or returned plan's title and items (its rep only). The plan moves to the
    rep's organisation of now, whose stores the items are checked against: a probe found a rep
    moved to another agent edit the draft for the new agent's stores and submit it, read by the
    old agent's admin and not by the new one's (plans are scoped by ``visit_plans.org_id``).
    Saved unchanged (``_unchanged``): the plan as it is, no write and no audit row."""
    actor.require("field.visit")
    row = await _row(conn, actor, plan_id, lock=True)
    if row["rep_id"] != actor.user_id:
        raise Forbidden("only the plan's rep edits it", code="not_plan_owner")
    if row["status"] not in EDITABLE:
        raise Conflict(
            f"a {row['status']} plan cannot be edited",
            code="plan_not_editable",
            details={"status": row["status"]},
        )
    before = await _out(conn, row)
    await _check_items(conn, actor, data.items, row["starts_on"], row["ends_on"])
    if await _unchanged(conn, actor, before, data):  # saved again (a form, a retried edit):
        # no write, no row (README: a call that changes nothing; a probe)
        return before
    await conn.execute(
        "UPDATE visit_plans SET title = %s, org_id = %s, updated_at = now() WHERE id = %s",
        (data.title, actor.org_id, plan_id),
    )
    await _write_items(conn, plan_id, data.items)
    after = await get_plan(conn, actor, plan_id)
    await audit.record(conn, actor, "update", "visit_plan", plan_id, before=before, after=after)
    return after


async def _unchanged(conn: Conn, actor: Principal, plan: PlanOut, data: PlanEditIn) -> bool:
    """Whether the edit ``data`` leaves ``plan`` as it is: the same title, the same items (one
    per store and day, the last given kept, as ``_write_items`` keeps it) with the same notes,
    and the plan in the rep's organisation of now already (an edit moves it there)."""
    wanted = {(i.store_id, i.planned_on): i.note for i in data.items}
    had = {(i.store_id, i.planned_on): i.note for i in plan.items}
    if data.title != plan.title or wanted != had:
        return False
    row = await (
        await conn.execute("SELECT org_id FROM visit_plans WHERE id = %s", (plan.id,))
    ).fetchone()
    assert row is not None  # the plan's row, locked by the caller
    return bool(row["org_id"] == actor.org_id)


async def _recheck_items(conn: Conn, plan_id: int, rep_id: int) -> None:
    """The rep and the plan's stores checked again at submit and approval: 422
    ``rep_inactive`` when the rep's account or organisation (or one above it) is inactive (a
    probe: a departed rep's plan was approved, visits nobody will make); the stores against the
    rep's organisation of now (a probe found a plan submitted and approved with a store closed
    since its draft, and one of a rep since moved to another agent: the old agent's stores,
    which the rep can no longer check in at). The days need no second look: the period never
    changes. The rep's row is key-shared: a deactivation under way (``update_user`` holds the
    row) is waited for and seen."""
    row = await (
        await conn.execute(
            f"SELECT o.path, u.status, {ORG_STATUS} AS org_status, "
            "array(SELECT DISTINCT i.store_id FROM visit_plan_items i "
            "WHERE i.plan_id = %s) AS store_ids "
            "FROM users u JOIN orgs o ON o.id = u.org_id WHERE u.id = %s FOR KEY SHARE OF u",
            (plan_id, rep_id),
        )
    ).fetchone()
    assert row is not None  # the plan's rep: a user is never deleted
    if row["status"] != "active" or row["org_status"] != "active":
        raise Unprocessable("the rep's account or organisation is inactive", code="rep_inactive")
    await _check_stores(conn, row["path"], set(row["store_ids"]))


def _check_actor(actor: Principal, action: str, row: dict[str, Any]) -> None:
    """The rep submits; the rep's supervisor approves and returns."""
    if action == "submit":
        actor.require("field.visit")
        if row["rep_id"] != actor.user_id:
            raise Forbidden("only the plan's rep submits it", code="not_plan_owner")
        return
    actor.require("field.supervise")
    if row["supervisor_id"] is None or row["supervisor_id"] != actor.user_id:
        raise Forbidden("only the rep's supervisor decides on the plan", code="not_supervisor")


async def transition(
    conn: Conn, actor: Principal, plan_id: int, action: str, reason: str | None = None
) -> PlanOut:
    """Move a plan by ``action`` (submit, approve, return); 409 ``illegal_transition`` from a
    state the action does not leave from; submit and approve check the rep's account (422
    ``rep_inactive``) and the items' stores again (422 ``unknown_store``, as an edit); a
    submitted plan is the rep's organisation's of now, as an edited one (``edit_plan``)."""
    row = await _row(conn, actor, plan_id, lock=True)
    _check_actor(actor, action, row)
    sources, target = TRANSITIONS[action]
    if row["status"] not in sources:
        raise Conflict(
            f"a {row['status']} plan cannot be {target}",
            code="illegal_transition",
            details={"from": row["status"], "action": action, "allowed_from": sorted(sources)},
        )
    if action != "return":  # nobody submits or approves visits the rep can no longer make
        await _recheck_items(conn, plan_id, row["rep_id"])
    # a submit is the rep's (``_check_actor``): the plan becomes its organisation's of now
    stamp = "submitted_at = now(), decided_at = NULL, decided_by = NULL, org_id = %(org)s"
    if action != "submit":
        stamp = "decided_at = now(), decided_by = %(me)s"
    await conn.execute(
        f"UPDATE visit_plans SET status = %(to)s, return_reason = %(reason)s, {stamp}, "
        "updated_at = now() WHERE id = %(id)s",
        {"to": target, "reason": reason, "me": actor.user_id, "org": actor.org_id, "id": plan_id},
    )
    after = await get_plan(conn, actor, plan_id)
    # the plan's organisation's log, whoever decides (a probe: a supervisor above the rep logged
    # the approval under its own, out of the sight of the rep's organisation's admin)
    owner = await (
        await conn.execute("SELECT org_id FROM visit_plans WHERE id = %s", (plan_id,))
    ).fetchone()
    await audit.record(
        conn,
        actor,
        action,
        "visit_plan",
        plan_id,
        before={"status": row["status"]},
        after={"status": target, "return_reason": reason},
        org_id=owner["org_id"] if owner else None,
    )
    return after


async def list_plans(
    conn: Conn,
    actor: Principal,
    *,
    rep_id: int | None,
    status: PlanStatus | None,
    period: Period | None,
    page: int,
    per_page: int,
) -> Page[PlanOut]:
    """The plans the caller sees (without items; GET one for them), newest period first."""
    scope.require_reader(actor)
    where, params = scope.condition(actor, "p.rep_id", "o.path")
    conditions = [where]
    for name, value in (("rep_id", rep_id), ("status", status), ("period", period)):
        if value is not None:
            conditions.append(f"p.{name} = %({name})s")
            params[name] = value
    return await fetch_page(
        conn,
        columns=_COLUMNS,
        source=_SOURCE,
        where=conditions,
        params=params,
        order="p.starts_on DESC, p.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: PlanOut(**row),
    )
