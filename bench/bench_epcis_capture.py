"""EPCIS 2.0 capture throughput (issue 19): ten-EPC ObjectEvents per second, by stage and end to
end. Prints numbers.

    .venv/bin/python bench/bench_epcis_capture.py [--events 1000] [--epcs 10] [--rounds 5]
                                                  [--db-documents 3] [--documents 20]
                                                  [--concurrency 2] [--skip-db] [--skip-http]
                                                  [--keep]

Target: capture >= 20,000 ObjectEvents a second, each with 10 EPCs, in documents of 1,000 events.

Documents: one EPCISDocument of ``--events`` ObjectEvents (OBSERVE, bizStep shipping, disposition
in_transit, an SGLN readPoint and bizLocation, a desadv bizTransaction (one per 100 events), an
eventTime with a +08:00 zone), each with ``--epcs`` distinct SGTIN EPC URNs (company prefix
4012345, not one of the demo brand's GTINs, so no event changes code state: this measures capture
itself). Every document has its own EPCs and event times. Two variants: eventIDs given
(``urn:uuid:…``), and no eventID, so that capture computes the CBV 2.0 event hash of every event.

Measure, in process (one core, Python only; the median of ``--rounds`` rounds on one document):
``app.epcis.document.parse_document``; the id step of ``capture._apply`` (``event_id or
event_hash(raw, context)``) of each variant. Then against a real PostgreSQL: the throwaway database
``tracecode_bench_epcis`` on the server of ``TRACECODE_DATABASE_URL`` (an admin URL; default
postgresql://postgres@127.0.0.1:5432/postgres) is dropped, created, migrated (``app.db.migrate``)
and given the demo data (``app.demo.load_demo``); as the demo ``partner`` (permission
epcis.capture), ``--db-documents`` fresh documents of each variant go through ``capture.accept`` +
commit (parse, the job row with the body) and ``capture.run`` (parse again, ids, the known-id
lookup, the brand's codes, the COPY of events and EPCs, commit), each timed; then one of them is
captured again (every eventID known: nothing stored), timed the same way. Beside the wall time:
this process's CPU time and the PostgreSQL backend's (/proc/{pid}/stat), which a loaded machine
inflates less than the wall time.

Over HTTP: granian with one worker (``app.cli.server_command``, the production command) on a free
127.0.0.1 port over the same database; an httpx client logged in as ``partner`` POSTs
``--documents`` documents (alternating the two variants, all distinct) to ``/epcis/capture`` back
to back, one at a time (a document of <= TRACECODE_EPCIS_INLINE_EVENTS events is applied during
the request, so the 202 means stored). Reported: events/s over the wall time of all POSTs (client,
server and PostgreSQL share this machine's cores), per-document latency, and the CPU time the
server's processes and the database's backends spent (/proc). Then ``--documents`` more with
``--concurrency`` clients posting at once (PostgreSQL works on one document while the server
parses the next; 1 skips this).

Checked: every job succeeds with ``stored`` = its events; afterwards ``epcis_events`` holds each
event exactly once (rows = distinct eventIDs = the events sent; the hashed variant's eventIDs are
``ni:///sha-256;…``) and ``epcis_event_epcs`` one row per EPC (rows = distinct EPCs = events x
epcs); the retried document stored nothing. The database is dropped at the end unless ``--keep``.

Environment: TRACECODE_DATABASE_URL (admin URL), TRACECODE_REDIS_URL (default
redis://127.0.0.1:6379/0), TRACECODE_MASTER_KEY (default ``be`` * 32). The machine is shared:
the load average is printed before and after; read the numbers with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from app.cli import server_command  # noqa: E402
from app.epcis.document import parse_document  # noqa: E402
from app.epcis.hashing import event_hash  # noqa: E402
from bench.bench_verify import cpu_model  # noqa: E402

ADMIN_URL = os.environ.get(
    "TRACECODE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TRACECODE_REDIS_URL", "redis://127.0.0.1:6379/0")
MASTER_KEY = os.environ.get("TRACECODE_MASTER_KEY", "be" * 32)
DATABASE = "tracecode_bench_epcis"
TARGET = 20_000  # events per second
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
PASSWORD = "tracecode-demo"
BT = "urn:epcglobal:cbv:bt:4012345000009:"  # + a number


# ---------------------------------------------------------------------------------------------
# Documents


def document(number: int, events: int, epcs: int, with_ids: bool) -> bytes:
    """Document ``number``: ``events`` ObjectEvents of ``epcs`` SGTINs each, all its own."""
    event_list = []
    for i in range(events):
        second = number * events + i
        event: dict[str, Any] = {
            "type": "ObjectEvent",
            "eventTime": (
                f"2026-03-{1 + second // 86400 % 28:02d}T{second // 3600 % 24:02d}:"
                f"{second // 60 % 60:02d}:{second % 60:02d}.{i % 1000:03d}+08:00"
            ),
            "eventTimeZoneOffset": "+08:00",
            "epcList": [
                f"urn:epc:id:sgtin:4012345.011111.{number:05d}{i:04d}{j:03d}" for j in range(epcs)
            ],
            "action": "OBSERVE",
            "bizStep": "shipping",
            "disposition": "in_transit",
            "readPoint": {"id": "urn:epc:id:sgln:4012345.00001.0"},
            "bizLocation": {"id": "urn:epc:id:sgln:4012345.00002.0"},
            "bizTransactionList": [{"type": "desadv", "bizTransaction": f"{BT}{second // 100}"}],
        }
        if with_ids:
            event = {"eventID": f"urn:uuid:{uuid.UUID(int=(number << 32) | i)}", **event}
        event_list.append(event)
    return msgspec.json.encode(
        {
            "@context": [CONTEXT],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-03-01T08:00:00Z",
            "epcisBody": {"eventList": event_list},
        }
    )


# ---------------------------------------------------------------------------------------------
# Machine and output


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def rate(label: str, events: int, seconds: float, extra: str = "") -> float:
    per_second = events / seconds
    print(
        f"  {label:<52} {per_second:>10,.0f} events/s {1e6 * seconds / events:>8.1f} µs/event"
        f"  ({per_second / TARGET:.2f} x target){extra}",
        flush=True,
    )
    return per_second


def median_seconds(fn: Callable[[], Any], rounds: int) -> tuple[float, float]:
    """Wall and CPU seconds of the median round (by wall time), after a warm-up call."""
    fn()  # warm-up (regexes, caches)
    times = []
    for _ in range(rounds):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return sorted(times)[len(times) // 2]


def cpu_note(events: int, cpu: float) -> str:
    """The CPU time beside a wall time: on a loaded machine the wall time includes waiting for
    a core, the CPU time less so."""
    return f", CPU {1e6 * cpu / events:.1f} µs/event ({events / cpu:,.0f}/s)"


# ---------------------------------------------------------------------------------------------
# In process, no database


def measure_python(args: argparse.Namespace) -> None:
    n = args.events
    print(f"in process, Python only (median of {args.rounds} rounds, one document):")
    for with_ids in (True, False):
        raw = document(900_000 + with_ids, n, args.epcs, with_ids)
        events = parse_document(raw, max_events=n)
        assert len(events) == n and all(len(e.epcs) == args.epcs for e in events)
        name = "eventIDs given" if with_ids else "no eventID"

        def parse(raw: bytes = raw) -> list[Any]:
            return parse_document(raw, max_events=n)

        wall, cpu = median_seconds(parse, args.rounds)
        rate(f"parse_document ({name}, {len(raw):,} bytes)", n, wall, cpu_note(n, cpu))

        def ids(events: list[Any] = events) -> list[str]:
            return [e.event_id or event_hash(e.raw, e.context) for e in events]

        got = ids()
        assert len(set(got)) == n
        assert all(i.startswith("urn:uuid:" if with_ids else "ni:///sha-256;") for i in got)
        wall, cpu = median_seconds(ids, args.rounds)
        rate(f"ids: eventID or event_hash ({name})", n, wall, cpu_note(n, cpu))


# ---------------------------------------------------------------------------------------------
# Database


def database_url(name: str) -> str:
    params = conninfo_to_dict(ADMIN_URL)
    params["dbname"] = name
    return make_conninfo("", **params)


def settings_env(db_url: str) -> dict[str, str]:
    return {
        "TRACECODE_DATABASE_URL": db_url,
        "TRACECODE_REDIS_URL": REDIS_URL,
        "TRACECODE_MASTER_KEY": MASTER_KEY,
        "TRACECODE_REDIS_NAMESPACE": "tcbenchepcis",
    }


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def build(name: str) -> str:
    """The throwaway database: created anew, migrated, demo data."""
    from app.db import migrate
    from app.demo import load_demo

    drop_database(name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(name)
    migrate(url)

    async def demo() -> None:
        async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
            await load_demo(conn)
            await conn.commit()

    asyncio.run(demo())
    return url


class Clock:
    """Wall time, this process's CPU time and the PostgreSQL backend's CPU time (from
    /proc/{pid}/stat when the server runs on this machine; clock ticks, so summed over a
    document of work, not less)."""

    def __init__(self, backend_pid: int) -> None:
        self.stat = Path(f"/proc/{backend_pid}/stat")
        self.tick = os.sysconf("SC_CLK_TCK")

    def backend_cpu(self) -> float | None:
        try:
            fields = self.stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime

    def now(self) -> tuple[float, float, float | None]:
        return time.perf_counter(), time.process_time(), self.backend_cpu()

    @staticmethod
    def since(
        start: tuple[float, float, float | None], end: tuple[float, float, float | None]
    ) -> tuple[float, float, float | None]:
        pg = None if start[2] is None or end[2] is None else end[2] - start[2]
        return end[0] - start[0], end[1] - start[1], pg


Spent = tuple[float, float, float | None]  # wall, Python CPU, PostgreSQL backend CPU seconds


def report(label: str, events: int, spent: list[Spent]) -> None:
    """The median wall time as a rate, with the mean CPU of Python and of PostgreSQL."""
    wall = statistics.median(s[0] for s in spent)
    python = sum(s[1] for s in spent) / len(spent)
    pg = [s[2] for s in spent if s[2] is not None]
    split = f", CPU: Python {1e6 * python / events:.1f}"
    if len(pg) == len(spent):
        split += f" + PostgreSQL {1e6 * sum(pg) / len(pg) / events:.1f}"
    rate(label, events, wall, split + " µs/event")


def _plus(a: Spent, b: Spent) -> Spent:
    return a[0] + b[0], a[1] + b[1], None if a[2] is None or b[2] is None else a[2] + b[2]


async def measure_db(url: str, args: argparse.Namespace) -> list[str]:
    """accept + run of fresh documents, then of one again; returns the capture ids."""
    from app.auth.service import load_user
    from app.codes.scheme import scheme_from_settings
    from app.config import load_settings
    from app.epcis import capture

    n = args.events
    scheme = scheme_from_settings(load_settings(settings_env(url)))
    captures: list[str] = []
    print(
        f"in process against PostgreSQL: capture.accept + commit, capture.run "
        f"({args.db_documents} fresh documents of each variant; median wall time, mean CPU):"
    )
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        row = await (
            await conn.execute(
                "SELECT id, pg_backend_pid() AS pid FROM users WHERE username = 'partner'"
            )
        ).fetchone()
        assert row is not None
        clock = Clock(row["pid"])
        partner = await load_user(conn, row["id"])
        await conn.commit()

        async def one(raw: bytes, stored: int) -> tuple[Spent, Spent, str]:
            t0 = clock.now()
            job = await capture.accept(conn, partner, raw)
            await conn.commit()
            t1 = clock.now()
            state = await capture.run(conn, scheme, job.captureID)
            t2 = clock.now()
            out = await capture.get(conn, partner, uuid.UUID(job.captureID))
            await conn.commit()
            assert state == "success" and out.stored == stored, (state, out)
            return clock.since(t0, t1), clock.since(t1, t2), job.captureID

        for with_ids in (True, False):
            name = "eventIDs given" if with_ids else "no eventID"
            accepts, runs = [], []
            raws = [
                document(with_ids * 1000 + d, n, args.epcs, with_ids)
                for d in range(args.db_documents)
            ]
            for raw in raws:
                accepted, ran, capture_id = await one(raw, n)
                accepts.append(accepted)
                runs.append(ran)
                captures.append(capture_id)
            both = [_plus(a, r) for a, r in zip(accepts, runs, strict=True)]
            report(f"accept + commit ({name})", n, accepts)
            report(f"run ({name})", n, runs)
            report(f"accept + run ({name})", n, both)
            accepted, ran, _ = await one(raws[0], 0)
            report(f"again, every eventID known ({name})", n, [_plus(accepted, ran)])
    return captures


def check_counts(url: str, captures: list[str], events: int, epcs: int) -> None:
    """Every event of the captures stored once, with one row per EPC."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT event_id), "
            "count(*) FILTER (WHERE event_id LIKE 'ni:///sha-256;%%') "
            "FROM epcis_events WHERE capture_id = ANY(%s)",
            ([uuid.UUID(c) for c in captures],),
        ).fetchone()
        assert row is not None
        stored, distinct, hashed = row
        row = conn.execute(
            "SELECT count(*), count(DISTINCT x.epc) FROM epcis_event_epcs x "
            "JOIN epcis_events e ON e.id = x.event_id WHERE e.capture_id = ANY(%s)",
            ([uuid.UUID(c) for c in captures],),
        ).fetchone()
        assert row is not None
        epc_rows, distinct_epcs = row
    want = len(captures) * events
    ok = stored == distinct == want and epc_rows == distinct_epcs == want * epcs
    print(
        f"  check: {stored:,} event rows, {distinct:,} distinct eventIDs ({hashed:,} hashes), "
        f"{epc_rows:,} EPC rows, {distinct_epcs:,} distinct EPCs; expected {want:,} and "
        f"{want * epcs:,}: {'OK' if ok else 'FAILED'}",
        flush=True,
    )
    if not ok:
        raise SystemExit("the stored events do not match what was sent")


