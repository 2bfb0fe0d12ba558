"""Users, roles and permissions within the caller's subtree (SPEC U2, U3)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from app.locks import Lock
from tests.helpers import acting, assert_error, new_org, new_user, onboarded_brand, signed_in
from tests.race_support import deleted_once, held_in_turn, lock_waiters, twice_held


async def test_org_admin_manages_users_of_its_own_subtree_only(
    client: Any, login: Any, demo: Any
) -> None:
    zj = await login("agent_admin")
    created = await client.post(
        "/users",
        headers=zj,
        json={
            "org_id": demo["STORE-NB-01"],
            "username": "nb_clerk",
            "password": "password-123",
            "roles": ["store_clerk"],
            "display_name": "宁波店员",
            "phone": "+86 574 1234",
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["roles"] == ["store_clerk"]
    assert "password-123" not in created.text and "argon2" not in created.text
    assert '"password"' not in created.text and "password_hash" not in created.text
    elsewhere = await client.post(
        "/users",
        headers=zj,
        json={
            "org_id": demo["STORE-GZ-01"],
            "username": "gz_intruder",
            "password": "password-123",
            "roles": ["store_clerk"],
        },
    )
    assert_error(elsewhere, 404)
    names: set[str] = set()  # every page: other tests add users below AGENT-ZJ
    for page in range(1, 100):
        listed = (
            await client.get("/users", headers=zj, params={"per_page": 200, "page": page})
        ).json()
        names |= {u["username"] for u in listed["items"]}
        if page * 200 >= listed["total"]:
            break
    assert {"agent_admin", "agent_clerk", "nb_clerk"} <= names
    assert not names & {"admin", "gd_admin", "planner", "store_clerk_gz"}
    gd_admin_id = next(
        u["id"]
        for u in (
            await client.get("/users", headers=await login("admin"), params={"q": "gd_admin"})
        ).json()["items"]
    )
    assert_error(await client.get(f"/users/{gd_admin_id}", headers=zj), 404)
    assert_error(
        await client.patch(f"/users/{gd_admin_id}", headers=zj, json={"status": "inactive"}), 404
    )


async def test_nobody_grants_a_role_beyond_their_own_permissions(
    client: Any, login: Any, demo: Any
) -> None:
    zj = await login("agent_admin")
    escalate = await client.post(
        "/users",
        headers=zj,
        json={
            "org_id": demo["AGENT-ZJ"],
            "username": "zj_boss",
            "password": "password-123",
            "roles": ["brand_admin"],
        },
    )
    assert_error(escalate, 400, "permission_escalation")
    unknown = await client.post(
        "/users",
        headers=zj,
        json={
            "org_id": demo["AGENT-ZJ"],
            "username": "zj_x",
            "password": "password-123",
            "roles": ["wizard"],
        },
    )
    assert_error(unknown, 400, "unknown_role")
    me_id = (await client.get("/auth/me", headers=zj)).json()["user_id"]
    assert_error(
        await client.patch(f"/users/{me_id}", headers=zj, json={"roles": ["brand_admin"]}),
        422,
        "own_account",
    )


async def test_custom_role_is_usable_in_the_subtree_and_enforced(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    role = await client.post(
        "/roles",
        headers=admin,
        json={"name": "catalogue_editor", "permissions": ["catalog.read", "catalog.write"]},
    )
    assert role.status_code == 201, role.text
    assert role.json()["builtin"] is False
    user = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["BRAND-LUMI"],
            "username": "editor1",
            "password": "password-123",
            "roles": ["catalogue_editor"],
        },
    )
    assert user.status_code == 201
    token = (
        await client.post("/auth/login", json={"username": "editor1", "password": "password-123"})
    ).json()
    editor = {"Authorization": f"Bearer {token['access_token']}"}
    made = await client.post("/categories", headers=editor, json={"name": "Editor category"})
    assert made.status_code == 201
    assert_error(await client.get("/users", headers=editor), 403, "permission_denied")
    # in use: cannot delete; narrowing it takes effect at once
    assert_error(
        await client.delete(f"/roles/{role.json()['id']}", headers=admin), 409, "role_in_use"
    )
    narrowed = await client.patch(
        f"/roles/{role.json()['id']}", headers=admin, json={"permissions": ["catalog.read"]}
    )
    assert narrowed.status_code == 200
    assert_error(
        await client.post("/categories", headers=editor, json={"name": "Second"}),
        403,
        "permission_denied",
    )
    roles = (await client.get("/roles", headers=admin)).json()["items"]
    builtin = next(r for r in roles if r["builtin"])
    assert_error(
        await client.patch(f"/roles/{builtin['id']}", headers=admin, json={"description": "x"}),
        422,
        "builtin_role",
    )
    assert_error(
        await client.post(
            "/roles", headers=admin, json={"name": "planner", "permissions": ["orgs.read"]}
        ),
        409,
        "duplicate_role",
    )


async def test_a_role_name_means_one_role_along_a_line_of_organisations(
    client: Any, login: Any
) -> None:
    """Probe T: a store manager made its own "auditor" with its own permissions; the brand
    admin's grant of the brand's read-only "auditor" to a store user gave the store's."""
    admin, manager, gd = await login("admin"), await login("store_manager"), await login("gd_admin")
    name = f"auditor_{secrets.token_hex(3)}"
    brand_role = await client.post(
        "/roles", headers=admin, json={"name": name, "permissions": ["orgs.read"]}
    )
    assert brand_role.status_code == 201, brand_role.text
    shadow = await client.post(
        "/roles", headers=manager, json={"name": name, "permissions": ["users.write"]}
    )
    assert_error(shadow, 409, "duplicate_role")
    # below first, then above: the same
    other = f"checker_{secrets.token_hex(3)}"
    below = await client.post(
        "/roles", headers=manager, json={"name": other, "permissions": ["orgs.read"]}
    )
    assert below.status_code == 201, below.text
    above = await client.post(
        "/roles", headers=admin, json={"name": other, "permissions": ["orgs.read"]}
    )
    assert_error(above, 409, "duplicate_role")
    # another line of the tree may use the name
    beside = await client.post(
        "/roles", headers=gd, json={"name": other, "permissions": ["orgs.read"]}
    )
    assert beside.status_code == 201, beside.text
    # review R5: nor may a move bring the two onto one line
    store = (await client.get("/auth/me", headers=manager)).json()["org_id"]
    gd_agent = (await client.get("/auth/me", headers=gd)).json()["org_id"]
    moved = await client.post(f"/orgs/{store}/move", headers=admin, json={"parent_id": gd_agent})
    assert_error(moved, 409, "duplicate_role")
    assert moved.json()["error"]["details"] == {"roles": [other]}


