"""Personal information kept no longer than needed (``app.retention``): a privacy probe found
consumers' addresses, agents and positions kept for ever, and the numbers of people who asked
for a sign-in code and never signed up with them."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row

from app import retention
from app.config import SettingsError, load_settings
from tests import steady

_RETAINED = " (personal data cleared: past its retention)"  # what a cleared letter's reason says


async def _conn(settings: Any) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, row_factory=dict_row
    )


async def _record(conn: Any, brand: int, days_ago: int, serial: str) -> None:
    await conn.execute(
        """INSERT INTO verifications (at, record_key, serial, brand_id, result, reason,
               client_ip, client_id, user_agent, province, city, lat, lng, retry)
           VALUES (now() - make_interval(days => %s), gen_random_uuid(), %s, %s, 'genuine',
                   'first_query', '10.1.2.3', 'device-9', 'Phone/2.0', '浙江省', '杭州市',
                   30.27, 120.15, 'tracecode-points:1:device-9')""",
        (days_ago, serial, brand),
    )


Letter = tuple[str, bytes, str, int]  # queue, payload, reason, days since it was set aside


async def _swept(settings: Any, letters: list[Letter]) -> tuple[list[dict[str, Any]], int, int]:
    """``letters`` written to ``dead_letters``, their queues' retention marks dropped, a sweep
    and then a second one run, the letters read back (payload as bytes) and deleted: their rows
    in order, and how many letters each sweep cleared."""
    async with await _conn(settings) as conn:
        marks = [f"dead:{queue}" for queue in {letter[0] for letter in letters}]
        await conn.execute("DELETE FROM retention_marks WHERE what = ANY(%s)", (marks,))
        ids = []
        for queue, payload, reason, days in letters:
            row = await (
                await conn.execute(
                    """INSERT INTO dead_letters (queue, payload, reason, at)
                       VALUES (%s, %s, %s, now() - make_interval(days => %s))
                       RETURNING id""",
                    (queue, payload, reason, days),
                )
            ).fetchone()
            ids.append(row["id"])
        first = (await retention.sweep(conn, settings)).letters
        second = (await retention.sweep(conn, settings)).letters
        rows = await (
            await conn.execute(
                "SELECT id, payload, reason FROM dead_letters WHERE id = ANY(%s)", (ids,)
            )
        ).fetchall()
        await conn.execute("DELETE FROM dead_letters WHERE id = ANY(%s)", (ids,))
    kept = {r["id"]: {**r, "payload": bytes(r["payload"])} for r in rows}
    return [kept[i] for i in ids], first, second


async def test_a_scans_details_are_cleared_after_the_retention_days(app: Any, demo: Any) -> None:
    settings = app.state.settings
    assert settings.retain_scan_details_days == 365  # the default
    token = secrets.token_hex(4)
    async with await _conn(settings) as conn:
        for days in (900, 400, 366, 300):  # years apart: the sweep skips the empty hours
            await _record(conn, demo["BRAND-LUMI"], days, f"RET-{token}-{days}")
        # another test's sweep (tests/test_erasure_new_features.py) may clear them first, or move
        # the mark past them between our insert and our sweep (a CI run: swept 0): swept again
        # from no mark until they are cleared, at most three times
        for _ in range(3):
            await conn.execute("DELETE FROM retention_marks WHERE what = 'scans'")
            await retention.sweep(conn, settings)
            rows = await (
                await conn.execute(
                    """SELECT serial, result, province, city, client_ip, client_id, user_agent,
                              lat, lng, retry FROM verifications WHERE serial LIKE %s
                        ORDER BY serial""",
                    (f"RET-{token}-%",),
                )
            ).fetchall()
            kept = {r["serial"].rsplit("-", 1)[1]: r for r in rows}
            if kept["900"]["client_ip"] is None and kept["366"]["client_ip"] is None:
                break
        details = ("client_ip", "client_id", "user_agent", "lat", "lng", "retry")
        for days in ("900", "400", "366"):  # the record stays, its region and result too
            assert [kept[days][k] for k in details] == [None] * 6, kept[days]
            assert (kept[days]["result"], kept[days]["province"]) == ("genuine", "浙江省")
        assert str(kept["300"]["client_ip"]) == "10.1.2.3" and kept["300"]["lat"] == 30.27
        mark = await (
            await conn.execute("SELECT done_at FROM retention_marks WHERE what = 'scans'")
        ).fetchone()
        assert mark is not None and mark["done_at"] is not None
        # the next sweep starts at the mark: nothing older is read or cleared again
        again = await retention.sweep(conn, settings)
        assert again.scans == 0


async def test_a_finished_sms_loses_its_number_after_the_retention_days(
    app: Any, demo: Any
) -> None:
    settings = app.state.settings
    brand, phone = demo["BRAND-LUMI"], steady.phone("139")
    async with await _conn(settings) as conn:
        ids = {}
        for name, state, days in (
            ("old", "sent", 400),
            ("failed", "failed", 380),
            ("young", "sent", 10),
            ("pending", "pending", 0),
        ):
            row = await (
                await conn.execute(
                    """INSERT INTO sms_outbox (brand_id, phone, template, variables, purpose,
                                               state, created_at)
                       VALUES (%s, %s, 'otp', '{"code": "246810"}', 'otp', %s,
                               now() - make_interval(days => %s))
                       RETURNING id""",
                    (brand, phone, state, days),
                )
            ).fetchone()
            assert row is not None
            ids[name] = row["id"]
        # rows of other tests before these, young, would stop the sweep (ids grow with time):
        # they were swept, say
        await conn.execute(
            """INSERT INTO retention_marks (what, done_id) VALUES ('sms', %s)
               ON CONFLICT (what) DO UPDATE SET done_id = EXCLUDED.done_id""",
            (ids["old"] - 1,),
        )
        await retention.sweep(conn, settings)
        rows = {
            r["id"]: r
            for r in await (
                await conn.execute(
                    "SELECT id, phone, variables, state FROM sms_outbox WHERE id = ANY(%s)",
                    (list(ids.values()),),
                )
            ).fetchall()
        }
        for name in ("old", "failed"):
            assert rows[ids[name]]["phone"] == retention.SMS_TOMBSTONE
            assert rows[ids[name]]["variables"] == {}
        for name in ("young", "pending"):  # the mark stops at the first young or pending row
            assert rows[ids[name]]["phone"] == phone
            assert rows[ids[name]]["variables"] == {"code": "246810"}
        mark = await (
            await conn.execute("SELECT done_id FROM retention_marks WHERE what = 'sms'")
        ).fetchone()
        assert mark is not None and ids["failed"] <= mark["done_id"] < ids["young"]
        # the pending one sent and old at last: a later sweep goes on from the mark
        await conn.execute(
            "UPDATE sms_outbox SET state = 'sent', created_at = now() - interval '400 days' "
            "WHERE id = ANY(%s)",
            ([ids["young"], ids["pending"]],),
        )
        later = await retention.sweep(conn, settings)
        assert later.sms >= 2
        left = await (
            await conn.execute("SELECT count(*) AS n FROM sms_outbox WHERE phone = %s", (phone,))
        ).fetchone()
        assert left is not None and left["n"] == 0


async def test_dead_letters_lose_their_personal_part_after_the_retention_days(
    app: Any, demo: Any
) -> None:
    """A probe: the operators' copies in ``dead_letters`` — a verification record PostgreSQL
    refused, a failed SMS — kept the scan's address, device and position and the phone number
    for ever, after the stored ones had lost them. They lose them as many days after they were
    set aside; the letters stay, the rest of their fields too."""
    settings = app.state.settings
    token = secrets.token_hex(4)
    record = {
        "serial": f"DL-{token}",
        "result": "genuine",
        "member_id": 7,
        "client_ip": "10.9.8.7",
        "client_id": "device-1",
        "user_agent": "Phone/1",
        "lat": 30.1,
        "lng": 120.2,
        "retry": "k",
    }
    sms = {"id": 1, "phone": "13912345678", "variables": {"code": "135790"}, "template": "otp"}
    rows, swept, again = await _swept(
        settings,
        [
            ("verifications", msgspec.json.encode(record), "refused", 400),
            ("verifications", f"not json {token} 10.9.8.7".encode(), "refused", 400),
            ("verifications", msgspec.json.encode(record), "refused", 10),
            ("sms_outbox", msgspec.json.encode(sms), "refused", 400),
            ("sms_outbox", msgspec.json.encode(sms), "refused", 10),
        ],
    )
    old, garbled, young, old_sms, young_sms = rows
    assert swept >= 3
    cleared = msgspec.json.decode(old["payload"])
    assert {k: cleared[k] for k in ("serial", "result", "member_id")} == {
        "serial": f"DL-{token}",
        "result": "genuine",
        "member_id": 7,
    }
    details = ("client_ip", "client_id", "user_agent", "lat", "lng", "retry")
    assert [cleared[k] for k in details] == [None] * 6
    assert "past its retention" in old["reason"]
    assert garbled["payload"] == b""
    assert msgspec.json.decode(young["payload"]) == record
    assert msgspec.json.decode(old_sms["payload"]) == {
        **sms,
        "phone": retention.SMS_TOMBSTONE,
        "variables": {},
    }
    assert msgspec.json.decode(young_sms["payload"]) == sms
    assert again == 0  # the marks moved past them: the next sweep reads none of them again


async def test_sign_in_codes_go_a_day_after_they_were_asked_for(app: Any, demo: Any) -> None:
    settings = app.state.settings
    phone = steady.phone("137")
    async with await _conn(settings) as conn:
        for hours in (30, 2):
            await conn.execute(
                """INSERT INTO member_otps (brand_id, phone, code_hash, created_at, expires_at)
                   VALUES (%s, %s, '\\x00', now() - make_interval(hours => %s),
                           now() - make_interval(hours => %s) + interval '5 minutes')""",
                (demo["BRAND-LUMI"], phone, hours, hours),
            )
        swept = await retention.sweep(conn, settings)
        assert swept.codes >= 1
        left = await (
            await conn.execute(
                "SELECT created_at > now() - interval '1 day' AS young FROM member_otps "
                "WHERE phone = %s",
                (phone,),
            )
        ).fetchall()
        assert [r["young"] for r in left] == [True]


async def test_no_retention_keeps_everything(app: Any, demo: Any) -> None:
    settings = msgspec.structs.replace(
        app.state.settings, retain_scan_details_days=0, retain_sms_days=0
    )
    token = secrets.token_hex(4)
    async with await _conn(settings) as conn:
        await conn.execute("DELETE FROM retention_marks")
        await _record(conn, demo["BRAND-LUMI"], 800, f"KEEP-{token}")
        swept = await retention.sweep(conn, settings)
        assert (swept.scans, swept.sms, swept.letters) == (0, 0, 0)
        row = await (
            await conn.execute(
                "SELECT client_ip FROM verifications WHERE serial = %s", (f"KEEP-{token}",)
            )
        ).fetchone()
        assert row is not None and str(row["client_ip"]) == "10.1.2.3"
        # the next sweep with the default days clears it (the mark had not moved)
        assert (await retention.sweep(conn, app.state.settings)).scans >= 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRACECODE_RETAIN_SCAN_DETAILS_DAYS": "7"}, "at least 30"),
        ({"TRACECODE_RETAIN_SMS_DAYS": "29"}, "at least 30"),
        (
            {"TRACECODE_RETAIN_SMS_DAYS": "30", "TRACECODE_SMS_MARKETING_INTERVAL_HOURS": "8760"},
            "SMS_MARKETING_INTERVAL_HOURS",
        ),
    ],
)
def test_retention_days_that_would_break_something_are_refused(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"TRACECODE_MASTER_KEY": "00" * 32, **env})


async def _old_code(conn: Any, brand: int) -> str:
    """A sign-in code asked for two days ago: the sweep's last step deletes it."""
    phone = steady.phone("137")
    await conn.execute(
        """INSERT INTO member_otps (brand_id, phone, code_hash, created_at, expires_at)
           VALUES (%s, %s, '\\x00', now() - interval '2 days', now() - interval '2 days')""",
        (brand, phone),
    )
    return phone


