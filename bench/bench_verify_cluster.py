"""Verification on a Redis Cluster against a single Redis, side by side (issue 20). Prints numbers.

    .venv/bin/python bench/bench_verify_cluster.py [--duration 12s] [--slices 3]
                                                   [--connections 64] [--count 400000]
                                                   [--repeat 20]

Target (issue 20, "Targets"): POST /v1/verify on one API process against a Redis Cluster reaches
>= 90% of the same process against a single Redis, measured in one run.

What it does: ``loadtests/stack.py``'s stack as ``bench/bench_verify.py`` runs it (PostgreSQL and
one Redis — the TRACECODE_*_URL servers or embedded ones under var/loadtest, moved to
``--services-cpu`` —, migrations, ``tracecode demo codes``, granian with one worker on
``--api-cpu`` under SCHED_BATCH, a dramatiq worker whose flusher drains the record queue); then a
local Redis Cluster of three masters and three replicas from the project's redis-server
(``tests/redis_cluster_support.py``, the cluster the tests use; its six servers moved to
``--services-cpu`` too), a second granian worker on the same API core with
``TRACECODE_REDIS_URL=redis+cluster://…``, and its own dramatiq worker on RabbitMQ (a cluster
needs ``TRACECODE_BROKER_URL``: README "Redis Cluster"; a virtual host of this run's own on
``--amqp``, deleted at the end) whose flusher drains the cluster's 24 record queues.

Each variant gets a warm-up on codes of its own, then ``taskset -c 1 wrk -t1 -c64 --latency``
with loadtests/verify.lua against the two APIs' /v1/verify in alternating slices (``--slices``
per variant, ``--duration`` split among them), every slice on fresh codes of its own: both
variants see the same machine (a shared host's speed drifts by tens of percent within seconds).
After each slice its variant's record queue is drained before the next slice starts, so that
neither variant's flushing runs in the other's slice (the single Redis's flusher, behind at the
end of its slice, used to take the services' core during the cluster's); how long the backlogs
took is printed.
Requests/s are over all slices of a variant, percentiles of the merged latency distribution
(``bench_verify.merge``). The CPU time each API process used in its slices (``bench_verify.wrk``
with ``server``) is printed per request: where other work takes the API's core too, the ratio
of those costs says what the API's core alone would give; so is the CPU of every process by
kind (API, Redis, PostgreSQL, the flusher's worker; "not this run's": every other process on
the machine, RabbitMQ included — a second cluster beside this one once made the ratio read
high) and the Redis servers' time in each command (INFO commandstats), per request of the
variant — where the services' core goes.
Afterwards both record queues drain and the rows of ``verifications`` for each variant's
serials are counted: every answered verification must be stored, in both.

``--count`` is large enough that a slice of 4 s at ~16k requests/s never runs out of fresh
codes (60,000 did: a slice's share wrapped around eight times, most of the single Redis's
answers became "suspicious" repeat queries and its flusher raised an alert for each — the two
variants no longer answered the same questions).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_verify import LUA_VERIFY, cpu_model, git_state, merge, parse_seconds, show, wrk  # noqa: E402
from loadtests.stack import HOST, Stack, free_port  # noqa: E402
from tests.redis_cluster_support import LocalCluster  # noqa: E402

WARM_CODES = 3000  # per variant, warm-up only
AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def queued(url: str, namespace: str) -> int:
    """Records waiting in the write-behind queue(s) of the Redis (or cluster) at ``url``."""
    from app.redisconn import connect_sync
    from app.verify import records

    client = connect_sync(url)
    try:
        return sum(int(client.llen(queue)) for queue, _ in records.queues(client, namespace))
    finally:
        client.close()


def redis_cpu(clients: list[Any]) -> float:
    """CPU seconds the Redis servers of ``clients`` have used (their own INFO cpu)."""
    total = 0.0
    for client in clients:
        cpu = client.info("cpu")
        total += float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return total


def command_usec(clients: list[Any]) -> dict[str, float]:
    """Microseconds the Redis servers of ``clients`` spent in each command (INFO commandstats)."""
    total: dict[str, float] = {}
    for client in clients:
        for name, stats in client.info("commandstats").items():
            command = name.removeprefix("cmdstat_")
            total[command] = total.get(command, 0.0) + float(stats["usec"])
    return total


_KINDS = (  # (what a run's process's command line holds, its kind), first match wins
    ("granian", "API"),
    ("redis-server", "Redis"),
    ("postgres", "PostgreSQL"),
    ("dramatiq", "worker (flusher)"),
)


def process_cpu(ours: set[int]) -> dict[int, tuple[int, str]]:
    """Every process that has used CPU: pid -> (CPU time in clock ticks, its kind by
    ``_KINDS``, or "the benchmark"). A process that is not the run's own — not in ``ours`` nor a
    descendant of one of them — is "not this run's", whatever it is: another cluster, another
    benchmark, a test suite on the same machine (a second, idle local cluster beside this one
    once slowed the single-Redis variant more than the cluster one, and the ratio read high)."""
    stats: dict[int, tuple[int, int, bytes]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        stats[int(entry)] = (int(fields[11]) + int(fields[12]), int(fields[1]), command)
    found = {}
    for pid, (ticks, _, command) in stats.items():
        if not ticks:
            continue
        ancestor = pid
        while ancestor > 1 and ancestor not in ours:
            ancestor = stats[ancestor][1] if ancestor in stats else 0
        if ancestor <= 1:
            kind = "not this run's"
        else:
            kind = next((k for word, k in _KINDS if word.encode() in command), "the benchmark")
        found[pid] = (ticks, kind)
    return found


def our_pids(stack: Stack) -> set[int]:
    """This process (the stack's API, worker and wrk, the cluster's servers are its children)
    and the embedded servers of the stack's var directory, which run detached."""
    ours = {os.getpid()}
    for pid_file in (stack.var / "pgdata" / "postmaster.pid", stack.var / "redis" / "redis.pid"):
        try:
            ours.add(int(pid_file.read_text().split()[0]))
        except (OSError, ValueError, IndexError):  # TRACECODE_*_URL servers: "not this run's"
            pass
    return ours


