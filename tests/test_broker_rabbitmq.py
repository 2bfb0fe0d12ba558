"""The workers on both brokers (issue 20 item 2): dramatiq on the embedded Redis (the default) and
on RabbitMQ (``TRACECODE_BROKER_URL=amqp://…``), real worker processes (``python -m dramatiq
workers.main``) on real servers, each test once per broker.

RabbitMQ is the one this machine runs on 127.0.0.1:5672 (``TRACECODE_TEST_RABBITMQ_URL`` names
another). Where none answers, the RabbitMQ half skips with the reason; so does it when no virtual
host can be made. Each test session gets a virtual host of its own (made through the management
API when it is enabled, else ``rabbitmqctl``; deleted at the end), as it gets a database and a
Redis namespace of its own: parallel sessions (pytest-xdist) never take each other's jobs.

What is shown on each broker: a job sent by the API runs to completion; a worker killed with
SIGKILL mid-job leaves nothing half done, and the job completes exactly once after a new worker
starts; a poison job and a job for an unknown actor are dead-lettered (the ``dead_letters`` table
and the broker's own dead-letter queue) while the others run, and so is a job whose options
dramatiq cannot retry it by; the middlewares (heartbeat,
verification write-behind, stock roll-up) run in a worker on either broker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import msgspec
import psycopg
import pytest

from tests.conftest import ROOT, SESSION

RABBITMQ_URL = os.environ.get("TRACECODE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
VHOST = f"tctest{SESSION}"
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
KILL_EVENTS = 10_000  # the most one document holds: a job of seconds, time to kill it mid-way


# -- RabbitMQ: reachable? a virtual host of this session -----------------------------------------


def _unreachable(url: str) -> str | None:
    """Why the RabbitMQ of ``url`` cannot be used, or None when it answers AMQP."""
    import pika  # type: ignore[import-untyped]

    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return f"RabbitMQ is not reachable at {host}:{port} ({exc})"
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except Exception as exc:
        return f"RabbitMQ at {host}:{port} refused an AMQP connection ({type(exc).__name__})"
    return None


class VhostAdmin:
    """Makes and deletes a virtual host through the management API (port 15672) when it is
    enabled, else through ``rabbitmqctl`` on this machine; ``reason`` says why neither works."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.user = urllib.parse.unquote(parts.username or "guest")
        self.password = urllib.parse.unquote(parts.password or "guest")
        self.api = f"http://{parts.hostname or '127.0.0.1'}:15672/api"
        self.local = parts.hostname in (None, "127.0.0.1", "localhost", "::1")
        self.reason, self.mode = "", ""

    def _http(self, method: str, path: str, body: dict[str, str] | None = None) -> None:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request = urllib.request.Request(
            self.api + path,
            method=method,
            data=json.dumps(body or {}).encode(),
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()

    def _ctl(self, *args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)

    def create(self, vhost: str) -> bool:
        quoted = urllib.parse.quote(vhost, safe="")
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        try:
            self._http("PUT", f"/vhosts/{quoted}")
            self._http("PUT", f"/permissions/{quoted}/{urllib.parse.quote(self.user)}", everything)
            self.mode = "http"
            return True
        except (OSError, urllib.error.HTTPError) as exc:
            self.reason = f"the management API at {self.api} ({exc})"
        if not (self.local and shutil.which("rabbitmqctl")):
            self.reason += "; no local rabbitmqctl"
            return False
        try:
            self._ctl("add_vhost", vhost)
            self._ctl("set_permissions", "-p", vhost, self.user, ".*", ".*", ".*")
        except (OSError, subprocess.SubprocessError) as exc:
            self.reason += f"; rabbitmqctl failed ({exc})"
            return False
        self.mode = "ctl"
        return True

    def delete(self, vhost: str) -> None:
        if self.mode == "http":
            self._http("DELETE", f"/vhosts/{urllib.parse.quote(vhost, safe='')}")
        else:
            self._ctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """The AMQP URL of this session's own virtual host (skips, saying why, without RabbitMQ)."""
    reason = _unreachable(RABBITMQ_URL)
    if reason:
        print(f"\nskipping the RabbitMQ tests: {reason}")
        pytest.skip(reason)
    admin = VhostAdmin(RABBITMQ_URL)
    if not admin.create(VHOST):
        reason = f"cannot make a RabbitMQ virtual host: {admin.reason}"
        print(f"\nskipping the RabbitMQ tests: {reason}")
        pytest.skip(reason)
    try:
        yield f"{RABBITMQ_URL.rstrip('/')}/{VHOST}"
    finally:
        try:
            admin.delete(VHOST)
        except Exception as exc:  # leave the vhost behind rather than fail the run
            print(f"could not delete the RabbitMQ virtual host {VHOST}: {exc}")


# -- one lane per broker: how the API sends, how a worker is started ------------------------------


@dataclass
class Lane:
    """One broker: the test process sends through ``broker`` (as the API does, ``app.jobs``),
    workers get ``env``."""

    name: str
    broker: dramatiq.Broker
    env: dict[str, str] = field(default_factory=dict)

    def dead_lettered(self, message: dramatiq.Message[Any]) -> bool:
        """Whether the broker's own dead-letter queue holds ``message`` (as ``send`` gave it)."""
        from dramatiq.brokers.redis import RedisBroker

        if isinstance(self.broker, RedisBroker):  # kept by the id the Redis broker gave it
            held = f"{self.broker.namespace}:default.XQ.msgs"
            return bool(self.broker.client.hexists(held, message.options["redis_message_id"]))
        return message.message_id in _rabbit_dead_letters(self.broker)


def _rabbit_dead_letters(broker: Any) -> set[str]:
    """The message ids in RabbitMQ's ``default.XQ``, read without consuming them (the messages
    are fetched unacknowledged, then given back)."""
    channel = broker.connection.channel()
    try:
        found: set[str] = set()
        while True:
            method, _, body = channel.basic_get("default.XQ", auto_ack=False)
            if method is None:
                return found
            found.add(json.loads(body)["message_id"])
    finally:
        channel.close()  # the unacknowledged messages go back to the queue


@pytest.fixture(scope="module")
def rabbit_broker(rabbitmq_url: str, settings: Any) -> Iterator[dramatiq.Broker]:
    from app.jobs import build_broker

    broker = build_broker(msgspec.structs.replace(settings, broker_url=rabbitmq_url))
    yield broker
    broker.close()


@pytest.fixture(params=["redis", "rabbitmq"])
def lane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Lane:
    """The broker of this run of the test; the API's ``app.jobs.send`` sends through it."""
    from app import jobs

    if request.param == "redis":
        found = Lane("redis", jobs.broker)
    else:
        rabbit = request.getfixturevalue("rabbit_broker")
        url = request.getfixturevalue("rabbitmq_url")
        found = Lane("rabbitmq", rabbit, {"TRACECODE_BROKER_URL": url})
        monkeypatch.setattr(jobs, "broker", rabbit)
    return found


class Worker:
    """A real worker process (``dramatiq workers.main``, one process, one thread) in a process
    group of its own, with ``env`` beside the lane's, logging to ``log``."""

    def __init__(self, lane: Lane, log: Path, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1"]
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "--threads", "1"],
                env={**os.environ, **lane.env, **(env or {})},
                cwd=ROOT,
                process_group=0,
                stdout=out,
                stderr=out,
            )

    def kill(self) -> None:
        """SIGKILL to the dramatiq parent and its worker process: no clean-up, no ack."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM to the dramatiq parent only, which hands it on to its worker process once: a
        second SIGTERM (one sent to the whole group) makes that process exit at once, without
        its shutdown (the heartbeat key would stay)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.kill()  # whatever is left of the group


@contextmanager
def worker(lane: Lane, log: Path, env: dict[str, str] | None = None) -> Iterator[Worker]:
    running = Worker(lane, log, env)
    try:
        yield running
    finally:
        running.stop()


def _tail(log: Path | None, chars: int = 3000) -> str:
    return log.read_text()[-chars:] if log and log.exists() else ""


async def until(
    what: str, check: Callable[[], Any], seconds: float = 120, log: Path | None = None
) -> Any:
    """Poll ``check`` until it returns something true; fail with the worker's log otherwise."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}\n{_tail(log)}")
        await asyncio.sleep(0.1)


