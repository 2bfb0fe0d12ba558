"""The SMS outbox: every message is a row first, written in the caller's transaction.

``enqueue`` inserts the row where the caller's other writes are, so a message exists exactly when
the change that caused it commits (a rolled-back sign-up sends no code). The job that sends it
(``send_sms``, workers/sms.py, by name through ``app.jobs.send``) is sent AFTER the commit:
``enqueue`` notes the row on the connection and the request's connection dependency
(``app.deps.provide_conn``) calls ``after_commit`` once its transaction has committed, or
``discard`` when it rolled back. A connection outside a transaction (autocommit) has committed
already: the job goes at once. Nothing depends on that job arriving: if Redis is down, the
worker dies, or a caller never calls ``after_commit``, the workers' sweeper (``app.sms.sender``)
finds the row still pending and sends it.

Rules applied here, before the row exists:

* one-time codes (purpose ``otp``) are throttled per phone, over every brand (the point is to
  protect the phone from a flood): one per ``SMS_OTP_INTERVAL_SECONDS``, at most
  ``SMS_OTP_DAILY_LIMIT`` in 24 hours; beyond that 429 ``sms_throttled`` with ``Retry-After``.
  A transaction lock per phone makes the check and the insert one step under concurrency.
* marketing (``reminder``, ``campaign``) is not sent to a phone that opted out of the brand's
  marketing (``sms_opt_outs`` or the member's own ``marketing_opt_out``), nor more than once per
  ``SMS_MARKETING_INTERVAL_HOURS`` per brand and phone: ``enqueue`` returns 0, no row. One-time
  codes, redemption codes and notices ignore opt-out.

Both throttles count a phone's rows by its number, or by the keyed hash of it an erasure keeps
on the rows they still read (``erased_phone_hash``, migration 0126: a probe asked for a code,
signed in, closed the membership and asked again, 4 codes in seconds — the erasure had rewritten
the number the throttle counted by). The hash is kept ``kept_hours`` after the row was queued
(``app.retention`` clears it), and the key never enters the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import re
import unicodedata
import weakref
from functools import cache
from typing import Any, Literal

from psycopg.pq import TransactionStatus
from psycopg.types.json import Jsonb

from app import jobs, locks
from app.config import Settings, load_settings
from app.db import Conn
from app.errors import TooManyRequests, ValidationFailed
from app.locks import Lock
from app.members.phones import normalise_phone
from app.sms.templates import BUILTIN, MARKETING, placeholders
from app.textguard import check_text

Purpose = Literal["otp", "redemption", "reminder", "campaign", "notice"]
PURPOSES = ("otp", "redemption", "reminder", "campaign", "notice")
SEND_ACTOR = "send_sms"  # workers/sms.py
OPTED_OUT = "opted out of marketing"  # the error of a marketing row failed by an opt-out

_pending: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()


@cache
def _default_settings() -> Settings:
    return load_settings()


_SEPARATORS = str.maketrans("", "", " -().")  # what people put between a phone's digits
_NUMBER = re.compile(r"\+?[0-9]{6,15}")
_CHINA = re.compile(r"\+0{0,2}86|0086")  # mainland China's country code, as written in front


def outbox_phone(phone: str) -> str:
    """The one form of a phone wherever SMS match phones (the outbox, opt-outs, "TD" replies,
    campaign audiences); 400 ``invalid_phone`` for what is no phone. Spaces, dashes, brackets
    and dots between the digits (full-width ones too) are dropped first, so that every spelling
    of a mainland mobile is the mobile as members store it (``app.members.phones``):
    ``+86 (138) 1234-5678``, ``(+86)138…``, ``+ 86 138…``, ``0086…``, ``86138…`` →
    ``13812345678`` (a probe: brackets or a spaced ``+ 86`` kept the ``86``, so a store
    manager's opt-out of the mobile missed the phone saved on their user). Any other number is
    its 6–15 digits. A number of another country whose digits alone would read as a mainland
    mobile keeps its international prefix, as ``00`` (the stored forms are digits only):
    ``+1 (395) 555-0142`` → ``0013955550142``, never ``13955550142`` (a probe: an opt-out of the
    foreign number opted the Chinese member of that mobile out of marketing). The trunk ``0`` and
    the odd ``+0086``/``086`` are the mobile too (``+86 (0)138…`` → ``138…``), and a number
    written with China's country code that is no mobile is no phone here (a probe: kept as its
    bare digits, ``86013…``, an opt-out or "TD" of the mobile missed it)."""
    bare = unicodedata.normalize("NFKC", phone).strip().translate(_SEPARATORS)
    try:
        return normalise_phone(bare)
    except ValidationFailed:
        if not _NUMBER.fullmatch(bare) or _CHINA.match(bare):
            raise
        digits = bare.removeprefix("+")
        if bare.startswith("+") and _reads_as_mobile(digits):
            return "00" + digits
        return digits


def erased_phone_hash(settings: Settings, phone: str) -> bytes:
    """The keyed hash of a phone (its ``outbox_phone`` form) that an erasure keeps on the rows
    the throttles still read: HMAC-SHA256 under ``Settings.subkey("sms-erased-phone")``, over
    every brand (the sign-in code throttle is)."""
    return hmac.digest(settings.subkey("sms-erased-phone"), phone.encode(), hashlib.sha256)


def kept_hours(settings: Settings) -> int:
    """How long after it was queued an erased row keeps its phone's hash: the longer window of
    the two throttles (a day of sign-in codes, the marketing interval)."""
    return max(24, settings.sms_marketing_interval_hours)


def _reads_as_mobile(digits: str) -> bool:
    """Whether ``digits`` as they are would be stored as a mainland mobile (11 digits)."""
    try:
        return normalise_phone(digits) == digits
    except ValidationFailed:
        return False


async def enqueue(
    conn: Conn,
    *,
    brand_id: int,
    phone: str,
    template: str,
    variables: dict[str, str],
    purpose: Purpose,
    member_id: int | None = None,
    settings: Settings | None = None,
) -> int:
    """Put one message into the outbox in the caller's transaction; its id, or 0 when a
    marketing message is skipped (opted out, or sent one recently). Raises 429 ``sms_throttled``
    (with ``Retry-After``) for a one-time code sent too soon or too often to the phone."""
    settings = settings or _default_settings()
    if purpose not in PURPOSES:
        raise ValueError(f"unknown SMS purpose {purpose!r}")
    phone = outbox_phone(phone)
    for name, value in variables.items():
        check_text(value, name, "variables")
    if template in BUILTIN:
        missing = placeholders(BUILTIN[template]["zh-CN"]) - variables.keys()
        if missing:
            raise ValueError(f"template {template!r} needs {sorted(missing)}")
    # In the caller's transaction: on a connection that is not in autocommit mode the first
    # statement opens it (``conn.transaction()`` would commit it); in autocommit, one of its own.
    block = conn.transaction() if conn.autocommit else contextlib.nullcontext()
    async with block:
        if purpose == "otp":
            await _throttle_otp(conn, phone, settings)
        elif purpose in MARKETING and await _skip_marketing(conn, brand_id, phone, settings):
            return 0
        cur = await conn.execute(
            """INSERT INTO sms_outbox (brand_id, member_id, phone, template, variables, purpose)
               VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
            (brand_id, member_id, phone, template, Jsonb(variables), purpose),
        )
        row = await cur.fetchone()
        assert row is not None
        outbox_id = int(row["id"])
    await _track(conn, [outbox_id])
    return outbox_id


