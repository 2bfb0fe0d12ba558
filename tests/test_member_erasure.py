"""A member's copy of their data and the erasure of the membership (PIPL; probe U found neither):
``GET /members/me/export``, ``DELETE /members/me`` and member service's ``POST
/members/{id}/erase`` (``app.members.erasure``)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from tests.helpers import assert_error, key_of
from tests.points_support import member_client, new_member
from tests.race_support import lock_waiters
from tests.test_members_auth import new_phone, sign_in
from tests.test_redemptions import give, new_gift, redeem


async def _one(app: Any, sql: str, *args: Any) -> Any:
    async with app.state.pool.connection() as conn:
        return await (await conn.execute(sql, args)).fetchone()


async def test_a_member_takes_a_copy_then_erases_the_membership(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    brand, phone = demo["BRAND-LUMI"], new_phone("137")
    headers, body = await sign_in(client, app, brand, phone)
    member_id = body["member"]["id"]
    profile = {"gender": "female", "email": "li@example.com", "province": "浙江省"}
    assert (await client.patch("/members/me", headers=headers, json=profile)).status_code == 200
    admin = await login("admin")
    credit = {"member_id": member_id, "points": 100, "reason": "welcome"}
    given = await client.post(
        "/points/adjustments", headers=admin, json={**credit, "client_id": secrets.token_hex(8)}
    )
    assert given.status_code == 201, given.text
    gift = await new_gift(client, login, points_cost=30)
    redeemed = await redeem(app, headers, gift["id"])  # a code sent by SMS to the phone
    assert redeemed.status_code == 201, redeemed.text
    async with app.state.pool.connection() as conn:  # a scan made signed in (a claim's record)
        await conn.execute(
            """INSERT INTO verifications (at, record_key, serial, brand_id, result, reason,
                   client_ip, client_id, user_agent, lat, lng, member_id, retry)
               VALUES (now(), gen_random_uuid(), 'ERASE-ME', %s, 'genuine', 'first_query',
                       '10.9.8.7', 'device-1', 'Phone/1.0', 30.27, 120.15, %s,
                       'tracecode-points:' || %s || ':device-1')""",
            (brand, member_id, member_id),
        )
        # a message to the phone that failed for good: its copy kept for the operators
        await conn.execute(
            """INSERT INTO dead_letters (queue, payload, reason)
               SELECT 'sms_outbox', convert_to(row_to_json(o)::text, 'UTF8'), 'out of attempts'
                 FROM sms_outbox o WHERE phone = %s""",
            (phone,),
        )
    # the copy: everything held about the member
    copy = await client.get("/members/me/export", headers=headers)
    assert copy.status_code == 200, copy.text
    held = copy.json()
    assert held["profile"]["phone"] == phone and held["profile"]["email"] == "li@example.com"
    assert held["points_balance"] == 70
    assert sorted(e["kind"] for e in held["points_ledger"]) == ["adjustment", "redemption"]
    assert [r["status"] for r in held["redemptions"]] == ["issued"]
    assert [(v["serial"], v["client_ip"]) for v in held["verifications"]] == [
        ("ERASE-ME", "10.9.8.7")
    ]
    # the erasure
    async with member_client(app) as mc:
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
        assert_error(await mc.get("/members/me", headers=headers), 401, "member_erased")
        assert_error(await mc.delete("/members/me", headers=headers), 401, "member_erased")
    row = await _one(app, "SELECT * FROM members WHERE id = %s", member_id)
    assert row["status"] == "erased" and row["erased_at"] is not None
    assert row["phone"] != phone and row["phone"].startswith("0")
    assert (row["gender"], row["email"], row["province"]) == (None, None, None)
    scan = await _one(app, "SELECT * FROM verifications WHERE serial = 'ERASE-ME'")
    assert scan["result"] == "genuine"  # the record stays, anonymous
    gone = ("member_id", "client_ip", "client_id", "user_agent", "lat", "lng", "retry")
    assert [scan[k] for k in gone] == [None] * len(gone)
    sms = await _one(app, "SELECT count(*) AS n FROM sms_outbox WHERE phone = %s", phone)
    assert sms["n"] == 0  # the code's message no longer names the number
    letters = await _one(  # nor its dead letter (probe U's review: the phone stayed there)
        app,
        """SELECT count(*) AS n, count(*) FILTER (WHERE position(convert_to(%s, 'UTF8')
                                                         IN payload) > 0) AS naming,
                  count(*) FILTER (WHERE convert_from(payload, 'UTF8')::jsonb -> 'variables'
                                         = '{}'::jsonb) AS emptied
             FROM dead_letters WHERE queue = 'sms_outbox'
              AND convert_from(payload, 'UTF8')::jsonb ->> 'member_id' = %s""",
        phone,
        str(member_id),
    )
    assert (letters["n"], letters["naming"], letters["emptied"]) == (1, 0, 1)
    redemption = await _one(app, "SELECT status FROM redemptions WHERE member_id = %s", member_id)
    assert redemption["status"] == "expired"
    stock = await _one(app, "SELECT stock FROM gifts WHERE id = %s", gift["id"])
    assert stock["stock"] == 10  # the code's gift is back (review R5)
    # A probe: the store's check said the points were refunded; they were forfeited
    clerk, code = await login("store_clerk"), {"code": redeemed.json()["code"], "lang": "en"}
    checked = await client.post("/redemptions/check", headers=clerk, json=code)
    assert checked.json()["status"] == "expired" and not checked.json()["valid"]
    assert "closed" in checked.json()["message"] and "refund" not in checked.json()["message"]
    refused = await client.post("/redemptions/fulfil", headers=clerk, json=code)
    assert_error(refused, 409, "code_expired")
    assert "closed" in refused.json()["error"]["message"]
    balance = await _one(app, "SELECT balance FROM point_balances WHERE member_id = %s", member_id)
    assert balance["balance"] == 0  # forfeited by an expiry entry: the ledger is append-only
    # member service no longer finds the phone; the directory lists the erased only if asked
    service = await login("service")
    found = await client.get("/members", headers=service, params={"phone": phone})
    assert found.status_code == 200 and found.json()["items"] == []
    listed = await client.get("/members", headers=service, params={"per_page": 200})
    assert member_id not in {m["id"] for m in listed.json()["items"]}
    erased = await client.get(
        "/members", headers=service, params={"status": "erased", "per_page": 200}
    )
    assert member_id in {m["id"] for m in erased.json()["items"]}
    trail = await client.get(
        "/audit",
        headers=admin,
        params={"entity": "member", "entity_id": str(member_id), "action": "erase"},
    )
    assert [r["after"] for r in trail.json()["items"]] == [{"points_forfeited": 100}]
    assert phone not in trail.text
    again_credit = {**credit, "client_id": secrets.token_hex(8)}
    refused = await client.post("/points/adjustments", headers=admin, json=again_credit)
    assert_error(refused, 404)  # no points for an erased membership
    # the same phone signs up anew: a new membership, nothing of the old one
    again, fresh = await sign_in(client, app, brand, phone)
    assert fresh["signed_up"] and fresh["member"]["id"] != member_id
    mine = await client.get("/members/me/export", headers=again)
    assert mine.json()["points_balance"] == 0 and mine.json()["points_ledger"] == []


async def test_member_service_erases_on_request(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    brand = demo["BRAND-LUMI"]
    headers, body = await sign_in(client, app, brand)
    member_id = body["member"]["id"]
    url = f"/members/{member_id}"
    marketer, service = await login("marketer"), await login("service")
    assert_error(await client.post(f"{url}/erase", headers=marketer), 403, "permission_denied")
    assert (await client.post(f"{url}/erase", headers=service)).status_code == 204
    assert_error(await client.post(f"{url}/erase", headers=service), 409, "member_erased")
    frozen = await client.post(f"{url}/freeze", headers=service, json={"reason": "abuse"})
    assert_error(frozen, 409, "member_erased")
    assert_error(await client.get("/members/me", headers=headers), 401, "member_erased")
    assert_error(await client.post("/members/999999999/erase", headers=service), 404)


async def test_a_claim_still_queued_at_the_erasure_is_stored_anonymous(
    client: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A points claim's verification record waits in the write-behind queue (Redis) for a
    moment; one still there when its member erased the membership was stored with the member
    and the phone's address, place and device, which the erasure had cleared from the others."""
    import json
    import uuid
    from datetime import UTC, datetime

    import psycopg
    import redis as redis_sync

    from app.verify import records

    brand = demo["BRAND-LUMI"]
    leaving_headers, leaving = await sign_in(client, app, brand)
    _, staying = await sign_in(client, app, brand)
    queue = f"{settings.redis_namespace}:verif:queue"
    token = secrets.token_hex(4)

    def record(member: dict[str, Any], serial: str) -> bytes:
        return json.dumps(
            {
                "at": datetime.now(UTC).isoformat(),
                "record_key": str(uuid.uuid4()),
                "serial": serial,
                "brand_id": brand,
                "result": "genuine",
                "reason": "first_query",
                "queries": 1,
                "pin_given": True,
                "client_ip": "10.9.8.7",
                "client_id": "device-1",
                "user_agent": "Phone/1.0",
                "lat": 30.27,
                "lng": 120.15,
                "member_id": member["member"]["id"],
            }
        ).encode()

    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):  # earlier tests' records
            pass
    sync_redis.lpush(
        queue, b"\n".join([record(leaving, f"Q-{token}-1"), record(staying, f"Q-{token}-2")])
    )
    async with member_client(app) as mc:
        assert (await mc.delete("/members/me", headers=leaving_headers)).status_code == 204
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        assert records.flush(sync_redis, pg, settings.redis_namespace) == 2
    kept = ("member_id", "client_ip", "client_id", "user_agent", "lat", "lng")
    erased = await _one(app, "SELECT * FROM verifications WHERE serial = %s", f"Q-{token}-1")
    assert [erased[k] for k in kept] == [None] * len(kept)
    assert erased["result"] == "genuine"  # the record stays, anonymous
    other = await _one(app, "SELECT * FROM verifications WHERE serial = %s", f"Q-{token}-2")
    assert other["member_id"] == staying["member"]["id"] and str(other["client_ip"]) == "10.9.8.7"


