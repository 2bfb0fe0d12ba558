"""Stock roll-up (issue 6): 1,000,000 movement deltas folded into ``stock``, then 10,000 more.

    .venv/bin/python bench/bench_stock.py [--deltas 1000000] [--more 10000] [--orgs 2000]
                                          [--products 50] [--lots 3] [--rollers 1]

Works on a fresh database ``tracecode_bench_stock`` on the server of ``TRACECODE_DATABASE_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``), migrated with ``app.db.migrate``.
It creates a brand with ``--orgs`` stores and ``--products`` products, a low-stock threshold for
one (store, product) pair in ten, then COPYs the deltas (a realistic spread: random store,
product and lot; receipts, sales, shipments and returns as ± on-hand and in-transit changes) and
times the full roll-up (``app.logistics.rollup.rollup``, ``--rollers`` of them concurrently),
then the incremental roll-up of ``--more`` new deltas. Checks that the stock totals equal the
sum of the deltas and that no delta is left.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import embedded  # noqa: E402
from app.db import migrate  # noqa: E402
from app.logistics.rollup import rollup  # noqa: E402

DB_NAME = "tracecode_bench_stock"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def fresh_database() -> str:
    admin = os.environ.get("TRACECODE_DATABASE_URL") or DEFAULT_URL
    embedded.drop_database(admin, DB_NAME)
    url = embedded.ensure_database(admin, DB_NAME)
    migrate(url)
    return url


def setup(url: str, orgs: int, products: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """A brand, its stores and products (plain inserts: this is a bench database)."""
    with psycopg.connect(url) as conn:
        brand = conn.execute(
            "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', 'Bench brand', 'B') "
            "RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("UPDATE orgs SET path = %s WHERE id = %s", (f"/{brand}/", brand))
        store_ids = [
            r[0]
            for r in conn.execute(
                """INSERT INTO orgs (parent_id, kind, name, erp_code, path)
                   SELECT %s, 'store', 'Store ' || i, 'S' || i, '' FROM generate_series(1, %s) i
                   RETURNING id""",
                (brand, orgs),
            ).fetchall()
        ]
        conn.execute(
            "UPDATE orgs SET path = '/' || parent_id || '/' || id || '/' WHERE parent_id = %s",
            (brand,),
        )
        product_ids = [
            r[0]
            for r in conn.execute(
                """INSERT INTO products (org_id, name, product_no)
                   SELECT %s, 'Product ' || i, 'P' || i FROM generate_series(1, %s) i
                   RETURNING id""",
                (brand, products),
            ).fetchall()
        ]
        pairs = [(o, p) for o in store_ids for p in product_ids if rng.random() < 0.1]
        with conn.cursor().copy(
            "COPY stock_thresholds (org_id, product_id, min_units) FROM STDIN"
        ) as copy:
            for org, product in pairs:
                copy.write_row((org, product, rng.randint(1, 200)))
    return store_ids, product_ids


def copy_deltas(
    url: str,
    n: int,
    orgs: list[int],
    products: list[int],
    lots: int,
    rng: random.Random,
    first: int,
) -> tuple[int, int, float]:
    """COPY ``n`` deltas; return (sum on_hand, sum in_transit, seconds)."""
    on_hand_sum = in_transit_sum = 0
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY stock_deltas (org_id, product_id, lot, on_hand, in_transit, event_id) FROM STDIN"
        ) as copy:
            for i in range(n):
                kind = rng.random()
                qty = rng.randint(1, 24)
                if kind < 0.35:  # receipt of a shipment: in transit -> on hand
                    on_hand, in_transit = qty, -qty
                elif kind < 0.60:  # shipment on its way to this org
                    on_hand, in_transit = 0, qty
                elif kind < 0.90:  # sale or outbound
                    on_hand, in_transit = -qty, 0
                else:  # return or production
                    on_hand, in_transit = qty, 0
                lot = f"L{rng.randrange(lots)}"
                copy.write_row(
                    (rng.choice(orgs), rng.choice(products), lot, on_hand, in_transit, first + i)
                )
                on_hand_sum += on_hand
                in_transit_sum += in_transit
    return on_hand_sum, in_transit_sum, time.perf_counter() - started


async def timed_rollup(url: str, rollers: int) -> tuple[int, float]:
    async def one() -> int:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row
        ) as conn:
            return await rollup(conn)

    started = time.perf_counter()
    taken = await asyncio.gather(*(one() for _ in range(rollers)))
    return sum(taken), time.perf_counter() - started


def totals(url: str) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute(
            """SELECT (SELECT coalesce(sum(on_hand), 0) FROM stock)::bigint AS on_hand,
                      (SELECT coalesce(sum(in_transit), 0) FROM stock)::bigint AS in_transit,
                      (SELECT count(*) FROM stock) AS rows,
                      (SELECT count(*) FROM stock_deltas) AS pending,
                      (SELECT count(*) FROM alerts WHERE kind = 'low_stock') AS alerts,
                      (SELECT coalesce(sum(occurrences), 0) FROM alerts
                         WHERE kind = 'low_stock')::bigint AS occurrences"""
        ).fetchone()
    assert row is not None
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=1_000_000)
    parser.add_argument("--more", type=int, default=10_000)
    parser.add_argument("--orgs", type=int, default=2000)
    parser.add_argument("--products", type=int, default=50)
    parser.add_argument("--lots", type=int, default=3)
    parser.add_argument("--rollers", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(6)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    url = fresh_database()
    orgs, products = setup(url, args.orgs, args.products, rng)
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    print(f"PostgreSQL {version}; {len(orgs)} orgs x {len(products)} products x {args.lots} lots")

    on_hand, in_transit, secs = copy_deltas(url, args.deltas, orgs, products, args.lots, rng, 1)
    print(f"COPY {args.deltas:,} deltas: {secs:.2f} s")
    taken, secs = asyncio.run(timed_rollup(url, args.rollers))
    after = totals(url)
    print(
        f"full roll-up ({args.rollers} roller(s)): {taken:,} deltas in {secs:.2f} s "
        f"({taken / secs:,.0f} deltas/s) -> {after['rows']:,} stock rows, "
        f"{after['alerts']:,} low-stock alerts"
    )
    assert taken == args.deltas and after["pending"] == 0, after
    assert (after["on_hand"], after["in_transit"]) == (on_hand, in_transit), after
    full = secs

    more_on, more_transit, _ = copy_deltas(
        url, args.more, orgs, products, args.lots, rng, args.deltas + 1
    )
    taken, secs = asyncio.run(timed_rollup(url, 1))
    final = totals(url)
    print(
        f"incremental roll-up: {taken:,} deltas in {secs:.3f} s "
        f"({secs / full:.1%} of the full roll-up)"
    )
    assert taken == args.more and final["pending"] == 0, final
    assert final["on_hand"] == on_hand + more_on, final
    assert final["in_transit"] == in_transit + more_transit, final
    print(
        f"totals equal the sum of the deltas: on_hand {final['on_hand']:,}, "
        f"in_transit {final['in_transit']:,}; low-stock alerts {final['alerts']:,} "
        f"({final['occurrences']:,} occurrences)"
    )
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