async def _throttle_otp(conn: Conn, phone: str, settings: Settings) -> None:
    await locks.xact_lock(conn, Lock.SMS_PHONE, phone)
    cur = await conn.execute(  # the phone's rows, and its erased ones by their hash (0126)
        """SELECT extract(epoch FROM clock_timestamp() - created_at)::float8 AS age
             FROM sms_outbox
            WHERE (phone = %(p)s OR phone_hash = %(h)s) AND purpose = 'otp'
              AND created_at > clock_timestamp() - interval '1 day'
            ORDER BY created_at DESC LIMIT %(n)s""",
        {"p": phone, "h": erased_phone_hash(settings, phone), "n": settings.sms_otp_daily_limit},
    )
    ages = [float(r["age"]) for r in await cur.fetchall()]
    wait = 0.0
    if ages and ages[0] < settings.sms_otp_interval_seconds:
        wait = settings.sms_otp_interval_seconds - ages[0]
    if len(ages) >= settings.sms_otp_daily_limit:
        wait = max(wait, 86400 - ages[-1])  # until the oldest of the last N leaves the day
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"too many codes sent to this phone; try again in {seconds} s",
            code="sms_throttled",
            details={"retry_after": seconds},
            headers={"Retry-After": str(seconds)},
        )


async def drop_marketing(conn: Conn, brand_id: int, phone: str, why: str) -> None:
    """Fail the brand's marketing messages to ``phone`` still waiting to leave (an opt-out, an
    erasure: a probe, a campaign's queued message went out after the opt-out), under the
    brand's marketing lock: a campaign queued at the same moment commits first, or sees it.
    A row in flight (``sending``) is not here to fail: the sender fails it when it claims it
    again, after a retry or a recovery (``app.sms.sender.claim``)."""
    await locks.xact_lock(conn, Lock.SMS_MARKETING, brand_id)
    await conn.execute(
        """UPDATE sms_outbox SET state = 'failed', last_error = %(why)s
            WHERE phone = %(p)s AND brand_id = %(b)s AND state = 'pending'
              AND purpose IN ('reminder', 'campaign')""",
        {"b": brand_id, "p": phone, "why": why},
    )


