"""Write-behind of verification records (Redis list → PostgreSQL) and the alert rules (V3, V4).

The API pushes a round's records onto a Redis list in the same script that counts them, as ONE
element, a record per line (JSON text holds no raw newline; an element of one record, as an
older API pushed, reads the same). ``flush`` moves the oldest elements' records into PostgreSQL
in one statement and only then trims those elements from the list, so a crash between the two
re-flushes records, which the unique record key turns into no-ops.
A Redis lock lets one flusher take a queue at a time. On a Redis Cluster each shard has its own
queue and lock (``app.redisconn``): a flush takes every queue holding records whose lock it
gets, in one statement, and several workers flush at once the shards the others left. The lock
holds the flusher's own token: it is renewed while a long pass writes, and the trim and the
release happen only while the token is still there (a probe: a pass past the lock's time let a
second flusher in, both trimmed by their own count, and records nobody had stored were lost).

A record PostgreSQL refuses (a NUL in a string, a value out of range, not JSON at all) must not
stop the others: when the batch fails for a reason of its data, it is written in halves down to
the bad records, which go to ``dead_letters`` with the reason (``app.deadletters``); the rest is
stored and the queue trimmed as usual. A database that is down raises, and the batch is retried.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from redis.exceptions import NoScriptError

from app.deadletters import VERIFICATIONS, bisect, reason_of
from app.localtime import REPORT_TZ
from app.locks import Lock, xact_each
from app.redisconn import AnySyncRedis, is_cluster, shard_tags
from app.verify.record import anonymous, decoded, member_of

FLUSH_LOCK_MS = 30_000
RENEW_S = FLUSH_LOCK_MS / 3000  # a pass renews its locks after a third of their time

# KEYS[1] the queue, KEYS[2] its lock; ARGV[1] the flusher's token, ARGV[2] the elements it
# stored (trimmed from the tail: pushes at the head move none). Trims and releases the lock, or
# does nothing without the token.
_TRIM = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
if n > 0 then redis.call('LTRIM', KEYS[1], 0, -n - 1) end
redis.call('DEL', KEYS[2])
return 1
"""
# KEYS[1] a lock; ARGV[1] the token; ARGV[2] its new time (ms), or 0 to release it.
_KEEP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


class LockLost(Exception):
    """A flush lock expired during the pass and is another's now: the pass stops untrimmed
    (what it stored is a no-op when read again, by the unique record key)."""


# The leak detector's mark (``app.forensics.leaks``: it judges the records since it, less an
# overlap): a pass storing records older than the mark — the workers back after an outage, a
# backlog — moves it back to them, in the same statement (a probe: they were never judged)
LEAK_MARK = "leaks"

WINDOW = 64  # queued elements (rounds) read at a time; a round holds up to 500 records

