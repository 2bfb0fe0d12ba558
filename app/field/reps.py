"""The reps a field list (plans, check-ins, reviews) can be filtered by, ``GET /field/reps``.

The console's rep filter took the reps of the newest 200 records of a list: a quiet rep behind
a busy one's 200 check-ins could no longer be picked (a probe), and a supervisor may not read
the user directory to search for it. The users offered follow the one rule of
``app.field.scope``, read from the users' side: the caller itself (``field.visit``), the reps it
supervises (``field.supervise``: ``users.supervisor_id``), and with ``field.read`` every user of
the caller's subtree who visits stores (a role granting ``field.visit``). Searched by username
or name, by name; every status (a departed rep's records stay listed).
"""

from __future__ import annotations

from typing import Any

from app.auth.principal import Principal
from app.db import Conn
from app.field.schemas import RepOut
from app.field.scope import require_reader
from app.paging import Page, contains, fetch_page

_NAME = "coalesce(nullif(u.display_name, ''), u.username)"
_VISITS = """EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                     WHERE ur.user_id = u.id AND 'field.visit' = ANY(r.permissions))"""


def _reach(actor: Principal) -> tuple[str, dict[str, Any]]:
    """SQL (over ``users u JOIN orgs o``) true for the reps whose records the caller sees."""
    params: dict[str, Any] = {"me": actor.user_id or 0, "brand": f"/{actor.brand_id}/%"}
    parts = ["u.id = %(me)s"] if actor.has("field.visit") else []
    if actor.has("field.supervise"):  # a store's staff supervise nobody (``scope.condition``)
        parts.append(
            "(u.supervisor_id = %(me)s AND NOT EXISTS (SELECT 1 FROM orgs so "
            "WHERE so.id = %(my_org)s AND so.kind = 'store'))"
        )
        params["my_org"] = actor.org_id
    if actor.has("field.read"):
        parts.append(f"(o.path LIKE %(prefix)s AND {_VISITS})")
        params["prefix"] = actor.org_path + "%"
    return f"(o.path LIKE %(brand)s AND ({' OR '.join(parts) or 'false'}))", params


async def page_reps(
    conn: Conn, actor: Principal, q: str | None, page: int, per_page: int
) -> Page[RepOut]:
    """One page of the reps the caller may filter its field lists by (``q``: a part of the
    username or name), by name."""
    require_reader(actor)
    where, params = _reach(actor)
    conditions = [where]
    if q and q.strip():
        conditions.append("(u.username ILIKE %(q)s OR u.display_name ILIKE %(q)s)")
        params["q"] = contains(q.strip())
    return await fetch_page(
        conn,
        columns=f"u.id, {_NAME} AS name, u.username, u.status",
        source="users u JOIN orgs o ON o.id = u.org_id",
        where=conditions,
        params=params,
        order=f"{_NAME}, u.id",
        page=page,
        per_page=per_page,
        make=lambda row: RepOut(**row),
    )
