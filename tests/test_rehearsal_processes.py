"""``tracecode rehearse`` as the engineer load-testing before a launch runs it, in a subprocess:
its own database (never the named one), one line for a failure, every process stopped on
SIGINT and Ctrl-C (app/ops/rehearsal.py, loadtests/stack.py's Stack).

Every test runs the command in a subprocess, on a throwaway database of the session's
PostgreSQL server (never the shared one), a var dir under tmp_path and a Redis namespace of its
own, and kills whatever process of the run it still finds at the end.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from app import embedded
from tests.conftest import ROOT, SESSION

PYTHON = sys.executable


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TRACECODE_VAR_DIR"] = str(tmp_path / "var")
    env["TRACECODE_REDIS_NAMESPACE"] = f"probereh{secrets.token_hex(3)}"
    env.update(extra)
    return env


def _rehearse(*args: str) -> list[str]:
    return [PYTHON, "-m", "app.cli", "rehearse", *args]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def _descendants(root: int) -> set[int]:
    kids, out, todo = _children(), set(), [root]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


def _start_until_locust(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], dict[int, str]]:
    """Start a 40 s rehearsal; return once its locust load generator has run for 2 s."""
    process = subprocess.Popen(
        _rehearse("--seconds", "40", "--users", "1", "--api-processes", "1", "--codes", "30"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the test's "terminal"
        # SIGINT as a terminal's foreground job has it: a shell's background job (CI's, say)
        # ignores it, and an ignored signal is inherited through exec
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and process.poll() is None:
        for pid in _descendants(process.pid):
            line = _cmdline(pid)
            if line:
                seen.setdefault(pid, line)
        if any("locust" in line for line in seen.values()):
            time.sleep(2)
            break
        time.sleep(0.3)
    for pid in _descendants(process.pid):
        line = _cmdline(pid)
        if line:
            seen.setdefault(pid, line)
    assert any("locust" in line for line in seen.values()), "the load never started"
    return process, seen


def _loadtest_databases(admin: str) -> set[str]:
    with psycopg.connect(admin) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'tracecode\\_loadtest\\_%'"
        )
        return {row[0] for row in rows}


def _kill_left(seen: dict[int, str]) -> dict[int, str]:
    left = {pid: line for pid in seen if (line := _cmdline(pid)) and line == seen[pid]}
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def test_rehearse_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A probe: a rehearsal whose TRACECODE_DATABASE_URL server is down (or refuses the
    migration) ended in a Python traceback (RuntimeError from loadtests/stack.py's
    Stack.tracecode) with exit 1. The engineer should see one ``tracecode: ...`` line naming
    what failed (exit non-zero), as every other tracecode command gives for an unreachable
    server."""
    env = _env(tmp_path, TRACECODE_DATABASE_URL="postgresql://postgres@127.0.0.1:1/nodb")
    done = subprocess.run(
        _rehearse("--seconds", "1", "--users", "1", "--api-processes", "1", "--codes", "30"),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("tracecode:"), done.stderr


def test_rehearse_sigint_leaves_no_load_generator_running(tmp_path: Path) -> None:
    """A probe: SIGINT to a running ``tracecode rehearse`` (kill -INT, a supervisor, a CI
    runner's cancel) stopped the API processes and the worker, but the locust process it started
    kept running on its own for the rest of --seconds, hammering ports that are now closed.
    Every process the rehearsal started should be stopped when it returns."""
    process, seen = _start_until_locust(_env(tmp_path))
    try:
        os.kill(process.pid, signal.SIGINT)
        process.communicate(timeout=90)
        time.sleep(1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        left = _kill_left(seen)
    assert not left, f"still running after the rehearsal returned: {left}"


def test_rehearse_ctrl_c_ends_without_a_traceback(tmp_path: Path) -> None:
    """A probe: Ctrl-C in the terminal (SIGINT to the foreground process group) mid-rehearsal
    stopped its processes but printed a KeyboardInterrupt traceback from app/ops/rehearsal.py.
    It should end with a short line (stopped) and exit 130, like ``loadtests/stack.py`` does."""
    process, seen = _start_until_locust(_env(tmp_path))
    try:
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        _kill_left(seen)
    assert "Traceback" not in err.decode(), err.decode()[-2000:]
    assert process.returncode == 130


def test_rehearse_does_not_plant_demo_users_in_the_named_database(tmp_path: Path) -> None:
    """A probe: an engineer rehearses with the launch environment (TRACECODE_DATABASE_URL naming
    the production database). The rehearsal ran ``tracecode demo codes`` on that very database,
    which loads the whole demo data set: ~25 users (``admin``, ``platform``, ...) whose password
    is the public ``tracecode-demo``, demo orgs and a 1,000,000-code demo batch. README says the
    rehearsal runs "on the TRACECODE_DATABASE_URL servers"; it should use a database of its own
    on that server (dropped afterwards), as the test suite does, and leave the named one
    untouched."""
    admin = os.environ["TRACECODE_DATABASE_URL"]
    name = f"tracecode_probereh_{SESSION}"
    prod = embedded.ensure_database(admin, name)
    try:
        from app import db

        db.migrate(prod)  # a migrated, empty "production" database
        with psycopg.connect(prod) as conn:
            before = conn.execute("SELECT count(*) FROM users").fetchone()
        assert before == (0,)
        done = subprocess.run(
            _rehearse("--seconds", "2", "--users", "1", "--api-processes", "1", "--codes", "30"),
            env=_env(tmp_path, TRACECODE_DATABASE_URL=prod),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        with psycopg.connect(prod) as conn:
            users = [r[0] for r in conn.execute("SELECT username FROM users ORDER BY id")]
        assert done.returncode == 0, done.stdout + done.stderr
        assert users == [], f"the rehearsal created users in the named database: {users}"
        # its own database, named in its report, is dropped (another test's rehearsal on the
        # other worker may hold one of its own meanwhile: only this run's is judged)
        [own] = re.findall(r"database (tracecode_loadtest_[0-9a-f]+) ", done.stdout)
        assert own not in _loadtest_databases(admin), done.stdout
    finally:
        embedded.drop_database(admin, name)