# json, not jsonb: the records are read once, field by field; building the jsonb value of a
# batch first cost PostgreSQL ~10 µs a record, json_to_recordset ~7 (of ~20 for the insert).
# Only the stored rows that raise an alert (``RULES``, less ``COUNTED_ONLY``'s rules for a record
# without a PIN) come back: most verifications raise none.
_INSERT = f"""
WITH stored AS (
INSERT INTO verifications
    (at, record_key, code_id, serial, brand_id, product_id, result, reason, queries, pin_given,
     client_ip, client_id, user_agent, province, city, lat, lng, member_id, retry, gtin)
SELECT r.at, r.record_key, r.code_id, r.serial, r.brand_id, r.product_id, r.result, r.reason,
       r.queries, r.pin_given,
       CASE WHEN e.erased THEN NULL ELSE r.client_ip END,
       CASE WHEN e.erased THEN NULL ELSE r.client_id END,
       CASE WHEN e.erased THEN NULL ELSE r.user_agent END, r.province, r.city,
       CASE WHEN e.erased THEN NULL ELSE r.lat END,
       CASE WHEN e.erased THEN NULL ELSE r.lng END,
       CASE WHEN e.erased OR e.other_brand OR e.signed_out THEN NULL ELSE r.member_id END,
       CASE WHEN e.erased THEN NULL ELSE r.retry END, r.gtin
  FROM json_to_recordset(%s::json) AS r(
       at timestamptz, record_key uuid, code_id bigint, serial text, brand_id bigint,
       product_id bigint, result text, reason text, queries integer, pin_given boolean,
       client_ip inet, client_id text, user_agent text, province text, city text,
       lat double precision, lng double precision, member_id bigint, retry text, gtin text,
       member_token uuid)
  -- a member's claim still queued when the member was erased is stored as erasure left the
  -- member's earlier ones (app.members.erasure); a record without a member looks nothing up.
  -- FOR SHARE waits for an erasure under way (it holds the member's row) and reads the row it
  -- committed: read before, the record was stored whole after the erasure had cleared the
  -- others (review R6). A member of another brand than the record's (a signed-in member's
  -- check of another brand's code: the hot path reads no member row) is not stored with it,
  -- nor one named by a member token signed out before the verification (its revocation).
  LEFT JOIN LATERAL (SELECT m.status = 'erased' AS erased,
                            m.brand_id <> r.brand_id AS other_brand,
                            r.member_token IS NOT NULL AND EXISTS (
                                SELECT 1 FROM member_token_revocations t
                                 WHERE t.jti = r.member_token AND t.revoked_at <= r.at)
                                AS signed_out
                       FROM members m
                      WHERE r.member_id IS NOT NULL AND m.id = r.member_id
                        FOR SHARE OF m) e ON true
ON CONFLICT (at, record_key) DO NOTHING
RETURNING at, code_id, serial, brand_id, result, reason, queries, province, city, gtin, pin_given
), behind AS (  -- records older than the leak detector's mark: it goes back to them (LEAK_MARK)
UPDATE forensics_marks SET scanned_to = o.at
  FROM (SELECT min(at) AS at FROM stored) o
 WHERE name = '{LEAK_MARK}' AND scanned_to > o.at
)
SELECT code_id, serial, brand_id, result, reason, queries, province, city, NULL::date AS late,
       NULL::bigint AS stored, gtin, pin_given
  FROM stored
 WHERE reason = ANY(%s) AND brand_id IS NOT NULL AND (pin_given OR NOT reason = ANY(%s))
UNION ALL  -- a genuine code in a Digital Link of another brand's GTIN: that brand's alert too
SELECT NULL::bigint, s.serial, split_part(o.path, '/', 2)::bigint, s.result, s.reason, s.queries,
       s.province, s.city, NULL::date, NULL::bigint, s.gtin, s.pin_given
  FROM stored s JOIN products p ON p.gtin = s.gtin::char(14) JOIN orgs o ON o.id = p.org_id
 WHERE s.gtin IS NOT NULL AND split_part(o.path, '/', 2)::bigint IS DISTINCT FROM s.brand_id
UNION ALL  -- the closed days (Beijing) of the records stored late: their dashboard rows go
SELECT DISTINCT NULL::bigint, NULL, brand_id, NULL, NULL, NULL::integer, NULL, NULL,
       (at AT TIME ZONE '{REPORT_TZ}')::date, NULL::bigint, NULL, NULL::boolean
  FROM stored
 WHERE brand_id IS NOT NULL
   AND (at AT TIME ZONE '{REPORT_TZ}')::date < (now() AT TIME ZONE '{REPORT_TZ}')::date
UNION ALL  -- how many were new
SELECT NULL::bigint, NULL, NULL::bigint, NULL, NULL, NULL::integer, NULL, NULL, NULL::date,
       count(*), NULL, NULL::boolean
  FROM stored
"""

# Records stored already when their flush came: by an earlier pass, or by the Redis-down path
# after the round's call timed out, when the script ran all the same. Redis counted those: they
# are no ``fallback`` records for the reconcile to add (a regression probe: counted twice).
_COUNTED_BY_REDIS = """
UPDATE verifications v SET fallback = false
  FROM json_to_recordset(%s::json) AS r(at timestamptz, record_key uuid)
 WHERE v.at = r.at AND v.record_key = r.record_key AND v.fallback
"""

