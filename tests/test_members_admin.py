"""Member admin for the brand's staff: search, scans, freeze, CSV export, scoping (issue 15 item 7),
and the verification record naming its member (the scan history's source)."""

from __future__ import annotations

import csv
import io
import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import redis as redis_sync

from tests.helpers import assert_error, key_of, new_user
from tests.rebates_support import user_id
from tests.test_members_auth import new_phone, sign_in

PASSWORD = "members-admin-pw-1"
_names = itertools.count(1)


async def _member(app: Any, brand_id: int, **columns: Any) -> dict[str, Any]:
    """A member inserted directly (created_at and the rest as given)."""
    columns = {"brand_id": brand_id, "phone": new_phone(), **columns}
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                f"INSERT INTO members ({names}) VALUES ({marks}) RETURNING *",
                list(columns.values()),
            )
        ).fetchone()
    assert row is not None
    return row  # type: ignore[no-any-return]


async def _staff(client: Any, admin: Any, org_id: int, roles: list[str]) -> dict[str, str]:
    username = f"mb_staff_{next(_names)}_{uuid.uuid4().hex[:6]}"
    created = await client.post(
        "/users",
        headers=admin,
        json={"org_id": org_id, "username": username, "password": PASSWORD, "roles": roles},
    )
    assert created.status_code == 201, created.text
    token = await client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.fixture(scope="module")
async def other_brand(client: Any, login: Any) -> dict[str, Any]:
    """A second tenant with its own admin."""
    platform = await login("platform")
    brand = await client.post(
        "/orgs",
        headers=platform,
        json={"kind": "brand", "name": "Members Tenant", "erp_code": f"MB-T{uuid.uuid4().hex[:6]}"},
    )
    assert brand.status_code == 201, brand.text
    brand_id = brand.json()["id"]
    return {"id": brand_id, "admin": await _staff(client, platform, brand_id, ["brand_admin"])}


async def test_staff_find_members_by_phone_province_and_registration_day(
    client: Any, app: Any, demo: Any, login: Any
) -> None:
    brand = demo["BRAND-LUMI"]
    # registered on business days in Shanghai: 23:30 UTC on the 9th is the 10th there
    day = datetime(2024, 3, 9, 23, 30, tzinfo=UTC)
    zj = await _member(app, brand, province="浙江省", city="杭州市", created_at=day)
    gd = await _member(app, brand, province="广东省", created_at=day - timedelta(days=2))
    admin, service = (
        await login("admin"),
        await _staff(client, await login("admin"), brand, ["member_service"]),
    )

    async def ids(headers: Any, **params: Any) -> list[int]:
        answer = await client.get("/members", headers=headers, params={"per_page": 200, **params})
        assert answer.status_code == 200, answer.text
        return [m["id"] for m in answer.json()["items"]]

    assert await ids(admin, phone=zj["phone"]) == [zj["id"]]
    assert await ids(admin, phone=f"+86 {zj['phone']}") == [zj["id"]]
    assert zj["id"] in await ids(admin, phone=zj["phone"][-4:])
    assert await ids(admin, phone=zj["phone"][-8:]) == [zj["id"]]

    async def ours(**params: Any) -> list[int]:
        # the demo brand's members of other tests (e.g. 浙江省 ones of 2023, below) match these
        # filters too: which of this test's two each filter keeps
        return [i for i in await ids(admin, **params) if i in (zj["id"], gd["id"])]

    assert await ours(**{"from": "2024-03-10", "to": "2024-03-10"}) == [zj["id"]]
    assert await ours(**{"from": "2024-03-07", "to": "2024-03-09"}) == [gd["id"]]
    assert await ours(province="Guangdong", **{"from": "2024-03-01", "to": "2024-03-31"}) == [
        gd["id"]
    ]
    assert await ours(province="浙江省", **{"to": "2024-03-10"}) == [zj["id"]]

    # phones: whole for members.read_phone (brand_admin), masked for customer service
    whole = (await client.get("/members", headers=admin, params={"phone": zj["phone"]})).json()
    assert whole["items"][0]["phone"] == zj["phone"] and whole["total"] == 1
    masked = (await client.get("/members", headers=service, params={"phone": zj["phone"]})).json()
    assert masked["items"][0]["phone"] == f"{zj['phone'][:3]}****{zj['phone'][-4:]}"
    detail = (await client.get(f"/members/{zj['id']}", headers=service)).json()
    assert detail["phone"] == masked["items"][0]["phone"] and zj["phone"] not in str(detail)
    # staff who see phones masked search by the digits they see, no more (probe N: matching
    # the last 5 to 10 digits told the hidden ones, one digit a few requests)
    by_tail = await client.get("/members", headers=service, params={"phone": zj["phone"][-4:]})
    assert zj["id"] in [m["id"] for m in by_tail.json()["items"]]
    for tail in (zj["phone"][-5:], zj["phone"][-8:], zj["phone"][-10:]):
        assert_error(
            await client.get("/members", headers=service, params={"phone": tail}),
            400,
            "validation_failed",
        )

    # paging
    page = (await client.get("/members", headers=admin, params={"per_page": 1, "page": 2})).json()
    assert len(page["items"]) == 1 and page["total"] >= 2 and page["page"] == 2


