"""Lucky draws (扫码抽奖, SPEC B4): the brand's campaigns (scoped, audited, bad input), a member's
draw by scan + PIN verified like a points claim (wrong PIN, not shipped, other brand, campaign
not running or not covering the unit), one draw per code under a race (over HTTP and across
connections), prizes never over-given (the last prize under 50 concurrent draws), a weight of 0
never drawn, a points prize credited once to a ledger that checks, vouchers fulfilled by staff."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.h5_support import tenant_units
from tests.helpers import assert_error, code_of, key_of, onboarded_brand
from tests.points_support import (
    claim_body,
    into_channel,
    member_client,
    new_member,
    random_phone,
)
from tests.race_support import answered_while_unit_held, lock_waiters, voiding
from tests.rebates_support import user_id
from tests.sms_gateway import last_code, sms_gateway  # noqa: F401 - the fixture
from tests.test_logistics import pack

DRAW = "/members/me/draws"


@pytest.fixture(scope="module")
async def goods(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """90 sun-cream units in 9 cases: cases 0–7 shipped to AGENT-ZJ (浙江省), case 8 never
    left the factory."""
    goods = await pack(client, login, app, demo, 9)
    await into_channel(client, login, demo, goods["cases"][:8])
    return goods


class Units:
    """The shipped units of ``goods``, each handed out once across the module's tests."""

    def __init__(self, goods: dict[str, Any]) -> None:
        self.free = list(goods["units"][:80])

    def take(self, n: int = 1) -> list[str]:
        taken, self.free = self.free[:n], self.free[n:]
        assert len(taken) == n, "the module ran out of shipped units"
        return taken


@pytest.fixture(scope="module")
def units(goods: dict[str, Any]) -> Units:
    return Units(goods)


@pytest.fixture(autouse=True)
async def no_other_campaign(app: Any, demo: Any) -> None:
    """Each test's draws go to its own campaigns: those of earlier tests are withdrawn (the sun
    cream's: ``tests.test_draws_owners`` draws lipsticks)."""
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE draw_campaigns SET deleted_at = now() WHERE brand_id = %(brand)s "
            "AND deleted_at IS NULL AND product_ids && ARRAY(SELECT id FROM products "
            "WHERE org_id = %(brand)s AND product_no = 'LM-SC-30')",
            {"brand": demo["BRAND-LUMI"]},
        )


def campaign_body(product_id: int, prizes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "name": f"Draw {secrets.token_hex(3)}",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=7)).isoformat(),
        "product_ids": [product_id],
        "no_prize_weight": 0,
        "prizes": prizes,
        **extra,
    }


def prize(name: str, kind: str = "gift", quantity: int = 10, weight: int = 1, **extra: Any) -> Any:
    return {"name": name, "kind": kind, "quantity": quantity, "weight": weight, **extra}


async def new_campaign(client: Any, headers: dict[str, str], body: dict[str, Any]) -> Any:
    made = await client.post("/draws", headers=headers, json=body)
    assert made.status_code == 201, made.text
    return made.json()


async def draw(app: Any, headers: dict[str, str], serial: str, client_id: str | None = None) -> Any:
    async with member_client(app) as mc:
        return await mc.post(
            DRAW, headers=headers, json=claim_body(app.state.scheme, serial, client_id)
        )


async def test_a_draw_is_verified_once_per_code_and_replays_its_answer(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    marketer = await login("marketer")
    campaign = await new_campaign(
        client, marketer, campaign_body(goods["product_id"], [prize("Tote bag", "gift", 5, 1)])
    )
    (serial,) = units.take()
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    first = await draw(app, headers, serial, "d-1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["campaign_id"] == campaign["id"] and body["serial"] == serial
    assert body["prize"]["name"] == "Tote bag" and body["fulfil_status"] == "pending"
    assert body["verification"]["result"] == "genuine"
    # the same draw again answers the first (200), takes nothing more
    again = await draw(app, headers, serial, "d-1")
    assert again.status_code == 200, again.text
    assert again.json()["draw_id"] == body["draw_id"] and again.json()["prize"] == body["prize"]
    # the code again under another client id, or by another member: drawn already
    assert_error(await draw(app, headers, serial, "d-2"), 409, "already_drawn")
    _, other, _ = await new_member(app, demo["BRAND-LUMI"])
    assert_error(await draw(app, other, serial), 409, "already_drawn")
    # the client id of that draw for another code
    (second,) = units.take()
    assert_error(await draw(app, headers, second, "d-1"), 409, "client_id_reused")
    listed = (await client.get(f"/draws/{campaign['id']}", headers=marketer)).json()
    assert listed["prizes"][0]["remaining"] == 4 and (listed["draws"], listed["winners"]) == (1, 1)
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT member_id, verify_result, prize_name FROM draws WHERE code_id = %s",
                (code_of(app, serial),),
            )
        ).fetchone()
    assert row == {"member_id": member_id, "verify_result": "genuine", "prize_name": "Tote bag"}


