"""Verification and /ping throughput against the bare framework's (issues 7 and 21). Prints numbers.

    .venv/bin/python bench/bench_verify.py [--duration 20s] [--slices 5] [--connections 64]
                                           [--count 100000] [--repeat 20] [--profile 20000]
                                           [--no-sched-batch] [--no-hot] [--no-bare]

Targets, with one granian worker and the load generator on the other core, all measured in the
same run at 64 connections:

* issue 21: the service's GET /ping >= 85% of the bare framework's /ping (``bench/bare_app.py``:
  the same Litestar, msgspec, granian and uvloop, one route answering a small Struct, started by
  the service's own server command on the same core); POST /v1/verify >= 60% of the bare
  framework's /ping with p99 <= 15 ms;
* issue 7 (kept beside them): POST /v1/verify >= 50% of the service's own /ping, p99 <= 25 ms.

What it does (loadtests/stack.py): PostgreSQL and Redis (the TRACECODE_*_URL servers, or
embedded ones under var/loadtest), migrations, ``tracecode demo codes --count N`` for activated
demo units, granian with exactly one worker pinned to CPU 0 (``taskset -c 0``) under
SCHED_BATCH, as ``tracecode run`` starts it with ``TRACECODE_SCHED_BATCH=true`` for an API with
a core of its own (``--no-sched-batch``: the default policy, to compare;
``app.cli.batch_scheduling`` says why), a dramatiq worker whose flusher drains the verification
record queue into PostgreSQL, and a verification rate
limit high enough for one client address, and the bare app (``--no-bare`` leaves it out). A
short warm-up of each endpoint (verification on codes kept apart from the measured ones), then
``taskset -c 1 wrk -t1 -c64 --latency`` against the bare /ping, the service's GET /ping and
POST /v1/verify in alternating slices (``--slices``, 5 of 4 s each by default), so that every
endpoint sees the same machine: a shared host's speed drifts by tens of percent within
seconds. Requests/s are over all slices of an endpoint, percentiles of the merged latency
distribution (each slice's 1000 quantiles weighted by its requests). POST /v1/verify uses
loadtests/verify.lua: the right PIN of each code, the next code of the slice's own part of the
file for a first query, or with ``--repeat`` percent a recently verified code again.
After the run it waits for the record queue to drain and counts the rows the run left in
``verifications``: every answered request must have its record (write-behind, never lost).
PostgreSQL, Redis and the flusher run on the load generator's core (``--services-cpu``, 1 by
default; with ``TRACECODE_*_URL`` servers they are not this script's to pin): the API's core is
the API's, as it would be on a server of its own.
A supplementary run (``--no-hot`` skips it) verifies the codes the measured run verified first
once more: repeat queries only (their counters exist; the unit state is read as for any other).

``--profile N``: afterwards, N requests of each endpoint through the ASGI app in this process
(no HTTP server, 64 at a time, same Redis and PostgreSQL) under pyinstrument (cProfile when
pyinstrument is not installed): the Python cost per request and where it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.stack import HOST, Stack  # noqa: E402  (after the path is set)

LUA_VERIFY = ROOT / "loadtests" / "verify.lua"
LUA_SUMMARY = ROOT / "loadtests" / "summary.lua"
WARM_CODES = 3000  # the file's last codes: warm-up only, never measured
BARE_TARGET = "bench.bare_app:create_app"  # the bare-framework baseline (issue 21)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_state() -> str:
    def run(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    head = run("rev-parse", "--short", "HEAD") or "unknown"
    dirty = run("status", "--porcelain", "--", "app", "workers")
    return head + (" (app/ or workers/ has uncommitted changes)" if dirty else "")


def wrk(
    url: str,
    duration: str,
    connections: int,
    cpu: str | None,
    script: Path,
    env: dict[str, str],
    server: int | None = None,
) -> dict[str, float]:
    """One wrk run; the numbers of its ``wrk-summary`` and ``wrk-results`` lines, and with
    ``server`` (a process id) the CPU time it and its children used meanwhile (``server_cpu_s``)
    and each CPU's busy and stolen time (``cpuN_busy_s``, ``cpuN_steal_s``): whether the API's
    core was the limit."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}", "--latency", "-s", str(script), url]
    if cpu is not None:
        argv = ["taskset", "-c", cpu, *argv]
    before = cpu_times(server) if server else None
    processes = process_cpu(server) if server else None
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr[-2000:]}")
    numbers: dict[str, Any] = {}
    if before is not None and server:
        after = cpu_times(server)
        numbers.update({k: after[k] - before[k] for k in before})
        if processes is not None:
            now = process_cpu(server)
            numbers.update({f"proc_{k}_s": now[k] - processes.get(k, 0.0) for k in now})
    for line in done.stdout.splitlines():
        if line.startswith(("wrk-summary ", "wrk-results ")):
            for key, value in re.findall(r"(\w+)=([\d.]+)", line):
                numbers[key] = float(value)
        elif line.startswith("wrk-quantiles "):
            numbers["quantiles"] = [float(v) for v in line.split(" ", 1)[1].split(",")]
    if "rps" not in numbers or "quantiles" not in numbers:
        raise RuntimeError(f"no wrk-summary/wrk-quantiles lines in:\n{done.stdout}\n{done.stderr}")
    numbers["errors"] = sum(
        numbers.get(k, 0) for k in ("connect", "read", "write", "status", "timeout")
    )
    return numbers


