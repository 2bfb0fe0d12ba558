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
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis.exceptions
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from app.codes.batches import BatchRef, load_batches
from app.codes.batches import code_id as make_code_id
from app.codes.scheme import (
    ForgedSerial,
    MalformedSerial,
    Scheme,
    UnknownKeyVersion,
    serial_from_scan,
)
from app.config import Settings
from app.errors import TooManyRequests
from app.verify import messages
from app.verify.regions import Place, locate
from app.verify.schemas import ProductInfo, VerifyIn, VerifyOut

BATCH_TTL = 5.0  # seconds a batch row (size, state) is trusted before it is read again
VOID_STATES = ("void", "destroyed")  # unit states that verify as not genuine
MAX_ROUND = 500  # verifications served by one round at most
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

# One round. KEYS[1] = the record queue. ARGV[1..7] = namespace, minute, rate_limit, max_fails,
# lockout_s, threshold, count; then per verification i (from 0) two values at 8 + 2i: its fields
# joined by \x1f (pin_state: none|ok|bad, or "refuse" for a not-genuine answer; the refusal's
# reason; now_iso; place; never_shipped 0|1; client ip; code id) and its record prefix. Key names
# are made here from the namespace, so a round is two arguments per verification (the command is
# cheap to build); on a Redis Cluster the per-code keys would need a hash tag. Returns one reply
# per verification.
_SCRIPT = """
local ns, minute = ARGV[1], ARGV[2]
local limit, max_fails, lockout = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local threshold, count = tonumber(ARGV[6]), tonumber(ARGV[7])
local replies = {}
for i = 0, count - 1 do
  local f = {}
  for field in (ARGV[8 + 2 * i] .. '\\31'):gmatch('(.-)\\31') do f[#f + 1] = field end
  local pin_state, refusal, now, place, never_shipped, ip, code =
    f[1], f[2], f[3], f[4], f[5], f[6], f[7]
  local prefix = ARGV[9 + 2 * i]
  local rate = ns .. ':rl:' .. ip .. ':' .. minute
  local lock, fails, qkey = ns .. ':lock:' .. code, ns .. ':pinfail:' .. code, ns .. ':q:' .. code
  local function record(result, reason, queries)
    redis.call('LPUSH', KEYS[1], prefix .. ',"result":"' .. result .. '","reason":"' ..
      reason .. '","queries":' .. queries .. '}')
  end
  local n = redis.call('INCR', rate)
  if n == 1 then redis.call('EXPIRE', rate, 60) end
  if n > limit then
    replies[i + 1] = {'rate', redis.call('TTL', rate)}
  elseif pin_state == 'refuse' then
    record('not_genuine', refusal, 0)
    replies[i + 1] = {'recorded'}
  else
    local locked = redis.call('TTL', lock)
    if locked > 0 then
      record('locked', 'locked', 0)
      replies[i + 1] = {'locked', locked}
    elseif pin_state == 'bad' then
      local failed = redis.call('INCR', fails)
      redis.call('EXPIRE', fails, lockout)
      if failed >= max_fails then
        redis.call('SET', lock, '1', 'EX', lockout)
        redis.call('DEL', fails)
        record('locked', 'locked', 0)
        replies[i + 1] = {'locked', lockout}
      else
        record('wrong_pin', 'wrong_pin', 0)
        replies[i + 1] = {'wrong_pin', max_fails - failed}
      end
    else
      local q
      if pin_state == 'ok' then
        redis.call('DEL', fails)
        q = redis.call('HINCRBY', qkey, 'n', 1)
        redis.call('HSETNX', qkey, 'first_at', now)
        redis.call('HSETNX', qkey, 'first_place', place)
      else
        q = tonumber(redis.call('HGET', qkey, 'n') or '0')
      end
      local first_at = redis.call('HGET', qkey, 'first_at') or ''
      local first_place = redis.call('HGET', qkey, 'first_place') or ''
      local result, reason = 'genuine', 'pin_required'
      if pin_state == 'ok' then
        reason = (q == 1) and 'first_query' or 'repeat_query'
      end
      if q > threshold then
        result, reason = 'suspicious', 'over_threshold'
      elseif pin_state == 'ok' and q > 1 and first_place ~= '' and place ~= ''
          and first_place ~= place then
        result, reason = 'suspicious', 'region_jump'
      elseif never_shipped == '1' then
        result, reason = 'suspicious', 'never_shipped'
      end
      record(result, reason, q)
      replies[i + 1] = {'ok', q, first_at, first_place, result, reason}
    end
  end
end
return replies
"""


class UnitInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a verification needs to know of an activated unit."""

    brand_id: int
    status: str  # active, sold, or void / destroyed (replaced, decommissioned): not genuine
    product: ProductInfo | None
    lot: str | None
    production_date: str | None
    shipped: bool


class _Pending:
    """One verification waiting for its round: what it asks, and its reply."""

    __slots__ = ("batch", "code", "done", "pin_state", "record", "refusal", "reply", "unit")

    def __init__(
        self,
        record: _Record,
        code: int | None,
        batch: BatchRef | None,
        pin_state: str,
        refusal: str | None,
    ) -> None:
        self.record, self.code, self.batch = record, code, batch
        self.pin_state, self.refusal = pin_state, refusal
        self.unit: UnitInfo | None = None
        self.reply: Any = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Verifier:
    """Everything the hot path needs, built once per process."""

    def __init__(
        self, pool: AsyncConnectionPool, redis_client: Redis, scheme: Scheme, settings: Settings
    ) -> None:
        self.pool = pool
        self.redis = redis_client
        self.scheme = scheme
        self.settings = settings
        self.ns = settings.redis_namespace
        self.queue_key = f"{self.ns}:verif:queue"
        self._script = redis_client.register_script(_SCRIPT)
        self._batches: dict[int, tuple[float, BatchRef | None]] = {}
        self._waiting: list[_Pending] = []
        self._round: asyncio.Task[None] | None = None

    async def _batch(self, batch_no: int) -> BatchRef | None:
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
        from app.verify.units import load_units

        async with self.pool.connection() as conn:
            return (await load_units(conn, [code], {code: batch.brand_id})).get(code)

    # -- the answer ------------------------------------------------------------------------

    async def verify(self, data: VerifyIn, ip: str | None, user_agent: str | None) -> VerifyOut:
        now = datetime.now(UTC)
        gps = data.gps
        place = locate(
            gps.lat if gps else None, gps.lng if gps else None, ip, self.settings.ip_regions_file
        )
        serial_text = serial_from_scan(data.serial)
        record = _Record(now, data, ip, user_agent, place)
        lang = data.lang
        try:
            batch_no, index, version = self.scheme.verify(serial_text)
        except MalformedSerial:
            return await self._refuse(record, "malformed", lang, serial_text)
        except (ForgedSerial, UnknownKeyVersion):
            return await self._refuse(record, "forged", lang, serial_text)
        serial = self.scheme.serial(batch_no, index, version)
        code = make_code_id(batch_no, index)
        batch = await self._batch(batch_no)
        if batch is None:  # a tag that verifies but no batch: store the serial, not an id
            return await self._refuse(record, "unknown", lang, serial)
        if index >= batch.size:
            return await self._refuse(record, "unknown", lang, serial, code)
        record.brand_id = batch.brand_id
        if batch.state == "void":
            return await self._refuse(record, "void", lang, serial, code)
        pin_state = "none"
        if data.pin is not None:
            pin_state = "ok" if self.scheme.check_pin(serial, data.pin) else "bad"
        record.code_id, record.serial = code, serial
        pending = _Pending(record, code, batch, pin_state, None)
        try:
            await self._wait_for_round(pending)
        except _REDIS_DOWN:
            from app.verify.fallback import verify_without_redis

            return await verify_without_redis(self, record, serial, code, batch, pin_state, lang)
        if pending.refusal is not None:  # never activated, or void: known after the round
            return self._not_genuine(pending.refusal, lang, serial)
        return self._answer(pending, serial, lang)

    async def _refuse(
        self, record: _Record, reason: str, lang: str, serial: str, code: int | None = None
    ) -> VerifyOut:
        """Not genuine: rate-limited and recorded like any other verification."""
        record.code_id, record.serial = code, serial[:64]
        try:
            await self._wait_for_round(_Pending(record, code, None, "refuse", reason))
        except _REDIS_DOWN:
            from app.verify.fallback import insert_record

            await insert_record(self.pool, record, "not_genuine", reason, 0)
        return self._not_genuine(reason, lang, serial)

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
        status = answer[0].decode()
        base = {
            "serial": serial,
            "product": unit.product,
            "lot": unit.lot,
            "production_date": unit.production_date,
        }
        if status == "locked":
            retry = int(answer[1])
            return VerifyOut(
                result="locked",
                reason="locked",
                retry_after=retry,
                message=messages.text("locked", lang, minutes=-(-retry // 60)),
                **base,
            )
        if status == "wrong_pin":
            left = int(answer[1])
            return VerifyOut(
                result="wrong_pin",
                reason="wrong_pin",
                pin_attempts_left=left,
                message=messages.text("wrong_pin", lang, left=left),
                **base,
            )
        queries = int(answer[1])
        first_at = datetime.fromisoformat(answer[2].decode()) if answer[2] else None
        first_place = answer[3].decode() or None if answer[3] else None
        result, reason = answer[4].decode(), answer[5].decode()
        return VerifyOut(
            result=result,  # type: ignore[arg-type]
            reason=reason,
            message=messages.text(
                reason, lang, queries=queries, first_at=first_at, first_place=first_place
            ),
            queries=queries,
            first_query_at=first_at,
            first_query_place=first_place,
            **base,
        )

    # -- rounds: many verifications, one PostgreSQL query and one Redis round trip ----------

    async def _wait_for_round(self, pending: _Pending) -> None:
        """Queue a verification, start a round if none is out, wait for the reply (429 when
        the caller is over the rate limit; Redis errors are raised to the caller)."""
        self._waiting.append(pending)
        if self._round is None:
            self._round = asyncio.get_running_loop().create_task(self._rounds())
        await pending.done
        answer = pending.reply
        if answer and answer[0] == b"rate":
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
            while self._waiting:
                group = self._waiting[:MAX_ROUND]
                del self._waiting[:MAX_ROUND]
                try:
                    await self._serve(group)
                except BaseException as exc:
                    for pending in group:
                        if not pending.done.done():
                            pending.done.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._round = None

    async def _serve(self, group: list[_Pending]) -> None:
        flag = self.settings.verify_flag_never_shipped
        counted = [p for p in group if p.refusal is None]
        if counted:
            from app.verify.units import load_units

            async with self.pool.connection() as conn:
                units = await load_units(
                    conn,
                    [p.code for p in counted],  # type: ignore[misc]
                    {p.code: p.batch.brand_id for p in counted},  # type: ignore[union-attr,misc]
                )
            for p in counted:
                unit = units.get(p.code)  # type: ignore[arg-type]
                if unit is None:  # issued, never activated: not a genuine item on a shelf
                    p.refusal, p.pin_state = "not_activated", "refuse"
                elif unit.status in VOID_STATES:
                    p.refusal, p.pin_state = "void", "refuse"
                else:
                    p.unit = unit
                    p.record.product_id = unit.product.id if unit.product else None
        settings = self.settings
        args: list[Any] = [
            self.ns,
            int(time.time() // 60),
            settings.verify_rate_limit,
            settings.pin_max_failures,
            settings.pin_lockout_seconds,
            settings.verify_repeat_threshold,
            len(group),
        ]
        for p in group:
            record = p.record
            never_shipped = p.unit is not None and flag and not p.unit.shipped
            args.append(
                f"{p.pin_state}\x1f{p.refusal or ''}\x1f{record.at.isoformat()}\x1f"
                f"{record.place.label if record.place else ''}\x1f{1 if never_shipped else 0}"
                f"\x1f{record.ip or '-'}\x1f{p.code or 0}"
            )
            args.append(record.prefix())
        replies = await self._script(keys=[self.queue_key], args=args)
        for p, reply in zip(group, replies, strict=True):
            p.reply = reply
            if not p.done.done():  # its request may have gone (client disconnected)
                p.done.set_result(None)


class _Record:
    """One verification record, serialised by hand into the JSON the flusher stores."""

    __slots__ = ("at", "brand_id", "code_id", "data", "ip", "place", "product_id", "serial", "ua")

    def __init__(
        self, at: datetime, data: VerifyIn, ip: str | None, ua: str | None, place: Place | None
    ) -> None:
        self.at, self.data, self.ip, self.ua, self.place = at, data, ip, ua, place
        self.code_id: int | None = None
        self.serial: str | None = None
        self.brand_id: int | None = None
        self.product_id: int | None = None

    def fields(self) -> dict[str, Any]:
        place = self.place
        return {
            "at": self.at.isoformat(),
            "record_key": uuid.uuid4().hex,
            "code_id": self.code_id,
            "serial": self.serial,
            "brand_id": self.brand_id,
            "product_id": self.product_id,
            "pin_given": self.data.pin is not None,
            "client_ip": self.ip,
            "client_id": self.data.client_id,
            "user_agent": (self.ua or "")[:200] or None,
            "province": place.province if place else None,
            "city": place.city if place else None,
            "lat": place.lat if place else None,
            "lng": place.lng if place else None,
        }

    def prefix(self) -> str:
        """The record as JSON without its closing brace; the script appends the outcome."""
        return msgspec.json.encode(self.fields()).decode()[:-1]
