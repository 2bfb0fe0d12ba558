"""Points (K2, M2): the brand's rules, claims by scan + PIN with the verification's answers and
lockout, once per code ever (the race over HTTP and across connections), the claim as a
verification record and an event, the ledger and ``tracecode points check``."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis as redis_sync

from app.verify import messages, records
from tests.h5_support import new_product
from tests.helpers import acting, activate, assert_error, code_of, issue_units, key_of
from tests.points_support import (
    claim_body,
    member_client,
    new_member,
    set_rule,
    shipped_goods,
)
from tests.race_support import answered_while_unit_held, lock_waiters, voiding
from tests.rebates_support import store_goods, user_id
from tests.servers import granian_server
from tests.test_inspect import forge
from tests.test_logistics import deep_tree, via_branch  # noqa: F401 (fixtures)
from tests.test_members_admin import _staff

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
async def goods(client: Any, login: Any, app: Any, demo: Any) -> AsyncIterator[dict[str, Any]]:
    """Shipped goods, and the rules of their product: 10 points, 25 through AGENT-ZJ — the
    agent's rule deleted after the module (it outranks the product's rule that later tests of
    the worker set for the demo product: their claims through AGENT-ZJ earned 25)."""
    goods = await shipped_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 10)
    zj = await set_rule(client, admin, goods["product_id"], 25, demo["AGENT-ZJ"])
    yield goods
    gone = await client.delete(f"/points/rules/{zj['id']}", headers=await login("admin"))
    assert gone.status_code in (204, 404), gone.text


async def test_rules_are_the_brands_and_scoped(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    admin = await login("admin")
    product = goods["product_id"]
    listed = await client.get("/points/rules", headers=admin, params={"product_id": product})
    assert listed.status_code == 200, listed.text
    rules = {(r["agent_id"], r["points"]) for r in listed.json()["items"]}
    # the demo's agents only: other tests rule this product at agents of their own (deep_tree)
    demo_agents = (None, demo["AGENT-ZJ"], demo["AGENT-GD"])
    assert {r for r in rules if r[0] in demo_agents} == {(None, 10), (demo["AGENT-ZJ"], 25)}
    # a PUT again replaces the points (one rule per product and agent)
    gd = await set_rule(client, admin, product, 7, demo["AGENT-GD"])
    again = await set_rule(client, admin, product, 8, demo["AGENT-GD"])
    assert again["id"] == gd["id"] and again["points"] == 8
    assert (await client.delete(f"/points/rules/{gd['id']}", headers=admin)).status_code == 204
    assert_error(await client.delete(f"/points/rules/{gd['id']}", headers=admin), 404)
    # bad paths: no permission (agent admin: brand-only), unknown product / agent, bad points
    for user in ("agent_admin", "store_clerk", "analyst"):
        headers = await login(user)
        body = {"product_id": product, "points": 5}
        assert_error(await client.put("/points/rules", headers=headers, json=body), 403)
        assert_error(await client.get("/points/rules", headers=headers), 403)
    for body, code in [
        ({"product_id": 999_999_999, "points": 5}, "unknown_product"),
        ({"product_id": product, "agent_id": 999_999_999, "points": 5}, "unknown_org"),
        ({"product_id": product, "agent_id": demo["BRAND-LUMI"], "points": 5}, "unknown_org"),
    ]:
        assert_error(await client.put("/points/rules", headers=admin, json=body), 422, code)
    for points in (-1, 1.5, "5", 10_000_001):
        body = {"product_id": product, "points": points}
        assert_error(await client.put("/points/rules", headers=admin, json=body), 400)


async def test_a_claim_credits_the_rule_of_the_channel_agent(
    client: Any, app: Any, demo: Any, goods: dict[str, Any], settings: Any
) -> None:
    scheme = app.state.scheme
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    shipped, unshipped = goods["units"][0], goods["units"][25]
    async with member_client(app) as mc:
        first = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(scheme, shipped, "c-1")
        )
        assert first.status_code == 201, first.text
        body = first.json()
        assert (body["points"], body["balance"], body["agent_id"]) == (25, 25, demo["AGENT-ZJ"])
        assert body["verification"]["result"] == "genuine"
        assert body["product_id"] == goods["product_id"] and body["serial"] == shipped
        # the QR content works too; a probe (SPEC B4: rewards only on codes shipped through
        # the channel): a unit never shipped earned the product's default points — as would a
        # code from a leaked print file on a fake; it earns none
        qr = f"http://127.0.0.1:8000/c/{unshipped}"
        second = await mc.post(
            "/members/me/claims",
            headers=headers,
            json={**claim_body(scheme, unshipped, "c-2"), "serial": qr},
        )
        assert_error(second, 422, "not_shipped")
        # a retry with the same client id answers the first claim, crediting nothing again
        replay = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(scheme, shipped, "c-1")
        )
        assert replay.status_code == 200, replay.text
        assert replay.json()["claim_id"] == body["claim_id"] and replay.json()["balance"] == 25
        # the same code again under another client id, or by another member: already claimed
        again = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(scheme, shipped, "c-3")
        )
        assert_error(again, 409, "already_claimed")
        _, other, _ = await new_member(app, demo["BRAND-LUMI"])
        assert_error(
            await mc.post("/members/me/claims", headers=other, json=claim_body(scheme, shipped)),
            409,
            "already_claimed",
        )
        # a client id already used for another code
        reused = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(scheme, goods["units"][1], "c-1")
        )
        assert_error(reused, 409, "client_id_reused")
        history = await mc.get("/members/me/points", headers=headers)
        assert history.status_code == 200, history.text
        assert history.json()["balance"] == 25
        entries = history.json()["items"]
        assert [(e["kind"], e["points"]) for e in entries] == [("claim", 25)]
        assert entries[0]["product"]["id"] == goods["product_id"]
    # the claim is an event (ObjectEvent OBSERVE claiming) and a verification with the member
    async with app.state.pool.connection() as conn:
        events = await (
            await conn.execute(
                """SELECT e.event_type, e.action, e.biz_step, e.details FROM event_codes ec
                   JOIN events e ON e.id = ec.event_id
                   WHERE ec.code = %s AND ec.kind = 'u' AND e.biz_step = 'claiming'""",
                (code_of(app, shipped),),
            )
        ).fetchall()
        assert len(events) == 1
        assert (events[0]["event_type"], events[0]["action"]) == ("ObjectEvent", "OBSERVE")
        assert events[0]["details"]["member_id"] == member_id
        assert events[0]["details"]["points"] == 25
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):
            pass
        stored = pg.execute(
            "SELECT member_id, result, client_id FROM verifications WHERE code_id = %s ORDER BY at",
            (code_of(app, shipped),),
        ).fetchall()
    assert stored[0] == (member_id, "genuine", "c-1")
    assert {row[0] for row in stored} >= {member_id}


async def test_refusals_are_the_verifications(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    scheme = app.state.scheme
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    serial = goods["units"][2]
    async with member_client(app) as mc:

        async def claim(body: dict[str, Any], who: dict[str, str] = headers) -> httpx.Response:
            return await mc.post("/members/me/claims", headers=who, json=body)

        # forged and malformed: not genuine, as /v1/verify says
        forged = assert_error(
            await claim({**claim_body(scheme, serial), "serial": forge(serial)}), 422, "not_genuine"
        )
        assert forged["details"]["reason"] == "forged"
        body = {**claim_body(scheme, serial), "serial": "not-a-serial"}
        assert assert_error(await claim(body), 422, "not_genuine")["details"]["reason"] in (
            "malformed",
            "forged",
        )
        # issued, never activated
        batch_no, _ = await issue_units(client, login, demo, 3)
        idle = scheme.serial(batch_no, 0)
        refused = assert_error(await claim(claim_body(scheme, idle)), 422, "not_genuine")
        assert refused["details"]["reason"] == "not_activated"
        # wrong PINs count against the code's lockout, shared with /v1/verify
        wrong = {
            **claim_body(scheme, serial),
            "pin": "000000" if scheme.pin(serial) != "000000" else "111111",
        }
        first = assert_error(await claim(wrong), 422, "wrong_pin")
        assert first["details"]["pin_attempts_left"] == 4
        verified = await mc.post("/v1/verify", json={"serial": serial, "pin": wrong["pin"]})
        assert verified.json()["pin_attempts_left"] == 3
        for _ in range(2):
            assert_error(await claim(wrong), 422, "wrong_pin")
        locked = await claim(wrong)
        assert_error(locked, 429, "locked")
        assert int(locked.headers["Retry-After"]) > 0
        # locked even with the right PIN, as verification is
        assert_error(await claim(claim_body(scheme, serial)), 429, "locked")
        assert (await mc.post("/v1/verify", json={"serial": serial})).json()["result"] == "locked"
        # a frozen member, no token, a staff token, an expired or foreign token
        _, frozen, _ = await new_member(app, demo["BRAND-LUMI"], status="frozen")
        assert_error(
            await claim(claim_body(scheme, goods["units"][3]), frozen), 403, "member_frozen"
        )
        assert_error(await claim(claim_body(scheme, goods["units"][3]), {}), 401)
        assert_error(await claim(claim_body(scheme, goods["units"][3]), await login("admin")), 401)
        # another brand's member, a product without points
        platform = await login("platform")
        tag = secrets.token_hex(3).upper()
        brand = await client.post(
            "/orgs",
            headers=platform,
            json={"kind": "brand", "name": f"B {tag}", "erp_code": f"PB-{tag}"},
        )
        assert brand.status_code == 201, brand.text
        _, stranger, _ = await new_member(app, brand.json()["id"])
        assert_error(
            await claim(claim_body(scheme, goods["units"][4]), stranger), 422, "other_brand"
        )
        # a product of its own: a demo product's rule is another test's to set (the lipsticks
        # earn points in tests.test_draws_owners, which may run first on this worker)
        plain = await new_product(client, login, name="No points")
        lipstick_batch, lipstick = await issue_units(
            client, login, demo, 2, product_no=plain["product_no"]
        )
        serials = [scheme.serial(lipstick_batch, i) for i in range(2)]
        await activate(client, login, serials, lipstick, line="PT1")
        assert_error(await claim(claim_body(scheme, serials[0])), 422, "no_points")
        # rule of 0 points: nothing either
        await set_rule(client, await login("admin"), lipstick, 0)
        assert_error(await claim(claim_body(scheme, serials[0])), 422, "no_points")
        # voided batch
        void = await client.post(
            f"/batches/{lipstick_batch}/void",
            headers=await login("planner"),
            json={"reason": "test"},
        )
        assert void.status_code == 200, void.text
        voided = assert_error(await claim(claim_body(scheme, serials[1])), 422, "not_genuine")
        assert voided["details"]["reason"] == "void"
        # malformed bodies
        for bad in (
            {"serial": serial, "client_id": "x"},
            {"serial": serial, "pin": "12ab", "client_id": "x"},
            {**claim_body(scheme, serial), "client_id": ""},
            {**claim_body(scheme, serial), "client_id": "a b"},
            {**claim_body(scheme, serial), "extra": 1},
        ):
            assert_error(await claim(bad), 400)
        assert_error(
            await claim({**claim_body(scheme, serial), "serial": "AB\u0000C"}),
            400,
            "invalid_character",
        )


async def test_one_code_credited_once_across_connections(
    app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """The unique code, not the process: 20 rounds on 20 connections of their own race for one
    code (each with other members' claims of it); exactly one claim is credited."""
    from datetime import UTC, datetime

    from app.claims import Pending
    from app.members import points

    serial = goods["units"][5]
    code = code_of(app, serial)
    members = [await new_member(app, demo["BRAND-LUMI"]) for _ in range(20)]
    url = app.state.pool.conninfo

    async def one(member_id: int) -> int:
        from psycopg.rows import dict_row

        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
            pending: Pending[Any] = Pending(
                member_id,
                demo["BRAND-LUMI"],
                None,
                code,
                serial,
                f"race-{member_id}",
                datetime.now(UTC),
            )
            return len(await points.credit(conn, [pending]))

    credited = await asyncio.gather(*[one(m[0]) for m in members])
    assert sum(credited) == 1
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                """SELECT count(*) AS claims, (SELECT count(*) FROM points_ledger l
                   JOIN point_claims c ON c.id = l.claim_id WHERE c.code_id = %s) AS entries
                   FROM point_claims WHERE code_id = %s""",
                (code, code),
            )
        ).fetchone()
    assert (rows["claims"], rows["entries"]) == (1, 1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under granian with TWO worker processes (claims race across processes), the
    session's database, a Redis namespace of its own and no practical rate limit."""
    env = {
        "TRACECODE_REDIS_NAMESPACE": os.environ["TRACECODE_REDIS_NAMESPACE"] + "pt",
        "TRACECODE_VERIFY_RATE_LIMIT": "1000000",
    }
    with granian_server(tmp_path_factory.mktemp("points"), env, workers=2) as running:
        yield running.base


async def test_a_thousand_concurrent_claims_of_one_code_credit_one(
    app: Any, demo: Any, goods: dict[str, Any], server: str
) -> None:
    """1,000 claims of one code at once over HTTP, from 100 members, to two server processes:
    exactly one 201; every other answer 409 already_claimed (or 200: a member's own retry would
    be one, but every client id here is new); one claim row, one ledger row, one event."""
    scheme = app.state.scheme
    serial = goods["units"][6]
    members = [await new_member(app, demo["BRAND-LUMI"]) for _ in range(100)]
    bodies = [
        (headers, claim_body(scheme, serial, f"r{i}-{n}"))
        for i, (_, headers, _) in enumerate(members)
        for n in range(10)
    ]

    async def send(part: list[tuple[dict[str, str], dict[str, Any]]]) -> list[httpx.Response]:
        # 200 connections in all, as ten clients of 20: httpcore's pool matches every waiting
        # request against every connection at each turn, and one pool of 200 for 1,000 requests
        # kept the test's own process, not the servers, busy for half a minute
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
        async with httpx.AsyncClient(base_url=server, timeout=120, limits=limits) as http:
            return await asyncio.gather(
                *[http.post("/members/me/claims", headers=h, json=b) for h, b in part]
            )

    answers = [
        a for part in await asyncio.gather(*[send(bodies[i::10]) for i in range(10)]) for a in part
    ]
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 1, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(409) == 999
    assert all(
        a.json()["error"]["code"] == "already_claimed" for a in answers if a.status_code == 409
    )
    winner = next(a.json() for a in answers if a.status_code == 201)
    code = code_of(app, serial)
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """SELECT (SELECT count(*) FROM point_claims WHERE code_id = %(c)s) AS claims,
                          (SELECT count(*) FROM points_ledger l JOIN point_claims pc
                             ON pc.id = l.claim_id WHERE pc.code_id = %(c)s) AS entries,
                          (SELECT count(*) FROM event_codes ec JOIN events e ON e.id = ec.event_id
                             WHERE ec.code = %(c)s AND e.biz_step = 'claiming') AS events,
                          (SELECT coalesce(sum(balance), 0) FROM point_balances
                             WHERE member_id = ANY(%(m)s)) AS credited""",
                {"c": code, "m": [m[0] for m in members]},
            )
        ).fetchone()
    assert (row["claims"], row["entries"], row["events"]) == (1, 1, 1)
    assert row["credited"] == winner["points"] == 25


