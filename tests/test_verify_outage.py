"""Verification while Redis is down and once it is back (SPEC V1-V2; README "Durability"):
the answers PostgreSQL gives under concurrency, and the outage's codes reconciled in Redis
before Redis answers for them again. Each test is a probe's, failing on the code before its fix.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from redis.asyncio import Redis

from app.verify.schemas import Gps, VerifyIn
from app.verify.service import Verifier
from tests.helpers import activate, issue_units, scheme_for_tests

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
    return "000000" if pin != "000000" else "111111"


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
