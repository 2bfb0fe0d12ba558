"""Rebuild the Redis-held state from PostgreSQL: ``tracecode redis rebuild``.

Redis holds the hot path's state; PostgreSQL holds the records. After a Redis that lost data (its
append-only file gone or truncated, a new empty server, keys deleted by hand) this command gives
back everything the records can give, in four steps, each safe to run while the API serves:

1. **Drain** the verification write-behind queue into PostgreSQL (``app.verify.records.flush``,
   the flusher's own function and lock), until every record queued when the command started has
   been stored: the records are then the whole truth the counters are rebuilt from.
2. **Query counters** (per code: ``n``, ``first_at``, ``first_place``) from the counted
   verifications (``COUNTED``: right PIN, genuine or suspicious — the fallback path's own rule).
   What Redis counts now stays, and what it never counted is added: the records from before its
   first query (``first_at``: history it lost; its first query then becomes PostgreSQL's) and
   those the Redis-down path stored (``fallback``) after the last one added (``fb_at``, kept in
   the hash). A count that is still below PostgreSQL's counted records then (a replica promoted
   behind its master, a truncated append-only file: the hash came through with its first query
   but not all its increments) is raised to PostgreSQL's count; a count is never lowered (after
   a PostgreSQL restore to an earlier time Redis's counts are ahead of the records, and kept).
   Each code's change is made only if its ``n``, ``first_at`` and ``fb_at`` are still what the
   records were counted against (a verification that counted meanwhile: read again), so a query
   made while the command runs is never lost, and a second run adds nothing.
   (Setting the counter to the larger of Redis's and PostgreSQL's counts alone lost the queries
   Redis counted since the loss: a probe; adding alone never raised a count whose increments
   were lost: another.)
3. **Wrong-PIN counters and lockouts**, replayed per code from the recent wrong-PIN, locked and
   counted records, with the verification script's rules (a wrong PIN counts while the previous
   one is less than ``pin_lockout_seconds`` old; the ``pin_max_failures``-th locks the code for
   ``pin_lockout_seconds``; a right PIN clears the count; nothing counts during a lock). A lock
   or count is only raised, never shortened.
   The **clients' wrong-PIN counts and lockouts** (over all codes, per client address — an IPv6
   one's /64) are replayed the same way from the last two lockout windows' ``wrong_pin`` and
   ``client_locked`` records (``fallback.replay_client``): a wrong PIN the records call a code's
   ``locked`` (one of a locked code, or the one that locked it) is not known for a wrong one and
   is left out, so a count may come back lower than it was.
   Claims' **retry keys** come back too, from the counted records that carry one (``retry``):
   a claim sent again within the day is checked, not counted again.
4. **Jobs**: the queued jobs whose work PostgreSQL still shows unfinished are sent again (printer
   file exports ``queued``/``running``, EPCIS captures ``pending``/``running``); both jobs are
   idempotent and lock their row, so a job that was not lost runs once all the same.

Every Redis key family, and what becomes of it (``{ns}`` is ``TRACECODE_REDIS_NAMESPACE``):

==============================================  =========================================
``{ns}:verif:queue`` (list)                     drained (step 1); records Redis lost before
                                                they were flushed are lost (the loss window)
``{ns}:verif:flush-lock``                       transient (30 s), taken by step 1 itself
``{ns}:q:{code}`` (hash: n, first_at,         rebuilt (step 2)
first_place, fb_at)
``{ns}:pinfail:{code}``, ``{ns}:lock:{code}``   rebuilt (step 3)
``{ns}:clientfail:{client}``,                   rebuilt (step 3), from the ``wrong_pin`` and
``{ns}:clientlock:{client}``                    ``client_locked`` records (a count may be low)
``{ns}:retry:{code}:{retry key}``               rebuilt (step 3): a claim's retry key, for a day
                                                (an H5 answer form's check: ten minutes)
                                                from the counted record that set it; the records
                                                of retries say ``claim_retry`` and are not
                                                counted by step 2
``{ns}:rl:{client}:{minute}``                   dropped safely: a 60 s window; a lost one gives
                                                a client at most one fresh minute (a client: an
                                                IPv4 address or an IPv6 /64, ``client_bucket``)
``{ns}:login:{ip|fail|lock|acct|known}:…``      lost by design: failed logins are not stored in
                                                PostgreSQL; argon2 still makes each guess slow,
                                                and the next successful login re-marks its IP
                                                as known
``{ns}:member:otp-ip:…``, ``{ns}:member:login:…``  lost by design, as the staff log-in limits;
                                                the SMS outbox still throttles each phone
``{ns}:member:code-guess:{u|k|o|t}{id}``        lost by design (a 15 min window): an account's
                                                count, its organisation's and its branch's
                                                (``t``: the organisation below the brand); on
                                                a cluster all tagged by the brand (``{b<id>}``;
                                                an account of no brand: ``{sys}``)
``{ns}:member:phone-miss:{u|k|o|t}{id}``        lost by design (a 15 min window); tagged as above
``{ns}:line-uploads:{org}:{line}`` (list)       lost by design: a recent-activity view; the
                                                uploads themselves are in the state and events
``{ns}:lms:{u|k}{id}:{minute}``                 not rebuilt: the B2B verification limit's 60 s
                                                window (``app.b2b.service``); a lost one gives a
                                                caller at most one fresh minute
``{ns}:complaints:member:{id}``                 lost by design: a member's filing limit, an hour's
                                                window (``app.marketing.complaints``); a member
                                                may file up to its limit again within that hour
``{ns}:rw:{u|k}{id}``                           lost by design: a read-your-writes mark, for
                                                ``TRACECODE_REPLICA_STICKY_SECONDS``
                                                (``app.replica``); without it a principal that
                                                just wrote may read from the standby, at most
                                                ``TRACECODE_REPLICA_MAX_LAG_SECONDS`` behind
``{ns}:wechat:token:{appid}:{proof}``           not rebuilt: a cache of the WeChat access token
                                                (``app.wechat.gateway``; ``proof`` an HMAC of
                                                the secret); the next send fetches one again
``{ns}:wechat:token-lock:{appid}:{proof}``      transient (the fetch's time-out), as above
``{ns}:wechat:oauth:{sha256}``                  lost by design: a WeChat sign-in's ``state``, for
                                                300 s (``app.web.wechat_pages``); a sign-in under
                                                way is 400 ``wechat_state_invalid``, and the
                                                member taps again
``{ns}:call:…`` (Redis Cluster only)            transient: a verification script call's replies,
                                                kept seconds for a retry of that call
``{ns}:worker:{host}:{pid}``, ``{ns}:workers``,
``{ns}:pong:…``                                 transient: rewritten by running workers
``{ns}-dramatiq:*`` (the job queues)            exports and EPCIS captures re-sent (step 4);
                                                SMS rows are sent by the outbox's sweeper, expired
                                                redemptions and roll-ups by periodic threads
caches                                          one: the WeChat access token (above); the batch
                                                and API-token caches are in-process, per API
                                                process
==============================================  =========================================

On a Redis Cluster (``app.redisconn``) the same families carry a hash tag at the end: a code's
keys the tag of its shard, a rate counter and a client's PIN keys their client's, each shard its
own record queue and flush lock (``{ns}:verif:queue{tag}``), a log-in account's keys the account
(``{ns}:login:fail:{account}``); the job queues are on RabbitMQ there. The steps are the same.

The key builders below name the keys as the verification script (``app.verify.service``) does;
``tests/test_redis_durability.py`` and ``tests/test_redis_cluster.py`` fail if they part.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg

from app.auth.limits import client_bucket
from app.config import Settings
from app.errors import ServiceUnavailable
from app.redisconn import AnySyncRedis, code_tag, is_cluster, plain, text_tag
from app.verify.fallback import (
    COUNTED,
    PIN_PAGE,
    PIN_RECORDS_BEFORE,
    RIGHT_PIN,
    PinRecord,
    pin_history,
    pin_start,
    pins_before,
    replay,
    replay_client,
)
from app.verify.record import CHECK_RETRY_SECONDS, retry_seconds
from app.verify.records import flush, queues
from app.verify.regions import Place

BATCH = 2000  # codes per fetch from the server-side cursor and per script call at most
DRAIN_TIMEOUT = 120.0  # seconds the drain may wait for another flusher's lock
ADD_ATTEMPTS = 5  # tries of a code whose counter a verification changes while it is restored

_encode = msgspec.json.Encoder().encode


def queue_key(ns: str) -> str:
    """The record queue on one server (``app.verify.records.queues``: all of them)."""
    return f"{ns}:verif:queue"


def _tag(code: int, cluster: bool) -> str:
    return code_tag(code) if cluster else ""


def count_key(ns: str, code: int, cluster: bool = False) -> str:
    return f"{ns}:q:{code}{_tag(code, cluster)}"


def fails_key(ns: str, code: int, cluster: bool = False) -> str:
    return f"{ns}:pinfail:{code}{_tag(code, cluster)}"


def lock_key(ns: str, code: int, cluster: bool = False) -> str:
    return f"{ns}:lock:{code}{_tag(code, cluster)}"


def retry_key(ns: str, code: int, retry: str, cluster: bool = False) -> str:
    return f"{ns}:retry:{code}:{retry}{_tag(code, cluster)}"


def client_fails_key(ns: str, client: str, cluster: bool = False) -> str:
    """A client's wrong PINs over all codes (``client``: ``client_bucket``'s)."""
    return f"{ns}:clientfail:{plain(client) if cluster else client}{_text_tag(client, cluster)}"


def client_lock_key(ns: str, client: str, cluster: bool = False) -> str:
    """A client's PIN lock over all codes."""
    return f"{ns}:clientlock:{plain(client) if cluster else client}{_text_tag(client, cluster)}"


