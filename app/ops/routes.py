"""Operations endpoints: health, Prometheus metrics, a trivial ping, and the audit log reader."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from litestar import Response, get, route
from litestar.datastructures import State
from litestar.params import Parameter
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from psycopg import AsyncConnection
from psycopg_pool import PoolTimeout
from redis.asyncio import Redis

import app.ops.request_metrics  # noqa: F401  (registers the request counts' collector)
from app import _core, deadletters
from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.head import GET_HEAD
from app.jobs import WORKER_STALE_SECONDS, workers_key
from app.members.mask import READ_PHONE, mask_email, mask_phone, mask_wechat_id, sees_phones
from app.ops.schemas import AuditOut, Check, HealthOut
from app.paging import Page, PageNo, PerPage, fetch_page
from app.sms.outbox import pending_stats

# Litestar adds the charset of every text/* answer: prometheus_client's type names it already,
# and a scraper parsing the header (Go's mime.ParseMediaType) refuses a parameter given twice
_METRICS_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


@route("/ping", http_method=GET_HEAD, include_in_schema=False)
async def ping() -> dict[str, str]:
    """The cheapest JSON answer: the baseline for load tests."""
    return {"pong": "ok"}


@route("/health", http_method=GET_HEAD)
async def health(state: State, settings: Settings) -> Response[HealthOut]:
    """PostgreSQL, Redis, worker heartbeat and the read replica (when configured); ``down``
    names each that is not ok. 503 when PostgreSQL or Redis is down (the API cannot serve); a
    missing worker heartbeat or a replica that is down or lagging is listed in ``down`` but
    answers 200 (requests go on; write-behind and jobs wait for a worker, reads go to the
    primary). The replica's status is its last background check's, not a query of its own."""
    # both at once: within about 2 s in all (review R4: one after the other, up to 4)
    (pg, dead), (rd, workers) = await asyncio.gather(
        _postgres_check(state), _redis_check(state.redis, settings)
    )
    ok = pg.status == "ok" and rd.status == "ok"
    checks = {"postgres": pg, "redis": rd, "workers": workers}
    standby = None if state.replica is None else Check(*state.replica.report())
    if standby is not None:
        checks["replica"] = standby
    body = HealthOut(
        "ok" if ok else "down",
        _core.version(),
        pg,
        rd,
        workers,
        down=[name for name, check in checks.items() if check.status != "ok"],
        dead_letters=dead,
        replica=standby,
    )
    return Response(body, status_code=200 if ok else 503)


_PROBES: set[asyncio.Future[Any]] = set()  # PostgreSQL checks answered for, still running
SIDE_FRESH = 1.0  # s: a side check's answer serves the /health calls of the next second
SIDE_STALE = 10.0  # s: a side check running this long is left to end by itself


async def _postgres_check(state: State) -> tuple[Check, dict[str, int]]:
    """PostgreSQL's check, answered within 2 s in all. The pool's limit covers only the wait
    for a connection, not its check of an idle one nor the query, and cancelling a query waits
    for the server to take the cancel: a server gone silent (frozen, cut off) held ``/health``
    as long as it was silent (probe S). A check still running then is left to end by itself.
    With no pooled connection free within 1 s the check asks the server on a connection of its
    own: a busy pool is not a database down — one such check at a time per process, shared by
    the calls that come meanwhile and in the second after (``_SideCheck``)."""

    async def check() -> tuple[Check, dict[str, int]]:
        try:
            async with state.pool.connection(timeout=1) as conn:
                await conn.execute("SELECT 1")
                return Check("ok"), await _dead_letters(conn)
        except PoolTimeout:  # every connection busy (probe W: a burst of log-ins, each holding
            pass  # one through its password check, made /health say "down"): ask the server
        await asyncio.shield(_SideCheck.of(state).shared(state.pool.conninfo))
        return Check("ok", "every pooled connection busy"), {}

    probe = asyncio.ensure_future(check())
    done, _ = await asyncio.wait({probe}, timeout=2)
    if not done:
        _left_running(probe)
        probe.cancel()
        return Check("down", "TimeoutError"), {}
    if probe.exception() is not None:  # any failure means "down": report it, do not raise
        return Check("down", type(probe.exception()).__name__), {}
    return probe.result()


def _left_running(task: asyncio.Future[Any]) -> None:
    """Keep ``task`` referenced until it ends by itself, its outcome read (never logged)."""
    _PROBES.add(task)
    task.add_done_callback(_PROBES.discard)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


async def _ask_server(conninfo: str) -> None:
    """``SELECT 1`` on a connection of its own, given up after ``SIDE_STALE`` s: connecting to a
    server gone silent waited as long as it stayed silent, a socket held for each check left
    running (a probe)."""
    async with asyncio.timeout(SIDE_STALE):
        conn = await AsyncConnection.connect(conninfo, autocommit=True)
        try:
            await conn.execute("SELECT 1")
        finally:
            await conn.close()


class _SideCheck:
    """The PostgreSQL check of ``/health`` on a connection of its own, with the pool busy: one at
    a time per process (per application's state), its answer shared by the calls that come while
    it runs and for ``SIDE_FRESH`` s after it (a probe: a burst of anonymous ``/health`` calls
    with every pooled connection busy opened a server connection each, 83 at once, past the
    ``max_connections`` the pools are sized for). One running for ``SIDE_STALE`` s (a server gone
    silent) is left to end by itself and the next call starts another: at most one new
    connection per ``SIDE_STALE`` s while the server stays silent."""

    def __init__(self) -> None:
        self.task: asyncio.Future[None] | None = None
        self.started = self.ended = float("-inf")

    @classmethod
    def of(cls, state: State) -> _SideCheck:
        side: _SideCheck | None = getattr(state, "postgres_side_check", None)
        if side is None:
            side = state.postgres_side_check = cls()
        return side

    def shared(self, conninfo: str) -> asyncio.Future[None]:
        """The check under way or just answered, else a new one."""
        now, task = time.monotonic(), self.task
        if task is not None:
            if task.done() and now - self.ended < SIDE_FRESH:
                return task
            if not task.done():
                if now - self.started < SIDE_STALE:
                    return task
                _left_running(task)
        self.started, self.task = now, asyncio.ensure_future(_ask_server(conninfo))
        self.task.add_done_callback(self._end)
        return self.task

    def _end(self, task: asyncio.Future[None]) -> None:
        if task is self.task:
            self.ended = time.monotonic()
        if not task.cancelled():
            task.exception()  # read: shared with every caller, raised to each of them


async def _redis_check(redis: Redis, settings: Settings) -> tuple[Check, Check]:
    """Redis's check (its commands time out after ``TRACECODE_REDIS_TIMEOUT``) and, with it,
    the workers' heartbeats."""
    try:
        await redis.ping()
        return Check("ok"), await _worker_check(redis, settings)
    except Exception as exc:
        return Check("down", type(exc).__name__), Check("unknown", "redis is down")


async def _worker_check(redis: Redis, settings: Settings) -> Check:
    since = time.time() - WORKER_STALE_SECONDS
    recent = await redis.zrangebyscore(workers_key(settings.redis_namespace), since, "+inf")
    fresh = await redis.exists(*recent) if recent else 0  # their keys: a heartbeat each
    if not fresh:
        return Check("missing", "no worker heartbeat")
    return Check("ok", f"{fresh} worker process(es)")


async def _dead_letters(conn: Any) -> dict[str, int]:
    """Dead letters per queue (an empty dict when they cannot be counted)."""
    try:
        async with conn.transaction():
            return await deadletters.counts(conn)
    except Exception:  # psycopg.Error: health reports the stores, not this count
        return {}


DEAD_LETTERS = Gauge(
    "tracecode_dead_letters", "Records set aside by a queue consumer, per queue", ["queue"]
)


SMS_OUTBOX = Gauge(
    "tracecode_sms_outbox",
    "SMS outbox rows waiting (pending), in flight (sending), and the oldest due row's age (s)",
    ["what"],
)


@get("/metrics", include_in_schema=False)
async def metrics(state: State) -> Response[bytes]:
    sms: dict[str, float] = {}
    try:
        async with state.pool.connection(timeout=2) as conn:
            dead = await _dead_letters(conn)
            sms = await pending_stats(conn)
    except Exception:  # the database is down: the other metrics still answer
        dead = {}
    for name, value in sms.items():
        SMS_OUTBOX.labels(name).set(value)
    if dead:
        DEAD_LETTERS.clear()  # a queue whose dead letters were all deleted reads 0, not stale
    for queue, n in dead.items():
        DEAD_LETTERS.labels(queue).set(n)
    return Response(generate_latest(), media_type=_METRICS_TYPE)


# an empty filter matched nothing (a probe: a blank box showed an empty log): 400 instead
Filter = Annotated[str | None, Parameter(min_length=1, max_length=200)]


@get("/audit")
async def audit_log(
    conn: Conn,
    principal: Principal,
    entity: Filter = None,
    entity_id: Filter = None,
    action: Filter = None,
    page: PageNo = 1,
    per_page: PerPage = 50,
) -> Page[AuditOut]:
    """Audit rows of the caller's subtree, newest first; a platform operator's also holds the
    organisations and users of every brand, which it administers (``admin_scope``: it saw none
    of the changes it made to the brands it onboarded)."""
    principal.require("audit.read")
    scope = "o.path LIKE %(prefix)s"
    if principal.is_platform:
        scope = f"({scope} OR a.entity IN ('org', 'user'))"
    where = [scope]
    params: dict[str, Any] = {"prefix": principal.org_path + "%"}
    for column, value in (("entity", entity), ("entity_id", entity_id), ("action", action)):
        if value is not None:
            where.append(f"a.{column} = %({column})s")
            params[column] = value
    return await fetch_page(
        conn,
        columns="a.id, a.at, a.actor_user, a.actor_key, a.org_id, a.action, a.entity, "
        "a.entity_id, a.before, a.after, a.request_id",
        source="audit_log a JOIN orgs o ON o.id = a.org_id",
        where=where,
        params=params,
        order="a.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: AuditOut(**_shown(principal, row)),
    )


# Whose personal data an audit row may hold, and the permission that shows it whole: the log
# is read by staff who cannot read users or members otherwise (probe N: an analyst read staff
# phones and e-mails in users' before/after).
_PERSONAL = {"user": "users.read", "member": READ_PHONE}


def _shown(principal: Principal, row: dict[str, Any]) -> dict[str, Any]:
    """An audit row as the reader may see it: phones and e-mails masked without the entity's
    read permission (a member's: ``sees_phones``, brand staff only)."""
    needed = _PERSONAL.get(row["entity"])
    allowed = sees_phones(principal) if needed == READ_PHONE else principal.has(needed or "")
    if needed is not None and not allowed:
        row["before"], row["after"] = _masked(row["before"]), _masked(row["after"])
    return row


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: mask_phone(v)
            if k == "phone" and isinstance(v, str)
            else mask_email(v)
            if k == "email" and isinstance(v, str)
            else mask_wechat_id(v)
            if k == "wechat_id" and isinstance(v, str)
            else _masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value
