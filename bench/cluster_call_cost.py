"""What a cluster verification call's kept replies cost its master and replica, in isolation.

Since 1c97ea1 each verification script call on a Redis Cluster keeps its replies under a key of
its own (``app.verify.service._SCRIPT``, KEYS[2]) so that a call sent again is counted once.
The full benchmark (``bench_verify_cluster.py``) sees that cost through the noise of a whole
stack on two cores; this one calls the real script on one shard of a local 3 + 3 cluster
(``tests/redis_cluster_support.py``: the project's redis-server), alternating blocks of calls
without and with the call key, each call carrying ``--per-call`` first queries of fresh codes
(a round of 64 over 24 shards gives ~3; a round of 500, ~21), ``--depth`` calls in flight, and
reports per verification: the CPU time of the shard's master and of its replica
(``/proc/<pid>/stat``) and the master's time inside EVALSHA (``INFO commandstats``).

    .venv/bin/python bench/cluster_call_cost.py [--calls 20000] [--per-call 3] [--blocks 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from redis.crc import key_slot  # noqa: E402

from app.redisconn import shard_tags  # noqa: E402
from app.verify.service import _SCRIPT  # noqa: E402
from bench.bench_verify import cpu_model, git_state  # noqa: E402
from tests.redis_cluster_support import LocalCluster, Node  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(node: Node) -> float:
    assert node.process is not None
    fields = Path(f"/proc/{node.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def evalsha_usec(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0))


def call_args(first: int, per_call: int) -> tuple[bytes, bytes]:
    """The items and records of ``per_call`` first queries of codes ``first``… (right PIN)."""
    items, records = [], []
    for code in range(first, first + per_call):
        prefix = (
            f'{{"at":"2026-12-02T16:40:12.123456+00:00","record_key":"{code:016x}",'
            f'"code_id":{code},"serial":"S{code}","brand_id":1,"product_id":7,'
            f'"client_ip":"10.0.0.1"'
        )
        records.append(prefix)
        items.append(
            f"ok\x1f\x1f2026-12-02T16:40:12.123456+00:00\x1fGuangdong Shenzhen\x1f0"
            f"\x1f10.0.0.1\x1f{code}\x1f{len(prefix)}\x1e"
        )
    return "".join(items).encode(), "".join(records).encode()


def block(
    master: redis.Redis, sha: str, tag: str, start: int, args: argparse.Namespace, keep: bool
) -> None:
    shared = [b"bench", b"1", b"0", b"5", b"900", b"5", b"0"]  # as a cluster's shard calls
    pipe = master.pipeline(transaction=False)
    code = start
    for n in range(args.calls):
        items, records = call_args(code, args.per_call)
        code += args.per_call
        keys = [f"bench:verif:queue{tag}".encode()]
        if keep:
            keys.append(f"bench:call:{start:x}.{n:x}{tag}".encode())
        pipe.evalsha(sha, len(keys), *keys, *shared, items, records, b"", tag.encode(), b"25")
        if len(pipe) >= args.depth:
            pipe.execute()
            master.delete(f"bench:verif:queue{tag}")
    pipe.execute()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per block")
    parser.add_argument("--per-call", type=int, default=3, help="verifications per call")
    parser.add_argument("--depth", type=int, default=8, help="calls in flight (one pipeline)")
    parser.add_argument("--blocks", type=int, default=3, help="blocks of each kind, alternating")
    args = parser.parse_args()
    print(f"machine: nproc {os.cpu_count()}, {cpu_model()}, commit {git_state()}")
    cluster = LocalCluster()
    cluster.start()
    try:
        tag = shard_tags()[0]
        master = next(m for m in cluster.masters() if key_slot(tag.encode()) in cluster.slots_of(m))
        replica = cluster.replica_of(master)
        client = redis.Redis(host="127.0.0.1", port=master.port)
        sha = client.script_load(_SCRIPT)
        totals: dict[bool, list[float]] = {False: [0, 0, 0], True: [0, 0, 0]}
        start = 1
        for b in range(2 * args.blocks):
            keep = b % 2 == 1
            before = (cpu_seconds(master), cpu_seconds(replica), evalsha_usec(client))
            block(client, sha, tag, start, args, keep)
            time.sleep(0.5)  # the replica's last applies
            after = (cpu_seconds(master), cpu_seconds(replica), evalsha_usec(client))
            start += args.calls * args.per_call
            for i in range(3):
                totals[keep][i] += after[i] - before[i]
        verifications = args.calls * args.per_call * args.blocks
        print(
            f"{args.blocks} blocks each of {args.calls:,} calls x {args.per_call} first queries, "
            f"{args.depth} calls in flight, one shard's master and its replica:"
        )
        for keep in (False, True):
            master_cpu, replica_cpu, usec = totals[keep]
            print(
                f"  {'with' if keep else 'without'} the call key: per verification "
                f"master CPU {master_cpu / verifications * 1e6:.2f} us, "
                f"replica CPU {replica_cpu / verifications * 1e6:.2f} us, "
                f"master EVALSHA {usec / verifications:.2f} us"
            )
        return 0
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
