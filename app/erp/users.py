"""Staff users from the ERP (``UserRow``: 工号 as ``erp_code``), by ERP code within the brand,
through the user service.

A user's organisation is named by ERP code (``org_erp_code``: one the caller administers, else
``unknown_org``) and its roles by name (built-in, or custom roles of an organisation above). The
caller can give no one permissions it does not hold, nor change a user stronger than itself —
the user service's rules, row by row.

Passwords are never imported (a ``password`` column or key is refused). A new user gets a random
one-time initial password (144 bits), answered once in the import's result and stored only as a
hash; the user changes it after the first login, or an administrator resets it (PATCH
/users/{id}). A user without an ERP code but with the row's username, in the caller's reach, is
adopted; the username of a known user never changes by import (``username_changed``). A changed
organisation moves the user (its sessions end, as on a password reset): the custom roles out of
the new place's reach are dropped — unless the row lists one, then the row is ``unknown_role``,
as it would be creating the user there — and so is a field supervision the move leaves across
agents (``_drop_supervisors_left_behind``).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from app import audit, locks
from app.auth.passwords import hash_random_password
from app.auth.principal import Principal
from app.auth.service import end_sessions, ensure_not_stronger
from app.db import Conn
from app.erp.masterdata import Importer, attempt, differences, each_row, given, values_of
from app.erp.rows import Item, Spec
from app.erp.schemas import UserRow
from app.errors import NotFound, Unprocessable
from app.orgs.service import drop_roles_out_of_reach, drop_unfit_supervisors, path_live
from app.users.schemas import UserIn, UserPatch
from app.users.service import create_user, update_user

SPEC = Spec(
    entity="users",
    row_type=UserRow,
    text_columns=frozenset({"display_name", "email"}),
    list_columns=frozenset({"roles"}),
    unique=("erp_code", "username"),
    caseless=frozenset({"username"}),  # one name in any case (migration 0041; a probe)
    max_rows=10_000,  # ~6 ms a row (bench/RESULTS.md): about a minute, the import lock held
    takes_passwords=True,
)
_FIELDS = ("display_name", "phone", "email", "status")
_DRY_RUN_HASH = "!dry-run"  # never verified: a dry run is rolled back
_USERS = """SELECT u.id, u.org_id, u.username, u.display_name, u.phone, u.email, u.status,
       u.erp_code, o.path,
       coalesce((SELECT array_agg(r.name ORDER BY r.name) FROM user_roles ur
                 JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id), '{}') AS roles,
       coalesce((SELECT array_agg(DISTINCT p) FROM user_roles ur
                 JOIN roles r ON r.id = ur.role_id, unnest(r.permissions) p
                 WHERE ur.user_id = u.id), '{}') AS permissions
    FROM users u JOIN orgs o ON o.id = u.org_id"""


async def apply(conn: Conn, actor: Principal, items: list[Item], dry_run: bool) -> None:
    """Apply the good rows: update (or adopt) the user the ERP code names, else create one.

    The brand's role-name lock first, before any user's row (``Lock.ROLE_NAMES``: its order):
    rows moving users, setting roles and creating users take it, and the rows before them
    lock their users' rows; taken by the first of them, it came after those locks, and a
    ``PATCH /users/{id}`` of such a user, its roles changed, waited for it holding the lock
    while the import waited for the user — a deadlock, 409 ``retry`` (review)."""
    await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, actor.brand_id)
    good = [item for item in items if item.ok]
    codes = sorted({i.data.erp_code for i in good})
    usernames = sorted({i.data.username for i in good if given(i.data, "username")})
    where = "u.erp_brand_id = %s AND u.erp_code = ANY(%s)"
    known = {r["erp_code"]: r for r in await _users(conn, where, (actor.brand_id, codes))}
    lowered = [name.lower() for name in usernames]  # taken in any case (migration 0041)
    named = {
        r["username"].lower(): r
        for r in await _users(conn, "lower(u.username) = ANY(%s)", (lowered,))
    }
    org_codes = sorted({i.data.org_erp_code for i in good if given(i.data, "org_erp_code")})
    orgs = {
        row["erp_code"]: row
        for row in await (
            await conn.execute(
                """SELECT id, path, status, erp_code FROM orgs
                   WHERE erp_code = ANY(%s) AND path LIKE %s""",  # codes are per brand
                (org_codes, f"/{actor.brand_id}/%"),
            )
        ).fetchall()
    }

    async def step(item: Item) -> None:
        current, adopting = _current(actor, item, known, named)
        if not item.ok:
            return
        org = _org(actor, item, orgs)
        if not item.ok:
            return
        if current is None:
            await _create(conn, actor, item, org, dry_run)
        else:
            await _update(conn, actor, item, current, org, adopting)

    await each_row(conn, good, step)


async def _users(conn: Conn, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Users matching ``where``, with their organisation's path, roles and permissions."""
    return await (await conn.execute(f"{_USERS} WHERE {where}", params)).fetchall()


