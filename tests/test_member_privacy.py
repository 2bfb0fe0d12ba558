"""Members' personal data across the domains: opt-outs and queued campaigns, erasure against
what is queued or recorded meanwhile, the audit log (probes)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg
from psycopg.rows import dict_row

from app.sms import sender
from app.sms.gateway import gateway_from_settings
from tests import steady
from tests.points_support import new_member
from tests.sms_gateway import LocalGateway
from tests.test_redemptions import give, new_gift, redeem


def _phone() -> str:
    return steady.phone("136")


async def _one(app: Any, sql: str, *args: Any) -> Any:
    async with app.state.pool.connection() as conn:
        return await (await conn.execute(sql, args)).fetchone()


async def _template(client: Any, headers: dict[str, str]) -> int:
    made = await client.post(
        "/sms/templates",
        headers=headers,
        json={"name": f"pp_{secrets.token_hex(3)}", "body": "新品上市{x}"},
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def _to_province(client: Any, marketer: dict[str, str], province: str) -> dict[str, Any]:
    """A members campaign's body, to the members of ``province``, with a template of its own."""
    return {
        "template_id": await _template(client, marketer),
        "audience": "members",
        "filter": {"provinces": [province]},
        "variables": {"x": "!"},
    }


async def _lonely_province(app: Any, brand: int, province: str) -> str:
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE members SET province = NULL WHERE brand_id = %s AND province = %s",
            (brand, province),
        )
    return province


async def test_an_opt_out_after_a_campaign_was_queued_stops_its_unsent_message(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: a campaign's messages leave over minutes or hours (SMS_CAMPAIGN_RATE,
    back-offs); a member opted out (TD, staff, or their own switch) before theirs left still got
    it. The opt-out fails the queued marketing messages."""
    marketer = await login("marketer")
    brand = demo["BRAND-LUMI"]
    province = await _lonely_province(app, brand, "宁夏回族自治区")
    phone = _phone()
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO members (brand_id, phone, province) VALUES (%s, %s, %s)",
            (brand, phone, province),
        )
    made = await client.post(
        "/sms/campaigns", headers=marketer, json=await _to_province(client, marketer, province)
    )
    assert made.status_code == 201 and made.json()["recipients"] == 1, made.text
    # the member opts out before the message left
    stop = await client.put(f"/sms/opt-outs/{phone}", headers=marketer)
    assert stop.status_code == 204, stop.text
    gateway = LocalGateway().start()
    try:
        config = gateway.settings(settings)
        gw = gateway_from_settings(config)
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            await conn.execute(
                "UPDATE sms_outbox SET next_attempt_at = now() WHERE campaign_id = %s",
                (made.json()["id"],),
            )
            await sender.drain(conn, gw, config)
        await gw.aclose()
        reached = {m["phone"] for m in gateway.messages()}
    finally:
        gateway.stop()
    assert phone not in reached  # opted out before it left: not sent


async def test_a_campaign_queued_during_an_erasure_leaves_no_phone_of_the_member(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a campaign queued while an erasure was under way (it read the member before the
    erasure committed) added a message to the erased member's whole phone after the erasure's
    rewrite of the outbox, and it was sent."""
    from app.members import erasure

    marketer = await login("marketer")
    brand = demo["BRAND-LUMI"]
    province = await _lonely_province(app, brand, "海南省")
    body = await _to_province(client, marketer, province)
    member_id, _, phone = await new_member(app, brand, province=province)
    async with app.state.pool.connection() as conn:
        async with conn.transaction():
            await erasure.erase(conn, None, brand, member_id)  # under way
            queued = client.post("/sms/campaigns", headers=marketer, json=body)
            campaign = asyncio.create_task(queued)
            await asyncio.sleep(1.5)
        # the erasure commits
    made = await asyncio.wait_for(campaign, 30)
    assert made.status_code == 201, made.text
    row = await _one(app, "SELECT count(*) AS n FROM sms_outbox WHERE phone = %s", phone)
    assert row["n"] == 0  # no message to (or naming) the erased member's number


