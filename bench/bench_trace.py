"""Trace of one unit on 10,000,000 activated units (issue 5 target). Prints numbers.

    .venv/bin/python bench/bench_trace.py [--rebuild] [--samples 2000] [--warmup 200]
                                          [--units 10000000] [--explain] [--skip-http]

Target: ``GET /trace/{serial}`` of one unit, p99 <= 10 ms, on a database holding 10,000,000
activated units.

Build (once; kept between runs, ``--rebuild`` drops it): on the PostgreSQL server of
``TRACECODE_DATABASE_URL`` (an admin URL; default postgresql://postgres@127.0.0.1:5432/postgres)
the database ``tracecode_bench_trace`` is created, migrated (``app.db.migrate``) and given the demo
data (``app.demo.load_demo``). The real services issue one unit batch of ``--units`` codes
(``create_batch`` as the demo planner) and the case batches: one inner case per 10 units, one
master case per 10 inner cases, one pallet per 10 masters (``create_case_batch``); the packing
context of line BENCH-1 is set with ``lines.set_context`` as the demo operator. Then the event log
and the state are filled by COPY (text format, one connection per table group, concurrently) with
the rows the packing line writes for such a run (app/packing/scans.py ``_write``): per inner case
one commissioning ObjectEvent over its 10 units and one AggregationEvent ADD ``packing`` with the
case as parent; per master and per pallet one packing AggregationEvent over its 10 children;
``event_codes`` rows for every unit, child case and parent of each event; ``unit_state`` (active,
in_progress, parent = its inner case, last event = the case's packing event) and ``case_state``
(parent = the next level up). Event ids are reserved from ``events_id_seq`` and the sequence is
set past them. Scan receipts are not written (nothing in a trace reads them). Then VACUUM ANALYZE
and a CHECKPOINT. A row in ``bench_trace_build`` marks a complete build; without it the database
is rebuilt.

Measure: ``--samples`` random units across the whole batch (after ``--warmup`` others), one at a
time: (1) in process, ``app.codes.trace.trace(conn, principal, scheme, serial)`` on one psycopg
AsyncConnection plus the commit that ends its transaction, as the demo ``admin``; (2) over HTTP,
``GET /trace/{serial}`` on granian with one worker (``app.main:create_app``) on a free 127.0.0.1
port, with an httpx client logged in as ``admin``. The two modes use disjoint samples. Every answer
is checked (the unit's two own events, the packing events of its inner case and master via their
containers, the three containers with their levels, the parent, the product), so a broken trace
cannot pass. ``--explain`` (and automatically when a p99 misses the target) prints EXPLAIN
(ANALYZE, BUFFERS) of the trace's queries for one unit.

Environment: TRACECODE_DATABASE_URL (admin URL), TRACECODE_REDIS_URL (default
redis://127.0.0.1:6379/0), TRACECODE_MASTER_KEY (default ``be`` * 32; the database holds code ids,
not serials, so any key works with an existing build).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from app._core import build_sscc  # noqa: E402
from app.cli import server_command  # noqa: E402

ADMIN_URL = os.environ.get(
    "TRACECODE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TRACECODE_REDIS_URL", "redis://127.0.0.1:6379/0")
MASTER_KEY = os.environ.get("TRACECODE_MASTER_KEY", "be" * 32)
DATABASE = "tracecode_bench_trace"
TARGET_P99_MS = 10.0
LINE = "BENCH-1"
LOT = "BENCH-LOT-1"
MADE = date(2026, 11, 1)
LOCAL = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=LOCAL)  # the first unit's scan; a case every 3 s
CASE_SECONDS = 3
CHUNK_CASES = 5_000  # inner cases per COPY write (50,000 units)
FAN = 10  # units per inner case, inner cases per master, masters per pallet
NULL = "\\N"  # COPY text NULL
TABLES = ("unit_state", "case_state", "events", "event_codes")


@dataclass(frozen=True, slots=True)
class Layout:
    """What the build made: enough to compute every code, event id and expected trace."""

    units: int
    batch_no: int
    prefix: str
    inner_batch: int
    inner_ref: int  # first SSCC serial reference of each level
    master_batch: int
    master_ref: int
    pallet_batch: int
    pallet_ref: int
    product_id: int
    brand_id: int
    org_id: int
    line_id: int
    user_id: int
    first_event: int

    @property
    def inners(self) -> int:
        return self.units // FAN

    @property
    def masters(self) -> int:
        return self.inners // FAN

    @property
    def pallets(self) -> int:
        return self.masters // FAN

    @property
    def events(self) -> int:
        return 2 * self.inners + self.masters + self.pallets

    def code(self, unit: int) -> int:
        return (self.batch_no << 32) | unit

    def commissioning_id(self, inner: int) -> int:
        return self.first_event + 2 * inner

    def packing_id(self, inner: int) -> int:
        return self.first_event + 2 * inner + 1

    def master_id(self, master: int) -> int:
        return self.first_event + 2 * self.inners + master

    def pallet_id(self, pallet: int) -> int:
        return self.first_event + 2 * self.inners + self.masters + pallet


def sscc(extension: int, prefix: str, ref: int) -> int:
    return int(build_sscc(extension, prefix, ref))


def label(code: int) -> str:
    return f"{code:018d}"


def database_url(name: str) -> str:
    params = conninfo_to_dict(ADMIN_URL)
    params["dbname"] = name
    return make_conninfo("", **params)


def settings_env(db_url: str) -> dict[str, str]:
    return {
        "TRACECODE_DATABASE_URL": db_url,
        "TRACECODE_REDIS_URL": REDIS_URL,
        "TRACECODE_MASTER_KEY": MASTER_KEY,
        "TRACECODE_REDIS_NAMESPACE": "tcbenchtrace",
    }


# ---------------------------------------------------------------------------------------------
# Build


def existing_build(name: str, units: int) -> Layout | None:
    """The layout of a complete build of ``units`` units, or None (and why, printed)."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return None
    with psycopg.connect(database_url(name)) as conn:
        found = conn.execute("SELECT to_regclass('bench_trace_build') IS NOT NULL").fetchone()
        if not found or not found[0]:
            print(f"{name}: no complete build marker, rebuilding")
            return None
        row = conn.execute("SELECT layout FROM bench_trace_build").fetchone()
    if row is None:
        print(f"{name}: no complete build marker, rebuilding")
        return None
    layout = Layout(**row[0])
    if layout.units != units:
        print(f"{name}: built with {layout.units:,} units, {units:,} asked: rebuilding")
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


