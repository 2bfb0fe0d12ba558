"""Read replicas (issue 20 item 3) on a real streaming standby: the test makes a throwaway primary
and a ``pg_basebackup -R`` standby of it from the embedded server's own binaries (pgserver's), runs
an app with ``TRACECODE_DATABASE_REPLICA_URL`` on them, and shows that the lag-tolerant reads are
served by the standby (replay paused: a change is not seen there), that a writer reads its own
change from the primary (read-your-writes), that a standby too far behind or stopped leaves the
reads to the primary (answers stay 200), and that every endpoint routed to the standby really
runs there (a write would fail on it).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import msgspec
import psycopg
import pytest

from app.config import Settings, SettingsError, load_settings
from tests.helpers import served

LAG_LIMIT = 4.0  # TRACECODE_REPLICA_MAX_LAG_SECONDS of the app under test
STICKY = 8.0  # TRACECODE_REPLICA_STICKY_SECONDS
_epcs = itertools.count()


def _pg_bin() -> Path | None:
    try:
        import pgserver
    except ImportError:
        return None
    path = Path(pgserver.__file__).parent / "pginstall" / "bin"
    needed = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
    return path if all((path / name).exists() for name in needed) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A primary and its streaming standby in a temporary directory, run as pgserver runs its
    server: as the ``pgserver`` system user when the tests run as root (PostgreSQL refuses
    root)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="tc-replica-"))
        self.user: str | None = None
        if os.geteuid() == 0:
            from pgserver.utils import ensure_folder_permissions, ensure_user_exists

            self.user = "pgserver"
            entry = ensure_user_exists(self.user)
            assert entry is not None
            read_exec = 0o055
            ensure_folder_permissions(bin_dir, read_exec)
            ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o755)
        self.primary_dir, self.standby_dir = self.root / "primary", self.root / "standby"
        self.primary_port, self.standby_port = _free_port(), _free_port()

    def url(self, port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def run(self, program: str, *args: str) -> None:
        with (self.root / "commands.log").open("a") as log:
            subprocess.run(
                [str(self.bin / program), *args],
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self.user,
                timeout=120,
            )

    def start(self, data: Path, port: int, *options: str) -> None:
        settings = [f"-c port={port}", "-c listen_addresses=127.0.0.1", "-c fsync=off"]
        settings.append(f"-c unix_socket_directories={self.root}")
        settings += [f"-c {option}" for option in options]
        log = str(data.parent / f"{data.name}.log")
        self.run("pg_ctl", "-D", str(data), "-l", log, "-w", "-t", "60", "-o", " ".join(settings),
                 "start")  # fmt: skip

    def stop(self, data: Path, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(data), "-m", mode, "-w", "stop")

    def create(self) -> None:
        self.run("initdb", "-D", str(self.primary_dir), "-U", "postgres", "--auth=trust",
                 "--encoding=utf8", "--no-sync")  # fmt: skip
        self.start(self.primary_dir, self.primary_port, "wal_level=replica", "max_wal_senders=5")
        self.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U",
                 "postgres", "-D", str(self.standby_dir), "-R", "-X", "stream", "-c", "fast",
                 "--no-sync")  # fmt: skip
        self.start_standby()

    def start_standby(self) -> None:
        self.start(self.standby_dir, self.standby_port, "hot_standby=on",
                   "hot_standby_feedback=on", "wal_receiver_status_interval=1s")  # fmt: skip

    def destroy(self) -> None:
        for data in (self.standby_dir, self.primary_dir):
            if (data / "postmaster.pid").exists():
                try:
                    self.stop(data, "immediate")
                except subprocess.SubprocessError as exc:
                    print(f"could not stop {data}: {exc}")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the standby's replay ----------------------------------------------------------------

    def standby(self, sql: str) -> Any:
        with psycopg.connect(self.url(self.standby_port), autocommit=True) as conn:
            row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
            return row[0] if row else None

    def caught_up_then_paused(self) -> None:
        """Commit a transaction on the primary, wait until the standby replayed it, then pause
        replay: the standby's lag counts from now, its data stops here."""
        with psycopg.connect(self.url(self.primary_port), autocommit=True) as conn:
            conn.execute("SELECT txid_current()")
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            assert row is not None
        wait_for(lambda: self.standby(f"SELECT pg_last_wal_replay_lsn() >= '{row[0]}'::pg_lsn"))
        self.standby("SELECT pg_wal_replay_pause()")
        wait_for(lambda: self.standby("SELECT pg_get_wal_replay_pause_state()") == "paused")

    def resume(self) -> None:
        self.standby("SELECT pg_wal_replay_resume()")


