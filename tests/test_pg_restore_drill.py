"""Restore drill (issue 20 item 6): a base backup plus archived WAL give back a server, up to a
named point, in a fresh data directory — the README's "Backup and restore" commands, run.

The embedded server's own binaries (pgserver's ``pginstall/bin``: initdb, pg_ctl,
pg_basebackup, pg_verifybackup) run a throwaway primary with ``archive_mode = on`` and an
``archive_command`` copying each WAL segment to an archive directory. The primary gets the
Tracecode schema and a first round of verifications; a compressed tar base backup is taken; a
second round is written, a restore point named, a third round written after it, and the WAL
switched and archived; the primary is stopped. The backup is unpacked into a new data directory,
checked against its manifest, and started with ``restore_command`` and ``recovery_target_name``:
it replays the archive to the restore point and is promoted. Rounds one and two are there, round
three is not, and the restored server takes writes.

As root (this machine), the server commands run as pgserver's own system user, as pgserver does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.db import migrate
from tests.servers import free_port

ROUND = 500  # verifications written per round
TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "pg_verifybackup", "postgres")


def _bin_dir() -> Path:
    """pgserver's binaries, or a skip that says what is missing."""
    try:
        import pgserver
    except ImportError:
        pytest.skip("restore drill: pgserver is not installed (no PostgreSQL binaries)")
    path = Path(pgserver.__file__).parent / "pginstall" / "bin"
    missing = [tool for tool in TOOLS if not (path / tool).is_file()]
    if missing:
        pytest.skip(f"restore drill: {', '.join(missing)} missing from {path}")
    return path


class Drill:
    """The drill's directories, servers and commands."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin = bin_dir
        self.root = root
        self.archive = root / "wal-archive"
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            from pgserver.utils import ensure_user_exists

            self.user = "pgserver"
            ensure_user_exists(self.user)
        self.archive.mkdir()
        self.own(root)

    def own(self, path: Path) -> None:
        """Give ``path`` (and everything under it) to the server's user."""
        if self.user is None:
            return
        entry = pwd.getpwnam(self.user)
        for place in [path, *path.rglob("*")]:
            os.chown(place, entry.pw_uid, entry.pw_gid)

    def run(self, tool: str, *args: str, timeout: float = 60) -> None:
        """Run one of the binaries; its output goes to a file, not a pipe (the server pg_ctl
        starts could hold a pipe open)."""
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(
                [str(self.bin / tool), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                user=self.user,
                cwd=self.root,
            )
            out.seek(0)
            assert done.returncode == 0, f"{tool} {' '.join(args)}:\n{out.read()}"

    def configure(self, data: Path, port: int, *lines: str) -> None:
        """Settings appended to ``postgresql.auto.conf`` (they win over postgresql.conf)."""
        common = [
            f"port = {port}",
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
        ]
        with (data / "postgresql.auto.conf").open("a") as conf:
            conf.write("\n".join([*common, *lines]) + "\n")

    def start(self, data: Path) -> None:
        self.run(
            "pg_ctl", "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60", "start"
        )

    def stop(self, data: Path) -> None:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                user=self.user,
            )


@pytest.fixture
def drill() -> Iterator[Drill]:
    root = Path(tempfile.mkdtemp(prefix="tc-drill-"))
    made = Drill(_bin_dir(), root)
    try:
        yield made
    finally:
        for data in ("primary", "restored"):
            made.stop(root / data)
        shutil.rmtree(root, ignore_errors=True)


def _url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _write_round(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO verifications (at, record_key, result, reason, client_id) "
            "SELECT now(), gen_random_uuid(), 'genuine', 'first_query', %s "
            "FROM generate_series(1, %s)",
            (f"round-{n}", ROUND),
        )


def _rounds(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT client_id, count(*) FROM verifications GROUP BY client_id"
        ).fetchall()
    return dict(rows)


def _archived(drill: Drill, segment: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (drill.archive / segment).exists():
        assert time.monotonic() < deadline, f"WAL segment {segment} was not archived"
        time.sleep(0.1)


def _wait_promoted(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                row: Any = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row and not row[0]:
                    return
        except psycopg.OperationalError:
            pass
        assert time.monotonic() < deadline, "the restored server was not promoted"
        time.sleep(0.2)


def test_a_base_backup_and_archived_wal_restore_to_a_named_point(drill: Drill) -> None:
    primary, restored = drill.root / "primary", drill.root / "restored"
    backup = drill.root / "base"
    archive = drill.archive
    drill.run("initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "--no-sync")
    first_port = free_port()
    drill.configure(
        primary,
        first_port,
        "wal_level = replica",
        "archive_mode = on",
        f"archive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f'",
    )
    drill.start(primary)
    url = _url(first_port)
    migrate(url)  # the Tracecode schema
    _write_round(url, 1)

    drill.run(
        "pg_basebackup",
        *("-h", "127.0.0.1", "-p", str(first_port), "-U", "postgres"),
        *("-D", str(backup), "-Ft", "-z", "-X", "none", "--checkpoint=fast"),
    )
    _write_round(url, 2)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_restore_point('drill')")
    _write_round(url, 3)  # after the restore point: not to be restored
    with psycopg.connect(url, autocommit=True) as conn:
        lost = [  # batches issued after the restore point (their serials maybe printed)
            conn.execute("SELECT nextval('code_batch_no_seq')").fetchone()[0] for _ in range(3)
        ]
        row: Any = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    _archived(drill, row[0])
    drill.stop(primary)  # the restore needs nothing of the primary

    restored.mkdir(mode=0o700)
    with tarfile.open(backup / "base.tar.gz") as tar:
        tar.extractall(restored, filter="tar")
    drill.own(restored)
    drill.run("pg_verifybackup", "-n", "-m", str(backup / "backup_manifest"), str(restored))
    second_port = free_port()
    drill.configure(
        restored,
        second_port,
        "archive_mode = off",
        f"restore_command = 'cp {archive}/%f %p'",
        "recovery_target_name = 'drill'",
        "recovery_target_action = 'promote'",
    )
    (restored / "recovery.signal").touch()
    drill.own(restored)
    drill.start(restored)
    restored_url = _url(second_port)
    _wait_promoted(restored_url)

    assert _rounds(restored_url) == {"round-1": ROUND, "round-2": ROUND}
    _write_round(restored_url, 4)  # a primary again, on a timeline of its own
    assert _rounds(restored_url)["round-4"] == ROUND

    # the batch numbers went back too: the next batch would get a lost batch's serials and PINs
    # (probe O), until `tracecode db after-restore` moves them on
    with psycopg.connect(restored_url, autocommit=True) as conn:
        assert conn.execute("SELECT last_value FROM code_batch_no_seq").fetchone()[0] < max(lost)
    # a 12-digit company prefix leaves SSCC serial references up to 9,999: never more than
    # half of the room left is taken (review R3: a default margin used up the whole range)
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "after-restore", "--batches", "1000"],
        env={
            **os.environ,
            "TRACECODE_DATABASE_URL": restored_url,
            "TRACECODE_GS1_COMPANY_PREFIX": "690123456789",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "batches: last " in done.stdout, done.stdout
    assert "ssccs: last 0 -> 4999 (half of the room" in done.stdout, done.stdout
    with psycopg.connect(restored_url, autocommit=True) as conn:
        assert conn.execute("SELECT nextval('code_batch_no_seq')").fetchone()[0] > max(lost)
