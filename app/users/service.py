"""Users and roles, managed within the caller's subtree, never beyond its own permissions."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from app import audit, locks
from app.auth.limits import LoginLimiter
from app.auth.passwords import hash_password
from app.auth.permissions import BUILTIN_ROLES, PERMISSIONS
from app.auth.principal import Principal, brand_of
from app.auth.service import (
    ORG_STATUS,
    check_grantable,
    end_sessions,
    ensure_not_stronger,
    load_api_key_by_id,
    load_user,
)
from app.db import Conn, changes_of, update_row
from app.errors import Conflict, NotFound, Unprocessable, ValidationFailed
from app.orgs.service import administered, drop_unfit_supervisors
from app.paging import Page, contains, fetch_page, page_of
from app.users.schemas import PermissionOut, RoleIn, RoleOut, RolePatch, UserIn, UserOut, UserPatch

_USER_COLUMNS = """u.id, u.org_id, u.username, u.display_name, u.phone, u.email, u.status,
    coalesce((SELECT array_agg(r.name ORDER BY r.name) FROM user_roles ur
               JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id), '{}') AS roles,
    u.erp_code, u.last_login_at, u.must_change_password, u.created_at, u.updated_at"""


async def sync_builtin_roles(conn: Conn) -> None:
    """Make the built-in roles in the database match the code (run at start-up)."""
    for name, (description, permissions) in BUILTIN_ROLES.items():
        await conn.execute(
            """INSERT INTO roles (org_id, name, description, permissions)
               VALUES (NULL, %s, %s, %s)
               ON CONFLICT (coalesce(org_id, 0), name)
               DO UPDATE SET description = EXCLUDED.description,
                             permissions = EXCLUDED.permissions, updated_at = now()""",
            (name, description, sorted(permissions)),
        )


async def _resolve_roles(conn: Conn, org_path: str, names: list[str]) -> list[dict[str, Any]]:
    """Role rows by name as seen from an organisation: built-in, or custom of an ancestor.

    Held ``FOR KEY SHARE`` to the end of the transaction: a deletion of one in flight is waited
    for and the role then found gone, 400 ``unknown_role`` as one after the other (a probe: the
    grant's ``INSERT INTO user_roles`` met the foreign key, 409 ``in_use``). An edit of the role
    (``FOR NO KEY UPDATE``) is not held up. Taken under the brand's role-name lock, as every
    caller holds it (``Lock.ROLE_NAMES``), as ``delete_role`` does before the role's row."""
    rows = await (
        await conn.execute(
            """SELECT r.id, r.name, r.permissions FROM roles r
                WHERE r.id IN (SELECT DISTINCT ON (n.name) n.id
                                 FROM roles n LEFT JOIN orgs o ON o.id = n.org_id
                                WHERE n.name = ANY(%s)
                                  AND (n.org_id IS NULL OR %s LIKE o.path || '%%')
                                ORDER BY n.name, length(o.path) DESC NULLS LAST)
                ORDER BY r.id FOR KEY SHARE""",
            (names, org_path),
        )
    ).fetchall()
    unknown = sorted(set(names) - {r["name"] for r in rows})
    if unknown:
        raise ValidationFailed("unknown role", code="unknown_role", details={"unknown": unknown})
    return rows


_USER_ORG_PATH = "SELECT o.path FROM users u JOIN orgs o ON o.id = u.org_id WHERE u.id = %s"


async def _roles_path(conn: Conn, user_id: int) -> str:
    """The path of the user's organisation, read under the brand's role-name lock: roles are
    resolved against it as an organisation's move drops the roles out of reach, one at a time
    (probe: a user created while its store moved to another agent kept the first agent's
    custom role). A move committed meanwhile has changed it: read again under the lock."""
    row = await (await conn.execute(_USER_ORG_PATH, (user_id,))).fetchone()
    assert row is not None
    await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, brand_of(row["path"]))
    row = await (await conn.execute(_USER_ORG_PATH, (user_id,))).fetchone()
    assert row is not None
    return str(row["path"])