async def test_the_fulfilment_audit_keeps_no_phone_of_an_erased_member(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: ``POST /redemptions/fulfil`` audited its whole answer, the member's masked phone
    (138****1234) with it, and the erasure left it: 7 of its 11 digits, beside the redemption."""
    member_id, headers, phone = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, name=f"P{secrets.token_hex(3)}", points_cost=10)
    made = await redeem(app, headers, gift["id"])
    assert made.status_code == 201, made.text
    clerk = await login("store_clerk")
    code = {"code": made.json()["code"]}
    done = await client.post("/redemptions/fulfil", headers=clerk, json=code)
    assert done.status_code == 200, done.text
    service = await login("service")
    assert (await client.post(f"/members/{member_id}/erase", headers=service)).status_code == 204
    trail = await client.get(
        "/audit",
        headers=await login("admin"),
        params={"entity": "redemption", "entity_id": str(made.json()["id"])},
    )
    assert trail.status_code == 200 and trail.json()["items"], trail.text
    masked = phone[:3] + "****" + phone[-4:]
    assert masked not in trail.text and phone not in trail.text


async def test_a_claim_recorded_without_redis_after_its_member_was_erased_is_anonymous(
    client: Any, demo: Any, app: Any
) -> None:
    """A probe: with Redis down a claim's record is inserted directly
    (``app.verify.fallback.insert_record``); a member erased while the claim was in flight had it
    stored whole (member, address, device, GPS), as the flusher's path does not (review R6)."""
    from datetime import UTC, datetime
    from uuid import uuid4

    from app.members import erasure
    from app.verify.fallback import insert_record
    from app.verify.record import Record
    from app.verify.regions import Place
    from app.verify.schemas import VerifyIn

    brand = demo["BRAND-LUMI"]
    member_id, _, _ = await new_member(app, brand)
    async with app.state.pool.connection() as conn:  # the erasure commits mid-claim
        await erasure.erase(conn, None, brand, member_id)
    serial = f"FB-{secrets.token_hex(4)}"
    record = Record(
        datetime.now(UTC),
        str(uuid4()),
        VerifyIn(serial=serial, pin="1234", client_id="device-9"),
        "10.9.8.7",
        "Phone/1.0",
        Place("浙江省", "杭州市", 30.27, 120.15),
    )
    record.serial, record.brand_id, record.member_id = serial, brand, member_id
    record.retry = f"tracecode-points:{member_id}:device-9"
    await insert_record(app.state.pool, record, "genuine", "first_query", 1)
    stored = await _one(app, "SELECT * FROM verifications WHERE serial = %s", serial)
    personal = ("member_id", "client_ip", "client_id", "user_agent", "lat", "lng", "retry")
    assert [stored[k] for k in personal] == [None] * len(personal)


async def test_a_members_own_opt_out_fails_its_queued_campaign_messages(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """The member's own switch (``PATCH /members/me``) fails what is queued to it, as staff's
    opt-out does."""
    marketer = await login("marketer")
    brand = demo["BRAND-LUMI"]
    province = await _lonely_province(app, brand, "青海省")
    member_id, headers, phone = await new_member(app, brand, province=province)
    made = await client.post(
        "/sms/campaigns", headers=marketer, json=await _to_province(client, marketer, province)
    )
    assert made.status_code == 201 and made.json()["recipients"] == 1, made.text
    off = await client.patch("/members/me", headers=headers, json={"marketing_opt_out": True})
    assert off.status_code == 200, off.text
    row = await _one(
        app, "SELECT state, last_error FROM sms_outbox WHERE member_id = %s", member_id
    )
    assert (row["state"], row["last_error"]) == ("failed", "opted out of marketing")
    assert phone not in str(row)


async def _a_verification_of(app: Any, brand: int, member_id: int) -> None:
    """A stored verification linked to the member (what an erasure unlinks)."""
    from app.verify.fallback import insert_record
    from app.verify.record import Record
    from app.verify.regions import Place
    from app.verify.schemas import VerifyIn

    serial = f"RG-{secrets.token_hex(4)}"
    record = Record(
        datetime.now(UTC),
        str(uuid4()),
        VerifyIn(serial=serial, pin="1234", client_id="device-rg"),
        "10.9.8.7",
        "Phone/1.0",
        Place("浙江省", "杭州市", 30.27, 120.15),
    )
    record.serial, record.brand_id, record.member_id = serial, brand, member_id
    await insert_record(app.state.pool, record, "genuine", "first_query", 1)


async def _blocked(app: Any, needle: str) -> None:
    """Wait (up to 10 s) until a backend running a statement containing ``needle`` waits for a
    lock."""
    for _ in range(200):
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
    raise AssertionError(f"nothing blocked on {needle!r}")


async def _erasure_held_after_its_member_update(
    app: Any, settings: Any, client: Any, service: dict[str, str], member_id: int
) -> tuple[Any, asyncio.Task[Any]]:
    """Start the member's erasure and hold it after it rewrote the member's row (its phone, a
    key) and before it takes the brand's marketing lock: a third transaction holds the member's
    verification row, which the erasure unlinks in between. Returns (blocker conn, task)."""
    blocker = await psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row)
    await blocker.execute(
        "SELECT 1 FROM verifications WHERE member_id = %s FOR UPDATE", (member_id,)
    )
    erase = asyncio.create_task(client.post(f"/members/{member_id}/erase", headers=service))
    await _blocked(app, "UPDATE verifications SET member_id = NULL")
    return blocker, erase


async def test_an_erasure_and_a_staff_opt_out_of_its_phone_at_once_do_not_deadlock(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: the erasure takes the brand's marketing lock after the member's row, and an
    opt-out took the lock before the phone's members: staff opting the number out while the
    member was being erased deadlocked (409 ``retry``). Member row, then the lock, everywhere."""
    brand = demo["BRAND-LUMI"]
    member_id, _, phone = await new_member(app, brand)
    await _a_verification_of(app, brand, member_id)
    service, marketer = await login("service"), await login("marketer")
    blocker, erase = await _erasure_held_after_its_member_update(
        app, settings, client, service, member_id
    )
    try:
        stop = asyncio.create_task(client.put(f"/sms/opt-outs/{phone}", headers=marketer))
        await _blocked(app, "UPDATE members SET marketing_opt_out")
        await blocker.rollback()  # the erasure goes on, to the marketing lock
        erased, stopped = await asyncio.wait_for(asyncio.gather(erase, stop), 30)
    finally:
        await blocker.close()
    assert (erased.status_code, stopped.status_code) == (204, 204), (erased.text, stopped.text)


async def test_two_batches_of_td_replies_naming_two_brands_in_either_order_do_not_deadlock(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: each reply's opt-out takes its brand's marketing lock to the callback's end, in
    the order the gateway listed them; two batches at once, A then B and B then A, deadlocked
    (409 ``retry``, nothing opted out). They go in one order — and a batch takes no brand's
    lock before every opt-out and member's row it names (another probe: it held one brand's
    lock while waiting for a member an erasure held, which takes that lock next), so the second
    batch here is not even held up by the first, which waits for an opt-out row."""
    import msgspec

    from app.sms.service import sign

    secret = "regress2-callback-secret"
    platform = await login("platform")
    tag = secrets.token_hex(3).upper()
    other = await client.post(
        "/orgs",
        headers=platform,
        json={"kind": "brand", "name": f"RG brand {tag}", "erp_code": f"RG-{tag}"},
    )
    assert other.status_code == 201, other.text
    one, two = demo["BRAND-LUMI"], int(other.json()["id"])
    x, y, z, w = (_phone() for _ in range(4))

    def signed(body: bytes) -> dict[str, str]:
        stamp = str(int(datetime.now(UTC).timestamp()))
        return {
            "Content-Type": "application/json",
            "X-Tracecode-Timestamp": stamp,
            "X-Tracecode-Signature": sign(secret, stamp, body),
        }

    def batch(*pairs: tuple[str, int]) -> Any:
        body = msgspec.json.encode(
            {"replies": [{"phone": p, "text": "TD", "brand_id": b} for p, b in pairs]}
        )
        return client.post("/sms/callbacks/http/replies", content=body, headers=signed(body))

    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, sms_callback_secret=secret)
    blocker = await psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row)
    try:
        # y's opt-out of brand two is being written elsewhere (a staff opt-out, uncommitted)
        await blocker.execute(
            "INSERT INTO sms_opt_outs (brand_id, phone, source) VALUES (%s, %s, 'api')", (two, y)
        )
        first = asyncio.create_task(batch((x, one), (y, two)))  # no brand's lock taken yet
        await _blocked(app, "INSERT INTO sms_opt_outs")
        second = await asyncio.wait_for(batch((z, two), (w, one)), 30)
        assert not first.done()
        await blocker.rollback()
        answers = [await asyncio.wait_for(first, 30), second]
    finally:
        app.state.settings = settings
        await blocker.close()
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]