@pytest.mark.parametrize(
    "params",
    [{"phone": "abc"}, {"phone": "123"}, {"phone": "+1 2025550123"}, {"province": "Atlantis"},
     {"from": "2024-03-10", "to": "2024-03-01"}, {"status": "gone"}, {"from": "yesterday"},
     {"format": "pdf"}, {"per_page": 201}, {"phone": "1" * 40}],
)  # fmt: skip
async def test_bad_searches_are_refused(client: Any, login: Any, params: dict[str, Any]) -> None:
    answer = await client.get("/members", headers=await login("admin"), params=params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] in {"validation_failed", "invalid_phone", "bad_period"}


async def test_members_stay_with_their_brand_and_its_head_office(
    client: Any, app: Any, demo: Any, login: Any, other_brand: dict[str, Any]
) -> None:
    mine = await _member(app, demo["BRAND-LUMI"])
    theirs = await _member(app, other_brand["id"])
    admin, other = await login("admin"), other_brand["admin"]
    listed = (await client.get("/members", headers=other, params={"per_page": 200})).json()
    assert [m["id"] for m in listed["items"]] == [theirs["id"]]
    assert (await client.get(f"/members/{theirs['id']}", headers=other)).status_code == 200
    for path in (f"/members/{mine['id']}", f"/members/{mine['id']}/scans"):
        assert_error(await client.get(path, headers=other), 404, "not_found")
    assert_error(
        await client.post(f"/members/{mine['id']}/freeze", headers=other, json={"reason": "x"}),
        404,
    )
    assert_error(await client.get(f"/members/{theirs['id']}", headers=admin), 404)
    # the same answer as a member that does not exist
    assert_error(await client.get("/members/999999999", headers=other), 404, "not_found")

    # below the brand: even with members.read granted, no member is visible
    role = await client.post(
        "/roles",
        headers=admin,
        json={"name": f"member_reader_{uuid.uuid4().hex[:6]}", "permissions": ["members.read"]},
    )
    assert role.status_code == 201, role.text
    for org in ("STORE-HZ-01", "AGENT-ZJ", "FACTORY-SZ"):
        below = await _staff(client, admin, demo[org], [role.json()["name"]])
        assert_error(await client.get("/members", headers=below), 403, "brand_staff_only")
        assert_error(await client.get(f"/members/{mine['id']}", headers=below), 404)
        assert_error(
            await client.get("/members", headers=below, params={"format": "csv"}),
            403,
            "brand_staff_only",
        )
    # nor change their points, the brand's points rules or its gifts (probe F: an agent's
    # clerk given points.rules credited any member and set the brand-wide default rule)
    writer = await client.post(
        "/roles",
        headers=admin,
        json={
            "name": f"points_writer_{uuid.uuid4().hex[:6]}",
            "permissions": ["points.rules", "gifts.write"],
        },
    )
    assert writer.status_code == 201, writer.text
    below = await _staff(client, admin, demo["AGENT-ZJ"], [writer.json()["name"]])
    credit = {"member_id": mine["id"], "points": 1000, "reason": "gift", "client_id": "pw-1"}
    for method, path, body in (
        ("POST", "/points/adjustments", {**credit, "kind": "adjustment"}),
        ("PUT", "/points/rules", {"product_id": 1, "points": 999}),
        ("POST", "/gifts", {"name": "x", "points_cost": 1, "kind": "offline", "stock": 1}),
    ):
        answer = await client.request(method, path, headers=below, json=body)
        assert_error(answer, 403, "brand_staff_only")
    # without the permission at all
    for user in ("analyst", "agent_admin", "store_clerk"):
        assert_error(
            await client.get("/members", headers=await login(user)), 403, "permission_denied"
        )
        assert_error(await client.get(f"/members/{mine['id']}", headers=await login(user)), 403)