def _flush_all(settings: Any) -> int:
    """Every queued verification record into PostgreSQL, as the worker's flusher writes them:
    how many were taken."""
    import psycopg
    import redis as redis_sync

    from app.verify import records

    client = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        n = 0
        while taken := records.flush(client, pg, settings.redis_namespace):
            n += taken
        return n


async def _queue(settings: Any, **fields: Any) -> None:
    """A claim's verification record in the write-behind queue (after the earlier tests' are
    flushed): the phone's address, device and place, and ``fields``."""
    import asyncio
    import json
    import uuid
    from datetime import UTC, datetime

    import redis as redis_sync

    await asyncio.to_thread(_flush_all, settings)
    row = {
        "at": datetime.now(UTC).isoformat(), "record_key": str(uuid.uuid4()),
        "result": "genuine", "reason": "first_query", "queries": 1, "pin_given": True,
        "client_ip": "10.9.8.7", "client_id": "device-1", "user_agent": "Phone/1.0",
        "lat": 30.27, "lng": 120.15, **fields,
    }  # fmt: skip
    queue = f"{settings.redis_namespace}:verif:queue"
    redis_sync.Redis.from_url(settings.redis_url).lpush(queue, json.dumps(row).encode())


PERSONAL = ("member_id", "client_ip", "client_id", "user_agent", "lat", "lng")


