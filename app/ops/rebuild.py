"""Rebuild the Redis-held state from PostgreSQL: ``tracecode redis rebuild``.

Redis holds the hot path's state; PostgreSQL holds the records. After a Redis that lost data (its
append-only file gone or truncated, a new empty server, keys deleted by hand) this command gives
back everything the records can give, in four steps, each safe to run while the API serves:

1. **Drain** the verification write-behind queue into PostgreSQL (``app.verify.records.flush``,
   the flusher's own function and lock), until every record queued when the command started has
   been stored: the records are then the whole truth the counters are rebuilt from.
2. **Query counters** (per code: ``n``, ``first_at``, ``first_place``) from the counted
   verifications (``COUNTED``: right PIN, genuine or suspicious — the fallback path's own rule),
   in one pass over ``verifications``. A counter is only ever raised: Redis keeps its own when it
   counts at least as many (it has seen everything PostgreSQL has, or more since the drain);
   otherwise it is missing history, and PostgreSQL's count and first query replace it.
3. **Wrong-PIN counters and lockouts**, replayed per code from the recent wrong-PIN, locked and
   counted records, with the verification script's rules (a wrong PIN counts while the previous
   one is less than ``pin_lockout_seconds`` old; the ``pin_max_failures``-th locks the code for
   ``pin_lockout_seconds``; a right PIN clears the count; nothing counts during a lock). A lock
   or count is only raised, never shortened.
4. **Jobs**: the queued jobs whose work PostgreSQL still shows unfinished are sent again (printer
   file exports ``queued``/``running``, EPCIS captures ``pending``/``running``); both jobs are
   idempotent and lock their row, so a job that was not lost runs once all the same.

Every Redis key family, and what becomes of it (``{ns}`` is ``TRACECODE_REDIS_NAMESPACE``):

==============================================  =========================================
``{ns}:verif:queue`` (list)                     drained (step 1); records Redis lost before
                                                they were flushed are lost (the loss window)
``{ns}:verif:flush-lock``                       transient (30 s), taken by step 1 itself
``{ns}:q:{code}`` (hash: n, first_at, place)    rebuilt (step 2)
``{ns}:pinfail:{code}``, ``{ns}:lock:{code}``   rebuilt (step 3)
``{ns}:rl:{ip}:{minute}``                       dropped safely: a 60 s window; a lost one gives
                                                an address at most one fresh minute
``{ns}:login:{ip|fail|lock|acct|known}:…``      lost by design: failed logins are not stored in
                                                PostgreSQL; argon2 still makes each guess slow,
                                                and the next successful login re-marks its IP
                                                as known
``{ns}:member:otp-ip:…``, ``{ns}:member:login:…``  lost by design, as the staff log-in limits;
                                                the SMS outbox still throttles each phone
``{ns}:member:code-guess:{u|k}{id}``            lost by design (a 15 min window)
``{ns}:line-uploads:{org}:{line}`` (list)       lost by design: a recent-activity view; the
                                                uploads themselves are in the state and events
``{ns}:worker:{host}:{pid}``, ``{ns}:pong:…``   transient: rewritten by running workers
``{ns}-dramatiq:*`` (the job queues)            exports and EPCIS captures re-sent (step 4);
                                                SMS rows are sent by the outbox's sweeper, expired
                                                redemptions and roll-ups by periodic threads
caches                                          none lives in Redis (the batch and token caches
                                                are in-process, per API process)
==============================================  =========================================

The key builders below name the keys as the verification script (``app.verify.service``) does;
``tests/test_redis_durability.py`` fails if they part.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import redis

from app.config import Settings
from app.errors import ServiceUnavailable
from app.verify.fallback import COUNTED
from app.verify.records import flush
from app.verify.regions import Place

BATCH = 2000  # codes per Redis pipeline and per fetch from the server-side cursor
DRAIN_TIMEOUT = 120.0  # seconds the drain may wait for another flusher's lock

_encode = msgspec.json.Encoder().encode


def queue_key(ns: str) -> str:
    return f"{ns}:verif:queue"


def count_key(ns: str, code: int) -> str:
    return f"{ns}:q:{code}"


def fails_key(ns: str, code: int) -> str:
    return f"{ns}:pinfail:{code}"


def lock_key(ns: str, code: int) -> str:
    return f"{ns}:lock:{code}"


# KEYS[1] the code's query hash. ARGV: n, first_at, first_place. Raises, never lowers: 1 when set.
_RAISE_COUNT = """
if tonumber(redis.call('HGET', KEYS[1], 'n') or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'first_at', ARGV[2], 'first_place', ARGV[3])
return 1
"""

# KEYS[1] the lock, KEYS[2] the wrong-PIN count. ARGV: lock seconds (0: not locked), wrong PINs,
# their seconds left. Answers 1 when a lock was set, 2 when a count was, else 0. A lock is only
# lengthened, a count only raised.
_RAISE_LOCK = """
local lock_s, fails = tonumber(ARGV[1]), tonumber(ARGV[2])
local locked = redis.call('TTL', KEYS[1])
if lock_s > 0 then
  if locked + 1 >= lock_s then return 0 end  -- a second's rounding is no reason to set it
  redis.call('SET', KEYS[1], '1', 'EX', lock_s)
  redis.call('DEL', KEYS[2])
  return 1
