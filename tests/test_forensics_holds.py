"""Fraud holds (B5): a member or clerk on hold claims, the code is taken, nothing is credited
until a reviewer releases the hold (credited exactly once) or confirms it (rejected); the ring
detector puts rings on hold; scoping and bad input."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row

from tests.helpers import assert_error, key_of, onboarded_brand
from tests.points_support import (
    claim_body,
    member_client,
    new_ip,
    new_member,
    set_rule,
    shipped_goods,
)
from tests.rebates_support import rebate_body, set_rebate, store_goods, user_id
from tests.steady import clear_of_midnight


async def _hold(
    client: Any, admin: dict[str, str], kind: str, party: int, note: str = ""
) -> dict[str, Any]:
    made = await client.post(
        "/forensics/holds",
        headers=admin,
        json={"party_kind": kind, "party_id": party, "note": note},
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    assert body["state"] == "open" and body["rule"] == "manual"
    return body


async def _balance(conn: Any, member_id: int) -> tuple[int, int]:
    """(balance, ledger rows of kind claim) of a member."""
    row = await (
        await conn.execute(
            """SELECT coalesce((SELECT balance FROM point_balances WHERE member_id = %s), 0)
                      AS balance,
                      (SELECT count(*) FROM points_ledger WHERE member_id = %s AND kind = 'claim')
                      AS entries""",
            (member_id, member_id),
        )
    ).fetchone()
    return int(row["balance"]), int(row["entries"])


async def test_a_held_members_claims_take_the_code_and_credit_once_on_release(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    goods = await shipped_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 10)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    hold = await _hold(client, admin, "member", member_id)
    scheme = app.state.scheme
    points = 0
    async with member_client(app) as mc:
        for i, serial in enumerate(goods["units"][:3]):
            answer = await mc.post(
                "/members/me/claims", headers=headers, json=claim_body(scheme, serial, f"h-{i}")
            )
            assert answer.status_code == 201, answer.text
            body = answer.json()
            assert body["status"] == "under_review" and body["balance"] == 0
            points += body["points"]
        # the same client id again: the first answer, still under review
        again = await mc.post(
            "/members/me/claims",
            headers=headers,
            json=claim_body(scheme, goods["units"][0], "h-0"),
        )
        assert again.status_code == 200 and again.json()["status"] == "under_review"
        # the code is taken: another member's claim of it is refused
        _, other, _ = await new_member(app, demo["BRAND-LUMI"])
        taken = await mc.post(
            "/members/me/claims", headers=other, json=claim_body(scheme, goods["units"][0])
        )
        assert_error(taken, 409, "already_claimed")
    assert await _balance(conn, member_id) == (0, 0)
    listed = await client.get("/forensics/holds", headers=admin, params={"state": "open"})
    mine = [h for h in listed.json()["items"] if h["id"] == hold["id"]]
    assert mine[0]["claims"] == {"held": 3, "released": 0, "rejected": 0}

    # two reviewers click release at once: both answered, credited exactly once
    answers = await asyncio.gather(
        *(client.post(f"/forensics/holds/{hold['id']}/release", headers=admin) for _ in range(2))
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert {a.json()["state"] for a in answers} == {"released"}
    assert await _balance(conn, member_id) == (points, 3)
    again_release = await client.post(f"/forensics/holds/{hold['id']}/release", headers=admin)
    assert again_release.status_code == 200
    assert again_release.json()["claims"] == {"held": 0, "released": 3, "rejected": 0}
    assert await _balance(conn, member_id) == (points, 3)
    # decided: not the other way
    assert_error(
        await client.post(f"/forensics/holds/{hold['id']}/confirm", headers=admin),
        409,
        "hold_decided",
    )
    # released: the member's next claim is credited as ever
    async with member_client(app) as mc:
        answer = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(scheme, goods["units"][5])
        )
    assert answer.status_code == 201 and answer.json()["status"] == "credited"
    assert (await _balance(conn, member_id))[1] == 4
    checked = await (
        await conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE entity = 'fraud_hold' AND entity_id = %s",
            (str(hold["id"]),),
        )
    ).fetchone()
    assert checked["n"] == 2  # created, released: once


async def test_a_confirmed_clerk_hold_rejects_the_rebates(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    goods = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rebate(client, admin, goods["product_id"], 2.5)
    clerk_id = await user_id(conn, "store_clerk")
    hold = await _hold(client, admin, "clerk", clerk_id, "one phone at two stores")
    assert hold["party_name"] == "store_clerk"
    clerk = await login("store_clerk")
    scheme = app.state.scheme
    try:
        claimed = []
        for serial in goods["units"][:2]:
            answer = await client.post(
                "/rebates/claims", headers=clerk, json=rebate_body(scheme, serial)
            )
            assert answer.status_code == 201, answer.text
            assert answer.json()["status"] == "under_review"
            claimed.append(answer.json()["claim_id"])
        rows = await (
            await conn.execute(
                """SELECT c.hold_state, q.claim_id IS NOT NULL AS queued FROM rebate_claims c
                   LEFT JOIN rebate_tally_queue q ON q.claim_id = c.id WHERE c.id = ANY(%s)""",
                (claimed,),
            )
        ).fetchall()
        assert [(r["hold_state"], r["queued"]) for r in rows] == [("held", False)] * 2
        confirmed = await client.post(
            f"/forensics/holds/{hold['id']}/confirm", headers=admin, json={"note": "ring"}
        )
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["claims"] == {"held": 0, "released": 0, "rejected": 2}
        # the reviewer's note beside why it was held (a review: it was written over it)
        assert (confirmed.json()["note"], confirmed.json()["decision_note"]) == (
            "one phone at two stores",
            "ring",
        )
        assert_error(
            await client.post(f"/forensics/holds/{hold['id']}/release", headers=admin),
            409,
            "hold_decided",
        )
        rows = await (
            await conn.execute(
                """SELECT c.hold_state, q.claim_id IS NOT NULL AS queued FROM rebate_claims c
                   LEFT JOIN rebate_tally_queue q ON q.claim_id = c.id WHERE c.id = ANY(%s)""",
                (claimed,),
            )
        ).fetchall()
        assert [(r["hold_state"], r["queued"]) for r in rows] == [("rejected", False)] * 2
        audit = await (
            await conn.execute(
                "SELECT action FROM audit_log WHERE entity = 'fraud_hold' AND entity_id = %s "
                "ORDER BY id",
                (str(hold["id"]),),
            )
        ).fetchall()
        assert [a["action"] for a in audit] == ["create", "confirm"]
    finally:  # the demo clerk claims in other tests: never left on hold
        await conn.execute(
            "UPDATE fraud_holds SET state = 'released', decided_at = now() "
            "WHERE party_kind = 'clerk' AND party_id = %s AND state = 'open'",
            (clerk_id,),
        )
        await conn.commit()


async def test_holds_are_the_brands_and_bad_input_is_refused(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    admin = await login("admin")
    member_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
    hold = await _hold(client, admin, "member", member_id)
    # on hold already
    again = await client.post(
        "/forensics/holds", headers=admin, json={"party_kind": "member", "party_id": member_id}
    )
    assert assert_error(again, 409, "already_on_hold")["details"]["hold_id"] == hold["id"]
    # another brand: neither its holds nor its parties
    tenant, tenant_admin = await onboarded_brand(client, login)
    assert_error(await client.get(f"/forensics/holds/{hold['id']}", headers=tenant_admin), 404)
    assert_error(
        await client.post(f"/forensics/holds/{hold['id']}/release", headers=tenant_admin),
        404,
        "hold_not_found",
    )
    listed = await client.get("/forensics/holds", headers=tenant_admin)
    assert listed.status_code == 200 and listed.json()["total"] == 0
    body = {"party_kind": "member", "party_id": member_id}
    assert_error(
        await client.post("/forensics/holds", headers=tenant_admin, json=body),
        404,
        "party_not_found",
    )
    clerk = {"party_kind": "clerk", "party_id": 1}  # the platform operator: not a tenant's
    assert_error(
        await client.post("/forensics/holds", headers=tenant_admin, json=clerk),
        404,
        "party_not_found",
    )
    # below the brand, or without fraud.review: refused
    assert_error(await client.get("/forensics/holds", headers=await login("agent_admin")), 403)
    assert_error(await client.get("/forensics/holds", headers=await login("analyst")), 403)
    # bad input: 400, never a 500
    for bad in (
        {"party_kind": "robot", "party_id": member_id},
        {"party_kind": "member", "party_id": 0},
        {"party_kind": "member", "party_id": "1"},
        {"party_kind": "member", "party_id": member_id, "extra": 1},
        {"party_kind": "member", "party_id": member_id, "note": "x" * 501},
        {},
    ):
        assert_error(await client.post("/forensics/holds", headers=admin, json=bad), 400)
    assert_error(
        await client.post(f"/forensics/holds/{hold['id']}/release", headers=admin, json={"x": 1}),
        400,
    )
    assert_error(await client.get("/forensics/holds", headers=admin, params={"state": "x"}), 400)
    assert_error(await client.post("/forensics/holds/999999999/confirm", headers=admin), 404)
    assert_error(await client.post("/forensics/holds/abc/confirm", headers=admin), 404)
    assert tenant["id"] != demo["BRAND-LUMI"]


async def test_a_hold_put_and_decided_through_an_api_key_names_its_maker(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a reviewer's script (an API key the admin made, ``fraud.review``) put a member
    on hold by hand and released it: ``created_by`` was null — what the ring detector's holds
    show — and ``decided_by`` null too: a manual hold read as the detector's, released by
    nobody. Both name the person behind the key now (``Principal.person``)."""
    key = await key_of(client, await login("admin"), ["fraud.review"])
    for decision in ("release", "confirm"):
        member_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
        hold = await _hold(client, key, "member", member_id, "rang the member")
        decided = await client.post(
            f"/forensics/holds/{hold['id']}/{decision}", headers=key, json={"note": "checked"}
        )
        assert decided.status_code == 200, decided.text
        admin_id = await user_id(conn, "admin")
        assert hold["created_by"] == admin_id, hold
        assert decided.json()["decided_by"] == admin_id, decided.json()