async def test_an_erasure_under_way_holds_the_flush_of_its_member_s_records(
    client: Any, app: Any, demo: Any, settings: Any
) -> None:
    """Review R6: the flusher read the member as not erased while an erasure was under way, and
    stored the record whole after the erasure had cleared the others. It now waits for the
    erasure's commit and stores the record anonymous."""
    import asyncio

    from app.members import erasure

    brand = demo["BRAND-LUMI"]
    _, leaving = await sign_in(client, app, brand)
    member_id, serial = leaving["member"]["id"], f"Q-{secrets.token_hex(4)}"
    await _queue(settings, serial=serial, brand_id=brand, member_id=member_id)
    async with app.state.pool.connection() as conn, conn.transaction():
        await erasure.erase(conn, None, brand, member_id)  # under way: not committed
        flushing = asyncio.create_task(asyncio.to_thread(_flush_all, settings))
        await asyncio.sleep(1.0)
        assert not flushing.done()  # it waits for the erasure
    assert await asyncio.wait_for(flushing, 30) == 1
    stored = await _one(app, "SELECT * FROM verifications WHERE serial = %s", serial)
    assert [stored[k] for k in PERSONAL] == [None] * len(PERSONAL)


async def test_the_member_s_dead_verification_records_are_scrubbed(
    client: Any, app: Any, demo: Any
) -> None:
    """Review R6: a verification record PostgreSQL refused (a NUL in its client id) waits in
    ``dead_letters`` for the operators; the erasure clears the member's there as it does the
    stored ones. Another member's record — one whose id starts with the same digits too — and a
    record that no longer reads as JSON of another member are left as they were."""
    import msgspec

    brand = demo["BRAND-LUMI"]
    headers, leaving = await sign_in(client, app, brand)
    member_id = leaving["member"]["id"]

    def record(member: int | None, **extra: Any) -> bytes:
        return msgspec.json.encode(
            {"serial": "S-1", "client_ip": "10.9.8.7", "client_id": "dev\u0000ice",
             "user_agent": "Phone/1.0", "lat": 30.27, "lng": 120.15, "member_id": member,
             "result": "genuine", **extra}
        )  # fmt: skip

    mine, broken = record(member_id), record(member_id)[:-9]  # cut off: no JSON
    others = [
        record(member_id * 10 + 7),
        record(member_id * 10 + 7)[:-9],
        record(None),
        record(None, nested={"member_id": member_id}),  # the mark, not the record's member
    ]
    ids = []
    async with app.state.pool.connection() as conn:
        for payload in [mine, broken, *others]:
            row = await (
                await conn.execute(
                    """INSERT INTO dead_letters (queue, payload, reason)
                       VALUES ('verifications', %s, 'DataError: NUL') RETURNING id""",
                    (payload,),
                )
            ).fetchone()
            ids.append(row["id"])
    async with member_client(app) as mc:
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
    rows = []
    for id_ in ids:
        rows.append(await _one(app, "SELECT payload, reason FROM dead_letters WHERE id = %s", id_))
    scrubbed = msgspec.json.decode(bytes(rows[0]["payload"]))
    assert scrubbed["serial"] == "S-1" and scrubbed["result"] == "genuine"
    for key in ("client_ip", "client_id", "user_agent", "lat", "lng", "member_id"):
        assert scrubbed[key] is None, key
    assert bytes(rows[1]["payload"]) == b"" and "erased" in rows[1]["reason"]
    assert [bytes(r["payload"]) for r in rows[2:]] == others


