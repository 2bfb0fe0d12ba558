"""EPCIS query of one EPC's events on 10,000,000 captured events (issue 19 target). Prints numbers.

    .venv/bin/python bench/bench_epcis_query.py [--rebuild] [--events 10000000] [--samples 2000]
                                                [--warmup 200] [--concurrency 16] [--explain]
                                                [--build-only] [--explain-only]
                                                [--modes epc,epc-concurrent,any]
                                                [--pg-options '-c name=value']

On a shared machine build under ``nice`` (``nice -n 19 … --build-only``), then measure without
it: the server and the client inherit the script's niceness.

Target: ``GET /epcis/events?MATCH_epc=…`` (one EPC's events), p99 <= 20 ms, on a database
holding 10,000,000 captured events. ``MATCH_anyEPC`` is measured the same way.

Build (once; kept between runs, ``--rebuild`` drops it): on the PostgreSQL server of
``TRACECODE_DATABASE_URL`` (an admin URL; default postgresql://postgres@127.0.0.1:5432/postgres)
the database ``tracecode_bench_epcis_query`` (not ``tracecode_bench_epcis``: bench_epcis_capture.py
drops that one on every run) is created, migrated (``app.db.migrate``) and given the
demo data (``app.demo.load_demo``; Tracecode's own events stay the demo's). Then ``--events``
partner events are captured, each with 10 EPCs, as the life of a contract packer's goods under
its own GS1 prefix (not the brand's products, so capture stores them without touching code
state): per group of 10 units one commissioning ObjectEvent (ADD, with ILMD), one packing
AggregationEvent (ADD, parentID = the case's SSCC, the 10 units as childEPCs), one shipping and
one receiving ObjectEvent (OBSERVE, with a desadv bizTransaction and source/destination) — so
each unit's EPC is in 4 events and each case's SSCC in one, as parentID (10M events: 2.5M
groups, 25M SGTINs, 2.5M SSCCs, 102.5M identifier rows). Events carry urn:uuid eventIDs and
times 6 s apart per group (packing +7 min, shipping +3 d 2 h, receiving +5 d 9 h, UTC+08:00),
so one EPC's events lie far apart in the table. A document of 250 events per kind and block of
groups is one capture job of the organisation that sends it (factory, warehouse, one of seven
agents, distributors and stores), in the order the jobs' last events happen.

Every event is written by ``app.epcis.capture._write`` itself (COPY into ``epcis_events`` /
``epcis_event_epcs``: canonical EPCs, the event JSON as body), one call per document on one
connection, with a finished ``epcis_captures`` row per job (``stored`` = its events, body
dropped as ``run`` does). ``_write`` takes the CapturedEvent structs ``parse_document`` makes;
the script makes them itself (parsing 10M events would take most of the build) and, for every
25th block of groups, parses the four documents with the real ``parse_document`` and stops
unless its structs are equal. ``_apply``'s steps that cannot change these events (eventID
lookups, the brand's codes) are skipped. For speed the two tables' secondary indexes and
unique/foreign-key constraints are dropped before and made again after from their own
definitions, then VACUUM (ANALYZE) and a CHECKPOINT. The build's server processes get the
script's niceness when the server is local and allows it (run the script under ``nice``). A row
in ``bench_epcis_build`` marks a complete build; without it the database is rebuilt.

Measure, over HTTP on granian with one worker (``app.cli.server_command``) on a free 127.0.0.1
port, with an httpx client logged in as the demo ``admin`` (brand scope), random samples (after
``--warmup`` others), disjoint per mode: (1) ``MATCH_epc`` of one unit's EPC, one request at a
time; (2) the same with ``--concurrency`` requests in flight; (3) ``MATCH_anyEPC`` of one unit
(every fifth sample a case's SSCC), one at a time. Queried EPCs alternate between the EPC URN
and the GS1 Digital Link URI. Every answer is checked against the events the build wrote for
that EPC (the unit's four events in id order, or the case's packing event; each equal to the
captured JSON), so a broken query cannot pass. Reported: p50/p95/p99/max/mean client latency,
the rate, the server's own time (access log), and what a request used (``Usage``: CPU of the app,
of its PostgreSQL backends and of this client; PostgreSQL block reads per table and their read
time). ``--pg-options`` sets PGOPTIONS for the server's sessions only (an A/B such as
``-c enable_indexonlyscan=off``). ``--explain`` (and automatically when a p99
misses the target) prints EXPLAIN (ANALYZE, BUFFERS) of the queries ``app.epcis.search.search``
sends for a unit's EPC (URN and Digital Link) and a case's SSCC not queried before, then which
plan the statement gets once prepared (psycopg prepares after 5 executions; PostgreSQL then
may switch to the generic plan), and the generic plan (EXPLAIN only).

Environment: TRACECODE_DATABASE_URL (admin URL), TRACECODE_REDIS_URL (default
redis://127.0.0.1:6379/0), TRACECODE_MASTER_KEY (default ``be`` * 32).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from app._core import build_sscc  # noqa: E402
from app.cli import server_command  # noqa: E402
from bench.bench_verify import cpu_model  # noqa: E402

ADMIN_URL = os.environ.get(
    "TRACECODE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TRACECODE_REDIS_URL", "redis://127.0.0.1:6379/0")
MASTER_KEY = os.environ.get("TRACECODE_MASTER_KEY", "be" * 32)
DATABASE = "tracecode_bench_epcis_query"  # bench_epcis_capture.py drops tracecode_bench_epcis
TARGET_P99_MS = 20.0
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
TABLES = ("epcis_events", "epcis_event_epcs", "epcis_captures")

PREFIX = "6975001"  # the contract packer's GS1 company prefix (the brand's GTINs are 6901234…)
ITEMS = 24  # its products (item references)
FAN = 10  # units per group (and EPCs per event)
BLOCK = 250  # groups per capture document (one document = 250 events of one kind)
KINDS = ("commissioning", "packing", "shipping", "receiving")
DISPOSITIONS = ("active", "in_progress", "in_transit", "in_progress")
STEP_MS = 6_000  # between two groups' commissioning
OFFSET_MS = (0, 7 * 60_000, (3 * 24 + 2) * 3_600_000, (5 * 24 + 9) * 3_600_000)
CAPTURE_DELAY_MS = 60_000  # a document is sent a minute after its last event
LOCAL = timezone(timedelta(hours=8))
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=LOCAL)
T0_UTC = T0.astimezone(UTC)
FACTORY, WAREHOUSE = "FACTORY-SZ", "WH-SZ-01"
DESTINATIONS = (
    "AGENT-ZJ", "AGENT-GD", "DIST-NB", "STORE-HZ-01", "STORE-NB-01", "STORE-GZ-01", "STORE-SZ-01",
)  # fmt: skip
PLACES = (FACTORY, WAREHOUSE, *DESTINATIONS)  # GLN location reference = index + 1
MARK = "/epcis/events/urn:bench:"  # + start / end: no such event, a 404 in the access log
COMMIT_JOBS = 40  # capture jobs per transaction during the build
VERIFY = 25  # every 25th block's documents are also parsed by parse_document and compared


@dataclass(frozen=True, slots=True)
class Layout:
    """What the build made: enough to compute every event and every expected answer."""

    events: int
    brand_id: int
    org_ids: dict[str, int]

    @property
    def groups(self) -> int:
        return self.events // len(KINDS)

    @property
    def units(self) -> int:
        return self.groups * FAN

    @property
    def blocks(self) -> int:
        return -(-self.groups // BLOCK)


# ---------------------------------------------------------------------------------------------
# The events


def serial(unit: int) -> str:
    """The unit's serial: a bijection of [0, 10^10) that looks random (multiplier prime to 10)."""
    return f"{(unit * 7_654_321_013 + 104_729) % 10**10:010d}"