async def test_freeze_and_unfreeze_with_a_reason_audited(
    client: Any, app: Any, demo: Any, login: Any
) -> None:
    brand = demo["BRAND-LUMI"]
    headers, signed = await sign_in(client, app, brand)
    member_id = signed["member"]["id"]
    admin = await login("admin")
    service = await _staff(client, admin, brand, ["member_service"])
    reader = await client.post(
        "/roles",
        headers=admin,
        json={"name": f"member_viewer_{uuid.uuid4().hex[:6]}", "permissions": ["members.read"]},
    )
    viewer = await _staff(client, admin, brand, [reader.json()["name"]])
    path = f"/members/{member_id}"
    assert_error(
        await client.post(f"{path}/freeze", headers=viewer, json={"reason": "x"}),
        403,
        "permission_denied",
    )
    assert_error(await client.post(f"{path}/freeze", headers=service, json={}), 400)
    assert_error(await client.post(f"{path}/freeze", headers=service, json={"reason": ""}), 400)

    frozen = await client.post(f"{path}/freeze", headers=service, json={"reason": "刷分 fraud"})
    assert frozen.status_code == 200, frozen.text
    body = frozen.json()
    assert body["status"] == "frozen" and body["frozen_reason"] == "刷分 fraud"
    assert body["frozen_at"] and body["frozen_by"]
    assert_error(
        await client.post(f"{path}/freeze", headers=service, json={"reason": "again"}),
        409,
        "member_already_frozen",
    )
    assert (await client.get("/members/me", headers=headers)).json()["status"] == "frozen"
    listed = await client.get(
        "/members", headers=admin, params={"status": "frozen", "per_page": 200}
    )
    assert member_id in [m["id"] for m in listed.json()["items"]]

    thawed = await client.post(f"{path}/unfreeze", headers=service, json={"reason": "appeal ok"})
    assert thawed.status_code == 200, thawed.text
    assert thawed.json()["status"] == "active" and thawed.json()["frozen_reason"] is None
    assert_error(
        await client.post(f"{path}/unfreeze", headers=service, json={}), 409, "member_not_frozen"
    )

    audit = (
        await client.get("/audit", headers=admin, params={"entity": "member", "per_page": 200})
    ).json()["items"]
    mine = [a for a in audit if a["entity_id"] == str(member_id)]
    assert {a["action"] for a in mine} >= {"freeze", "unfreeze"}, mine
    assert not any(signed["member"]["phone"] in str(a) for a in audit)


async def test_a_member_frozen_through_an_api_key_names_its_maker(
    client: Any, app: Any, demo: Any, login: Any, conn: Any
) -> None:
    """A probe: member service's CRM froze a member through an API key (``members.write``) and
    ``frozen_by`` was null — what a freeze carried over from an erased membership shows (frozen
    by nobody). It names the person behind the key now (``Principal.person``)."""
    _, signed = await sign_in(client, app, demo["BRAND-LUMI"])
    key = await key_of(client, await login("admin"), ["members.write", "members.read"])
    frozen = await client.post(
        f"/members/{signed['member']['id']}/freeze", headers=key, json={"reason": "chargeback"}
    )
    assert frozen.status_code == 200, frozen.text
    assert frozen.json()["frozen_by"] == await user_id(conn, "admin"), frozen.json()


def _queue_record(
    client: redis_sync.Redis, namespace: str, serial: str, product_id: int | None,
    brand_id: int, member_id: int | None, at: datetime,
) -> bytes:  # fmt: skip
    """A verification record as the verifier queues it (its JSON, the outcome appended)."""
    from app.verify.record import Record
    from app.verify.regions import Place
    from app.verify.schemas import VerifyIn

    record = Record(
        at, str(uuid.uuid4()), VerifyIn(serial=serial, pin="123456"), "127.0.0.1", "test",
        Place("浙江省", "杭州市", 30.27, 120.15),
    )  # fmt: skip
    record.serial, record.brand_id, record.product_id = serial, brand_id, product_id
    record.member_id = member_id
    raw = record.prefix() + b',"result":"genuine","reason":"first_query","queries":1}'
    client.lpush(f"{namespace}:verif:queue", raw)
    return raw


