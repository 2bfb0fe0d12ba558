"""Gifts and redemption (M3, M4): the brand's gifts and what a member is offered, redeeming
(points and stock in one transaction, no oversell and no negative balance under races), the code
by SMS, staff checking and fulfilling it once, expiry refunding once, the stores' settlement and
its scoping, and the ledger equal to every balance after a random sequence of operations."""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from app.localtime import today
from app.members.points import check_balances
from app.members.redemptions import expire_due
from tests.helpers import assert_error, every_item, onboarded_brand
from tests.images import png
from tests.points_support import (
    claim_body,
    into_channel,
    member_client,
    new_member,
    set_rule,
    shipped_goods,
)
from tests.race_support import lock_waiters
from tests.steady import clear_of_midnight
from tests.test_catalog_media import mp4, upload


async def give(client: Any, login: Any, member_id: int, points: int) -> None:
    """Points by a brand adjustment (the quickest way to a balance)."""
    response = await client.post(
        "/points/adjustments",
        headers=await login("admin"),
        json={
            "member_id": member_id,
            "points": points,
            "reason": "welcome bonus",
            "client_id": secrets.token_hex(8),
        },
    )
    assert response.status_code == 201, response.text


async def new_gift(client: Any, login: Any, **fields: Any) -> dict[str, Any]:
    body = {"name": "Gift", "points_cost": 30, "kind": "offline", "stock": 10, **fields}
    response = await client.post("/gifts", headers=await login("admin"), json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def redeem(
    app: Any, headers: dict[str, str], gift_id: int, client_id: str | None = None
) -> Any:
    async with member_client(app) as mc:
        return await mc.post(
            "/members/me/redemptions",
            headers=headers,
            json={"gift_id": gift_id, "client_id": client_id or secrets.token_hex(8)},
        )


async def outbox_code(app: Any, redemption_id: int) -> dict[str, Any]:
    """The SMS queued for a redemption, as the outbox holds it before sending."""
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """SELECT o.template, o.purpose, o.phone, o.variables, o.member_id
                   FROM redemptions r JOIN sms_outbox o ON o.id = r.sms_id WHERE r.id = %s""",
                (redemption_id,),
            )
        ).fetchone()
    assert row is not None
    return dict(row)


async def stock_of(app: Any, gift_id: int) -> int:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT stock FROM gifts WHERE id = %s", (gift_id,))
        ).fetchone()
    return int(row["stock"])


async def balance_of(app: Any, member_id: int) -> int:
    from app.members.points import balance

    async with app.state.pool.connection() as conn:
        return await balance(conn, member_id)


async def test_gifts_are_the_brands_and_members_see_what_they_can_get(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    admin = await login("admin")
    tag = secrets.token_hex(3)
    now = datetime.now(UTC)
    everywhere = await new_gift(client, login, name=f"Everywhere {tag}", display_order=2)
    canton = await new_gift(
        client, login, name=f"Canton {tag}", provinces=["广东省"], display_order=1
    )
    await new_gift(
        client, login, name=f"Past {tag}", valid_to=(now - timedelta(days=1)).isoformat()
    )
    await new_gift(
        client, login, name=f"Later {tag}", valid_from=(now + timedelta(days=1)).isoformat()
    )
    empty = await new_gift(client, login, name=f"Empty {tag}", stock=0)
    assert everywhere["kind"] == "offline" and everywhere["collect_days"] == 30

    async def offered(province: str | None) -> list[str]:
        _, headers, _ = await new_member(app, demo["BRAND-LUMI"], province=province)
        async with member_client(app) as mc:
            response = await mc.get("/members/me/gifts", headers=headers, params={"per_page": 200})
        assert response.status_code == 200, response.text
        return [g["name"] for g in response.json()["items"] if g["name"].endswith(tag)]

    assert await offered("浙江省") == [f"Everywhere {tag}"]
    assert await offered("广东省") == [f"Canton {tag}", f"Everywhere {tag}"]
    assert await offered(None) == [f"Everywhere {tag}"]
    # edits: stock back, then withdrawn
    patched = await client.patch(f"/gifts/{empty['id']}", headers=admin, json={"stock": 3})
    assert patched.status_code == 200 and patched.json()["stock"] == 3
    assert f"Empty {tag}" in await offered("浙江省")
    assert (await client.delete(f"/gifts/{empty['id']}", headers=admin)).status_code == 204
    assert f"Empty {tag}" not in await offered("浙江省")
    assert_error(await client.get(f"/gifts/{empty['id']}", headers=admin), 404)
    # every page: in display order a new gift comes last, after every other test's
    assert f"Past {tag}" in [g["name"] for g in await every_item(client, "/gifts", admin)]
    # bad paths
    for user in ("store_clerk", "agent_admin", "analyst"):
        body = {"name": "x", "points_cost": 1, "kind": "online", "stock": 1}
        assert_error(await client.post("/gifts", headers=await login(user), json=body), 403)
    assert_error(await client.get("/gifts", headers=await login("analyst")), 403)
    for bad in (
        {"name": "", "points_cost": 1, "kind": "online", "stock": 1},
        {"name": "x", "points_cost": 0, "kind": "online", "stock": 1},
        {"name": "x", "points_cost": 1, "kind": "mail", "stock": 1},
        {"name": "x", "points_cost": 1, "kind": "online", "stock": -1},
        {
            "name": "x",
            "points_cost": 1,
            "kind": "online",
            "stock": 1,
            "picture_url": "javascript:1",
        },
    ):
        assert_error(await client.post("/gifts", headers=admin, json=bad), 400)
    window = {
        "name": "x",
        "points_cost": 1,
        "kind": "online",
        "stock": 1,
        "valid_from": now.isoformat(),
        "valid_to": (now - timedelta(hours=1)).isoformat(),
    }
    assert_error(await client.post("/gifts", headers=admin, json=window), 422, "bad_window")
    # a time without its offset is refused, never read as UTC (probe L: mixed with one that has
    # an offset, it was a 500)
    for naive in (
        {**window, "valid_from": "2026-12-04T00:00:00", "valid_to": "2026-12-05T00:00:00+08:00"},
        {**window, "valid_from": "2026-12-04T00:00:00+08:00", "valid_to": "2026-12-05T00:00:00"},
    ):
        error = assert_error(await client.post("/gifts", headers=admin, json=naive), 400)
        assert error["details"][0]["field"] in ("valid_from", "valid_to")
    assert_error(
        await client.patch(
            f"/gifts/{canton['id']}", headers=admin, json={"valid_to": "2027-01-01T00:00:00"}
        ),
        400,
        "validation_failed",
    )
    late = {
        "valid_to": (
            datetime.fromisoformat(canton["created_at"]) - timedelta(days=400)
        ).isoformat(),
        "valid_from": now.isoformat(),
    }
    assert_error(
        await client.patch(f"/gifts/{canton['id']}", headers=admin, json=late), 422, "bad_window"
    )
    assert_error(await client.patch("/gifts/999999999", headers=admin, json={"stock": 1}), 404)


async def test_redeem_then_fulfil_once_at_a_store(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    member_id, headers, phone = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, name="Silk scarf 丝巾", points_cost=30, stock=5)
    made = await redeem(app, headers, gift["id"], "r-1")
    assert made.status_code == 201, made.text
    red = made.json()
    assert (red["points"], red["balance"], red["status"]) == (30, 70, "issued")
    assert len(red["code"]) == 10 and set(red["code"]) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert await stock_of(app, gift["id"]) == 4 and await balance_of(app, member_id) == 70
    sms = await outbox_code(app, red["id"])
    assert (sms["template"], sms["purpose"], sms["phone"], sms["member_id"]) == (
        "redemption",
        "redemption",
        phone,
        member_id,
    )
    assert sms["variables"]["code"] == red["code"] and sms["variables"]["gift"] == "Silk scarf 丝巾"
    assert sms["variables"]["until"] and "门店" in sms["variables"]["how"]
    # a retry answers the first redemption; a client id of another gift is refused
    again = await redeem(app, headers, gift["id"], "r-1")
    assert again.status_code == 200 and again.json()["code"] == red["code"]
    other = await new_gift(client, login, points_cost=1)
    assert_error(await redeem(app, headers, other["id"], "r-1"), 409, "client_id_reused")
    assert await balance_of(app, member_id) == 70 and await stock_of(app, gift["id"]) == 4
    async with member_client(app) as mc:
        mine = await mc.get("/members/me/redemptions", headers=headers)
    assert [r["code"] for r in mine.json()["items"]] == [red["code"]]
    # the store clerk checks it (typed loosely: lower case, spaces, dashes)
    clerk = await login("store_clerk")
    loose = "-".join([red["code"][:5].lower(), red["code"][5:]])
    checked = await client.post("/redemptions/check", headers=clerk, json={"code": loose})
    assert checked.status_code == 200, checked.text
    body = checked.json()
    assert body["valid"] and body["gift_name"] == "Silk scarf 丝巾"
    assert body["phone"] == phone[:3] + "****" + phone[-4:]
    done = await client.post("/redemptions/fulfil", headers=clerk, json={"code": red["code"]})
    assert done.status_code == 200, done.text
    assert (
        done.json()["status"] == "fulfilled"
        and done.json()["fulfilled_org_id"] == demo["STORE-HZ-01"]
    )
    assert done.json()["message"] == "已兑换"
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT fulfilled_by, fulfilled_org_id, fulfilled_at FROM redemptions WHERE id = %s",
                (red["id"],),
            )
        ).fetchone()
        clerk_id = await (
            await conn.execute("SELECT id FROM users WHERE username = 'store_clerk'")
        ).fetchone()
    assert row["fulfilled_by"] == clerk_id["id"] and row["fulfilled_at"] is not None
    # reuse: 409 with the words of the seed, in English when asked
    used = assert_error(
        await client.post("/redemptions/fulfil", headers=clerk, json={"code": red["code"]}),
        409,
        "code_used",
    )
    assert used["message"] == "您的兑换码已使用，请勿重复兑换"
    used_en = assert_error(
        await client.post(
            "/redemptions/fulfil", headers=clerk, json={"code": red["code"], "lang": "en"}
        ),
        409,
        "code_used",
    )
    assert "already been used" in used_en["message"]
    rechecked = await client.post("/redemptions/check", headers=clerk, json={"code": red["code"]})
    assert not rechecked.json()["valid"] and rechecked.json()["status"] == "fulfilled"
    # typed full-width by a Chinese input method (a probe: 400 malformed_code)
    wide = "".join(chr(ord(c) + 0xFEE0) for c in red["code"].lower())
    typed = await client.post("/redemptions/check", headers=clerk, json={"code": wide})
    assert typed.status_code == 200 and typed.json()["status"] == "fulfilled", typed.text
    # bad paths: unknown, malformed, no permission, another store of another agent
    assert_error(
        await client.post("/redemptions/check", headers=clerk, json={"code": "0000000000"}),
        404,
        "unknown_code",
    )
    assert_error(
        await client.post("/redemptions/check", headers=clerk, json={"code": "ABC"}),
        400,
        "malformed_code",
    )
    assert_error(
        await client.post(
            "/redemptions/check", headers=await login("analyst"), json={"code": red["code"]}
        ),
        403,
    )
    second = (await redeem(app, headers, gift["id"])).json()
    away = {"code": second["code"], "store_id": demo["STORE-GZ-01"]}
    assert_error(await client.post("/redemptions/fulfil", headers=clerk, json=away), 404)
    # staff above the stores name the store of a physical gift
    admin = await login("admin")
    assert_error(
        await client.post("/redemptions/fulfil", headers=admin, json={"code": second["code"]}),
        422,
        "store_required",
    )
    assert_error(
        await client.post(
            "/redemptions/fulfil", headers=admin, json={**away, "store_id": demo["AGENT-GD"]}
        ),
        422,
        "store_required",
    )
    ok = await client.post("/redemptions/fulfil", headers=admin, json=away)
    assert ok.status_code == 200 and ok.json()["fulfilled_org_id"] == demo["STORE-GZ-01"]