def item_ref(group: int) -> str:
    return f"0{10 + group % ITEMS:05d}"  # indicator digit 0 + 5-digit item reference


@cache
def gtin(ref: str) -> str:
    body = ref[0] + PREFIX + ref[1:]
    odd = sum(int(d) for d in body[::-2])
    even = sum(int(d) for d in body[-2::-2])
    return body + str((10 - (3 * odd + even) % 10) % 10)


def sgtins(group: int) -> list[str]:
    """The EPC URNs of the group's units."""
    head = f"urn:epc:id:sgtin:{PREFIX}.{item_ref(group)}."
    return [head + serial(unit) for unit in range(group * FAN, group * FAN + FAN)]


def sgtin_urn(unit: int) -> str:
    return f"urn:epc:id:sgtin:{PREFIX}.{item_ref(unit // FAN)}.{serial(unit)}"


def sgtin_link(unit: int) -> str:
    return f"https://id.gs1.org/01/{gtin(item_ref(unit // FAN))}/21/{serial(unit)}"


def sscc_urn(group: int) -> str:
    return f"urn:epc:id:sscc:{PREFIX}.0{group:09d}"


def sscc_link(group: int) -> str:
    return f"https://id.gs1.org/00/{build_sscc(0, PREFIX, group)}"


def sgln(place: str, extension: str = "0") -> str:
    return f"urn:epc:id:sgln:{PREFIX}.{PLACES.index(place) + 1:05d}.{extension}"


def pgln(place: str) -> str:
    return f"urn:epc:id:pgln:{PREFIX}.{PLACES.index(place) + 1:05d}"


def destination(block: int) -> str:
    return DESTINATIONS[block % len(DESTINATIONS)]


def event_id(kind: int, group: int) -> str:
    """A version 4 UUID URN made of the kind and the group."""
    return f"urn:uuid:0b190000-0000-400{kind}-8000-{group:012x}"


@cache
def _day(days: int) -> str:
    return (T0 + timedelta(days=days)).strftime("%Y-%m-%d")