async def test_refusals_have_stable_codes(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    admin = await login("admin")
    product = goods["product_id"]
    (serial,) = units.take()
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    # no campaign at all
    assert_error(await draw(app, headers, serial), 422, "draw_not_covered")
    # one for another product, one in another province
    async with app.state.pool.connection() as conn:
        other_product = (
            await (
                await conn.execute(
                    "SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id "
                    "WHERE o.path LIKE %s AND p.id <> %s ORDER BY p.id LIMIT 1",
                    (f"/{demo['BRAND-LUMI']}/%", product),
                )
            ).fetchone()
        )["id"]
    await new_campaign(client, admin, campaign_body(other_product, [prize("A")]))
    await new_campaign(client, admin, campaign_body(product, [prize("B")], provinces=["广东省"]))
    assert_error(await draw(app, headers, serial), 422, "draw_not_covered")
    # one that covers it but has not started, one stopped
    later = campaign_body(product, [prize("C")])
    later["starts_at"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await new_campaign(client, admin, later)
    stopped = await new_campaign(client, admin, campaign_body(product, [prize("D")]))
    patched = await client.patch(
        f"/draws/{stopped['id']}", headers=admin, json={"status": "stopped"}
    )
    assert patched.status_code == 200 and not patched.json()["running"], patched.text
    assert_error(await draw(app, headers, serial), 422, "draw_not_running")
    # running in the unit's province (Zhejiang): drawn
    await new_campaign(client, admin, campaign_body(product, [prize("E")], provinces=["Zhejiang"]))
    # never shipped into the channel
    assert_error(await draw(app, headers, goods["units"][85]), 422, "not_shipped")
    # a wrong PIN: refused as /v1/verify refuses it, counted toward the code's lockout
    scheme = app.state.scheme
    async with member_client(app) as mc:
        wrong = {**claim_body(scheme, serial), "pin": "0" * len(scheme.pin(serial))}
        if wrong["pin"] == scheme.pin(serial):
            wrong["pin"] = "1" * len(wrong["pin"])
        first = assert_error(await mc.post(DRAW, headers=headers, json=wrong), 422, "wrong_pin")
        second = assert_error(await mc.post(DRAW, headers=headers, json=wrong), 422, "wrong_pin")
        assert second["details"]["pin_attempts_left"] < first["details"]["pin_attempts_left"]
        # a forged code; bad bodies; no member
        assert_error(
            await mc.post(
                DRAW, headers=headers, json={**claim_body(scheme, serial), "serial": "X"}
            ),
            422,
        )
        for body in (
            {"serial": serial, "pin": scheme.pin(serial)},  # no client id
            {**claim_body(scheme, serial), "extra": 1},
            {**claim_body(scheme, serial), "pin": 1234},
            {**claim_body(scheme, serial), "client_id": "bad id\n"},
        ):
            assert_error(await mc.post(DRAW, headers=headers, json=body), 400)
        json_headers = {**headers, "Content-Type": "application/json"}
        bad = await mc.post(DRAW, headers=json_headers, content=b"{not json")
        assert_error(bad, 400)
        assert_error(await mc.post(DRAW, json=claim_body(scheme, serial)), 401, "unauthorized")
    # another brand's member: not this membership's brand
    brand, _ = await onboarded_brand(client, login)
    _, stranger, _ = await new_member(app, brand["id"])
    assert_error(await draw(app, stranger, serial), 422, "other_brand")
    # a frozen member
    _, frozen, _ = await new_member(app, demo["BRAND-LUMI"], status="frozen")
    assert_error(await draw(app, frozen, serial), 403, "member_frozen")
    # nothing of these was a draw: the code is still to be drawn
    ok = await draw(app, headers, serial)
    assert ok.status_code == 201, ok.text
    assert ok.json()["prize"]["name"] == "E"


async def test_twenty_phones_drawing_one_code_make_one_draw(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """20 members draw the same code at once over HTTP: one 201, 19 409 already_drawn; then 20
    rounds on 20 connections of their own race for another code: one draw."""
    admin = await login("admin")
    await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("Cap", quantity=100)])
    )
    serial, raced = units.take(2)
    members = [await new_member(app, demo["BRAND-LUMI"]) for _ in range(20)]
    answers = await asyncio.gather(*[draw(app, m[1], serial) for m in members])
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 19, [a.text for a in answers if a.status_code != 409]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"already_drawn"}

    from app.claims import Pending

    drawer = app.state.drawer
    code = code_of(app, raced)

    async def one(member_id: int) -> int:
        conninfo = app.state.pool.conninfo
        async with await psycopg.AsyncConnection.connect(
            conninfo, row_factory=dict_row, autocommit=True
        ) as conn:
            pending: Pending[Any] = Pending(
                member_id, demo["BRAND-LUMI"], None, code, raced, f"race-{member_id}",
                datetime.now(UTC),
            )  # fmt: skip
            return len(await drawer.credit(conn, [pending]))

    drawn = await asyncio.gather(*[one(m[0]) for m in members])
    assert sum(drawn) == 1
    async with app.state.pool.connection() as conn:
        for serial_ in (serial, raced):
            n = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM draws WHERE code_id = %s", (code_of(app, serial_),)
                )
            ).fetchone()
            assert n["n"] == 1
        remaining = await (
            await conn.execute(
                "SELECT p.remaining FROM draw_prizes p JOIN draws d ON d.prize_id = p.id "
                "WHERE d.code_id = %s",
                (code,),
            )
        ).fetchone()
        assert remaining["remaining"] == 98


async def test_the_last_prize_under_fifty_concurrent_draws_is_given_once(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """50 draws of 50 codes at once, each its own round on its own connection, for a campaign
    whose only prize (weight 1, no-prize weight 0) has one left: one winner, stock 0, never
    below; the 49 others no prize."""
    admin = await login("admin")
    campaign = await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("Last one", quantity=1)])
    )
    serials = units.take(50)
    members = [await new_member(app, demo["BRAND-LUMI"]) for _ in range(5)]

    from app.claims import Pending

    drawer = app.state.drawer

    async def one(i: int, serial: str) -> Any:
        async with await psycopg.AsyncConnection.connect(
            app.state.pool.conninfo, row_factory=dict_row, autocommit=True
        ) as conn:
            pending: Pending[Any] = Pending(
                members[i % 5][0], demo["BRAND-LUMI"], None, code_of(app, serial), serial,
                f"last-{i}", datetime.now(UTC),
            )  # fmt: skip
            return (await drawer.credit(conn, [pending]))[id(pending)]

    outs = await asyncio.gather(*[one(i, s) for i, s in enumerate(serials)])
    assert len(outs) == 50
    assert sum(o.prize is not None for o in outs) == 1
    got = (await client.get(f"/draws/{campaign['id']}", headers=admin)).json()
    assert got["prizes"][0]["remaining"] == 0 and (got["draws"], got["winners"]) == (50, 1)
    results = await client.get(
        f"/draws/{campaign['id']}/results", headers=admin, params={"outcome": "won"}
    )
    assert results.json()["total"] == 1


