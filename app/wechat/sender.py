"""Sending the template messages' outbox: claim rows, make each message, send it, record it.

As the SMS sender (``app.sms.sender``), in steps:

1. **Claim** (one short transaction): due ``pending`` rows move to ``sending``, ``attempts + 1``,
   ``claimed_at`` now — ``FOR UPDATE SKIP LOCKED``, so concurrent senders (the ``send_wechat``
   jobs, every worker's sweep) take disjoint rows. A claim is ``CLAIM_WAVES`` ×
   ``WECHAT_CONCURRENCY`` rows at most.
2. **Make**: the brand's account (enabled, its secret readable), the kind's template id, the
   member's openid (its binding now) and the row's data (text values, field names WeChat
   takes). A row that cannot be made — the account removed or turned off, the template
   unmapped, the member unbound, bad data — is ``failed`` with the reason, and the others go on.
   So is a marketing row (``MARKETING``: the points reminder) of a brand turned off, "the brand
   is deactivated", of a member frozen, or opted out of the brand's marketing, since it was
   queued, as its SMS twin is (``app.sms.sender``; a probe: a frozen member's reminder was
   failed by SMS and still sent by WeChat); redemptions and complaint replies still go.
3. **Send**, outside any transaction, ``WECHAT_CONCURRENCY`` at once (``app.wechat.gateway``:
   the token cached per app, refreshed once on a token error). A send that raises all the same
   (a fault no outcome names: a bug) is that row's ``retry``, and the others are recorded (a
   probe: a Redis blip reading the token raised out of the sends, the drain stopped, and the
   messages WeChat had taken stayed ``sending``, sent again after the lease).
4. **Record**, each row fenced on ``state = 'sending' AND attempts = <the claim's>`` (a sender
   whose lease was taken records nothing): ``sent`` with the msgid; ``failed`` for good
   (43004 not following, 43101 refused, 40003 bad openid, …); ``retry`` → ``pending`` again
   after ``WECHAT_BACKOFF_SECONDS`` doubled per attempt (±20 %, at most
   ``WECHAT_BACKOFF_MAX_SECONDS``), or ``dead`` once ``WECHAT_MAX_ATTEMPTS`` are spent.
   WeChat's words are stored as PostgreSQL takes them (a NUL made a space, ``storable``); an
   outcome that still cannot be stored fails its row with the reason, the others recorded
   (a probe: one answer's NUL stopped the drain, and the messages after it, sent already, were
   sent again after the lease).
5. **Recover** (the sweep): a row ``sending`` for longer than ``WECHAT_LEASE_SECONDS`` was taken
   by a sender that died; it goes back to ``pending`` (``dead`` when out of attempts) and is sent
   again. WeChat takes no idempotency key: such a message may reach the member twice (at least
   once), never lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from app.config import Settings
from app.db import Conn
from app.deadletters import WECHAT_MESSAGES, is_poison, reason_of
from app.sms.outbox import OPTED_OUT
from app.sms.sender import BRAND_OFF, MEMBER_FROZEN
from app.textguard import storable
from app.wechat import account as accounts
from app.wechat.bindings import masked
from app.wechat.gateway import Outcome, TemplateMessage, WechatGateway
from app.wechat.outbox import VALUE_MAX

log = logging.getLogger("tracecode.wechat")

CLAIM_WAVES = 4  # rows per claim: this many waves of WECHAT_CONCURRENCY sends
# the kinds that advertise (as the SMS's marketing purposes): none is sent for a brand turned off
MARKETING = frozenset({"points_reminder"})
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    brand_id: int
    member_id: int
    kind: str
    data: str  # JSON text, decoded per row (a value Python cannot load fails that row only)
    url: str | None
    attempts: int


class Stats(msgspec.Struct, kw_only=True):
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    recovered: int = 0

    def add(self, other: Stats) -> None:
        for field in msgspec.structs.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


class Unsendable(Exception):
    """A row that cannot be made into a message (step 2)."""


_CLAIM = """
WITH due AS (
  SELECT id FROM wechat_messages
   WHERE state = 'pending' AND next_attempt_at <= clock_timestamp() {only}
   ORDER BY next_attempt_at LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED
)
UPDATE wechat_messages m
   SET state = 'sending', attempts = m.attempts + 1, claimed_at = clock_timestamp()
  FROM due WHERE m.id = due.id
RETURNING m.id, m.brand_id, m.member_id, m.kind, m.data::text AS data, m.url, m.attempts
"""

_FENCE = "WHERE id = %(id)s AND state = 'sending' AND attempts = %(attempts)s"

_SENT = f"""UPDATE wechat_messages
   SET state = 'sent', msgid = %(msgid)s, openid = %(openid)s, template_id = %(template)s,
       errcode = NULL, last_error = NULL, sent_at = clock_timestamp() {_FENCE}"""

_FAILED = f"""UPDATE wechat_messages
   SET state = 'failed', errcode = %(errcode)s, last_error = %(error)s,
       openid = coalesce(%(openid)s, openid), template_id = coalesce(%(template)s, template_id)
   {_FENCE}"""

# A message out of attempts is copied to the dead letters (queue ``wechat_messages``), as every
# outbox's is: which message, not its openid, data or link (the member's, erased with the row).
_BURY = """
INSERT INTO dead_letters (queue, payload, reason)
SELECT %(queue)s,
       convert_to(json_build_object('message_id', id, 'brand_id', brand_id, 'kind', kind,
                                    'attempts', attempts, 'errcode', errcode)::text, 'UTF8'),
       'out of attempts: ' || coalesce(last_error, '')
  FROM moved WHERE state = 'dead'