def _sql(settings: Any, query: str, *params: Any) -> tuple[Any, ...] | None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()


def _forget_heartbeats(settings: Any) -> None:
    """A killed worker's heartbeat outlives it (30 s): the other tests expect none."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    for key in client.scan_iter(match=f"{settings.redis_namespace}:worker:*"):
        client.delete(key)


# -- EPCIS documents ---------------------------------------------------------------------------


def epcis_document(tag: str, size: int) -> bytes:
    """``size`` observations of EPCs outside Tracecode's codes (stored, change no code state)."""
    events = [
        {
            "type": "ObjectEvent",
            "eventTime": "2026-11-30T10:00:00.000+08:00",
            "eventTimeZoneOffset": "+08:00",
            "epcList": [f"urn:epc:id:sgtin:0614141.107346.{tag}-{i}"],
            "action": "OBSERVE",
        }
        for i in range(size)
    ]
    return json.dumps(
        {
            "@context": CONTEXT,
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-12-01T08:00:00Z",
            "epcisBody": {"eventList": events},
        }
    ).encode()


async def post_capture(client: Any, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    response = await client.post(
        "/epcis/capture", headers={**headers, "Content-Type": "application/ld+json"}, content=body
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert job["state"] == "pending", job  # a worker's job, not applied in the request
    return job


def capture_state(settings: Any, capture_id: str) -> dict[str, Any]:
    row = _sql(
        settings,
        "SELECT c.state, c.stored, c.finished_at, c.brand_id, "
        "(SELECT count(*) FROM epcis_events e WHERE e.capture_id = c.id) "
        "FROM epcis_captures c WHERE c.id = %s",
        capture_id,
    )
    assert row is not None
    return dict(zip(("state", "stored", "finished_at", "brand_id", "events"), row, strict=True))


# -- the tests -----------------------------------------------------------------------------------


def test_the_setting_chooses_the_broker_and_its_password_is_never_shown(settings: Any) -> None:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.brokers.redis import RedisBroker

    from app.config import SettingsError, load_settings
    from app.jobs import build_broker

    assert isinstance(build_broker(settings), RedisBroker)  # the default: no TRACECODE_BROKER_URL
    env = {"TRACECODE_MASTER_KEY": "5a" * 32}
    url = "amqp://tc:s3cr%2Ft@10.0.0.7:5672/prod?heartbeat=30;amqps://tc:s3cr%2Ft@10.0.0.8/prod"
    chosen = load_settings({**env, "TRACECODE_BROKER_URL": url})
    broker = build_broker(chosen)  # builds, connects to nothing
    assert isinstance(broker, RabbitmqBroker) and broker.confirm_delivery
    assert [p.host for p in broker.parameters] == ["10.0.0.7", "10.0.0.8"]
    assert [p.virtual_host for p in broker.parameters] == ["prod", "prod"]
    shown = repr(chosen)
    assert "s3cr" not in shown and "amqp://tc:***@10.0.0.7" in shown, shown
    for bad in ("redis://x", "amqp:/x", "http://tc:s3cret@h", "amqp://a b", "amqp://h;"):
        with pytest.raises(SettingsError) as refused:
            load_settings({**env, "TRACECODE_BROKER_URL": bad})
        assert "TRACECODE_BROKER_URL" in str(refused.value) and "s3cret" not in str(refused.value)
    with pytest.raises(SettingsError) as refused:  # pika's own checks, message redacted
        build_broker(load_settings({**env, "TRACECODE_BROKER_URL": "amqp://tc:s3cret@h/?nope=1"}))
    assert "TRACECODE_BROKER_URL" in str(refused.value) and "s3cret" not in str(refused.value)


async def test_a_capture_job_sent_by_the_api_runs_to_completion(
    lane: Lane, client: Any, login: Any, settings: Any, tmp_path: Path
) -> None:
    """POST /epcis/capture of more than TRACECODE_EPCIS_INLINE_EVENTS events: the API sends the
    job on the broker, a worker process on that broker applies it."""
    partner = await login("partner")
    size = settings.epcis_inline_events + 500
    job = await post_capture(client, partner, epcis_document(f"R{secrets.token_hex(4)}", size))
    log = tmp_path / "worker.log"
    with worker(lane, log):
        done = await until(
            "the capture job to finish",
            lambda: (s := capture_state(settings, job["captureID"]))["state"] != "pending" and s,
            log=log,
        )
    assert (done["state"], done["stored"], done["events"]) == ("success", size, size), done
    polled = (await client.get(f"/epcis/capture/{job['captureID']}", headers=partner)).json()
    assert polled["state"] == "success" and polled["stored"] == size


async def test_a_worker_killed_mid_job_finishes_it_exactly_once_after_a_restart(
    lane: Lane, client: Any, login: Any, settings: Any, tmp_path: Path
) -> None:
    """SIGKILL of the worker while it applies a large capture: nothing of it is committed; the
    job is delivered again (RabbitMQ: as the connection drops; Redis: after
    TRACECODE_JOB_REQUEUE_SECONDS) and a new worker applies it once — every event stored once,
    and no later delivery runs it again."""
    from app.locks import Lock

    partner = await login("partner")
    job = await post_capture(
        client, partner, epcis_document(f"K{secrets.token_hex(4)}", KILL_EVENTS)
    )
    capture_id = job["captureID"]

    def writing() -> bool:  # a capture holds its writer lock: events are being written
        row = _sql(  # (whatever the lock's key: no other capture runs in this session now)
            settings,
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE d.datname = current_database() AND l.locktype = 'advisory' AND l.granted "
            "AND l.classid::bigint = %s AND l.objsubid = 2",
            int(Lock.EPCIS_CAPTURE),
        )
        return bool(row and row[0])

    log = tmp_path / "worker.log"
    requeue = {"TRACECODE_JOB_REQUEUE_SECONDS": "3"}
    first = Worker(lane, log, requeue)
    try:
        await until("the worker to be writing the capture", writing, log=log)
        first.kill()
        killed = capture_state(settings, capture_id)
        assert (killed["state"], killed["events"]) == ("pending", 0), killed  # all or nothing
        with worker(lane, log, requeue):
            done = await until(
                "the capture job to finish on the new worker",
                lambda: (s := capture_state(settings, capture_id))["state"] != "pending" and s,
                seconds=180,
                log=log,
            )
            assert (done["state"], done["stored"]) == ("success", KILL_EVENTS), done
            assert done["events"] == KILL_EVENTS  # every event once: one completion
            await asyncio.sleep(5)  # past the Redis requeue window: no second run
            assert capture_state(settings, capture_id) == done
    finally:
        first.kill()
        _forget_heartbeats(settings)
    if lane.name == "rabbitmq":  # acknowledged: nothing left on the queue, nothing dead
        assert lane.broker.get_queue_message_counts("default") == (0, 0, 0)  # type: ignore[attr-defined]


async def _pong_and_two_dead_letters(
    lane: Lane, settings: Any, token: str, log: Path
) -> list[tuple[str, str]]:
    """Run a worker (logging to ``log``) until the ping sent with ``token`` has answered and
    two ``dead_letters`` rows whose payload holds ``token`` are written; those rows, in order."""
    from app import jobs

    def buried() -> list[tuple[str, str]]:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT queue, reason FROM dead_letters WHERE convert_from(payload, 'UTF8') "
                "LIKE %s ORDER BY id",
                (f"%{token}%",),
            ).fetchall()
        return [(queue, reason) for queue, reason in rows]

    with worker(lane, log):
        await until(
            "the pong",
            lambda: jobs.redis_client.get(f"{settings.redis_namespace}:pong:{token}"),
            log=log,
        )
        found: list[tuple[str, str]] = await until(
            "two dead letters", lambda: len(rows := buried()) >= 2 and rows, log=log
        )
    return found


async def test_poison_jobs_are_dead_lettered_and_the_other_jobs_run(
    lane: Lane, client: Any, settings: Any, tmp_path: Path
) -> None:
    """A job whose data is wrong (capture_job of a non-id: ValueError, in the actor's throws) and
    a job for an actor no worker has are rejected without retries: written to ``dead_letters``
    and kept in the broker's dead-letter queue; a good job sent after them runs."""
    from app import jobs

    token = secrets.token_hex(4)
    poison = jobs.send("capture_job", f"not-a-capture-{token}")
    unknown = jobs.send("no_such_actor", token)
    jobs.send("ping", token)

    log = tmp_path / "worker.log"
    found = await _pong_and_two_dead_letters(lane, settings, token, log)
    assert sorted(queue for queue, _ in found) == ["job:capture_job", "job:no_such_actor"], found
    reasons = dict(found)
    assert reasons["job:capture_job"].startswith("ValueError"), reasons
    assert reasons["job:no_such_actor"].startswith("ActorNotFound"), reasons
    assert len(found) == 2  # rejected once each: no retries of a poison
    assert lane.dead_lettered(poison) and lane.dead_lettered(unknown)
    # the worker's lines about them are JSON, as the API's (probe S: dramatiq's plain text)
    ids = (poison.message_id, unknown.message_id)
    told = [line for line in log.read_text().splitlines() if any(i in line for i in ids)]
    assert len(told) >= 2 and all(json.loads(line)["level"] for line in told), told


async def test_a_job_with_spoilt_retry_options_is_dead_lettered_on_either_broker(
    lane: Lane, client: Any, settings: Any, tmp_path: Path
) -> None:
    """Probe: a failing job whose message carries options dramatiq's Retries cannot use was
    acknowledged and lost — ``throws`` on it ended the worker's thread (RabbitMQ: the Redis
    broker sets such a message aside as it fetches it, ``job:undecodable``), and options of
    the right kind that still make the retry raise (``retries`` below 0, a ``min_backoff`` past
    a float's range) were logged and passed over. ``app.jobs.JobRetries`` fails both: each is
    in ``dead_letters`` (``job:ping``, with its reason) and a job sent after them runs."""
    from app import jobs

    token = secrets.token_hex(4)

    def spoilt(**options: Any) -> dramatiq.Message[Any]:  # ping takes a token: the run raises
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name="default", actor_name="ping", args=(), kwargs={"probe": token}, **options
        )
        return lane.broker.enqueue(message)

    throws = spoilt(options={"throws": "x"})
    unretriable = spoilt(options={"retries": -1, "min_backoff": 10**400})
    jobs.send("ping", token)

    log = tmp_path / "worker.log"
    found = await _pong_and_two_dead_letters(lane, settings, token, log)
    set_aside = "job:undecodable" if lane.name == "redis" else "job:ping"
    thrown = [queue for queue, reason in found if "it carries option throws" in reason]
    failed = [queue for queue, reason in found if reason.startswith("TypeError")]
    assert len(found) == 2 and thrown == [set_aside] and failed == ["job:ping"], found
    assert lane.dead_lettered(unretriable)
    if lane.name == "rabbitmq":
        assert lane.dead_lettered(throws)


