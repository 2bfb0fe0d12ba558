"""Login, lockout, tokens, refresh rotation, API keys (SPEC U4)."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
import weakref
from typing import Any

import jwt
import psycopg
import pytest

from app.auth import tokens
from app.demo import DEMO_PASSWORD
from tests.helpers import assert_error, every_item, new_org, onboarded_brand
from tests.race_support import lock_waiters


async def test_login_with_the_right_password_gives_tokens_that_work(client: Any, demo: Any) -> None:
    response = await client.post(
        "/auth/login", json={"username": "planner", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == "planner"
    assert "codes.issue" in me.json()["permissions"]


async def test_me_says_whether_the_caller_is_the_brands_own_staff(client: Any, login: Any) -> None:
    """The console hides what only the brand's own staff may open (403 ``brand_staff_only``)."""
    staff = {u: (await client.get("/auth/me", headers=await login(u))).json()["brand_staff"]
             for u in ("admin", "analyst", "agent_admin", "store_manager")}  # fmt: skip
    assert staff == {"admin": True, "analyst": True, "agent_admin": False, "store_manager": False}


async def test_wrong_password_and_unknown_user_get_the_same_answer(client: Any, demo: Any) -> None:
    wrong = await client.post("/auth/login", json={"username": "analyst", "password": "nope-nope"})
    unknown = await client.post("/auth/login", json={"username": "ghost", "password": "nope-nope"})
    assert assert_error(wrong, 401, "invalid_credentials") == assert_error(
        unknown, 401, "invalid_credentials"
    )


async def test_repeated_failures_lock_the_account_even_for_the_right_password(
    client: Any, login: Any, settings: Any
) -> None:
    admin = await login("admin")
    created = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": (await client.get("/auth/me", headers=admin)).json()["org_id"],
            "username": "lockme",
            "password": "right-password",
            "roles": ["analyst"],
        },
    )
    assert created.status_code == 201, created.text
    for _ in range(settings.login_max_failures):
        bad = await client.post("/auth/login", json={"username": "lockme", "password": "wrong-pw"})
        assert_error(bad, 401, "invalid_credentials")
    locked = await client.post(
        "/auth/login", json={"username": "lockme", "password": "right-password"}
    )
    error = assert_error(locked, 429, "login_locked")
    assert 0 < error["details"]["retry_after"] <= settings.login_lockout_seconds
    assert locked.headers["retry-after"]
    # an admin resetting the password lifts the lock
    reset = await client.patch(
        f"/users/{created.json()['id']}", headers=admin, json={"password": "new-password-1"}
    )
    assert reset.status_code == 200
    ok = await client.post("/auth/login", json={"username": "lockme", "password": "new-password-1"})
    assert ok.status_code == 200


async def test_expired_and_forged_tokens_are_refused(client: Any, settings: Any, demo: Any) -> None:
    key = settings.jwt_key()
    expired, _ = tokens.issue(key, 1, "access", ttl=-5)
    assert_error(
        await client.get("/auth/me", headers={"Authorization": f"Bearer {expired}"}),
        401,
        "token_expired",
    )
    forged, _ = tokens.issue(b"x" * 32, 1, "access", ttl=60)
    assert_error(
        await client.get("/auth/me", headers={"Authorization": f"Bearer {forged}"}),
        401,
        "invalid_token",
    )
    refresh_as_access, _ = tokens.issue(key, 1, "refresh", ttl=60)
    assert_error(
        await client.get("/auth/me", headers={"Authorization": f"Bearer {refresh_as_access}"}),
        401,
        "invalid_token",
    )
    assert_error(await client.get("/auth/me"), 401, "unauthorized")
    assert_error(
        await client.get("/auth/me", headers={"Authorization": "Basic abc"}), 401, "unauthorized"
    )


async def test_refresh_token_works_exactly_once_and_logout_revokes(client: Any, demo: Any) -> None:
    first = (
        await client.post("/auth/login", json={"username": "analyst", "password": DEMO_PASSWORD})
    ).json()
    second = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    again = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_error(again, 401, "invalid_token")
    new_refresh = second.json()["refresh_token"]
    assert (
        await client.post("/auth/logout", json={"refresh_token": new_refresh})
    ).status_code == 204
    after_logout = await client.post("/auth/refresh", json={"refresh_token": new_refresh})
    assert_error(after_logout, 401, "invalid_token")


