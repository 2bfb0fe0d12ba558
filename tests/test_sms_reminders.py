"""Reminders (M6): a member whose balance reaches a gift gets one SMS per period, through the
outbox (opt-out honoured), and not again for the same balance."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from app.sms import reminders
from tests import steady


@pytest.fixture
async def aconn(settings: Any) -> Any:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        yield conn


async def _member(conn: Any, brand: int, points: int, opted_out: bool = False) -> int:
    phone = steady.phone("136")
    cur = await conn.execute(
        "INSERT INTO members (brand_id, phone, marketing_opt_out) VALUES (%s, %s, %s) RETURNING id",
        (brand, phone, opted_out),
    )
    member_id = (await cur.fetchone())["id"]
    await _set_balance(conn, member_id, points)
    return int(member_id)


async def _set_balance(conn: Any, member_id: int, points: int) -> None:
    """The balance, with its ledger entry: ``check_balances`` of tests run alongside agrees."""
    await conn.execute(
        """INSERT INTO points_ledger (member_id, brand_id, kind, points, reason)
           SELECT m.id, m.brand_id, 'adjustment', %(p)s - coalesce(b.balance, 0), 'test'
             FROM members m LEFT JOIN point_balances b ON b.member_id = m.id
            WHERE m.id = %(m)s AND %(p)s <> coalesce(b.balance, 0)""",
        {"m": member_id, "p": points},
    )
    await conn.execute(
        """INSERT INTO point_balances (member_id, balance, updated_at) VALUES (%s, %s, clock_timestamp())
           ON CONFLICT (member_id) DO UPDATE
             SET balance = EXCLUDED.balance, updated_at = EXCLUDED.updated_at""",
        (member_id, points),
    )


async def _reminders(conn: Any, member_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT variables FROM sms_outbox WHERE member_id = %s AND purpose = 'reminder'",
        (member_id,),
    )
    return [r["variables"] for r in await cur.fetchall()]


async def _own_brand(client: Any, login: Any) -> int:
    """A brand of this test's own: no other test's gift is within its members' reach."""
    tag = secrets.token_hex(3).upper()
    brand = await client.post(
        "/orgs",
        headers=await login("platform"),
        json={"kind": "brand", "name": f"Reminders {tag}", "erp_code": f"RM-{tag}"},
    )
    assert brand.status_code == 201, brand.text
    return int(brand.json()["id"])


async def test_a_member_is_reminded_once_per_period_when_a_gift_is_within_reach(
    aconn: Any, client: Any, login: Any, settings: Any
) -> None:
    brand = await _own_brand(client, login)
    cost = 900_000 + secrets.randbelow(1000)
    name = f"提醒礼品{secrets.token_hex(2)}"
    await aconn.execute(
        "INSERT INTO gifts (brand_id, name, points_cost, kind, stock) VALUES (%s, %s, %s, 'offline', 5)",
        (brand, name, cost),
    )
    rich = await _member(aconn, brand, cost + 10)
    poor = await _member(aconn, brand, cost - 1)
    quiet = await _member(aconn, brand, cost + 10, opted_out=True)
    await reminders.scan(aconn, settings)
    reminded = await _reminders(aconn, rich)
    assert len(reminded) == 1
    assert reminded[0]["points"] == str(cost + 10) and reminded[0]["gift"]  # the cheapest gift
    assert await _reminders(aconn, poor) == [] and await _reminders(aconn, quiet) == []

    await reminders.scan(aconn, settings)  # nothing changed: nothing more
    await _set_balance(aconn, rich, cost + 20)  # changed, but within the period
    await reminders.scan(aconn, settings)
    assert len(await _reminders(aconn, rich)) == 1

    # a period later, with the marketing interval over too, the next change reminds again
    await aconn.execute(
        "UPDATE sms_reminders SET sent_at = now() - interval '31 days' WHERE member_id = %s",
        (rich,),
    )
    await aconn.execute(
        "UPDATE sms_outbox SET created_at = now() - interval '31 days' WHERE member_id = %s",
        (rich,),
    )
    await _set_balance(aconn, rich, cost + 30)
    await reminders.scan(aconn, settings)
    assert len(await _reminders(aconn, rich)) == 2
    # the poorer member reaches the gift: reminded
    await _set_balance(aconn, poor, cost)
    await reminders.scan(aconn, settings)
    assert len(await _reminders(aconn, poor)) == 1


