"""Who may be named the responsible salesperson of an outbound (L6), for the staff app's picker.

``POST /documents`` takes a ``salesperson_id`` on an outbound to a store and accepts an active
user (of an organisation line still active) under the document's organisation or, for one of the
brand's own stock, under the store the goods go to (``documents._check_salesperson``, at the
draft and at its confirmation: the same rule as this list for the caller's own organisation,
``documents.salesperson_paths``). A warehouse clerk holds
``logistics.scan`` but not ``users.read``, so the user directory (``GET /users``) was closed to
exactly the people who make agent-to-store shipments on the phone: the app had no salesperson
field, and shipments made there named nobody. This list answers the clerk, under
``logistics.scan``, with those the draft would accept and no more than a picker needs — id,
username, display name and organisation; never a phone or an e-mail address (same status test
as ``_check_salesperson``). A store outside the caller's subtree has its staff listed only for
the brand's own stock, which supplies any store; a clerk of the sales channel lists its own
subtree's stores only (the staff of another agent's stores are no directory of theirs).
"""

from __future__ import annotations

from typing import Any

from app.auth.principal import Principal
from app.auth.service import org_status
from app.db import Conn
from app.logistics.documents import _org, _unknown_org, in_channel, salesperson_paths
from app.logistics.schemas import SalespersonOut
from app.paging import Page, contains, fetch_page

COLUMNS = "u.id, u.username, u.display_name, u.org_id, o.name AS org_name, o.kind AS org_kind"


async def list_salespeople(
    conn: Conn,
    actor: Principal,
    *,
    store_id: int | None,
    q: str | None,
    page: int,
    per_page: int,
) -> Page[SalespersonOut]:
    """Active users of the caller's subtree and, with ``store_id``, of that store: the caller's
    own organisation first, then in tree order and by username. ``q``: part of the username or
    display name. A store outside the subtree is named only by the brand's own stock (a clerk
    of the brand, a factory or their warehouses, which supply any store); from the sales
    channel — a branch, agent, distributor or store, or one below them — it answers 422
    ``unknown_org``, as one of another brand does (a review: an agent's clerk listed the
    usernames of any store of the brand, another agent's too)."""
    actor.require("logistics.scan")
    store: dict[str, Any] | None = None
    if store_id is not None:
        store = await _org(conn, store_id, actor)
        if not actor.sees(store["path"]) and await in_channel(conn, actor.org_path):
            raise _unknown_org(store_id)
    prefixes = await salesperson_paths(conn, actor.org_path, store)
    where = [
        "o.path LIKE ANY(%(prefixes)s)",
        "u.status = 'active'",
        f"{org_status('o')} = 'active'",
    ]
    params: dict[str, Any] = {"prefixes": prefixes, "own": actor.org_id}
    if q:
        where.append("(u.username ILIKE %(q)s OR u.display_name ILIKE %(q)s)")
        params["q"] = contains(q)
    return await fetch_page(
        conn,
        columns=COLUMNS,
        source="users u JOIN orgs o ON o.id = u.org_id",
        where=where,
        params=params,
        order="(u.org_id = %(own)s) DESC, o.path, u.username, u.id",
        page=page,
        per_page=per_page,
        make=lambda row: SalespersonOut(**row),
    )