async def _caller_now(conn: Conn, actor: Principal, permission: str) -> Principal:
    """The caller read again on ``conn``, once the brand's role-name lock is held, holding
    ``permission`` still: its grants are checked against what it holds now. A demotion or
    deactivation of the caller (of a key's maker), a change of its role and its organisation's
    deactivation commit under that lock; the caller loaded as the request came in granted as
    it was before (a probe: an org_admin deactivated, or demoted, while its POST /users waited
    for the lock still created an org_admin, 201 after the 200). 401 as a request then would
    be: ``account_inactive``, ``api_key_revoked``."""
    if actor.api_key_id is not None:
        now = await load_api_key_by_id(conn, actor.api_key_id)
    elif actor.user_id is not None:
        now = await load_user(conn, actor.user_id)
    else:  # made by the code, no account behind it
        return actor
    now.require(permission)
    return now


async def _set_roles(conn: Conn, actor: Principal, user_id: int, names: list[str]) -> None:
    roles = (
        await _resolve_roles(conn, await _roles_path(conn, user_id), sorted(set(names)))
        if names
        else []
    )
    check_grantable(actor, sorted({p for r in roles for p in r["permissions"]}))
    await conn.execute("DELETE FROM user_roles WHERE user_id = %s", (user_id,))
    if roles:
        await conn.execute(
            "INSERT INTO user_roles (user_id, role_id) SELECT %s, unnest(%s::bigint[])",
            (user_id, [r["id"] for r in roles]),
        )


async def _user_org(conn: Conn, actor: Principal | None, org_id: int) -> dict[str, Any]:
    """The organisation a user is created in: one the caller administers (``None``: any)."""
    if actor is not None:
        return await administered(conn, actor, org_id)
    org = await (
        await conn.execute("SELECT path, status FROM orgs WHERE id = %s", (org_id,))
    ).fetchone()
    if org is None:
        raise NotFound("organisation not found")
    return org


async def create_user(
    conn: Conn, actor: Principal | None, data: UserIn, *, password_hash: str | None = None
) -> UserOut:
    """Create a user in an organisation of the caller's subtree (``actor=None``: the system).
    ``password_hash``: ``data.password`` already hashed (the ERP import's one-time passwords)."""
    if actor is not None:
        actor.require("users.write")
    org = await _user_org(conn, actor, data.org_id)
    if password_hash is None:  # before the lock: not the brand's other grants' wait
        password_hash = await asyncio.to_thread(hash_password, data.password)
    # the brand's role-name lock, always, before the organisation's line is checked: a
    # deactivation checks and writes under it (a probe: a user created as its organisation was
    # deactivated, 201 in the inactive organisation), a move too (roles are resolved against the
    # path read under it, ``_roles_path``); before the user's row refers to its organisation,
    # as a move takes it before the organisations' row locks, which that reference's key share
    # would hold up (a deadlock otherwise). The organisation read again under it.
    await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, brand_of(org["path"]))
    if actor is not None:  # as it is now: demoted or deactivated meanwhile, maybe
        actor = await _caller_now(conn, actor, "users.write")
    org = await _user_org(conn, actor, data.org_id)
    live = await (
        await conn.execute(
            f"SELECT {ORG_STATUS} AS status FROM orgs o WHERE id = %s", (data.org_id,)
        )
    ).fetchone()
    assert live is not None  # read just above (_user_org); organisations are never deleted
    if live["status"] != "active":  # itself, or one above it (a
        # probe: a user made under a deactivated agent came alive with no check when moved)
        raise Unprocessable("the organisation is inactive", code="org_inactive")
    if actor is not None and data.roles:  # the roles first: a refused grant says nothing of
        # the name (a probe: 409 for a name of any brand, 400 otherwise — a name test for all)
        wanted = await _resolve_roles(conn, org["path"], sorted(set(data.roles)))
        check_grantable(actor, sorted({p for r in wanted for p in r["permissions"]}))
    taken = await (
        await conn.execute(  # in any case: "ADMIN" beside "admin" reads as the same person
            "SELECT 1 FROM users WHERE lower(username) = lower(%s)", (data.username,)
        )
    ).fetchone()
    if taken:
        raise Conflict(f"username {data.username} is taken", code="duplicate_username")
    row = await (
        await conn.execute(
            "INSERT INTO users (org_id, username, password_hash, display_name, phone, email, "
            "must_change_password) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                data.org_id,
                data.username,
                password_hash,
                data.display_name,
                data.phone,
                data.email,
                data.must_change_password,
            ),
        )
    ).fetchone()
    assert row is not None
    if actor is None:
        path = await _roles_path(conn, row["id"]) if data.roles else org["path"]
        roles = await _resolve_roles(conn, path, sorted(set(data.roles)))
        await conn.execute(
            "INSERT INTO user_roles (user_id, role_id) SELECT %s, unnest(%s::bigint[])",
            (row["id"], [r["id"] for r in roles]),
        )
    else:
        await _set_roles(conn, actor, row["id"], data.roles)
    out = await _get(conn, row["id"])
    await audit.record(conn, actor, "create", "user", out.id, after=out, org_id=out.org_id)
    return out


