"""Outbound of a 1,000-case (100,000-unit) order (issue 6): target confirm <= 2 s.

    .venv/bin/python bench/bench_outbound.py [--cases 1000] [--per-case 100] [--explain]

Runs the services in-process on a fresh database ``tracecode_bench_outbound`` on the PostgreSQL
of ``TRACECODE_DATABASE_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres): migrates,
loads the demo data, issues ``--cases`` x ``--per-case`` (100) unit codes and ``--cases`` inner
case codes, packs them on line BENCH (``packing.scans.upload``, at most 20,000 scans per upload:
198 cases of 100 units + their case scans, as ``operator``), takes the cases into WH-SZ-01
(factory inbound, as ``clerk``), creates a sales order FACTORY-SZ -> AGENT-ZJ for every unit
(as ``partner``), then times, each with its commit:

* scan: the SSCCs added to a draft outbound against the order (``documents.add_codes``);
* confirm: ``documents.confirm`` of that outbound — the target;
* receipt: the agent receives the whole order in one action (``documents.receive_order``).

Every SQL statement the confirm sends is timed too (the connection's ``execute`` is wrapped), so
the breakdown shows where the time goes. With ``--explain`` (or when the confirm misses 2 s) the
statements of ``movements.expand`` and the ``UPDATE unit_state`` of ``movements.move_state`` are run
again under EXPLAIN (ANALYZE, BUFFERS) in a transaction that is rolled back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "tracecode_bench_outbound"
MASTER_KEY = "d4" * 32
TARGET = 2.0
MAX_SCANS = 20_000  # per upload

os.environ["TRACECODE_MASTER_KEY"] = MASTER_KEY
os.environ.pop("TRACECODE_MASTER_KEY_FILE", None)
os.environ.setdefault("TRACECODE_LOG_LEVEL", "WARNING")

from app import db, embedded  # noqa: E402
from app._core import gs1_check_digit  # noqa: E402
from app.auth.principal import Principal  # noqa: E402
from app.auth.service import load_user  # noqa: E402
from app.codes.cases import create_case_batch  # noqa: E402
from app.codes.schemas import BatchIn, CaseBatchIn  # noqa: E402
from app.codes.scheme import scheme_from_settings  # noqa: E402
from app.codes.service import create_batch  # noqa: E402
from app.config import load_settings  # noqa: E402
from app.demo import load_demo  # noqa: E402
from app.logistics import documents, orders  # noqa: E402
from app.logistics.schemas import CodesIn, DocumentIn, OrderIn, OrderLineIn  # noqa: E402
from app.packing import lines, scans  # noqa: E402
from app.packing.schemas import LineContextIn, ScanIn, ScanUploadIn  # noqa: E402


def database() -> str:
    admin = (
        os.environ.get("TRACECODE_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    try:
        embedded.drop_database(admin, DB_NAME)
    except Exception as exc:  # first run: nothing to drop
        print(f"(no previous bench database: {exc})")
    url = embedded.ensure_database(admin, DB_NAME)
    db.migrate(url)
    return url


async def user(conn: Any, username: str) -> Principal:
    row = await (
        await conn.execute("SELECT id FROM users WHERE username = %s", (username,))
    ).fetchone()
    return await load_user(conn, row["id"])


class StatementClock:
    """Wraps ``conn.execute``: time per statement (by its first words) while enabled."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.on = conn, False
        self.spent: dict[str, list[float]] = defaultdict(list)
        original = conn.execute

        async def execute(query: Any, params: Any = None, **kwargs: Any) -> Any:
            if not self.on:
                return await original(query, params, **kwargs)
            started = time.perf_counter()
            try:
                return await original(query, params, **kwargs)
            finally:
                words = " ".join(str(query).split())[:90]
                self.spent[words].append(time.perf_counter() - started)

        conn.execute = execute

    def report(self, total: float, top: int = 8) -> None:
        rows = sorted(self.spent.items(), key=lambda kv: -sum(kv[1]))
        in_sql = sum(sum(v) for v in self.spent.values())
        print(f"  confirm breakdown: {in_sql:.3f} s in {sum(map(len, self.spent.values()))} "
              f"statements, {total - in_sql:.3f} s in Python")  # fmt: skip
        for words, spent in rows[:top]:
            print(f"    {sum(spent):7.3f} s  x{len(spent):<4} {words}")