async def _verified(
    conn: Any,
    *,
    brand: int,
    member: int | None,
    ip: str,
    code: int | None = None,
    province: str | None = None,
    at: datetime | None = None,
    retry: str | None = None,
    pin: bool = True,
) -> None:
    """A verification record as the flusher stores it: a member's right-PIN check, or (``pin``
    false) a scan without a PIN of a code never shipped — ``suspicious`` too, no PIN proven."""
    result, reason = ("genuine", "first_query") if pin else ("suspicious", "never_shipped")
    await conn.execute(
        """INSERT INTO verifications (at, record_key, code_id, brand_id, result, reason, queries,
                                      pin_given, client_ip, user_agent, province, member_id, retry)
           VALUES (%s, %s, %s, %s, %s, %s, 1, %s, %s, 'ring-phone', %s, %s, %s)""",
        (
            at or datetime.now(UTC),
            uuid.uuid4(),
            code,
            brand,
            result,
            reason,
            pin,
            ip,
            province,
            member,
            retry,
        ),
    )


async def test_the_ring_detector_holds_members_of_one_device_once(
    app: Any, demo: Any, conn: Any, settings: Any, client: Any
) -> None:
    from app.forensics.rings import detect_rings

    brand = demo["BRAND-LUMI"]
    ip = str(ipaddress.ip_address("198.51.100.0") + int(uuid.uuid4().int % 200))
    ring = [(await new_member(app, brand))[0] for _ in range(3)]
    loner = (await new_member(app, brand))[0]
    for m in ring:
        await _verified(conn, brand=brand, member=m, ip=ip)
    await _verified(conn, brand=brand, member=loner, ip="203.0.113.250")
    await conn.commit()
    tuned = msgspec.structs.replace(settings, ring_shared_device_members=3)

    async def run() -> Any:
        async with await _autocommit(app) as c:
            return await detect_rings(c, tuned, wait=True)

    first, second = await asyncio.gather(run(), run())  # at once: one after the other
    assert first.ran and second.ran
    held = await (
        await conn.execute(
            "SELECT party_id, rule, evidence FROM fraud_holds WHERE party_kind = 'member' "
            "AND party_id = ANY(%s)",
            ([*ring, loner],),
        )
    ).fetchall()
    assert sorted(h["party_id"] for h in held) == sorted(ring)  # each once
    assert {h["rule"] for h in held} == {"shared_device"}
    assert held[0]["evidence"]["client_ip"] == ip
    # released: the evidence seen is not held against them again
    admin = await _admin(client)
    ids = await (
        await conn.execute(
            "SELECT id FROM fraud_holds WHERE party_id = ANY(%s) AND party_kind = 'member'",
            (ring,),
        )
    ).fetchall()
    for row in ids:
        released = await client.post(f"/forensics/holds/{row['id']}/release", headers=admin)
        assert released.status_code == 200, released.text
    async with await _autocommit(app) as c:
        third = await detect_rings(c, tuned, wait=True)
    assert third.ran and third.held.get("shared_device", 0) == 0


