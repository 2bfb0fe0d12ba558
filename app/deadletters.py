"""Dead letters: records a queue consumer could not write or process (issue 13).

Every write-behind queue and outbox (verification records, stock deltas, inspection deltas) and
every dramatiq job sets a record it cannot handle aside in the ``dead_letters`` table — queue
name, the payload as it was queued (bytea: it holds anything), the reason and the time — and goes
on with the others. A batch that fails for a reason of its data is split in halves until the bad
records are alone (``bisect``), so one bad record costs a few extra statements, never the batch.
The reason is the error's first line (``reason_of``): PostgreSQL's DETAIL and CONTEXT lines
quote the record (a client's address, a phone), which ``app.retention`` clears from the payload
only (a probe found the address in a letter's reason, past its retention).

Which failures are the record's fault (``is_poison``): PostgreSQL data and integrity errors (a
NUL in text, a value out of range, a broken constraint) and the Python errors of decoding a
record; and an upsert that meets one key twice (CardinalityViolation, a ProgrammingError by its
SQLSTATE class but made by the batch's rows: a probe, two ledger rows of one member under two
brands stopped the people roll-up for ever) — bisecting parts the rows, so none is lost for it.
Connection losses, lock and serialization conflicts (OperationalError), and other errors of
the statement itself (ProgrammingError: a bug of ours, not of the record) are NOT: the batch is
retried as it is, so an outage or a bad deployment never moves good records aside.

/health and /metrics read the counts from the table, so they are right whichever process
dead-lettered the record. An operator reads ``SELECT queue, reason, at, payload FROM
dead_letters``, fixes the cause, replays what can be replayed, and deletes the rows.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg

from app.textguard import has_control

T = TypeVar("T")

# The queues this code dead-letters into (jobs add "job:<actor name>").
VERIFICATIONS = "verifications"
STOCK_DELTAS = "stock_deltas"
INSPECTION_DELTAS = "inspection_deltas"
SMS_OUTBOX = "sms_outbox"  # SMS rows failed for good (app/sms/sender.py)
REBATE_TALLY = "rebate_tally_queue"  # claims the rebate ranking roll-up could not fold
SALES_QUEUE = "sales_queue"  # sales the analytics roll-up could not fold (issue 17)
WEBHOOK_DELIVERIES = "webhook_deliveries"  # webhook deliveries dead for good (app/webhooks)
FRAUD_SETTLE = "fraud_settle"  # decided holds whose claims the settling sweep could not credit
WECHAT_MESSAGES = "wechat_messages"  # WeChat template messages out of attempts (app/wechat)
UNDECODABLE_JOBS = "job:undecodable"  # job messages the broker's consumer could not handle
QUEUES = (
    VERIFICATIONS,
    STOCK_DELTAS,
    INSPECTION_DELTAS,
    SMS_OUTBOX,
    REBATE_TALLY,
    SALES_QUEUE,
    WEBHOOK_DELIVERIES,
    FRAUD_SETTLE,
    WECHAT_MESSAGES,
)

POISON: tuple[type[BaseException], ...] = (
    psycopg.errors.DataError,
    psycopg.errors.IntegrityError,
    # a record past one of PostgreSQL's limits (class 54: JSON nested past its stack depth,
    # an index row too large): OperationalErrors, but the record's fault, not an outage
    psycopg.errors.ProgramLimitExceeded,
    psycopg.errors.StatementTooComplex,
    psycopg.errors.TooManyColumns,
    psycopg.errors.TooManyArguments,
    # two rows of the batch for one key of an upsert ("ON CONFLICT DO UPDATE command cannot
    # affect row a second time"): the rows' fault, and apart each folds
    psycopg.errors.CardinalityViolation,
    RecursionError,  # the same, on the decoder's side
    ValueError,  # includes UnicodeDecodeError and msgspec's decode errors
    OverflowError,  # a date or a number past its type's range
    TypeError,
    KeyError,
)

_INSERT = "INSERT INTO dead_letters (queue, payload, reason) VALUES (%s, %s, %s)"
_COUNTS = "SELECT queue, count(*) AS n FROM dead_letters GROUP BY queue"
MAX_REASON = 2000


def is_poison(exc: BaseException) -> bool:
    """True when a failure is the record's fault (dead-letter it), not the system's (retry)."""
    return isinstance(exc, POISON)


# What PostgreSQL's message adds after its first line, each field on a line of its own — or on
# the same line, in a reason stored before ``first_line`` whose breaks were made spaces.
_MORE = re.compile(r"\s(?:DETAIL|HINT|QUERY|CONTEXT|LOCATION|STATEMENT):\s")


def first_line(text: str) -> str:
    """The primary message of an error's text: its first line, without the DETAIL, HINT and
    CONTEXT lines of PostgreSQL's, which quote the row ("Failing row contains (…)", the JSON
    around a bad character: a client's address, a phone)."""
    line = text.splitlines()[0] if text else ""
    return _MORE.split(line, maxsplit=1)[0].rstrip()