def wait_for(check: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        print("test_replica skipped: pgserver's initdb/pg_ctl/pg_basebackup are not installed")
        pytest.skip("pgserver's PostgreSQL binaries (initdb, pg_ctl, pg_basebackup) are missing")
    made = Cluster(bin_dir)
    try:
        made.create()
        yield made
    finally:
        made.destroy()


class Replicated(msgspec.Struct):
    client: httpx.AsyncClient
    app: Any
    cluster: Cluster
    headers: dict[str, dict[str, str]]  # by demo username
    code: str  # a shipped demo unit: trace has events, containers, documents
    batch_no: int


@pytest.fixture(scope="module")
async def replicated(cluster: Cluster) -> AsyncIterator[Replicated]:
    """The app on the primary with the standby as its read replica, the demo data loaded."""
    from argon2 import PasswordHasher

    from app.auth import passwords
    from app.demo import DEMO_PASSWORD, demo_codes
    from app.main import create_app

    base = load_settings()
    settings = msgspec.structs.replace(
        base,
        database_url=cluster.url(cluster.primary_port),
        database_replica_url=cluster.url(cluster.standby_port),
        redis_namespace=base.redis_namespace + "rep",
        replica_max_lag_seconds=LAG_LIMIT,
        replica_sticky_seconds=STICKY,
        db_pool_min=1,
        db_pool_max=6,
    )
    app: Any = create_app(settings)
    async with served(app) as client:
        with pytest.MonkeyPatch.context() as patch:  # throwaway users: argon2's cheapest profile
            patch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024))
            async with app.state.pool.connection() as conn:
                codes = await demo_codes(conn, app.state.scheme, settings, 1)
                row = await (
                    await conn.execute(
                        "SELECT batch_no FROM code_batches WHERE request_key = 'demo-units'"
                    )
                ).fetchone()
        headers = {}
        for user in ("admin", "partner", "analyst"):
            answer = await client.post(
                "/auth/login", json={"username": user, "password": DEMO_PASSWORD}
            )
            assert answer.status_code == 200, answer.text
            headers[user] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        yield Replicated(client, app, cluster, headers, codes[0].serial, int(row["batch_no"]))


# -- helpers -----------------------------------------------------------------------------------


async def replica_health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/health")
    assert response.status_code == 200, response.text  # the replica never makes health 503
    return response.json()  # type: ignore[no-any-return]


async def until_replica(client: httpx.AsyncClient, status: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while (body := await replica_health(client))["replica"]["status"] != status:
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)
    assert ("replica" in body["down"]) == (status != "ok"), body


async def reads(client: httpx.AsyncClient) -> dict[str, float]:
    """The lag-tolerant reads so far, by the server that answered them (GET /metrics)."""
    text = (await client.get("/metrics")).text
    found = re.findall(r'^tracecode_replica_reads_total\{served_by="(\w+)"\} (\S+)$', text, re.M)
    return {"primary": 0.0, "replica": 0.0} | {k: float(v) for k, v in found}


def new_epc() -> str:
    return f"urn:epc:id:sgtin:0614141.107346.REP{os.getpid()}x{next(_epcs)}"


async def capture(r: Replicated, epc: str) -> None:
    """One EPCIS event naming ``epc``, captured by the partner (a write through the API)."""
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-30T10:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": [epc],
        "action": "OBSERVE",
    }
    headers = {**r.headers["partner"], "Content-Type": "application/ld+json"}
    response = await r.client.post(
        "/epcis/events", headers=headers, content=msgspec.json.encode(event)
    )
    assert response.status_code == 201, response.text


