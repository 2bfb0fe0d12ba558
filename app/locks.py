"""Every PostgreSQL advisory lock of Tracecode: one registry of keys, one spelling of each call.

An advisory lock is named by one bigint, or by two ints (a class and a key within it); the two
forms never collide with each other. Each lock below keeps the form it has always used, so a
process of an older release still excludes a newer one:

* one key (``key=None``): the lock's number itself — the migrator and the roll-ups;
* two keys, an int: the lock's number and, say, a brand id (``0`` where there is only one);
* two keys, a text: the lock's number and PostgreSQL's ``hashtext`` of the text.

Transaction locks (``xact_lock``) end with the transaction; session locks (``run_alone``, the
statements of ``acquire``/``try_acquire``/``release``) must be released, and die with the
connection. The statement builders serve sync and async connections alike:
``conn.execute(*locks.acquire(Lock.MIGRATIONS))``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import IntEnum, unique
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")
Conn = psycopg.AsyncConnection[dict[str, Any]]  # app.db.Conn (app.db takes its locks from here)
Key = int | str | None
Statement = tuple[str, tuple[int | str, ...]]


@unique
class Lock(IntEnum):
    """The lock numbers (the class of a two-key lock). A new lock takes the next free number."""

    MIGRATIONS = 7_245_001  # session, one key: one migrator at a time
    EXPORT_RUN = 7_245_003  # session, per export id: one runner per export, the next waits 2 s
    CASE_ALLOCATION = 7_245_004  # transaction, per brand: one case-batch allocator
    # transaction, 0: who may take which GS1 company prefix; shared by a product's GTIN check
    # (app.catalog.service: GTINs checked at once do not wait for each other, a prefix given does)
    SSCC_BLOCK = 7_245_005
    EVENT_PARTITIONS = 7_245_006  # transaction, 0: one creator of the next events partition
    ORDER_IMPORT = 7_245_008  # transaction, per brand: one order import at a time, never waited for
    STOCK_ROLLUP = 7_245_009  # session, one key: one stock roller across processes
    INSPECTION_ROLLUP = 7_245_011  # session, one key: one inspection roller across processes
    # transaction, user:<id>:slot or org:key:<id>:slot (app.inspect.service.client_scope), the
    # slot one of 16 by a hash of the client id (client_id_locks: a batch of a thousand scans
    # takes 16 locks at most, not a thousand — seven at once filled the shared lock table)
    INSPECTION_CLIENT_ID = 7_245_012
    SMS_PHONE = 7_245_013  # transaction, per phone (text): one-time-code throttle
    SMS_MARKETING = 7_245_014  # transaction, per brand: marketing queued one writer at a time
    REBATE_ROLLUP = 7_245_015  # session, one key: one rebate ranking roller across processes
    REBATE_STATEMENTS = 7_245_016  # transaction, per brand: one statement generator at a time
    SALES_ROLLUP = 7_245_017  # session, one key: one sales analytics roller across processes
    PEOPLE_ROLLUP = 7_245_018  # session, one key: one people analytics roller (members, points)
    SALE_CLIENT_ID = 7_245_019  # transaction, user:key:client id: one store sale per client id
    EPCIS_CAPTURE = 7_245_021  # transaction, per organisation: one EPCIS capture writer at a time
    ERP_IMPORT = 7_245_022  # transaction, brand:kind (text): one master-data import at a time
    ALLOCATION_CLIENT_ID = 7_245_020  # transaction, caller:client id: one code allocation per id
    ORPHAN_SWEEP = 7_245_023  # session, one key: one sweeper of jobs left without a runner
    # transaction, per brand: role names checked and written one at a time; taken before any
    # user's, organisation's or role's row lock of the transaction (a move, by ERP import or of
    # an organisation, locks the users it moves or unsupervises under it: PATCH /users/{id} of a
    # role or a status and an ERP users import take it first too, or each waits for the other —
    # a deadlock; PATCH and DELETE /roles/{id} take it, then the role's row, then its holders';
    # PUT /field/reps/{id}/supervisor takes it before the rep's row: a supervisor's demotion or
    # deactivation, which clears it from its reps under it, is never between the naming's
    # check and its write)
    ROLE_NAMES = 7_245_024
    # transaction, brand:day (text): a closed dashboard day counted and kept, or dropped by units
    # activated on it late, one at a time (app.analytics.dashboard, app.events.log)
    DASHBOARD_DAY = 7_245_025
    # transaction, one key: low-stock thresholds evaluated one transaction at a time (a threshold
    # set while the roll-up folded evaluated stock the fold had not committed, and the fold a
    # threshold not committed yet: an alert left open above the minimum)
    STOCK_THRESHOLDS = 7_245_026
    # transaction, per code (text): a code's verifications answered from PostgreSQL while Redis is
    # down, one at a time (app.verify.fallback), as the Redis script counts them
    VERIFY_WITHOUT_REDIS = 7_245_027
    # transaction, per product: a rebate rule's "before" read and its write one at a time (two
    # first settings at once both read "no rule" and audited two creations: a probe)
    REBATE_RULES = 7_245_028
    # transaction, per product: a points rule's "before" read and its write one at a time (its
    # audit row keeps the points it had: a probe)
    POINT_RULES = 7_245_029
    # transaction, key:<id>:request key or org:<id>:request key (app.codes.service
    # .request_key_owner): a caller's batch request key issues one batch (per brand before, as
    # 7_245_002: two printers' keys alike collided — a probe)
    BATCH_REQUEST_KEY = 7_245_030
    # transaction, per user (text): a user's photo quota checked and the photo's row written one
    # upload at a time (uploads sent at once all read the same total and all passed: a probe)
    MEDIA_QUOTA = 7_245_031
    RETENTION_SWEEP = 7_245_032  # session, one key: one sweeper of personal information's retention
    # transaction, per brand: a brand's catalogue storage quota checked and the medium's row
    # written one upload at a time (app.media.catalog: two uploads at the quota's edge both read
    # the same total and both passed)
    CATALOG_QUOTA = 7_245_033
    # session, shared, per subscription id (app.webhooks.sender.Fence): a webhook attempt under
    # way; transaction, exclusive: a subscription's change or delete waits for its attempts
    WEBHOOK_ATTEMPTS = 7_245_034
    # transaction, member:client id (text): one complaint filing per client id at a time, so a
    # retry sent at once waits for the first and answers it, never counted against the member's
    # filing limit (app.marketing.complaints.file: each counted before the INSERT's ON CONFLICT
    # made the others replays — a probe)
    COMPLAINT_CLIENT_ID = 7_245_035
    # transaction, 0: a brand's name checked against the other brands' and written one at a
    # time (app.orgs.service: two brands given one name at once both read it free)
    BRAND_NAMES = 7_245_036
    # transaction, per brand: a lucky-draw campaign's products checked and the campaign written
    # (app.draws.service._products), and a product's deletion's look for a campaign naming it
    # (app.catalog.service._check_not_drawn), one at a time: of the two at once, the second
    # sees the first. A deletion takes it after the product's row (FOR UPDATE); a campaign's
    # write takes it after the campaign's row and reads its products with no row lock — FOR KEY
    # SHARE of them, in id order, met an ERP import renumbering them in file order: a deadlock
    DRAW_PRODUCTS = 7_245_037
    # transaction, brand:phone (text): a phone's place on the brand's marketing opt-out list and
    # its member's switch changed one transaction at a time (app.sms.optouts): a TD reply racing
    # the member's switch-on left the list holding the phone and the switch off
    SMS_OPT_OUT = 7_245_038
    # transaction, per brand: the brand's WeChat account read and saved or removed one change at
    # a time (app.wechat.account): FOR UPDATE locks no account yet, and two first saves at once
    # each audited a "create" (a probe)
    WECHAT_ACCOUNT = 7_245_039
    # session, one key each (B5, app.forensics): one leak detector, one ring detector at a time
    FORENSICS_LEAKS = 7_245_111
    FORENSICS_RINGS = 7_245_112


def _call(function: str, lock: Lock, key: Key) -> Statement:
    if key is None:
        return f"SELECT {function}(%s) AS ok", (int(lock),)
    if isinstance(key, str):
        return f"SELECT {function}(%s, hashtext(%s)) AS ok", (int(lock), key)
    return f"SELECT {function}(%s, %s) AS ok", (int(lock), key)


def xact(lock: Lock, key: Key = None) -> Statement:
    """Wait for the lock, held to the end of the transaction."""
    return _call("pg_advisory_xact_lock", lock, key)


def acquire(lock: Lock, key: Key = None) -> Statement:
    """Wait for the session lock."""
    return _call("pg_advisory_lock", lock, key)


def try_acquire(lock: Lock, key: Key = None) -> Statement:
    """Take the session lock if it is free; the row's ``ok`` says whether it was."""
    return _call("pg_try_advisory_lock", lock, key)