async def _codes_of(conn: Any, phone: str) -> int:
    row = await (
        await conn.execute("SELECT count(*) AS n FROM member_otps WHERE phone = %s", (phone,))
    ).fetchone()
    return int(row["n"])


async def test_a_hold_whose_evidence_is_no_object_stops_no_step(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a fraud hold whose evidence is a JSON string (an old release, a hand edit) past
    its days: ``evidence ? 'client_ip'`` is true of the string "client_ip", and ``evidence -
    'client_ip'`` raised "cannot delete from scalar" — the sweep stopped, and the steps after it
    (SMS numbers, WeChat messages, sign-in codes) never ran. Now such evidence is passed over,
    and any step that fails is logged and the others still run."""
    from tests.points_support import new_member
    from tests.test_forensics_holds import _hold

    settings = app.state.settings
    admin = await login("admin")
    ids = []
    for _ in range(2):
        member_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
        ids.append((await _hold(client, admin, "member", member_id))["id"])
    bad, good = ids
    async with await _conn(settings) as conn:
        await conn.execute(
            """UPDATE fraud_holds SET created_at = now() - interval '400 days',
                      evidence = CASE WHEN id = %s THEN '"client_ip"'::jsonb
                                      ELSE '{"client_ip": "10.9.9.9", "members": [1]}' END
                WHERE id = ANY(%s)""",
            (bad, ids),
        )
        phone = await _old_code(conn, demo["BRAND-LUMI"])
        swept = await retention.sweep(conn, settings)  # raised InvalidParameterValue
        evidence = await (
            await conn.execute("SELECT id, evidence FROM fraud_holds WHERE id = ANY(%s)", (ids,))
        ).fetchall()
        left = await _codes_of(conn, phone)
        await conn.execute("UPDATE fraud_holds SET evidence = '{}' WHERE id = %s", (bad,))
    kept = {r["id"]: r["evidence"] for r in evidence}
    assert kept == {good: {"members": [1]}, bad: "client_ip"}
    assert swept.holds >= 1 and left == 0


async def test_a_failing_step_is_logged_and_the_others_run(
    app: Any, demo: Any, monkeypatch: Any, caplog: Any
) -> None:
    """Each step of the sweep runs on its own: one that fails for whatever reason is logged
    with it, and the steps after it (here the sign-in codes) still run."""
    settings = app.state.settings
    monkeypatch.setattr(retention, "_HOLDS", "SELECT 1 / 0")
    async with await _conn(settings) as conn:
        phone = await _old_code(conn, demo["BRAND-LUMI"])
        swept = await retention.sweep(conn, settings)
        left = await _codes_of(conn, phone)
    assert swept.holds == 0 and left == 0
    assert any(
        "holds" in r.getMessage() and "DivisionByZero" in r.getMessage() for r in caplog.records
    )


async def test_a_record_timed_minus_infinity_loses_its_details_and_stops_nothing(
    app: Any, demo: Any
) -> None:
    """A probe: a verification record timed '-infinity' (a restore of old data, a hand edit)
    made the scans step read a ``min(at)`` Python cannot load, every sweep, and the steps after
    it never ran. Now the windows read finite times only, and such a record — older than any
    cutoff — loses its details as any record past its days."""
    settings = app.state.settings
    serial = f"RET-INF-{secrets.token_hex(4)}"
    async with await _conn(settings) as conn:
        await conn.execute("DELETE FROM retention_marks WHERE what = 'scans'")
        await conn.execute(
            """INSERT INTO verifications (at, record_key, serial, brand_id, result, reason,
                   client_ip, user_agent)
               VALUES ('-infinity', gen_random_uuid(), %s, %s, 'genuine', 'first_query',
                       '10.1.2.3', 'Phone/2.0')""",
            (serial, demo["BRAND-LUMI"]),
        )
        phone = await _old_code(conn, demo["BRAND-LUMI"])
        swept = await retention.sweep(conn, settings)  # raised DataError
        row = await (
            await conn.execute(
                "SELECT client_ip, user_agent FROM verifications WHERE serial = %s", (serial,)
            )
        ).fetchone()
        mark = await (
            await conn.execute("SELECT done_at FROM retention_marks WHERE what = 'scans'")
        ).fetchone()
        left = await _codes_of(conn, phone)
        await conn.execute("DELETE FROM verifications WHERE serial = %s", (serial,))
    assert swept.scans >= 1 and row == {"client_ip": None, "user_agent": None}
    assert mark is not None and mark["done_at"] is not None and left == 0


async def _old_sms(conn: Any, brand: int, phone: str, days: int = 400) -> int:
    row = await (
        await conn.execute(
            """INSERT INTO sms_outbox (brand_id, phone, template, variables, purpose, state,
                                       created_at)
               VALUES (%s, %s, 'otp', '{"code": "246810"}', 'otp', 'sent',
                       now() - make_interval(days => %s))
               RETURNING id""",
            (brand, phone, days),
        )
    ).fetchone()
    return int(row["id"])


async def test_a_gap_in_the_sms_ids_stops_no_sweep(app: Any, demo: Any) -> None:
    """A probe: a campaign of more than ``SMS_BLOCK`` recipients whose transaction rolled back
    burnt its ids (the sequence never gives them back). The sweep read the next ``SMS_BLOCK``
    ids after its mark, found no row there, took it for "nothing past the mark yet" — every
    sweep, for ever: no SMS queued after the gap lost its number. It reads the next rows now."""
    settings = app.state.settings
    brand, phone = demo["BRAND-LUMI"], steady.phone("139")
    async with await _conn(settings) as conn:
        before = await _old_sms(conn, brand, phone)
        # rows of other tests before this one, young, would stop the sweep: they were swept, say
        await conn.execute(
            """INSERT INTO retention_marks (what, done_id) VALUES ('sms', %s)
               ON CONFLICT (what) DO UPDATE SET done_id = EXCLUDED.done_id""",
            (before - 1,),
        )
        # the campaign's transaction, rolled back: its ids burnt
        async with conn.transaction(force_rollback=True):
            await conn.execute(
                """INSERT INTO sms_outbox (brand_id, phone, template, purpose)
                   SELECT %s, '13800000000', 'promo', 'campaign'
                     FROM generate_series(1, %s)""",
                (brand, retention.SMS_BLOCK + 1000),
            )
        after = await _old_sms(conn, brand, phone)
        assert after - before > retention.SMS_BLOCK
        swept = await retention.sweep(conn, settings)
        rows = await (
            await conn.execute(
                "SELECT id, phone, variables FROM sms_outbox WHERE id = ANY(%s)",
                ([before, after],),
            )
        ).fetchall()
        mark = await (
            await conn.execute("SELECT done_id FROM retention_marks WHERE what = 'sms'")
        ).fetchone()
    assert swept.sms >= 2
    assert [(r["phone"], r["variables"]) for r in rows] == [(retention.SMS_TOMBSTONE, {})] * 2
    assert mark is not None and mark["done_id"] >= after  # past the gap


def test_a_dead_letter_s_reason_is_the_first_line_of_the_error(settings: Any) -> None:
    """A probe: a dead letter's reason was the whole text of PostgreSQL's error, whose DETAIL
    and CONTEXT lines quote the refused record ("Failing row contains (…, 10.9.8.7, …)", the
    JSON around a bad character) — kept for ever: the retention clears the payload only. The
    reason is the error's type and first line now; a reason stored before is cut the same way,
    also one whose line breaks were made spaces (a control character in it)."""
    from app.deadletters import first_line, reason_of

    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        with pytest.raises(psycopg.errors.UntranslatableCharacter) as refused:
            pg.execute("""SELECT '{"client_ip":"10.9.8.7","client_id":"d\\u0000"}'::jsonb""")
    assert "10.9.8.7" in str(refused.value)  # in its CONTEXT line
    assert reason_of(refused.value) == (
        "UntranslatableCharacter: unsupported Unicode escape sequence"
    )
    legacy = (
        'CheckViolation: new row for relation "x" violates check constraint "y"  DETAIL:  '
        "Failing row contains (1, 10.9.8.7, Phone/2.0). (personal data cleared)"
    )
    assert (
        first_line(legacy)
        == 'CheckViolation: new row for relation "x" violates check constraint "y"'
    )
    assert first_line("out of attempts: gateway answered 500") == (
        "out of attempts: gateway answered 500"
    )
    assert first_line("") == ""


async def test_a_refused_record_s_dead_letter_quotes_no_client_in_its_reason(
    app: Any, demo: Any
) -> None:
    """The probe's case whole: a record with a NUL in its client id, refused by PostgreSQL and
    set aside by the flusher, names its client's address nowhere but in its payload — which
    loses it past its days, the letter's reason saying so."""
    import json
    import uuid

    import redis as redis_sync

    from app.verify import records

    settings = app.state.settings
    ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    record = {  # RecordRow's field order, as the verify script queues it
        "at": "2025-01-01T00:00:00Z",
        "record_key": str(uuid.uuid4()),
        "code_id": None,
        "serial": f"RET-DL-{secrets.token_hex(3)}",
        "brand_id": demo["BRAND-LUMI"],
        "product_id": None,
        "pin_given": False,
        "client_ip": ip,
        "client_id": "dev\u0000ice",
        "user_agent": "Phone/2.0",
        "province": None,
        "city": None,
        "lat": 30.1,
        "lng": 120.2,
        "result": "not_genuine",
        "reason": "malformed",
        "queries": 0,
    }
    payload = json.dumps(record, separators=(",", ":")).encode()
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    sync_redis.lpush(f"{settings.redis_namespace}:verif:queue", payload)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):
            pass
    async with await _conn(settings) as conn:
        letter = await (
            await conn.execute(
                "SELECT id, reason FROM dead_letters WHERE queue = 'verifications' "
                "AND payload = %s",
                (payload,),
            )
        ).fetchone()
        assert letter is not None
        set_aside = letter["reason"]
        await conn.execute(
            "UPDATE dead_letters SET at = now() - interval '400 days' WHERE id = %s",
            (letter["id"],),
        )
        await conn.execute("DELETE FROM retention_marks WHERE what = 'dead:verifications'")
        await retention.sweep(conn, settings)
        after = await (
            await conn.execute(
                "SELECT payload, reason FROM dead_letters WHERE id = %s", (letter["id"],)
            )
        ).fetchone()
        await conn.execute("DELETE FROM dead_letters WHERE id = %s", (letter["id"],))
    assert set_aside == "UntranslatableCharacter: unsupported Unicode escape sequence"
    assert msgspec.json.decode(bytes(after["payload"]))["client_ip"] is None
    assert after["reason"] == set_aside + _RETAINED


