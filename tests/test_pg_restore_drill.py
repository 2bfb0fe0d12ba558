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
import contextlib
import os
import pwd
import re
import secrets
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
    assert "ssccs 690123456789: last 0 -> 4999 (half of the room" in done.stdout, done.stdout
    with psycopg.connect(restored_url, autocommit=True) as conn:
        assert conn.execute("SELECT nextval('code_batch_no_seq')").fetchone()[0] > max(lost)


# after-restore on the test database (a restore simulated by the rows it gives back) -----------

# small margins: the command moves every batch and sequence of the session's database
SMALL = (
    *("--batches", "10", "--ssccs", "10", "--documents", "10", "--members", "10", "--orgs", "10"),
    *("--ids", "10"),
)
EXPORT = {"outer": {"passphrase": "a long passphrase"}, "inner": {"passphrase": "another one!"}}


def _after_restore(database_url: str, *margins: str, exports: Path | None = None) -> str:
    """``tracecode db after-restore`` on ``database_url``, as the README tells an operator; its
    output. ``exports``: the printer files on disk (``TRACECODE_EXPORT_DIR``); none by default
    (the tests' export directory is shared by every test session's database: another session's
    files would be lost exports of this one's batches)."""
    with tempfile.TemporaryDirectory() as empty:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "db", "after-restore", *margins],
            env={
                **os.environ,
                "TRACECODE_DATABASE_URL": database_url,
                "TRACECODE_EXPORT_DIR": str(exports or empty),
            },
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


async def _allocated_of_others(app: Any, batch_no: int) -> list[Any]:
    """Every other batch's cursor: the command moves every batch of the session's database,
    and the test puts them back after (``_put_back``)."""
    async with app.state.pool.connection() as conn:
        return await (
            await conn.execute(
                "SELECT batch_no, allocated FROM code_batches WHERE batch_no <> %s", (batch_no,)
            )
        ).fetchall()


async def _put_back(app: Any, others: list[Any]) -> None:
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE code_batches b SET allocated = o.allocated FROM unnest(%s::bigint[],"
            " %s::bigint[]) AS o(batch_no, allocated) WHERE b.batch_no = o.batch_no",
            ([r["batch_no"] for r in others], [r["allocated"] for r in others]),
        )


async def test_after_restore_never_allocates_serials_a_lost_export_printed(
    client: Any, login: Any, demo: Any, app: Any, settings: Any, tmp_path: Path
) -> None:
    """A probe: a batch (issued before the restore point, nothing given out) had a printer file
    exported after the point: codes [10,000,000, 10,000,010) printed on labels. PostgreSQL is
    restored to the point (the export row is gone, its files are still on disk) and the
    operator runs ``tracecode db after-restore`` with its default allocation margin. The
    command named the lost export and its range, yet moved the batch's allocation cursor by its
    fixed margin (10,000,000) only, so the next ``POST /allocations`` of the batch streamed
    exactly the printed serials: two products with one serial and PIN. Now the lost exports
    are found first and a batch's cursor moves at least past the end of its lost ranges."""
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 20_000_000)
    start, end = 10_000_000, 10_000_010
    made = await client.post(
        f"/batches/{batch_no}/exports", headers=planner, json={**EXPORT, "start": start, "end": end}
    )
    assert made.status_code == 201, made.text
    export_id = made.json()["id"]
    for _ in range(100):
        shown = await client.get(f"/exports/{export_id}", headers=planner)
        if shown.json()["state"] == "done":
            break
        await asyncio.sleep(0.1)
    assert shown.json()["state"] == "done", shown.text
    printed = {app.state.scheme.serial(batch_no, i) for i in range(start, end)}
    # the export directory after the restore: this export's files (and no other session's)
    shutil.copytree(settings.export_path / export_id, tmp_path / export_id)

    others = await _allocated_of_others(app, batch_no)
    async with app.state.pool.connection() as conn:  # the restore to the point before the export
        await conn.execute("DELETE FROM code_exports WHERE id = %s", (export_id,))
        await conn.execute(
            "UPDATE code_batches SET state = 'issued' WHERE batch_no = %s AND state = 'exported'",
            (batch_no,),
        )
    try:
        said = await asyncio.to_thread(
            _after_restore, settings.database_url, *SMALL, exports=tmp_path
        )
        assert f"export {export_id}: batch {batch_no} codes [{start}, {end})" in said, said
        moved = f"batch {batch_no}: allocated 0 -> {end} of 20000000; lost printer files' codes"
        assert moved in said, said
        answer = await client.post(
            "/allocations", headers=planner, json={"batch_no": batch_no, "count": 10}
        )
        assert answer.status_code == 201, answer.text
        given = {line.split(",")[0] for line in answer.text.splitlines()}
        assert given == {app.state.scheme.serial(batch_no, i) for i in range(end, end + 10)}
        assert not (given & printed), f"{len(given & printed)} printed serials allocated again"
    finally:
        await _put_back(app, others)