async def test_one_role_name_created_above_and_below_at_once_is_one_role(
    client: Any, login: Any
) -> None:
    """Review R6: the brand admin and a store manager naming a role alike at the same moment both
    passed the check along the line; under the brand's lock, one wins, the other is 409."""
    admin, manager = await login("admin"), await login("store_manager")
    for _ in range(8):
        body = {"name": f"race_{secrets.token_hex(3)}", "permissions": ["orgs.read"]}
        answers = await asyncio.gather(
            client.post("/roles", headers=admin, json=body),
            client.post("/roles", headers=manager, json=body),
        )
        assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]


async def test_deactivating_a_user_ends_access(client: Any, login: Any, demo: Any) -> None:
    admin = await login("admin")
    user = (
        await client.post(
            "/users",
            headers=admin,
            json={
                "org_id": demo["FACTORY-SZ"],
                "username": "temp_op",
                "password": "password-123",
                "roles": ["line_operator"],
            },
        )
    ).json()
    tokens = (
        await client.post("/auth/login", json={"username": "temp_op", "password": "password-123"})
    ).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/auth/me", headers=headers)).status_code == 200
    off = await client.patch(f"/users/{user['id']}", headers=admin, json={"status": "inactive"})
    assert off.json()["status"] == "inactive"
    assert_error(await client.get("/auth/me", headers=headers), 401, "account_inactive")
    assert_error(
        await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
    )


