"""The round's Redis call on one server goes over the verifier's own connection (issue 21,
``Verifier._call``): a script Redis does not hold (after a restart or SCRIPT FLUSH) is loaded
again and the round answered; a connection Redis dropped fails its round only (answered from
PostgreSQL), and the next round takes a new connection; closing the verifier gives it back."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.verify import service
from app.verify.service import Verifier


@pytest.fixture
async def own_verifier(client: Any, app: Any) -> AsyncIterator[Verifier]:
    """The app's verifier swapped for a new one (its own Redis connection), for one test."""
    original = app.state.verifier
    verifier = Verifier(app.state.pool, app.state.redis, app.state.scheme, app.state.settings)
    app.state.verifier = verifier
    yield verifier
    app.state.verifier = original
    await verifier.close()


async def _malformed(client: Any) -> dict[str, Any]:
    """A verification every round answers (refused, yet counted and recorded by the script)."""
    response = await client.post("/v1/verify", json={"serial": "NOT-A-SERIAL", "lang": "en"})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert (answer["result"], answer["reason"]) == ("not_genuine", "malformed")
    return answer


async def test_a_script_redis_does_not_hold_is_loaded_again(
    client: Any, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same script with a comment of its own: a digest Redis has never seen (NOSCRIPT)
    monkeypatch.setattr(service, "_SCRIPT", service._SCRIPT + f"\n-- {secrets.token_hex(8)}")
    verifier = Verifier(app.state.pool, app.state.redis, app.state.scheme, app.state.settings)
    original, app.state.verifier = app.state.verifier, verifier
    try:
        sha = verifier._script.sha
        assert (await app.state.redis.script_exists(sha)) == [False]
        await _malformed(client)
        assert (await app.state.redis.script_exists(sha)) == [True]
        await _malformed(client)  # and used from then on
    finally:
        app.state.verifier = original
        await verifier.close()


async def test_a_dropped_connection_fails_one_round_then_is_replaced(
    client: Any, app: Any, own_verifier: Verifier
) -> None:
    await _malformed(client)
    first = own_verifier._redis_conn
    assert first is not None
    await first.send_packed_command(b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n")
    client_id = await first.read_response()
    await app.state.redis.execute_command("CLIENT", "KILL", "ID", client_id)
    await _malformed(client)  # the round fails on the dead connection: answered from PostgreSQL
    await _malformed(client)  # the next round on a new connection
    assert own_verifier._redis_conn is not None and own_verifier._redis_conn is not first


async def test_closing_the_verifier_gives_its_connection_back(
    client: Any, app: Any, own_verifier: Verifier
) -> None:
    await _malformed(client)
    held = own_verifier._redis_conn
    pool = app.state.redis.connection_pool
    assert held is not None and held in pool._in_use_connections
    await own_verifier.close()
    assert own_verifier._redis_conn is None and held not in pool._in_use_connections
