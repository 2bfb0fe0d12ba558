"""Rebate rankings over 10,000,000 claims (issue 16 item 4, R3). Prints numbers.

    .venv/bin/python bench/bench_rebate_ranking.py [--claims 10000000] [--stores 5000]
        [--clerks 3] [--agents 50] [--months 12] [--more 10000] [--connections 16]
        [--duration 20s] [--api-cpu 0] [--wrk-cpu 1] [--keep] [--reuse]

Target: ``GET /rebates/rankings/stores?month=YYYY-MM`` (one month, every store of the brand)
answers in p99 <= 50 ms over HTTP on a database of 10,000,000 claims.

Build (a fresh database ``tracecode_bench_rebates`` on the server of ``TRACECODE_DATABASE_URL``, an
admin URL, default postgresql://postgres@127.0.0.1:5432/postgres; dropped at the end unless
``--keep``; ``--reuse`` measures the rankings again on a kept one): migrations and the demo data
(its ``admin`` signs in), ``--agents`` agents under the demo brand across ten provinces,
``--stores`` stores spread over them (each its province and one of two cities), ``--clerks`` clerks
per store. Then ``--claims`` claim rows and their tally-queue rows, as a claim writes them, made in
PostgreSQL by ``generate_series`` on two connections (the bulk load runs with
``session_replication_role = replica`` and without the secondary indexes and unique constraints of
``rebate_claims``, rebuilt as they were afterwards: the rows are valid by construction and the
foreign-key triggers and index upkeep would only slow the load). Each claim's store, clerk, amount
(0.5 to 50 yuan, multiples of 0.5) and time (over ``--months`` months of 2026) are spread
deterministically from its number.

Measure, in order: (1) the roll-up (``app.rebates.ranking.rollup_alone``, batches of 100,000):
all queued claims folded into ``rebate_totals``, claims/s; then ``--more`` new claims rolled up
(the incremental pass a worker makes); (2) ``recount``: the totals equal a GROUP BY over the
claims (must be empty); (3) in process, ``store_ranking`` for one month 200 times (p50/p99) and
EXPLAIN ANALYZE of its query; (4) over HTTP: granian with one worker (``app.main:create_app``)
pinned to ``--api-cpu``, ``wrk -t1 -cC -dD --latency`` pinned to ``--wrk-cpu`` with
``bench/rankings.lua`` as the demo admin: the store ranking of each month in turn (every one a
one-month ranking of all stores), then the clerk ranking and a whole-year store ranking for
comparison. Every HTTP answer must be 200; one answer of each kind is checked against the totals.

Environment: TRACECODE_DATABASE_URL (admin URL), TRACECODE_REDIS_URL (default
redis://127.0.0.1:6379/0), TRACECODE_MASTER_KEY (default ``be`` * 32).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import embedded  # noqa: E402
from app.cli import server_command  # noqa: E402
from app.db import migrate  # noqa: E402
from app.rebates import ranking  # noqa: E402  (an import error fails now, not after the build)

DATABASE = "tracecode_bench_rebates"
ADMIN_URL = (
    os.environ.get("TRACECODE_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TRACECODE_REDIS_URL") or "redis://127.0.0.1:6379/0"
MASTER_KEY = os.environ.get("TRACECODE_MASTER_KEY") or "be" * 32
LUA = ROOT / "bench" / "rankings.lua"
TARGET_P99_MS = 50.0
YEAR = 2026
CHUNK = 500_000  # claims per INSERT statement
PROVINCES = [
    ("110000", "北京市", "110100", "北京市", "110100", "北京市"),
    ("310000", "上海市", "310100", "上海市", "310100", "上海市"),
    ("330000", "浙江省", "330100", "杭州市", "330200", "宁波市"),
    ("440000", "广东省", "440100", "广州市", "440300", "深圳市"),
    ("320000", "江苏省", "320100", "南京市", "320500", "苏州市"),
    ("510000", "四川省", "510100", "成都市", "510700", "绵阳市"),
    ("420000", "湖北省", "420100", "武汉市", "420600", "襄阳市"),
    ("370000", "山东省", "370100", "济南市", "370200", "青岛市"),
    ("350000", "福建省", "350100", "福州市", "350200", "厦门市"),
    ("610000", "陕西省", "610100", "西安市", "610300", "宝鸡市"),
]


def database_url(name: str) -> str:
    params = conninfo_to_dict(ADMIN_URL)
    params["dbname"] = name
    return make_conninfo("", **params)


def settings_env(db_url: str) -> dict[str, str]:
    return {
        "TRACECODE_DATABASE_URL": db_url,
        "TRACECODE_REDIS_URL": REDIS_URL,
        "TRACECODE_MASTER_KEY": MASTER_KEY,
        "TRACECODE_REDIS_NAMESPACE": "tcbenchrebates",
        "TRACECODE_LOG_LEVEL": "WARNING",
    }


# -- build ----------------------------------------------------------------------------------------


async def organisations(url: str, agents: int, stores: int, clerks: int) -> dict[str, int]:
    """Demo data, then agents, stores and clerks of the demo brand; the bench's lookup tables
    ``bench_stores`` (store number -> store) and ``bench_clerks`` (store number, k -> clerk)."""
    from app.demo import load_demo

    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        ids = await load_demo(conn)
        brand = ids["BRAND-LUMI"]
        regions = ", ".join(
            "(" + ", ".join(f"'{v}'" for v in p) + f", {i})" for i, p in enumerate(PROVINCES)
        )
        for statement in (
            "CREATE TABLE bench_regions (pcode text, pname text, c1 text, n1 text, c2 text, "
            "n2 text, i int)",
            f"INSERT INTO bench_regions VALUES {regions}",
            f"""INSERT INTO orgs (parent_id, kind, name, erp_code, province_code, province_name,
                                  city_code, city_name)
                SELECT {brand}, 'agent', 'Bench agent ' || a, 'BA-' || a, r.pcode, r.pname,
                       r.c1, r.n1
                FROM generate_series(0, {agents - 1}) a JOIN bench_regions r ON r.i = a % 10""",
            "UPDATE orgs SET path = '/' || parent_id || '/' || id || '/' "
            "WHERE erp_code LIKE 'BA-%'",
            f"""INSERT INTO orgs (parent_id, kind, name, erp_code, province_code, province_name,
                                  city_code, city_name, path)
                SELECT a.id, 'store', 'Bench store ' || s, 'BS-' || s, r.pcode, r.pname,
                       CASE WHEN s % 2 = 0 THEN r.c1 ELSE r.c2 END,
                       CASE WHEN s % 2 = 0 THEN r.n1 ELSE r.n2 END, ''
                FROM generate_series(0, {stores - 1}) s
                JOIN orgs a ON a.erp_code = 'BA-' || s % {agents}
                JOIN bench_regions r ON r.i = (s % {agents}) % 10""",
            """UPDATE orgs o SET path = p.path || o.id || '/' FROM orgs p
               WHERE p.id = o.parent_id AND o.erp_code LIKE 'BS-%'""",
            """CREATE TABLE bench_stores AS
               SELECT substr(erp_code, 4)::int AS idx, id AS store_id, parent_id AS agent_id
               FROM orgs WHERE erp_code LIKE 'BS-%'""",
            "CREATE UNIQUE INDEX ON bench_stores (idx)",
            f"""INSERT INTO users (org_id, username, password_hash, display_name)
                SELECT s.store_id, 'bench_clerk_' || s.idx || '_' || k, 'x',
                       'Clerk ' || k || ' of store ' || s.idx
                FROM bench_stores s, generate_series(0, {clerks - 1}) k""",
            """CREATE TABLE bench_clerks AS
               SELECT split_part(username, '_', 3)::int AS idx,
                      split_part(username, '_', 4)::int AS k, id AS clerk_id
               FROM users WHERE username LIKE 'bench_clerk_%'""",
            "CREATE UNIQUE INDEX ON bench_clerks (idx, k)",
        ):
            await conn.execute(statement)  # type: ignore[arg-type]
        row = await (
            await conn.execute(
                "SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id "
                "WHERE o.path LIKE %s ORDER BY p.id LIMIT 1",
                (f"/{brand}/%",),
            )
        ).fetchone()
        assert row is not None
        await conn.commit()
    return {"brand": brand, "product": row["id"]}


# One chunk of claims numbered lo..hi and their queue rows, as a claim writes them. The store, the
# clerk, the amount and the second of the period come from the claim's number by multiplicative
# hashing (a fixed, even spread); the time is an instant in UTC.
_FILL = """
WITH g AS (
    SELECT n, (n * 2654435761) %% %(stores)s AS si, (n * 40503) %% %(clerks)s AS ci,
           (1 + (n * 97) %% 100) / 2.0 AS amount, (n * 7919) %% %(seconds)s AS second
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) n
), c AS (
    INSERT INTO rebate_claims (code_id, brand_id, store_id, clerk_id, agent_id, product_id,
                               amount, client_id, event_id, claimed_at)
    SELECT (1::bigint << 50) + g.n, %(brand)s, s.store_id, k.clerk_id, s.agent_id, %(product)s,
           g.amount, 'bench-' || g.n, 0, %(start)s::timestamptz + g.second * interval '1 second'
    FROM g JOIN bench_stores s ON s.idx = g.si JOIN bench_clerks k ON k.idx = g.si AND k.k = g.ci
    RETURNING id
)
INSERT INTO rebate_tally_queue (claim_id) SELECT id FROM c
"""


async def fill(url: str, ids: dict[str, int], first: int, count: int, args: Any) -> float:
    """``count`` claims numbered from ``first`` on two connections; seconds taken."""
    start = f"{YEAR}-01-01T00:00:00+08:00"
    end = f"{YEAR + 1}-01-01" if args.months == 12 else f"{YEAR}-{args.months + 1:02d}-01"
    params = {
        **ids,
        "stores": args.stores,
        "clerks": args.clerks,
        "start": start,
    }
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (
            await conn.execute(
                "SELECT extract(epoch FROM %s::timestamptz - %s::timestamptz)::bigint",
                (f"{end}T00:00:00+08:00", start),
            )
        ).fetchone()
        assert row is not None
        params["seconds"] = row[0]
    chunks = [(lo, min(lo + CHUNK, first + count) - 1) for lo in range(first, first + count, CHUNK)]
    done = 0
    t0 = time.perf_counter()

    async def worker(part: list[tuple[int, int]]) -> None:
        nonlocal done
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("SET session_replication_role = replica")
            for lo, hi in part:
                await conn.execute(_FILL, {**params, "lo": lo, "hi": hi})
                done += hi - lo + 1
                if count >= 1_000_000 and done % 2_000_000 < CHUNK:
                    print(f"  {done:>12,} claims  {time.perf_counter() - t0:6.1f} s", flush=True)

    await asyncio.gather(worker(chunks[0::2]), worker(chunks[1::2]))
    return time.perf_counter() - t0


async def without_indexes(url: str, load: Any) -> float:
    """``await load()`` with the secondary indexes and unique constraints of ``rebate_claims``
    dropped, then rebuilt as they were (two at a time); seconds of the rebuild."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        constraints = await (
            await conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 'rebate_claims'::regclass AND contype = 'u'"
            )
        ).fetchall()
        indexes = await (
            await conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'rebate_claims' "
                "AND indexname <> 'rebate_claims_pkey' AND indexname <> ALL(%s)",
                ([name for name, _ in constraints],),
            )
        ).fetchall()
        for name, _ in constraints:
            await conn.execute(f"ALTER TABLE rebate_claims DROP CONSTRAINT {name}")
        for name, _ in indexes:
            await conn.execute(f"DROP INDEX {name}")
    await load()
    builds = [f"ALTER TABLE rebate_claims ADD CONSTRAINT {n} {d}" for n, d in constraints]
    builds += [d for _, d in indexes]
    t0 = time.perf_counter()

    async def build(part: list[str]) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("SET maintenance_work_mem = '512MB'")
            for statement in part:
                await conn.execute(statement)  # type: ignore[arg-type]

    await asyncio.gather(build(builds[0::2]), build(builds[1::2]))
    return time.perf_counter() - t0


