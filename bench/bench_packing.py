"""Packing-line bulk upload through the HTTP API (issue 5): 1,000,000 units in 100,000 cases.

    .venv/bin/python bench/bench_packing.py [--units 1000000] [--per-request 1000] [--clients 2]
                                            [--workers 1]

Starts its own API (granian, ``--workers`` processes) on a fresh database
``tracecode_bench_pack`` on the PostgreSQL of ``TRACECODE_DATABASE_URL`` (or the embedded one
under var/), with the Redis of ``TRACECODE_REDIS_URL`` (or embedded); loads the demo data,
issues a unit batch and inner case
codes, sets a line's context, then times the upload of every unit and case as scanner uploads
(``--per-request`` cases of 10 units + the case scan per request, ``--clients`` uploads in
flight). Request bodies are encoded before the clock starts. Afterwards it checks the database
(every unit active and in its case) and times a full replay, which must change nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import embedded  # noqa: E402
from app._core import gs1_check_digit  # noqa: E402
from app.cli import server_command  # noqa: E402
from app.codes.scheme import load_scheme  # noqa: E402

DB_NAME = "tracecode_bench_pack"
MASTER_KEY = "c3" * 32
AT = "2026-11-20T09:00:00+08:00"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def services() -> tuple[str, str]:
    var = ROOT / "var"
    admin = os.environ.get("TRACECODE_DATABASE_URL") or embedded.start_postgres(var)
    redis_url = os.environ.get("TRACECODE_REDIS_URL") or embedded.start_redis(var)
    try:
        embedded.drop_database(admin, DB_NAME)
    except Exception as exc:  # first run: nothing to drop
        print(f"(no previous bench database: {exc})")
    return embedded.ensure_database(admin, DB_NAME), redis_url


def bodies(batch_no: int, first_sscc: str, units: int, per_request: int) -> list[bytes]:
    scheme = load_scheme(bytes.fromhex(MASTER_KEY), [1], 1)
    first_ref = int(first_sscc[:-1])
    out = []
    cases = units // 10
    for start in range(0, cases, per_request):
        scans: list[dict[str, str]] = []
        for case in range(start, min(start + per_request, cases)):
            for index in range(case * 10, case * 10 + 10):
                scans.append({"id": f"u{index}", "code": scheme.serial(batch_no, index), "at": AT})
            body = f"{first_ref + case:017d}"
            scans.append({"id": f"c{case}", "code": body + str(gs1_check_digit(body)), "at": AT})
        out.append(msgspec.json.encode({"scans": scans}))
    return out


async def upload_all(base: str, token: str, payloads: list[bytes], clients: int) -> dict[str, Any]:
    """Post every body, ``clients`` at a time; wall time and per-request latencies."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    latencies: list[float] = []
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    decoder = msgspec.json.Decoder()  # a cheap load generator leaves the CPU to the server

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=600) as client:
            while not queue.empty():
                payload = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post("/lines/BENCH/scans", content=payload, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"upload failed: {response.status_code} {response.text[:500]}")
                body = decoder.decode(response.content)
                for key in totals:
                    totals[key] += body[key]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "wall": wall,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        **totals,
    }


async def prepare(base: str, units: int) -> tuple[str, int, str]:
    """Demo logins, a unit batch, inner case codes and the line context; the operator token."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:

        async def login(user: str) -> dict[str, str]:
            r = await client.post(
                "/auth/login", json={"username": user, "password": "tracecode-demo"}
            )
            r.raise_for_status()
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        planner, operator = await login("planner"), await login("operator")
        product = (await client.get("/products", headers=planner, params={"q": "LM-SC-30"})).json()
        product_id = product["items"][0]["id"]
        printer = (await client.get("/printers", headers=planner)).json()["items"][0]["id"]
        batch = await client.post(
            "/batches",
            headers=planner,
            json={"size": units, "printer_id": printer, "product_id": product_id},
        )
        batch.raise_for_status()
        cases = await client.post(
            "/case-batches",
            headers=planner,
            json={"level": "inner", "size": units // 10, "printer_id": printer},
        )
        cases.raise_for_status()
        context = await client.put(
            "/lines/BENCH/context",
            headers=operator,
            json={"product_id": product_id, "lot": "BENCH", "production_date": "2026-11-20"},
        )
        context.raise_for_status()
        token = operator["Authorization"].split()[1]
        return token, batch.json()["batch_no"], cases.json()["first_sscc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--per-request", type=int, default=1000, help="cases per upload")
    parser.add_argument("--clients", type=int, default=2, help="uploads in flight")
    parser.add_argument("--workers", type=int, default=1, help="granian worker processes")
    args = parser.parse_args()
    db_url, redis_url = services()
    port = free_port()
    env = {
        **os.environ,
        "TRACECODE_DATABASE_URL": db_url,
        "TRACECODE_REDIS_URL": redis_url,
        "TRACECODE_REDIS_NAMESPACE": "benchpack",
        "TRACECODE_MASTER_KEY": MASTER_KEY,
        "TRACECODE_LOG_LEVEL": "WARNING",
    }
    env.pop("TRACECODE_MASTER_KEY_FILE", None)
    subprocess.run([sys.executable, "-m", "app.cli", "demo", "load"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    server = subprocess.Popen(
        server_command("127.0.0.1", port, args.workers),
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        token, batch_no, first_sscc = asyncio.run(prepare(base, args.units))
        t0 = time.perf_counter()
        payloads = bodies(batch_no, first_sscc, args.units, args.per_request)
        megabytes, took = sum(map(len, payloads)) / 1e6, time.perf_counter() - t0
        print(
            f"{len(payloads)} uploads of {args.per_request} cases x (10 units + case), "
            f"{megabytes:.0f} MB JSON, encoded in {took:.1f} s"
        )
        first = asyncio.run(upload_all(base, token, payloads, args.clients))
        rate = args.units / first["wall"]
        print(
            f"upload:  {args.units:,} units in {args.units // 10:,} cases: {first['wall']:.2f} s = "
            f"{rate:,.0f} units/s; per upload p50 {first['p50'] * 1000:.0f} ms "
            f"p99 {first['p99'] * 1000:.0f} ms; accepted {first['accepted']:,} "
            f"duplicates {first['duplicates']:,} rejected {first['rejected']:,}"
        )
        with psycopg.connect(db_url) as conn:
            row = conn.execute(
                """SELECT (SELECT count(*) FROM unit_state) AS units,
                          (SELECT count(*) FROM unit_state WHERE parent_sscc IS NOT NULL) AS bound,
                          (SELECT count(*) FROM case_state) AS cases,
                          (SELECT count(*) FROM events) AS events,
                          (SELECT count(*) FROM event_codes) AS codes"""
            ).fetchone()
        print(f"state:   units {row[0]:,} bound {row[1]:,} cases {row[2]:,} events {row[3]:,} "
              f"event codes {row[4]:,}")  # fmt: skip
        ok = row[0] == row[1] == args.units and row[2] == args.units // 10
        again = asyncio.run(upload_all(base, token, payloads, args.clients))
        print(
            f"replay:  {again['wall']:.2f} s = {args.units / again['wall']:,.0f} units/s; "
            f"accepted {again['accepted']:,} duplicates {again['duplicates']:,}"
        )
        ok = ok and again["accepted"] == 0 and first["rejected"] == 0
        print("checks:  " + ("ok" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