async def explain(conn: Any, doc_id: int, org: int, other: int) -> None:
    """EXPLAIN ANALYZE the expansion and the unit-state update, rolled back."""
    items = await (
        await conn.execute(
            "SELECT kind, code FROM document_items WHERE document_id = %s", (doc_id,)
        )
    ).fetchall()
    cases = [r["code"] for r in items if r["kind"] == "c"]
    units = [r["code"] for r in items if r["kind"] == "u"]
    await conn.rollback()
    plans = {
        "expand: recursive boxes": (
            """EXPLAIN (ANALYZE, BUFFERS) WITH RECURSIVE boxes (sscc) AS (
                   SELECT unnest(%s::bigint[])
                   UNION SELECT c.sscc FROM case_state c JOIN boxes b ON c.parent_sscc = b.sscc)
               SELECT sscc FROM boxes""",
            (cases,),
        ),
        "expand: unit rows FOR UPDATE": (
            """EXPLAIN (ANALYZE, BUFFERS) SELECT code, product_id, lot, status, holder_org_id,
                      transit_to, parent_sscc, channel_org_id
               FROM unit_state WHERE code = ANY(%s) OR parent_sscc = ANY(%s)
               ORDER BY code FOR UPDATE""",
            (units, cases),
        ),
    }
    async with conn.transaction(force_rollback=True):
        for name, (sql, params) in plans.items():
            print(f"  EXPLAIN {name}:")
            for row in await (await conn.execute(sql, params)).fetchall():
                print("    " + row["QUERY PLAN"][:160])
        codes = [
            r["code"]
            for r in await (
                await conn.execute(
                    "SELECT code FROM unit_state WHERE parent_sscc = ANY(%s)", (cases,)
                )
            ).fetchall()
        ]
        print("  EXPLAIN UPDATE unit_state (as movements.move_state, outbound):")
        rows = await (
            await conn.execute(
                """EXPLAIN (ANALYZE, BUFFERS) UPDATE unit_state SET transit_to = %(other)s,
                       shipped_at = coalesce(shipped_at, %(now)s),
                       channel_org_id = coalesce(channel_org_id, %(other)s),
                       disposition = 'in_transit', last_event_id = 0, updated_at = %(now)s,
                       parent_sscc = CASE WHEN parent_sscc = ANY(%(boxes)s) THEN parent_sscc END
                   WHERE code = ANY(%(codes)s)""",
                {"other": other, "now": datetime.now(UTC), "boxes": cases, "codes": codes},
            )
        ).fetchall()
        for row in rows:
            print("    " + row["QUERY PLAN"][:160])


