"""People analytics (issue 17, A4–A7) over 1,000,000 members and 10,000,000 events. Prints
numbers.

    .venv/bin/python bench/bench_analytics_people.py [--members 1000000] [--claims 3000000]
        [--verifications 7000000] [--more 1000000] [--connections 16] [--duration 10s]
        [--api-cpu 0] [--wrk-cpu 1] [--keep] [--reuse]

Targets: every people analytics endpoint answers p99 <= 50 ms over HTTP; a roll-up folds
1,000,000 new events in <= 30 s.

Build (a fresh database ``tracecode_bench_people`` on the server of ``TRACECODE_DATABASE_URL``,
dropped at the end unless ``--keep``; ``--reuse`` measures a kept one again): migrations, the
demo data (its ``admin`` signs in), 50 products in 5 categories; ``--members`` members of the
demo brand over 3 years, 31 provinces and 4 cities each, 60 % with a birthday; ``--claims``
point claims with their ledger rows (2 years, random members and products) and
``--verifications`` verification records (one year, 31 × 4 regions, six results), all made by
``generate_series`` in PostgreSQL with the triggers of migration 0023 on (they fill the queues
as the application's writes do).

Measure: (1) the first roll-up of everything (``rollup_alone`` with a second connection:
verifications and half the members' ledger rows fold on it), rows/s; (2) ``--more`` new events
(half claims with their ledger rows, half verifications) folded by one roll-up, seconds;
(3) the recount (must be empty); (4) over HTTP: granian with one worker pinned to ``--api-cpu``,
``wrk`` pinned to ``--wrk-cpu`` (``bench/rankings.lua``) as the demo admin, each endpoint with
its usual questions in turn, beside ``/ping``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.analytics import people  # noqa: E402
from app.cli import server_command  # noqa: E402
from app.db import migrate  # noqa: E402
from bench.bench_rebate_ranking import (  # noqa: E402
    ADMIN_URL,
    MASTER_KEY,
    REDIS_URL,
    cpu_model,
    database_url,
    show,
    wrk,
)

DATABASE = "tracecode_bench_people"
CHUNK = 1_000_000


def settings_env(db_url: str) -> dict[str, str]:
    return {
        "TRACECODE_DATABASE_URL": db_url,
        "TRACECODE_REDIS_URL": REDIS_URL,
        "TRACECODE_MASTER_KEY": MASTER_KEY,
        "TRACECODE_REDIS_NAMESPACE": "tcbenchpeople",
        "TRACECODE_LOG_LEVEL": "WARNING",
    }


async def catalogue(url: str) -> dict[str, int]:
    """Demo data, 5 categories of 10 products, the provinces (31) and cities (4 each)."""
    from app.demo import load_demo
    from app.provinces import CAPITALS

    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        ids = await load_demo(conn)
        brand = ids["BRAND-LUMI"]
        provinces = ", ".join(f"('{p}', '{c}', {i})" for i, (p, c, *_) in enumerate(CAPITALS))
        for statement in (
            f"""INSERT INTO categories (org_id, name)
                SELECT {brand}, 'Bench category ' || c FROM generate_series(0, 4) c""",
            f"""INSERT INTO products (org_id, category_id, name, product_no)
                SELECT {brand}, (SELECT id FROM categories WHERE name = 'Bench category ' || p % 5),
                       'Bench product ' || p, 'BP-' || p
                FROM generate_series(0, 49) p""",
            "CREATE TABLE bench_products AS SELECT row_number() OVER (ORDER BY id) - 1 AS k, id "
            "FROM products WHERE product_no LIKE 'BP-%'",
            f"CREATE TABLE bench_provinces (name text, capital text, k int); "
            f"INSERT INTO bench_provinces VALUES {provinces}",
        ):
            await conn.execute(statement)  # type: ignore[arg-type]
        await conn.commit()
        return {"brand": brand, "provinces": len(CAPITALS)}


async def load(url: str, ids: dict[str, int], args: Any, first: int, more: bool) -> None:
    """Members (unless ``more``), claims with ledger rows, verifications; numbered from
    ``first`` so a second load adds new rows."""
    brand, np = ids["brand"], ids["provinces"]
    claims = args.more // 2 if more else args.claims
    verifications = args.more - claims if more else args.verifications
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if not more:
            for start in range(0, args.members, CHUNK):
                n = min(CHUNK, args.members - start)
                await conn.execute(
                    f"""INSERT INTO members (brand_id, phone, province, city, birthday, age_band,
                                             created_at)
                        SELECT {brand}, (13000000000 + i)::text, p.name,
                               CASE i % 4 WHEN 0 THEN p.capital ELSE 'City ' || (i % 4) END,
                               CASE WHEN i % 10 < 6
                                    THEN date '1950-01-01' + ((i * 7919) % 25000)::int END,
                               CASE WHEN i % 10 BETWEEN 6 AND 8
                                    THEN (ARRAY['under_18','18_24','25_34','35_44','45_54',
                                                '55_plus'])[1 + i % 6] END,
                               timestamptz '2024-01-01 00:00+08'
                                   + (i * 104729 % 1095) * interval '1 day'
                                   + (i % 86400) * interval '1 second'
                        FROM generate_series({start}::bigint, {start + n - 1}) i
                        JOIN bench_provinces p ON p.k = i % {np}"""  # type: ignore[arg-type]
                )
        span = await (
            await conn.execute("SELECT min(id), max(id) FROM members WHERE brand_id = %s", (brand,))
        ).fetchone()
        assert span is not None
        low, count = span[0], span[1] - span[0] + 1
        for start in range(first, first + claims, CHUNK):
            n = min(CHUNK, first + claims - start)
            await conn.execute(
                f"""WITH c AS (
                        INSERT INTO point_claims (code_id, member_id, brand_id, product_id, points,
                                                  client_id, event_id, claimed_at)
                        SELECT -1 - i, {low} + (i * 7919) % {count}, {brand}, b.id, 1 + i % 50,
                               'b' || i, 0,
                               timestamptz '2025-01-01 00:00+08'
                                   + ((i * 31) % 730) * interval '1 day'
                                   + (i % 86400) * interval '1 second'
                        FROM generate_series({start}::bigint, {start + n - 1}) i
                        JOIN bench_products b ON b.k = (i * 13) % 50
                        RETURNING id, member_id, points, claimed_at)
                    INSERT INTO points_ledger (member_id, brand_id, kind, points, claim_id, at)
                    SELECT member_id, {brand}, 'claim', points, id, claimed_at FROM c"""  # type: ignore[arg-type]
            )
        for start in range(first, first + verifications, CHUNK):
            n = min(CHUNK, first + verifications - start)
            await conn.execute(
                f"""INSERT INTO verifications (at, record_key, brand_id, product_id, result, reason,
                                               province, city)
                    SELECT timestamptz '2026-01-01 00:00+08' + ((i * 17) % 365) * interval '1 day'
                               + (i % 86400) * interval '1 second',
                           gen_random_uuid(), {brand}, b.id,
                           (ARRAY['genuine','genuine','genuine','genuine','suspicious',
                                  'not_genuine','wrong_pin','unconfirmed'])[1 + i % 8],
                           'bench', p.name,
                           CASE i % 4 WHEN 0 THEN p.capital ELSE 'City ' || (i % 4) END
                    FROM generate_series({start}::bigint, {start + n - 1}) i
                    JOIN bench_products b ON b.k = (i * 7) % 50
                    JOIN bench_provinces p ON p.k = (i * 3) % {np}"""  # type: ignore[arg-type]
            )


async def roll(url: str, what: str, events: int) -> None:
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn,
        await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as other,
    ):
        started = time.perf_counter()
        folded = await people.rollup_alone(conn, wait=True, other=other)
        seconds = time.perf_counter() - started
    print(f"roll-up of {what} ({events:,} events): {seconds:.1f} s, {folded}", flush=True)


async def check(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        started = time.perf_counter()
        mismatches = await people.recount(conn)
        print(
            f"recount: {len(mismatches)} mismatches in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        if mismatches:
            raise SystemExit(f"the summaries differ from the recount: {mismatches[:5]}")


def paths(categories: list[int], products: list[int]) -> dict[str, list[str]]:
    zj = "province=%E6%B5%99%E6%B1%9F%E7%9C%81"
    return {
        "GET /analytics/members/regions (all time; by month; Zhejiang by city, a year by day)": [
            "/analytics/members/regions",
            f"/analytics/members/regions?{zj}",
            f"/analytics/members/regions?{zj}&granularity=day&from=2025-01-01&to=2025-12-31",
        ],
        "GET /analytics/members/cycle (by product; by category; one category's products, 2026)": [
            "/analytics/members/cycle",
            "/analytics/members/cycle?by=category",
            *(
                f"/analytics/members/cycle?category_id={c}&from=2026-01-01&to=2026-12-31"
                for c in categories
            ),
        ],
        "GET /analytics/points/ages": ["/analytics/points/ages"],
        "GET /analytics/verifications (30 days; a year by month; Zhejiang; products; a category)": [
            "/analytics/verifications?from=2026-06-01&to=2026-06-30",
            "/analytics/verifications?from=2026-01-01&to=2026-12-31&granularity=month",
            f"/analytics/verifications?from=2026-01-01&to=2026-12-31&{zj}",
            *(
                f"/analytics/verifications?from=2026-01-01&to=2026-12-31&product_id={p}"
                for p in products[:5]
            ),
            f"/analytics/verifications?from=2026-01-01&to=2026-12-31&category_id={categories[0]}",
        ],
        "GET /analytics/inspections (30 days)": ["/analytics/inspections"],
    }


def over_http(url: str, args: Any) -> None:
    import httpx

    from tests.servers import free_port

    with psycopg.connect(url) as conn:
        categories = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM categories WHERE name LIKE 'Bench%' ORDER BY id"
            ).fetchall()
        ]
        products = [r[0] for r in conn.execute("SELECT id FROM bench_products ORDER BY k")]
    port = free_port()
    argv = server_command("127.0.0.1", port, 1)
    if args.api_cpu:
        argv = ["taskset", "-c", args.api_cpu, *argv]
    env = {**os.environ, **settings_env(url)}
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
                response = client.post(
                    "/auth/login", json={"username": "admin", "password": "tracecode-demo"}
                )
                response.raise_for_status()
                token = response.json()["access_token"]
                headers = {"authorization": f"Bearer {token}"}
                regions = client.get("/analytics/members/regions", headers=headers).json()
                assert regions["members"] >= args.members, regions["members"]
            c, cpu = args.connections, args.wrk_cpu
            every = [p for group in paths(categories, products).values() for p in group]
            wrk(base, token, every, c, "3s", cpu)  # warm-up
            print(f"load average before: {os.getloadavg()[0]:.2f}")
            show(f"HTTP GET /ping (baseline), c={c}", wrk(base, token, ["/ping"], c, "5s", cpu))
            for what, group in paths(categories, products).items():
                show(f"HTTP {what}, c={c}", wrk(base, token, group, c, args.duration, cpu))
        finally:
            if server.poll() is None:
                os.killpg(server.pid, 2)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=3_000_000)
    parser.add_argument("--verifications", type=int, default=7_000_000)
    parser.add_argument("--more", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--api-cpu", default="0")
    parser.add_argument("--wrk-cpu", default="1")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="measure a kept database again")
    parser.add_argument("--no-http", action="store_true", help="build and roll up only")
    args = parser.parse_args()
    url = database_url(DATABASE)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} threads; load average {os.getloadavg()[0]:.2f}")
    if not args.reuse:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
            admin.execute(f"CREATE DATABASE {DATABASE}")
        migrate(url)
        ids = asyncio.run(catalogue(url))
        started = time.perf_counter()
        asyncio.run(load(url, ids, args, 0, more=False))
        events = args.claims + args.verifications
        print(
            f"loaded {args.members:,} members, {args.claims:,} claims (+ ledger rows), "
            f"{args.verifications:,} verifications in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        asyncio.run(roll(url, "the whole load", events + args.members))
        asyncio.run(load(url, ids, args, events + 1, more=True))
        asyncio.run(roll(url, "new events", args.more))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        asyncio.run(check(url))
    try:
        if not args.no_http:
            over_http(url, args)
    finally:
        if not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
