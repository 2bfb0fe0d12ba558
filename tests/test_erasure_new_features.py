"""The members' personal information in the features built after the erasure, the copy and the
retention (PIPL): fraud holds and their evidence (B5), lucky draws held with them (B4), WeChat
template messages (W5). A review found an erased member's held claims and draws credited when
their hold was released afterwards (the balance forfeited by the erasure grew again), the
client address and device of the ring detector's evidence kept in the member's holds and
copied into the audit log of every decision, and neither the evidence's addresses nor the
WeChat messages' openids and data ever cleared by the retention sweep."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app import retention
from tests.points_support import (
    claim_body,
    member_client,
    new_member,
    set_rule,
    shipped_goods,
)


async def _autocommit(app: Any) -> Any:
    return await psycopg.AsyncConnection.connect(
        app.state.pool.conninfo, autocommit=True, row_factory=dict_row
    )


async def _one(app: Any, sql: str, *args: Any) -> Any:
    async with app.state.pool.connection() as conn:
        return await (await conn.execute(sql, args)).fetchone()


def _ip() -> str:
    return str(ipaddress.ip_address("198.18.0.0") + secrets.randbelow(1 << 16))


async def _ring_hold(app: Any, brand: int, member: int, ip: str, days_ago: int = 0) -> int:
    """A hold of the ring detector's ``shared_device`` rule, its evidence as the rule writes it."""
    evidence = {
        "client_ip": ip,
        "user_agent": "RingPhone/1.0",
        "members": [member, member + 1],
        "checks": 4,
        "window_minutes": 60,
    }
    row = await _one(
        app,
        """INSERT INTO fraud_holds (brand_id, party_kind, party_id, rule, evidence, created_at)
           VALUES (%s, 'member', %s, 'shared_device', %s, now() - make_interval(days => %s))
           RETURNING id""",
        brand,
        member,
        Jsonb(evidence),
        days_ago,
    )
    return int(row["id"])


async def _held_draw(app: Any, demo: Any, member: int, hold: int, goods: dict[str, Any]) -> int:
    """A draw of the member's written held, in a campaign of its own (deleted: nobody else's
    draw falls into it) whose one prize, 50 points, is drawn every time."""
    return (await _a_draw(app, demo, member, goods, hold=hold))[1]


async def _a_draw(
    app: Any, demo: Any, member: int, goods: dict[str, Any], *, hold: int | None = None
) -> tuple[int, int]:
    """A draw of the member's in a campaign of its own (deleted: nobody else's draw falls into
    it): held by ``hold`` (its prize, 50 points, not drawn yet), else a parcel won and waiting
    to be handed over. (campaign id, draw id)"""
    async with app.state.pool.connection() as conn:
        campaign = await (
            await conn.execute(
                """INSERT INTO draw_campaigns (brand_id, name, starts_at, ends_at, product_ids,
                                               no_prize_weight, deleted_at)
                   VALUES (%s, %s, now() - interval '1 hour', now() + interval '1 day',
                           ARRAY[%s]::bigint[], 0, now())
                   RETURNING id""",
                (demo["BRAND-LUMI"], f"erasure {secrets.token_hex(3)}", goods["product_id"]),
            )
        ).fetchone()
        prize = await (
            await conn.execute(
                """INSERT INTO draw_prizes (campaign_id, name, kind, points, quantity, remaining,
                                            weight)
                   VALUES (%s, %s, %s, %s, 5, 5, 1) RETURNING id""",
                (
                    campaign["id"],
                    *(("50 points", "points", 50) if hold else ("Parcel", "gift", None)),
                ),
            )
        ).fetchone()
        row = await (
            await conn.execute(
                """INSERT INTO draws (campaign_id, brand_id, member_id, code_id, client_id,
                                      product_id, channel_org_id, verify_result, verify_reason,
                                      day, drawn_at, prize_id, prize_name, prize_kind,
                                      fulfil_status, hold_id, hold_state)
                   VALUES (%(campaign)s, %(brand)s, %(member)s, %(code)s, 'erasure-draw',
                           %(product)s, %(agent)s, 'genuine', 'first_query', current_date, now(),
                           %(prize)s, %(name)s, %(kind)s, %(status)s, %(hold)s, %(state)s)
                   RETURNING id""",
                {
                    "campaign": campaign["id"],
                    "brand": demo["BRAND-LUMI"],
                    "member": member,
                    "code": (1 << 61) + secrets.randbelow(1 << 60),  # no unit's: nobody else's
                    "product": goods["product_id"],
                    "agent": demo["AGENT-ZJ"],
                    "prize": None if hold else prize["id"],
                    "name": None if hold else "Parcel",
                    "kind": None if hold else "gift",
                    "status": "none" if hold else "pending",
                    "hold": hold,
                    "state": "held" if hold else None,
                },
            )
        ).fetchone()
    return int(campaign["id"]), int(row["id"])


