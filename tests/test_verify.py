"""Consumer verification: answers, PIN lockout, rate limits, counts under concurrency, records,
Redis outage, alerts (SPEC V1–V5)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
import redis as redis_sync
from redis.asyncio import Redis

from app._core import parse_digital_link
from app.codes.scheme import serial_from_scan
from app.verify import records
from app.verify.fallback import decide
from app.verify.schemas import VerifyIn
from app.verify.service import Verifier
from tests.helpers import (
    activate,
    assert_error,
    issue_units,
    scheme_for_tests,
    served,
    within_one_minute,
)
from tests.race_support import audit_rows, twice_held

SHANGHAI = {"lat": 31.2, "lng": 121.5}
GUANGZHOU = {"lat": 23.1, "lng": 113.3}


async def _activated_batch(client: Any, login: Any, demo: Any, conn: Any, size: int = 50) -> int:
    """A batch of the sun cream whose units are all activated on a packing line."""
    batch_no, product_id = await issue_units(client, login, demo, size)
    scheme = scheme_for_tests()
    await activate(client, login, [scheme.serial(batch_no, i) for i in range(size)], product_id)
    return batch_no


@pytest.fixture
async def verifier_with(app: Any) -> AsyncIterator[Any]:
    """Swap the app's verifier for one with other settings, for one test."""
    original, made = app.state.verifier, []

    def swap(**changes: Any) -> Verifier:
        settings = msgspec.structs.replace(app.state.settings, **changes)
        app.state.verifier = Verifier(app.state.pool, app.state.redis, app.state.scheme, settings)
        made.append(app.state.verifier)
        return app.state.verifier  # type: ignore[no-any-return]

    yield swap
    app.state.verifier = original
    for verifier in made:
        await verifier.close()


async def _verify(client: Any, serial: str, pin: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"serial": serial, **extra}
    if pin is not None:
        body["pin"] = pin
    response = await client.post("/v1/verify", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_not_genuine_answers(client: Any, login: Any, demo: Any, app: Any, conn: Any) -> None:
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, size=10)
    serial = scheme.serial(batch_no, 1)
    forged = serial[:-1] + ("0" if serial[-1] != "0" else "1")
    cases = {
        forged: "forged",
        "NOT-A-SERIAL": "malformed",
        scheme.serial(batch_no, 10): "unknown",  # index past the batch
        scheme.serial(3_999_999_999, 0): "unknown",  # no such batch
    }
    issued = (
        await client.post(
            "/batches",
            headers=await login("planner"),
            json={"size": 5, "printer_id": demo["PRINTER-SH"]},
        )
    ).json()
    cases[scheme.serial(issued["batch_no"], 0)] = "not_activated"
    for text, reason in cases.items():
        answer = await _verify(client, text, "123456")
        assert answer["result"] == "not_genuine" and answer["reason"] == reason, (text, answer)
        assert "不是" in answer["message"] or "不正确" in answer["message"]
    await client.post(
        f"/batches/{batch_no}/void", headers=await login("planner"), json={"reason": "recall"}
    )
    app.state.verifier._batches.clear()
    voided = await _verify(client, serial, lang="en")
    assert voided["result"] == "not_genuine" and voided["reason"] == "void"
    assert "voided" in voided["message"]