async def test_a_weight_of_zero_is_never_drawn_and_a_sole_prize_until_its_stock_runs_out(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    admin = await login("admin")
    prizes = [prize("Never", quantity=100, weight=0), prize("Always", quantity=3, weight=5)]
    campaign = await new_campaign(client, admin, campaign_body(goods["product_id"], prizes))
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    got = []
    for serial in units.take(6):
        answer = await draw(app, headers, serial)
        assert answer.status_code == 201, answer.text
        got.append(answer.json()["prize"] and answer.json()["prize"]["name"])
    assert got == ["Always"] * 3 + [None] * 3
    after = (await client.get(f"/draws/{campaign['id']}", headers=admin)).json()
    assert [(p["name"], p["remaining"]) for p in after["prizes"]] == [("Never", 100), ("Always", 0)]


def test_choose_keeps_an_out_of_stock_prizes_odds_as_no_prize() -> None:
    from app.draws.claims import Prize, choose

    today = date(2026, 1, 1)
    rows = [
        {"id": 1, "name": "A", "kind": "gift", "points": None, "remaining": 0, "weight": 3,
         "daily_cap": None},
        {"id": 2, "name": "B", "kind": "gift", "points": None, "remaining": 5, "weight": 2,
         "daily_cap": 1},
    ]  # fmt: skip
    prizes = [Prize(r, {}) for r in rows]
    # no-prize weight 5, then A's 3 (out of stock: no prize), then B's 2 (one a day)
    assert choose(prizes, 5, today, lambda total: 4) is None
    assert choose(prizes, 5, today, lambda total: 6) is None
    assert choose(prizes, 5, today, lambda total: 8) is prizes[1]
    assert choose(prizes, 5, today, lambda total: 9) is None  # its daily cap
    assert choose(prizes, 5, today + timedelta(days=1), lambda total: 9) is prizes[1]
    assert prizes[1].remaining == 3
    assert choose([], 0, today) is None


async def test_a_points_prize_is_credited_once_and_the_ledger_checks(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    from app.members.points import check_balances

    admin = await login("admin")
    await new_campaign(
        client,
        admin,
        campaign_body(goods["product_id"], [prize("50 points", "points", 10, 1, points=50)]),
    )
    (serial,) = units.take()
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    first = await draw(app, headers, serial, "p-1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["prize"]["points"] == 50 and body["balance"] == 50
    assert body["fulfil_status"] == "credited"
    again = await draw(app, headers, serial, "p-1")
    assert again.status_code == 200 and again.json()["balance"] == 50, again.text
    async with member_client(app) as mc:
        history = (await mc.get("/members/me/points", headers=headers)).json()
    assert history["balance"] == 50
    assert [(e["kind"], e["points"]) for e in history["items"]] == [("draw", 50)]
    async with app.state.pool.connection() as conn:
        assert await check_balances(conn) == []
        rows = await (
            await conn.execute(
                "SELECT count(*) AS n FROM points_ledger WHERE member_id = %s", (member_id,)
            )
        ).fetchone()
        assert rows["n"] == 1


async def test_campaigns_are_the_brands_staffs_and_audited(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    admin = await login("admin")
    product = goods["product_id"]
    body = campaign_body(
        product,
        [prize("Voucher 20", "voucher", 2, 1), prize("None really", "gift", 1, 0, daily_cap=1)],
        no_prize_weight=0,
    )
    campaign = await new_campaign(client, admin, body)
    cid = campaign["id"]
    assert campaign["running"] and [p["remaining"] for p in campaign["prizes"]] == [2, 1]
    # bad input
    for bad, status, code in [
        ({**body, "product_ids": [999_999_999]}, 422, "unknown_product"),
        ({**body, "ends_at": body["starts_at"]}, 422, "bad_window"),
        ({**body, "prizes": [prize("P", "points")]}, 422, "bad_prize_points"),
        ({**body, "prizes": [prize("G", points=5)]}, 422, "bad_prize_points"),
        ({**body, "provinces": ["Atlantis"]}, 400, None),
        ({**body, "no_prize_weight": -1}, 400, None),
        ({**body, "prizes": [prize("Q", quantity=-1)]}, 400, None),
        ({**body, "prizes": [prize("K", kind="car")]}, 400, None),
        ({**body, "product_ids": []}, 400, None),
        ({**body, "starts_at": "2026-01-01T00:00:00"}, 400, None),
        # year 10000 in Beijing, where pages and files show it (a probe: a 500 on them)
        ({**body, "ends_at": "9999-12-31T23:59:59Z"}, 400, "validation_failed"),
        ({**body, "surprise": True}, 400, None),
    ]:
        assert_error(await client.post("/draws", headers=admin, json=bad), status, code)
    # a prize's quantity moves its stock, never below what was given
    (serial,) = units.take()
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    won = await draw(app, headers, serial)
    assert won.status_code == 201 and won.json()["prize"]["name"] == "Voucher 20", won.text
    voucher = campaign["prizes"][0]["id"]
    url = f"/draws/{cid}/prizes/{voucher}"
    assert_error(await client.patch(url, headers=admin, json={"quantity": 0}), 409,
                 "quantity_below_given")  # fmt: skip
    grown = await client.patch(url, headers=admin, json={"quantity": 5})
    assert grown.status_code == 200 and grown.json()["remaining"] == 4, grown.text
    added = await client.post(f"/draws/{cid}/prizes", headers=admin, json=prize("Extra"))
    assert added.status_code == 201, added.text
    # results: paged, filtered, CSV; the voucher handed over with a note
    results = (await client.get(f"/draws/{cid}/results", headers=admin)).json()
    assert results["total"] == 1 and results["items"][0]["fulfil_status"] == "pending"
    assert "*" not in results["items"][0]["phone"]  # the admin holds members.read_phone
    marketer = (await client.get(f"/draws/{cid}/results", headers=await login("marketer"))).json()
    assert "*" in marketer["items"][0]["phone"]  # the marketer does not: masked
    draw_id = results["items"][0]["id"]
    fulfil = f"/draws/{cid}/results/{draw_id}/fulfil"
    done = await client.post(fulfil, headers=admin, json={"note": "VCH-123"})
    assert done.status_code == 200 and done.json()["fulfil_status"] == "fulfilled", done.text
    assert (await client.post(fulfil, headers=admin, json={"note": "VCH-123"})).status_code == 200
    assert_error(
        await client.post(fulfil, headers=admin, json={"note": "other"}), 409, "prize_not_pending"
    )
    assert_error(await client.post(fulfil, headers=admin, json={"note": ""}), 400)
    csv = await client.get(f"/draws/{cid}/results", headers=admin, params={"format": "csv"})
    assert (
        csv.status_code == 200
        and "VCH-123" in csv.text
        and csv.text.lstrip("\ufeff").startswith("id,")
    )
    # audited
    async with app.state.pool.connection() as conn:
        actions = {
            (r["action"], r["entity"])
            for r in await (
                await conn.execute(
                    "SELECT action, entity FROM audit_log WHERE entity IN "
                    "('draw_campaign', 'draw_prize', 'draw') AND entity_id IN (%s, %s, %s, %s)",
                    (str(cid), str(voucher), str(draw_id), str(added.json()["id"])),
                )
            ).fetchall()
        }
    assert {("create", "draw_campaign"), ("update", "draw_prize"), ("fulfil", "draw")} <= actions
    # scoping: below the brand, without the permission, another brand
    for user in ("agent_admin", "store_clerk", "analyst"):
        headers_ = await login(user)
        assert_error(await client.get("/draws", headers=headers_), 403)
        assert_error(await client.post("/draws", headers=headers_, json=body), 403)
        assert_error(await client.get(f"/draws/{cid}/results", headers=headers_), 403)
    _, other = await onboarded_brand(client, login)
    assert (await client.get("/draws", headers=other)).json()["total"] == 0
    for method, path in [
        ("GET", f"/draws/{cid}"),
        ("GET", f"/draws/{cid}/results"),
        ("DELETE", f"/draws/{cid}"),
    ]:
        assert_error(await client.request(method, path, headers=other), 404)
    assert_error(await client.patch(f"/draws/{cid}", headers=other, json={"name": "x"}), 404)
    assert_error(await client.post(fulfil, headers=other, json={"note": "x"}), 404)
    assert_error(
        await client.post("/draws", headers=other, json=body), 422, "unknown_product"
    )  # our product is not theirs
    # deleted: gone from the list and from drawing
    assert (await client.delete(f"/draws/{cid}", headers=admin)).status_code == 204
    assert_error(await client.get(f"/draws/{cid}", headers=admin), 404)
    (later,) = units.take()
    assert_error(await draw(app, headers, later), 422, "draw_not_covered")


async def test_the_answer_page_links_to_the_h5_draw_and_the_form_draws_once(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    import re

    admin = await login("admin")
    await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("H5 gift")], name="Spring draw")
    )
    (serial,) = units.take()
    pin = app.state.scheme.pin(serial)
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as h5:
        h5.cookies.set("tc_member", headers["Authorization"].split()[1])
        answer = await h5.post(f"/c/{serial}", data={"pin": pin})
        assert 'id="draw-link"' in answer.text and "Spring draw" in answer.text, answer.text
        page = await h5.get("/member/draw", params={"serial": serial})
        assert page.status_code == 200, page.text
        fields = dict(re.findall(r'name="(csrf|client_id)" value="([^"]+)"', page.text))
        body = {**fields, "serial": serial, "lang": "zh"}
        wrong = await h5.post("/member/draw", data={**body, "pin": "1" * len(pin)})
        if pin != "1" * len(pin):
            assert wrong.status_code == 422 and 'id="draw-form"' in wrong.text, wrong.text
        drawn = await h5.post("/member/draw", data={**body, "pin": pin})
        assert drawn.status_code == 200 and "恭喜中奖" in drawn.text, drawn.text
        again = await h5.post("/member/draw", data={**body, "pin": pin})  # a double tap
        assert again.status_code == 200 and "恭喜中奖" in again.text
        bad = await h5.post("/member/draw", data={**body, "pin": "12"})
        assert bad.status_code == 400
        answer = await h5.post(f"/c/{serial}", data={"pin": pin})
        assert 'id="draw-link"' not in answer.text  # drawn: no link any more
    async with app.state.pool.connection() as conn:
        n = await (
            await conn.execute(
                "SELECT count(*) AS n FROM draws WHERE code_id = %s", (code_of(app, serial),)
            )
        ).fetchone()
    assert n["n"] == 1


async def _draws_of(app: Any, serial: str) -> int:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM draws WHERE code_id = %s", (code_of(app, serial),)
            )
        ).fetchone()
    return int(row["n"])