# -- measure --------------------------------------------------------------------------------------


def percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": ordered[-1]}


async def roll_and_recount(url: str, ids: dict[str, int], args: Any) -> None:
    from app.rebates.ranking import recount, rollup_alone

    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        t0 = time.perf_counter()
        folded = await rollup_alone(conn, wait=True)
        took = time.perf_counter() - t0
        assert folded is not None
        print(f"roll-up: {folded:,} queued claims in {took:.1f} s = {folded / took:,.0f} claims/s")
        if args.more:
            seconds = await fill(url, ids, args.claims + 1, args.more, args)
            t0 = time.perf_counter()
            more = await rollup_alone(conn, wait=True)
            took = time.perf_counter() - t0
            print(
                f"incremental: {args.more:,} more claims inserted in {seconds:.1f} s, "
                f"rolled up ({more:,}) in {took * 1000:.0f} ms"
            )
        t0 = time.perf_counter()
        mismatches = await recount(conn)
        print(
            f"recount: {len(mismatches)} mismatches ({time.perf_counter() - t0:.1f} s, "
            "totals vs GROUP BY over the claims)"
        )
        if mismatches:
            raise SystemExit(f"the totals differ from the claims: {mismatches[:5]}")
        row = await (
            await conn.execute(
                "SELECT count(*) AS n, count(DISTINCT month) AS months, "
                "(SELECT count(*) FROM rebate_claims) AS claims FROM rebate_totals"
            )
        ).fetchone()
        assert row is not None
        print(
            f"rebate_claims {row['claims']:,} rows; rebate_totals {row['n']:,} rows over "
            f"{row['months']} months"
        )
    vacuum(url)


