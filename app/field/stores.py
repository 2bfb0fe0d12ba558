"""What the field force needs set up: stores' nameplates and positions, reps' supervisors.

- A store's nameplate (``field.nameplates``, the store in the caller's subtree): its signed
  code and URL (``app.field.nameplates``), as JSON, PNG or PDF.
- A store's recorded position (``field.nameplates``, the store strictly below the caller's
  organisation, ``scope.covers``: not its own staff's): the point check-ins are measured from.
- A rep's supervisor (``users.write``, both users administered by the caller, not the
  caller's own account, the same brand, the supervisor active and holding ``field.supervise``,
  not a store's staff, and not supervised by the rep, directly or not). A supervisor who stops
  being one (``app.orgs.service.drop_unfit_supervisors``: its roles lose ``field.supervise``,
  its account or its organisation is deactivated) is cleared from its reps in the same
  transaction, as a move clears one left behind: a plan names its rep's supervisor as the one
  who decides it, and nobody else may.

Each change is audited; a change to what is already set writes nothing.
"""

from __future__ import annotations

from typing import Any

from app import audit, locks
from app.auth.principal import Principal, brand_of
from app.auth.service import ORG_STATUS, ensure_not_stronger
from app.config import Settings
from app.db import Conn
from app.errors import NotFound, Unprocessable
from app.field import nameplates, scope
from app.field.schemas import NameplateOut, PositionIn, PositionOut, SupervisorIn, SupervisorOut


async def _store(
    conn: Conn, actor: Principal, store_id: int, lock: str = "", audited: bool = False
) -> dict[str, Any]:
    """A store in the caller's subtree (404 otherwise, other kinds of organisation too; with
    ``audited``, the caller's own store too: ``scope.covers``); with ``lock`` (``FOR NO KEY
    UPDATE``) its row held to the end of the transaction."""
    row = await (
        await conn.execute(
            "SELECT id, name, erp_code, kind, path, latitude, longitude FROM orgs WHERE id = %s "
            + lock,
            (store_id,),
        )
    ).fetchone()
    if row is None or row["kind"] != "store" or not actor.sees(row["path"]):
        raise NotFound("store not found")
    if audited and not scope.covers(actor, row["path"]):
        raise NotFound("store not found")
    return row


async def nameplate(
    conn: Conn, actor: Principal, settings: Settings, store_id: int
) -> NameplateOut:
    actor.require("field.nameplates")
    store = await _store(conn, actor, store_id)
    code = nameplates.code_for(settings, store_id)
    return NameplateOut(
        store_id=store_id,
        store_name=store["name"],
        store_erp_code=store["erp_code"],
        code=code,
        url=nameplates.url_for(settings, code),
    )


async def set_position(
    conn: Conn, actor: Principal, store_id: int, data: PositionIn
) -> PositionOut:
    actor.require("field.nameplates")
    # the row held where its "before" is read, as ``app.orgs.service.update_org`` holds it: a
    # concurrent change is audited before or after this one, never skipped (a probe: two at once
    # both audited the original position); NO KEY: references to the store are not held up
    store = await _store(conn, actor, store_id, "FOR NO KEY UPDATE", audited=True)
    out = PositionOut(store_id=store_id, lat=data.lat, lng=data.lng)
    if (store["latitude"], store["longitude"]) == (data.lat, data.lng):  # set to what it is
        # (a form, a retry): no write, no row (README: a call that changes nothing; a probe)
        return out
    await conn.execute(
        "UPDATE orgs SET latitude = %s, longitude = %s, updated_at = now() WHERE id = %s",
        (data.lat, data.lng, store_id),
    )
    await audit.record(
        conn,
        actor,
        "set_position",
        "org",
        store_id,
        before={"lat": store["latitude"], "lng": store["longitude"]},
        after=out,
        org_id=store_id,
    )
    return out


async def _user_row(conn: Conn, actor: Principal, user_id: int) -> dict[str, Any]:
    """A user the caller administers, with status and permissions (an inactive one too: not
    as a caller, ``load_user``, whose 401 told an admin clearing a departed rep's supervisor
    that the admin's own session was over — a probe)."""
    row = await (
        await conn.execute(
            f"""SELECT u.id, u.org_id, u.supervisor_id, u.status, {ORG_STATUS} AS org_status,
                      o.path, o.kind,
                      coalesce((SELECT array_agg(DISTINCT p)
                                  FROM user_roles ur JOIN roles r ON r.id = ur.role_id,
                                       unnest(r.permissions) p
                                 WHERE ur.user_id = u.id), '{{}}') AS permissions
                 FROM users u JOIN orgs o ON o.id = u.org_id
                WHERE u.id = %s""",
            (user_id,),
        )
    ).fetchone()
    actor.ensure_administers(row["path"] if row else None, "user")
    assert row is not None
    return row


async def _rep_brand(conn: Conn, actor: Principal, user_id: int) -> int:
    """The brand of a user the caller administers (404 otherwise): a user never leaves its
    brand, so it is read before any lock."""
    row = await (
        await conn.execute(
            "SELECT o.path FROM users u JOIN orgs o ON o.id = u.org_id WHERE u.id = %s",
            (user_id,),
        )
    ).fetchone()
    actor.ensure_administers(row["path"] if row else None, "user")
    assert row is not None
    return brand_of(row["path"])