async def test_online_vouchers_by_customer_service(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 50)
    voucher = await new_gift(client, login, name="Tmall voucher ¥20", kind="online", points_cost=20)
    red = (await redeem(app, headers, voucher["id"])).json()
    assert "客服" in (await outbox_code(app, red["id"]))["variables"]["how"]
    clerk = await login("store_clerk")
    assert_error(
        await client.post("/redemptions/fulfil", headers=clerk, json={"code": red["code"]}),
        422,
        "online_gift",
    )
    eshop = await login("eshop")
    done = await client.post("/redemptions/fulfil", headers=eshop, json={"code": red["code"]})
    assert done.status_code == 200, done.text
    assert done.json()["fulfilled_org_id"] == demo["BRAND-LUMI"]
    assert_error(
        await client.post("/redemptions/fulfil", headers=eshop, json={"code": red["code"]}),
        409,
        "code_used",
    )


async def test_redemption_refusals(client: Any, login: Any, app: Any, demo: Any) -> None:
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"], province="浙江省")
    await give(client, login, member_id, 10)
    dear = await new_gift(client, login, points_cost=11)
    assert_error(await redeem(app, headers, dear["id"]), 422, "insufficient_points")
    none_left = await new_gift(client, login, points_cost=1, stock=0)
    assert_error(await redeem(app, headers, none_left["id"]), 409, "out_of_stock")
    elsewhere = await new_gift(client, login, points_cost=1, provinces=["广东省"])
    assert_error(await redeem(app, headers, elsewhere["id"]), 422, "gift_not_offered")
    assert_error(await redeem(app, headers, 999_999_999), 404)
    withdrawn = await new_gift(client, login, points_cost=1)
    await client.delete(f"/gifts/{withdrawn['id']}", headers=await login("admin"))
    assert_error(await redeem(app, headers, withdrawn["id"]), 404)
    _, frozen, _ = await new_member(app, demo["BRAND-LUMI"], status="frozen")
    cheap = await new_gift(client, login, points_cost=1)
    assert_error(await redeem(app, frozen, cheap["id"]), 403, "member_frozen")
    _, poor, _ = await new_member(app, demo["BRAND-LUMI"])  # never had a point
    assert_error(await redeem(app, poor, cheap["id"]), 422, "insufficient_points")
    assert_error(await redeem(app, {}, cheap["id"]), 401)
    assert_error(await redeem(app, await login("admin"), cheap["id"]), 401)
    assert await balance_of(app, member_id) == 10 and await stock_of(app, cheap["id"]) == 10


async def test_more_redemptions_than_stock_in_parallel(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    gift = await new_gift(client, login, points_cost=10, stock=5)
    members = [await new_member(app, demo["BRAND-LUMI"]) for _ in range(20)]
    for member_id, _, _ in members:
        await give(client, login, member_id, 10)
    answers = await asyncio.gather(*[redeem(app, h, gift["id"]) for _, h, _ in members])
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 5 + [409] * 15, statuses
    assert await stock_of(app, gift["id"]) == 0
    balances = [await balance_of(app, m) for m, _, _ in members]
    assert sorted(balances) == [0] * 5 + [10] * 15


async def test_more_redemptions_than_balance_in_parallel(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, points_cost=30, stock=100)
    answers = await asyncio.gather(*[redeem(app, headers, gift["id"]) for _ in range(10)])
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 3 + [422] * 7, statuses
    assert await balance_of(app, member_id) == 10 and await stock_of(app, gift["id"]) == 97
    async with app.state.pool.connection() as conn:
        assert await check_balances(conn) == []


async def _expire_now(app: Any, redemption_id: int) -> None:
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE redemptions SET expires_at = now() - interval '1 second' WHERE id = %s",
            (redemption_id,),
        )


async def _sweep(app: Any, limit: int = 500) -> int:
    """The expiry sweep (the worker's job) on a connection of its own."""
    import psycopg
    from psycopg.rows import dict_row

    async with await psycopg.AsyncConnection.connect(
        app.state.pool.conninfo, autocommit=True, row_factory=dict_row
    ) as conn:
        return await expire_due(conn, limit)


