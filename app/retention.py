"""Personal information is kept no longer than its purpose needs (PIPL art. 19).

A privacy probe found that nothing ever cleared what a consumer's scan left behind — the client
address and id, the user agent, the position — nor the phone numbers of SMS sent to people who
asked for a sign-in code and never signed up (they have no membership to erase). A sweep, run by
every worker process every ``SWEEP_SECONDS`` (one at a time: ``Lock.RETENTION_SWEEP``), clears:

* a verification record's ``client_ip``, ``client_id``, ``user_agent``, ``lat``, ``lng`` and
  claim retry key ``TRACECODE_RETAIN_SCAN_DETAILS_DAYS`` after the scan (365 by default). The
  record stays — its code, time, result, reason, province and city, its member — so counts,
  first-query answers, analytics and the Redis rebuild are unchanged; so are a member's scans,
  which pair a claim with the check it was made from by the retry key: a record naming its
  member keeps the key's md5 instead (``_RETRY``; a probe: nulled, the claim was listed again);
* a finished SMS's number and variables (the code or gift it carried)
  ``TRACECODE_RETAIN_SMS_DAYS`` after it was queued (365), as the erasure of a member does: the
  number becomes a tombstone of zeros. Until then a reply ``TD`` to it still opts the number out
  of its brand's marketing, and marketing spacing reads it (the days are at least
  ``SMS_MARKETING_INTERVAL_HOURS``);
* a finished WeChat template message's openid, data and link (a gift, a redemption code, the
  reply to a complaint: ``app.wechat``) ``TRACECODE_RETAIN_SMS_DAYS`` after it was queued, as an
  SMS's number and variables; one not sent yet keeps them;
* the client address and user agent in a fraud hold's evidence (``app.forensics.rings`` copies
  them from the verification records of a ``shared_device`` ring)
  ``TRACECODE_RETAIN_SCAN_DETAILS_DAYS`` after the hold was opened — no longer than the records
  they were copied from keep theirs; the hold, its decision and the rest of its evidence (the
  members' ids, the counts) stay, the brand's record of the fraud;
* the keyed hash of the phone an erasure keeps on the SMS the throttles still read
  (``app.members.erasure``, migration 0126) once their windows are over — a day of sign-in
  codes, ``SMS_MARKETING_INTERVAL_HOURS`` of marketing, the longer of the two after the message
  was queued (``app.sms.outbox.kept_hours``), whatever ``TRACECODE_RETAIN_SMS_DAYS`` says (a
  failed SMS's copy in ``dead_letters`` is made without it, ``app.sms.sender``: a probe found
  one kept there for ever; migration 0132 took it out of the copies made before);
* sign-in codes a day after they expired (a code is useless once expired; their rows hold the
  phone and the asking address);
* the same in the operators' ``dead_letters``: a verification record PostgreSQL refused loses its
  details, a failed SMS's copy its number and variables, as many days after it was set aside
  (a record that is no JSON object, whose fields cannot be told apart, loses its whole payload;
  one whose JSON gives a personal key twice is written again, each key once: a probe; a letter
  holding nothing personal is left as it is, however it is spelled);
  the letter stays, for the operator to replay or drop (a probe: the copies kept everything
  for ever), its reason cut to its first line (PostgreSQL's DETAIL and CONTEXT lines quote the
  record: a probe found the client's address there; migration 0132 cut those already cleared)
  and saying so.

0 days keeps that kind for ever. Each kind advances a mark (``retention_marks``): records by
their time, in windows of an hour, SMS by their id, ``SMS_BLOCK`` rows at a time — so a sweep
reads what it clears and what it skips over, never the years already swept; a sweep stops
after ``BUDGET_SECONDS`` and the next goes on from its mark. WeChat messages and fraud holds
need no mark: a partial index of the rows still holding something (migration 0122) is all a
sweep reads, ``BLOCK`` rows a statement.

One row must not stop the sweep (a probe: a hold whose evidence was a JSON string made
``evidence - 'client_ip'`` raise, and a record timed '-infinity' a ``min(at)`` Python cannot
load, each stopping every step after it, the SMS numbers and sign-in codes kept past their
days): a hold's evidence is cleared only when it is a JSON object (a string has no keys to
clear), records timed '-infinity' are cleared apart (the windows read finite times), and each
step runs on its own (``_step``) — one failing is logged with its reason and retried by the next
sweep, and the steps after it run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from app.config import Settings
from app.db import Conn
from app.deadletters import MAX_REASON, SMS_OUTBOX, VERIFICATIONS, first_line, reason_of
from app.sms.outbox import kept_hours
from app.verify.record import decoded, swept_retry

log = logging.getLogger("tracecode.retention")
_SCAN_DETAILS = ("client_ip", "client_id", "user_agent", "lat", "lng", "retry")
LETTERS_BLOCK = 500  # dead letters read in one statement
RETAINED = " (personal data cleared: past its retention)"  # a cleared letter's reason says so

SWEEP_SECONDS = 3600.0
BUDGET_SECONDS = 20.0  # of work per sweep; the next sweep goes on from the marks
WINDOW = timedelta(hours=1)  # of verification records cleared in one statement
SMS_BLOCK = 5000  # SMS rows read (and cleared) in one statement
SMS_TOMBSTONE = "0" * 15  # digits (the column's rule), and no phone
BLOCK = 1000  # WeChat messages or fraud holds cleared in one statement

# A record's claim retry key past its days: its md5 on a record that names its member, else
# nothing. The member's scans (``app.members.admin._ONE_SCAN``) pair by it a claim made from the
# answer to the member's check, or sent again, with that check: the pair must stay one scan (a
# probe: nulled, the claim was listed again). The md5 says nothing personal: the key is one
# form's own id (``h5:``, its time and 64 random bits) or ``<kind>:<claimant>:<client id>`` —
# on such a record the claimant is the member the record names, and the client id the claim's
# own, kept on its row (point_claims, draws) — so it links only the records of one claim.
_RETRY = f"""CASE WHEN member_id IS NULL THEN NULL WHEN starts_with(retry, 'md5:') THEN retry
                  ELSE {swept_retry("retry")} END"""
_DETAILS = """client_ip IS NOT NULL OR client_id IS NOT NULL OR user_agent IS NOT NULL
              OR lat IS NOT NULL OR lng IS NOT NULL OR NOT starts_with(retry, 'md5:')"""


@dataclass
class Swept:
    scans: int = 0
    sms: int = 0
    codes: int = 0
    letters: int = 0
    wechat: int = 0
    holds: int = 0
    hashes: int = 0  # erased SMS's phone hashes (migration 0126)


async def _mark(conn: Conn, what: str) -> tuple[datetime | None, int]:
    row = await (
        await conn.execute("SELECT done_at, done_id FROM retention_marks WHERE what = %s", (what,))
    ).fetchone()
    return (row["done_at"], int(row["done_id"])) if row else (None, 0)


async def _set_mark(conn: Conn, what: str, done_at: datetime | None, done_id: int) -> None:
    await conn.execute(
        """INSERT INTO retention_marks (what, done_at, done_id) VALUES (%s, %s, %s)
           ON CONFLICT (what) DO UPDATE
              SET done_at = greatest(retention_marks.done_at, EXCLUDED.done_at),
                  done_id = greatest(retention_marks.done_id, EXCLUDED.done_id)""",
        (what, done_at, done_id),
    )


async def _scans(conn: Conn, cutoff: datetime, deadline: float) -> int:
    """Clear the details of records older than ``cutoff``, an hour of records per statement,
    from the mark on (the records between windows skipped through the primary key's index)."""
    done_at, _ = await _mark(conn, "scans")
    # a record timed '-infinity' (no time Python can hold: a hand edit, a restore) is older than
    # any cutoff: cleared here, by the primary key's index, and left out of the windows
    done = await conn.execute(
        f"""UPDATE verifications
               SET client_ip = NULL, client_id = NULL, user_agent = NULL, lat = NULL, lng = NULL,
                   retry = {_RETRY}
             WHERE at = '-infinity' AND ({_DETAILS})"""
    )
    cleared = done.rowcount
    while time.monotonic() < deadline:
        row = await (
            await conn.execute(
                """SELECT min(at) AS at FROM verifications
                    WHERE at >= %s AND at < %s AND isfinite(at)""",
                (done_at or "-infinity", cutoff),
            )
        ).fetchone()
        start = row["at"] if row else None
        if start is None:  # nothing older left: the mark moves up to the cutoff
            await _set_mark(conn, "scans", cutoff, 0)
            break
        end = min(start + WINDOW, cutoff)
        async with conn.transaction():
            done = await conn.execute(
                f"""UPDATE verifications
                       SET client_ip = NULL, client_id = NULL, user_agent = NULL, lat = NULL,
                           lng = NULL, retry = {_RETRY}
                     WHERE at >= %s AND at < %s AND isfinite(at) AND ({_DETAILS})""",
                (start, end),
            )
            await _set_mark(conn, "scans", end, 0)
        cleared += done.rowcount
        done_at = end
    return cleared


async def _sms(conn: Conn, cutoff: datetime, deadline: float) -> int:
    """Tombstone the finished SMS queued before ``cutoff``, ``SMS_BLOCK`` rows at a time (the
    next ones past the mark, by the primary key's index), up to the first one still too young
    or still in flight (ids grow with the time a row was queued). The rows, not a range of ids:
    ids a rolled-back campaign burnt (a gap of more than a block) stopped the sweep for ever (a
    probe: a block of no row was read as nothing past the mark yet)."""
    _, done_id = await _mark(conn, "sms")
    cleared = 0
    while time.monotonic() < deadline:
        row = await (
            await conn.execute(
                """SELECT min(id) FILTER (WHERE created_at >= %(cutoff)s
                                             OR state IN ('pending', 'sending')) AS stop,
                          max(id) AS last
                     FROM (SELECT id, created_at, state FROM sms_outbox WHERE id > %(from)s
                            ORDER BY id LIMIT %(block)s) AS block""",
                {"cutoff": cutoff, "from": done_id, "block": SMS_BLOCK},
            )
        ).fetchone()
        if row is None or row["last"] is None:
            break  # no row past the mark yet
        upto = int(row["stop"]) - 1 if row["stop"] is not None else int(row["last"])
        if upto > done_id:
            async with conn.transaction():
                done = await conn.execute(
                    """UPDATE sms_outbox SET phone = %s, variables = '{}'
                        WHERE id > %s AND id <= %s
                          AND (phone <> %s OR variables <> '{}')""",
                    (SMS_TOMBSTONE, done_id, upto, SMS_TOMBSTONE),
                )
                await _set_mark(conn, "sms", None, upto)
            cleared += done.rowcount
            done_id = upto
        if row["stop"] is not None:
            break  # the rest is young or in flight: the next sweep
    return cleared


def _cleared(queue: str, payload: bytes) -> bytes | None:
    """A dead letter's payload without the personal part its retention ends; None when it holds
    none any more — left as it is, whatever its spelling (a review: an SMS copy made with
    ``row_to_json``, not msgspec's bytes, lost its reason for nothing). Written again when a
    personal field holds a value, or when the JSON gives a personal key twice: it is decoded
    once, the last — a probe: ``"client_ip"`` given first and then null read as cleared, the
    address kept in the bytes for ever."""
    fields = decoded(payload)
    if fields is None:
        return b"" if payload else None
    if queue == VERIFICATIONS:
        gone = dict.fromkeys(_SCAN_DETAILS)
    else:  # an SMS outbox row, as app.sms.sender copied it
        gone = {"phone": SMS_TOMBSTONE, "variables": {}}
    if all(fields.get(k, v) == v for k, v in gone.items()) and not _repeated(payload, gone):
        return None
    return msgspec.json.encode({**fields, **gone})


def _repeated(payload: bytes, keys: dict[str, Any]) -> bool:
    """Whether the top-level object of ``payload`` (a JSON object) gives one of ``keys`` more
    than once (nested objects are not read: they come out as lists of pairs)."""
    try:
        pairs = json.loads(payload, object_pairs_hook=list)
    except (ValueError, RecursionError):  # msgspec read it: too deep here, cleared to be sure
        return True
    names = [name for name, _ in pairs]
    return any(names.count(key) > 1 for key in keys)


async def _letters(conn: Conn, queue: str, cutoff: datetime, deadline: float) -> int:
    """Clear the personal part of ``queue``'s dead letters set aside before ``cutoff``, in
    (time, id) order from the mark on; a letter cleared has its reason cut to its first line
    (``first_line``: PostgreSQL's DETAIL and CONTEXT lines quote the record) and saying so."""
    done_at, done_id = await _mark(conn, f"dead:{queue}")
    cleared = 0
    while time.monotonic() < deadline:
        rows = await (
            await conn.execute(
                """SELECT id, at, payload, reason FROM dead_letters
                    WHERE queue = %s AND (at, id) > (%s, %s) AND at < %s
                    ORDER BY at, id LIMIT %s""",
                (queue, done_at or "-infinity", done_id, cutoff, LETTERS_BLOCK),
            )
        ).fetchall()
        async with conn.transaction():
            for row in rows:
                payload = _cleared(queue, bytes(row["payload"]))
                if payload is not None:
                    reason = (first_line(row["reason"]) + RETAINED)[:MAX_REASON]
                    await conn.execute(
                        "UPDATE dead_letters SET payload = %s, reason = %s WHERE id = %s",
                        (payload, reason, row["id"]),
                    )
                    cleared += 1
            if rows:
                done_at, done_id = rows[-1]["at"], rows[-1]["id"]
            await conn.execute(
                """INSERT INTO retention_marks (what, done_at, done_id) VALUES (%s, %s, %s)
                   ON CONFLICT (what) DO UPDATE SET done_at = EXCLUDED.done_at,
                                                    done_id = EXCLUDED.done_id""",
                (f"dead:{queue}", done_at, done_id),
            )
        if len(rows) < LETTERS_BLOCK:
            break
    return cleared


# The rows still holding something, by migration 0122's partial indexes (their predicates
# spelled as the indexes' are): finished WeChat messages, and fraud holds' evidence.
_WECHAT = """
WITH due AS (
    SELECT id FROM wechat_messages
     WHERE created_at < %(cutoff)s AND state IN ('sent', 'failed', 'dead')
       AND (openid IS NOT NULL OR data <> '{}'::jsonb OR url IS NOT NULL)
     LIMIT %(block)s
)
UPDATE wechat_messages m SET openid = NULL, data = '{}', url = NULL FROM due WHERE m.id = due.id
"""
_HOLDS = """
WITH due AS (
    SELECT id FROM fraud_holds
     WHERE created_at < %(cutoff)s AND (evidence ? 'client_ip' OR evidence ? 'user_agent')
       AND jsonb_typeof(evidence) = 'object'  -- "client_ip", a string, has it too: no keys
     LIMIT %(block)s
)
UPDATE fraud_holds h SET evidence = h.evidence - 'client_ip' - 'user_agent'
  FROM due WHERE h.id = due.id
"""

# Erased SMS rows past the throttles' windows, by migration 0126's partial index (every row it
# holds is one: only an erasure writes a hash).
_HASHES = """
WITH due AS (
    SELECT id FROM sms_outbox WHERE phone_hash IS NOT NULL AND created_at < %(cutoff)s
     LIMIT %(block)s
)
UPDATE sms_outbox o SET phone_hash = NULL FROM due WHERE o.id = due.id
"""


async def _blocks(conn: Conn, sql: str, cutoff: datetime, deadline: float) -> int:
    """``sql`` run, ``BLOCK`` rows a statement (each its own transaction: ``conn`` autocommits),
    until it clears fewer or the budget is spent; how many it cleared."""
    cleared = 0
    while time.monotonic() < deadline:
        done = await conn.execute(sql, {"cutoff": cutoff, "block": BLOCK})
        cleared += done.rowcount
        if done.rowcount < BLOCK:
            break
    return cleared


async def _step(conn: Conn, name: str, run: Callable[[], Awaitable[int]]) -> int:
    """One step of a sweep, what it cleared; when it fails (a row it cannot clear, a lock
    conflict) the reason is logged and 0 answered: the steps after it still run, and this one
    is tried again by the next sweep. A lost connection propagates."""
    try:
        return await run()
    except Exception as exc:
        if conn.broken:
            raise
        log.error("retention step %s failed, the others go on: %s", name, reason_of(exc))
        return 0


async def sweep(conn: Conn, settings: Settings, now: datetime | None = None) -> Swept:
    """One pass over every kind; ``conn`` in autocommit mode (each step commits its own, and
    one failing — logged — never stops the others)."""
    if now is None:
        row = await (await conn.execute("SELECT now() AS now")).fetchone()
        now = row["now"] if row else datetime.now().astimezone()
    deadline = time.monotonic() + BUDGET_SECONDS
    swept = Swept()
    hash_cut = now - timedelta(hours=kept_hours(settings))  # first: a backlog never holds it up
    swept.hashes = await _step(
        conn, "erased sms hashes", lambda: _blocks(conn, _HASHES, hash_cut, deadline)
    )
    if settings.retain_scan_details_days:
        cut = now - timedelta(days=settings.retain_scan_details_days)
        swept.scans = await _step(conn, "scans", lambda: _scans(conn, cut, deadline))
        swept.letters += await _step(
            conn, "dead letters", lambda: _letters(conn, VERIFICATIONS, cut, deadline)
        )
        swept.holds = await _step(conn, "holds", lambda: _blocks(conn, _HOLDS, cut, deadline))
    if settings.retain_sms_days:
        sms_cut = now - timedelta(days=settings.retain_sms_days)
        swept.sms = await _step(conn, "sms", lambda: _sms(conn, sms_cut, deadline))
        swept.letters += await _step(
            conn, "dead letters", lambda: _letters(conn, SMS_OUTBOX, sms_cut, deadline)
        )
        swept.wechat = await _step(
            conn, "wechat", lambda: _blocks(conn, _WECHAT, sms_cut, deadline)
        )
    swept.codes = await _step(conn, "sign-in codes", lambda: _codes(conn, now))
    return swept


async def _codes(conn: Conn, now: datetime) -> int:
    """Delete the sign-in codes asked for over a day ago, as a new code's request cleans up
    (``app.members.auth``)."""
    done = await conn.execute(
        "DELETE FROM member_otps WHERE created_at < %s", (now - timedelta(days=1),)
    )
    return done.rowcount