async def _check_boss(conn: Conn, rep: dict[str, Any], boss: dict[str, Any]) -> None:
    """A supervisor ``set_supervisor`` may name over ``rep`` (422 otherwise): not the rep, of
    its brand, active, holding ``field.supervise``; not a store's staff (field work on a store
    is for the organisations above it: a probe named a store's manager the supervisor of a rep
    visiting it, who then read the visits and reviews of its own store and approved plans
    visiting it; ``scope.condition`` lets a store's staff supervise nobody, so one named before
    this rule reads nothing either); not one the rep supervises, directly or not (a probe: A
    over B, then B over A, each approved the other's plans). Run under the brand's role-name
    lock, which every naming takes: two namings that would close a loop together are checked
    one after the other."""
    if boss["id"] == rep["id"]:
        raise Unprocessable("a rep cannot supervise itself", code="own_supervisor")
    if brand_of(boss["path"]) != brand_of(rep["path"]):
        raise Unprocessable("the supervisor is of another brand", code="bad_supervisor")
    if boss["status"] != "active" or boss["org_status"] != "active":
        raise Unprocessable("the supervisor's account is inactive", code="bad_supervisor")
    if "field.supervise" not in boss["permissions"]:
        raise Unprocessable(
            "the supervisor lacks the permission field.supervise", code="bad_supervisor"
        )
    if boss["kind"] == "store":
        raise Unprocessable("a store's staff supervise no rep", code="bad_supervisor")
    # the boss's chain of supervisors upwards; UNION keeps each once, so a loop already
    # stored (none should be) ends the walk instead of running it forever
    loop = await (
        await conn.execute(
            """WITH RECURSIVE chain(id) AS (
                   SELECT supervisor_id FROM users WHERE id = %(boss)s
                   UNION
                   SELECT u.supervisor_id FROM users u JOIN chain c ON u.id = c.id
               )
               SELECT EXISTS (SELECT 1 FROM chain WHERE id = %(rep)s) AS found""",
            {"boss": boss["id"], "rep": rep["id"]},
        )
    ).fetchone()
    if loop is not None and loop["found"]:
        raise Unprocessable(
            "the rep supervises that supervisor, directly or not", code="supervisor_cycle"
        )


async def set_supervisor(
    conn: Conn, actor: Principal, user_id: int, data: SupervisorIn
) -> SupervisorOut:
    """Name (or clear) a rep's supervisor (who then reads the rep's field records and photos):
    an edit of the rep's account, so not of one stronger than the caller (403
    ``stronger_account``), as every other edit of a user, nor of one's own (422
    ``own_account``, by a key one made too, as ``update_user``'s status and roles: a probe — an
    admin named a puppet it had made its own supervisor, who approved its plans, or cleared the
    supervisor the brand had named over it)."""
    actor.require("users.write")
    if user_id == actor.person:
        raise Unprocessable("you cannot change your own supervisor", code="own_account")
    if data.supervisor_id is not None:  # the rep's brand's role-name lock before any user's row
        # (its order, ``Lock.ROLE_NAMES``): a demotion or a deactivation of the supervisor
        # (``drop_unfit_supervisors``, under it) is then before this naming, refused, or after
        # it, which it clears: never between the check below and the write, the demoted user
        # left named. The rep's brand, not the caller's: a platform operator naming one in a
        # tenant brand did not wait for that brand's deactivation of the supervisor (a probe).
        # Namings of one brand wait for each other: a loop (``_check_boss``) is seen whole
        await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, await _rep_brand(conn, actor, user_id))
    # the rep's row held before its supervisor (the audit's "before") is read, as ``update_user``
    # holds it: two namings at once are audited one after the other (a probe: both audited the
    # original supervisor). NO KEY: the new supervisor's row is then key-shared by the foreign
    # key; two reps naming each other at once would otherwise deadlock. No role-name lock is
    # taken after it (``Lock.ROLE_NAMES``: before any user's row, above).
    await conn.execute("SELECT 1 FROM users WHERE id = %s FOR NO KEY UPDATE", (user_id,))
    rep = await _user_row(conn, actor, user_id)
    ensure_not_stronger(actor, sorted(rep["permissions"]), "user")
    if data.supervisor_id is not None:
        await _check_boss(conn, rep, await _user_row(conn, actor, data.supervisor_id))
    out = SupervisorOut(user_id=user_id, supervisor_id=data.supervisor_id)
    if rep["supervisor_id"] == data.supervisor_id:  # named again, or null for none: no write,
        # no row (README: a call that changes nothing; a probe)
        return out
    await conn.execute(
        "UPDATE users SET supervisor_id = %s, updated_at = now() WHERE id = %s",
        (data.supervisor_id, user_id),
    )
    await audit.record(
        conn,
        actor,
        "set_supervisor",
        "user",
        user_id,
        before={"supervisor_id": rep["supervisor_id"]},
        after=out,
        org_id=rep["org_id"],
    )
    return out