async def test_duplicate_username_conflicts(client: Any, login: Any, demo: Any) -> None:
    admin = await login("admin")
    for username in ("planner", "PLANNER"):  # in capitals: one that reads as the same person
        again = await client.post(
            "/users",
            headers=admin,
            json={
                "org_id": demo["BRAND-LUMI"],
                "username": username,
                "password": "password-123",
                "roles": [],
            },
        )
        assert_error(again, 409, "duplicate_username")
    # a probe: a role out of reach answered 409 for a taken name and 400 otherwise — any holder
    # of users.write, of any brand, could test names; now the grant is refused first
    zj = await login("agent_admin")
    for username in ("planner", f"free-{id(client) % 100000}"):
        body = {
            "org_id": demo["AGENT-ZJ"],
            "username": username,
            "password": "password-123",
            "roles": ["brand_admin"],
        }
        assert_error(
            await client.post("/users", headers=zj, json=body), 400, "permission_escalation"
        )
    short = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["BRAND-LUMI"],
            "username": "pw_short",
            "password": "short",
            "roles": [],
        },
    )
    error = assert_error(short, 400, "validation_failed")
    assert error["details"][0]["field"] == "password"


async def test_permissions_are_listed(client: Any, login: Any) -> None:
    listed = (await client.get("/permissions", headers=await login("analyst"))).json()
    names = {p["name"] for p in listed["items"]}
    assert {"orgs.read", "codes.issue", "catalog.write"} <= names
    assert listed["total"] == len(names) and listed["page"] == 1