async def test_a_held_member_takes_no_prize_until_the_hold_is_released(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A review: a member on a fraud hold drew prizes (``_INSERT`` never read fraud_holds) — a
    held member's points claims are held, their draws must be too. The held draw takes the code
    (201, ``status`` ``under_review``, no prize, no stock taken; another member's draw of the
    code is ``already_drawn``), and is drawn when the hold is released (the prize, its stock)."""
    admin = await login("admin")
    campaign = await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("Held gift", "gift", 3, 1)])
    )
    (serial,) = units.take()
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    made = await client.post(
        "/forensics/holds", headers=admin, json={"party_kind": "member", "party_id": member_id}
    )
    assert made.status_code == 201, made.text
    held = await draw(app, headers, serial, "held-1")
    assert held.status_code == 201, held.text
    assert held.json()["status"] == "under_review" and held.json()["prize"] is None
    assert held.json()["fulfil_status"] == "none"
    assert await _draws_of(app, serial) == 1
    _, other, _ = await new_member(app, demo["BRAND-LUMI"])
    assert_error(await draw(app, other, serial), 409, "already_drawn")
    listed = (await client.get(f"/draws/{campaign['id']}", headers=admin)).json()
    assert listed["prizes"][0]["remaining"] == 3
    released = await client.post(
        f"/forensics/holds/{made.json()['id']}/release", headers=admin, json={}
    )
    assert released.status_code == 200, released.text
    again = await draw(app, headers, serial, "held-1")  # the same draw: drawn now
    assert again.status_code == 200 and again.json()["status"] == "drawn", again.text
    assert again.json()["prize"]["name"] == "Held gift"
    listed = (await client.get(f"/draws/{campaign['id']}", headers=admin)).json()
    assert listed["prizes"][0]["remaining"] == 2


async def test_a_returned_unit_is_not_drawn_until_sold_again(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A review: the draws lacked the points claims' unit filters — a unit a consumer returned
    damaged (``SPOILT``) or returned and not sold since (``RETURNED_UNSOLD``) was drawn (the
    refunded buyer's code). 409 ``not_sellable`` and ``not_sold_again``, nothing drawn."""
    admin = await login("admin")
    await new_campaign(client, admin, campaign_body(goods["product_id"], [prize("R gift")]))
    damaged, returned = units.take(2)
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE unit_state SET disposition = 'damaged' WHERE code = %s",
            (code_of(app, damaged),),
        )
        await conn.execute(
            "UPDATE unit_state SET returned_at = now() WHERE code = %s",
            (code_of(app, returned),),
        )
    assert_error(await draw(app, headers, damaged), 409, "not_sellable")
    assert_error(await draw(app, headers, returned), 409, "not_sold_again")
    assert await _draws_of(app, damaged) == 0 and await _draws_of(app, returned) == 0


async def test_a_deleted_campaigns_results_stay_readable_and_fulfillable(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A review: deleting a campaign made its results, their CSV and the fulfilment of its
    pending prizes 404 (``_get`` required ``deleted_at IS NULL``): the README says its results
    stay readable, and a won gift was stranded."""
    admin = await login("admin")
    campaign = await new_campaign(
        client, admin, campaign_body(goods["product_id"], [prize("Late gift")])
    )
    cid = campaign["id"]
    (serial,) = units.take()
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    won = await draw(app, headers, serial)
    assert won.status_code == 201, won.text
    assert (await client.delete(f"/draws/{cid}", headers=admin)).status_code == 204
    assert (await client.get(f"/draws/{cid}", headers=admin)).status_code == 404
    results = await client.get(f"/draws/{cid}/results", headers=admin)
    assert results.status_code == 200 and results.json()["total"] == 1, results.text
    csv = await client.get(f"/draws/{cid}/results", headers=admin, params={"format": "csv"})
    assert csv.status_code == 200 and "Late gift" in csv.text
    draw_id = results.json()["items"][0]["id"]
    done = await client.post(
        f"/draws/{cid}/results/{draw_id}/fulfil", headers=admin, json={"note": "SF-1"}
    )
    assert done.status_code == 200 and done.json()["fulfil_status"] == "fulfilled", done.text


async def test_one_member_owns_a_codes_points_and_draw(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A review: a member could draw on a code whose points another member claimed, and claim
    the points of a code another member drew — whoever saw the PIN took the other reward. 409
    ``claimed_by_another`` both ways; the same member may do both."""
    from tests.points_support import set_rule

    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 5)
    await new_campaign(client, admin, campaign_body(goods["product_id"], [prize("Own gift")]))
    claimed, drawn = units.take(2)
    scheme = app.state.scheme
    _, owner, _ = await new_member(app, demo["BRAND-LUMI"])
    _, other, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        made = await mc.post("/members/me/claims", headers=owner, json=claim_body(scheme, claimed))
        assert made.status_code == 201, made.text
        assert_error(await draw(app, other, claimed), 409, "claimed_by_another")
        assert (await draw(app, owner, claimed)).status_code == 201  # the owner's own
        assert (await draw(app, owner, drawn)).status_code == 201
        taken = await mc.post("/members/me/claims", headers=other, json=claim_body(scheme, drawn))
        assert_error(taken, 409, "claimed_by_another")
        mine = await mc.post("/members/me/claims", headers=owner, json=claim_body(scheme, drawn))
        assert mine.status_code == 201, mine.text


