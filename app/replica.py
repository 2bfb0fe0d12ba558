"""PostgreSQL read replica: a second, read-only pool that serves the reads which tolerate a short
lag — trace, the management center's queries, analytics, list reads, the EPCIS query — so that
the primary's cores go to the writes (``TRACECODE_DATABASE_REPLICA_URL``, a streaming standby).

One place decides where a read goes: ``Replica.pool_for``, used by the ``read_conn`` and
``read_pool`` dependencies (app/deps.py). A handler that takes ``read_conn`` reads from the
standby when all of these hold, else from the primary (then ``read_conn`` *is* the request's
``conn``: no second connection):

1. the standby is healthy: the last background check (``CHECK_SECONDS``, one query on a
   connection of its own, never per request) found it up, in recovery (a standby, not a promoted
   or mistaken primary) and at most ``TRACECODE_REPLICA_MAX_LAG_SECONDS`` behind;
2. the caller has not changed anything in the last ``TRACECODE_REPLICA_STICKY_SECONDS``
   (read-your-writes, below);
3. a standby connection is free within ``ACQUIRE_SECONDS`` and answers an empty query as it
   is handed out (a busy or just-died standby sends the read to the primary rather than
   failing it).

Lag, measured against the primary: each check reads the primary's WAL position
(``pg_current_wal_lsn``) and then the standby's replayed one. The standby is 0 behind when it has
replayed the position just read; otherwise as far behind as the newest earlier check whose
primary position it has replayed (everything committed before that check is on the standby), or
of unknown lag (``lagging``) when it has replayed none of them. That never under-estimates: a
standby whose WAL stopped arriving while its connection stayed open (a hung sender, a network
that drops packets) ages visibly — measured on the standby alone, it had replayed all it had
received and read as caught up for the minute its receiver took to time out (a probe).

The standby must replicate this primary's database: the check compares the two servers' system
identifiers (``pg_control_system``) and database names, and a standby of another cluster (a
URL pointing at another deployment's, or at another database) is ``wrong_standby`` and serves
nothing (a probe: its reads failed, or would have answered another deployment's data).

Read-your-writes: every request other than GET/HEAD made by a principal (a user or an API key)
whose transaction committed sets the Redis key ``{namespace}:rw:u<user id>`` (or ``k<key id>``)
for STICKY seconds, before the answer is sent; while it lives, that principal's reads go to the
primary. Per principal, not per client: the same user's other tabs and devices see the change
too. STICKY is at least MAX_LAG (settings refuse less), and a check's ``ok`` counts only while the
lag it measured plus its age stays within MAX_LAG, so by the time the key expires the standby has
either replayed the write or is no longer used. Not covered: writes made outside a
request's transaction (worker jobs, the ASGI fast paths of verification and claims) — those are
read with the standby's lag, at most MAX_LAG. When Redis cannot answer, reads go to the primary.

Handlers behind ``read_conn`` must not write: on the standby the transaction is read-only and a
write fails (tests/test_replica.py runs every such endpoint against a real standby). Long reads
(the center's CSV/XLSX files) also run on the standby through ``read_pool``; give the standby
``hot_standby_feedback = on`` so replay does not cancel them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Literal

import psycopg
from prometheus_client import Counter, Gauge
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app import db
from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.redisconn import UNAVAILABLE

# a cluster's own errors (slot not covered) too
_REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, *UNAVAILABLE)

log = logging.getLogger("tracecode.replica")

CHECK_SECONDS = 1.0  # how often each API process checks the standby
CHECK_TIMEOUT = 2.0  # a check (connect included) taking longer: the standby is down
ACQUIRE_SECONDS = 1.0  # the longest a read waits for a standby connection before the primary

Status = Literal["starting", "ok", "lagging", "down", "not_standby", "wrong_standby"]

# Run on the primary, then on the standby: which cluster and database each is, where its WAL is
_PRIMARY_SQL = """
SELECT (SELECT system_identifier FROM pg_control_system()) AS system, current_database() AS db,
       pg_current_wal_lsn()::text AS lsn