async def test_points_check_command(app: Any, demo: Any, goods: dict[str, Any]) -> None:
    """``tracecode points check`` exits 0 while every balance equals its ledger, 1 (naming the
    member) when one does not."""
    command = [sys.executable, "-m", "app.cli", "points", "check"]
    ok = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    member_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO point_balances (member_id, balance) VALUES (%s, 3)", (member_id,)
        )
    try:
        bad = await asyncio.to_thread(
            subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert f"member {member_id}" in bad.stdout
    finally:
        async with app.state.pool.connection() as conn:
            await conn.execute("DELETE FROM point_balances WHERE member_id = %s", (member_id,))
    # the ledger itself cannot be rewritten
    async with app.state.pool.connection() as conn:
        with pytest.raises(psycopg.errors.RaiseException):
            await conn.execute("UPDATE points_ledger SET points = points + 1")
        await conn.rollback()
        with pytest.raises(psycopg.errors.RaiseException):
            await conn.execute("DELETE FROM points_ledger")
        await conn.rollback()


async def test_a_frozen_member_s_retry_answers_the_first_claim(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a claim sent again with its client id after the member was frozen answered 403
    ``member_frozen``, so a client that lost the first answer never learnt it was credited."""
    goods = await shipped_goods(client, login, app, demo)
    await set_rule(client, await login("admin"), goods["product_id"], 10)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    scheme = app.state.scheme
    body = claim_body(scheme, goods["units"][0])
    async with member_client(app) as mc:
        first = await mc.post("/members/me/claims", headers=headers, json=body)
        assert first.status_code == 201, first.text
        async with app.state.pool.connection() as conn:
            await conn.execute("UPDATE members SET status = 'frozen' WHERE id = %s", (member_id,))
        again = await mc.post("/members/me/claims", headers=headers, json=body)
        assert again.status_code == 200, again.text
        assert again.json()["claim_id"] == first.json()["claim_id"]
        other = claim_body(scheme, goods["units"][1])
        refused = await mc.post("/members/me/claims", headers=headers, json=other)
        assert_error(refused, 403, "member_frozen")
        reused = {**other, "client_id": body["client_id"]}  # the first one's id, another code
        assert_error(
            await mc.post("/members/me/claims", headers=headers, json=reused),
            403,
            "member_frozen",
        )
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM point_claims WHERE member_id = %s", (member_id,)
            )
        ).fetchone()
    assert row["n"] == 1


async def test_a_frozen_member_reusing_a_client_id_has_no_pin_checked(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a frozen member who once claimed under client id C sent claims of OTHER codes
    under C and they were verified: a guessed PIN read 422 ``wrong_pin`` (counted against the
    code's lockout, recorded in the member's scan history), and a right PIN was refused 403
    only after its verification, so the unit's buyer then read "queried 2 times". Only a retry
    of the claim made under C (same code) answers the first; anything else is 403
    ``member_frozen`` before anything is verified."""
    goods = await shipped_goods(client, login, app, demo)
    await set_rule(client, await login("admin"), goods["product_id"], 10)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    scheme = app.state.scheme
    body = claim_body(scheme, goods["units"][0])
    target = goods["units"][5]
    async with member_client(app) as mc:
        first = await mc.post("/members/me/claims", headers=headers, json=body)
        assert first.status_code == 201, first.text
        async with app.state.pool.connection() as conn:
            await conn.execute("UPDATE members SET status = 'frozen' WHERE id = %s", (member_id,))
        right = scheme.pin(target)
        wrong = "000000" if right != "000000" else "111111"
        for pin in (wrong, right):
            guess = {"serial": target, "pin": pin, "client_id": body["client_id"]}
            answer = await mc.post("/members/me/claims", headers=headers, json=guess)
            assert_error(answer, 403, "member_frozen")
        again = await mc.post("/members/me/claims", headers=headers, json=body)
        assert again.status_code == 200, again.text  # the retry of its claim: answered
    async with member_client(app) as buyer:
        scan = await buyer.post("/v1/verify", json={"serial": target, "pin": scheme.pin(target)})
        assert scan.status_code == 200, scan.text
        assert (scan.json()["reason"], scan.json()["queries"]) == ("first_query", 1), scan.text


async def test_a_claim_refused_in_a_round_does_not_cost_the_other_claimant_the_code(
    client: Any, login: Any, app: Any, demo: Any, monkeypatch: Any
) -> None:
    """A probe: two members claim one code at once (exactly one must win). A round sends only
    the first claim of each code to ``credit`` and explained the second afterwards; when the
    first was not credited — its member frozen while the claim was in flight (as for another
    brand's member, or a reused client id) — nothing had credited the code and the second,
    valid claim was 409 ``claim_conflict``: nobody won the code. The second claim goes to the
    next round now. Made deterministic by holding a first round (a third member's claim) at
    ``credit`` while both claims queue for the next round."""
    from tests.rebates_support import store_goods

    goods = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 10)
    scheme, claimer = app.state.scheme, app.state.claimer
    blocker_serial, serial = goods["units"][11], goods["units"][12]
    _, blocker, _ = await new_member(app, demo["BRAND-LUMI"])
    first_id, first, _ = await new_member(app, demo["BRAND-LUMI"])
    second_id, second, _ = await new_member(app, demo["BRAND-LUMI"])

    entered, gate = asyncio.Event(), asyncio.Event()
    original = claimer.credit
    calls = 0

    async def held_credit(conn: Any, group: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the blocker's round waits here, holding no lock
            entered.set()
            await gate.wait()
        return await original(conn, group)

    monkeypatch.setattr(claimer, "credit", held_credit)

    async def waiting(n: int) -> None:
        for _ in range(400):
            if len(claimer._waiting) >= n:
                return
            await asyncio.sleep(0.025)
        raise AssertionError("the claim never queued")

    async with member_client(app) as mc:

        def post(headers: dict[str, str], unit: str) -> Any:
            return asyncio.create_task(
                mc.post("/members/me/claims", headers=headers, json=claim_body(scheme, unit))
            )

        held = post(blocker, blocker_serial)
        await asyncio.wait_for(entered.wait(), 20)
        a = post(first, serial)
        await waiting(1)
        b = post(second, serial)
        await waiting(2)
        frozen = await client.post(
            f"/members/{first_id}/freeze", headers=admin, json={"reason": "probe"}
        )
        assert frozen.status_code == 200, frozen.text
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(held, a, b), 30)
    assert answers[0].status_code == 201, answers[0].text
    assert_error(answers[1], 403, "member_frozen")
    # the valid claimant of the code wins it
    assert answers[2].status_code == 201, answers[2].text
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT member_id FROM point_claims WHERE member_id IN (%s, %s)",
                (first_id, second_id),
            )
        ).fetchall()
    assert [r["member_id"] for r in row] == [second_id]