async def test_the_erasure_cuts_its_dead_letters_reasons_to_their_first_line(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: a dead letter's reason was PostgreSQL's whole error, whose DETAIL and CONTEXT
    lines quote the refused record (the client's address, the phone); the erasure cleared the
    payloads of the member's letters and kept those. It cuts their reasons to the first line;
    another member's letter is left as it was."""
    import msgspec

    brand = demo["BRAND-LUMI"]
    phone = new_phone("137")
    headers, leaving = await sign_in(client, app, brand, phone)
    member_id = leaving["member"]["id"]
    quoted = 'DataError: refused\nCONTEXT:  JSON data, line 1: ..."client_ip":"10.9.8.7"'

    def record(member: int) -> bytes:
        return msgspec.json.encode({"serial": "S-1", "client_ip": "10.9.8.7", "member_id": member})

    async with app.state.pool.connection() as conn:
        ids = []
        for payload in (record(member_id), record(member_id * 10 + 7)):
            row = await (
                await conn.execute(
                    """INSERT INTO dead_letters (queue, payload, reason)
                       VALUES ('verifications', %s, %s) RETURNING id""",
                    (payload, quoted),
                )
            ).fetchone()
            ids.append(row["id"])
        row = await (  # a message to the phone failed for good: its copy, a reason of lines
            await conn.execute(
                """WITH o AS (
                       INSERT INTO sms_outbox (brand_id, member_id, phone, template, purpose,
                                               state)
                       VALUES (%s, %s, %s, 'otp', 'otp', 'failed') RETURNING *
                   )
                   INSERT INTO dead_letters (queue, payload, reason)
                   SELECT 'sms_outbox', convert_to(row_to_json(o)::text, 'UTF8'),
                          E'out of attempts: gateway answered 400\\nnumber ' || o.phone
                     FROM o RETURNING id""",
                (brand, member_id, phone),
            )
        ).fetchone()
        ids.append(row["id"])
    async with member_client(app) as mc:
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
    reasons = [
        (await _one(app, "SELECT reason FROM dead_letters WHERE id = %s", id_))["reason"]
        for id_ in ids
    ]
    async with app.state.pool.connection() as conn:
        await conn.execute("DELETE FROM dead_letters WHERE id = ANY(%s)", (ids,))
    assert reasons == ["DataError: refused", quoted, "out of attempts: gateway answered 400"]


async def test_a_claim_refused_by_postgres_after_the_erasure_is_set_aside_anonymous(
    client: Any, app: Any, demo: Any, settings: Any
) -> None:
    """Review: a member's record still queued at the erasure and refused by PostgreSQL after it
    (a NUL in its client id) was set aside in ``dead_letters`` whole, after the erasure had
    scrubbed the others there."""
    import asyncio

    import msgspec

    brand = demo["BRAND-LUMI"]
    headers, leaving = await sign_in(client, app, brand)
    member_id, serial = leaving["member"]["id"], f"Q-{secrets.token_hex(4)}"
    await _queue(
        settings, serial=serial, brand_id=brand, member_id=member_id, client_id="dev\u0000ice"
    )
    async with member_client(app) as mc:
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
    await asyncio.to_thread(_flush_all, settings)
    dead = await _one(
        app,
        "SELECT payload FROM dead_letters WHERE queue = 'verifications' "
        "AND position(%s IN payload) > 0",
        serial.encode(),
    )
    kept = msgspec.json.decode(bytes(dead["payload"]))
    assert kept["serial"] == serial and kept["result"] == "genuine"
    assert [kept[k] for k in PERSONAL] == [None] * len(PERSONAL)


async def test_a_record_naming_no_member_a_bigint_holds_is_set_aside_as_it_is(
    client: Any, app: Any, settings: Any
) -> None:
    """Review: a poison record whose member is ``true`` (or past a bigint) made the dead
    letter's own member lookup fail, and the flusher raised on every pass: the queue stopped."""
    import asyncio

    tag = secrets.token_hex(4)
    for n, member in enumerate((True, 2**63, -1)):  # and no record key: refused, every one
        await _queue(settings, serial=f"P-{tag}-{n}", member_id=member, record_key=None)
    await asyncio.to_thread(_flush_all, settings)  # raises if a record stops it
    for n in range(3):
        kept = await _one(
            app,
            "SELECT payload FROM dead_letters WHERE queue = 'verifications' "
            "AND position(%s IN payload) > 0",
            f"P-{tag}-{n}".encode(),
        )
        assert kept is not None, n


async def test_a_member_row_held_long_fails_the_flush_pass_and_keeps_the_queue(
    client: Any, app: Any, demo: Any, settings: Any
) -> None:
    """Review: the flusher's wait for a claim's member (FOR SHARE) had no bound: a row held for
    minutes outlived the queue's 30-s lock, and a second flusher trimmed records never stored.
    The wait is bounded (5 s): the pass fails as an outage does, the queue is left whole, and
    the next pass stores the record."""
    import asyncio

    import psycopg
    import redis as redis_sync

    _, member = await sign_in(client, app, demo["BRAND-LUMI"])
    member_id, serial = member["member"]["id"], f"Q-{secrets.token_hex(4)}"
    await _queue(settings, serial=serial, brand_id=demo["BRAND-LUMI"], member_id=member_id)
    queue = f"{settings.redis_namespace}:verif:queue"
    async with await psycopg.AsyncConnection.connect(settings.database_url) as holder:
        await holder.execute("SELECT 1 FROM members WHERE id = %s FOR UPDATE", (member_id,))
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await asyncio.to_thread(_flush_all, settings)
        assert redis_sync.Redis.from_url(settings.redis_url).llen(queue) >= 1  # not trimmed
        await holder.rollback()
    await asyncio.to_thread(_flush_all, settings)
    stored = await _one(app, "SELECT member_id FROM verifications WHERE serial = %s", serial)
    assert stored["member_id"] == member_id


async def test_a_redemption_and_the_erasure_of_its_member_at_once_never_deadlock(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A redemption holds the balance, then refers to the member; the erasure holds the member,
    then the balance: with the erasure taking the member FOR UPDATE (a session's first fix of a
    claim racing an erasure), the two deadlocked — 409 retry, and an erasure asked for refused
    (probe). One waits for the other now, in every one of ten tries."""
    service = await login("service")
    refused = []
    for _ in range(10):
        member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
        await give(client, login, member_id, 100)
        gift = await new_gift(client, login, name=f"E{secrets.token_hex(3)}", points_cost=10)
        answers = await asyncio.gather(
            redeem(app, headers, gift["id"]),
            redeem(app, headers, gift["id"]),
            client.post(f"/members/{member_id}/erase", headers=service, json={}),
        )
        refused += [a.json()["error"]["code"] for a in answers if a.status_code == 409]
        assert answers[2].status_code == 204, answers[2].text
    assert "retry" not in refused, refused


async def test_a_balance_past_a_32_bit_entry_is_forfeited_whole(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: the forfeiting entry of a balance over 2,147,483,647 points overflowed the
    ledger's integer column, so the member could never be erased (400 on every try)."""
    from app.members import points

    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with app.state.pool.connection() as conn:  # ~2,200 adjustments' worth, made quicker
        for _ in range(2):
            await points.post_entry(
                conn,
                member_id=member_id,
                brand_id=demo["BRAND-LUMI"],
                kind="adjustment",
                points=1_100_000_000,
                reason="test",
            )
    async with member_client(app) as member:
        gone = await member.delete("/members/me", headers=headers)
    assert gone.status_code == 204, gone.text
    row = await _one(
        app,
        """SELECT (SELECT balance FROM point_balances WHERE member_id = %s) AS balance,
                  (SELECT points FROM points_ledger WHERE member_id = %s AND kind = 'expiry')
                  AS forfeited""",
        member_id,
        member_id,
    )
    assert (row["balance"], row["forfeited"]) == (0, -2_200_000_000)


async def test_an_erasure_through_an_api_key_names_its_maker_on_the_forfeited_balance(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: member service's CRM (an API key the admin made, ``members.write``) erased a
    member on their request, and the ledger's entry forfeiting the balance had ``recorded_by``
    null — what the member's own erasure (``DELETE /members/me``) writes: staff's erasure read
    as the member's. It names the person behind the key now (``Principal.person``)."""
    from app.members import points

    member_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
    async with app.state.pool.connection() as conn:
        await points.post_entry(
            conn,
            member_id=member_id,
            brand_id=demo["BRAND-LUMI"],
            kind="adjustment",
            points=120,
            reason="test",
        )
    admin = await login("admin")
    key = await key_of(client, admin, ["members.write", "members.read"])
    erased = await client.post(f"/members/{member_id}/erase", headers=key)
    assert erased.status_code == 204, erased.text
    row = await _one(
        app,
        "SELECT points, recorded_by FROM points_ledger WHERE member_id = %s AND kind = 'expiry'",
        member_id,
    )
    maker = (await client.get("/auth/me", headers=admin)).json()["user_id"]
    assert (row["points"], row["recorded_by"]) == (-120, maker), row


async def test_a_number_that_opted_out_stays_opted_out_after_erasure_and_sign_up_again(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: the member's own opt-out (``marketing_opt_out``) went with the profile at the
    erasure, and the number signed up again was messaged, though the opt-out list was to stay
    ("a number that asked not to be messaged stays so"). The erasure puts it on the brand's
    list (``sms_opt_outs``, source ``member``)."""
    from app.sms.outbox import _skip_marketing

    brand, phone = demo["BRAND-LUMI"], new_phone()
    headers, _ = await sign_in(client, app, brand, phone)
    patched = await client.patch("/members/me", headers=headers, json={"marketing_opt_out": True})
    assert patched.status_code == 200, patched.text
    assert (await client.delete("/members/me", headers=headers)).status_code == 204
    _, again = await sign_in(client, app, brand, phone)
    assert again["signed_up"] is True
    # a new membership, a new profile, but its switch says what the list does (signed up opted out)
    assert again["member"]["marketing_opt_out"] is True
    listed = await _one(
        app, "SELECT source FROM sms_opt_outs WHERE brand_id = %s AND phone = %s", brand, phone
    )
    assert listed is not None and listed["source"] == "member"
    async with app.state.pool.connection() as conn:
        assert await _skip_marketing(conn, brand, phone, app.state.settings)


async def test_a_frozen_member_does_not_shed_the_freeze_by_erasure_and_sign_up_again(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: frozen for fraud, a member closed the membership and signed up again with the
    same phone a minute later, active: the erasure shed the freeze. The erasure stays allowed
    and keeps the freeze by a keyed hash of the phone (never the phone): the new membership
    starts frozen with the reason, staff see it carried over, and unfreezing it forgets it."""
    brand, phone, admin = demo["BRAND-LUMI"], new_phone(), await login("admin")
    headers, first = await sign_in(client, app, brand, phone)
    member_id = first["member"]["id"]
    frozen = await client.post(
        f"/members/{member_id}/freeze", headers=admin, json={"reason": "fraud"}
    )
    assert frozen.status_code == 200, frozen.text
    assert frozen.json()["freeze_carried_over"] is False
    assert (await client.delete("/members/me", headers=headers)).status_code == 204
    kept = await _one(
        app, "SELECT count(*) AS n FROM member_phone_freezes WHERE brand_id = %s", brand
    )
    assert kept["n"] >= 1
    headers, again = await sign_in(client, app, brand, phone)
    assert (again["signed_up"], again["member"]["status"]) == (True, "frozen")
    new_id = again["member"]["id"]
    await give(client, login, new_id, 100)
    gift = await new_gift(client, login, points_cost=30)
    assert_error(await redeem(app, headers, gift["id"]), 403, "member_frozen")
    await client.delete(f"/gifts/{gift['id']}", headers=admin)  # offered to no later test
    seen = (await client.get(f"/members/{new_id}", headers=admin)).json()
    assert (seen["status"], seen["frozen_reason"], seen["freeze_carried_over"]) == (
        "frozen",
        "fraud",
        True,
    )
    row = await _one(
        app, "SELECT phone_hash, reason FROM member_phone_freezes WHERE member_id = %s", new_id
    )
    assert row["reason"] == "fraud" and phone.encode() not in bytes(row["phone_hash"])
    lifted = await client.post(f"/members/{new_id}/unfreeze", headers=admin, json={})
    assert lifted.status_code == 200, lifted.text
    assert (lifted.json()["status"], lifted.json()["freeze_carried_over"]) == ("active", False)
    assert (
        await _one(app, "SELECT 1 FROM member_phone_freezes WHERE member_id = %s", new_id) is None
    )
    assert (await client.delete("/members/me", headers=headers)).status_code == 204
    _, third = await sign_in(client, app, brand, phone)  # unfrozen, then erased: nothing kept
    assert third["member"]["status"] == "active"


async def test_the_audit_of_a_freeze_keeps_no_words_about_the_member(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: the ``freeze``/``unfreeze`` audit rows copied the reasons staff wrote (a phone
    rung, a name, an address) into before/after, and no erasure clears the audit log — the
    erasure wiped ``frozen_reason`` and the audit kept the words. The audit records whether a
    reason was given (``reasoned``); the reason stays on the member while frozen, for staff, and
    on the kept freeze a membership of the phone signed up again carries over."""
    brand, phone = demo["BRAND-LUMI"], new_phone()
    _, signed = await sign_in(client, app, brand, phone)
    member_id = signed["member"]["id"]
    service, admin = await login("service"), await login("admin")
    tag = secrets.token_hex(3)
    said, appeal, again = f"rang 13912345678 {tag}", f"appeal 王小明 {tag}", f"幸福路 {tag} 号"
    url = f"/members/{member_id}"
    frozen = await client.post(f"{url}/freeze", headers=service, json={"reason": said})
    assert frozen.status_code == 200 and frozen.json()["frozen_reason"] == said  # staff see it
    thawed = await client.post(f"{url}/unfreeze", headers=service, json={"reason": appeal})
    assert thawed.status_code == 200, thawed.text
    assert (await client.post(f"{url}/freeze", headers=service, json={"reason": again})).is_success
    assert (await client.get(url, headers=admin)).json()["frozen_reason"] == again
    assert (await client.post(f"{url}/erase", headers=service)).status_code == 204
    assert (await client.get(url, headers=admin)).json()["frozen_reason"] is None
    _, anew = await sign_in(client, app, brand, phone)  # the freeze carried over, with its reason
    new_id = anew["member"]["id"]
    assert (await client.get(f"/members/{new_id}", headers=admin)).json()["frozen_reason"] == again
    trails = {}
    for member in (member_id, new_id):
        trail = await client.get(
            "/audit", headers=admin, params={"entity": "member", "entity_id": str(member)}
        )
        assert trail.status_code == 200, trail.text
        assert tag not in trail.text, trail.text
        trails[member] = [
            (e["action"], e["before"], e["after"]) for e in reversed(trail.json()["items"])
        ]
    assert trails[member_id][:3] == [
        ("freeze", {"status": "active", "reasoned": False},
         {"status": "frozen", "reasoned": True}),
        ("unfreeze", {"status": "frozen", "reasoned": True},
         {"status": "active", "reasoned": True}),
        ("freeze", {"status": "active", "reasoned": False},
         {"status": "frozen", "reasoned": True}),
    ]  # fmt: skip
    assert trails[member_id][3][0] == "erase"
    assert trails[new_id] == [
        ("freeze", {"status": "active", "reasoned": False},
         {"status": "frozen", "reasoned": True, "carried_over": True}),
    ]  # fmt: skip
    lifted = await client.post(f"/members/{new_id}/unfreeze", headers=service, json={})
    assert lifted.status_code == 200, lifted.text  # the phone's kept freeze forgotten
    (entry,) = [
        e
        for e in (
            await client.get(
                "/audit",
                headers=admin,
                params={"entity": "member", "entity_id": str(new_id), "action": "unfreeze"},
            )
        ).json()["items"]
    ]
    assert (entry["before"], entry["after"]) == (
        {"status": "frozen", "reasoned": True, "carried_over": True},
        {"status": "active", "reasoned": False},
    )


async def test_the_erasure_replaces_the_reasons_staff_wrote_on_the_ledger(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: a points adjustment's ``reason`` is staff's free text about the member (a call,
    an address), and the erased member's points still showed it — the ledger is append-only,
    and the erasure wiped every other staff note about the member. It replaces the reasons of
    the member's adjustments and manual expiries by "membership erased"; the entries, their
    points and kinds stay, as does the erasure's own expiry."""
    brand = demo["BRAND-LUMI"]
    member_id, _, _ = await new_member(app, brand)
    other, _, _ = await new_member(app, brand)
    admin, service = await login("admin"), await login("service")
    tag = secrets.token_hex(3)
    words = [f"补偿: 13912345678 张伟 {tag}", f"expired by hand: 幸福路 {tag} 号"]
    for who, points, kind, reason in [
        (member_id, 30, "adjustment", words[0]),
        (member_id, -5, "expiry", words[1]),
        (other, 10, "adjustment", f"another member {tag}"),
    ]:
        made = await client.post(
            "/points/adjustments",
            headers=admin,
            json={"member_id": who, "points": points, "kind": kind, "reason": reason,
                  "client_id": secrets.token_hex(8)},
        )  # fmt: skip
        assert made.status_code == 201, made.text
    assert (await client.post(f"/members/{member_id}/erase", headers=service)).status_code == 204
    ledger = await client.get(f"/members/{member_id}/points", headers=admin)
    assert ledger.status_code == 200, ledger.text
    assert tag not in ledger.text
    assert [(e["kind"], e["points"], e["reason"]) for e in ledger.json()["items"]] == [
        ("expiry", -25, "membership erased"),
        ("expiry", -5, "membership erased"),
        ("adjustment", 30, "membership erased"),
    ]
    assert tag not in (await client.get(f"/members/{member_id}", headers=admin)).text
    kept = await client.get(f"/members/{other}/points", headers=admin)  # another's: as it was
    assert [e["reason"] for e in kept.json()["items"]] == [f"another member {tag}"]


async def test_the_ledger_stays_append_only_but_for_the_erasure_s_reasons(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """The ledger's trigger (migration 0135) lets the erasure replace an erased member's
    reasons and nothing else: every UPDATE outside an erasure, any other column, another text,
    a member not erased, and every DELETE are refused (each in a transaction rolled back)."""
    import psycopg

    brand = demo["BRAND-LUMI"]
    erased, _, _ = await new_member(app, brand)
    living, _, _ = await new_member(app, brand)
    await give(client, login, erased, 10)
    await give(client, login, living, 10)
    service = await login("service")
    assert (await client.post(f"/members/{erased}/erase", headers=service)).status_code == 204
    erasing = ("SELECT set_config('tracecode.erasing', 'on', true)", ())
    update = "UPDATE points_ledger SET {} WHERE member_id = %s"
    erased_reason = "reason = 'membership erased'"
    for statements in [
        [(update.format(erased_reason), (erased,))],  # outside an erasure
        [erasing, (update.format(erased_reason + ", points = points + 1"), (erased,))],
        [erasing, (update.format("reason = 'another text'"), (erased,))],
        [erasing, (update.format(erased_reason), (living,))],  # not erased
        [erasing, ("DELETE FROM points_ledger WHERE member_id = %s", (erased,))],
        [("UPDATE points_ledger SET reason = reason WHERE false", ())],  # none: still refused
    ]:
        async with app.state.pool.connection() as conn:
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                async with conn.transaction():
                    for sql, args in statements:
                        await conn.execute(sql, args)  # type: ignore[arg-type]
    rows = await _one(
        app,
        "SELECT count(*) AS n, sum(points) AS total FROM points_ledger WHERE member_id = %s",
        living,
    )
    assert (rows["n"], rows["total"]) == (1, 10)


async def test_a_sign_in_racing_the_member_s_own_erasure_does_not_deadlock(
    client: Any, app: Any, login: Any, demo: Any, settings: Any
) -> None:
    """A probe's note, reproduced: a sign-in locks the phone's code, then the member's row; the
    erasure locked the member's row, then deleted the phone's codes — the two at once
    deadlocked (409 ``retry``). The erasure takes the phone's codes before the member's row now:
    the sign-in waits for it, then finds no code."""
    from tests.test_member_privacy import _a_verification_of, _erasure_held_after_its_member_update
    from tests.test_members_auth import login_body, plant

    brand = demo["BRAND-LUMI"]
    _, body = await sign_in(client, app, brand)
    member_id, phone = body["member"]["id"], body["member"]["phone"]
    await _a_verification_of(app, brand, member_id)
    code = await plant(app, brand, phone)
    blocker, erase = await _erasure_held_after_its_member_update(
        app, settings, client, await login("service"), member_id
    )
    try:
        signing = asyncio.create_task(
            client.post("/members/login", json=login_body(brand, phone, code))
        )
        await _waiting(app, "INSERT INTO members", "FROM member_otps")
        await blocker.rollback()  # the erasure goes on, to the phone's codes (before: a deadlock)
        erased, signed = await asyncio.wait_for(asyncio.gather(erase, signing), 30)
    finally:
        await blocker.close()
    assert erased.status_code == 204, erased.text
    assert_error(signed, 401, "otp_invalid")


async def _waiting(app: Any, *needles: str) -> None:
    """Wait (up to 10 s) until a backend running a statement containing one of ``needles``
    waits for a lock."""
    for _ in range(200):
        for needle in needles:
            row = await _one(
                app,
                """SELECT count(*) AS n FROM pg_stat_activity
                    WHERE wait_event_type = 'Lock' AND query ILIKE %s
                      AND datname = current_database()""",
                f"%{needle}%",
            )
            if row["n"]:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing blocked on {needles!r}")


async def test_a_profile_edit_waiting_on_an_erasure_writes_nothing_into_the_erased_row(
    client: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A probe: the erasure sets the profile (gender, birthday, e-mail, WeChat id, province,
    city) to NULL. A ``PATCH /members/me`` sent while it runs (the member's other tab, an app
    retry) loaded the member as active, waited for the member's row and, once the erasure
    committed, wrote the new e-mail, province and city into the erased row: personal data back
    on a closed membership nobody could erase again. The edit checks the status of the row it
    locked now: 401 ``member_erased`` (as the token answers from then on), nothing written."""
    from app.members import erasure

    brand = demo["BRAND-LUMI"]
    headers, body = await sign_in(client, app, brand)
    member_id = body["member"]["id"]
    profile = {"email": "after@example.com", "province": "浙江省", "city": "杭州市"}
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await erasure.erase(holder, None, brand, member_id, settings)  # not committed yet
        async with member_client(app) as mc:
            editing = asyncio.ensure_future(mc.patch("/members/me", headers=headers, json=profile))
            assert await lock_waiters(watch, 1), "the edit should wait for the member's row"
            await holder.commit()
            edited = await editing
    row = await _one(
        app, "SELECT status, email, province, city FROM members WHERE id = %s", member_id
    )
    assert row["status"] == "erased"
    assert (row["email"], row["province"], row["city"]) == (None, None, None), (
        f"personal data written into the erased member's row: {dict(row)} "
        f"(the edit answered {edited.status_code} {edited.text})"
    )
    assert_error(edited, 401, "member_erased")


async def test_an_erasure_keeps_the_phone_s_sign_in_code_throttle(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: one sign-in code a minute and ten a day per phone (README), yet a code asked
    for, a sign-in, the erasure and a code asked for again sent 4 codes to one phone in
    seconds: the erasure rewrote the number of the outbox rows the throttle counted by. Those
    rows keep a keyed hash of the phone (no phone) while the throttle reads them, and the
    retention sweep clears it once the day is over."""
    import psycopg
    from psycopg.rows import dict_row

    from app import retention
    from app.members.erasure import tombstone
    from app.sms.outbox import erased_phone_hash

    brand, phone = demo["BRAND-LUMI"], new_phone("137")
    asked = await client.post("/members/otp", json={"brand_id": brand, "phone": phone})
    assert asked.status_code == 202, asked.text
    headers, body = await sign_in(client, app, brand, phone)
    assert (await client.delete("/members/me", headers=headers)).status_code == 204
    again = await client.post("/members/otp", json={"brand_id": brand, "phone": phone})
    assert_error(again, 429, "sms_throttled")
    assert again.headers["Retry-After"]
    gone = tombstone(body["member"]["id"])
    row = await _one(
        app, "SELECT id, phone_hash FROM sms_outbox WHERE phone = %s AND purpose = 'otp'", gone
    )
    kept = bytes(row["phone_hash"])
    assert kept == erased_phone_hash(app.state.settings, phone) and phone.encode() not in kept
    assert await _one(app, "SELECT 1 FROM sms_outbox WHERE phone = %s", phone) is None
    async with await psycopg.AsyncConnection.connect(
        app.state.settings.database_url, autocommit=True, row_factory=dict_row
    ) as conn:  # the test's own row, queued two days ago: past both windows
        await conn.execute(
            "UPDATE sms_outbox SET created_at = created_at - interval '2 days' WHERE id = %s",
            (row["id"],),
        )
        await retention.sweep(conn, app.state.settings)  # another test's sweep may clear it
    aged = await _one(app, "SELECT phone_hash FROM sms_outbox WHERE id = %s", row["id"])
    assert aged["phone_hash"] is None
    later = await client.post("/members/otp", json={"brand_id": brand, "phone": phone})
    assert later.status_code == 202, later.text


async def test_an_erasure_keeps_the_phone_s_marketing_interval(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """The same for marketing, one message per phone and brand per interval: a campaign sent to
    a member, the membership erased and signed up again, the next campaign and reminder within
    the interval skip the phone (they counted the rows by the number the erasure rewrote)."""
    from app.sms.outbox import _skip_marketing
    from tests.test_sms_campaigns import _province_of_this_test, _template

    brand, phone, marketer = demo["BRAND-LUMI"], new_phone(), await login("marketer")
    province = await _province_of_this_test(app, brand, "台湾省")
    body = {
        "template_id": await _template(client, marketer),
        "audience": "members",
        "filter": {"provinces": [province]},
        "variables": {"season": "春季", "discount": "8"},
    }
    headers, _ = await sign_in(client, app, brand, phone)
    where = {"province": province}
    assert (await client.patch("/members/me", headers=headers, json=where)).status_code == 200
    made = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert made.status_code == 201, made.text
    assert made.json()["recipients"] == 1
    assert (await client.delete("/members/me", headers=headers)).status_code == 204
    headers, _ = await sign_in(client, app, brand, phone)
    assert (await client.patch("/members/me", headers=headers, json=where)).status_code == 200
    dry = await client.post("/sms/campaigns", headers=marketer, json={**body, "dry_run": True})
    assert dry.status_code == 201, dry.text
    assert (dry.json()["recipients"], dry.json()["skipped"]) == (0, 1)
    async with app.state.pool.connection() as conn:
        assert await _skip_marketing(conn, brand, phone, app.state.settings)
    # offered to no later campaign of the province
    assert (await client.delete("/members/me", headers=headers)).status_code == 204