async def test_api_key_is_shown_once_scoped_and_revocable(client: Any, login: Any) -> None:
    admin = await login("admin")
    created = await client.post(
        "/api-keys", headers=admin, json={"name": "erp", "permissions": ["catalog.read"]}
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    key_id = created.json()["api_key"]["id"]
    # every page: the demo brand's keys are listed oldest first, and other tests make them
    listed = await every_item(client, "/api-keys", admin)
    assert key not in str(listed) and key.split("_")[2] not in str(listed)
    assert key_id in [k["id"] for k in listed]

    as_key = {"X-API-Key": key}
    assert (await client.get("/products", headers=as_key)).status_code == 200
    assert (
        await client.get("/products", headers={"Authorization": f"ApiKey {key}"})
    ).status_code == 200
    # the key holds only catalog.read
    assert_error(
        await client.post("/products", headers=as_key, json={"name": "x", "product_no": "K-1"}),
        403,
        "permission_denied",
    )
    assert_error(await client.get("/users", headers=as_key), 403, "permission_denied")
    # a tampered secret does not work
    assert_error(
        await client.get("/products", headers={"X-API-Key": key + "x"}), 401, "invalid_api_key"
    )

    revoked = await client.post(f"/api-keys/{key_id}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert_error(await client.get("/products", headers=as_key), 401, "api_key_revoked")
    again = await client.post(f"/api-keys/{key_id}/revoke", headers=admin)  # a retry: the same
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    trail = await client.get(
        "/audit", headers=admin, params={"entity": "api_key", "entity_id": str(key_id)}
    )
    assert [a["action"] for a in trail.json()["items"]].count("revoke") == 1  # a probe: two


async def test_api_key_cannot_carry_more_than_its_creator_holds(client: Any, login: Any) -> None:
    agent_admin = await login("agent_admin")
    escalation = await client.post(
        "/api-keys", headers=agent_admin, json={"name": "x", "permissions": ["codes.issue"]}
    )
    assert_error(escalation, 400, "permission_escalation")
    unknown = await client.post(
        "/api-keys", headers=agent_admin, json={"name": "x", "permissions": ["no.such"]}
    )
    assert_error(unknown, 400, "unknown_permission")


async def test_api_key_of_an_agent_sees_only_its_subtree(
    client: Any, login: Any, demo: Any
) -> None:
    agent_admin = await login("agent_admin")
    key = (
        await client.post(
            "/api-keys",
            headers=agent_admin,
            json={"name": "agent erp", "permissions": ["orgs.read"]},
        )
    ).json()["key"]
    own = await client.get(f"/orgs/{demo['STORE-HZ-01']}", headers={"X-API-Key": key})
    assert own.status_code == 200
    other = await client.get(f"/orgs/{demo['STORE-GZ-01']}", headers={"X-API-Key": key})
    assert_error(other, 404, "not_found")


async def new_staff(
    client: Any, admin: dict[str, str], org_id: int, name: str, roles: list[str], password: str
) -> tuple[int, dict[str, Any]]:
    """A user ``admin`` makes, signed in: its id and the tokens of its log-in."""
    made = await client.post(
        "/users",
        headers=admin,
        json={"org_id": org_id, "username": name, "password": password, "roles": roles},
    )
    assert made.status_code == 201, made.text
    tokens = await client.post("/auth/login", json={"username": name, "password": password})
    assert tokens.status_code == 200, tokens.text
    return int(made.json()["id"]), tokens.json()


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def test_an_api_key_never_outlives_or_outranks_its_creator(
    client: Any, login: Any, demo: Any
) -> None:
    """Probe F: a key kept every permission after its creator was deactivated and stripped of
    roles, and could re-activate the creator."""
    admin = await login("admin")
    name = f"keymaker_{id(client) % 100000}"
    user_id, maker = await new_staff(
        client, admin, demo["AGENT-ZJ"], name, ["org_admin"], "password-123"
    )
    made = await client.post(
        "/api-keys",
        headers=bearer(maker),
        json={"name": name, "permissions": ["orgs.read", "users.read", "users.write"]},
    )
    assert made.status_code == 201, made.text
    as_key = {"X-API-Key": made.json()["key"]}
    me = await client.get("/auth/me", headers=as_key)
    assert set(me.json()["permissions"]) == {"orgs.read", "users.read", "users.write"}
    url = f"/users/{user_id}"
    # its creator keeps only orgs.read: so does the key
    reader = await client.post(
        "/roles", headers=admin, json={"name": f"{name}_r", "permissions": ["orgs.read"]}
    )
    assert reader.status_code == 201, reader.text
    changed = await client.patch(url, headers=admin, json={"roles": [f"{name}_r"]})
    assert changed.status_code == 200, changed.text
    me = await client.get("/auth/me", headers=as_key)
    assert me.json()["permissions"] == ["orgs.read"]
    # its creator is deactivated: the key stops, and cannot bring the creator back
    off = await client.patch(url, headers=admin, json={"status": "inactive"})
    assert off.status_code == 200, off.text
    assert_error(await client.get("/auth/me", headers=as_key), 401, "api_key_revoked")
    back = await client.patch(url, headers=as_key, json={"status": "active"})
    assert_error(back, 401, "api_key_revoked")


async def test_a_revoked_key_takes_the_keys_it_made_with_it(client: Any, login: Any) -> None:
    """Probe T: a key made by a key went on working after the maker key was revoked: whoever
    held a leaked key with ``apikeys.write`` for a moment kept access."""
    admin = await login("admin")

    async def make(headers: dict[str, str], name: str, permissions: list[str]) -> Any:
        made = await client.post(
            "/api-keys", headers=headers, json={"name": name, "permissions": permissions}
        )
        assert made.status_code == 201, made.text
        return made.json()

    tag = id(client) % 100000
    parent = await make(admin, f"parent_{tag}", ["apikeys.write", "orgs.read"])
    child = await make({"X-API-Key": parent["key"]}, f"child_{tag}", ["apikeys.write", "orgs.read"])
    grandchild = await make({"X-API-Key": child["key"]}, f"grandchild_{tag}", ["orgs.read"])
    other = await make(admin, f"other_{tag}", ["orgs.read"])
    for made in (child, grandchild, other):
        assert (await client.get("/orgs", headers={"X-API-Key": made["key"]})).status_code == 200
    revoked = await client.post(f"/api-keys/{parent['api_key']['id']}/revoke", headers=admin)
    assert revoked.status_code == 200, revoked.text
    for made in (parent, child, grandchild):
        gone = await client.get("/orgs", headers={"X-API-Key": made["key"]})
        assert_error(gone, 401, "api_key_revoked")
    assert (await client.get("/orgs", headers={"X-API-Key": other["key"]})).status_code == 200


async def test_keys_made_with_a_key_before_their_maker_was_recorded_get_it_from_the_audit_log(
    client: Any, login: Any, app: Any
) -> None:
    """Probe Y: a key made with a key before migration 0052 had no ``made_by_key``, and revoking
    its maker left it working. Migration 0057 takes the maker from the audit log; 0058 writes
    the audit rows of the keys 0057 revoked."""
    from app.db import migrations

    admin = await login("admin")
    tag = id(client) % 100000

    async def make(headers: dict[str, str], name: str) -> dict[str, Any]:
        body = {"name": name, "permissions": ["apikeys.write", "orgs.read"]}
        made = await client.post("/api-keys", headers=headers, json=body)
        assert made.status_code == 201, made.text
        return made.json()  # type: ignore[no-any-return]

    parent = await make(admin, f"old_parent_{tag}")
    child = await make({"X-API-Key": parent["key"]}, f"old_child_{tag}")
    gone_parent = await make(admin, f"old_gone_parent_{tag}")  # revoked before the upgrade
    orphan = await make({"X-API-Key": gone_parent["key"]}, f"old_orphan_{tag}")
    backfill = [text for _, name, text in migrations() if name.startswith(("0057_", "0058_"))]
    async with app.state.pool.connection() as conn:  # as the release before 0052 left it
        await conn.execute(
            "UPDATE api_keys SET made_by_key = NULL WHERE id = ANY(%s)",
            ([child["api_key"]["id"], orphan["api_key"]["id"]],),
        )
        await conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = %s", (gone_parent["api_key"]["id"],)
        )
        for text in backfill:
            await conn.execute(text)
    still = await client.get("/orgs", headers={"X-API-Key": orphan["key"]})
    assert_error(still, 401, "api_key_revoked")  # review R6: its maker was revoked already
    async with app.state.pool.connection() as conn:  # and the audit log says why (review)
        said = await (
            await conn.execute(
                "SELECT action, actor_user, after FROM audit_log "
                "WHERE entity = 'api_key' AND entity_id = %s AND action = 'revoke'",
                (str(orphan["api_key"]["id"]),),
            )
        ).fetchall()
    assert [(r["actor_user"], r["after"]["revoked_with"]) for r in said] == [
        (None, gone_parent["api_key"]["id"])
    ]
    revoked = await client.post(f"/api-keys/{parent['api_key']['id']}/revoke", headers=admin)
    assert revoked.status_code == 200, revoked.text
    gone = await client.get("/orgs", headers={"X-API-Key": child["key"]})
    assert_error(gone, 401, "api_key_revoked")


async def test_a_key_made_while_its_maker_is_revoked_is_revoked_too(
    client: Any, login: Any, app: Any
) -> None:
    """Review R5: a key making another at the moment it was revoked: the new key was not yet
    there for the revocation of the keys it had made, and lived on."""
    admin = await login("admin")
    children = 0
    for attempt in range(12):
        made = await client.post(
            "/api-keys",
            headers=admin,
            json={
                "name": f"maker_{id(client) % 100000}_{attempt}",
                "permissions": ["apikeys.write"],
            },
        )
        assert made.status_code == 201, made.text
        maker = made.json()

        async def revoke(key_id: int, delay: float) -> Any:  # later and later: all meetings
            await asyncio.sleep(delay)
            return await client.post(f"/api-keys/{key_id}/revoke", headers=admin)

        child, revoked = await asyncio.gather(
            client.post(
                "/api-keys",
                headers={"X-API-Key": maker["key"]},
                json={"name": f"child_{attempt}", "permissions": ["apikeys.write"]},
            ),
            revoke(maker["api_key"]["id"], attempt * 0.003),
        )
        assert revoked.status_code == 200, revoked.text
        if child.status_code != 201:
            assert_error(child, 401, "api_key_revoked")
            continue
        children += 1
        async with app.state.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT revoked_at FROM api_keys WHERE id = %s",
                    (child.json()["api_key"]["id"],),
                )
            ).fetchone()
        assert row["revoked_at"] is not None, f"attempt {attempt}: the child outlived its maker"
    assert children >= 1  # the race was run: some child was made around its maker's revocation


