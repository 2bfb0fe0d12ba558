"""Sales analytics over 10,000,000 sales (issue 17, A1–A3). Prints numbers.

    .venv/bin/python bench/bench_analytics.py [--sales 10000000] [--new 1000000]
        [--stores 2000] [--agents 20] [--products 100] [--connections 16] [--duration 15s]
        [--api-cpu 0] [--wrk-cpu 1] [--keep]

Targets: a roll-up folds 1,000,000 new sales in <= 30 s; every sales endpoint answers in
p99 <= 50 ms over HTTP with 10,000,000 sales in the database.

What is generated, honestly: the roll-up reads ``sales_queue`` (the rows the ``unit_state``
trigger writes, one per unit sold), and the endpoints read only the summary tables; so the
bench generates ``sales_queue`` rows by ``generate_series`` (one unit per sale: a store sale of
one scanned unit), not events or state rows, which neither the roll-up nor the endpoints read.
A fresh database ``tracecode_bench_analytics`` (dropped unless ``--keep``): migrations, demo
data, ``--agents`` agents and ``--stores`` stores (``bench_rebate_ranking.organisations``: ten
provinces, two cities each), ``--products`` products of the demo brand in its two categories and
five types. Sale n: store, product and day of 2026 (Asia/Shanghai) spread from n by
multiplicative hashing. (1) ``--sales`` − ``--new`` queued and rolled up (the history);
(2) ``--new`` more queued and rolled up: the timed incremental pass; (3) over HTTP (granian, one
worker, pinned to ``--api-cpu``; ``wrk`` on ``--wrk-cpu``) as the demo admin: the store ranking
of each month, a period with partial months at both ends, with a product, the products report
by month over the year, by day over a month, and the regions by province and by city.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import embedded  # noqa: E402
from app.analytics import sales  # noqa: E402
from app.analytics.dashboard import refresh  # noqa: E402
from app.db import migrate  # noqa: E402
from bench import bench_rebate_ranking as rb  # noqa: E402

DATABASE = "tracecode_bench_analytics"
CHUNK = 1_000_000

_PRODUCTS = """
INSERT INTO products (org_id, category_id, name, product_type, product_no, published)
SELECT %(brand)s, (SELECT id FROM categories WHERE org_id = %(brand)s ORDER BY id
                   OFFSET p %% 2 LIMIT 1),
       'Bench product ' || p, (ARRAY['serum','cream','lipstick','toner','mask'])[1 + p %% 5],
       'BP-' || p, true