end
if fails == 0 or locked > 0 then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= fails then return 0 end
redis.call('SET', KEYS[2], fails, 'EX', ARGV[3])
return 2
"""

_COUNTS = f"""
SELECT code_id, count(*) AS n, min(at) AS first_at,
       (array_agg(province ORDER BY at, id))[1] AS province,
       (array_agg(city ORDER BY at, id))[1] AS city
  FROM verifications
 WHERE code_id IS NOT NULL AND {COUNTED}
 GROUP BY code_id
"""

# The records that decide the PIN state of every code with a wrong PIN or a lock since ``since``
# (only those can hold a live count or lock), from ``horizon`` on, in the order they were made.
_PIN_HISTORY = f"""
SELECT code_id, at, reason, ({COUNTED}) AS counted
  FROM verifications
 WHERE code_id IN (SELECT code_id FROM verifications
                    WHERE at > %(since)s AND reason IN ('wrong_pin', 'locked')
                      AND code_id IS NOT NULL)
   AND at > %(horizon)s
   AND (reason IN ('wrong_pin', 'locked') OR ({COUNTED}))
 ORDER BY code_id, at, id
"""

_UNFINISHED_JOBS = """
SELECT 'run_export_job' AS actor, id::text FROM code_exports WHERE state IN ('queued', 'running')
UNION ALL
SELECT 'capture_job', id::text FROM epcis_captures WHERE state IN ('pending', 'running')
"""


class Report(msgspec.Struct, kw_only=True):
    """What one rebuild did."""

    drained: int = 0  # verification records moved from the queue into PostgreSQL
    codes: int = 0  # codes with counted verifications in PostgreSQL
    counters_raised: int = 0  # of them, the query counters set from PostgreSQL
    locks_set: int = 0  # wrong-PIN lockouts set
    fails_set: int = 0  # wrong-PIN counts set
    jobs_sent: int = 0  # unfinished exports and EPCIS captures whose job was sent again

    def lines(self) -> list[str]:
        return [
            f"drained {self.drained} queued verification records into PostgreSQL",
            f"query counters: {self.codes} codes, {self.counters_raised} restored from PostgreSQL",
            f"PIN lockouts restored: {self.locks_set}; wrong-PIN counts restored: {self.fails_set}",
            f"jobs sent again: {self.jobs_sent}",
            "not rebuilt (see app/ops/rebuild.py): rate limits, login and member limits, "
            "packing upload logs, worker heartbeats",
        ]


class PinState(msgspec.Struct, frozen=True):
    """A code's wrong-PIN state now: seconds locked (0: not), wrong PINs and their seconds left."""

    lock_seconds: int
    fails: int
    fails_seconds: int


# -- 1. drain ------------------------------------------------------------------------------


def drain(
    client: redis.Redis, conn: psycopg.Connection[Any], ns: str, timeout: float = DRAIN_TIMEOUT
) -> int:
    """Flush the verification queue until every record queued now is in PostgreSQL; return the
    records this call moved (a running worker's flusher may move others meanwhile).

    Records are unique (each has its own key) and pushed at the head, flushed from the tail, so
    the queue's newest record now is gone exactly when everything queued before it is stored —
    new verifications arriving meanwhile do not make the drain chase them."""
    queue = queue_key(ns)
    newest = client.lindex(queue, 0)
    moved = 0
    deadline = time.monotonic() + timeout
    while newest is not None and client.lpos(queue, newest) is not None:  # type: ignore[arg-type]
        taken = flush(client, conn, ns)
        moved += taken
        if taken == 0:  # another flusher holds the lock: it is storing them
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"the verification queue did not drain within {timeout:.0f} s",
                    code="queue_not_drained",
                )
            time.sleep(0.1)
    return moved


# -- 2. query counters ---------------------------------------------------------------------


def _utc_text(at: datetime) -> str:
    """A time as the verification script keeps it: ISO 8601 in UTC, as msgspec writes it."""
    return _encode(at.astimezone(UTC))[1:-1].decode()


def _count_rows(conn: psycopg.Connection[Any]) -> Iterator[list[tuple[Any, ...]]]:
    """The counted verifications per code, ``BATCH`` codes at a time (a server-side cursor)."""
    with conn.transaction(), conn.cursor(name="tracecode_rebuild_counts") as cursor:
        cursor.execute(_COUNTS)
        while rows := cursor.fetchmany(BATCH):
            yield rows