async def test_the_answer_pages_draw_is_not_another_check_of_the_code(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A review: the H5 draw from the answer page's link verified the code afresh — the page's
    check and the draw's counted as two queries of the code (a genuine unit shown "queried
    before" to its next scanner) and the PIN typed again. The link carries the answer page's
    sealed ticket (as the points claim's form): the draw is its check again, and sent twice
    it is one draw."""
    import re

    admin = await login("admin")
    await new_campaign(client, admin, campaign_body(goods["product_id"], [prize("Ticket gift")]))
    (serial,) = units.take()
    pin = app.state.scheme.pin(serial)
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as h5:
        h5.cookies.set("tc_member", headers["Authorization"].split()[1])
        answer = await h5.post(f"/c/{serial}", data={"pin": pin})
        link = re.search(r'id="draw-link" href="([^"]+)"', answer.text)
        assert link is not None and "ticket=" in link.group(1), answer.text
        page = await h5.get(link.group(1).replace("&amp;", "&"))
        assert page.status_code == 200 and 'id="draw-pin"' not in page.text, page.text
        fields = dict(re.findall(r'name="(csrf|ticket|serial|lang)" value="([^"]*)"', page.text))
        drawn = await h5.post("/member/draw", data=fields)
        assert drawn.status_code == 200 and "恭喜中奖" in drawn.text, drawn.text
        again = await h5.post("/member/draw", data=fields)
        assert again.status_code == 200 and "恭喜中奖" in again.text
        # the next scan of the code: the answer page's was the one query before it
        buyer = await h5.post("/v1/verify", json={"serial": serial, "pin": pin})
        assert (buyer.json()["result"], buyer.json()["queries"]) == ("genuine", 2), buyer.text
    assert await _draws_of(app, serial) == 1


def _form_of(page: str, *names: str) -> dict[str, str]:
    """The named fields of the page's forms, as a browser posts them."""
    import re
    from html import unescape

    pattern = rf'name="({"|".join(names)})" value="([^"]*)"'
    return {name: unescape(value) for name, value in re.findall(pattern, page)}


@pytest.mark.usefixtures("sms_gateway")
async def test_a_signed_out_draw_link_signs_in_at_its_brand_and_comes_back_to_draw(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A probe: the answer page's draw link opened signed out (a consumer's first scan) was sent
    to ``/member/login`` with no brand — the "scan the QR code" page, a dead end, the draw lost,
    even with ``tc_brand`` naming the brand. It leads to the sign-in of the ticket's brand,
    carrying the draw as "sign in to claim" carries its claim (``claim``, ``session.DRAW``);
    signed in, the consumer is back on the draw form and draws once. No ticket: the brand last
    signed in to; a carried draw whose ticket is no ticket of ours leads to the bare form."""
    import re
    from html import unescape
    from urllib.parse import parse_qs, urlsplit

    admin = await login("admin")
    await new_campaign(client, admin, campaign_body(goods["product_id"], [prize("Scan gift")]))
    (serial,) = units.take()
    pin, brand, phone = app.state.scheme.pin(serial), demo["BRAND-LUMI"], random_phone()
    async with member_client(app) as h5:
        answer = await h5.post(f"/c/{serial}", data={"pin": pin})
        link = re.search(r'id="draw-link" href="([^"]+)"', answer.text)
        assert link is not None and "ticket=" in link.group(1), answer.text
        out = await h5.get(unescape(link.group(1)))
        assert out.status_code == 303, out.text
        to = urlsplit(out.headers["location"])
        query = parse_qs(to.query)
        assert to.path == "/member/login" and query["brand"] == [str(brand)], to
        assert query["claim"][0].startswith("draw."), query
        page = await h5.get(out.headers["location"])
        assert page.status_code == 200 and 'name="phone"' in page.text, page.text
        fields = _form_of(page.text, "csrf", "brand", "claim", "lang")
        sent = await h5.post("/member/otp", data={**fields, "phone": phone})
        assert sent.status_code == 200 and 'name="code"' in sent.text, sent.text
        code = await asyncio.to_thread(last_code, phone)
        fields = _form_of(sent.text, "csrf", "brand", "claim", "lang", "phone")
        signed = await h5.post("/member/login", data={**fields, "code": code})
        assert signed.status_code == 303, signed.text
        back = signed.headers["location"]
        assert back.startswith("/member/draw?") and "tc_member" in h5.cookies, back
        form = await h5.get(back)
        assert form.status_code == 200 and 'id="draw-form"' in form.text, form.text
        assert 'id="draw-pin"' not in form.text  # the ticket's PIN, not asked again
        fields = _form_of(form.text, "csrf", "ticket", "serial", "lang")
        drawn = await h5.post("/member/draw", data=fields)
        assert drawn.status_code == 200 and "恭喜中奖" in drawn.text, drawn.text
        again = await h5.post("/member/draw", data=fields)
        assert again.status_code == 200 and "恭喜中奖" in again.text
        # signed in already, a carried draw of no ticket of ours: this site's bare form only
        for forged in ("//evil.example", "https://evil.example/", "x" * 200):
            bare = await h5.get("/member/login", params={"brand": brand, "claim": "draw." + forged})
            assert bare.status_code == 303, bare.text
            assert urlsplit(bare.headers["location"]).path == "/member/draw"
            assert "evil" not in bare.headers["location"]
    assert await _draws_of(app, serial) == 1
    async with member_client(app) as h5:  # no ticket: the sign-in of the brand last signed in to
        h5.cookies.set("tc_brand", str(brand))
        out = await h5.get("/member/draw", params={"serial": serial, "ticket": "forged"})
        assert out.status_code == 303 and out.headers["location"] == f"/member/login?brand={brand}"


async def test_a_draws_points_add_up_in_analytics_and_draws_are_exported_and_erased(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A review: a draw's points counted in the people analytics' balance but in none of
    claimed/redeemed/expired/adjusted (the columns did not add up); the member's data export
    left the draws out and the erasure kept the fulfilment notes (a parcel's address)."""
    from tests.test_analytics_people import roll

    admin = await login("admin")
    campaign = await new_campaign(
        client,
        admin,
        campaign_body(
            goods["product_id"],
            [prize("30 points", "points", 5, 1, points=30), prize("Parcel", "gift", 5, 0)],
        ),
    )
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    points_prize, gift_prize = campaign["prizes"]
    won = await draw(app, headers, units.take()[0])
    assert won.status_code == 201 and won.json()["prize"]["kind"] == "points", won.text
    # then only the parcel: one of each, not left to chance (drawing until both came up could
    # run the first kind out of stock, then draw nothing)
    for prize_id, weight in ((points_prize["id"], 0), (gift_prize["id"], 1)):
        changed = await client.patch(
            f"/draws/{campaign['id']}/prizes/{prize_id}", headers=admin, json={"weight": weight}
        )
        assert changed.status_code == 200, changed.text
    won = await draw(app, headers, units.take()[0])
    assert won.status_code == 201 and won.json()["prize"]["kind"] == "gift", won.text
    await roll()
    async with app.state.pool.connection() as conn:
        facts = await (
            await conn.execute(
                "SELECT claimed, redeemed, expired, adjusted, balance FROM analytics_member_facts "
                "WHERE member_id = %s",
                (member_id,),
            )
        ).fetchone()
    assert facts is not None and facts["balance"] > 0
    assert (
        facts["claimed"] - facts["redeemed"] - facts["expired"] + facts["adjusted"]
        == (facts["balance"])
    ), facts
    results = (await client.get(f"/draws/{campaign['id']}/results", headers=admin)).json()
    gift = next(r for r in results["items"] if r["prize_kind"] == "gift")
    note = "SF-9 to 杭州市西湖区 1 号"
    fulfil = f"/draws/{campaign['id']}/results/{gift['id']}/fulfil"
    assert (await client.post(fulfil, headers=admin, json={"note": note})).status_code == 200
    async with member_client(app) as mc:
        copy = await mc.get("/members/me/export", headers=headers)
        assert copy.status_code == 200, copy.text
        assert note in [d["fulfil_note"] for d in copy.json()["draws"]]
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
    async with app.state.pool.connection() as conn:
        notes = await (
            await conn.execute("SELECT fulfil_note FROM draws WHERE member_id = %s", (member_id,))
        ).fetchall()
    assert note not in [r["fulfil_note"] for r in notes]


async def test_a_results_file_past_its_cap_is_refused_not_cut(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units,
    monkeypatch: Any,
) -> None:  # fmt: skip
    """A probe: the CSV read at most ``MAX_CSV`` draws with a bare LIMIT — a campaign with more
    got a file missing its newest draws, 200 and no word. As every export read whole, more is
    422 ``too_many_rows`` before the file starts. Shown with the cap lowered to 1, two draws."""
    from app.draws import service

    admin = await login("admin")
    body = campaign_body(goods["product_id"], [prize("Gift", "gift", 10, 1)])
    cid = (await new_campaign(client, admin, body))["id"]
    for serial in units.take(2):
        _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
        assert (r := await draw(app, headers, serial)).status_code == 201, r.text
    url, csv = f"/draws/{cid}/results", {"format": "csv"}
    monkeypatch.setattr(service, "MAX_CSV", 1)
    assert_error(await client.get(url, headers=admin, params=csv), 422, "too_many_rows")
    monkeypatch.setattr(service, "MAX_CSV", 2)  # exactly the cap: the whole file
    whole = await client.get(url, headers=admin, params=csv)
    assert whole.status_code == 200, whole.text
    assert len([line for line in whole.text.lstrip("\ufeff").splitlines() if line]) == 3


async def test_a_results_file_is_audited_with_its_filter_and_whether_phones_were_whole(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A probe: ``GET /draws/{id}/results?format=csv`` — up to 200,000 members' whole phones
    in one file — was the one export of members' data left out of the audit log. Now each file
    is audited ``export``/``draw_campaign`` with its outcome filter, its rows and whether the
    phones in it were whole; a HEAD (no file) is not."""
    admin, marketer = await login("admin"), await login("marketer")
    body = campaign_body(goods["product_id"], [prize("Gift", "gift", 10, 1)])
    cid = (await new_campaign(client, admin, body))["id"]
    (serial,) = units.take()
    _, headers, phone = await new_member(app, demo["BRAND-LUMI"])
    assert (r := await draw(app, headers, serial)).status_code == 201, r.text

    async def exports() -> list[dict[str, Any]]:
        async with app.state.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT actor_user, org_id, after FROM audit_log WHERE action = 'export' "
                    "AND entity = 'draw_campaign' AND entity_id = %s ORDER BY id",
                    (str(cid),),
                )
            ).fetchall()
        return [dict(r) for r in rows]

    url = f"/draws/{cid}/results"
    whole = await client.get(url, headers=admin, params={"format": "csv", "outcome": "won"})
    assert whole.status_code == 200 and phone in whole.text, whole.text
    masked = await client.get(url, headers=marketer, params={"format": "csv"})
    assert masked.status_code == 200 and phone not in masked.text, masked.text
    head = await client.head(url, headers=admin, params={"format": "csv"})
    assert head.status_code == 200
    assert (await client.get(url, headers=admin)).status_code == 200  # a page: no file
    rows = await exports()
    assert [r["after"] for r in rows] == [
        {"outcome": "won", "rows": 1, "whole_phones": True},
        {"outcome": None, "rows": 1, "whole_phones": False},
    ]
    assert {r["org_id"] for r in rows} == {demo["BRAND-LUMI"]}
    assert rows[0]["actor_user"] != rows[1]["actor_user"]


async def test_prizes_added_later_stop_at_the_campaigns_maximum_even_at_once(
    client: Any, login: Any, goods: dict[str, Any]
) -> None:
    """A campaign is made with at most 50 prizes, but ``POST /draws/{id}/prizes`` added any
    number (its view lists them unpaged, each draw round locks them all). Added later they stop
    at the same maximum — 422 ``too_many_prizes`` — also when added at once: five additions to a
    campaign of 48 prizes, two pass."""
    from app.draws.schemas import MAX_PRIZES

    admin = await login("admin")
    prizes = [prize(f"P{i}", quantity=1, weight=0) for i in range(MAX_PRIZES - 2)]
    body = campaign_body(goods["product_id"], prizes)
    cid = (await new_campaign(client, admin, body))["id"]
    url = f"/draws/{cid}/prizes"
    added = await asyncio.gather(
        *[client.post(url, headers=admin, json=prize(f"More {i}")) for i in range(5)]
    )
    assert sorted(a.status_code for a in added) == [201, 201, 422, 422, 422], added
    for refused in (a for a in added if a.status_code == 422):
        assert_error(refused, 422, "too_many_prizes")
    got = (await client.get(f"/draws/{cid}", headers=admin)).json()
    assert len(got["prizes"]) == MAX_PRIZES
    too_many = {**body, "prizes": [*prizes, *[prize(f"Q{i}") for i in range(3)]]}
    assert_error(await client.post("/draws", headers=admin, json=too_many), 400)  # at creation


async def _won(
    client: Any, headers: dict[str, str], app: Any, demo: Any, goods: dict[str, Any], serial: str
) -> tuple[int, int, int]:
    """A campaign of its own whose only prize is a gift, made with ``headers``, and a new member
    who drew it on ``serial``: (campaign id, draw id, member id)."""
    campaign = await new_campaign(
        client, headers, campaign_body(goods["product_id"], [prize("Parcel", "gift", 5, 1)])
    )
    member_id, member, _ = await new_member(app, demo["BRAND-LUMI"])
    won = await draw(app, member, serial)
    assert won.status_code == 201 and won.json()["prize"]["name"] == "Parcel", won.text
    results = (await client.get(f"/draws/{campaign['id']}/results", headers=headers)).json()
    (result,) = results["items"]
    return campaign["id"], result["id"], member_id


async def test_a_frozen_members_prize_waits_until_the_member_is_unfrozen(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], units: Units
) -> None:
    """A probe: member service froze a member (a suspected fraudster) and the gift the member had
    just won was still marked handed over (200): the parcel went out. 409 ``member_frozen``, as
    a frozen member's gift redemption answers, the prize left pending; handed over once the
    member is unfrozen."""
    admin = await login("admin")
    cid, draw_id, member_id = await _won(client, admin, app, demo, goods, units.take()[0])
    freeze = f"/members/{member_id}/freeze"
    frozen = await client.post(freeze, headers=admin, json={"reason": "fraud ring"})
    assert frozen.status_code == 200, frozen.text
    fulfil = f"/draws/{cid}/results/{draw_id}/fulfil"
    assert_error(
        await client.post(fulfil, headers=admin, json={"note": "SF-9"}), 409, "member_frozen"
    )
    results = (await client.get(f"/draws/{cid}/results", headers=admin)).json()
    assert results["items"][0]["fulfil_status"] == "pending", results
    thawed = await client.post(f"/members/{member_id}/unfreeze", headers=admin, json={})
    assert thawed.status_code == 200, thawed.text
    done = await client.post(fulfil, headers=admin, json={"note": "SF-9"})
    assert done.status_code == 200 and done.json()["fulfil_status"] == "fulfilled", done.text


async def test_a_campaign_and_a_prize_handed_over_through_an_api_key_name_its_maker(
    client: Any,
    login: Any,
    app: Any,
    demo: Any,
    goods: dict[str, Any],
    units: Units,
    conn: Any,
) -> None:
    """A probe: the brand's e-shop back end (an API key the admin made, ``draws.write``) made a
    campaign and marked its won gift shipped: ``created_by`` and ``fulfilled_by`` were null (the
    key has no user): made and handed over by nobody. Both name the key's maker now, as a
    gift redemption's fulfilment does."""
    key = await key_of(client, await login("admin"), ["draws.write"])
    cid, draw_id, _ = await _won(client, key, app, demo, goods, units.take()[0])
    done = await client.post(
        f"/draws/{cid}/results/{draw_id}/fulfil", headers=key, json={"note": "SF1234567890"}
    )
    assert done.status_code == 200, done.text
    row = await (
        await conn.execute(
            "SELECT c.created_by, d.fulfilled_by FROM draws d "
            "JOIN draw_campaigns c ON c.id = d.campaign_id WHERE d.id = %s",
            (draw_id,),
        )
    ).fetchone()
    admin_id = await user_id(conn, "admin")
    assert (row["created_by"], row["fulfilled_by"]) == (admin_id, admin_id), row


async def test_a_deactivated_brand_s_answer_page_links_to_no_draw(
    client: Any, login: Any, app: Any
) -> None:
    """A probe: the answer page of a genuine unit of a brand turned off still linked to its
    running draw, whose members are refused. No campaign of a brand turned off runs for the
    answer page (``running_for``)."""
    from app.draws.service import running_for

    t = await tenant_units(client, app, login, 2, shipped=True)
    body = campaign_body(t["product_id"], [prize("Tenant mug")], name="Tenant draw")
    await new_campaign(client, t["admin"], body)
    on, off = t["serials"]
    async with member_client(app) as phone:
        linked = await phone.post(f"/c/{on}", data={"pin": app.state.scheme.pin(on)})
        assert 'id="draw-link"' in linked.text, linked.text  # while the brand is active
        shut = await client.post(
            f"/orgs/{t['brand']['id']}/deactivate", headers=await login("platform")
        )
        assert shut.status_code == 200, shut.text
        answer = await phone.post(f"/c/{off}", data={"pin": app.state.scheme.pin(off)})
    assert answer.status_code == 200 and 'id="draw-link"' not in answer.text, answer.text
    async with app.state.pool.connection() as conn:
        assert (await running_for(conn, code_of(app, off))).campaign_id is None


# -- a campaign or a batch changed while a draw waits ---------------------------------------------


async def _tenant_draw(
    client: Any, app: Any, login: Any, size: int = 3, quantity: int = 10
) -> dict[str, Any]:
    """A brand of the test's own (``tenant_units``: no campaign of another test covers its
    units) with ``size`` shipped units, a running campaign covering them whose one gift
    (``quantity`` in stock) is always won, and a member of the brand (``member``)."""
    t = await tenant_units(client, app, login, size, shipped=True)
    body = campaign_body(t["product_id"], [prize("Mug", quantity=quantity)])
    t["campaign"] = await new_campaign(client, t["admin"], body)
    _, t["member"], _ = await new_member(app, t["brand"]["id"])
    return t


async def _drawn_while_unit_held(app: Any, t: dict[str, Any], serial: str, meanwhile: Any) -> Any:
    """The answer to ``t``'s member's draw of ``serial``, sent while another transaction holds
    the unit's row (as a points claim or a sale of it does); ``meanwhile()`` runs, and is
    answered, while the draw waits for the row."""
    return await answered_while_unit_held(
        app,
        serial,
        lambda: draw(app, t["member"], serial),
        meanwhile,
        "the draw never waited for the unit",
    )


async def _untouched(client: Any, app: Any, t: dict[str, Any]) -> None:
    """No draw on ``t``'s campaign, its stock whole (read as a deleted one's results are)."""
    cid = t["campaign"]["id"]
    results = await client.get(f"/draws/{cid}/results", headers=t["admin"])
    assert results.status_code == 200 and results.json()["total"] == 0, results.text
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT remaining FROM draw_prizes WHERE campaign_id = %s", (cid,))
        ).fetchone()
    assert row["remaining"] == 10, row


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("stop", "draw_not_running"),
        ("withdraw", "draw_not_covered"),
        ("narrow", "draw_not_covered"),
    ],
)
async def test_a_campaign_stopped_withdrawn_or_narrowed_while_a_draw_waits_has_the_last_word(
    client: Any, app: Any, login: Any, change: str, code: str
) -> None:
    """A probe: a draw whose round waited for its unit's row (a points claim or a sale of the
    unit holding it) while the marketer stopped the campaign (200), withdrew it (204) or took
    the product off it (``product_ids``) was drawn on it all the same once the row came free
    (201, the prize given, its stock taken): the round picked the campaign in the snapshot its
    statement took before the wait, and never locked it. The round picks it after the unit's
    lock now, locked ``FOR SHARE`` (READ COMMITTED reads the committed row): 422
    ``draw_not_running`` / ``draw_not_covered``, nothing drawn, no stock taken."""
    t = await _tenant_draw(client, app, login)
    url = f"/draws/{t['campaign']['id']}"
    other = await client.post(
        "/products",
        headers=t["admin"],
        json={"name": "Other", "product_no": f"OT-{secrets.token_hex(3)}", "published": True},
    )
    assert other.status_code == 201, other.text

    async def meanwhile() -> None:
        if change == "withdraw":
            gone = await client.delete(url, headers=t["admin"])
            assert gone.status_code == 204, gone.text
            return
        body = {"status": "stopped"} if change == "stop" else {"product_ids": [other.json()["id"]]}
        patched = await client.patch(url, headers=t["admin"], json=body)
        assert patched.status_code == 200, patched.text

    answer = await _drawn_while_unit_held(app, t, t["serials"][0], meanwhile)
    assert_error(answer, 422, code)
    await _untouched(client, app, t)