async def sees(r: Replicated, user: str, epc: str) -> bool:
    """Whether ``user``'s EPCIS query (a lag-tolerant read) finds the event of ``epc``."""
    response = await r.client.get(
        "/epcis/events", headers=r.headers[user], params={"MATCH_epc": epc}
    )
    assert response.status_code == 200, response.text
    return bool(response.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"])


async def until_seen(r: Replicated, user: str, epc: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await sees(r, user, epc):
        assert time.monotonic() < deadline, f"{user} never saw {epc}"
        await asyncio.sleep(0.1)


# -- the tests ---------------------------------------------------------------------------------


async def test_reads_come_from_the_replica_and_a_writer_reads_its_own_writes(
    replicated: Replicated,
) -> None:
    r = replicated
    await until_replica(r.client, "ok")
    first = new_epc()
    await capture(r, first)
    await until_seen(r, "admin", first)  # replicated
    await asyncio.to_thread(r.cluster.caught_up_then_paused)
    try:
        before = await reads(r.client)
        epc = new_epc()
        await capture(r, epc)  # committed on the primary, not replayed on the standby
        assert not await sees(r, "admin", epc)  # the admin's read is the standby's
        assert await sees(r, "partner", epc)  # the writer's read is the primary's
        after = await reads(r.client)
        assert after["replica"] == before["replica"] + 1
        assert after["primary"] == before["primary"] + 1
        status = await replica_health(r.client)
        assert status["replica"]["status"] == "ok", status
    finally:
        await asyncio.to_thread(r.cluster.resume)
    await until_seen(r, "admin", epc)  # replayed: now on the standby too


async def test_every_lag_tolerant_read_runs_on_the_standby(replicated: Replicated) -> None:
    """Each endpoint routed to the replica answers from it (a write there would fail: the
    standby is read-only), the management center's file streamed from it too."""
    r = replicated
    await until_replica(r.client, "ok")
    paths = [
        f"/trace/{r.code}",
        "/center/documents",
        "/center/stock",
        "/center/stock?format=csv",
        "/center/documents?format=xlsx",
        "/analytics/sales/stores",
        "/analytics/sales/products",
        "/analytics/sales/regions",
        "/analytics/members/regions",
        "/analytics/members/cycle",
        "/analytics/points/ages",
        "/analytics/verifications",
        "/analytics/inspections",
        "/rebates",
        "/rebates/refusals?format=csv",
        f"/batches/{r.batch_no}/exports",
        "/epcis/events",
        "/epcis/events/urn%3Auuid%3A00000000-0000-0000-0000-000000000000",
    ]
    before = await reads(r.client)
    for path in paths:
        response = await r.client.get(path, headers=r.headers["admin"])
        expected = 404 if path.startswith("/epcis/events/") else 200
        assert response.status_code == expected, (path, response.text)
    trace = (await r.client.get(f"/trace/{r.code}", headers=r.headers["admin"])).json()
    assert trace["events"] and trace["containers"], trace
    after = await reads(r.client)
    assert after["replica"] - before["replica"] == len(paths) + 1
    assert after["primary"] == before["primary"]
    assert (
        await r.client.get("/analytics/dashboard", headers=r.headers["admin"])
    ).status_code == 200


async def test_a_replica_lagging_past_the_limit_leaves_reads_to_the_primary(
    replicated: Replicated,
) -> None:
    r = replicated
    await until_replica(r.client, "ok")
    await asyncio.to_thread(r.cluster.caught_up_then_paused)
    try:
        epc = new_epc()
        await capture(r, epc)
        assert not await sees(r, "analyst", epc)  # within the limit: still the standby
        await until_replica(r.client, "lagging", within=LAG_LIMIT + 15)
        lag = (await replica_health(r.client))["replica"]["detail"]
        assert re.match(r"lag \d+\.\d s \(limit 4 s\)", lag), lag
        before = await reads(r.client)
        assert await sees(r, "analyst", epc)  # the primary answers
        assert (await reads(r.client))["primary"] == before["primary"] + 1
    finally:
        await asyncio.to_thread(r.cluster.resume)
    await until_replica(r.client, "ok")
    before = await reads(r.client)
    assert await sees(r, "analyst", epc)
    assert (await reads(r.client))["replica"] == before["replica"] + 1


async def test_a_stopped_replica_leaves_reads_to_the_primary_until_it_is_back(
    replicated: Replicated,
) -> None:
    r = replicated
    await until_replica(r.client, "ok")
    epc = new_epc()
    await capture(r, epc)
    await until_seen(r, "admin", epc)
    await asyncio.to_thread(r.cluster.stop, r.cluster.standby_dir, "immediate")
    await until_replica(r.client, "down")
    before = await reads(r.client)
    later = new_epc()
    await capture(r, later)
    for user in ("admin", "analyst"):
        assert await sees(r, user, later)
    for path in (f"/trace/{r.code}", "/center/stock", "/analytics/sales/stores", "/rebates"):
        response = await r.client.get(path, headers=r.headers["admin"])
        assert response.status_code == 200, (path, response.text)
    after = await reads(r.client)
    assert after["replica"] == before["replica"]
    assert after["primary"] == before["primary"] + 6
    health = await r.client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text
    await asyncio.to_thread(r.cluster.start_standby)  # back: the reads return to it
    await until_replica(r.client, "ok")
    await until_seen(r, "analyst", later)
    assert (await reads(r.client))["replica"] > after["replica"]


async def test_a_standby_dying_between_two_checks_leaves_reads_to_the_primary(
    replicated: Replicated,
) -> None:
    """A standby stopped right after a check (its status still ``ok``): the reads on its pooled
    connections go to the primary, none fails (a probe: the first was a 503)."""
    r = replicated
    await until_replica(r.client, "ok")
    for _ in range(3):  # standby connections in steady use
        ok = await r.client.get("/center/stock", headers=r.headers["admin"])
        assert ok.status_code == 200, ok.text
    await asyncio.to_thread(r.cluster.stop, r.cluster.standby_dir, "immediate")
    try:
        assert r.app.state.replica.status == "ok"  # not noticed yet by the 1 s check
        answers = [
            (await r.client.get("/center/stock", headers=r.headers["admin"])).status_code
            for _ in range(3)
        ]
        assert answers == [200, 200, 200], answers
    finally:
        await asyncio.to_thread(r.cluster.start_standby)
        await until_replica(r.client, "ok")


async def test_a_writer_reads_its_write_when_sticky_equals_the_lag_limit(
    replicated: Replicated,
) -> None:
    """STICKY = MAX_LAG (the least the settings take): the moment the writer's key expires, the
    last check's ``ok`` (its lag just under the limit, up to a second old) no longer sends the
    writer's read to a standby that has not replayed the write (a probe: it did, 3 runs of 4)."""
    r = replicated
    standby = r.app.state.replica
    standby.sticky_ms = int(LAG_LIMIT * 1000)
    await until_replica(r.client, "ok")
    await asyncio.to_thread(r.cluster.caught_up_then_paused)
    try:
        epc = new_epc()
        await capture(r, epc)  # the partner's own write; replay paused on the standby
        redis = r.app.state.redis
        keys = [key async for key in redis.scan_iter(f"{standby.namespace}:rw:*")]
        assert keys
        deadline = time.monotonic() + 10
        while any([await redis.exists(key) for key in keys]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert await sees(r, "partner", epc), standby.report()
    finally:
        await asyncio.to_thread(r.cluster.resume)
        standby.sticky_ms = int(STICKY * 1000)


def test_the_replica_settings() -> None:
    settings = load_settings(
        {
            "TRACECODE_DATABASE_REPLICA_URL": "postgresql://reader:s3cret@standby:5432/tracecode",
            "TRACECODE_REPLICA_MAX_LAG_SECONDS": "2.5",
            "TRACECODE_REPLICA_STICKY_SECONDS": "2.5",
        }
    )
    assert isinstance(settings, Settings) and settings.replica_max_lag_seconds == 2.5
    assert "s3cret" not in repr(settings) and "reader:***@standby" in repr(settings)
    defaults = load_settings({})
    assert (defaults.database_replica_url, defaults.replica_max_lag_seconds) == (None, 5.0)
    assert defaults.replica_sticky_seconds == 10.0
    with pytest.raises(SettingsError, match="TRACECODE_REPLICA_STICKY_SECONDS must be at least"):
        load_settings({"TRACECODE_REPLICA_MAX_LAG_SECONDS": "30"})
    for name, value in (("MAX_LAG", "0"), ("MAX_LAG", "soon"), ("STICKY", "-1")):
        with pytest.raises(SettingsError, match=f"TRACECODE_REPLICA_{name}_SECONDS"):
            load_settings({f"TRACECODE_REPLICA_{name}_SECONDS": value})


@pytest.fixture
async def foreign(cluster: Cluster, settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app on the session's database whose TRACECODE_DATABASE_REPLICA_URL was set, by
    mistake, to a standby of ANOTHER primary (another deployment's, staging's...)."""
    from app.main import create_app

    app: Any = create_app(
        msgspec.structs.replace(
            settings,
            database_replica_url=cluster.url(cluster.standby_port),
            replica_max_lag_seconds=LAG_LIMIT,
            replica_sticky_seconds=STICKY,
            redis_namespace=settings.redis_namespace + "wrongrep",
            db_pool_min=1,
            db_pool_max=4,
        )
    )
    async with served(app) as client:
        yield client


async def test_a_replica_url_naming_another_clusters_standby_is_not_used(
    foreign: httpx.AsyncClient, login: Any
) -> None:
    """A probe: an operator points TRACECODE_DATABASE_REPLICA_URL at the wrong standby (of
    another primary). The check only asked "in recovery, caught up", found it ``ok``, and sent
    the lag-tolerant reads there: they failed (500: the other database has no such tables), or
    would have answered another deployment's data. Now the standby's system identifier and
    database are compared with the primary's: ``wrong_standby``, and reads go to the primary."""
    await until_replica(foreign, "wrong_standby")
    admin = await login("admin")
    answers = {
        path: (await foreign.get(path, headers=admin)).status_code
        for path in ("/center/stock", "/analytics/sales/stores", "/rebates", "/epcis/events")
    }
    assert answers == dict.fromkeys(answers, 200), answers


def _walsender_pids(c: Cluster) -> list[int]:
    with psycopg.connect(c.url(c.primary_port), autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_replication").fetchall()]


async def test_a_standby_that_stops_receiving_is_not_reported_caught_up(
    replicated: Replicated,
) -> None:
    """A probe: the primary's WAL stops reaching the standby while its connection stays open
    (a hung sender or a network black hole: SIGSTOP of the walsender here). The README says the
    lag "can overstate ... never understate": within MAX_LAG plus a check the standby is
    ``lagging`` and the writer, once its sticky key expired, reads its own event (from the
    primary). Measured on the standby alone, replay equalled receive: the lag read 0.0 and the
    writer's own event was missing from its read until the receiver timed out (60 s). The lag is
    now measured against the primary's WAL position."""
    r = replicated
    await until_replica(r.client, "ok")
    warm = new_epc()
    await capture(r, warm)
    await until_seen(r, "analyst", warm)
    pids = _walsender_pids(r.cluster)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        epc = new_epc()
        await capture(r, epc)  # the partner's own write, committed on the primary
        await asyncio.sleep(STICKY + 2)  # the writer's sticky key is gone
        status = (await replica_health(r.client))["replica"]
        seen = await sees(r, "partner", epc)
        assert (status["status"], seen) == ("lagging", True), status
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while not await sees(r, "analyst", epc):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)


async def _events_page(
    r: Replicated, epcs: list[str], token: str | None
) -> tuple[list[str], str | None]:
    """One page (perPage=1) of the analyst's EPCIS query naming ``epcs``: its events' EPCs and
    the next page's token (None on the last page)."""
    params = {"MATCH_epc": "|".join(epcs), "perPage": "1"}
    if token:
        params["nextPageToken"] = token
    answer = await r.client.get("/epcis/events", headers=r.headers["analyst"], params=params)
    assert answer.status_code == 200, answer.text
    events = answer.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    link = answer.headers.get("link", "")
    after = None
    if "nextPageToken=" in link:
        after = unquote(link.split("nextPageToken=", 1)[1].split(">", 1)[0].split("&", 1)[0])
    return [e["epcList"][0] for e in events], after


async def test_epcis_paging_on_the_standby_waits_for_a_long_writer(replicated: Replicated) -> None:
    """A probe: a long writer (the admin's capture, in a transaction that took its id first)
    has not committed; two later captures (newer transactions) commit, and the analyst's
    ``GET /epcis/events`` paging (perPage=1) is served by the standby. A token's position only
    moves past events older than the horizon (``app.db.HORIZON_CTE``: every older transaction
    has ended). On a hot standby ``pg_current_snapshot()`` keeps the primary's running xids in
    its subxip, which ``pg_snapshot_xip`` does not return: the horizon fell back to the
    snapshot's xmax, the later events counted as settled, the token moved past the long
    writer's transaction, and its event, once committed and replayed, was never served by this
    paging run. On a standby the horizon is now the snapshot's ``pg_snapshot_xmin``."""
    from app.auth.service import principal_from_headers
    from app.epcis import capture as epcis_capture

    r = replicated
    await until_replica(r.client, "ok")
    late, first, second = new_epc(), new_epc(), new_epc()
    document = {
        "@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-30T10:00:00.000+08:00",
        "epcisBody": {
            "eventList": [
                {
                    "type": "ObjectEvent",
                    "eventTime": "2026-11-30T10:00:00.000+08:00",
                    "eventTimeZoneOffset": "+08:00",
                    "epcList": [late],
                    "action": "OBSERVE",
                }
            ]
        },
    }
    async with r.app.state.pool.connection() as long:
        admin = await principal_from_headers(
            long, r.app.state.settings, r.headers["admin"]["Authorization"], None
        )
        await long.execute("SELECT pg_current_xact_id()")  # the long writer's transaction id
        await capture(r, first)  # two later captures commit, each in a newer transaction
        await capture(r, second)
        job = await epcis_capture.accept(long, admin, msgspec.json.encode(document))
        assert await epcis_capture.run(long, r.app.state.scheme, job.captureID) == "success"
        await until_seen(r, "analyst", second)  # replayed on the standby
        seen, token = await _events_page(r, [late, first, second], None)
        assert seen == [first] and token, (seen, token)
        await long.commit()  # the long writer commits its (older) event
    await until_seen(r, "analyst", late)  # replayed on the standby
    served: list[str] = []
    while token:
        page, token = await _events_page(r, [late, first, second], token)
        served += page
    assert sorted(served) == sorted([late, second]), served
