"""Another brand's staff on every member, points, gift, redemption and SMS route (issue 15).

The demo brand makes one record of each kind; the admin of a brand onboarded for this test then
reads, changes and deletes them by id (404 every time, as if they did not exist) and lists every
collection (none of the demo brand's records in it). A member of the other brand reads only its own.
"""

from __future__ import annotations

import secrets
from typing import Any

from tests.helpers import assert_error
from tests.points_support import new_member


async def _other_brand_admin(client: Any, login: Any) -> tuple[int, dict[str, str]]:
    platform = await login("platform")
    tag = secrets.token_hex(4).upper()  # 3 bytes: two of a run's brands met once in ~300,000
    brand = await client.post(
        "/orgs",
        headers=platform,
        json={"kind": "brand", "name": f"Other brand {tag}", "erp_code": f"OB-{tag}"},
    )
    assert brand.status_code == 201, brand.text
    password = secrets.token_urlsafe(16)
    username = f"ob-{tag.lower()}"
    user = await client.post(
        "/users",
        headers=platform,
        json={
            "org_id": brand.json()["id"],
            "username": username,
            "password": password,
            "roles": ["brand_admin"],
        },
    )
    assert user.status_code == 201, user.text
    token = await client.post("/auth/login", json={"username": username, "password": password})
    assert token.status_code == 200, token.text
    return brand.json()["id"], {"Authorization": f"Bearer {token.json()['access_token']}"}


async def test_another_brand_finds_none_of_the_brands_members_gifts_and_templates(
    client: Any, login: Any, app: Any, demo: dict[str, int]
) -> None:
    admin = await login("admin")
    member_id, member_headers, phone = await new_member(app, demo["BRAND-LUMI"])
    gift = await client.post(
        "/gifts",
        headers=admin,
        json={"name": "Cross-brand mug", "points_cost": 10, "kind": "offline", "stock": 5},
    )
    assert gift.status_code == 201, gift.text
    gift_id = gift.json()["id"]
    marketer = await login("marketer")
    template = await client.post(
        "/sms/templates",
        headers=marketer,
        json={"name": f"x_{secrets.token_hex(3)}", "body": "{season} news"},
    )
    assert template.status_code == 201, template.text
    template_id = template.json()["id"]
    rules = (await client.get("/points/rules", headers=admin)).json()

    other_brand, other = await _other_brand_admin(client, login)
    # the demo brand's admin does reach each record (so the 404s below are about the brand)
    assert (await client.get(f"/members/{member_id}", headers=admin)).status_code == 200
    assert (await client.get(f"/gifts/{gift_id}", headers=admin)).status_code == 200

    for method, path, body in [
        ("GET", f"/members/{member_id}", None),
        ("GET", f"/members/{member_id}/scans", None),
        ("GET", f"/members/{member_id}/points", None),
        ("GET", f"/members/{member_id}/redemptions", None),
        ("POST", f"/members/{member_id}/freeze", {"reason": "probe"}),
        ("GET", f"/gifts/{gift_id}", None),
        ("PATCH", f"/gifts/{gift_id}", {"stock": 0}),
        ("DELETE", f"/gifts/{gift_id}", None),
        ("PATCH", f"/sms/templates/{template_id}", {"body": "hijacked"}),
        ("DELETE", f"/sms/templates/{template_id}", None),
    ]:
        response = await client.request(method, path, headers=other, json=body)
        assert_error(response, 404)

    for path, key in [
        ("/members", "id"),
        ("/gifts", "id"),
        ("/points/rules", "id"),
        ("/sms/templates", "id"),
        ("/redemptions", "id"),
    ]:
        listed = await client.get(path, headers=other)
        assert listed.status_code == 200, (path, listed.text)
        body = listed.json()
        items = body["items"] if isinstance(body, dict) else body
        assert all(item.get("brand_id", other_brand) == other_brand for item in items), path
        if path == "/members":
            assert member_id not in {item[key] for item in items}
        if path == "/gifts":
            assert gift_id not in {item[key] for item in items}
        if path == "/sms/templates":
            assert template_id not in {item[key] for item in items}
        if path == "/points/rules":
            demo_rules = rules["items"] if isinstance(rules, dict) else rules
            assert not {r[key] for r in demo_rules} & {item[key] for item in items}
    searched = await client.get("/members", headers=other, params={"phone": phone})
    assert searched.json()["total"] == 0

    # nothing changed for the demo brand
    assert (await client.get(f"/gifts/{gift_id}", headers=admin)).json()["stock"] == 5
    assert (await client.get(f"/members/{member_id}", headers=admin)).json()["status"] == "active"

    # a member of the other brand sees the other brand's gifts only, and never the staff routes
    _, other_member, _ = await new_member(app, other_brand)
    gifts = (await client.get("/members/me/gifts", headers=other_member)).json()
    gift_items = gifts["items"] if isinstance(gifts, dict) else gifts
    assert gift_id not in {g["id"] for g in gift_items}
    assert_error(await client.get(f"/gifts/{gift_id}", headers=other_member), 401)
    assert_error(await client.get("/members/me", headers=admin), 401)
    assert (await client.get("/members/me", headers=member_headers)).status_code == 200


async def test_another_brands_code_claimed_by_a_member_stays_out_of_its_brands_view(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A probe: a member of brand B claimed the points of a LUMI unit (422 other_brand), and
    the claim's verification was recorded with the member's id whatever the code's brand
    (``Claims.claim`` passed the member to ``Verifier.verify``): brand B's staff read LUMI's
    serial and product in their member's scans (``GET /members/{id}/scans``), and LUMI's staff
    read brand B's member id on their own verification (``GET /verifications``). Another
    organisation's record answers as if it did not exist: no member is recorded with it."""
    import asyncio

    import psycopg
    import redis as redis_sync

    from app.verify import records
    from tests.points_support import claim_body, member_client, set_rule, shipped_goods

    def flush_all() -> None:
        queue = redis_sync.Redis.from_url(settings.redis_url)
        with psycopg.connect(settings.database_url, autocommit=True) as pg:
            while records.flush(queue, pg, settings.redis_namespace):
                pass

    goods = await shipped_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 10)
    other_brand, other_admin = await _other_brand_admin(client, login)
    member_id, headers, _ = await new_member(app, other_brand)
    serial = goods["units"][2]
    async with member_client(app) as mc:
        refused = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, serial)
        )
    assert_error(refused, 422, "other_brand")
    await asyncio.to_thread(flush_all)
    scans = await client.get(f"/members/{member_id}/scans", headers=other_admin)
    assert scans.status_code == 200, scans.text
    seen = [s["serial"] for s in scans.json()["items"]]
    lumi = await client.get("/verifications", headers=admin, params={"serial": serial})
    assert lumi.status_code == 200, lumi.text
    foreign = [v["member_id"] for v in lumi.json()["items"] if v["member_id"] is not None]
    assert lumi.json()["items"]  # the verification is LUMI's, recorded without the member
    assert (seen, foreign) == ([], []), (scans.json()["items"], lumi.json()["items"])
