"""Health, metrics, OpenAPI, request ids and JSON logs, worker heartbeat (issue: foundation)."""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

import pytest

from app.logs import JsonFormatter, request_id_var
from tests.helpers import assert_error


async def test_health_reports_postgres_redis_and_workers(client: Any) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["postgres"]["status"] == "ok" and body["redis"]["status"] == "ok"
    assert body["workers"]["status"] in {"ok", "missing"}


@pytest.fixture
def no_earlier_workers(settings: Any) -> None:
    """The heartbeats earlier tests' workers left (a worker killed on purpose keeps its key for
    ``WORKER_STALE_SECONDS``): gone, so that these tests count their own (a shuffled-order run
    met a killed worker's beat here). No other test's worker runs now: each stops with its
    test or module."""
    import redis as redis_sync

    from app.jobs import heartbeat_pattern, stop_beating

    client = redis_sync.Redis.from_url(settings.redis_url)
    for key in client.scan_iter(match=heartbeat_pattern(settings.redis_namespace)):
        stop_beating(client, settings.redis_namespace, key)


@pytest.mark.usefixtures("no_earlier_workers")
def test_worker_heartbeat_and_actor_round_trip(settings: Any) -> None:
    """A real dramatiq worker (in-process) on the real Redis broker beats and runs actors."""
    import redis as redis_sync
    from dramatiq import Worker

    from app.jobs import broker, heartbeat_pattern
    from workers import main  # noqa: F401 - the actors and middleware (heartbeat) of a worker
    from workers.ops import ping

    client = redis_sync.Redis.from_url(settings.redis_url)
    token = secrets.token_hex(4)
    worker = Worker(broker, worker_threads=1)
    worker.start()
    try:
        ping.send(token)
        deadline = time.monotonic() + 20
        key = f"{settings.redis_namespace}:pong:{token}"
        while not client.exists(key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.exists(key), "the worker did not run the ping actor"
        beats = list(client.scan_iter(match=heartbeat_pattern(settings.redis_namespace)))
        assert beats, "the worker wrote no heartbeat"
    finally:
        worker.stop()
    assert not list(client.scan_iter(match=heartbeat_pattern(settings.redis_namespace)))


@pytest.mark.usefixtures("no_earlier_workers")
async def test_health_sees_a_live_worker_heartbeat(client: Any, app: Any, settings: Any) -> None:
    import redis as redis_sync

    from app.jobs import beat, heartbeat_key, stop_beating

    key = heartbeat_key(settings.redis_namespace, "testhost", 1)
    sync = redis_sync.Redis.from_url(settings.redis_url)
    beat(sync, settings.redis_namespace, key)
    try:
        body = (await client.get("/health")).json()
        assert body["workers"] == {"status": "ok", "detail": "1 worker process(es)"}, body
    finally:
        stop_beating(sync, settings.redis_namespace, key)
    assert (await client.get("/health")).json()["workers"]["status"] == "missing"
    beat(sync, settings.redis_namespace, key)  # its key gone (expired, deleted): not counted
    await app.state.redis.delete(key)
    assert (await client.get("/health")).json()["workers"]["status"] == "missing"
    # a beat older than the stale time does not count
    await app.state.redis.zadd(f"{settings.redis_namespace}:workers", {key: time.time() - 60})
    try:
        assert (await client.get("/health")).json()["workers"]["status"] == "missing"
    finally:
        stop_beating(sync, settings.redis_namespace, key)
        sync.close()


async def test_metrics_are_prometheus_text(client: Any) -> None:
    await client.get("/ping")
    response = await client.get("/metrics")
    assert response.status_code == 200
    # a probe: the charset was named twice, which Prometheus (Go's mime parser) refuses
    assert response.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
    assert "tracecode_http_requests_total" in response.text
    assert 'route="/ping"' in response.text


async def test_openapi_schema_lists_the_api(client: Any) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/auth/login", "/orgs", "/users", "/products", "/categories", "/health"):
        assert path in paths, path
    assert (await client.get("/schema")).status_code == 200


async def test_request_id_is_echoed_or_generated(client: Any) -> None:
    given = await client.get("/ping", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = await client.get("/ping")
    assert len(generated.headers["x-request-id"]) == 32
    hostile = await client.get("/ping", headers={"X-Request-ID": "<script>"})
    assert hostile.headers["x-request-id"] != "<script>"


def test_log_lines_are_json_with_the_request_id() -> None:
    token = request_id_var.set("req-42")
    try:
        record = logging.LogRecord(
            "tracecode.x", logging.INFO, __file__, 1, "hello %s", ("you",), None
        )
        record.status = 201
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "hello you" and line["request_id"] == "req-42" and line["status"] == 201
    assert line["level"] == "INFO"


async def test_health_answers_within_seconds_when_postgres_stops_answering(settings: Any) -> None:
    """Probe S: the 2 s limit covered only the wait for a pool slot; the pool's check of an
    idle connection and ``SELECT 1`` to a server that went silent (frozen, partitioned) waited
    as long as it was silent. A proxy in front of PostgreSQL stops forwarding here."""
    import httpx
    import msgspec

    from app.main import create_app
    from tests.servers import silent_proxy

    async with silent_proxy(settings.database_url) as (url, silent):
        app = create_app(msgspec.structs.replace(settings, database_url=url, db_pool_max=2))
        async with app.lifespan():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/health")).json()["postgres"]["status"] == "ok"
                silent.set()
                started = time.monotonic()
                answer = await client.get("/health")
                waited = time.monotonic() - started
    assert answer.status_code == 503 and "postgres" in answer.json()["down"], answer.text
    assert waited < 3.5, f"/health took {waited:.1f} s"


async def test_a_busy_pool_is_not_a_database_down(settings: Any) -> None:
    """Probe W: a burst of log-ins (each holding a pooled connection through its password check)
    made ``/health`` wait for a connection, time out and answer 503 "postgres down"."""
    import asyncio

    import httpx
    import msgspec

    from app.main import create_app

    app = create_app(msgspec.structs.replace(settings, db_pool_min=1, db_pool_max=2))
    async with app.lifespan():
        pool, both_held, release = app.state.pool, asyncio.Event(), asyncio.Event()
        holding: list[int] = []

        async def hold() -> None:
            async with pool.connection():
                holding.append(1)
                if len(holding) == 2:  # every connection of the pool taken
                    both_held.set()
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await both_held.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get("/health")
        release.set()
        await asyncio.gather(*holders)
    assert answer.status_code == 200, answer.text
    assert answer.json()["postgres"] == {"status": "ok", "detail": "every pooled connection busy"}


async def test_health_with_a_busy_pool_opens_one_side_connection_per_process(
    settings: Any, monkeypatch: Any
) -> None:
    """A probe: ``GET /health`` is anonymous, and with every pooled connection busy each call
    opened a PostgreSQL connection of its own, without bound (83 at once: ``max_connections``
    reached, past the pools' budget). The side check is one at a time per process, its answer
    shared by the calls that come meanwhile (and in the second after)."""
    import asyncio

    import msgspec
    from psycopg import AsyncConnection

    from app.main import create_app
    from app.ops import routes
    from tests.helpers import served

    opened: list[int] = []

    class Counted:
        """``AsyncConnection`` as ``app.ops.routes`` opens its side connections, counted."""

        @staticmethod
        async def connect(*args: Any, **kwargs: Any) -> Any:
            opened.append(1)
            return await AsyncConnection.connect(*args, **kwargs)

    monkeypatch.setattr(routes, "AsyncConnection", Counted)
    app = create_app(msgspec.structs.replace(settings, db_pool_min=1, db_pool_max=2))
    async with served(app) as client:
        async with app.state.pool.connection(), app.state.pool.connection():  # every one busy
            answers = await asyncio.gather(*(client.get("/health") for _ in range(25)))
    assert {a.status_code for a in answers} == {200}, answers[0].text
    assert {a.json()["postgres"]["detail"] for a in answers} == {"every pooled connection busy"}
    assert len(opened) <= 2, f"25 /health calls opened {len(opened)} connections of their own"


async def test_a_side_check_of_a_silent_server_ends_by_itself(
    settings: Any, monkeypatch: Any
) -> None:
    """A left-out of the side check: with every pooled connection busy and the server gone
    silent, the side check's connection waited for the server's answer as long as it stayed
    silent, holding a socket for good; a new one every ``SIDE_STALE`` s. It gives up after
    ``SIDE_STALE`` s."""
    import asyncio

    import httpx
    import msgspec

    from app.main import create_app
    from app.ops import routes
    from tests.servers import silent_proxy

    monkeypatch.setattr(routes, "SIDE_STALE", 1.0)
    async with silent_proxy(settings.database_url) as (url, silent):
        app = create_app(
            msgspec.structs.replace(settings, database_url=url, db_pool_min=1, db_pool_max=1)
        )
        async with app.lifespan():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                async with app.state.pool.connection():  # the pool's one connection busy
                    silent.set()
                    answer = await client.get("/health")
                    side = routes._SideCheck.of(app.state).task
                    assert side is not None
                    await asyncio.wait({side}, timeout=5)
                    assert side.done(), "the side check still waits for a silent server"
    assert answer.status_code == 503 and "postgres" in answer.json()["down"], answer.text
    assert isinstance(side.exception(), TimeoutError)


async def test_an_options_request_on_an_opt_out_path_does_not_log_the_phone(
    client: Any, demo: Any, login: Any
) -> None:
    """A probe: the phone in ``/sms/opt-outs/{phone}`` is kept out of the access log by
    ``opt={"private_path": True}`` on its PUT and DELETE, but ``OPTIONS`` on the same path (a
    browser's CORS preflight before the PUT, or anyone's request) is answered 204 by the
    handler Litestar generates, which has no such option: ``app.logs.logged_path`` wrote the
    whole phone into the access line. Now a handler of a route with a private handler logs the
    route's template too, whatever the method."""
    from tests.test_front import captured_log, lines

    phone = "13812345678"
    with captured_log() as log:
        preflight = await client.request("OPTIONS", f"/sms/opt-outs/{phone}")
        put = await client.put(f"/sms/opt-outs/{phone}", headers=await login("marketer"))
    assert (preflight.status_code, put.status_code) == (204, 204), put.text
    access = {line["request_id"]: line for line in lines(log)}
    assert access[put.headers["x-request-id"]]["path"] == "/sms/opt-outs/{phone}"
    assert access[preflight.headers["x-request-id"]]["path"] == "/sms/opt-outs/{phone}"
    assert phone not in log.getvalue()


@pytest.mark.parametrize("param", ["entity", "entity_id", "action"])
async def test_audit_filters_refuse_an_empty_value(
    client: Any, login: Any, demo: Any, param: str
) -> None:
    """A probe: ``GET /audit?entity=`` (or ``entity_id=``, ``action=``) answers 200 with ``total`` 0 while
    the log holds rows: the empty string is compared as a value (``a.entity = ''``), so a
    console whose filter box was left blank shows an empty audit log. Expected: 400
    ``validation_failed`` naming the parameter, as every other list's text filters answer an
    empty value (cause: app/ops/routes.py:audit_log takes ``str | None`` without
    ``min_length=1``)."""
    headers = await login("admin")
    everything = await client.get("/audit", headers=headers)
    assert everything.status_code == 200 and everything.json()["total"] > 0, everything.text
    answer = await client.get("/audit", headers=headers, params={param: ""})
    error = assert_error(answer, 400, "validation_failed")
    assert error["details"][0]["field"] == param, error
