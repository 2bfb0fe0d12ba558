"""Who sees the field force's records (app/field/scope.py): reps their own, supervisors their
reps', brand and organisation admins their subtree's, another brand nothing."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.field_support import check_in, client_id, nameplate, other_brand_admin, user_id
from tests.helpers import acting, assert_error, key_of, new_user, onboarded_brand, signed_in
from tests.images import png
from tests.race_support import audit_rows, lock_waiters, twice_held

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def _records(client: Any, login: Any, demo: Any, rep_name: str, store: str) -> dict[str, int]:
    """A plan, a check-in and a review of ``rep_name`` at ``store``."""
    rep = await login(rep_name)
    plan = await client.post(
        "/field/plans",
        headers=rep,
        json={"period": "month", "starts_on": "2027-08-01", "title": f"{rep_name}'s August"},
    )
    assert plan.status_code == 201, plan.text
    plate = await nameplate(client, login, demo[store], by="admin")
    checkin = await check_in(client, rep, plate["code"], (23.1322, 113.3270))
    assert checkin.status_code == 201, checkin.text
    review = await client.post(
        "/field/reviews",
        headers=rep,
        json={
            "client_id": client_id(),
            "store_id": demo[store],
            "shelf_score": 3,
            "knowledge_score": 3,
            "checkin_id": checkin.json()["id"],
        },
    )
    assert review.status_code == 201, review.text
    return {
        "plan": plan.json()["id"],
        "checkin": checkin.json()["id"],
        "review": review.json()["id"],
    }


async def _seen(client: Any, headers: dict[str, str]) -> dict[str, set[int]]:
    """The ids of the plans, check-ins and reviews a caller lists."""
    seen = {}
    for kind, path in (
        ("plan", "/field/plans"),
        ("checkin", "/field/checkins"),
        ("review", "/field/reviews"),
    ):
        answer = await client.get(path, headers=headers, params={"per_page": 200})
        assert answer.status_code == 200, (path, answer.text)
        seen[kind] = {item["id"] for item in answer.json()["items"]}
    return seen


def _sees(seen: dict[str, set[int]], records: dict[str, int]) -> set[str]:
    return {kind for kind, record in records.items() if record in seen[kind]}


async def test_reps_supervisors_admins_and_other_brands_see_what_they_should(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    mine = await _records(client, login, demo, "fieldrep", "STORE-HZ-01")
    all_kinds = {"plan", "checkin", "review"}
    expected = {
        "fieldrep": all_kinds,  # their own
        "fieldsup": all_kinds,  # the rep's supervisor
        "admin": all_kinds,  # the brand's admin
        "agent_admin": all_kinds,  # the Zhejiang agent's administrator: its subtree
        "fieldrep2": set(),  # a peer under the same supervisor
        "gd_fieldrep": set(),
        "gd_admin": set(),  # another agent's administrator
        "analyst": None,  # no field permission: 403
    }
    for user, kinds in expected.items():
        headers = await login(user)
        if kinds is None:
            answer = await client.get("/field/checkins", headers=headers)
            assert_error(answer, 403, "permission_denied")
            continue
        assert _sees(await _seen(client, headers), mine) == kinds, user
    plan_url = f"/field/plans/{mine['plan']}"
    for user in ("fieldrep2", "gd_fieldrep", "gd_admin"):
        assert_error(await client.get(plan_url, headers=await login(user)), 404, "not_found")

    other = await other_brand_admin(client, login)
    assert _sees(await _seen(client, other), mine) == set()
    assert_error(await client.get(plan_url, headers=other), 404)
    assert_error(await client.post(f"{plan_url}/submit", headers=other), 404)
    exported = await client.get("/field/checkins", headers=other, params={"format": "csv"})
    assert exported.status_code == 200 and len(exported.content.splitlines()) == 1  # header only
    # the rep's track of the day of the check-in holds it; another brand's reads nothing of it
    own = (await client.get("/field/track", headers=await login("fieldrep"))).json()
    assert mine["checkin"] in [c["id"] for c in own["checkins"]]
    track = await client.get(
        "/field/track",
        headers=other,
        params={"rep_id": await user_id(app, "fieldrep"), "day": own["day"]},
    )
    assert track.status_code == 200 and track.json()["checkins"] == []
    assert_error(
        await client.get(f"/field/stores/{demo['STORE-HZ-01']}/nameplate", headers=other), 404
    )


async def test_an_admin_names_a_reps_supervisor_who_then_sees_the_reps_records(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    admin, boss = await login("admin"), await login("fieldsup")
    gd_rep = await user_id(app, "gd_fieldrep")
    theirs = await _records(client, login, demo, "gd_fieldrep", "STORE-GZ-01")
    assert _sees(await _seen(client, boss), theirs) == set()
    url = f"/field/reps/{gd_rep}/supervisor"
    named = await client.put(
        url, headers=admin, json={"supervisor_id": await user_id(app, "fieldsup")}
    )
    assert named.status_code == 200, named.text
    try:
        assert _sees(await _seen(client, boss), theirs) == {"plan", "checkin", "review"}
        submitted = await client.post(
            f"/field/plans/{theirs['plan']}/submit", headers=await login("gd_fieldrep")
        )
        assert submitted.status_code == 200, submitted.text
        approved = await client.post(f"/field/plans/{theirs['plan']}/approve", headers=boss)
        assert approved.json()["status"] == "approved", approved.text
    finally:
        cleared = await client.put(url, headers=admin, json={"supervisor_id": None})
        assert cleared.status_code == 200, cleared.text
    assert _sees(await _seen(client, boss), theirs) == set()

    bad = [
        (admin, {"supervisor_id": await user_id(app, "fieldrep2")}, 422, "bad_supervisor"),
        (admin, {"supervisor_id": gd_rep}, 422, "own_supervisor"),
        (boss, {"supervisor_id": await user_id(app, "fieldsup")}, 403, "permission_denied"),
        (await other_brand_admin(client, login), {"supervisor_id": None}, 404, "not_found"),
    ]
    for headers, body, status, code in bad:
        assert_error(await client.put(url, headers=headers, json=body), status, code)
    # nor the account of one stronger than the caller (probe B: every other edit refused it)
    strong = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["STORE-HZ-01"],
            "username": f"strong-{gd_rep}-{id(client)}",
            "password": "tracecode-demo",
            "roles": ["member_service", "finance"],
        },
    )
    assert strong.status_code == 201, strong.text
    assert_error(
        await client.put(
            f"/field/reps/{strong.json()['id']}/supervisor",
            headers=await login("agent_admin"),
            json={"supervisor_id": await user_id(app, "fieldsup")},
        ),
        403,
        "stronger_account",
    )


async def test_an_inactive_rep_or_supervisor_is_no_401_for_the_admin(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the supervisor endpoint loaded the rep and the supervisor as callers, so a
    departed rep's supervisor could not be cleared (401 account_inactive: to a client, the
    admin's own session was over), and a deactivated supervisor was a 401 too."""
    admin = await login("admin")
    made = {}
    for name, role in (("rep", "field_rep"), ("boss", "field_supervisor"), ("rep2", "field_rep")):
        created = await client.post(
            "/users",
            headers=admin,
            json={
                "org_id": demo["AGENT-ZJ"],
                "username": f"gone-{name}-{id(client)}",
                "password": "tracecode-demo",
                "roles": [role],
            },
        )
        assert created.status_code == 201, created.text
        made[name] = created.json()["id"]
    for name in ("rep", "boss"):
        gone = await client.patch(
            f"/users/{made[name]}", headers=admin, json={"status": "inactive"}
        )
        assert gone.status_code == 200, gone.text
    cleared = await client.put(
        f"/field/reps/{made['rep']}/supervisor", headers=admin, json={"supervisor_id": None}
    )
    assert cleared.status_code == 200, cleared.text
    error = assert_error(
        await client.put(
            f"/field/reps/{made['rep2']}/supervisor",
            headers=admin,
            json={"supervisor_id": made["boss"]},
        ),
        422,
        "bad_supervisor",
    )
    assert "inactive" in error["message"]