async def test_a_dead_letter_s_reason_stored_whole_is_cut_past_its_retention(
    app: Any, demo: Any
) -> None:
    """Letters set aside before: the sweep that clears their payload cuts their reason to its
    first line too (the lines after it quoted the record); one still within its days keeps
    all."""
    settings = app.state.settings
    token = secrets.token_hex(4)
    whole = (
        'CheckViolation: new row for relation "verifications" violates check constraint\n'
        f"DETAIL:  Failing row contains ({token}, 10.9.8.7, device-1, Phone/2.0, 30.1, 120.2)."
    )
    record = msgspec.json.encode({"serial": f"DL-{token}", "client_ip": "10.9.8.7"})
    flat = whole.replace("\n", " ")
    letters = [
        ("verifications", record, reason, days)
        for reason, days in ((whole, 400), (flat, 400), (whole, 10))
    ]
    old, flattened, young = (r["reason"] for r in (await _swept(settings, letters))[0])
    first = 'CheckViolation: new row for relation "verifications" violates check constraint'
    assert old == flattened == first + _RETAINED
    assert young == whole


async def test_a_failed_sms_s_copy_keeps_no_erased_phone_s_hash(
    client: Any, app: Any, demo: Any
) -> None:
    """A probe: a message in flight (``sending``) when its member was erased keeps a keyed hash
    of the phone for the throttles, which the sweep clears from the row once their windows are
    over; failing for good after, it was copied whole to ``dead_letters`` — the hash with it,
    which nothing cleared there. The copy is made without it now (null)."""
    from app.sms import sender
    from tests.points_support import new_member

    settings = app.state.settings
    brand = demo["BRAND-LUMI"]
    member_id, headers, phone = await new_member(app, brand)
    async with await _conn(settings) as conn:
        row = await (
            await conn.execute(
                """INSERT INTO sms_outbox (brand_id, member_id, phone, template, variables,
                                           purpose, state, attempts, claimed_at)
                   VALUES (%s, %s, %s, 'otp', '{"code": "112233"}', 'otp', 'sending', %s,
                           now() - interval '1 hour')
                   RETURNING id""",
                (brand, member_id, phone, settings.sms_max_attempts),
            )
        ).fetchone()
        sms_id = int(row["id"])
        erased = await client.delete("/members/me", headers=headers)
        assert erased.status_code == 204, erased.text
        assert await sender.recover(conn, settings) >= 1  # the sender died: failed, set aside
        kept = await (
            await conn.execute("SELECT phone_hash FROM sms_outbox WHERE id = %s", (sms_id,))
        ).fetchone()
        letter = await (
            await conn.execute(
                """SELECT id, payload FROM dead_letters WHERE queue = 'sms_outbox'
                      AND convert_from(payload, 'UTF8')::jsonb ->> 'id' = %s""",
                (str(sms_id),),
            )
        ).fetchone()
        assert letter is not None
        await conn.execute("DELETE FROM dead_letters WHERE id = %s", (letter["id"],))
    assert kept["phone_hash"] is not None  # the row's: the throttles still read it
    copy = msgspec.json.decode(bytes(letter["payload"]))
    assert copy["id"] == sms_id and copy["state"] == "failed"
    assert "phone_hash" in copy and copy["phone_hash"] is None, copy
    assert bytes(letter["payload"]).startswith(f'{{"id":{sms_id},'.encode())  # as erasure reads