async def test_a_members_scans_come_from_the_verifications_naming_it(
    client: Any, app: Any, demo: Any, login: Any, settings: Any
) -> None:
    from app.verify import records
    from app.verify.fallback import insert_record
    from app.verify.record import Record
    from app.verify.schemas import VerifyIn

    brand = demo["BRAND-LUMI"]
    member = await _member(app, brand)
    async with app.state.pool.connection() as conn:
        product = await (
            await conn.execute(
                "SELECT id, name, spec FROM products WHERE product_no = 'LM-HY-50' AND org_id = %s",
                (brand,),
            )
        ).fetchone()
    assert product is not None
    now = datetime.now(UTC)
    ns = f"{settings.redis_namespace}mbscan"
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    tag = uuid.uuid4().hex[:8]
    claimed = _queue_record(sync_redis, ns, f"MB{tag}A", product["id"], brand, member["id"], now)
    anonymous = _queue_record(sync_redis, ns, f"MB{tag}B", product["id"], brand, None, now)
    assert b'"member_id"' in claimed and b'"member_id"' not in anonymous  # the hot path's JSON
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, ns):
            pass
        stored = dict(
            pg.execute(
                "SELECT serial, member_id FROM verifications WHERE serial LIKE %s", (f"MB{tag}%",)
            ).fetchall()
        )
    assert stored == {f"MB{tag}A": member["id"], f"MB{tag}B": None}
    # written directly when Redis is down: the member too
    direct = Record(
        now - timedelta(minutes=5),
        str(uuid.uuid4()),
        VerifyIn(serial=f"MB{tag}C"),
        None,
        None,
        None,
    )
    direct.serial, direct.brand_id, direct.member_id = f"MB{tag}C", brand, member["id"]
    await insert_record(app.state.pool, direct, "not_genuine", "not_activated", 0)

    admin = await login("admin")
    scans = (await client.get(f"/members/{member['id']}/scans", headers=admin)).json()
    assert scans["total"] == 2
    first, second = scans["items"]
    assert first["serial"] == f"MB{tag}A" and first["product_name"] == product["name"]
    assert first["spec"] == product["spec"] and first["province"] == "浙江省"
    assert first["city"] == "杭州市" and first["result"] == "genuine"
    assert second["serial"] == f"MB{tag}C" and second["product_name"] is None
    detail = (await client.get(f"/members/{member['id']}", headers=admin)).json()
    assert detail["scans_total"] == 2 and [s["serial"] for s in detail["scans"]] == [
        f"MB{tag}A",
        f"MB{tag}C",
    ]


async def test_the_csv_export_masks_guards_formulas_and_is_audited(
    client: Any, app: Any, demo: Any, login: Any
) -> None:
    brand = demo["BRAND-LUMI"]
    day = datetime(2023, 7, 1, 4, 0, tzinfo=UTC)
    hostile = await _member(
        app, brand, province="浙江省", city="=HYPERLINK(\"http://x\")", email="@evil.cn",
        wechat_id="-cmd", created_at=day,
    )  # fmt: skip
    plain = await _member(app, brand, province="浙江省", created_at=day)
    admin = await login("admin")
    service = await _staff(client, admin, brand, ["member_service"])
    window = {"from": "2023-07-01", "to": "2023-07-01", "format": "csv"}

    async def rows(headers: Any) -> list[dict[str, str]]:
        answer = await client.get("/members", headers=headers, params=window)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/csv")
        assert "attachment" in answer.headers["content-disposition"]
        text = answer.content.decode("utf-8-sig")
        return list(csv.DictReader(io.StringIO(text)))

    for_service = await rows(service)
    assert {r["id"] for r in for_service} == {str(hostile["id"]), str(plain["id"])}
    row = next(r for r in for_service if r["id"] == str(hostile["id"]))
    assert row["phone"] == f"{hostile['phone'][:3]}****{hostile['phone'][-4:]}"
    assert row["city"] == '\'=HYPERLINK("http://x")' and row["email"] == "***@evil.cn"
    assert row["wechat_id"] == "'-***" and row["province"] == "浙江省"  # masked, still guarded
    for_admin = await rows(admin)
    assert {r["phone"] for r in for_admin} == {hostile["phone"], plain["phone"]}
    row = next(r for r in for_admin if r["id"] == str(hostile["id"]))
    assert row["email"] == "'@evil.cn" and row["wechat_id"] == "'-cmd"

    audit = (
        await client.get("/audit", headers=admin, params={"entity": "member", "per_page": 200})
    ).json()["items"]
    exports = [a for a in audit if a["action"] == "export"]
    assert len(exports) >= 2
    assert exports[0]["after"]["filters"]["date_from"] == "2023-07-01"
    # a phone searched for is kept masked: the audit's readers may see phones masked only
    one = await client.get("/members", headers=admin, params={**window, "phone": plain["phone"]})
    assert one.status_code == 200 and plain["phone"] in one.text
    audit = (
        await client.get("/audit", headers=admin, params={"entity": "member", "per_page": 200})
    ).json()["items"]
    latest = next(a for a in audit if a["action"] == "export")
    assert latest["after"]["filters"]["phone"] == f"{plain['phone'][:3]}****{plain['phone'][-4:]}"
    assert plain["phone"] not in str(audit)