def _text_tag(client: str, cluster: bool) -> str:
    return text_tag(client) if cluster else ""


# The scripts take many codes at once, all of one hash tag on a cluster (one slot per call).
# KEYS: the codes' query hashes. Answers each one's first_at, fb_at and n ('' when absent).
_READ_COUNTS = """
local seen = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'first_at', 'fb_at', 'n')
  seen[i] = {v[1] or '', v[2] or '', v[3] or ''}
end
return seen
"""

# KEYS: the codes' query hashes. ARGV, seven per code: the first_at, fb_at and n the records were
# counted against, the count to set (only ever raised), the first query to set ('' keeps
# Redis's) and its place, the fb_at to set ('' keeps it). A code whose first_at, fb_at or n
# changed since is left alone and named in the answer: {codes raised, the places in KEYS of
# those left}.
_ADD_COUNTS = """
local raised, left = 0, {}
for i, key in ipairs(KEYS) do
  local a = (i - 1) * 7
  local v = redis.call('HMGET', key, 'first_at', 'fb_at', 'n')
  if (v[1] or '') ~= ARGV[a + 1] or (v[2] or '') ~= ARGV[a + 2]
      or (v[3] or '') ~= ARGV[a + 3] then
    left[#left + 1] = i
  else
    local n = tonumber(ARGV[a + 4])
    if n > (tonumber(v[3]) or 0) then
      redis.call('HSET', key, 'n', n)
      raised = raised + 1
    end
    if ARGV[a + 5] ~= '' then
      redis.call('HSET', key, 'first_at', ARGV[a + 5], 'first_place', ARGV[a + 6])
    end
    if ARGV[a + 7] ~= '' then redis.call('HSET', key, 'fb_at', ARGV[a + 7]) end
  end
end
return {raised, left}
"""