async def test_a_reminder_the_outbox_refuses_is_set_aside_and_the_others_are_sent(
    aconn: Any, client: Any, login: Any, settings: Any
) -> None:
    """A probe: a gift whose name holds a character the outbox refuses (U+202E, a bidirectional
    override: refused at the edge only since a probe, so a gift named before, or written by
    SQL, keeps it) is a reminder ``enqueue`` refuses with 400 invalid_character. The scan's
    batch transaction rolled back, and its member was the oldest candidate, so it was in every
    batch: no member of any brand was reminded again, each scan failed the same way, and
    nothing was set aside or reported. Now that one reminder is dead-lettered, once."""
    poisoned, fine = await _own_brand(client, login), await _own_brand(client, login)
    cost = 800_000 + secrets.randbelow(1000)
    for brand, name in ((poisoned, "Gift \u202eevil"), (fine, "Good gift")):
        await aconn.execute(
            "INSERT INTO gifts (brand_id, name, points_cost, kind, stock) "
            "VALUES (%s, %s, %s, 'offline', 5)",
            (brand, name, cost),
        )
    bad = await _member(aconn, poisoned, cost + 1)  # the older candidate of the two
    good = await _member(aconn, fine, cost + 1)
    try:
        errors = []
        for _ in range(2):  # two sweeps
            try:
                await reminders.scan(aconn, settings)
            except Exception as exc:
                errors.append(exc)
        buried = await (
            await aconn.execute(
                "SELECT convert_from(payload, 'UTF8')::jsonb AS what, reason FROM dead_letters "
                "WHERE queue = 'sms_reminders' AND convert_from(payload, 'UTF8')::jsonb "
                "->> 'member_id' = %s",
                (str(bad),),
            )
        ).fetchall()
        assert errors == [], f"every reminder scan fails on one member: {errors[0]!r}"
        assert len(await _reminders(aconn, good)) == 1  # the good member beside it is reminded
        assert await _reminders(aconn, bad) == []
        assert len(buried) == 1, buried  # set aside once, not at every scan
        assert buried[0]["what"]["brand_id"] == poisoned
        assert "U+202E" in buried[0]["reason"], buried
    finally:  # the poison member is no candidate for later scans
        await aconn.execute("UPDATE gifts SET deleted_at = now() WHERE brand_id = %s", (poisoned,))


async def test_a_deactivated_brand_s_members_are_sent_no_reminder(
    aconn: Any, client: Any, login: Any, settings: Any
) -> None:
    """A probe: the platform operator turns a brand off (``POST /orgs/{id}/deactivate``: its
    members are refused until /activate). The reminder sweep still queued "your points are
    enough for a gift" SMS, in the brand's name, to its members — who cannot even sign in to
    redeem. Now members of an inactive brand are no reminder candidates (and the sender fails
    the brand's marketing queued before: ``tests/test_sms.py``)."""
    brand = await _own_brand(client, login)
    await aconn.execute(
        "INSERT INTO gifts (brand_id, name, points_cost, kind, stock) "
        "VALUES (%s, 'Scarf', 5, 'offline', 5)",
        (brand,),
    )
    off = await client.post(f"/orgs/{brand}/deactivate", headers=await login("platform"))
    assert off.status_code == 200, off.text
    member_id = await _member(aconn, brand, 10)  # balance 10 reaches the 5-point gift
    await reminders.scan(aconn, settings)
    assert await _reminders(aconn, member_id) == []


async def _checked_at(conn: Any, member_id: int) -> datetime | None:
    row = await (
        await conn.execute(
            "SELECT checked_at FROM sms_reminders WHERE member_id = %s", (member_id,)
        )
    ).fetchone()
    return row["checked_at"] if row else None