async def test_a_key_made_by_a_child_while_its_grandparent_is_revoked_is_revoked_too(
    client: Any, login: Any, app: Any
) -> None:
    """Review: K1 made K2; while K1's revocation waited for K2's row (K2 making K3 holds it
    FOR SHARE), K3 was committed, out of the revocation's snapshot, and stayed valid. The
    making is played by a transaction that holds K2 as a key creation does and links K3."""
    import psycopg

    admin = await login("admin")

    async def new_key(headers: dict[str, str], name: str) -> dict[str, Any]:
        made = await client.post(
            "/api-keys", headers=headers, json={"name": name, "permissions": ["apikeys.write"]}
        )
        assert made.status_code == 201, made.text
        return made.json()  # type: ignore[no-any-return]

    tag = secrets.token_hex(3)
    k1 = await new_key(admin, f"k1_{tag}")
    k2 = await new_key({"X-API-Key": k1["key"]}, f"k2_{tag}")
    k3 = await new_key(admin, f"k3_{tag}")
    ids = [k["api_key"]["id"] for k in (k1, k2, k3)]
    async with await psycopg.AsyncConnection.connect(app.state.pool.conninfo) as making:
        await making.execute("SELECT 1 FROM api_keys WHERE id = %s FOR SHARE", (ids[1],))
        revoking = asyncio.create_task(client.post(f"/api-keys/{ids[0]}/revoke", headers=admin))
        await asyncio.sleep(0.5)  # the revocation waits for K2's row
        await making.execute(  # K2 made K3
            "UPDATE api_keys SET made_by_key = %s WHERE id = %s", (ids[1], ids[2])
        )
        await making.commit()
    assert (await asyncio.wait_for(revoking, 30)).status_code == 200
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE id = ANY(%s)",
                (ids,),
            )
        ).fetchall()
    assert {r["id"]: r["revoked"] for r in rows} == dict.fromkeys(ids, True)
    assert_error(await client.get("/auth/me", headers={"X-API-Key": k3["key"]}), 401)