# reason → (alert kind, severity). SPEC V3's "alerts for fakes": a code never activated, void
# or unknown, a forged one whose scan named one of the brand's GTINs (a Digital Link: without a
# GTIN it has no brand, and no alert), and a genuine code in a Digital Link of another product
# (``wrong_product``: its serial and PIN copied onto another product's pack).
RULES: dict[str, tuple[str, str]] = {
    "over_threshold": ("repeat", "critical"),
    "region_jump": ("region_jump", "warning"),
    "never_shipped": ("never_shipped", "warning"),
    "not_activated": ("fake", "warning"),
    "void": ("fake", "warning"),
    "unknown": ("fake", "info"),
    "forged": ("fake", "warning"),
    "wrong_product": ("fake", "warning"),
}

_ALERTING = list(RULES)

# Rules of the query count (V4 repeat): raised only by a verification that added a counted query
# — the PIN given (a wrong one is recorded ``wrong_pin``) and no claim sent again (recorded
# ``claim_retry``, which raises nothing). A scan without a PIN over the threshold still answers
# ``suspicious`` / ``over_threshold`` but counts nothing, and raises no alert: a probe, every
# look at a code judged a false positive (its alert closed) opened a new critical alert.
COUNTED_ONLY = ("over_threshold",)

ALERT = """
INSERT INTO alerts (brand_id, org_id, kind, severity, code_id, serial, message, details, dedup_key)
VALUES (%(brand)s, %(brand)s, %(kind)s, %(severity)s, %(code)s, %(serial)s, %(message)s,
        %(details)s, %(dedup)s)
ON CONFLICT (dedup_key) WHERE acknowledged_at IS NULL
DO UPDATE SET occurrences = alerts.occurrences + 1, last_at = now(), details = EXCLUDED.details
"""


def queues(client: AnySyncRedis, namespace: str) -> list[tuple[str, str]]:
    """The record queues and their flush locks: one pair on one server, one per shard (the
    shard's hash tag ended to both names) on a Redis Cluster."""
    tags = shard_tags() if is_cluster(client) else ("",)
    return [(f"{namespace}:verif:queue{t}", f"{namespace}:verif:flush-lock{t}") for t in tags]


def flush(
    client: AnySyncRedis, conn: psycopg.Connection[Any], namespace: str, limit: int = 5000
) -> int:
    """Move the oldest queued records into PostgreSQL in ONE statement: whole rounds (elements)
    of every queue holding any — on a cluster one per shard, each under its own lock — until
    ``limit`` records or past it by one round, and at least one; return how many records were
    taken. The Redis commands of a step go out as one pipeline (per master on a cluster): a
    pass costs a few round trips and one INSERT however many shards hold records. Flushing the
    24 shard queues one by one, each with its own statement and commit, cost the services' core
    more than the cluster's six servers did (bench/RESULTS.md, issue 20)."""
    pairs = queues(client, namespace)
    if len(pairs) > 1:  # a cluster: only the queues holding records
        pipe = client.pipeline(transaction=False)
        for queue, _ in pairs:
            pipe.llen(queue)
        pairs = [pair for pair, n in zip(pairs, pipe.execute(), strict=True) if n]
    if not pairs:
        return 0
    token = os.urandom(8).hex()
    pipe = client.pipeline(transaction=False)
    for _, lock in pairs:
        pipe.set(lock, token, nx=True, px=FLUSH_LOCK_MS)
    # a lock refused with an error (its master failing over) is not held; the others are
    # taken, used and released as usual
    locking = pipe.execute(raise_on_error=False)
    held = [pair for pair, locked in zip(pairs, locking, strict=True) if locked is True]
    renewed = time.monotonic()

    def keep() -> None:  # before each write of a pass: the locks for a while more
        nonlocal renewed
        if time.monotonic() - renewed >= RENEW_S:
            if not all(_keep(client, held, token, FLUSH_LOCK_MS)):
                raise LockLost("a flush lock expired during the pass")
            renewed = time.monotonic()

    def store(part: Sequence[bytes]) -> None:
        keep()
        _store(conn, part)

    def dead(one: bytes, exc: BaseException) -> None:
        keep()
        _dead(conn, one, exc)

    try:
        raw, taken = _take(client, [queue for queue, _ in held], limit)
        if raw:
            bisect(raw, store, dead)
        done = _scripts(
            client, _TRIM, [([queue, lock], [token, taken[queue]]) for queue, lock in held]
        )
        held = []  # trimmed and released
        if not all(done):
            raise LockLost("a flush lock expired before the trim")
        return len(raw)
    finally:
        if held:  # the pass failed: its locks go (the queues untrimmed)
            _keep(client, held, token, 0)