async def test_a_members_own_opt_out_and_staffs_opt_out_of_its_phone_at_once_do_not_deadlock(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the member's own switch (member row, then the marketing lock) and staff's opt-out
    of its phone (the other way round) at once deadlocked, about one pair in five."""
    marketer, brand = await login("marketer"), demo["BRAND-LUMI"]
    failed = await _member_and_staff_at_once(client, app, marketer, brand, 40, True)
    assert failed == [], (len(failed), failed[:1])


async def _member_and_staff_at_once(
    client: Any, app: Any, marketer: dict[str, str], brand: int, times: int, opt_out: bool
) -> list[str]:
    """``times`` new members of ``brand`` each switching marketing off (``opt_out``) or back on while the
    brand's staff opt their phone out (or back in) at once: the answers refused."""
    failed = []
    for _ in range(times):
        _, headers, phone = await new_member(app, brand)
        if not opt_out:  # on the list first: both take it off
            assert (await client.put(f"/sms/opt-outs/{phone}", headers=marketer)).status_code == 204
        staff = client.put if opt_out else client.delete
        answers = await asyncio.gather(
            client.patch("/members/me", headers=headers, json={"marketing_opt_out": opt_out}),
            staff(f"/sms/opt-outs/{phone}", headers=marketer),
        )
        failed += [a.text for a in answers if a.status_code >= 300]
    return failed


async def test_answers_holding_a_members_personal_data_are_not_cacheable(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: ``GET /members/me`` (the whole phone), ``GET /members/me/export`` (the PIPL copy
    of everything held: phone, e-mail, birthday, client addresses, positions) and the staff
    directory's CSV export answered with no ``Cache-Control`` at all, so the browser (or the
    WebView of the H5 shell) could keep them on disk. Every answer to a request with
    credentials is ``no-store`` now, unless its route chose (``app/front.py``)."""
    from tests.points_support import member_client
    from tests.test_members_auth import sign_in

    headers, _ = await sign_in(client, app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        for path in ("/members/me", "/members/me/export"):
            answer = await mc.get(path, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.headers.get("cache-control") == "no-store", (path, answer.headers)
    admin = await login("admin")
    export = await client.get("/members", headers=admin, params={"format": "csv"})
    assert export.status_code == 200
    assert export.headers.get("cache-control") == "no-store", export.headers
    refused = await client.get("/members", headers=await login("agent_admin"))
    assert refused.status_code == 403 and refused.headers["cache-control"] == "no-store"
    # a route's own choice stands; an answer to nobody in particular is left alone
    asset = await client.get("/schema/assets/init.js", headers=admin)
    assert asset.headers["cache-control"] == "public, max-age=86400"
    async with member_client(app) as anonymous:  # no token, no cookie
        assert "cache-control" not in (await anonymous.get("/ping")).headers


# -- the member's switch and the brand's opt-out list agree ------------------------------------


async def _td(client: Any, app: Any, phone: str, brand: int | None = None) -> dict[str, int]:
    """A signed "TD" reply from ``phone`` (naming ``brand``, or no brand), its answer."""
    import msgspec

    from app.sms.service import sign

    secret = "agree-callback-secret"
    reply: dict[str, Any] = {"phone": phone, "text": "TD"}
    if brand is not None:
        reply["brand_id"] = brand
    body = msgspec.json.encode({"replies": [reply]})
    stamp = str(int(datetime.now(UTC).timestamp()))
    headers = {
        "Content-Type": "application/json",
        "X-Tracecode-Timestamp": stamp,
        "X-Tracecode-Signature": sign(secret, stamp, body),
    }
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, sms_callback_secret=secret)
    try:
        answer = await client.post("/sms/callbacks/http/replies", content=body, headers=headers)
    finally:
        app.state.settings = settings
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_a_td_reply_after_the_membership_was_erased_still_opts_the_number_out(
    client: Any, demo: Any, app: Any
) -> None:
    """A probe: a member sent the brand's marketing erased the membership, then answered TD to
    that SMS (the gateway naming no brand). The erasure had replaced the number on the brand's
    rows, keeping only its keyed hash, and the reply looked the brands up by the number alone:
    ignored, nobody opted out. It finds them by the hash too, while the SMS keeps it."""
    from app.sms import outbox

    brand = demo["BRAND-LUMI"]
    member_id, headers, phone = await new_member(app, brand)
    async with app.state.pool.connection() as conn:
        async with conn.transaction():
            sms = await outbox.enqueue(
                conn,
                brand_id=brand,
                phone=phone,
                template="reminder",
                variables={"points": "500", "gift": "礼品"},
                purpose="reminder",
                member_id=member_id,
                settings=app.state.settings,
            )
        assert sms
        await conn.execute(
            "UPDATE sms_outbox SET state = 'sent', provider = 'http' WHERE id = %s", (sms,)
        )
    assert (await client.delete("/members/me", headers=headers)).status_code == 204
    kept = await _one(app, "SELECT phone, phone_hash FROM sms_outbox WHERE id = %s", sms)
    assert kept["phone"] != phone and kept["phone_hash"] is not None
    assert await _td(client, app, phone) == {"opted_out": 1, "ignored": 0}
    listed = await _one(
        app, "SELECT source FROM sms_opt_outs WHERE brand_id = %s AND phone = %s", brand, phone
    )
    assert listed is not None and listed["source"] == "reply"


async def test_a_member_who_said_td_and_turns_marketing_back_on_is_marketed_again(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a member answered TD (the brand's list and their own switch set), then turned
    marketing back on in the profile: 200, ``marketing_opt_out`` false, yet every campaign still
    skipped them (the list). The phone leaves the brand's list in the same transaction, audited
    as staff's opt-in is."""
    marketer = await login("marketer")
    brand = demo["BRAND-LUMI"]
    province = await _lonely_province(app, brand, "西藏自治区")
    _, headers, phone = await new_member(app, brand, province=province)
    assert await _td(client, app, phone, brand) == {"opted_out": 1, "ignored": 0}
    assert (await client.get("/members/me", headers=headers)).json()["marketing_opt_out"] is True
    back = await client.patch("/members/me", headers=headers, json={"marketing_opt_out": False})
    assert back.status_code == 200, back.text
    assert back.json()["marketing_opt_out"] is False
    listed = await _one(
        app, "SELECT 1 FROM sms_opt_outs WHERE brand_id = %s AND phone = %s", brand, phone
    )
    assert listed is None
    body = {**await _to_province(client, marketer, province), "dry_run": True}
    dry = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert dry.status_code == 201, dry.text
    assert (dry.json()["recipients"], dry.json()["skipped"]) == (1, 0), dry.json()
    audited = await _one(
        app,
        """SELECT actor_user, org_id, after FROM audit_log
            WHERE action = 'sms.opt_in' AND entity_id = %s ORDER BY id DESC LIMIT 1""",
        phone[:3] + "****" + phone[-4:],
    )
    assert audited is not None
    assert (audited["actor_user"], audited["org_id"]) == (None, brand)


async def test_a_members_own_opt_in_and_staffs_opt_in_of_its_phone_at_once_do_not_deadlock(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """The member's switch back on takes the list's row before the member's, as staff's
    ``DELETE /sms/opt-outs/{phone}`` does."""
    marketer, brand = await login("marketer"), demo["BRAND-LUMI"]
    failed = await _member_and_staff_at_once(client, app, marketer, brand, 20, False)
    assert failed == [], (len(failed), failed[:1])


async def test_a_phone_on_the_brand_s_opt_out_list_signs_up_opted_out(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a phone that had answered TD to the brand (a store manager, a former member)
    signed up with ``marketing_opt_out`` false, while the brand never marketed to it. Sign-up
    reads the brand's list (a phone not on it signs up opted in)."""
    from tests.test_members_auth import sign_in

    brand = demo["BRAND-LUMI"]
    phone, other = _phone(), _phone()
    marketer = await login("marketer")
    assert (await client.put(f"/sms/opt-outs/{phone}", headers=marketer)).status_code == 204
    _, answer = await sign_in(client, app, brand, phone)
    assert (answer["signed_up"], answer["member"]["marketing_opt_out"]) == (True, True)
    _, answer = await sign_in(client, app, brand, other)
    assert (answer["signed_up"], answer["member"]["marketing_opt_out"]) == (True, False)


async def test_a_profile_form_saved_with_its_box_untouched_keeps_a_td_reply(
    client: Any, demo: Any, app: Any
) -> None:
    """A review: the profile form posts its box every time (unticked: false); a member opened
    the form, answered TD to the brand's SMS, then saved the form to change the city without
    touching the box — the save took the phone off the list, an opt-in never made. The box
    left as the page showed it posts nothing; and a ``false`` that changes nothing (a member
    shown opted in while on the list, signed up before sign-ups read it) is no opt-in."""
    import re

    from tests.test_h5_content import _csrf, _signed_in

    brand = demo["BRAND-LUMI"]
    for listed_before in (False, True):
        member_id, headers, phone = await new_member(app, brand)
        if listed_before:  # the state migration 0139 reconciles for members made before
            async with app.state.pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO sms_opt_outs (brand_id, phone, source) VALUES (%s, %s, 'reply')",
                    (brand, phone),
                )
        async with _signed_in(app, headers) as page:
            form = (await page.get("/member/profile")).text
            shown = re.search(r'name="marketing_opt_out_shown" value="([^"]*)"', form)
            assert shown is not None and shown.group(1) == "0", form
            if not listed_before:
                assert await _td(client, app, phone, brand) == {"opted_out": 1, "ignored": 0}
            body = {"csrf": _csrf(form), "province": "浙江省", "city": "杭州市", "lang": "en"}
            saved = await page.post(
                "/member/profile", data={**body, "marketing_opt_out_shown": "0"}
            )
            assert saved.status_code == 200, saved.text
        if listed_before:  # shown opted in already: the same false again changes nothing
            patched = await client.patch(
                "/members/me", headers=headers, json={"marketing_opt_out": False}
            )
            assert patched.status_code == 200, patched.text
        on_list = await _one(
            app, "SELECT 1 FROM sms_opt_outs WHERE brand_id = %s AND phone = %s", brand, phone
        )
        member = await _one(app, "SELECT city FROM members WHERE id = %s", member_id)
        assert on_list is not None and member["city"] == "杭州市", (listed_before, member)
    # migration 0139 sets such a member's switch from the list (what it shows is what is done)
    from pathlib import Path

    from app import migrations

    sql = Path(migrations.__file__).parent / "0139_members_opt_out_from_the_list.sql"
    async with app.state.pool.connection() as conn:
        await conn.execute(sql.read_text())
    row = await _one(app, "SELECT marketing_opt_out FROM members WHERE id = %s", member_id)
    assert row["marketing_opt_out"] is True


async def test_a_td_reply_racing_the_members_switch_on_leaves_list_and_switch_agreeing(
    client: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A note of the last review: a member who had switched marketing off turned it back on
    while a ``TD`` of theirs was being written (its list row not committed yet): the switch-on's
    delete did not see the row, and the two were left apart — the phone on the list, the switch
    on (shown opted in, skipped by every campaign). One change of a phone's opt-out at a time:
    the switch-on waits for the reply and then takes the phone off the list."""
    from app.sms.optouts import list_and_switch

    brand = demo["BRAND-LUMI"]
    member_id, headers, phone = await new_member(app, brand)
    off = await client.patch("/members/me", headers=headers, json={"marketing_opt_out": True})
    assert off.status_code == 200, off.text
    reply = await psycopg.AsyncConnection.connect(settings.database_url, row_factory=dict_row)
    try:
        assert await list_and_switch(reply, brand, phone, True, "reply") == 1  # not committed
        on = asyncio.create_task(
            client.patch("/members/me", headers=headers, json={"marketing_opt_out": False})
        )
        await asyncio.sleep(0.5)
        await reply.commit()
        answer = await asyncio.wait_for(on, 30)
    finally:
        await reply.close()
    assert answer.status_code == 200, answer.text
    listed = await _one(
        app, "SELECT 1 FROM sms_opt_outs WHERE brand_id = %s AND phone = %s", brand, phone
    )
    switch = await _one(app, "SELECT marketing_opt_out FROM members WHERE id = %s", member_id)
    assert (listed, switch["marketing_opt_out"]) == (None, False)