async def test_a_replayed_spent_refresh_token_ends_every_session_of_its_user(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Probe F: a spent refresh token sent again was refused, but the thief's or the owner's
    newer token went on working: both sides kept refreshing. A replay within a few seconds
    (two tabs refreshing at once) is only refused."""
    admin = await login("admin")
    name = f"replay_{id(client) % 100000}"
    user_id, tokens = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "password-123"
    )
    credentials = {"username": name, "password": "password-123"}
    first = tokens["refresh_token"]
    other = (await client.post("/auth/login", json=credentials)).json()["refresh_token"]

    async def refreshed(token: str) -> Any:
        return await client.post("/auth/refresh", json={"refresh_token": token})

    second = (await refreshed(first)).json()["refresh_token"]
    assert_error(await refreshed(first), 401, "invalid_token")  # at once: a race, no more
    assert (await refreshed(other)).status_code == 200
    async with app.state.pool.connection() as conn:  # spent a minute ago
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() - interval '1 minute' "
            "WHERE user_id = %s AND revoked_at IS NOT NULL",
            (user_id,),
        )
    assert_error(await refreshed(first), 401, "invalid_token")
    assert_error(await refreshed(second), 401, "invalid_token")  # every session ended
    # audited, as every security change (a probe: only logged)
    trail = await client.get(
        "/audit", headers=admin, params={"entity": "user", "entity_id": str(user_id)}
    )
    ended = [a for a in trail.json()["items"] if a["action"] == "end_sessions"]
    assert [a["after"] for a in ended] == [{"reason": "refresh_token_replayed"}], trail.text


def test_an_imported_account_s_login_costs_what_any_other_does(monkeypatch: Any) -> None:
    """A probe: a wrong password for an account still on its (cheaply hashed) initial password
    was answered in ~5 ms, against ~300 ms for any other account or an unknown name — a login
    told those accounts apart. Their check spends the default cost too."""
    from app.auth import passwords

    cheap = passwords.hash_random_password("a-random-initial-password")
    own = passwords.hash_password("my own one")
    dummy = passwords._dummy_hash()  # made before the hasher is replaced
    spent: list[str] = []
    real = passwords._hasher

    class Counting:  # the real hasher, its verifications noted
        def verify(self, password_hash: str, password: str) -> bool:
            spent.append(password_hash)
            return real.verify(password_hash, password)

    monkeypatch.setattr(passwords, "_hasher", Counting())
    assert not passwords.verify_password(cheap, "wrong-password")
    assert dummy in spent  # the default cost, spent
    assert passwords.verify_password(cheap, "a-random-initial-password")
    spent.clear()
    assert not passwords.verify_password(own, "wrong-password")
    assert dummy not in spent  # an account at the default cost: once


async def test_a_signed_out_or_reset_refresh_token_sent_again_is_only_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Only a token spent by a refresh is a copy in other hands. One signed out (a stale tab's
    retry) or revoked by a password change (an old stolen one) is refused a minute later, and
    the user's other sessions go on. Before, both ended every session, the second after every
    password change (auth probe)."""
    admin = await login("admin")
    name = f"signedout_{id(client) % 100000}"
    user_id, laptop = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "password-123"
    )
    phone = (
        await client.post("/auth/login", json={"username": name, "password": "password-123"})
    ).json()

    async def a_minute_ago() -> None:
        async with app.state.pool.connection() as conn:
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() - interval '1 minute' "
                "WHERE user_id = %s AND revoked_at IS NOT NULL",
                (user_id,),
            )

    out = await client.post("/auth/logout", json={"refresh_token": laptop["refresh_token"]})
    assert out.status_code == 204, out.text
    await a_minute_ago()
    again = await client.post("/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert_error(again, 401, "invalid_token")
    assert (await client.get("/auth/me", headers=bearer(phone))).status_code == 200
    changed = await client.post(
        "/auth/password",
        headers=bearer(phone),
        json={"current_password": "password-123", "new_password": "brand-new-456"},
    )
    assert changed.status_code == 200, changed.text
    fresh = (
        await client.post("/auth/login", json={"username": name, "password": "brand-new-456"})
    ).json()
    await a_minute_ago()
    stolen = await client.post("/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert_error(stolen, 401, "invalid_token")
    assert (await client.get("/auth/me", headers=bearer(fresh))).status_code == 200


async def test_two_replays_of_one_spent_refresh_token_at_once_are_both_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Two copies of a token spent a while ago, sent at the same moment: each refresh held the
    user's row to share and the replay's end of sessions then asked it exclusively, so the two
    deadlocked (PostgreSQL ended one with an error). Both are refused, every session ends."""
    admin = await login("admin")
    name = f"replays_{id(client) % 100000}"
    user_id, tokens_ = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "password-123"
    )
    first = tokens_["refresh_token"]
    second = (await client.post("/auth/refresh", json={"refresh_token": first})).json()
    async with app.state.pool.connection() as conn:  # spent a minute ago
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() - interval '1 minute' "
            "WHERE user_id = %s AND revoked_at IS NOT NULL",
            (user_id,),
        )
    for _ in range(5):
        answers = await asyncio.gather(
            *(client.post("/auth/refresh", json={"refresh_token": first}) for _ in range(4))
        )
        for answer in answers:
            assert_error(answer, 401, "invalid_token")
    later = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert_error(later, 401, "invalid_token")
    assert_error(await client.get("/auth/me", headers=bearer(second)), 401, "token_revoked")


async def test_a_password_set_ends_the_access_tokens_issued_before(
    client: Any, login: Any, demo: Any, settings: Any
) -> None:
    """Probe F: a reset revoked the refresh tokens, but a stolen access token kept working
    until it expired. Probes T and U: one issued in the same second as the reset still did
    (the cut-off was in whole seconds); now a token lives as long as its session."""
    admin = await login("admin")
    name = f"reset_{id(client) % 100000}"
    user_id, issued = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "password-123"
    )
    stolen = bearer(issued)
    # a token of a release before sessions (no sid), issued a while ago
    old = tokens.issue(settings.jwt_key(), user_id, "access", 900)[0]
    claims = tokens.decode(settings.jwt_key(), old, "access")
    legacy = jwt.encode({**claims, "iat": claims["iat"] - 5}, settings.jwt_key(), "HS256")
    for headers in (stolen, {"Authorization": f"Bearer {legacy}"}):
        assert (await client.get("/auth/me", headers=headers)).status_code == 200
    reset = await client.patch(  # at once: most often within the second of the log-in
        f"/users/{user_id}", headers=admin, json={"password": "password-456"}
    )
    assert reset.status_code == 200, reset.text
    trail = await client.get(  # probe T: the update's rows show no password: this one does
        "/audit",
        headers=admin,
        params={"entity": "user", "entity_id": str(user_id), "action": "set_password"},
    )
    assert trail.status_code == 200 and len(trail.json()["items"]) == 1, trail.text
    for headers in (stolen, {"Authorization": f"Bearer {legacy}"}):
        assert_error(await client.get("/auth/me", headers=headers), 401, "token_revoked")
    new = await client.post("/auth/login", json={"username": name, "password": "password-456"})
    assert (await client.get("/auth/me", headers=bearer(new.json()))).status_code == 200


async def test_any_user_changes_its_own_password(client: Any, login: Any, demo: Any) -> None:
    """Probe F: an imported user's initial password could never be changed by its user (only
    ``PATCH /users`` with ``users.write``), so the importer knew it for ever."""
    admin = await login("admin")
    name = f"own_pw_{id(client) % 100000}"
    _, tokens = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "initial-123"
    )
    old = bearer(tokens)
    wrong = {"current_password": "nope-nope", "new_password": "mine-45678"}
    assert_error(
        await client.post("/auth/password", headers=old, json=wrong), 422, "wrong_password"
    )
    short = {"current_password": "initial-123", "new_password": "short"}
    assert_error(await client.post("/auth/password", headers=old, json=short), 400)
    body = {"current_password": "initial-123", "new_password": "mine-45678"}
    changed = await client.post("/auth/password", headers=old, json=body)
    assert changed.status_code == 200, changed.text
    assert (await client.get("/auth/me", headers=bearer(changed.json()))).status_code == 200
    assert_error(await client.get("/auth/me", headers=old), 401, "token_revoked")
    again = await client.post("/auth/login", json={"username": name, "password": "initial-123"})
    assert_error(again, 401, "invalid_credentials")
    mine = await client.post("/auth/login", json={"username": name, "password": "mine-45678"})
    assert mine.status_code == 200, mine.text
    # probe T: one's own password is not set by PATCH /users (no current password asked, no
    # log-in limits: a leaked access token of an admin took the account for good)
    own = await client.get("/auth/me", headers=admin)
    mine_patched = await client.patch(
        f"/users/{own.json()['user_id']}", headers=admin, json={"password": "taken-over-1"}
    )
    assert_error(mine_patched, 422, "own_account")
    key = await client.post(
        "/api-keys", headers=admin, json={"name": f"{name}_k", "permissions": ["orgs.read"]}
    )
    as_key = {"X-API-Key": key.json()["key"]}
    assert_error(await client.post("/auth/password", headers=as_key, json=body), 403, "not_a_user")


async def test_a_password_given_by_an_administrator_is_replaced_before_anything_else(
    client: Any, login: Any, demo: Any
) -> None:
    """A password someone else chose (an ERP import's one-time one stayed the user's for good;
    a reset an administrator made knowing it) is replaced at the first sign-in when asked
    (``must_change_password``): until then every request but the change and ``GET /auth/me`` is
    403 ``password_change_required`` — a write with a body, a read, a store clerk's rebate claim
    —, the same password again is 422 ``same_password``, and the change clears it."""
    admin = await login("admin")
    name = f"due_{secrets.token_hex(3)}"
    made = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["STORE-HZ-01"],
            "username": name,
            "password": "given-12345",
            "roles": ["store_clerk"],
            "must_change_password": True,
        },
    )
    assert made.status_code == 201 and made.json()["must_change_password"] is True, made.text
    user_id = made.json()["id"]
    signed = await client.post("/auth/login", json={"username": name, "password": "given-12345"})
    assert signed.status_code == 200, signed.text
    given = bearer(signed.json())
    me = await client.get("/auth/me", headers=given)
    assert me.status_code == 200 and me.json()["must_change_password"] is True, me.text
    assert me.json()["org_name"].startswith("Hangzhou West Lake")
    for method, path, body in (
        ("GET", "/orgs", None),
        ("POST", "/api-keys", {"name": "k", "permissions": ["orgs.read"]}),
        ("POST", "/rebates/claims", {"serial": "X" * 20, "pin": "1234"}),
    ):
        refused = await client.request(method, path, headers=given, json=body)
        assert_error(refused, 403, "password_change_required")
    kept = {"current_password": "given-12345", "new_password": "given-12345"}
    assert_error(
        await client.post("/auth/password", headers=given, json=kept), 422, "same_password"
    )
    mine = {"current_password": "given-12345", "new_password": "mine-12345"}
    changed = await client.post("/auth/password", headers=given, json=mine)
    assert changed.status_code == 200, changed.text
    now = bearer(changed.json())
    assert (await client.get("/orgs", headers=now)).status_code == 200
    assert (await client.get("/auth/me", headers=now)).json()["must_change_password"] is False
    # a reset asking for it again: the next sign-in is held the same way
    reset = await client.patch(
        f"/users/{user_id}",
        headers=admin,
        json={"password": "reset-12345", "must_change_password": True},
    )
    assert reset.status_code == 200 and reset.json()["must_change_password"] is True, reset.text
    again = await client.post("/auth/login", json={"username": name, "password": "reset-12345"})
    assert_error(
        await client.get("/orgs", headers=bearer(again.json())), 403, "password_change_required"
    )


async def test_a_user_held_to_a_password_change_cannot_lift_it_with_its_own_api_key(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: an administrator resets an organisation admin's password and asks for it to be replaced
    at the next sign-in (PATCH /users/{id} ``must_change_password``). A user expects that
    account to reach nothing but POST /auth/password until it chose its own password — and one's
    own account is never edited through PATCH /users (422 ``own_account`` for one's password,
    status and roles, by a key one made too). Instead the account's API key, made before,
    clears its own ``must_change_password`` (200), and the password the administrator chose
    stays the account's for good, every route open to it."""
    admin = await login("admin")
    name = f"pz_{secrets.token_hex(3)}"
    made = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["AGENT-ZJ"],
            "username": name,
            "password": "mine-123456",
            "roles": ["org_admin"],
        },
    )
    assert made.status_code == 201, made.text
    user_id = made.json()["id"]
    signed = await client.post("/auth/login", json={"username": name, "password": "mine-123456"})
    mine = (await client.get("/auth/me", headers=bearer(signed.json()))).json()["permissions"]
    key = await client.post(  # the account's own key, with all it holds (an integration's)
        "/api-keys", headers=bearer(signed.json()), json={"name": f"{name}_k", "permissions": mine}
    )
    assert key.status_code == 201, key.text
    as_key = {"X-API-Key": key.json()["key"]}
    reset = await client.patch(
        f"/users/{user_id}",
        headers=admin,
        json={"password": "given-123456", "must_change_password": True},
    )
    assert reset.status_code == 200 and reset.json()["must_change_password"] is True, reset.text
    lifted = await client.patch(
        f"/users/{user_id}", headers=as_key, json={"must_change_password": False}
    )
    given = await client.post("/auth/login", json={"username": name, "password": "given-123456"})
    reached = await client.get("/orgs", headers=bearer(given.json()))
    assert_error(lifted, 422, "own_account")
    assert_error(reached, 403, "password_change_required")


