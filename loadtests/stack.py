"""A local Tracecode stack for load tests: services, API (granian), flusher worker, codes file.

    .venv/bin/python loadtests/stack.py [--count N] [--port P] [--api-cpus 0] [--services-cpus 1]
                                        [--sched-batch] -- COMMAND ...

Starts (or reuses) PostgreSQL and Redis — the ``TRACECODE_DATABASE_URL`` / ``TRACECODE_REDIS_URL``
servers when set, otherwise embedded ones under ``var/loadtest`` (a var dir of its own, so a
developer's ``var/`` is left alone) — migrates, writes N activated demo codes with
``tracecode demo codes --count N`` (lines ``serial,pin,url``), clears the load test's own Redis
counters (query counts, PIN lockouts, rate limits; never the record queue), starts granian with
one worker on 127.0.0.1 and a dramatiq worker (the verification flusher), runs COMMAND with
``LOADTEST_URL`` and ``LOADTEST_CODES`` in its environment, then stops everything it started.

The server gets a verification rate limit and a client wrong-PIN lockout high enough for a load
test from one address (``TRACECODE_VERIFY_RATE_LIMIT``, ``TRACECODE_PIN_CLIENT_MAX_FAILURES``),
its own Redis namespace (``loadtest``) and, unless set,
``TRACECODE_VERIFY_FLAG_NEVER_SHIPPED=false``: demo units are never shipped, and a genuine code
should answer ``genuine`` here.

The demo data (its users share the public demo password) never goes into the database a
``TRACECODE_DATABASE_URL`` names, which may be a production one: on that server the stack makes a
database of its own (``tracecode_loadtest_<random>``, as the test suite does) and drops it when it
stops. A failure to start prints one line (``stack.py: ...``) and exits 1.

``bench/bench_verify.py`` uses the same ``Stack`` class.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"  # load tests only ever target this machine's loopback
LOADTEST_RATE_LIMIT = 1_000_000_000  # per IP per minute: effectively off for the load test
# wrong PINs of one client over all codes (default 20 in 15 min): every user's come from
# 127.0.0.1, so the scenario's wrong PINs would lock the right ones out
LOADTEST_PIN_CLIENT_MAX = 100_000
NAMESPACE = "loadtest"
STOP_SECONDS = 15  # after SIGINT to every process of the stack, those still running are killed


class StackError(RuntimeError):
    """The stack could not start: a ``tracecode`` command failed, a process exited, the API
    never answered. Its message is one line, passwords in URLs redacted."""


def _redacted(text: str) -> str:
    from app.config import redact_url

    return redact_url(text) or ""


def _last_line(text: str) -> str:
    """The line that says what went wrong: the last exception line (a Rust backtrace may follow
    a Python one, as granian prints them), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"[\w.]*(Error|Exception)\b", line):
            return line
    return lines[-1] if lines else "no output"