async def _skip_marketing(conn: Conn, brand_id: int, phone: str, settings: Settings) -> bool:
    """Whether a marketing message to ``phone`` must be skipped (opted out, or one queued within
    the interval). The brand's marketing lock is held until the caller commits, so that a
    campaign or another reminder queued at the same moment sees this one."""
    await locks.xact_lock(conn, Lock.SMS_MARKETING, brand_id)
    cur = await conn.execute(
        """SELECT EXISTS (SELECT 1 FROM sms_opt_outs WHERE brand_id = %(b)s AND phone = %(p)s)
               OR EXISTS (SELECT 1 FROM members
                           WHERE brand_id = %(b)s AND phone = %(p)s AND marketing_opt_out)
               OR EXISTS (SELECT 1 FROM sms_outbox
                           WHERE (phone = %(p)s OR phone_hash = %(k)s) AND brand_id = %(b)s
                             AND purpose IN ('reminder', 'campaign')
                             AND created_at > clock_timestamp() - make_interval(hours => %(h)s))
               AS skip""",
        {
            "b": brand_id,
            "p": phone,
            "k": erased_phone_hash(settings, phone),
            "h": settings.sms_marketing_interval_hours,
        },
    )
    row = await cur.fetchone()
    return bool(row and row["skip"])


async def erased_in_audience(
    conn: Conn, settings: Settings, brand_id: int, audience: str, params: dict[str, Any]
) -> list[str]:
    """The phones of a campaign's ``audience`` (SQL of ``phone`` rows, with ``params``) that the
    brand sent marketing within the interval under a membership erased since: their rows keep
    the phone's hash only, the campaign skips them as the ones sent under their number. The
    audience is read only when the brand has such a row (the partial index of erased rows)."""
    rows = await (
        await conn.execute(
            """SELECT DISTINCT phone_hash FROM sms_outbox
                WHERE phone_hash IS NOT NULL AND brand_id = %s
                  AND purpose IN ('reminder', 'campaign')
                  AND created_at > clock_timestamp() - make_interval(hours => %s)""",
            (brand_id, settings.sms_marketing_interval_hours),
        )
    ).fetchall()
    kept = {bytes(row["phone_hash"]) for row in rows}
    if not kept:
        return []
    cur = await conn.execute(f"SELECT DISTINCT a.phone FROM ({audience}) a", params)
    phones = [str(row["phone"]) for row in await cur.fetchall()]
    return [p for p in phones if erased_phone_hash(settings, p) in kept]


async def _track(conn: Conn, ids: list[int]) -> None:
    """Send the job now when the rows are committed already, else when the caller commits."""
    if conn.info.transaction_status == TransactionStatus.IDLE:
        await dispatch(ids)
    else:
        _pending.setdefault(conn, []).extend(ids)


async def after_commit(conn: Conn) -> None:
    """The caller's transaction committed: send the job for the rows it enqueued."""
    ids = _pending.pop(conn, None)
    if ids:
        await dispatch(ids)


def discard(conn: Conn) -> None:
    """The caller's transaction rolled back: its rows do not exist, send nothing."""
    _pending.pop(conn, None)


async def dispatch(ids: list[int]) -> None:
    """Hand ``send_sms(ids)`` to the broker; on any failure leave the rows to the sweeper."""
    await jobs.hand_over(SEND_ACTOR, ids)


async def pending_stats(conn: Conn) -> dict[str, float]:
    """For /metrics: rows waiting and in flight, and the age of the oldest due one (seconds)."""
    cur = await conn.execute(
        """SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
                  count(*) FILTER (WHERE state = 'sending') AS sending,
                  coalesce(extract(epoch FROM clock_timestamp()
                           - min(next_attempt_at) FILTER (WHERE state = 'pending')), 0)::float8
                    AS oldest
             FROM sms_outbox WHERE state IN ('pending', 'sending')"""
    )
    row = await cur.fetchone()
    assert row is not None
    return {
        "pending": float(row["pending"]),
        "sending": float(row["sending"]),
        "oldest_pending_seconds": max(0.0, float(row["oldest"])),
    }