async def test_the_ring_rules_count_only_checks_with_the_right_pin(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, settings: Any
) -> None:
    """A probe: ``shared_device`` and ``verified_elsewhere`` counted every ``genuine`` or
    ``suspicious`` record, and a scan WITHOUT a PIN of a code never shipped (or over the repeat
    threshold) is ``suspicious``: three shoppers scanning a shelf pack's QR code from one shop's
    Wi-Fi were held as a ring, and a member claiming codes others had only looked at elsewhere
    too. Only checks with the right PIN (``pin_given``) count, as the rules say."""
    from app.forensics.rings import detect_rings

    brand = demo["BRAND-LUMI"]
    ip = str(ipaddress.ip_address("198.51.100.0") + int(uuid.uuid4().int % 200))
    lookers = [(await new_member(app, brand))[0] for _ in range(3)]
    for m in lookers:
        await _verified(conn, brand=brand, member=m, ip=ip, pin=False)
    # verified_elsewhere: each member claims two codes someone else checked in another province
    # a minute before — without a PIN (the looker's) or with the right PIN (the buyer's)
    goods = await shipped_goods(client, login, app, demo)
    await set_rule(client, await login("admin"), goods["product_id"], 10)
    looker, looker_headers, _ = await new_member(app, brand)
    buyer, buyer_headers, _ = await new_member(app, brand)
    before = datetime.now(UTC) - timedelta(minutes=1)
    claims = [(looker_headers, False, [0, 1]), (buyer_headers, True, [2, 3])]
    for _, pin, units in claims:
        for i in units:
            code = (goods["batch_no"] << 32) | i
            await _verified(
                conn,
                brand=brand,
                member=None,
                ip=new_ip(),
                code=code,
                province="广东省",
                at=before,
                pin=pin,
            )
    await conn.commit()
    async with member_client(app) as mc:
        for headers, _, units in claims:
            for i in units:
                body = claim_body(app.state.scheme, goods["units"][i])
                answer = await mc.post("/members/me/claims", headers=headers, json=body)
                assert answer.status_code == 201, answer.text
    tuned = msgspec.structs.replace(
        settings, ring_shared_device_members=3, ring_verified_elsewhere_claims=2
    )
    async with await _autocommit(app) as c:
        run = await detect_rings(c, tuned, wait=True)
    assert run.ran and run.failed == 0
    held = await (
        await conn.execute(
            "SELECT party_id, rule FROM fraud_holds WHERE party_kind = 'member' "
            "AND party_id = ANY(%s)",
            ([*lookers, looker, buyer],),
        )
    ).fetchall()
    # the right-PIN checks still count: the rule is alive, only the PIN-less scans are not
    assert [(h["party_id"], h["rule"]) for h in held] == [(buyer, "verified_elsewhere")], held


async def _autocommit(app: Any) -> Any:
    return await psycopg.AsyncConnection.connect(
        app.state.pool.conninfo, autocommit=True, row_factory=dict_row
    )


