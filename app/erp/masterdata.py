"""ERP master data: organisations, products and staff users imported by the ERP's code (SPEC I1).

An import is a CSV file or a JSON body of rows (``app.erp.rows``: one row type per entity, the
same checks for both formats). It is **per row**, as ERP people expect: the rows that pass are
applied, the rows that fail are reported (row, CSV line, column, stable code, message) and not
applied. ``dry_run`` runs the very same import and rolls it back, so a file can be checked first
and the answer is exactly what the real run would do. Only a file that cannot be read at all
(encoding, header, malformed CSV, size) is refused whole with a 4xx.

Each record is found by its ERP code (``erp_code``: an organisation's since 0001, a product's or
a user's within the brand since 0031); a record without one but with the same product number or
username in the caller's reach is adopted (its ERP code is set). Then a row either

- creates the record (``created``), through the domain's own service — ``create_org``,
  ``create_product``, ``create_user`` — with its rules, permission checks and audit;
- changes what differs (``updated``, with the ``changed`` fields), through ``update_org`` /
  ``move_org`` / ``set_status``, ``update_product``, ``update_user``;
- or finds nothing to change (``unchanged``). Importing the same file twice therefore changes
  nothing the second time and answers so: ``created`` 0, ``updated`` 0, ``unchanged`` N.

A rule a service enforces (``bad_hierarchy``, ``region_mismatch``, ``duplicate_gtin``,
``stronger_account`` …) or a constraint rejects that row and leaves no trace of it. Imports of one
entity for one brand take turns (``Lock.ERP_IMPORT``), so two uploads of overlapping files cannot
both create the same code.

Rows are written in chunks (``each_row``), each chunk in one savepoint, its rows without one of
their own; a chunk in which a row fails is undone and run again in halves, down to the failing
row, which runs alone in its own savepoint (``attempt``) and is rejected. A savepoint per row (as
before) made a file of N rows one transaction of N subtransactions: past 64 PostgreSQL's cache of
a transaction's subtransactions overflows, and every subtransaction's lock on a shared parent row
(a foreign key check) joins a multixact that grows with each one — the time per row grew with the
file (bench/RESULTS.md: 3,000 agents 18 s, 9,000 79 s). Now a file of N good rows takes N/512
savepoints or so, and each rejected row about log2(512) more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec
import psycopg

from app import audit, locks
from app.auth.principal import Principal
from app.csvread import Encoding
from app.db import Conn
from app.erp.rows import Format, Item, Spec, read_items
from app.erp.schemas import MasterDataOut
from app.errors import UNIQUE_CONFLICTS, AppError, unique_conflict
from app.locks import Lock

T = TypeVar("T")
MAX_ERRORS_LISTED = 1000
CHUNK_FIRST = 64  # rows in the first chunk; doubled after a chunk that passes, up to CHUNK_MAX
CHUNK_MAX = 512
_chunked: ContextVar[bool] = ContextVar("erp_import_chunked", default=False)
Apply = Callable[[Conn, Principal, list[Item], bool], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Importer:
    """One entity's import: its rows, the permission it takes, and how rows are applied
    (``apply(conn, actor, items, dry_run)`` sets each good item's result and id)."""

    spec: Spec
    permission: str
    apply: Apply


async def run(
    conn: Conn,
    actor: Principal,
    importer: Importer,
    raw: bytes,
    fmt: Format,
    dry_run: bool,
    encoding: Encoding | None = None,
) -> MasterDataOut:
    """Read, check and apply an import (rolled back on a dry run); the counts and every row's
    result and errors. ``encoding``: the one a CSV body's ``Content-Type`` declares."""
    actor.require(importer.permission)
    spec = importer.spec
    items = read_items(raw, fmt, spec, encoding)
    await locks.xact_lock(conn, Lock.ERP_IMPORT, f"{actor.brand_id}:{spec.entity}")
    async with conn.transaction(force_rollback=dry_run):
        await importer.apply(conn, actor, items, dry_run)
    counts = {"created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
    for item in items:
        counts[item.result if item.ok and item.result else "rejected"] += 1
    errors = [e for item in items for e in item.errors]
    if not dry_run:
        summary = {**counts, "format": fmt, "rows": len(items)}
        await audit.record(conn, actor, "erp.import", spec.entity, None, after=summary)
    return MasterDataOut(
        entity=spec.entity,
        format=fmt,
        dry_run=dry_run,
        rows=len(items),
        **counts,
        errors=errors[:MAX_ERRORS_LISTED],
        errors_total=len(errors),
        results=[item.outcome() for item in items],
    )


class _Replay(Exception):
    """A row of a chunk failed: the chunk's savepoint is undone and its rows run again."""


class Journal(Protocol):
    """What an import keeps across rows beyond the rows themselves (``each_row`` saves it before
    a chunk and puts it back when the chunk is undone)."""

    def save(self) -> Any: ...

    def restore(self, saved: Any) -> None: ...


async def each_row(
    conn: Conn,
    items: Sequence[Item],
    step: Callable[[Item], Awaitable[None]],
    journal: Journal | None = None,
) -> None:
    """``step(item)`` for every item, in order, as if each row's writes ran in a savepoint of
    their own (``attempt``), in chunks of one savepoint: a chunk in which a row fails is undone
    (its rows and ``journal`` as they were before it) and run again from its first row, half as
    long, down to the failing row alone, which ``attempt`` then rejects in its own savepoint."""
    size, start = CHUNK_FIRST, 0
    while start < len(items):
        chunk = items[start : start + size]
        if len(chunk) == 1:
            await step(chunk[0])  # alone: a savepoint of its own (``attempt``)
        elif not await _chunk(conn, chunk, step, journal):
            size = len(chunk) // 2
            continue
        start += len(chunk)
        size = min(size * 2, CHUNK_MAX)


async def _chunk(
    conn: Conn,
    chunk: Sequence[Item],
    step: Callable[[Item], Awaitable[None]],
    journal: Journal | None,
) -> bool:
    """Run ``chunk`` in one savepoint, its rows without their own; ``False``, everything as it
    was before, when one of them failed."""
    saved_rows = [_saved(item) for item in chunk]
    saved = journal.save() if journal is not None else None
    token = _chunked.set(True)
    try:
        async with conn.transaction():
            for item in chunk:
                await step(item)
    except _Replay:
        for item, state in zip(chunk, saved_rows, strict=True):
            _restore(item, state)
        if journal is not None:
            journal.restore(saved)
        return False
    finally:
        _chunked.reset(token)
    return True


def _saved(item: Item) -> tuple[Any, ...]:
    return (item.data, list(item.errors), item.result, item.id, list(item.changed))


def _restore(item: Item, state: tuple[Any, ...]) -> None:
    item.data, item.errors, item.result, item.id, item.changed = state
    item.initial_password = None


async def attempt(conn: Conn, item: Item, work: Callable[[], Awaitable[T]]) -> T | None:
    """``work()``, one row's writes, in a savepoint: a domain rule (``AppError``) or a database
    constraint rejects the row with its code, and its writes are undone. Within a chunk
    (``each_row``) without a savepoint: a failure undoes the chunk, which runs again."""
    if _chunked.get():
        try:
            return await work()
        except (AppError, psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
            raise _Replay from exc
    try:
        async with conn.transaction():
            return await work()
    except AppError as exc:
        details = exc.details
        column = details.get("field") if isinstance(details, dict) else None
        item.fail(column, exc.code, exc.message)
    except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
        if isinstance(exc, psycopg.errors.UniqueViolation) and (
            exc.diag.constraint_name in UNIQUE_CONFLICTS  # another request took it meanwhile
        ):
            item.fail(None, *unique_conflict(exc))
            return None
        diag = exc.diag.constraint_name or exc.diag.message_primary or ""
        item.fail(None, "rejected_by_database", f"a rule of the data model refused it ({diag})")
    return None


def given(data: msgspec.Struct, column: str) -> bool:
    """Whether the row sets ``column`` (a CSV column in the header, a key in the JSON item)."""
    return getattr(data, column) is not msgspec.UNSET


def values_of(data: msgspec.Struct, columns: tuple[str, ...]) -> dict[str, Any]:
    """The columns the row sets, by name (those left out are not in it)."""
    return {column: getattr(data, column) for column in columns if given(data, column)}


def differences(values: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The values that differ from the record's."""
    return {column: v for column, v in values.items() if v != current.get(column)}
