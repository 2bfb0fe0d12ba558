"""Instructions per request over HTTP: granian under valgrind's callgrind (issue 21).

    .venv/bin/python bench/http_cost.py APP PATH [--requests 3000] [--warm 500]
                                        [--connections 64] [--codes FILE] [--keep FILE]

The API server exactly as ``bench/bench_verify.py`` starts it (``app.cli.server_command``, one
granian worker) runs under ``valgrind --tool=callgrind --trace-children=yes
--instr-atstart=no``. ``APP`` is ``bare`` or ``service`` (factories below: the same apps as
``bench/request_cost.py``, plus two signal handlers in the worker: SIGUSR1 starts
instrumentation and zeroes the counts, SIGUSR2 dumps them; nothing is added to a request). A
client in this process sends ``--warm`` requests, SIGUSR1, ``--requests`` requests over
``--connections`` keep-alive connections (each answer read and checked: 200), SIGUSR2: the
dump holds the worker's instructions over exactly those requests, every thread included —
granian's Rust runtime, the event loop, the app, the log writer. ``PATH``: ``/ping`` or
``/v1/verify`` (codes of ``--codes``, as in request_cost.py; the namespace's counters reset).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.request_cost import (  # noqa: E402
    callgrind_helper,
    for_slow_clock,
    reset_counters,
    verify_bodies,
)

HOST = "127.0.0.1"


ROUNDS: list[int] = []  # the verification rounds' sizes while measured


def _signals() -> None:
    helper = callgrind_helper()

    def start(*_: Any) -> None:
        ROUNDS.clear()
        helper.cg_start()

    def dump(*_: Any) -> None:
        helper.cg_dump()
        if ROUNDS:
            mean = sum(ROUNDS) / len(ROUNDS)
            print(f"rounds: {len(ROUNDS)}, {mean:.1f} verifications each", file=sys.stderr)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump)


def _count_rounds() -> None:
    from app.verify.service import Verifier

    serve = Verifier._serve

    async def counted(self: Verifier, group: list[Any]) -> None:
        ROUNDS.append(len(group))
        await serve(self, group)

    Verifier._serve = counted  # type: ignore[method-assign]


def bare() -> Any:
    """granian factory: bench/bare_app.py with the callgrind signals."""
    from bench.bare_app import create_app

    _signals()
    return create_app()


def service() -> Any:
    """granian factory: app.main.create_app with the callgrind signals."""
    from app.main import create_app

    _signals()
    for_slow_clock()
    _count_rounds()
    return create_app()


async def _connection(
    requests: list[bytes], next_index: list[int], stop: int, stats: dict[str, int]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, int(os.environ["HTTP_COST_PORT"]))
    try:
        while next_index[0] < stop:
            i = next_index[0]
            next_index[0] += 1
            writer.write(requests[i])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            stats[str(status)] = stats.get(str(status), 0) + 1
    finally:
        writer.close()


async def send_all(requests: list[bytes], first: int, n: int, connections: int) -> dict[str, int]:
    next_index, stats = [first], {}
    await asyncio.gather(
        *(_connection(requests, next_index, first + n, stats) for _ in range(connections))
    )
    return stats


def build_requests(path: str, port: int, codes: Path | None) -> list[bytes]:
    host = f"Host: {HOST}:{port}\r\n".encode()
    if path == "/ping":
        return [b"GET /ping HTTP/1.1\r\n" + host + b"\r\n"] * 1_000_000
    assert codes is not None
    return [
        b"POST /v1/verify HTTP/1.1\r\n"
        + host
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        for body in verify_bodies(codes)
    ]


def wait_ready(port: int, log: Path, timeout: float = 600) -> int:
    """The worker's PID, once the server answers."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/ping", timeout=30):
                break
        except OSError:
            time.sleep(1)
    else:
        raise SystemExit(f"the server did not answer; see {log}")
    found = re.findall(r"Spawning worker-1 with PID: (\d+)", log.read_text(errors="replace"))
    return int(found[-1])


def run(args: argparse.Namespace) -> int:
    from app.cli import server_command
    from loadtests.stack import free_port

    port = free_port()
    os.environ["HTTP_COST_PORT"] = str(port)
    requests = build_requests(args.path, port, args.codes)
    if len(requests) < args.warm + args.requests:
        raise SystemExit("not enough codes for warm + requests")
    tmp = Path(tempfile.mkdtemp(prefix="http-cost-"))
    log = tmp / "server.log"
    argv = [*server_command(HOST, port, 1)[:-1], *args.server_flag, f"bench.http_cost:{args.app}"]
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        "--instr-atstart=no",
        f"--callgrind-out-file={tmp}/cg.%p",
        *argv,
    ]
    with open(log, "wb") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        worker = wait_ready(port, log)
        warm = asyncio.run(send_all(requests, 0, args.warm, args.connections))
        os.kill(worker, signal.SIGUSR1)
        time.sleep(2)
        window = time.monotonic()
        if args.idle:  # no requests: what the server does by itself in that time
            time.sleep(args.idle)
            stats = {"200": 0}
        else:
            stats = asyncio.run(send_all(requests, args.warm, args.requests, args.connections))
        os.kill(worker, signal.SIGUSR2)
        args.window = time.monotonic() - window + 2  # from SIGUSR1 to SIGUSR2
        time.sleep(5)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
    if set(stats) != {"200"} or set(warm) != {"200"}:
        raise SystemExit(f"answers other than 200: {stats} (warm-up {warm})")
    return report(tmp, args)


def report(tmp: Path, args: argparse.Namespace) -> int:
    for dump in tmp.glob("cg.*"):
        text = dump.read_text(errors="replace")
        if "Client Request: measured" in text:
            total = int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))  # type: ignore[union-attr]
            if args.keep:
                args.keep.write_text(text)
            for line in (tmp / "server.log").read_text(errors="replace").splitlines():
                if line.startswith("rounds: "):
                    print(line)
            if args.idle:
                print(f"{args.app} idle: {total / args.idle / 1000:.1f}k instructions a second")
                return 0
            print(
                f"{args.app} {args.path} over HTTP: {total:,} instructions over {args.requests}"
                f" requests: {total / args.requests / 1000:.1f}k each; {args.window:.0f} s measured"
                " (the server's own background work, --idle, is counted for that long too)"
            )
            return 0
    raise SystemExit(f"no 'measured' dump in {tmp}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", choices=["bare", "service"])
    parser.add_argument("path", choices=["/ping", "/v1/verify"])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warm", type=int, default=500)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--codes", type=Path)
    parser.add_argument("--keep", type=Path, help="copy the dump here")
    parser.add_argument("--idle", type=float, default=0, help="seconds without requests instead")
    parser.add_argument(
        "--server-flag", action="append", default=[], help="one more granian flag (repeatable)"
    )
    args = parser.parse_args()
    if args.path == "/v1/verify" and (args.app == "bare" or args.codes is None):
        parser.error("/v1/verify needs the service and --codes")
    if args.app == "service":
        reset_counters()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