async def test_a_draw_waits_for_a_campaign_change_under_way_and_reads_it(
    client: Any, app: Any, login: Any
) -> None:
    """The same with the stop under way when the round reaches the campaign (its transaction
    holding the row ``FOR UPDATE``, as ``PATCH /draws/{id}`` does, not committed yet): the round
    waits for it (the draw's foreign key alone waited, then drew on the stopped campaign) and,
    once it commits, refuses the draw, 422 ``draw_not_running``."""
    t = await _tenant_draw(client, app, login)
    async with app.state.pool.connection() as patch, app.state.pool.connection() as watch:
        await patch.execute(
            "SELECT 1 FROM draw_campaigns WHERE id = %s FOR UPDATE", (t["campaign"]["id"],)
        )
        await patch.execute(
            "UPDATE draw_campaigns SET status = 'stopped' WHERE id = %s", (t["campaign"]["id"],)
        )
        drawing = asyncio.ensure_future(draw(app, t["member"], t["serials"][0]))
        assert await lock_waiters(watch, 1), "the draw never waited for the campaign"
        await patch.commit()
    assert_error(await drawing, 422, "draw_not_running")
    await _untouched(client, app, t)


async def test_a_draw_whose_campaign_stopped_while_it_waited_goes_to_the_next_one(
    client: Any, app: Any, login: Any
) -> None:
    """Of two campaigns covering the unit the earliest-starting one draws it; stopped while the
    draw waits for the unit's row, the draw goes to the other one (201), the stopped one's
    stock untouched."""
    t = await _tenant_draw(client, app, login)
    first = t["campaign"]
    later = {"starts_at": (datetime.now(UTC) - timedelta(minutes=30)).isoformat()}
    body = campaign_body(t["product_id"], [prize("Cap")], **later)
    second = await new_campaign(client, t["admin"], body)

    async def stop() -> None:
        stopped = await client.patch(
            f"/draws/{first['id']}", headers=t["admin"], json={"status": "stopped"}
        )
        assert stopped.status_code == 200, stopped.text

    answer = await _drawn_while_unit_held(app, t, t["serials"][0], stop)
    assert answer.status_code == 201, answer.text
    assert (answer.json()["campaign_id"], answer.json()["prize"]["name"]) == (second["id"], "Cap")
    await _untouched(client, app, t)


