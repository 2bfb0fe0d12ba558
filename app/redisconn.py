"""The Redis of hot state: one server or a Redis Cluster, and how keys are laid out for both.

``TRACECODE_REDIS_URL`` names one server (``redis://…``, ``rediss://…``, ``unix://…``) or a
Redis Cluster: ``redis+cluster://[user:password@]host:port[,host:port…]`` (``rediss+cluster://``
for TLS) — any reachable nodes of it; the client learns the rest from them. ``connect`` and
``connect_sync`` build redis-py's client for either (``RedisCluster`` for a cluster, which follows
MOVED/ASK redirections, retries through a failover and re-reads the slot map; the blocking one
is made on first use, ``SyncCluster``), so the code above them does not care which it talks to,
except where an operation touches several keys.

On a cluster every Lua script, MULTI and multi-key command must touch ONE hash slot. Keys that
one operation uses together therefore carry the same hash tag — a ``{…}`` suffix, present only
on a cluster (on one server the key names are the ones they always were, so nothing there
moves). Keys are spread over ``SHARDS`` tags (``shard_tags``): a code's keys (its query
counter, wrong-PIN count and lock) carry the tag of ``code_shard(code)``, a client address's
rate counter the tag of ``text_shard(ip)``, and each shard has its own verification record
queue; a round of verifications is then a rate-limit script per shard of its addresses, then
the verification script per shard of its codes (``app.verify.service``). The tags are chosen so
their slots spread evenly over the 16,384 (one in each 1/``SHARDS`` of the slot range): a
cluster whose slots are split evenly between 2, 3, 4, 6, 8, 12 or 24 masters gets the same
number of shards on each. Other families use a tag of their own where an operation spans
several keys (a login account's keys: ``app.auth.limits``).

Jobs never run on a cluster: dramatiq's Redis broker keeps its queues in keys that its scripts
use together without hash tags, so with a cluster URL the jobs go to RabbitMQ
(``TRACECODE_BROKER_URL``, required then: ``app.config.load_settings``).
"""

from __future__ import annotations

import threading
import zlib
from functools import cache
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import redis.exceptions
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from app.config import REDIS_CLUSTER_SCHEMES, cluster_nodes

#: Hash tags the per-code and per-address keys are spread over on a cluster. Changing it moves
#: every such key (counters start again; ``tracecode redis rebuild`` gives them back).
SHARDS = 24

#: Errors meaning "Redis cannot answer now" (down, timed out, a cluster in the middle of a
#: failover, or full: ``maxmemory`` reached under ``noeviction``, which refuses writes rather
#: than drop the queue of unwritten scans): callers fall back (verification answers from
#: PostgreSQL) or skip (limits). A probe: a full Redis answered every scan and log-in 500.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,  # CLUSTERDOWN, MASTERDOWN
    redis.exceptions.TryAgainError,  # a slot being moved
    redis.exceptions.SlotNotCoveredError,
    OSError,
)

AnyRedis = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

_FULL = "OOM command not allowed"  # a full Redis refusing a write inside a script


def full(exc: redis.exceptions.ResponseError) -> None:
    """Raise ``exc`` as the ``OutOfMemoryError`` (one of ``UNAVAILABLE``) it is when a script's
    write was refused by a full Redis: inside a script the refusal comes as a plain error reply.
    Anything else: nothing (the caller raises ``exc``)."""
    if _FULL in str(exc) and not isinstance(exc, redis.exceptions.OutOfMemoryError):
        raise redis.exceptions.OutOfMemoryError(str(exc)) from exc


def script(client: Any, source: str) -> Any:
    """``client.register_script(source)``, whose refusal by a full Redis is ``UNAVAILABLE``
    (``full``): the limits skip themselves as when Redis is down."""
    registered = client.register_script(source)

    async def call(**arguments: Any) -> Any:
        try:
            return await registered(**arguments)
        except redis.exceptions.ResponseError as exc:
            full(exc)
            raise

    return call


if TYPE_CHECKING:
    #: The annotation of the injected ``redis`` dependency (Litestar): either client.
    RedisClient = redis.asyncio.Redis
else:
    # Litestar checks an injected value against its annotation with msgspec, which takes one
    # custom class there, not a union: the two clients' common base.
    RedisClient = redis.client.AbstractRedis


class SyncCluster:
    """A blocking Redis Cluster client made on first use: redis-py's ``RedisCluster`` reads the
    slot map (connects) as it is built, and a module that builds its client on import (``app.jobs``)
    must connect to nothing. Every attribute is the built client's."""

    def __init__(self, nodes: list[tuple[str, int]], options: dict[str, Any]) -> None:
        self._nodes, self._options = nodes, options
        self._client: redis.cluster.RedisCluster | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> redis.cluster.RedisCluster:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    seeds = [redis.cluster.ClusterNode(host, port) for host, port in self._nodes]
                    self._client = redis.cluster.RedisCluster(startup_nodes=seeds, **self._options)
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def __enter__(self) -> SyncCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


AnySyncRedis = redis.Redis | SyncCluster


def is_cluster_url(url: str | None) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
    return bool(url) and url.startswith(REDIS_CLUSTER_SCHEMES)  # type: ignore[union-attr]


def is_cluster(client: Any) -> bool:
    """Whether ``client`` (async or not, or a pipeline of one) talks to a Redis Cluster."""
    return isinstance(
        client,
        redis.asyncio.cluster.RedisCluster
        | redis.asyncio.cluster.ClusterPipeline
        | redis.cluster.RedisCluster
        | SyncCluster,
    )


def connect(url: str, **options: Any) -> AnyRedis:
    """The asyncio client of ``url`` (one server or a cluster); connects on first use."""
    if not is_cluster_url(url):
        return redis.asyncio.Redis.from_url(url, **options)
    nodes, named = cluster_nodes(url)
    seeds = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes]
    return redis.asyncio.cluster.RedisCluster(startup_nodes=seeds, **named, **options)


def connect_sync(url: str, **options: Any) -> AnySyncRedis:
    """The blocking client of ``url`` (worker threads, the CLI); connects on first use."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, **options)
    nodes, named = cluster_nodes(url)
    return SyncCluster(nodes, {**named, **options})


# -- hash tags ------------------------------------------------------------------------------


@cache
def shard_tags() -> tuple[str, ...]:
    """The ``SHARDS`` hash tags, ``{…}`` included. Tag ``k`` hashes to a slot in the middle half
    of the ``k``-th of ``SHARDS`` equal parts of the slot range (found by trying ``k.0``,
    ``k.1``, …: CRC16 is fixed, so every process finds the same tags)."""
    width = REDIS_CLUSTER_HASH_SLOTS / SHARDS
    tags = []
    for k in range(SHARDS):
        low, high = (k + 0.25) * width, (k + 0.75) * width
        n = 0
        while not low <= key_slot(f"{k}.{n}".encode()) < high:
            n += 1
        tags.append(f"{{{k}.{n}}}")
    return tuple(tags)


def code_shard(code: int) -> int:
    """The shard of a code's keys (codes are dense: their residues spread evenly)."""
    return code % SHARDS


def text_shard(text: str) -> int:
    """The shard of a key named by text (a client address)."""
    return zlib.crc32(text.encode()) % SHARDS


def code_tag(code: int) -> str:
    return shard_tags()[code_shard(code)]


def text_tag(text: str) -> str:
    return shard_tags()[text_shard(text)]


def plain(text: str) -> str:
    """``text`` without braces, for a key on a cluster that must keep the tag it is given (a
    brace in a client-supplied part would make a hash tag of its own)."""
    return text.replace("{", "(").replace("}", ")")