async def test_a_member_is_reminded_when_its_brands_offer_opens_or_changes(
    aconn: Any, client: Any, login: Any, settings: Any
) -> None:
    """A probe: a gift launched on a date (``valid_from`` ahead), a member whose points already
    cover it. The scan found nothing offered and recorded the member as checked; the launch
    came, and the member was never reminded — nor after a period, when the brand added a gift
    — until its balance happened to move. Now a member is looked at again when its brand's
    offer changed since (a gift created or updated, or one whose window opened), once: still
    at most one reminder per period, and a member looked at is not looked at again for
    nothing."""
    from tests.helpers import onboarded_brand

    org, admin = await onboarded_brand(client, login)
    brand = int(org["id"])
    cost = 600_000 + secrets.randbelow(1000)
    gift = {"name": "Launch gift", "points_cost": cost, "kind": "offline", "stock": 5}
    launch = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    made = await client.post("/gifts", headers=admin, json={**gift, "valid_from": launch})
    assert made.status_code == 201, made.text
    member = await _member(aconn, brand, cost + 1)
    quiet = await _member(aconn, brand, cost + 1, opted_out=True)
    await reminders.scan(aconn, settings)
    assert await _reminders(aconn, member) == []  # not offered yet
    # the launch day comes: the window opens, nothing is written
    await aconn.execute(
        "UPDATE gifts SET valid_from = now() - interval '1 minute' WHERE id = %s",
        (made.json()["id"],),
    )
    await reminders.scan(aconn, settings)
    assert len(await _reminders(aconn, member)) == 1
    checked = await _checked_at(aconn, quiet)  # opted out: looked at, not reminded
    assert checked is not None
    await reminders.scan(aconn, settings)  # nothing changed: not looked at again
    assert await _checked_at(aconn, quiet) == checked

    # a period later, the balance unchanged: nothing; the brand adds a gift: reminded again
    await aconn.execute(
        "UPDATE sms_reminders SET sent_at = now() - interval '31 days' WHERE member_id = %s",
        (member,),
    )
    await aconn.execute(
        "UPDATE sms_outbox SET created_at = now() - interval '31 days' WHERE member_id = %s",
        (member,),
    )
    await reminders.scan(aconn, settings)
    assert len(await _reminders(aconn, member)) == 1
    added = await client.post("/gifts", headers=admin, json={**gift, "name": "Second gift"})
    assert added.status_code == 201, added.text
    await reminders.scan(aconn, settings)
    assert len(await _reminders(aconn, member)) == 2
    assert await _checked_at(aconn, quiet) > checked  # type: ignore[operator]
    # the offer changes again within the period: once per period
    patched = await client.patch(f"/gifts/{added.json()['id']}", headers=admin, json={"stock": 9})
    assert patched.status_code == 200, patched.text
    await reminders.scan(aconn, settings)
    assert len(await _reminders(aconn, member)) == 2


async def test_another_members_redemption_is_no_new_offer_but_a_restock_from_none_is(
    aconn: Any, client: Any, login: Any, app: Any, settings: Any
) -> None:
    """A review: the offer's change was read from ``gifts.updated_at``, which every redemption
    moves (one fewer in stock), so every member who could afford a gift was reminded again each
    period, the same gift for the same balance, in any brand with redemptions. The offer
    changes (``offer_changed_at``, migration 0138) when a gift may have become one a member did
    not have: made, its cost, provinces or window changed, its stock back from none."""
    from tests.helpers import onboarded_brand
    from tests.points_support import member_client, new_member

    org, admin = await onboarded_brand(client, login)
    brand = int(org["id"])
    cost = 700_000 + secrets.randbelow(1000)
    gift = {"name": "Kettle", "points_cost": cost, "kind": "offline", "stock": 2}
    made = await client.post("/gifts", headers=admin, json=gift)
    assert made.status_code == 201, made.text
    member = await _member(aconn, brand, cost + 1)
    await reminders.scan(aconn, settings)
    assert len(await _reminders(aconn, member)) == 1

    async def a_period_passes() -> None:
        for table in ("sms_reminders SET sent_at", "sms_outbox SET created_at"):
            await aconn.execute(
                f"UPDATE {table} = now() - interval '31 days' WHERE member_id = %s", (member,)
            )

    await a_period_passes()
    other, headers, _ = await new_member(app, brand)  # takes one: the offer is no better
    await _set_balance(aconn, other, cost)
    async with member_client(app) as h5:
        got = await h5.post(
            "/members/me/redemptions",
            headers=headers,
            json={"gift_id": made.json()["id"], "client_id": secrets.token_hex(8)},
        )
    assert got.status_code == 201, got.text
    await reminders.scan(aconn, settings)
    assert len(await _reminders(aconn, member)) == 1  # not again for the same balance
    for stock in (0, 3):  # none left (nothing offered), then back: offered again
        patched = await client.patch(
            f"/gifts/{made.json()['id']}", headers=admin, json={"stock": stock}
        )
        assert patched.status_code == 200, patched.text
        await reminders.scan(aconn, settings)
    assert len(await _reminders(aconn, member)) == 2


