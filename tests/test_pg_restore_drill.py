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

Below the drill, ``tracecode db after-restore`` on the test database, a restore simulated by the
rows it gives back: what was handed out after the restore point is not handed out again.

As root (this machine), the server commands run as pgserver's own system user, as pgserver does.
"""

from __future__ import annotations

import asyncio
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
from tests.helpers import issue_units
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


# after-restore on the test database (a restore simulated by the rows it gives back) -----------

# small margins: the command moves every batch and sequence of the session's database
SMALL = ("--batches", "10", "--ssccs", "10", "--documents", "10", "--members", "10", "--orgs", "10")


def _after_restore(database_url: str, *margins: str) -> str:
    """``tracecode db after-restore`` on ``database_url``, as the README tells an operator; its
    output."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "after-restore", *margins],
        env={**os.environ, "TRACECODE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_after_restore_keeps_allocated_serials_from_being_handed_out_again(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: an operator restores PostgreSQL to a point in time and runs ``tracecode db
    after-restore``. Serials a partner was allocated after that point (``POST /allocations``,
    streamed and maybe printed already) were handed out again by the next allocation of the
    batch: the restore took ``code_batches.allocated`` back, and after-restore moved only the
    sequences. Now every batch that may be allocated has its cursor moved on by a margin (at
    most to its size), reported per batch. (The restore is simulated by the rows a restore to
    the point between the two allocations gives back.)"""
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 30)

    async def allocate() -> tuple[str, set[str]]:
        answer = await client.post(
            "/allocations", headers=planner, json={"batch_no": batch_no, "count": 5}
        )
        assert answer.status_code == 201, answer.text
        serials = {line.split(",")[0] for line in answer.text.splitlines()}
        return answer.headers["x-allocation-id"], serials

    await allocate()  # before the restore point
    lost_id, lost = await allocate()  # after it: streamed to the partner, lost by the restore
    async with app.state.pool.connection() as conn:  # what the restore to the point gives back
        await conn.execute(
            "DELETE FROM code_allocation_ranges WHERE allocation_id = %s", (lost_id,)
        )
        await conn.execute("DELETE FROM code_allocations WHERE id = %s", (lost_id,))
        await conn.execute("UPDATE code_batches SET allocated = 5 WHERE batch_no = %s", (batch_no,))
        # the command moves every batch of the session's database: the others are put back
        # after (this session's tests run one at a time)
        others = await (
            await conn.execute(
                "SELECT batch_no, allocated FROM code_batches WHERE batch_no <> %s", (batch_no,)
            )
        ).fetchall()
    try:
        said = await asyncio.to_thread(
            _after_restore, settings.database_url, *SMALL, "--allocations", "10"
        )
        assert f"batch {batch_no}: allocated 5 -> 15 of 30\n" in said, said
        _, again = await allocate()
        assert not (again & lost), f"{len(again & lost)} serials given out a second time"
        # run twice: only forward, and never past the batch's size
        said = await asyncio.to_thread(
            _after_restore, settings.database_url, *SMALL, "--allocations", "100"
        )
        whole = f"batch {batch_no}: allocated 20 -> 30 of 30 (the whole batch: nothing left)"
        assert whole in said, said
    finally:
        async with app.state.pool.connection() as conn:
            await conn.execute(
                "UPDATE code_batches b SET allocated = o.allocated FROM unnest(%s::bigint[],"
                " %s::bigint[]) AS o(batch_no, allocated) WHERE b.batch_no = o.batch_no",
                ([r["batch_no"] for r in others], [r["allocated"] for r in others]),
            )


async def test_after_restore_a_lost_members_token_does_not_open_a_new_members_account(
    client: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A probe: a consumer signs up after the point PostgreSQL is later restored to and keeps
    the member token (30 days), whose only claim is the member's id. The restore took the member
    and ``members_id_seq`` back, and after-restore did not move that sequence: the next consumer
    to sign up got the lost member's id, and the first consumer's token opened their account
    (``GET /members/me``: their phone number; their points). Now member ids (and organisation
    ids, signed on stores' printed nameplates) move on like the other sequences. (The restore is
    simulated by what it gives back: the member's row gone, the sequence at its value before
    the sign-up.)"""
    from tests.test_members_auth import new_phone, sign_in

    brand = demo["BRAND-LUMI"]
    async with app.state.pool.connection() as conn:
        seq = await (
            await conn.execute("SELECT last_value, is_called FROM members_id_seq")
        ).fetchone()
    lost_headers, lost = await sign_in(client, app, brand)
    lost_id = lost["member"]["id"]
    async with app.state.pool.connection() as conn:  # the restore to the point before it
        await conn.execute("DELETE FROM members WHERE id = %s", (lost_id,))
        await conn.execute(
            "SELECT setval('members_id_seq', %s, %s)", (seq["last_value"], seq["is_called"])
        )
    said = await asyncio.to_thread(
        _after_restore, settings.database_url, *SMALL, "--allocations", "0"
    )
    assert "members: last " in said and "orgs: last " in said, said
    _, newcomer = await sign_in(client, app, brand, new_phone())
    assert newcomer["member"]["id"] > lost_id
    seen = await client.get("/members/me", headers=lost_headers)
    assert seen.status_code == 401, (
        f"the lost member's token (member {lost_id}) opens member {newcomer['member']['id']}'s "
        f"account: {seen.status_code} {seen.text[:200]}"
    )
