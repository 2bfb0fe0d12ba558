"""Organisation tree (SPEC U1) and subtree isolation (U3)."""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers import acting, assert_error, every_item, onboarded_brand
from tests.race_support import lock_waiters


def _org(kind: str, erp: str, parent: int, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "name": f"{kind} {erp}", "erp_code": erp, "parent_id": parent, **extra}


async def test_create_read_update_an_organisation_with_its_region(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    created = await client.post(
        "/orgs",
        headers=admin,
        json=_org(
            "agent",
            "AGENT-JS",
            demo["BRAND-LUMI"],
            province_code="320000",
            province_name="江苏省",
            city_code="320100",
            city_name="南京市",
            contact_name="王五",
            contact_phone="+86 25 1234 5678",
        ),
    )
    assert created.status_code == 201, created.text
    org = created.json()
    assert org["city_name"] == "南京市" and org["status"] == "active" and org["depth"] == 1
    fetched = await client.get(f"/orgs/{org['id']}", headers=admin)
    assert fetched.json() == org
    updated = await client.patch(
        f"/orgs/{org['id']}", headers=admin, json={"name": "Jiangsu Agent", "address": "1 Road"}
    )
    assert updated.status_code == 200
    assert updated.json()["name"] == "Jiangsu Agent" and updated.json()["address"] == "1 Road"
    assert updated.json()["erp_code"] == "AGENT-JS"
    audit = await client.get(
        "/audit", headers=admin, params={"entity": "org", "entity_id": str(org["id"])}
    )
    actions = [row["action"] for row in audit.json()["items"]]
    assert actions == ["update", "create"]
    assert audit.json()["items"][0]["before"]["name"] == "agent AGENT-JS"
    assert audit.json()["items"][0]["after"]["name"] == "Jiangsu Agent"


async def test_bad_organisations_are_refused_with_reasons(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    brand = demo["BRAND-LUMI"]
    mismatch = _org(
        "store",
        "S-X1",
        brand,
        province_code="330000",
        province_name="浙江省",
        city_code="440100",
        city_name="广州市",
    )
    assert_error(await client.post("/orgs", headers=admin, json=mismatch), 400, "region_mismatch")
    duplicate = _org("store", "STORE-HZ-01", brand)
    assert_error(
        await client.post("/orgs", headers=admin, json=duplicate), 409, "duplicate_erp_code"
    )
    under_store = _org("agent", "A-UNDER-STORE", demo["STORE-HZ-01"])
    assert_error(await client.post("/orgs", headers=admin, json=under_store), 422, "bad_hierarchy")
    no_parent = {"kind": "store", "name": "x", "erp_code": "S-NOPARENT"}
    assert_error(
        await client.post("/orgs", headers=admin, json=no_parent), 400, "validation_failed"
    )
    brand_by_admin = {"kind": "brand", "name": "Other", "erp_code": "BRAND-NEW"}
    assert_error(
        await client.post("/orgs", headers=admin, json=brand_by_admin), 403, "permission_denied"
    )
    bad_kind = _org("castle", "C-1", brand)
    error = assert_error(await client.post("/orgs", headers=admin, json=bad_kind), 400)
    assert error["details"][0]["field"] == "kind"
    assert_error(
        await client.post("/orgs", headers=admin, json=_org("store", "S-404", 999999)), 404
    )


async def test_a_province_name_is_its_codes(client: Any, login: Any, demo: Any, app: Any) -> None:
    """A probe: 330000 (Zhejiang) named 广东省 was kept — the leak detector compares the name
    with the provinces verifications are made in, and judged the store by another province.
    GB/T 2260: the name is the code's, written in full, short or in English; a code of no
    province is 400 too. A name kept before is checked when it or its code changes."""
    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    tag = secrets.token_hex(3).upper()
    for n, (code, name) in enumerate((("330000", "广东省"), ("990000", "浙江省"), ("330000", "x"))):
        wrong = _org("store", f"S-PN{n}-{tag}", brand, province_code=code, province_name=name)
        error = assert_error(await client.post("/orgs", headers=admin, json=wrong), 400)
        assert (error["code"], error["details"]) == (
            "region_mismatch", {"field": "province_name"}
        ), error  # fmt: skip
    for n, name in enumerate(("浙江省", "浙江", "Zhejiang", " zhejiang ")):
        right = _org("store", f"S-PR{n}-{tag}", brand, province_code="330000", province_name=name)
        made = await client.post("/orgs", headers=admin, json=right)
        assert made.status_code == 201, (name, made.text)
    org_id = made.json()["id"]
    async with app.state.pool.connection() as conn:  # this test's own store, named as before
        await conn.execute("UPDATE orgs SET province_name = '广东省' WHERE id = %s", (org_id,))
    other = await client.patch(f"/orgs/{org_id}", headers=admin, json={"address": "1 Lake Rd"})
    assert other.status_code == 200, other.text
    wrong = await client.patch(f"/orgs/{org_id}", headers=admin, json={"province_name": "广东"})
    assert_error(wrong, 400, "region_mismatch")
    fixed = await client.patch(f"/orgs/{org_id}", headers=admin, json={"province_name": "浙江"})
    assert fixed.status_code == 200, fixed.text


async def test_a_province_is_stored_by_its_full_name_however_it_is_written(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: 330000 named "Zhejiang" (or 浙江, " zhejiang ") was kept as typed, and what
    compares ``orgs.province_name`` with the full name — the SMS store managers' provinces,
    the draws', the leak and ring detectors — put such a store in no province. The code's full
    name is stored; the same province written another way is no change (no audit row)."""
    from tests.helpers import new_org

    admin, marketer = await login("admin"), await login("marketer")
    agent = await new_org(client, admin, "agent", demo["BRAND-LUMI"])
    stores = []
    for name in ("浙江省", "Zhejiang", "浙江", " zhejiang "):
        phone = "139" + "".join(secrets.choice("0123456789") for _ in range(8))
        store = await new_org(
            client, admin, "store", agent["id"], province_code="330000", province_name=name,
            contact_phone=phone,
        )  # fmt: skip
        assert (store["province_code"], store["province_name"]) == ("330000", "浙江省"), name
        stores.append(store)
    same = await client.patch(
        f"/orgs/{stores[0]['id']}", headers=admin, json={"province_name": "ZHEJIANG"}
    )
    assert same.status_code == 200 and same.json()["province_name"] == "浙江省", same.text
    audit = await client.get(
        "/audit", headers=admin, params={"entity": "org", "entity_id": str(stores[0]["id"])}
    )
    assert [row["action"] for row in audit.json()["items"]] == ["create"]
    made = await client.post(
        "/sms/templates",
        headers=marketer,
        json={"name": f"p_{secrets.token_hex(3)}", "body": "{season}上新"},
    )
    assert made.status_code == 201, made.text
    body = {
        "template_id": made.json()["id"],
        "audience": "store_managers",
        "variables": {"season": "秋季"},
        "dry_run": True,
        "filter": {"org_id": agent["id"], "provinces": ["浙江省"]},
    }
    zhejiang = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert zhejiang.status_code == 201, zhejiang.text
    assert zhejiang.json()["recipients"] == 4, zhejiang.text


async def test_a_province_name_without_its_code_is_checked_and_gives_the_code(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a province name sent without its code was kept unchecked ("Atlantis": 201). A
    province's name alone gives its code; any other is 400 ``validation_failed`` on
    ``province_name`` (as ``check_region``'s errors are shaped), by POST and PATCH alike."""
    admin = await login("admin")
    tag = secrets.token_hex(3).upper()
    for n, name in enumerate(("Atlantis", "浙江市", "33", "990000")):
        body = _org("store", f"S-PA{n}-{tag}", demo["AGENT-ZJ"], province_name=name)
        error = assert_error(await client.post("/orgs", headers=admin, json=body), 400)
        assert (error["code"], error["details"]) == (
            "validation_failed", {"field": "province_name"}
        ), (name, error)  # fmt: skip
    city = {"city_code": "330100", "city_name": "杭州市"}  # its province given by name alone
    body = _org("store", f"S-PB-{tag}", demo["AGENT-ZJ"], province_name=" 浙江 ", **city)
    made = await client.post("/orgs", headers=admin, json=body)
    assert made.status_code == 201, made.text
    assert (made.json()["province_code"], made.json()["province_name"]) == ("330000", "浙江省")
    bare = _org("store", f"S-PC-{tag}", demo["AGENT-ZJ"])
    org_id = (await client.post("/orgs", headers=admin, json=bare)).json()["id"]
    wrong = await client.patch(f"/orgs/{org_id}", headers=admin, json={"province_name": "Mu"})
    assert_error(wrong, 400, "validation_failed")
    named = await client.patch(f"/orgs/{org_id}", headers=admin, json={"province_name": "广东"})
    assert named.status_code == 200, named.text
    assert (named.json()["province_code"], named.json()["province_name"]) == ("440000", "广东省")
    # the code cleared alone would come back from the name (a review: 200, nothing changed)
    alone = await client.patch(f"/orgs/{org_id}", headers=admin, json={"province_code": None})
    assert_error(alone, 400, "validation_failed")
    assert alone.json()["error"]["details"] == {"field": "province_code"}
    both = {"province_code": None, "province_name": None}
    cleared = await client.patch(f"/orgs/{org_id}", headers=admin, json=both)
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["province_code"], cleared.json()["province_name"]) == (None, None)


async def test_platform_admin_creates_a_brand(client: Any, login: Any) -> None:
    platform = await login("platform")
    created = await client.post(
        "/orgs", headers=platform, json={"kind": "brand", "name": "Brand Two", "erp_code": "B-TWO"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["parent_id"] is None


async def test_the_platform_operator_reads_the_audit_of_the_brands_it_administers(
    client: Any, login: Any
) -> None:
    """A left-out of an earlier session: the audit log was the caller's own subtree only, so the
    platform operator, who onboards brands and administers their organisations and users, saw
    none of its own changes to them. It reads every brand's organisation and user rows now;
    nothing else of another brand, and no brand's admin reads another brand's rows."""
    from tests.helpers import onboarded_brand

    platform, admin = await login("platform"), await login("admin")
    brand, tenant = await onboarded_brand(client, login)
    store = await client.post(
        "/orgs",
        headers=tenant,
        json={
            "kind": "store",
            "name": "Tenant store",
            "erp_code": "TS-1",
            "parent_id": brand["id"],
        },
    )
    assert store.status_code == 201, store.text
    product = await client.post(
        "/products", headers=tenant, json={"name": "Tenant product", "product_no": "TN-1"}
    )
    assert product.status_code == 201, product.text

    async def rows(headers: dict[str, str], entity: str, entity_id: int) -> list[str]:
        params = {"entity": entity, "entity_id": str(entity_id)}
        seen = await client.get("/audit", headers=headers, params=params)
        assert seen.status_code == 200, seen.text
        return [row["action"] for row in seen.json()["items"]]

    assert await rows(platform, "org", brand["id"]) == ["create"]
    assert await rows(platform, "org", store.json()["id"]) == ["create"]  # the tenant's own
    assert await rows(platform, "product", product.json()["id"]) == []  # not administered
    assert await rows(tenant, "product", product.json()["id"]) == ["create"]
    assert await rows(admin, "org", brand["id"]) == await rows(admin, "org", store.json()["id"])
    assert await rows(admin, "org", brand["id"]) == []
    assert await rows(tenant, "org", brand["id"]) == ["create"]


async def test_move_carries_the_subtree_and_refuses_cycles(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    agent = (
        await client.post("/orgs", headers=admin, json=_org("agent", "MV-AG", demo["BRAND-LUMI"]))
    ).json()
    dist = (
        await client.post("/orgs", headers=admin, json=_org("distributor", "MV-DI", agent["id"]))
    ).json()
    store = (
        await client.post("/orgs", headers=admin, json=_org("store", "MV-ST", dist["id"]))
    ).json()
    moved = await client.post(
        f"/orgs/{dist['id']}/move", headers=admin, json={"parent_id": demo["AGENT-GD"]}
    )
    assert moved.status_code == 200 and moved.json()["parent_id"] == demo["AGENT-GD"]
    # every page: other tests add organisations under AGENT-GD, listed in path order
    ids = {o["id"] for o in await every_item(client, "/orgs", admin, root_id=demo["AGENT-GD"])}
    assert {dist["id"], store["id"]} <= ids
    old_tree = await client.get("/orgs", headers=admin, params={"root_id": agent["id"]})
    assert {o["id"] for o in old_tree.json()["items"]} == {agent["id"]}
    assert (await client.get(f"/orgs/{store['id']}", headers=admin)).json()["depth"] == 3
    cycle = await client.post(
        f"/orgs/{dist['id']}/move", headers=admin, json={"parent_id": store["id"]}
    )
    assert_error(cycle, 422)
    # the Guangdong admin now sees the moved store; the Zhejiang admin does not
    gd = await login("gd_admin")
    assert (await client.get(f"/orgs/{store['id']}", headers=gd)).status_code == 200
    zj = await login("agent_admin")
    assert_error(await client.get(f"/orgs/{store['id']}", headers=zj), 404)


async def test_deactivated_organisation_locks_out_its_users(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    store = (
        await client.post("/orgs", headers=admin, json=_org("store", "DEACT-1", demo["AGENT-ZJ"]))
    ).json()
    user = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": store["id"],
            "username": "deact_clerk",
            "password": "password-123",
            "roles": ["store_clerk"],
        },
    )
    assert user.status_code == 201
    token = await client.post(
        "/auth/login", json={"username": "deact_clerk", "password": "password-123"}
    )
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert (await client.get("/auth/me", headers=headers)).status_code == 200
    off = await client.post(f"/orgs/{store['id']}/deactivate", headers=admin)
    assert off.status_code == 200 and off.json()["status"] == "inactive"
    assert_error(await client.get("/auth/me", headers=headers), 401, "account_inactive")
    again = await client.post(
        "/auth/login", json={"username": "deact_clerk", "password": "password-123"}
    )
    assert_error(again, 401, "account_inactive")
    inactive = await client.get(
        "/orgs", headers=admin, params={"status": "inactive", "q": "DEACT-1"}
    )
    assert [o["id"] for o in inactive.json()["items"]] == [store["id"]]
    assert (await client.post(f"/orgs/{store['id']}/activate", headers=admin)).json()[
        "status"
    ] == "active"
    assert (await client.get("/auth/me", headers=headers)).status_code == 200


async def test_agent_sees_only_its_own_subtree(client: Any, login: Any, demo: Any) -> None:
    zj = await login("agent_admin")
    # every page: other tests open stores under AGENT-ZJ (by the dozen), listed in path order
    # (``/brand/agent/123/`` before ``/brand/agent/7/``): the demo's may sit past the first 200
    erp_codes = {o["erp_code"] for o in await every_item(client, "/orgs", zj)}
    assert {"AGENT-ZJ", "DIST-NB", "STORE-HZ-01", "STORE-NB-01"} <= erp_codes
    assert not erp_codes & {"BRAND-LUMI", "AGENT-GD", "STORE-GZ-01", "FACTORY-SZ"}
    for erp in ("AGENT-GD", "STORE-GZ-01", "BRAND-LUMI"):
        assert_error(await client.get(f"/orgs/{demo[erp]}", headers=zj), 404)
        assert_error(await client.patch(f"/orgs/{demo[erp]}", headers=zj, json={"name": "x"}), 404)
    assert_error(await client.get("/orgs", headers=zj, params={"root_id": demo["AGENT-GD"]}), 404)
    # and cannot attach children to someone else's organisation
    stolen = _org("store", "STOLEN-1", demo["AGENT-GD"])
    assert_error(await client.post("/orgs", headers=zj, json=stolen), 404)
    # nor move or deactivate its own organisation
    assert_error(
        await client.post(f"/orgs/{demo['AGENT-ZJ']}/deactivate", headers=zj), 422, "own_org"
    )


async def test_listing_pages(client: Any, login: Any, demo: Any) -> None:
    admin = await login("admin")
    first = (await client.get("/orgs", headers=admin, params={"per_page": 3, "page": 1})).json()
    second = (await client.get("/orgs", headers=admin, params={"per_page": 3, "page": 2})).json()
    assert len(first["items"]) == 3 and first["total"] >= 11
    beyond = (await client.get("/orgs", headers=admin, params={"per_page": 3, "page": 1000})).json()
    assert beyond["items"] == [] and beyond["total"] == first["total"]
    assert not {o["id"] for o in first["items"]} & {o["id"] for o in second["items"]}
    stores = (
        await client.get("/orgs", headers=admin, params={"kind": "store", "per_page": 200})
    ).json()
    assert all(o["kind"] == "store" for o in stores["items"]) and stores["total"] >= 4


async def test_deactivating_an_organisation_turns_off_its_whole_subtree(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Probe F: only the deactivated organisation's own users and keys lost access; a store
    under a deactivated agent kept working, and so did a deactivated brand's members."""
    from tests.points_support import new_member

    admin, platform = await login("admin"), await login("platform")
    tag = f"DSUB-{id(client) % 100000}"
    agent = (
        await client.post("/orgs", headers=admin, json=_org("agent", tag, demo["BRAND-LUMI"]))
    ).json()
    store = (
        await client.post("/orgs", headers=admin, json=_org("store", f"{tag}-S", agent["id"]))
    ).json()
    made = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": store["id"],
            "username": f"{tag}-clerk".lower(),
            "password": "password-123",
            "roles": ["store_clerk"],
        },
    )
    assert made.status_code == 201, made.text
    credentials = {"username": f"{tag}-clerk".lower(), "password": "password-123"}
    token = (await client.post("/auth/login", json=credentials)).json()["access_token"]
    user = {"Authorization": f"Bearer {token}"}
    key = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": tag, "org_id": store["id"], "permissions": ["orgs.read"]},
    )
    assert key.status_code == 201, key.text
    as_key = {"X-API-Key": key.json()["key"]}
    brand = await client.post(
        "/orgs", headers=platform, json={"kind": "brand", "name": tag, "erp_code": f"{tag}-B"}
    )
    _, member, _ = await new_member(app, brand.json()["id"])

    def answers() -> Any:
        return (
            client.get("/auth/me", headers=user),
            client.get(f"/orgs/{store['id']}", headers=as_key),
            client.get("/members/me", headers=member),
        )

    for call in answers():
        assert (await call).status_code == 200
    for org, headers in ((agent["id"], admin), (brand.json()["id"], platform)):
        off = await client.post(f"/orgs/{org}/deactivate", headers=headers)
        assert off.status_code == 200, off.text
    me, by_key, member_me = [await call for call in answers()]
    assert_error(me, 401, "account_inactive")
    assert_error(by_key, 401, "account_inactive")  # not revoked: back when active
    assert_error(member_me, 401, "invalid_token")
    assert_error(await client.post("/auth/login", json=credentials), 401, "account_inactive")
    # probes: a move out of (or into) the deactivated subtree, a user moved out of it by an
    # import, and a user or key made under it, each came alive without /activate's checks
    for org, to in ((store["id"], demo["AGENT-ZJ"]), (demo["STORE-NB-01"], agent["id"])):
        moved = await client.post(f"/orgs/{org}/move", headers=admin, json={"parent_id": to})
        assert_error(moved, 422, "parent_inactive")
    row = {"erp_code": f"{tag}-E", "username": credentials["username"], "org_erp_code": "AGENT-ZJ"}
    imported = await client.post("/users/import", headers=admin, json={"items": [row]})
    assert imported.status_code == 200 and imported.json()["rejected"] == 1, imported.text
    assert imported.json()["errors"][0]["code"] == "org_inactive"
    assert_error(await client.post("/auth/login", json=credentials), 401, "account_inactive")
    another = {
        "org_id": store["id"],
        "username": f"{tag}-late".lower(),
        "password": "password-123",
        "roles": ["store_clerk"],
    }
    assert_error(await client.post("/users", headers=admin, json=another), 422, "org_inactive")
    late_key = {"name": f"{tag}-late", "org_id": store["id"], "permissions": ["orgs.read"]}
    assert_error(await client.post("/api-keys", headers=admin, json=late_key), 422, "org_inactive")
    for org, headers in ((agent["id"], admin), (brand.json()["id"], platform)):
        assert (await client.post(f"/orgs/{org}/activate", headers=headers)).status_code == 200
    for call in answers():
        assert (await call).status_code == 200


async def test_a_moved_organisations_users_leave_the_old_ancestors_roles(
    client: Any, login: Any, demo: Any
) -> None:
    """As for a user moved by import: a store moved to another agent keeps no custom role of
    its old agent, whose admin could otherwise still change its users' permissions."""
    admin, zj = await login("admin"), await login("agent_admin")
    tag = f"MVR-{id(client) % 100000}"
    store = (
        await client.post("/orgs", headers=admin, json=_org("store", tag, demo["AGENT-ZJ"]))
    ).json()
    role = f"mvr_{id(client) % 100000}"
    made = await client.post(
        "/roles", headers=zj, json={"name": role, "permissions": ["orgs.read"]}
    )
    assert made.status_code == 201, made.text
    user = await client.post(
        "/users",
        headers=zj,
        json={
            "org_id": store["id"],
            "username": f"{tag}-u".lower(),
            "password": "password-123",
            "roles": ["store_clerk", role],
        },
    )
    assert user.status_code == 201, user.text
    assert sorted(user.json()["roles"]) == sorted(["store_clerk", role])
    moved = await client.post(
        f"/orgs/{store['id']}/move", headers=admin, json={"parent_id": demo["AGENT-GD"]}
    )
    assert moved.status_code == 200, moved.text
    after = (await client.get(f"/users/{user.json()['id']}", headers=admin)).json()
    assert after["roles"] == ["store_clerk"], after


async def test_a_move_that_waited_for_an_ancestor_s_move_moves_from_where_it_is_now(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Review: a move waits for the brand's role-name lock; one that waited behind a move of an
    ancestor of its organisation used the path it had read before: its subtree update matched
    nothing and it answered 200 with nothing moved. The ancestor's move is played by a
    transaction holding the lock, as a move does, that re-parents the agent and commits."""
    import asyncio
    import secrets

    import psycopg

    from app import locks

    admin, brand, tag = await login("admin"), demo["BRAND-LUMI"], secrets.token_hex(3).upper()

    async def new(kind: str, erp: str, parent: int) -> int:
        made = await client.post("/orgs", headers=admin, json=_org(kind, f"{erp}-{tag}", parent))
        assert made.status_code == 201, made.text
        return int(made.json()["id"])

    branch, agent, other_agent = (
        await new("branch", "W-BR", brand),
        await new("agent", "W-AG", brand),
        await new("agent", "W-AG2", brand),
    )
    store = await new("store", "W-ST", agent)

    async def path(conn: Any, org: int) -> str:
        return str(
            (await (await conn.execute("SELECT path FROM orgs WHERE id = %s", (org,))).fetchone())[
                0
            ]
        )

    async with await psycopg.AsyncConnection.connect(app.state.pool.conninfo) as other:
        await other.execute(*locks.xact(locks.Lock.ROLE_NAMES, brand))
        moving = asyncio.create_task(
            client.post(f"/orgs/{store}/move", headers=admin, json={"parent_id": other_agent})
        )
        # it has read the store's path and waits for the lock (seen in pg_locks: a fixed pause
        # was too short on a loaded machine)
        async with app.state.pool.connection() as watch:
            assert await lock_waiters(watch, 1), "the move should wait for the lock"
        old = await path(other, agent)
        await other.execute(  # the agent moves under the branch, with its store
            """UPDATE orgs SET path = %s || substr(path, %s),
                      parent_id = CASE WHEN id = %s THEN %s ELSE parent_id END
                WHERE path LIKE %s""",
            (f"{await path(other, branch)}{agent}/", len(old) + 1, agent, branch, old + "%"),
        )
        await other.commit()
    moved = await asyncio.wait_for(moving, 30)
    assert moved.status_code == 200, moved.text
    async with await psycopg.AsyncConnection.connect(app.state.pool.conninfo) as conn:
        assert await path(conn, store) == f"{await path(conn, other_agent)}{store}/"
    assert (await client.get(f"/orgs/{store}", headers=admin)).json()["parent_id"] == other_agent


async def test_a_user_created_as_its_store_moves_keeps_no_role_out_of_reach(
    client: Any, login: Any, demo: Any
) -> None:
    """A user created with an agent's custom role while its store moves to another agent: either
    the move drops the role (it waits for the user) or the user is refused it (it waits for the
    move, 400 unknown_role) — never a Guangdong user with the Zhejiang agent's role, which the
    Zhejiang admin could then edit (race probe: 12 runs of 12)."""
    admin, zj = await login("admin"), await login("agent_admin")
    for _ in range(4):
        role = f"zj{secrets.token_hex(3)}"
        made = await client.post(
            "/roles", headers=zj, json={"name": role, "permissions": ["reports.read"]}
        )
        assert made.status_code == 201, made.text
        erp = f"ST-{secrets.token_hex(3)}"
        store = await client.post(
            "/orgs",
            headers=admin,
            json={"kind": "store", "name": erp, "erp_code": erp, "parent_id": demo["AGENT-ZJ"]},
        )
        assert store.status_code == 201, store.text
        store_id, name = store.json()["id"], f"mv{secrets.token_hex(4)}"
        created, moved = await asyncio.gather(
            client.post(
                "/users",
                headers=admin,
                json={
                    "org_id": store_id,
                    "username": name,
                    "password": "Sufficiently-long-9",
                    "roles": [role],
                },
            ),
            client.post(
                f"/orgs/{store_id}/move", headers=admin, json={"parent_id": demo["AGENT-GD"]}
            ),
        )
        assert moved.status_code == 200, moved.text
        if created.status_code == 400:
            assert created.json()["error"]["code"] == "unknown_role"
            continue
        assert created.status_code == 201, created.text
        user = await client.get(f"/users/{created.json()['id']}", headers=admin)
        assert role not in user.json()["roles"], user.json()


async def _new_org(client: Any, headers: Any, kind: str, parent: int, **extra: Any) -> int:
    erp = f"PZ-{kind[:3]}-{secrets.token_hex(4)}".upper()
    made = await client.post("/orgs", headers=headers, json=_org(kind, erp, parent, **extra))
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def _path(conn: Any, org: int) -> str:
    row = await (await conn.execute("SELECT path FROM orgs WHERE id = %s", (org,))).fetchone()
    return str(row["path"] if isinstance(row, dict) else row[0])


async def test_a_store_created_while_its_distributor_moves_lands_under_the_new_place(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: two admins at once, one creating a store under a distributor, the other moving
    the distributor to another agent. The store kept the old path: seen by the old agent's
    staff, not by the new's. It follows its parent."""
    from app.orgs import service

    admin = await login("admin")
    brand = demo["BRAND-LUMI"]
    agent1 = await _new_org(client, admin, "agent", brand)
    agent2 = await _new_org(client, admin, "agent", brand)
    dist = await _new_org(client, admin, "distributor", agent1)
    async with await psycopg.AsyncConnection.connect(
        app.state.pool.conninfo, row_factory=dict_row
    ) as mover:
        actor = await acting(mover, "admin")
        await service.move_org(mover, actor, dist, agent2)  # not committed yet
        erp = f"PZ-ST-{secrets.token_hex(4)}".upper()
        creating = asyncio.create_task(
            client.post("/orgs", headers=admin, json=_org("store", erp, dist))
        )
        await asyncio.wait([creating], timeout=2)  # a create that waits for the move is fine
        await mover.commit()
    created = await asyncio.wait_for(creating, 30)
    assert created.status_code == 201, created.text
    store = created.json()["id"]
    async with app.state.pool.connection() as conn:
        dist_path, store_path = await _path(conn, dist), await _path(conn, store)
    assert store_path == f"{dist_path}{store}/", (dist_path, store_path)
    gd = await client.get("/orgs", headers=admin, params={"root_id": agent2, "per_page": 200})
    assert store in {o["id"] for o in gd.json()["items"]}


async def test_no_organisation_is_created_inside_a_deactivated_subtree(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: under a deactivated agent's distributor (itself still 'active') a store was
    created, looking active, in a subtree no one can sign in to; a user there, or a move into
    it, is refused."""
    admin = await login("admin")
    agent = await _new_org(client, admin, "agent", demo["BRAND-LUMI"])
    dist = await _new_org(client, admin, "distributor", agent)
    off = await client.post(f"/orgs/{agent}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    direct = await client.post(
        "/orgs", headers=admin, json=_org("store", f"PZ-D-{secrets.token_hex(3)}", agent)
    )
    assert_error(direct, 422, "parent_inactive")
    below = await client.post(
        "/orgs", headers=admin, json=_org("store", f"PZ-B-{secrets.token_hex(3)}", dist)
    )
    assert_error(below, 422, "parent_inactive")


async def test_an_agent_admin_cannot_create_under_a_distributor_moved_away_meanwhile(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the Zhejiang agent's admin created a store under its distributor while the brand
    moved the distributor to the Guangdong agent: its reach was checked before the move, and the
    store landed in Guangdong's subtree. Checked again after it."""
    import asyncio
    import secrets

    import psycopg
    from psycopg.rows import dict_row

    from app.orgs import service
    from tests.helpers import acting

    admin, zj = await login("admin"), await login("agent_admin")
    dist = await _new_org(client, admin, "distributor", demo["AGENT-ZJ"])
    async with await psycopg.AsyncConnection.connect(
        app.state.pool.conninfo, row_factory=dict_row
    ) as mover:
        actor = await acting(mover, "admin")
        await service.move_org(mover, actor, dist, demo["AGENT-GD"])  # not committed yet
        erp = f"RG-ST-{secrets.token_hex(4)}".upper()
        creating = asyncio.create_task(
            client.post("/orgs", headers=zj, json=_org("store", erp, dist))
        )
        await asyncio.wait([creating], timeout=2)
        await mover.commit()
    created = await asyncio.wait_for(creating, 30)
    assert created.status_code in (403, 404), (created.status_code, created.text)


async def test_no_organisation_is_created_under_an_agent_deactivated_meanwhile(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a store created while its agent's deactivation was in flight came out active
    under an inactive agent. The deactivation takes the brand's lock, as a creation does."""
    import asyncio
    import secrets

    import psycopg
    from psycopg.rows import dict_row

    from app.orgs import service
    from tests.helpers import acting

    admin = await login("admin")
    agent = await _new_org(client, admin, "agent", demo["BRAND-LUMI"])
    async with await psycopg.AsyncConnection.connect(
        app.state.pool.conninfo, row_factory=dict_row
    ) as other:
        actor = await acting(other, "admin")
        await service.set_status(other, actor, agent, "inactive")  # not committed yet
        erp = f"RG-ST-{secrets.token_hex(4)}".upper()
        creating = asyncio.create_task(
            client.post("/orgs", headers=admin, json=_org("store", erp, agent))
        )
        await asyncio.wait([creating], timeout=2)
        await other.commit()
    created = await asyncio.wait_for(creating, 30)
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id FROM orgs WHERE parent_id = %s AND status = 'active'", (agent,)
            )
        ).fetchall()
    assert rows == [], (created.status_code, created.text)


async def test_an_unknown_org_status_filter_is_refused(client: Any, login: Any) -> None:
    """A probe: ``GET /orgs?status=inactiv`` (a typo) answered 200 with an empty list — "no
    closed organisations" — where ``GET /users?status=inactiv`` answers 400
    ``validation_failed``: the org route took any text. Its ``status`` is the users'
    ``active``/``inactive`` literal now."""
    admin = await login("admin")
    users = await client.get("/users", headers=admin, params={"status": "inactiv"})
    assert_error(users, 400, "validation_failed")
    orgs = await client.get("/orgs", headers=admin, params={"status": "inactiv"})
    assert_error(orgs, 400, "validation_failed")
    fine = await client.get("/orgs", headers=admin, params={"status": "active"})
    assert fine.status_code == 200 and fine.json()["items"], fine.text


async def _org_actions(client: Any, headers: Any, org: int) -> list[str]:
    """The organisation's audit rows' actions, newest first."""
    seen = await client.get("/audit", headers=headers, params={"entity": "org", "entity_id": org})
    assert seen.status_code == 200, seen.text
    return [row["action"] for row in seen.json()["items"]]


async def test_a_repeated_deactivation_or_activation_is_audited_once(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: an administrator's double click (or a client's retry) on "deactivate" of a
    store answered 200 and wrote a second ``deactivate`` row, its before already inactive: the
    log named someone who deactivated nothing (the same for ``activate`` of an active one).
    Only the call that changed the status is audited; the other answers the store as it is."""
    admin = await login("admin")
    store = await _new_org(client, admin, "store", demo["AGENT-ZJ"])
    for action, status in (
        ("deactivate", "inactive"),
        ("deactivate", "inactive"),
        ("activate", "active"),
        ("activate", "active"),
    ):
        done = await client.post(f"/orgs/{store}/{action}", headers=admin)
        assert done.status_code == 200 and done.json()["status"] == status, done.text
    assert await _org_actions(client, admin, store) == ["activate", "deactivate", "create"]


async def test_a_move_to_its_own_parent_is_no_move(client: Any, login: Any, demo: Any) -> None:
    """A probe: ``POST /orgs/{id}/move`` to the parent the organisation has already answered
    200 and wrote a ``move`` row from that parent to itself. Nothing moves: 200 with the
    organisation as it is, no row."""
    admin = await login("admin")
    store = await _new_org(client, admin, "store", demo["AGENT-ZJ"])
    stay = await client.post(
        f"/orgs/{store}/move", headers=admin, json={"parent_id": demo["AGENT-ZJ"]}
    )
    assert stay.status_code == 200 and stay.json()["parent_id"] == demo["AGENT-ZJ"], stay.text
    assert await _org_actions(client, admin, store) == ["create"]


async def test_an_org_patch_of_the_values_already_set_writes_no_audit_row(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``PATCH /orgs/{id}`` with the values the organisation already has (a console
    form saved unchanged: its name, no address, its region and position) wrote an ``update``
    row, before and after the same, and moved ``updated_at``: only ``{}`` was a no-op. README:
    a PATCH of the values already set answers 200 with the entity as it is and writes no row."""
    admin = await login("admin")
    place = {
        "province_code": "330000",
        "province_name": "浙江省",
        "city_code": "330100",
        "city_name": "杭州市",
        "latitude": 30.25,
        "longitude": 120,  # a whole number: stored as the float 120.0
    }
    store = await _new_org(client, admin, "store", demo["AGENT-ZJ"], **place)
    org = (await client.get(f"/orgs/{store}", headers=admin)).json()
    for body in ({}, {"name": org["name"], "address": None, "erp_code": org["erp_code"]}, place):
        same = await client.patch(f"/orgs/{store}", headers=admin, json=body)
        assert same.status_code == 200, same.text
        assert same.json() == org, body
    assert await _org_actions(client, admin, store) == ["create"]
    changed = await client.patch(
        f"/orgs/{store}", headers=admin, json={"name": org["name"], "address": "西湖路 1 号"}
    )
    assert changed.status_code == 200 and changed.json()["address"] == "西湖路 1 号", changed.text
    assert await _org_actions(client, admin, store) == ["update", "create"]


def _company_prefix() -> str:
    """A 9-digit GS1 company prefix no other test gives (a brand's is unique)."""
    return "7" + "".join(str(secrets.randbelow(10)) for _ in range(8))


async def test_a_brands_company_prefix_is_the_platform_operators_to_give_and_one_brands(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """A brand's GS1 company prefix (its case codes' SSCCs carry it) is set by the platform
    operator, when it creates the brand or later (a brand's admin: 403), audited as other
    organisation changes; a brand's only (another kind: 400), 6-12 digits, and one brand's: the
    same prefix, one inside the other (GS1 allocates none inside another) or the one another
    brand's case codes were issued under (the platform's, the demo brand's) is 409
    ``duplicate_company_prefix``."""
    platform = await login("platform")
    tag = secrets.token_hex(3).upper()
    prefix = _company_prefix()
    brand = await client.post(
        "/orgs",
        headers=platform,
        json={"kind": "brand", "name": f"Pfx {tag}", "erp_code": f"PFX-{tag}"},
    )
    assert brand.status_code == 201 and brand.json()["gs1_company_prefix"] is None, brand.text
    url = f"/orgs/{brand.json()['id']}"
    lumi_admin = await login("admin")
    assert_error(
        await client.patch(
            f"/orgs/{demo['BRAND-LUMI']}", headers=lumi_admin, json={"gs1_company_prefix": prefix}
        ),
        403,
        "permission_denied",
    )
    shown = await client.get(f"/orgs/{demo['BRAND-LUMI']}", headers=lumi_admin)
    assert shown.json()["gs1_company_prefix"] is None
    # the platform operator sets it, audited
    set_ = await client.patch(url, headers=platform, json={"gs1_company_prefix": prefix})
    assert set_.status_code == 200 and set_.json()["gs1_company_prefix"] == prefix, set_.text
    row = await (
        await conn.execute(
            "SELECT action, before, after FROM audit_log WHERE entity = 'org' AND entity_id = %s "
            "ORDER BY id DESC LIMIT 1",
            (str(brand.json()["id"]),),
        )
    ).fetchone()
    assert row["action"] == "update"
    assert (row["before"]["gs1_company_prefix"], row["after"]["gs1_company_prefix"]) == (
        None,
        prefix,
    )
    # one brand's: the same, one inside it, the one the demo brand's case codes carry
    platform_prefix = app.state.settings.gs1_company_prefix
    await client.post(  # the demo brand's case codes carry the platform's prefix
        "/case-batches",
        headers=await login("planner"),
        json={"level": "inner", "size": 1, "printer_id": demo["PRINTER-SH"]},
    )
    for taken in (prefix, prefix[:7], prefix + "12", platform_prefix):
        other = {"kind": "brand", "name": f"Copy {tag}", "erp_code": f"CPY-{tag}"}
        error = assert_error(
            await client.post(
                "/orgs", headers=platform, json={**other, "gs1_company_prefix": taken}
            ),
            409,
            "duplicate_company_prefix",
        )
        assert error["details"] == {"field": "gs1_company_prefix"}
    second = await client.post(
        "/orgs",
        headers=platform,
        json={"kind": "brand", "name": f"Pfx2 {tag}", "erp_code": f"PFX2-{tag}"},
    )
    assert second.status_code == 201, second.text
    assert_error(
        await client.patch(
            f"/orgs/{second.json()['id']}", headers=platform, json={"gs1_company_prefix": prefix}
        ),
        409,
        "duplicate_company_prefix",
    )
    # a brand's only, and digits as GS1 allocates them
    store = {"kind": "store", "name": "S", "erp_code": f"S-{tag}", "parent_id": brand.json()["id"]}
    assert_error(
        await client.post(
            "/orgs", headers=platform, json={**store, "gs1_company_prefix": "712345678"}
        ),
        400,
    )
    for bad in ("12345", "1234567890123", "69O1234", "6901234\n"):
        assert_error(
            await client.patch(url, headers=platform, json={"gs1_company_prefix": bad}), 400
        )
    # taken away before any case batch: the brand takes the platform's again
    cleared = await client.patch(url, headers=platform, json={"gs1_company_prefix": None})
    assert cleared.status_code == 200 and cleared.json()["gs1_company_prefix"] is None


@pytest.mark.parametrize("action", ["deactivate", "move"])
async def test_a_key_made_where_a_weaker_admin_deactivates_or_moves_waits_for_it(
    client: Any, app: Any, login: Any, action: str
) -> None:
    """A probe: an agent's administrator (no ``codes.issue``) deactivated or moved a store while
    the brand's administrator made a key holding ``codes.issue`` there: the change checked what
    is held below under the brand's role-name lock, which every grant to a user or a role takes
    but ``create_api_key`` did not — the key, made between the check and the write, was not
    seen, and both were answered 201/200. The key waits for the change: made in the store
    deactivated meanwhile, 422 ``org_inactive``; in the store moved, after the move (one after
    the other the other way, the change is 403 ``stronger_account``)."""
    brand, admin = await onboarded_brand(client, login)
    agent = await _new_org(client, admin, "agent", brand["id"])
    dist = await _new_org(client, admin, "distributor", agent)
    name, password = f"weaker_{secrets.token_hex(4)}", "a-long-password-1"
    user = {"org_id": agent, "username": name, "password": password, "roles": ["org_admin"]}
    assert (await client.post("/users", headers=admin, json=user)).status_code == 201
    signed = await client.post("/auth/login", json={"username": name, "password": password})
    assert signed.status_code == 200, signed.text
    weaker = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    key_body = {"name": "line", "permissions": ["codes.issue", "orgs.read"]}
    store = await _new_org(client, admin, "store", agent)
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM orgs WHERE id = %s FOR NO KEY UPDATE", (store,))
        change = asyncio.ensure_future(
            client.post(
                f"/orgs/{store}/{action}",
                headers=weaker,
                json={"parent_id": dist} if action == "move" else None,
            )
        )
        assert await lock_waiters(watch, 1), "the change should wait for the store's row"
        key = asyncio.ensure_future(
            client.post("/api-keys", headers=admin, json={**key_body, "org_id": store})
        )
        await lock_waiters(watch, 2)  # the key waits for the change (~5 s if it does not)
        await holder.commit()
        changed, made = await asyncio.gather(change, key)
    assert changed.status_code == 200, changed.text
    if action == "deactivate":
        assert_error(made, 422, "org_inactive")
        return
    assert made.status_code == 201, made.text
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT action FROM audit_log WHERE (entity = 'org' AND entity_id = %s "
                "AND action = 'move') OR (entity = 'api_key' AND entity_id = %s "
                "AND action = 'create') ORDER BY id",
                (str(store), str(made.json()["api_key"]["id"])),
            )
        ).fetchall()
    assert [r["action"] for r in rows] == ["move", "create"], "the key made before the move"


async def test_an_all_zero_company_prefix_is_refused(client: Any, login: Any) -> None:
    """A probe: ``"000000"`` was given as a brand's company prefix. GS1 allocates no prefix of
    zeros, and by the longest-prefix rule such a brand claimed every other brand's GTIN-8
    (their GTIN-14 is 000000…): 400 on creation and on PATCH, as an all-zero GTIN is."""
    platform = await login("platform")
    tag = secrets.token_hex(4).upper()
    brand, _ = await onboarded_brand(client, login)
    for zeros in ("000000", "000000000", "000000000000"):
        body = {"kind": "brand", "name": f"Z {tag}", "erp_code": f"Z-{tag}"}
        made = await client.post(
            "/orgs", headers=platform, json={**body, "gs1_company_prefix": zeros}
        )
        assert_error(made, 400, "validation_failed")
        patched = await client.patch(
            f"/orgs/{brand['id']}", headers=platform, json={"gs1_company_prefix": zeros}
        )
        assert_error(patched, 400, "validation_failed")
    shown = await client.get(f"/orgs/{brand['id']}", headers=platform)
    assert shown.json()["gs1_company_prefix"] is None


async def test_a_prefix_another_brand_s_gtins_carry_is_not_given(client: Any, login: Any) -> None:
    """A probe: a prefix another brand's catalogued GTINs (printed on its packs) carry was
    given to a new brand: A's product was then "under C's prefix", yet its page and Digital
    Link stayed A's, and C could not catalogue that number. 409 ``duplicate_company_prefix``
    for another brand — the prefix or a shorter one the GTIN starts with, after its indicator
    digit (a GTIN-14 of a case too) —; the brand whose products carry it may take it."""
    from app._core import gs1_check_digit

    prefix = "8" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    owner, owner_admin = await onboarded_brand(client, login)
    body = "1" + prefix + "123"  # a case's GTIN-14, indicator digit 1
    gtin = body + str(gs1_check_digit(body))
    tag = secrets.token_hex(3)
    product = {"name": "Cream", "product_no": f"CR-{tag}", "gtin": gtin}
    made = await client.post("/products", headers=owner_admin, json=product)
    assert made.status_code == 201, made.text
    platform = await login("platform")
    other, _ = await onboarded_brand(client, login)
    for taken in (prefix, prefix[:7]):
        new = {"kind": "brand", "name": f"C {tag} {taken}", "erp_code": f"C-{tag}-{taken}"}
        error = assert_error(
            await client.post("/orgs", headers=platform, json={**new, "gs1_company_prefix": taken}),
            409,
            "duplicate_company_prefix",
        )
        assert error["details"] == {"field": "gs1_company_prefix"}
        patched = await client.patch(
            f"/orgs/{other['id']}", headers=platform, json={"gs1_company_prefix": taken}
        )
        assert_error(patched, 409, "duplicate_company_prefix")
    own = await client.patch(
        f"/orgs/{owner['id']}", headers=platform, json={"gs1_company_prefix": prefix}
    )
    assert own.status_code == 200 and own.json()["gs1_company_prefix"] == prefix, own.text


async def test_a_brand_name_is_one_brand_s(client: Any, login: Any, demo: Any) -> None:
    """A probe: a tenant's admin renamed its brand to the demo brand's exact name — the name
    every H5 page of the brand shows and every SMS of it is signed with. Another brand's name,
    in any case and with blanks at either end, is 409 ``duplicate_brand_name`` on PATCH and on
    creation; the brand's own in another case is its to write, and an organisation that is no
    brand may bear a brand's name."""
    platform, lumi_admin = await login("platform"), await login("admin")
    lumi = (await client.get(f"/orgs/{demo['BRAND-LUMI']}", headers=lumi_admin)).json()["name"]
    brand, admin = await onboarded_brand(client, login)
    url = f"/orgs/{brand['id']}"
    for name in (lumi, lumi.upper(), f"  {lumi}\u3000", f"\u200b{lumi.lower()} "):
        error = assert_error(
            await client.patch(url, headers=admin, json={"name": name}), 409, "duplicate_brand_name"
        )
        assert error["details"] == {"field": "name"}
    assert (await client.get(url, headers=admin)).json()["name"] == brand["name"]
    tag = secrets.token_hex(4).upper()
    copy = {"kind": "brand", "name": brand["name"].lower(), "erp_code": f"CP-{tag}"}
    assert_error(
        await client.post("/orgs", headers=platform, json=copy), 409, "duplicate_brand_name"
    )
    own = await client.patch(url, headers=admin, json={"name": brand["name"].upper()})
    assert own.status_code == 200, own.text
    store = {"kind": "store", "name": lumi, "erp_code": f"ST-{tag}", "parent_id": brand["id"]}
    assert (await client.post("/orgs", headers=admin, json=store)).status_code == 201


@pytest.mark.parametrize(
    "spelling",
    [
        lambda n: unicodedata.normalize("NFD", n),  # "e" and U+0300 for "è"
        lambda n: n.replace("mi", "mi\u200b", 1),  # a zero-width space inside
        lambda n: n.replace(" ", "\u00a0", 1),  # a no-break space between words
        lambda n: n.replace(" ", "\u3000 \u2800", 1),  # a run of blanks
        lambda n: n.replace("u", "u\u00ad\ufe0f", 1),  # a soft hyphen, a variation selector
        lambda n: n.replace("L", "\uff2c", 1),  # a fullwidth letter (NFKC)
    ],
    ids=["nfd", "zwsp", "nbsp", "blank-run", "soft-hyphen", "fullwidth"],
)
async def test_a_brand_name_shown_as_another_brand_s_is_that_brand_s(
    client: Any, login: Any, demo: Any, spelling: Any
) -> None:
    """A probe: the demo brand's name written another way that shows the same — a decomposed
    accent, a zero-width space inside, a no-break or ideographic space between the words — made
    a second brand of it. Compared as it shows (migration 0142's ``brand_name_key``), it is 409
    ``duplicate_brand_name``, on creation and on a rename."""
    platform, lumi_admin = await login("platform"), await login("admin")
    lumi = (await client.get(f"/orgs/{demo['BRAND-LUMI']}", headers=lumi_admin)).json()["name"]
    name = spelling(lumi)
    assert name != lumi
    tag = secrets.token_hex(4).upper()
    made = await client.post(
        "/orgs", headers=platform, json={"kind": "brand", "name": name, "erp_code": f"LA-{tag}"}
    )
    assert_error(made, 409, "duplicate_brand_name")
    brand, admin = await onboarded_brand(client, login)
    renamed = await client.patch(f"/orgs/{brand['id']}", headers=admin, json={"name": name})
    assert_error(renamed, 409, "duplicate_brand_name")


@pytest.mark.parametrize(
    "name",
    ["\u00ad", "\u2061", "\u3164", "\u2800", "\u034f", "\u115f", "\ufe0f", "\u180e", "\u2064",
     " \u200b\u3164\ufe0f"],
    ids=ascii,
)  # fmt: skip
async def test_an_organisation_name_that_shows_nothing_is_refused(
    client: Any, login: Any, demo: Any, name: str
) -> None:
    """A probe: a name of a soft hyphen, an invisible operator, a Hangul filler, the braille
    blank, the combining grapheme joiner, a variation selector or the Mongolian vowel separator
    alone was made (201), and showed as nothing in every list — as a name of spaces or
    zero-width marks is refused (``app.textguard.VISIBLE``)."""
    admin = await login("admin")
    tag = secrets.token_hex(4).upper()
    body = {"kind": "store", "name": name, "erp_code": f"IV-{tag}", "parent_id": demo["AGENT-GD"]}
    assert_error(await client.post("/orgs", headers=admin, json=body), 400)
    assert_error(
        await client.patch(f"/orgs/{demo['STORE-GZ-01']}", headers=admin, json={"name": name}), 400
    )


async def test_two_brands_given_one_name_at_once_one_is_refused(
    client: Any, app: Any, login: Any
) -> None:
    """Two brands onboarded with one name at once (both read it free before either wrote): one
    is made, the other 409 ``duplicate_brand_name``."""
    from app.locks import Lock

    platform = await login("platform")
    tag = secrets.token_hex(4).upper()
    bodies = tuple(
        {"kind": "brand", "name": f"Twin {tag}", "erp_code": f"TW-{tag}-{n}"} for n in (1, 2)
    )
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT pg_advisory_xact_lock(%s, 0)", (int(Lock.BRAND_NAMES),))
        racing = [
            asyncio.ensure_future(client.post("/orgs", headers=platform, json=body))
            for body in bodies
        ]
        done, _ = await asyncio.wait(racing, timeout=2)
        if not done:
            assert await lock_waiters(watch, 2)
        await holder.commit()
        answers = await asyncio.gather(*racing)
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    assert_error(next(a for a in answers if a.status_code == 409), 409, "duplicate_brand_name")


# --- a deactivation with goods on their way ------------------------------------------------

from tests.helpers import new_org, new_user, sales_order, signed_in  # noqa: E402
from tests.test_logistics import confirm, document, route  # noqa: E402

__all__ = ["route"]  # the fixture: a factory's received cases


async def _store_with_goods_coming(
    client: Any, login: Any, demo: Any, goods: dict[str, Any], *, confirmed: bool = True
) -> tuple[int, int, dict[str, str], dict[str, Any]]:
    """A case shipped factory -> AGENT-ZJ (received), then AGENT-ZJ -> a new store S under a
    new distributor D (the outbound confirmed, or only drafted). (D, S, S's clerk, outbound)."""
    clerk, agent = await login("clerk"), await login("agent_clerk")
    order_id = await sales_order(client, login, demo, goods["product_id"], 10)
    ship = await document(client, clerk, goods["cases"][:1], kind="outbound", order_id=order_id)
    assert (await confirm(client, clerk, ship)).status_code == 200
    got = await client.post(f"/orders/{order_id}/receive", headers=agent)
    assert got.status_code == 200, got.text
    admin = await login("admin")
    dist = await new_org(client, admin, "distributor", demo["AGENT-ZJ"])
    store = await new_org(client, admin, "store", dist["id"])
    store_clerk = await signed_in(
        client, await new_user(client, admin, store["id"], ["store_clerk"])
    )
    out = await document(
        client, agent, goods["cases"][:1], kind="outbound", counterparty_id=store["id"]
    )
    if confirmed:
        shipped = await confirm(client, agent, out)
        assert shipped.status_code == 200, shipped.text
    return dist["id"], store["id"], store_clerk, out


async def test_no_store_is_deactivated_while_goods_are_on_their_way_to_it(
    client: Any, login: Any, demo: Any, route: dict[str, Any]
) -> None:
    """A probe: a store deactivated with a shipment on its way to it was 200, and nobody could
    receive the goods (its clerk refused) nor take them back (the agent holds them no more)
    until it was reactivated. Refused while they are on their way — the store, or any
    organisation above it — with the shipment named; once received, and with goods the store
    shipped on their way elsewhere (received by their receiver, whatever the store's status), the
    store is deactivated."""
    dist, store, store_clerk, out = await _store_with_goods_coming(client, login, demo, route)
    admin = await login("admin")
    for org in (store, dist):
        off = await client.post(f"/orgs/{org}/deactivate", headers=admin)
        assert_error(off, 409, "goods_in_transit")
        details = off.json()["error"]["details"]
        assert details == {
            "count": 1,
            "shipments": [{"id": out["id"], "doc_no": out["doc_no"], "org_id": store}],
        }, details
        assert (await client.get(f"/orgs/{org}", headers=admin)).json()["status"] == "active"
    # the ERP import closes it through the same rule: the row rejected whole
    erp_code = (await client.get(f"/orgs/{store}", headers=admin)).json()["erp_code"]
    imported = await client.post(
        "/orgs/import",
        headers={**admin, "Content-Type": "text/csv"},
        content=f"erp_code,name,status\n{erp_code},Closed,inactive\n".encode(),
    )
    assert imported.status_code == 200, imported.text
    assert [e["code"] for e in imported.json()["errors"]] == ["goods_in_transit"], imported.text
    after = (await client.get(f"/orgs/{store}", headers=admin)).json()
    assert after["status"] == "active" and after["name"] != "Closed", after
    inbound = await document(client, store_clerk, kind="inbound", shipment_id=out["id"])
    assert (await confirm(client, store_clerk, inbound)).status_code == 200
    back = await document(client, store_clerk, route["cases"][:1], kind="return")
    assert (await confirm(client, store_clerk, back)).status_code == 200  # on its way up
    off = await client.post(f"/orgs/{store}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    assert (await client.post(f"/orgs/{dist}/deactivate", headers=admin)).status_code == 200
    agent = await login("agent_clerk")
    received = await document(client, agent, kind="inbound", shipment_id=back["id"])
    assert (await confirm(client, agent, received)).status_code == 200


async def test_a_store_whose_shipment_came_a_unit_short_is_deactivated(
    client: Any, login: Any, demo: Any, route: dict[str, Any]
) -> None:
    """A review: a store received its shipment one unit short (reported missing: lost on the
    way); the lost unit stays in transit to it for good, and its deactivation — and every
    organisation's above it — was refused for ever. A shipment received in part counts no
    more: what its receipt did not take was reported missing to the receiver."""
    dist, store, store_clerk, out = await _store_with_goods_coming(client, login, demo, route)
    got = await document(
        client, store_clerk, route["units"][:9], kind="inbound", shipment_id=out["id"]
    )
    answer = await confirm(client, store_clerk, got)
    assert answer.status_code == 200, answer.text
    assert answer.json()["discrepancies"]["missing"]["count"] == 1, answer.text
    admin = await login("admin")
    for org in (store, dist):
        off = await client.post(f"/orgs/{org}/deactivate", headers=admin)
        assert off.status_code == 200, off.text


async def test_a_deactivation_waits_for_a_shipment_being_confirmed_to_the_store(
    client: Any, app: Any, login: Any, demo: Any, route: dict[str, Any]
) -> None:
    """A shipment to a store confirmed while the store's deactivation runs: the deactivation
    reads what is on its way only once the confirmation (which holds the store's line ``FOR
    SHARE``) is done, and is refused. Before, it read nothing on its way, then its UPDATE
    waited for the confirmation and went through: 200, the goods stranded."""
    from app.logistics import documents

    _, store, _, out = await _store_with_goods_coming(client, login, demo, route, confirmed=False)
    admin = await login("admin")
    async with app.state.pool.connection() as shipping, app.state.pool.connection() as watch:
        actor = await acting(shipping, "agent_clerk")
        await documents.confirm(shipping, actor, app.state.scheme, out["id"])  # not committed
        off = asyncio.ensure_future(client.post(f"/orgs/{store}/deactivate", headers=admin))
        assert await lock_waiters(watch, 1), "the deactivation should wait for the shipment"
        await shipping.commit()
        answer = await asyncio.wait_for(off, 30)
    assert_error(answer, 409, "goods_in_transit")


async def test_a_shipment_confirmed_while_its_store_is_deactivated_is_refused(
    client: Any, app: Any, login: Any, demo: Any, route: dict[str, Any]
) -> None:
    """The other way round: the deactivation first (not committed yet), the confirmation waits
    for the store's row once it has locked its goods, and sees the store closed."""
    from app.orgs import service

    _, store, _, out = await _store_with_goods_coming(client, login, demo, route, confirmed=False)
    agent = await login("agent_clerk")
    async with app.state.pool.connection() as closing, app.state.pool.connection() as watch:
        actor = await acting(closing, "admin")
        await service.set_status(closing, actor, store, "inactive")  # not committed
        shipped = asyncio.ensure_future(confirm(client, agent, out))
        assert await lock_waiters(watch, 1), "the confirmation should wait for the store's row"
        await closing.commit()
        answer = await asyncio.wait_for(shipped, 30)
    assert_error(answer, 409, "org_inactive")


async def test_a_stores_own_admin_changes_neither_its_region_nor_its_position(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a store's org_admin moved its store from Zhejiang to Guangdong (200), though its
    position was refused (422 ``own_org``): the organisations above rank it, report on it and
    tell leaks by its region. Each of the region's fields is refused alike; the agent above
    still sets them; other fields stay the store's own."""
    admin = await login("admin")
    region = {
        "province_code": "330000", "province_name": "浙江省",
        "city_code": "330100", "city_name": "杭州市",
    }  # fmt: skip
    store = await new_org(client, admin, "store", demo["AGENT-ZJ"], **region)
    own = await signed_in(client, await new_user(client, admin, store["id"], ["org_admin"]))
    moved = {
        "province_code": "440000", "province_name": "广东省",
        "city_code": "440100", "city_name": "广州市",
    }  # fmt: skip
    patched = await client.patch(f"/orgs/{store['id']}", headers=own, json=moved)
    assert_error(patched, 422, "own_org")
    for field in ("province_name", "city_name"):
        one = await client.patch(f"/orgs/{store['id']}", headers=own, json={field: "杭州"})
        assert_error(one, 422, "own_org")
    got = await client.get(f"/orgs/{store['id']}", headers=admin)
    assert {k: got.json()[k] for k in region} == region
    same = await client.patch(f"/orgs/{store['id']}", headers=own, json=region)
    assert same.status_code == 200, same.text  # the values already set: no change
    contact = await client.patch(f"/orgs/{store['id']}", headers=own, json={"address": "2 Rd"})
    assert contact.status_code == 200, contact.text
    agent = await login("agent_admin")
    by_agent = await client.patch(f"/orgs/{store['id']}", headers=agent, json=moved)
    assert by_agent.status_code == 200, by_agent.text