def _time(ms: int) -> str:
    """T0 + ms as sent (local time, UTC+08:00, milliseconds); T0 is 08:00 local."""
    ms += 8 * 3_600_000
    days, ms = divmod(ms, 86_400_000)
    seconds, milli = divmod(ms, 1000)
    return (
        f"{_day(days)}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        f".{milli:03d}+08:00"
    )


def event(kind: int, group: int) -> dict[str, Any]:
    """One event as the partner sends it (JSON-LD, EPC URNs)."""
    block = group // BLOCK
    epcs = sgtins(group)
    out: dict[str, Any] = {
        "type": "AggregationEvent" if kind == 1 else "ObjectEvent",
        "eventTime": _time(group * STEP_MS + OFFSET_MS[kind]),
        "eventTimeZoneOffset": "+08:00",
        "eventID": event_id(kind, group),
    }
    if kind == 1:
        out["parentID"] = sscc_urn(group)
        out["childEPCs"] = epcs
    else:
        out["epcList"] = epcs
    out["action"] = "ADD" if kind < 2 else "OBSERVE"
    out["bizStep"] = KINDS[kind]
    out["disposition"] = DISPOSITIONS[kind]
    place = (FACTORY, FACTORY, WAREHOUSE, destination(block))[kind]
    out["readPoint"] = {"id": sgln(place, str(1 + group % 4))}
    if kind != 2:
        out["bizLocation"] = {"id": sgln(place)}
    if kind == 0:
        out["ilmd"] = {
            "cbvmda:lotNumber": f"L{block:06d}",
            "cbvmda:itemExpirationDate": "2029-01-31",
        }
    if kind >= 2:
        gln = f"{PREFIX}000010"
        out["bizTransactionList"] = [
            {"type": "desadv", "bizTransaction": f"urn:epcglobal:cbv:bt:{gln}:D{block:07d}"}
        ]
        out["sourceList"] = [{"type": "owning_party", "source": pgln(WAREHOUSE)}]
        out["destinationList"] = [{"type": "owning_party", "destination": pgln(destination(block))}]
    return out


def captured(kind: int, group: int, raw: dict[str, Any]) -> Any:
    """``raw`` as ``parse_document`` gives it back (a CapturedEvent; compared with the parser's
    own for every ``VERIFY``-th block of groups during the build)."""
    from app.epcis.document import CapturedEvent

    head = f"https://id.gs1.org/01/{gtin(item_ref(group))}/21/"
    epcs = raw["childEPCs" if kind == 1 else "epcList"]
    shipped = kind >= 2
    return CapturedEvent(
        raw=raw,
        context=[CONTEXT],
        event_id=raw["eventID"],
        event_type=raw["type"],
        action=raw["action"],
        biz_step=KINDS[kind],
        disposition=DISPOSITIONS[kind],
        event_time=T0_UTC + timedelta(milliseconds=group * STEP_MS + OFFSET_MS[kind]),
        event_time_zone_offset="+08:00",
        read_point=raw["readPoint"]["id"],
        biz_location=raw["bizLocation"]["id"] if "bizLocation" in raw else None,
        parent_id=sscc_link(group) if kind == 1 else None,
        epcs=[head + epc[-10:] for epc in epcs],
        epc_classes=[],
        biz_transactions=[
            ("desadv", t["bizTransaction"]) for t in raw.get("bizTransactionList", [])
        ],
        sources=[("owning_party", raw["sourceList"][0]["source"])] if shipped else [],
        destinations=(
            [("owning_party", raw["destinationList"][0]["destination"])] if shipped else []
        ),
    )


def document(events: list[dict[str, Any]], created_ms: int) -> bytes:
    return msgspec.json.encode(
        {
            "@context": [CONTEXT],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": _time(created_ms),
            "epcisBody": {"eventList": events},
        }
    )


def jobs(layout: Layout) -> list[tuple[int, int, int]]:
    """(sent at, kind, block) of every capture document, in the order they are sent."""
    out = []
    for block in range(layout.blocks):
        last = min((block + 1) * BLOCK, layout.groups) - 1
        for kind in range(len(KINDS)):
            out.append((last * STEP_MS + OFFSET_MS[kind] + CAPTURE_DELAY_MS, kind, block))
    out.sort()
    return out


def job_org(layout: Layout, kind: int, block: int) -> int:
    return layout.org_ids[(FACTORY, FACTORY, WAREHOUSE, destination(block))[kind]]


# ---------------------------------------------------------------------------------------------
# Build


def database_url(name: str) -> str:
    params = conninfo_to_dict(ADMIN_URL)
    params["dbname"] = name
    return make_conninfo("", **params)


def settings_env(db_url: str) -> dict[str, str]:
    return {
        "TRACECODE_DATABASE_URL": db_url,
        "TRACECODE_REDIS_URL": REDIS_URL,
        "TRACECODE_MASTER_KEY": MASTER_KEY,
        "TRACECODE_REDIS_NAMESPACE": "tcbenchepcisq",
    }


