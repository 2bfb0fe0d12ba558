"""Consumer and partner verification: the platform's hottest path (SPEC V1–V5).

Per request the Rust core checks the serial without the database and the batch comes from a
short in-process cache. Everything else is coalesced across the requests in flight: while one
round of work is out, new verifications queue up, and the next round serves all of them with one
PostgreSQL query (the units' state) and ONE Redis round trip — a Lua script that, per
verification, applies the per-IP rate limit and the wrong-PIN lockout, counts the query and
queues the verification record, which a worker writes to PostgreSQL in batches. A lone request
is served at once (a round of one); under load the rounds grow and the per-request cost falls.
When Redis is down the answer comes from PostgreSQL and the record is inserted directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import time
import weakref
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
import redis.exceptions
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from app.auth.limits import client_bucket
from app.codes.batches import BatchRef, load_batches
from app.codes.batches import code_id as make_code_id
from app.codes.lookup import VOID_STATES
from app.codes.scheme import (
    ForgedSerial,
    MalformedSerial,
    Scheme,
    UnknownKeyVersion,
    gtin_from_scan,
    scanned,
    serial_from_scan,
)
from app.config import Settings
from app.db import Conn, round_connection
from app.errors import ServiceUnavailable, TooManyRequests
from app.redisconn import (
    SHARDS,
    UNAVAILABLE,
    AnyRedis,
    code_shard,
    connect_sync,
    full,
    is_cluster,
    plain,
    shard_tags,
    text_shard,
)
from app.rounds import serve_rounds
from app.textguard import has_control
from app.verify import messages
from app.verify.fallback import ClientPins, insert_record, verify_without_redis
from app.verify.record import Record, retry_seconds
from app.verify.regions import locate, place_name
from app.verify.schemas import VerifyIn, VerifyOut
from app.verify.shardcalls import Call, ShardCalls
from app.verify.units import UnitInfo, gtin_brands, load_units

BATCH_TTL = 5.0  # seconds a batch row (size, state) is trusted before it is read again
MAX_ROUND = 500  # verifications served by one round at most
#: On a cluster, ``Verifier._rate_limits``'s answer: the rate limit's replies and the seconds
#: left of the PIN checks whose client is locked out, by place in the round.
_Limits = tuple[dict[int, list[Any]], dict[int, int]]
_PIN_LETTER = {"ok": "o", "bad": "b"}  # ``_RATE``'s letters of PIN states; any other is "n"
_REDIS_DOWN = UNAVAILABLE


class _Skipped(redis.exceptions.ConnectionError):
    """Redis is not asked: it failed a moment ago and has not answered a PING since."""


log = logging.getLogger("tracecode.verify")
# Codes an API process remembers answering from PostgreSQL in an outage; past that many, the
# rest are left to ``tracecode redis rebuild`` (README, "Durability").
MAX_AFTER_OUTAGE = 100_000
RECONCILE_AGAIN = 0.05  # seconds before a code answered from PostgreSQL meanwhile is retried

# One round. KEYS[1] = the record queue. ARGV = namespace, minute, rate_limit, max_fails,
# lockout_s, threshold, client_max_fails, then the round's verifications in TWO arguments:
# ARGV[8] their fields, each verification ended by \x1e and each field by \x1f — pin_state
# (none|ok|bad, "refuse" for a not-genuine answer, or on a cluster "client" for a PIN check of
# a client locked out, its seconds left as the refusal), the refusal's reason, the time (ISO
# 8601), place, never_shipped (0|1), client (its address, an IPv6 one's /64:
# ``client_bucket``), code id and the length of its record; ARGV[9] the records one after the
# other, each as JSON without the closing brace; ARGV[10] the retry keys of the round's
# verifications that have one, "n:seconds:key\x1f" for its n-th verification (empty in most
# rounds): a claim sent again with its client id within a day (an H5 page's form: ten
# minutes, ``record.retry_seconds``) is checked but not counted again (probe X:
# five retries of one rebate claim made the unit "probably copied" to its buyer; one more field
# per verification cost the script ~5%). The records are cut out by length, never
# scanned: matching patterns over them was a third of the script's time. Two arguments keep the
# command cheap to build and send; key names are made here from the namespace. Returns one reply
# per verification, in order.
#
# Wrong PINs per client (SPEC V2: per code and per client; a probe: sixty wrong PINs from one
# address, two on each of thirty codes, were each answered "wrong PIN, 3 left"): a client's PIN
# checks (right or wrong) answer locked ({'locked', seconds, 'client'}; recorded reason
# ``client_locked``, which no code's PIN state reads) while ``{ns}:clientlock:{client}`` lives;
# every wrong PIN of a client not locked out adds one to ``{ns}:clientfail:{client}`` (from its
# first for lockout_s seconds), and the client_max_fails-th locks the client for lockout_s
# (that one still answers for its code). A right PIN never clears the count (a guesser's own
# genuine pack would). Checks without a PIN are not held.
#
# On a Redis Cluster (``app.redisconn``) a round is one script per shard of its codes, each in
# one hash slot: ARGV[11] is the shard's hash tag, ended to every code key it makes (the round's
# queue, KEYS[1], is the shard's own), and ARGV[3] (the rate limit) and ARGV[7] (the client's
# wrong PINs) are 0: the addresses' keys live in other shards, so they were counted before, by
# ``_RATE``, and only the verifications within the limit are sent here, a client's locked out
# PIN checks as "client". On one server ARGV[11] is absent: the keys are untagged.
# A call on a cluster may be sent again (``app.verify.shardcalls``: its reply lost with a
# connection, a failover): KEYS[2] is the call's own key, where the script keeps its replies for
# ARGV[12] seconds, and a call that finds them there returns them and does nothing else — a
# retried call is counted once, and answered as it was the first time.
#
# The script's cost is per verification (its Lua work, then its commands), so it makes few
# commands: the rate-limit counter of each client address once per round (INCRBY by the
# round's verifications from it; the n-th of them counts as the n-th of the minute), the
# client's PIN lock once per round of each address with a PIN check (TTL), the query
# counter and the first query in one hash (HINCRBY, then HSET on the first query or HMGET on a
# repeat), and the round's records as ONE list element at the end, one record per line
# (``app.verify.records`` splits them; JSON text has no raw newline): an element per record
# cost ~10% of the script's time in the list's inserts and the append-only file's copy of a
# 40-argument LPUSH. A genuine first query: TTL, DEL, HINCRBY, HSET, plus its share of one
# INCRBY, one TTL (with its PIN) and one LPUSH.
_SCRIPT = """
local ns, minute = ARGV[1], ARGV[2]
local limit, max_fails, lockout = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local threshold, client_max = tonumber(ARGV[6]), tonumber(ARGV[7])
local tag = ARGV[11] or ''
local done = KEYS[2]
if done then
  local kept = redis.call('GET', done)
  if kept then return cmsgpack.unpack(kept) end