def cpu_times(pid: int) -> dict[str, float]:
    """Seconds of CPU used by ``pid`` and its descendants (``server_cpu_s``), and each CPU's
    busy and stolen seconds since boot (/proc/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    pids, seen = [pid], 0
    while seen < len(pids):
        found = subprocess.run(["pgrep", "-P", str(pids[seen])], capture_output=True, text=True)
        pids += [int(p) for p in found.stdout.split()]
        seen += 1
    used = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    times = {"server_cpu_s": used}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, values[:8])
            times[f"{name}_busy_s"] = (user + nice + system + irq + softirq) / tick
            times[f"{name}_steal_s"] = steal / tick
    return times


def process_cpu(api: int | None) -> dict[str, float]:
    """Seconds of CPU used so far by every process on the machine, by kind: the API (``api``
    and its descendants), wrk, PostgreSQL, Redis, the worker (the flusher) and the rest —
    where a verification's CPU goes, all of it, not only the API's."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, rest = (entry / "stat").read_text().rsplit(")", 1)
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = rest.split()
        comm = head.split("(", 1)[1]
        kind = (
            "wrk"
            if comm == "wrk"
            else "postgres"
            if comm.startswith("postgres") or "postgres" in cmd.split(" ", 1)[0]
            else "redis"
            if comm.startswith("redis")
            else "worker"
            if "dramatiq" in cmd
            else "other"
        )
        stats[int(entry.name)] = (int(fields[1]), kind, (int(fields[11]) + int(fields[12])) / tick)
    in_api = set()
    if api:
        in_api.add(api)
        grew = True
        while grew:
            grew = False
            for pid, (parent, _, _) in stats.items():
                if parent in in_api and pid not in in_api:
                    in_api.add(pid)
                    grew = True
    used: dict[str, float] = {}
    for pid, (_, kind, seconds) in stats.items():
        kind = "api" if pid in in_api else kind
        used[kind] = used.get(kind, 0.0) + seconds
    return used


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several wrk runs of one endpoint as one: counts added, requests/s over the runs' time,
    percentiles of the merged latency distribution (each run's 1000 quantiles, weighted by its
    requests)."""
    total: dict[str, Any] = {}
    for run in runs:
        for key, value in run.items():
            if key not in ("quantiles", "rps") and not key.endswith("_ms"):
                total[key] = total.get(key, 0) + value
    total["rps"] = total["requests"] / total["seconds"]
    points = sorted(
        (q, run["requests"] / len(run["quantiles"])) for run in runs for q in run["quantiles"]
    )

    def percentile(p: float) -> float:
        want, seen = total["requests"] * p / 100, 0.0
        for value, weight in points:
            seen += weight
            if seen >= want:
                return value
        return points[-1][0]

    for p in (50, 90, 99):
        total[f"p{p}_ms"] = percentile(p)
    total["max_ms"] = max(run["max_ms"] for run in runs)
    total["slices"] = len(runs)
    return total


class QueueWatch(threading.Thread):
    """Samples the length of the verification record queue every 0.5 s: the rounds whose records
    wait to be stored (write-behind lag; a round's records are one list element)."""

    def __init__(self, redis_url: str, key: str) -> None:
        super().__init__(daemon=True)
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.key = key
        self.peak = 0
        self.stop = threading.Event()

    def length(self) -> int:
        return int(self.client.llen(self.key))

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.peak = max(self.peak, self.length())

    def drain(self, timeout: float = 120) -> float:
        """Seconds until the queue is empty (raises after ``timeout``)."""
        started = time.monotonic()
        while self.length() > 0:
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the record queue still holds {self.length()} rounds")
            time.sleep(0.2)
        return time.monotonic() - started


def parse_seconds(duration: str) -> int:
    """wrk's duration syntax: 20, 20s, 2m."""
    match = re.fullmatch(r"(\d+)([sm]?)", duration)
    if not match:
        raise SystemExit(f"bad duration: {duration}")
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def count_records(db_url: str, since: datetime, until: datetime) -> dict[str, int]:
    import psycopg

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT result, count(*) FROM verifications WHERE at >= %s AND at < %s GROUP BY 1",
            (since, until),
        ).fetchall()
    return {str(result): int(n) for result, n in rows}