async def test_the_same_username_at_once_answers_duplicate_username(
    client: Any, login: Any, demo: Any
) -> None:
    """Three creations of one username (in three cases) at once: one wins, the others answer
    409 duplicate_username as they would one after the other — not the database safety net's
    generic 409 conflict (race probe: every run)."""
    admin = await login("admin")
    name = f"racer{secrets.token_hex(3)}"
    answers = await asyncio.gather(
        *(
            client.post(
                "/users",
                headers=admin,
                json={
                    "org_id": demo["STORE-HZ-01"],
                    "username": n,
                    "password": "Sufficiently-long-9",
                    "roles": [],  # no roles (the brand's lock takes one creation at a time all the same)
                },
            )
            for n in (name, name.upper(), name.capitalize())
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409], [a.text for a in answers]
    losers = [a.json()["error"]["code"] for a in answers if a.status_code == 409]
    assert losers == ["duplicate_username"] * 2, losers


async def test_the_minimum_password_length_holds_for_the_password_as_stored(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: passwords are 8 to 256 characters and a password is compared in Unicode NFKC,
    but the length was checked on the text as sent: "e" + U+0301 four times passed as 8
    characters, and the account's password was "éééé", which signed in. 400 now."""
    admin = await login("admin")
    for password in ("e\u0301" * 4, "\u00e9" * 4):  # 8 code points as sent, 4 as compared
        made = await client.post(
            "/users",
            headers=admin,
            json={
                "org_id": demo["BRAND-LUMI"],
                "username": f"pl_{secrets.token_hex(4)}",
                "password": password,
                "roles": ["analyst"],
            },
        )
        assert_error(made, 400, "validation_failed")


async def _paused_reset(
    client: Any, agent: dict[str, str], target: int, monkeypatch: Any
) -> tuple[asyncio.Future[Any], asyncio.Event]:
    """The agent's administrator's password reset of ``target``, held between its
    stronger-account check's read and its write until the returned event is set."""
    from app.users import service as users

    paused, go = asyncio.Event(), asyncio.Event()
    original = users._visible_user

    async def visible(conn: Any, actor: Any, user_id: int) -> Any:
        row = await original(conn, actor, user_id)
        if actor.username == "agent_admin" and user_id == target:
            paused.set()
            await go.wait()  # between the check's read and the write
        return row

    monkeypatch.setattr(users, "_visible_user", visible)
    reset = asyncio.ensure_future(
        client.patch(f"/users/{target}", headers=agent, json={"password": "taken-over-1"})
    )
    await asyncio.wait_for(paused.wait(), 10)
    return reset, go


async def test_a_reset_and_a_promotion_of_one_user_are_checked_one_at_a_time(
    client: Any, login: Any, demo: Any, monkeypatch: Any
) -> None:
    """A probe: an agent's administrator reset a store clerk's password; between the
    stronger-account check (its read of the clerk's permissions) and the write, the brand admin
    made the clerk a planner (``codes.issue``, which the agent's administrator lacks), and the
    reset went through: the agent's administrator held a planner's account. The user's row is
    locked first now: the promotion waits for the reset, or the reset sees the promotion."""

    admin, agent = await login("admin"), await login("agent_admin")
    made = await new_user(client, admin, demo["STORE-HZ-01"], ["store_clerk"])
    name, target = made["username"], made["id"]
    reset, go = await _paused_reset(client, agent, target, monkeypatch)
    promote = asyncio.ensure_future(
        client.patch(f"/users/{target}", headers=admin, json={"roles": ["store_clerk", "planner"]})
    )
    done, _ = await asyncio.wait([promote], timeout=1)
    assert not done  # it waits for the reset's lock (before: it committed here)
    go.set()
    assert (await reset).status_code == 200  # checked against the clerk's roles of before
    assert (await promote).status_code == 200
    taken = await client.post("/auth/login", json={"username": name, "password": "taken-over-1"})
    assert taken.status_code == 200  # reset, then promoted: the order the locks gave


async def test_a_reset_and_a_promotion_through_the_users_role_are_checked_one_at_a_time(
    client: Any, login: Any, demo: Any, monkeypatch: Any
) -> None:
    """A probe: the Zhejiang agent's administrator (no ``codes.issue``) reset the password of a
    store clerk whose only role is a custom role of the brand; between the stronger-account
    check and the write, the brand admin added ``codes.issue`` to that role (``PATCH
    /roles/{id}``). Both answered 200, and the agent's administrator held, by the password it
    chose, an account that issues code batches. The role's edit now locks its holders' rows:
    it waits for the reset, as a promotion by ``PATCH /users/{id}`` does."""

    admin, agent = await login("admin"), await login("agent_admin")
    role_name = f"rr_{secrets.token_hex(3)}"
    role = await client.post(
        "/roles",
        headers=admin,
        json={"name": role_name, "permissions": ["orgs.read", "logistics.scan"]},
    )
    assert role.status_code == 201, role.text
    made = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["STORE-HZ-01"],
            "username": f"rr_race_{secrets.token_hex(4)}",
            "password": "probe-password-1",
            "roles": [role_name],
        },
    )
    assert made.status_code == 201, made.text
    target = made.json()["id"]
    reset, go = await _paused_reset(client, agent, target, monkeypatch)
    promote = asyncio.ensure_future(
        client.patch(
            f"/roles/{role.json()['id']}",
            headers=admin,
            json={"permissions": ["orgs.read", "logistics.scan", "codes.issue"]},
        )
    )
    done, _ = await asyncio.wait([promote], timeout=1.5)
    assert not done  # it waits for the reset's lock of the holder (before: it committed here)
    go.set()
    assert (await reset).status_code == 200  # checked against the role as it was
    promoted = await promote
    assert promoted.status_code == 200, promoted.text


async def test_head_of_the_users_file_is_no_export(client: Any, app: Any, login: Any) -> None:
    """A probe: ``HEAD /users?format=csv|xlsx`` (a link checker's, a browser's) wrote a
    ``users.export`` audit row for a staff directory that never left. A HEAD has no side effect
    of its GET: 200, nothing sent, nothing audited; the GET is."""

    async def exports() -> int:
        async with app.state.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM audit_log WHERE action = 'users.export'"
                )
            ).fetchone()
        return int(row["n"])

    admin = await login("admin")
    for fmt in ("csv", "xlsx"):
        before = await exports()
        head = await client.head("/users", headers=admin, params={"format": fmt})
        assert head.status_code == 200 and head.content == b""
        assert await exports() == before, f"HEAD ?format={fmt} audited"
        got = await client.get("/users", headers=admin, params={"format": fmt})
        assert got.status_code == 200 and got.content
        assert await exports() == before + 1


