"""EPCIS 2.0 capture throughput (issue 19): ten-EPC ObjectEvents per second, by stage and end to
end. Prints numbers.

    .venv/bin/python bench/bench_epcis_capture.py [--events 1000] [--epcs 10] [--rounds 5]
                                                  [--db-documents 3] [--documents 20]
                                                  [--skip-http] [--keep]

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
captured again (every eventID known: nothing stored), timed the same way.

Over HTTP: granian with one worker (``app.cli.server_command``, the production command) on a free
127.0.0.1 port over the same database; an httpx client logged in as ``partner`` POSTs
``--documents`` documents (alternating the two variants, all distinct) to ``/epcis/capture`` back
to back, one at a time (a document of <= TRACECODE_EPCIS_INLINE_EVENTS events is applied during
the request, so the 202 means stored). Reported: events/s over the wall time of all POSTs (client,
server and PostgreSQL share this machine's cores), and per-document latency.

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
from collections.abc import Callable
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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def rate(label: str, events: int, seconds: float, extra: str = "") -> float:
    per_second = events / seconds
    print(
        f"  {label:<58} {per_second:>10,.0f} events/s {1e6 * seconds / events:>8.1f} µs/event"
        f"  ({per_second / TARGET:.2f} x target){extra}",
        flush=True,
    )
    return per_second


def median_seconds(fn: Callable[[], Any], rounds: int) -> float:
    fn()  # warm-up (regexes, caches)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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

        seconds = median_seconds(parse, args.rounds)
        rate(f"parse_document ({name}, {len(raw):,} bytes)", n, seconds)

        def ids(events: list[Any] = events) -> list[str]:
            return [e.event_id or event_hash(e.raw, e.context) for e in events]

        got = ids()
        assert len(set(got)) == n
        assert all(i.startswith("urn:uuid:" if with_ids else "ni:///sha-256;") for i in got)
        rate(f"ids: eventID or event_hash ({name})", n, median_seconds(ids, args.rounds))


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
        f"({args.db_documents} fresh documents of each variant, median):"
    )
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        row = await (
            await conn.execute("SELECT id FROM users WHERE username = 'partner'")
        ).fetchone()
        assert row is not None
        partner = await load_user(conn, row["id"])
        await conn.commit()

        async def one(raw: bytes, stored: int) -> tuple[float, float, str]:
            t0 = time.perf_counter()
            job = await capture.accept(conn, partner, raw)
            await conn.commit()
            t1 = time.perf_counter()
            state = await capture.run(conn, scheme, job.captureID)
            t2 = time.perf_counter()
            out = await capture.get(conn, partner, uuid.UUID(job.captureID))
            await conn.commit()
            assert state == "success" and out.stored == stored, (state, out)
            return t1 - t0, t2 - t1, job.captureID

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
            rate(f"accept + commit ({name})", n, statistics.median(accepts))
            rate(f"run ({name})", n, statistics.median(runs))
            rate(
                f"accept + run ({name})",
                n,
                statistics.median(a + r for a, r in zip(accepts, runs, strict=True)),
            )
            accepted, ran, _ = await one(raws[0], 0)
            rate(f"again: accept + run, every eventID known ({name})", n, accepted + ran)
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


def measure_http(url: str, args: argparse.Namespace) -> list[str]:
    """POST the documents one after the other; returns the capture ids."""
    import httpx

    n = args.events
    raws = [
        document(2000 + d, n, args.epcs, with_ids=d % 2 == 0) for d in range(args.documents + 1)
    ]
    env = {**os.environ, **settings_env(url)}
    port = free_port()
    captures: list[str] = []
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
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                deadline = time.monotonic() + 90
                while True:
                    if server.poll() is not None:
                        log.seek(0)
                        raise SystemExit(f"granian exited: {log.read()[-3000:].decode()}")
                    try:
                        if client.get("/ping").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemExit("granian did not answer /ping within 90 s")
                    time.sleep(0.2)
                response = client.post(
                    "/auth/login", json={"username": "partner", "password": PASSWORD}
                )
                response.raise_for_status()
                client.headers["authorization"] = f"Bearer {response.json()['access_token']}"
                client.headers["content-type"] = "application/ld+json"

                def post(raw: bytes) -> str:
                    response = client.post("/epcis/capture", content=raw)
                    job = response.json()
                    if response.status_code != 202 or job.get("state") != "success":
                        raise SystemExit(f"POST /epcis/capture: {response.status_code} {job}")
                    if job["stored"] != n:
                        raise SystemExit(f"stored {job['stored']} of {n} events: {job}")
                    return str(job["captureID"])

                captures.append(post(raws[0]))  # warm-up (imports, caches, plans)
                latencies = []
                print(
                    f"over HTTP: POST /epcis/capture on granian (1 worker), {args.documents} "
                    f"documents of {n:,} events back to back, eventIDs given in every other one "
                    f"(after 1 warm-up document):",
                    flush=True,
                )
                start = time.perf_counter()
                for raw in raws[1:]:
                    t0 = time.perf_counter()
                    captures.append(post(raw))
                    latencies.append(time.perf_counter() - t0)
                total = time.perf_counter() - start
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=5)
    latencies.sort()
    rate(
        "end to end, all documents",
        n * args.documents,
        total,
        f"; per document median {1000 * statistics.median(latencies):.0f} ms, "
        f"max {1000 * latencies[-1]:.0f} ms",
    )
    return captures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="events per document")
    parser.add_argument("--epcs", type=int, default=10, help="EPCs per event")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the in-process stages")
    parser.add_argument("--db-documents", type=int, default=3, help="per variant, in process")
    parser.add_argument("--documents", type=int, default=20, help="documents over HTTP")
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