def show(name: str, r: dict[str, float]) -> None:
    print(
        f"  {name:<16} {r['rps']:>9,.1f} req/s   p50 {r['p50_ms']:7.2f} ms"
        f"   p90 {r['p90_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   max {r['max_ms']:7.2f} ms"
        f"   requests {int(r['requests']):,}   errors {int(r['errors'])}"
    )
    if "server_cpu_s" in r:
        cpus = sorted(k[3:-7] for k in r if k.startswith("cpu") and k.endswith("_busy_s"))
        print(
            f"  {'':<16} server CPU {100 * r['server_cpu_s'] / r['seconds']:.0f}% of a core; "
            + ", ".join(
                f"CPU {n} busy {100 * r[f'cpu{n}_busy_s'] / r['seconds']:.0f}%"
                f" (stolen {100 * r[f'cpu{n}_steal_s'] / r['seconds']:.0f}%)"
                for n in cpus
            )
        )
    kinds = sorted(k[5:-2] for k in r if k.startswith("proc_") and k.endswith("_s"))
    if kinds:
        per = {k: 1e6 * r[f"proc_{k}_s"] / r["requests"] for k in kinds}
        print(
            f"  {'':<16} CPU per request, every process: {sum(per.values()):.0f} µs ("
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]))
            + ")"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", default="20s", help="measured time per endpoint (20s)")
    parser.add_argument("--slices", type=int, default=5, help="alternating runs per endpoint")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--count", type=int, default=100_000, help="activated codes to prepare")
    parser.add_argument("--repeat", type=int, default=20, help="percent of repeat queries")
    parser.add_argument("--warmup", default="3s", help="warm-up run of each endpoint")
    parser.add_argument("--api-cpu", default="0", help="taskset CPU of granian (one worker)")
    parser.add_argument("--wrk-cpu", default="1", help="taskset CPU of wrk")
    parser.add_argument(
        "--services-cpu",
        default="1",
        help="CPU of the embedded PostgreSQL, Redis and the flusher ('' leaves them unpinned)",
    )
    parser.add_argument(
        "--no-sched-batch",
        dest="sched_batch",
        action="store_false",
        help="run the API under the default scheduling policy instead of SCHED_BATCH",
    )
    parser.add_argument("--profile", type=int, default=0, help="requests per endpoint profiled")
    parser.add_argument(
        "--no-hot",
        dest="hot",
        action="store_false",
        help="skip the supplementary run of repeat queries over already verified codes",
    )
    parser.add_argument("--codes", type=Path, help="an existing codes file instead of the CLI's")
    parser.add_argument(
        "--no-bare",
        dest="bare",
        action="store_false",
        help="leave out the bare-framework baseline (bench/bare_app.py)",
    )
    args = parser.parse_args()

    print(
        f"machine: nproc {os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}, "
        f"commit {git_state()}, load average before {os.getloadavg()[0]:.2f} "
        "(other work on the machine skews the numbers)"
    )
    services = args.services_cpu or None
    stack = Stack(
        count=args.count,
        codes_file=args.codes,
        # codes of an earlier run are in the named database: use it (else one of its own)
        own_database=False if args.codes else None,
        api_cpus=args.api_cpu,
        worker_cpus=services,
        services_cpus=services,
        sched_batch=args.sched_batch,
    )
    stack.make_codes = args.codes is None
    log_level = stack.env.get("TRACECODE_LOG_LEVEL", "INFO")
    started = time.monotonic()
    with stack:
        print(
            f"stack: granian 1 worker on CPU {args.api_cpu} "
            f"({'SCHED_BATCH' if args.sched_batch else 'default scheduling policy'}) at "
            f"{stack.url}, wrk on CPU "
            f"{args.wrk_cpu}, embedded PostgreSQL, Redis and the flusher on CPU "
            f"{services or 'any (unpinned)'}, log level {log_level} "
            f"(API log: {stack.log_dir / 'api.log'}), ready in {time.monotonic() - started:.1f} s"
        )
        bare_url = stack.start_server("bare", BARE_TARGET) + "/ping" if args.bare else None
        api_pid, bare_pid = stack.children[0].pid, stack.children[-1].pid
        if bare_url:
            print(f"bare framework: {BARE_TARGET} under the same server command at {bare_url}")
        lines = stack.codes_file.read_text().splitlines()
        print(f"codes: {len(lines):,} activated units in {stack.codes_file}")
        measured, warm = stack.var / "bench-codes.csv", stack.var / "bench-warm.csv"
        measured.write_text("\n".join(lines[:-WARM_CODES]) + "\n")
        warm.write_text("\n".join(lines[-WARM_CODES:]) + "\n")
        env = {**os.environ, "WRK_THREADS": "1", "WRK_REPEAT": str(args.repeat)}
        ping_url, verify_url = f"{stack.url}/ping", f"{stack.url}/v1/verify"
        assert ping_url.startswith(f"http://{HOST}:")
        queue_key = f"{stack.env['TRACECODE_REDIS_NAMESPACE']}:verif:queue"
        watch = QueueWatch(stack.env["TRACECODE_REDIS_URL"], queue_key)
        db_url = stack.env["TRACECODE_DATABASE_URL"]

        c, cpu = args.connections, args.wrk_cpu
        if bare_url:
            wrk(bare_url, args.warmup, c, cpu, LUA_SUMMARY, env)
        wrk(ping_url, args.warmup, c, cpu, LUA_SUMMARY, env)
        wrk(verify_url, args.warmup, c, cpu, LUA_VERIFY, {**env, "WRK_CODES": str(warm)})
        watch.drain()

        # Alternate short slices of the two endpoints, so that both see the same machine (its
        # speed drifts by tens of percent within seconds on a shared host); each verify slice
        # takes fresh codes of its own.
        seconds = parse_seconds(args.duration)
        slice_s = max(seconds // args.slices, 1)
        codes = lines[:-WARM_CODES]
        chunk = len(codes) // args.slices
        bares: list[dict[str, Any]] = []
        pings, verifies = [], []
        since = datetime.now(UTC)
        watch.start()
        for k in range(args.slices):
            if bare_url:
                bares.append(wrk(bare_url, f"{slice_s}s", c, cpu, LUA_SUMMARY, env, bare_pid))
            pings.append(wrk(ping_url, f"{slice_s}s", c, cpu, LUA_SUMMARY, env, api_pid))
            part = stack.var / f"bench-codes-{k}.csv"
            part.write_text("\n".join(codes[k * chunk : (k + 1) * chunk]) + "\n")
            part_env = {**env, "WRK_CODES": str(part)}
            verifies.append(wrk(verify_url, f"{slice_s}s", c, cpu, LUA_VERIFY, part_env, api_pid))
        until = datetime.now(UTC) + timedelta(seconds=2)  # requests in flight when wrk stopped
        watch.stop.set()
        drained = watch.drain()
        records = count_records(db_url, since, until)
        ping, verify = merge(pings), merge(verifies)

        ratio = verify["rps"] / ping["rps"]
        print(
            f"\nwrk -t1 -c{c} --latency (taskset -c {cpu}), {args.slices} slices of {slice_s} s "
            f"per endpoint, alternating; {args.repeat}% repeat queries:"
        )
        print(
            "  slices, verify/ping requests/s: "
            + ", ".join(f"{v['rps'] / p['rps']:.2f}" for p, v in zip(pings, verifies, strict=True))
        )
        bare = merge(bares) if bares else None
        if bare:
            print(
                "  slices, requests/s bare · ping · verify: "
                + ", ".join(
                    f"{b['rps']:,.0f} · {p['rps']:,.0f} · {v['rps']:,.0f}"
                    for b, p, v in zip(bares, pings, verifies, strict=True)
                )
            )
            show("bare GET /ping", bare)
        show("GET /ping", ping)
        show("POST /v1/verify", verify)
        answered = int(verify["requests"])
        print(
            f"  verify answers: genuine {int(verify['genuine']):,}, suspicious "
            f"{int(verify['suspicious']):,}, other {int(verify['other']):,}, "
            f"non-200 {int(verify['http_errors']):,}"
        )
        ok_ratio, ok_p99 = ratio >= 0.5, verify["p99_ms"] <= 25
        print(
            f"\nverify / ping throughput: {ratio:.3f} "
            f"(issue 7 target >= 0.5: {'met' if ok_ratio else 'MISSED'})"
        )
        print(
            f"verify p99 at {c} connections: {verify['p99_ms']:.2f} ms "
            f"(issue 7 target <= 25 ms: {'met' if ok_p99 else 'MISSED'}; "
            f"issue 21 target <= 15 ms: {'met' if verify['p99_ms'] <= 15 else 'MISSED'})"
        )
        if bare:
            ok_ratio = report_bare(bare, ping, verify) and ok_ratio  # printed either way
        stored = sum(records.values())
        lost = max(answered - stored, 0)
        print(
            f"records: {answered:,} verify requests answered, {stored:,} rows in verifications "
            f"({', '.join(f'{k} {v:,}' for k, v in sorted(records.items()))}); queue peak "
            f"{watch.peak:,} rounds, drained {drained:.1f} s after wrk; "
            + ("none lost" if lost == 0 else f"{lost:,} MISSING")
            + (
                f" ({stored - answered} more rows than answers: requests in flight at the end)"
                if stored > answered
                else ""
            )
        )
        if args.hot:
            # Supplementary: the codes the measured slices verified first, again: repeat queries.
            verified = []
            for k, run in enumerate(verifies):
                reached = int(run["requests"] * (100 - args.repeat) / 100 * 0.95)
                verified += codes[k * chunk : k * chunk + min(reached, chunk)]
            reached = len(verified)
            hot = stack.var / "bench-hot.csv"
            hot.write_text("\n".join(verified or codes[:1]) + "\n")
            again = wrk(
                verify_url,
                args.duration,
                c,
                cpu,
                LUA_VERIFY,
                {**env, "WRK_CODES": str(hot), "WRK_REPEAT": "0"},
            )
            print(f"\nsupplementary: {reached:,} verified codes again (repeat queries only):")
            show("POST /v1/verify", again)
            print(
                f"  repeat-query verify / ping: {again['rps'] / ping['rps']:.3f}; answers: genuine "
                f"{int(again['genuine']):,}, suspicious {int(again['suspicious']):,}, "
                f"other {int(again['other']):,}, non-200 {int(again['http_errors']):,}"
            )
            watch.drain()
        print(f"load average after the runs: {os.getloadavg()[0]:.2f}")
        if args.profile:
            profile(stack.env, args.profile, measured)
    return 0 if ok_ratio and ok_p99 and lost == 0 else 1


def report_bare(bare: dict[str, Any], ping: dict[str, Any], verify: dict[str, Any]) -> bool:
    """The issue 21 ratios against the bare framework; True when every target is met."""
    ping_ratio, verify_ratio = ping["rps"] / bare["rps"], verify["rps"] / bare["rps"]
    ok_ping, ok_verify = ping_ratio >= 0.85, verify_ratio >= 0.6 and verify["p99_ms"] <= 15
    print(
        f"ping / bare throughput: {ping_ratio:.3f} "
        f"(issue 21 target >= 0.85: {'met' if ok_ping else 'MISSED'}); p99 "
        f"{ping['p99_ms']:.2f} ms against {bare['p99_ms']:.2f} ms"
    )
    print(
        f"verify / bare throughput: {verify_ratio:.3f} (issue 21 target >= 0.6 with p99 <= 15 ms: "
        f"{'met' if ok_verify else 'MISSED'})"
    )
    return ok_ping and ok_verify


# -- in-process profile -----------------------------------------------------------------------


async def _asgi_call(app: Any, method: str, path: str, body: bytes = b"") -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _profiled(n: int, lines: list[str]) -> None:
    from app.main import create_app

    app = create_app()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    bodies = []
    for line in lines[-n:]:  # codes the HTTP run most likely did not reach
        serial, pin = line.split(",")[:2]
        bodies.append(f'{{"serial":"{serial}","pin":"{pin}","lang":"en"}}'.encode())

    async def many(make: Any) -> float:
        sem = asyncio.Semaphore(64)
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            async with sem:
                status = await make(i)
                if status != 200:
                    raise RuntimeError(f"status {status}")

        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - t0

    await many(lambda i: _asgi_call(app, "GET", "/ping"))  # warm
    for name, make in (
        ("GET /ping", lambda i: _asgi_call(app, "GET", "/ping")),
        ("POST /v1/verify", lambda i: _asgi_call(app, "POST", "/v1/verify", bodies[i])),
    ):
        profiler = Profile()
        profiler.start()
        seconds = await many(make)
        profiler.stop()
        print(f"\n== in-process {name}: {n} requests, {1e6 * seconds / n:.0f} µs each (profiled)")
        profiler.show()
    await inbox.put({"type": "lifespan.shutdown"})
    await outbox.get()
    await lifespan


class Profile:
    """pyinstrument when installed, else cProfile (top 30 by cumulative time)."""

    def __init__(self) -> None:
        try:
            from pyinstrument import Profiler

            self.kind, self.p = "pyinstrument", Profiler(interval=0.0005, async_mode="disabled")
        except ImportError:
            import cProfile

            self.kind, self.p = "cProfile", cProfile.Profile()

    def start(self) -> None:
        self.p.enable() if self.kind == "cProfile" else self.p.start()

    def stop(self) -> None:
        self.p.disable() if self.kind == "cProfile" else self.p.stop()

    def show(self) -> None:
        if self.kind == "cProfile":
            import pstats

            pstats.Stats(self.p).sort_stats("cumulative").print_stats(30)
        else:
            print(self.p.output_text(unicode=True, color=False, show_all=False, timeline=False))


def profile(env: dict[str, str], n: int, codes: Path) -> None:
    """Profile the app in this process; its access log goes to /dev/null (still formatted)."""
    import logging

    saved, stderr = dict(os.environ), sys.stderr
    os.environ.update(env)
    try:
        with open(os.devnull, "w") as null:
            sys.stderr = null  # configure_logging() binds the handler to sys.stderr
            try:
                asyncio.run(_profiled(n, codes.read_text().splitlines()))
            finally:
                sys.stderr = stderr
                logging.getLogger().handlers.clear()
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    sys.exit(main())