async def test_a_role_deleted_twice_at_once_is_deleted_once(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: two deletions of one unassigned custom role at once both read the role and its
    holders before either deleted it, and both answered 204 with a ``delete`` audit row each.
    The role's row is locked before the in-use check now (which also keeps an assignment from
    slipping in between): one 204, one 404, one audit row."""
    admin = await login("admin")
    made = await client.post(
        "/roles",
        headers=admin,
        json={"name": f"race_{secrets.token_hex(3)}", "permissions": ["orgs.read"]},
    )
    assert made.status_code == 201, made.text
    rid = made.json()["id"]
    answers = await twice_held(
        app,
        client,
        "SELECT 1 FROM roles WHERE id = %s FOR UPDATE",
        (rid,),
        "DELETE",
        f"/roles/{rid}",
        admin,
    )
    await deleted_once(app, answers, "role", rid, "delete")


async def test_an_organisation_s_move_and_a_patch_of_a_moved_user_s_roles_both_go_through(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe (review): an organisation's move takes the brand's role-name lock
    (``Lock.ROLE_NAMES``) and then the rows of the users whose field supervisor it leaves
    behind; ``PATCH /users/{id}`` of such a user's roles took the user's row and then the lock:
    each waited for the other, and PostgreSQL ended one of them (409 ``retry``). The PATCH takes
    the lock first now: the PATCH and then the move, both applied (the supervision dropped)."""
    admin = await login("admin")
    tag = secrets.token_hex(3)
    store_id = (await new_org(client, admin, "store", demo["AGENT-ZJ"]))["id"]
    made = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": store_id,
            "username": f"mvrep_{tag}",
            "password": "probe-password-1",
            "roles": ["field_rep"],
        },
    )
    assert made.status_code == 201, made.text
    rep = made.json()["id"]
    async with app.state.pool.connection() as conn:  # the Zhejiang agent's field supervisor
        await conn.execute(
            "UPDATE users SET supervisor_id = (SELECT id FROM users WHERE username = 'fieldsup') "
            "WHERE id = %s",
            (rep,),
        )
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (rep,))
        patch = asyncio.ensure_future(
            client.patch(f"/users/{rep}", headers=admin, json={"roles": ["analyst", "field_rep"]})
        )
        assert await lock_waiters(watch, 1), "the PATCH should wait for the user's row"
        move = asyncio.ensure_future(
            client.post(
                f"/orgs/{store_id}/move", headers=admin, json={"parent_id": demo["AGENT-GD"]}
            )
        )
        assert await lock_waiters(watch, 2), "the move should wait too"
        await holder.rollback()
        patch_answer, move_answer = await asyncio.gather(patch, move)
    assert patch_answer.status_code == 200, patch_answer.text
    assert move_answer.status_code == 200, move_answer.text
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT supervisor_id FROM users WHERE id = %s", (rep,))
        ).fetchone()
    assert row["supervisor_id"] is None  # left behind in Zhejiang
    got = (await client.get(f"/users/{rep}", headers=admin)).json()
    assert got["roles"] == ["analyst", "field_rep"], got


@pytest.mark.parametrize("grant", ["create", "patch"])
async def test_a_role_deleted_while_granted_answers_unknown_role(
    client: Any, app: Any, login: Any, demo: Any, grant: str
) -> None:
    """A probe: a brand admin creates a user with a custom role (or gives an existing user
    that role) while another admin deletes the role. One after the other, the grant answers
    400 ``unknown_role``; at once, the grant resolved the role before the deletion committed,
    then its ``INSERT INTO user_roles`` met the foreign key: 409 ``in_use``, another code for
    the same request. The roles are read ``FOR KEY SHARE`` now: the grant waits for the
    deletion and finds the role gone."""
    from app.users import service as users

    admin = await login("admin")
    name = f"zz_doomed_{secrets.token_hex(3)}"
    role = await client.post(
        "/roles", headers=admin, json={"name": name, "permissions": ["orgs.read"]}
    )
    assert role.status_code == 201, role.text
    body = {
        "org_id": demo["AGENT-ZJ"],
        "username": f"doomed_{secrets.token_hex(3)}",
        "password": "probe-password-1",
        "roles": ["analyst"],
    }
    if grant == "patch":
        made = await client.post("/users", headers=admin, json=body)
        assert made.status_code == 201, made.text
        request = client.patch(
            f"/users/{made.json()['id']}", headers=admin, json={"roles": ["analyst", name]}
        )
    else:
        request = client.post("/users", headers=admin, json={**body, "roles": [name]})
    async with app.state.pool.connection() as deleter, app.state.pool.connection() as watch:
        actor = await acting(deleter, "admin")
        await users.delete_role(deleter, actor, role.json()["id"])  # not committed yet
        racing = asyncio.ensure_future(request)
        assert await lock_waiters(watch, 1), "the grant should wait for the role's row"
        await deleter.commit()
        answer = await racing
    assert_error(answer, 400, "unknown_role")