def try_acquire_shared(lock: Lock, key: int) -> Statement:
    """Take the session lock (an integer key) in shared mode unless it is held or waited for
    exclusively — a session holding it already would be granted it again, past a waiter, and
    a stream of such takes would keep the waiter waiting; the row's ``ok`` says whether it
    was."""
    return (
        "SELECT NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
        " AND objid = %s AND objsubid = 2 AND NOT granted)"
        " AND pg_try_advisory_lock_shared(%s, %s) AS ok",
        (int(lock), key, int(lock), key),
    )


def release_shared(lock: Lock, key: Key = None) -> Statement:
    """Release a shared session lock taken by ``try_acquire_shared``."""
    return _call("pg_advisory_unlock_shared", lock, key)


def release(lock: Lock, key: Key = None) -> Statement:
    """Release a session lock taken by ``acquire`` or ``try_acquire``."""
    return _call("pg_advisory_unlock", lock, key)


def xact_each(lock: Lock, keys: list[str]) -> tuple[str, tuple[int, list[str]]]:
    """Wait for ``lock`` with each text key (the two-key form of ``xact``), all in one statement
    and in sorted order, so two callers locking overlapping sets cannot deadlock."""
    return (
        "SELECT count(pg_advisory_xact_lock(%s, hashtext(k))) AS ok "
        "FROM (SELECT k FROM unnest(%s::text[]) AS t (k) ORDER BY k) AS keys",
        (int(lock), keys),
    )