async def test_a_members_redemptions_show_who_fulfilled_them_where(
    client: Any, app: Any, demo: Any, login: Any, other_brand: dict[str, Any]
) -> None:
    brand = demo["BRAND-LUMI"]
    member = await _member(app, brand)
    store, now = demo["STORE-HZ-01"], datetime.now(UTC)
    async with app.state.pool.connection() as conn:
        clerk = await (
            await conn.execute("SELECT id FROM users WHERE username = 'store_clerk'")
        ).fetchone()
        gift = await (
            await conn.execute(
                "INSERT INTO gifts (brand_id, name, points_cost, kind, stock) "
                "VALUES (%s, '保温杯 Thermos', 300, 'offline', 10) RETURNING id",
                (brand,),
            )
        ).fetchone()
        assert clerk is not None and gift is not None
        ids = {}
        for status, extra in (
            ("issued", {}),
            (
                "fulfilled",
                {"fulfilled_at": now, "fulfilled_by": clerk["id"], "fulfilled_org_id": store},
            ),
            ("expired", {"expired_at": now}),
        ):
            columns = {
                "brand_id": brand, "member_id": member["id"], "gift_id": gift["id"],
                "gift_kind": "offline", "points": 300, "code_digest": uuid.uuid4().bytes,
                "code_sealed": b"sealed", "status": status, "client_id": uuid.uuid4().hex,
                "expires_at": now + timedelta(days=30), **extra,
            }  # fmt: skip
            row = await (
                await conn.execute(
                    f"INSERT INTO redemptions ({', '.join(columns)}) "
                    f"VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id",
                    list(columns.values()),
                )
            ).fetchone()
            assert row is not None
            ids[status] = row["id"]
    path = f"/members/{member['id']}/redemptions"
    listed = await client.get(path, headers=await login("admin"))
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [r["id"] for r in items] == [ids["expired"], ids["fulfilled"], ids["issued"]]
    fulfilled = items[1]
    assert fulfilled["status"] == "fulfilled" and fulfilled["fulfilled_by_name"] == "store_clerk"
    assert fulfilled["fulfilled_org_id"] == store and "杭州" in fulfilled["fulfilled_org_name"]
    assert fulfilled["gift_name"] == "保温杯 Thermos" and fulfilled["points"] == 300
    assert not any("code" in key for key in fulfilled)  # never the redemption code
    only = await client.get(path, headers=await login("admin"), params={"status": "fulfilled"})
    assert [r["id"] for r in only.json()["items"]] == [ids["fulfilled"]]
    assert_error(await client.get(path, headers=await login("admin"), params={"status": "x"}), 400)
    # scoped like the member
    assert_error(await client.get(path, headers=other_brand["admin"]), 404)
    assert_error(await client.get(path, headers=await login("store_clerk")), 403)