async def test_the_limits_keys_do_not_name_the_account(
    client: Any, app: Any, settings: Any
) -> None:
    """Probe N: a log-in limit's Redis keys held a plain SHA-256 of the account — for a member
    ``member:<brand>:<phone>``, which gives the phone back in seconds. The name is keyed now."""
    import hashlib

    from app.auth.limits import login_limiter

    account = "member:1:13900001111"
    plain = hashlib.sha256(account.encode()).hexdigest()[:32]
    assert plain not in login_limiter(app.state)._keys(account, "192.0.2.1")[1]
    wrong = await client.post("/auth/login", json={"username": "nobody-x", "password": "wrong"})
    assert wrong.status_code == 401
    names = [
        k async for k in app.state.redis.scan_iter(match=f"{settings.redis_namespace}:login:*")
    ]
    assert names and not any(
        hashlib.sha256(b"nobody-x").hexdigest()[:32].encode() in k for k in names
    )


def test_a_password_is_one_password_in_any_unicode_form() -> None:
    """Probe Q: a password set with composed accents (NFC) was refused typed decomposed (NFD),
    each try counted against the login limits. Hashes made before, of the password as typed,
    still verify."""
    import unicodedata

    from app.auth.passwords import hash_password, verify_password

    typed = "Pässwörd-密码-１"
    composed, decomposed = (unicodedata.normalize(f, typed) for f in ("NFC", "NFD"))
    assert composed != decomposed
    stored = hash_password(composed)
    assert verify_password(stored, decomposed) and verify_password(stored, composed)
    assert verify_password(stored, "Pässwörd-密码-1")  # full-width digit: NFKC
    assert not verify_password(stored, "Passwörd-密码-1")
    from argon2 import PasswordHasher

    older = PasswordHasher().hash(decomposed)  # a hash of before, of the raw text
    assert verify_password(older, decomposed) and not verify_password(older, "x")


async def test_a_sign_out_ends_its_own_session_at_once(client: Any, login: Any, demo: Any) -> None:
    """Probe U: a sign-out revoked its refresh token only; its access token went on working
    until it expired (15 minutes, on a handheld the next shift picks up). Now the session ends:
    its access tokens with it, those of earlier refreshes too; another sign-in's go on."""
    admin = await login("admin")
    name = f"signout_{id(client) % 100000}"
    _, first = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "password-123"
    )
    other = await client.post("/auth/login", json={"username": name, "password": "password-123"})
    renewed = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert other.status_code == 200 and renewed.status_code == 200, renewed.text

    async def me(issued: dict[str, Any]) -> Any:
        return await client.get("/auth/me", headers=bearer(issued))

    for issued in (first, renewed.json(), other.json()):  # a refresh goes on with its session
        assert (await me(issued)).status_code == 200
    out = await client.post("/auth/logout", json={"refresh_token": renewed.json()["refresh_token"]})
    assert out.status_code == 204
    assert_error(await me(first), 401, "token_revoked")
    assert_error(await me(renewed.json()), 401, "token_revoked")
    assert (await me(other.json())).status_code == 200  # the other device is still signed in
    again = await client.post(
        "/auth/refresh", json={"refresh_token": renewed.json()["refresh_token"]}
    )
    assert_error(again, 401, "invalid_token")