async def _get(conn: Conn, user_id: int) -> UserOut:
    row = await (
        await conn.execute(f"SELECT {_USER_COLUMNS} FROM users u WHERE u.id = %s", (user_id,))
    ).fetchone()
    if row is None:
        raise NotFound("user not found")
    return UserOut(**row)


async def _visible_user(conn: Conn, actor: Principal, user_id: int) -> dict[str, Any]:
    """The user's id, username, organisation path and permissions, if the caller administers
    its organisation (else 404)."""
    row = await (
        await conn.execute(
            """SELECT u.id, u.username, o.path,
                      coalesce((SELECT array_agg(DISTINCT p) FROM user_roles ur
                                  JOIN roles r ON r.id = ur.role_id, unnest(r.permissions) p
                                 WHERE ur.user_id = u.id), '{}') AS permissions
                 FROM users u JOIN orgs o ON o.id = u.org_id WHERE u.id = %s""",
            (user_id,),
        )
    ).fetchone()
    actor.ensure_administers(row["path"] if row else None, "user")
    assert row is not None
    return row


async def get_user(conn: Conn, actor: Principal, user_id: int) -> UserOut:
    actor.require("users.read")
    await _visible_user(conn, actor, user_id)
    return await _get(conn, user_id)


async def list_users(
    conn: Conn,
    actor: Principal,
    *,
    org_id: int | None,
    status: str | None,
    q: str | None,
    page: int,
    per_page: int,
) -> Page[UserOut]:
    actor.require("users.read")
    prefix = actor.admin_scope
    if org_id is not None:
        prefix = (await administered(conn, actor, org_id))["path"]
    where = ["o.path LIKE %(prefix)s"]
    params: dict[str, Any] = {"prefix": prefix + "%", "status": status}
    if status:
        where.append("u.status = %(status)s")
    if q:
        where.append("(u.username ILIKE %(q)s OR u.display_name ILIKE %(q)s)")
        params["q"] = contains(q)
    return await fetch_page(
        conn,
        columns=_USER_COLUMNS,
        source="users u JOIN orgs o ON o.id = u.org_id",
        where=where,
        params=params,
        order="u.id",
        page=page,
        per_page=per_page,
        make=lambda row: UserOut(**row),
    )


EXPORT_COLUMNS = [
    "id",
    "username",
    "display_name",
    "org_id",
    "roles",
    "status",
    "phone",
    "email",
    "last_login_at",
    "created_at",
]
EXPORT_MAX = 100_000  # users of one subtree; a bigger export is refused, narrow the filters