def drain(url: str, namespace: str, timeout: float = 180) -> float:
    started = time.monotonic()
    while (left := queued(url, namespace)) > 0:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{left} records still queued in {url}")
        time.sleep(0.2)
    return time.monotonic() - started


def stored(db_url: str, serials: list[str], since: datetime) -> int:
    """Rows of ``verifications`` since ``since`` for these serials (every answer is one row)."""
    import psycopg

    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM verifications WHERE at >= %s AND serial = ANY(%s)",
            (since, serials),
        ).fetchone()
    return int(row[0]) if row else 0


def pin(pids: list[int], cpus: str) -> None:
    """Move these processes (every thread) onto ``cpus``."""
    wanted = {int(c) for c in cpus.split(",")}
    for pid in pids:
        for thread in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setaffinity(int(thread), wanted)
            except ProcessLookupError:
                pass


class Vhost:
    """A RabbitMQ virtual host of this run's own (``tests/test_broker_rabbitmq.VhostAdmin``)."""

    def __init__(self, base: str) -> None:
        from tests.test_broker_rabbitmq import VhostAdmin

        self.name = f"tc-bench-cluster-{os.getpid()}"
        self.admin = VhostAdmin(base)
        if not self.admin.create(self.name):
            raise SystemExit(f"cannot make a RabbitMQ virtual host: {self.admin.reason}")
        self.url = f"{base.rstrip('/')}/{urllib.parse.quote(self.name, safe='')}"

    def delete(self) -> None:
        try:
            self.admin.delete(self.name)
        except Exception as exc:  # leave it behind rather than hide the numbers
            print(f"could not delete the RabbitMQ virtual host {self.name}: {exc}")


