"""Verification while Redis is down and once it is back (SPEC V1-V2; README "Durability"):
the answers PostgreSQL gives under concurrency, and the outage's codes reconciled in Redis
before Redis answers for them again. Each test is a probe's, failing on the code before its fix.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta
from typing import Any

import msgspec
import psycopg
import pytest
import redis as redis_sync
from redis.asyncio import Redis

from app.ops import rebuild
from app.verify.schemas import Gps, VerifyIn
from app.verify.service import Verifier
from tests.helpers import activate, issue_units, scheme_for_tests, verifications_changed

SHANGHAI = Gps(lat=31.2, lng=121.5)
GUANGZHOU = Gps(lat=23.1, lng=113.3)


async def _batch(client: Any, login: Any, demo: Any, size: int = 20) -> tuple[int, int]:
    """A batch of the demo sun cream, every unit activated: (batch_no, product_id)."""
    batch_no, product_id = await issue_units(client, login, demo, size)
    scheme = scheme_for_tests()
    await activate(client, login, [scheme.serial(batch_no, i) for i in range(size)], product_id)
    return batch_no, product_id


def _dead_verifier(app: Any, **changes: Any) -> tuple[Verifier, Redis]:
    """A verifier whose Redis is down (nothing listens on port 1): it answers from PostgreSQL."""
    settings = msgspec.structs.replace(
        app.state.settings, verify_flag_never_shipped=False, **changes
    )
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    return Verifier(app.state.pool, dead, app.state.scheme, settings), dead


def _wrong(pin: str) -> str:
    return "0" * len(pin) if pin != "0" * len(pin) else "1" * len(pin)


# A code's wrong PINs (reason, seconds ago) sent 500 s apart: the script counts 4
# (``pin_max_failures`` 5, ``pin_lockout_seconds`` 900)
PACED = [("wrong_pin", 2000), ("wrong_pin", 1500), ("wrong_pin", 1000), ("wrong_pin", 500)]
# A lock (1860 s ago), an attempt during it (1000 s ago), then 4 wrong PINs after its end
AFTER_A_LOCK = [
    *[("wrong_pin", ago) for ago in (1900, 1890, 1880, 1870)],
    ("locked", 1860),
    ("locked", 1000),
    *[("wrong_pin", ago) for ago in (950, 700, 400, 150)],
]


async def test_with_redis_down_concurrent_right_pins_have_one_first_query(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: with Redis down the answers come "from PostgreSQL, by the same rules". Twenty people
    checking one code at once (a copied label) must get counts 1..20 with one "first query",
    as the Redis path gives them (tests/test_verify.py); not twenty "first query" answers."""
    scheme = app.state.scheme
    batch_no, _ = await _batch(client, login, demo, 5)
    verifier, dead = _dead_verifier(app, verify_repeat_threshold=1000)
    serial = scheme.serial(batch_no, 2)
    pin = scheme.pin(serial)
    try:
        answers = await asyncio.gather(
            *[
                verifier.verify(VerifyIn(serial=serial, pin=pin), f"192.0.2.{i}", None)
                for i in range(20)
            ]
        )
    finally:
        await verifier.close()
        await dead.aclose()
    firsts = sum(a.reason == "first_query" for a in answers)
    assert firsts == 1 and sorted(a.queries for a in answers) == list(range(1, 21)), sorted(
        (a.reason, a.queries) for a in answers
    )