async def export_users(
    conn: Conn,
    actor: Principal,
    *,
    org_id: int | None,
    status: str | None,
    q: str | None,
    audited: bool = True,
) -> list[list[Any]]:
    """Every user ``list_users`` would page through (same filters, same scope), as rows of
    ``EXPORT_COLUMNS``, for a CSV or XLSX download; the export is audited (``audited=False``: a
    HEAD, which sends nothing)."""
    rows: list[list[Any]] = []
    page = 1
    while True:
        found = await list_users(
            conn, actor, org_id=org_id, status=status, q=q, page=page, per_page=200
        )
        if found.total > EXPORT_MAX:
            raise Unprocessable(
                f"{found.total} users match; at most {EXPORT_MAX} can be exported at once",
                code="export_too_large",
            )
        for u in found.items:
            rows.append(
                [
                    *(u.id, u.username, u.display_name, u.org_id, " ".join(u.roles), u.status),
                    *(u.phone, u.email, u.last_login_at, u.created_at),
                ]
            )
        if page * 200 >= found.total:
            break
        page += 1
    if audited:
        filters = {"org_id": org_id, "status": status, "q": q, "rows": len(rows)}
        await audit.record(conn, actor, "users.export", "user", None, after=filters)
    return rows


def _user_changes(before: UserOut, patch: UserPatch) -> dict[str, Any]:
    """The fields of ``patch`` that change the user: a value it has already is no change (its
    roles by name: a user's roles are always those its organisation reaches, and one name there
    is one role). A password always is: it is not shown, and its setting is audited alone."""
    current = msgspec.structs.asdict(before)
    return {
        k: v
        for k, v in changes_of(patch).items()
        if k == "password" or (set(v) != set(before.roles) if k == "roles" else v != current[k])
    }


async def update_user(
    conn: Conn,
    actor: Principal,
    user_id: int,
    patch: UserPatch,
    limiter: LoginLimiter | None = None,
) -> UserOut:
    """Change a user no stronger than the caller; a password reset lifts its login locks. A
    change of roles or a deactivation that leaves a field supervisor none any more clears it
    from its reps (``drop_unfit_supervisors``; the ``update`` row's ``supervisors_dropped``)."""
    actor.require("users.write")
    if patch.roles is not msgspec.UNSET or patch.status is not msgspec.UNSET:  # the brand's
        # role-name lock (``_set_roles``, ``drop_unfit_supervisors``) before the user's row, its
        # order (``Lock.ROLE_NAMES``): a user's move by ERP import and an organisation's move
        # take it, then the rows of the users they move or unsupervise (a review: the row first
        # here, each waited for the other — a deadlock, 409 ``retry``); a supervisor's naming
        # takes it too, so it never names one this change demotes or deactivates
        seen = await _visible_user(conn, actor, user_id)
        await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, brand_of(seen["path"]))
        # the caller as it is now (``_caller_now``): its checks below, and ``_set_roles``'s
        actor = await _caller_now(conn, actor, "users.write")
    # the user's row first, then its permissions read anew: two changes of one user (a reset, a
    # promotion) are checked and written one at a time (a probe: a reset checked against the
    # roles before a promotion committed between its check and its write took over the account)
    await conn.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (user_id,))
    row = await _visible_user(conn, actor, user_id)
    # resetting the password of, editing or disabling someone stronger would take them over
    ensure_not_stronger(actor, row["permissions"], "user")
    if user_id == actor.person and (  # a user's own, or through a key the user made
        patch.status is not msgspec.UNSET
        or patch.roles is not msgspec.UNSET
        # a probe: a user held to a password change lifted it with a key it had made
        or patch.must_change_password is not msgspec.UNSET
    ):
        raise Unprocessable(
            "you cannot change your own status, roles or password change", code="own_account"
        )
    if user_id == actor.person and patch.password is not msgspec.UNSET:
        # probe T: a leaked access token set the password here for good, without the current
        # one and outside the log-in limits; one's own goes through POST /auth/password
        raise Unprocessable(
            "change your own password with POST /auth/password (it asks for the current one)",
            code="own_account",
        )
    before = await _get(conn, user_id)
    changes = _user_changes(before, patch)
    roles = changes.pop("roles", None)
    password = changes.pop("password", None)
    shown = bool(changes) or roles is not None  # what the update's row would show changed
    if not shown and password is None:  # saved unchanged (a form, a retry, an inactive user
        # deactivated again): no write and no row, as PATCH /orgs/{id} {} (a probe: an
        # ``update`` row whose before and after were the same)
        return before
    if password is not None:
        changes["password_hash"] = await asyncio.to_thread(hash_password, password)
        changes["failed_logins"] = 0
        changes["locked_until"] = None
    await update_row(conn, "users", user_id, changes)
    if password is not None or changes.get("status") == "inactive":
        await end_sessions(conn, user_id)
    if roles is not None:
        await _set_roles(conn, actor, user_id, roles)
    dropped: list[dict[str, int]] = []
    if roles is not None or changes.get("status") == "inactive":  # a supervisor no more: its
        # reps' plans named a decider who could not decide (a probe)
        dropped = await drop_unfit_supervisors(conn, [user_id])
    if changes.get("status") == "active":  # a rep back, under a supervisor demoted meanwhile
        dropped += await drop_unfit_supervisors(conn, [user_id], of_reps=True)
    if password is not None and limiter is not None:
        await limiter.clear(row["username"])
    after = await _get(conn, user_id)
    if shown:  # a password alone is its own row, below
        await audit.record(
            conn,
            actor,
            "update",
            "user",
            user_id,
            before=before,
            after=_with_dropped(after, dropped),
            org_id=after.org_id,
        )
    if password is not None:  # the rows above show no password: say it was set (probe T)
        await audit.record(conn, actor, "set_password", "user", user_id, org_id=after.org_id)
    return after


