"""Operations faults (issue 13, items 19-21 and 23): a worker killed mid-job, PostgreSQL
restarted, a child of `tracecode run` killed, a second `tracecode run` on the same var dir, the
CLI's development key and runtime directory, and the demo's story. Real processes and servers
only; the PostgreSQL that is stopped here is a private one in a temporary directory."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest

from tests.conftest import ROOT, TEST_MASTER_KEY
from tests.servers import free_port

PASS = "a-long-passphrase-1"


def _children(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        below = parents.get(todo.pop(), [])
        found += below
        todo += below
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _forget_heartbeats(settings: Any) -> None:
    """Heartbeats of killed workers outlive them (30 s): other tests expect none."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    for key in client.scan_iter(match=f"{settings.redis_namespace}:worker:*"):
        client.delete(key)


# -- a worker killed mid-job ----------------------------------------------------------------------


def _start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1", "--threads", "1"],
        env=env,
        cwd=ROOT,
        process_group=0,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def test_a_worker_killed_mid_export_finishes_it_once_after_a_restart(
    client: Any, login: Any, demo: Any, app: Any, settings: Any, tmp_path: Path
) -> None:
    """kill -9 of the worker process during an export job: the broker gives the job to the next
    worker within TRACECODE_JOB_REQUEUE_SECONDS (plus its maintenance), which writes it once."""
    from app.auth.service import load_user
    from app.codes import printfile
    from app.codes.exports import create_unit_export
    from app.codes.schemas import ExportIn
    from workers.codes import run_export_job

    size = 700_000  # three steps of the export (~2 s each here): time to kill it mid-way
    made = await client.post(
        "/batches",
        headers=await login("planner"),
        json={"size": size, "printer_id": demo["PRINTER-SH"]},
    )
    assert made.status_code == 201, made.text
    batch_no = made.json()["batch_no"]
    export_dir = tmp_path / "exports"
    job_settings = msgspec.structs.replace(settings, export_dir=str(export_dir))
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM users WHERE username = 'planner'")
        ).fetchone()
        planner = await load_user(conn, row["id"])
        export = await create_unit_export(
            conn,
            planner,
            job_settings,
            app.state.scheme,
            batch_no,
            msgspec.convert(
                {"outer": {"passphrase": PASS}, "inner": {"passphrase": PASS}}, ExportIn
            ),
        )
    run_export_job.send(export.id)  # as POST /batches/{no}/exports does for a large export

    def state() -> dict[str, Any]:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            found = conn.execute(
                "SELECT state, progress, attempts, finished_at FROM code_exports WHERE id = %s",
                (export.id,),
            ).fetchone()
        assert found is not None
        return dict(zip(("state", "progress", "attempts", "finished_at"), found, strict=True))

    env = {
        **os.environ,
        "TRACECODE_EXPORT_DIR": str(export_dir),
        "TRACECODE_JOB_REQUEUE_SECONDS": "3",
    }
    first = _start_worker(env)
    second: subprocess.Popen[bytes] | None = None
    try:
        running = await asyncio.to_thread(
            _wait_for,
            "the export to be under way",
            lambda: (s := state())["state"] == "running" and s["progress"] > 0 and s,
            120,
        )
        os.killpg(first.pid, signal.SIGKILL)  # the worker process and its dramatiq parent
        first.wait()
        killed = state()
        assert killed["state"] == "running" and killed["progress"] < size, killed
        assert running["attempts"] == 1
        started = time.monotonic()
        second = _start_worker(env)
        done = await asyncio.to_thread(
            _wait_for, "the export to be done", lambda: (s := state())["state"] == "done" and s, 120
        )
        assert time.monotonic() - started < 90
        assert done["attempts"] == 2 and done["progress"] == size
        await asyncio.sleep(4)  # a second redelivery would start it over: it must not happen
        assert state() == done
    finally:
        _kill_all(_children(first.pid))
        _stop_worker(first)
        if second is not None:
            _stop_worker(second)
        _forget_heartbeats(settings)
    files = sorted(p.name for p in (export_dir / str(export.id)).iterdir())
    assert files == ["inner.tcpf", "outer.tcpf"]  # no *.partial left behind
    blob = (export_dir / str(export.id) / "inner.tcpf").read_bytes()
    plain = b"".join(printfile.decrypt(io.BytesIO(blob), passphrase=PASS))
    assert plain.count(b"\n") == size