def _keep(client: AnySyncRedis, held: list[tuple[str, str]], token: str, ms: int) -> list[Any]:
    """Renew (``ms``) or release (0) the locks still holding ``token``; one reply each."""
    return _scripts(client, _KEEP, [([lock], [token, ms]) for _, lock in held])


def _scripts(
    client: AnySyncRedis, script: str, calls: list[tuple[list[str], list[Any]]]
) -> list[Any]:
    """``script`` once per call, in one pipeline (per master on a cluster): EVALSHA, which a
    cluster's pipeline takes (it takes no EVAL); a server without the script (restarted) gets
    it loaded and the pipeline is sent again: a round trip per master, not one per queue."""
    sha = hashlib.sha1(script.encode()).hexdigest()
    for attempt in (1, 2):
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(sha, len(keys), *keys, *args)
        replies = pipe.execute(raise_on_error=False)
        if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
            client.script_load(script)  # on every master of a cluster
            continue
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies  # type: ignore[no-any-return]
    raise AssertionError("unreachable")


def _take(
    client: AnySyncRedis, queues: list[str], limit: int
) -> tuple[list[bytes], dict[str, int]]:
    """The records of the oldest elements of ``queues``, up to ``limit`` (past it by one round),
    and how many elements were read from each (counted from the tail, the oldest: pushes at the
    head move none). Read a window of ``WINDOW`` elements of every queue at a time."""
    raw: list[bytes] = []
    taken = dict.fromkeys(queues, 0)
    reading = queues
    while reading and len(raw) < limit:
        pipe = client.pipeline(transaction=False)
        for queue in reading:
            pipe.lrange(queue, -taken[queue] - WINDOW, -taken[queue] - 1)
        more = []
        for queue, window in zip(reading, pipe.execute(), strict=True):
            for element in reversed(window):  # the oldest first
                if len(raw) >= limit:
                    break
                raw.extend(element.split(b"\n"))
                taken[queue] += 1
            if len(window) == WINDOW:
                more.append(queue)
        reading = more
    return raw, taken


# A claim's member is read FOR SHARE (an erasure under way holds it): a wait bounded well
# inside the queue's lock (FLUSH_LOCK_MS), past which the pass fails as an outage does and is
# tried again, the queue untrimmed (review: a row held for minutes outlived the lock, and a
# second flusher trimmed records never stored)
_LOCK_WAIT = "SET LOCAL lock_timeout = '5s'"


def _store(conn: psycopg.Connection[Any], raw: Sequence[bytes]) -> None:
    """Insert records (and raise their alerts) in one transaction."""
    items = (b"[" + b",".join(raw) + b"]").decode()
    with conn.transaction():
        conn.execute(_LOCK_WAIT)
        stored = conn.execute(_INSERT, (items, _ALERTING, list(COUNTED_ONLY))).fetchall()
        if next(row[9] for row in stored if row[9] is not None) < len(raw):  # some were stored
            conn.execute(_COUNTED_BY_REDIS, (items,))
        late = sorted(f"{row[2]}:{row[8]}" for row in stored if row[8] is not None)
        if late:
            drop_dashboard_days(conn, late)
        raise_alerts(
            conn,
            [(*row[:8], row[10], row[11]) for row in stored if row[8] is None and row[9] is None],
        )


def drop_dashboard_days(conn: psycopg.Connection[Any], days: list[str]) -> None:
    """Records of a closed day stored only now (a worker back after an outage, a backlog past
    midnight): the dashboard's rows of those days (``app.analytics.dashboard``, final an hour
    after the day) go, to be counted again, under the days' locks (a probe: they were never
    counted). ``days``: "brand:YYYY-MM-DD" keys."""
    conn.execute(*xact_each(Lock.DASHBOARD_DAY, days))
    conn.execute(
        "DELETE FROM dashboard_days WHERE brand_id::text || ':' || day::text = ANY(%s)", (days,)
    )