# KEYS: each code's lock and wrong-PIN count. ARGV: lock seconds (0: not locked), wrong PINs and
# their seconds left of each. Answers {locks set, counts set}. A lock is only lengthened, a count
# only raised.
_RAISE_LOCKS = """
local locks, counts = 0, 0
for i = 1, #KEYS, 2 do
  local lock, count, at = KEYS[i], KEYS[i + 1], (i - 1) / 2 * 3
  local lock_s, fails = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local locked = redis.call('TTL', lock)
  if lock_s > 0 then
    if locked + 1 < lock_s then  -- a second's rounding is no reason to set it
      redis.call('SET', lock, '1', 'EX', lock_s)
      redis.call('DEL', count)
      locks = locks + 1
    end
  elseif fails > 0 and locked <= 0
      and tonumber(redis.call('GET', count) or '0') < fails then
    redis.call('SET', count, fails, 'EX', ARGV[at + 3])
    counts = counts + 1
  end
end
return {locks, counts}
"""

# The codes with counted verifications (of %(codes)s, or all), for a server-side cursor.
_COUNTED_CODES = f"""
SELECT DISTINCT code_id FROM verifications
 WHERE code_id IS NOT NULL AND {COUNTED}
   AND (%(codes)s::bigint[] IS NULL OR code_id = ANY(%(codes)s))
"""

