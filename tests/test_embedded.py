"""The embedded real PostgreSQL and Redis start from an empty var/ and are reused on restart; the
PostgreSQL takes ``MAX_CONNECTIONS``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis

from app.embedded import MAX_CONNECTIONS
from app.processes import server_command, worker_command
from tests.conftest import ROOT, SESSION
from tests.servers import free_port


def _services(action: str, var: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACECODE_")}
    env["TRACECODE_VAR_DIR"] = str(var)
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "services", action],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _urls(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_embedded_servers_start_from_empty_and_are_reused() -> None:
    var = ROOT / "var" / f"embedded-test-{SESSION}"
    assert not var.exists()
    try:
        first = _urls(_services("up", var))
        pid = (var / "pgdata" / "postmaster.pid").read_text().splitlines()[0]
        with psycopg.connect(first["TRACECODE_DATABASE_URL"]) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("tracecode",)
            # room for the test suite's processes (restarted once with it, on the first start)
            assert conn.execute("SHOW max_connections").fetchone() == (str(MAX_CONNECTIONS),)
            conn.execute("CREATE TABLE IF NOT EXISTS survives (x int)")
            conn.commit()
        client = redis.Redis.from_url(first["TRACECODE_REDIS_URL"])
        client.set("survives", "yes")

        second = _urls(_services("up", var))
        assert second == first
        assert (var / "pgdata" / "postmaster.pid").read_text().splitlines()[0] == pid
        with psycopg.connect(second["TRACECODE_DATABASE_URL"]) as conn:
            assert conn.execute("SELECT to_regclass('survives') IS NOT NULL").fetchone() == (True,)
        assert redis.Redis.from_url(second["TRACECODE_REDIS_URL"]).get("survives") == b"yes"
    finally:
        _services("down", var)
        shutil.rmtree(var, ignore_errors=True)
    assert not (var / "pgdata" / "postmaster.pid").exists()


def test_an_embedded_redis_that_fails_to_start_is_one_line_not_a_traceback(
    tmp_path: Path,
) -> None:
    """A probe: when the embedded Redis under ``var/`` could not start — here its append-only
    file is corrupt, as a machine crash may leave it (README "Durability") — every command that
    resolves the servers (``db status``, ``redis rebuild``, ``codes …``) died with a traceback
    (``RuntimeError`` out of ``app.embedded.start_redis``, which ``app.cli.main`` did not
    catch), exit 1. Now ``start_redis`` raises ``ServiceError``: one line naming the server and
    its log, exit 2, as for any other server that is not there."""
    var = tmp_path / "var"
    (var / "redis").mkdir(parents=True)
    (var / "redis" / "appendonly.aof").write_text("this is not an append-only file\r\n")
    env = {k: v for k, v in os.environ.items() if k != "TRACECODE_REDIS_URL"}
    env["TRACECODE_VAR_DIR"] = str(var)
    env["TRACECODE_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "status"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.startswith("tracecode: embedded Redis did not start"), done.stderr
    assert str(var.resolve() / "redis" / "redis.log") in done.stderr


def test_the_api_server_and_the_worker_say_so_in_one_line_too(tmp_path: Path) -> None:
    """A probe: the API server (granian's ``app.main:create_app``) and the worker (``dramatiq
    workers.main``) run on their own — without ``tracecode run``, which resolves the servers
    first — printed a traceback when the embedded Redis could not start (``ServiceError`` out of
    the lifespan, out of the worker's boot). Now each prints the CLI's one line and stops."""
    var = tmp_path / "var"
    (var / "redis").mkdir(parents=True)
    (var / "redis" / "appendonly.aof").write_text("this is not an append-only file\r\n")
    env = {k: v for k, v in os.environ.items() if k != "TRACECODE_REDIS_URL"}
    env["TRACECODE_VAR_DIR"] = str(var)
    for command in (server_command("127.0.0.1", free_port(), 1), worker_command()):
        done = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        output = done.stdout + done.stderr
        assert done.returncode != 0 and "Traceback" not in output, output[-3000:]
        assert "tracecode: embedded Redis did not start; see " in output, output[-3000:]


def _bystander(argv0: str, *args: str) -> subprocess.Popen[bytes]:
    """A process of this user that is no server of ours, shown as ``argv0 args…``."""
    script = "import time; time.sleep(300)"
    return subprocess.Popen(
        ["bash", "-c", 'exec -a "$0" "$@"', argv0, sys.executable, "-c", script, *args]
    )


@pytest.mark.parametrize(
    ("pid_file", "argv0", "args"),
    [
        ("redis/redis.pid", "sleep", ()),  # the pid reused by any program
        ("pgdata/postmaster.pid", "sleep", ()),
        ("redis/redis.pid", "/opt/bin/redis-server", ("127.0.0.1:6379",)),  # another Redis
        ("pgdata/postmaster.pid", "/usr/lib/postgresql/bin/postgres", ("-D", "/elsewhere")),
    ],
)
def test_services_down_leaves_alone_the_process_of_a_stale_pid_file(
    tmp_path: Path, pid_file: str, argv0: str, args: tuple[str, ...]
) -> None:
    """A probe: ``embedded.stop`` (``tracecode services down``, and ``tracecode run``'s shutdown
    of the servers it started) signalled whatever pid ``var/redis/redis.pid`` / ``var/pgdata/
    postmaster.pid`` held. A server killed -9 or a reboot leaves the file; once its pid was
    reused, `services down` sent SIGTERM to an unrelated process of the user and waited 30 s.
    Now a pid that is not that server (its command line: a ``redis-server`` of this var's socket,
    a ``postgres -D`` of this var's data directory) marks a stale file: removed (unless another
    postmaster holds its pid), not signalled, and ``running`` is false."""
    from app import embedded

    var = tmp_path / "var"
    path = var / pid_file
    path.parent.mkdir(parents=True)
    bystander = _bystander(argv0, *args)
    try:
        deadline = time.monotonic() + 10  # until bash has exec'd into the program
        cmdline = Path(f"/proc/{bystander.pid}/cmdline")
        while not cmdline.read_bytes().startswith(argv0.encode() + b"\0"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        path.write_text(f"{bystander.pid}\n{var / 'pgdata'}\n")
        assert not embedded.running(var)
        # the stale file is gone, but one a postmaster's pid holds is left (a postmaster misread
        # would shut itself down without its file: a review)
        assert path.exists() == (Path(argv0).name == "postgres")
        path.write_text(f"{bystander.pid}\n")
        started = time.monotonic()
        embedded.stop(var)
        assert time.monotonic() - started < 5
        time.sleep(0.2)
        assert bystander.poll() is None, "services down signalled a process that is no server"
        assert path.exists() == (Path(argv0).name == "postgres")
    finally:
        bystander.kill()
        bystander.wait()


def test_without_proc_a_postmaster_under_a_path_with_a_space_is_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: without /proc (macOS) the pid's command line came from ``ps`` split at spaces,
    so under ``/Users/Jane Doe/…`` the running postmaster read as another program — its
    ``postmaster.pid`` removed, the server taken as not running. ``ps``'s executable name and
    its line whole are read: ``-D`` and this data directory, not one whose name starts so."""
    from app import embedded

    pgdata = tmp_path / "Jane Doe" / "var" / "pgdata"
    pgdata.mkdir(parents=True)
    binary = tmp_path / "Jane Doe" / ".venv" / "pginstall" / "bin" / "postgres"
    said = {"comm=": str(binary), "command=": f"{binary} -D {pgdata} -h  -k {pgdata}"}
    monkeypatch.setattr(embedded, "_has_proc", lambda: False)
    monkeypatch.setattr(embedded, "_ps", lambda pid, field: said[field])
    assert embedded._is_postgres(4242, pgdata)
    assert not embedded._is_postgres(4242, pgdata.with_name("pgdata-old"))
    said["command="] = f"{binary} -D {pgdata}-old"
    assert not embedded._is_postgres(4242, pgdata)
    said["comm="] = "/bin/sleep"
    assert not embedded._is_postgres(4242, pgdata)


def test_a_redis_that_set_its_title_is_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clean-clone run: Redis sets its process title in its first argument, spaces and all
    (``…/redis-server unixsocket:…/redis.sock``), which read as a program named ``redis.sock``:
    no Redis of ours, so `services down` (and a test's restart) left it running."""
    from app import embedded

    var = tmp_path / "Jane Doe" / "var"
    socket_path = embedded._redis_socket(var)
    title = f"{tmp_path}/Jane Doe/.venv/bin/redis-server unixsocket:{socket_path}"
    monkeypatch.setattr(embedded, "_command_line", lambda pid: [title])
    assert embedded._is_redis(4242, var)
    assert not embedded._is_redis(4242, tmp_path / "other")  # another's socket: asked on ours
    monkeypatch.setattr(embedded, "_command_line", lambda pid: ["/bin/sleep 300"])
    assert not embedded._is_redis(4242, var)