def _current(
    actor: Principal,
    item: Item,
    known: dict[str, dict[str, Any]],
    named: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any] | None, bool]:
    """The user the row names and whether it is adopted (found by username); the row is
    rejected when the code or the username belongs to someone the caller cannot change."""
    data: UserRow = item.data
    current, adopting = known.get(data.erp_code), False
    # given (not UNSET): a string
    if current is None and isinstance(data.username, str) and data.username.lower() in named:
        other = named[data.username.lower()]
        if (
            other["username"] != data.username  # the same name in another case: another's
            or other["erp_code"] is not None
            or not _administered(actor, other["path"])
        ):
            message = f"username {data.username} is taken"
            item.fail("username", "username_taken", message)
            return None, False
        current, adopting = other, True
    if current is not None and not _administered(actor, current["path"]):
        message = f"ERP code {data.erp_code} belongs to a user you do not administer"
        item.fail("erp_code", "erp_code_taken", message)
    elif current is not None and given(data, "username") and data.username != current["username"]:
        message = f"{data.erp_code} is {current['username']}: a username never changes by import"
        item.fail("username", "username_changed", message)
    return current, adopting


def _org(actor: Principal, item: Item, orgs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The organisation the row names (``None`` when it names none), or the row rejected."""
    data: UserRow = item.data
    if not isinstance(data.org_erp_code, str):
        return None
    org = orgs.get(data.org_erp_code)
    if org is None or not _administered(actor, org["path"]):
        message = f"no organisation {data.org_erp_code} among those you administer"
        item.fail("org_erp_code", "unknown_org", message)
        return None
    return org


def _administered(actor: Principal, path: str) -> bool:
    """Whether an organisation (or a user's, by its path) is one this import may touch: one the
    caller administers, in the caller's brand. ERP codes are the brand's, so a platform
    operator's import never reaches (or moves a user into) another brand."""
    return path.startswith(actor.admin_scope) and path.startswith(f"/{actor.brand_id}/")


async def _link(conn: Conn, actor: Principal, user_id: int, erp_code: str) -> None:
    """Give a user its ERP code (audited under the user's organisation, as every change of a
    user: under the importer's, the link was missing from the user's organisation's log)."""
    row = await (
        await conn.execute(
            "UPDATE users SET erp_brand_id = %s, erp_code = %s, updated_at = now() WHERE id = %s "
            "RETURNING org_id",
            (actor.brand_id, erp_code, user_id),
        )
    ).fetchone()
    assert row is not None
    await audit.record(
        conn,
        actor,
        "erp_link",
        "user",
        user_id,
        after={"erp_code": erp_code},
        org_id=row["org_id"],
    )


async def _create(
    conn: Conn, actor: Principal, item: Item, org: dict[str, Any] | None, dry_run: bool
) -> None:
    data: UserRow = item.data
    for column in ("username", "org_erp_code", "roles"):
        if not given(data, column):
            item.fail(column, "missing_value", f"{column} is required for a new user")
    if not item.ok:
        return
    assert org is not None and isinstance(data.username, str) and isinstance(data.roles, list)
    password = secrets.token_urlsafe(18)
    digest = _DRY_RUN_HASH if dry_run else await asyncio.to_thread(hash_random_password, password)
    fields = values_of(data, _FIELDS)
    fields["display_name"] = fields.get("display_name") or ""
    status = fields.pop("status", "active")
    user = UserIn(  # the initial password is one-time: replaced at the first sign-in
        org_id=org["id"],
        username=data.username,
        password=password,
        roles=data.roles,
        must_change_password=True,
        **fields,
    )

    async def work() -> int:
        out = await create_user(conn, actor, user, password_hash=digest)
        await _link(conn, actor, out.id, data.erp_code)
        if status == "inactive":
            await update_user(conn, actor, out.id, UserPatch(status="inactive"))
        return out.id

    user_id = await attempt(conn, item, work)
    if user_id is not None:
        item.result, item.id = "created", user_id
        item.initial_password = None if dry_run else password


async def _update(
    conn: Conn,
    actor: Principal,
    item: Item,
    current: dict[str, Any],
    org: dict[str, Any] | None,
    adopting: bool,
) -> None:
    data: UserRow = item.data
    values = values_of(data, _FIELDS)
    if "display_name" in values and values["display_name"] is None:
        values["display_name"] = ""
    changes = differences(values, current)
    if isinstance(data.roles, list) and sorted(set(data.roles)) != sorted(current["roles"]):
        changes["roles"] = sorted(set(data.roles))
    move = org is not None and org["id"] != current["org_id"]
    item.id = current["id"]
    if not (changes or move or adopting):
        item.result = "unchanged"
        return

    async def work() -> bool:
        if adopting:  # an edit of the account: not of one stronger than the caller
            ensure_not_stronger(actor, current["permissions"], "user")
            await _link(conn, actor, current["id"], data.erp_code)
        patch = dict(changes)
        if move:
            assert org is not None
            await _move(conn, actor, current, org)
            if isinstance(data.roles, list):
                # the row's roles, found anew at the new place: a name it has not is
                # unknown_role, as creating the user there (a probe: a custom role of the old
                # place, listed, was dropped by the move while the row answered updated), and a
                # name it has is its role (a sibling agent's role of the same name)
                patch["roles"] = sorted(set(data.roles))
        if patch:
            await update_user(conn, actor, current["id"], UserPatch(**patch))
        return True

    if await attempt(conn, item, work):
        item.result = "updated"
        item.changed = [
            *(["erp_code"] if adopting else []),
            *(["org_erp_code"] if move else []),
            *changes,
        ]


async def _move(conn: Conn, actor: Principal, user: dict[str, Any], org: dict[str, Any]) -> None:
    """Move a user to another organisation the caller administers: its sessions end. Not one's
    own account, by a key one made either (a probe); not out of, nor into, an inactive subtree:
    a move is no activation (a probe: a user of a deactivated distributor signed in again)."""
    if user["id"] == actor.person:
        raise Unprocessable("you cannot move your own account", code="own_account")
    ensure_not_stronger(actor, user["permissions"], "user")
    old_path, new_path = await _paths_now(conn, actor, user["id"], org["id"], org["erp_code"])
    if not (await path_live(conn, new_path) and await path_live(conn, old_path)):
        raise Unprocessable("the organisation is inactive", code="org_inactive")
    await conn.execute(
        "UPDATE users SET org_id = %s, updated_at = now() WHERE id = %s", (org["id"], user["id"])
    )
    await end_sessions(conn, user["id"])
    dropped = await drop_roles_out_of_reach(conn, new_path, user["id"])
    unsupervised = await _drop_supervisors_left_behind(conn, user["id"], old_path, new_path)
    if dropped:  # a custom role holding field.supervise left behind: a supervisor no more
        unsupervised += await drop_unfit_supervisors(conn, [user["id"]])
    await audit.record(
        conn,
        actor,
        "move",
        "user",
        user["id"],
        before={"org_id": user["org_id"]},
        after={
            "org_id": org["id"],
            "roles_dropped": sorted(r["role"] for r in dropped),
            "supervisors_dropped": unsupervised,
        },
        org_id=org["id"],
    )


async def _paths_now(
    conn: Conn, actor: Principal, user_id: int, org_id: int, org_code: str
) -> tuple[str, str]:
    """The paths of a moving user's organisation and of the one it moves to, read under the
    brand's role-name lock, which an organisation's move, ``create_user`` and ``_set_roles``
    take: roles out of reach are dropped against them one move at a time. The paths read at the
    start of the import may be stale by now (a probe: the store moved to another agent while
    the import waited for the user's row, and the user kept the first agent's custom role).
    ``apply`` holds the lock already (taken again here, a no-op), as it must: before the user's
    row and the rows of the users it supervises or is supervised by (``PATCH /users/{id}`` of
    roles takes it before the user's row: ``Lock.ROLE_NAMES``), and before the user's row refers
    to the new organisation (its key share on that row), as ``create_user`` takes it: a move
    takes it before the organisations' row locks. Either organisation moved out of the caller's
    reach meanwhile rejects the row."""
    await locks.xact_lock(conn, locks.Lock.ROLE_NAMES, actor.brand_id)
    row = await (
        await conn.execute(
            """SELECT uo.path AS old_path, o.path AS new_path
                 FROM users u JOIN orgs uo ON uo.id = u.org_id, orgs o
                WHERE u.id = %s AND o.id = %s""",
            (user_id, org_id),
        )
    ).fetchone()
    assert row is not None
    if not _administered(actor, row["old_path"]):
        message = "the user moved meanwhile to an organisation you do not administer"
        raise NotFound(message, code="erp_code_taken", details={"field": "erp_code"})
    if not _administered(actor, row["new_path"]):
        message = f"no organisation {org_code} among those you administer"
        raise NotFound(message, code="unknown_org", details={"field": "org_erp_code"})
    return str(row["old_path"]), str(row["new_path"])


async def _drop_supervisors_left_behind(
    conn: Conn, user_id: int, old_path: str, new_path: str
) -> list[dict[str, int]]:
    """Clear the supervisions a user's move (from the organisation at ``old_path`` to the one at
    ``new_path``) leaves across agents, as an organisation's move does
    (``app.orgs.service._drop_supervisors_left_behind``): the user's own supervisor, when its
    organisation was above the user's and no longer is, and the user's as the supervisor of
    the reps below its old place and not below its new one (a probe: moved to another agent,
    a rep was still read and approved by the old agent's field supervisor). A supervision
    named across agents by the brand (the supervisor never above the rep) stays."""
    rows = await (
        await conn.execute(
            """UPDATE users u SET supervisor_id = NULL, updated_at = now()
                FROM users s, orgs so, orgs ro
                WHERE s.id = u.supervisor_id AND so.id = s.org_id AND ro.id = u.org_id
                  AND ((u.id = %(user)s AND %(old)s LIKE so.path || '%%'
                        AND %(new)s NOT LIKE so.path || '%%')
                    OR (s.id = %(user)s AND ro.path LIKE %(old)s || '%%'
                        AND ro.path NOT LIKE %(new)s || '%%'))
                RETURNING u.id AS user_id, s.id AS supervisor_id""",
            {"user": user_id, "old": old_path, "new": new_path},
        )
    ).fetchall()
    return sorted((dict(r) for r in rows), key=lambda r: r["user_id"])


IMPORTER = Importer(spec=SPEC, permission="users.write", apply=apply)