async def _admin(client: Any) -> dict[str, str]:
    from app.demo import DEMO_PASSWORD

    token = await client.post("/auth/login", json={"username": "admin", "password": DEMO_PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def test_a_claim_held_as_its_hold_was_released_is_credited_by_the_sweep(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, settings: Any
) -> None:
    """The claim round that read the hold open just before the release committed: its claim is
    written held after the release; the sweep credits it, once."""
    from app.forensics.rings import detect_rings

    goods = await shipped_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 10)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    hold = await _hold(client, admin, "member", member_id)
    async with member_client(app) as mc:
        answer = await mc.post(
            "/members/me/claims",
            headers=headers,
            json=claim_body(app.state.scheme, goods["units"][1]),
        )
    assert answer.json()["status"] == "under_review"
    # the release's state change without its settling (as if the claim came after it)
    await conn.execute(
        "UPDATE fraud_holds SET state = 'released', decided_at = now() WHERE id = %s",
        (hold["id"],),
    )
    await conn.commit()
    assert await _balance(conn, member_id) == (0, 0)
    async with await _autocommit(app) as c:
        swept = await detect_rings(c, settings, wait=True)
        again = await detect_rings(c, settings, wait=True)
    assert swept.settled >= 1 and again.settled == 0
    assert await _balance(conn, member_id) == (answer.json()["points"], 1)


def _of(events: list[dict[str, Any]], claims: list[int]) -> list[dict[str, Any]]:
    return [e for e in events if e["data"].get("claim_id") in claims]


async def test_held_claims_are_announced_when_released_never_when_rejected(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A review: a held claim still sent ``points.claimed`` / ``rebate.claimed`` with its points
    or amount when written (the claims' triggers ignored hold_state): an ERP mirroring them
    credited claims a reviewer later rejected. Now a held claim is announced when its hold is
    released (once), shaped as the trigger's event, and a rejected one never."""
    from tests.test_webhooks_rebates import URL, got, subscribe

    admin = await login("admin")
    brand_sub = await subscribe(client, admin, ["points.claimed"])
    agent_sub = await subscribe(client, await login("agent_admin"), ["points.claimed"])
    try:
        goods = await shipped_goods(client, login, app, demo)
        await set_rule(client, admin, goods["product_id"], 10)
        scheme = app.state.scheme
        member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
        cheat_id, cheat, _ = await new_member(app, demo["BRAND-LUMI"])
        async with member_client(app) as mc:
            # an ordinary claim: the trigger's event, the shape a released claim's must have
            plain = await mc.post(
                "/members/me/claims", headers=headers, json=claim_body(scheme, goods["units"][14])
            )
            assert plain.json()["status"] == "credited", plain.text
            released = await _hold(client, admin, "member", member_id)
            rejected = await _hold(client, admin, "member", cheat_id)
            held = [
                await mc.post(
                    "/members/me/claims", headers=headers, json=claim_body(scheme, serial)
                )
                for serial in goods["units"][15:17]
            ]
            refused = await mc.post(
                "/members/me/claims", headers=cheat, json=claim_body(scheme, goods["units"][17])
            )
        claims = [a.json()["claim_id"] for a in held]
        assert {a.json()["status"] for a in [*held, refused]} == {"under_review"}
        [shape] = _of(await got(app, brand_sub), [plain.json()["claim_id"]])
        rejected_claim = [refused.json()["claim_id"]]
        # held: announced to no one
        for sub in (brand_sub, agent_sub):
            assert _of(await got(app, sub), [*claims, *rejected_claim]) == []

        for _ in range(2):  # released twice: announced once
            ok = await client.post(f"/forensics/holds/{released['id']}/release", headers=admin)
            assert ok.status_code == 200, ok.text
        events = _of(await got(app, brand_sub), claims)
        assert [e["data"]["claim_id"] for e in events] == claims
        assert all(e["data"].keys() == shape["data"].keys() for e in events)
        assert {e["data"]["points"] for e in events} == {10}
        assert {e["data"]["member_id"] for e in events} == {member_id}
        agents = _of(await got(app, agent_sub), claims)
        assert [e["data"]["claim_id"] for e in agents] == claims
        assert all("member_id" not in e["data"] for e in agents)

        no = await client.post(f"/forensics/holds/{rejected['id']}/confirm", headers=admin)
        assert no.status_code == 200, no.text
        for sub in (brand_sub, agent_sub):
            assert _of(await got(app, sub), rejected_claim) == []
    finally:
        await conn.execute(
            "UPDATE webhook_subscriptions SET active = false WHERE url LIKE %s", (URL + "%",)
        )
        await conn.commit()


async def test_a_released_rebate_claim_is_announced_then(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A review: a clerk's held claim sent ``rebate.claimed`` with its amount when written; now
    it is announced, shaped as the trigger's, when its hold is released."""
    from tests.test_webhooks_rebates import URL, got, subscribe

    admin = await login("admin")
    sub = await subscribe(client, admin, ["rebate.claimed"])
    clerk_id = await user_id(conn, "store_clerk")
    try:
        goods = await store_goods(client, login, app, demo)
        await set_rebate(client, admin, goods["product_id"], 2.5)
        clerk = await login("store_clerk")
        scheme = app.state.scheme
        plain = await client.post(
            "/rebates/claims", headers=clerk, json=rebate_body(scheme, goods["units"][1])
        )
        assert plain.json()["status"] == "credited", plain.text
        [shape] = _of(await got(app, sub), [plain.json()["claim_id"]])
        hold = await _hold(client, admin, "clerk", clerk_id)
        made = await client.post(
            "/rebates/claims", headers=clerk, json=rebate_body(scheme, goods["units"][2])
        )
        assert made.json()["status"] == "under_review", made.text
        claim = made.json()["claim_id"]
        assert _of(await got(app, sub), [claim]) == []
        ok = await client.post(f"/forensics/holds/{hold['id']}/release", headers=admin)
        assert ok.status_code == 200, ok.text
        [event] = _of(await got(app, sub), [claim])
        assert event["data"].keys() == shape["data"].keys()
        assert event["data"]["amount"] == 2.5 and event["data"]["clerk_id"] == clerk_id
        assert event["org_ids"] == [demo["STORE-HZ-01"]]
    finally:
        await conn.execute(
            "UPDATE fraud_holds SET state = 'released', decided_at = now() "
            "WHERE party_kind = 'clerk' AND party_id = %s AND state = 'open'",
            (clerk_id,),
        )
        await conn.execute(
            "UPDATE webhook_subscriptions SET active = false WHERE url LIKE %s", (URL + "%",)
        )
        await conn.commit()


async def test_a_released_ring_is_not_held_again_on_one_new_scan(
    app: Any, demo: Any, conn: Any, settings: Any, client: Any
) -> None:
    """A review: the ring rules compared the party's last decision with the group's newest
    evidence, but counted all of it: one new scan from the shared device after the reviewer
    released the ring made the old, judged scans count again and held all of them once more.
    Now only each party's evidence after its last decided hold counts toward the threshold."""
    from app.forensics.rings import detect_rings

    brand = demo["BRAND-LUMI"]
    ip = str(ipaddress.ip_address("198.51.100.0") + int(uuid.uuid4().int % 200))
    ring = [(await new_member(app, brand))[0] for _ in range(3)]
    for m in ring:
        await _verified(conn, brand=brand, member=m, ip=ip)
    await conn.commit()
    tuned = msgspec.structs.replace(settings, ring_shared_device_members=3)
    async with await _autocommit(app) as c:
        first = await detect_rings(c, tuned, wait=True)
    assert first.held.get("shared_device", 0) >= 3
    admin = await _admin(client)
    held = await (
        await conn.execute(
            "SELECT id FROM fraud_holds WHERE party_kind = 'member' AND party_id = ANY(%s) "
            "AND state = 'open'",
            (ring,),
        )
    ).fetchall()
    assert len(held) == 3
    for row in held:
        released = await client.post(f"/forensics/holds/{row['id']}/release", headers=admin)
        assert released.status_code == 200, released.text
    await _verified(conn, brand=brand, member=ring[0], ip=ip)  # one new scan, same client
    await conn.commit()
    async with await _autocommit(app) as c:
        again = await detect_rings(c, tuned, wait=True)
    assert again.ran and again.failed == 0
    open_now = await (
        await conn.execute(
            "SELECT count(*) AS n FROM fraud_holds WHERE party_kind = 'member' "
            "AND party_id = ANY(%s) AND state = 'open'",
            (ring,),
        )
    ).fetchone()
    assert open_now["n"] == 0


async def test_a_failing_rule_or_detector_does_not_stop_settling_held_claims(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, monkeypatch: Any
) -> None:
    """A review: the periodic run settled held claims of decided holds only after every rule
    and the leak detector had succeeded: one rule's failing statement left the claim a round
    wrote held just as its hold was released uncredited, run after run. Now the settling runs
    first in a transaction of its own, and each detector and rule fails alone (logged)."""
    from app.forensics import leaks, rings
    from workers.forensics import _detect

    goods = await shipped_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 10)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    hold = await _hold(client, admin, "member", member_id)
    async with member_client(app) as mc:
        answer = await mc.post(
            "/members/me/claims",
            headers=headers,
            json=claim_body(app.state.scheme, goods["units"][3]),
        )
    assert answer.json()["status"] == "under_review", answer.text
    await conn.execute(  # the release's state change without its settling
        "UPDATE fraud_holds SET state = 'released', decided_at = now() WHERE id = %s",
        (hold["id"],),
    )
    await conn.commit()
    broken = "SELECT 1 / 0 AS brand_id"
    monkeypatch.setattr(rings, "_SHARED_DEVICE", broken)
    monkeypatch.setattr(leaks, "_FIND", broken)
    async with await _autocommit(app) as c:
        await _detect(c)
    assert await _balance(conn, member_id) == (answer.json()["points"], 1)
    # the rules after the broken one still ran; the run says what failed
    async with await _autocommit(app) as c:
        out = await rings.detect_rings(c, app.state.settings, wait=True)
    assert out.ran and out.failed == 1 and out.settled == 0


async def test_held_and_rejected_rebates_are_not_reported_as_earned(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A review: the rebate reports summed every claim: a clerk's held and rejected claims were
    in the brand's claims list, totals and exports and in the clerk's today / month / all-time
    amounts as earned, though the statements skip them. Now a claim counts there once its hold
    is released, as the statements take it."""
    goods = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rebate(client, admin, goods["product_id"], 2.5)
    clerk_id = await user_id(conn, "store_clerk")
    clerk = await login("store_clerk")
    scheme = app.state.scheme

    async def reports() -> tuple[Any, ...]:
        mine = (await client.get("/rebates/me", headers=clerk)).json()
        listed = await client.get("/rebates", headers=admin, params={"clerk_id": clerk_id})
        exported = await client.get(
            "/rebates", headers=admin, params={"clerk_id": clerk_id, "format": "csv"}
        )
        rows = len(exported.text.strip().splitlines()) - 1
        body = listed.json()
        ids = {c["claim_id"] for c in body["items"]}
        return (mine["today"], mine["all_time"], body["total"], body["amount"], rows), ids

    async def claim(serial: str) -> int:
        made = await client.post("/rebates/claims", headers=clerk, json=rebate_body(scheme, serial))
        assert made.status_code == 201 and made.json()["status"] == "under_review", made.text
        return int(made.json()["claim_id"])

    try:
        await clear_of_midnight()  # the clerk's today amount is compared across the claims
        before, _ = await reports()
        rejected = await _hold(client, admin, "clerk", clerk_id)
        held = [await claim(serial) for serial in goods["units"][3:5]]
        during, ids = await reports()
        assert during == before and not ids & set(held)
        no = await client.post(f"/forensics/holds/{rejected['id']}/confirm", headers=admin)
        assert no.status_code == 200, no.text
        after_rejecting, ids = await reports()
        assert after_rejecting == before and not ids & set(held)
        released = await _hold(client, admin, "clerk", clerk_id)
        credited = await claim(goods["units"][5])
        ok = await client.post(f"/forensics/holds/{released['id']}/release", headers=admin)
        assert ok.status_code == 200, ok.text
        (today, all_time, total, amount, rows), ids = await reports()
        assert credited in ids and not ids & set(held)
        assert total == before[2] + 1 and amount == before[3] + 2.5 and rows == before[4] + 1
        assert all_time == {
            "claims": before[1]["claims"] + 1,
            "amount": before[1]["amount"] + 2.5,
        }
        assert today["claims"] == before[0]["claims"] + 1
    finally:
        await conn.execute(
            "UPDATE fraud_holds SET state = 'released', decided_at = now() "
            "WHERE party_kind = 'clerk' AND party_id = %s AND state = 'open'",
            (clerk_id,),
        )
        await conn.commit()


async def test_the_settling_sweep_credits_the_good_held_claims_beside_one_it_cannot_settle(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, settings: Any
) -> None:
    """A probe: the sweep settled every decided hold in one statement, so one claim it could not
    credit (a balance at the top of its bigint: a hand edit, a huge number) rolled every brand's
    settling back, run after run. Now the sweep goes hold by hold when that fails: the bad hold
    is set aside in the dead letters (``fraud_settle``, once, left out of the sweeps after it),
    the others credited; once repaired and its letter deleted, the next sweep settles it."""
    from app.forensics.rings import detect_rings

    goods = await shipped_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 10)
    members, holds, points = [], [], []
    for i in range(2):
        member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
        hold = await _hold(client, admin, "member", member_id)
        async with member_client(app) as mc:
            answer = await mc.post(
                "/members/me/claims",
                headers=headers,
                json=claim_body(app.state.scheme, goods["units"][10 + i], f"edge-{i}"),
            )
        assert answer.json()["status"] == "under_review", answer.text
        members.append(member_id)
        holds.append(hold["id"])
        points.append(answer.json()["points"])
    bad, good = members
    await conn.execute(  # the releases' state change without their settling
        "UPDATE fraud_holds SET state = 'released', decided_at = now() WHERE id = ANY(%s)",
        (holds,),
    )
    await conn.execute(
        "INSERT INTO point_balances (member_id, balance) VALUES (%s, 9223372036854775800) "
        "ON CONFLICT (member_id) DO UPDATE SET balance = 9223372036854775800",
        (bad,),
    )
    await conn.commit()
    letters = "SELECT id, reason FROM dead_letters WHERE queue = 'fraud_settle' AND payload = %s"
    payload = msgspec.json.encode({"hold_id": holds[0]})
    async with await _autocommit(app) as c:
        first = await detect_rings(c, settings, wait=True)
        again = await detect_rings(c, settings, wait=True)  # the bad hold is left out now
        aside = await (await c.execute(letters, (payload,))).fetchall()
    assert first.failed == 0 and first.settled >= 1 and again.failed == 0
    assert await _balance(conn, good) == (points[1], 1)
    assert await _balance(conn, bad) == (9223372036854775800, 0)
    assert len(aside) == 1 and "NumericValueOutOfRange" in aside[0]["reason"], aside
    # repaired, its letter deleted: the next sweep credits it
    await conn.execute("UPDATE point_balances SET balance = 0 WHERE member_id = %s", (bad,))
    await conn.execute("DELETE FROM dead_letters WHERE id = %s", (aside[0]["id"],))
    await conn.commit()
    async with await _autocommit(app) as c:
        await detect_rings(c, settings, wait=True)
    assert await _balance(conn, bad) == (points[0], 1)


# -- a release after the batch was voided -----------------------------------------------------


async def _void(client: Any, login: Any, batch_no: int) -> None:
    """The brand voids the batch (a leaked print file: the fraud a hold is for)."""
    voided = await client.post(
        f"/batches/{batch_no}/void", headers=await login("planner"), json={"reason": "leak"}
    )
    assert voided.status_code == 200, voided.text


async def _release_audit(conn: Any, hold_id: int) -> dict[str, Any]:
    row = await (
        await conn.execute(
            "SELECT after FROM audit_log WHERE entity = 'fraud_hold' AND entity_id = %s "
            "AND action = 'release'",
            (str(hold_id),),
        )
    ).fetchone()
    await conn.commit()
    after: dict[str, Any] = row["after"]
    return after


async def test_a_release_after_the_batch_was_voided_pays_no_points_nor_prize_of_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a held member's claim and draw of units whose batch the brand voided afterwards
    (README: a void batch's units "earn no rebate or points from then on") were paid by the
    hold's release — the points credited, the prize drawn. They are rejected now, as the claim
    rounds refuse a void code and as ``confirm`` settles them; the member's claim of another
    batch is credited as ever, and the release's audit row says why the others were not."""
    from tests.test_draws import campaign_body, draw, new_campaign, prize

    leaked = await shipped_goods(client, login, app, demo)
    sound = await shipped_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, leaked["product_id"], 10)
    body = campaign_body(leaked["product_id"], [prize("Void gift", "gift", 3, 1)])
    # the earliest-starting campaign covering the unit is the one drawn (``app.draws.claims``):
    # ours, not one of the demo's sun cream an earlier test on this worker left running
    body["starts_at"] = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    campaign = await new_campaign(client, admin, body)
    try:
        member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
        hold = await _hold(client, admin, "member", member_id)
        scheme = app.state.scheme
        async with member_client(app) as mc:
            claimed = [
                await mc.post("/members/me/claims", headers=headers, json=claim_body(scheme, s))
                for s in (leaked["units"][0], sound["units"][0])
            ]
        for answer in claimed:
            assert answer.status_code == 201, answer.text
            assert answer.json()["status"] == "under_review"
        drawn = await draw(app, headers, leaked["units"][1], "void-1")
        assert drawn.status_code == 201 and drawn.json()["status"] == "under_review", drawn.text
        assert drawn.json()["campaign_id"] == campaign["id"], drawn.text
        await _void(client, login, leaked["batch_no"])
        released = await client.post(f"/forensics/holds/{hold['id']}/release", headers=admin)
        assert released.status_code == 200, released.text
        assert released.json()["state"] == "released"
        assert released.json()["claims"] == {"held": 0, "released": 1, "rejected": 2}
        assert await _balance(conn, member_id) == (claimed[1].json()["points"], 1)
        states = await (
            await conn.execute(
                "SELECT id, hold_state FROM point_claims WHERE member_id = %s ORDER BY id",
                (member_id,),
            )
        ).fetchall()
        assert [r["hold_state"] for r in states] == ["rejected", "released"]
        # the campaign covers the demo's sun cream: only this member's draw is this test's; any
        # other's that fell into it took its prize as ever (nothing of ours is paid by them)
        results = await client.get(
            f"/draws/{campaign['id']}/results", headers=admin, params={"per_page": 100}
        )
        rows = results.json()["items"]
        assert results.json()["total"] == len(rows), results.text
        mine = [(r["status"], r["prize_id"]) for r in rows if r["member_id"] == member_id]
        assert mine == [("rejected", None)], results.text
        others = sum(
            1
            for r in rows
            if r["member_id"] != member_id and r["prize_id"] and r["withdrawn_at"] is None
        )
        got = (await client.get(f"/draws/{campaign['id']}", headers=admin)).json()
        assert (got["prizes"][0]["remaining"], got["winners"]) == (3 - others, others), got
        after = await _release_audit(conn, hold["id"])
        assert (after["settled"], after["rejected"]) == (3, {"void": 2}), after
    finally:  # the campaign covers the sun cream other modules' draws use
        assert (await client.delete(f"/draws/{campaign['id']}", headers=admin)).status_code == 204


async def test_a_clerk_release_after_the_batch_was_voided_ranks_no_rebate_of_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """The same for a store clerk on hold: the rebate of a unit of a batch voided since is
    rejected by the release — not queued for the rankings nor taken by the statements, never
    announced — while the clerk's rebate of another batch is released."""
    from tests.test_rebate_claims import new_clerk

    leaked = await store_goods(client, login, app, demo)
    sound = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rebate(client, admin, leaked["product_id"], 2.5)
    clerk_id, clerk = await new_clerk(client, login, demo["STORE-HZ-01"])
    hold = await _hold(client, admin, "clerk", clerk_id)
    claimed = []
    for goods in (leaked, sound):
        answer = await client.post(
            "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, goods["units"][0])
        )
        assert answer.status_code == 201 and answer.json()["status"] == "under_review", answer.text
        claimed.append(answer.json()["claim_id"])
    await _void(client, login, leaked["batch_no"])
    released = await client.post(f"/forensics/holds/{hold['id']}/release", headers=admin)
    assert released.status_code == 200, released.text
    assert released.json()["claims"] == {"held": 0, "released": 1, "rejected": 1}
    rows = await (
        await conn.execute(
            """SELECT c.hold_state, q.claim_id IS NOT NULL AS queued FROM rebate_claims c
                 LEFT JOIN rebate_tally_queue q ON q.claim_id = c.id
                WHERE c.id = ANY(%s) ORDER BY c.id""",
            (claimed,),
        )
    ).fetchall()
    await conn.commit()
    assert [(r["hold_state"], r["queued"]) for r in rows] == [
        ("rejected", False),
        ("released", True),
    ], rows
    after = await _release_audit(conn, hold["id"])
    assert (after["settled"], after["rejected"]) == (2, {"void": 1}), after


async def test_a_confirmed_holds_rejected_rebate_claim_stays_after_a_return(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a clerk on hold claimed two rebates, the reviewer confirmed the fraud (both
    rejected, "their codes stay taken"); a consumer's return of one of the units then deleted
    its rejected claim as a live one (``rebate_withdrawn`` named it) and the decided hold's
    record said one rejected claim, not two. A rejected claim is not withdrawn: it stays, and
    the hold's counts stay what the reviewer decided."""
    from tests.test_rebate_claims import new_clerk

    goods = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rebate(client, admin, goods["product_id"], 2.5)
    clerk_id, clerk = await new_clerk(client, login, demo["STORE-HZ-01"])
    hold = await _hold(client, admin, "clerk", clerk_id)
    for unit in goods["units"][:2]:
        answer = await client.post(
            "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, unit)
        )
        assert answer.status_code == 201 and answer.json()["status"] == "under_review", answer.text
    confirmed = await client.post(f"/forensics/holds/{hold['id']}/confirm", headers=admin)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["claims"] == {"held": 0, "released": 0, "rejected": 2}
    back = await client.post(
        "/returns", headers=clerk, json={"code": goods["units"][0], "reason": "other"}
    )
    assert back.status_code == 200, back.text
    assert back.json()["rebate_withdrawn"] is None
    after = await client.get(f"/forensics/holds/{hold['id']}", headers=admin)
    assert after.json()["claims"] == {"held": 0, "released": 0, "rejected": 2}


async def test_a_release_racing_a_return_of_its_rebate_keeps_the_rankings_exact(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a held clerk's rebate claim released (which queues it for the rankings) while
    a consumer's return of its unit withdraws it (deleting the claim and its queue row). The
    return's DELETE waited for the release's row lock, then deleted the released claim, but read
    the queue as of its snapshot from before the release committed: "not queued", so "ranked
    already" — one claim taken off totals that never counted it (the clerk's month read 0 claims,
    0.0 beside the clerk's other, credited claim), and its queue row left behind. The return
    locks the claim first, so it sees the release's queue row and takes that out instead."""
    from app.rebates.ranking import recount, rollup_alone
    from tests.race_support import lock_waiters
    from tests.test_rebate_claims import new_clerk

    goods = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rebate(client, admin, goods["product_id"], 2.5)
    clerk_id, clerk = await new_clerk(client, login, demo["STORE-HZ-01"])
    scheme = app.state.scheme
    await clear_of_midnight()  # both claims of one month's totals row
    first = await client.post(
        "/rebates/claims", headers=clerk, json=rebate_body(scheme, goods["units"][0])
    )
    assert first.status_code == 201 and first.json()["status"] == "credited", first.text

    async def roll() -> None:
        async with await _autocommit(app) as c:
            await rollup_alone(c, wait=True)

    await roll()  # the clerk's month has its totals row: 1 claim, 2.5
    hold = await _hold(client, admin, "clerk", clerk_id)
    held = await client.post(
        "/rebates/claims", headers=clerk, json=rebate_body(scheme, goods["units"][1])
    )
    assert held.status_code == 201 and held.json()["status"] == "under_review", held.text
    claim_id = held.json()["claim_id"]
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT id FROM rebate_claims WHERE id = %s FOR UPDATE", (claim_id,))
        release = asyncio.ensure_future(
            client.post(f"/forensics/holds/{hold['id']}/release", headers=admin)
        )
        assert await lock_waiters(watch, 1), "the release waits for the claim's row"
        back = asyncio.ensure_future(
            client.post(
                "/returns", headers=clerk, json={"code": goods["units"][1], "reason": "other"}
            )
        )
        assert await lock_waiters(watch, 2), "the return waits for it too, after the release"
        await holder.commit()
        released, returned = await asyncio.gather(release, back)
    assert released.status_code == 200, released.text
    assert released.json()["claims"] == {"held": 0, "released": 1, "rejected": 0}
    assert returned.status_code == 200, returned.text
    assert returned.json()["rebate_withdrawn"] == claim_id
    left = await (
        await conn.execute(
            "SELECT count(*) AS n FROM rebate_tally_queue WHERE claim_id = %s", (claim_id,)
        )
    ).fetchone()
    await conn.commit()
    assert left["n"] == 0  # the release's queue row went with the claim
    await roll()
    async with await _autocommit(app) as c:
        wrong = [m for m in await recount(c) if m.clerk_id == clerk_id]
        totals = await (
            await c.execute(
                "SELECT claims, amount FROM rebate_totals WHERE clerk_id = %s", (clerk_id,)
            )
        ).fetchall()
    assert wrong == [], wrong
    assert [(r["claims"], float(r["amount"])) for r in totals] == [(1, 2.5)], totals


async def test_a_store_of_no_province_is_in_no_other_province(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, settings: Any
) -> None:
    """A probe: a store's province is optional, and ``verified_elsewhere`` compared it with
    ``IS DISTINCT FROM`` — a store of none was "in another province" than every check, so its
    clerk was held for buyers checking in the store's own province; ``distant_stores`` the same
    for the stores a refused unit was supposed to be at. Unknown geography is not elsewhere: a
    clerk of such a store is held by neither rule, nor a clerk whose refusals name such stores,
    while the rules still hold the clerks of stores whose provinces are known."""
    from app.forensics.rings import detect_rings
    from tests.helpers import new_org
    from tests.rebates_support import insert_claims
    from tests.test_rebate_claims import new_clerk

    admin = await login("admin")
    brand = demo["BRAND-LUMI"]

    async def store(province: str | None) -> int:
        fields = {} if province is None else {"province_name": province}
        made = await new_org(client, admin, "store", demo["AGENT-ZJ"], **fields)
        assert made.get("province_name") == province, made
        return int(made["id"])

    nowhere = [await store(None) for _ in range(4)]
    hz = await store("浙江省")  # the stores of the test's own: no demo store's rows change
    distant = [await store(p) for p in ("四川省", "广东省", "湖南省")]
    lost, _ = await new_clerk(client, login, nowhere[0])  # of a store of no province
    strayed, _ = await new_clerk(client, login, nowhere[0])  # its refusals, of distant stores
    near, _ = await new_clerk(client, login, hz)  # refused units of stores of no province
    far, _ = await new_clerk(client, login, hz)  # refused units of stores in other provinces
    checked, _ = await new_clerk(client, login, hz)  # claimed codes checked in Guangdong
    now = datetime.now(UTC)
    product = (await (await conn.execute("SELECT id FROM products LIMIT 1")).fetchone())["id"]
    for clerk, store_id, province in ((lost, nowhere[0], "浙江省"), (checked, hz, "广东省")):
        ids = await insert_claims(
            conn, brand_id=brand, store_id=store_id, clerk_id=clerk, product_id=product,
            amounts=[1, 1, 1], at=now,
        )  # fmt: skip
        codes = await (
            await conn.execute("SELECT code_id FROM rebate_claims WHERE id = ANY(%s)", (ids,))
        ).fetchall()
        for row in codes:  # a buyer checked each code (right PIN) a minute before the claim
            await _verified(
                conn, brand=brand, member=None, ip=new_ip(), code=row["code_id"],
                province=province, at=now - timedelta(minutes=1),
            )  # fmt: skip
    refused = (
        (strayed, nowhere[0], distant),
        (near, hz, nowhere[1:]),
        (far, hz, distant),
    )
    for clerk, store_id, expected in refused:
        for other in expected:
            await conn.execute(
                """INSERT INTO rebate_refusals (brand_id, code_id, serial, clerk_id, store_id,
                       reason, expected_store_id, holder_org_id)
                   VALUES (%s, 1, 'RF-ring', %s, %s, 'other_store', %s, %s)""",
                (brand, clerk, store_id, other, other),
            )
    await conn.commit()
    tuned = msgspec.structs.replace(settings, ring_verified_elsewhere_claims=3)
    async with await _autocommit(app) as c:
        run = await detect_rings(c, tuned, wait=True)
    assert run.ran
    held = await (
        await conn.execute(
            "SELECT party_id, rule FROM fraud_holds WHERE party_kind = 'clerk' "
            "AND party_id = ANY(%s)",
            ([lost, strayed, near, far, checked],),
        )
    ).fetchall()
    await conn.commit()
    assert sorted((h["party_id"], h["rule"]) for h in held) == sorted(
        [(far, "distant_stores"), (checked, "verified_elsewhere")]
    ), (held, {"lost": lost, "strayed": strayed, "near": near})