def existing_build(name: str, events: int) -> Layout | None:
    """The layout of a complete build of ``events`` events, or None (and why, printed)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return None
    with psycopg.connect(database_url(name)) as conn:
        found = conn.execute("SELECT to_regclass('bench_epcis_build') IS NOT NULL").fetchone()
        row = (
            conn.execute("SELECT layout FROM bench_epcis_build").fetchone()
            if found and found[0]
            else None
        )
    if row is None:
        print(f"{name}: no complete build marker, rebuilding")
        return None
    layout = Layout(**row[0])
    if layout.events != events:
        print(f"{name}: built with {layout.events:,} events, {events:,} asked: rebuilding")
        return None
    return layout


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def create_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def nice_backend(conn: Any) -> None:
    """Give this connection's server process the script's niceness (local server, permitted)."""
    host = conn.info.host
    if not (host.startswith("/") or host in ("127.0.0.1", "localhost", "::1")):
        return
    pid = conn.info.backend_pid
    try:
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        if os.getpriority(os.PRIO_PROCESS, pid) < mine:
            os.setpriority(os.PRIO_PROCESS, pid, mine)
    except OSError:
        pass


async def demo(db_url: str, events: int) -> Layout:
    from app.demo import load_demo

    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        org_ids = await load_demo(conn)
        await conn.commit()
    return Layout(
        events=events,
        brand_id=org_ids["BRAND-LUMI"],
        org_ids={p: org_ids[p] for p in PLACES},
    )


def secondary(conn: Any) -> tuple[list[str], list[str]]:
    """(drop, create) statements of the two tables' indexes and constraints but the keys."""
    drop: list[str] = []
    create: list[str] = []
    for table, name, definition in conn.execute(
        """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
           WHERE conrelid IN ('epcis_events'::regclass, 'epcis_event_epcs'::regclass)
             AND contype IN ('u', 'f') ORDER BY contype DESC, conname"""
    ).fetchall():
        drop.append(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        create.append(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    for name, definition in conn.execute(
        """SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
           WHERE i.indrelid IN ('epcis_events'::regclass, 'epcis_event_epcs'::regclass)
             AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
           ORDER BY 1"""
    ).fetchall():
        drop.append(f"DROP INDEX {name}")
        create.append(definition)
    return drop, create


async def fill(db_url: str, layout: Layout) -> None:
    """Capture every document: a finished capture job, then capture._write of its events."""
    from app.epcis.capture import _write
    from app.epcis.document import parse_document

    todo = jobs(layout)
    started = time.perf_counter()
    written = 0
    report = max(1, len(todo) // 20)
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        nice_backend(conn)
        await conn.execute("SET synchronous_commit = off")
        for n, (sent, kind, block) in enumerate(todo):
            groups = range(block * BLOCK, min((block + 1) * BLOCK, layout.groups))
            parsed = [captured(kind, g, event(kind, g)) for g in groups]
            if (
                block % VERIFY == 0
                and parse_document(document([e.raw for e in parsed], sent)) != parsed
            ):
                raise SystemExit(f"the events of kind {kind}, block {block} are not as parsed")
            job = {
                "id": uuid.uuid4(),
                "brand_id": layout.brand_id,
                "org_id": job_org(layout, kind, block),
            }
            at = T0 + timedelta(milliseconds=sent)
            await conn.execute(
                """INSERT INTO epcis_captures (id, brand_id, org_id, state, event_count, stored,
                                               created_at, finished_at)
                   VALUES (%s, %s, %s, 'success', %s, %s, %s, %s)""",
                (job["id"], job["brand_id"], job["org_id"], len(parsed), len(parsed), at, at),
            )
            await _write(conn, job, [(i, e.event_id, e) for i, e in enumerate(parsed)], set(), {})  # type: ignore[misc]
            written += len(parsed)
            if n % COMMIT_JOBS == COMMIT_JOBS - 1 or n == len(todo) - 1:
                await conn.commit()
            if n % report == report - 1:
                spent = time.perf_counter() - started
                print(
                    f"  {written:>12,} events  {spent:7.1f} s  {written / spent:8,.0f} events/s  "
                    "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
                    flush=True,
                )


def vacuum(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        nice_backend(conn)
        conn.execute("SET maintenance_work_mem = '1GB'")
        for table in TABLES:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        conn.execute("ANALYZE")
        try:
            conn.execute("CHECKPOINT")
        except psycopg.Error as exc:  # not a superuser: the server checkpoints on its own
            print(f"  (no CHECKPOINT: {exc})")


def build(name: str, events: int) -> Layout:
    from app.db import migrate

    if events % len(KINDS) or events <= 0:
        raise SystemExit("--events must be a positive multiple of 4 (4 events per group)")
    drop_database(name)
    create_database(name)
    db_url = database_url(name)
    t0 = time.perf_counter()
    migrate(db_url)
    layout = asyncio.run(demo(db_url, events))
    with psycopg.connect(db_url, autocommit=True) as conn:
        drop, create = secondary(conn)
        for statement in drop:
            conn.execute(statement)  # type: ignore[call-overload]
    t1 = time.perf_counter()
    print(f"build: migrations, demo data: {t1 - t0:.1f} s", flush=True)
    print(
        f"  {layout.events:,} events in {len(jobs(layout)):,} documents: {layout.groups:,} groups "
        f"of {FAN} units, {layout.units:,} SGTINs, {layout.groups:,} SSCCs",
        flush=True,
    )
    asyncio.run(fill(db_url, layout))
    t2 = time.perf_counter()
    print(f"build: capture._write of every document: {t2 - t1:.1f} s", flush=True)
    with psycopg.connect(db_url, autocommit=True) as conn:
        nice_backend(conn)
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 0")  # one (niced) process
        for statement in create:
            s0 = time.perf_counter()
            conn.execute(statement)  # type: ignore[call-overload]
            print(f"  {time.perf_counter() - s0:7.1f} s  {statement}", flush=True)
    t3 = time.perf_counter()
    print(f"build: indexes and constraints: {t3 - t2:.1f} s", flush=True)
    vacuum(db_url)
    t4 = time.perf_counter()
    print(f"build: VACUUM (ANALYZE) + CHECKPOINT: {t4 - t3:.1f} s")
    total = t4 - t0
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "CREATE TABLE bench_epcis_build (layout jsonb NOT NULL, build_seconds float8 NOT NULL, "
            "built_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "INSERT INTO bench_epcis_build (layout, build_seconds) VALUES (%s, %s)",
            (json.dumps(asdict(layout)), total),
        )
    print(f"build: total {total:.1f} s ({total / 60:.1f} min)")
    return layout


def sizes(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for table in TABLES:
            row = conn.execute(
                sql.SQL(
                    "SELECT pg_table_size({name}), pg_indexes_size({name}), "
                    "(SELECT reltuples FROM pg_class WHERE oid = {name}::regclass)"
                ).format(name=sql.Literal(table))
            ).fetchone()
            assert row is not None
            print(
                f"  {table:<17} {row[2]:>13,.0f} rows (estimate)  table {row[0] / 2**20:8.0f} MiB"
                f"  indexes {row[1] / 2**20:8.0f} MiB"
            )
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None
        print(f"  database          {row[0] / 2**30:.2f} GiB")


# ---------------------------------------------------------------------------------------------
# Measure


@dataclass(frozen=True, slots=True)
class Sample:
    """One query: the parameter, the EPC as sent, and the events the answer must list."""

    param: str
    epc: str
    unit: int | None  # the unit queried, or None for a case
    group: int

    def expected(self) -> list[dict[str, Any]]:
        if self.unit is None:  # a case: the packing event names it as parentID
            return [event(1, self.group)] if self.param == "MATCH_anyEPC" else []
        return [event(kind, self.group) for kind in range(len(KINDS))]


def samples(layout: Layout, rng: random.Random, param: str, n: int, used: set[int]) -> list[Sample]:
    out: list[Sample] = []
    while len(out) < n:
        unit = rng.randrange(layout.units)
        if unit in used:
            continue
        used.add(unit)
        group = unit // FAN
        if param == "MATCH_anyEPC" and len(out) % 5 == 4:
            epc = sscc_urn(group) if len(out) % 2 else sscc_link(group)
            out.append(Sample(param, epc, None, group))
            continue
        epc = sgtin_urn(unit) if len(out) % 2 else sgtin_link(unit)
        out.append(Sample(param, epc, unit, group))
    return out


def check(sample: Sample, status: int, text: bytes, link: str | None) -> None:
    if status != 200:
        raise SystemExit(f"{sample.param}={sample.epc}: {status} {text[:2000]!r}")
    got = msgspec.json.decode(text)["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    for e in got:
        if not isinstance(e.pop("recordTime", None), str):
            raise SystemExit(f"{sample.param}={sample.epc}: an event without recordTime")
    want = sample.expected()
    if got != want or link is not None:
        raise SystemExit(
            f"wrong answer to {sample.param}={sample.epc}: {[e.get('eventID') for e in got]} "
            f"(want {[e['eventID'] for e in want]}; next page {link!r})"
        )


def percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)

    def rank(q: float) -> float:  # nearest rank
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def show(mode: str, ms: list[float], seconds: float | None = None) -> dict[str, float]:
    p = percentiles(ms)
    verdict = "met" if p["p99"] <= TARGET_P99_MS else "MISSED"
    rate = f"  {len(ms) / seconds:,.0f} req/s" if seconds else ""
    print(
        f"{mode}: n={len(ms)}  p50 {p['p50']:.2f} ms  p95 {p['p95']:.2f} ms  "
        f"p99 {p['p99']:.2f} ms  max {p['max']:.2f} ms  mean {p['mean']:.2f} ms{rate}  "
        f"(target p99 <= {TARGET_P99_MS:.0f} ms: {verdict})",
        flush=True,
    )
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_mode(
    client: Any, queries: list[Sample], concurrency: int
) -> tuple[list[float], float]:
    """Client-side milliseconds of each request, and the wall time of the whole run."""
    ms: list[float] = []
    todo = iter(queries)

    async def one_at_a_time() -> None:
        for sample in todo:
            t0 = time.perf_counter()
            response = await client.get("/epcis/events", params={sample.param: sample.epc})
            elapsed = time.perf_counter() - t0
            check(sample, response.status_code, response.content, response.headers.get("link"))
            ms.append(elapsed * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one_at_a_time() for _ in range(concurrency)))
    return ms, time.perf_counter() - started


class Usage:
    """What the measured requests used: CPU seconds of the server's processes (granian and its
    worker), of the database server processes serving it and of this client (Linux /proc; a
    remote database counts 0), and PostgreSQL's block reads (pages not in shared_buffers: from
    the OS page cache or the disk) with their read time (``track_io_timing``, set on the bench
    database when allowed). Backends report their statistics when idle, within 10 s: each
    snapshot waits ``STATS_DELAY`` first."""

    TICK = os.sysconf("SC_CLK_TCK")
    STATS_DELAY = 11.0
    READS = """SELECT d.blks_read, d.blk_read_time,
                      sum(t.heap_blks_read) FILTER (WHERE t.relname = 'epcis_event_epcs'),
                      sum(t.idx_blks_read) FILTER (WHERE t.relname = 'epcis_event_epcs'),
                      sum(t.heap_blks_read) FILTER (WHERE t.relname = 'epcis_events'),
                      sum(t.idx_blks_read) FILTER (WHERE t.relname = 'epcis_events')
               FROM pg_stat_database d, pg_statio_user_tables t
               WHERE d.datname = current_database() GROUP BY 1, 2"""
    FIELDS = ("app", "database", "client", "reads", "read_ms", "epcs heap", "epcs index",
              "events heap", "events index")  # fmt: skip

    def __init__(self, server_pid: int, db_url: str) -> None:
        self.group, self.db_url = server_pid, db_url

    @classmethod
    def _ticks(cls, pid: str) -> tuple[int, int]:
        """(process group, utime + stime) of one process, (0, 0) if it is gone."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0, 0
        return int(fields[2]), int(fields[11]) + int(fields[12])

    async def snapshot(self) -> tuple[dict[str, float], dict[int, float]]:
        await asyncio.sleep(self.STATS_DELAY)
        app = sum(
            ticks
            for pid in os.listdir("/proc")
            if pid.isdigit()
            for group, ticks in [self._ticks(pid)]
            if group == self.group
        )
        with psycopg.connect(self.db_url) as conn:
            pids = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'tracecode'"
            ).fetchall()
            reads = conn.execute(self.READS).fetchone() or ()
        backends = {pid: self._ticks(str(pid))[1] / self.TICK for (pid,) in pids}
        values = [app / self.TICK, 0.0, time.process_time(), *(float(r or 0) for r in reads)]
        return dict(zip(self.FIELDS, values, strict=True)), backends

    @staticmethod
    def used(before: Any, after: Any) -> dict[str, float]:
        out = {k: after[0][k] - before[0][k] for k in Usage.FIELDS}
        out["database"] = sum(t - before[1].get(pid, 0.0) for pid, t in after[1].items())
        return out


def show_usage(used: dict[str, float], requests: int) -> None:
    each = {k: v / requests for k, v in used.items()}
    print(
        f"  per request: CPU app {1000 * each['app']:.2f} ms, PostgreSQL "
        f"{1000 * each['database']:.2f} ms, this client {1000 * each['client']:.2f} ms; "
        f"PostgreSQL block reads {each['reads']:.2f} (epcis_event_epcs heap "
        f"{each['epcs heap']:.2f}, index {each['epcs index']:.2f}; epcis_events heap "
        f"{each['events heap']:.2f}, index {each['events index']:.2f}), read time "
        f"{each['read_ms']:.2f} ms"
    )


async def measure_modes(
    base: str, modes: list[tuple[str, int, list[Sample], list[Sample]]], usage: Usage
) -> list[tuple[list[float], float, dict[str, float]]]:
    import httpx

    width = max(c for _, c, _, _ in modes)
    limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        response = await client.post(
            "/auth/login", json={"username": "admin", "password": "tracecode-demo"}
        )
        response.raise_for_status()
        client.headers["authorization"] = f"Bearer {response.json()['access_token']}"
        out = []
        for name, concurrency, warm, measured in modes:
            await run_mode(client, warm, concurrency)
            print(f"{name}: load average before {os.getloadavg()[0]:.2f}", flush=True)
            await client.get(MARK + "start")  # 404: marks the run in the access log
            before = await usage.snapshot()
            ms, wall = await run_mode(client, measured, concurrency)
            out.append((ms, wall, Usage.used(before, await usage.snapshot())))
            await client.get(MARK + "end")
        await asyncio.sleep(1)  # the access log writer flushes every 0.2 s
        return out


def wait_ready(server: subprocess.Popen[bytes], log: Any, base: str) -> None:
    import httpx

    deadline = time.monotonic() + 60
    with httpx.Client(base_url=base, timeout=5) as client:
        while True:
            if server.poll() is not None:
                log.seek(0)
                raise SystemExit(f"granian exited: {log.read()[-3000:].decode()}")
            try:
                if client.get("/ping").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("granian did not answer /ping within 60 s")
            time.sleep(0.2)


def measure_http(
    db_url: str, modes: list[tuple[str, int, list[Sample], list[Sample]]], pg_options: str
) -> list[tuple[list[float], float, dict[str, float], list[float]]]:
    """Per mode: client milliseconds, wall seconds, what the requests used (``Usage``), and
    the server's own milliseconds."""
    env = {**os.environ, **settings_env(db_url)}
    if pg_options:
        env["PGOPTIONS"] = pg_options  # the server's database sessions only
    port = free_port()
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
            wait_ready(server, log, base)
            results = asyncio.run(measure_modes(base, modes, Usage(server.pid, db_url)))
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=5)
        log.seek(0)
        runs = server_times(log.read().decode(errors="replace"))
    if len(runs) != len(modes):
        print(f"(the access log shows {len(runs)} measured runs, not {len(modes)})")
        runs = [[] for _ in modes]
    return [(*result, times) for result, times in zip(results, runs, strict=True)]


def server_times(log: str) -> list[list[float]]:
    """The access log's milliseconds of each measured run (between its two marks)."""
    runs: list[list[float]] = []
    inside = False
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("path") == MARK + "start":
            runs.append([])
            inside = True
        elif entry.get("path") == MARK + "end":
            inside = False
        elif inside and entry.get("path") == "/epcis/events":
            runs[-1].append(float(entry["ms"]))
    return runs


# ---------------------------------------------------------------------------------------------
# EXPLAIN


class _Unsent:
    """What ``recorded`` answers instead of running a statement: no rows."""

    async def fetchall(self) -> list[Any]:
        return []

    async def fetchone(self) -> None:
        return None


async def recorded(db_url: str, sample: Sample) -> list[tuple[str, Any]]:
    """The statements ``search`` sends for the sample's query, with their parameters, recorded
    without running them (so the EXPLAIN ANALYZE that follows is the first to read the EPC's
    pages, as each measured request is; no own event matches these EPCs, so the statements are
    those of a real run)."""
    from app.auth.service import load_user
    from app.codes.scheme import scheme_from_settings
    from app.config import load_settings
    from app.epcis.query import parse_query
    from app.epcis.search import search

    settings = load_settings(settings_env(db_url))
    scheme = scheme_from_settings(settings)
    seen: list[tuple[str, Any]] = []
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        row = await (await conn.execute("SELECT id FROM users WHERE username = 'admin'")).fetchone()
        assert row is not None
        admin = await load_user(conn, row["id"])

        async def recording(query: Any, params: Any = None, **kwargs: Any) -> Any:
            seen.append((str(query), params))
            return _Unsent()

        conn.execute = recording  # type: ignore[method-assign]
        await search(conn, admin, scheme, settings, parse_query([(sample.param, sample.epc)]))
    print(f"-- {sample.param}={sample.epc} (not queried before): {len(seen)} statements")
    return seen


def positional(query: str, params: Any) -> tuple[str, list[Any]]:
    """The statement with $n placeholders and its values in order (for PREPARE)."""
    values: list[Any] = []
    if isinstance(params, dict):
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
                values.append(params[match.group(1)])
            return f"${names.index(match.group(1)) + 1}"

        return re.sub(r"%\((\w+)\)s", number, query), values
    count = iter(range(1, 1000))
    return re.sub(r"%s", lambda _: f"${next(count)}", query), list(params or [])


def prepared(conn: Any, query: str, params: Any) -> None:
    """The plan a prepared statement gets from its 6th execution on (the app's connections
    prepare a statement after 5 executions; PostgreSQL then keeps planning it for each call
    unless the generic plan costs less than the custom ones did), and the generic plan's cost.
    Plain EXPLAIN: a generic plan can be one that walks a whole table."""
    text, values = positional(query, params)
    conn.execute(f"PREPARE bench_q AS {text}")
    call = psycopg.ClientCursor(conn).mogrify(
        "EXECUTE bench_q (" + ", ".join(["%s"] * len(values)) + ")", values
    )
    for _ in range(5):
        conn.execute(call).fetchall()
    plan = [line for (line,) in conn.execute("EXPLAIN " + call)]
    kind = "the generic" if re.search(r"\$\d", "\n".join(plan)) else "a custom"
    print(f"   prepared, 6th execution: {kind} plan, {plan[0].strip()}")
    conn.execute("SET plan_cache_mode = force_generic_plan")
    plan = [line for (line,) in conn.execute("EXPLAIN " + call)]
    print(f"   the generic plan (not run): {plan[0].strip()}")
    for line in plan[1:]:
        print(f"     {line}")
    conn.execute("RESET plan_cache_mode")
    conn.execute("DEALLOCATE bench_q")


def explain(db_url: str, picked: list[Sample]) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of search's statements for EPCs not queried before, then what
    a prepared statement gets (``prepared``)."""
    for sample in picked:
        statements = asyncio.run(recorded(db_url, sample))
        with psycopg.connect(db_url, autocommit=True) as conn:
            try:
                conn.execute("SET track_io_timing = on")
            except psycopg.Error:
                pass  # not a superuser: no I/O timings
            for n, (query, params) in enumerate(statements):
                print(f"-- statement {n + 1}: {' '.join(query.split())[:160]}")
                print("   custom plan, first touch of the EPC's pages:")
                for (line,) in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params):  # type: ignore[call-overload]
                    print(f"     {line}")
                prepared(conn, query, params)


# ---------------------------------------------------------------------------------------------


def time_reads(name: str) -> None:
    """track_io_timing on in the bench database's sessions (a superuser's right; else none)."""
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} SET track_io_timing = on").format(sql.Identifier(name))
            )
    except psycopg.Error as exc:
        print(f"  (no track_io_timing: {exc})")


def reuse(name: str, layout: Layout) -> None:
    from app.db import migrate

    db_url = database_url(name)
    applied = migrate(db_url)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT build_seconds, built_at FROM bench_epcis_build").fetchone()
    assert row is not None
    print(
        f"build: reusing {name} ({layout.events:,} events, built {row[1]:%Y-%m-%d %H:%M} in "
        f"{row[0]:.1f} s)" + (f"; applied {', '.join(applied)}" if applied else "")
    )
    if applied:
        vacuum(db_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rebuild", action="store_true", help="drop and build the database")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--explain", action="store_true", help="EXPLAIN the query's statements")
    parser.add_argument("--build-only", action="store_true", help="build (or check) and stop")
    parser.add_argument("--explain-only", action="store_true", help="only EXPLAIN, no HTTP")
    parser.add_argument(
        "--modes", default="epc,epc-concurrent,any", help="which of epc,epc-concurrent,any to run"
    )
    parser.add_argument(
        "--pg-options", default="", help="PGOPTIONS of the server's sessions (-c name=value)"
    )
    args = parser.parse_args()

    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        version = row[0] if row else "?"
    print(
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}, PostgreSQL {version}, "
        f"Python {platform.python_version()}; niceness {os.getpriority(os.PRIO_PROCESS, 0)}; "
        "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    )
    layout = None if args.rebuild else existing_build(args.database, args.events)
    if layout is None:
        layout = build(args.database, args.events)
    else:
        reuse(args.database, layout)
    db_url = database_url(args.database)
    time_reads(args.database)
    print("table sizes:")
    sizes(db_url)
    if args.build_only:
        return

    rng = random.Random(args.seed)
    used: set[int] = set()
    n = args.warmup + args.samples
    modes = []
    for key, name, param, concurrency in (
        ("epc", "MATCH_epc, 1 at a time", "MATCH_epc", 1),
        ("epc-concurrent", f"MATCH_epc, {args.concurrency} at once", "MATCH_epc", args.concurrency),
        ("any", "MATCH_anyEPC, 1 at a time", "MATCH_anyEPC", 1),
    ):
        picked = samples(layout, rng, param, n, used)
        if key not in args.modes.split(","):
            continue
        modes.append((name, concurrency, picked[: args.warmup], picked[args.warmup :]))
    fresh = samples(layout, rng, "MATCH_epc", 2, used)  # for EXPLAIN: a Digital Link, a URN
    fresh.append(samples(layout, rng, "MATCH_anyEPC", 5, used)[4])  # and a case's SSCC
    if args.explain_only:
        explain(db_url, fresh)
        return
    print(
        f"GET /epcis/events of one EPC, {args.samples} random EPCs per mode (after {args.warmup} "
        "warm-up), granian 1 worker, httpx as admin, each answer checked"
        + (f"; server sessions with PGOPTIONS={args.pg_options!r}:" if args.pg_options else ":"),
        flush=True,
    )
    missed = False
    for (name, _, _, _), (ms, wall, usage, server_ms) in zip(
        modes, measure_http(db_url, modes, args.pg_options), strict=True
    ):
        p = show(f"{name}, client", ms, wall)
        show_usage(usage, len(ms))
        missed = missed or p["p99"] > TARGET_P99_MS
        if len(server_ms) == len(ms):
            show("  the same requests, server side (access log ms)", server_ms)
        else:
            print(f"  (the access log has {len(server_ms)} of the {len(ms)} requests)")
    print("load average (1, 5, 15 min) after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if args.explain or missed:
        explain(db_url, fresh)


if __name__ == "__main__":
    main()