# -- PostgreSQL restarted -------------------------------------------------------------------------


def _private_postgres(var: Path) -> str:
    """Start (or start again) a PostgreSQL of this test only, in ``var``; its URL."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from app.embedded import start_postgres; "
            "print(start_postgres(Path(sys.argv[1])))",
            str(var),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _stop_postgres(var: Path) -> None:
    from app import embedded

    embedded._signal_and_wait(var / "pgdata" / "postmaster.pid", signal.SIGINT)


@pytest.fixture
async def private_app(settings: Any, tmp_path_factory: Any) -> AsyncIterator[Any]:
    """The app on a PostgreSQL of its own (with the demo and its units), and that server's
    var dir; the server is stopped at the end whatever happens."""
    from app.main import create_app

    var = Path(f"/tmp/tc-pg-{os.getpid()}-{time.monotonic_ns() % 10**6}")  # short socket path
    url = await asyncio.to_thread(_private_postgres, var)
    try:
        app = create_app(msgspec.structs.replace(settings, database_url=url))
        started, stop = asyncio.Event(), asyncio.Event()

        async def run_lifespan() -> None:
            async with app.lifespan():
                started.set()
                await stop.wait()

        task = asyncio.create_task(run_lifespan())
        await asyncio.wait(
            [task, asyncio.create_task(started.wait())], return_when="FIRST_COMPLETED"
        )
        if task.done():
            task.result()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=60
        ) as http:
            yield app, http, var
        stop.set()
        await task
    finally:
        await asyncio.to_thread(_stop_postgres, var)
        import shutil

        shutil.rmtree(var, ignore_errors=True)


async def test_postgres_down_answers_503_within_seconds_and_recovers_within_seconds(
    private_app: Any, settings: Any
) -> None:
    from app.demo import DEMO_PASSWORD, demo_codes

    app, http, var = private_app
    async with app.state.pool.connection() as conn:
        codes = await demo_codes(conn, app.state.scheme, settings, 20)
    unit = next(c for c in codes if c.story.startswith("shipped:"))

    async def calls() -> dict[str, httpx.Response]:
        return {
            "login": await http.post(
                "/auth/login", json={"username": "admin", "password": DEMO_PASSWORD}
            ),
            "verify": await http.post("/v1/verify", json={"serial": unit.serial, "pin": unit.pin}),
            "health": await http.get("/health"),
        }

    up = await calls()
    assert {k: r.status_code for k, r in up.items()} == {"login": 200, "verify": 200, "health": 200}
    assert up["verify"].json()["result"] == "genuine"

    await asyncio.to_thread(_stop_postgres, var)
    for _ in range(2):  # the first calls meet dead pooled connections, later ones an empty pool
        for name, call in (
            ("login", lambda: http.post(
                "/auth/login", json={"username": "admin", "password": DEMO_PASSWORD}
            )),
            ("verify", lambda: http.post(
                "/v1/verify", json={"serial": unit.serial, "pin": unit.pin}
            )),
            ("health", lambda: http.get("/health")),
        ):  # fmt: skip
            started = time.monotonic()
            answer = await call()
            took = time.monotonic() - started
            assert answer.status_code == 503, (name, answer.text)
            assert took < 8, f"{name} took {took:.1f} s to answer 503"
            if name == "health":
                assert answer.json()["down"] in (["postgres"], ["postgres", "workers"])
                assert answer.json()["postgres"]["status"] == "down"
            else:
                assert answer.json()["error"]["code"] == "service_unavailable"

    await asyncio.to_thread(_private_postgres, var)  # the same data directory, started again
    back = time.monotonic()
    while True:
        # the calls made 6 s after the restart are answered: a round is timed from its start, so
        # the CPU a loaded machine takes to answer (a login's password hash) is not counted
        asked = time.monotonic() - back
        answers = await calls()
        if all(r.status_code == 200 for r in answers.values()):
            break
        assert asked < 6, {k: r.text for k, r in answers.items()}
        await asyncio.sleep(0.2)
    assert answers["health"].json()["down"] in ([], ["workers"])


# -- tracecode run ----------------------------------------------------------------------------------


def _run(var: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TRACECODE_VAR_DIR": str(var), "TRACECODE_PORT": str(port)}
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run", "--no-demo", *extra],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _serves(port: int) -> bool:
    # a refused connection answers at once; a loaded machine may take seconds to answer /ping
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ping", timeout=15).status_code == 200
    except httpx.HTTPError:
        return False


def _booted(settings: Any, pids: list[int]) -> list[int]:
    """Those of these dramatiq worker processes that have booted: their heartbeat is in Redis.

    It is written as the worker starts its threads, just before the process tells its dramatiq
    parent it is up. A worker killed earlier (still importing, which takes seconds on a loaded
    machine) is noticed only after dramatiq's --worker-fork-timeout (30 s)."""
    import redis

    from app.jobs import heartbeat_key

    client = redis.Redis.from_url(settings.redis_url)
    try:
        host = socket.gethostname()
        return [p for p in pids if client.exists(heartbeat_key(settings.redis_namespace, host, p))]
    finally:
        client.close()