async def test_after_restore_an_erp_held_order_id_never_names_another_order(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: a partner ERP posts an order after the restore point and keeps the id the API
    answered (order ids are also sent in the ``document.*`` webhooks as ``order_id``, as are
    ``document_id``, ``claim_id``, ``statement_id``, ``redemption_id``, ``alert_id``). The
    restore took the orders' identity sequence back and after-restore moved only the batch,
    SSCC, document-number, member and organisation sequences: the next order got the lost
    order's id, and the ERP's ``GET /orders/{id}`` (or ``/cancel``, ``/close``) read or changed
    another order. Now the id sequence of every table whose ids leave the system moves on too
    (``app.restore.IDS``, ``--ids``)."""
    admin = await login("admin")
    products = (await client.get("/products", headers=admin, params={"q": "LM-SC-30"})).json()

    def order(erp_no: str, quantity: int) -> dict[str, Any]:
        return {
            "erp_no": erp_no,
            "from_org_id": demo["WH-SZ-01"],
            "to_org_id": demo["AGENT-ZJ"],
            "lines": [{"product_id": products["items"][0]["id"], "quantity": quantity}],
        }

    tag = os.urandom(4).hex()
    lost = await client.post("/orders", headers=admin, json=order(f"LOST-{tag}", 3))
    assert lost.status_code == 201, lost.text
    lost_id = lost.json()["id"]
    async with app.state.pool.connection() as conn:  # the restore to the point before it
        await conn.execute("DELETE FROM orders WHERE id = %s", (lost_id,))
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('orders', 'id'), %s, false)", (lost_id,)
        )
    said = await asyncio.to_thread(
        _after_restore, settings.database_url, *SMALL, "--allocations", "0"
    )
    assert f"orders.id: last {lost_id - 1} -> {lost_id + 9}\n" in said, said
    assert "webhook_deliveries.id: last " in said and "rebate_claims.id: last " in said, said
    other = await client.post("/orders", headers=admin, json=order(f"OTHER-{tag}", 7))
    assert other.status_code == 201, other.text
    assert other.json()["id"] == lost_id + 10
    seen = await client.get(f"/orders/{lost_id}", headers=admin)
    assert seen.status_code == 404, f"the ERP's order {lost_id} reads as {seen.text[:200]}"


async def test_after_restore_the_consoles_held_ids_never_name_another_record(
    client: Any, login: Any, app: Any, settings: Any
) -> None:
    """A review: ``app.restore.IDS`` left out tables whose ids the API hands out and takes back —
    fraud holds (``/forensics/holds/{id}``), complaints, promotions, draw campaigns, prizes and
    results, field check-ins (a review's ``checkin_id``), chain anchors: after a restore the next
    promotion got the id of one made after the restore point, and a console page or link kept
    from before named another promotion. Their sequences move on with the others now."""
    admin = await login("admin")
    body = {"title": f"Lost {os.urandom(4).hex()}", "published": False}
    lost = await client.post("/promotions", headers=admin, json=body)
    assert lost.status_code == 201, lost.text
    lost_id = lost.json()["id"]
    async with app.state.pool.connection() as conn:  # the restore to the point before it
        await conn.execute("DELETE FROM promotions WHERE id = %s", (lost_id,))
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('promotions', 'id'), %s, false)", (lost_id,)
        )
    said = await asyncio.to_thread(
        _after_restore, settings.database_url, *SMALL, "--allocations", "0"
    )
    assert f"promotions.id: last {lost_id - 1} -> {lost_id + 9}\n" in said, said
    for table in (
        "fraud_holds", "complaints", "draw_campaigns", "draw_prizes", "draws", "field_checkins",
        "event_chain_anchors",
    ):  # fmt: skip
        moved = re.search(rf"^{table}\.id: last (\d+) -> (\d+)$", said, re.M)
        assert moved and int(moved[2]) == int(moved[1]) + 10, (table, said)
    other = await client.post("/promotions", headers=admin, json={**body, "title": "Other"})
    assert other.status_code == 201, other.text
    assert other.json()["id"] == lost_id + 10
    seen = await client.get(f"/promotions/{lost_id}", headers=admin)
    assert seen.status_code == 404, f"the console's promotion {lost_id} reads as {seen.text[:200]}"


async def test_after_restore_while_a_case_batch_is_issued_never_moves_sscc_refs_back(
    client: Any, login: Any, demo: Any, app: Any, settings: Any
) -> None:
    """A probe: ``tracecode db after-restore`` run while the service already serves. It read
    the SSCC serial references, a case batch of 5,000 cases was taken, and the command then set
    them to the value read plus its margin — behind the block just printed: the next case batch
    got SSCCs of the same block, two pallets with one SSCC. Each company prefix's count is read
    ``FOR UPDATE`` now (``app.restore.advance_ssccs``): the case batch, sent right after the
    read, waits for the command and takes its block after the move."""
    import psycopg

    from app.restore import advance_ssccs

    planner = await login("planner")
    prefix = settings.gs1_company_prefix  # the demo brand's case batches carry it
    loop = asyncio.get_running_loop()
    size = 5000
    body = {"level": "pallet", "size": size, "printer_id": demo["PRINTER-SH"]}
    racing: list[Any] = []

    class Racing:
        """The command's connection; a case batch is sent right after it reads the prefix's
        count (as another request of the serving API would), and given a few seconds — it is
        done at once unless the command holds it off."""

        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

        def execute(self, sql: Any, params: Any = None) -> Any:
            answer = self._conn.execute(sql, params)
            if "FOR UPDATE" in str(sql) and params == (prefix,) and not racing:
                sent = client.post("/case-batches", headers=planner, json=body)
                racing.append(asyncio.run_coroutine_threadsafe(sent, loop))
                with contextlib.suppress(TimeoutError):
                    racing[0].result(3)
            return answer

    def run() -> Any:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            return advance_ssccs(Racing(conn), 1000, [prefix])

    moved = {m.name: m for m in await asyncio.to_thread(run)}
    made = await asyncio.wrap_future(racing[0])
    assert made.status_code == 201, made.text
    during = made.json()
    assert during["first_ref"] == moved[f"ssccs {prefix}"].after + 1  # its block after the move
    after = await client.post("/case-batches", headers=planner, json={**body, "size": 1})
    assert after.status_code == 201, after.text
    taken = range(during["first_ref"], during["first_ref"] + size)
    assert after.json()["first_ref"] not in taken, (
        f"SSCC serial reference {after.json()['first_ref']} issued again: case batch "
        f"{during['id']} holds {taken.start}..{taken.stop - 1}"
    )


async def test_after_restore_moves_each_prefixs_sscc_refs_within_its_own_room(
    app: Any, demo: Any, settings: Any
) -> None:
    """SSCC serial references are counted per company prefix (``sscc_refs``), and
    ``tracecode db after-restore`` moves each within the room its own prefix leaves. (A probe,
    when one sequence served every prefix: its move was capped by the longest prefix in use,
    and once the other brands had issued past a 12-digit prefix's 9,999 it moved by 0 — every
    SSCC issued after the restore point handed out again.) The platform's prefix, far past
    9,999, moves by the whole margin; a 12-digit brand's at 9,990 by half of the 9 left."""
    from app.orgs.schemas import OrgIn
    from app.orgs.service import create_org

    long_prefix = "987654321098"
    async with app.state.pool.connection() as conn:
        await create_org(
            conn,
            None,
            OrgIn(
                kind="brand",
                name=f"Long prefix {secrets.token_hex(3)}",
                erp_code=f"LP-{secrets.token_hex(4)}",
                gs1_company_prefix=long_prefix,
            ),
        )
        await conn.execute(
            """INSERT INTO sscc_refs (company_prefix, last_ref) VALUES (%s, 9990), (%s, 50000)
               ON CONFLICT (company_prefix)
               DO UPDATE SET last_ref = greatest(sscc_refs.last_ref, excluded.last_ref)""",
            (long_prefix, settings.gs1_company_prefix),
        )
    out = await asyncio.to_thread(
        _after_restore, settings.database_url, *SMALL, "--allocations", "0"
    )
    assert "ssccs 987654321098: last 9990 -> 9994 (half of the room" in out, out
    moved = re.search(rf"ssccs {settings.gs1_company_prefix}: last (\d+) -> (\d+)\n", out)
    assert moved is not None, out
    assert int(moved.group(2)) == int(moved.group(1)) + 10, out