async def _scan_pair(conn: Any, brand: int, member_id: int, at: str, serial: str) -> None:
    """A member's PIN check on the H5 page and the points claim made from its answer (the same
    retry key: recorded ``claim_retry``), four minutes apart from ``at`` on."""
    code_id = (1 << 62) + secrets.randbelow(1 << 40)
    for minutes, reason in ((0, "first_query"), (4, "claim_retry")):
        await conn.execute(
            f"""INSERT INTO verifications (at, record_key, code_id, serial, brand_id, result,
                   reason, pin_given, client_ip, user_agent, province, city, member_id, retry)
               VALUES ({at} + make_interval(mins => %s), gen_random_uuid(), %s, %s, %s,
                       'genuine', %s, true, '10.9.8.7', 'Phone/1.0', '浙江省', '杭州市', %s, %s)""",
            (minutes, code_id, serial, brand, reason, member_id, f"h5:{serial}"),
        )


async def test_a_member_s_scans_are_listed_alike_once_the_sweep_cleared_their_retry_keys(
    app: Any, client: Any, demo: Any, login: Any
) -> None:
    """A probe: the sweep nulled the retry key that pairs a claim made from the answer to the
    member's check with that check (``app.members.admin._ONE_SCAN``): the claim was listed as a
    second scan, ``scans_total`` 1 → 2, where the README promises counts unchanged. A record
    naming its member keeps the key's md5: the pair stays one scan — also while only the
    check is past its days and its claim, minutes younger, not yet."""
    settings = app.state.settings
    brand = demo["BRAND-LUMI"]
    token = secrets.token_hex(4)
    async with await _conn(settings) as conn:
        member = await (
            await conn.execute(
                "INSERT INTO members (brand_id, phone) VALUES (%s, %s) RETURNING id",
                (brand, steady.phone("137")),
            )
        ).fetchone()
        member_id = member["id"]
        old, edge = f"RPO{token}", f"RPE{token}"
        await _scan_pair(conn, brand, member_id, "now() - interval '400 days'", old)
        # the check past its days at the sweep, its claim not yet
        await _scan_pair(conn, brand, member_id, "now() - interval '365 days 2 minutes'", edge)
        admin = await login("admin")

        async def listed() -> tuple[int, int]:
            scans = await client.get(f"/members/{member_id}/scans", headers=admin)
            detail = await client.get(f"/members/{member_id}", headers=admin)
            return scans.json()["total"], detail.json()["scans_total"]

        assert await listed() == (2, 2)
        await conn.execute("DELETE FROM retention_marks WHERE what = 'scans'")
        await retention.sweep(conn, settings)
        assert await listed() == (2, 2)
        edge_keys = await (
            await conn.execute(
                "SELECT retry FROM verifications WHERE serial = %s ORDER BY at", (edge,)
            )
        ).fetchall()
        assert [(r["retry"] or "").startswith("md5:") for r in edge_keys] == [True, False]
        later = await (await conn.execute("SELECT now() + interval '1 hour' AS t")).fetchone()
        await retention.sweep(conn, settings, later["t"])  # the claim past its days too
        assert await listed() == (2, 2)
        keys = await (
            await conn.execute(
                "SELECT retry, client_ip FROM verifications WHERE serial IN (%s, %s)", (old, edge)
            )
        ).fetchall()
    assert len(keys) == 4
    assert all(r["client_ip"] is None and (r["retry"] or "").startswith("md5:") for r in keys), keys
    assert not any(token in r["retry"] for r in keys)  # the key itself is gone


