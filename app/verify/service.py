"""Consumer and partner verification: the platform's hottest path (SPEC V1–V5).

Per request: the Rust core checks the serial without the database; the batch comes from a short
in-process cache; then ONE Redis round trip (a Lua script) applies the per-IP rate limit, the
wrong-PIN lockout, counts the query, reads the unit's cached state and queues the verification
record, which a worker writes to PostgreSQL in batches. Only a unit-cache miss costs a PostgreSQL
read. When Redis is down the answer comes from PostgreSQL and the record is inserted directly.
"""

from __future__ import annotations

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
UNIT_TTL = 300  # seconds a unit's state is cached in Redis
VOID_STATES = ("void", "destroyed")  # unit states that verify as not genuine
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

# KEYS: rate, lock, fails, queries, unit, queue
# ARGV: rate_limit, pin_state (none|ok|bad), max_fails, lockout_s, now_iso, place,
#       threshold, never_shipped (0|1), record_prefix, counts (0|1)
_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], 60) end
if n > tonumber(ARGV[1]) then return {'rate', redis.call('TTL', KEYS[1])} end
local function record(result, reason, queries)
  redis.call('LPUSH', KEYS[6], ARGV[9] .. ',"result":"' .. result .. '","reason":"' .. reason ..
    '","queries":' .. queries .. '}')
end
if ARGV[10] == '0' then
  record(ARGV[2], ARGV[3], 0)
  return {'recorded'}
end
local unit = redis.call('GET', KEYS[5])
local lock = redis.call('TTL', KEYS[2])
if lock > 0 then
  record('locked', 'locked', 0)
  return {'locked', lock, unit}
end
local q = 0
if ARGV[2] == 'bad' then
  local fails = redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
  if fails >= tonumber(ARGV[3]) then
    redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[4]))
    redis.call('DEL', KEYS[3])
    record('locked', 'locked', 0)
    return {'locked', tonumber(ARGV[4]), unit}
  end
  record('wrong_pin', 'wrong_pin', 0)
  return {'wrong_pin', tonumber(ARGV[3]) - fails, unit}
end
if ARGV[2] == 'ok' then
  redis.call('DEL', KEYS[3])
  q = redis.call('HINCRBY', KEYS[4], 'n', 1)
  redis.call('HSETNX', KEYS[4], 'first_at', ARGV[5])
  redis.call('HSETNX', KEYS[4], 'first_place', ARGV[6])
else
  q = tonumber(redis.call('HGET', KEYS[4], 'n') or '0')
end
local first_at = redis.call('HGET', KEYS[4], 'first_at') or ''
local first_place = redis.call('HGET', KEYS[4], 'first_place') or ''
local result, reason = 'genuine', 'pin_required'
if ARGV[2] == 'ok' then
  reason = (q == 1) and 'first_query' or 'repeat_query'
end
if q > tonumber(ARGV[7]) then
  result, reason = 'suspicious', 'over_threshold'
elseif ARGV[2] == 'ok' and q > 1 and first_place ~= '' and ARGV[6] ~= ''
    and first_place ~= ARGV[6] then
  result, reason = 'suspicious', 'region_jump'
elseif ARGV[8] == '1' then
  result, reason = 'suspicious', 'never_shipped'
end
record(result, reason, q)
return {'ok', q, first_at, first_place, result, reason, unit}
"""


def unit_key(namespace: str, code: int) -> str:
    """The Redis key caching a unit's state for verification."""
    return f"{namespace}:unit:{code}"


async def forget_unit(redis_client: Redis, namespace: str, code: int) -> None:
    """Drop a unit's cached state after it changed (void, replaced); Redis down is no error."""
    try:
        await redis_client.delete(unit_key(namespace, code))
    except _REDIS_DOWN:
        pass  # nothing is cached while Redis is down; the entry expires within UNIT_TTL anyway


class UnitInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a verification needs to know of an activated unit (cached in Redis)."""

    brand_id: int
    status: str  # active, sold, or void / destroyed (replaced, decommissioned): not genuine
    product: ProductInfo | None
    lot: str | None
    production_date: str | None
    shipped: bool


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
        self._unit_decoder = msgspec.json.Decoder(UnitInfo)

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
        from app.verify.units import load_unit

        async with self.pool.connection() as conn:
            return await load_unit(conn, code, batch)

    # -- the answer ------------------------------------------------------------------------

    async def verify(self, data: VerifyIn, ip: str | None, user_agent: str | None) -> VerifyOut:
        now = datetime.now(UTC)
        gps = data.gps
        place = locate(
            gps.lat if gps else None, gps.lng if gps else None, ip, self.settings.ip_regions_file
        )
        serial_text = serial_from_scan(data.serial)
        record = _Record(now, data, ip, user_agent, place)
        try:
            batch_no, index, version = self.scheme.verify(serial_text)
        except MalformedSerial:
            return await self._refuse(record, "malformed", data.lang, serial_text)
        except (ForgedSerial, UnknownKeyVersion):
            return await self._refuse(record, "forged", data.lang, serial_text)
        serial = self.scheme.serial(batch_no, index, version)
        code = make_code_id(batch_no, index)
        batch = await self._batch(batch_no)
        if batch is None:  # a tag that verifies but no batch: store the serial, not an id
            return await self._refuse(record, "unknown", data.lang, serial)
        if index >= batch.size:
            return await self._refuse(record, "unknown", data.lang, serial, code)
        record.brand_id = batch.brand_id
        if batch.state == "void":
            return await self._refuse(record, "void", data.lang, serial, code)
        pin_state = "none"
        if data.pin is not None:
            pin_state = "ok" if self.scheme.check_pin(serial, data.pin) else "bad"
        try:
            return await self._counted(record, serial, code, batch, pin_state, data.lang)
        except _REDIS_DOWN:
            from app.verify.fallback import verify_without_redis

            return await verify_without_redis(
                self, record, serial, code, batch, pin_state, data.lang
            )

    async def _refuse(
        self, record: _Record, reason: str, lang: str, serial: str, code: int | None = None
    ) -> VerifyOut:
        """Not genuine: rate-limited and recorded like any other verification."""
        record.code_id, record.serial = code, serial[:64]
        keys = [self._rate_key(record.ip), "", "", "", "", self.queue_key]
        args = [
            self.settings.verify_rate_limit,
            "not_genuine",
            reason,
            0,
            "",
            "",
            0,
            0,
            record.prefix(),
            0,
        ]
        try:
            answer = await self._script(keys=keys, args=args)
            self._raise_if_limited(answer)
        except _REDIS_DOWN:
            from app.verify.fallback import insert_record

            await insert_record(self.pool, record, "not_genuine", reason, 0)
        return VerifyOut(
            result="not_genuine",
            reason=reason,
            message=messages.text(reason, lang),
            serial=serial if reason not in ("malformed", "forged") else None,
        )

    def _rate_key(self, ip: str | None) -> str:
        return f"{self.ns}:rl:{ip or '-'}:{int(time.time() // 60)}"

    @staticmethod
    def _raise_if_limited(answer: list[Any]) -> None:
        if answer and answer[0] == b"rate":
            retry = max(int(answer[1]), 1)
            raise TooManyRequests(
                "too many verifications from this address; try again shortly",
                code="rate_limited",
                details={"retry_after": retry},
                headers={"Retry-After": str(retry)},
            )

    async def _counted(
        self, record: _Record, serial: str, code: int, batch: BatchRef, pin_state: str, lang: str
    ) -> VerifyOut:
        ns = self.ns
        record.code_id, record.serial = code, serial
        keys = [
            self._rate_key(record.ip),
            f"{ns}:lock:{code}",
            f"{ns}:pinfail:{code}",
            f"{ns}:q:{code}",
            unit_key(ns, code),
            self.queue_key,
        ]
        unit = await self._cached_unit(keys[4])
        if unit is None:
            unit = await self._unit_from_db(code, batch)
            if unit is None:  # issued, never activated: not a genuine item on a shelf
                return await self._refuse(record, "not_activated", lang, serial, code)
            await self.redis.set(keys[4], msgspec.json.encode(unit), ex=UNIT_TTL)
        if unit.status in VOID_STATES:
            return await self._refuse(record, "void", lang, serial, code)
        record.product_id = unit.product.id if unit.product else None
        place = record.place.label if record.place else ""
        never_shipped = int(self.settings.verify_flag_never_shipped and not unit.shipped)
        args = [
            self.settings.verify_rate_limit,
            pin_state,
            self.settings.pin_max_failures,
            self.settings.pin_lockout_seconds,
            record.at.isoformat(),
            place,
            self.settings.verify_repeat_threshold,
            never_shipped,
            record.prefix(),
            1,
        ]
        answer = await self._script(keys=keys, args=args)
        self._raise_if_limited(answer)
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

    async def _cached_unit(self, key: str) -> UnitInfo | None:
        raw = await self.redis.get(key)
        return self._unit_decoder.decode(raw) if raw else None


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