def reason_of(exc: BaseException) -> str:
    """A one-line reason that PostgreSQL can store (no NUL or other control character): the
    error's type and the first line of its message (``first_line``: a letter's reason outlives
    the retention of the payload it would quote — a probe found a client's address in one)."""
    text = f"{type(exc).__name__}: {first_line(str(exc).strip())}".strip()
    if has_control(text):
        text = "".join(c if c.isprintable() else " " for c in text)
    return text[:MAX_REASON]


def bury(conn: psycopg.Connection[Any], queue: str, payload: bytes, reason: str) -> None:
    conn.execute(_INSERT, (queue, payload, reason))


async def abury(
    conn: psycopg.AsyncConnection[Any], queue: str, payload: bytes, reason: str
) -> None:
    await conn.execute(_INSERT, (queue, payload, reason))


def bisect(
    items: Sequence[T],
    write: Callable[[Sequence[T]], object],
    dead: Callable[[T, BaseException], object],
) -> None:
    """``write(items)``; when that fails with a poison error, write each half the same way, down
    to single items, and hand those that still fail to ``dead``. ``write`` must be atomic (its
    own transaction). Other errors propagate (retry later)."""
    try:
        write(items)
    except Exception as exc:
        if not is_poison(exc):
            raise
        if len(items) == 1:
            dead(items[0], exc)
            return
        middle = len(items) // 2
        bisect(items[:middle], write, dead)
        bisect(items[middle:], write, dead)


async def abisect(
    items: Sequence[T],
    write: Callable[[Sequence[T]], Awaitable[object]],
    dead: Callable[[T, BaseException], Awaitable[object]],
) -> None:
    """``bisect`` for coroutines."""
    try:
        await write(items)
    except Exception as exc:
        if not is_poison(exc):
            raise
        if len(items) == 1:
            await dead(items[0], exc)
            return
        middle = len(items) // 2
        await abisect(items[:middle], write, dead)
        await abisect(items[middle:], write, dead)


async def counts(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    """Dead letters per queue: every known queue (0 when none) and any other that has some."""
    found: dict[str, int] = dict.fromkeys(QUEUES, 0)
    for row in await (await conn.execute(_COUNTS)).fetchall():
        queue, n = (row["queue"], row["n"]) if isinstance(row, dict) else row
        found[queue] = int(n)
    return found


async def salvage(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    queue: str,
    write: Callable[[list[int]], Awaitable[object]],
    limit: int,
    key: str = "id",
) -> int:
    """After a roll-up batch failed for a reason of its data: take the oldest ``limit`` ids
    (column ``key``) of the outbox ``table``, ``write`` them by halves, and move the rows that
    still fail alone to the dead letters (as JSON, deleted from the outbox in the same
    transaction). Returns how many ids were taken. ``conn`` must not be inside a transaction."""
    rows = await (
        await conn.execute(f"SELECT {key} FROM {table} ORDER BY {key} LIMIT %s", (limit,))
    ).fetchall()
    ids = [_first(row) for row in rows]

    async def dead(row_id: int, exc: BaseException) -> None:
        async with conn.transaction():
            moved = await (
                await conn.execute(
                    f"DELETE FROM {table} t WHERE t.{key} = %s RETURNING row_to_json(t)::text",
                    (row_id,),
                )
            ).fetchone()
            if moved is not None:
                await abury(conn, queue, str(_first(moved)).encode(), reason_of(exc))

    await abisect(ids, lambda part: write(list(part)), dead)
    return len(ids)


async def drain(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    queue: str,
    batch: Callable[[], Awaitable[int]],
    by_ids: Callable[[list[int]], Awaitable[int]],
    limit: int,
    key: str = "id",
) -> int:
    """Fold the outbox ``table`` into its roll-up until it is empty; return how many rows were
    consumed. ``batch()`` folds the oldest ``limit`` rows in one transaction and returns how
    many it took. When it fails for a reason of its data (``is_poison``), those rows are folded
    by halves with ``by_ids`` and the ones that fail alone dead-lettered into ``queue``
    (``salvage``), so they do not stop the others; any other error (the database is down)
    propagates and the batch is retried as it is. ``key`` is the outbox's id column. ``conn``
    must not be inside a transaction."""
    total = 0
    while True:
        try:
            taken = await batch()
        except Exception as exc:
            if not is_poison(exc):
                raise
            taken = await salvage(conn, table, queue, by_ids, limit, key)
        total += taken
        if taken < limit:
            return total


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