async def test_dead_refresh_tokens_are_cleared_as_new_ones_are_issued(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Probe W: a row per log-in and per refresh, kept for ever (5 GB a year for 2,000 staff).
    Expired rows and rows spent more than a week ago go when the user gets a new pair."""
    admin = await login("admin")
    name = f"tidy_{id(client) % 100000}"
    user_id, first = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "password-123"
    )
    second = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    async with app.state.pool.connection() as conn:
        await conn.execute(  # the first (spent) ages past the week; one more expired long ago
            "UPDATE refresh_tokens SET revoked_at = now() - interval '8 days' "
            "WHERE user_id = %s AND revoked_at IS NOT NULL",
            (user_id,),
        )
        await conn.execute(
            "INSERT INTO refresh_tokens (id, user_id, expires_at) "
            "VALUES (gen_random_uuid(), %s, now() - interval '1 day')",
            (user_id,),
        )
    third = await client.post("/auth/login", json={"username": name, "password": "password-123"})
    assert third.status_code == 200, third.text
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT revoked_at IS NULL AS live FROM refresh_tokens WHERE user_id = %s",
                (user_id,),
            )
        ).fetchall()
    assert sorted(r["live"] for r in rows) == [True, True]  # the second's and the third's
    for issued in (second.json(), third.json()):  # both sessions still work
        assert (await client.get("/auth/me", headers=bearer(issued))).status_code == 200


async def test_a_refresh_at_the_moment_of_a_reset_does_not_outlive_it(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """Review R5: a refresh running while a user's sessions were ended spent its token and
    inserted the next one, which the revocation (already past that row) never saw: a thief
    refreshing in a loop kept a live session through a reset. Here the refresh's transaction
    is held open while the sessions end: the end waits for it, then revokes its new token."""
    from app.auth import service

    admin = await login("admin")
    name = f"race_{id(client) % 100000}"
    user_id, issued = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "password-123"
    )
    async with app.state.pool.connection() as refreshing, app.state.pool.connection() as ending:
        renewed = await service.refresh(refreshing, settings, issued["refresh_token"])
        end = asyncio.create_task(service.end_sessions(ending, user_id))
        await asyncio.sleep(0.5)  # the end has started, and waits for the user's row
        ended_early = end.done()
        await refreshing.commit()
        await end
        await ending.commit()
    assert not ended_early
    assert_error(
        await client.post("/auth/refresh", json={"refresh_token": renewed.refresh_token}),
        401,
        "invalid_token",
    )
    me = await client.get("/auth/me", headers={"Authorization": f"Bearer {renewed.access_token}"})
    assert_error(me, 401, "token_revoked")


async def test_a_key_its_maker_made_follows_the_makers_own_rules(
    client: Any, login: Any, demo: Any
) -> None:
    """Review R5: through an API key it made, a user (a leaked access token is enough) set its
    own password for good, around ``own_account``."""
    admin = await login("admin")
    me = (await client.get("/auth/me", headers=admin)).json()
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": f"own_{id(client) % 100000}", "permissions": me["permissions"]},
    )
    assert made.status_code == 201, made.text
    as_key = {"X-API-Key": made.json()["key"]}
    taken = await client.patch(
        f"/users/{me['user_id']}", headers=as_key, json={"password": "taken-over-2"}
    )
    assert_error(taken, 422, "own_account")


async def _change_paused_while(
    client: Any, monkeypatch: Any, tokens_of: dict[str, Any], meanwhile: Any
) -> Any:
    """``POST /auth/password`` from ``original-pass-1`` to ``changed-pass-1``, with ``meanwhile``
    awaited after the current password was checked and before the change is written: its
    answer."""
    from app.auth import passwords

    paused, go = threading.Event(), threading.Event()
    original = passwords.hash_password

    def slow_hash(password: str) -> str:
        if password == "changed-pass-1":  # the current password was verified
            paused.set()
            go.wait(20)
        return original(password)

    monkeypatch.setattr(passwords, "hash_password", slow_hash)
    change = asyncio.ensure_future(
        client.post(
            "/auth/password",
            headers=bearer(tokens_of),
            json={"current_password": "original-pass-1", "new_password": "changed-pass-1"},
        )
    )
    for _ in range(200):
        if paused.is_set():
            break
        await asyncio.sleep(0.05)
    assert paused.is_set()
    try:
        await meanwhile()
    finally:
        go.set()
    return await change


async def test_an_admin_reset_during_a_password_change_is_not_overwritten(
    client: Any, login: Any, demo: Any, monkeypatch: Any
) -> None:
    """A probe: an administrator's reset of a compromised account, committed while the
    intruder's own ``POST /auth/password`` was between its check of the current password and its
    write (the argon2 hash, ~0.1 s), was overwritten by the intruder's password, and the intruder
    got a fresh token pair. The change writes only the row it checked (as ``login``, review R5):
    the reset wins, and the change is refused (401 ``token_revoked``: the reset ended its
    session)."""
    admin = await login("admin")
    name = f"pwrace_{secrets.token_hex(4)}"
    user_id, issued = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "original-pass-1"
    )

    async def reset() -> None:
        done = await client.patch(
            f"/users/{user_id}", headers=admin, json={"password": "admin-reset-pass-1"}
        )
        assert done.status_code == 200, done.text

    answer = await _change_paused_while(client, monkeypatch, issued, reset)
    assert_error(answer, 401, "token_revoked")
    for password, status in (("admin-reset-pass-1", 200), ("changed-pass-1", 401)):
        got = await client.post("/auth/login", json={"username": name, "password": password})
        assert got.status_code == status, got.text


async def test_a_password_change_whose_sessions_ended_meanwhile_issues_no_pair(
    client: Any, login: Any, demo: Any, monkeypatch: Any
) -> None:
    """A probe: the user's sessions ended (here: the account deactivated and activated again)
    while its password change was being hashed; the change went on, set the password and
    issued a new pair to the session that had been ended. It is refused (401 ``token_revoked``)
    and the password stays."""
    admin = await login("admin")
    name = f"pwend_{secrets.token_hex(4)}"
    user_id, issued = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "original-pass-1"
    )

    async def off_and_on() -> None:
        for status in ("inactive", "active"):
            done = await client.patch(f"/users/{user_id}", headers=admin, json={"status": status})
            assert done.status_code == 200, done.text

    answer = await _change_paused_while(client, monkeypatch, issued, off_and_on)
    assert_error(answer, 401, "token_revoked")
    got = await client.post("/auth/login", json={"username": name, "password": "original-pass-1"})
    assert got.status_code == 200, got.text


async def test_an_api_key_for_org_zero_is_not_made_for_the_caller_s_own_organisation(
    client: Any, login: Any
) -> None:
    """A probe: ``POST /api-keys`` with ``"org_id": 0`` (an unset form field sent as 0, say)
    made, silently, a key for the caller's own organisation (``data.org_id or actor.org_id``):
    for a brand admin a brand-wide key. 0 names no organisation: 404 as any other such id."""
    admin = await login("admin")
    for org_id in (-1, 0):
        made = await client.post(
            "/api-keys",
            headers=admin,
            json={"name": "k", "permissions": ["orgs.read"], "org_id": org_id},
        )
        assert_error(made, 404)


async def test_a_key_revoked_twice_at_once_is_revoked_once(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: two revocations of one key at once (a double click, a retried request) both
    read it live before either wrote, and both wrote a ``revoke`` audit row. Only the one whose
    update changed it is audited; both answer the revoked key."""
    admin = await login("admin")
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": "twice", "permissions": ["orgs.read"], "org_id": demo["AGENT-ZJ"]},
    )
    assert made.status_code == 201, made.text
    key_id = made.json()["api_key"]["id"]
    async with app.state.pool.connection() as holder:
        # a third transaction holds the key's row: both revocations read it and then queue up
        await holder.execute("SELECT 1 FROM api_keys WHERE id = %s FOR UPDATE", (key_id,))
        first = asyncio.ensure_future(client.post(f"/api-keys/{key_id}/revoke", headers=admin))
        second = asyncio.ensure_future(client.post(f"/api-keys/{key_id}/revoke", headers=admin))
        await asyncio.sleep(1.0)
        await holder.commit()
    answers = [await first, await second]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert answers[0].json()["revoked_at"] == answers[1].json()["revoked_at"] is not None
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM audit_log "
                "WHERE entity = 'api_key' AND action = 'revoke' AND entity_id = %s",
                (str(key_id),),
            )
        ).fetchone()
    assert row["n"] == 1, f"{row['n']} revoke rows for one revocation"