# Set aside once: a pass whose trim Redis lost (after PostgreSQL committed) is read again, and
# its bad records were buried again (probe); the good ones are no-ops by their unique key.
_BURY_ONCE = f"""
INSERT INTO dead_letters (queue, payload, reason)
SELECT '{VERIFICATIONS}', %(payload)s, %(reason)s
 WHERE NOT EXISTS (SELECT 1 FROM dead_letters
                    WHERE queue = '{VERIFICATIONS}' AND md5(payload) = md5(%(payload)s)
                      AND payload = %(payload)s)
"""


def _dead(conn: psycopg.Connection[Any], record: bytes, exc: BaseException) -> None:
    """Set a record PostgreSQL refused aside, once; an erased member's without what it says of
    the phone and the member, as ``_INSERT`` stores it (review: the erasure, done, never saw
    it)."""
    with conn.transaction():
        fields = decoded(record)
        member = member_of(fields) if fields is not None else None
        if fields is not None and member is not None:
            conn.execute(_LOCK_WAIT)
            erased = conn.execute(  # FOR SHARE: waits for an erasure under way, as _INSERT does
                "SELECT status = 'erased' AS erased FROM members WHERE id = %s FOR SHARE",
                (member,),
            ).fetchone()
            if erased is not None and erased[0]:
                record = anonymous(fields)
        conn.execute(_BURY_ONCE, {"payload": record, "reason": reason_of(exc)})


def raise_alerts(conn: psycopg.Connection[Any], stored: list[Any]) -> None:
    """Alerts for suspicious and not-genuine verifications, one open alert per code and kind
    (``alert_of``'s arguments)."""
    for row in stored:
        params = alert_of(*row)
        if params is not None:
            conn.execute(ALERT, params)


def alert_of(
    code: int | None,
    serial: str | None,
    brand: int | None,
    _result: str,
    reason: str,
    queries: int,
    province: str | None,
    city: str | None,
    gtin: str | None = None,
    pin_given: bool = True,
) -> dict[str, Any] | None:
    """The ``ALERT`` parameters a stored verification raises, or None (no rule, no brand). One
    open alert per code and kind; a code naming no unit (forged, of no batch) has one per brand,
    kind and reason, its details naming the latest serial: made-up serials, each scanned once,
    would open an alert apiece (and one key for every brand's, ``fake:None``, bumped another
    brand's alert). A ``wrong_product`` scan alerts the serial's brand (its code) and, when the
    Digital Link's GTIN (``gtin``) is another brand's, that brand as a code-less alert naming
    the GTIN (``_INSERT`` finds it). A record without a PIN (``pin_given`` false) raises no
    ``COUNTED_ONLY`` rule: it counted no query."""
    from psycopg.types.json import Jsonb

    rule = RULES.get(reason)
    if rule is None or brand is None or (reason in COUNTED_ONLY and not pin_given):
        return None
    kind, severity = rule
    details: dict[str, Any] = {
        "reason": reason,
        "queries": queries,
        "province": province,
        "city": city,
    }
    if code is None:
        details["serial"] = serial
    if gtin is not None:
        details["gtin"] = gtin
    return {
        "brand": brand,
        "kind": kind,
        "severity": severity,
        "code": code,
        "serial": serial,
        "message": f"{kind}: code {serial or code} ({reason})"
        if code is not None
        else f"{kind}: {reason} codes scanned (the first: {serial})",
        "details": Jsonb(details),
        "dedup": f"{kind}:{code}" if code is not None else f"{kind}:{reason}:brand:{brand}",
    }


def pending(client: AnySyncRedis, namespace: str) -> int:
    """The queued elements (rounds of records) waiting, in all queues on a cluster: 0 when
    every queued record is stored."""
    return sum(int(client.llen(queue)) for queue, _ in queues(client, namespace))