async def test_a_dead_letter_repeating_a_key_loses_the_client_address_in_it(
    app: Any, demo: Any
) -> None:
    """A probe: a refused record whose JSON gives ``client_ip`` twice, the last null, decodes
    as cleared already (the last wins) and was left as it was — the address in its bytes for
    ever. Its payload is written again, each key once, cleared."""
    settings = app.state.settings
    ip = f"10.77.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    payload = (
        b'{"at":"2020-01-01T00:00:00Z","client_ip":"' + ip.encode() + b'","client_id":null,'
        b'"user_agent":null,"lat":null,"lng":null,"retry":null,"client_ip":null}'
    )
    [kept], _, _ = await _swept(settings, [("verifications", payload, "poison", 400)])
    assert ip.encode() not in kept["payload"], kept["payload"]
    assert msgspec.json.decode(kept["payload"])["client_ip"] is None
    assert kept["reason"] == "poison" + _RETAINED


async def test_a_dead_letter_holding_nothing_personal_is_left_as_it_is_however_spelled(
    app: Any, demo: Any
) -> None:
    """A review: a letter was written again whenever its bytes were not msgspec's spelling of
    its fields — an erased member's SMS copy (the number a tombstone, no variables) made with
    ``row_to_json``, a jsonb member spelled ``{"k": "v"}``, lost its reason to "personal data
    cleared" with nothing personal in it. Only a personal value, or a personal key given twice,
    is cleared; this letter is left as it is."""
    settings = app.state.settings
    token = secrets.token_hex(4)
    payload = (
        b'{"id":' + str(secrets.randbelow(10**9)).encode() + b',"phone":"'
        + retention.SMS_TOMBSTONE.encode() + b'","variables": {}, "template":"otp",'
        b'"meta": {"note": "' + token.encode() + b'", "tries": 1}}'
    )  # fmt: skip
    assert msgspec.json.encode(msgspec.json.decode(payload)) != payload
    [kept], _, _ = await _swept(settings, [("sms_outbox", payload, "failed", 400)])
    assert (kept["payload"], kept["reason"]) == (payload, "failed")
