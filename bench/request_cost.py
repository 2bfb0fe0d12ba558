"""Instructions per request, in process, counted by valgrind's callgrind (issue 21).

    .venv/bin/python bench/request_cost.py APP PATH [--requests 3000] [--warm 300] [--inflight 64]
                                           [--codes FILE] [--callgrind | --calls 40]

``APP``: ``bare`` (``bench/bare_app.py``), ``service`` (``app.main.create_app``, its lifespan run:
PostgreSQL, Redis and a master key from the ``TRACECODE_*`` environment) or ``service-nofront``
(the same app entered through Litestar's own ``__call__``, without the request layer of
``app/front.py``). ``PATH``: ``/ping`` (GET) or ``/v1/verify`` (POST; a first query with the
right PIN for each line of ``--codes``, a ``tracecode demo codes`` file; the namespace's query
counters, lockouts and rate windows are reset first, so every run asks the same questions; set
``TRACECODE_VERIFY_RATE_LIMIT`` high, e.g. 10000000, or one address's queries are refused 429
after a few hundred).

Requests go through the app's ``__call__`` as granian hands them over: the scope granian 2.8
builds (captured from a real request), one task per request, ``--inflight`` at a time (64: the
verification rounds fill as they do at 64 connections), answers checked (200).

``--callgrind``: the script runs itself under ``valgrind --tool=callgrind --instr-atstart=no``;
instrumentation starts after the warm-up, stats are zeroed, the measured requests run, and the
stats are dumped (client requests of ``valgrind/callgrind.h``, from a small C helper compiled
here with ``cc``): every thread's instructions (the log writer's too) over the measured requests
only, printed as instructions per request. Deterministic up to a few tenths of a percent.
``--calls N``: instead, the Python functions called per request (``sys.setprofile``), the top N.
Without either: microseconds per request (noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_HELPER_C = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void cg_dump(void) { CALLGRIND_DUMP_STATS_AT("measured"); CALLGRIND_STOP_INSTRUMENTATION; }
"""


def callgrind_helper() -> Any:
    """The C helper of the callgrind client requests (no-ops outside valgrind)."""
    out = Path(tempfile.gettempdir()) / f"tracecode-cgreq-{os.getuid()}.so"
    if not out.exists():
        src = out.with_suffix(".c")
        src.write_text(_HELPER_C)
        subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return ctypes.CDLL(str(out))


def scope_of(method: str, path: str, body: bytes) -> dict[str, Any]:
    """A scope as granian 2.8.9 builds it for a wrk request (wrk sends Host only)."""
    headers = [(b"host", b"127.0.0.1:8000")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "extensions": {"http.response.pathsend": {}, "websocket.http.response": {}},
        "type": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", "8000"),
        "client": ("127.0.0.1", "40000"),
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "method": method,
        "root_path": "",
        "state": {},
    }


async def call(app: Any, method: str, path: str, body: bytes) -> None:
    """One request through ``app``; raises unless it answered 200. Like granian, the first
    ``receive`` of a POST gives the body with ``more_body`` true, the second an empty end."""
    scope = scope_of(method, path, body)
    messages = [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.request", "body": body, "more_body": bool(body)},
    ]
    status = 0

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # a disconnect would come here; never in this driver
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"{method} {path} answered {status}")


def verify_bodies(codes: Path) -> list[bytes]:
    bodies = []
    for line in codes.read_text().splitlines():
        serial, pin = line.split(",")[:2]
        bodies.append(b'{"serial":"%s","pin":"%s","lang":"en"}' % (serial.encode(), pin.encode()))
    return bodies


def reset_counters() -> None:
    """Forget the namespace's query counts, lockouts and rate windows, and the record queue (a
    single Redis, or a cluster's keys one by one)."""
    from app.redisconn import connect_sync, is_cluster

    url = os.environ.get("TRACECODE_REDIS_URL")
    if not url:  # the service's own, as its other TRACECODE_* settings (a KeyError was all)
        sys.exit("set TRACECODE_REDIS_URL (and TRACECODE_DATABASE_URL) to the service's own")
    client = connect_sync(url)
    ns = os.environ.get("TRACECODE_REDIS_NAMESPACE", "tracecode")
    step = 1 if is_cluster(client) else 5000  # a cluster's DEL takes keys of one slot
    try:
        for part in ("q", "lock", "pinfail", "rl", "clientlock", "clientfail", "verif:queue"):
            keys = list(client.scan_iter(match=f"{ns}:{part}*", count=5000))
            for i in range(0, len(keys), step):
                client.delete(*keys[i : i + step])
    finally:
        client.close()


async def run(app: Any, make: Callable[[int], Any], first: int, n: int, inflight: int) -> None:
    """Requests ``first`` .. ``first + n - 1``, ``inflight`` tasks at a time."""
    for start in range(first, first + n, inflight):
        await asyncio.gather(*(make(i) for i in range(start, min(start + inflight, first + n))))


async def lifespan(app: Any) -> tuple[asyncio.Task[None], Any]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return task, stop