PASSWORD = "moved-rep-pass-1"


async def _user(
    client: Any, admin: dict[str, str], org_id: int, roles: list[str], name: str | None = None
) -> tuple[int, dict[str, str]]:
    name = name or f"pz{secrets.token_hex(4)}"
    made = await client.post(
        "/users",
        headers=admin,
        json={"org_id": org_id, "username": name, "password": PASSWORD, "roles": roles},
    )
    assert made.status_code == 201, made.text
    return made.json()["id"], await _login(client, name)


async def _login(client: Any, name: str) -> dict[str, str]:
    token = await client.post("/auth/login", json={"username": name, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def _user_id(app: Any, username: str) -> int:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM users WHERE username = %s", (username,))
        ).fetchone()
    return int(row["id"])


async def _moved_rep(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """A distributor of AGENT-ZJ with a store and a field rep (of the distributor: a store's
    own staff do not audit it) supervised by AGENT-ZJ's supervisor (fieldsup); the brand then
    moves the distributor (with its store and rep) to AGENT-GD."""
    admin = await login("admin")
    distributor = await _org(client, admin, "distributor", demo["AGENT-ZJ"])
    store_id = await _org(client, admin, "store", distributor)
    rep_id, rep = await _user(client, admin, distributor, ["field_rep"])
    boss = await client.put(
        f"/field/reps/{rep_id}/supervisor",
        headers=await login("agent_admin"),
        json={"supervisor_id": await _user_id(app, "fieldsup")},
    )
    assert boss.status_code == 200, boss.text
    moved = await client.post(
        f"/orgs/{distributor}/move", headers=admin, json={"parent_id": demo["AGENT-GD"]}
    )
    assert moved.status_code == 200, moved.text
    return {"store_id": store_id, "rep_id": rep_id, "rep": rep}


async def test_supervisor_of_another_agent_loses_a_moved_reps_new_reviews(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a rep whose store the brand moved from AGENT-ZJ to AGENT-GD is GD's now: the
    reviews the rep writes afterwards, at GD's store, are no business of AGENT-ZJ's field
    supervisor (he cannot read GD's stores, users or field records otherwise). The move clears
    a supervisor left behind."""
    moved = await _moved_rep(client, login, app, demo)
    review = await client.post(
        "/field/reviews",
        headers=moved["rep"],
        json={
            "client_id": secrets.token_hex(6),
            "store_id": moved["store_id"],
            "shelf_score": 2,
            "knowledge_score": 1,
            "comment": "GD internal: staff untrained",
        },
    )
    assert review.status_code == 201, review.text
    fieldsup = await login("fieldsup")
    # the store is out of his reach now
    assert_error(await client.get(f"/orgs/{moved['store_id']}", headers=fieldsup), 404)
    seen = await client.get(
        "/field/reviews", headers=fieldsup, params={"store_id": moved["store_id"]}
    )
    assert seen.status_code == 200, seen.text
    assert seen.json()["items"] == [], seen.json()


async def test_supervisor_of_another_agent_cannot_decide_a_moved_reps_plans(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: after the move, AGENT-ZJ's supervisor must not read, approve or return the
    visit plans a rep of AGENT-GD makes for GD's stores (404, as for any other agent's rep)."""
    moved = await _moved_rep(client, login, app, demo)
    plan = await client.post(
        "/field/plans",
        headers=moved["rep"],
        json={
            "period": "week",
            "starts_on": "2026-11-16",
            "items": [{"store_id": moved["store_id"], "planned_on": "2026-11-17"}],
        },
    )
    assert plan.status_code == 201, plan.text
    plan_id = plan.json()["id"]
    submitted = await client.post(f"/field/plans/{plan_id}/submit", headers=moved["rep"])
    assert submitted.status_code == 200, submitted.text
    fieldsup = await login("fieldsup")
    assert_error(await client.post(f"/field/plans/{plan_id}/approve", headers=fieldsup), 404)
    assert_error(await client.get(f"/field/plans/{plan_id}", headers=fieldsup), 404)


async def test_a_rep_moved_to_another_agent_by_import_loses_the_old_agents_supervisor(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a rep of AGENT-ZJ supervised by AGENT-ZJ's fieldsup was moved to AGENT-GD by
    the brand's user import (README: an import's new organisation moves the user). A store's
    move cleared such a supervisor left behind, the user's move did not: fieldsup kept reading
    the rep's reviews at GD's stores and approved its GD plans."""
    admin = await login("admin")
    rep_name = f"pz{secrets.token_hex(4)}"
    rep_id, _ = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"], rep_name)
    boss = await client.put(
        f"/field/reps/{rep_id}/supervisor",
        headers=await login("agent_admin"),
        json={"supervisor_id": await _user_id(app, "fieldsup")},
    )
    assert boss.status_code == 200, boss.text
    row = {"erp_code": f"PZ-{secrets.token_hex(3)}", "username": rep_name}
    imported = await client.post(
        "/users/import", headers=admin, json={"items": [{**row, "org_erp_code": "AGENT-GD"}]}
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["rejected"] == 0, imported.text
    rep = await _login(client, rep_name)  # the move ended its sessions
    review = await client.post(
        "/field/reviews",
        headers=rep,
        json={
            "client_id": client_id(),
            "store_id": demo["STORE-GZ-01"],
            "shelf_score": 2,
            "knowledge_score": 1,
            "comment": "GD internal",
        },
    )
    assert review.status_code == 201, review.text
    plan = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": "2027-03-01",
            "items": [{"store_id": demo["STORE-GZ-01"], "planned_on": "2027-03-02"}],
        },
    )
    assert plan.status_code == 201, plan.text
    plan_id = plan.json()["id"]
    assert (await client.post(f"/field/plans/{plan_id}/submit", headers=rep)).status_code == 200
    fieldsup = await login("fieldsup")
    assert_error(await client.get(f"/orgs/{demo['STORE-GZ-01']}", headers=fieldsup), 404)
    assert_error(await client.post(f"/field/plans/{plan_id}/approve", headers=fieldsup), 404)
    seen = await client.get("/field/reviews", headers=fieldsup, params={"rep_id": rep_id})
    assert seen.status_code == 200, seen.text
    assert seen.json()["items"] == [], "AGENT-ZJ's supervisor reads a GD rep's reviews"


async def _zj_era_records(client: Any, rep: dict[str, str], demo: Any) -> dict[str, Any]:
    """A plan, a check-in (its day), a review and its photo of ``rep`` at a ZJ store."""
    plan = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": "2031-09-01",
            "items": [{"store_id": demo["STORE-HZ-01"], "planned_on": "2031-09-02"}],
        },
    )
    assert plan.status_code == 201, plan.text
    photo = await client.post(
        "/media/photos", headers={**rep, "Content-Type": "image/png"}, content=png(29)
    )
    assert photo.status_code == 201, photo.text
    review = await client.post(
        "/field/reviews",
        headers=rep,
        json={
            "client_id": client_id(),
            "store_id": demo["STORE-HZ-01"],
            "shelf_score": 1,
            "knowledge_score": 1,
            "comment": "ZJ internal: shelf empty",
            "photo_ids": [photo.json()["id"]],
        },
    )
    assert review.status_code == 201, review.text
    return {"plan": plan.json()["id"], "photo": photo.json()["url"], "review": review.json()}


async def _field_records_seen(client: Any, headers: dict[str, str], rep_id: int) -> list[str]:
    """What ``headers``' holder reads of a rep's field records: plans, check-ins, reviews."""
    seen = []
    for path in ("/field/plans", "/field/checkins", "/field/reviews"):
        answer = await client.get(path, headers=headers, params={"rep_id": rep_id})
        assert answer.status_code == 200, (path, answer.text)
        seen += [f"{path} {item['id']}" for item in answer.json()["items"]]
    return seen


async def test_a_rep_moved_to_another_agent_by_import_takes_no_old_records_to_its_new_supervisor(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe, the mirror of the one above: a rep of AGENT-ZJ plans, checks in and reviews (a
    photo attached) at a ZJ store, then is moved to AGENT-GD by the brand's import. GD's admin
    (``field.read`` over GD) does not see those ZJ-era records, but the supervisor it names
    read all of them (the supervise rule took every record of the rep, wherever made). The
    supervisor reads no more than its reach or the rep's organisation of now: the rep's GD
    records, not ZJ's, which stay ZJ's admin's."""
    admin = await login("admin")
    rep_name = f"pz{secrets.token_hex(4)}"
    rep_id, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"], rep_name)
    old = await _zj_era_records(client, rep, demo)
    plate = await nameplate(client, login, demo["STORE-HZ-01"], by="admin")
    checked = await check_in(client, rep, plate["code"])
    assert checked.status_code == 201, checked.text
    day = datetime.fromisoformat(checked.json()["at"]).astimezone(SHANGHAI).date().isoformat()
    row = {"erp_code": f"PZ-{secrets.token_hex(3)}", "username": rep_name}
    imported = await client.post(
        "/users/import", headers=admin, json={"items": [{**row, "org_erp_code": "AGENT-GD"}]}
    )
    assert imported.status_code == 200 and imported.json()["rejected"] == 0, imported.text
    gd_admin = await login("gd_admin")
    boss_id, boss_h = await _user(client, gd_admin, demo["AGENT-GD"], ["field_supervisor"])
    named = await client.put(
        f"/field/reps/{rep_id}/supervisor", headers=gd_admin, json={"supervisor_id": boss_id}
    )
    assert named.status_code == 200, named.text
    assert await _field_records_seen(client, gd_admin, rep_id) == []
    assert await _field_records_seen(client, boss_h, rep_id) == [], "ZJ's records read by GD"
    assert_error(await client.get(old["photo"], headers=boss_h), 404)
    assert_error(await client.get(f"/field/plans/{old['plan']}", headers=boss_h), 404)
    track = await client.get("/field/track", headers=boss_h, params={"rep_id": rep_id, "day": day})
    assert track.status_code == 200 and track.json()["checkins"] == [], track.text
    old_track = await client.get(
        "/field/track", headers=await login("agent_admin"), params={"rep_id": rep_id, "day": day}
    )
    assert [c["id"] for c in old_track.json()["checkins"]] == [checked.json()["id"]]
    # ZJ's admin still reads them; the supervisor reads what the rep does at GD
    assert len(await _field_records_seen(client, await login("agent_admin"), rep_id)) == 3
    rep = await _login(client, rep_name)  # the move ended its sessions
    review = await client.post(
        "/field/reviews",
        headers=rep,
        json={
            "client_id": client_id(),
            "store_id": demo["STORE-GZ-01"],
            "shelf_score": 4,
            "knowledge_score": 4,
        },
    )
    assert review.status_code == 201, review.text
    seen = await _field_records_seen(client, boss_h, rep_id)
    assert seen == [f"/field/reviews {review.json()['id']}"], seen


async def test_a_supervisor_named_across_agents_by_the_brand_reads_the_reps_records(
    client: Any, login: Any, demo: Any
) -> None:
    """The supervise rule's other reach (with the probe above): the brand may name a rep's
    supervisor in another agent (README: same brand); it reads the records the rep makes where
    it is, as the rep's own organisation's admins do."""
    admin = await login("admin")
    rep_id, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
    boss_id, boss = await _user(client, admin, demo["AGENT-GD"], ["field_supervisor"])
    named = await client.put(
        f"/field/reps/{rep_id}/supervisor", headers=admin, json={"supervisor_id": boss_id}
    )
    assert named.status_code == 200, named.text
    old = await _zj_era_records(client, rep, demo)
    assert len(await _field_records_seen(client, boss, rep_id)) == 2  # the plan, the review
    assert (await client.get(old["photo"], headers=boss)).status_code == 200


async def test_the_platform_naming_a_tenants_supervisor_waits_for_the_tenants_demotion(
    app: Any, client: Any, login: Any
) -> None:
    """A probe: ``PUT /field/reps/{id}/supervisor`` took the role-name lock of the caller's
    brand; the platform operator (of its own brand) naming a tenant's supervisor did not wait
    for the tenant's deactivation of that supervisor, which then found no rep to clear, and
    the rep was left supervised by an inactive account (its plans' only decider). It takes the
    rep's brand's lock now: it waits, then is refused (422 ``bad_supervisor``)."""
    brand, _ = await onboarded_brand(client, login)
    platform = await login("platform")
    rep = await new_user(client, platform, brand["id"], ["field_rep"])
    boss = await new_user(client, platform, brand["id"], ["field_supervisor"])
    from app.users.schemas import UserPatch
    from app.users.service import update_user

    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await update_user(
            holder, await acting(holder, "platform"), boss["id"], UserPatch(status="inactive")
        )
        naming = asyncio.ensure_future(
            client.put(
                f"/field/reps/{rep['id']}/supervisor",
                headers=platform,
                json={"supervisor_id": boss["id"]},
            )
        )
        waited = await lock_waiters(watch, 1)
        await holder.commit()
        answer = await asyncio.wait_for(naming, 30)
    assert waited, "the naming should wait for the tenant's deactivation"
    assert_error(answer, 422, "bad_supervisor")
    assert await _supervisor_of(app, rep["id"]) is None


async def test_a_supervisor_moved_to_another_agent_by_import_leaves_its_reps_behind(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """The mirror case: a supervisor of AGENT-ZJ moved to AGENT-GD by import supervises the
    ZJ reps it left behind no more; a supervision from above both places stays."""
    admin = await login("admin")
    sup_name = f"pz{secrets.token_hex(4)}"
    sup_id, _ = await _user(client, admin, demo["AGENT-ZJ"], ["field_supervisor"], sup_name)
    rep_id, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
    named = await client.put(
        f"/field/reps/{rep_id}/supervisor", headers=admin, json={"supervisor_id": sup_id}
    )
    assert named.status_code == 200, named.text
    review = await client.post(
        "/field/reviews",
        headers=rep,
        json={
            "client_id": client_id(),
            "store_id": demo["STORE-HZ-01"],
            "shelf_score": 3,
            "knowledge_score": 3,
        },
    )
    assert review.status_code == 201, review.text
    row = {"erp_code": f"PZ-{secrets.token_hex(3)}", "username": sup_name}
    imported = await client.post(
        "/users/import", headers=admin, json={"items": [{**row, "org_erp_code": "AGENT-GD"}]}
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["rejected"] == 0, imported.text
    sup = await _login(client, sup_name)
    seen = await client.get("/field/reviews", headers=sup, params={"rep_id": rep_id})
    assert seen.status_code == 200, seen.text
    assert seen.json()["items"] == [], "a GD supervisor reads a ZJ rep's reviews"


async def test_two_supervisors_named_at_once_are_audited_one_after_the_other(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: two ``PUT /field/reps/{id}/supervisor`` at once (two admins naming a rep's
    supervisor) both read the rep's old supervisor: both ``set_supervisor`` audit rows said
    ``before: {supervisor_id: <old>}``, and the supervision the second replaced was missing
    from the history. The rep's row is held before it is read now, as ``update_user`` holds
    it."""
    admin = await login("admin")

    async def made(prefix: str, role: str) -> int:
        user = await client.post(
            "/users",
            headers=admin,
            json={"org_id": demo["AGENT-ZJ"], "username": f"{prefix}_{secrets.token_hex(3)}",
                  "password": "probe-password-1", "roles": [role]},
        )  # fmt: skip
        assert user.status_code == 201, user.text
        return int(user.json()["id"])

    rep = await made("rep", "field_rep")
    bosses = [await made("sup", "field_supervisor") for _ in range(2)]
    answers = await twice_held(
        app,
        client,
        "SELECT 1 FROM users WHERE id = %s FOR UPDATE",
        (rep,),
        "PUT",
        f"/field/reps/{rep}/supervisor",
        admin,
        bodies=({"supervisor_id": bosses[0]}, {"supervisor_id": bosses[1]}),
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    first, second = await audit_rows(app, "user", rep, "set_supervisor")
    assert second["before"]["supervisor_id"] == first["after"]["supervisor_id"], (
        f"history: {first['before']} -> {first['after']}, then "
        f"{second['before']} -> {second['after']}: a change is missing"
    )


async def test_a_reps_supervisor_named_again_writes_no_audit_row(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: README ("a call that changes nothing ... answers 200 with the entity as it is
    and writes no row"): ``PUT /field/reps/{id}/supervisor`` naming the supervisor the rep has
    already (or null for a rep without one) changed nothing, yet wrote a ``set_supervisor`` row
    each time, its before equal to its after."""
    admin = await login("admin")
    rep, _ = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
    boss = await user_id(app, "fieldsup")
    url = f"/field/reps/{rep}/supervisor"
    cleared = await client.put(url, headers=admin, json={"supervisor_id": None})  # has none
    assert cleared.status_code == 200, cleared.text
    assert cleared.json() == {"user_id": rep, "supervisor_id": None}
    assert await audit_rows(app, "user", rep, "set_supervisor") == [], "a null→null was audited"
    for _ in range(2):
        named = await client.put(url, headers=admin, json={"supervisor_id": boss})
        assert named.status_code == 200, named.text
        assert named.json() == {"user_id": rep, "supervisor_id": boss}
    rows = await audit_rows(app, "user", rep, "set_supervisor")
    assert len(rows) == 1, f"the same supervisor named again was audited: {rows}"


async def _supervisor_of(app: Any, rep_id: int) -> int | None:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT supervisor_id FROM users WHERE id = %s", (rep_id,))
        ).fetchone()
    return None if row["supervisor_id"] is None else int(row["supervisor_id"])


async def _submitted_plan(
    client: Any, admin: dict[str, str], rep_id: int, rep: dict[str, str], sup_id: int
) -> str:
    """``sup_id`` named the rep's supervisor, and a plan of the rep's submitted: its URL."""
    named = await client.put(
        f"/field/reps/{rep_id}/supervisor", headers=admin, json={"supervisor_id": sup_id}
    )
    assert named.status_code == 200, named.text
    plan = await client.post(
        "/field/plans", headers=rep, json={"period": "week", "starts_on": "2031-05-05"}
    )
    assert plan.status_code == 201, plan.text
    url = f"/field/plans/{plan.json()['id']}"
    assert (await client.post(f"{url}/submit", headers=rep)).status_code == 200
    assert (await client.get(url, headers=admin)).json()["supervisor_id"] == sup_id
    return url


async def test_a_supervisor_demoted_out_of_field_supervise_is_no_plans_supervisor(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: README: a rep's supervisor holds ``field.supervise`` (``PUT
    /field/reps/{id}/supervisor`` refuses any other user, 422 ``bad_supervisor``), and a plan's
    ``supervisor_id`` is "the one user who approves or returns it". A move cleared a supervisor
    left behind, a role change did not: demoted, the user stayed the rep's supervisor, and the
    submitted plan named as its decider a user who could not even read it — stuck. Now the
    role change clears it from its reps (audited in the user's ``update`` row,
    ``supervisors_dropped``, as a move's row names them); the supervisor the admin then names
    decides the plan."""
    admin = await login("admin")
    sup_id, _ = await _user(client, admin, demo["AGENT-ZJ"], ["field_supervisor"])
    rep_id, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
    url = await _submitted_plan(client, admin, rep_id, rep, sup_id)
    demoted = await client.patch(f"/users/{sup_id}", headers=admin, json={"roles": ["analyst"]})
    assert demoted.status_code == 200, demoted.text
    assert_error(  # the API itself refuses this user as a supervisor now
        await client.put(
            f"/field/reps/{rep_id}/supervisor", headers=admin, json={"supervisor_id": sup_id}
        ),
        422,
        "bad_supervisor",
    )
    shown = await client.get(url, headers=admin)
    assert shown.status_code == 200, shown.text
    assert shown.json()["supervisor_id"] is None, "the plan names a decider without the right"
    [update] = await audit_rows(app, "user", sup_id, "update")
    assert update["after"]["supervisors_dropped"] == [{"user_id": rep_id, "supervisor_id": sup_id}]
    new_id, new = await _user(client, admin, demo["AGENT-ZJ"], ["field_supervisor"])
    named = await client.put(
        f"/field/reps/{rep_id}/supervisor", headers=admin, json={"supervisor_id": new_id}
    )
    assert named.status_code == 200, named.text
    approved = await client.post(f"{url}/approve", headers=new)
    assert approved.status_code == 200, approved.text
    assert approved.json()["decided_by"] == new_id


async def test_a_role_change_keeping_field_supervise_keeps_the_reps(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A supervisor whose roles change but still hold ``field.supervise`` (another role, or
    the same one) keeps its reps; the user's ``update`` row names no supervisions dropped."""
    admin = await login("admin")
    sup_id, _ = await _user(client, admin, demo["AGENT-ZJ"], ["field_supervisor", "analyst"])
    rep_id, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
    await _submitted_plan(client, admin, rep_id, rep, sup_id)
    changed = await client.patch(
        f"/users/{sup_id}", headers=admin, json={"roles": ["field_supervisor"]}
    )
    assert changed.status_code == 200, changed.text
    assert await _supervisor_of(app, rep_id) == sup_id
    [update] = await audit_rows(app, "user", sup_id, "update")
    assert "supervisors_dropped" not in update["after"]


async def test_a_custom_role_edited_to_drop_field_supervise_unsupervises_its_holders_reps(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe's kin: a custom role holding ``field.supervise`` edited to drop it demotes every
    holder at once — a holder without it from another role is cleared from its reps (in the
    role's ``update`` row, ``supervisors_dropped``), one holding it through ``field_supervisor``
    too keeps them."""
    admin = await login("admin")
    name = f"sup_{secrets.token_hex(4)}"
    role = await client.post(
        "/roles", headers=admin, json={"name": name, "permissions": ["field.supervise"]}
    )
    assert role.status_code == 201, role.text
    role_id = role.json()["id"]
    only, _ = await _user(client, admin, demo["AGENT-ZJ"], [name])
    both, _ = await _user(client, admin, demo["AGENT-ZJ"], [name, "field_supervisor"])
    reps = {}
    for sup_id in (only, both):
        reps[sup_id], rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
        await _submitted_plan(client, admin, reps[sup_id], rep, sup_id)
    edited = await client.patch(
        f"/roles/{role_id}", headers=admin, json={"permissions": ["field.visit"]}
    )
    assert edited.status_code == 200, edited.text
    assert await _supervisor_of(app, reps[only]) is None
    assert await _supervisor_of(app, reps[both]) == both
    [update] = await audit_rows(app, "role", role_id, "update")
    assert update["after"]["supervisors_dropped"] == [
        {"user_id": reps[only], "supervisor_id": only}
    ]


async def test_a_deactivated_supervisor_is_no_plans_supervisor(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe's kin: a supervisor deactivated (``PATCH /users/{id}`` ``inactive``) stayed its
    reps' supervisor, the submitted plan naming as its decider a user who cannot sign in —
    stuck, as a demoted one's. Now cleared as a demotion clears it (``supervisors_dropped``)."""
    admin = await login("admin")
    sup_id, _ = await _user(client, admin, demo["AGENT-ZJ"], ["field_supervisor"])
    rep_id, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
    url = await _submitted_plan(client, admin, rep_id, rep, sup_id)
    gone = await client.patch(f"/users/{sup_id}", headers=admin, json={"status": "inactive"})
    assert gone.status_code == 200, gone.text
    assert (await client.get(url, headers=admin)).json()["supervisor_id"] is None
    [update] = await audit_rows(app, "user", sup_id, "update")
    assert update["after"]["supervisors_dropped"] == [{"user_id": rep_id, "supervisor_id": sup_id}]


async def _org(client: Any, admin: dict[str, str], kind: str, parent_id: int) -> int:
    made = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": kind,
            "name": f"pz {secrets.token_hex(3)}",
            "parent_id": parent_id,
            "erp_code": f"PZ-{secrets.token_hex(4)}",
        },
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def test_a_supervisor_whose_organisation_is_deactivated_is_no_plans_supervisor(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe's kin: a supervisor at an organisation that was deactivated (its account off
    with its organisation) stayed the supervisor of a rep whose organisation stayed active, the
    plan stuck. Now the deactivation clears it (the ``deactivate`` row's
    ``supervisors_dropped``); a rep deactivated with its supervisor keeps it (reactivated, both
    as before). The supervisor's organisation is a distributor (a store's staff supervise no
    rep: 422 ``bad_supervisor``)."""
    admin = await login("admin")
    store = await _org(client, admin, "distributor", demo["AGENT-ZJ"])
    sup_id, _ = await _user(client, admin, store, ["field_supervisor"])
    rep_id, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
    inside_id, inside = await _user(client, admin, store, ["field_rep"])
    url = await _submitted_plan(client, admin, rep_id, rep, sup_id)
    await _submitted_plan(client, admin, inside_id, inside, sup_id)
    off = await client.post(f"/orgs/{store}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    assert (await client.get(url, headers=admin)).json()["supervisor_id"] is None
    assert await _supervisor_of(app, inside_id) == sup_id
    [row] = await audit_rows(app, "org", store, "deactivate")
    assert row["after"]["supervisors_dropped"] == [{"user_id": rep_id, "supervisor_id": sup_id}]


async def test_a_supervisor_moved_away_from_its_custom_supervising_role_is_no_supervisor(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe's kin: an organisation (here a warehouse: a store's staff supervise nobody)
    moved out from under the distributor whose custom role gave its user ``field.supervise``
    loses the role (out of reach), and the user stayed its reps' supervisor, unable to decide
    their plans. The move now clears it (the move row's ``supervisors_dropped``)."""
    admin = await login("admin")
    distributor = await _org(client, admin, "distributor", demo["AGENT-ZJ"])
    store = await _org(client, admin, "warehouse", distributor)
    _, dist_admin = await _user(client, admin, distributor, ["org_admin"])
    name = f"dsup_{secrets.token_hex(3)}"
    role = await client.post(
        "/roles", headers=dist_admin, json={"name": name, "permissions": ["field.supervise"]}
    )
    assert role.status_code == 201, role.text
    sup_id, _ = await _user(client, admin, store, [name])
    rep_id, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
    url = await _submitted_plan(client, admin, rep_id, rep, sup_id)
    moved = await client.post(
        f"/orgs/{store}/move", headers=admin, json={"parent_id": demo["AGENT-ZJ"]}
    )
    assert moved.status_code == 200, moved.text
    assert (await client.get(url, headers=admin)).json()["supervisor_id"] is None
    [row] = await audit_rows(app, "org", store, "move")
    assert row["after"]["supervisors_dropped"] == [{"user_id": rep_id, "supervisor_id": sup_id}]


async def test_a_rep_reactivated_keeps_a_supervisor_demoted_while_it_was_inactive(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: ``drop_unfit_supervisors`` cleared only *live* reps (an inactive rep keeps its
    supervisor), and nothing runs it for the rep when it becomes live again. A rep deactivated,
    its supervisor then demoted (roles without ``field.supervise``: the rep, not live, is
    skipped), the rep reactivated: the rep is live with a supervisor the API itself refuses to
    name (422 ``bad_supervisor``), and its submitted plan names as its only decider a user who
    cannot decide it — the stuck plan the change was meant to end. Expected: a rep made live
    again (``PATCH /users/{id}`` ``active``) is cleared of a supervisor that is unfit now (fix:
    in ``app.users.service.update_user``, on a reactivation also clear the user's own
    supervisor when unfit — a ``drop_unfit_supervisors`` by rep)."""
    admin = await login("admin")
    sup_id, _ = await _user(client, admin, demo["AGENT-ZJ"], ["field_supervisor"])
    rep_id, rep = await _user(client, admin, demo["AGENT-ZJ"], ["field_rep"])
    url = await _submitted_plan(client, admin, rep_id, rep, sup_id)
    off = await client.patch(f"/users/{rep_id}", headers=admin, json={"status": "inactive"})
    assert off.status_code == 200, off.text
    demoted = await client.patch(f"/users/{sup_id}", headers=admin, json={"roles": ["analyst"]})
    assert demoted.status_code == 200, demoted.text
    on = await client.patch(f"/users/{rep_id}", headers=admin, json={"status": "active"})
    assert on.status_code == 200, on.text
    refused = await client.put(
        f"/field/reps/{rep_id}/supervisor", headers=admin, json={"supervisor_id": sup_id}
    )
    assert refused.status_code == 422, refused.text  # the API would not name this supervisor
    assert await _supervisor_of(app, rep_id) is None, (
        "a live rep is left supervised by a user without field.supervise"
    )
    shown = await client.get(url, headers=admin)
    assert shown.json()["supervisor_id"] is None, "the plan's decider cannot decide it"


async def test_a_store_reactivated_keeps_its_reps_supervisor_demoted_while_it_was_off(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe, the organisation-level sibling: a store deactivated with its rep (not live: kept), the
    rep's supervisor (outside the store) demoted meanwhile, the store reactivated (``POST
    /orgs/{id}/activate``): the rep is live again, supervised by a user without
    ``field.supervise``, its submitted plan stuck. ``set_status`` runs
    ``drop_unfit_supervisors`` on deactivation only. Expected: the reactivation clears, for the
    reps it makes live, a supervisor who is unfit now (fix: ``app.orgs.service.set_status``,
    ``active`` branch: clear unfit supervisors of the live reps of the subtree)."""
    admin = await login("admin")
    store = await _org(client, admin, "store", demo["AGENT-ZJ"])
    sup_id, _ = await _user(client, admin, demo["AGENT-ZJ"], ["field_supervisor"])
    rep_id, rep = await _user(client, admin, store, ["field_rep"])
    url = await _submitted_plan(client, admin, rep_id, rep, sup_id)
    off = await client.post(f"/orgs/{store}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    demoted = await client.patch(f"/users/{sup_id}", headers=admin, json={"roles": ["analyst"]})
    assert demoted.status_code == 200, demoted.text
    on = await client.post(f"/orgs/{store}/activate", headers=admin)
    assert on.status_code == 200, on.text
    assert await _supervisor_of(app, rep_id) is None, (
        "a live rep is left supervised by a user without field.supervise"
    )
    shown = await client.get(url, headers=admin)
    assert shown.json()["supervisor_id"] is None, "the plan's decider cannot decide it"


async def test_an_admin_names_or_clears_no_supervisor_of_its_own(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: an organisation admin (``org_admin`` holds ``field.visit``, ``field.supervise``
    and ``users.write``) named, as its own supervisor, a puppet it had just made, who then
    approved the admin's own visit plans; and it cleared the supervisor the brand had named over
    it. One's own supervisor is 422 ``own_account`` (README: as one's own status and roles), by
    a key one made too."""
    brand = await login("admin")
    admin = await new_user(client, brand, demo["AGENT-ZJ"], ["org_admin"])
    me = await signed_in(client, admin)
    puppet = await new_user(client, me, demo["AGENT-ZJ"], ["field_supervisor"])
    url = f"/field/reps/{admin['id']}/supervisor"
    assert_error(
        await client.put(url, headers=me, json={"supervisor_id": puppet["id"]}), 422, "own_account"
    )
    boss = await new_user(client, brand, demo["AGENT-ZJ"], ["field_supervisor"])
    named = await client.put(url, headers=brand, json={"supervisor_id": boss["id"]})
    assert named.status_code == 200, named.text
    key = await key_of(client, me, ["users.write"])
    for headers in (me, key):
        for body in ({"supervisor_id": None}, {"supervisor_id": puppet["id"]}):
            assert_error(await client.put(url, headers=headers, json=body), 422, "own_account")
    # the puppet, an account the admin administers, is still the admin's to name over others
    rep = await new_user(client, me, demo["AGENT-ZJ"], ["field_rep"])
    other = await client.put(
        f"/field/reps/{rep['id']}/supervisor", headers=me, json={"supervisor_id": puppet["id"]}
    )
    assert other.status_code == 200, other.text


async def test_a_stores_staff_is_no_supervisor(client: Any, login: Any, demo: Any) -> None:
    """A probe: the brand named a store's manager (``org_admin``: ``field.supervise``) the
    supervisor of a rep of the store's agent, who then read the visits and reviews the rep made
    at the manager's own store (README: field work on a store is for the organisations above
    it, its own staff get 404 there) and approved plans visiting it. A supervisor is not a
    store's staff, of that store or another: 422 ``bad_supervisor``."""
    brand = await login("admin")
    rep = await new_user(client, brand, demo["AGENT-ZJ"], ["field_rep"])
    url = f"/field/reps/{rep['id']}/supervisor"
    manager = await new_user(client, brand, demo["STORE-HZ-01"], ["org_admin"])
    elsewhere = await new_user(client, brand, demo["STORE-GZ-01"], ["field_supervisor"])
    for headers, boss in ((brand, manager), (await login("agent_admin"), manager),
                          (brand, elsewhere)):  # fmt: skip
        answer = await client.put(url, headers=headers, json={"supervisor_id": boss["id"]})
        assert_error(answer, 422, "bad_supervisor")
    # at the rep's organisation, above it, beside it (another agent, named by the brand), below
    for org in ("AGENT-ZJ", "BRAND-LUMI", "AGENT-GD", "DIST-NB"):
        boss = await new_user(client, brand, demo[org], ["field_supervisor"])
        named = await client.put(url, headers=brand, json={"supervisor_id": boss["id"]})
        assert named.status_code == 200, (org, named.text)


async def test_a_stores_staff_named_supervisor_before_the_rule_supervises_nobody(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """The scope's side of the probe above: a store's manager named a rep's supervisor before
    namings refused it (no migration clears one) reads none of the rep's check-ins, reviews or
    plans — at its own store or elsewhere — and decides none of its plans."""
    brand = await login("admin")
    rep = await new_user(client, brand, demo["AGENT-ZJ"], ["field_rep"])
    manager = await new_user(client, brand, demo["STORE-HZ-01"], ["org_admin"])
    async with app.state.pool.connection() as conn:  # this test's own users: named as before
        await conn.execute(
            "UPDATE users SET supervisor_id = %s WHERE id = %s", (manager["id"], rep["id"])
        )
    rep_h = await signed_in(client, rep)
    plate = (await nameplate(client, login, demo["STORE-HZ-01"]))["code"]
    made = await check_in(client, rep_h, plate)
    assert made.status_code == 201, made.text
    review = await client.post(
        "/field/reviews",
        headers=rep_h,
        json={"client_id": client_id(), "store_id": demo["STORE-HZ-01"], "shelf_score": 1,
              "knowledge_score": 1},
    )  # fmt: skip
    assert review.status_code == 201, review.text
    plan = await client.post(
        "/field/plans",
        headers=rep_h,
        json={"period": "week", "starts_on": "2027-03-01",
              "items": [{"store_id": demo["STORE-HZ-01"], "planned_on": "2027-03-02"}]},
    )  # fmt: skip
    assert plan.status_code == 201, plan.text
    submitted = await client.post(f"/field/plans/{plan.json()['id']}/submit", headers=rep_h)
    assert submitted.status_code == 200, submitted.text
    mgr = await signed_in(client, manager)
    records = {
        "plan": plan.json()["id"],
        "checkin": made.json()["id"],
        "review": review.json()["id"],
    }
    assert _sees(await _seen(client, mgr), records) == set()
    for path in ("checkins", "reviews"):
        seen = await client.get(
            f"/field/{path}", headers=mgr, params={"store_id": demo["STORE-HZ-01"]}
        )
        assert seen.status_code == 200 and seen.json()["items"] == [], seen.text
    for path in ("", "/approve"):
        method = "POST" if path else "GET"
        answer = await client.request(
            method, f"/field/plans/{plan.json()['id']}{path}", headers=mgr
        )
        assert_error(answer, 404)
    reps = await client.get("/field/reps", headers=mgr, params={"per_page": 100})
    assert rep["id"] not in [r["id"] for r in reps.json()["items"]], reps.text  # (a review)
    assert _sees(await _seen(client, brand), records) == set(records)


async def test_no_two_supervise_each_other_directly_or_not(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: A named B's supervisor, then B named A's, both 200: each approved the other's
    plans (as one's own supervisor is refused, ``own_supervisor``). A naming that closes a loop,
    of two or more, is 422 ``supervisor_cycle``; one that does not stays 200."""
    brand, agent = await login("admin"), await login("agent_admin")
    a, b, c = [
        await new_user(client, brand, demo["AGENT-ZJ"], ["field_supervisor"]) for _ in range(3)
    ]

    async def name(headers: dict[str, str], rep: dict[str, Any], boss: dict[str, Any]) -> Any:
        return await client.put(
            f"/field/reps/{rep['id']}/supervisor",
            headers=headers,
            json={"supervisor_id": boss["id"]},
        )

    assert (await name(brand, a, b)).status_code == 200
    assert_error(await name(agent, b, a), 422, "supervisor_cycle")
    assert (await name(brand, b, c)).status_code == 200  # a chain: a under b under c
    for headers in (brand, agent):
        assert_error(await name(headers, c, a), 422, "supervisor_cycle")
        assert_error(await name(headers, c, b), 422, "supervisor_cycle")
    assert (await name(brand, a, c)).status_code == 200  # a under c directly: no loop
    cleared = await client.put(
        f"/field/reps/{b['id']}/supervisor", headers=brand, json={"supervisor_id": None}
    )
    assert cleared.status_code == 200, cleared.text
    assert (await name(agent, b, a)).status_code == 200  # the loop open: b under a under c
