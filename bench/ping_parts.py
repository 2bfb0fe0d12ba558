"""Where the service's ``/ping`` loses to the bare framework's, over HTTP (issue 21, item 2).

    .venv/bin/python bench/ping_parts.py [--slices 5] [--seconds 4] [--connections 64]

Starts, under the API's own server command (granian, one worker, on CPU 0 under SCHED_BATCH, as
``bench/bench_verify.py`` does), the bare framework (``bench/bare_app.py``) and variants of the
service, each in a process of its own, then runs ``wrk -t1 -c64`` on CPU 1 against each
``GET /ping`` in alternating slices (one process busy at a time) and prints each one's rate, p99
and its ratio to the bare framework's:

* ``service``: the service as ``tracecode run`` starts it;
* ``service, after a full GC``: the service as it is once it has run a while — the app
  calls ``gc.freeze()`` at start-up, and the first full collection of the cyclic GC after it
  (verification traffic makes one within its first seconds: every ``bench_verify`` ``/ping``
  slice comes after one) leaves every later request a few percent dearer (bench/RESULTS.md);
* ``service, no access log``: ``TRACECODE_ACCESS_LOG_SAMPLE=0`` (no line for an answer < 400);
* ``service, no request layer``: the same app entered through Litestar's own ``__call__``,
  without ``app/front.py`` (no request id, metrics, access log, edge check) — what the request
  layer costs over HTTP, against the Litestar app itself.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_verify import LUA_SUMMARY, cpu_model, git_state, wrk  # noqa: E402
from loadtests.stack import Stack  # noqa: E402

VARIANTS = {
    "bare framework": "bench.bare_app:create_app",
    "service": "bench.ping_parts:service",
    "service, after a full GC": "bench.ping_parts:service_after_full_collection",
    "service, no access log": "bench.ping_parts:service_without_access_log",
    "service, no request layer": "bench.ping_parts:service_without_front",
}


def service() -> Any:
    from app.main import create_app

    return create_app()


def service_after_full_collection() -> Any:
    app = service()
    app.on_startup.append(lambda: gc.collect())  # after the lifespan's gc.freeze()
    return app


def service_without_access_log() -> Any:
    os.environ["TRACECODE_ACCESS_LOG_SAMPLE"] = "0"
    return service()


def service_without_front() -> Any:
    from litestar import Litestar

    app = service()

    async def litestar_only(scope: Any, receive: Any, send: Any) -> None:
        await Litestar.__call__(app, scope, receive, send)

    return litestar_only


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    print(
        f"machine: nproc {os.cpu_count()}, {cpu_model()}, commit {git_state()}, "
        f"load average before {os.getloadavg()[0]:.2f}"
    )
    stack = Stack(count=0, api_cpus="0", services_cpus="1", worker_cpus="1", sched_batch=True)
    stack.make_codes = False
    with stack:
        urls = {
            name: stack.start_server(f"v{i}", t) for i, (name, t) in enumerate(VARIANTS.items())
        }
        env = dict(os.environ)
        for url in urls.values():  # warm-up
            wrk(url + "/ping", "2s", args.connections, "1", LUA_SUMMARY, env)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        for _ in range(args.slices):
            for name, url in urls.items():
                one = wrk(
                    url + "/ping", f"{args.seconds}s", args.connections, "1", LUA_SUMMARY, env
                )
                runs[name].append(one)
    bare = sum(r["rps"] for r in runs["bare framework"])
    print(
        f"wrk -t1 -c{args.connections} on CPU 1, "
        f"{args.slices} alternating slices of {args.seconds} s"
    )
    for name, slices in runs.items():
        rps = sum(r["rps"] for r in slices)
        each = ", ".join(f"{r['rps']:,.0f}" for r in slices)
        print(
            f"  {name:26} {rps / len(slices):>7,.0f} req/s  to bare {rps / bare:.3f}  "
            f"worst slice p99 {max(r['p99_ms'] for r in slices):.2f} ms  (slices {each})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