FROM generate_series(0, %(n)s - 1) p
"""
_PRODUCT_MAP = """
CREATE TABLE bench_products AS
SELECT (row_number() OVER (ORDER BY id) - 1)::int AS idx, id AS product_id
FROM products WHERE org_id = %(brand)s
"""
_FILL = """
INSERT INTO sales_queue (brand_id, day, store_id, product_id, units)
SELECT %(brand)s, date '2026-01-01' + ((n * 7919) %% 365)::int, s.store_id, p.product_id, 1
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) n
JOIN bench_stores s ON s.idx = (n * 2654435761) %% %(stores)s
JOIN bench_products p ON p.idx = (n * 40503) %% %(products)s
"""


async def build(url: str, args: Any) -> dict[str, int]:
    ids = await rb.organisations(url, args.agents, args.stores, 1)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(_PRODUCTS, {"brand": ids["brand"], "n": args.products})
        await conn.execute(_PRODUCT_MAP, {"brand": ids["brand"]})
        n = await (await conn.execute("SELECT count(*) FROM bench_products")).fetchone()
        ids["products"] = int(n[0]) if n else 0
    return ids


async def queue(url: str, ids: dict[str, int], first: int, count: int, args: Any) -> float:
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for lo in range(first, first + count, CHUNK):
            hi = min(lo + CHUNK, first + count) - 1
            await conn.execute(
                _FILL,
                {"brand": ids["brand"], "lo": lo, "hi": hi, "stores": args.stores,
                 "products": ids["products"]},
            )  # fmt: skip
    return time.perf_counter() - started


async def roll(url: str) -> tuple[int, float]:
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        started = time.perf_counter()
        n = await sales.rollup_alone(conn, wait=True)
        took = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE")
    return int(n or 0), took


def over_http(url: str, args: Any, product: int) -> None:
    import signal
    import subprocess
    import tempfile

    import httpx

    from app.cli import server_command
    from tests.servers import free_port

    port = free_port()
    argv = server_command("127.0.0.1", port, 1)
    if args.api_cpu:
        argv = ["taskset", "-c", args.api_cpu, *argv]
    env = {**os.environ, **rb.settings_env(url), "TRACECODE_REDIS_NAMESPACE": "tcbenchanalytics"}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as client:
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
                    time.sleep(0.3)
                login = client.post(
                    "/auth/login", json={"username": "admin", "password": "tracecode-demo"}
                )
                login.raise_for_status()
                token = login.json()["access_token"]
                year = client.get(
                    "/analytics/sales/stores",
                    params={"from": "2026-01-01", "to": "2026-12-31", "limit": 10_000},
                    headers={"authorization": f"Bearer {token}"},
                )
                year.raise_for_status()
                assert year.json()["units"] == args.sales, year.json()["units"]
            months = [
                f"from=2026-{m:02d}-01&to=2026-{m:02d}-{calendar.monthrange(2026, m)[1]}"
                for m in range(1, 13)
            ]
            c, cpu, d = args.connections, args.wrk_cpu, args.duration
            cases = [
                ("/ping (baseline)", ["/ping"]),
                ("stores, each month", [f"/analytics/sales/stores?{m}" for m in months]),
                (
                    "stores, 2026-02-15..2026-05-20 (partial months at both ends)",
                    ["/analytics/sales/stores?from=2026-02-15&to=2026-05-20"],
                ),
                (
                    "stores, each month, one product",
                    [f"/analytics/sales/stores?{m}&product_id={product}" for m in months],
                ),
                (
                    "products, the year by month",
                    ["/analytics/sales/products?from=2026-01-01&to=2026-12-31"],
                ),
                (
                    "products, each month by day",
                    [f"/analytics/sales/products?{m}&granularity=day" for m in months],
                ),
                (
                    "regions by province, 2026-03-10..2026-09-20",
                    ["/analytics/sales/regions?from=2026-03-10&to=2026-09-20"],
                ),
                ("regions by city, each month", [f"/analytics/sales/regions?{m}&level=city"
                                                  for m in months]),
                ("dashboard", ["/analytics/dashboard"]),
            ]  # fmt: skip
            rb.wrk(base, token, cases[1][1], c, "3s", cpu)  # warm-up
            print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
            for name, paths in cases:
                rb.show(f"HTTP {name}, c={c}", rb.wrk(base, token, paths, c, d, cpu))
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sales", type=int, default=10_000_000)
    parser.add_argument("--new", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", default="15s")
    parser.add_argument("--api-cpu", default="0")
    parser.add_argument("--wrk-cpu", default="1")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with psycopg.connect(rb.ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    print(
        f"machine: {os.cpu_count()} CPUs, {rb.cpu_model()}, PostgreSQL {row[0] if row else '?'}, "
        f"Python {platform.python_version()}; {args.sales:,} sales ({args.new:,} new), "
        f"{args.stores:,} stores, {args.agents} agents, {args.products} products, 365 days",
        flush=True,
    )
    started = time.perf_counter()
    embedded.drop_database(rb.ADMIN_URL, DATABASE)
    url = embedded.ensure_database(rb.ADMIN_URL, DATABASE)
    try:
        migrate(url)
        ids = asyncio.run(build(url, args))
        old = args.sales - args.new
        took = asyncio.run(queue(url, ids, 1, old, args))
        n, rolled = asyncio.run(roll(url))
        print(
            f"history: {old:,} sales queued in {took:.1f} s, rolled up in {rolled:.1f} s "
            f"({n / rolled:,.0f} /s)",
            flush=True,
        )
        took = asyncio.run(queue(url, ids, old + 1, args.new, args))
        n, rolled = asyncio.run(roll(url))
        verdict = "met" if rolled <= 30 else "MISSED"
        print(
            f"incremental: {args.new:,} new sales queued in {took:.1f} s; roll-up folded {n:,} "
            f"in {rolled:.1f} s ({n / rolled:,.0f} /s; <= 30 s: {verdict})",
            flush=True,
        )
        with psycopg.connect(url) as conn:
            sizes = conn.execute(
                """SELECT string_agg(relname || ' ' || n_live_tup, ', ' ORDER BY relname)
                   FROM pg_stat_user_tables WHERE relname LIKE 'sales_%'"""
            ).fetchone()
        print(f"summary rows: {sizes[0] if sizes else '?'}", flush=True)
        product = asyncio.run(_a_product(url))
        asyncio.run(_dashboard_days(url))
        over_http(url, args, product)
    finally:
        if not args.keep:
            embedded.drop_database(rb.ADMIN_URL, DATABASE)
    print(f"total {time.perf_counter() - started:.0f} s")


async def _dashboard_days(url: str) -> None:
    """What the worker's ``DashboardCounter`` does every minute: count the dashboard's closed
    days, so the requests read them (no worker runs here)."""
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        await refresh(conn)


async def _a_product(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute("SELECT product_id FROM bench_products LIMIT 1")).fetchone()
        return int(row[0]) if row else 0


if __name__ == "__main__":
    main()
