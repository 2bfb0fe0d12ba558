"""The database helper: the async pool, connections per request, and the migration runner."""

from __future__ import annotations

import hashlib
import logging
import re
import time
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app import locks
from app.config import Settings
from app.locks import Lock

Conn = psycopg.AsyncConnection[dict[str, Any]]
log = logging.getLogger("tracecode.db")

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


# The transaction horizon of this database, as a CTE ``horizon(x)`` for paging in commit-safe
# order (the EPCIS query, the ERP export): every transaction below ``x`` has ended, so a row
# written with ``pg_current_xact_id() < x`` and not visible now never will be. It is the
# snapshot's ``pg_snapshot_xmin`` without the transactions of OTHER databases of the cluster
# (xids are cluster-wide, and a transaction of another database never writes here): a long
# transaction of another tenant's database, or another test session's, held every page back.
# A running xid is left out only when ``pg_stat_activity`` shows it is another database's; one
# ended or unseen meanwhile (or hidden: a role without ``pg_read_all_stats`` sees other roles'
# xids as NULL) stays in: the horizon is never later than it may be, only sometimes earlier.
# On a hot standby (the read replica, app/replica.py) a snapshot keeps the primary's running
# xids in its subxip, which ``pg_snapshot_xip`` does not return (its xip is empty: the xmax
# fallback counted a still-running writer as ended, probe): there the horizon is
# ``pg_snapshot_xmin``, the oldest xid still running as far as the standby has replayed (one
# not yet in the WAL counts as running once a later xid is), every xid below it ended there.
# Other databases' transactions hold it back too: the standby cannot tell them apart.
HORIZON_CTE = """horizon AS MATERIALIZED (
    SELECT CASE WHEN pg_is_in_recovery() THEN pg_snapshot_xmin(s) ELSE coalesce(
        (SELECT min(r) FROM pg_snapshot_xip(s) r
         WHERE NOT EXISTS (
             SELECT 1 FROM pg_stat_activity a
             WHERE a.backend_xid = r::xid
               AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))),
        pg_snapshot_xmax(s)) END AS x
    FROM pg_current_snapshot() s)"""


# How the pool behaves when PostgreSQL goes away and comes back (issue 13, item 20):
# - a request waits at most ``TRACECODE_DB_POOL_TIMEOUT`` seconds for a connection, then 503;
#   once the pool has failed to reconnect for RECONNECT_TIMEOUT seconds (the server is down),
#   at most DOWN_TIMEOUT, until a connection succeeds again;
# - connecting gives up after ``TRACECODE_DB_CONNECT_TIMEOUT`` seconds (a server that does not
#   answer), also for the verifier's own connection, which uses the pool's conninfo;
# - the pool's background reconnection gives up after RECONNECT_TIMEOUT seconds and starts over
#   on the next request, so its exponential back-off never grows past ~2 s: the first request
#   after PostgreSQL is back gets a fresh connection within a second or two;
# - a connection that sat idle for CHECK_IDLE_SECONDS is checked before it is handed out (one
#   empty query); if it is broken, every idle connection is checked at once, so after a restart
#   the pool is rid of its dead connections by the first request, not one failed request each.
#   Connections in steady use are not checked (no extra round trip on the hot paths).
RECONNECT_TIMEOUT = 3.0
DOWN_TIMEOUT = 1.0
CHECK_IDLE_SECONDS = 2.0


def pool_conninfo(url: str, settings: Settings) -> str:
    """``url`` with the connect timeout (unless the URL sets one itself)."""
    params = conninfo_to_dict(url)
    params.setdefault("connect_timeout", str(settings.db_connect_timeout))
    return make_conninfo("", **params)


def _limits(settings: Settings) -> list[str]:
    """The API connections' limits, set on each new one (``SET``, which PgBouncer in session
    mode passes on, where a startup ``options`` is refused): no statement runs on unbounded (a
    bad plan ran one EPCIS query for 10 min, probe G), nor, when set, an idle transaction. A
    limit of 0 sets nothing (the role's or the server's setting stands)."""
    limits = []
    for name, seconds in (
        ("statement_timeout", settings.db_statement_timeout),
        ("idle_in_transaction_session_timeout", settings.db_idle_in_transaction_timeout),
    ):
        if seconds:
            limits.append(f"SET {name} = {int(seconds * 1000)}")
    return limits