def _with_dropped(after: msgspec.Struct, dropped: list[dict[str, int]]) -> Any:
    """A change's audited "after", with the supervisions it cleared (``supervisors_dropped``,
    as a move's row names them) when there are any."""
    if not dropped:
        return after
    return {**msgspec.structs.asdict(after), "supervisors_dropped": dropped}


# Roles ---------------------------------------------------------------------------------------

_ROLE_COLUMNS = "r.id, r.org_id, r.name, r.description, r.permissions, r.org_id IS NULL AS builtin"


_PERMISSIONS = [PermissionOut(name, text) for name, text in PERMISSIONS.items()]


def list_permissions(page: int, per_page: int) -> Page[PermissionOut]:
    return page_of(_PERMISSIONS, page, per_page)


async def list_roles(conn: Conn, actor: Principal, page: int, per_page: int) -> Page[RoleOut]:
    """Built-in roles, custom roles of the caller's ancestors (usable) and subtree (managed): for
    those who see users or manage them or roles (a probe: a line system's key holding only
    ``sales.claim`` read every role of its brand line, names and permission sets)."""
    actor.require_any("users.read", "users.write", "roles.write")
    return await fetch_page(
        conn,
        columns=_ROLE_COLUMNS,
        source="roles r LEFT JOIN orgs o ON o.id = r.org_id",
        where=["(r.org_id IS NULL OR o.path LIKE %(prefix)s OR %(path)s LIKE o.path || '%%')"],
        params={"prefix": actor.org_path + "%", "path": actor.org_path},
        order="r.org_id NULLS FIRST, r.name, r.id",
        page=page,
        per_page=per_page,
        make=lambda row: RoleOut(**row),
    )


