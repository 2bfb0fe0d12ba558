"""SMS sender (issue 15, I2): drain N outbox rows to the local gateway, none lost or doubled.

    .venv/bin/python bench/bench_sms.py [--rows 100000] [--senders 4] [--batch 100]
                                        [--concurrency 8] [--claim 1000]

Works on a fresh database ``tracecode_bench_sms`` on the server of ``TRACECODE_DATABASE_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``), migrated with ``app.db.migrate``.
It COPYs ``--rows`` pending one-time-code rows into ``sms_outbox``, starts the test suite's local
gateway process (tests/sms_gateway.py: a real HTTP server, deduplicating on the idempotency key)
and runs ``--senders`` concurrent senders (``app.sms.sender.drain``, each on its own connection,
the HTTP adapter posting ``--batch`` messages per request, ``--concurrency`` requests in flight)
until the outbox is empty. Reported: messages per second; checked: every row is ``sent``, the
gateway delivered each idempotency key exactly once and was asked for each exactly once.

Baseline in the same run: the same number of messages posted straight to the gateway by the
same adapter, without the outbox (the gateway's and the HTTP client's own ceiling).
Target (issue 15): at least 2,000 messages per second for 100,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
import uuid
from pathlib import Path

import msgspec
import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import embedded  # noqa: E402
from app.config import load_settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.sms import sender  # noqa: E402
from app.sms.gateway import HttpGateway, OutMessage  # noqa: E402
from tests.sms_gateway import LocalGateway  # noqa: E402

DB_NAME = "tracecode_bench_sms"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def fresh_database() -> str:
    admin = os.environ.get("TRACECODE_DATABASE_URL") or DEFAULT_URL
    embedded.drop_database(admin, DB_NAME)
    url = embedded.ensure_database(admin, DB_NAME)
    migrate(url)
    return url


def fill(url: str, rows: int) -> None:
    """A brand and ``rows`` pending rows (COPY: this is a bench database)."""
    with psycopg.connect(url) as conn:
        brand = conn.execute(
            "INSERT INTO orgs (kind, name, erp_code) VALUES ('brand', '品牌', 'B') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("UPDATE orgs SET path = %s WHERE id = %s", (f"/{brand}/", brand))
        with conn.cursor().copy(
            "COPY sms_outbox (brand_id, phone, template, variables, purpose) FROM STDIN"
        ) as copy:
            for i in range(rows):
                variables = f'{{"code": "{i % 1000000:06d}", "minutes": "5"}}'
                copy.write_row((brand, f"139{i:08d}", "otp", variables, "notice"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE sms_outbox")


def gateway(url: str, args: argparse.Namespace) -> HttpGateway:
    return HttpGateway(url, batch=args.batch, concurrency=args.concurrency, timeout=30)


async def drain_all(db_url: str, gw_url: str, args: argparse.Namespace) -> sender.Stats:
    # a claim is one wave of the settings' gateway shape at most (``sender.claim_size``:
    # TRACECODE_SMS_CONCURRENCY x TRACECODE_SMS_GATEWAY_BATCH), whatever --claim says
    settings = msgspec.structs.replace(load_settings(), sms_gateway="http", sms_gateway_url=gw_url)

    async def one() -> sender.Stats:
        gw = gateway(gw_url, args)
        try:
            async with await psycopg.AsyncConnection.connect(
                db_url, autocommit=True, row_factory=dict_row
            ) as conn:
                total = sender.Stats()
                while True:  # drain stops claiming after part of a lease: again until empty
                    stats = await sender.drain(conn, gw, settings, limit=args.claim)
                    total.add(stats)
                    if not stats.claimed:
                        return total
        finally:
            await gw.aclose()

    total = sender.Stats()
    for stats in await asyncio.gather(*(one() for _ in range(args.senders))):
        total.add(stats)
    return total


async def baseline(gw_url: str, rows: int, args: argparse.Namespace) -> float:
    """Messages per second posted straight to the gateway (no outbox)."""
    messages = [
        OutMessage(
            key=str(uuid.uuid4()),
            phone=f"138{i:08d}",
            sign="【品牌】",
            template_id="otp",
            params={"code": f"{i % 1000000:06d}", "minutes": "5"},
            text=f"【品牌】您的验证码为{i % 1000000:06d}，5分钟内有效，请勿泄露给他人。",
            masked_text="",
        )
        for i in range(rows)
    ]
    chunk = args.claim

    async def one(part: list[OutMessage]) -> None:
        gw = gateway(gw_url, args)
        try:
            for i in range(0, len(part), chunk):
                await gw.send(part[i : i + chunk])
        finally:
            await gw.aclose()

    share = -(-rows // args.senders)
    start = time.perf_counter()
    await asyncio.gather(*(one(messages[i : i + share]) for i in range(0, rows, share)))
    return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100, help="messages per HTTP request")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight/sender")
    parser.add_argument(
        "--claim",
        type=int,
        default=1000,
        help="rows per claim at most (and one settings' wave at most)",
    )
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus; {vars(args)}")

    db_url = fresh_database()
    started = time.perf_counter()
    fill(db_url, args.rows)
    print(f"filled {args.rows:,} outbox rows in {time.perf_counter() - started:.1f} s")

    local = LocalGateway().start()
    try:
        start = time.perf_counter()
        stats = asyncio.run(drain_all(db_url, local.url, args))
        seconds = time.perf_counter() - start
        delivered = local.messages()
        requests = local.requests()
        with psycopg.connect(db_url) as conn:
            states = dict(
                conn.execute("SELECT state, count(*) FROM sms_outbox GROUP BY state").fetchall()
            )
        keys = [m["key"] for m in delivered]
        print(f"outbox drained: {args.rows / seconds:,.0f} messages/s ({seconds:.2f} s); {stats}")
        ok = (
            states == {"sent": args.rows}
            and len(keys) == len(set(keys)) == args.rows
            and set(requests.values()) == {1}
        )
        print(
            f"check: rows by state {states}; gateway delivered {len(keys):,} "
            f"({len(set(keys)):,} distinct keys), asked at most {max(requests.values())}x "
            f"per key -> {'OK: none lost, none doubled' if ok else 'FAILED'}"
        )
        local.reset()
        rate = asyncio.run(baseline(local.url, args.rows, args))
        print(f"baseline, straight to the gateway (no outbox): {rate:,.0f} messages/s")
        target = args.rows / seconds >= 2000
        print(f"target >= 2,000 messages/s: {'met' if target else 'NOT met'} at {args.rows:,} rows")
        if not ok:
            sys.exit(1)
    finally:
        local.stop()
        embedded.drop_database(os.environ.get("TRACECODE_DATABASE_URL") or DEFAULT_URL, DB_NAME)


if __name__ == "__main__":
    main()