async def test_the_middlewares_run_on_either_broker(
    lane: Lane, client: Any, settings: Any, tmp_path: Path
) -> None:
    """A worker on either broker beats (``/health`` sees it), drains the verification
    write-behind queue into PostgreSQL and folds stock deltas; stopped, its heartbeat goes."""
    from app.jobs import heartbeat_pattern, redis_client

    token = secrets.token_hex(4)
    serial = f"X{token}"
    lot = f"RB{token}"
    answer = await client.post("/v1/verify", json={"serial": serial})
    assert answer.status_code == 200 and answer.json()["result"] == "not_genuine", answer.text
    _sql(
        settings,
        "INSERT INTO stock_deltas (org_id, product_id, lot, on_hand, in_transit, event_id) "
        "VALUES (-3, -3, %s, 2, 0, 0) RETURNING id",
        lot,
    )
    log = tmp_path / "worker.log"
    try:
        with worker(lane, log):
            await until(
                "a heartbeat",
                lambda: list(
                    redis_client.scan_iter(match=heartbeat_pattern(settings.redis_namespace))
                ),
                log=log,
            )
            health = (await client.get("/health")).json()
            assert health["workers"]["status"] == "ok", health
            await until(
                "the verification to be flushed",
                lambda: _sql(settings, "SELECT 1 FROM verifications WHERE serial = %s", serial),
                log=log,
            )
            await until(
                "the stock delta to be folded",
                lambda: _sql(settings, "SELECT 1 FROM stock WHERE lot = %s AND on_hand = 2", lot),
                log=log,
            )
        assert not list(redis_client.scan_iter(match=heartbeat_pattern(settings.redis_namespace)))
    finally:
        _sql(settings, "DELETE FROM stock WHERE lot = %s RETURNING 1", lot)
        _sql(settings, "DELETE FROM stock_deltas WHERE lot = %s RETURNING 1", lot)