def vacuum(url: str) -> None:
    """What autovacuum would do in time: the roll-up's tables and the joined ones analysed."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in (
            "rebate_totals",
            "rebate_store_totals",
            "rebate_tally_queue",
            "orgs",
            "users",
        ):
            conn.execute(f"VACUUM (ANALYZE) {table}")  # type: ignore[arg-type]


async def in_process(url: str, month: str) -> None:
    from app.auth.service import load_user
    from app.rebates.ranking import Filters, store_ranking

    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        row = await (await conn.execute("SELECT id FROM users WHERE username = 'admin'")).fetchone()
        assert row is not None
        admin = await load_user(conn, row["id"])
        ms = []
        for n in range(220):
            t0 = time.perf_counter()
            out = await store_ranking(conn, admin, Filters(month=month, limit=50))
            await conn.commit()
            if n >= 20:
                ms.append((time.perf_counter() - t0) * 1000)
        p = percentiles(ms)
        print(
            f"in process: store_ranking(month={month}) x200: p50 {p['p50']:.2f} ms, "
            f"p99 {p['p99']:.2f} ms, max {p['max']:.2f} ms ({len(out.items)} rows)"
        )
    sql = ranking._RANKED.format(
        by="amount",
        other="claims",
        where="true",
        limit=50,
        source=ranking._MONTH_OF_STORES,
        **ranking._STORES,
    )
    async with await psycopg.AsyncConnection.connect(url) as conn:
        plan = await (
            await conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql,  # type: ignore[operator]
                {
                    "brand": admin.brand_id,
                    "first": date.fromisoformat(month + "-01"),
                },
            )
        ).fetchall()
        print("  its plan:", *(f"    {line}" for (line,) in plan), sep="\n")


def wrk(
    base: str, token: str, paths: list[str], connections: int, duration: str, cpu: str
) -> dict[str, float]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}", "--latency", "-s", str(LUA), base]
    if cpu:
        argv = ["taskset", "-c", cpu, *argv]
    env = {**os.environ, "WRK_TOKEN": token, "WRK_PATHS": ",".join(paths)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stderr[-2000:]}")
    numbers: dict[str, float] = {}
    for line in done.stdout.splitlines():
        if line.startswith(("wrk-summary ", "wrk-results ")):
            numbers |= {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
    if "rps" not in numbers:
        raise SystemExit(f"no wrk-summary in:\n{done.stdout}\n{done.stderr}")
    if numbers.get("other") or numbers.get("status"):
        raise SystemExit(f"answers other than 200: {numbers}")
    return numbers


def show(what: str, n: dict[str, float]) -> None:
    verdict = "met" if n["p99_ms"] <= TARGET_P99_MS else "MISSED"
    print(
        f"{what}: {n['requests']:,.0f} requests, {n['rps']:,.0f} req/s, p50 {n['p50_ms']:.1f} ms, "
        f"p90 {n['p90_ms']:.1f} ms, p99 {n['p99_ms']:.1f} ms, max {n['max_ms']:.1f} ms "
        f"(p99 <= {TARGET_P99_MS:.0f} ms: {verdict})",
        flush=True,
    )


def check_answer(url: str, body: dict[str, Any], month: str) -> None:
    """The first row of an HTTP answer equals the largest store sum of the month's totals."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT store_id, sum(claims), sum(amount) FROM rebate_totals
               WHERE month = %s::date GROUP BY store_id ORDER BY 3 DESC, 2 DESC, 1 LIMIT 1""",
            (month + "-01",),
        ).fetchone()
    first = body["items"][0]
    assert row is not None and (first["store_id"], first["claims"]) == (row[0], row[1]), (
        first,
        row,
    )
    assert abs(first["amount"] - float(row[2])) < 1e-6 and len(body["items"]) == 50


def over_http(url: str, args: Any) -> None:
    import httpx

    from tests.servers import free_port

    port = free_port()
    argv = server_command("127.0.0.1", port, 1)
    if args.api_cpu:
        argv = ["taskset", "-c", args.api_cpu, *argv]
    env = {**os.environ, **settings_env(url)}
    months = [f"{YEAR}-{m + 1:02d}" for m in range(args.months)]
    probe = months[min(5, len(months) - 1)]
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
                answer = client.get(
                    "/rebates/rankings/stores", params={"month": probe}, headers=headers
                )
                answer.raise_for_status()
                check_answer(url, answer.json(), probe)
            stores = [f"/rebates/rankings/stores?month={m}" for m in months]
            c, cpu = args.connections, args.wrk_cpu
            wrk(base, token, stores, c, "3s", cpu)  # warm-up
            print(f"load average before: {os.getloadavg()[0]:.2f}")
            show(
                f"HTTP GET /ping (baseline: the server's floor), c={c}",
                wrk(base, token, ["/ping"], c, "10s", cpu),
            )
            show(
                f"HTTP GET /auth/me (baseline: sign-in check + one pooled transaction), c={c}",
                wrk(base, token, ["/auth/me"], c, "10s", cpu),
            )
            show(
                f"HTTP GET /rebates/rankings/stores?month=… (each month in turn), c={c}",
                wrk(base, token, stores, c, args.duration, cpu),
            )
            show(
                "HTTP the same, by=count, province=浙江省",
                wrk(
                    base,
                    token,
                    [p + "&by=count&province=%E6%B5%99%E6%B1%9F%E7%9C%81" for p in stores],
                    c,
                    "10s",
                    cpu,
                ),
            )
            clerks = [f"/rebates/rankings/clerks?month={m}" for m in months]
            show(
                f"HTTP GET /rebates/rankings/clerks?month=…, c={c}",
                wrk(base, token, clerks, c, "10s", cpu),
            )
            year = [f"/rebates/rankings/stores?from_month={months[0]}&to_month={months[-1]}"]
            show(
                f"HTTP GET /rebates/rankings/stores, {len(months)} months, c={c}",
                wrk(base, token, year, c, "10s", cpu),
            )
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=5)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claims", type=int, default=10_000_000)
    parser.add_argument("--stores", type=int, default=5000)
    parser.add_argument("--clerks", type=int, default=3)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--months", type=int, default=12, choices=range(1, 13))
    parser.add_argument("--more", type=int, default=10_000, help="claims of the incremental pass")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", default="20s")
    parser.add_argument("--api-cpu", default="0", help="taskset CPU of granian ('' for none)")
    parser.add_argument("--wrk-cpu", default="1", help="taskset CPU of wrk ('' for none)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="measure the rankings on a kept database (--keep)"
    )
    args = parser.parse_args()

    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    print(
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}, PostgreSQL {row[0] if row else '?'}, "
        f"Python {platform.python_version()}; {args.claims:,} claims, {args.stores:,} stores x "
        f"{args.clerks} clerks, {args.agents} agents, {args.months} months",
        flush=True,
    )
    started = time.perf_counter()
    if args.reuse:
        url = database_url(DATABASE)
        migrate(url)
        vacuum(url)
        asyncio.run(in_process(url, f"{YEAR}-{min(6, args.months):02d}"))
        over_http(url, args)
        return
    embedded.drop_database(ADMIN_URL, DATABASE)
    url = embedded.ensure_database(ADMIN_URL, DATABASE)
    try:
        migrate(url)
        ids = asyncio.run(organisations(url, args.agents, args.stores, args.clerks))
        took: list[float] = []

        async def load() -> None:
            took.append(await fill(url, ids, 1, args.claims, args))

        rebuild = asyncio.run(without_indexes(url, load))
        print(
            f"build: {args.claims:,} claims + queue rows in {took[0]:.1f} s "
            f"({args.claims / took[0]:,.0f} /s) without rebate_claims' secondary indexes, "
            f"which were rebuilt in {rebuild:.1f} s",
            flush=True,
        )
        asyncio.run(roll_and_recount(url, ids, args))
        months = [f"{YEAR}-{m + 1:02d}" for m in range(args.months)]
        asyncio.run(in_process(url, months[min(5, len(months) - 1)]))
        over_http(url, args)
    finally:
        if not args.keep:
            embedded.drop_database(ADMIN_URL, DATABASE)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