async def round_connection(
    conninfo: str, settings: Settings, name: str, row_factory: Any
) -> psycopg.AsyncConnection[Any]:
    """A connection of its own for a hot path's rounds (verification, claims): autocommit (a
    round's query is one round trip), its statements cancelled after
    ``TRACECODE_DB_ROUND_TIMEOUT``."""
    conn = await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, row_factory=row_factory, application_name=name
    )
    await conn.execute(f"SET statement_timeout = {int(settings.db_round_timeout * 1000)}")
    return conn


class Pool(AsyncConnectionPool[Conn]):
    """The pool, failing fast while the database is unreachable (see above)."""

    unreachable = False

    async def getconn(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        if timeout is None and self.unreachable:
            timeout = min(self.timeout, DOWN_TIMEOUT)
        return await super().getconn(timeout)


def create_pool(
    url: str, settings: Settings, name: str = "tracecode", check_idle: float = CHECK_IDLE_SECONDS
) -> AsyncConnectionPool[Conn]:
    """The pool of ``url``; ``name`` is its name in logs and the connections'
    ``application_name`` (``tracecode-replica`` for the read replica's, app/replica.py). A
    connection idle for ``check_idle`` seconds or more is checked before it is handed out."""
    last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
    limits = _limits(settings)

    async def connected(conn: Conn) -> None:
        pool.unreachable = False
        last_used[conn] = time.monotonic()
        if limits:
            for statement in limits:
                await conn.execute(statement)
            await conn.commit()

    async def returned(conn: Conn) -> None:
        last_used[conn] = time.monotonic()
        if conn.autocommit:  # set by its last user (a roller): a request runs in a transaction
            await conn.set_autocommit(False)

    def reconnect_failed(_: object) -> None:
        pool.unreachable = True

    async def check(conn: Conn) -> None:
        if time.monotonic() - last_used.get(conn, 0.0) < check_idle:
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except psycopg.Error:
            await pool.check()  # drop the other dead idle connections now, not one per request
            raise

    pool = Pool(
        pool_conninfo(url, settings),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        kwargs={"row_factory": dict_row, "application_name": name},
        open=False,
        name=name,
        timeout=settings.db_pool_timeout,
        reconnect_timeout=RECONNECT_TIMEOUT,
        reconnect_failed=reconnect_failed,
        configure=connected,
        reset=returned,
        check=check,
    )
    return pool


async def connection(pool: AsyncConnectionPool) -> AsyncIterator[Conn]:
    """One connection and one transaction: committed on success, rolled back on error."""
    async with pool.connection() as conn:
        yield conn  # type: ignore[misc]


class MigrationError(RuntimeError):
    """The migrations cannot be applied as they are: an applied one was edited since, or two
    shipped share a number. The message names them; the ``tracecode`` command prints it as one
    line (``app.cli.main``)."""


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in app/migrations, in order."""
    found = []
    for entry in resources.files("app.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        shared = [name for version, name, _ in found if versions.count(version) > 1]
        raise MigrationError(f"migrations share a number: {', '.join(shared)}")
    return found


class MigrationStatus(msgspec.Struct, frozen=True):
    """What a database holds against the migrations this release ships (``tracecode db
    status``): ``applied`` (name, when), ``pending`` (shipped, not applied), ``unknown``
    (applied, not shipped: a newer release migrated the database, or a rollback happened) and
    ``changed`` (applied, then edited in the release)."""

    applied: list[tuple[str, str]]
    pending: list[str]
    unknown: list[str]
    changed: list[str]


def migration_status(url: str) -> MigrationStatus:
    shipped = {version: (name, text) for version, name, text in migrations()}
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        rows = (
            conn.execute(
                "SELECT version, name, checksum, applied_at::text FROM schema_migrations "
                "ORDER BY version"
            ).fetchall()
            if exists and exists[0]
            else []
        )
    done = {version for version, *_ in rows}
    return MigrationStatus(
        applied=[(name, at) for _, name, _, at in rows],
        pending=[name for version, (name, _) in shipped.items() if version not in done],
        unknown=[name for version, name, _, _ in rows if version not in shipped],
        changed=[
            name
            for version, name, checksum, _ in rows
            if version in shipped
            and hashlib.sha256(shipped[version][1].encode()).hexdigest() != checksum
        ],
    )


def migrate(url: str) -> list[str]:
    """Apply the migrations not yet applied; return their names. Safe to run concurrently.
    A database that holds migrations this release does not ship (a newer release's: a rollback)
    is logged as a warning, once per call; nothing is undone (``tracecode db migrate`` names
    them). An applied migration edited since raises ``MigrationError``."""
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(*locks.acquire(Lock.MIGRATIONS))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
            done = {version: (name, checksum) for version, name, checksum in rows}
            shipped = migrations()
            unknown = sorted(set(done) - {version for version, _, _ in shipped})
            if unknown:
                log.warning(
                    "the database holds migrations this release does not ship (%s): a newer "
                    "release migrated it (a rollback?); this code may not fit its schema",
                    ", ".join(done[v][0] for v in unknown),
                )
            for version, name, text in shipped:
                checksum = hashlib.sha256(text.encode()).hexdigest()
                if version in done:
                    if done[version][1] != checksum:
                        raise MigrationError(
                            f"migration {name} was changed after it was applied; "
                            "write a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(text)  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (version, name, checksum),
                    )
                applied_now.append(name)
        finally:
            conn.execute(*locks.release(Lock.MIGRATIONS))
    return applied_now


def in_utc(moment: datetime | None) -> datetime | None:
    """An aware time in UTC, for a list of times bound as a ``timestamptz[]`` (psycopg sends a
    list as text) or a COPY row: there PostgreSQL reads each time's offset itself and refuses
    one past ±15:59 — RFC 3339, msgspec and Python take up to ±23:59 — failing the whole
    statement (a probe: one inspection at +23:59 was a 400 for its whole batch). None, a naive
    time and one past year 1 or 9999 in UTC are given as they are. A single time bound alone
    (binary) needs none of this."""
    if moment is None or moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return moment


def array(values: list[Any]) -> str:
    """A PostgreSQL array literal of ints or plain strings, for ``%s::bigint[]`` and the like.

    The packing hot path passes arrays of 10,000s of values; building the literal here is ~10x
    cheaper than psycopg adapting a list element by element. Strings must not hold ``"`` or
    ``\\`` (client event ids, times and levels are validated to printable ASCII without them).
    """
    if not values:
        return "{}"
    has_null = None in values
    if isinstance(next((v for v in values if v is not None), 0), str):
        if not has_null:
            return '{"' + '","'.join(values) + '"}'
        return "{" + ",".join("NULL" if v is None else f'"{v}"' for v in values) + "}"
    if not has_null:
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def changes_of(patch: msgspec.Struct) -> dict[str, Any]:
    """The fields a PATCH body sets, by name (a field left ``UNSET`` is not in it)."""
    return {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not msgspec.UNSET}


def changed(before: msgspec.Struct | dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The ``changes`` (compared in their stored forms) that differ from the entity as it is:
    a value it has already is no change. None left: a PATCH saved unchanged (a form, a retry)
    answers the entity as it is, with no write and no audit row (README: a call that changes
    nothing writes no row; probes found ``update`` rows whose before and after were the same)."""
    current = before if isinstance(before, dict) else msgspec.structs.asdict(before)
    return {k: v for k, v in changes.items() if v != current[k]}


async def update_row(conn: Conn, table: str, row_id: int, changes: dict[str, Any]) -> None:
    """Write ``changes`` (column -> value) to row ``row_id`` of ``table`` and stamp its
    ``updated_at``; nothing when there are none. Table and column names come from our code
    (the patch structs' field names), never from a request."""
    if changes:
        sets = ", ".join(f"{k} = %s" for k in changes)
        await conn.execute(
            f"UPDATE {table} SET {sets}, updated_at = now() WHERE id = %s",
            [*changes.values(), row_id],
        )