async def test_an_erased_member_s_held_claims_and_draws_are_not_credited_on_release(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """The erasure forfeits the balance; a hold released afterwards credited the member's held
    claims and drew its held draws all the same: an erased membership with points again. The
    erasure rejects them, as it forfeits the balance: the codes stay taken, nothing credited."""
    brand = demo["BRAND-LUMI"]
    goods = await shipped_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rule(client, admin, goods["product_id"], 10)
    member_id, headers, _ = await new_member(app, brand)
    made = await client.post(
        "/forensics/holds", headers=admin, json={"party_kind": "member", "party_id": member_id}
    )
    assert made.status_code == 201, made.text
    hold = made.json()["id"]
    async with member_client(app) as mc:
        for serial in goods["units"][:2]:
            answer = await mc.post(
                "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, serial)
            )
            assert answer.status_code == 201, answer.text
            assert answer.json()["status"] == "under_review"
    draw_id = await _held_draw(app, demo, member_id, hold, goods)
    # the member's copy tells them apart from credited ones, as the claims' answers did
    async with member_client(app) as mc:
        copy = (await mc.get("/members/me/export", headers=headers)).json()
    assert [c["status"] for c in copy["point_claims"]] == ["under_review"] * 2
    assert [(d["status"], d["prize_name"]) for d in copy["draws"]] == [("under_review", None)]
    service = await login("service")
    erased = await client.post(f"/members/{member_id}/erase", headers=service)
    assert erased.status_code == 204, erased.text

    released = await client.post(f"/forensics/holds/{hold}/release", headers=admin, json={})
    assert released.status_code == 200, released.text
    assert released.json()["claims"] == {"held": 0, "released": 0, "rejected": 3}
    credited = await _one(
        app,
        """SELECT coalesce((SELECT balance FROM point_balances WHERE member_id = %s), 0) AS balance,
                  (SELECT count(*) FROM points_ledger WHERE member_id = %s
                      AND kind IN ('claim', 'draw')) AS entries""",
        member_id,
        member_id,
    )
    assert (credited["balance"], credited["entries"]) == (0, 0)
    drawn = await _one(
        app,
        """SELECT d.hold_state, d.prize_id, p.remaining FROM draws d
             JOIN draw_prizes p ON p.campaign_id = d.campaign_id WHERE d.id = %s""",
        draw_id,
    )
    assert (drawn["hold_state"], drawn["prize_id"], drawn["remaining"]) == ("rejected", None, 5)
    # the codes stay taken: another member's claim of them is refused
    _, other, _ = await new_member(app, brand)
    async with member_client(app) as mc:
        taken = await mc.post(
            "/members/me/claims",
            headers=other,
            json=claim_body(app.state.scheme, goods["units"][0]),
        )
    assert taken.status_code == 409, taken.text


async def test_a_release_and_the_erasure_of_its_member_at_once_leave_nothing_credited(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Whichever commits first — the release drawing the held draw (a points prize, the balance
    credited) or the erasure rejecting it — neither deadlocks, and the erased membership ends
    with no points: forfeited after the release, never drawn after the erasure."""
    from app.members.points import check_balances

    brand = demo["BRAND-LUMI"]
    goods = {"product_id": await _a_product(app, brand)}
    admin, service = await login("admin"), await login("service")
    for _ in range(4):
        member_id, _, _ = await new_member(app, brand)
        made = await client.post(
            "/forensics/holds", headers=admin, json={"party_kind": "member", "party_id": member_id}
        )
        assert made.status_code == 201, made.text
        hold = made.json()["id"]
        await _held_draw(app, demo, member_id, hold, goods)
        released, erased = await asyncio.gather(
            client.post(f"/forensics/holds/{hold}/release", headers=admin, json={}),
            client.post(f"/members/{member_id}/erase", headers=service),
        )
        assert (released.status_code, erased.status_code) == (200, 204), (
            released.text,
            erased.text,
        )
        left = await _one(app, "SELECT balance FROM point_balances WHERE member_id = %s", member_id)
        assert left is None or left["balance"] == 0
    async with app.state.pool.connection() as conn:
        assert await check_balances(conn) == []


async def _a_product(app: Any, brand: int) -> int:
    row = await _one(app, "SELECT id FROM products WHERE org_id = %s ORDER BY id LIMIT 1", brand)
    return int(row["id"])


async def test_the_erasure_clears_the_client_address_of_the_member_s_fraud_holds(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """The ring detector's evidence names the address and device the member checked codes from
    (copies of the verification records' fields, which the erasure clears): it goes with them.
    The hold stays — the rule, the other members' ids, the counts —, and so do the holds of the
    ring's other members, whose evidence is theirs."""
    brand, ip = demo["BRAND-LUMI"], _ip()
    member_id, headers, _ = await new_member(app, brand)
    other_id, _, _ = await new_member(app, brand)
    mine = await _ring_hold(app, brand, member_id, ip)
    theirs = await _ring_hold(app, brand, other_id, ip)
    async with member_client(app) as mc:
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
    row = await _one(app, "SELECT rule, state, evidence FROM fraud_holds WHERE id = %s", mine)
    assert (row["rule"], row["state"]) == ("shared_device", "open")
    assert row["evidence"] == {
        "members": [member_id, member_id + 1],
        "checks": 4,
        "window_minutes": 60,
    }
    kept = await _one(app, "SELECT evidence FROM fraud_holds WHERE id = %s", theirs)
    assert kept["evidence"]["client_ip"] == ip
    admin = await login("admin")
    shown = await client.get(f"/forensics/holds/{mine}", headers=admin)
    assert shown.status_code == 200 and ip not in shown.text


async def test_the_erasure_clears_the_staff_s_notes_on_the_member_s_fraud_holds(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A hold's notes are the reviewers' words about the member ("rang her on 138…, says the
    codes came from a friend"): they went nowhere on an erasure, unlike a draw's fulfilment
    note. They go; the hold stays, its rule, state and who decided it. Empty notes stay empty."""
    brand = demo["BRAND-LUMI"]
    member_id, headers, _ = await new_member(app, brand)
    admin = await login("admin")
    made = await client.post(
        "/forensics/holds",
        headers=admin,
        json={"party_kind": "member", "party_id": member_id, "note": "rang 13800138000"},
    )
    assert made.status_code == 201, made.text
    hold = made.json()["id"]
    decided = await client.post(
        f"/forensics/holds/{hold}/confirm", headers=admin, json={"note": "her friend Li Na"}
    )
    assert decided.status_code == 200, decided.text
    silent_id, silent_headers, _ = await new_member(app, brand)
    silent = await _ring_hold(app, brand, silent_id, _ip())
    async with member_client(app) as mc:
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
        assert (await mc.delete("/members/me", headers=silent_headers)).status_code == 204
    shown = await client.get(f"/forensics/holds/{hold}", headers=admin)
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert (body["note"], body["decision_note"]) == ("membership erased", "membership erased")
    assert (body["rule"], body["state"], body["decided_by"]) == (
        "manual",
        "confirmed",
        decided.json()["decided_by"],
    )
    assert "13800138000" not in shown.text and "Li Na" not in shown.text
    row = await _one(app, "SELECT note, decision_note FROM fraud_holds WHERE id = %s", silent)
    assert (row["note"], row["decision_note"]) == ("", "")


async def test_the_audit_of_a_hold_or_a_draw_s_fulfilment_keeps_no_words_about_the_member(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the audit rows of a hold's creation and decision copied its notes, and a draw's
    fulfilment the member's phone and the note (a parcel's address) — the audit log, which no
    erasure clears, kept what the erasure cleared from the hold and the draw. The audit keeps
    who did what; the words stay on the record (its author beside them) until the erasure."""
    brand, phone_in_note, address = demo["BRAND-LUMI"], "13912345678", f"{_ip()} 号 幸福路"
    member_id, _, phone = await new_member(app, brand)
    goods = await shipped_goods(client, login, app, demo)
    admin = await login("admin")
    made = await client.post(
        "/forensics/holds",
        headers=admin,
        json={"party_kind": "member", "party_id": member_id, "note": f"rang {phone_in_note}"},
    )
    assert made.status_code == 201, made.text
    hold = made.json()["id"]
    decided = await client.post(
        f"/forensics/holds/{hold}/release", headers=admin, json={"note": address}
    )
    assert decided.status_code == 200, decided.text
    campaign, draw = await _a_draw(app, demo, member_id, goods)
    url = f"/draws/{campaign}/results/{draw}/fulfil"
    fulfilled = await client.post(url, headers=admin, json={"note": f"SF 寄 {address}"})
    assert fulfilled.status_code == 200, fulfilled.text
    assert fulfilled.json()["phone"] == phone  # the admin sees it whole
    for entity, entity_id, actions in (
        ("fraud_hold", hold, {"create", "release"}),
        ("draw", draw, {"fulfil"}),
    ):
        trail = await client.get(
            "/audit", headers=admin, params={"entity": entity, "entity_id": str(entity_id)}
        )
        assert trail.status_code == 200, trail.text
        assert {e["action"] for e in trail.json()["items"]} == actions
        for words in (phone_in_note, address, phone):
            assert words not in trail.text, (entity, words)
    (entry,) = trail.json()["items"]  # the draw's: who was handed what stays
    assert (entry["after"]["fulfil_status"], entry["after"]["member_id"]) == (
        "fulfilled",
        member_id,
    )


async def test_the_erasure_forgets_the_addresses_the_phone_signed_in_from(
    app: Any, demo: Any
) -> None:
    """A probe: a member's sign-in makes its address a known client of the phone's account in
    the sign-in limits (Redis, 30 days, keyed by a keyed hash of the phone): the erasure left
    it, the erased phone's addresses there for a month. It goes with the membership."""
    from app.members.limits import login_account, member_limits

    brand, ip = demo["BRAND-LUMI"], _ip()
    _, headers, phone = await new_member(app, brand)
    limits = member_limits(app.state)
    account = login_account(brand, phone)
    await limits.login.succeeded(account, ip)  # as a sign-in by one-time code does
    known = limits.login._keys(account, ip)[4]
    assert await app.state.redis.hexists(known, ip)
    async with member_client(app) as mc:
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
    assert not await app.state.redis.exists(known)


async def test_a_hold_decision_s_audit_names_no_client_address(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """The audit of a decision copied the hold whole, its evidence's client address and user
    agent included, into the audit log — read by everyone with ``audit.read``, never cleared
    by an erasure or the retention. The hold keeps its evidence; the audit, the rest."""
    brand, ip = demo["BRAND-LUMI"], _ip()
    member_id, _, _ = await new_member(app, brand)
    hold = await _ring_hold(app, brand, member_id, ip)
    admin = await login("admin")
    confirmed = await client.post(f"/forensics/holds/{hold}/confirm", headers=admin, json={})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["evidence"]["client_ip"] == ip  # the reviewer sees it
    trail = await client.get(
        "/audit", headers=admin, params={"entity": "fraud_hold", "entity_id": str(hold)}
    )
    assert trail.status_code == 200, trail.text
    (entry,) = trail.json()["items"]
    assert entry["action"] == "confirm" and entry["after"]["state"] == "confirmed"
    assert entry["after"]["evidence"]["checks"] == 4
    assert ip not in trail.text and "RingPhone" not in trail.text


async def test_finished_wechat_messages_lose_their_payload_after_the_retention_days(
    app: Any, demo: Any
) -> None:
    """A template message's openid, data (a gift's name, a redemption code, a reply to a
    complaint) and link were kept for ever: they go as a finished SMS's number and variables do,
    ``TRACECODE_RETAIN_SMS_DAYS`` after it was queued; a message not yet sent keeps them."""
    settings = app.state.settings
    brand = demo["BRAND-LUMI"]
    member_id, _, _ = await new_member(app, brand)
    openid = f"o{secrets.token_hex(12)}"
    data = {"thing1": {"value": "Sun cream"}, "character_string2": {"value": "RC-123456"}}
    ids: dict[str, int] = {}
    async with await _autocommit(app) as conn:
        for name, state, days in (
            ("sent", "sent", 400),
            ("failed", "failed", 380),
            ("dead", "dead", 370),
            ("young", "sent", 10),
            ("pending", "pending", 400),
        ):
            row = await (
                await conn.execute(
                    """INSERT INTO wechat_messages (brand_id, member_id, kind, cause_key, data,
                                                     url, openid, state, created_at)
                       VALUES (%s, %s, 'redemption', %s, %s, 'https://h5.example/r/1', %s, %s,
                               now() - make_interval(days => %s))
                       RETURNING id""",
                    (brand, member_id, f"ret-{uuid.uuid4()}", Jsonb(data), openid, state, days),
                )
            ).fetchone()
            ids[name] = row["id"]
        await retention.sweep(conn, settings)  # another test's sweep may clear them first
        rows = {
            r["id"]: r
            for r in await (
                await conn.execute(
                    "SELECT id, openid, data, url, state FROM wechat_messages WHERE id = ANY(%s)",
                    (list(ids.values()),),
                )
            ).fetchall()
        }
    for name in ("sent", "failed", "dead"):
        row = rows[ids[name]]
        assert (row["openid"], row["data"], row["url"], row["state"]) == (None, {}, None, name)
    for name in ("young", "pending"):
        row = rows[ids[name]]
        assert (row["openid"], row["data"]) == (openid, data)


async def test_fraud_hold_evidence_loses_client_addresses_after_the_retention_days(
    app: Any, demo: Any
) -> None:
    """The evidence's address and device are copies of verification records' fields: kept no
    longer than those (``TRACECODE_RETAIN_SCAN_DETAILS_DAYS`` after the hold was opened), the
    hold and the rest of its evidence kept for the fraud it records."""
    settings = app.state.settings
    brand, ip = demo["BRAND-LUMI"], _ip()
    member_id, _, _ = await new_member(app, brand)
    old = await _ring_hold(app, brand, member_id, ip, days_ago=400)
    await _one(app, "UPDATE fraud_holds SET state = 'confirmed', decided_at = now() WHERE id = %s "
               "RETURNING id", old)  # fmt: skip
    young = await _ring_hold(app, brand, member_id, ip, days_ago=10)
    async with await _autocommit(app) as conn:
        await retention.sweep(conn, settings)  # another test's sweep may clear it first
    cleared = await _one(app, "SELECT state, evidence FROM fraud_holds WHERE id = %s", old)
    assert cleared["state"] == "confirmed"
    assert cleared["evidence"] == {
        "members": [member_id, member_id + 1],
        "checks": 4,
        "window_minutes": 60,
    }
    kept = await _one(app, "SELECT evidence FROM fraud_holds WHERE id = %s", young)
    assert (kept["evidence"]["client_ip"], kept["evidence"]["user_agent"]) == (ip, "RingPhone/1.0")


async def test_no_retention_keeps_the_new_kinds_too(app: Any) -> None:
    import msgspec

    settings = msgspec.structs.replace(
        app.state.settings, retain_scan_details_days=0, retain_sms_days=0
    )
    async with await _autocommit(app) as conn:
        swept = await retention.sweep(conn, settings)
    assert (swept.holds, swept.wechat) == (0, 0)


async def test_a_wechat_message_being_sent_as_its_member_is_erased_keeps_no_openid(
    app: Any, demo: Any
) -> None:
    """A probe: the sender claims a message (``sending``), calls WeChat outside any
    transaction, then records the outcome with the openid it read; an erasure in between wiped
    the openid but left the message ``sending``, and the record wrote the openid back. The
    erasure fails a message being sent too: the sender's record, fenced on ``sending``, stores
    nothing."""
    from app.wechat import sender
    from app.wechat.gateway import Outcome, TemplateMessage

    brand = demo["BRAND-LUMI"]
    member_id, headers, _ = await new_member(app, brand)
    openid = "o" + secrets.token_hex(12)
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO wechat_bindings (brand_id, openid, member_id) VALUES (%s, %s, %s)",
            (brand, openid, member_id),
        )
        row = await (
            await conn.execute(
                """INSERT INTO wechat_messages (brand_id, member_id, kind, cause_key, data)
                   VALUES (%s, %s, 'redemption', %s, '{"first": "x"}') RETURNING id""",
                (brand, member_id, f"erasure:{openid}"),
            )
        ).fetchone()
        await conn.commit()
        (claimed,) = await sender.claim(conn, 1, [row["id"]])
    async with member_client(app) as mc:
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
    message = TemplateMessage(touser=openid, template_id="t", url=None, data={"first": "x"})
    async with app.state.pool.connection() as conn:
        recorded = await sender._record(
            conn, app.state.settings, claimed, message, Outcome(status="sent", msgid="m1")
        )
        await conn.commit()
    kept = await _one(
        app, "SELECT openid, state, last_error FROM wechat_messages WHERE id = %s", row["id"]
    )
    assert recorded is None  # the claim was lost: the erasure failed it
    assert (kept["openid"], kept["state"], kept["last_error"]) == (
        None,
        "failed",
        "membership erased",
    )