async def test_a_points_claim_right_after_a_void_is_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a void voids only a batch's ``active`` units, and a unit sold at the till keeps
    ``status = 'sold'``; the points round (``u.status IN ('active', 'sold')``) never looked at
    the batch, and the verification read it from the verifier's per-process cache
    (``BATCH_TTL``, 5 s), which the void did not clear: a member's claim of a sold unit in the
    seconds after the void (or on any other API process) was credited — points only on good
    codes (SPEC B4). Refused now, 422 ``not_genuine`` / ``void``: this process's verification
    reads the void at once, and the round itself checks the batch (a process whose cache still
    calls the batch live), in the claim's language (it was always Chinese)."""
    goods = await store_goods(client, login, app, demo)
    admin, clerk = await login("admin"), await login("store_clerk")
    planner, scheme, batch_no = await login("planner"), app.state.scheme, goods["batch_no"]
    await set_rule(client, admin, goods["product_id"], 10)
    sold = await client.post("/sales", headers=clerk, json={"codes": goods["units"][:2]})
    assert sold.status_code == 201, sold.text
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        assert (await mc.post("/v1/verify", json={"serial": goods["units"][5]})).status_code == 200
        live = app.state.verifier._batches[batch_no]
        void = await client.post(
            f"/batches/{batch_no}/void", headers=planner, json={"reason": "leaked labels"}
        )
        assert void.status_code == 200, void.text
        here = await mc.post(
            "/members/me/claims", headers=member, json=claim_body(scheme, goods["units"][0])
        )
        # another API process's verifier: the batch still live in its cache
        app.state.verifier._batches[batch_no] = (time.monotonic(), live[1])
        elsewhere = await mc.post(  # refused by the round, in the claim's language
            "/members/me/claims",
            headers=member,
            json=claim_body(scheme, goods["units"][1], lang="en"),
        )
    for claim in (here, elsewhere):
        refused = assert_error(claim, 422, "not_genuine")
        assert refused["details"]["reason"] == "void", claim.text
    english = assert_error(elsewhere, 422, "not_genuine")["message"]
    assert english == messages.text("void", "en") != messages.text("void", "zh")