async def create_role(conn: Conn, actor: Principal, data: RoleIn) -> RoleOut:
    """A custom role of the caller's organisation, usable in its subtree."""
    actor.require("roles.write")
    if data.name in BUILTIN_ROLES:
        raise Conflict(f"{data.name} is a built-in role", code="duplicate_role")
    # one meaning per name along a line of organisations: a role of the same name above or
    # below would shadow or be shadowed (``_resolve_roles`` takes the nearest; probe T: a store
    # manager's "auditor" with its own permissions took the place of the brand's read-only one
    # when the brand admin gave a store user "auditor"); checked and written under the brand's
    # lock, as a move checks them (review R6: two at once, above and below, both passed)
    await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, brand_of(actor.org_path))
    actor = await _caller_now(conn, actor, "roles.write")  # granting as it is now
    check_grantable(actor, data.permissions)
    exists = await (
        await conn.execute(  # the organisation's path as it is now: moved, maybe, meanwhile
            """SELECT 1 FROM orgs here, roles r JOIN orgs o ON o.id = r.org_id
                WHERE here.id = %(org)s AND r.name = %(name)s
                  AND (o.path LIKE here.path || '%%' OR here.path LIKE o.path || '%%')""",
            {"name": data.name, "org": actor.org_id},
        )
    ).fetchone()
    if exists:
        raise Conflict(f"role {data.name} exists here, above or below", code="duplicate_role")
    row = await (
        await conn.execute(
            "INSERT INTO roles (org_id, name, description, permissions) VALUES (%s, %s, %s, %s) "
            "RETURNING id",
            (actor.org_id, data.name, data.description, sorted(set(data.permissions))),
        )
    ).fetchone()
    assert row is not None
    out = await _get_role(conn, row["id"])
    await audit.record(conn, actor, "create", "role", out.id, after=out)
    return out


async def _get_role(conn: Conn, role_id: int) -> RoleOut:
    row = await (
        await conn.execute(f"SELECT {_ROLE_COLUMNS} FROM roles r WHERE r.id = %s", (role_id,))
    ).fetchone()
    if row is None:
        raise NotFound("role not found")
    return RoleOut(**row)


async def _managed_role(
    conn: Conn, actor: Principal, role_id: int, lock: str
) -> tuple[Principal, RoleOut]:
    """The caller as it is now (``_caller_now``) and a custom role it may change, the role's
    row locked first (``lock``: ``FOR UPDATE`` to delete it, ``FOR NO KEY UPDATE`` to change
    it): two changes or deletions at once go one after the other (a probe: two deletions both
    answered 204 and both were audited).

    The brand's role-name lock comes first (``Lock.ROLE_NAMES``: before the role's row), and
    the holders' rows after the role's: a promotion of a holder (``update_user`` of roles takes
    the lock), a deactivation or move of a holder's organisation (``set_status``, ``move_org``:
    who holds what below) and a reset or edit of a holder (its row) are each checked one at a
    time with the role's change (a probe: a weaker administrator's password reset was checked
    against the role as it was before a permission added to it, and took over an account that
    issues codes). The caller's brand: a role outside its subtree is not found."""
    actor.require("roles.write")
    await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, actor.brand_id)
    actor = await _caller_now(conn, actor, "roles.write")
    row = await (
        await conn.execute(
            "SELECT r.org_id, o.path FROM roles r LEFT JOIN orgs o ON o.id = r.org_id "
            f"WHERE r.id = %s {lock} OF r",
            (role_id,),
        )
    ).fetchone()
    if row is not None and row["org_id"] is None:
        raise Unprocessable("built-in roles cannot be changed", code="builtin_role")
    actor.ensure_sees(row["path"] if row else None, "role")
    role = await _get_role(conn, role_id)
    # NO KEY: what refers to a holder (its sessions, its records) is not held up
    await conn.execute(
        "SELECT 1 FROM users WHERE id IN (SELECT user_id FROM user_roles WHERE role_id = %s) "
        "ORDER BY id FOR NO KEY UPDATE",
        (role_id,),
    )
    # changing a role changes every holder: the role and its holders are no stronger than you
    held = await (
        await conn.execute(
            """SELECT coalesce(array_agg(DISTINCT p), '{}') AS permissions
                 FROM user_roles mine JOIN user_roles ur ON ur.user_id = mine.user_id
                 JOIN roles r ON r.id = ur.role_id, unnest(r.permissions) p
                WHERE mine.role_id = %s""",
            (role_id,),
        )
    ).fetchone()
    assert held is not None
    ensure_not_stronger(actor, role.permissions, "role")
    ensure_not_stronger(actor, held["permissions"], "role (a user holding it)")
    return actor, role