async def test_a_brand_admins_change_of_a_stores_role_is_in_the_stores_audit_log(
    client: Any, login: Any
) -> None:
    """A probe: a store manager (``org_admin``: ``audit.read`` of its subtree) creates a custom
    role of its store; the brand admin then changes and deletes it. The store's audit log
    showed the creation only: ``update_role`` and ``delete_role`` audited under the *actor's*
    organisation (the brand), so the change of a role of the store was missing from the
    store's history. They audit under the role's organisation now, as its creation."""
    manager, admin = await login("store_manager"), await login("admin")
    name = f"zz_shelf_{secrets.token_hex(3)}"
    made = await client.post(
        "/roles", headers=manager, json={"name": name, "permissions": ["orgs.read"]}
    )
    assert made.status_code == 201, made.text
    role_id = made.json()["id"]
    changed = await client.patch(
        f"/roles/{role_id}", headers=admin, json={"permissions": ["orgs.read", "catalog.read"]}
    )
    assert changed.status_code == 200, changed.text
    gone = await client.delete(f"/roles/{role_id}", headers=admin)
    assert gone.status_code == 204, gone.text
    seen = await client.get(
        "/audit", headers=manager, params={"entity": "role", "entity_id": str(role_id)}
    )
    assert seen.status_code == 200, seen.text
    actions = [row["action"] for row in seen.json()["items"]]
    assert actions == ["delete", "update", "create"], actions


async def test_a_users_erp_link_is_in_its_organisations_audit_log(client: Any, login: Any) -> None:
    """A probe: the users import's ``erp_link`` (a user given its ERP code, created or adopted)
    was audited under the importer's organisation, the only change of a user not under the
    user's own: a store manager read the user's creation in the store's log, not its link."""
    manager, admin = await login("store_manager"), await login("admin")
    tag = secrets.token_hex(3)
    body = {"items": [{"erp_code": f"LNK-{tag}", "username": f"lnk_{tag}",
                       "org_erp_code": "STORE-HZ-01", "roles": ["store_clerk"]}]}  # fmt: skip
    done = await client.post("/users/import", headers=admin, json=body)
    assert done.status_code == 200, done.text
    user = done.json()["results"][0]["id"]
    seen = await client.get(
        "/audit", headers=manager, params={"entity": "user", "entity_id": str(user)}
    )
    assert seen.status_code == 200, seen.text
    actions = [row["action"] for row in seen.json()["items"]]
    assert actions == ["erp_link", "create"], actions


async def _actions(client: Any, headers: Any, entity: str, entity_id: int) -> list[str]:
    """The audit rows' actions of one user or role, newest first."""
    seen = await client.get(
        "/audit", headers=headers, params={"entity": entity, "entity_id": entity_id}
    )
    assert seen.status_code == 200, seen.text
    return [row["action"] for row in seen.json()["items"]]


