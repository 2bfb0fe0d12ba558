"""A verification round's script calls on a Redis Cluster, one per shard, packed per master.

A round on a cluster runs a script once per shard of its keys (``app.verify.service``): the
rate limits per shard of the client addresses, then the verification script per shard of the
codes — up to 24 calls each. Through redis-py's cluster client every call is a command of its
own (slot lookup, command policies, the node's pool, retries, observability hooks): ~25 calls
per round cost more than the round's other work together. ``ShardCalls.run`` packs the calls
for the shards one master serves into ONE write, on a connection taken from that node's own
pool in the cluster client (a connection per call, so rounds running at once never share one),
every master's write sent before any reply is read (the masters work in parallel without a
task each), then the replies read in order, under one deadline for it all (the connections'
socket timeout).

The cluster client stays in charge of the cluster: its slot map says which master serves a
shard (the shard's tag has one slot, ``redisconn.shard_tags``), and a shard whose call is
answered by a redirection (MOVED, ASK), TRYAGAIN, CLUSTERDOWN, READONLY or NOSCRIPT, or whose
node's connection failed, is called once more through the client itself (``script(…)``), which
follows redirections, re-reads the slot map through a failover, loads a script a node lacks and
retries a lost connection as it always did; the slot map is marked for a re-read first (except
for NOSCRIPT), so the next round's writes go to the new masters. Any other error reply (the
script failed) is the shard's answer.

A shard whose master still cannot answer (the client's own retries used up: a failover whose
new master is not yet known or not yet answering, a master stalled longer than the command
timeout) is called again through the client, after a pause (50 ms, doubling to 0.5 s), until
it answers or its master has been unable to answer for ``wait`` seconds
(``TRACECODE_REDIS_FAILOVER_WAIT``): only then is the error the shard's answer (its
verifications are answered from PostgreSQL, which does not know the records still queued in
Redis, so a repeat query there may count low). A shard whose outage is older than that is
tried once per round, without waiting, until it answers again.

A call whose connection was lost or timed out after the write may have run — a stalled master
runs it when it wakes — so every call carries a key of its own where the script keeps its
replies (``app.verify.service``): sent again, it returns those and changes nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript
from redis.crc import key_slot

from app.redisconn import UNAVAILABLE, shard_tags

#: Keys and arguments of one shard's script call.
Call = tuple[list[bytes], list[bytes]]

#: Error replies after which a shard's call goes once more through the cluster client: none of
#: them means the script ran (MovedError is an AskError, MasterDownError a ClusterDownError).
_THROUGH_CLIENT = (
    redis.exceptions.NoScriptError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ReadOnlyError,
)


def _parts(parts: Sequence[bytes]) -> bytes:
    """Arguments in the Redis protocol (a command is ``*<count>`` and then these)."""
    return b"".join([b"$%d\r\n%s\r\n" % (len(part), part) for part in parts])


class ShardCalls:
    """Script calls per shard on the masters of one cluster client (see the module)."""

    def __init__(self, cluster: RedisCluster, wait: float) -> None:
        self.cluster, self.wait = cluster, wait
        self.slots = [key_slot(tag.encode()) for tag in shard_tags()]
        self._outages: dict[int, float] = {}  # shard -> since when its master cannot answer

    async def run(
        self, script: AsyncScript, calls: dict[int, Call], shared: tuple[bytes, ...] = ()
    ) -> dict[int, Any]:
        """``script`` once per shard of ``calls`` (shard -> keys and arguments, every key in
        the shard's slot; ``shared``: arguments of every call, before its own, packed once):
        shard -> the script's reply, or the exception its call ended in."""
        if not calls:
            return {}
        cluster = self.cluster
        if cluster._initialize:  # first use, or the slot map marked stale
            await cluster.initialize()
        sha, common = script.sha.encode(), _parts(shared)
        nodes: dict[str, tuple[ClusterNode, list[int], list[bytes]]] = {}
        again: dict[int, Any] = {}
        for shard, (keys, args) in calls.items():
            try:
                node = cluster.nodes_manager.get_node_from_slot(self.slots[shard])
            except redis.exceptions.SlotNotCoveredError as exc:
                again[shard] = exc
                continue
            if (entry := nodes.get(node.name)) is None:
                entry = nodes[node.name] = (node, [], [])
            entry[1].append(shard)
            entry[2].append(
                b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n%s%s%s%s"
                % (
                    3 + len(keys) + len(shared) + len(args),
                    sha,
                    _parts((b"%d" % len(keys),)),
                    _parts(keys),
                    common,
                    _parts(args),
                )
            )
        results = await self._on_nodes([(node, commands) for node, _, commands in nodes.values()])
        replies: dict[int, Any] = {}
        for (_, shards, _), result in zip(nodes.values(), results, strict=True):
            if isinstance(result, Exception):
                result = [result] * len(shards)
            for shard, reply in zip(shards, result, strict=True):
                if isinstance(reply, _THROUGH_CLIENT) or (
                    isinstance(reply, Exception)
                    and not isinstance(reply, redis.exceptions.ResponseError)
                ):
                    again[shard] = reply
                else:
                    replies[shard] = reply
        if self._outages:
            for shard in replies:
                self._outages.pop(shard, None)
        if again:
            replies.update(await self._until_answered(script, calls, again, shared))
        return replies

    async def _until_answered(
        self,
        script: AsyncScript,
        calls: dict[int, Call],
        failed: dict[int, Any],
        shared: tuple[bytes, ...],
    ) -> dict[int, Any]:
        """The shards of ``failed`` through the client, again and again while their masters
        cannot answer and their outage is younger than ``wait`` (see the module)."""
        start, pause = time.monotonic(), 0.05
        for shard in failed:
            self._outages.setdefault(shard, start)
        answers: dict[int, Any] = {}
        while True:
            results = await self._through_client(script, calls, failed, shared)
            now, failed = time.monotonic(), {}
            for shard, result in results.items():
                if not isinstance(result, UNAVAILABLE):
                    self._outages.pop(shard, None)
                    answers[shard] = result
                elif now - self._outages.setdefault(shard, now) < self.wait:
                    failed[shard] = result
                else:
                    answers[shard] = result
            if not failed:
                return answers
            await asyncio.sleep(pause)
            pause = min(2 * pause, 0.5)

    @staticmethod
    async def _on_nodes(batches: list[tuple[ClusterNode, list[bytes]]]) -> list[Any]:
        """Each node's commands written at once on a connection of the node's own pool (taken
        for this call only), every node's before any reply is read (the nodes work in parallel,
        without a task each), then the replies read in order: per node the list of its replies
        (an error reply in its command's place) or the exception its connection failed with
        (the connection is closed; the pool's next user reconnects). One deadline for it all,
        the connections' socket timeout (a timeout per write and per reply, as the connection's
        own methods keep, cost a third of the call)."""
        if not batches:
            return []
        conns: list[Any] = [None] * len(batches)
        results: list[Any] = [None] * len(batches)
        finished = False
        try:
            async with asyncio.timeout(batches[0][0].connection_kwargs.get("socket_timeout")):
                for i, (node, commands) in enumerate(batches):
                    try:
                        conns[i] = node.acquire_connection()
                    except redis.exceptions.RedisError as exc:  # its pool is full
                        results[i] = exc
                        continue
                    results[i] = await _send(conns[i], b"".join(commands))
                for i, (_, commands) in enumerate(batches):
                    if results[i] is None:
                        results[i] = await _read(conns[i], len(commands))
            finished = True
        except TimeoutError:
            for i, (node, _) in enumerate(batches):
                if results[i] is None:
                    results[i] = redis.exceptions.TimeoutError(f"Timeout on {node.name}")
            finished = True
        finally:
            for i, (node, _) in enumerate(batches):
                if (conn := conns[i]) is not None:
                    if not finished or results[i] is None or isinstance(results[i], Exception):
                        await conn.disconnect(nowait=True)  # a reply may be left unread
                    node.release(conn)
        return results

    async def _through_client(
        self,
        script: AsyncScript,
        calls: dict[int, Call],
        failed: dict[int, Any],
        shared: tuple[bytes, ...],
    ) -> dict[int, Any]:
        """The shards of ``failed`` (shard -> why) called once more through the cluster
        client, after marking its slot map for a re-read unless only scripts were missing."""
        if not all(isinstance(why, redis.exceptions.NoScriptError) for why in failed.values()):
            self.cluster._initialize = True  # the client's own signal: re-read before the next call
        shards = list(failed)
        results = await asyncio.gather(
            *(script(keys=calls[s][0], args=[*shared, *calls[s][1]]) for s in shards),
            return_exceptions=True,
        )
        answers: dict[int, Any] = {}
        for shard, result in zip(shards, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
            if isinstance(result, Exception) and not isinstance(
                result, redis.exceptions.RedisError
            ):
                # the client's own failure in the middle of a failover (seen: AttributeError
                # from a connection it closed while connecting it): Redis did not answer, so the
                # shard's verifications are answered from PostgreSQL, never a 500
                failure = redis.exceptions.ConnectionError(f"cluster client failed: {result!r}")
                failure.__cause__ = result
                result = failure
            answers[shard] = result
        return answers


async def _send(conn: Any, command: bytes) -> Exception | None:
    """Write ``command`` on ``conn``; the exception if the connection failed. Straight to the
    connection's stream writer when it has one (``send_packed_command`` would wrap the write
    in a task of its own to time it out; ``ShardCalls._on_nodes`` keeps the deadline)."""
    try:
        if conn.should_reconnect():  # marked by the client after a topology change
            await conn.disconnect()
        if not conn.is_connected:
            await conn.connect()
        writer = getattr(conn, "_writer", None)
        if writer is None:
            await conn.send_packed_command(command, check_health=False)
        else:
            writer.write(command)
            await writer.drain()
    except Exception as exc:
        return exc
    return None


async def _read(conn: Any, count: int) -> Any:
    """``count`` replies of ``conn`` (an error reply in its place), or the exception the
    connection failed with. ``timeout=math.inf``: no deadline of its own (a timeout context
    per reply was half the cost of reading it; ``ShardCalls._on_nodes`` keeps one)."""
    replies: list[Any] = []
    try:
        for _ in range(count):
            try:
                replies.append(await conn.read_response(timeout=math.inf))
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
    except Exception as exc:
        return exc
    return replies