# Per code, against Redis's first_at and fb_at (NULL: none): the counted records Redis never
# counted — its own from before its first query, the Redis-down path's after fb_at — the last of
# the latter, the first query, and all the counted records.
_TO_ADD = f"""
SELECT k.code,
       count(*) FILTER (WHERE NOT v.fallback AND (k.first IS NULL OR v.at < k.first)) AS lost,
       count(*) FILTER (WHERE v.fallback AND (k.fb IS NULL OR v.at > k.fb)) AS fallback,
       max(v.at) FILTER (WHERE v.fallback) AS fallback_at,
       min(v.at) AS first_at,
       (array_agg(v.province ORDER BY v.at, v.id))[1] AS province,
       (array_agg(v.city ORDER BY v.at, v.id))[1] AS city,
       count(*) AS total
  FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS k (code, first, fb)
  JOIN verifications v ON v.code_id = k.code AND {COUNTED}
 GROUP BY k.code
"""

# The records that decide the PIN state of every code with a wrong PIN or a lock since ``since``
# (only those can hold a live count or lock), from ``horizon`` on, in the order they were made
# (older ones: ``fallback.PIN_RECORDS_BEFORE``).
_PIN_HISTORY = f"""
SELECT code_id, at, reason, ({RIGHT_PIN}) AS right_pin, id
  FROM verifications
 WHERE code_id IN (SELECT code_id FROM verifications
                    WHERE at > %(since)s AND reason IN ('wrong_pin', 'locked')
                      AND code_id IS NOT NULL
                      AND (%(codes)s::bigint[] IS NULL OR code_id = ANY(%(codes)s)))
   AND at > %(horizon)s
   AND (reason IN ('wrong_pin', 'locked') OR ({RIGHT_PIN}))
 ORDER BY code_id, at, id
"""

# The retry keys that may live now: each set by a counted verification with its key (the
# script's SET NX EX, ``record.retry_seconds``: a day at most; later ones with the key are
# ``claim_retry``), with how long ago the last was made.
_RETRY_KEYS = f"""
SELECT code_id, retry, EXTRACT(EPOCH FROM now() - max(at))::float8 AS age
  FROM verifications
 WHERE retry IS NOT NULL AND code_id IS NOT NULL AND at > now() - interval '1 day'
   AND (retry NOT LIKE 'h5:%%' OR at > now() - make_interval(secs => %(check)s))
   AND {COUNTED} AND (%(codes)s::bigint[] IS NULL OR code_id = ANY(%(codes)s))
 GROUP BY code_id, retry
"""