async def _holds(conn: Conn, actor: Principal, role_id: int) -> bool:
    """Whether the caller (a key's maker for a key) holds the role."""
    row = await (
        await conn.execute(
            "SELECT 1 FROM user_roles WHERE user_id = %s AND role_id = %s",
            (actor.person, role_id),
        )
    ).fetchone()
    return row is not None


async def update_role(conn: Conn, actor: Principal, role_id: int, patch: RolePatch) -> RoleOut:
    actor, before = await _managed_role(conn, actor, role_id, "FOR NO KEY UPDATE")
    # a value it has already is no change: saved unchanged, no write and no row, as PATCH
    # /orgs/{id} {} (a probe: an ``update`` row whose before and after were the same)
    if patch.permissions is not msgspec.UNSET:
        check_grantable(actor, patch.permissions)
        if set(before.permissions) - set(patch.permissions) and await _holds(conn, actor, role_id):
            # one's own roles are another's to change, as ``update_user`` refuses them (a probe:
            # a brand's last administrator took users.write from the role it held, and nobody
            # of the brand could manage users, roles or keys again)
            raise Unprocessable(
                "you cannot take permissions from a role you hold", code="own_account"
            )
        if set(patch.permissions) != set(before.permissions):
            await conn.execute(
                "UPDATE roles SET permissions = %s, updated_at = now() WHERE id = %s",
                (sorted(set(patch.permissions)), role_id),
            )
    if patch.description is not msgspec.UNSET and patch.description != before.description:
        await conn.execute(
            "UPDATE roles SET description = %s, updated_at = now() WHERE id = %s",
            (patch.description, role_id),
        )
    after = await _get_role(conn, role_id)
    if after == before:
        return after
    dropped: list[dict[str, int]] = []
    if "field.supervise" in set(before.permissions) - set(after.permissions):  # its holders
        # may have no other role holding it: supervisors no more (``update_user``'s case)
        dropped = await drop_unfit_supervisors(conn, await _holders(conn, role_id))
    # under the role's organisation, as its creation (a probe: a brand admin's change of a
    # store's role was in the brand's log only, not the store's)
    org_id = after.org_id
    await audit.record(
        conn,
        actor,
        "update",
        "role",
        role_id,
        before=before,
        after=_with_dropped(after, dropped),
        org_id=org_id,
    )
    return after


async def _holders(conn: Conn, role_id: int) -> list[int]:
    """The users holding the role."""
    rows = await (
        await conn.execute("SELECT user_id FROM user_roles WHERE role_id = %s", (role_id,))
    ).fetchall()
    return [r["user_id"] for r in rows]


async def delete_role(conn: Conn, actor: Principal, role_id: int) -> None:
    """Delete a custom role no user holds (409 ``role_in_use``). Its row is locked before the
    check, which also keeps an assignment (its foreign key) from slipping in between."""
    actor, before = await _managed_role(conn, actor, role_id, "FOR UPDATE")
    used = await (
        await conn.execute("SELECT 1 FROM user_roles WHERE role_id = %s LIMIT 1", (role_id,))
    ).fetchone()
    if used:
        raise Conflict("the role is assigned to users", code="role_in_use")
    await conn.execute("DELETE FROM roles WHERE id = %s", (role_id,))
    await audit.record(conn, actor, "delete", "role", role_id, before=before, org_id=before.org_id)