async def test_draws_and_campaign_edits_at_once_never_deadlock(
    client: Any, app: Any, login: Any
) -> None:
    """Draw rounds lock the unit, then the campaign ``FOR SHARE``, then its prizes; the staff's
    campaign changes lock the campaign alone (``FOR UPDATE``), a prize's change the prize alone:
    twelve draws at once with edits of the campaign, a prize added and a prize's quantity
    changed all answer (no deadlock, no 5xx), and the stock adds up."""
    t = await _tenant_draw(client, app, login, 12, quantity=20)
    cid, admin = t["campaign"]["id"], t["admin"]
    pid = t["campaign"]["prizes"][0]["id"]
    edits = [
        client.patch(f"/draws/{cid}", headers=admin, json={"name": f"Renamed {i}"})
        for i in range(4)
    ]
    edits.append(client.post(f"/draws/{cid}/prizes", headers=admin, json=prize("Pen", weight=0)))
    edits.append(client.patch(f"/draws/{cid}/prizes/{pid}", headers=admin, json={"quantity": 25}))
    answers = await asyncio.gather(*[draw(app, t["member"], s) for s in t["serials"]], *edits)
    assert [a.status_code for a in answers[:12]] == [201] * 12, [a.text for a in answers[:12]]
    assert all(a.status_code in (200, 201) for a in answers[12:]), [a.text for a in answers[12:]]
    got = (await client.get(f"/draws/{cid}", headers=admin)).json()
    mug = next(p for p in got["prizes"] if p["id"] == pid)
    assert (mug["quantity"], mug["remaining"], got["winners"]) == (25, 13, 12), got