async def test_a_lost_database_connection_is_replaced_without_an_error(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    serial = app.state.scheme.serial(await _activated_batch(client, login, demo, conn, 5), 0)
    assert (await _verify(client, serial))["serial"] == serial
    verifier = app.state.verifier
    lost = verifier._conn.info.backend_pid
    await conn.execute("SELECT pg_terminate_backend(%s)", (lost,))
    await conn.commit()
    answer = await _verify(client, serial)  # the round reconnects and answers
    assert answer["serial"] == serial and answer["product"]["name"].startswith("Sun Cream")
    assert verifier._conn.info.backend_pid != lost


async def test_genuine_first_then_repeat_then_over_threshold(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, verifier_with: Any
) -> None:
    verifier_with(verify_flag_never_shipped=False, verify_repeat_threshold=3)
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    serial = scheme.serial(batch_no, 7)
    pin = scheme.pin(serial)
    scan = await _verify(client, f"https://id.example.com/c/{serial}")
    assert scan["result"] == "unconfirmed" and scan["reason"] == "pin_required"
    assert scan["queries"] == 0
    assert scan["product"]["name"].startswith("Sun Cream")
    first = await _verify(client, serial.lower(), pin, gps=SHANGHAI)
    assert (first["result"], first["reason"], first["queries"]) == ("genuine", "first_query", 1)
    assert first["first_query_place"] == "上海市"
    second = await _verify(client, serial, pin, gps=SHANGHAI, lang="en")
    assert (second["reason"], second["queries"]) == ("repeat_query", 2)
    assert "checked 2 times" in second["message"] and "in Shanghai" in second["message"]
    assert second["first_query_place"] == "Shanghai" and "上海" not in second["message"]
    assert second["first_query_at"] == first["first_query_at"]
    await _verify(client, serial, pin, gps=SHANGHAI)
    fourth = await _verify(client, serial, pin, gps=SHANGHAI)
    assert (fourth["result"], fourth["reason"], fourth["queries"]) == (
        "suspicious",
        "over_threshold",
        4,
    )
    assert "警告" in fourth["message"]
    # scanning without a PIN now also warns: the code has been checked too often
    assert (await _verify(client, serial))["reason"] == "over_threshold"


async def test_region_jump_and_never_shipped(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, verifier_with: Any
) -> None:
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    serial = scheme.serial(batch_no, 2)
    never = await _verify(client, serial, scheme.pin(serial))
    assert (never["result"], never["reason"]) == ("suspicious", "never_shipped")
    verifier_with(verify_flag_never_shipped=False)
    other = scheme.serial(batch_no, 3)
    await _verify(client, other, scheme.pin(other), gps=SHANGHAI)
    jump = await _verify(client, other, scheme.pin(other), gps=GUANGZHOU)
    assert (jump["result"], jump["reason"]) == ("suspicious", "region_jump")
    assert "上海市" in jump["message"]
    # a probe: 1 km apart, one fix placed in Hangzhou, the other in Zhejiang only — no jump
    near = scheme.serial(batch_no, 4)
    first = await _verify(client, near, scheme.pin(near), gps={"lat": 30.805, "lng": 120.15})
    again = await _verify(client, near, scheme.pin(near), gps={"lat": 30.815, "lng": 120.15})
    places = {first["first_query_place"], again["first_query_place"]}
    assert (again["result"], again["reason"]) == ("genuine", "repeat_query"), (again, places)


async def test_a_check_in_shenzhen_after_one_in_guangzhou_is_no_region_jump(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, verifier_with: Any
) -> None:
    """A probe: a pack checked with its PIN in Guangzhou, then by its buyer in Shenzhen's
    Futian, was answered ``region_jump``: the nearest provincial capital to Shenzhen is Hong
    Kong's centre (27 km), so the scan was recorded in Hong Kong. Hong Kong and Macao now name
    only points inside their outlines; Shenzhen and Zhuhai are Guangdong."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, size=5)
    verifier_with(verify_flag_never_shipped=False)
    serial = scheme.serial(batch_no, 3)
    await _verify(client, serial, scheme.pin(serial), gps={"lat": 23.13, "lng": 113.26})
    again = await _verify(client, serial, scheme.pin(serial), gps={"lat": 22.54, "lng": 114.06})
    assert (again["result"], again["reason"]) == ("genuine", "repeat_query"), again


@pytest.mark.parametrize(
    ("lat", "lng", "province"),
    [
        (22.54, 114.06, "广东省"),  # Shenzhen, Futian
        (22.48, 113.915, "广东省"),  # Shekou, across Deep Bay from Hong Kong
        (22.27, 113.58, "广东省"),  # Zhuhai
        (22.13, 113.52, "广东省"),  # Hengqin, beside Cotai
        (22.28, 114.16, "香港特别行政区"),  # Central
        (22.50, 114.13, "香港特别行政区"),  # Sheung Shui, by the border
        (22.31, 113.92, "香港特别行政区"),  # the airport
        (22.19, 113.54, "澳门特别行政区"),  # the Macao peninsula
        (22.12, 113.565, "澳门特别行政区"),  # Coloane
    ],
)
def test_gps_fixes_by_hong_kong_and_macao(lat: float, lng: float, province: str) -> None:
    """A probe's follow-up: a fix is placed in a special administrative region only inside
    its outline, and a mainland fix beside one in Guangdong."""
    from app.verify.regions import from_gps

    place = from_gps(lat, lng)
    assert place is not None and place.province == province, place


async def test_an_ipv4_client_seen_as_an_ipv4_mapped_address_is_placed_by_the_ip_table(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """A probe: on a dual-stack listener (``TRACECODE_HOST=::``) an IPv4 client's peer address
    reaches the app as ``::ffff:203.0.113.7``. The limits counted it as its IPv4 address
    (``client_bucket``), but the IP table looked up IPv4 text only (``IpTable._lookup``): the
    first check's place was unknown (``first_query_place`` null, no province or city in the
    record, no ``region_jump``), while the same client on an IPv4 listener is placed in
    Hangzhou. An IPv4-mapped IPv6 address is now looked up as its IPv4 address."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, 3)
    serial = scheme.serial(batch_no, 2)
    transport = httpx.ASGITransport(app=app, client=("::ffff:203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as mapped:
        answer = await mapped.post(
            "/v1/verify", json={"serial": serial, "pin": scheme.pin(serial), "lang": "en"}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["queries"] == 1, body
    assert body["first_query_place"] == "Hangzhou, Zhejiang", body


async def test_wrong_pins_lock_the_code_until_the_lockout_expires(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, verifier_with: Any
) -> None:
    verifier_with(verify_flag_never_shipped=False, pin_max_failures=3, pin_lockout_seconds=2)
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    serial = scheme.serial(batch_no, 4)
    right = scheme.pin(serial)
    wrong = "000000" if right != "000000" else "111111"
    assert (await _verify(client, serial, wrong))["pin_attempts_left"] == 2
    assert (await _verify(client, serial, wrong))["pin_attempts_left"] == 1
    locked = await _verify(client, serial, wrong)
    assert locked["result"] == "locked" and 0 < locked["retry_after"] <= 2
    still = await _verify(client, serial, right)
    assert still["result"] == "locked"  # even the right PIN waits
    await asyncio.sleep(2.2)
    assert (await _verify(client, serial, right))["reason"] == "first_query"

    other = scheme.serial(batch_no, 5)  # a right PIN forgets the wrong ones before it
    assert (await _verify(client, other, wrong))["pin_attempts_left"] == 2
    assert (await _verify(client, other, wrong))["pin_attempts_left"] == 1
    assert (await _verify(client, other, scheme.pin(other)))["reason"] == "first_query"
    assert (await _verify(client, other, wrong))["pin_attempts_left"] == 2
    without_pin = await _verify(client, other, None)
    assert (without_pin["result"], without_pin["queries"]) == ("unconfirmed", 1)


async def test_rate_limit_per_client_ip(client: Any, app: Any, verifier_with: Any) -> None:
    verifier_with(verify_rate_limit=3)
    await within_one_minute()  # the four are counted in one clock minute
    await app.state.redis.delete(
        *[
            k
            async for k in app.state.redis.scan_iter(
                match=f"{app.state.settings.redis_namespace}:rl:*"
            )
        ]
        or ["none"]
    )
    for _ in range(3):
        await _verify(client, "NOT-A-SERIAL")
    limited = await client.post("/v1/verify", json={"serial": "NOT-A-SERIAL"})
    error = assert_error(limited, 429, "rate_limited")
    assert error["details"]["retry_after"] >= 1 and limited.headers["retry-after"]


async def test_rate_limit_counts_each_of_a_round(client: Any, app: Any, verifier_with: Any) -> None:
    """Verifications from one address that share a round count one by one: of 8 at once under
    a limit of 5, exactly 3 are refused, and the minute's counter holds all 8."""
    verifier_with(verify_rate_limit=5)
    if time.time() % 60 > 55:  # the counter is per minute: keep the 8 within one
        await asyncio.sleep(60 - time.time() % 60 + 0.1)
    redis, ns = app.state.redis, app.state.settings.redis_namespace
    await redis.delete(*[k async for k in redis.scan_iter(match=f"{ns}:rl:*")] or ["none"])
    answers = await asyncio.gather(
        *(client.post("/v1/verify", json={"serial": "NOT-A-SERIAL"}) for _ in range(8))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 5 + [429] * 3
    counters = [k async for k in redis.scan_iter(match=f"{ns}:rl:*")]
    assert len(counters) == 1 and int(await redis.get(counters[0])) == 8
    assert 0 < await redis.ttl(counters[0]) <= 60


async def test_a_user_agent_in_utf8_is_stored_as_written_without_controls(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, settings: Any
) -> None:
    """Probe Q: the User-Agent was read as Latin-1: a Chinese app's was stored garbled, and a
    C1 control (U+0085 in UTF-8) went into the record as it came."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    serial = scheme.serial(batch_no, 13)
    agent = "微信 MicroMessenger\u0085/8.0".encode()
    response = await client.post(
        "/v1/verify",
        json={"serial": serial, "pin": scheme.pin(serial)},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 200, response.text
    # the H5 page a WeChat scan opens too (review R3: it read the header as Latin-1 still)
    page = await client.post(
        f"/c/{serial}", data={"pin": scheme.pin(serial)}, headers={"User-Agent": agent}
    )
    assert page.status_code == 200, page.text
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):
            pass
        stored = pg.execute(
            "SELECT user_agent FROM verifications WHERE code_id = %s", ((batch_no << 32) | 13,)
        ).fetchall()
    assert stored == [("微信 MicroMessenger/8.0",)] * 2


async def test_concurrent_verifications_count_every_query_once(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, verifier_with: Any
) -> None:
    verifier_with(
        verify_flag_never_shipped=False, verify_repeat_threshold=1000, verify_rate_limit=10_000
    )
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    serial = scheme.serial(batch_no, 9)
    pin = scheme.pin(serial)
    answers = await asyncio.gather(*[_verify(client, serial, pin) for _ in range(100)])
    assert sorted(a["queries"] for a in answers) == list(range(1, 101))
    assert sum(a["reason"] == "first_query" for a in answers) == 1


async def test_records_reach_postgres_and_raise_alerts(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, verifier_with: Any, settings: Any
) -> None:
    verifier_with(verify_flag_never_shipped=False, verify_repeat_threshold=1)
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    serial = scheme.serial(batch_no, 11)
    for _ in range(3):
        await _verify(client, serial, scheme.pin(serial), client_id="app-1")
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):
            pass
        assert records.pending(sync_redis, settings.redis_namespace) == 0
        stored = pg.execute(
            "SELECT result, reason, queries, client_id FROM verifications WHERE code_id = %s ORDER BY queries",
            ((batch_no << 32) | 11,),
        ).fetchall()
        assert stored == [
            ("genuine", "first_query", 1, "app-1"),
            ("suspicious", "over_threshold", 2, "app-1"),
            ("suspicious", "over_threshold", 3, "app-1"),
        ]
        # flushing again stores nothing twice
        assert records.flush(sync_redis, pg, settings.redis_namespace) == 0
    admin = await login("admin")
    listed = (
        await client.get("/alerts", headers=admin, params={"kind": "repeat", "open": True})
    ).json()
    alert = next(a for a in listed["items"] if a["code_id"] == (batch_no << 32) | 11)
    assert alert["severity"] == "critical" and alert["occurrences"] == 2
    # the agent's users see alerts of their own subtree only (the brand's repeat alert is not one)
    theirs = await client.get(
        "/alerts", headers=await login("agent_admin"), params={"per_page": 200}
    )
    assert alert["id"] not in {a["id"] for a in theirs.json()["items"]}
    acked = await client.post(f"/alerts/{alert['id']}/acknowledge", headers=admin)
    assert acked.status_code == 200 and acked.json()["acknowledged_at"]
    assert_error(
        await client.post(f"/alerts/{alert['id']}/acknowledge", headers=await login("agent_admin")),
        404,
    )
    assert_error(await client.get("/alerts", headers=await login("operator")), 403)


async def test_a_look_without_a_pin_raises_no_repeat_alert_after_a_false_positive(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, verifier_with: Any, settings: Any
) -> None:
    """A probe: a code over the repeat threshold, its alert judged a false positive (closed); a
    scan without a PIN counts no query, yet its record (``over_threshold``, answered
    ``suspicious``) opened a new critical ``repeat`` alert — every look at a demo pack did. Only
    a counted query raises it: the next right-PIN query past the threshold opens a new alert."""
    verifier_with(verify_flag_never_shipped=False, verify_repeat_threshold=1)
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    serial, code = scheme.serial(batch_no, 12), (batch_no << 32) | 12
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    admin = await login("admin")

    async def flushed_alerts() -> list[dict[str, Any]]:
        with psycopg.connect(settings.database_url, autocommit=True) as pg:
            while records.flush(sync_redis, pg, settings.redis_namespace):
                pass
        listed = await client.get(
            "/alerts", headers=admin, params={"kind": "repeat", "per_page": 200}
        )
        return [a for a in listed.json()["items"] if a["code_id"] == code]

    await _verify(client, serial, scheme.pin(serial))
    crossing = await _verify(client, serial, scheme.pin(serial))
    assert (crossing["reason"], crossing["queries"]) == ("over_threshold", 2)
    [alert] = await flushed_alerts()  # the crossing right-PIN query opens it
    assert (alert["severity"], alert["acknowledged_at"]) == ("critical", None)
    judged = await client.put(
        f"/alerts/{alert['id']}/verdict",
        headers=admin,
        json={"verdict": "false_positive", "note": "the store's demo unit"},
    )
    assert judged.status_code == 200, judged.text
    look = await _verify(client, serial)  # still answered suspicious, counted nothing
    assert (look["result"], look["reason"], look["queries"]) == ("suspicious", "over_threshold", 2)
    assert [(a["id"], a["acknowledged_at"] is None) for a in await flushed_alerts()] == [
        (alert["id"], False)
    ]
    again = await _verify(client, serial, scheme.pin(serial))  # a counted query past it
    assert (again["reason"], again["queries"]) == ("over_threshold", 3)
    after = await flushed_alerts()
    opened = [a for a in after if a["acknowledged_at"] is None]
    assert len(after) == 2 and len(opened) == 1 and opened[0]["id"] != alert["id"]
    assert opened[0]["occurrences"] == 1  # the new query alone, not the look
    sync_redis.close()


def _without_redis(app: Any, settings: Any) -> tuple[Verifier, Redis]:
    """A verifier whose Redis is down (nothing listens on port 1), two wrong PINs to a lock;
    and that Redis client, to close."""
    live_settings = msgspec.structs.replace(
        settings, verify_flag_never_shipped=False, pin_max_failures=2
    )
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    return Verifier(app.state.pool, dead, app.state.scheme, live_settings), dead


async def test_with_redis_down_the_answer_comes_from_postgres_and_is_recorded(
    client: Any,
    login: Any,
    demo: Any,
    app: Any,
    conn: Any,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    down, dead = _without_redis(app, settings)
    serial = scheme.serial(batch_no, 20)
    pin = scheme.pin(serial)
    with caplog.at_level("WARNING", logger="tracecode.verify"):
        first = await down.verify(VerifyIn(serial=serial, pin=pin), "192.0.2.10", "test")
        second = await down.verify(VerifyIn(serial=serial, pin=pin), "203.0.113.5", "test")
    said = [r.getMessage() for r in caplog.records if r.name == "tracecode.verify"]
    assert said == ["Redis does not answer: verifications are answered from PostgreSQL"]
    assert (first.result, first.reason, first.queries) == ("genuine", "first_query", 1)
    assert (second.result, second.reason, second.queries) == ("suspicious", "region_jump", 2)
    assert second.first_query_place == "上海市"  # from the shipped IP table
    wrong = "000000" if pin != "000000" else "111111"
    assert (await down.verify(VerifyIn(serial=serial, pin=wrong), None, None)).result == "wrong_pin"
    assert (await down.verify(VerifyIn(serial=serial, pin=wrong), None, None)).result == "locked"
    forged = await down.verify(VerifyIn(serial="ZZZZ"), None, None)
    assert forged.result == "not_genuine"
    rows = await (
        await conn.execute(
            "SELECT reason FROM verifications WHERE code_id = %s ORDER BY at",
            ((batch_no << 32) | 20,),
        )
    ).fetchall()
    assert [r["reason"] for r in rows] == ["first_query", "region_jump", "wrong_pin", "locked"]
    await dead.aclose()


async def test_each_outage_is_said_once_and_its_end_once(
    client: Any,
    login: Any,
    demo: Any,
    app: Any,
    conn: Any,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Review R6: the outage's warning was keyed on the codes remembered: an outage of forged
    serials only said nothing, nor did its end; now each outage is said once, and its end."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    verifier, dead = _without_redis(app, settings)
    serial = scheme.serial(batch_no, 40)
    pin = scheme.pin(serial)
    with caplog.at_level("WARNING", logger="tracecode.verify"):
        for _ in range(2):
            verifier.redis = dead
            for forged in ("ZZZZ", "YYYY"):
                assert (await verifier.verify(VerifyIn(serial=forged), None, None)).result == (
                    "not_genuine"
                )
            verifier.redis = app.state.redis  # back
            for _ in range(2):
                answer = await verifier.verify(VerifyIn(serial=serial, pin=pin), None, None)
                assert answer.result in ("genuine", "suspicious")
            await verifier.close()  # its rounds' Redis connection too: the next ones go down
    said = [r.getMessage() for r in caplog.records if r.name == "tracecode.verify"]
    assert (
        said
        == [
            "Redis does not answer: verifications are answered from PostgreSQL",
            "Redis answers again: the codes verified meanwhile are reconciled",
        ]
        * 2
    )
    await dead.aclose()


async def test_a_lock_made_while_redis_was_down_holds_once_it_is_back(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, settings: Any
) -> None:
    """Probe J: the answers PostgreSQL gave during an outage never reached Redis. A code locked
    by wrong PINs then took the right PIN at once afterwards, with fresh tries. The first round
    Redis answers starts the reconcile of the outage's codes, which sets their state in Redis
    from the records."""
    from app.ops.rebuild import lock_key

    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    verifier, dead = _without_redis(app, settings)
    serial, other = scheme.serial(batch_no, 30), scheme.serial(batch_no, 31)
    pin = scheme.pin(serial)
    wrong = "000000" if pin != "000000" else "111111"
    assert (await verifier.verify(VerifyIn(serial=serial, pin=wrong), None, None)).result == (
        "wrong_pin"
    )
    assert (await verifier.verify(VerifyIn(serial=serial, pin=wrong), None, None)).result == (
        "locked"
    )
    key = lock_key(settings.redis_namespace, (batch_no << 32) | 30)
    assert not await app.state.redis.exists(key)
    verifier.redis = app.state.redis  # Redis is back
    answer = await verifier.verify(VerifyIn(serial=other, pin=scheme.pin(other)), None, None)
    assert answer.result == "genuine"
    deadline = time.monotonic() + 30
    while not await app.state.redis.exists(key):
        assert time.monotonic() < deadline, "the outage's lock never reached Redis"
        await asyncio.sleep(0.1)
    again = await verifier.verify(VerifyIn(serial=serial, pin=pin), None, None)
    assert again.result == "locked", again
    await dead.aclose()


def test_fallback_rules_match_the_redis_script_rules() -> None:
    """The Lua script and ``decide`` implement the same table; spot-check it from Python."""
    assert decide("ok", 1, "", "上海市", 5, False) == ("genuine", "first_query")
    assert decide("ok", 2, "上海市", "上海市", 5, False) == ("genuine", "repeat_query")
    assert decide("ok", 2, "上海市", "广东省广州市", 5, False) == ("suspicious", "region_jump")
    # a province and a city of it: one region where both are known (a probe: a jump)
    assert decide("ok", 2, "浙江省", "浙江省杭州市", 5, False) == ("genuine", "repeat_query")
    assert decide("ok", 2, "浙江省杭州市", "浙江省", 5, False) == ("genuine", "repeat_query")
    assert decide("ok", 2, "浙江省杭州市", "浙江省宁波市", 5, False) == (
        "suspicious",
        "region_jump",
    )
    assert decide("ok", 6, "上海市", "上海市", 5, False) == ("suspicious", "over_threshold")
    assert decide("none", 0, "", "", 5, False) == ("unconfirmed", "pin_required")
    assert decide("none", 0, "", "", 5, True) == ("suspicious", "never_shipped")


async def test_bad_verification_input_is_a_clear_400(client: Any) -> None:
    error = assert_error(
        await client.post("/v1/verify", json={"serial": "X", "pin": "12ab"}),
        400,
        "validation_failed",
    )
    assert error["details"][0]["field"] == "pin"
    error = assert_error(
        await client.post("/v1/verify", json={"serial": "X", "gps": {"lat": 0, "lng": 181}}),
        400,
        "validation_failed",
    )
    assert error["details"][0]["field"] == "gps.lng"
    assert_error(await client.post("/v1/verify", json={"pin": "1234"}), 400, "validation_failed")
    assert_error(await client.post("/v1/verify", json=["X"]), 400, "validation_failed")
    assert_error(
        await client.post("/v1/verify", json={"serial": "X" * 600}), 400, "validation_failed"
    )
    assert_error(
        await client.post("/v1/verify", json={"serial": "X", "gps": {"lat": 200, "lng": 0}}), 400
    )
    assert_error(await client.post("/v1/verify", json={"serial": "X", "extra": 1}), 400)
    assert_error(
        await client.post("/v1/verify", content=b"{", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    # a probe: a URL with a bracket in its host (no URL parser takes it) was a 500
    for text in ("https://[x/c/ABC", "http://]/01/[/21/X", "https://[::1"):
        answer = await client.post("/v1/verify", json={"serial": text})
        assert answer.status_code == 200, answer.text
        assert (answer.json()["result"], answer.json()["reason"]) == ("not_genuine", "malformed")


async def test_verify_refuses_other_methods_and_large_bodies(client: Any) -> None:
    response = await client.get("/v1/verify")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"
    big = {"serial": "X", "client_id": "c", "pad": "x" * 20_000}
    assert_error(await client.post("/v1/verify", json=big), 413, "payload_too_large")


async def test_verify_is_in_the_openapi_schema(client: Any) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    post = schema["paths"]["/v1/verify"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/VerifyIn"}
    assert set(schema["components"]["schemas"]["VerifyIn"]["properties"]) == {
        "serial",
        "pin",
        "client_id",
        "gps",
        "lang",
    }
    answer = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/VerifyOut"}
    assert "first_query_at" in schema["components"]["schemas"]["VerifyOut"]["properties"]


async def test_json_endpoints_outside_litestar_refuse_other_media_types(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Probe A: /v1/verify and the two claims decoded any body whatever its Content-Type, so
    a page anywhere could make its visitors' browsers post PIN guesses (a text/plain form
    needs no CORS preflight)."""
    from tests.points_support import member_client, new_member

    body = b'{"serial": "X", "pin": "123456"}'
    store = await login("store_clerk")
    _, member, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        for post, path, headers in (
            (client.post, "/v1/verify", {}),
            (client.post, "/rebates/claims", store),
            (mc.post, "/members/me/claims", member),
        ):
            for media in (
                None,
                "text/plain",
                "application/x-www-form-urlencoded",
                "application/json; charset=utf-16",
            ):
                sent = {**headers, **({"content-type": media} if media else {})}
                answer = await post(path, content=body, headers=sent)
                assert_error(answer, 415, "unsupported_media_type")
            fine = {**headers, "content-type": "Application/JSON; charset=UTF-8"}
            answer = await post(path, content=body, headers=fine)
            assert answer.status_code != 415, (path, answer.text)


async def test_with_redis_down_an_address_is_still_limited(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, settings: Any
) -> None:
    """Probe Z: the per-address limit lives in Redis, so with Redis down one address sent 130
    verifications in a second to PostgreSQL, all answered. Each process counts them meanwhile."""
    from app.errors import TooManyRequests

    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    down, dead = _without_redis(app, settings)
    down.settings = msgspec.structs.replace(down.settings, verify_rate_limit=3)
    serials = [scheme.serial(batch_no, 30 + i) for i in range(5)]
    await within_one_minute()  # the process counts per clock minute too
    for serial in serials[:3]:
        answer = await down.verify(VerifyIn(serial=serial), "192.0.2.77", "test")
        assert answer.result == "unconfirmed", answer  # no PIN: counted all the same
    with pytest.raises(TooManyRequests) as refused:
        await down.verify(VerifyIn(serial=serials[3]), "192.0.2.77", "test")
    assert refused.value.code == "rate_limited"
    with pytest.raises(TooManyRequests):  # a refusal (a forged code) counts the same
        await down.verify(VerifyIn(serial="ZZZZ"), "192.0.2.77", "test")
    other = await down.verify(VerifyIn(serial=serials[4]), "192.0.2.78", "test")
    assert other.result == "unconfirmed"  # another address is not held back
    await dead.aclose()


async def test_the_outage_answers_keep_the_lockout_of_the_redis_path(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, settings: Any
) -> None:
    """Probes: during an outage the attempt that locked a code (recorded ``locked``) was not
    counted, so the right PIN answered genuine right after the lock — guesses without end — and
    so did a code locked before the outage; and the wrong-PIN count did not slide with each
    wrong PIN as Redis's does."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    down, dead = _without_redis(app, settings)  # two wrong PINs lock
    live = Verifier(app.state.pool, app.state.redis, scheme, down.settings)

    def ask(serial: str, pin: str) -> VerifyIn:
        return VerifyIn(serial=serial, pin=pin)

    for verifier, index in ((down, 40), (live, 41)):  # locked during the outage, or before it
        serial = scheme.serial(batch_no, index)
        pin = scheme.pin(serial)
        wrong = "000000" if pin != "000000" else "111111"
        assert (await verifier.verify(ask(serial, wrong), None, None)).result == "wrong_pin"
        assert (await verifier.verify(ask(serial, wrong), None, None)).result == "locked"
        if verifier is live:
            sync_redis = redis_sync.Redis.from_url(settings.redis_url)
            with psycopg.connect(settings.database_url, autocommit=True) as pg:
                while records.flush(sync_redis, pg, settings.redis_namespace):
                    pass
        answer = await down.verify(ask(serial, pin), None, None)
        assert (answer.result, answer.retry_after is not None) == ("locked", True), index
        assert 0 < answer.retry_after <= settings.pin_lockout_seconds
    # the count slides: three wrong PINs each within the window of the one before lock the code
    # on both paths, though the first is older than the window at the third
    window = msgspec.structs.replace(down.settings, pin_max_failures=3, pin_lockout_seconds=2)
    slide_down = Verifier(app.state.pool, down.redis, scheme, window)
    slide_live = Verifier(app.state.pool, app.state.redis, scheme, window)
    answers: dict[str, list[str]] = {"down": [], "live": []}
    pairs = (("down", slide_down, 42), ("live", slide_live, 43))
    for step in range(3):
        for name, verifier, index in pairs:
            serial = scheme.serial(batch_no, index)
            wrong = "000000" if scheme.pin(serial) != "000000" else "111111"
            answers[name].append((await verifier.verify(ask(serial, wrong), None, None)).result)
        if step < 2:
            await asyncio.sleep(1.2)
    assert answers["down"] == answers["live"] == ["wrong_pin", "wrong_pin", "locked"]
    await dead.aclose()


async def test_the_outage_answers_raise_the_alerts_of_the_redis_path(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, settings: Any
) -> None:
    """A probe: answers given from PostgreSQL raised no alert (the flusher raises them, and an
    outage's records never pass through it): an over-threshold or fake code went unreported."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    idle, _ = await issue_units(client, login, demo, 2)  # issued, never activated
    down, dead = _without_redis(app, settings)
    down.settings = msgspec.structs.replace(down.settings, verify_repeat_threshold=1)
    serial = scheme.serial(batch_no, 44)
    for _ in range(2):
        answer = await down.verify(VerifyIn(serial=serial, pin=scheme.pin(serial)), None, None)
    assert answer.reason == "over_threshold"
    fake = scheme.serial(idle, 0)
    assert (await down.verify(VerifyIn(serial=fake), None, None)).reason == "not_activated"
    rows = await (
        await conn.execute(
            "SELECT code_id, kind FROM alerts WHERE code_id = ANY(%s) ORDER BY kind",
            ([(batch_no << 32) | 44, idle << 32],),
        )
    ).fetchall()
    await conn.commit()
    assert [(r["code_id"], r["kind"]) for r in rows] == [
        (idle << 32, "fake"),
        ((batch_no << 32) | 44, "repeat"),
    ]
    await dead.aclose()


async def test_an_outage_look_without_a_pin_raises_no_repeat_alert(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, settings: Any
) -> None:
    """The repeat rule on the PostgreSQL path as on the flusher's: a scan without a PIN over
    the threshold answers ``suspicious`` but raises no alert (nor bumps the open one); a
    right-PIN query past it does."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    down, dead = _without_redis(app, settings)
    down.settings = msgspec.structs.replace(down.settings, verify_repeat_threshold=1)
    serial, code = scheme.serial(batch_no, 46), (batch_no << 32) | 46
    pinned = VerifyIn(serial=serial, pin=scheme.pin(serial))

    async def repeat_alerts() -> list[tuple[int, int]]:
        rows = await (
            await conn.execute(
                "SELECT occurrences, (acknowledged_at IS NULL)::int AS open FROM alerts "
                "WHERE code_id = %s AND kind = 'repeat'",
                (code,),
            )
        ).fetchall()
        await conn.commit()
        return [(r["occurrences"], r["open"]) for r in rows]

    for _ in range(2):  # the second right-PIN query crosses the threshold: the alert opens
        crossing = await down.verify(pinned, None, None)
    assert (crossing.reason, crossing.queries) == ("over_threshold", 2)
    assert await repeat_alerts() == [(1, 1)]
    for _ in range(2):  # looks: no query counted, no occurrence of the alert either
        look = await down.verify(VerifyIn(serial=serial), None, None)
        assert (look.result, look.reason, look.queries) == ("suspicious", "over_threshold", 2)
    assert await repeat_alerts() == [(1, 1)]
    counted = await down.verify(pinned, None, None)
    assert (counted.reason, counted.queries) == ("over_threshold", 3)
    assert await repeat_alerts() == [(2, 1)]
    await dead.aclose()


async def test_a_claim_sent_again_during_an_outage_is_counted_once(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, settings: Any
) -> None:
    """A probe: the Redis script counts a claim sent again under its client id once (its
    retry key), the outage path counted every retry as a new query of the code."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn)
    down, dead = _without_redis(app, settings)
    serial = scheme.serial(batch_no, 45)
    body = VerifyIn(serial=serial, pin=scheme.pin(serial), client_id="till-7")
    answers = [
        await down.verify(body, None, None, retry="tracecode-claims:1:till-7") for _ in range(3)
    ]
    assert [(a.result, a.reason, a.queries) for a in answers] == [("genuine", "first_query", 1)] * 3
    other = await down.verify(  # another claimant, the same client id: a new check (a rebate
        # clerk's claim names no member: matched by client id alone, it passed for a retry)
        body,
        None,
        None,
        retry="tracecode-claims:2:till-7",
    )
    assert (other.reason, other.queries) == ("repeat_query", 2)
    rows = await (
        await conn.execute(
            "SELECT reason, retry FROM verifications WHERE code_id = %s ORDER BY at",
            ((batch_no << 32) | 45,),
        )
    ).fetchall()
    await conn.commit()
    assert [(r["reason"], r["retry"]) for r in rows] == [
        ("first_query", "tracecode-claims:1:till-7"),
        ("claim_retry", "tracecode-claims:1:till-7"),
        ("claim_retry", "tracecode-claims:1:till-7"),
        ("repeat_query", "tracecode-claims:2:till-7"),
    ]
    await dead.aclose()


async def test_a_digital_link_with_a_lot_is_read_as_the_unit_s_serial(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """A probe: a partner sends the whole QR content, as the README allows. A GS1 Digital Link may carry
    the lot (``/01/{gtin}/10/{lot}/21/{serial}``, the SPEC's path order); a lot spelled ``21``
    or ``C`` is an ordinary lot. The consumer of that genuine pack must not be told "not a
    valid code" — the resolver (``/01/…``) reads the very same URI correctly."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, 5)
    serial = scheme.serial(batch_no, 1)
    gtin = "06901234000023"  # the demo sun cream's
    for lot in ("21", "C"):
        uri = f"https://id.example.com/01/{gtin}/10/{lot}/21/{serial}"
        # the resolver sends a phone to the right page
        redirect = await client.get(f"/01/{gtin}/10/{lot}/21/{serial}")
        assert redirect.status_code == 307
        assert redirect.headers["location"].endswith(f"/c/{serial}?gtin={gtin}")
        answer = (await client.post("/v1/verify", json={"serial": uri})).json()
        # a real code without its PIN (never shipped, in this test's batch): not "malformed"
        assert (answer["result"], answer.get("serial")) == ("suspicious", serial), (lot, answer)
        assert answer["reason"] == "never_shipped", (lot, answer)


DL_GTIN = "06901234000023"  # the demo sun cream's


def test_a_digital_link_whose_custom_path_prefix_ends_in_01_is_read_as_its_serial() -> None:
    """A regression probe: SPEC I4: "A custom path prefix before the primary key is allowed". A brand's QR with a
    prefix such as ``/campaign/01`` (or ``/2024/01``) before ``/01/{gtin}/21/{serial}`` names the
    serial just as the one without a prefix does (the Rust parser and the resolver read it so;
    read from the first /01/, the pairs shifted and the serial was lost)."""
    serial = "TQXZF37NK6SPNRAH6005"
    for prefix in ("/campaign/01", "/2024/01", "/01/a/b"):
        uri = f"https://brand.example{prefix}/01/{DL_GTIN}/21/{serial}"
        assert serial_from_scan(uri) == serial, uri


async def test_verify_answers_a_digital_link_with_a_prefix_ending_in_01_for_its_unit(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """A regression probe: a consumer scanning a genuine pack whose Digital Link has a custom path prefix ending in
    ``01`` is answered about the pack, never "malformed" (the Rust core's ``parse_digital_link``
    reads the very same URI's 21 as the serial)."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, 2)
    serial = scheme.serial(batch_no, 1)
    path = f"/campaign/01/01/{DL_GTIN}/21/{serial}"
    assert parse_digital_link(f"https://id.example.com{path}")["21"] == serial
    answer = (
        await client.post("/v1/verify", json={"serial": f"https://id.example.com{path}"})
    ).json()
    assert answer.get("serial") == serial and answer["reason"] != "malformed", answer


async def test_a_percent_encoded_digital_link_is_read_by_verify_as_by_the_resolver(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """A probe: ``POST /v1/verify`` with the whole QR content answered ``not_genuine`` /
    ``malformed`` for a Digital Link whose serial carries a percent-encoded character
    (``…/21/DTG%44PWF…``, RFC 3986: the same URI as ``…/21/DTGDPWF…``), while the resolver
    (``parse_digital_link``) decodes it and sends the consumer to the unit's page:
    ``serial_from_scan`` and ``gtin_from_scan`` never percent-decoded. They now read such a
    path as the resolver does; a bad escape or a decoded control character stays a clean
    refusal (malformed), never a 500."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, 3)
    serial = scheme.serial(batch_no, 1)
    encoded = serial[:3] + f"%{ord(serial[3]):02X}" + serial[4:]
    uri = f"https://id.example.com/01/{DL_GTIN}/21/{encoded}"

    resolved = await client.get(f"/01/{DL_GTIN}/21/{encoded}")
    assert resolved.status_code == 307, resolved.text
    assert f"/c/{serial}?" in resolved.headers["location"]  # the resolver reads the unit

    plain = await client.post(
        "/v1/verify", json={"serial": f"https://id.example.com/01/{DL_GTIN}/21/{serial}"}
    )
    assert plain.status_code == 200 and plain.json()["serial"] == serial, plain.text
    answer = await client.post("/v1/verify", json={"serial": uri})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = (plain.json()["result"], plain.json()["reason"], serial)
    assert (body["result"], body["reason"], body["serial"]) == expected, body
    for bad in ("%4", "%G4", "%00", "%0A", "%FF"):  # no Digital Link: refused as written
        sent = f"https://id.example.com/01/{DL_GTIN}/21/{serial[:3]}{bad}{serial[4:]}"
        refused = await client.post("/v1/verify", json={"serial": sent})
        assert refused.status_code == 200, (bad, refused.text)
        assert refused.json()["reason"] == "malformed", (bad, refused.json())
    # the page's own URL too, as the page reads its path (it was refused as malformed)
    page = await client.post("/v1/verify", json={"serial": f"https://x.example/c/{encoded}"})
    assert page.status_code == 200 and page.json()["serial"] == serial, page.text
    for bad in ("%4", "%00", "%FF"):
        sent = f"https://x.example/c/{serial[:3]}{bad}{serial[4:]}"
        refused = await client.post("/v1/verify", json={"serial": sent})
        assert refused.status_code == 200, (bad, refused.text)
        assert refused.json()["reason"] == "malformed", (bad, refused.json())


# -- clients: an IPv6 client's /64, wrong PINs over many codes (SPEC V2) ----------------------


async def test_verify_rate_limit_is_not_bypassed_by_rotating_ipv6_addresses_of_one_slash64(
    client: Any, app: Any, verifier_with: Any
) -> None:
    """A probe: the per-IP limit (V2) counted an IPv6 client per exact address, so a client
    with a /64 (one host, as a phone or a server usually has whole) sending each verification
    from a new address of it was never limited; the login and member limits count an IPv6
    client by its /64 (``client_bucket``), and so does verification now — the Redis script,
    the cluster's ``_RATE`` (this test runs on the cluster too) and the Redis-down count."""
    from app.errors import TooManyRequests

    site = f"2001:db8:{secrets.randbelow(1 << 16):x}"  # a /48: its /64s are clients
    net = f"{site}:1"
    verifier = verifier_with(verify_rate_limit=3)
    await within_one_minute(20)  # both rounds below in one clock minute
    refused = 0
    for i in range(1, 11):
        try:
            await verifier.verify(VerifyIn(serial="NOT-A-SERIAL"), f"{net}::{i:x}", None)
        except TooManyRequests:
            refused += 1
    assert refused == 7, f"{refused} of 10 refused under a limit of 3 per client"
    other = await verifier.verify(VerifyIn(serial="NOT-A-SERIAL"), f"{site}:2::1", None)
    assert other.reason == "malformed"  # the next /64 is another client
    down, dead = _without_redis(app, app.state.settings)
    down.settings = msgspec.structs.replace(down.settings, verify_rate_limit=3)
    answered = 0
    for i in range(1, 6):
        try:
            await down.verify(VerifyIn(serial="NOT-A-SERIAL"), f"{net}::{i:x}", None)
            answered += 1
        except TooManyRequests:
            pass
    assert answered == 3  # Redis down: counted by the /64 in the process too
    await dead.aclose()


def _wrong(pin: str) -> str:
    return "000000" if pin != "000000" else "111111"


async def test_one_client_guessing_pins_across_many_codes_is_locked_out(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, verifier_with: Any
) -> None:
    """A probe: SPEC V2 asks for a wrong-PIN lockout per code and per client; only the code's
    existed: one address sent sixty wrong PINs, two to each of thirty codes (below each code's
    lockout of five), and every one was answered "wrong PIN, 3 left". Now the client's 20th
    wrong PIN (``TRACECODE_PIN_CLIENT_MAX_FAILURES``, over all codes within the lockout time)
    locks its PIN checks for the lockout time — right PINs too, answered ``locked`` /
    ``client_locked`` with ``retry_after``; its checks without a PIN, and other clients, still
    answer. Runs on the cluster too (``_RATE`` counts the clients there)."""
    verifier = verifier_with(
        verify_flag_never_shipped=False,
        verify_rate_limit=100_000,
        pin_lockout_seconds=6,
        pin_client_max_failures=20,  # the default (the suite's settings raise it)
    )
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, 33)
    # an address of its own (a random /64 of the documentation prefix): never a client another
    # test of the session locked out
    guesser = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}::1"
    answers = []
    for i in range(30):
        serial = scheme.serial(batch_no, i)
        for _ in range(2):
            out = await verifier.verify(
                VerifyIn(serial=serial, pin=_wrong(scheme.pin(serial))), guesser, None
            )
            answers.append((out.result, out.reason))
    assert answers[:20] == [("wrong_pin", "wrong_pin")] * 20, answers
    assert answers[20:] == [("locked", "client_locked")] * 40, answers
    serial = scheme.serial(batch_no, 30)
    right = await verifier.verify(VerifyIn(serial=serial, pin=scheme.pin(serial)), guesser, None)
    assert (right.result, right.reason) == ("locked", "client_locked")
    assert right.retry_after is not None and 0 < right.retry_after <= 6
    assert right.product is not None and right.message.startswith(
        "您的网络输入错误验证码的次数过多"
    )
    bare = await verifier.verify(VerifyIn(serial=serial), guesser, None)
    assert (bare.result, bare.queries) == ("unconfirmed", 0)  # nothing was counted for it
    other = scheme.serial(batch_no, 31)
    elsewhere = await verifier.verify(
        VerifyIn(serial=other, pin=scheme.pin(other)), "203.0.113.200", None
    )
    assert (elsewhere.result, elsewhere.reason) == ("genuine", "first_query")
    await asyncio.sleep(right.retry_after + 0.2)
    after = await verifier.verify(VerifyIn(serial=serial, pin=scheme.pin(serial)), guesser, None)
    assert (after.result, after.reason) == ("genuine", "first_query")


async def test_with_redis_down_a_client_guessing_pins_is_locked_out_too(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, settings: Any
) -> None:
    """The per-client lockout while Redis is down: counted in the API process (as its rate
    limit is), by the script's rules, and recorded ``client_locked``."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, 8)
    down, dead = _without_redis(app, settings)
    down.settings = msgspec.structs.replace(
        down.settings, pin_max_failures=5, pin_client_max_failures=6
    )
    guesser = "2001:db8:99:1::7"
    answers = []
    for i in range(4):
        serial = scheme.serial(batch_no, i)
        for n in range(2):  # one /64: another address of it each time
            ip = f"2001:db8:99:1::{i}:{n}"
            out = await down.verify(
                VerifyIn(serial=serial, pin=_wrong(scheme.pin(serial))), ip, None
            )
            answers.append(out.reason)
    assert answers == ["wrong_pin"] * 6 + ["client_locked"] * 2
    serial = scheme.serial(batch_no, 5)
    right = await down.verify(VerifyIn(serial=serial, pin=scheme.pin(serial)), guesser, None)
    assert (right.result, right.reason) == ("locked", "client_locked") and right.retry_after
    other = await down.verify(VerifyIn(serial=serial, pin=scheme.pin(serial)), "192.0.2.5", None)
    assert other.reason == "first_query"
    rows = await (
        await conn.execute(
            "SELECT count(*) AS n FROM verifications WHERE reason = 'client_locked' "
            "AND client_ip <<= '2001:db8:99:1::/64'"
        )
    ).fetchone()
    await conn.commit()
    assert rows["n"] == 3
    await dead.aclose()


# -- the GTIN a Digital Link names ------------------------------------------------------------


async def test_a_digital_link_naming_another_products_gtin_is_not_genuine(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, verifier_with: Any, settings: Any
) -> None:
    """A probe: a counterfeiter prints a Digital Link with an expensive product's GTIN and the
    genuine serial and PIN of a cheap unit; ``Verifier.verify`` kept only the serial and called
    it genuine (the inspection lookup refuses such a scan: "a unit of one product never answers
    to another's GTIN"). Now it is ``not_genuine`` / ``wrong_product``, recorded with a ``fake``
    alert of the unit's code — on /v1/verify, on the H5 page the resolver sends the link to
    (``/c/{serial}?gtin=``), and with Redis down; the unit's own GTIN still verifies."""
    from app.verify import messages

    verifier_with(verify_flag_never_shipped=False)
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, 3)
    admin = await login("admin")
    products = (await client.get("/products", headers=admin, params={"per_page": 200})).json()
    own = next(p for p in products["items"] if p["gtin"] == DL_GTIN)
    other = next(p["gtin"] for p in products["items"] if p["gtin"] and p["gtin"] != DL_GTIN)
    serial, pin = scheme.serial(batch_no, 1), scheme.pin(scheme.serial(batch_no, 1))
    link = f"https://id.example.com/01/{other}/21/{serial}"
    answer = await _verify(client, link, pin)
    assert (answer["result"], answer["reason"]) == ("not_genuine", "wrong_product"), answer
    assert answer["serial"] == serial and "another product" in messages.text("wrong_product", "en")
    # the phone's way: the resolver keeps the GTIN for the page, which refuses it the same way
    redirect = await client.get(f"/01/{other}/21/{serial}")
    assert redirect.headers["location"].endswith(f"/c/{serial}?gtin={other}")
    page = await client.get(f"/c/{serial}", params={"gtin": other})
    assert page.status_code == 200 and messages.TEXTS["wrong_product"]["zh"] in page.text
    assert 'name="pin"' not in page.text  # no PIN form for a fake
    posted = await client.post(f"/c/{serial}?gtin={other}", data={"pin": pin})
    assert messages.TEXTS["wrong_product"]["zh"] in posted.text
    mine = await client.get(f"/c/{serial}", params={"gtin": DL_GTIN})
    assert 'name="pin"' in mine.text and f'action="/c/{serial}?gtin={DL_GTIN}"' in mine.text
    genuine = await _verify(client, f"https://id.example.com/01/{DL_GTIN}/21/{serial}", pin)
    assert (genuine["result"], genuine["reason"]) == ("genuine", "first_query")
    down, dead = _without_redis(app, settings)
    outage = await down.verify(VerifyIn(serial=link, pin=pin), None, None)
    assert (outage.result, outage.reason) == ("not_genuine", "wrong_product")
    await dead.aclose()
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):
            pass
        stored = pg.execute(
            "SELECT reason, product_id, brand_id FROM verifications WHERE code_id = %s"
            " AND reason = 'wrong_product'",
            ((batch_no << 32) | 1,),
        ).fetchall()
        alert = pg.execute(
            "SELECT kind, details->>'reason' FROM alerts WHERE code_id = %s",
            ((batch_no << 32) | 1,),
        ).fetchall()
    assert stored == [("wrong_product", own["id"], demo["BRAND-LUMI"])] * 4, stored
    assert alert == [("fake", "wrong_product")]


async def test_a_genuine_code_on_a_pack_naming_another_brands_gtin_alerts_that_brand_too(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, verifier_with: Any, settings: Any
) -> None:
    """A left-out closed: a Digital Link naming another BRAND's GTIN over a genuine serial and
    PIN (that brand's product faked with this brand's copied code) alerted only the serial's
    brand; the GTIN's brand never heard of it. Its brand now gets a ``fake`` alert of its own,
    naming the serial and the GTIN (code-less, one per brand and reason), on the Redis path
    and with Redis down; the serial's brand keeps its alert of the code, and only it lists
    the records."""
    from app._core import gs1_check_digit
    from tests.field_support import other_brand_admin

    verifier_with(verify_flag_never_shipped=False)
    other_admin = await other_brand_admin(client, login)
    body = f"0{secrets.randbelow(10**12):012d}"
    gtin = body + str(gs1_check_digit(body))
    product = await client.post(
        "/products",
        headers=other_admin,
        json={"name": "faked", "product_no": f"F-{gtin}", "gtin": gtin},
    )
    assert product.status_code == 201, product.text
    other_brand = (await client.get("/auth/me", headers=other_admin)).json()["org_id"]
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, 3)
    serials = [scheme.serial(batch_no, i) for i in (1, 2)]
    answer = await _verify(
        client, f"https://id.example.com/01/{gtin}/21/{serials[0]}", scheme.pin(serials[0])
    )
    assert (answer["result"], answer["reason"]) == ("not_genuine", "wrong_product"), answer
    down, dead = _without_redis(app, settings)
    link = f"https://id.example.com/01/{gtin}/21/{serials[1]}"
    outage = await down.verify(VerifyIn(serial=link, pin=scheme.pin(serials[1])), None, None)
    assert (outage.result, outage.reason) == ("not_genuine", "wrong_product")
    await dead.aclose()
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):
            pass
        theirs = pg.execute(
            "SELECT kind, code_id, occurrences, details->>'reason', details->>'gtin',"
            " details->>'serial' FROM alerts WHERE brand_id = %s",
            (other_brand,),
        ).fetchall()
        ours = pg.execute(
            "SELECT code_id, details->>'gtin' FROM alerts WHERE brand_id = %s AND code_id"
            " = ANY(%s) ORDER BY code_id",
            (demo["BRAND-LUMI"], [(batch_no << 32) | 1, (batch_no << 32) | 2]),
        ).fetchall()
    assert len(theirs) == 1, theirs
    assert theirs[0][:5] == ("fake", None, 2, "wrong_product", gtin), theirs
    assert theirs[0][5] in serials
    assert ours == [((batch_no << 32) | 1, gtin), ((batch_no << 32) | 2, gtin)], ours
    listed = await client.get("/verifications", headers=other_admin)
    assert listed.status_code == 200 and listed.json()["items"] == [], listed.text


async def test_a_forged_code_scanned_from_the_brands_digital_link_is_listed_for_the_brand(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, settings: Any
) -> None:
    """A probe: "forged or malformed codes name no unit and are the brand's alone" (README,
    "Verification records"), but a fake pack whose Digital Link names the brand's GTIN and a
    made-up serial was stored with no brand: nobody ever saw it, and no alert was raised (SPEC
    V3: "alerts for fakes"). The record now gets the brand of the GTIN's product and raises a
    ``fake`` alert — one open per brand for its forged codes, naming the latest; with Redis down
    too. A bare forged serial names no brand and stays brandless."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, 2)
    serial = scheme.serial(batch_no, 0)
    forged = serial[:-1] + ("0" if serial[-1] != "0" else "1")
    bare = serial[:-1] + ("2" if serial[-1] != "2" else "3")
    admin = await login("admin")
    link = f"https://id.example.com/01/{DL_GTIN}/21/{forged}"
    answer = await _verify(client, link, "123456")
    assert (answer["result"], answer["reason"]) == ("not_genuine", "forged")
    assert (await _verify(client, bare))["reason"] == "forged"
    down, dead = _without_redis(app, settings)
    outage = await down.verify(VerifyIn(serial=link), None, None)
    assert outage.reason == "forged"
    await dead.aclose()
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):
            pass
        brands = pg.execute(
            "SELECT serial, brand_id FROM verifications WHERE serial IN (%s, %s) ORDER BY at",
            (forged, bare),
        ).fetchall()
    assert brands == [(forged, demo["BRAND-LUMI"]), (bare, None), (forged, demo["BRAND-LUMI"])]
    listed = (await client.get("/verifications", headers=admin, params={"serial": forged})).json()
    assert listed["total"] == 2, listed
    assert (await client.get("/verifications", headers=admin, params={"serial": bare})).json()[
        "total"
    ] == 0
    below = await client.get(
        "/verifications", headers=await login("agent_admin"), params={"serial": forged}
    )
    assert below.json()["total"] == 0  # the brand's alone
    alerts = (
        await client.get("/alerts", headers=admin, params={"kind": "fake", "per_page": 200})
    ).json()["items"]
    # other tests' forged alerts of the brand may be listed too (some written by SQL, some
    # closed by a triage verdict): ours is the one naming our serial, open
    ours = [
        a
        for a in alerts
        if a["details"].get("reason") == "forged" and a["details"].get("serial") == forged
    ]
    assert len(ours) == 1 and ours[0]["acknowledged_at"] is None
    assert ours[0]["code_id"] is None and ours[0]["severity"] == "warning"


async def test_an_alert_acknowledged_twice_is_audited_once(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: two acknowledgements of one alert (a double click, two analysts at once, a
    retry) kept the first acknowledger but wrote an ``acknowledge`` audit row for every call,
    so the log said the second user acknowledged an alert whose ``acknowledged_by`` is the
    first. Only the call whose update acknowledged the alert is audited now; every call
    answers the acknowledged alert."""
    admin, analyst = await login("admin"), await login("analyst")
    serial = "RACE" + secrets.token_hex(6).upper()
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """INSERT INTO alerts (brand_id, org_id, kind, severity, serial, message,
                                       dedup_key)
                   VALUES (%s, %s, 'diversion', 'warning', %s, 'race probe', %s) RETURNING id""",
                (demo["BRAND-LUMI"], demo["BRAND-LUMI"], serial, f"diversion:race:{serial}"),
            )
        ).fetchone()
        await conn.commit()
    alert_id = row["id"]
    answers = await twice_held(
        app,
        client,
        "SELECT 1 FROM alerts WHERE id = %s FOR UPDATE",
        (alert_id,),
        "POST",
        f"/alerts/{alert_id}/acknowledge",
        admin,
    )
    again = await client.post(f"/alerts/{alert_id}/acknowledge", headers=analyst)
    assert [a.status_code for a in [*answers, again]] == [200, 200, 200], again.text
    assert answers[0].json() == answers[1].json() == again.json()
    audited = await audit_rows(app, "alert", alert_id, "acknowledge")
    assert len(audited) == 1, f"{len(audited)} acknowledge audit rows for one acknowledgement"


@asynccontextmanager
async def _rotated(app: Any, versions: str, current: int) -> AsyncIterator[tuple[Any, Any]]:
    """The app restarted after a rotation: the same database, Redis and master key, other key
    versions. Yields (client, app)."""
    from app.main import create_app

    settings = msgspec.structs.replace(
        app.state.settings, key_versions=versions, current_key_version=current
    )
    other = create_app(settings)
    async with served(other) as client:
        yield client, other


async def activated_under_the_new_key(
    c2: Any, app2: Any, login: Any, demo: Any, product_id: int, size: int, line: str
) -> tuple[int, list[str]]:
    """A batch issued and activated through ``_rotated``'s app (``c2``, ``app2``), under its
    current key version: its number and its printed serials."""
    made = await c2.post(
        "/batches",
        headers=await login("planner"),
        json={"size": size, "printer_id": demo["PRINTER-SH"], "product_id": product_id},
    )
    assert made.status_code == 201, made.text
    assert made.json()["key_version"] == app2.state.settings.current_key_version
    batch_no = made.json()["batch_no"]
    printed = [app2.state.scheme.serial(batch_no, i) for i in range(size)]
    await activate(c2, login, printed, product_id, line=line)
    return batch_no, printed


async def test_a_serial_made_with_the_old_key_for_a_new_batch_is_not_genuine(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: after a rotation (``KEY_VERSIONS=1,2``, ``CURRENT_KEY_VERSION=2``) a batch is
    made under version 2, yet a serial computed for its units under version 1's keys (what
    anyone holding the key retired for new codes, e.g. a leaked one, can make) verified as the
    genuine unit: ``Scheme.verify`` accepts any active version and nothing compared the version
    found with the batch's ``key_version``. The point of rotating is that new codes cannot be
    forged with the old key: such a serial was never printed and answers as a serial whose
    tag matches no key does, on every path that reads serials (``made_under``) — not genuine,
    ``forged``, and not counted as a query of the unit; 422 ``not_genuine`` to its status, its
    trace and its allocation; no unit to an EPCIS query naming it."""
    planner = await login("planner")
    _, pid = await issue_units(client, login, demo, 1)
    async with _rotated(app, "1,2", 2) as (c2, app2):
        scheme = app2.state.scheme
        batch_no, printed = await activated_under_the_new_key(c2, app2, login, demo, pid, 3, "RK2")
        forged = scheme.serial(batch_no, 1, 1)  # made with version 1's keys
        assert forged != printed[1]
        answer = await c2.post("/v1/verify", json={"serial": forged, "pin": scheme.pin(forged)})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["result"], body["reason"], body["serial"]) == ("not_genuine", "forged", None)
        genuine = await _verify(c2, printed[1], scheme.pin(printed[1]))
        assert genuine["result"] != "not_genuine" and genuine["queries"] == 1, genuine
        for path in (f"/codes/{forged}/status", f"/trace/{forged}", f"/codes/{forged}/allocation"):
            assert_error(await c2.get(path, headers=planner), 422, "not_genuine")
        status = await c2.get(f"/codes/{printed[1]}/status", headers=planner)
        assert status.json()["status"] == "active", status.text
        url = f"{app2.state.settings.public_url}/c/"

        async def events(serial: str) -> list[Any]:
            found = await c2.get(
                "/epcis/events", headers=planner, params={"MATCH_epc": url + serial}
            )
            assert found.status_code == 200, found.text
            results = found.json()["epcisBody"]["queryResults"]
            return results["resultsBody"]["eventList"]  # type: ignore[no-any-return]

        assert await events(printed[1]) and not await events(forged)


async def test_scans_over_a_unix_socket_are_recorded(
    client: Any, app: Any, login: Any, demo: Any, conn: Any, settings: Any
) -> None:
    """A probe: granian bound to a unix socket behind a local reverse proxy (``granian --uds``)
    gives the scope ``client == ('', '0')``: ``/v1/verify`` and the ``/c/`` page answered 200,
    but the flusher's INSERT refused the empty address (``inet``) and every record went to
    ``dead_letters`` — the brand's scan history, alerts and counts lost every scan. The address
    is unknown (NULL), as with no client at all, and the records are kept."""
    scheme = app.state.scheme
    batch_no = await _activated_batch(client, login, demo, conn, size=3)
    serial = scheme.serial(batch_no, 2)
    transport = httpx.ASGITransport(app=app, client=("", "0"))  # what granian --uds passes
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        api = await c.post("/v1/verify", json={"serial": serial, "pin": scheme.pin(serial)})
        page = await c.post(f"/c/{serial}", data={"pin": scheme.pin(serial)})
    assert (api.status_code, page.status_code) == (200, 200), (api.text, page.text[:300])
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):
            pass
        stored = pg.execute(
            "SELECT client_ip FROM verifications WHERE code_id = %s",
            ((batch_no << 32) | 2,),
        ).fetchall()
        dead = pg.execute("SELECT reason FROM dead_letters WHERE reason LIKE '%%inet%%'").fetchall()
    assert stored == [(None,), (None,)], (stored, dead)