async def test_one_slow_request_of_a_key_stalls_no_other_request_of_that_key(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a partner's key ran a long GET (a big export; here one held up by a lock on
    ``documents``) while its other calls went on, and those calls (``GET /orgs``) with the same
    key hung until the long request ended — ``load_api_key`` wrote ``last_used_at`` in the
    request's own transaction, so the first request of a minute held the key's row lock to its
    end and every other request of the key (and its revocation) waited on it. The last use is
    now written on a connection of its own: the second call answers at once, and the last use
    is recorded all the same."""
    admin = await login("admin")
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": f"slow-{time.monotonic_ns()}", "permissions": ["orgs.read", "reports.read"]},
    )
    assert made.status_code == 201, made.text
    key, key_id = {"X-API-Key": made.json()["key"]}, made.json()["api_key"]["id"]
    url = os.environ["TRACECODE_DATABASE_URL"]
    async with await psycopg.AsyncConnection.connect(url) as blocker:
        await blocker.execute("LOCK TABLE documents IN ACCESS EXCLUSIVE MODE")
        slow = asyncio.create_task(client.get("/documents/export", headers=key))
        await asyncio.sleep(1.0)  # the export has loaded its key and waits on documents
        started = time.monotonic()
        try:
            other = await asyncio.wait_for(client.get("/orgs", headers=key), timeout=5)
            waited = time.monotonic() - started
        except TimeoutError:
            waited = None
        finally:
            await blocker.rollback()
        await slow
    assert waited is not None and waited < 2, f"GET /orgs with the key waited {waited} s"
    assert other.status_code == 200
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(20):  # written in the background, at once
            used = await (
                await conn.execute("SELECT last_used_at FROM api_keys WHERE id = %s", (key_id,))
            ).fetchone()
            if used is not None and used[0] is not None:
                break
            await asyncio.sleep(0.1)
    assert used is not None and used[0] is not None, "the key's last use was not written"


async def test_a_key_without_a_user_permission_reads_no_roles(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a line system's key holding only ``sales.claim`` called ``GET /roles`` and got
    200 with every built-in and custom role of its brand line — names, descriptions and
    permission sets — while every other list answered 403. It takes ``users.read``,
    ``users.write`` or ``roles.write`` (those of the console's pages that load the roles)."""
    admin = await login("admin")
    made = await client.post(
        "/roles", headers=admin, json={"name": "probe_partner_role", "permissions": ["orgs.read"]}
    )
    assert made.status_code in (201, 409), made.text
    for permissions, status in ((["sales.claim"], 403), (["users.read"], 200)):
        created = await client.post(
            "/api-keys",
            headers=admin,
            json={"name": f"roles-{time.monotonic_ns()}", "permissions": permissions},
        )
        assert created.status_code == 201, created.text
        response = await client.get("/roles", headers={"X-API-Key": created.json()["key"]})
        if status == 403:
            assert_error(response, 403, "permission_denied")
        else:
            assert response.status_code == 200, response.text


async def test_the_token_pairs_of_login_and_refresh_are_answered_no_store(
    client: Any, demo: Any
) -> None:
    """A probe: ``POST /auth/login`` and ``POST /auth/refresh`` hand out an access and a
    refresh token with no ``Cache-Control`` at all: ``app.front`` adds ``no-store`` to requests
    that carry credentials in a header or a cookie, and these carry theirs in the body, so a
    browser, a WebView or a proxy was free to keep the tokens on disk (RFC 6749 5.1: an answer
    holding tokens is ``no-store``)."""
    login = await client.post(
        "/auth/login", json={"username": "analyst", "password": DEMO_PASSWORD}
    )
    assert login.status_code == 200, login.text
    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    seen = [login.headers.get("cache-control"), refreshed.headers.get("cache-control")]
    assert seen == ["no-store", "no-store"]


async def _agent_with_staff(
    client: Any, login: Any, password: str = "original-pass-1"
) -> tuple[dict[str, str], int, int, str, dict[str, Any]]:
    """A brand of the test's own, an agent of it and a clerk there, signed in: the brand
    admin's headers, the agent's id, the clerk's id, name and tokens."""
    brand, admin = await onboarded_brand(client, login)
    agent = await new_org(client, admin, "agent", brand["id"])
    name = f"line_{secrets.token_hex(4)}"
    user_id, issued = await new_staff(
        client, admin, agent["id"], name, ["warehouse_clerk"], password
    )
    return admin, int(agent["id"]), user_id, name, issued


async def test_a_login_checked_before_its_organisations_deactivation_issues_no_pair_after_it(
    client: Any, login: Any, monkeypatch: Any
) -> None:
    """A probe: the log-in checked the organisation's line before argon2 (~0.1 s) and its write
    re-checked the user's row only: the agent deactivated meanwhile (answered 200 first), the
    log-in still answered 200 with a token pair. Checked again after argon2, under a share lock
    of the line that a deactivation's write waits for: 401 ``account_inactive``."""
    from app.auth import passwords

    admin, agent, _, name, _ = await _agent_with_staff(client, login)
    paused, go = threading.Event(), threading.Event()
    original = passwords.verify_password

    def slow_verify(stored: Any, password: str) -> bool:
        paused.set()
        go.wait(20)
        return bool(original(stored, password))

    monkeypatch.setattr(passwords, "verify_password", slow_verify)
    signing = asyncio.ensure_future(
        client.post("/auth/login", json={"username": name, "password": "original-pass-1"})
    )
    for _ in range(200):
        if paused.is_set():
            break
        await asyncio.sleep(0.05)
    try:
        assert paused.is_set()
        off = await client.post(f"/orgs/{agent}/deactivate", headers=admin)
        assert off.status_code == 200, off.text
    finally:
        go.set()
    assert_error(await signing, 401, "account_inactive")


async def test_a_deactivation_waits_for_a_login_past_its_check_of_the_organisation(
    client: Any, app: Any, login: Any
) -> None:
    """A probe: a log-in held at its final write (the user's row held here) while the agent's
    deactivation answered 200, then answered 200 with a pair. The log-in holds the
    organisation's line from its last check to its end: the deactivation waits for it, and a
    pair is only issued before the deactivation is."""
    admin, agent, user_id, name, _ = await _agent_with_staff(client, login)
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (user_id,))
        signing = asyncio.ensure_future(
            client.post("/auth/login", json={"username": name, "password": "original-pass-1"})
        )
        assert await lock_waiters(watch, 1), "the log-in should wait for the user's row"
        off = asyncio.ensure_future(client.post(f"/orgs/{agent}/deactivate", headers=admin))
        waited = await lock_waiters(watch, 2)  # ~5 s when it does not
        await holder.commit()
        answer, deactivated = await asyncio.gather(signing, off)
    assert deactivated.status_code == 200, deactivated.text
    assert answer.status_code == 401 or waited, "a pair issued after the deactivation answered"


