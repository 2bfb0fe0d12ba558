"""Serial allocation streamed over HTTP (issue 19: >= 1,000,000 codes/s to a client).

    .venv/bin/python bench/bench_allocation.py [--count 10000000] [--runs 3] [--check 200000]
                                               [--api-cpus 0] [--client-cpus 1]

What it does: the load-test stack's PostgreSQL and Redis (``loadtests/stack.py``: the
TRACECODE_*_URL servers, in a database of its own dropped at the end, or embedded ones under
var/loadtest), migrations and the demo data,
then granian with exactly one worker pinned to ``--api-cpus`` as ``tracecode run`` starts it.
Per run, the demo planner issues a batch of ``--count`` codes and allocates all of it in one
``POST /allocations``; ``curl`` (pinned to ``--client-cpus``) reads the stream to /dev/null and
reports bytes and time, from the request to the last byte. Codes/s = records received / that
time, for ``SERIAL,PIN`` lines, ``SERIAL`` lines (``pins: false``) and the encrypted file
(``format: file``, passphrase-wrapped: one scrypt per run included).

Correctness first: an allocation of ``--check`` codes read through httpx, every record verified
by ``Scheme.verify_buffer`` and its (batch, index) equal to the recorded range, in order.
Baseline in the same run: ``Scheme.generate`` in this process (the Rust core alone, one thread
and all threads) on the same number of codes: the ceiling the HTTP stream is measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.stack import Stack  # noqa: E402  (after the path is set)

PASSPHRASE = "benchmark-passphrase"
BENCH_DB = "tracecode_bench_allocation"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({cpu_model()}), load average {load}"


def call(url: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def login(url: str) -> dict[str, str]:
    from app.demo import DEMO_PASSWORD

    token = call(url, "/auth/login", {"username": "planner", "password": DEMO_PASSWORD}, {})
    return {"Authorization": f"Bearer {token['access_token']}"}


def issue(url: str, headers: dict[str, str], printer_id: int, size: int) -> int:
    made = call(url, "/batches", {"size": size, "printer_id": printer_id}, headers)
    return int(made["batch_no"])


def printer_id(stack: Stack) -> int:
    import psycopg

    with psycopg.connect(stack.env["TRACECODE_DATABASE_URL"]) as conn:
        row = conn.execute("SELECT id FROM orgs WHERE erp_code = 'PRINTER-SH'").fetchone()
    assert row is not None, "the demo data is not loaded"
    return int(row[0])


def stream(
    url: str, headers: dict[str, str], body: dict[str, Any], cpus: str | None
) -> tuple[int, float, float]:
    """(bytes, seconds to the first byte, seconds to the last) of one allocation read by curl."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} "
            "%{time_starttransfer} %{time_total}", "-H", "Content-Type: application/json",
            "-d", json.dumps(body), url + "/allocations"]  # fmt: skip
    for key, value in headers.items():
        argv[1:1] = ["-H", f"{key}: {value}"]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    status, size, first, total = done.stdout.split()
    if status != "201":
        raise SystemExit(f"POST /allocations answered {status}")
    return int(size), float(first), float(total)


def check(url: str, headers: dict[str, str], batch_no: int, count: int, scheme: Any) -> None:
    """Every streamed record verifies and is the recorded range's, in order."""
    import httpx

    from app.codes.scheme import VERIFY_OK, iter_verdicts, record_size

    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        answer = client.post("/allocations", json={"batch_no": batch_no, "count": count})
        assert answer.status_code == 201, answer.text
        recorded = client.get(answer.headers["location"]).json()
    body = answer.content
    verdicts = list(iter_verdicts(scheme.verify_buffer(body, record_size(scheme, True, True))))
    assert len(verdicts) == count == recorded["total"]
    [span] = recorded["ranges"]
    expected = range(span["first_index"], span["last_index"] + 1)
    assert all(v[0] == VERIFY_OK and v[1] == batch_no for v in verdicts), "a record failed"
    assert [v[2] for v in verdicts] == list(expected), "records out of the recorded range"
    print(f"check: {count:,} streamed codes verify and equal the recorded range {span}")


def baseline(scheme: Any, count: int) -> None:
    """The Rust core alone: ``generate`` with PINs and newlines, in steps as the stream does."""
    from app.codes.allocation_stream import STEP

    for threads in (1, None):
        started = time.perf_counter()
        for start in range(0, count, STEP):
            scheme.generate(1, start, min(start + STEP, count), True, None, threads, True)
        took = time.perf_counter() - started
        label = "1 thread" if threads == 1 else "all threads"
        print(f"baseline: Scheme.generate, {label}: {count / took:,.0f} codes/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--check", type=int, default=200_000)
    parser.add_argument("--api-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    args = parser.parse_args()

    from app import embedded
    from app.codes.scheme import record_size, scheme_from_settings
    from app.config import load_settings

    # A database of its own on a shared server (dropped at the end): the shared one is others'.
    admin = os.environ.get("TRACECODE_DATABASE_URL")
    if admin:
        os.environ["TRACECODE_DATABASE_URL"] = embedded.ensure_database(admin, BENCH_DB)
    stack = Stack(count=10, api_cpus=args.api_cpus)
    os.environ.update(stack.env)
    scheme = scheme_from_settings(load_settings())
    try:
        stack.services()
        stack.tracecode("demo", "load")
        stack.start_api()
        stack.wait_ready()
        url, headers = stack.url, login(stack.url)
        printer = printer_id(stack)
        print(f"machine: {machine()}")
        check(url, headers, issue(url, headers, printer, args.check), args.check, scheme)
        variants = {
            "SERIAL,PIN lines": ({}, record_size(scheme, True, True)),
            "SERIAL lines": ({"pins": False}, record_size(scheme, False, True)),
            "encrypted file": ({"format": "file", "passphrase": PASSPHRASE}, 0),
        }
        for name, (extra, size) in variants.items():
            rates = []
            for _ in range(args.runs):
                batch_no = issue(url, headers, printer, args.count)
                body = {"batch_no": batch_no, "count": args.count, **extra}
                got, first, total = stream(url, headers, body, args.client_cpus)
                records = got // size if size else args.count
                assert records == args.count or not size, f"{records} records of {args.count}"
                rates.append(args.count / total)
                print(
                    f"{name}: {args.count:,} codes, {got / 1e6:,.0f} MB in {total:.2f} s "
                    f"(first byte {first * 1000:.0f} ms): {args.count / total:,.0f} codes/s"
                )
            median = sorted(rates)[len(rates) // 2]
            print(f"{name}: best {max(rates):,.0f} codes/s, median {median:,.0f}")
        baseline(scheme, min(args.count, 4_000_000))
        print(f"machine after: {machine()}")
    finally:
        stack.stop()
        if admin:
            embedded.drop_database(admin, BENCH_DB)


if __name__ == "__main__":
    main()