def _tracecode_run(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "--no-demo"],
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
        )


async def test_tracecode_run_puts_its_api_and_worker_on_rabbitmq(
    rabbitmq_url: str,
    rabbit_broker: dramatiq.Broker,
    client: Any,
    demo: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    """``tracecode run`` with TRACECODE_BROKER_URL: its worker takes jobs from RabbitMQ (a ping
    sent there is answered) and its API sends them there (a large capture posted to it is
    applied); the start-up banner names the broker without its password."""
    import httpx

    from app.demo import DEMO_PASSWORD
    from app.jobs import redis_client
    from tests.servers import free_port

    port = free_port()
    log = tmp_path / "run.log"
    run = _tracecode_run(
        {
            "TRACECODE_VAR_DIR": str(tmp_path / "var"),
            "TRACECODE_PORT": str(port),
            "TRACECODE_BROKER_URL": rabbitmq_url,
        },
        log,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:

            async def serving() -> bool:
                try:
                    return (await api.get("/ping")).status_code == 200
                except httpx.HTTPError:
                    return False

            deadline = time.monotonic() + 120
            while not await serving():
                assert run.poll() is None and time.monotonic() < deadline, _tail(log)
                await asyncio.sleep(0.3)
            token = secrets.token_hex(4)
            rabbit_broker.enqueue(
                dramatiq.Message(
                    queue_name="default", actor_name="ping", args=(token,), kwargs={}, options={}
                )
            )
            await until(
                "the pong of the run's worker",
                lambda: redis_client.get(f"{settings.redis_namespace}:pong:{token}"),
                log=log,
            )
            login = await api.post(
                "/auth/login", json={"username": "partner", "password": DEMO_PASSWORD}
            )
            assert login.status_code == 200, login.text
            partner = {"Authorization": f"Bearer {login.json()['access_token']}"}
            size = settings.epcis_inline_events + 1
            body = epcis_document(f"T{secrets.token_hex(4)}", size)
            job = await post_capture(api, partner, body)
            done = await until(
                "the capture job to finish",
                lambda: (
                    (s := capture_state(settings, job["captureID"]))["state"] != "pending" and s
                ),
                log=log,
            )
            assert (done["state"], done["events"]) == ("success", size), done
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        _forget_heartbeats(settings)
    banner = _tail(log, 1 << 20)  # the whole log, the banner at its start
    parts = urllib.parse.urlsplit(RABBITMQ_URL)
    assert f"Jobs:     amqp://{parts.username}:***@" in banner and f"/{VHOST}" in banner, banner
    assert f":{parts.password}@" not in banner