async def test_a_points_claim_racing_a_void_waits_for_it_and_is_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe (the void's other side): a claim of an active unit verified while the void runs
    reaches its round as the void holds the batch's units; the round waits for them and, once
    the void commits, reads them again (void): no points, 422 ``not_genuine`` / ``void`` (not
    ``not_claimable``: as the verification answers a void code)."""
    from app.codes.service import void_batch

    goods = await store_goods(client, login, app, demo)
    await set_rule(client, await login("admin"), goods["product_id"], 10)
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    scheme = app.state.scheme
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        planner = await acting(holder, "planner")
        await void_batch(holder, planner, goods["batch_no"], "leaked labels")  # not committed
        async with member_client(app) as mc:
            claiming = asyncio.ensure_future(
                mc.post(
                    "/members/me/claims", headers=member, json=claim_body(scheme, goods["units"][3])
                )
            )
            assert await lock_waiters(watch, 1), "the claim's round should wait for the void"
            await holder.commit()
            claim = await claiming
    refused = assert_error(claim, 422, "not_genuine")
    assert refused["details"]["reason"] == "void", claim.text


async def test_a_batch_voided_while_a_points_claim_waits_for_its_sold_unit_is_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a void voids a batch's active units under their locks but leaves a sold unit's
    row alone, and the round read the batch in the snapshot its statement took before waiting
    for the unit: a claim of a sold unit whose round waited for the unit's row (a draw, a return
    or another claim of it in flight) while the batch was voided (200) was credited on the void
    code. The round asks again after the unit's lock, with a fresh snapshot (migration 0143):
    422 ``not_genuine`` / ``void``, no claim, no points."""
    goods = await store_goods(client, login, app, demo)
    clerk, planner, scheme = await login("store_clerk"), await login("planner"), app.state.scheme
    await set_rule(client, await login("admin"), goods["product_id"], 10)
    serial = goods["units"][0]
    sold = await client.post("/sales", headers=clerk, json={"codes": [serial]})
    assert sold.status_code == 201, sold.text
    member_id, member, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        claim = await answered_while_unit_held(
            app,
            serial,
            lambda: mc.post("/members/me/claims", headers=member, json=claim_body(scheme, serial)),
            voiding(client, goods["batch_no"], planner, "leaked"),
            "the claim's round should wait for the unit",
        )
    refused = assert_error(claim, 422, "not_genuine")
    assert refused["details"]["reason"] == "void", claim.text
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT 1 FROM point_claims WHERE member_id = %s UNION ALL "
                "SELECT 1 FROM points_ledger WHERE member_id = %s",
                (member_id, member_id),
            )
        ).fetchall()
    assert rows == [], rows