def restore_counters(
    client: redis.Redis, conn: psycopg.Connection[Any], ns: str
) -> tuple[int, int]:
    """Raise every code's query counter to PostgreSQL's count; return (codes, raised)."""
    script = client.register_script(_RAISE_COUNT)
    codes = raised = 0
    for rows in _count_rows(conn):
        pipe = client.pipeline(transaction=False)
        for code, n, first_at, province, city in rows:
            place = Place(province, city).label if province else ""
            script(keys=[count_key(ns, code)], args=[n, _utc_text(first_at), place], client=pipe)
        raised += sum(int(r) for r in pipe.execute())
        codes += len(rows)
    return codes, raised


# -- 3. wrong PINs and lockouts ------------------------------------------------------------


def replay(
    history: Iterable[tuple[datetime, str, bool]], settings: Settings, now: datetime
) -> PinState:
    """A code's wrong-PIN state now from its records (time, reason, counted) in time order, by
    the verification script's rules."""
    window = timedelta(seconds=settings.pin_lockout_seconds)
    locked_until: datetime | None = None
    fails, last_fail = 0, None
    for at, reason, counted in history:
        if locked_until is not None and at < locked_until:
            continue  # during a lock every attempt answers "locked" and nothing counts
        if reason == "locked":  # outside a lock: the attempt that locked the code
            locked_until, fails = at + window, 0
        elif reason == "wrong_pin":
            if last_fail is None or at - last_fail > window:
                fails = 0  # the count had expired
            fails, last_fail = fails + 1, at
            if fails >= settings.pin_max_failures:
                locked_until, fails = at + window, 0
        elif counted:
            fails = 0  # a right PIN clears the count
    if locked_until is not None and locked_until > now:
        return PinState(_seconds(locked_until - now), 0, 0)
    if fails and last_fail is not None and last_fail + window > now:
        return PinState(0, fails, _seconds(last_fail + window - now))
    return PinState(0, 0, 0)


def _seconds(delta: timedelta) -> int:
    return max(int(-(-delta.total_seconds() // 1)), 1)


def _pin_histories(
    conn: psycopg.Connection[Any], settings: Settings, now: datetime
) -> Iterator[tuple[int, list[tuple[datetime, str, bool]]]]:
    """(code, its records) of every code with a wrong PIN or a lock in the last lockout window,
    from two windows back (a lock seen there began inside them)."""
    window = timedelta(seconds=settings.pin_lockout_seconds)
    params = {"since": now - window, "horizon": now - 2 * window}
    code: int | None = None
    history: list[tuple[datetime, str, bool]] = []
    for row_code, at, reason, counted in conn.execute(_PIN_HISTORY, params):
        if row_code != code:
            if code is not None:
                yield code, history
            code, history = row_code, []
        history.append((at, reason, counted))
    if code is not None:
        yield code, history


def restore_lockouts(
    client: redis.Redis, conn: psycopg.Connection[Any], settings: Settings
) -> tuple[int, int]:
    """Set the wrong-PIN counts and lockouts the records show live now; return (locks, counts)."""
    ns = settings.redis_namespace
    script = client.register_script(_RAISE_LOCK)
    now = datetime.now(UTC)
    pipe = client.pipeline(transaction=False)
    for code, history in _pin_histories(conn, settings, now):
        state = replay(history, settings, now)
        if state.lock_seconds or state.fails:
            script(
                keys=[lock_key(ns, code), fails_key(ns, code)],
                args=[state.lock_seconds, state.fails, state.fails_seconds],
                client=pipe,
            )
    answers = [int(a) for a in pipe.execute()]
    return answers.count(1), answers.count(2)


# -- 4. jobs -------------------------------------------------------------------------------


def resend_jobs(conn: psycopg.Connection[Any], send: Callable[[str, str], object]) -> int:
    """Send again the job of every export and EPCIS capture PostgreSQL shows unfinished."""
    rows = conn.execute(_UNFINISHED_JOBS).fetchall()
    for actor, job_id in rows:
        send(actor, job_id)
    return len(rows)


def rebuild(
    client: redis.Redis,
    conn: psycopg.Connection[Any],
    settings: Settings,
    send: Callable[[str, str], object] | None = None,
    drain_timeout: float = DRAIN_TIMEOUT,
) -> Report:
    """The four steps on an autocommit connection; ``send`` (``app.jobs.send``) re-sends jobs,
    None leaves the job queues alone."""
    ns = settings.redis_namespace
    report = Report(drained=drain(client, conn, ns, drain_timeout))
    report.codes, report.counters_raised = restore_counters(client, conn, ns)
    report.locks_set, report.fails_set = restore_lockouts(client, conn, settings)
    if send is not None:
        report.jobs_sent = resend_jobs(conn, send)
    return report