async def test_with_redis_down_concurrent_wrong_pins_still_lock_the_code(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the wrong-PIN lockout (V2) is what keeps a 6-digit PIN from being guessed: with 3 tries
    allowed, at most 3 wrong PINs may be answered (2 "wrong_pin", then "locked"), however they
    arrive. With Redis down, 20 guesses sent at once were all answered "wrong PIN, 2 tries
    left" and none locked the code: the lockout is bypassed by sending guesses in parallel."""
    scheme = app.state.scheme
    batch_no, _ = await _batch(client, login, demo, 5)
    verifier, dead = _dead_verifier(app, pin_max_failures=3)
    serial = scheme.serial(batch_no, 3)
    wrong = _wrong(scheme.pin(serial))
    try:
        answers = await asyncio.gather(
            *[
                verifier.verify(VerifyIn(serial=serial, pin=wrong), f"192.0.2.{i}", None)
                for i in range(20)
            ]
        )
    finally:
        await verifier.close()
        await dead.aclose()
    results = [a.result for a in answers]
    assert results.count("wrong_pin") <= 2 and results.count("locked") >= 18, sorted(
        (a.result, a.pin_attempts_left) for a in answers
    )


async def test_the_first_answer_once_redis_is_back_keeps_the_outage_s_lock(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a code locked by wrong PINs while Redis was down is still locked when Redis
    answers again ("a lock made during the outage holds after it"). The first verification Redis
    answered was served before the outage's codes were even handed to a worker: the right PIN
    sent then was taken at once — a guesser waited for Redis to come back and got fresh tries.
    The outage's codes are now reconciled before Redis answers for them."""
    scheme = app.state.scheme
    batch_no, _ = await _batch(client, login, demo, 5)
    verifier, dead = _dead_verifier(app, pin_max_failures=2)
    serial = scheme.serial(batch_no, 1)
    pin = scheme.pin(serial)
    try:
        for expected in ("wrong_pin", "locked"):
            answer = await verifier.verify(VerifyIn(serial=serial, pin=_wrong(pin)), None, None)
            assert answer.result == expected
        verifier.redis = app.state.redis  # Redis answers again
        after = await verifier.verify(VerifyIn(serial=serial, pin=pin), None, None)
    finally:
        await verifier.close()
        await dead.aclose()
    assert after.result == "locked", (after.result, after.reason)


async def test_a_code_first_checked_during_an_outage_is_not_first_again_when_redis_is_back(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a consumer in Shanghai checks a pack while Redis is down: "first query". Redis comes
    back; a second person, in Guangzhou, checks the same code: they must read "queried 2
    times, first in Shanghai" (a region jump), not "this is the first query"."""
    scheme = app.state.scheme
    batch_no, _ = await _batch(client, login, demo, 5)
    verifier, dead = _dead_verifier(app)
    serial = scheme.serial(batch_no, 2)
    pin = scheme.pin(serial)
    try:
        first = await verifier.verify(VerifyIn(serial=serial, pin=pin, gps=SHANGHAI), None, None)
        assert (first.reason, first.queries) == ("first_query", 1)
        verifier.redis = app.state.redis  # Redis answers again
        second = await verifier.verify(VerifyIn(serial=serial, pin=pin, gps=GUANGZHOU), None, None)
    finally:
        await verifier.close()
        await dead.aclose()
    assert second.queries == 2 and second.reason != "first_query", (second.reason, second.queries)
    assert second.first_query_at == first.first_query_at
    assert second.first_query_place == "上海市"


async def test_after_reconcile_the_first_query_is_still_the_outage_s_one(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: once the outage's codes are reconciled, Redis holds what the records show: the
    first query of the code (made in Shanghai during the outage) stays the first for every later
    consumer. The restore added the outage's count and kept Redis's own first query (made after
    the outage, in Guangzhou): "first queried … in Guangzhou" was shown from then on, for good,
    while the records said Shanghai, earlier."""
    scheme = app.state.scheme
    batch_no, _ = await _batch(client, login, demo, 5)
    verifier, dead = _dead_verifier(app)
    serial = scheme.serial(batch_no, 3)
    code = (batch_no << 32) | 3
    pin = scheme.pin(serial)
    ns = app.state.settings.redis_namespace
    try:
        first = await verifier.verify(VerifyIn(serial=serial, pin=pin, gps=SHANGHAI), None, None)
        verifier.redis = app.state.redis  # Redis answers again
        await verifier.verify(VerifyIn(serial=serial, pin=pin, gps=GUANGZHOU), None, None)
        deadline = time.monotonic() + 30
        while not await app.state.redis.hexists(f"{ns}:q:{code}", "fb_at"):
            assert time.monotonic() < deadline, "the outage's code was never reconciled"
            await asyncio.sleep(0.1)
        third = await verifier.verify(VerifyIn(serial=serial, pin=pin, gps=SHANGHAI), None, None)
    finally:
        await verifier.close()
        await dead.aclose()
    assert third.queries == 3
    assert (third.first_query_at, third.first_query_place) == (first.first_query_at, "上海市"), (
        third.first_query_at,
        third.first_query_place,
        first.first_query_at,
    )


async def test_paced_wrong_pins_during_an_outage_still_lock_the_code(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a guesser, while Redis is down, sends one wrong PIN of a code every 500 s (each
    within ``pin_lockout_seconds`` = 900 s of the one before). The Redis script renews the
    code's wrong-PIN count's time at every wrong PIN (``INCR fails; EXPIRE fails lockout``), so
    the 5th (``pin_max_failures``) locks the code. The fallback read the records of two lockout
    windows back only: the 4 wrong PINs before (-2000, -1500, -1000, -500 s) were seen as 3, the
    5th was answered "wrong PIN, 1 left" — paced so, no guess ever locked the code."""
    scheme = app.state.scheme
    batch_no, _ = await _batch(client, login, demo, 5)
    verifier, dead = _dead_verifier(app, pin_max_failures=5, pin_lockout_seconds=900)
    serial = scheme.serial(batch_no, 1)
    code = (batch_no << 32) | 1
    wrong = _wrong(scheme.pin(serial))
    try:
        for i in range(4):
            answer = await verifier.verify(
                VerifyIn(serial=serial, pin=wrong), f"198.51.100.{i + 1}", None
            )
            assert answer.result == "wrong_pin", answer
        # the four wrong PINs as a paced guesser sent them: 500 s apart, the last 500 s ago
        async with app.state.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT id FROM verifications WHERE code_id = %s ORDER BY at DESC", (code,)
                )
            ).fetchall()
            async with verifications_changed(conn, [row["id"] for row in rows]):
                for k, row in enumerate(rows, start=1):
                    await conn.execute(
                        "UPDATE verifications SET at = at - %s WHERE id = %s",
                        (timedelta(seconds=500 * k), row["id"]),
                    )
        fifth = await verifier.verify(VerifyIn(serial=serial, pin=wrong), "198.51.100.9", None)
    finally:
        await verifier.close()
        await dead.aclose()
    assert fifth.result == "locked", (fifth.result, fifth.pin_attempts_left)


async def _pin_records(app: Any, code: int, history: list[tuple[str, int]]) -> None:
    """Make the code's only records ``history`` — (reason, seconds ago) — wrong PINs
    (``wrong_pin``) and attempts answered ``locked``, from its one record made for real."""
    async with app.state.pool.connection() as conn:
        (template,) = await (
            await conn.execute("SELECT id FROM verifications WHERE code_id = %s", (code,))
        ).fetchall()
        for reason, ago in history:
            await conn.execute(
                """INSERT INTO verifications (at, record_key, code_id, serial, brand_id,
                       product_id, result, reason, queries, pin_given, client_ip, fallback)
                   SELECT now() - make_interval(secs => %s), gen_random_uuid(), code_id, serial,
                       brand_id, product_id, %s, %s, 0, true, client_ip, true
                     FROM verifications WHERE id = %s""",
                (ago, "locked" if reason == "locked" else "wrong_pin", reason, template["id"]),
            )
        async with verifications_changed(conn, [template["id"]]):
            await conn.execute("DELETE FROM verifications WHERE id = %s", (template["id"],))


async def test_an_attempt_during_a_lock_does_not_hide_the_wrong_pins_after_it(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: with Redis down, a guesser locks a code (5 wrong PINs, the 5th answered
    "locked", 1860 s ago), tries once more near the lock's end (answered "locked", 1000 s ago),
    then, the lock over (it ended 960 s ago), sends 4 more wrong PINs (950, 700, 400, 150 s
    ago: each within 900 s of the one before). By the script's rules (``INCR fails; EXPIRE
    fails lockout``; nothing counts during a lock) those 4 count and the next wrong PIN locks
    the code again. The fallback replayed only the last two windows' records (1800 s): the
    lock's start was out of them, the attempt 1000 s ago was taken for a lock's start, and the
    4 wrong PINs after the real lock's end fell inside that phantom lock: the next guess was
    answered "wrong PIN, 4 attempts left"."""
    scheme = app.state.scheme
    batch_no, _ = await _batch(client, login, demo, 5)
    verifier, dead = _dead_verifier(app, pin_max_failures=5, pin_lockout_seconds=900)
    serial = scheme.serial(batch_no, 2)
    code = (batch_no << 32) | 2
    wrong = _wrong(scheme.pin(serial))
    try:
        first = await verifier.verify(VerifyIn(serial=serial, pin=wrong), "198.51.100.20", None)
        assert first.result == "wrong_pin"
        await _pin_records(app, code, AFTER_A_LOCK)
        answer = await verifier.verify(VerifyIn(serial=serial, pin=wrong), "198.51.100.21", None)
    finally:
        await verifier.close()
        await dead.aclose()
    assert answer.result == "locked", (answer.result, answer.pin_attempts_left)


def _reconcile(settings: Any, code: int) -> tuple[int, int, int]:
    """``tracecode redis rebuild``'s steps for ``code`` (the outage's reconcile)."""
    client = redis_sync.Redis.from_url(settings.redis_url)
    try:
        with psycopg.connect(settings.database_url, autocommit=True) as pg:
            return rebuild.reconcile(client, pg, settings, [code])
    finally:
        client.close()


@pytest.mark.parametrize(
    "history",
    [PACED, AFTER_A_LOCK],
    ids=["paced", "attempt-during-a-lock"],
)
async def test_the_reconcile_restores_the_whole_wrong_pin_count(
    client: Any, login: Any, demo: Any, app: Any, history: list[tuple[str, int]]
) -> None:
    """A probe: the outage's reconcile (and ``tracecode redis rebuild``) replayed the last two
    lockout windows' records only, as the Redis-down path did: 4 wrong PINs paced 500 s apart
    came back as 3, and 4 made after a lock whose start was out of reach as none (an attempt
    during the lock taken for a new lock's start). Redis's script holds 4 in both."""
    scheme = app.state.scheme
    batch_no, _ = await _batch(client, login, demo, 5)
    verifier, dead = _dead_verifier(app)
    serial = scheme.serial(batch_no, 3)
    code = (batch_no << 32) | 3
    try:
        await verifier.verify(VerifyIn(serial=serial, pin=_wrong(scheme.pin(serial))), None, None)
    finally:
        await verifier.close()
        await dead.aclose()
    await _pin_records(app, code, history)
    settings = msgspec.structs.replace(
        app.state.settings, pin_max_failures=5, pin_lockout_seconds=900
    )
    _, locks, fails = await asyncio.to_thread(_reconcile, settings, code)
    ns = settings.redis_namespace
    assert (locks, fails) == (0, 1)
    assert await app.state.redis.get(rebuild.fails_key(ns, code)) == b"4"
    assert 0 < await app.state.redis.ttl(rebuild.fails_key(ns, code)) <= 900 - 150


async def test_clients_wrong_pins_counted_in_an_outage_are_forgotten_when_redis_is_back(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: while Redis is down each API process counts the clients' wrong PINs over all
    codes itself, "forgotten when Redis is back" (README) — the count was never reset: a shop's
    address (one NAT for many phones) that mistyped PINs in one outage carried them into the
    next, where one mistyped PIN locked every phone behind it out (``client_locked``, 15
    minutes). Once Redis answered again the count starts over: one wrong PIN in the second
    outage is one, and the right PIN after it is genuine."""
    from tests.servers import silent_redis_proxy
    from tests.test_hardening_queues import _activated

    serials = await _activated(client, login, demo, app, 12)
    scheme = app.state.scheme
    local = msgspec.structs.replace(
        settings,
        verify_flag_never_shipped=False,
        verify_rate_limit=100_000,
        redis_timeout=0.5,
        redis_retry_after=0.2,
        pin_max_failures=50,
        pin_client_max_failures=6,
    )
    shop = f"198.51.100.{secrets.randbelow(200) + 20}"
    async with silent_redis_proxy(settings.redis_url) as (url, silent):
        connection = Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        verifier = Verifier(app.state.pool, connection, scheme, local, url)

        async def verify(serial: str, right: bool, ip: str = shop) -> Any:
            pin = scheme.pin(serial)
            return await verifier.verify(
                VerifyIn(serial=serial, pin=pin if right else _wrong(pin)), ip, "probe"
            )

        try:
            assert (await verify(serials[0], True, "192.0.2.33")).result == "genuine"
            silent.set()  # outage 1: five wrong PINs from the shop, on five codes
            first = [(await verify(serials[1 + i], False)).result for i in range(5)]
            assert first == ["wrong_pin"] * 5
            silent.clear()  # Redis is back
            deadline = time.monotonic() + 10
            while verifier._skip_redis:
                assert time.monotonic() < deadline, "Redis back, still skipped"
                await asyncio.sleep(0.05)
            back = await verify(serials[6], True, "192.0.2.34")
            assert back.result == "genuine" and not verifier._redis_down
            silent.set()  # outage 2: one mistyped PIN, then a customer's right one
            once = await verify(serials[7], False)
            assert once.result == "wrong_pin", once
            right = await verify(serials[8], True)
            assert (right.result, right.reason) == ("genuine", "first_query"), right
        finally:
            silent.clear()
            await verifier.close()
            await connection.aclose()