async def test_the_expiry_sweep_and_an_erasure_of_the_member_do_not_deadlock(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Review: an erasure takes the member's balance, then its open codes; the sweep took a due
    code, then the balance: the two deadlocked. The sweep now takes balances first: it waits
    for the erasure, which expires the code itself, and the sweep finds nothing left."""
    import psycopg
    from psycopg.rows import dict_row

    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 40)
    gift = await new_gift(client, login, points_cost=40, stock=1)
    red = (await redeem(app, headers, gift["id"])).json()
    await _expire_now(app, red["id"])
    url = app.state.pool.conninfo
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as erasing:
        # the erasure's order (app.members.erasure): the balance, then the open codes
        await erasing.execute(
            "SELECT 1 FROM point_balances WHERE member_id = %s FOR UPDATE", (member_id,)
        )
        swept = asyncio.create_task(_sweep(app))
        # the sweep is under way, waiting for a lock (seen in pg_locks: a fixed pause was too
        # short on a loaded machine)
        async with app.state.pool.connection() as watch:
            assert await lock_waiters(watch, 1), "the sweep should wait for a lock"
        expired = await erasing.execute(
            """UPDATE redemptions SET status = 'expired', expired_at = now()
                WHERE member_id = %s AND status = 'issued' RETURNING id""",
            (member_id,),
        )
        assert [r["id"] for r in await expired.fetchall()] == [red["id"]]
        await erasing.commit()
    await asyncio.wait_for(swept, 30)  # no DeadlockDetected
    async with app.state.pool.connection() as conn:
        refunds = await (
            await conn.execute(
                "SELECT count(*) AS n FROM points_ledger WHERE redemption_id = %s AND kind = 'refund'",
                (red["id"],),
            )
        ).fetchone()
    assert refunds["n"] == 0  # the erasure's to refund (it forfeits it), not the sweep's


async def test_the_expiry_sweep_goes_on_past_a_batch_of_one_member_s_codes(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """The sweep takes the members of the first due codes, then every due code of theirs: a
    batch whose codes were one member's must not end the sweep before the others'."""

    gift = await new_gift(client, login, points_cost=10, stock=3)
    codes = []
    for member_codes, age in ((2, "2 hours"), (1, "1 hour")):
        member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
        await give(client, login, member_id, 10 * member_codes)
        for _ in range(member_codes):
            red = (await redeem(app, headers, gift["id"])).json()
            codes.append(red["id"])
            async with app.state.pool.connection() as conn:
                await conn.execute(
                    "UPDATE redemptions SET expires_at = now() - %s::interval WHERE id = %s",
                    (age, red["id"]),
                )
    await _sweep(app, limit=2)  # the first two due codes are the first member's
    async with app.state.pool.connection() as conn:
        left = await (
            await conn.execute(
                "SELECT count(*) AS n FROM redemptions WHERE id = ANY(%s) AND status = 'issued'",
                (codes,),
            )
        ).fetchone()
    assert left["n"] == 0


async def test_expired_codes_refund_once(client: Any, login: Any, app: Any, demo: Any) -> None:
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 40)
    gift = await new_gift(client, login, points_cost=40, stock=1)
    red = (await redeem(app, headers, gift["id"])).json()
    assert await balance_of(app, member_id) == 0 and await stock_of(app, gift["id"]) == 0
    await _expire_now(app, red["id"])
    clerk = await login("store_clerk")
    checked = (
        await client.post("/redemptions/check", headers=clerk, json={"code": red["code"]})
    ).json()
    assert (checked["valid"], checked["status"]) == (False, "expired")
    assert_error(
        await client.post("/redemptions/fulfil", headers=clerk, json={"code": red["code"]}),
        409,
        "code_expired",
    )
    # the sweep (the worker's job), run three times at once, refunds once
    counts = await asyncio.gather(_sweep(app), _sweep(app), _sweep(app))
    assert sum(counts) >= 1
    from workers.points import _expire_now as worker_job

    await worker_job()  # the actor's work: nothing left
    assert await balance_of(app, member_id) == 40 and await stock_of(app, gift["id"]) == 1
    async with app.state.pool.connection() as conn:
        kinds = await (
            await conn.execute(
                "SELECT kind, points FROM points_ledger WHERE redemption_id = %s ORDER BY id",
                (red["id"],),
            )
        ).fetchall()
    assert [(k["kind"], k["points"]) for k in kinds] == [("redemption", -40), ("refund", 40)]
    assert_error(
        await client.post("/redemptions/fulfil", headers=clerk, json={"code": red["code"]}),
        409,
        "code_expired",
    )
    async with member_client(app) as mc:
        mine = (
            await mc.get("/members/me/redemptions", headers=headers, params={"status": "expired"})
        ).json()
    assert [r["id"] for r in mine["items"]] == [red["id"]]


async def test_settlement_per_store_scoped(client: Any, login: Any, app: Any, demo: Any) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(
        client, login, name=f"Settle {secrets.token_hex(2)}", points_cost=5, stock=10
    )
    clerk, admin = await login("store_clerk"), await login("admin")
    for store, who in [("STORE-HZ-01", clerk), ("STORE-HZ-01", clerk), ("STORE-GZ-01", admin)]:
        code = (await redeem(app, headers, gift["id"])).json()["code"]
        body = {"code": code} if who is clerk else {"code": code, "store_id": demo[store]}
        assert (await client.post("/redemptions/fulfil", headers=who, json=body)).status_code == 200
    period = {
        "from": start.isoformat(),
        "to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
    }

    async def rows(user: str, **extra: Any) -> set[tuple[int, int, int]]:
        response = await client.get(
            "/redemptions/settlement", headers=await login(user), params={**period, **extra}
        )
        assert response.status_code == 200, response.text
        return {
            (r["store_id"], r["fulfilled"], r["points"])
            for r in response.json()["items"]
            if r["gift_id"] == gift["id"]
        }

    hz, gz = (demo["STORE-HZ-01"], 2, 10), (demo["STORE-GZ-01"], 1, 5)
    assert await rows("admin") == {hz, gz}
    assert await rows("agent_admin") == {hz}
    assert await rows("store_clerk") == {hz}
    assert await rows("gd_admin") == {gz}
    assert await rows("admin", store_id=demo["STORE-GZ-01"]) == {gz}
    # a store outside the subtree is not found, as in the list (a probe: an empty 200)
    for path, extra in (
        ("/redemptions/settlement", {}),
        ("/redemptions/settlement", {"format": "csv"}),
        ("/redemptions", {}),
    ):
        outside = await client.get(
            path,
            headers=await login("agent_admin"),
            params={**period, **extra, "store_id": demo["STORE-GZ-01"]},
        )
        assert outside.status_code == 404, (path, extra, outside.text)
    csv_answer = await client.get(
        "/redemptions/settlement",
        headers=await login("agent_admin"),
        params={**period, "format": "csv"},
    )
    assert csv_answer.status_code == 200 and csv_answer.headers["content-type"].startswith(
        "text/csv"
    )
    text = csv_answer.text.lstrip("\ufeff")
    assert (
        text.splitlines()[0]
        == "store_id,store_name,store_erp_code,gift_id,gift_name,fulfilled,points"
    )
    stores = {line.split(",", 1)[0] for line in text.splitlines()[1:]}  # a gift id may be 10
    assert str(demo["STORE-HZ-01"]) in stores and str(demo["STORE-GZ-01"]) not in stores
    # bad paths
    assert_error(
        await client.get("/redemptions/settlement", headers=await login("analyst"), params=period),
        403,
    )
    backwards = {"from": period["to"], "to": period["from"]}
    assert_error(
        await client.get("/redemptions/settlement", headers=admin, params=backwards),
        400,
        "bad_period",
    )
    # no period: this month to today (``test_the_settlement_answers_401_before_its_period``)
    defaulted = await client.get("/redemptions/settlement", headers=admin, params={"per_page": 200})
    assert defaulted.status_code == 200, defaulted.text
    assert {
        (r["store_id"], r["fulfilled"], r["points"])
        for r in defaulted.json()["items"]
        if r["gift_id"] == gift["id"]
    } == {hz, gz}
    # probe AA: a time without an offset is Beijing time (it was read in the database server's
    # zone), and one with and one without were compared in Python: a 500
    from app.localtime import ZONE

    def beijing(moment: str) -> str:
        return datetime.fromisoformat(moment).astimezone(ZONE).replace(tzinfo=None).isoformat()

    local = {"from": beijing(period["from"]), "to": beijing(period["to"])}
    mixed = {"from": period["from"], "to": local["to"]}
    for params in (local, mixed):
        for path in ("/redemptions/settlement", "/redemptions"):
            answer = await client.get(path, headers=admin, params={**params, "per_page": 200})
            assert answer.status_code == 200, answer.text
        assert await rows("admin", **params) == {hz, gz}, params


async def test_a_settlement_file_is_named_by_the_first_and_last_beijing_day(
    client: Any, login: Any
) -> None:
    """A probe: finance downloaded the gift settlement of December 2026 in Beijing, its bounds
    given in UTC as the API allows, and saw ``settlement-2026-11-30-2026-12-31.csv``: the UTC
    dates of the bounds, a month that looks like November's. The name gives the period's first
    and last Beijing day, however its bounds are written (the end, ``to``, is excluded)."""
    admin = await login("admin")
    december = [
        ("2026-11-30T16:00:00Z", "2026-12-31T16:00:00Z"),
        ("2026-12-01T00:00:00+08:00", "2027-01-01T00:00:00+08:00"),
        ("2026-12-01T00:00:00", "2027-01-01T00:00:00"),  # Beijing wall clock
    ]
    for start, end in [*december, ("2026-12-05T09:00:00+08:00", "2026-12-05T09:00:00+08:00")]:
        answer = await client.get(
            "/redemptions/settlement",
            headers=admin,
            params={"from": start, "to": end, "format": "csv"},
        )
        assert answer.status_code == 200, answer.text
        name = "2026-12-05-2026-12-05" if start == end else "2026-12-01-2026-12-31"
        disposition = answer.headers["content-disposition"]
        assert disposition == f'attachment; filename="settlement-{name}.csv"', disposition


async def test_the_settlement_answers_401_before_its_period(client: Any, login: Any) -> None:
    """A probe: every authenticated route answers a caller without credentials (or with a bad
    token) 401 before looking at what it asked, but ``GET /redemptions/settlement`` answered an
    anonymous caller or a forged token 400 ``validation_failed`` ("the query parameter is
    required": ``from``): Litestar checks required query parameters before the principal, so an
    unauthenticated client learnt the route's parameters. ``from`` and ``to`` are optional now,
    defaulted as the sales reports' period: this month to today (Beijing days); either alone,
    to/from the other's default. A reversed period is still 400 ``bad_period``."""
    assert_error(await client.get("/redemptions/settlement"), 401, "unauthorized")
    forged = await client.get(
        "/redemptions/settlement", headers={"Authorization": "Bearer not-a-token"}
    )
    assert forged.status_code == 401, forged.text
    admin = await login("admin")
    await clear_of_midnight()  # the default period ends today: the same day all through
    now = today()
    this_month = f'attachment; filename="settlement-{now.replace(day=1)}-{now}.csv"'

    async def named(period: dict[str, str]) -> str:
        answer = await client.get(
            "/redemptions/settlement", headers=admin, params={**period, "format": "csv"}
        )
        assert answer.status_code == 200, answer.text
        return answer.headers["content-disposition"]

    assert await named({}) == this_month
    # ``to`` alone: from the first day of its last day's month (December: the whole of it)
    december = await named({"to": "2025-01-01T00:00:00+08:00"})
    assert december == 'attachment; filename="settlement-2024-12-01-2024-12-31.csv"'
    # ``from`` alone: to the end of today
    assert await named({"from": f"{now.replace(day=1)}T00:00:00+08:00"}) == this_month
    assert (await client.get("/redemptions/settlement", headers=admin)).status_code == 200
    later = {"from": "2026-12-02T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00"}
    assert_error(
        await client.get("/redemptions/settlement", headers=admin, params=later), 400, "bad_period"
    )


async def test_a_number_in_a_date_time_filter_is_refused(client: Any, login: Any) -> None:
    """A probe: staff filtered redemptions ``from=20261201`` (the compact date of the document
    numbers) and saw a 200 list filtered from 1970-08-23: the number was read as Unix seconds.
    ``from`` and ``to`` are ISO 8601 date-times (``app.bodies.QueryTime``): anything else is a
    400 ``validation_failed``."""
    admin = await login("admin")
    period = {"from": "2026-12-01T00:00:00+08:00", "to": "2027-01-01T00:00:00+08:00"}
    for path in ("/redemptions", "/redemptions/settlement"):
        assert (await client.get(path, headers=admin, params=period)).status_code == 200
        for name in ("from", "to"):
            for value in ("20261201", "2026", "-5", "1.8e9", "2026-12-01"):
                answer = await client.get(path, headers=admin, params={**period, name: value})
                assert_error(answer, 400, "validation_failed")
                assert answer.json()["error"]["details"][0]["field"] == name, answer.text
    # documented as date-times (the console's typed client is generated from the document);
    # optional, as the list's (``test_the_settlement_answers_401_before_its_period``)
    doc = (await client.get("/schema/openapi.json")).json()
    for path in ("/redemptions/settlement", "/redemptions"):
        for p in doc["paths"][path]["get"]["parameters"]:
            if p["name"] in ("from", "to"):
                assert p["schema"]["oneOf"] == [
                    {"type": "string", "format": "date-time"},
                    {"type": "null"},
                ], p
                assert not p["required"], p


@pytest.fixture(scope="module")
async def claimable(client: Any, login: Any, app: Any, demo: Any) -> AsyncIterator[list[str]]:
    """30 units, all shipped (a unit never shipped earns no points: 422 ``not_shipped``): cases
    0 and 1 to AGENT-ZJ (25 points; the agent's rule deleted after the module: it outranks the
    product's rule later tests set), case 2 to AGENT-GD (its own rule, or the product's 10)."""
    goods = await shipped_goods(client, login, app, demo)
    await into_channel(client, login, demo, goods["cases"][2:], "AGENT-GD", stocked=True)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 10)
    zj = await set_rule(client, admin, goods["product_id"], 25, demo["AGENT-ZJ"])
    yield list(goods["units"])
    gone = await client.delete(f"/points/rules/{zj['id']}", headers=await login("admin"))
    assert gone.status_code in (204, 404), gone.text


async def test_ledger_equals_balances_after_a_random_sequence(
    client: Any, login: Any, app: Any, demo: Any, claimable: list[str]
) -> None:
    """200 random operations (seed 15) by five members — claims (some of codes already
    claimed), redemptions (some beyond the balance or the stock), code expiries with their
    refunds, point expiries and adjustments of either sign: after each, every balance equals
    its ledger and none is negative, and each member's balance is what the successful
    operations add up to."""
    rng = random.Random(15)
    scheme = app.state.scheme
    members = [await new_member(app, demo["BRAND-LUMI"]) for _ in range(5)]
    expected = {m[0]: 0 for m in members}
    gifts = [await new_gift(client, login, points_cost=c, stock=8) for c in (7, 12, 30)]
    issued: list[tuple[int, int, int]] = []  # (redemption id, member id, points)
    admin = await login("admin")
    for _ in range(200):
        member_id, headers, _ = rng.choice(members)
        op = rng.choice(["claim", "claim", "redeem", "redeem", "expire", "adjust", "expiry"])
        if op == "claim":
            async with member_client(app) as mc:
                answer = await mc.post(
                    "/members/me/claims",
                    headers=headers,
                    json=claim_body(scheme, rng.choice(claimable)),
                )
            assert answer.status_code in (201, 409), answer.text
            if answer.status_code == 201:
                expected[member_id] += answer.json()["points"]
        elif op == "redeem":
            gift = rng.choice(gifts)
            answer = await redeem(app, headers, gift["id"])
            assert answer.status_code in (201, 409, 422), answer.text
            if answer.status_code == 201:
                expected[member_id] -= gift["points_cost"]
                issued.append((answer.json()["id"], member_id, gift["points_cost"]))
        elif op == "expire" and issued:
            red_id, owner, cost = issued.pop(rng.randrange(len(issued)))
            await _expire_now(app, red_id)
            async with app.state.pool.connection() as conn:
                await conn.set_autocommit(True)
                await expire_due(conn)
                await conn.set_autocommit(False)
            expected[owner] += cost
        elif op in ("adjust", "expiry"):
            points = rng.randint(1, 20) * (1 if op == "adjust" and rng.random() < 0.6 else -1)
            answer = await client.post(
                "/points/adjustments",
                headers=admin,
                json={
                    "member_id": member_id,
                    "points": points,
                    "reason": "random",
                    "client_id": secrets.token_hex(8),
                    "kind": "adjustment" if op == "adjust" else "expiry",
                },
            )
            assert answer.status_code in (201, 422), answer.text
            if answer.status_code == 201:
                expected[member_id] += points
            else:
                assert answer.json()["error"]["code"] == "insufficient_points"
                assert expected[member_id] + points < 0
        async with app.state.pool.connection() as conn:
            assert await check_balances(conn) == []
            low = await (
                await conn.execute("SELECT min(balance) AS low FROM point_balances")
            ).fetchone()
            assert low["low"] is None or low["low"] >= 0
    assert {m: await balance_of(app, m) for m in expected} == expected


async def _other_brand_admin(client: Any, login: Any) -> dict[str, str]:
    """The brand_admin of a second tenant (made for this test by the platform operator)."""
    _, headers = await onboarded_brand(client, login)
    return headers


async def test_staff_list_redemptions_one_by_one_scoped(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """GET /redemptions (issue 15 item 7): a store sees the redemptions it fulfilled, an agent
    its stores', the brand all (outstanding ones too); phones masked unless members.read_phone;
    another subtree's store 404, another brand nothing; CSV of the same rows. The member behind
    each is the brand's alone (a probe: a store's clerk and an agent got every ``member_id``,
    linking one consumer's redemptions across stores): null below the brand, JSON and CSV."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    member_id, headers, phone = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    tag = secrets.token_hex(2)
    gift = await new_gift(client, login, name=f"List {tag}", points_cost=5, stock=10)
    voucher = await new_gift(client, login, name=f"Voucher {tag}", kind="online", points_cost=5)
    ours = {gift["id"], voucher["id"]}
    clerk, admin, eshop = await login("store_clerk"), await login("admin"), await login("eshop")
    reds = [(await redeem(app, headers, g["id"])).json() for g in (gift, gift, voucher, gift)]
    hz, gz, online, outstanding = reds
    for red, who, extra in [
        (hz, clerk, {}),
        (gz, admin, {"store_id": demo["STORE-GZ-01"]}),
        (online, eshop, {}),
    ]:
        done = await client.post(
            "/redemptions/fulfil", headers=who, json={"code": red["code"], **extra}
        )
        assert done.status_code == 200, done.text
    masked = f"{phone[:3]}****{phone[-4:]}"

    async def listed(who: dict[str, str], **params: Any) -> list[dict[str, Any]]:
        answer = await client.get(
            "/redemptions",
            headers=who,
            params={"per_page": 200, "from": start.isoformat(), **params},
        )
        assert answer.status_code == 200, answer.text
        return [r for r in answer.json()["items"] if r["gift_id"] in ours]

    def ids(rows: list[dict[str, Any]]) -> set[int]:
        return {r["id"] for r in rows}

    everything = await listed(admin)
    assert ids(everything) == {r["id"] for r in reds}
    assert {r["phone"] for r in everything} == {phone}  # brand_admin: members.read_phone
    assert {r["member_id"] for r in everything} == {member_id}  # the brand's staff: the member
    assert all("code" not in r for r in everything)
    assert ids(await listed(eshop)) == {r["id"] for r in reds}  # brand staff, masked
    assert {r["phone"] for r in await listed(eshop)} == {masked}
    assert ids(await listed(admin, status="issued")) == {outstanding["id"]}
    assert ids(await listed(admin, kind="online")) == {online["id"]}
    assert ids(await listed(admin, store_id=demo["STORE-GZ-01"])) == {gz["id"]}
    # a store: its own fulfilment only, masked, with who and where
    (mine,) = await listed(clerk)
    assert (mine["id"], mine["phone"], mine["status"]) == (hz["id"], masked, "fulfilled")
    assert mine["fulfilled_by_name"] == "store_clerk" and mine["member_id"] is None
    assert (mine["fulfilled_org_id"], mine["fulfilled_org_erp_code"]) == (
        demo["STORE-HZ-01"],
        "STORE-HZ-01",
    )
    assert await listed(clerk, status="issued") == []
    assert ids(await listed(clerk, store_id=demo["STORE-HZ-01"])) == {hz["id"]}
    # an agent: its stores'; the other agent: its own store's
    (agents,) = await listed(await login("agent_admin"))
    assert (agents["id"], agents["phone"], agents["member_id"]) == (hz["id"], masked, None)
    gd = await login("gd_admin")
    assert ids(await listed(gd)) == {gz["id"]}
    # other organisations' stores are not found; another brand sees nothing of ours
    for who, store in [(clerk, "STORE-GZ-01"), (gd, "STORE-HZ-01")]:
        assert_error(
            await client.get("/redemptions", headers=who, params={"store_id": demo[store]}), 404
        )
    stranger = await _other_brand_admin(client, login)
    assert await listed(stranger) == []
    assert_error(
        await client.get(
            "/redemptions", headers=stranger, params={"store_id": demo["STORE-HZ-01"]}
        ),
        404,
    )
    # the period bounds the fulfilment (or issue) time
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert await listed(admin, **{"from": later}) == []
    assert ids(await listed(admin, to=later)) == {r["id"] for r in reds}
    # CSV: the store's rows, masked, audited
    csv_answer = await client.get("/redemptions", headers=clerk, params={"format": "csv"})
    assert csv_answer.status_code == 200, csv_answer.text
    assert csv_answer.headers["content-type"].startswith("text/csv")
    lines = csv_answer.text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("id,member_id,phone,gift_id,gift_name,gift_kind,points,status")
    row = next(line for line in lines if line.startswith(f"{hz['id']},"))
    assert row.startswith(f"{hz['id']},,{masked},")  # no member below the brand
    assert masked in row and phone not in row and "STORE-HZ-01" in row
    brand_csv = await client.get("/redemptions", headers=admin, params={"format": "csv"})
    assert f"\n{hz['id']},{member_id},{phone}," in brand_csv.text.replace("\r\n", "\n")
    assert not any(line.startswith((f"{gz['id']},", f"{online['id']},")) for line in lines)
    async with app.state.pool.connection() as conn:
        audited = await (
            await conn.execute(
                """SELECT count(*) AS n FROM audit_log
                   WHERE action = 'export' AND entity = 'redemption'"""
            )
        ).fetchone()
    assert audited["n"] >= 1
    # bad paths
    assert_error(await client.get("/redemptions", headers=await login("analyst")), 403)
    assert_error(await client.get("/redemptions", headers=headers), 401)  # a member token
    backwards = {"from": later, "to": start.isoformat()}
    assert_error(
        await client.get("/redemptions", headers=admin, params=backwards), 400, "bad_period"
    )
    assert_error(await client.get("/redemptions", headers=admin, params={"status": "lost"}), 400)


async def test_adjustments_and_redemptions_of_one_member_at_once_never_deadlock(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Probe AB: an adjustment locked the member's row FOR UPDATE, then the balance; a
    redemption locked the balance, then its rows' foreign key took the member's row: one of
    the two was refused 409 ``retry`` after PostgreSQL's deadlock timeout."""
    import asyncio

    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 1000)
    gift = await new_gift(
        client, login, name=f"Race {secrets.token_hex(2)}", points_cost=1, stock=50
    )
    admin = await login("admin")

    async def adjust() -> Any:
        body = {
            "member_id": member_id,
            "points": 1,
            "reason": "race",
            "client_id": secrets.token_hex(8),
        }
        return await client.post("/points/adjustments", headers=admin, json=body)

    for _ in range(3):
        answers = await asyncio.gather(
            *(redeem(app, headers, gift["id"]) for _ in range(6)), *(adjust() for _ in range(6))
        )
        assert sorted({a.status_code for a in answers}) == [201], [
            a.text for a in answers if a.status_code != 201
        ]


async def test_a_frozen_member_s_retry_answers_the_first_redemption(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a redemption sent again with its client id after the member was frozen answered
    403 ``member_frozen``, so a client that lost the first answer never got its code."""
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, points_cost=30)
    key = secrets.token_hex(8)
    first = await redeem(app, headers, gift["id"], key)
    assert first.status_code == 201, first.text
    async with app.state.pool.connection() as conn:
        await conn.execute("UPDATE members SET status = 'frozen' WHERE id = %s", (member_id,))
    again = await redeem(app, headers, gift["id"], key)
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["code"]) == (first.json()["id"], first.json()["code"])
    assert_error(await redeem(app, headers, gift["id"]), 403, "member_frozen")


async def test_a_gifts_provinces_are_read_as_members_are(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a gift for "Zhejiang" was stored as typed and offered to no member (their
    provinces are the full Chinese names); an unknown province is refused."""
    admin = await login("admin")
    name = f"ZJ only {secrets.token_hex(3)}"
    gift = await new_gift(client, login, name=name, provinces=[" Zhejiang "])
    assert gift["provinces"] == ["浙江省"]
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"], province="浙江省")
    async with member_client(app) as mc:
        listed = await mc.get("/members/me/gifts", headers=headers, params={"per_page": 200})
    assert name in [g["name"] for g in listed.json()["items"]]
    changed = await client.patch(
        f"/gifts/{gift['id']}", headers=admin, json={"provinces": ["guangdong", "浙江省"]}
    )
    assert changed.json()["provinces"] == ["广东省", "浙江省"], changed.text
    short = {"provinces": ["浙江", "广西"]}  # a probe: the short names people write were refused
    changed = await client.patch(f"/gifts/{gift['id']}", headers=admin, json=short)
    assert changed.json()["provinces"] == ["广西壮族自治区", "浙江省"], changed.text
    for bad in (["Atlantis"], ["浙"], ["浙江省省"]):
        refused = await client.patch(f"/gifts/{gift['id']}", headers=admin, json={"provinces": bad})
        assert_error(refused, 400, "validation_failed")


async def test_a_freeze_that_commits_while_a_redemption_waits_holds(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a redemption checked the member read with its token, before a freeze that
    committed while it waited, and debited the points after the freeze."""
    import psycopg

    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, points_cost=30, stock=5)
    async with await psycopg.AsyncConnection.connect(app.state.pool.conninfo) as freezer:
        # a freeze under way (as the admin's: the member row locked, then its status set)
        await freezer.execute("SELECT 1 FROM members WHERE id = %s FOR NO KEY UPDATE", (member_id,))
        await freezer.execute(
            "UPDATE members SET status = 'frozen', frozen_reason = 'fraud' WHERE id = %s",
            (member_id,),
        )
        pending = asyncio.create_task(redeem(app, headers, gift["id"]))
        async with app.state.pool.connection() as watch:  # not a fixed pause: a loaded machine
            assert await lock_waiters(watch, 1), "the redemption should wait for the freeze"
        assert not pending.done()  # it waits for the freeze
        await freezer.commit()
    assert_error(await asyncio.wait_for(pending, 30), 403, "member_frozen")
    async with app.state.pool.connection() as conn:
        assert not await check_balances(conn)


async def test_a_gift_restocked_during_a_redemption_is_taken_not_called_not_offered(
    client: Any, login: Any, app: Any, demo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe: a member redeems a gift that is out of stock while the brand restocks it.
    Served before the restock the answer is 409 ``out_of_stock``; after it, the gift is theirs.
    The take missed (stock 0), the restock committed, and the second statement, reading why,
    saw stock: the member was told 422 ``gift_not_offered``. The reason is now read from the
    locked row, and a gift offered there is taken."""
    import psycopg

    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 50)
    gift = await new_gift(client, login, points_cost=10, stock=0)
    reached, go = asyncio.Event(), asyncio.Event()
    execute = psycopg.AsyncConnection.execute
    taking: list[Any] = []  # the connection whose take of the gift missed

    async def pausing(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if taking == [self] and not reached.is_set():  # the statement after the missed take
            reached.set()
            await go.wait()
        result = await execute(self, query, *args, **kwargs)
        if isinstance(query, str) and query.lstrip().startswith("UPDATE gifts g SET stock"):
            taking.append(self)
        return result

    monkeypatch.setattr(psycopg.AsyncConnection, "execute", pausing)

    async def redeem() -> Any:
        async with member_client(app) as mc:
            return await mc.post(
                "/members/me/redemptions",
                headers=headers,
                json={"gift_id": gift["id"], "client_id": secrets.token_hex(8)},
            )

    redemption = asyncio.create_task(redeem())
    await asyncio.wait_for(reached.wait(), 30)
    restocked = await client.patch(
        f"/gifts/{gift['id']}", headers=await login("admin"), json={"stock": 5}
    )
    assert restocked.status_code == 200, restocked.text
    go.set()
    answer = await asyncio.wait_for(redemption, 30)
    assert answer.status_code == 201, answer.text
    shown = await client.get(f"/gifts/{gift['id']}", headers=await login("admin"))
    assert shown.json()["stock"] == 4, shown.text  # (not a list's page: other tests' gifts)


async def test_the_expiry_sweep_sets_aside_a_code_it_cannot_expire_and_goes_on(
    app: Any, demo: Any
) -> None:
    """A probe: a due code whose gift's stock could not take it back (the stock at the top of
    its integer column) made every sweep raise "integer out of range": the sweep's transaction
    rolled back and no other member's due code ever expired or was refunded (the poison code is
    the first due, so it was in every batch), and nothing was dead-lettered or reported. Now
    the code is set aside, once, and the code beside it expires."""
    import psycopg
    from psycopg.rows import dict_row

    async def one(sql: str, params: Any = ()) -> Any:
        return await (await conn.execute(sql, params)).fetchone()

    brand = demo["BRAND-LUMI"]
    async with await psycopg.AsyncConnection.connect(
        app.state.pool.conninfo, autocommit=True, row_factory=dict_row
    ) as conn:
        gifts, members, codes = [], [], []
        for stock in (2_147_483_647, 0):  # the poison's gift, then the good code's gift
            row = await one(
                "INSERT INTO gifts (brand_id, name, points_cost, kind, stock) "
                "VALUES (%s, 'full gift', 10, 'offline', %s) RETURNING id",
                (brand, stock),
            )
            gifts.append(int(row["id"]))
            member, _, _ = await new_member(app, brand)
            await conn.execute(
                "INSERT INTO point_balances (member_id, balance) VALUES (%s, 0)", (member,)
            )
            members.append(member)
        for member, gift, age in zip(members, gifts, ("2 hours", "1 hour"), strict=True):
            row = await one(  # an issued code of 10 points, expired ``age`` ago
                """INSERT INTO redemptions (brand_id, member_id, gift_id, gift_kind, points,
                       code_digest, code_sealed, client_id, expires_at)
                   VALUES (%s, %s, %s, 'offline', 10, %s, 'sealed', %s, now() - %s::interval)
                   RETURNING id""",
                (brand, member, gift, secrets.token_bytes(32), secrets.token_hex(8), age),
            )
            codes.append(int(row["id"]))
        poison, good = codes
        try:
            errors = []
            for _ in range(2):  # two sweeps
                try:
                    await expire_due(conn)
                except Exception as exc:
                    errors.append(exc)
            state = await one(
                "SELECT status, (SELECT balance FROM point_balances WHERE member_id = %s) AS balance,"
                " (SELECT stock FROM gifts WHERE id = %s) AS stock FROM redemptions WHERE id = %s",
                (members[1], gifts[1], good),
            )
            buried = await (
                await conn.execute(
                    "SELECT reason FROM dead_letters WHERE queue = 'redemption_expiry' "
                    "AND convert_from(payload, 'UTF8')::jsonb ->> 'redemption_id' = %s",
                    (str(poison),),
                )
            ).fetchall()
            left = await one("SELECT status FROM redemptions WHERE id = %s", (poison,))
        finally:  # leave nothing due that would stop the sweep of other tests
            await conn.execute(
                "UPDATE redemptions SET status = 'expired', expired_at = now() "
                "WHERE id = ANY(%s) AND status = 'issued'",
                (codes,),
            )
    assert errors == [], f"the expiry sweep crashed on one bad code: {errors[0]!r}"
    # the good code beside it is expired, refunded and its gift restocked
    assert (state["status"], state["balance"], state["stock"]) == ("expired", 10, 1), state
    # the bad one is set aside once (not at every sweep), and left as it was
    assert [b["reason"].split(":")[0] for b in buried] == ["NumericValueOutOfRange"], buried
    assert left["status"] == "issued"


async def test_a_frozen_member_s_code_is_not_handed_out(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a member frozen (for fraud) after redeeming still had its outstanding code
    checked "valid" and fulfilled — the gift handed out all the same. The code is not valid
    while the member is frozen (``refusal: member_frozen``), its fulfilment is 409
    ``member_frozen``, and it is fulfilled once the member is unfrozen."""
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, points_cost=30, kind="online")
    first = await redeem(app, headers, gift["id"])
    assert first.status_code == 201, first.text
    code, admin, eshop = first.json()["code"], await login("admin"), await login("eshop")
    checked = await client.post("/redemptions/check", headers=eshop, json={"code": code})
    assert (checked.json()["valid"], checked.json().get("refusal")) == (True, None), checked.text
    frozen = await client.post(
        f"/members/{member_id}/freeze", headers=admin, json={"reason": "fraud"}
    )
    assert frozen.status_code == 200, frozen.text
    checked = await client.post("/redemptions/check", headers=eshop, json={"code": code})
    assert checked.status_code == 200, checked.text
    assert (checked.json()["valid"], checked.json()["status"], checked.json().get("refusal")) == (
        False,
        "issued",
        "member_frozen",
    )
    fulfil = {"code": code, "lang": "en"}
    refused = await client.post("/redemptions/fulfil", headers=eshop, json=fulfil)
    assert_error(refused, 409, "member_frozen")
    assert "frozen" in refused.json()["error"]["message"]
    lifted = await client.post(f"/members/{member_id}/unfreeze", headers=admin, json={})
    assert lifted.status_code == 200, lifted.text
    done = await client.post("/redemptions/fulfil", headers=eshop, json=fulfil)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "fulfilled"
    await client.delete(f"/gifts/{gift['id']}", headers=admin)  # offered to no later test


async def test_a_physical_gift_is_not_fulfilled_at_a_closed_store(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: staff above the stores fulfilling a physical gift at a closed store — or an
    active one under a closed agent — booked the hand-out there (200), and the settlement owed a
    closed store for it. 422 ``org_inactive`` now, as documents, inspections and check-ins
    answer; the code stays issued and is fulfilled at an open store."""
    admin = await login("admin")

    async def org(kind: str, parent: int) -> int:
        tag = secrets.token_hex(3).upper()
        made = await client.post(
            "/orgs",
            headers=admin,
            json={"kind": kind, "name": f"Gift {kind} {tag}", "erp_code": f"GF-{tag}",
                  "parent_id": parent},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        return int(made.json()["id"])

    closed_store = await org("store", demo["AGENT-ZJ"])
    agent = await org("agent", demo["BRAND-LUMI"])
    under_closed = await org("store", agent)
    for closing in (closed_store, agent):
        closed = await client.post(f"/orgs/{closing}/deactivate", headers=admin)
        assert closed.status_code == 200, closed.text
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 30)
    made = await redeem(app, headers, (await new_gift(client, login, points_cost=30))["id"])
    assert made.status_code == 201, made.text
    code = made.json()["code"]
    for store in (closed_store, under_closed):
        refused = await client.post(
            "/redemptions/fulfil", headers=admin, json={"code": code, "store_id": store}
        )
        assert_error(refused, 422, "org_inactive")
    done = await client.post(
        "/redemptions/fulfil", headers=admin, json={"code": code, "store_id": demo["STORE-HZ-01"]}
    )
    assert done.status_code == 200, done.text


async def test_a_redemption_sent_again_answers_the_first_how_to_collect(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a member redeems a gift that has no ``how_to_collect`` of its own: the 201 answer tells
    how to collect it (the default sentence, 请到门店向店员出示手机号和兑换码领取礼品). The
    app lost that answer and sends the same ``client_id`` again: the 200 says
    ``how_to_collect: null``, and so does the member's list of codes (``GET
    /members/me/redemptions``, the H5 "my codes" page shows no "how"). README (Redeem): "the
    same ``client_id`` again → 200 with the first"; the member who lost the answer (and the
    SMS) is never told how to collect the gift. Should: the replay and the list carry the same
    ``how_to_collect`` as the first answer."""
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, points_cost=10, stock=5)
    client_id = f"how-{secrets.token_hex(4)}"
    first = await redeem(app, headers, gift["id"], client_id)
    assert first.status_code == 201, first.text
    how = first.json()["how_to_collect"]
    assert how  # the default sentence for a physical gift
    again = await redeem(app, headers, gift["id"], client_id)
    assert again.status_code == 200, again.text
    async with member_client(app) as mc:
        mine = (await mc.get("/members/me/redemptions", headers=headers)).json()["items"]
    assert (again.json()["how_to_collect"], mine[0]["how_to_collect"]) == (how, how)


async def test_a_redemption_sent_again_answers_the_balance(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a member redeems a gift (201, ``balance`` 70); the app lost the answer and sends
    the same ``client_id`` again: the 200 said ``balance: null`` (README, Redeem: "the same
    ``client_id`` again → 200 with the first"). Should: the replay is the first answer, with the
    member's balance as it is now — the first one's, and a later one once points moved."""
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, points_cost=30, stock=5)
    client_id = f"bal-{secrets.token_hex(4)}"
    first = await redeem(app, headers, gift["id"], client_id)
    assert first.status_code == 201, first.text
    assert first.json()["balance"] == 70
    again = await redeem(app, headers, gift["id"], client_id)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    await give(client, login, member_id, 5)
    later = await redeem(app, headers, gift["id"], client_id)
    assert later.status_code == 200, later.text
    assert later.json() == {**first.json(), "balance": 75}


async def test_a_store_given_members_read_phone_still_sees_its_redemptions_phones_masked(
    client: Any, app: Any, demo: Any, login: Any
) -> None:
    """A probe: the brand admin gives a store user a custom role with ``redemptions.read`` and
    ``members.read_phone``. ``GET /redemptions`` (and its CSV) then shows that store user the
    WHOLE phone of every member whose gift the store handed out.

    ``members.read_phone`` is one of the brand-level member permissions (README "Member admin":
    "They are brand-level permissions"; ``app/auth/permissions.py`` lists it among
    ``_BRAND_ONLY``), and consumers' personal data stays with the brand head office: staff
    below it "see no member even if a role grants ``members.read``" — and
    ``app/members/admin.py`` says "A store sees the redemptions it fulfilled through the
    redemption endpoints …, with masked phones, not the members". A grant below the brand
    should widen nothing, as ``members.read`` does not (``brand_of_staff``); it unmasked. Phones
    are whole only to the brand's own staff holding it (``mask.sees_phones``)."""
    from tests.test_members_admin import _staff

    brand = demo["BRAND-LUMI"]
    member_id, headers, phone = await new_member(app, brand)
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, points_cost=30)
    redeemed = await redeem(app, headers, gift["id"])
    assert redeemed.status_code == 201, redeemed.text
    fulfilled = await client.post(
        "/redemptions/fulfil", headers=await login("store_clerk"),
        json={"code": redeemed.json()["code"]},
    )  # fmt: skip
    assert fulfilled.status_code == 200, fulfilled.text

    admin = await login("admin")
    role = await client.post(
        "/roles",
        headers=admin,
        json={
            "name": f"store_phones_{secrets.token_hex(3)}",
            "permissions": ["redemptions.read", "members.read_phone"],
        },
    )
    assert role.status_code == 201, role.text
    store_user = await _staff(client, admin, demo["STORE-HZ-01"], [role.json()["name"]])
    listed = await client.get("/redemptions", headers=store_user, params={"per_page": 200})
    assert listed.status_code == 200, listed.text
    mine = [r for r in listed.json()["items"] if r["id"] == redeemed.json()["id"]]
    assert mine, listed.text  # the store sees the redemption it fulfilled
    assert mine[0]["phone"] == phone[:3] + "****" + phone[-4:], mine[0]
    assert mine[0]["member_id"] is None  # nor the member
    exported = await client.get("/redemptions", headers=store_user, params={"format": "csv"})
    assert exported.status_code == 200, exported.text
    assert phone not in exported.text


async def test_a_settlement_csv_ending_at_the_end_of_the_calendar_is_no_500(
    client: Any, login: Any
) -> None:
    """A probe: a finance user asking for "everything up to the end of time" as a settlement file,
    ``GET /redemptions/settlement?from=2026-01-01T00:00:00Z&to=9999-12-31T23:59:59Z&format=csv``
    (or a period at the very start of the calendar, from = to = 0001-01-01T00:00:00Z), gets a
    500 (OverflowError while naming the file by its Beijing days). The JSON report and
    ``GET /redemptions`` answer these periods fine; the file should too (or a 400 ``bad_period``),
    never a 500."""
    admin = await login("admin")
    for start, end in (
        ("2026-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
    ):
        answer = await client.get(
            "/redemptions/settlement",
            headers=admin,
            params={"from": start, "to": end, "format": "csv"},
        )
        assert answer.status_code == 200, (start, end, answer.text)
        assert f"settlement-{start[:10]}-{end[:10]}.csv" in answer.headers["content-disposition"]


async def test_a_redemption_that_waited_for_the_member_s_erasure_says_erased_not_frozen(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: A member taps "redeem" while their erasure (``DELETE /members/me`` on another device, or
    member service's ``POST /members/{id}/erase``) is committing: the redemption waits for the
    erasure (FOR SHARE on the member) and is then refused 403 ``member_frozen``, "this
    membership is frozen" — the member was never frozen. It should be refused as an erased
    membership is everywhere else (a points claim or a profile edit that waited for the
    erasure, or any later request with the token): 401 ``member_erased``."""
    from app.members import erasure

    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, points_cost=10, stock=5)
    async with app.state.pool.connection() as conn:
        async with conn.transaction():  # the erasure under way
            await erasure.erase(conn, None, demo["BRAND-LUMI"], member_id, app.state.settings)
            pending = asyncio.ensure_future(redeem(app, headers, gift["id"]))
            async with app.state.pool.connection() as watch:  # not a fixed pause
                assert await lock_waiters(watch, 1), "the redemption should wait for the erasure"
            assert not pending.done(), pending.result().text  # it waits for the erasure
    answer = await asyncio.wait_for(pending, 30)
    assert_error(answer, 401, "member_erased")


_BLANKS = ("   ", "\u3000", "\u200b", "\ufeff", "\u00a0")


async def test_a_gift_patch_that_changes_nothing_writes_no_audit_row(
    client: Any, login: Any, app: Any
) -> None:
    """A probe: ``PATCH /gifts/{id}`` with ``{}`` or with the values the gift already has wrote
    an ``update`` audit row every time (and the latter moved ``updated_at``): a console saving
    an unchanged gift form filled the audit log with changes that never happened. README: a
    call that changes nothing answers 200 with the entity as it is and writes no row."""
    admin = await login("admin")
    gift = await new_gift(client, login, name="Unchanged scarf", points_cost=30, stock=10)

    async def rows() -> int:
        async with app.state.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM audit_log WHERE entity = 'gift' AND entity_id = %s",
                    (str(gift["id"]),),
                )
            ).fetchone()
        return int(row["n"])

    before = await rows()
    empty = await client.patch(f"/gifts/{gift['id']}", headers=admin, json={})
    assert empty.status_code == 200, empty.text
    same = await client.patch(
        f"/gifts/{gift['id']}",
        headers=admin,
        json={"name": "Unchanged scarf", "points_cost": 30, "stock": 10},
    )
    assert same.status_code == 200, same.text
    assert same.json()["updated_at"] == gift["updated_at"]
    assert await rows() == before
    changed = await client.patch(f"/gifts/{gift['id']}", headers=admin, json={"stock": 11})
    assert changed.status_code == 200 and changed.json()["stock"] == 11, changed.text
    assert await rows() == before + 1


async def test_a_gift_named_by_blanks_only_is_refused(client: Any, login: Any) -> None:
    """A probe: a gift created (or renamed) with a name of blanks only — spaces, an ideographic
    space, a zero-width space, a BOM, a no-break space — was accepted, so members saw a gift
    with no name, the redemption SMS named nothing and the redemption and settlement lists
    showed an empty gift. Gifts' names now follow the catalogue's rule
    (``app.catalog.schemas.Name``): 400 ``validation_failed``."""
    admin = await login("admin")
    for name in _BLANKS:
        made = await client.post(
            "/gifts",
            headers=admin,
            json={"name": name, "points_cost": 1, "kind": "offline", "stock": 1},
        )
        assert_error(made, 400, "validation_failed")
    gift = await new_gift(client, login, name="Visible")
    for name in _BLANKS:
        renamed = await client.patch(f"/gifts/{gift['id']}", headers=admin, json={"name": name})
        assert_error(renamed, 400, "validation_failed")


async def test_a_gift_picture_url_that_is_no_url_is_refused(client: Any, login: Any) -> None:
    """A probe: ``picture_url`` only had to start with ``http://`` or ``https://``:
    ``"http://"`` alone, or one with spaces and a line break in it, was stored and handed to
    every member's gift list as the picture to load. It now follows the catalogue's URLs
    (``app.catalog.schemas.Url``, ``^https?://\\S+$``): 400 ``validation_failed`` on create
    and on PATCH."""
    admin = await login("admin")
    gift = await new_gift(client, login, name="Picture")
    for url in ("http://", "https:// evil\nhost"):
        made = await client.post(
            "/gifts",
            headers=admin,
            json={
                "name": "P",
                "points_cost": 1,
                "kind": "offline",
                "stock": 1,
                "picture_url": url,
            },
        )
        assert_error(made, 400, "validation_failed")
        patched = await client.patch(
            f"/gifts/{gift['id']}", headers=admin, json={"picture_url": url}
        )
        assert_error(patched, 400, "validation_failed")


async def test_a_gift_picture_names_only_the_brands_own_image_kept_in_use(
    client: Any, login: Any
) -> None:
    """A probe: a gift's ``picture_url`` took another brand's upload by its ``absolute_url``
    (201: brand B's members saw brand A's file), and a gift showing the brand's own upload did
    not keep it: ``DELETE /media/catalog/{id}`` answered 204 under it. Now, as the brand story:
    400 ``unknown_catalog_media`` (``details.field`` ``picture_url``) for another brand's
    medium or a video, on create and on PATCH; the brand's own image is taken, listed as in
    use (``in_offers``) and 409 ``in_use`` (``details.gift_id``) to a deletion until the gift
    shows another picture or is withdrawn."""
    _, theirs = await onboarded_brand(client, login)
    _, ours = await onboarded_brand(client, login)
    alien = (await upload(client, theirs, png(secrets.randbelow(1 << 24)))).json()
    image = (await upload(client, ours, png(secrets.randbelow(1 << 24)))).json()
    video = (await upload(client, ours, mp4(3000, secrets.token_bytes(8)))).json()
    body = {"name": "Mug", "points_cost": 10, "kind": "offline", "stock": 5}
    for medium in (alien, video):
        made = await client.post(
            "/gifts", headers=ours, json={**body, "picture_url": medium["absolute_url"]}
        )
        assert assert_error(made, 400, "unknown_catalog_media")["details"] == {
            "field": "picture_url"
        }
    made = await client.post(
        "/gifts", headers=ours, json={**body, "picture_url": image["absolute_url"]}
    )
    assert made.status_code == 201, made.text
    gift = made.json()
    used = assert_error(await client.delete(image["url"], headers=ours), 409, "in_use")
    assert used["details"] == {"gift_id": gift["id"]}
    listed = await client.get("/media/catalog", headers=ours, params={"kind": "image"})
    assert [(i["id"], i["in_offers"]) for i in listed.json()["items"]] == [(image["id"], True)]
    unused = await client.get("/media/catalog", headers=ours, params={"unused": "true"})
    assert [i["id"] for i in unused.json()["items"]] == [video["id"]]
    path = f"/gifts/{gift['id']}"
    for medium in (alien, video):
        patched = await client.patch(
            path, headers=ours, json={"picture_url": medium["absolute_url"]}
        )
        assert_error(patched, 400, "unknown_catalog_media")
    other = await client.post(
        "/gifts", headers=ours, json={**body, "picture_url": image["absolute_url"]}
    )
    assert other.status_code == 201, other.text
    moved = await client.patch(
        path, headers=ours, json={"picture_url": "https://img.example/m.png"}
    )
    assert moved.status_code == 200, moved.text
    still = assert_error(await client.delete(image["url"], headers=ours), 409, "in_use")
    assert still["details"] == {"gift_id": other.json()["id"]}
    withdrawn = await client.delete(f"/gifts/{other.json()['id']}", headers=ours)
    assert withdrawn.status_code == 204, withdrawn.text
    for medium in (image, video):
        gone = await client.delete(medium["url"], headers=ours)
        assert gone.status_code == 204, gone.text


async def test_factory_staff_cannot_fulfil_an_e_shop_voucher(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: README, "E-shop vouchers (online) are fulfilled by staff above the stores";
    ``app.members.redemptions._where`` only refused a store, so the factory's administrator
    (``factory_admin``, ``org_admin`` at FACTORY-SZ: no store can be below a factory, it is
    outside the sales channel) marked a member's voucher fulfilled at the factory. Now 422
    ``online_gift`` there too, and the code stays ``issued``."""
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 50)
    voucher = await new_gift(client, login, name="Tmall voucher", kind="online", points_cost=5)
    made = await redeem(app, headers, voucher["id"])
    assert made.status_code == 201, made.text
    red = made.json()
    factory = await login("factory_admin")
    done = await client.post("/redemptions/fulfil", headers=factory, json={"code": red["code"]})
    assert_error(done, 422, "online_gift")
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT status FROM redemptions WHERE id = %s", (red["id"],))
        ).fetchone()
    assert row["status"] == "issued"


async def _due_code(client: Any, login: Any, app: Any, demo: Any) -> str:
    """A redemption code whose time is up, not yet swept by the expiry job."""
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 40)
    gift = await new_gift(client, login, points_cost=40, stock=1)
    red = (await redeem(app, headers, gift["id"])).json()
    await _expire_now(app, red["id"])
    return str(red["code"])


@contextmanager
def _silent_redis(hold: float) -> Iterator[str]:
    """A TCP listener (a thread of its own) that accepts and never answers — a Redis frozen or
    cut off — closing each connection after ``hold`` seconds (so a test stuck on it ends)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        held: list[tuple[socket.socket, float]] = []
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append((conn, time.monotonic()))
            except TimeoutError:
                pass
            for conn, since in [h for h in held if time.monotonic() - h[1] > hold]:
                conn.close()
                held.remove((conn, since))
        for conn, _ in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(5)
        server.close()


async def test_fulfilling_a_due_code_while_the_job_redis_is_down_is_no_500(
    client: Any, login: Any, app: Any, demo: Any, settings: Any, monkeypatch: Any
) -> None:
    """A probe: with the jobs' Redis unreachable, fulfilling a redemption code that is due but not
    swept yet answers 500 ``internal_error`` (``redemptions.fulfil`` calls ``jobs.send`` and the
    redis ``ConnectionError`` escapes). Expected: 409 ``code_expired`` as with Redis up — the
    expiry job is periodic, so failing to queue it early must not fail the request."""
    from app import jobs

    code = await _due_code(client, login, app, demo)
    dead = jobs.build_broker(msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0"))
    monkeypatch.setattr(jobs, "broker", dead)
    clerk = await login("store_clerk")
    answer = await client.post("/redemptions/fulfil", headers=clerk, json={"code": code})
    assert_error(answer, 409, "code_expired")


async def test_fulfilling_a_due_code_while_the_job_redis_hangs_does_not_block_the_process(
    client: Any, login: Any, app: Any, demo: Any, settings: Any, monkeypatch: Any
) -> None:
    """A probe: with the jobs' Redis accepting connections but never answering, fulfilling a due
    code blocks the whole event loop inside ``jobs.send`` (the broker's blocking client, called
    on the loop) for the broker's socket timeout (5 s), during which every other request of the
    process waits, then answers 500 ``internal_error`` (the redis ``TimeoutError`` escapes).
    Expected: 409 ``code_expired`` within ``HAND_OVER_SECONDS`` (``jobs.hand_over``: off the
    loop, bounded), and the process keeps serving meanwhile."""
    from app import jobs

    code = await _due_code(client, login, app, demo)
    clerk = await login("store_clerk")
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:  # how long the event loop was held at once
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.05)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    with _silent_redis(hold=30) as url:
        hung = jobs.build_broker(msgspec.structs.replace(settings, redis_url=url))
        monkeypatch.setattr(jobs, "broker", hung)
        ticking = asyncio.ensure_future(ticker())
        started = time.monotonic()
        answer = await client.post("/redemptions/fulfil", headers=clerk, json={"code": code})
        took = time.monotonic() - started
        done.set()
        await ticking
    held = max(gaps)
    assert held < 1.5, f"the event loop was held {held:.1f} s by a hung job broker"
    assert took < 3, f"the fulfil took {took:.1f} s"
    assert_error(answer, 409, "code_expired")


async def _key_check(app: Any, value: bytes) -> None:
    """Set the master key check value the database keeps (``app.codes.keycheck``)."""
    async with app.state.pool.connection() as conn:
        await conn.execute("UPDATE master_key_check SET value = %s", (value,))


async def test_a_members_redemptions_under_another_master_key_are_no_500(
    client: Any, login: Any, demo: Any, app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe: redemption codes are kept AES-GCM-sealed under ``subkey("redemption-code-seal")``
    of the master key. Served by a host whose master key differs (a host configured with
    another key, a key file replaced: the case README warns of), ``GET /members/me/redemptions``
    answered 500 ``internal_error`` with a ``ValueError: MAC check failed`` traceback in the
    log, on every call, for every member who ever redeemed (``_mine`` unsealed without a
    guard), where the webhook sender, the ERP cursor and the H5 tickets handle the same
    failure. Now the list is answered, those codes null, with one warning per request; so is a
    redemption sent again (its first answer).

    A host under another key than the database's no longer starts (``app.codes.keycheck``); it
    still serves one where the database took the other key's check value (the first host to
    start after migration 0101 had it, the codes were sealed before): what the test sets up."""
    import logging

    from app.codes.keycheck import check_value
    from app.main import create_app
    from app.members.principal import issue_token
    from tests.helpers import served

    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login)
    first = await redeem(app, headers, gift["id"], client_id="first-of-two")
    assert first.status_code == 201, first.text
    assert (await redeem(app, headers, gift["id"])).status_code == 201
    other = create_app(msgspec.structs.replace(app.state.settings, master_key="77" * 32))
    said = logging.getLogger("tracecode.members")  # the app's logging set up replaced caplog's
    said.addHandler(caplog.handler)
    await _key_check(app, check_value(other.state.settings))
    try:
        async with served(other):
            token, _ = issue_token(other.state.settings, member_id)  # a fresh sign-in there
            bearer = {"Authorization": f"Bearer {token}"}
            async with member_client(other) as mc:
                listed = await mc.get("/members/me/redemptions", headers=bearer)
                warned = {id(r) for r in caplog.records if "unsealed" in r.getMessage()}
                again = await mc.post(
                    "/members/me/redemptions",
                    headers=bearer,
                    json={"gift_id": gift["id"], "client_id": "first-of-two"},
                )
    finally:
        said.removeHandler(caplog.handler)
        await _key_check(app, check_value(app.state.settings))
    assert listed.status_code == 200, listed.text
    assert [r["code"] for r in listed.json()["items"]] == [None, None]
    assert len(warned) == 1, warned  # once for the page, not once a code
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"] and again.json()["code"] is None
    async with member_client(app) as mc:  # under its own key, the codes as they were
        mine = (await mc.get("/members/me/redemptions", headers=headers)).json()["items"]
    assert mine[-1]["code"] == first.json()["code"]


async def test_a_code_fulfilled_with_an_api_key_records_who_fulfilled_it(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the brand's e-shop system fulfils Tmall vouchers through an API key holding
    ``redemptions.fulfil`` (API keys are the partner systems' way in). The fulfilment was
    recorded with ``fulfilled_by`` null, so ``GET /redemptions`` and the member admin's records
    (M5) showed a gift handed out by nobody, though the README promises "who, where and when".
    Now the person behind the key (``Principal.person``, the key's maker, as a logistics
    document records its handler) is recorded."""
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, points_cost=30, kind="online")
    red = (await redeem(app, headers, gift["id"])).json()
    admin = await login("admin")
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": "tmall", "permissions": ["redemptions.fulfil", "redemptions.read"]},
    )
    assert made.status_code == 201, made.text
    done = await client.post(
        "/redemptions/fulfil", headers={"X-API-Key": made.json()["key"]}, json={"code": red["code"]}
    )
    assert done.status_code == 200, done.text
    me = (await client.get("/auth/me", headers=admin)).json()  # the key's maker
    assert done.json()["fulfilled_by"] == me["user_id"]
    listed = await client.get("/redemptions", headers=admin, params={"per_page": 200})
    row = next(r for r in listed.json()["items"] if r["id"] == red["id"])
    assert row["status"] == "fulfilled"
    assert (row["fulfilled_by"], row["fulfilled_by_name"]) == (me["user_id"], me["username"]), row
    records = await client.get(f"/members/{member_id}/redemptions", headers=admin)
    (record,) = records.json()["items"]
    assert (record["fulfilled_by"], record["fulfilled_by_name"]) == (me["user_id"], me["username"])
    await client.delete(f"/gifts/{gift['id']}", headers=admin)


async def test_a_code_check_names_who_fulfilled_it_only_within_the_callers_subtree(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: ``GET /redemptions`` shows a store only the fulfilments of its subtree (README:
    stores see only the redemptions they fulfilled), but ``POST /redemptions/check`` of a code
    fulfilled at another agent's store answered that store's id and its clerk's user id. Now
    ``fulfilled_by`` and ``fulfilled_org_id`` are null unless the fulfilling organisation is in
    the caller's subtree (the store that fulfilled it, and the brand, still read them)."""
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 50)
    gift = await new_gift(client, login, name=f"Seen {secrets.token_hex(2)}", points_cost=5)
    code = (await redeem(app, headers, gift["id"])).json()["code"]
    hz = await login("store_clerk")
    done = await client.post("/redemptions/fulfil", headers=hz, json={"code": code})
    assert done.status_code == 200, done.text
    who = (done.json()["fulfilled_by"], done.json()["fulfilled_org_id"])
    me = (await client.get("/auth/me", headers=hz)).json()
    assert who == (me["user_id"], demo["STORE-HZ-01"])
    gz = await login("gz_clerk")  # a store under another agent
    checked = await client.post("/redemptions/check", headers=gz, json={"code": code})
    assert checked.status_code == 200, checked.text
    body = checked.json()
    assert (body["fulfilled_by"], body["fulfilled_org_id"]) == (None, None), body
    assert (body["status"], body["fulfilled_at"]) == ("fulfilled", done.json()["fulfilled_at"])
    for seer in (hz, await login("admin")):
        body = (await client.post("/redemptions/check", headers=seer, json={"code": code})).json()
        assert (body["fulfilled_by"], body["fulfilled_org_id"]) == who, body
    await client.delete(f"/gifts/{gift['id']}", headers=await login("admin"))


async def test_a_code_past_its_date_reads_expired_everywhere_before_the_sweep(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a code past ``expires_at`` that the minute sweep had not moved yet read
    ``issued`` in ``GET /members/me/redemptions``, the member admin's ``GET /members/{id}/
    redemptions`` and the staff's ``GET /redemptions?status=issued`` (outstanding), while the
    check called it expired and the fulfil refused it. Now every list reads it expired at once,
    and the status filters agree (``issued`` leaves it out, ``expired`` has it)."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 40)
    gift = await new_gift(client, login, points_cost=20, stock=2)
    reds = [(await redeem(app, headers, gift["id"])).json() for _ in range(2)]
    due, live = reds[0]["id"], reds[1]["id"]
    await _expire_now(app, due)
    admin = await login("admin")
    both = {due: "expired", live: "issued"}

    async def read(answer: Any) -> dict[int, str]:
        assert answer.status_code == 200, answer.text
        rows = answer.json()["items"]
        return {r["id"]: r["status"] for r in rows if r["id"] in both}

    async with member_client(app) as mc:
        for status in (None, "issued", "expired"):
            params = {"status": status} if status else {}
            mine = await read(
                await mc.get("/members/me/redemptions", headers=headers, params=params)
            )
            records = await read(
                await client.get(f"/members/{member_id}/redemptions", headers=admin, params=params)
            )
            listed = await read(
                await client.get(
                    "/redemptions",
                    headers=admin,
                    params={"per_page": 200, "from": start.isoformat(), **params},
                )
            )
            expected = {i: s for i, s in both.items() if status in (None, s)}
            assert mine == records == listed == expected, (status, mine, records, listed)
    clerk = await login("store_clerk")  # the check says so too
    checked = await client.post("/redemptions/check", headers=clerk, json={"code": reds[0]["code"]})
    assert (checked.json()["valid"], checked.json()["status"]) == (False, "expired")