async def _reminder_row(conn: Any, member_id: int) -> int:
    """The member's queued reminder, due again now (as after a gateway's "retry later")."""
    row = await (
        await conn.execute(
            "UPDATE sms_outbox SET state = 'pending', next_attempt_at = now() "
            "WHERE member_id = %s AND purpose = 'reminder' RETURNING id",
            (member_id,),
        )
    ).fetchone()
    assert row is not None
    return int(row["id"])


async def test_a_frozen_members_queued_reminder_is_failed_not_sent(
    aconn: Any, client: Any, login: Any, settings: Any
) -> None:
    """A probe: a reminder queued (or back for a retry), then its member frozen ("no more
    claims or redemptions") before the sender took it: "your points are enough for a gift" went
    out all the same. Now the sender's claim fails a marketing row of a member not active, as an
    opted-out phone's (``last_error`` "member frozen"); a member still active beside it is sent,
    and an erased member's reminder in flight is failed as before (opted out by the erasure)."""
    from app.sms import sender
    from app.sms.gateway import Result
    from app.sms.outbox import OPTED_OUT
    from tests.helpers import onboarded_brand

    org, admin = await onboarded_brand(client, login)
    brand = int(org["id"])
    await aconn.execute(
        "INSERT INTO gifts (brand_id, name, points_cost, kind, stock) "
        "VALUES (%s, 'Scarf', 5, 'offline', 5)",
        (brand,),
    )
    frozen, active, erased = [await _member(aconn, brand, 10) for _ in range(3)]
    await reminders.scan(aconn, settings)
    rows = {m: await _reminder_row(aconn, m) for m in (frozen, active, erased)}
    answer = await client.post(f"/members/{frozen}/freeze", headers=admin, json={"reason": "fraud"})
    assert answer.status_code == 200, answer.text
    # the erased member's reminder was in flight at the erasure (a pending one is failed by
    # it), and comes back for a retry
    await aconn.execute("UPDATE sms_outbox SET state = 'sending' WHERE id = %s", (rows[erased],))
    gone = await client.post(f"/members/{erased}/erase", headers=admin)
    assert gone.status_code == 204, gone.text
    await aconn.execute(
        "UPDATE sms_outbox SET state = 'pending', next_attempt_at = now() WHERE id = %s",
        (rows[erased],),
    )
    claimed = await sender.claim(aconn, ids=list(rows.values()))
    assert [c.id for c in claimed] == [rows[active]]
    await sender.record(aconn, "test", settings, [(claimed[0], Result("accepted", "t-1"))])
    states = {
        r["id"]: (r["state"], r["last_error"])
        for r in await (
            await aconn.execute(
                "SELECT id, state, last_error FROM sms_outbox WHERE id = ANY(%s)",
                (list(rows.values()),),
            )
        ).fetchall()
    }
    assert states == {
        rows[frozen]: ("failed", sender.MEMBER_FROZEN),
        rows[active]: ("sent", None),
        rows[erased]: ("failed", OPTED_OUT),
    }, states