def _role(pid: int, role: str) -> list[int]:
    """The run's processes of one kind: granian / dramatiq, parent (supervisor) or worker."""
    found = []
    for child in _children(pid):
        line = _cmdline(child)
        name = "granian" if "-m granian" in line else "dramatiq" if "-m dramatiq" in line else ""
        if not name or not _alive(child):
            continue
        parent = int(Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()[1])
        kind = "parent" if parent == pid else "worker"
        if role == f"{name} {kind}":
            found.append(child)
    return found


def test_run_restarts_a_killed_child_and_a_second_run_leaves_it_alone(
    client: Any, settings: Any, tmp_path: Path
) -> None:
    # Every wait is on the condition the next step needs, with a deadline generous enough for
    # a loaded 2-core machine (processes start in seconds there, not in tenths of one).
    var, port = tmp_path / "var", free_port()
    run = _run(var, port)
    seen: list[int] = []
    try:
        _wait_for("the API", lambda: _serves(port), 90)
        # booted, not just forked: see _booted
        (first,) = _wait_for(
            "the worker to boot", lambda: _booted(settings, _role(run.pid, "dramatiq worker")), 90
        )
        seen += _children(run.pid)

        # the dramatiq worker process: dramatiq's parent gives up, `tracecode run` starts both anew
        (old_parent,) = _role(run.pid, "dramatiq parent")
        os.kill(first, signal.SIGKILL)
        new_worker = _wait_for(
            "a new worker to boot under a new dramatiq parent",
            lambda: (
                [p for p in _role(run.pid, "dramatiq parent") if p != old_parent]
                and _booted(settings, _role(run.pid, "dramatiq worker"))
            ),
            90,
        )
        assert first not in new_worker
        seen += _children(run.pid)

        # granian's worker process: granian starts another one
        (worker,) = _role(run.pid, "granian worker")
        os.kill(worker, signal.SIGKILL)
        _wait_for(
            "a new granian worker",
            lambda: [p for p in _role(run.pid, "granian worker") if p != worker],
            60,
        )
        _wait_for("the API after its worker died", lambda: _serves(port), 90)
        seen += _children(run.pid)

        # granian itself: `tracecode run` starts it again (and clears what it left)
        (server,) = _role(run.pid, "granian parent")
        os.kill(server, signal.SIGKILL)
        _wait_for(
            "a new API server",
            lambda: [p for p in _role(run.pid, "granian parent") if p != server],
            60,
        )
        _wait_for("the API after granian died", lambda: _serves(port), 90)
        seen += _children(run.pid)

        # a second run on the same var dir fails fast and leaves the first one alone
        second = _run(var, free_port())
        try:
            out, _ = second.communicate(timeout=90)
        finally:
            second.kill()
        assert second.returncode == 2, out
        assert f"uses {var}" in out and str(run.pid) in out
        assert _serves(port)
        # ... and so does one on another var dir but the same port
        third = _run(tmp_path / "var3", port)
        try:
            out, _ = third.communicate(timeout=90)
        finally:
            third.kill()
        assert third.returncode == 2 and f"127.0.0.1:{port}" in out, out
        assert _serves(port)
    finally:
        seen += _children(run.pid)
        run.send_signal(signal.SIGINT)
        try:
            output, _ = run.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            run.kill()
            output, _ = run.communicate()
        _kill_all(seen)
        _forget_heartbeats(settings)
    assert run.returncode == 0, output
    assert "the worker (pid" in output and "restarting it in" in output
    assert "the API server (pid" in output and "Tracecode stopped." in output
    assert not [pid for pid in seen if _alive(pid)], "a child of tracecode run outlived it"
    assert not _serves(port)