async def test_a_members_detail_shows_the_points_balance_and_latest_ledger(
    client: Any, app: Any, demo: Any, login: Any, other_brand: dict[str, Any]
) -> None:
    """GET /members/{id} carries the balance (app.members.points.balance) and the 20 latest
    ledger entries; GET /members/{id}/points pages through them all."""
    member = await _member(app, demo["BRAND-LUMI"])
    admin = await login("admin")
    path = f"/members/{member['id']}"
    fresh = (await client.get(path, headers=admin)).json()
    assert (fresh["points_balance"], fresh["ledger"], fresh["ledger_total"]) == (0, [], 0)
    for n in range(22):
        body = {
            "member_id": member["id"],
            "points": 10 if n % 2 == 0 else -3,
            "reason": f"entry {n}",
            "client_id": uuid.uuid4().hex,
        }
        posted = await client.post("/points/adjustments", headers=admin, json=body)
        assert posted.status_code == 201, posted.text
    detail = await client.get(path, headers=admin)
    assert detail.status_code == 200, detail.text
    shown = detail.json()
    assert shown["points_balance"] == 11 * 10 - 11 * 3 == 77
    assert shown["ledger_total"] == 22 and len(shown["ledger"]) == 20
    assert [e["reason"] for e in shown["ledger"]] == [f"entry {n}" for n in range(21, 1, -1)]
    assert shown["ledger"][0]["kind"] == "adjustment" and shown["ledger"][0]["points"] == -3
    async with app.state.pool.connection() as conn:
        summed = await (
            await conn.execute(
                "SELECT sum(points) AS s FROM points_ledger WHERE member_id = %s", (member["id"],)
            )
        ).fetchone()
    assert summed is not None and summed["s"] == shown["points_balance"]
    # every entry, paged; the freeze answer is the same detail
    second = (await client.get(f"{path}/points", headers=admin, params={"page": 2})).json()
    first = (await client.get(f"{path}/points", headers=admin, params={"per_page": 20})).json()
    assert (second["balance"], second["total"], second["items"]) == (77, 22, [])
    assert [e["reason"] for e in first["items"]] == [e["reason"] for e in shown["ledger"]]
    paged = await client.get(f"{path}/points", headers=admin, params={"per_page": 20, "page": 2})
    assert [e["reason"] for e in paged.json()["items"]] == ["entry 1", "entry 0"]
    frozen = await client.post(f"{path}/freeze", headers=admin, json={"reason": "test"})
    assert frozen.status_code == 200 and frozen.json()["points_balance"] == 77
    # scoped like the member
    for who in (other_brand["admin"], await login("store_clerk"), await login("analyst")):
        assert (await client.get(f"{path}/points", headers=who)).status_code in (403, 404)
    assert_error(await client.get(f"{path}/points", headers=other_brand["admin"]), 404)
    assert_error(await client.get("/members/999999999/points", headers=admin), 404)


async def test_members_e_mails_and_wechat_ids_follow_the_phones_rule_for_staff(
    client: Any, app: Any, demo: Any, login: Any
) -> None:
    """A probe: customer service (``member_service``, no ``members.read_phone``) saw members'
    phones masked but their e-mails and WeChat ids whole — in the CSV export, the member's
    detail and the freeze's answer — while ``GET /audit`` masked the same e-mails for them.
    Now one rule (``app.members.mask``): whole only to who sees phones whole, else masked as
    the audit log masks them (``l***@example.com``)."""
    brand = demo["BRAND-LUMI"]
    tag = uuid.uuid4().hex[:8]
    email, wechat = f"lin.{tag}@example.com", f"wx_{tag}"
    member = await _member(app, brand, email=email, wechat_id=wechat)
    admin = await login("admin")
    service = await _staff(client, admin, brand, ["member_service"])
    search = {"phone": member["phone"][-4:], "format": "csv"}

    async def shown(headers: Any) -> list[Any]:
        exported = await client.get("/members", headers=headers, params=search)
        assert exported.status_code == 200, exported.text
        (row,) = [
            r
            for r in csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig")))
            if r["id"] == str(member["id"])
        ]
        detail = await client.get(f"/members/{member['id']}", headers=headers)
        assert detail.status_code == 200, detail.text
        return [
            (row["email"], row["wechat_id"]),
            (detail.json()["email"], detail.json()["wechat_id"]),
        ]

    assert await shown(service) == [("l***@example.com", "w***")] * 2
    assert await shown(admin) == [(email, wechat)] * 2
    frozen = await client.post(
        f"/members/{member['id']}/freeze", headers=service, json={"reason": "probe"}
    )
    assert frozen.status_code == 200, frozen.text  # the freeze answers the detail, masked
    assert (frozen.json()["email"], frozen.json()["wechat_id"]) == ("l***@example.com", "w***")
    no_email = await _member(app, brand)
    detail = await client.get(f"/members/{no_email['id']}", headers=service)
    assert detail.json()["email"] is None and detail.json()["wechat_id"] is None


async def test_the_audit_log_masks_personal_data_for_readers_who_cannot_see_it(
    client: Any, login: Any, demo: Any
) -> None:
    """Probe N: an analyst (audit.read, no users.read) read staff phones and e-mails in the
    before/after of users' audit rows. Masked for such readers; whole for those who may."""
    admin, analyst = await login("admin"), await login("analyst")
    contact = {"phone": "13912345678", "email": "wang.li@example.com"}
    made = await new_user(client, admin, demo["BRAND-LUMI"], ["analyst"], **contact)
    query = {"entity": "user", "entity_id": str(made["id"])}
    for_admin = (await client.get("/audit", headers=admin, params=query)).json()["items"]
    assert for_admin[0]["after"]["phone"] == "13912345678"
    for_analyst = await client.get("/audit", headers=analyst, params=query)
    assert for_analyst.status_code == 200, for_analyst.text
    row = for_analyst.json()["items"][0]
    assert row["after"]["phone"] == "139****5678" and row["after"]["email"] == "w***@example.com"
    assert "13912345678" not in for_analyst.text and "wang.li" not in for_analyst.text