end
local items, per_ip, pin_ips, records_json, at = {}, {}, {}, ARGV[9], 1
local fields = string.rep('([^\\31]*)\\31', 7) .. '([^\\30]*)\\30'
for pin_state, refusal, now, place, never_shipped, ip, code, len in ARGV[8]:gmatch(fields) do
  local to = at + tonumber(len)
  items[#items + 1] = {pin_state, refusal, now, place, never_shipped, ip, code,
                       records_json:sub(at, to - 1)}
  at = to
  per_ip[ip] = (per_ip[ip] or 0) + 1
  if pin_state == 'ok' or pin_state == 'bad' then pin_ips[ip] = true end
end
local retries = {}  -- a claim's retry key by its verification's place in the call
for n, seconds, retry in ARGV[10]:gmatch('(%d+):(%d+):([^\\31]*)\\31') do
  retries[tonumber(n)] = {retry, seconds}
end
local seen = {}  -- per client address: the minute's count before this round's first of it
if limit > 0 then
  for ip, n in pairs(per_ip) do
    local rate = ns .. ':rl:' .. ip .. ':' .. minute
    local total = redis.call('INCRBY', rate, n)
    if total == n then redis.call('EXPIRE', rate, 60) end
    seen[ip] = total - n
  end
end
local client_lock = {}  -- per client address locked out of PIN checks: its seconds left
if client_max > 0 then
  for ip in pairs(pin_ips) do
    local left = redis.call('TTL', ns .. ':clientlock:' .. ip)
    if left > 0 then client_lock[ip] = left end
  end