# ---------------------------------------------------------------------------------------------
# Over HTTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, 0 if gone."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / tick
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        total += sum(proc_cpu(int(child)) for child in children)
    return total


def backends_cpu(url: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to the bench database (same machine)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return {pid: proc_cpu(pid) for (pid,) in rows}


@contextmanager
def granian(url: str) -> Iterator[tuple[str, int]]:
    """The service on a free port (production command, one worker): (base URL, server pid)."""
    import httpx

    port = free_port()
    env = {**os.environ, **settings_env(url)}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            server_command("127.0.0.1", port, 1),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"granian exited: {log.read()[-3000:].decode()}")
                try:
                    if httpx.get(f"{base}/ping").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("granian did not answer /ping within 90 s")
                time.sleep(0.2)
            yield base, server.pid
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=5)


def measure_http(url: str, args: argparse.Namespace) -> list[str]:
    """POST the documents back to back (then with ``--concurrency`` clients); returns the
    capture ids."""
    import httpx

    n = args.events
    phases = [1] + ([args.concurrency] if args.concurrency > 1 else [])
    raws = [
        document(2000 + d, n, args.epcs, with_ids=d % 2 == 0)
        for d in range(1 + args.documents * len(phases))
    ]
    captures: list[str] = []
    with granian(url) as (base, server_pid):
        response = httpx.post(
            f"{base}/auth/login", json={"username": "partner", "password": PASSWORD}
        )
        response.raise_for_status()
        headers = {
            "authorization": f"Bearer {response.json()['access_token']}",
            "content-type": "application/ld+json",
        }

        def post_all(documents: list[bytes]) -> list[tuple[str, float]]:
            done = []
            with httpx.Client(base_url=base, timeout=300, headers=headers) as client:
                for raw in documents:
                    t0 = time.perf_counter()
                    response = client.post("/epcis/capture", content=raw)
                    elapsed = time.perf_counter() - t0
                    job = response.json()
                    if response.status_code != 202 or job.get("state") != "success":
                        raise SystemExit(f"POST /epcis/capture: {response.status_code} {job}")
                    if job["stored"] != n:
                        raise SystemExit(f"stored {job['stored']} of {n} events: {job}")
                    done.append((str(job["captureID"]), elapsed))
            return done

        captures += [c for c, _ in post_all(raws[:1])]  # warm-up (imports, caches, plans)
        print(
            f"over HTTP: POST /epcis/capture on granian (1 worker), {args.documents} documents "
            f"of {n:,} events, eventIDs given in every other one (after 1 warm-up document); "
            "CPU of the server's processes and of the database's backends:",
            flush=True,
        )
        for phase, clients in enumerate(phases):
            batch = raws[1 + phase * args.documents : 1 + (phase + 1) * args.documents]
            cpu0, pg0 = proc_cpu(server_pid), backends_cpu(url)
            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                results = [
                    r
                    for part in pool.map(post_all, [batch[i::clients] for i in range(clients)])
                    for r in part
                ]
            total = time.perf_counter() - start
            cpu, pg = proc_cpu(server_pid) - cpu0, backends_cpu(url)
            pg_cpu = sum(t - pg0.get(pid, 0.0) for pid, t in pg.items())
            captures += [c for c, _ in results]
            latencies = sorted(t for _, t in results)
            events = n * len(batch)
            label = "back to back" if clients == 1 else f"{clients} clients at once"
            rate(
                f"end to end, {label}",
                events,
                total,
                f"; per document median {1000 * statistics.median(latencies):.0f} ms, max "
                f"{1000 * latencies[-1]:.0f} ms; CPU: server {1e6 * cpu / events:.1f} + "
                f"PostgreSQL {1e6 * pg_cpu / events:.1f} µs/event",
            )
    return captures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="events per document")
    parser.add_argument("--epcs", type=int, default=10, help="EPCs per event")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the in-process stages")
    parser.add_argument("--db-documents", type=int, default=3, help="per variant, in process")
    parser.add_argument("--documents", type=int, default=20, help="documents over HTTP")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="then as many clients at once (1: skip)"
    )
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--skip-db", action="store_true", help="Python stages only")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        version = row[0] if row else "?"
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), PostgreSQL {version}, "
        f"Python {platform.python_version()}, msgspec {msgspec.__version__}"
    )
    print(
        f"documents: {args.events:,} ObjectEvents x {args.epcs} SGTIN URNs; target "
        f"{TARGET:,} events/s; load average (1, 5, 15 min) before: {load()}",
        flush=True,
    )
    measure_python(args)
    if not args.skip_db:
        url = build(args.database)
        try:
            captures = asyncio.run(measure_db(url, args))
            check_counts(url, captures, args.events, args.epcs)
            if not args.skip_http:
                captures = measure_http(url, args)
                check_counts(url, captures, args.events, args.epcs)
        finally:
            if not args.keep:
                drop_database(args.database)
    print(f"load average (1, 5, 15 min) after: {load()}")


if __name__ == "__main__":
    main()