async def run(url: str, n_cases: int, per_case: int, want_explain: bool) -> dict[str, float]:
    settings = load_settings()
    scheme = scheme_from_settings(settings)
    conn = await psycopg.AsyncConnection.connect(url, row_factory=dict_row)
    clock = StatementClock(conn)
    try:
        org = await load_demo(conn)
        await conn.commit()
        planner, operator = await user(conn, "planner"), await user(conn, "operator")
        clerk, partner = await user(conn, "clerk"), await user(conn, "partner")
        agent = await user(conn, "agent_clerk")
        product = await (
            await conn.execute("SELECT id FROM products WHERE product_no = 'LM-SC-30'")
        ).fetchone()
        product_id = product["id"]
        units = n_cases * per_case
        chunk = MAX_SCANS // (per_case + 1)
        batch, _ = await create_batch(
            conn, planner, settings,
            BatchIn(size=units, printer_id=org["PRINTER-SH"], product_id=product_id),
        )  # fmt: skip
        case_batch, _ = await create_case_batch(
            conn, planner, settings,
            CaseBatchIn(level="inner", size=n_cases, printer_id=org["PRINTER-SH"]),
        )  # fmt: skip
        await lines.set_context(
            conn, operator, "BENCH",
            LineContextIn(product_id=product_id, lot="BENCH", production_date=date(2026, 11, 20)),
        )  # fmt: skip
        await conn.commit()
        first = int(case_batch.first_sscc[:-1])
        ssccs = [f"{first + i:017d}{gs1_check_digit(f'{first + i:017d}')}" for i in range(n_cases)]
        at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
        started = time.perf_counter()
        for start in range(0, n_cases, chunk):
            items: list[ScanIn] = []
            for c in range(start, min(start + chunk, n_cases)):
                for i in range(c * per_case, (c + 1) * per_case):
                    serial = scheme.serial(batch.batch_no, i, batch.key_version)
                    items.append(ScanIn(id=f"u{i}", code=serial, at=at))
                items.append(ScanIn(id=f"c{c}", code=ssccs[c], at=at))
            out = await scans.upload(conn, operator, scheme, "BENCH", ScanUploadIn(scans=items))
            await conn.commit()
            assert out.rejected == 0, out
        packed = time.perf_counter() - started
        print(f"packed {units:,} units into {n_cases:,} inner cases in {packed:.2f} s")

        started = time.perf_counter()
        inbound = await documents.create_document(
            conn, clerk, DocumentIn(kind="factory_inbound", signee="bench")
        )
        added = await documents.add_codes(conn, clerk, scheme, inbound.id, CodesIn(codes=ssccs))
        assert added.rejected == 0
        done = await documents.confirm(conn, clerk, scheme, inbound.id)
        await conn.commit()
        print(f"factory inbound of {done.units:,} units / {done.packages:,} cases: "
              f"{time.perf_counter() - started:.2f} s")  # fmt: skip

        order, _ = await orders.create_order(
            conn,
            partner,
            OrderIn(
                erp_no=f"BENCH-{int(time.time())}",
                from_org_id=org["FACTORY-SZ"],
                to_org_id=org["AGENT-ZJ"],
                lines=[OrderLineIn(product_id=product_id, quantity=units)],
            ),
        )
        outbound = await documents.create_document(
            conn,
            clerk,
            DocumentIn(kind="outbound", order_id=order.id, signee="Wang Fang",
                       phone="+86 138 0000 0000", destination_city="杭州市"),
        )  # fmt: skip
        await conn.commit()

        started = time.perf_counter()
        added = await documents.add_codes(conn, clerk, scheme, outbound.id, CodesIn(codes=ssccs))
        await conn.commit()
        scan = time.perf_counter() - started
        assert added.added == n_cases, added

        clock.on = True
        started = time.perf_counter()
        shipped = await documents.confirm(conn, clerk, scheme, outbound.id)
        await conn.commit()
        confirm = time.perf_counter() - started
        clock.on = False
        assert (shipped.units, shipped.packages, shipped.status) == (units, n_cases, "confirmed")

        started = time.perf_counter()
        received = await documents.receive_order(conn, agent, scheme, order.id)
        await conn.commit()
        receipt = time.perf_counter() - started
        assert received.units == units, received

        print(f"outbound scan of {n_cases:,} SSCCs (add_codes + commit): {scan:.3f} s")
        verdict = "met" if confirm <= TARGET else "MISSED"
        print(f"outbound confirm of {units:,} units (confirm + commit): {confirm:.3f} s "
              f"(target <= {TARGET:.0f} s: {verdict})")  # fmt: skip
        clock.report(confirm)
        print(f"agent whole-order receipt of {units:,} units (create + confirm + commit): "
              f"{receipt:.3f} s")  # fmt: skip
        if want_explain or confirm > TARGET:
            await explain(conn, outbound.id, org["WH-SZ-01"], org["AGENT-ZJ"])
        return {"scan": scan, "confirm": confirm, "receipt": receipt}
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="inner cases")
    parser.add_argument("--per-case", type=int, default=100, help="units per inner case")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the hot SQL")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")  # fmt: skip
    url = database()
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    print(f"PostgreSQL {version[0] if version else '?'}, database {DB_NAME}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    result = asyncio.run(run(url, args.cases, args.per_case, args.explain))
    print("load average after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0 if result["confirm"] <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