# KEYS: retry keys; ARGV: the seconds each has left. Sets the missing ones; answers how many.
_SET_RETRIES = """
local set = 0
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, '1', 'NX', 'EX', ARGV[i]) then set = set + 1 end
end
return set
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
    client_locks_set: int = 0  # clients' PIN lockouts (over all codes) set
    client_fails_set: int = 0  # clients' wrong-PIN counts set
    retries_set: int = 0  # claims' retry keys set
    jobs_sent: int = 0  # unfinished exports and EPCIS captures whose job was sent again

    def lines(self) -> list[str]:
        return [
            f"drained {self.drained} queued verification records into PostgreSQL",
            f"query counters: {self.codes} codes, {self.counters_raised} restored from PostgreSQL",
            f"PIN lockouts restored: {self.locks_set}; wrong-PIN counts restored: {self.fails_set}",
            f"clients' PIN lockouts restored: {self.client_locks_set}; "
            f"clients' wrong-PIN counts restored: {self.client_fails_set}",
            f"claims' retry keys restored: {self.retries_set}",
            f"jobs sent again: {self.jobs_sent}",
            "not rebuilt (see app/ops/rebuild.py): rate limits, login and member limits, "
            "packing upload logs, worker heartbeats",
        ]


# -- 1. drain ------------------------------------------------------------------------------


def drain(
    client: AnySyncRedis, conn: psycopg.Connection[Any], ns: str, timeout: float = DRAIN_TIMEOUT
) -> int:
    """Flush the verification queue (each queue, on a cluster) until every record queued now is
    in PostgreSQL; return the records this call moved (a running worker's flusher may move
    others meanwhile).

    Records are unique (each has its own key) and pushed at the head, flushed from the tail, so
    a queue's newest record now is gone exactly when everything queued before it is stored —
    new verifications arriving meanwhile do not make the drain chase them."""
    newest = [(queue, client.lindex(queue, 0)) for queue, _ in queues(client, ns)]
    moved = 0
    deadline = time.monotonic() + timeout
    while any(
        last is not None and client.lpos(queue, last) is not None  # type: ignore[arg-type]
        for queue, last in newest
    ):
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


def _counted_codes(conn: psycopg.Connection[Any], codes: list[int] | None) -> Iterator[list[int]]:
    """The codes with counted verifications (of ``codes``, or all), ``BATCH`` at a time (a
    server-side cursor)."""
    with conn.transaction(), conn.cursor(name="tracecode_rebuild_counts") as cursor:
        cursor.execute(_COUNTED_CODES, {"codes": codes})
        while rows := cursor.fetchmany(BATCH):
            yield [row[0] for row in rows]


class _ByTag:
    """Keys and arguments of a many-code script, grouped by the codes' hash tag (one group on
    one server), so that each call touches one slot."""

    def __init__(self, cluster: bool) -> None:
        self.cluster = cluster
        self.groups: dict[str, tuple[list[str], list[Any]]] = {}

    def add(self, code: int, keys: list[str], args: list[Any]) -> None:
        self.add_tagged(_tag(code, self.cluster), keys, args)

    def add_tagged(self, tag: str, keys: list[str], args: list[Any]) -> None:
        """``add`` for keys of the hash tag ``tag`` (a client's, named by text)."""
        group = self.groups.setdefault(tag, ([], []))
        group[0].extend(keys)
        group[1].extend(args)

    def run(self, script: Any) -> list[Any]:
        """One call per group; their answers. The groups are emptied."""
        answers = [script(keys=keys, args=args) for keys, args in self.groups.values()]
        self.groups.clear()
        return answers


def restore_counters(
    client: AnySyncRedis, conn: psycopg.Connection[Any], ns: str, only: list[int] | None = None
) -> tuple[int, int]:
    """Add to every code's (or ``only`` these codes') query counter the counted records Redis
    never counted, and raise one still below PostgreSQL's counted records to them (the module's
    step 2); return (codes, raised)."""
    read, add = client.register_script(_READ_COUNTS), client.register_script(_ADD_COUNTS)
    cluster = is_cluster(client)
    codes = raised = 0
    for batch in _counted_codes(conn, only):
        codes += len(batch)
        pending = batch
        for _ in range(ADD_ATTEMPTS):
            counted, pending = _add_counts(conn, read, add, ns, cluster, pending)
            raised += counted
            if not pending:
                break
        else:
            raise ServiceUnavailable(
                f"{len(pending)} codes' counters kept changing while they were restored: run the "
                "command again"
            )
    return codes, raised


def _add_counts(
    conn: psycopg.Connection[Any], read: Any, add: Any, ns: str, cluster: bool, codes: list[int]
) -> tuple[int, list[int]]:
    """One attempt for ``codes``: Redis's first_at, fb_at and n, the records it never counted
    against them added, and a count still below PostgreSQL's counted records raised to it, where
    they are unchanged. (codes raised, codes left to try again)."""
    seen: dict[int, tuple[str, str, str]] = {}
    for group, answer in _by_tag(ns, cluster, codes, lambda code: [], read):
        for code, (first, fb, n) in zip(group, answer, strict=True):
            seen[code] = (_text(first), _text(fb), _text(n))
    rows = conn.execute(
        _TO_ADD,
        (
            codes,
            [seen[code][0] or None for code in codes],
            [seen[code][1] or None for code in codes],
        ),
    ).fetchall()
    args: dict[int, list[Any]] = {}
    for code, lost, fallback, fallback_at, first_at, province, city, total in rows:
        first, fb, n = seen[code]
        # history Redis lost, or queries it never saw before its first (an outage's: a probe):
        # the first query is PostgreSQL's
        reset = lost > 0 or not first or first_at < datetime.fromisoformat(first)
        # what Redis never counted added; a count still below the records' (increments lost
        # behind a first query that came through: a probe) raised to them; never lowered
        count = max(int(n or 0) + lost + fallback, total)
        if not (reset or count > int(n or 0)):
            continue  # Redis counted them all
        place = Place(province, city).label if reset and province else ""
        args[code] = [
            first,
            fb,
            n,
            count,
            _utc_text(first_at) if reset else "",
            place,
            _utc_text(fallback_at) if fallback else "",
        ]
    raised, left = 0, []
    for group, (counted, places) in _by_tag(ns, cluster, list(args), args.__getitem__, add):
        raised += counted
        left += [group[i - 1] for i in places]
    return raised, left


def _by_tag(
    ns: str, cluster: bool, codes: list[int], args: Callable[[int], list[Any]], script: Any
) -> Iterator[tuple[list[int], Any]]:
    """``script`` over the codes' query hashes (``args`` of each), one call per hash tag: each
    call's codes and answer."""
    batch, groups = _ByTag(cluster), dict[str, list[int]]()
    for code in codes:
        batch.add(code, [count_key(ns, code, cluster)], args(code))
        groups.setdefault(_tag(code, cluster), []).append(code)
    yield from zip(groups.values(), batch.run(script), strict=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- 3. wrong PINs and lockouts ------------------------------------------------------------


def _pin_histories(
    conn: psycopg.Connection[Any], settings: Settings, now: datetime, only: list[int] | None
) -> Iterator[tuple[int, list[tuple[datetime, str, bool]]]]:
    """(code, the records ``replay`` needs) of every code (of ``only``, or all) with a wrong PIN
    or a lock in the last lockout window: those of the last two windows, and older ones of a
    code where they do not settle its state (``fallback.pin_start``; a probe: a fixed two
    windows lost wrong PINs paced just under a window apart, and took an attempt during a lock
    for a new lock's start)."""
    window = timedelta(seconds=settings.pin_lockout_seconds)
    horizon = now - 2 * window
    params = {"since": now - window, "horizon": horizon, "codes": only}
    code: int | None = None
    history: list[PinRecord] = []
    for row in conn.execute(_PIN_HISTORY, params):
        if row[0] != code:
            if code is not None:
                yield code, _settled(conn, code, history, window, now, horizon)
            code, history = row[0], []
        history.append(row[1:])
    if code is not None:
        yield code, _settled(conn, code, history, window, now, horizon)


def _settled(
    conn: psycopg.Connection[Any],
    code: int,
    records: list[PinRecord],
    window: timedelta,
    now: datetime,
    since: datetime | None,
) -> list[tuple[datetime, str, bool]]:
    """``replay``'s history of ``code`` from its PIN ``records`` since ``since``, older pages
    read while they do not settle its state (``fallback.pin_start``)."""
    while (start := pin_start(records, window, now, since)) is None:
        page = conn.execute(PIN_RECORDS_BEFORE, pins_before(code, records, since)).fetchall()
        records[:0] = reversed(page)
        since = page[-1][0] if len(page) == PIN_PAGE else None  # None: none older
    return pin_history(records, start)


def restore_lockouts(
    client: AnySyncRedis,
    conn: psycopg.Connection[Any],
    settings: Settings,
    only: list[int] | None = None,
) -> tuple[int, int]:
    """Set the wrong-PIN counts and lockouts the records show live now (of every code, or of
    ``only`` these); return (locks, counts)."""
    ns = settings.redis_namespace
    script, cluster = client.register_script(_RAISE_LOCKS), is_cluster(client)
    now = datetime.now(UTC)
    batch, answers, queued = _ByTag(cluster), [], 0
    for code, history in _pin_histories(conn, settings, now, only):
        state = replay(history, settings, now)
        if state.lock_seconds or state.fails:
            batch.add(
                code,
                [lock_key(ns, code, cluster), fails_key(ns, code, cluster)],
                [state.lock_seconds, state.fails, state.fails_seconds],
            )
            queued += 1
            if queued % BATCH == 0:
                answers += batch.run(script)
    answers += batch.run(script)
    return sum(int(a[0]) for a in answers), sum(int(a[1]) for a in answers)


# The records that decide clients' PIN states (``replay_client``), from ``horizon`` on.
_CLIENT_PIN_HISTORY = """
SELECT host(client_ip), at, reason FROM verifications
 WHERE at > %(horizon)s AND reason IN ('wrong_pin', 'client_locked') AND client_ip IS NOT NULL
 ORDER BY at, id
"""


def restore_client_lockouts(
    client: AnySyncRedis, conn: psycopg.Connection[Any], settings: Settings
) -> tuple[int, int]:
    """Set the clients' wrong-PIN counts and lockouts (over all codes) the last two lockout
    windows' records show live now; return (locks, counts)."""
    ns = settings.redis_namespace
    script, cluster = client.register_script(_RAISE_LOCKS), is_cluster(client)
    now = datetime.now(UTC)
    horizon = now - 2 * timedelta(seconds=settings.pin_lockout_seconds)
    histories: dict[str, list[tuple[datetime, str]]] = {}
    for address, at, reason in conn.execute(_CLIENT_PIN_HISTORY, {"horizon": horizon}):
        histories.setdefault(client_bucket(address), []).append((at, reason))
    batch, answers = _ByTag(cluster), []
    for n, (who, history) in enumerate(histories.items(), 1):
        state = replay_client(history, settings, now)
        if state.lock_seconds or state.fails:
            batch.add_tagged(
                _text_tag(who, cluster),
                [client_lock_key(ns, who, cluster), client_fails_key(ns, who, cluster)],
                [state.lock_seconds, state.fails, state.fails_seconds],
            )
        if n % BATCH == 0:
            answers += batch.run(script)
    answers += batch.run(script)
    return sum(int(a[0]) for a in answers), sum(int(a[1]) for a in answers)


def restore_retries(
    client: AnySyncRedis, conn: psycopg.Connection[Any], ns: str, only: list[int] | None = None
) -> int:
    """Set the claims' retry keys the last day's records show live (of every code, or of
    ``only`` these), for the time each has left; return how many were missing and set."""
    script, cluster = client.register_script(_SET_RETRIES), is_cluster(client)
    batch, answers = _ByTag(cluster), []
    params = {"codes": only, "check": CHECK_RETRY_SECONDS}
    # a server-side cursor: a day of claims, and ten minutes of H5 checks at a peak
    with conn.transaction(), conn.cursor(name="tracecode_rebuild_retries") as cursor:
        cursor.execute(_RETRY_KEYS, params)
        while rows := cursor.fetchmany(BATCH):
            for code, retry, age in rows:
                if (seconds := math.ceil(retry_seconds(retry) - age)) > 0:
                    batch.add(code, [retry_key(ns, code, retry, cluster)], [seconds])
            answers += batch.run(script)
    return sum(int(a) for a in answers)


# -- 4. jobs -------------------------------------------------------------------------------


def resend_jobs(conn: psycopg.Connection[Any], send: Callable[[str, str], object]) -> int:
    """Send again the job of every export and EPCIS capture PostgreSQL shows unfinished."""
    rows = conn.execute(_UNFINISHED_JOBS).fetchall()
    for actor, job_id in rows:
        send(actor, job_id)
    return len(rows)


def rebuild(
    client: AnySyncRedis,
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
    report.client_locks_set, report.client_fails_set = restore_client_lockouts(
        client, conn, settings
    )
    report.retries_set = restore_retries(client, conn, ns)
    if send is not None:
        report.jobs_sent = resend_jobs(conn, send)
    return report


def reconcile(
    client: AnySyncRedis, conn: psycopg.Connection[Any], settings: Settings, codes: list[int]
) -> tuple[int, int, int]:
    """Steps 2 and 3 for the codes an API process answered from PostgreSQL while Redis was down
    (``app.verify.service``): their counts, PIN state and claims' retry keys set in Redis as
    their records show. Idempotent. (counters raised, locks set, wrong-PIN counts set). The
    record queue is drained first: a round whose call timed out may have run all the same, and
    its records, stored by the Redis-down path too, are Redis's own once the flush has seen them
    (``app.verify.records``)."""
    ns = settings.redis_namespace
    drain(client, conn, ns)
    _, raised = restore_counters(client, conn, ns, codes)
    locks, fails = restore_lockouts(client, conn, settings, codes)
    restore_retries(client, conn, ns, codes)
    return raised, locks, fails