def start_cluster_api(
    stack: Stack, cluster: LocalCluster, broker: str, cpu: str
) -> tuple[str, int]:
    """A second API (one granian worker) and flusher on the cluster; the API's URL and pid."""
    from app.cli import batch_scheduling, server_command

    port = free_port()
    saved = dict(stack.env)
    stack.env.update(
        TRACECODE_REDIS_URL=cluster.url,
        TRACECODE_BROKER_URL=broker,
        TRACECODE_PORT=str(port),
        TRACECODE_RESOLVER_HOST=f"{HOST}:{port}",
    )
    try:
        api = stack._spawn("api-cluster", server_command(HOST, port, 1), cpu, batch_scheduling)
        argv = [sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1"]
        stack._spawn("worker-cluster", [*argv, "--threads", "1"], stack.worker_cpus)
    finally:
        stack.env.clear()
        stack.env.update(saved)
    url = f"http://{HOST}:{port}"
    stack.wait_ready(url=url)
    return url, api.pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", default="12s", help="measured time per variant (12s)")
    parser.add_argument("--slices", type=int, default=3, help="alternating runs per variant")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--count",
        type=int,
        default=400_000,
        help="activated codes to prepare (enough that no slice runs out of first queries)",
    )
    parser.add_argument("--repeat", type=int, default=20, help="percent of repeat queries")
    parser.add_argument("--warmup", default="3s")
    parser.add_argument("--api-cpu", default="0", help="taskset CPU of both APIs")
    parser.add_argument("--wrk-cpu", default="1", help="taskset CPU of wrk")
    parser.add_argument("--services-cpu", default="1", help="CPU of Redis, the cluster, flushers")
    parser.add_argument("--amqp", default=AMQP, help="RabbitMQ for the cluster's worker")
    args = parser.parse_args()

    print(
        f"machine: nproc {os.cpu_count()}, {cpu_model()}, Python {sys.version.split()[0]}, "
        f"commit {git_state()}; uptime: {subprocess.getoutput('uptime').strip()} "
        "(other work on the machine skews the numbers)"
    )
    stack = Stack(
        count=args.count,
        api_cpus=args.api_cpu,
        worker_cpus=args.services_cpu,
        services_cpus=args.services_cpu,
        sched_batch=True,
    )
    cluster, vhost = LocalCluster(), Vhost(args.amqp)
    try:
        with stack:
            cluster.start()
            pin([n.process.pid for n in cluster.nodes if n.process], args.services_cpu)
            cluster_url, cluster_pid = start_cluster_api(stack, cluster, vhost.url, args.api_cpu)
            urls = {"single": stack.url, "cluster": cluster_url}
            single_pid = next(c.pid for c in stack.children if "granian" in str(c.args))
            return measure(
                args, stack, cluster, urls, {"single": single_pid, "cluster": cluster_pid}
            )
    finally:
        cluster.stop()
        vhost.delete()


