"""Who sees which field records (plans, check-ins, reviews, photos): the one rule.

- ``field.read``: every rep's records made within the caller's subtree (brand admins: the
  brand's; another brand's token sees nothing, its subtree holds none of them);
- ``field.supervise``: the caller's own records and those of the reps it supervises
  (``users.supervisor_id``) made within the caller's subtree or within the rep's organisation
  of now: a rep moved to another agent takes no record of the old agent's to its new
  supervisor (the new agent's ``field.read`` holders don't see them either), and a supervisor
  named across agents by the brand reads what the rep does where it is; a store's staff
  supervise nobody (field work on a store is for the organisations above it);
- ``field.visit``: the caller's own records.

Records carry the rep (``rep_id``) and the rep's organisation when made (``org_id``); the
condition reads them through the aliases the caller names. A record outside the rule is
reported as not found, never as forbidden.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from app.auth.principal import Principal
from app.errors import BadRequest
from app.localtime import ZONE
from app.paging import check_period

READERS = ("field.visit", "field.supervise", "field.read")
SHANGHAI = ZONE  # the field force's days
LAST_DAY = date.max - timedelta(days=1)  # its next midnight is still a datetime


def condition(actor: Principal, rep: str, org_path: str) -> tuple[str, dict[str, Any]]:
    """SQL (named placeholders ``scope_*``) true for the records ``actor`` may see.

    ``rep``: the expression of the record's rep id; ``org_path``: of the path of the record's
    organisation. Callers have checked ``require_any(*READERS)``."""
    params: dict[str, Any] = {"scope_me": actor.user_id or 0, "scope_prefix": actor.org_path + "%"}
    parts = [f"{rep} = %(scope_me)s"]
    if actor.has("field.supervise"):  # within the supervisor's reach or the rep's of now (a
        # probe: a rep moved to another agent by import, its new agent's supervisor read the
        # reviews and check-ins it had made for the old agent, which that agent's admins don't);
        # never by a store's staff (a probe: a store's manager named a rep's supervisor read the
        # visits and reviews of its own store, and approved plans visiting it). A naming refuses
        # such a supervisor (``app.field.stores``); one named before that rule supervises nothing
        params["scope_org"] = actor.org_id
        parts.append(
            f"EXISTS (SELECT 1 FROM users su JOIN orgs ro ON ro.id = su.org_id "
            f"WHERE su.id = {rep} AND su.supervisor_id = %(scope_me)s "
            f"AND ({org_path} LIKE %(scope_prefix)s OR {org_path} LIKE ro.path || '%%') "
            f"AND NOT EXISTS (SELECT 1 FROM orgs so WHERE so.id = %(scope_org)s "
            f"AND so.kind = 'store'))"
        )
    if actor.has("field.read"):
        parts.append(f"{org_path} LIKE %(scope_prefix)s")
    # every record, whatever the rule that lets it through, lies in the caller's brand
    brand = {"scope_brand": f"/{actor.brand_id}/%"}
    return f"({org_path} LIKE %(scope_brand)s AND ({' OR '.join(parts)}))", {**params, **brand}


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The Asia/Shanghai midnights that start ``day`` and the day after (9999-12-31 counts as
    the day before it: its end is past the last datetime)."""
    start = datetime.combine(min(day, LAST_DAY), time(), SHANGHAI)
    return start, start + timedelta(days=1)


def filters(
    actor: Principal,
    alias: str,
    at: str,
    rep_id: int | None,
    store_id: int | None,
    date_from: date | None,
    date_to: date | None,
) -> tuple[list[str], dict[str, Any]]:
    """The conditions of a list of check-ins or reviews (table ``alias``, its time ``at``): the
    caller's rule (``condition``, over ``o.path``), then rep, store and Asia/Shanghai days."""
    require_reader(actor)
    check_period(date_from, date_to)
    where, params = condition(actor, f"{alias}.rep_id", "o.path")
    conditions = [where]
    if rep_id is not None:
        conditions.append(f"{alias}.rep_id = %(rep_id)s")
        params["rep_id"] = rep_id
    if store_id is not None:
        conditions.append(f"{alias}.store_id = %(store_id)s")
        params["store_id"] = store_id
    if date_from is not None:
        conditions.append(f"{at} >= %(t0)s")
        params["t0"] = day_bounds(date_from)[0]
    if date_to is not None:
        conditions.append(f"{at} < %(t1)s")
        params["t1"] = day_bounds(date_to)[1]
    return conditions, params


def covers(actor: Principal, store_path: str) -> bool:
    """Whether the caller's field work reaches a store (by its path): one strictly below the
    caller's organisation. A store's own staff do not audit it (a probe: a store's manager set
    the position its visits are measured from, "checked in" and scored its own shelf 5/5,
    counted in the brand's store scores); stores elsewhere are not the caller's either."""
    return actor.sees(store_path) and store_path != actor.org_path


def require_reader(actor: Principal) -> None:
    actor.require_any(*READERS)


def require_rep(actor: Principal) -> None:
    """A plan, check-in or review is a user's (``field.visit``): an API key has none."""
    actor.require("field.visit")
    if actor.user_id is None:
        raise BadRequest("field visits are recorded by users", code="user_required")