def loadtest_env(port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every process of the stack (server, worker, CLI, load generator)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("TRACECODE_VAR_DIR", str(ROOT / "var" / "loadtest"))
    if not env.get("TRACECODE_MASTER_KEY") and not env.get("TRACECODE_MASTER_KEY_FILE"):
        env["TRACECODE_MASTER_KEY"] = "5a" * 32  # a fixed key for load-test data only
    env["TRACECODE_VERIFY_RATE_LIMIT"] = str(LOADTEST_RATE_LIMIT)
    env["TRACECODE_PIN_CLIENT_MAX_FAILURES"] = str(LOADTEST_PIN_CLIENT_MAX)
    env.setdefault("TRACECODE_VERIFY_FLAG_NEVER_SHIPPED", "false")
    env.setdefault("TRACECODE_REDIS_NAMESPACE", NAMESPACE)
    env["TRACECODE_HOST"] = HOST
    env["TRACECODE_PORT"] = str(port)
    env["TRACECODE_HTTP_WORKERS"] = "1"
    env.setdefault("TRACECODE_RESOLVER_HOST", f"{HOST}:{port}")
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


class Stack:
    """Everything a load test needs, started in order and stopped in reverse."""

    def __init__(
        self,
        port: int | None = None,
        count: int = 2000,
        codes_file: Path | None = None,
        api_cpus: str | None = None,
        worker_cpus: str | None = None,
        services_cpus: str | None = None,
        log_dir: Path | None = None,
        sched_batch: bool = False,
        own_database: bool | None = None,
    ) -> None:
        self.port = port or free_port()
        self.count = count
        self.env = loadtest_env(self.port)
        self.var = Path(self.env["TRACECODE_VAR_DIR"]).resolve()
        self.log_dir = log_dir or self.var / "logs"
        self.codes_file = codes_file or self.var / f"codes-{count}.csv"
        self.api_cpus = api_cpus
        self.worker_cpus = worker_cpus
        self.services_cpus = services_cpus
        self.sched_batch = sched_batch  # the API under SCHED_BATCH (TRACECODE_SCHED_BATCH)
        self.url = f"http://{HOST}:{self.port}"
        self.children: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._names: dict[int, str] = {}  # child pid -> its name (its log: log_dir/NAME.log)
        # A database of its own on the server (default: when TRACECODE_DATABASE_URL names one),
        # made by services() and dropped by stop(): (admin URL, name) once made.
        self.own_database = (
            bool(self.env.get("TRACECODE_DATABASE_URL")) if own_database is None else own_database
        )
        self._database: tuple[str, str] | None = None
        self.database_name: str | None = None  # make_database()'s, kept after it is dropped
        self._stop_embedded = False
        self.make_codes = True  # False: codes_file already holds the codes

    # -- steps -----------------------------------------------------------------------------

    def tracecode(self, *args: str) -> str:
        """Run a ``tracecode`` command with the stack's environment; its standard output."""
        done = subprocess.run(
            [PYTHON, "-m", "app.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            why = _redacted(_last_line(done.stderr))
            raise StackError(f"tracecode {' '.join(args)} failed: {why}")
        return done.stdout

    def services(self) -> None:
        """Resolve the database and Redis URLs once, so every child uses the same servers."""
        embedded = not (
            self.env.get("TRACECODE_DATABASE_URL") and self.env.get("TRACECODE_REDIS_URL")
        )
        if embedded:
            running = _pid_alive(self.var / "pgdata" / "postmaster.pid") or _pid_alive(
                self.var / "redis" / "redis.pid"
            )
            self._stop_embedded = not running  # stop at the end only what this run started
        for line in self.tracecode("services", "up").splitlines():
            key, _, value = line.partition("=")
            # a URL given stays as it is (services up prints its password as ***)
            if key in ("TRACECODE_DATABASE_URL", "TRACECODE_REDIS_URL") and not self.env.get(key):
                self.env[key] = value.strip()
        if self.own_database:
            self.make_database()
        self.tracecode("db", "migrate")
        if embedded and self.services_cpus:
            self.pin_services(self.services_cpus)

    def make_database(self) -> str:
        """A database of the stack's own on the server of ``TRACECODE_DATABASE_URL``, which every
        child then uses (the demo data never lands in the named one); dropped by stop()."""
        import psycopg

        from app import embedded

        admin = self.env["TRACECODE_DATABASE_URL"]
        name = f"tracecode_loadtest_{secrets.token_hex(4)}"
        try:
            url = embedded.ensure_database(admin, name)
        except psycopg.Error as exc:
            why = _redacted(" ".join(str(exc).split()))
            raise StackError(f"could not create a database: {why}") from None
        self._database = (admin, name)
        self.database_name = name
        self.env["TRACECODE_DATABASE_URL"] = url
        return url

    def drop_database(self) -> None:
        """Drop the database of make_database(), if made (a warning when the server refuses)."""
        if self._database is None:
            return
        import psycopg

        from app import embedded

        admin, name = self._database
        try:
            embedded.drop_database(admin, name)
        except psycopg.Error as exc:
            why = _redacted(" ".join(str(exc).split()))
            print(f"warning: could not drop database {name}: {why}", file=sys.stderr)
        self._database = None
        self.env["TRACECODE_DATABASE_URL"] = admin

    def pin_services(self, cpus: str) -> None:
        """Move the embedded PostgreSQL (postmaster, its processes and so every later backend)
        and Redis onto ``cpus`` (taskset syntax, e.g. ``1``), off the API's core."""
        wanted = {int(cpu) for cpu in cpus.split(",")}
        for pid_file in (self.var / "pgdata" / "postmaster.pid", self.var / "redis" / "redis.pid"):
            pid = int(pid_file.read_text().split()[0])
            children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
            for process in [pid, *map(int, children.stdout.split())]:
                for thread in os.listdir(f"/proc/{process}/task"):
                    try:
                        os.sched_setaffinity(int(thread), wanted)
                    except ProcessLookupError:  # a thread or process that has just ended
                        pass

    def write_codes(self) -> Path:
        """``tracecode demo codes --count N`` into the codes file (serial,pin,url lines)."""
        out = self.tracecode("demo", "codes", "--count", str(self.count))
        lines = [line for line in out.splitlines() if line.count(",") >= 2]
        if len(lines) < self.count:
            raise RuntimeError(f"tracecode demo codes printed {len(lines)} of {self.count} codes")
        self.codes_file.parent.mkdir(parents=True, exist_ok=True)
        self.codes_file.write_text("\n".join(lines) + "\n")
        return self.codes_file

    def reset_counters(self) -> int:
        """Forget the namespace's query counts, PIN failures, lockouts and rate windows."""
        import redis

        client = redis.Redis.from_url(self.env["TRACECODE_REDIS_URL"])
        ns = self.env["TRACECODE_REDIS_NAMESPACE"]
        removed = 0
        try:
            for part in ("q", "lock", "pinfail", "rl", "unit", "clientlock", "clientfail"):
                batch = list(client.scan_iter(match=f"{ns}:{part}:*", count=5000))
                for i in range(0, len(batch), 5000):
                    removed += int(client.delete(*batch[i : i + 5000]))
        except redis.RedisError as exc:
            raise StackError(f"Redis: {_redacted(str(exc))}") from None
        finally:
            client.close()
        return removed

    def _spawn(
        self,
        name: str,
        argv: list[str],
        cpus: str | None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> subprocess.Popen[bytes]:
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # closed in stop()
        self._logs.append(log)
        child = subprocess.Popen(
            argv,
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals the whole group
            preexec_fn=preexec_fn,
        )
        self.children.append(child)
        self._names[child.pid] = name
        return child

    def exited(self, child: subprocess.Popen[bytes]) -> StackError:
        """The error for a child that exited: its name, exit code and the last line it logged."""
        name = self._names.get(child.pid, "a stack")
        log = self.log_dir / f"{name}.log"
        try:
            last = _last_line(log.read_text(errors="replace")[-65536:])
        except OSError:
            last = "no log"
        return StackError(
            f"the {name} process exited (code {child.returncode}): {_redacted(last)}; see {log}"
        )

    def start_api(self) -> None:
        """granian with exactly one worker process, as ``tracecode run`` starts it."""
        from app.cli import batch_scheduling, server_command

        argv = server_command(HOST, self.port, 1)
        self._spawn("api", argv, self.api_cpus, batch_scheduling if self.sched_batch else None)

    def start_server(self, name: str, target: str) -> str:
        """Another ASGI app under the API's own server command, one worker, on the API's CPUs
        and scheduling policy (``bench/bench_verify.py``'s bare-framework baseline): its URL,
        once it answers ``/ping``."""
        from app.cli import batch_scheduling, server_command

        port = free_port()
        argv = [*server_command(HOST, port, 1)[:-1], target]
        self._spawn(name, argv, self.api_cpus, batch_scheduling if self.sched_batch else None)
        url = f"http://{HOST}:{port}"
        self.wait_ready(url=url)
        return url

    def start_worker(self) -> None:
        """A dramatiq worker: its middleware thread flushes verification records to PostgreSQL."""
        argv = [PYTHON, "-m", "dramatiq", "workers.main", "--processes", "1", "--threads", "1"]
        self._spawn("worker", argv, self.worker_cpus)

    def wait_ready(self, timeout: float = 60, url: str | None = None) -> None:
        url = url or self.url
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in self.children:
                if child.poll() is not None:
                    raise self.exited(child)
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise StackError(f"the API at {url} did not answer /ping within {timeout:.0f} s")

    def start(self) -> Stack:
        self.services()
        if self.make_codes:
            self.write_codes()
        self.reset_counters()
        self.start_api()
        self.start_worker()
        self.wait_ready()
        return self

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                try:
                    os.killpg(child.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_SECONDS  # one for all: not one per child in turn
        for child in self.children:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.wait(timeout=5)
        self.children.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        self.drop_database()
        if self._stop_embedded:
            from app import embedded

            embedded.stop(self.var)
            self._stop_embedded = False

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", type=_at_least_one, default=2000, help="activated demo codes to write"
    )
    parser.add_argument("--port", type=int, help="API port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--api-cpus", help="taskset CPU list for granian, e.g. 0")
    parser.add_argument(
        "--services-cpus", help="CPU list for the embedded PostgreSQL, Redis and the worker"
    )
    parser.add_argument("--codes", type=Path, help="use this codes file instead of writing one")
    parser.add_argument(
        "--sched-batch", action="store_true", help="the API under SCHED_BATCH (its own cores)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if args.port is not None and not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: not a port")
    if args.port is not None and not _port_free(args.port):
        print(f"stack.py: port {args.port} is in use on {HOST}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT))
    stack = Stack(
        port=args.port,
        count=args.count,
        codes_file=args.codes,
        api_cpus=args.api_cpus,
        worker_cpus=args.services_cpus,
        services_cpus=args.services_cpus,
        sched_batch=args.sched_batch,
    )
    stack.make_codes = args.codes is None
    if args.codes is not None and stack.own_database:
        # its codes were written into another (dropped) database: none would verify here
        parser.error(
            "--codes needs the embedded database: with TRACECODE_DATABASE_URL set the stack "
            "makes a new database each run"
        )
    try:
        with stack:
            env = {**stack.env, "LOADTEST_URL": stack.url, "LOADTEST_CODES": str(stack.codes_file)}
            codes = sum(1 for _ in stack.codes_file.open())
            print(f"stack: API {stack.url}, {codes} codes in {stack.codes_file}", flush=True)
            return subprocess.run(command, env=env, cwd=ROOT).returncode
    except StackError as exc:
        print(f"stack.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stack.py: interrupted; stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