async def test_staff_below_the_brand_do_not_read_the_brands_points_rules(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the brand admin gives an agent's user a role holding ``points.rules`` (probe F's set-up).
    That user cannot set or delete a rule (403 ``brand_staff_only``) but ``GET /points/rules``
    answers 200 with every rule of the brand, the overrides of every other agent included
    (what the brand pays through each competitor channel). README (Points): rules are
    "``points.rules``, brand staff"; adjustments are "403 ``brand_staff_only`` below the brand,
    as for rules and gifts"; the rebates' rules list does refuse it (``app.rebates.rules
    .list_rules``). Should: 403 ``brand_staff_only`` for the list as for the writes."""
    admin = await login("admin")
    async with app.state.pool.connection() as conn:
        product = await (
            await conn.execute(
                "SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id "
                "WHERE o.path LIKE %s ORDER BY p.id LIMIT 1",
                (f"/{demo['BRAND-LUMI']}/%",),
            )
        ).fetchone()
    # another agent's price: deleted after (it outranked later tests' rules of the product)
    gd = await set_rule(client, admin, product["id"], 7, demo["AGENT-GD"])
    try:
        role = await client.post(
            "/roles",
            headers=admin,
            json={"name": f"pr_reader_{secrets.token_hex(3)}", "permissions": ["points.rules"]},
        )
        assert role.status_code == 201, role.text
        below = await _staff(client, admin, demo["AGENT-ZJ"], [role.json()["name"]])
        assert_error(
            await client.put("/points/rules", headers=below, json={"product_id": 1, "points": 3}),
            403,
            "brand_staff_only",
        )
        listed = await client.get("/points/rules", headers=below)
        assert_error(listed, 403, "brand_staff_only")
    finally:
        gone = await client.delete(f"/points/rules/{gd['id']}", headers=admin)
        assert gone.status_code == 204, gone.text


async def test_a_points_rule_change_keeps_the_old_points_in_the_audit_row(
    client: Any, login: Any
) -> None:
    """A probe: ``PUT /points/rules`` changing a product's points from 5 to 8 wrote an
    ``update`` row of ``point_rule`` with ``before: null``: the log could not tell what the rule
    had been (a rebate rule's change kept it). ``before`` is the rule as it was; the same points
    again change nothing and write no row (a form saved unchanged)."""
    admin = await login("admin")
    tag = secrets.token_hex(3)
    product = await client.post(
        "/products", headers=admin, json={"product_no": f"PR{tag}", "name": f"rule {tag}"}
    )
    assert product.status_code == 201, product.text
    pid = product.json()["id"]
    made = await set_rule(client, admin, pid, 5)
    assert (await set_rule(client, admin, pid, 8))["id"] == made["id"]
    assert (await set_rule(client, admin, pid, 8))["points"] == 8
    shown = await client.get(
        "/audit", headers=admin, params={"entity": "point_rule", "entity_id": made["id"]}
    )
    assert shown.status_code == 200, shown.text
    rows = [(r["action"], r["before"], r["after"]) for r in shown.json()["items"]]
    assert [
        (action, (before or {}).get("points"), after["points"]) for action, before, after in rows
    ] == [
        ("update", 5, 8),
        ("create", None, 5),
    ]


async def test_an_adjustment_reason_of_blanks_is_refused(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: README, adjustments and expiries are ledger entries "with a reason", read by
    staff in ``GET /members/{id}/points``. A reason of blanks only (``"   "``, an ideographic
    space) was accepted (201), and the ledger being append-only the entry stayed unexplained
    for ever. ``AdjustmentIn.reason`` is now the settlement's ``Reason`` (not blank): 400
    ``validation_failed`` and no ledger row."""
    admin = await login("admin")
    member_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
    for reason in ("   ", "\u3000"):
        made = await client.post(
            "/points/adjustments",
            headers=admin,
            json={
                "member_id": member_id,
                "points": 5,
                "reason": reason,
                "client_id": secrets.token_hex(8),
            },
        )
        assert_error(made, 400, "validation_failed")
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM points_ledger WHERE member_id = %s", (member_id,)
            )
        ).fetchone()
    assert row["n"] == 0