async def test_an_adjustment_sent_again_with_another_reason_is_refused(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """The same client id answers the first adjustment only for the same entry: another reason
    (another adjustment of the same size) is 409 client_id_reused. Before, it answered the first
    entry, and the second adjustment was lost without a word (probe)."""
    member = await _member(app, demo["BRAND-LUMI"])
    admin = await login("admin")
    body = {"member_id": member["id"], "points": 10, "reason": "welcome", "client_id": "adj-1"}
    first = await client.post("/points/adjustments", headers=admin, json=body)
    assert first.status_code == 201, first.text
    again = await client.post("/points/adjustments", headers=admin, json=body)
    assert again.status_code == 200 and again.json()["entry_id"] == first.json()["entry_id"]
    other = await client.post(
        "/points/adjustments", headers=admin, json={**body, "reason": "refund of order 77"}
    )
    assert_error(other, 409, "client_id_reused")


async def test_members_csv_lists_the_rows_in_the_order_of_the_json_list(
    client: Any, app: Any, demo: Any, login: Any
) -> None:
    """A probe: README (Members and loyalty): ``GET /members`` lists the brand's members *newest first*
    and ``&format=csv`` "exports every match" of that list; the console's export button
    downloads "the same endpoint and filters" (README, Console: Lists). Every other export of a
    list (management center, verifications, rebates, statements, redemptions, inspections,
    users) writes its rows in the JSON list's order, through the same query.

    ``app/members/admin.py:export_csv`` orders the file ``ORDER BY m.id`` — oldest first —
    while ``list_members`` orders ``m.created_at DESC, m.id DESC``: the file comes out reversed
    against the page a user exported it from (and by another key, so a member whose
    registration time is not in id order lands elsewhere again). Expected: the CSV rows are the
    JSON rows, in the same order (use the list's ORDER BY in the export)."""
    brand = demo["BRAND-LUMI"]
    day = datetime(2022, 3, 9, tzinfo=timezone(timedelta(hours=8)))
    made = []
    async with app.state.pool.connection() as conn:
        for hour in (9, 15, 23):  # registered in id order, three times of one Beijing day
            row = await (
                await conn.execute(
                    "INSERT INTO members (brand_id, phone, created_at) VALUES (%s, %s, %s) "
                    "RETURNING id",
                    (brand, new_phone(), day + timedelta(hours=hour)),
                )
            ).fetchone()
            made.append(row["id"])
    admin = await login("admin")
    window = {"from": "2022-03-09", "to": "2022-03-09"}
    listed = await client.get("/members", headers=admin, params=window)
    assert listed.status_code == 200, listed.text
    json_ids = [m["id"] for m in listed.json()["items"]]
    assert sorted(json_ids) == sorted(made)
    exported = await client.get("/members", headers=admin, params={**window, "format": "csv"})
    assert exported.status_code == 200, exported.text
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    csv_ids = [int(r["id"]) for r in rows]
    assert json_ids == list(reversed(made))  # newest first, as documented
    assert csv_ids == json_ids, (csv_ids, json_ids)


async def test_staff_who_see_phones_masked_cannot_unmask_one_by_whole_number_searches(
    client: Any, app: Any, demo: Any, login: Any
) -> None:
    """A probe: member service (``members.read``, not ``members.read_phone``) sees a member as
    ``139****1234`` and asked ``GET /members?phone=`` with every whole number
    ``139<0000…9999>1234`` — nothing limited them — and the one search answering ``total: 1``
    named the hidden digits: the whole phone was unmasked (the 5-to-10-digit search refused for
    that reason was the same oracle). Now the whole-number searches of such staff finding no
    member count per account (``MemberLimits.take_guess``), and past the limit every
    whole-number search is refused, the right number's too, the CSV's too; searches that find
    the member do not count."""
    from app.members.limits import PHONE_MISS_MAX, PHONE_MISS_WINDOW_SECONDS

    brand = demo["BRAND-LUMI"]
    member = await _member(app, brand)
    phone = member["phone"]
    admin = await login("admin")
    service = await _staff(client, admin, brand, ["member_service"])
    shown = await client.get(f"/members/{member['id']}", headers=service)
    assert shown.status_code == 200, shown.text
    masked = shown.json()["phone"]
    assert masked == phone[:3] + "****" + phone[-4:]  # what member service is allowed to see
    # the service desk finding a caller by their number is no miss, however often
    for _ in range(3):
        found = await client.get("/members", headers=service, params={"phone": phone})
        assert found.status_code == 200 and found.json()["total"] == 1, found.text
    head, tail = masked[:3], masked[-4:]
    misses = 0
    for hidden in range(10_000):
        guess = f"{head}{hidden:04d}{tail}"
        if guess == phone:
            continue  # the walk's lucky guess is tried last, below
        answer = await client.get("/members", headers=service, params={"phone": guess})
        if answer.status_code == 429:  # the walk was stopped: nothing learnt
            break
        assert answer.status_code == 200 and answer.json()["total"] == 0, answer.text
        misses += 1
    assert misses == PHONE_MISS_MAX
    for params in ({"phone": phone}, {"phone": phone, "format": "csv"}):
        refused = await client.get("/members", headers=service, params=params)
        assert_error(refused, 429, "rate_limited")
        assert 0 < int(refused.headers["Retry-After"]) <= PHONE_MISS_WINDOW_SECONDS
    # the digits the account sees still search; staff who see phones whole are not counted
    by_tail = await client.get("/members", headers=service, params={"phone": tail})
    assert member["id"] in [m["id"] for m in by_tail.json()["items"]]
    whole = await client.get("/members", headers=admin, params={"phone": f"{head}99999999"})
    assert whole.status_code == 200 and whole.json()["total"] == 0


async def test_csv_phone_searches_count_and_a_phone_search_fails_closed_without_redis(
    client: Any, app: Any, demo: Any, login: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CSV export of a whole-number search by masked staff counts its misses as the list
    does (the file is empty or not: the same oracle); with Redis unreachable such searches are
    refused (503), not let through uncounted; the last 4 digits still search."""
    from app.members import limits as member_limits_module

    monkeypatch.setattr(member_limits_module, "PHONE_MISS_MAX", 2)
    brand = demo["BRAND-LUMI"]
    member = await _member(app, brand)
    admin = await login("admin")
    service = await _staff(client, admin, brand, ["member_service"])
    csv_of = {"format": "csv"}
    hit = await client.get("/members", headers=service, params={**csv_of, "phone": member["phone"]})
    assert hit.status_code == 200 and str(member["id"]) in hit.text  # a hit: not counted
    for params in ({"phone": "13999999998"}, {**csv_of, "phone": "13999999997"}):
        answer = await client.get("/members", headers=service, params=params)
        assert answer.status_code == 200, answer.text
    assert_error(
        await client.get("/members", headers=service, params={**csv_of, "phone": member["phone"]}),
        429,
        "rate_limited",
    )

    async def unreachable(*_: Any, **__: Any) -> Any:
        raise redis_sync.exceptions.ConnectionError("Redis is down")

    limits = member_limits_module.member_limits(app.state)
    monkeypatch.setattr(limits, "_take", unreachable)
    fresh = await _staff(client, admin, brand, ["member_service"])
    for params in ({"phone": member["phone"]}, {**csv_of, "phone": member["phone"]}):
        assert_error(
            await client.get("/members", headers=fresh, params=params), 503, "service_unavailable"
        )
    tail = await client.get("/members", headers=fresh, params={"phone": member["phone"][-4:]})
    assert tail.status_code == 200, tail.text
    whole = await client.get("/members", headers=admin, params={"phone": member["phone"]})
    assert whole.status_code == 200 and whole.json()["total"] == 1


async def test_a_freeze_reason_of_blanks_is_refused(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: ``POST /members/{id}/freeze {"reason"}`` took a reason of blanks only (200), so
    the member was frozen for no stated reason (shown as ``frozen_reason``, carried over to the
    phone's next membership after an erasure) and customer service could not tell the member
    why. ``app.members.schemas.Reason`` is now the settlement's (not blank): 400
    ``validation_failed`` and the member stays active."""
    admin = await login("admin")
    member = await _member(app, demo["BRAND-LUMI"])
    for reason in ("   ", "\u3000"):
        frozen = await client.post(
            f"/members/{member['id']}/freeze", headers=admin, json={"reason": reason}
        )
        assert_error(frozen, 400, "validation_failed")
    detail = await client.get(f"/members/{member['id']}", headers=admin)
    assert detail.json()["status"] == "active"