async def test_a_password_change_checked_before_its_organisations_deactivation_issues_no_pair(
    client: Any, login: Any, monkeypatch: Any
) -> None:
    """A probe, as the log-in's: the agent deactivated while the password change hashed the new
    password (its organisation checked before, as the caller was loaded), the change answered
    200 with a new pair. Refused, 401 ``account_inactive``, and the password stays."""
    admin, agent, _, name, issued = await _agent_with_staff(client, login)

    async def deactivate() -> None:
        off = await client.post(f"/orgs/{agent}/deactivate", headers=admin)
        assert off.status_code == 200, off.text

    answer = await _change_paused_while(client, monkeypatch, issued, deactivate)
    assert_error(answer, 401, "account_inactive")
    on = await client.post(f"/orgs/{agent}/activate", headers=admin)
    assert on.status_code == 200, on.text
    got = await client.post("/auth/login", json={"username": name, "password": "original-pass-1"})
    assert got.status_code == 200, got.text


async def test_a_key_made_while_its_organisation_is_deactivated_is_refused(
    client: Any, app: Any, login: Any
) -> None:
    """A probe: ``create_api_key`` read the organisation's line, then (made by a key) waited for
    its maker's row: a deactivation committed meanwhile and the key was still made, 201, in the
    inactive organisation. The line is read again under the brand's role-name lock, which the
    deactivation writes under: 422 ``org_inactive``."""
    admin, agent, _, _, _ = await _agent_with_staff(client, login)
    parent = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": "k", "permissions": ["apikeys.write", "orgs.read"]},
    )
    assert parent.status_code == 201, parent.text
    key_id, key = parent.json()["api_key"]["id"], parent.json()["key"]
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM api_keys WHERE id = %s FOR UPDATE", (key_id,))
        making = asyncio.ensure_future(
            client.post(
                "/api-keys",
                headers={"X-API-Key": key},
                json={"name": "child", "permissions": ["orgs.read"], "org_id": agent},
            )
        )
        assert await lock_waiters(watch, 1), "the key should wait for its maker's row"
        off = await client.post(f"/orgs/{agent}/deactivate", headers=admin)
        assert off.status_code == 200, off.text
        await holder.commit()
        made = await making
    assert_error(made, 422, "org_inactive")


# -- no connection held while argon2 runs ----------------------------------------------------------

# the first read of a log-in and of a password change (``app.auth.service``), as pg_stat_activity
# shows it while its connection waits
LOGIN_READ = "%u.password_hash, u.status%"
CHANGE_READ = "%SELECT password_hash, sessions_from FROM users%"


def paused_checks(monkeypatch: Any) -> tuple[list[int], threading.Event]:
    """``verify_password`` held until the event is set: ``entered`` counts the checks begun."""
    from app.auth import passwords

    entered, go, original = [], threading.Event(), passwords.verify_password

    def paused(stored: Any, password: str) -> bool:
        entered.append(1)
        go.wait(30)
        return bool(original(stored, password))

    monkeypatch.setattr(passwords, "verify_password", paused)
    return entered, go


async def checks_begun(entered: list[int], count: int) -> None:
    for _ in range(300):
        if len(entered) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(entered)} password checks begun, not {count}")


async def held_in_transaction(app: Any, read: str) -> int:
    """Server sessions idle in a transaction whose last statement is ``read`` (a LIKE pattern):
    a request holding its pooled connection while it waits for something else."""
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'idle in transaction' AND query LIKE %s",
                (read,),
            )
        ).fetchone()
    return int(row["n"])


@pytest.mark.parametrize("what", ["login", "password"])
async def test_no_pooled_connection_is_held_while_the_password_is_checked(
    client: Any, app: Any, login: Any, demo: Any, monkeypatch: Any, what: str
) -> None:
    """A probe: each log-in held a pooled connection, idle in its transaction, through argon2id
    (~0.25 s on a thread), and right passwords are never counted against the log-in limits: one
    account's burst of log-ins held every connection and the rest of the API waited, then 503.
    The user is read in a short transaction, the connection given back, the password checked,
    and the write made in a transaction of its own (a password change the same way)."""
    admin = await login("admin")
    name = f"argon_{secrets.token_hex(4)}"
    _, issued = await new_staff(
        client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "original-pass-1"
    )
    entered, go = paused_checks(monkeypatch)
    if what == "login":
        body = {"username": name, "password": "original-pass-1"}
        sent, read = client.post("/auth/login", json=body), LOGIN_READ
    else:
        body = {"current_password": "original-pass-1", "new_password": "changed-pass-1"}
        sent, read = client.post("/auth/password", headers=bearer(issued), json=body), CHANGE_READ
    answer = asyncio.ensure_future(sent)
    try:
        await checks_begun(entered, 1)
        held = await held_in_transaction(app, read)
    finally:
        go.set()
    assert (await answer).status_code == 200, (await answer).text
    assert held == 0, f"the {what} held its pooled connection through the password check"


async def test_log_ins_wait_their_turn_of_the_argon2_checks_holding_nothing(
    client: Any, app: Any, login: Any, demo: Any, monkeypatch: Any
) -> None:
    """The argon2 checks of a process are bounded (``password_checks``, as many as the thread
    pool has threads; 2 here): the others wait for their turn before they ask for a connection,
    so a burst of right-password log-ins holds neither threads nor connections beyond it."""
    from app.auth import service
    from tests.points_support import member_client

    admin = await login("admin")
    name = f"turns_{secrets.token_hex(4)}"
    await new_staff(client, admin, demo["STORE-HZ-01"], name, ["store_clerk"], "original-pass-1")
    monkeypatch.setattr(service, "CHECK_SLOTS", 2, raising=False)
    monkeypatch.setattr(service, "_CHECKS", weakref.WeakKeyDictionary(), raising=False)
    entered, go = paused_checks(monkeypatch)
    body = {"username": name, "password": "original-pass-1"}
    async with member_client(app) as own:  # an address of its own: 4 attempts in flight at once
        logins = [asyncio.ensure_future(own.post("/auth/login", json=body)) for _ in range(4)]
        try:
            await checks_begun(entered, 2)
            await asyncio.sleep(0.5)  # the other two, not bounded, would have begun by now
            begun, held = len(entered), await held_in_transaction(app, LOGIN_READ)
        finally:
            go.set()
        answers = await asyncio.gather(*logins)
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert begun == 2, f"{begun} argon2 checks at once, past the 2 allowed"
    assert held == 0, "log-ins waiting for their turn held pooled connections"