async def test_an_adjustment_a_rule_and_a_gift_made_through_an_api_key_name_its_maker(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: the CRM (an API key the admin made) credited a goodwill adjustment: the ledger
    row's ``recorded_by`` — the only record on the append-only ledger of who moved a member's
    points by hand — was null (the key has no user), as were a points rule's ``updated_by`` and
    a gift's ``created_by`` it wrote. Each names the person behind the key now
    (``Principal.person``, as a redemption's fulfilment records it)."""
    key = await key_of(client, await login("admin"), ["points.rules", "gifts.write"])
    member_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
    body = {
        "member_id": member_id,
        "points": 50,
        "reason": "goodwill: late parcel",
        "client_id": secrets.token_hex(8),
        "kind": "adjustment",
    }
    made = await client.post("/points/adjustments", headers=key, json=body)
    assert made.status_code == 201, made.text
    product = await new_product(client, login)
    rule = await set_rule(client, key, product["id"], 3)
    gift = await client.post(
        "/gifts",
        headers=key,
        json={"name": "Key gift", "points_cost": 30, "kind": "offline", "stock": 1},
    )
    assert gift.status_code == 201, gift.text
    row = await (
        await conn.execute(
            """SELECT (SELECT recorded_by FROM points_ledger WHERE id = %s) AS ledger,
                      (SELECT updated_by FROM point_rules WHERE id = %s) AS rule,
                      (SELECT created_by FROM gifts WHERE id = %s) AS gift""",
            (made.json()["entry_id"], rule["id"], gift.json()["id"]),
        )
    ).fetchone()
    admin_id = await user_id(conn, "admin")
    assert row == {"ledger": admin_id, "rule": admin_id, "gift": admin_id}, row


async def test_an_adjustment_client_id_is_the_callers_own(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: the brand's CRM (an API key) and a person at the brand both number their
    credits "welcome-1". The client id was the member's: the key's credit was answered 200 with
    the person's entry (its 10 points silently dropped), and its other entry under that id 409
    ``client_id_reused`` for an id it never used. README: client ids are the caller's own — an
    API key's its own, a user's shared by the user's organisation (``points_ledger
    .client_owner``, migration 0136)."""
    admin = await login("admin")
    crm = await key_of(client, admin, ["points.rules"])
    colleague = await _staff(client, admin, demo["BRAND-LUMI"], ["brand_admin"])
    member_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
    body = {"member_id": member_id, "points": 10, "reason": "welcome", "client_id": "welcome-1",
            "kind": "adjustment"}  # fmt: skip
    first = await client.post("/points/adjustments", headers=admin, json=body)
    assert first.status_code == 201, first.text
    theirs = await client.post("/points/adjustments", headers=crm, json=body)
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["entry_id"] != first.json()["entry_id"]
    assert theirs.json()["balance"] == 20
    again = await client.post("/points/adjustments", headers=crm, json=body)
    assert again.status_code == 200 and again.json()["entry_id"] == theirs.json()["entry_id"]
    other = {**body, "points": 11}
    assert_error(await client.post("/points/adjustments", headers=crm, json=other), 409,
                 "client_id_reused")  # fmt: skip
    # a user's client ids are its organisation's: a colleague's retry is the first entry
    shared = await client.post("/points/adjustments", headers=colleague, json=body)
    assert shared.status_code == 200 and shared.json()["entry_id"] == first.json()["entry_id"]
    assert_error(await client.post("/points/adjustments", headers=colleague, json=other), 409,
                 "client_id_reused")  # fmt: skip
    # racing: each caller's copies make exactly one entry of its own
    racer, _, _ = await new_member(app, demo["BRAND-LUMI"])
    raced = {**body, "member_id": racer}
    answers = await asyncio.gather(
        *[client.post("/points/adjustments", headers=who, json=raced) for who in [admin, crm] * 4]
    )
    by_caller = [sorted(a.status_code for a in answers[i::2]) for i in (0, 1)]
    assert by_caller == [[200, 200, 200, 201]] * 2, [(a.status_code, a.text) for a in answers]
    assert len({a.json()["entry_id"] for a in answers}) == 2
    row = await (
        await conn.execute(
            "SELECT count(*) AS n, sum(points) AS total FROM points_ledger WHERE member_id = %s",
            (racer,),
        )
    ).fetchone()
    assert (row["n"], row["total"]) == (2, 20)


async def test_goods_shipped_straight_to_a_store_earn_the_nearest_rule_above_it(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A unit the factory shipped straight to a store (its channel organisation) earns the rule
    of the nearest organisation above the store that has one: the agent's, then the
    distributor's once it has one, then the store's own (it earned the product's default: the
    rule was looked up for the store only)."""
    from app.web.queries import claimable
    from tests.test_logistics import confirm, document, pack

    goods = await pack(client, login, app, demo, 1)
    admin, clerk = await login("admin"), await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    ship = await document(
        client, clerk, goods["cases"], kind="outbound", counterparty_id=demo["STORE-NB-01"]
    )
    assert (await confirm(client, clerk, ship)).status_code == 200
    product = goods["product_id"]
    await set_rule(client, admin, product, 10)
    # the agents' rules this test sets, deleted after it (an agent's outranks the product's
    # rule later tests set)
    added = [await set_rule(client, admin, product, 25, demo["AGENT-ZJ"])]
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    scheme = app.state.scheme
    units = goods["units"]
    earned = []
    try:
        async with member_client(app) as mc:
            for n, (unit, rule_at, points) in enumerate(
                [(units[0], None, 0), (units[1], "DIST-NB", 17), (units[2], "STORE-NB-01", 5)]
            ):
                if rule_at:
                    added.append(await set_rule(client, admin, product, points, demo[rule_at]))
                async with app.state.pool.connection() as conn:  # what the result page offers
                    offered = await claimable(conn, code_of(app, unit))
                assert offered == (demo["BRAND-LUMI"], points or 25)
                claim = await mc.post(
                    "/members/me/claims", headers=headers, json=claim_body(scheme, unit, f"s{n}")
                )
                assert claim.status_code == 201, claim.text
                assert claim.json()["agent_id"] == demo["STORE-NB-01"]
                earned.append(claim.json()["points"])
    finally:
        for rule in added:
            await client.delete(f"/points/rules/{rule['id']}", headers=admin)
    assert earned == [25, 17, 5]
    async with app.state.pool.connection() as conn:
        balance = await (
            await conn.execute(
                "SELECT balance FROM point_balances WHERE member_id = %s", (member_id,)
            )
        ).fetchone()
    assert balance["balance"] == 47


async def test_the_points_rule_of_an_agent_supplied_by_its_branch_is_applied(
    client: Any,
    login: Any,
    app: Any,
    demo: Any,
    deep_tree: dict[str, Any],  # noqa: F811
    via_branch: dict[str, Any],  # noqa: F811
) -> None:
    """A probe (member, SPEC M2 / K2: points from the product's rule for its channel agent): the
    brand sets 25 points for the product at agent A1; the goods reach A1 from its branch and
    are sold at S1, a store of A1's distributor. The claim ignored A1's rule — the branch's
    outbound kept the branch as the units' channel, and ``points_in_force`` looks up from the
    channel — and earned the product's default, here none: 422 ``no_points``. A branch's
    outbound designates anew: A1 is the channel, the claim earns its 25 points."""
    await set_rule(client, await login("admin"), via_branch["product_id"], 25, deep_tree["A1"])
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    body = claim_body(app.state.scheme, via_branch["units"][1])
    async with member_client(app) as mc:
        claim = await mc.post("/members/me/claims", headers=member, json=body)
    assert claim.status_code == 201, claim.text
    assert (claim.json()["points"], claim.json()["agent_id"]) == (25, deep_tree["A1"])
