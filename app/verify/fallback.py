"""Verification when Redis is unavailable: answer from PostgreSQL and record directly.

The counters and lockout are recomputed from the verification records themselves, so the answer
is the one the Redis path would give (``decide`` mirrors the Lua script's rules).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from psycopg.rows import class_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from app import locks
from app.codes.lookup import VOID_STATES
from app.config import Settings
from app.db import Conn
from app.verify import messages
from app.verify.record import PERSONAL, Record, retry_seconds
from app.verify.records import ALERT, alert_of
from app.verify.regions import Place, place_name
from app.verify.schemas import VerifyOut
from app.verify.units import UnitInfo, gtin_brands

# a verification with the right PIN: it clears the code's wrong-PIN count (the script's ``DEL
# fails``), a claim sent again too (a probe: a rebuild or an outage that left claim retries out
# brought back a count the script had cleared)
RIGHT_PIN = "pin_given AND result IN ('genuine', 'suspicious')"
# a claim sent again is stored with reason claim_retry (``app.verify.service._SCRIPT``): not a
# query of its own (review R5)
COUNTED = f"{RIGHT_PIN} AND reason <> 'claim_retry'"

INSERT = """INSERT INTO verifications
    (at, record_key, code_id, serial, brand_id, product_id, result, reason, queries, pin_given,
     client_ip, client_id, user_agent, province, city, lat, lng, member_id, retry, gtin,
     fallback)
    VALUES (%(at)s, %(record_key)s, %(code_id)s, %(serial)s, %(brand_id)s, %(product_id)s,
     %(result)s, %(reason)s, %(queries)s, %(pin_given)s, %(client_ip)s, %(client_id)s,
     %(user_agent)s, %(province)s, %(city)s, %(lat)s, %(lng)s, %(member_id)s, %(retry)s,
     %(gtin)s, true)
    ON CONFLICT (at, record_key) DO NOTHING"""


def decide(
    pin_state: str, queries: int, first_place: str, place: str, threshold: int, never_shipped: bool
) -> tuple[str, str]:
    """(result, reason) of a counted verification — the same rules as the Redis script."""
    result, reason = "unconfirmed", "pin_required"  # the code is real; the pack is not proven
    if pin_state == "ok":
        result, reason = "genuine", "first_query" if queries == 1 else "repeat_query"
    if queries > threshold:
        return "suspicious", "over_threshold"
    if (
        pin_state == "ok"
        and queries > 1
        and first_place
        and place
        and not _same_region(first_place, place)
    ):
        return "suspicious", "region_jump"
    if never_shipped:
        return "suspicious", "never_shipped"
    return result, reason


def _same_region(a: str, b: str) -> bool:
    """Two place labels of one region, compared where both are known: a province and a city
    of it (``浙江省`` and ``浙江省杭州市``) are (a probe: two scans 1 km apart, one fix placed
    in the city, the other in the province only, made a region jump)."""
    return a.startswith(b) or b.startswith(a)


async def insert_record(
    pool: AsyncConnectionPool[Conn], record: Record, result: str, reason: str, queries: int
) -> None:
    """The record, and the alert it raises as the flusher raises them (``records.alert_of``; a
    probe: an outage's over-threshold, region-jump and fake answers raised none)."""
    async with pool.connection() as conn:
        await _insert(conn, record, result, reason, queries)


async def _insert(conn: Conn, record: Record, result: str, reason: str, queries: int) -> None:
    """``insert_record`` on ``conn``, in its transaction."""
    fields = {**record.fields(), "result": result, "reason": reason, "queries": queries}
    serial, place, gtin = fields["serial"], (fields["province"], fields["city"]), fields["gtin"]
    given = fields["pin_given"]  # a look without a PIN raises no repeat alert (COUNTED_ONLY)
    alert = alert_of(
        fields["code_id"], serial, fields["brand_id"], result, reason, queries, *place, gtin, given
    )
    if fields["member_id"] is not None:  # a member's: stored as the flusher stores it
        member = await (
            await conn.execute(  # FOR SHARE: waits for an erasure under way, as _INSERT does
                "SELECT status = 'erased' AS erased, brand_id, EXISTS (SELECT 1 FROM "
                "member_token_revocations WHERE jti = %s::uuid AND revoked_at <= %s::timestamptz) "
                "AS signed_out FROM members WHERE id = %s FOR SHARE",
                (fields["member_token"], fields["at"], fields["member_id"]),
            )
        ).fetchone()
        if member is not None and member["erased"]:  # a probe: stored whole
            fields |= dict.fromkeys(PERSONAL)
        elif member is not None and fields["brand_id"] not in (None, member["brand_id"]):
            fields["member_id"] = None  # another brand's code: not the member's record
        elif member is not None and member["signed_out"]:
            fields["member_id"] = None  # named by a token signed out: anonymous
    inserted = await conn.execute(INSERT, fields)
    if not inserted.rowcount:
        return
    if alert is not None:
        await conn.execute(ALERT, alert)
    if gtin is not None:  # another brand's GTIN named: that brand's alert too (code-less)
        owner = (await gtin_brands(conn.cursor(row_factory=tuple_row), [gtin])).get(gtin)
        if owner is not None and owner != fields["brand_id"]:
            theirs = alert_of(None, serial, owner, result, reason, queries, *place, gtin, given)
            await conn.execute(ALERT, theirs)


class PinState(msgspec.Struct, frozen=True):
    """A code's wrong-PIN state now: seconds locked (0: not), wrong PINs and their seconds left."""

    lock_seconds: int
    fails: int
    fails_seconds: int


def replay(
    history: Iterable[tuple[datetime, str, bool]], settings: Settings, now: datetime
) -> PinState:
    """A code's wrong-PIN state now from its records (time, reason, right PIN) in time order,
    by the verification script's rules."""
    window = timedelta(seconds=settings.pin_lockout_seconds)
    locked_until: datetime | None = None
    fails, last_fail = 0, None
    for at, reason, right_pin in history:
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
        elif right_pin:
            fails = 0  # a right PIN clears the count
    if locked_until is not None and locked_until > now:
        return PinState(_seconds(locked_until - now), 0, 0)
    if fails and last_fail is not None and last_fail + window > now:
        return PinState(0, fails, _seconds(last_fail + window - now))
    return PinState(0, 0, 0)


def replay_client(
    history: Iterable[tuple[datetime, str]], settings: Settings, now: datetime
) -> PinState:
    """A client's wrong-PIN state now (over all codes) from its ``wrong_pin`` and
    ``client_locked`` records (time, reason) in time order, by the verification script's rules:
    a wrong PIN counts (from the first for ``pin_lockout_seconds``) outside a lock, the
    ``pin_client_max_failures``-th locks the client for ``pin_lockout_seconds``. A wrong PIN the
    records call a code's ``locked`` (of a locked code, or the one that locked it) is not known
    for one and goes uncounted; a ``client_locked`` record outside a lock so made shows a lock
    whose start they do not: taken to start there."""
    window = timedelta(seconds=settings.pin_lockout_seconds)
    locked_until: datetime | None = None
    fails, ends = 0, None
    for at, reason in history:
        if locked_until is not None and at < locked_until:
            continue  # during a lock every PIN check answers "locked" and nothing counts
        if reason == "client_locked":
            locked_until, fails, ends = at + window, 0, None
            continue
        if ends is None or at >= ends:
            fails, ends = 0, at + window  # the count had expired: a new one from this one
        fails += 1
        if fails >= settings.pin_client_max_failures:
            locked_until, fails, ends = at + window, 0, None
    if locked_until is not None and locked_until > now:
        return PinState(_seconds(locked_until - now), 0, 0)
    if fails and ends is not None and ends > now:
        return PinState(0, fails, _seconds(ends - now))
    return PinState(0, 0, 0)


def _seconds(delta: timedelta) -> int:
    return max(int(-(-delta.total_seconds() // 1)), 1)


class _History(msgspec.Struct, frozen=True, gc=False):
    """What the code's earlier verifications say (one row of ``_HISTORY``)."""

    queries: int  # counted verifications
    first_at: datetime | None  # the first counted one


class _FirstPlace(msgspec.Struct, frozen=True, gc=False):
    """Where the first counted verification was made."""

    province: str | None
    city: str | None

    @property
    def label(self) -> str:
        return Place(self.province, self.city).label if self.province else ""


_HISTORY = f"""SELECT count(*) FILTER (WHERE {COUNTED}) AS queries,
      min(at) FILTER (WHERE {COUNTED}) AS first_at
    FROM verifications WHERE code_id = %(code)s"""

# The records ``replay`` reads (wrong PINs, attempts answered "locked" — the one that locked a
# code is one: a probe, counting wrong PINs alone let a locked code take any number of guesses
# during an outage — and right PINs), with their ids: first those of the last two lockout
# windows, then, while ``pin_start`` finds no point of a known state in them, older ones by
# pages (``PIN_RECORDS_BEFORE``), as ``tracecode redis rebuild`` reads them
_PIN_RECORDS = f"""SELECT at, reason, ({RIGHT_PIN}) AS right_pin, id FROM verifications
    WHERE code_id = %(code)s AND at > %(horizon)s
      AND (reason IN ('wrong_pin', 'locked') OR ({RIGHT_PIN}))
    ORDER BY at, id"""

# The code's ``PIN_PAGE`` PIN records before (at, id), the newest first (``pins_before``)
PIN_RECORDS_BEFORE = f"""SELECT at, reason, ({RIGHT_PIN}) AS right_pin, id FROM verifications
    WHERE code_id = %(code)s AND at <= %(at)s AND (at < %(at)s OR id < %(id)s)
      AND (reason IN ('wrong_pin', 'locked') OR ({RIGHT_PIN}))
    ORDER BY at DESC, id DESC LIMIT %(limit)s"""
PIN_PAGE = 500
PinRecord = tuple[datetime, str, bool, int]  # a PIN record: time, reason, right PIN, id


def pin_start(
    records: list[PinRecord], window: timedelta, now: datetime, since: datetime | None
) -> int | None:
    """Where in ``records`` (a code's PIN records in time order: all it has from ``since`` on,
    None: all it has) ``replay`` may start and give the answer of the code's whole history;
    None when an older record may still matter (read further back).

    ``replay`` from the start gives what the Redis script holds (``INCR fails; EXPIRE fails
    lockout``: each wrong PIN renews the count; nothing counts during a lock). A start must be a
    point of known state: a right PIN (never answered during a lock; it clears the count); an
    attempt answered "locked" just after a wrong PIN (not during a lock, so the one that locked
    the code); the first wrong PIN or "locked" after more than a window without one (any lock
    over, any count expired; ``now`` ends one such window). Reading only a fixed time back
    missed both: wrong PINs paced just under a window apart never locked the code, and an
    attempt during a lock whose start was out of reach was taken for a new lock's start,
    hiding the wrong PINs after it (probes). With ``pin_max_failures`` above 1 the records read
    go back to the last lock's start at most."""
    later, later_locked = now, False  # the next wrong PIN or "locked" after the one looked at
    for i in range(len(records) - 1, -1, -1):
        at, reason, right_pin, _ = records[i]
        if right_pin:
            return i
        if later - at > window or (later_locked and reason == "wrong_pin"):
            return i + 1
        later, later_locked = at, reason == "locked"
    return 0 if since is None or later - since > window else None


def pins_before(code: int, records: list[PinRecord], since: datetime | None) -> dict[str, Any]:
    """``PIN_RECORDS_BEFORE``'s parameters: the page before ``records`` (read from ``since``)."""
    at, key = (records[0][0], records[0][3]) if records else (since, 2**63 - 1)
    return {"code": code, "at": at, "id": key, "limit": PIN_PAGE}


def pin_history(records: list[PinRecord], start: int) -> list[tuple[datetime, str, bool]]:
    """``replay``'s history: ``records`` from ``start`` on."""
    return [(at, reason, right_pin) for at, reason, right_pin, _ in records[start:]]


# A claim sent again (``retry``): an earlier check of the code with the same retry key within
# the key's time (``retry_seconds``), as the Redis script keeps it (a probe: during an outage
# each retry of a claim counted as a new query of the code)
_RETRIED = f"""SELECT 1 FROM verifications
    WHERE code_id = %(code)s AND retry = %(retry)s AND at > %(since)s AND {RIGHT_PIN}
    LIMIT 1"""

_FIRST_PLACE = (
    f"SELECT province, city FROM verifications WHERE code_id = %s AND {COUNTED} ORDER BY at LIMIT 1"
)


class ClientPins:
    """Clients' wrong PINs over all codes while Redis (which keeps them: ``_SCRIPT``) is down,
    counted in this API process as its per-client rate limit is: the script's rules — a wrong
    PIN of a client not locked out counts (from its first for ``pin_lockout_seconds``), the
    ``pin_client_max_failures``-th locks the client's PIN checks for ``pin_lockout_seconds``.
    Each process counts its own, and forgets them when Redis is back (the records keep them:
    ``tracecode redis rebuild`` restores them). PostgreSQL has no index to count them by client
    in a verification's time."""

    def __init__(self) -> None:
        self._fails: dict[str, tuple[float, int]] = {}  # client -> (count's end, wrong PINs)
        self._locks: dict[str, float] = {}  # client -> locked until (time.monotonic)

    def attempt(self, client: str, pin_state: str, settings: Settings) -> int:
        """A PIN check of ``client`` (``pin_state`` ok or bad; none counts nothing): the seconds
        its PIN checks stay locked out (0: not; then a wrong one is counted)."""
        if pin_state not in ("ok", "bad"):
            return 0
        now = time.monotonic()
        until = self._locks.get(client)
        if until is not None:
            if until > now:
                return max(math.ceil(until - now), 1)
            del self._locks[client]
        if pin_state == "bad":
            window = settings.pin_lockout_seconds
            end, fails = self._fails.get(client, (0.0, 0))
            if end <= now:
                if client not in self._fails and len(self._fails) >= MAX_CLIENTS:
                    self._forget(now)
                    if len(self._fails) >= MAX_CLIENTS:
                        return 0  # more clients than the process keeps: the rest go uncounted
                end, fails = now + window, 0
            if fails + 1 >= settings.pin_client_max_failures:
                self._locks[client] = now + window
                self._fails.pop(client, None)
            else:
                self._fails[client] = (end, fails + 1)
        return 0

    def _forget(self, now: float) -> None:
        """Drop the counts and locks that have ended."""
        self._fails = {c: v for c, v in self._fails.items() if v[0] > now}
        self._locks = {c: until for c, until in self._locks.items() if until > now}


MAX_CLIENTS = 100_000  # clients an API process counts wrong PINs of while Redis is down


async def verify_without_redis(
    pool: AsyncConnectionPool[Conn],
    settings: Settings,
    unit: UnitInfo | None,
    record: Record,
    serial: str,
    code: int,
    pin_state: str,
    lang: str,
    *,
    gtin: str | None = None,
    clients: ClientPins | None = None,
    client: str = "-",
) -> VerifyOut:
    """The answer and its record from PostgreSQL alone; ``unit`` is the code's unit as the
    database has it (None: never activated); ``gtin``: the GTIN the scan named; ``clients``:
    the process's count of wrong PINs per client (``client``). The steps mirror the Redis
    script: not genuine, the client locked out, the code locked out, wrong PIN, else counted
    (a claim, ``record.retry``: once)."""
    async with pool.connection() as conn:  # one transaction, under the code's lock
        return await _verify(
            conn, settings, unit, record, serial, code, pin_state, lang, gtin, clients, client
        )


async def _verify(
    conn: Conn,
    settings: Settings,
    unit: UnitInfo | None,
    record: Record,
    serial: str,
    code: int,
    pin_state: str,
    lang: str,
    gtin: str | None,
    clients: ClientPins | None,
    client: str,
) -> VerifyOut:
    """``verify_without_redis`` in one transaction: the code's records are read and its new one
    written under the code's lock (``Lock.VERIFY_WITHOUT_REDIS``), as the Redis script runs one
    call at a time (a probe: twenty right PINs at once were all "first query", and twenty wrong
    ones at once nineteen "2 attempts left" — no lockout)."""
    if unit is None:
        return await _not_genuine(conn, record, "not_activated", serial, lang)
    if unit.status in VOID_STATES:
        return await _not_genuine(conn, record, "void", serial, lang)
    record.product_id = unit.product.id if unit.product else None
    if gtin is not None and (unit.product is None or unit.product.gtin != gtin):
        if len(gtin) == 14 and gtin.isdigit():  # its brand is alerted too (``_insert``)
            record.gtin = gtin
        return await _not_genuine(conn, record, "wrong_product", serial, lang)
    if clients is not None and (seconds := clients.attempt(client, pin_state, settings)):
        return await _locked(conn, record, unit, serial, lang, seconds, "client_locked")
    await conn.execute(*locks.xact(locks.Lock.VERIFY_WITHOUT_REDIS, str(code)))
    window = timedelta(seconds=settings.pin_lockout_seconds)
    history, first, pins = await _history(conn, code, record.at, window)
    pin = replay(pins, settings, record.at)
    if pin.lock_seconds:
        return await _locked(conn, record, unit, serial, lang, pin.lock_seconds)
    if pin_state == "bad":
        left = settings.pin_max_failures - pin.fails - 1
        if left <= 0:
            return await _locked(conn, record, unit, serial, lang, settings.pin_lockout_seconds)
        await _insert(conn, record, "wrong_pin", "wrong_pin", 0)
        return _about(
            unit,
            serial,
            result="wrong_pin",
            reason="wrong_pin",
            pin_attempts_left=left,
            message=messages.text("wrong_pin", lang, left=left),
        )
    retried = pin_state == "ok" and record.retry is not None and await _retried(conn, record, code)
    return await _counted(
        conn, settings, record, unit, serial, pin_state, lang, history, first, retried
    )


async def _retried(conn: Conn, record: Record, code: int) -> bool:
    found = await conn.execute(
        _RETRIED,
        {
            "code": code,
            "retry": record.retry,
            "since": record.at - timedelta(seconds=retry_seconds(record.retry or "")),
        },
    )
    return await found.fetchone() is not None


async def _not_genuine(
    conn: Conn, record: Record, reason: str, serial: str, lang: str
) -> VerifyOut:
    """Never activated or void: recorded and answered ``not_genuine``, nothing counted."""
    await _insert(conn, record, "not_genuine", reason, 0)
    return VerifyOut(
        result="not_genuine", reason=reason, serial=serial, message=messages.text(reason, lang)
    )


async def _history(
    conn: Conn, code: int, now: datetime, window: timedelta
) -> tuple[_History, _FirstPlace | None, list[tuple[datetime, str, bool]]]:
    """The code's counted verifications, the first place, and the PIN records ``replay`` needs
    at ``now`` (three queries; more pages of PIN records where the last two windows' do not
    settle its state: ``pin_start``)."""
    counts = conn.cursor(row_factory=class_row(_History))
    await counts.execute(_HISTORY, {"code": code})
    history = await counts.fetchone()
    places = conn.cursor(row_factory=class_row(_FirstPlace))
    await places.execute(_FIRST_PLACE, (code,))
    first = await places.fetchone()
    pins = conn.cursor(row_factory=tuple_row)
    since: datetime | None = now - 2 * window
    await pins.execute(_PIN_RECORDS, {"code": code, "horizon": since})
    records = await pins.fetchall()
    while (start := pin_start(records, window, now, since)) is None:
        await pins.execute(PIN_RECORDS_BEFORE, pins_before(code, records, since))
        page = await pins.fetchall()
        records[:0] = reversed(page)
        since = page[-1][0] if len(page) == PIN_PAGE else None  # None: none older
    assert history is not None
    return history, first, pin_history(records, start)


async def _locked(
    conn: Conn,
    record: Record,
    unit: UnitInfo,
    serial: str,
    lang: str,
    retry_after: int,
    reason: str = "locked",
) -> VerifyOut:
    """Too many wrong PINs (of the code, or ``client_locked``: of the client): recorded and
    answered ``locked`` for ``retry_after`` seconds."""
    await _insert(conn, record, "locked", reason, 0)
    return _about(
        unit,
        serial,
        result="locked",
        reason=reason,
        retry_after=retry_after,
        message=messages.text(reason, lang, minutes=-(-retry_after // 60)),
    )


async def _counted(
    conn: Conn,
    settings: Settings,
    record: Record,
    unit: UnitInfo,
    serial: str,
    pin_state: str,
    lang: str,
    history: _History,
    first: _FirstPlace | None,
    retried: bool,
) -> VerifyOut:
    """A counted verification (right PIN or none): this one counts when its PIN is right and it
    is no claim sent again (``retried``: recorded ``claim_retry``, as the Redis script does);
    ``decide`` gives the result; recorded with the count."""
    queries = history.queries + (1 if pin_state == "ok" and not retried else 0)
    first_at = history.first_at or (record.at if pin_state == "ok" else None)
    place = record.place.label if record.place else ""
    first_place = first.label if first else (place if pin_state == "ok" else "")
    never_shipped = settings.verify_flag_never_shipped and not unit.shipped
    result, reason = decide(
        pin_state, queries, first_place, place, settings.verify_repeat_threshold, never_shipped
    )
    await _insert(conn, record, result, "claim_retry" if retried else reason, queries)
    first_place = place_name(first_place, lang)  # recorded in Chinese; named in the reader's
    return _about(
        unit,
        serial,
        result=result,
        reason=reason,
        message=messages.text(
            reason, lang, queries=queries, first_at=first_at, first_place=first_place or None
        ),
        queries=queries,
        first_query_at=first_at,
        first_query_place=first_place or None,
    )


def _about(unit: UnitInfo, serial: str, **answer: Any) -> VerifyOut:
    """An answer about an activated unit: its product, lot and production date, and ``answer``."""
    return VerifyOut(
        serial=serial,
        product=unit.product,
        lot=unit.lot,
        production_date=unit.production_date,
        **answer,
    )