async def test_a_user_saved_unchanged_writes_no_audit_row(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``PATCH /users/{id}`` with ``{}`` (a form saved unchanged), or a second
    ``status: inactive`` of an inactive user (a double click), answered 200 and wrote an
    ``update`` row whose before and after were the same. Only a change is written and audited;
    a password set is its own ``set_password`` row (the user's rows show no password)."""
    admin = await login("admin")
    made = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["STORE-HZ-01"],
            "username": f"same_{secrets.token_hex(3)}",
            "password": "password-123",
            "roles": ["store_clerk"],
            "display_name": "Same",
        },
    )
    assert made.status_code == 201, made.text
    user = made.json()["id"]
    for body in (
        {},
        {"status": "inactive"},
        {"status": "inactive"},
        {"display_name": "Same", "roles": ["store_clerk"], "status": "inactive"},
        {"password": "password-456"},
    ):
        saved = await client.patch(f"/users/{user}", headers=admin, json=body)
        assert saved.status_code == 200, saved.text
    assert (saved.json()["status"], saved.json()["roles"]) == ("inactive", ["store_clerk"])
    assert await _actions(client, admin, "user", user) == ["set_password", "update", "create"]


async def test_nobody_takes_permissions_from_a_role_they_hold(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``PATCH /users/{own id}`` of one's roles is 422 ``own_account``, but an
    administrator whose powers came from a custom role took them from that role (200): the
    brand's last administrator left nobody able to manage its users, roles or keys. Taking
    permissions from a role one holds is refused alike; its other changes, and another's
    change of it, still go through."""
    admin = await login("admin")
    permissions = ["users.read", "users.write", "roles.write", "orgs.read"]
    made = await client.post(
        "/roles",
        headers=admin,
        json={"name": f"mine_{secrets.token_hex(3)}", "permissions": permissions},
    )
    assert made.status_code == 201, made.text
    role = made.json()["id"]
    holder = await new_user(client, admin, demo["BRAND-LUMI"], [made.json()["name"]])
    signed = await client.post(
        "/auth/login", json={"username": holder["username"], "password": holder["password"]}
    )
    mine = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    stripped = await client.patch(
        f"/roles/{role}", headers=mine, json={"permissions": ["orgs.read"]}
    )
    assert_error(stripped, 422, "own_account")
    assert (await client.get("/users", headers=mine)).status_code == 200  # still its own
    described = await client.patch(
        f"/roles/{role}", headers=mine, json={"permissions": permissions, "description": "ours"}
    )
    assert described.status_code == 200, described.text
    by_another = await client.patch(
        f"/roles/{role}", headers=admin, json={"permissions": ["orgs.read"]}
    )
    assert by_another.status_code == 200, by_another.text


async def test_a_role_saved_unchanged_writes_no_audit_row(client: Any, login: Any) -> None:
    """A probe: ``PATCH /roles/{id}`` with ``{}``, or with the permissions and description the
    role has, answered 200 and wrote an ``update`` row whose before and after were the same.
    Only a change is written and audited."""
    admin = await login("admin")
    made = await client.post(
        "/roles",
        headers=admin,
        json={
            "name": f"same_{secrets.token_hex(3)}",
            "permissions": ["orgs.read", "catalog.read"],
            "description": "unchanged",
        },
    )
    assert made.status_code == 201, made.text
    role = made.json()["id"]
    for body in (
        {},
        {"permissions": ["catalog.read", "orgs.read"], "description": "unchanged"},
        {"permissions": ["catalog.read"]},
    ):
        saved = await client.patch(f"/roles/{role}", headers=admin, json=body)
        assert saved.status_code == 200, saved.text
    assert await _actions(client, admin, "role", role) == ["update", "create"]


async def test_a_user_created_while_its_organisation_is_deactivated_is_refused(
    client: Any, app: Any, login: Any
) -> None:
    """A probe: ``create_user`` read the organisation's line before it took the brand's
    role-name lock (and took it only for a user given roles), under which a deactivation checks
    and writes: one in flight committed first and the user was still created, 201, in the
    inactive organisation. The lock first, with or without roles: 422 ``org_inactive``."""
    brand, admin = await onboarded_brand(client, login)
    for roles in (["warehouse_clerk"], []):
        tag = secrets.token_hex(4)
        org_id = (await new_org(client, admin, "agent", brand["id"]))["id"]
        body = {"org_id": org_id, "username": f"late_{tag}",
                "password": "Sufficiently-long-9", "roles": roles}  # fmt: skip
        off, made = await held_in_turn(
            app,
            "SELECT pg_advisory_xact_lock(%s, %s)",
            (int(Lock.ROLE_NAMES), brand["id"]),
            lambda a=org_id: client.post(f"/orgs/{a}/deactivate", headers=admin),
            lambda b=body: client.post("/users", headers=admin, json=b),
        )
        assert off.status_code == 200, off.text
        assert_error(made, 422, "org_inactive")


async def _grant(
    client: Any, admin: dict[str, str], brand_id: int, boss: dict[str, Any], grant: str
) -> Any:
    """The request (not sent yet) by which ``boss``, a brand_admin, grants codes.issue, which an
    org_admin holds not: planner to a new user (through its token or a key it made) or to
    another, codes.issue to a new role or to one of the brand's (``grant``)."""
    headers = await signed_in(client, boss)
    if grant == "patch":
        target = await new_user(client, admin, brand_id, ["analyst"])
        return client.patch(f"/users/{target['id']}", headers=headers, json={"roles": ["planner"]})
    if grant.startswith("role"):
        if grant == "role":
            body = {"name": f"zz_late_{secrets.token_hex(3)}", "permissions": ["codes.issue"]}
            return client.post("/roles", headers=headers, json=body)
        body = {"name": f"zz_late_{secrets.token_hex(3)}", "permissions": ["orgs.read"]}
        role = await client.post("/roles", headers=admin, json=body)
        assert role.status_code == 201, role.text
        return client.patch(
            f"/roles/{role.json()['id']}", headers=headers,
            json={"permissions": ["orgs.read", "codes.issue"]},
        )  # fmt: skip
    if grant == "key":
        planner = ["orgs.read", "catalog.read", "codes.issue", "codes.export", "codes.allocate"]
        body = {"name": "late", "permissions": ["users.write", *planner]}
        made = await client.post("/api-keys", headers=headers, json=body)
        assert made.status_code == 201, made.text
        headers = {"X-API-Key": made.json()["key"]}
    body = {"org_id": brand_id, "username": f"late_{secrets.token_hex(4)}",
            "password": "Sufficiently-long-9", "roles": ["planner"]}  # fmt: skip
    return client.post("/users", headers=headers, json=body)


@pytest.mark.parametrize("change", ["deactivate", "demote"])
@pytest.mark.parametrize("grant", ["create", "patch", "role", "role_edit", "key"])
async def test_a_grant_waiting_for_its_callers_demotion_is_checked_against_it(
    client: Any, app: Any, login: Any, change: str, grant: str
) -> None:
    """A probe: ``POST /users``, ``PATCH /users/{id}`` of roles, ``POST /roles`` and ``PATCH
    /roles/{id}`` checked the grant against the caller loaded as the request came in; the
    caller's deactivation or demotion under way (it holds the brand's role-name lock,
    ``Lock.ROLE_NAMES``, uncommitted), the grant waited for the lock and then granted as the
    caller no longer could: 201 or 200 after the change's 200. The caller (a key: its maker) is
    read again under the lock: 401 inactive, 400 ``permission_escalation`` demoted."""
    from app.auth.service import load_user
    from app.users import service as users
    from app.users.schemas import UserPatch

    brand, admin = await onboarded_brand(client, login)
    boss = await new_user(client, admin, brand["id"], ["brand_admin"])
    request = await _grant(client, admin, brand["id"], boss, grant)
    maker = (await client.get("/auth/me", headers=admin)).json()["user_id"]
    patch = (
        UserPatch(status="inactive") if change == "deactivate" else UserPatch(roles=["org_admin"])
    )
    async with app.state.pool.connection() as held, app.state.pool.connection() as watch:
        await users.update_user(held, await load_user(held, maker), boss["id"], patch)
        racing = asyncio.ensure_future(request)
        assert await lock_waiters(watch, 1), "the grant should wait for the caller's change"
        await held.commit()
        answer = await racing
    if change == "demote":
        assert_error(answer, 400, "permission_escalation")
    else:
        assert_error(answer, 401, "api_key_revoked" if grant == "key" else "account_inactive")