# -- the CLI: development key, runtime directory --------------------------------------------------


def test_cli_direct_mode_uses_the_development_key_of_tracecode_run(
    demo: Any, tmp_path: Path
) -> None:
    import json

    var = tmp_path / "var"
    var.mkdir()
    (var / "master.key").write_text(TEST_MASTER_KEY + "\n")  # what `tracecode run` wrote
    (var / "master.key").chmod(0o600)  # as it makes it
    env = {k: v for k, v in os.environ.items() if k != "TRACECODE_MASTER_KEY"}
    env["TRACECODE_VAR_DIR"] = str(var)
    listed = subprocess.run(
        [sys.executable, "-m", "app.cli", "codes", "list", "--limit", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "items" in json.loads(listed.stdout)
    assert "Warning" not in listed.stderr
    # `tracecode chain …` too (a newcomer's walk through the README: "no master key")
    brand = str(demo["BRAND-LUMI"])
    checked = subprocess.run(
        [sys.executable, "-m", "app.cli", "chain", "check", "--brand", brand],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0 and "no master key" not in checked.stderr, checked.stderr
    (var / "master.key").unlink()  # without one, a clear message (no key is made up)
    missing = subprocess.run(
        [sys.executable, "-m", "app.cli", "codes", "list"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no master key" in missing.stderr
    assert not (var / "master.key").exists()


def test_embedded_postgres_needs_no_runtime_dir_warning(tmp_path: Path) -> None:
    """pgserver reads platformdirs' user runtime dir when imported; without XDG_RUNTIME_DIR that
    warned on every CLI call. The embedded module provides a private one first."""
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            "import os; from app.embedded import ensure_runtime_dir; ensure_runtime_dir(); "
            "import pgserver; print(os.environ['XDG_RUNTIME_DIR'])",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    runtime = Path(done.stdout.strip())
    assert runtime.parent == tmp_path and (runtime.stat().st_mode & 0o777) == 0o700
    without = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import pgserver"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "RuntimeDirWarning" in without.stderr  # the cause, when nothing provides the dir


def test_run_leaves_embedded_servers_it_did_not_start_running(tmp_path: Path) -> None:
    """`tracecode run` on embedded servers that already ran (`tracecode services up`, or a run
    that was killed) does not stop them when it ends; `tracecode services down` does."""
    var = Path(f"/tmp/tc-run-{os.getpid()}-{time.monotonic_ns() % 10**6}")  # short socket path
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACECODE_")}
    env.update(TRACECODE_VAR_DIR=str(var), TRACECODE_MASTER_KEY=TEST_MASTER_KEY)

    def services(action: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "services", action],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    from app import embedded

    try:
        services("up")
        port = free_port()
        run = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "--no-demo", "--no-worker"],
            env={**env, "TRACECODE_PORT": str(port)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait_for("the API", lambda: _serves(port), 90)
        finally:
            run.send_signal(signal.SIGINT)
            output, _ = run.communicate(timeout=60)
        assert run.returncode == 0 and "keep running" in output, output
        assert embedded.running(var)
    finally:
        services("down")
        import shutil

        shutil.rmtree(var, ignore_errors=True)
    assert not embedded.running(var)


def test_a_child_that_keeps_crashing_at_once_is_given_up_after_five_tries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The supervisor's policy on a real process: back-off doubling from 2 s between fast
    crashes, and after the fifth fast crash in a row no restart (`tracecode run` then stops)."""
    from app.cli import MAX_FAST_CRASHES, _Child

    child = _Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
    delays = []
    for attempt in range(1, MAX_FAST_CRASHES + 1):
        child.start()
        code = _wait_for("the crash", lambda: child.exited(), 30)
        assert code == 3
        restart = child.schedule_restart(code)
        if attempt < MAX_FAST_CRASHES:
            assert restart and child.restart_at is not None
            delays.append(round(child.restart_at - time.monotonic()))
        else:
            assert not restart
    assert delays == [2, 4, 8, 16]
    err = capsys.readouterr().err
    assert "the crasher (pid" in err and "exited with code 3" in err and "giving up" in err


async def test_the_api_s_statements_and_idle_transactions_are_bounded(
    client: Any, app: Any
) -> None:
    """Probe G: nothing bounded a request's query (an EPCIS query on a bad plan ran for 10
    minutes, holding its connection). The API's pooled connections carry the statement limit,
    and a statement cancelled by it answers 503 query_timeout, not "the database is
    unavailable"."""
    from litestar import Request

    from app.errors import handle_db_error

    settings = app.state.settings
    async with app.state.pool.connection() as conn:
        shown = await (await conn.execute("SHOW statement_timeout")).fetchone()
        idle = await (await conn.execute("SHOW idle_in_transaction_session_timeout")).fetchone()
        assert (settings.db_statement_timeout, shown["statement_timeout"]) == (60, "1min")
        assert idle["idle_in_transaction_session_timeout"] == "0"  # off by default
        await conn.execute("SET LOCAL statement_timeout = 50")
        with pytest.raises(psycopg.errors.QueryCanceled) as cancelled:
            await conn.execute("SELECT pg_sleep(5)")
        await conn.rollback()
    request: Request[Any, Any, Any] = Request({"type": "http", "method": "GET", "path": "/x"})
    answer = handle_db_error(request, cancelled.value)  # its warning names the request
    assert answer.status_code == 503
    assert answer.content["error"]["code"] == "query_timeout"


def test_a_supervised_child_dies_with_its_supervisor() -> None:
    """Probe J: ``tracecode run`` killed with -9 left its API server and workers running (each
    in a process group of its own), and the next run found its port taken. A child now gets
    SIGTERM when its supervisor dies."""
    script = (
        "import sys, time\n"
        "from app.cli import _Child\n"
        "child = _Child('sleeper', [sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "child.start()\n"
        "print(child.process.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    supervisor = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert supervisor.stdout is not None
    child = int(supervisor.stdout.readline())
    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.wait()

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{child}/stat") as stat:  # a zombie of init's is gone too
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"

    _wait_for("the child's end", gone, 10)


async def test_demo_codes_keep_to_the_demo_brands_product_when_a_tenant_reuses_its_number(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: product numbers are per brand, yet ``app.demo.demo_codes`` (``tracecode demo
    codes``, ``make run``'s demo units) found the demo product by number across all brands; once
    another brand had a ``LM-HY-50`` and the demo product's row was edited (its tuple moved),
    the demo batch was asked for with the other brand's product: 409 ``request_key_reused`` out
    of the command, ``make run`` failed at start-up. Now the demo brand's own product."""
    import secrets

    from app.demo import demo_codes

    async with app.state.pool.connection() as conn:
        first = await demo_codes(conn, app.state.scheme, app.state.settings, 3)
    platform, tag = await login("platform"), secrets.token_hex(3).upper()
    brand = await client.post(
        "/orgs", headers=platform, json={"kind": "brand", "name": f"Nova {tag}", "erp_code": tag}
    )
    assert brand.status_code == 201, brand.text
    async with app.state.pool.connection() as conn:  # the other brand's product of that number
        await conn.execute(
            "INSERT INTO products (org_id, name, product_no) VALUES (%s, 'Nova serum', 'LM-HY-50')",
            (brand.json()["id"],),
        )
    admin = await login("admin")
    found = (await client.get("/products", headers=admin, params={"q": "LM-HY-50"})).json()
    assert found["total"] == 1, found  # the demo brand's own
    edited = await client.patch(
        f"/products/{found['items'][0]['id']}", headers=admin, json={"spec": "50 ml (2027)"}
    )
    assert edited.status_code == 200, edited.text
    async with app.state.pool.connection() as conn:
        again = await demo_codes(conn, app.state.scheme, app.state.settings, 3)
    assert again == first