def measure(
    args: Any, stack: Stack, cluster: LocalCluster, urls: dict[str, str], pids: dict[str, int]
) -> int:
    ns, db_url = stack.env["TRACECODE_REDIS_NAMESPACE"], stack.env["TRACECODE_DATABASE_URL"]
    redis_urls = {"single": stack.env["TRACECODE_REDIS_URL"], "cluster": cluster.url}
    print(
        f"stack: single-Redis API {urls['single']}, cluster API {urls['cluster']} ({cluster.url})"
    )
    lines = stack.codes_file.read_text().splitlines()
    warm, codes = lines[-2 * WARM_CODES :], lines[: -2 * WARM_CODES]
    chunk = len(codes) // (2 * args.slices)
    env = {**os.environ, "WRK_THREADS": "1", "WRK_REPEAT": str(args.repeat)}
    c, cpu = args.connections, args.wrk_cpu
    for i, name in enumerate(urls):
        part = stack.var / f"bench-cluster-warm-{name}.csv"
        part.write_text("\n".join(warm[i * WARM_CODES : (i + 1) * WARM_CODES]) + "\n")
        wrk(
            urls[name] + "/v1/verify",
            args.warmup,
            c,
            cpu,
            LUA_VERIFY,
            {**env, "WRK_CODES": str(part)},
        )
        drain(redis_urls[name], ns)

    slice_s = max(parse_seconds(args.duration) // args.slices, 1)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
    serials: dict[str, list[str]] = {name: [] for name in urls}
    since = datetime.now(UTC)
    between = dict.fromkeys(urls, 0.0)  # seconds each variant's backlog took after its slices
    from app.redisconn import connect_sync

    servers = {
        "single": [connect_sync(redis_urls["single"])],
        "cluster": [node.client() for node in cluster.nodes],
    }
    used = dict.fromkeys(urls, 0.0)  # CPU seconds of each variant's Redis servers in its slices
    commands: dict[str, dict[str, float]] = {name: {} for name in urls}  # µs in each command
    kinds: dict[str, dict[str, int]] = {name: {} for name in urls}  # clock ticks of each kind
    ours = our_pids(stack)
    for k in range(args.slices):
        for i, name in enumerate(urls):
            before = redis_cpu(servers[name])
            processes = process_cpu(ours)
            before_commands = command_usec(servers[name])
            mine = codes[(2 * k + i) * chunk : (2 * k + i + 1) * chunk]
            serials[name] += [line.split(",", 1)[0] for line in mine]
            part = stack.var / f"bench-cluster-{name}-{k}.csv"
            part.write_text("\n".join(mine) + "\n")
            runs[name].append(
                wrk(
                    urls[name] + "/v1/verify",
                    f"{slice_s}s",
                    c,
                    cpu,
                    LUA_VERIFY,
                    {**env, "WRK_CODES": str(part)},
                    server=pids[name],
                )
            )
            used[name] += redis_cpu(servers[name]) - before
            for pid, (ticks, kind) in process_cpu(ours).items():
                spent = ticks - processes.get(pid, (0, kind))[0]
                kinds[name][kind] = kinds[name].get(kind, 0) + spent
            for command, usec in command_usec(servers[name]).items():
                spent = usec - before_commands.get(command, 0.0)
                commands[name][command] = commands[name].get(command, 0.0) + spent
            between[name] += drain(redis_urls[name], ns)  # not in the other variant's slice
    drained = {name: drain(redis_urls[name], ns) for name in urls}
    single, on_cluster = merge(runs["single"]), merge(runs["cluster"])

    print(
        f"\nwrk -t1 -c{c} --latency (taskset -c {cpu}), {args.slices} slices of {slice_s} s per "
        f"variant, alternating; {args.repeat}% repeat queries; both APIs on CPU {args.api_cpu}:"
    )
    print(
        "  slices, cluster/single requests/s: "
        + ", ".join(
            f"{b['rps'] / a['rps']:.2f}"
            for a, b in zip(runs["single"], runs["cluster"], strict=True)
        )
    )
    show("single Redis", single)
    show("Redis Cluster", on_cluster)
    cost = {
        n: 1e6 * r["server_cpu_s"] / r["requests"]
        for n, r in (("single", single), ("cluster", on_cluster))
    }
    print(
        f"  API CPU per request (its process, every slice): single {cost['single']:.0f} us, "
        f"cluster {cost['cluster']:.0f} us; single/cluster {cost['single'] / cost['cluster']:.3f} "
        "(the throughput ratio the API's core would give were it the only limit)"
    )
    redis_cost = {
        n: 1e6 * used[n] / r["requests"] for n, r in (("single", single), ("cluster", on_cluster))
    }
    print(
        f"  Redis CPU per request (its servers' own count, every slice): single "
        f"{redis_cost['single']:.0f} us, cluster {redis_cost['cluster']:.0f} us (six servers)"
    )
    for n, r in (("single", single), ("cluster", on_cluster)):
        spent = sorted(commands[n].items(), key=lambda item: -item[1])
        print(
            f"  Redis time in commands per request, {n}: "
            f"{sum(commands[n].values()) / r['requests']:.1f} us ("
            + ", ".join(f"{c} {u / r['requests']:.1f}" for c, u in spent[:6] if u > 0)
            + ")"
        )
    tick = os.sysconf("SC_CLK_TCK")
    for n, r in (("single", single), ("cluster", on_cluster)):
        print(
            f"  CPU per request by process kind, {n} (both variants' processes, in its slices; "
            'wrk not counted; "not this run\'s": anything else on the machine): '
            + ", ".join(
                f"{kind} {1e6 * ticks / tick / r['requests']:.1f} us"
                for kind, ticks in sorted(kinds[n].items(), key=lambda item: -item[1])
            )
        )
    ratio = on_cluster["rps"] / single["rps"]
    ok = ratio >= 0.9
    print(
        f"\ncluster / single throughput: {ratio:.3f} (issue 20 target >= 0.9: "
        f"{'met' if ok else 'MISSED'}); p99 {on_cluster['p99_ms']:.2f} ms against "
        f"{single['p99_ms']:.2f} ms"
    )
    lost_any = False
    for name, merged in (("single", single), ("cluster", on_cluster)):
        answered, rows = int(merged["requests"]), stored(db_url, serials[name], since)
        non200 = int(merged["http_errors"])
        lost = max(answered - non200 - rows, 0)
        lost_any = lost_any or lost > 0
        print(
            f"records {name}: {answered:,} answered ({non200:,} non-200, "
            f"genuine {int(merged['genuine']):,}, suspicious {int(merged['suspicious']):,}), "
            f"{rows:,} rows stored; backlog flushed after its slices in {between[name]:.1f} s "
            f"in all ({drained[name]:.1f} s at the end); "
            + ("none lost" if lost == 0 else f"{lost:,} MISSING")
            + (
                f" ({rows - answered:,} more rows than answers: requests in flight when a "
                f"slice's wrk stopped, at most {c} a slice)"
                if rows > answered
                else ""
            )
        )
    print(f"uptime after: {subprocess.getoutput('uptime').strip()}")
    return 0 if ok and not lost_any else 1


if __name__ == "__main__":
    sys.exit(main())