"""
_CHECK_SQL = """
SELECT pg_is_in_recovery() AS standby,
       (SELECT system_identifier FROM pg_control_system()) AS system, current_database() AS db,
       pg_last_wal_replay_lsn()::text AS lsn
"""
SAMPLES = 600  # the primary's positions kept (one a check): lags up to ten minutes are measured

REPLICA_LAG = Gauge(
    "tracecode_replica_lag_seconds", "The read replica's lag at its last check (NaN: unknown)"
)
READS = Counter(
    "tracecode_replica_reads",
    "Lag-tolerant reads, by the server that answered them (replica or primary)",
    ["served_by"],
)


CLOSE_SECONDS = 5.0  # each step of closing the standby's connections at shutdown


class Replica:
    """The standby's pool and its health, checked in the background while the app runs."""

    def __init__(self, url: str, settings: Settings, primary: AsyncConnectionPool[Conn]) -> None:
        # every standby connection checked as it is handed out (one empty query): a standby
        # that died since the last check sends the read to the primary instead of failing it
        self.pool = db.create_pool(url, settings, name="tracecode-replica", check_idle=0.0)
        self.conninfo = db.pool_conninfo(url, settings)
        self.max_lag = settings.replica_max_lag_seconds
        self.sticky_ms = int(settings.replica_sticky_seconds * 1000)
        self.namespace = settings.redis_namespace
        self.status: Status = "starting"
        self.lag: float | None = None
        self.checked_at: float | None = None  # time.monotonic() of the last check
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.primary = primary
        self._positions: deque[tuple[float, int]] = deque(maxlen=SAMPLES)  # (time, primary LSN)

    @property
    def usable(self) -> bool:
        """The last check found the standby ``ok``, and its lag then plus the time since is
        still within MAX_LAG: a status is up to a check's interval (and its timeout) old, and
        the standby may have stopped replaying right after it (a probe: a lag measured just
        under the limit a second ago served a writer's read, its sticky key just expired, from a
        standby that had not replayed the write)."""
        if self.status != "ok" or self.checked_at is None:
            return False
        return (self.lag or 0.0) + time.monotonic() - self.checked_at <= self.max_lag

    async def start(self) -> None:
        """Open the pool without waiting (a standby that is down must not stop the API from
        starting) and start the checks."""
        await self.pool.open(wait=False)
        self._task = asyncio.create_task(self._watch(), name="replica-check")

    async def close(self) -> None:
        """Stop the checks and close the standby's connections, each step bounded: a standby that
        no longer answers must not hold the API's shutdown."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, CLOSE_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drop(), CLOSE_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.pool.close(timeout=CLOSE_SECONDS), CLOSE_SECONDS * 2)

    async def _watch(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # never let the checks stop: a stopped check would freeze "ok"
                log.exception("read replica check failed")
                self._record("down", None)
            await asyncio.sleep(CHECK_SECONDS)

    async def check(self) -> Status:
        """Measure the standby once and record its status (``ok`` only when usable)."""
        try:
            main, row = await asyncio.wait_for(self._measure(), CHECK_TIMEOUT)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            if self.status != "down":
                log.warning("read replica down (%s): reads go to the primary", type(exc).__name__)
            await self._drop()
            self._record("down", None)
            return self.status
        if (row["system"], row["db"]) != (main["system"], main["db"]):
            if self.status != "wrong_standby":
                log.error(
                    "TRACECODE_DATABASE_REPLICA_URL names a server of another cluster or "
                    "database (system %s, database %s; the primary's: %s, %s): not used",
                    row["system"], row["db"], main["system"], main["db"],
                )  # fmt: skip
            self._record("wrong_standby", None)
            return self.status
        if not row["standby"]:
            self._record("not_standby", None)
            return self.status
        lag = self._lag(_lsn(main["lsn"]), _lsn(row["lsn"]))
        if lag is None or lag > self.max_lag:
            self._record("lagging", lag)
        else:
            if self.status in ("down", "not_standby", "wrong_standby"):
                # back after a restart: rid the pool of its dead connections before reads come
                # (connections in steady use are handed out unchecked, app/db.py)
                await self.pool.check()
            self._record("ok", lag)
        return self.status

    def _lag(self, primary: int, replayed: int) -> float | None:
        """Seconds the standby is behind at most: 0 when it has replayed ``primary`` (the
        primary's position just read), else the age of the newest earlier check whose position
        it has replayed; None when it has replayed none of them."""
        now = time.monotonic()
        self._positions.append((now, primary))
        if replayed >= primary:
            return 0.0
        return next((now - at for at, lsn in reversed(self._positions) if lsn <= replayed), None)

    async def _measure(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The primary's row, then the standby's (``_PRIMARY_SQL``, ``_CHECK_SQL``)."""
        async with self.primary.connection() as conn:
            main = await (await conn.execute(_PRIMARY_SQL)).fetchone()
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.conninfo,
                autocommit=True,
                row_factory=dict_row,
                application_name="tracecode-replica-check",
            )
        row = await (await self._conn.execute(_CHECK_SQL)).fetchone()
        assert main is not None and row is not None
        return main, row

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def _record(self, status: Status, lag: float | None) -> None:
        if status != self.status and status in ("ok", "lagging", "not_standby"):
            log.warning("read replica %s (lag %s s)", status, "?" if lag is None else f"{lag:.1f}")
        self.status, self.lag, self.checked_at = status, lag, time.monotonic()
        REPLICA_LAG.set(math.nan if lag is None else lag)

    def report(self) -> tuple[str, str]:
        """(status, detail) for ``/health``."""
        lag = "unknown" if self.lag is None else f"{self.lag:.1f} s"
        age = (
            "never"
            if self.checked_at is None
            else f"{time.monotonic() - self.checked_at:.1f} s ago"
        )
        return self.status, f"lag {lag} (limit {self.max_lag:g} s), checked {age}"

    # -- read-your-writes and routing ------------------------------------------------------------

    def wrote_key(self, principal: Principal) -> str:
        who = (
            f"u{principal.user_id}" if principal.user_id is not None else f"k{principal.api_key_id}"
        )
        return f"{self.namespace}:rw:{who}"

    async def note_write(self, redis: Redis, principal: Principal) -> None:
        """``principal`` just committed a change: its reads go to the primary for a while."""
        try:
            await redis.set(self.wrote_key(principal), b"1", px=self.sticky_ms)
        except _REDIS_ERRORS as exc:  # the change is committed; its author may read it lagged
            log.warning("read-your-writes mark not set (%s)", type(exc).__name__)

    async def pool_for(
        self, redis: Redis, principal: Principal
    ) -> AsyncConnectionPool[Conn] | None:
        """The standby's pool when ``principal``'s lag-tolerant read may go there; None: the
        primary's (standby unhealthy, or the caller changed something within STICKY seconds)."""
        if not self.usable:
            return None
        try:
            if await redis.exists(self.wrote_key(principal)):
                return None
        except _REDIS_ERRORS:  # cannot tell whether the caller just wrote: the primary is right
            return None
        return self.pool


def _lsn(text: str | None) -> int:
    """A WAL position (``16/B374D848``) as a number; none (a standby not yet replaying): 0."""
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


@contextlib.asynccontextmanager
async def read_connection(
    pool: AsyncConnectionPool[Conn] | None, primary: Conn
) -> AsyncIterator[Conn]:
    """A standby connection of ``pool`` (one read-only transaction, ended as the block ends), or
    ``primary`` (the request's own connection) when ``pool`` is None, when no standby connection
    is free within ACQUIRE_SECONDS, or when the standby refuses one."""
    async with contextlib.AsyncExitStack() as stack:
        conn = primary
        if pool is not None:
            try:
                standby = pool.connection(timeout=ACQUIRE_SECONDS)
                conn = await stack.enter_async_context(standby)  # type: ignore[arg-type]
            except (PoolTimeout, psycopg.OperationalError):
                conn = primary
        READS.labels("primary" if conn is primary else "replica").inc()
        yield conn