def xact_try(lock: Lock, key: Key = None) -> Statement:
    """Take the lock if it is free, held to the end of the transaction; the row's ``ok`` says
    whether it was."""
    return _call("pg_try_advisory_xact_lock", lock, key)


async def xact_lock(conn: Conn, lock: Lock, key: Key = None) -> None:
    """Wait for ``lock`` (with ``key``), held until the current transaction ends."""
    await conn.execute(*xact(lock, key))


async def xact_lock_shared(conn: Conn, lock: Lock, key: Key = None) -> None:
    """Wait for ``lock`` (with ``key``) in shared mode — held by many at once, excluding only
    ``xact_lock``'s — until the current transaction ends."""
    await conn.execute(*_call("pg_advisory_xact_lock_shared", lock, key))


async def run_alone(
    conn: Conn, lock: Lock, work: Callable[[], Awaitable[T]], *, wait: bool = False
) -> T | None:
    """``work()`` under a session advisory lock, so one process at a time runs it; ``None`` when
    another holds the lock and ``wait`` is false. ``conn`` should be in autocommit mode."""
    if wait:
        await conn.execute(*acquire(lock))
    else:
        got = await (await conn.execute(*try_acquire(lock))).fetchone()
        if not got or not got["ok"]:
            return None
    try:
        return await work()
    finally:
        await conn.execute(*release(lock))