async def issue(db_url: str, units: int) -> Layout:
    """Demo data, the unit batch, the case batches and the line, through the real services."""
    from app.auth.service import load_user
    from app.codes.cases import create_case_batch
    from app.codes.schemas import BatchIn, CaseBatchIn
    from app.codes.service import create_batch
    from app.config import load_settings
    from app.demo import PRODUCTS, load_demo
    from app.packing import lines
    from app.packing.schemas import LineContextIn

    settings = load_settings(settings_env(db_url))
    conn = await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row)
    async with conn:
        org_ids = await load_demo(conn)

        async def user(name: str) -> Any:
            row = await (
                await conn.execute("SELECT id FROM users WHERE username = %s", (name,))
            ).fetchone()
            assert row is not None
            return await load_user(conn, row["id"])

        planner, operator = await user("planner"), await user("operator")
        row = await (
            await conn.execute("SELECT id FROM products WHERE product_no = %s", (PRODUCTS[0][0],))
        ).fetchone()
        assert row is not None
        product_id = row["id"]
        printer = org_ids["PRINTER-SH"]
        batch, _ = await create_batch(
            conn,
            planner,
            settings,
            BatchIn(
                size=units,
                printer_id=printer,
                product_id=product_id,
                note="bench_trace",
                request_key="bench-trace-units",
            ),
        )
        cases = {}
        for level, size in (
            ("inner", units // FAN),
            ("master", units // FAN**2),
            ("pallet", units // FAN**3),
        ):
            cases[level], _ = await create_case_batch(
                conn,
                planner,
                settings,
                CaseBatchIn(
                    level=level,  # type: ignore[arg-type]
                    size=size,
                    printer_id=printer,
                    request_key=f"bench-trace-{level}",
                ),
            )
        line = await lines.set_context(
            conn,
            operator,
            LINE,
            LineContextIn(product_id=product_id, lot=LOT, production_date=MADE),
        )
        row = await (await conn.execute("SELECT nextval('events_id_seq') AS n")).fetchone()
        assert row is not None
        await conn.commit()
    return Layout(
        units=units,
        batch_no=batch.batch_no,
        prefix=settings.gs1_company_prefix,
        inner_batch=cases["inner"].id,
        inner_ref=cases["inner"].first_ref,
        master_batch=cases["master"].id,
        master_ref=cases["master"].first_ref,
        pallet_batch=cases["pallet"].id,
        pallet_ref=cases["pallet"].first_ref,
        product_id=product_id,
        brand_id=operator.brand_id,
        org_id=operator.org_id,
        line_id=line.id,
        user_id=operator.user_id,
        first_event=row["n"],
    )


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f+08")


class Rows:
    """COPY text of everything the packing line writes for the layout, in chunks."""

    def __init__(self, layout: Layout) -> None:
        self.l = layout
        p = layout.prefix
        self.inner = [sscc(1, p, layout.inner_ref + i) for i in range(layout.inners)]
        self.master = [sscc(2, p, layout.master_ref + m) for m in range(layout.masters)]
        self.pallet = [sscc(3, p, layout.pallet_ref + q) for q in range(layout.pallets)]
        self.where = f"line:{LINE}\t{layout.org_id}"
        self.commission_details = json.dumps(
            {"product_id": layout.product_id, "lot": LOT, "production_date": MADE.isoformat(),
             "line": LINE}
        )  # fmt: skip

    # event times: units of inner case i scanned at T0 + 3i s + k/10 s, the case at + 1 s,
    # a master 0.5 s after its last inner case, a pallet 0.5 s after its last master.
    @staticmethod
    def case_second(i: int) -> datetime:
        return T0 + timedelta(seconds=CASE_SECONDS * i)

    def inner_time(self, i: int) -> datetime:
        return self.case_second(i) + timedelta(seconds=1)

    def master_time(self, m: int) -> datetime:
        return self.inner_time(FAN * m + FAN - 1) + timedelta(milliseconds=500)

    def pallet_time(self, q: int) -> datetime:
        return self.master_time(FAN * q + FAN - 1) + timedelta(milliseconds=500)

    def chunks(self) -> Iterator[range]:
        for start in range(0, self.l.inners, CHUNK_CASES):
            yield range(start, min(start + CHUNK_CASES, self.l.inners))

    def unit_state(self, cases: range) -> str:
        layout = self.l
        const = (
            f"\t{layout.brand_id}\t{layout.product_id}\t{LOT}\t{MADE.isoformat()}\tactive"
            f"\tin_progress\t{layout.org_id}\t"
        )
        out: list[str] = []
        for i in cases:
            second = self.case_second(i).strftime("%Y-%m-%d %H:%M:%S")
            tail = f"\t\\N\t{layout.line_id}\t"
            event = layout.packing_id(i)
            parent = self.inner[i]
            base = layout.code(FAN * i)
            out.extend(
                f"{base + k}{const}{parent}{tail}{second}.{k}+08\t\\N\t{event}\n"
                for k in range(FAN)
            )
        return "".join(out)

    def unit_event_codes(self, cases: range) -> str:
        layout = self.l
        out: list[str] = []
        for i in cases:
            commission, packing = layout.commissioning_id(i), layout.packing_id(i)
            base = layout.code(FAN * i)
            out.extend(
                f"{base + k}\tu\t{commission}\n{base + k}\tu\t{packing}\n" for k in range(FAN)
            )
            out.append(f"{self.inner[i]}\tc\t{packing}\n")
        return "".join(out)

    def case_event_codes(self) -> Iterator[str]:
        """Child and parent rows of the master and pallet packing events."""
        layout = self.l
        for level_children, parents, event_id in (
            (self.inner, self.master, layout.master_id),
            (self.master, self.pallet, layout.pallet_id),
        ):
            out: list[str] = []
            for n, parent in enumerate(parents):
                event = event_id(n)
                out.extend(
                    f"{child}\tc\t{event}\n" for child in level_children[FAN * n : FAN * n + FAN]
                )
                out.append(f"{parent}\tc\t{event}\n")
                if len(out) > 200_000:
                    yield "".join(out)
                    out = []
            yield "".join(out)

    def _event(
        self,
        event_id: int,
        kind: str,
        biz_step: str,
        disposition: str,
        at: datetime,
        parent: int | None,
        scan_id: str | None,
        details: str,
    ) -> str:
        layout = self.l
        parent_cols = f"c\t{parent}" if parent is not None else NULL + "\t" + NULL
        scan = scan_id if scan_id is not None else NULL
        return (
            f"{event_id}\t{uuid.uuid4()}\t{layout.brand_id}\t{kind}\tADD\t{biz_step}"
            f"\t{disposition}\t{_ts(at)}\t+08:00\t{self.where}\t{parent_cols}\t{FAN}"
            f"\t{layout.user_id}\t{scan}\t{details}\n"
        )

    def inner_events(self, cases: range) -> str:
        layout = self.l
        packing = json.dumps({"line": LINE, "level": "inner"})
        out: list[str] = []
        for i in cases:
            out.append(
                self._event(
                    layout.commissioning_id(i), "ObjectEvent", "commissioning", "active",
                    self.case_second(i), None, None, self.commission_details,
                )
            )  # fmt: skip
            out.append(
                self._event(
                    layout.packing_id(i), "AggregationEvent", "packing", "in_progress",
                    self.inner_time(i), self.inner[i], f"bench-c{i}", packing,
                )
            )  # fmt: skip
        return "".join(out)

    def upper_events(self) -> str:
        layout = self.l
        out: list[str] = []
        for level, parents, event_id, when in (
            ("master", self.master, layout.master_id, self.master_time),
            ("pallet", self.pallet, layout.pallet_id, self.pallet_time),
        ):
            details = json.dumps({"line": LINE, "level": level})
            for n, parent in enumerate(parents):
                out.append(
                    self._event(
                        event_id(n), "AggregationEvent", "packing", "in_progress", when(n),
                        parent, f"bench-{level[0]}{n}", details,
                    )
                )  # fmt: skip
        return "".join(out)

    def case_state(self) -> Iterator[str]:
        layout = self.l
        const = f"\t{layout.brand_id}"
        tail = f"\t{layout.product_id}\t{LOT}\tactive\tin_progress\t{layout.org_id}"
        levels = (
            ("inner", self.inner, layout.inner_batch, self.master, layout.master_id,
             layout.packing_id, self.inner_time),
            ("master", self.master, layout.master_batch, self.pallet, layout.pallet_id,
             layout.master_id, self.master_time),
            ("pallet", self.pallet, layout.pallet_batch, None, None, layout.pallet_id,
             self.pallet_time),
        )  # fmt: skip
        for level, codes, batch, parents, parent_event, own_event, when in levels:
            out: list[str] = []
            for n, code in enumerate(codes):
                if parents is not None and parent_event is not None:
                    parent, event = str(parents[n // FAN]), parent_event(n // FAN)
                else:
                    parent, event = "\\N", own_event(n)
                out.append(
                    f"{code}{const}\t{batch}\t{level}{tail}\t{parent}\t\\N\t{layout.line_id}"
                    f"\t{_ts(when(n))}\t\\N\t{event}\n"
                )
                if len(out) >= 100_000:
                    yield "".join(out)
                    out = []
            yield "".join(out)


_UNIT_COLUMNS = (
    "code, brand_id, product_id, lot, production_date, status, disposition, holder_org_id, "
    "parent_sscc, channel_org_id, line_id, activated_at, shipped_at, last_event_id"
)
_CASE_COLUMNS = (
    "sscc, brand_id, case_batch_id, level, product_id, lot, status, disposition, holder_org_id, "
    "parent_sscc, channel_org_id, line_id, packed_at, shipped_at, last_event_id"
)
_EVENT_COLUMNS = (
    "id, event_uuid, brand_id, event_type, action, biz_step, disposition, event_time, tz_offset, "
    "read_point, biz_location, parent_kind, parent_code, child_count, recorded_by, "
    "client_event_id, details"
)


async def fill(db_url: str, layout: Layout) -> dict[str, float]:
    """COPY the four tables, three connections at once; returns seconds per stream."""
    started = time.perf_counter()
    rows = Rows(layout)
    print(f"  case codes computed in {time.perf_counter() - started:.1f} s", flush=True)
    seconds: dict[str, float] = {}

    async def stream(name: str, parts: list[tuple[str, Iterator[str]]]) -> None:
        t0 = time.perf_counter()
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            await conn.execute("SET synchronous_commit = off")
            for statement, chunks in parts:
                async with conn.cursor().copy(statement) as copy:
                    for chunk in chunks:
                        await copy.write(chunk)
                        await asyncio.sleep(0)  # let the other streams send theirs
            await conn.commit()
        seconds[name] = time.perf_counter() - t0
        print(f"  {name}: {seconds[name]:.1f} s", flush=True)

    await asyncio.gather(
        stream(
            "unit_state",
            [
                (
                    f"COPY unit_state ({_UNIT_COLUMNS}) FROM STDIN",
                    (rows.unit_state(c) for c in rows.chunks()),
                )
            ],
        ),
        stream(
            "event_codes",
            [
                (
                    "COPY event_codes (code, kind, event_id) FROM STDIN",
                    _chain(
                        (rows.unit_event_codes(c) for c in rows.chunks()), rows.case_event_codes()
                    ),
                )
            ],
        ),
        stream(
            "events+case_state",
            [
                (
                    f"COPY events ({_EVENT_COLUMNS}) FROM STDIN",
                    _chain(
                        (rows.inner_events(c) for c in rows.chunks()), iter([rows.upper_events()])
                    ),
                ),
                (f"COPY case_state ({_CASE_COLUMNS}) FROM STDIN", rows.case_state()),
            ],
        ),
    )
    return seconds


def _chain(*parts: Iterator[str]) -> Iterator[str]:
    for part in parts:
        yield from part


async def finish(db_url: str, layout: Layout, build_seconds: float) -> None:
    """Activate the batch, advance the event sequence, mark the build complete."""
    from app.events.log import ensure_partitions

    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        await conn.execute(
            "UPDATE code_batches SET state = 'active' WHERE batch_no = %s", (layout.batch_no,)
        )
        await conn.execute(
            "SELECT setval('events_id_seq', %s)", (layout.first_event + layout.events - 1,)
        )
        await ensure_partitions(conn)
        await conn.execute(
            "CREATE TABLE bench_trace_build (layout jsonb NOT NULL, build_seconds float8 NOT NULL, "
            "built_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(
            "INSERT INTO bench_trace_build (layout, build_seconds) VALUES (%s, %s)",
            (json.dumps(asdict(layout)), build_seconds),
        )
        await conn.commit()


def vacuum(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        conn.execute("ANALYZE")
        try:
            conn.execute("CHECKPOINT")
        except psycopg.Error as exc:  # not a superuser: the server checkpoints on its own
            print(f"  (no CHECKPOINT: {exc})")


def build(name: str, units: int) -> Layout:
    from app.db import migrate

    if units % FAN**3:
        raise SystemExit("--units must be a multiple of 1000 (10 per case, 10 cases, 10 masters)")
    drop_database(name)
    create_database(name)
    db_url = database_url(name)
    t0 = time.perf_counter()
    migrate(db_url)
    layout = asyncio.run(issue(db_url, units))
    t1 = time.perf_counter()
    print(f"build: migrations, demo data, batches through the services: {t1 - t0:.1f} s")
    print(
        f"  batch {layout.batch_no}: {layout.units:,} units, {layout.inners:,} inner cases, "
        f"{layout.masters:,} masters, {layout.pallets:,} pallets, {layout.events:,} events",
        flush=True,
    )
    asyncio.run(fill(db_url, layout))
    t2 = time.perf_counter()
    print(f"build: COPY of the four tables: {t2 - t1:.1f} s", flush=True)
    vacuum(db_url)
    t3 = time.perf_counter()
    print(f"build: VACUUM (ANALYZE) + CHECKPOINT: {t3 - t2:.1f} s")
    total = t3 - t0
    asyncio.run(finish(db_url, layout, total))
    print(f"build: total {total:.1f} s ({total / 60:.1f} min)")
    return layout


def sizes(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for table in TABLES:
            row = conn.execute(
                sql.SQL(
                    """WITH parts AS (
                           SELECT relid FROM pg_partition_tree({name}::regclass) WHERE isleaf
                           UNION ALL SELECT {name}::regclass
                           WHERE NOT EXISTS (SELECT FROM pg_partition_tree({name}::regclass)))
                       SELECT sum(pg_table_size(relid)), sum(pg_indexes_size(relid)),
                              (SELECT count(*) FROM {table})
                       FROM parts"""
                ).format(name=sql.Literal(table), table=sql.Identifier(table))
            ).fetchone()
            assert row is not None
            print(
                f"  {table:<12} {row[2]:>12,} rows  table {row[0] / 2**20:8.0f} MiB"
                f"  indexes {row[1] / 2**20:8.0f} MiB"
            )
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None
        print(f"  database     {row[0] / 2**30:.2f} GiB")


# ---------------------------------------------------------------------------------------------
# Measure


@dataclass(frozen=True, slots=True)
class Expected:
    serial: str
    unit: int
    inner: str
    master: str
    pallet: str
    commissioning_id: int
    packing_id: int


def expected(layout: Layout, scheme: Any, unit: int) -> Expected:
    i = unit // FAN
    m = i // FAN
    return Expected(
        serial=scheme.serial(layout.batch_no, unit, 1),
        unit=unit,
        inner=label(sscc(1, layout.prefix, layout.inner_ref + i)),
        master=label(sscc(2, layout.prefix, layout.master_ref + m)),
        pallet=label(sscc(3, layout.prefix, layout.pallet_ref + m // FAN)),
        commissioning_id=layout.commissioning_id(i),
        packing_id=layout.packing_id(i),
    )


def check(layout: Layout, want: Expected, got: dict[str, Any]) -> None:
    """The trace of a packed unit, as the 10x10x10 pallet test expects it."""
    problems = []
    if (got["kind"], got["code"]) != ("unit", want.serial):
        problems.append(f"code {got['code']}")
    if got["product"] is None or got["product"]["id"] != layout.product_id or got["lot"] != LOT:
        problems.append("product/lot")
    if got["batch"]["batch_no"] != layout.batch_no or got["batch"]["index"] != want.unit:
        problems.append("batch")
    if got["state"] is None or got["state"]["parent"] != want.inner:
        problems.append("state.parent")
    containers = [(c["code"], c["level"], c["inside"]) for c in got["containers"]]
    if containers != [
        (want.inner, "inner", want.serial),
        (want.master, "master", want.inner),
        (want.pallet, "pallet", want.master),
    ]:
        problems.append(f"containers {containers}")
    steps = [(e["biz_step"], e["type"], e["via"]) for e in got["events"]]
    if steps != [
        ("commissioning", "ObjectEvent", None),
        ("packing", "AggregationEvent", None),
        ("packing", "AggregationEvent", want.inner),
        ("packing", "AggregationEvent", want.master),
    ]:
        problems.append(f"events {steps}")
    elif [e["id"] for e in got["events"][:2]] != [want.commissioning_id, want.packing_id]:
        problems.append("event ids")
    elif [e["parent"] for e in got["events"][1:]] != [want.inner, want.master, want.pallet]:
        problems.append("event parents")
    if problems:
        raise SystemExit(f"wrong trace of unit {want.unit} ({want.serial}): {', '.join(problems)}")


def percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)

    def rank(q: float) -> float:  # nearest rank
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def show(mode: str, ms: list[float]) -> dict[str, float]:
    p = percentiles(ms)
    verdict = "met" if p["p99"] <= TARGET_P99_MS else "MISSED"
    print(
        f"{mode}: n={len(ms)}  p50 {p['p50']:.2f} ms  p90 {p['p90']:.2f} ms  "
        f"p99 {p['p99']:.2f} ms  max {p['max']:.2f} ms  mean {p['mean']:.2f} ms  "
        f"(target p99 <= {TARGET_P99_MS:.0f} ms: {verdict})",
        flush=True,
    )
    return p


async def measure_direct(
    db_url: str, layout: Layout, warm: list[int], units: list[int]
) -> tuple[list[float], dict[str, list[float]]]:
    """Milliseconds of each measured trace() + commit, and of each query it awaited (by SQL)."""
    import msgspec

    from app.auth.service import load_user
    from app.codes.scheme import scheme_from_settings
    from app.codes.trace import trace
    from app.config import load_settings

    settings = load_settings(settings_env(db_url))
    scheme = scheme_from_settings(settings)
    wanted = {u: expected(layout, scheme, u) for u in warm + units}
    ms: list[float] = []
    waits: dict[str, list[float]] = defaultdict(list)
    async with await psycopg.AsyncConnection.connect(
        db_url, row_factory=dict_row, application_name="tracecode"
    ) as conn:
        row = await (await conn.execute("SELECT id FROM users WHERE username = 'admin'")).fetchone()
        assert row is not None
        admin = await load_user(conn, row["id"])
        await conn.commit()
        execute, commit = conn.execute, conn.commit

        # Time every round trip (a client-side cursor has its rows when execute returns).
        async def timed_execute(query: Any, params: Any = None, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await execute(query, params, **kwargs)
            finally:
                waits[" ".join(str(query).split())[:56]].append(time.perf_counter() - t0)

        async def timed_commit() -> None:
            t0 = time.perf_counter()
            try:
                await commit()
            finally:
                waits["COMMIT"].append(time.perf_counter() - t0)

        conn.execute = timed_execute  # type: ignore[method-assign]
        conn.commit = timed_commit  # type: ignore[method-assign]
        for n, unit in enumerate(warm + units):
            if n == len(warm):
                waits.clear()
            serial = wanted[unit].serial
            t0 = time.perf_counter()
            out = await trace(conn, admin, scheme, serial)
            await conn.commit()
            elapsed = time.perf_counter() - t0
            check(layout, wanted[unit], msgspec.to_builtins(out))
            if n >= len(warm):
                ms.append(elapsed * 1000)
    return ms, {q: [1000 * t for t in v] for q, v in waits.items()}


def show_waits(ms: list[float], waits: dict[str, list[float]]) -> None:
    n = len(ms)
    total = sum(sum(v) for v in waits.values())
    trips = sum(len(v) for v in waits.values())
    print(
        f"  where it goes: {trips / n:.1f} round trips to PostgreSQL per trace, "
        f"{total / n:.2f} ms of the mean {sum(ms) / n:.2f} ms spent awaiting them "
        f"({100 * total / sum(ms):.0f} %); the rest is Python (serial check, building the answer)"
    )
    for query, v in sorted(waits.items(), key=lambda kv: -sum(kv[1])):
        print(f"    {len(v) / n:4.1f} x  mean {sum(v) / len(v):5.3f} ms  {query}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure_http(
    db_url: str, layout: Layout, warm: list[int], units: list[int]
) -> tuple[list[float], list[float]]:
    """Client-side milliseconds of each measured request, and the server's own (access log)."""
    import httpx

    from app.codes.scheme import scheme_from_settings
    from app.config import load_settings

    env = {**os.environ, **settings_env(db_url)}
    settings = load_settings(env)
    scheme = scheme_from_settings(settings)
    wanted = {u: expected(layout, scheme, u) for u in warm + units}
    port = free_port()
    argv = server_command("127.0.0.1", port, 1)
    ms: list[float] = []
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as client:
                deadline = time.monotonic() + 60
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
                        raise SystemExit("granian did not answer /ping within 60 s")
                    time.sleep(0.2)
                response = client.post(
                    "/auth/login", json={"username": "admin", "password": "tracecode-demo"}
                )
                response.raise_for_status()
                client.headers["authorization"] = f"Bearer {response.json()['access_token']}"
                for n, unit in enumerate(warm + units):
                    serial = wanted[unit].serial
                    t0 = time.perf_counter()
                    response = client.get(f"/trace/{serial}")
                    elapsed = time.perf_counter() - t0
                    if response.status_code != 200:
                        raise SystemExit(
                            f"GET /trace/{serial}: {response.status_code} {response.text}"
                        )
                    check(layout, wanted[unit], response.json())
                    if n >= len(warm):
                        ms.append(elapsed * 1000)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=5)
        log.seek(0)
        server_ms = []
        for line in log.read().decode(errors="replace").splitlines():
            if line.startswith("{") and '"/trace/' in line:
                server_ms.append(float(json.loads(line)["ms"]))
    return ms, server_ms[-len(units) :]


def explain(db_url: str, layout: Layout, unit: int) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the trace's queries for one unit (literal values)."""
    i = unit // FAN
    inner = sscc(1, layout.prefix, layout.inner_ref + i)
    master = sscc(2, layout.prefix, layout.master_ref + i // FAN)
    events_of = """SELECT e.id, e.event_uuid, e.event_type, e.action, e.biz_step, e.disposition,
                      e.event_time, e.tz_offset, e.record_time, e.read_point, e.biz_location,
                      e.source_org, e.destination_org, e.biz_transactions, e.parent_kind,
                      e.parent_code, e.child_count, e.recorded_by, e.details,
                      e.error_declaration
               FROM event_codes ec JOIN events e ON e.id = ec.event_id
               WHERE ec.code = %(code)s AND ec.kind = %(kind)s
                 AND (%(since)s::timestamptz IS NULL OR e.event_time >= %(since)s)
                 AND (%(until)s::timestamptz IS NULL OR e.event_time <= %(until)s)
               ORDER BY e.event_time, e.id"""
    queries: list[tuple[str, str, dict[str, Any]]] = [
        (
            "batch",
            "SELECT batch_no, brand_id, printer_id, product_id, size, state, key_version "
            "FROM code_batches WHERE batch_no = ANY(%(b)s)",
            {"b": [layout.batch_no]},
        ),
        (
            "unit_state",
            "SELECT status, disposition, holder_org_id, parent_sscc FROM unit_state "
            "WHERE code = %(c)s",
            {"c": layout.code(unit)},
        ),
        ("events_of unit", events_of, {"code": layout.code(unit), "kind": "u", "since": None,
                                       "until": None}),
        ("levels", "SELECT sscc, level FROM case_state WHERE sscc = ANY(%(s)s)", {"s": [inner]}),
        ("events_of inner", events_of, {"code": inner, "kind": "c",
                                        "since": Rows.case_second(i), "until": None}),
        ("events_of master", events_of, {"code": master, "kind": "c",
                                         "since": Rows.case_second(i), "until": None}),
    ]  # fmt: skip
    with psycopg.connect(db_url) as conn:
        for name, text, params in queries:
            print(f"-- {name}")
            for (line,) in conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS) " + text,  # type: ignore[operator]
                params,
            ).fetchall():
                print(f"   {line}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rebuild", action="store_true", help="drop and build the database")
    parser.add_argument("--units", type=int, default=10_000_000)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--explain", action="store_true", help="EXPLAIN the trace's queries")
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()

    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        version = row[0] if row else "?"
    print(
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}, PostgreSQL {version}, "
        f"Python {platform.python_version()}"
    )
    layout = None if args.rebuild else existing_build(args.database, args.units)
    if layout is None:
        layout = build(args.database, args.units)
    else:
        from app.db import migrate

        applied = migrate(database_url(args.database))
        with psycopg.connect(database_url(args.database)) as conn:
            row = conn.execute("SELECT build_seconds, built_at FROM bench_trace_build").fetchone()
        assert row is not None
        print(
            f"build: reusing {args.database} ({layout.units:,} units, built {row[1]:%Y-%m-%d %H:%M}"
            f" in {row[0]:.1f} s)" + (f"; applied {', '.join(applied)}" if applied else "")
        )
        if applied:
            vacuum(database_url(args.database))
    db_url = database_url(args.database)
    print("table sizes:")
    sizes(db_url)

    rng = random.Random(args.seed)
    n = args.warmup + args.samples
    picked = rng.sample(range(layout.units), 2 * n)
    direct_units, http_units = picked[:n], picked[n:]
    print(
        f"trace of {args.samples} random units (after {args.warmup} warm-up), one at a time, "
        "each answer checked:",
        flush=True,
    )
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    results = {}
    ms, waits = asyncio.run(
        measure_direct(db_url, layout, direct_units[: args.warmup], direct_units[args.warmup :])
    )
    results["in-process trace()"] = show("in-process trace() + commit", ms)
    show_waits(ms, waits)
    if not args.skip_http:
        ms, server_ms = measure_http(
            db_url, layout, http_units[: args.warmup], http_units[args.warmup :]
        )
        results["http"] = show("HTTP GET /trace/{serial} (granian, 1 worker), client", ms)
        if len(server_ms) == len(ms):
            show("  the same requests, server side (access log ms)", server_ms)
    print("load average (1, 5, 15 min) after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if args.explain or any(p["p99"] > TARGET_P99_MS for p in results.values()):
        explain(db_url, layout, direct_units[-1])


if __name__ == "__main__":
    main()