def for_slow_clock() -> None:
    """Callgrind runs the app ~50 times slower, while clocks run on: a round's reply can wait
    seconds for the event loop to read it, and the verifier's 5-second batch cache would expire
    every few hundred requests instead of every ~50,000. The app's Redis client gets a
    10-minute socket timeout instead of 2 s, the batch cache a day (the same code paths)."""
    from redis.asyncio import Redis

    import app.main
    import app.verify.service

    class SlowRedis:
        @staticmethod
        def from_url(url: str, **options: Any) -> Redis:
            return Redis.from_url(url, **{**options, "socket_timeout": 600})

    app.main.Redis = SlowRedis  # type: ignore[assignment,misc]
    app.verify.service.BATCH_TTL = 86400.0


def build(name: str) -> Any:
    if name == "bare":
        from bench.bare_app import create_app

        return create_app()
    from litestar import Litestar

    from app.main import create_app

    for_slow_clock()
    app = create_app()
    if name == "service-nofront":
        return lambda scope, receive, send: Litestar.__call__(app, scope, receive, send)
    return app


async def measure(args: argparse.Namespace) -> None:
    app = build(args.app)
    target = getattr(app, "__self__", app)
    stop = None
    if args.app != "bare":
        _, stop = await lifespan(app if hasattr(app, "asgi_router") else target)
    if args.path == "/v1/verify":
        bodies = verify_bodies(args.codes)
        if len(bodies) < args.warm + args.requests:
            raise SystemExit(f"{args.codes} holds {len(bodies)} codes; need warm + requests")

        def make(i: int) -> Any:
            return call(app, "POST", "/v1/verify", bodies[i])
    else:

        def make(i: int) -> Any:
            return call(app, "GET", args.path, b"")

    await run(app, make, 0, args.warm, args.inflight)
    n, helper, counter = args.requests, None, None
    if args.callgrind_child:
        helper = callgrind_helper()
        helper.cg_start()
    elif args.calls:
        counter = collections.Counter()
        sys.setprofile(_counting(counter))
    started = time.perf_counter()
    await run(app, make, args.warm, n, args.inflight)
    seconds = time.perf_counter() - started
    if helper is not None:
        helper.cg_dump()
    sys.setprofile(None)
    if counter is not None:
        show_calls(counter, n, args.calls)
    else:
        print(f"{args.app} {args.path}: {n} requests, {1e6 * seconds / n:.1f} µs each (wall)")
    if stop is not None:
        await stop()


def _counting(counter: collections.Counter[str]) -> Any:
    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            counter[f"{code.co_filename.rsplit('site-packages/', 1)[-1]}:{code.co_qualname}"] += 1
        elif event == "c_call":
            counter[f"<c> {getattr(arg, '__qualname__', repr(arg))}"] += 1

    return profile


def show_calls(counter: collections.Counter[str], n: int, top: int) -> None:
    python = sum(v for k, v in counter.items() if not k.startswith("<c>"))
    builtin = sum(v for k, v in counter.items() if k.startswith("<c>"))
    print(f"Python calls per request {python / n:.1f}, C calls {builtin / n:.1f}")
    for name, calls in counter.most_common(top):
        print(f"  {calls / n:7.2f}  {name}")


def under_callgrind(argv: list[str], requests: int, keep: Path | None) -> None:
    """Run this script again under callgrind; print the instructions per measured request."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            *argv,
            "--callgrind-child",
        ]
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        totals = []
        for dump in sorted(Path(tmp).glob("callgrind.out*")):
            text = dump.read_text(errors="replace")
            if "Client Request: measured" in text:
                if keep is not None:
                    keep.write_text(text)
                totals += [
                    int(line.split()[1])
                    for line in text.splitlines()
                    if line[:7] in ("summary", "totals:")
                ]
    if not totals:
        raise SystemExit("callgrind wrote no 'measured' dump")
    total = max(totals)
    print(f"{total:,} instructions over {requests} requests: {total / requests / 1000:.1f}k each")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", choices=["bare", "service", "service-nofront"])
    parser.add_argument("path", choices=["/ping", "/v1/verify"])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warm", type=int, default=300)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--codes", type=Path, help="tracecode demo codes lines (for /v1/verify)")
    parser.add_argument("--callgrind", action="store_true", help="instructions per request")
    parser.add_argument("--calls", type=int, default=0, help="top N Python functions called")
    parser.add_argument("--keep", type=Path, help="with --callgrind: copy the dump here")
    parser.add_argument("--callgrind-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.path == "/v1/verify":
        if args.app == "bare" or args.codes is None:
            parser.error("/v1/verify needs a service app and --codes")
    if args.app != "bare":
        reset_counters()
    if args.callgrind:
        child = [a for a in argv if a != "--callgrind"]
        if args.keep is not None:
            i = child.index("--keep")
            del child[i : i + 2]
        under_callgrind(child, args.requests, args.keep)
        return 0
    gc.collect()
    try:
        import uvloop  # as granian runs the apps ("auto": uvloop when installed)

        uvloop.run(measure(args))
    except ImportError:
        asyncio.run(measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