async def test_a_batch_voided_while_a_draw_waits_for_its_sold_unit_is_refused(
    client: Any, app: Any, login: Any
) -> None:
    """A probe: a void voids a batch's active units under their locks but leaves a sold unit's
    row alone, and the round read the batch in the snapshot its statement took before waiting
    for the unit: a draw that waited for a sold unit's row (a points claim of it in flight)
    while the batch was voided (200) was drawn on the void code, its prize given. The round asks
    again after the unit's lock, with a fresh snapshot (migration 0143): 422 ``not_genuine`` /
    ``void``, as ``/v1/verify`` answers it, no stock taken."""
    t = await _tenant_draw(client, app, login)
    serial = t["serials"][0]
    code = code_of(app, serial)
    async with app.state.pool.connection() as conn:
        was = await (
            await conn.execute(
                "SELECT status, disposition, sold_at FROM unit_state WHERE code = %s", (code,)
            )
        ).fetchone()
        await conn.execute(
            "UPDATE unit_state SET status = 'sold', disposition = 'retail_sold', sold_at = now() "
            "WHERE code = %s",
            (code,),
        )
    try:
        void = voiding(client, code >> 32, t["admin"], "leaked labels")
        answer = await _drawn_while_unit_held(app, t, serial, void)
        refused = assert_error(answer, 422, "not_genuine")
        assert refused["details"]["reason"] == "void", refused
        await _untouched(client, app, t)
    finally:  # shipped, not sold, as the stock counts it (a whole-database recount reads it)
        async with app.state.pool.connection() as conn:
            await conn.execute(
                "UPDATE unit_state SET status = %s, disposition = %s, sold_at = %s WHERE code = %s",
                (was["status"], was["disposition"], was["sold_at"], code),
            )