"""

_RETRY = f"""WITH moved AS (
UPDATE wechat_messages
   SET state = CASE WHEN attempts >= %(max)s THEN 'dead' ELSE 'pending' END,
       errcode = %(errcode)s, last_error = %(error)s,
       openid = coalesce(%(openid)s, openid), template_id = coalesce(%(template)s, template_id),
       next_attempt_at = clock_timestamp() + make_interval(secs =>
           least(%(cap)s::float8, %(base)s::float8 * 2 ^ (attempts - 1) * (0.8 + random() * 0.4)))
   {_FENCE} RETURNING *
), buried AS ({_BURY})
SELECT state FROM moved"""

_RECOVER = f"""WITH moved AS (
UPDATE wechat_messages
   SET state = CASE WHEN attempts < %(max)s THEN 'pending' ELSE 'dead' END,
       next_attempt_at = clock_timestamp(),
       last_error = 'outcome unknown: the sender stopped after claiming the message'
 WHERE state = 'sending' AND claimed_at < clock_timestamp() - make_interval(secs => %(lease)s)
RETURNING *
), buried AS ({_BURY})
SELECT id FROM moved"""


async def claim(conn: Conn, limit: int, ids: Sequence[int] | None = None) -> list[Claimed]:
    """Claim up to ``limit`` due rows (only of ``ids`` when given) — step 1."""
    only = "AND id = ANY(%(ids)s::bigint[])" if ids is not None else ""
    async with conn.transaction():
        cur = await conn.execute(_CLAIM.format(only=only), {"limit": limit, "ids": list(ids or [])})
        rows = await cur.fetchall()
    return [msgspec.convert(row, Claimed) for row in sorted(rows, key=lambda r: r["id"])]


_DATA = msgspec.json.Decoder(dict[str, str])


def data_of(row: Claimed) -> dict[str, str]:
    """The row's data as WeChat takes it, or ``Unsendable``."""
    try:
        data = _DATA.decode(row.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise Unsendable(f"bad data: every value must be text ({exc})") from None
    if not data:
        raise Unsendable("bad data: nothing to say")
    for key, value in data.items():
        if not _FIELD.match(key):
            raise Unsendable(f"bad data: {key[:40]!r} is no template field name")
        if not value or len(value) > VALUE_MAX:
            raise Unsendable(f"bad data: {key} is empty or over {VALUE_MAX} characters")
    return data


class _Made(msgspec.Struct, frozen=True):
    account: accounts.Account
    message: TemplateMessage

    def __repr__(self) -> str:  # never print the app secret (nor the member's openid)
        return (
            f"_Made(brand_id={self.account.brand_id}, app_id={self.account.app_id!r}, "
            f"template_id={self.message.template_id!r}, touser={masked(self.message.touser)!r})"
        )


async def _make(
    conn: Conn, settings: Settings, row: Claimed, cache: dict[int, accounts.Account | None]
) -> _Made:
    """Step 2 for one row."""
    if row.brand_id not in cache:
        cache[row.brand_id] = await accounts.load(conn, settings, row.brand_id)
    account = cache[row.brand_id]
    if account is None:
        raise Unsendable("the brand has no enabled WeChat account")
    if row.kind in MARKETING and not account.brand_active:
        raise Unsendable(BRAND_OFF)
    template = account.templates.get(row.kind)
    if not template:
        raise Unsendable(f"the account has no template for {row.kind}")
    binding = await (
        await conn.execute(
            "SELECT b.openid, m.status, m.marketing_opt_out FROM wechat_bindings b"
            " JOIN members m ON m.id = b.member_id WHERE b.member_id = %s AND b.brand_id = %s",
            (row.member_id, row.brand_id),
        )
    ).fetchone()
    if binding is None:
        raise Unsendable("the member is not bound to WeChat")
    if row.kind in MARKETING and binding["status"] != "active":
        raise Unsendable(MEMBER_FROZEN)
    if row.kind in MARKETING and binding["marketing_opt_out"]:
        raise Unsendable(OPTED_OUT)
    message = TemplateMessage(
        touser=binding["openid"], template_id=template, url=row.url, data=data_of(row)
    )
    return _Made(account, message)


async def send_rows(
    conn: Conn, gateway: WechatGateway, settings: Settings, rows: list[Claimed]
) -> Stats:
    """Make, send and record claimed rows (steps 2–4)."""
    stats = Stats(claimed=len(rows))
    cache: dict[int, accounts.Account | None] = {}
    ready: list[tuple[Claimed, _Made]] = []
    for row in rows:
        try:
            ready.append((row, await _make(conn, settings, row, cache)))
        except Unsendable as exc:
            await _settle(conn, settings, row, None, Outcome(status="failed", error=str(exc)))
            stats.failed += 1
    slots = asyncio.Semaphore(settings.wechat_concurrency)

    async def one(row: Claimed, made: _Made) -> Outcome:
        async with slots:
            a = made.account
            try:
                return await gateway.send_template(a.app_id, a.secret, made.message)
            except Exception as exc:  # this row's fault: tried again, the others recorded
                reason = reason_of(exc).replace(a.secret, "***")
                log.warning("wechat message %d: the send raised %s", row.id, reason)
                return Outcome(status="retry", error=f"the send raised {reason}")

    outcomes = await asyncio.gather(*(one(row, made) for row, made in ready))
    for (row, made), outcome in zip(ready, outcomes, strict=True):
        state = await _settle(conn, settings, row, made.message, outcome)
        if state == "sent":
            stats.sent += 1
        elif state == "failed":
            stats.failed += 1
        elif state == "dead":
            stats.dead += 1
        elif state == "pending":
            stats.retried += 1
    return stats


async def _settle(
    conn: Conn,
    settings: Settings,
    row: Claimed,
    message: TemplateMessage | None,
    outcome: Outcome,
) -> str | None:
    """``_record``, or — when the outcome cannot be stored (the record's fault: a value past
    its column) — the row ``failed`` with the reason: one row's answer never stops the record
    of the others, which WeChat may have taken already (left ``sending``, the recovery would
    send them again). ``conn`` is in autocommit mode: a failed statement spoils no other."""
    try:
        return await _record(conn, settings, row, message, outcome)
    except Exception as exc:
        if not is_poison(exc):
            raise
        reason = f"WeChat's answer ({outcome.status}) could not be recorded: {reason_of(exc)}"
        log.warning("wechat message %d: %s", row.id, reason)
        return await _record(conn, settings, row, None, Outcome(status="failed", error=reason))


async def _record(
    conn: Conn,
    settings: Settings,
    row: Claimed,
    message: TemplateMessage | None,
    outcome: Outcome,
) -> str | None:
    """Step 4 for one row; the state it was left in (None: the claim was lost)."""
    params: dict[str, Any] = {
        "id": row.id,
        "attempts": row.attempts,
        "openid": message.touser if message else None,
        "template": message.template_id if message else None,
        "errcode": outcome.errcode,
        "error": storable((outcome.error or "")[:500] or None),  # WeChat's words: may hold a NUL
    }
    if outcome.status == "sent":
        msgid = storable((outcome.msgid or "")[:100] or None)
        cur = await conn.execute(_SENT, {**params, "msgid": msgid})
        return "sent" if cur.rowcount else None
    if outcome.status == "failed":
        cur = await conn.execute(_FAILED, params)
        if cur.rowcount:
            log.warning("wechat message %d failed: %s", row.id, params["error"])
        return "failed" if cur.rowcount else None
    retry = {
        **params,
        "max": settings.wechat_max_attempts,
        "base": settings.wechat_backoff_seconds,
        "cap": settings.wechat_backoff_max_seconds,
        "queue": WECHAT_MESSAGES,
    }
    found = await (await conn.execute(_RETRY, retry)).fetchone()
    if found is not None and found["state"] == "dead":
        log.warning("wechat message %d dead after %d attempts", row.id, row.attempts)
    return str(found["state"]) if found else None


def claim_size(settings: Settings) -> int:
    return settings.wechat_concurrency * CLAIM_WAVES


async def drain(
    conn: Conn, gateway: WechatGateway, settings: Settings, ids: Sequence[int] | None = None
) -> Stats:
    """Claim and send due rows (only ``ids`` when given) until none is left or half a lease has
    passed. ``conn`` must be in autocommit mode."""
    size = claim_size(settings)
    until = time.monotonic() + settings.wechat_lease_seconds / 2
    total = Stats()
    while True:
        rows = await claim(conn, size, ids)
        if rows:
            total.add(await send_rows(conn, gateway, settings, rows))
        if len(rows) < size or time.monotonic() >= until:
            return total


async def recover(conn: Conn, settings: Settings) -> int:
    """Rows of senders that died mid-send: pending again, or dead (step 5)."""
    params = {
        "max": settings.wechat_max_attempts,
        "lease": settings.wechat_lease_seconds,
        "queue": WECHAT_MESSAGES,
    }
    cur = await conn.execute(_RECOVER, params)
    return len(await cur.fetchall())


async def sweep(conn: Conn, gateway: WechatGateway, settings: Settings) -> Stats:
    """What every worker runs periodically: recover, then drain."""
    recovered = await recover(conn, settings)
    stats = await drain(conn, gateway, settings)
    stats.recovered = recovered
    return stats