end
local replies, records = {}, {}
for i, f in ipairs(items) do
  local pin_state, refusal, now, place, never_shipped, ip, code, prefix =
    f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
  local lock, fails, qkey =
    ns .. ':lock:' .. code .. tag, ns .. ':pinfail:' .. code .. tag, ns .. ':q:' .. code .. tag
  local function record(result, reason, queries)
    records[#records + 1] = prefix .. ',"result":"' .. result .. '","reason":"' .. reason ..
      '","queries":' .. queries .. '}'
  end
  local limited = false
  if limit > 0 then
    local n = seen[ip] + 1
    seen[ip] = n
    limited = n > limit
  end
  if limited then
    replies[i] = {'rate', redis.call('TTL', ns .. ':rl:' .. ip .. ':' .. minute)}
  elseif pin_state == 'refuse' then
    record('not_genuine', refusal, 0)
    replies[i] = {'recorded'}
  elseif pin_state == 'client' or (pin_state ~= 'none' and client_lock[ip]) then
    record('locked', 'client_locked', 0)
    replies[i] = {'locked', client_lock[ip] or tonumber(refusal), 'client'}
  else
    if pin_state == 'bad' and client_max > 0 then  -- whatever its code answers
      local client_fails = ns .. ':clientfail:' .. ip
      local n = redis.call('INCR', client_fails)
      if n == 1 then redis.call('EXPIRE', client_fails, lockout) end
      if n >= client_max then
        redis.call('SET', ns .. ':clientlock:' .. ip, '1', 'EX', lockout)
        redis.call('DEL', client_fails)
        client_lock[ip] = lockout  -- its later PIN checks, this round's too
      end
    end
    local locked = redis.call('TTL', lock)
    if locked > 0 then
      record('locked', 'locked', 0)
      replies[i] = {'locked', locked}
    elseif pin_state == 'bad' then
      local failed = redis.call('INCR', fails)
      redis.call('EXPIRE', fails, lockout)
      if failed >= max_fails then
        redis.call('SET', lock, '1', 'EX', lockout)
        redis.call('DEL', fails)
        record('locked', 'locked', 0)
        replies[i] = {'locked', lockout}
      else
        record('wrong_pin', 'wrong_pin', 0)
        replies[i] = {'wrong_pin', max_fails - failed}
      end
    else
      local q, first_at, first_place, retried
      if pin_state == 'ok' then
        redis.call('DEL', fails)
        local retry = retries[i]
        if retry and not redis.call('SET', ns .. ':retry:' .. code .. ':' .. retry[1] .. tag, '1',
                                    'NX', 'EX', retry[2]) then
          retried = true  -- a claim sent again: checked, not counted again
          q = tonumber(redis.call('HGET', qkey, 'n') or '0')
        else
          q = redis.call('HINCRBY', qkey, 'n', 1)
        end
      else
        q = tonumber(redis.call('HGET', qkey, 'n') or '0')
      end
      if q == 1 and pin_state == 'ok' and not retried then
        redis.call('HSET', qkey, 'first_at', now, 'first_place', place)
        first_at, first_place = now, place
      else
        local first = redis.call('HMGET', qkey, 'first_at', 'first_place')
        first_at, first_place = first[1], first[2]
        if pin_state == 'ok' and not first_at then  -- counted before the first was kept
          redis.call('HSET', qkey, 'first_at', now, 'first_place', place)
          first_at, first_place = now, place
        end
        first_at, first_place = first_at or '', first_place or ''
      end
      local result, reason = 'unconfirmed', 'pin_required'
      if pin_state == 'ok' then
        result, reason = 'genuine', (q == 1) and 'first_query' or 'repeat_query'
      end
      if q > threshold then
        result, reason = 'suspicious', 'over_threshold'
      elseif pin_state == 'ok' and q > 1 and first_place ~= '' and place ~= ''
          and first_place:sub(1, #place) ~= place and place:sub(1, #first_place) ~= first_place
          then
        result, reason = 'suspicious', 'region_jump'
      elseif never_shipped == '1' then
        result, reason = 'suspicious', 'never_shipped'
      end
      -- a retry's record says so: PostgreSQL's counts (fallback, rebuild) leave it out too
      record(result, retried and 'claim_retry' or reason, q)
      replies[i] = {'ok', q, first_at, first_place, result, reason}
    end
  end
end
if #records > 0 then redis.call('LPUSH', KEYS[1], table.concat(records, '\\n')) end
if done then redis.call('SET', done, cmsgpack.pack(replies), 'EX', ARGV[12]) end
return replies
"""

# On a Redis Cluster, a round's rate limits and clients' wrong PINs, counted before its codes'
# scripts: one call per shard of the client addresses. KEYS[1]: the call's own key (its replies
# kept for ARGV[4] seconds, as ``_SCRIPT`` keeps them), then three keys per address of the
# shard: the minute's counter, the client's PIN lock and its wrong PINs (``_SCRIPT``'s). ARGV[1]
# the rate limit, ARGV[2] client_max_fails, ARGV[3] lockout_s (the calls' shared arguments,
# ``ShardCalls.run``); ARGV[5…]: per address, the
# round's verifications from it in order, a letter each: o (right PIN), b (wrong PIN), n (no
# PIN, or refused before the round). Returns per address {its count before them, the counter's
# TTL, the seconds its PIN checks are locked (0: not), the first of its verifications (from 1)
# whose PIN check is locked (0: none)}. A PIN check of the round within the rate limit is
# counted as on one server (a wrong one of a client not locked out adds one, the
# client_max_fails-th locks it from the next on), with one difference: the round's codes are not
# known yet, so a wrong PIN of a code the round refuses (never activated, void, another
# product's GTIN) counts too, where one server's script never sees it.
_RATE = """
local kept = redis.call('GET', KEYS[1])
if kept then return cmsgpack.unpack(kept) end
local limit, client_max, lockout = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local replies = {}
for a = 1, (#KEYS - 1) / 3 do
  local rate, lock, fails, pins = KEYS[3 * a - 1], KEYS[3 * a], KEYS[3 * a + 1], ARGV[4 + a]
  local n = #pins
  local total = redis.call('INCRBY', rate, n)
  if total == n then redis.call('EXPIRE', rate, 60) end
  local left, from = 0, 0
  if pins:find('[ob]') then
    left = redis.call('TTL', lock)
    if left > 0 then
      from = 1
    else
      left = 0
      local within, bad = math.max(0, math.min(n, limit - (total - n))), 0
      for k = 1, within do
        if pins:byte(k) == 98 then bad = bad + 1 end  -- b
      end
      if bad > 0 then
        local failed = redis.call('INCRBY', fails, bad)
        if failed == bad then redis.call('EXPIRE', fails, lockout) end
        if failed >= client_max then  -- locked from the one after the client_max-th on
          local count = failed - bad
          for k = 1, within do
            if pins:byte(k) == 98 then
              count = count + 1
              if count >= client_max then from = k + 1; break end
            end
          end
          redis.call('SET', lock, '1', 'EX', lockout)
          redis.call('DEL', fails)
          left = lockout
        end
      end
    end
  end
  replies[a] = {total - n, redis.call('TTL', rate), left, from}
end
redis.call('SET', KEYS[1], cmsgpack.pack(replies), 'EX', ARGV[4])
return replies
"""


class _Pending:
    """One verification waiting for its round: what it asks, and its reply."""

    __slots__ = (
        "batch",
        "code",
        "done",
        "gtin",
        "pin_state",
        "record",
        "refusal",
        "reply",
        "retry",
        "unit",
    )

    def __init__(
        self,
        record: Record,
        code: int | None,
        batch: BatchRef | None,
        pin_state: str,
        refusal: str | None,
        retry: str = "",
        gtin: str | None = None,
    ) -> None:
        self.record, self.code, self.batch = record, code, batch
        self.pin_state, self.refusal, self.retry = pin_state, refusal, retry
        self.gtin = gtin  # the GTIN the scan names (a Digital Link), checked against the unit's
        self.unit: UnitInfo | None = None
        self.reply: Any = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


# The verifiers of this process (one, the app's; more in tests), for ``forget_batch``.
_VERIFIERS: weakref.WeakSet[Verifier] = weakref.WeakSet()


def forget_batch(batch_no: int) -> None:
    """Drop the batch from this process's verifiers' batch caches (``BATCH_TTL``): a void
    (``POST /batches/{no}/void``) is read at the next verification, not up to ``BATCH_TTL``
    later. Only this process's: another process reads it within ``BATCH_TTL`` (the claim
    rounds check the batch themselves). Called once the void has committed: before, a
    verification in between cached the batch as live again."""
    for verifier in _VERIFIERS:
        verifier._batches.pop(batch_no, None)


class Verifier:
    """Everything the hot path needs, built once per process."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        redis_client: AnyRedis,
        scheme: Scheme,
        settings: Settings,
        redis_url: str | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis_client
        # the same Redis for the outage's reconcile, on a blocking client in a thread (its steps
        # are the rebuild's, ``app.ops.rebuild.reconcile``)
        self.redis_url = redis_url or settings.redis_url
        self.scheme = scheme
        self.settings = settings
        self.ns = settings.redis_namespace
        self.queue_key = f"{self.ns}:verif:queue"  # on a cluster: one per shard, tag ended
        self.cluster = is_cluster(redis_client)
        self._script = redis_client.register_script(_SCRIPT)
        self._rate = redis_client.register_script(_RATE)
        self._shards = (
            ShardCalls(redis_client, settings.redis_failover_wait)  # type: ignore[arg-type]
            if self.cluster
            else None
        )
        # On a cluster, each script call's own key (``_SCRIPT``), kept longer than the call can
        # be tried: its first try, the cluster client's own (one command timeout each), the
        # failover wait, and a margin.
        self._calls = itertools.count()
        self._kept_for = b"%d" % math.ceil(
            5 * settings.redis_timeout + settings.redis_failover_wait + 10
        )
        self._codeless = itertools.count()  # spreads refusals without a code over the shards
        self._batches: dict[int, tuple[float, BatchRef | None]] = {}
        _VERIFIERS.add(self)  # a void forgets its batch (``forget_batch``)
        self._gtins: dict[str, tuple[float, int | None]] = {}  # GTIN -> brand, for refusals
        self._waiting: list[_Pending] = []
        self._round: asyncio.Task[None] | None = None
        # Record keys: 64 random bits of this process, then a counter (unique, and cheaper
        # than a uuid4 per record; the records' unique key is (at, record_key)).
        self._key_prefix = os.urandom(8).hex()
        self._keys = itertools.count()
        self._conn: AsyncConnection[Any] | None = None
        self._cursor: AsyncCursor[Any] | None = None
        self._redis_conn: Any = None  # the rounds' own Redis connection (``_call``)
        self._after_outage: set[int] = set()  # codes answered from PostgreSQL (``_reconcile``)
        self._reconciling: asyncio.Task[None] | None = None
        self._answering: Counter[int] = Counter()  # codes being answered from PostgreSQL now
        self._reconcile_after = 0.0  # time.monotonic() before which no reconcile is tried again
        self._redis_down = False  # said once an outage, and once it ends (probe Z, review R6)
        self._skip_redis = False  # a single Redis failed: not asked until it answers (_probe)
        self._probing: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # reconciling, abandoned queries
        self._fallback_minute, self._fallback_counts = 0, dict[str, int]()  # Redis down
        self._client_pins = ClientPins()  # clients' wrong PINs while Redis is down

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
        if self._conn is not None:
            await self._conn.close()
        if self._redis_conn is not None:
            conn, self._redis_conn = self._redis_conn, None
            await self.redis.connection_pool.release(conn)  # type: ignore[union-attr]  # one server

    async def _round_cursor(self) -> AsyncCursor[Any]:
        """A cursor of the verifier's own autocommit connection: a round's query is one round
        trip (a pooled connection adds BEGIN and COMMIT), and rounds run one at a time, so every
        round uses the same cursor (making one per round cost ~36k instructions)."""
        if self._conn is None or self._conn.closed or self._cursor is None:
            # the pool's conninfo: a string (db.create_pool's), never a callable
            conninfo = cast(str, self.pool.conninfo)
            self._conn = await round_connection(
                conninfo, self.settings, "tracecode-verify", tuple_row
            )
            self._cursor = self._conn.cursor()
        return self._cursor

    async def _units(self, codes: list[int], brands: dict[int, int]) -> dict[int, UnitInfo]:
        """The round's units; PostgreSQL cancels a query past ``TRACECODE_DB_ROUND_TIMEOUT``
        (503 query_timeout), and a server that does not answer at all is given up a second
        later (503 service_unavailable): the process's other verifications wait behind it. The
        query given up is left to end in the background (psycopg's own cancel request can take
        seconds more against such a server: review R6) and its connection closed after."""
        query = asyncio.ensure_future(self._load_units(codes, brands))
        done, _ = await asyncio.wait((query,), timeout=self.settings.db_round_timeout + 1)
        if done:
            return query.result()
        conn, self._conn, self._cursor = self._conn, None, None  # its state is unknown
        left = asyncio.get_running_loop().create_task(_abandon(query, conn))
        self._background.add(left)
        left.add_done_callback(self._background.discard)
        raise ServiceUnavailable("the database does not answer; retry shortly")

    async def _load_units(self, codes: list[int], brands: dict[int, int]) -> dict[int, UnitInfo]:
        cursor = await self._round_cursor()
        try:
            return await load_units(cursor, codes, brands)
        except psycopg.OperationalError as exc:
            if isinstance(exc, psycopg.errors.QueryCanceled):
                raise
            # e.g. the server closed it: once more, on a new one. Only this query's connection
            # is closed, never the Redis one nor the next round's (review R6: a query given up
            # on by ``_units`` closed them when it failed later)
            with contextlib.suppress(Exception):
                await cursor.connection.close()
            if self._cursor is not cursor:  # given up on meanwhile: no one waits for it
                raise
            self._conn = self._cursor = None
            return await load_units(await self._round_cursor(), codes, brands)

    async def batch(self, batch_no: int) -> BatchRef | None:
        """The batch's brand, size, state and key version, from a short in-process cache
        (``BATCH_TTL``)."""
        now = time.monotonic()
        cached = self._batches.get(batch_no)
        if cached and now - cached[0] < BATCH_TTL:
            return cached[1]
        async with self.pool.connection() as conn:
            found = (await load_batches(conn, [batch_no])).get(batch_no)
        if len(self._batches) > 10_000:
            self._batches.clear()
        self._batches[batch_no] = (now, found)
        return found

    async def _unit_from_db(self, code: int, batch: BatchRef) -> UnitInfo | None:
        """The unit's product, lot and route, or None when it was never activated."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=tuple_row)
            return (await load_units(cur, [code], {code: batch.brand_id})).get(code)

    # -- the answer ------------------------------------------------------------------------

    async def verify(
        self,
        data: VerifyIn,
        ip: str | None,
        user_agent: str | None,
        member_id: int | None = None,
        retry: str = "",
        gtin: str | None = None,
        member_token: str | None = None,
    ) -> VerifyOut:
        """The answer to one verification. ``member_id``: the signed-in member (a points claim,
        ``app.members.points``; a PIN check on the consumer pages or ``/v1/verify`` with a member
        token, by the token's signature alone, ``member_token`` the token's id), recorded with
        the verification: the member's scan record (the flusher drops a member of another brand
        than the record's, and one named by a token signed out).
        ``retry``: a claim's retry key (``app.claims``: its kind, its claimant and its client id;
        ASCII letters, digits and ``._:-``) or an H5 answer form's check: the same claim sent
        again within a day (a form within ten minutes: ``record.retry_seconds``) is not counted
        again (``_SCRIPT``). ``gtin``: the GTIN-14 the scan named when ``data.serial`` is the
        serial alone (the H5 page a Digital Link led to); else the one a Digital Link in
        ``data.serial`` names, if any: a unit of another product is not genuine
        (``wrong_product``), and a code naming no unit is recorded for the GTIN's brand."""
        ip = ip or None  # granian on a unix socket gives "": the records refused it (a probe)
        gps = data.gps
        place = locate(
            gps.lat if gps else None, gps.lng if gps else None, ip, self.settings.ip_regions_file
        )
        scan = data.serial
        serial_text = serial_from_scan(scan)
        if gtin is None:  # the one a Digital Link names (a bare serial costs one ``in``)
            gtin = gtin_from_scan(scan if scan.isascii() else scanned(scan))
        key = f"{self._key_prefix}{next(self._keys):016x}"
        record = Record(datetime.now(UTC), key, data, ip, user_agent, place)
        record.member_id, record.retry = member_id, retry or None
        record.member_token = member_token
        lang = data.lang
        try:
            batch_no, index, version = self.scheme.verify(serial_text)
        except MalformedSerial:
            return await self._refuse(record, "malformed", lang, serial_text, gtin=gtin)
        except (ForgedSerial, UnknownKeyVersion):
            return await self._refuse(record, "forged", lang, serial_text, gtin=gtin)
        serial = self.scheme.serial(batch_no, index, version)
        code = make_code_id(batch_no, index)
        batch = await self.batch(batch_no)
        if batch is None:  # a tag that verifies but no batch: store the serial, not an id
            return await self._refuse(record, "unknown", lang, serial, gtin=gtin)
        if version != batch.key_version:  # ``made_under``, inline on the hot path: never printed
            return await self._refuse(record, "forged", lang, serial_text, gtin=gtin)
        record.brand_id = batch.brand_id  # the brand sees a code of its batch past its size too
        if index >= batch.size:
            return await self._refuse(record, "unknown", lang, serial, code)
        if batch.state == "void":
            return await self._refuse(record, "void", lang, serial, code)
        pin_state = "none"
        if data.pin is not None:
            pin_state = "ok" if self.scheme.check_pin(serial, data.pin) else "bad"
        record.code_id, record.serial = code, serial
        pending = _Pending(record, code, batch, pin_state, None, retry, gtin)
        try:
            if code in self._after_outage and not await self._reconciled(code):
                raise _Skipped("answered from PostgreSQL in an outage, not reconciled yet")
            await self._wait_for_round(pending)
        except _REDIS_DOWN as exc:
            if not isinstance(exc, _Skipped):
                self._redis_lost(exc)
            return await self._without_redis(pending, pin_state, serial, lang)
        if self._redis_down or self._after_outage:
            self._reconcile()
        if pending.refusal is not None:  # never activated, or void: known after the round
            return self._not_genuine(pending.refusal, lang, serial)
        return self._answer(pending, serial, lang)

    async def _without_redis(
        self, pending: _Pending, pin_state: str, serial: str, lang: str
    ) -> VerifyOut:
        """A verification of an issued code answered from PostgreSQL (Redis down, or the code
        answered so in an outage and not reconciled yet): the per-client rate limit and wrong
        PINs counted in this process, the rest from the records (``verify_without_redis``).
        ``pin_state``: as asked (a round that failed may have set the pending's)."""
        record, code = pending.record, pending.code
        assert code is not None and pending.batch is not None
        client = self._limit_without_redis(record.ip)
        if len(self._after_outage) < MAX_AFTER_OUTAGE:
            self._after_outage.add(code)
        self._answering[code] += 1  # not reconciled before its record is stored
        try:
            unit = await self._unit_from_db(code, pending.batch)
            return await verify_without_redis(
                self.pool,
                self.settings,
                unit,
                record,
                serial,
                code,
                pin_state,
                lang,
                gtin=pending.gtin,
                clients=self._client_pins,
                client=client,
            )
        finally:
            self._answering[code] -= 1
            if not self._answering[code]:
                del self._answering[code]

    def _redis_lost(self, exc: BaseException) -> None:
        """Said once an outage, whatever the outage's verifications were (probe Z: nothing
        said so; review R6: keyed on the codes remembered, it said nothing when only forged
        serials came, or the codes of the last outage were still waiting for a worker)."""
        if not self._redis_down:
            self._redis_down = True
            log.warning(
                "Redis does not answer: verifications are answered from PostgreSQL",
                extra={"error": f"{type(exc).__name__}: {exc}"},
            )
        if (  # a Redis that hangs, not one that refuses at once: that costs no one a wait
            isinstance(exc, redis.exceptions.TimeoutError)
            and not self._skip_redis
            and not self.cluster  # a cluster's shards fail over one by one (shardcalls)
            and self.settings.redis_retry_after > 0
        ):
            self._skip_redis = True
            self._probing = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        """While a single Redis is skipped, a PING every ``TRACECODE_REDIS_RETRY_AFTER``
        seconds; the first answer lets the rounds ask it again (probe Z: a Redis that hung held
        every verification for the command timeout, 2 s, before PostgreSQL answered it)."""
        try:
            while True:
                await asyncio.sleep(self.settings.redis_retry_after)
                try:
                    await self.redis.ping()
                except _REDIS_DOWN:
                    continue
                except redis.exceptions.RedisError:
                    pass  # it answers, if with an error: the rounds will tell
                return
        finally:  # answered, or the verifier closed (or this task failed): the rounds ask it
            self._skip_redis = False

    def _reconcile(self) -> None:
        """Redis answers again after an outage: the codes answered from PostgreSQL meanwhile are
        set in Redis as their records show (``_reconciling``), at once, in the background."""
        if self._redis_down:
            self._redis_down = False
            # the outage's per-client count of wrong PINs is forgotten, as documented (a probe:
            # it carried into the next outage, where one wrong PIN locked a shop's address out)
            self._client_pins = ClientPins()
            log.warning(
                "Redis answers again: the codes verified meanwhile are reconciled",
                extra={"codes": len(self._after_outage)},
            )
        if self._after_outage and self._reconciling is None:
            self._reconciling = asyncio.get_running_loop().create_task(self._reconcile_codes())
            self._reconciling.add_done_callback(_seen)

    async def _reconciled(self, code: int) -> bool:
        """Whether ``code``, answered from PostgreSQL in an outage, may be asked of Redis now:
        once its counts, PIN state and retry keys are set there (waiting for that, or starting
        it, at most once a ``TRACECODE_REDIS_RETRY_AFTER``). Until then it is answered from
        PostgreSQL still: asked of Redis at once, the first answer after an outage forgot what
        the outage's answers counted and locked (probe J; a probe: handed to a worker, the
        first right PIN after the outage took a code locked during it, and a code first checked
        during it was "first query" again)."""
        task = self._reconciling
        if task is None:
            if self._skip_redis or time.monotonic() < self._reconcile_after:
                return False
            task = self._reconciling = asyncio.get_running_loop().create_task(
                self._reconcile_codes()
            )
            task.add_done_callback(_seen)
        with contextlib.suppress(Exception):
            await asyncio.shield(task)
        return code not in self._after_outage

    async def _reconcile_codes(self) -> None:
        """Reconcile the outage's codes until none are left (``app.ops.rebuild.reconcile``, on
        blocking clients in a thread; those codes wait, answered from PostgreSQL meanwhile)."""
        try:
            while self._after_outage:
                codes = sorted(self._after_outage)
                # a code being answered from PostgreSQL when the records are read (its record
                # not stored yet: a regression probe) is reconciled again after
                busy = set(self._answering)
                raised, locks, fails = await asyncio.to_thread(self._reconcile_now, codes)
                done = [code for code in codes if code not in busy]
                self._after_outage.difference_update(done)
                if len(done) < len(codes):
                    await asyncio.sleep(RECONCILE_AGAIN)
                log.info(
                    "after a Redis outage: %d codes reconciled, %d counts raised, %d locks, "
                    "%d wrong-PIN counts", len(codes), raised, locks, fails,
                )  # fmt: skip
        except BaseException as exc:
            self._reconcile_after = time.monotonic() + self.settings.redis_retry_after
            if isinstance(exc, Exception) and not isinstance(exc, _REDIS_DOWN):
                log.exception("reconciling the outage's codes failed: tried again shortly")
            raise
        finally:
            self._reconciling = None

    def _reconcile_now(self, codes: list[int]) -> tuple[int, int, int]:
        from app.ops.rebuild import reconcile  # app.ops's package imports the routes

        client = connect_sync(
            self.redis_url or "",
            socket_timeout=self.settings.redis_timeout,
            socket_connect_timeout=self.settings.redis_timeout,
        )
        try:
            # the pool's conninfo: a string (db.create_pool's), never a callable
            with psycopg.connect(cast(str, self.pool.conninfo), autocommit=True) as conn:
                return reconcile(client, conn, self.settings, codes)
        finally:
            client.close()

    async def _refuse(
        self,
        record: Record,
        reason: str,
        lang: str,
        serial: str,
        code: int | None = None,
        gtin: str | None = None,
    ) -> VerifyOut:
        """Not genuine: rate-limited and recorded like any other verification. A code naming
        no batch is recorded for the brand whose product the scan's GTIN (``gtin``) names, if
        any (``_gtin_brands``, in the round): the brand's fake (a probe: a forged serial in a
        Digital Link of the brand's GTIN was stored with no brand, seen by nobody); without one
        it has no brand."""
        if has_control(serial):  # what a caller typed (a page's path): never record a NUL
            serial = "".join(c for c in serial if not has_control(c))
        record.code_id, record.serial = code, serial[:64]
        pending = _Pending(record, code, None, "refuse", reason, gtin=gtin)
        try:
            await self._wait_for_round(pending)
        except _REDIS_DOWN as exc:
            self._redis_lost(exc)
            self._limit_without_redis(record.ip)
            await self._gtin_brands([pending])
            await insert_record(self.pool, record, "not_genuine", reason, 0)
        return self._not_genuine(reason, lang, serial)

    async def _gtin_brands(self, group: list[_Pending]) -> None:
        """The brand of the GTIN each refusal of ``group`` without a brand names, if a product
        has it: from a short in-process cache (``BATCH_TTL``), the others in one query. In the
        round, not before it: the rate limit holds a flood of forged codes naming new GTINs to
        one query a round (asked before, each one cost a query)."""
        named = [p for p in group if p.gtin is not None and p.record.brand_id is None]
        if not named:
            return
        now, cache = time.monotonic(), self._gtins
        wanted = set()
        for p in named:
            cached = cache.get(p.gtin)  # type: ignore[arg-type]
            if cached is None or now - cached[0] >= BATCH_TTL:
                wanted.add(p.gtin)
        gtins = sorted(g for g in wanted if g is not None and len(g) == 14 and g.isdigit())
        if gtins:  # (anything else names no product: the H5 page's query, as typed)
            try:
                async with self.pool.connection() as conn:
                    found = await gtin_brands(conn.cursor(row_factory=tuple_row), gtins)
            except psycopg.Error as exc:  # the records go without a brand, never unanswered
                log.warning("the brands of scanned GTINs not read", extra={"error": str(exc)})
                return
            if len(cache) > 10_000:
                cache.clear()
            for gtin in gtins:
                cache[gtin] = (now, found.get(gtin))
        for p in named:
            cached = cache.get(p.gtin)  # type: ignore[arg-type]
            p.record.brand_id = cached[1] if cached else None

    def _limit_without_redis(self, ip: str | None) -> str:
        """The per-client limit while Redis (which keeps it) is down: counted in this process
        for the minute, so one client cannot send a flood to PostgreSQL meanwhile (probe Z:
        130 in a second all answered). Each API process counts its own. The client: its
        address, an IPv6 one's /64 (``client_bucket``), returned."""
        minute = int(time.time() // 60)
        if minute != self._fallback_minute:
            self._fallback_minute, self._fallback_counts = minute, {}
        key = client_bucket(ip or "-")
        if key not in self._fallback_counts and len(self._fallback_counts) >= MAX_AFTER_OUTAGE:
            return key  # more clients than the process keeps: the rest go unlimited this minute
        count = self._fallback_counts[key] = self._fallback_counts.get(key, 0) + 1
        if count > self.settings.verify_rate_limit:
            retry = 60 - int(time.time()) % 60
            raise TooManyRequests(
                "too many verifications from this address; try again shortly",
                code="rate_limited",
                details={"retry_after": retry},
                headers={"Retry-After": str(retry)},
            )
        return key

    @staticmethod
    def _not_genuine(reason: str, lang: str, serial: str) -> VerifyOut:
        return VerifyOut(
            result="not_genuine",
            reason=reason,
            message=messages.text(reason, lang),
            serial=serial if reason not in ("malformed", "forged") else None,
        )

    def _answer(self, pending: _Pending, serial: str, lang: str) -> VerifyOut:
        unit, answer = pending.unit, pending.reply
        assert unit is not None
        status = answer[0]
        if status == b"locked":
            retry = int(answer[1])
            reason = "client_locked" if len(answer) > 2 else "locked"  # the client's, or the code's
            return VerifyOut(
                result="locked",
                reason=reason,
                retry_after=retry,
                message=messages.text(reason, lang, minutes=-(-retry // 60)),
                serial=serial,
                product=unit.product,
                lot=unit.lot,
                production_date=unit.production_date,
            )
        if status == b"wrong_pin":
            left = int(answer[1])
            return VerifyOut(
                result="wrong_pin",
                reason="wrong_pin",
                pin_attempts_left=left,
                message=messages.text("wrong_pin", lang, left=left),
                serial=serial,
                product=unit.product,
                lot=unit.lot,
                production_date=unit.production_date,
            )
        queries = int(answer[1])
        first_at = datetime.fromisoformat(answer[2].decode()) if answer[2] else None
        first_place = place_name(answer[3].decode(), lang) or None
        reason = answer[5].decode()
        return VerifyOut(
            result=answer[4].decode(),
            reason=reason,
            message=messages.text(
                reason, lang, queries=queries, first_at=first_at, first_place=first_place
            ),
            serial=serial,
            product=unit.product,
            lot=unit.lot,
            production_date=unit.production_date,
            queries=queries,
            first_query_at=first_at,
            first_query_place=first_place,
        )

    # -- rounds: many verifications, one PostgreSQL query and one Redis round trip ----------

    async def _wait_for_round(self, pending: _Pending) -> None:
        """Queue a verification, start a round if none is out, wait for the reply (429 when
        the caller is over the rate limit; Redis errors are raised to the caller)."""
        if self._skip_redis:
            raise _Skipped("Redis failed a moment ago: not asked until it answers a PING")
        self._waiting.append(pending)
        if self._round is None:
            self._round = asyncio.get_running_loop().create_task(self._rounds())
        await pending.done
        answer = pending.reply
        if answer[0] == b"rate":
            retry = max(int(answer[1]), 1)
            raise TooManyRequests(
                "too many verifications from this address; try again shortly",
                code="rate_limited",
                details={"retry_after": retry},
                headers={"Retry-After": str(retry)},
            )

    async def _rounds(self) -> None:
        """Serve the waiting verifications round after round until none are left."""
        try:
            await serve_rounds(self._waiting, MAX_ROUND, self._serve)
        finally:
            self._round = None

    async def _judge(self, group: list[_Pending]) -> None:
        """A round's first step: its codes' units (one query) and the refusals only they show —
        never activated, void, a Digital Link naming another product's GTIN than the unit's; the
        brand of the GTIN a refusal without one names (``_gtin_brands``)."""
        counted = [p for p in group if p.refusal is None]
        if len(counted) < len(group):  # refusals: one naming a GTIN is its brand's
            await self._gtin_brands(group)
        if not counted:
            return
        units = await self._units(
            [p.code for p in counted],  # type: ignore[misc]
            {p.code: p.batch.brand_id for p in counted},  # type: ignore[union-attr,misc]
        )
        for p in counted:
            unit = units.get(p.code)  # type: ignore[arg-type]
            if unit is None:  # issued, never activated: not a genuine item on a shelf
                p.refusal, p.pin_state = "not_activated", "refuse"
            elif unit.status in VOID_STATES:
                p.refusal, p.pin_state = "void", "refuse"
            elif p.gtin is not None and (unit.product is None or unit.product.gtin != p.gtin):
                # a genuine serial (and PIN) on another product's pack (a probe: genuine)
                p.refusal, p.pin_state = "wrong_product", "refuse"
                p.record.product_id = unit.product.id if unit.product else None
                if len(p.gtin) == 14 and p.gtin.isdigit():  # its brand is alerted too
                    p.record.gtin = p.gtin
            else:
                p.unit = unit
                p.record.product_id = unit.product.id if unit.product else None

    async def _serve(self, group: list[_Pending]) -> None:
        """A round: its units (``_judge``), then ONE script call (on a cluster, the rate limits
        and then one per shard of the codes: ``_serve_on_cluster``) with each verification's
        fields and record; the replies set."""
        limits = self._limits(group) if self.cluster else None  # meanwhile, on a cluster
        await self._judge(group)
        flag = self.settings.verify_flag_never_shipped
        items, records = [], []
        v6: dict[str, str] = {}  # an IPv6 address's client (its /64), once per address a round
        for p in group:
            record = p.record
            never_shipped = p.unit is not None and flag and not p.unit.shipped
            place = record.place
            prefix = record.prefix()
            records.append(prefix)
            client = record.ip or "-"
            if ":" in client:
                bucket = v6.get(client)
                if bucket is None:
                    bucket = v6[client] = client_bucket(client)
                client = bucket
            items.append(
                f"{p.pin_state}\x1f{p.refusal or ''}\x1f{record.at_text}\x1f"
                f"{place.label if place else ''}\x1f{1 if never_shipped else 0}"
                f"\x1f{client}\x1f{p.code or 0}\x1f{len(prefix)}\x1e"
            )
        if limits is not None:
            await self._serve_on_cluster(group, items, records, *limits)
            return
        settings = self.settings
        replies = await self._call(
            b"EVALSHA",
            self._script.sha.encode(),
            b"1",
            self.queue_key.encode(),
            self.ns.encode(),
            b"%d" % (time.time() // 60),
            b"%d" % settings.verify_rate_limit,
            b"%d" % settings.pin_max_failures,
            b"%d" % settings.pin_lockout_seconds,
            b"%d" % settings.verify_repeat_threshold,
            b"%d" % settings.pin_client_max_failures,
            "".join(items).encode(),
            b"".join(records),
            _retries(group, range(len(group))),
        )
        for p, reply in zip(group, replies, strict=True):
            p.reply = reply
            if not p.done.done():  # its request may have gone (client disconnected)
                p.done.set_result(None)

    async def _call(self, *parts: bytes) -> Any:
        """One command on the verifier's own connection to Redis: taken from the client's pool
        once and kept (rounds call Redis one at a time), the command packed here. Through the
        client (the script object, retries, the pool, its observability hooks) a round's call
        cost ~290k instructions, this way ~120k. Errors are the client's own (connection and
        timeout errors: the connection is dropped and the next round takes a new one); a script
        Redis lost (NOSCRIPT, after a restart or SCRIPT FLUSH) is loaded again, once."""
        command = b"".join(
            [b"*%d\r\n" % len(parts)] + [b"$%d\r\n%s\r\n" % (len(part), part) for part in parts]
        )
        if self._skip_redis:  # a round queued before Redis failed
            raise _Skipped("Redis failed a moment ago: not asked until it answers a PING")
        for attempt in (1, 2):
            conn = self._redis_conn
            if conn is None:
                pool = self.redis.connection_pool  # type: ignore[union-attr]  # one server only
                conn = self._redis_conn = await pool.get_connection()
            try:
                await conn.send_packed_command(command, check_health=False)
                return await conn.read_response()
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                await self.redis.script_load(self._script.script)
            except redis.exceptions.ResponseError as exc:
                full(exc)  # a full Redis: unavailable, the round is answered from PostgreSQL
                raise  # an error reply: the connection is fine
            except BaseException:
                self._redis_conn = None  # its state is unknown: never used again
                await conn.disconnect()
                raise
        raise AssertionError("unreachable")

    # -- rounds on a Redis Cluster: the same script, once per shard ---------------------------

    def _limits(self, group: list[_Pending]) -> tuple[int, asyncio.Task[_Limits]]:
        """On a cluster: the round's rate limits and clients' wrong PINs (``_rate_limits``)
        started at once, counted while PostgreSQL answers the round's unit query (they do not
        depend on it): one round trip fewer in the round's time. The minute, and the task. A
        round whose query fails fails its verifications, and their counts stay (they were
        asked)."""
        minute = int(time.time() // 60)
        task = asyncio.get_running_loop().create_task(self._rate_limits(group, minute))
        task.add_done_callback(_seen)  # an error not awaited (the query failed) is not logged
        return minute, task

    async def _serve_on_cluster(
        self,
        group: list[_Pending],
        items: list[str],
        records: list[bytes],
        minute: int,
        limits: asyncio.Task[_Limits],
    ) -> None:
        """A round on a Redis Cluster: the rate limits first (``limits``, of ``minute``), then
        the round's script once per shard of the codes within them, each in its shard's slot,
        the shards of a master in one write (``ShardCalls``). A shard whose call fails fails its
        own verifications only (answered from PostgreSQL); ``items`` and ``records`` are the
        script's fields and records of each verification."""
        limited, locked_out = await limits
        shards: dict[int, list[int]] = {}
        for i, p in enumerate(group):
            if i in limited:
                p.reply = limited[i]
                continue
            if i in locked_out and p.pin_state in ("ok", "bad"):  # recorded by its code's call
                rest = items[i].split("\x1f", 2)[2]  # after its PIN state and refusal
                items[i] = f"client\x1f{locked_out[i]}\x1f{rest}"
            shard = code_shard(p.code) if p.code else next(self._codeless) % SHARDS
            shards.setdefault(shard, []).append(i)
        s, tags = self.settings, shard_tags()
        shared = (
            self.ns.encode(),
            b"%d" % minute,
            b"0",  # rate limits applied above
            b"%d" % s.pin_max_failures,
            b"%d" % s.pin_lockout_seconds,
            b"%d" % s.verify_repeat_threshold,
            b"0",  # clients' wrong PINs counted above
        )
        calls: dict[int, Call] = {
            shard: (
                [f"{self.queue_key}{tags[shard]}".encode(), self._call_key(tags[shard])],
                [
                    "".join([items[i] for i in members]).encode(),
                    b"".join([records[i] for i in members]),
                    _retries(group, members),
                    tags[shard].encode(),
                    self._kept_for,
                ],
            )
            for shard, members in shards.items()
        }
        results = await self._shards.run(self._script, calls, shared)  # type: ignore[union-attr]
        for shard, members in shards.items():
            replies = results[shard]
            if isinstance(replies, BaseException):
                for i in members:
                    if not group[i].done.done():
                        group[i].done.set_exception(replies)
                continue
            for i, reply in zip(members, replies, strict=True):
                group[i].reply = reply
        for p in group:
            if p.reply is not None and not p.done.done():
                p.done.set_result(None)

    def _call_key(self, tag: str) -> bytes:
        """A new script call's own key on a cluster, in ``tag``'s slot (``_SCRIPT``)."""
        return f"{self.ns}:call:{self._key_prefix}{next(self._calls):x}{tag}".encode()

    async def _rate_limits(self, group: list[_Pending], minute: int) -> _Limits:
        """On a cluster: add the round's verifications to their clients' counters of the
        minute, and their wrong PINs to the clients' (``_RATE``; one call per shard of the
        clients, packed per master). The replies of those over the rate limit, and the seconds
        left of the PIN checks whose client is locked out, by their place in the round. The
        n-th of a client in the minute counts as the n-th, as on one server; a client is an
        address, an IPv6 one's /64 (``client_bucket``, once per address)."""
        of: dict[str, str] = {}  # address -> client
        pins: dict[str, list[str]] = {}  # client -> its verifications' PIN letters, in order
        for p in group:
            ip = p.record.ip or "-"
            client = of.get(ip)
            if client is None:
                client = of[ip] = client_bucket(ip)
            pins.setdefault(client, []).append(_PIN_LETTER.get(p.pin_state, "n"))
        shards: dict[int, list[str]] = {}
        for client in pins:
            shards.setdefault(text_shard(client), []).append(client)
        s, tags = self.settings, shard_tags()
        ns = self.ns
        calls: dict[int, Call] = {}
        for shard, clients in shards.items():
            tag, keys = tags[shard], [self._call_key(tags[shard])]
            for client in clients:
                name = plain(client)
                keys += [
                    f"{ns}:rl:{name}:{minute}{tag}".encode(),
                    f"{ns}:clientlock:{name}{tag}".encode(),
                    f"{ns}:clientfail:{name}{tag}".encode(),
                ]
            calls[shard] = (keys, [self._kept_for, *["".join(pins[c]).encode() for c in clients]])
        shared = (
            b"%d" % s.verify_rate_limit,
            b"%d" % s.pin_client_max_failures,
            b"%d" % s.pin_lockout_seconds,
        )
        results = await self._shards.run(self._rate, calls, shared)  # type: ignore[union-attr]
        counters: dict[str, list[int]] = {}
        for shard, clients in shards.items():
            replies = results[shard]
            if isinstance(replies, BaseException):
                raise replies  # the round fails: its verifications are answered from PostgreSQL
            for client, (before, ttl, left, start) in zip(clients, replies, strict=True):
                # its count so far, the counter's TTL, PIN lock seconds, first locked (n-th: 0)
                counters[client] = [int(before), int(ttl), int(left), int(start), 0]
        limit, limited, locked_out = s.verify_rate_limit, {}, {}
        for i, p in enumerate(group):
            counter = counters[of[p.record.ip or "-"]]
            counter[0] += 1
            counter[4] += 1
            if counter[0] > limit:
                limited[i] = [b"rate", counter[1]]
            elif counter[3] and counter[4] >= counter[3]:
                locked_out[i] = counter[2]
        return limited, locked_out


def _retries(group: list[_Pending], members: Iterable[int]) -> bytes:
    """``_SCRIPT``'s ARGV[9]: the retry keys of a call's verifications (``members``: their
    places in ``group``, in the call's order), by their place in the call from 1."""
    return "".join(
        [
            f"{n}:{retry_seconds(retry)}:{retry}\x1f"
            for n, i in enumerate(members, 1)
            if (retry := group[i].retry)
        ]
    ).encode()


async def _abandon(query: asyncio.Future[Any], conn: AsyncConnection[Any] | None) -> None:
    """End a round's query given up on, then close its connection."""
    query.cancel()
    with contextlib.suppress(BaseException):
        await query
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()


def _seen(task: asyncio.Task[Any]) -> None:
    """Mark a task's exception as retrieved (asyncio logs those never retrieved)."""
    if not task.cancelled():
        task.exception()
