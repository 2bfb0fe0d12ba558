"""After a PostgreSQL restore to an earlier point: the sequences that name things outside the
database moved past whatever may have been issued after that point (probe O).

A serial and its PIN are made from the batch number and the index alone, a case's SSCC from its
serial reference, a document's number from its sequence. A restore takes these sequences back
with the rest: the next batch after it got the number of a batch issued after the restore
point — the same serials and PINs, maybe printed on goods already. Nothing in the restored
database tells how far the lost work went, so each sequence moves on by a margin the operator
may set (the defaults cover far more than a day's issuance of a large brand), and never by more
than half of the room its range has left (review R3: SSCC serial references end where the
company prefix leaves no digit, at 9,999,999 for a 9-digit prefix). Safe to run twice: it only
moves forward, and a gap in numbers is harmless.

Ids held outside the database are moved on the same way where holding one gives something:
a member token's only claim is its member's id (``app.members.principal``), valid for 30 days,
and a store's printed nameplate is signed over the store's id (``app.field.nameplates``): the
lost member's token, or the lost store's nameplate, would name whoever was given the id again.
Staff tokens need nothing: an access token lives only as long as its session's refresh token
row (``sid``, a random id), which the restore took back with the user; API keys are a random
prefix and secret; allocations, exports and webhook messages are named by random UUIDs.

Serial allocation (``app.codes.allocations``) gives a batch's indexes out in order from
``code_batches.allocated``, which the restore took back too: the next allocation would hand out
again the serials and PINs streamed to a line or a partner after the restore point. Every batch
that may still be allocated (not void, never printed from a printer-file export) has it moved on
by a margin (the default covers more than a day of a busy line system), never past the batch's
size. A batch that had given nothing out is moved too (its first allocation may be the lost
one): it is then refused for printer-file exports (409 ``batch_allocated``), as an allocated
batch is — issue a new batch for printing. Printer-file exports have no such cursor (each names
its own range), so nothing is moved for them: the export files still on disk whose export the
restore took back (``lost_exports``) are listed with their batch and range, codes printed
already that must not be exported again.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import msgspec

# what each sequence names outside the database, and the default margin
SEQUENCES = {
    "batches": ("code_batch_no_seq", 100_000),  # serials and PINs (a batch: up to 2^32 codes)
    "ssccs": ("sscc_serial_ref_seq", 1_000_000),  # case labels
    "documents": ("document_no_seq", 1_000_000),  # document numbers on paper (7 digits)
    "members": ("members_id_seq", 10_000_000),  # a member token's subject (valid 30 days)
    "orgs": ("orgs_id_seq", 100_000),  # a store's id, signed on its printed nameplate
}
# the default margin of every batch's allocation cursor: more than a day of ten lines taking
# 600 codes a minute each
ALLOCATIONS = 10_000_000


class Moved(msgspec.Struct, frozen=True):
    name: str
    before: int
    after: int
    capped: bool  # the margin was more than half of the room left


def advance(conn: Any, margins: dict[str, int], limits: dict[str, int]) -> list[Moved]:
    """Move each sequence on by its margin (``margins`` by the keys of ``SEQUENCES``; a missing
    key: its default), within its limit (``limits``; a missing key: the sequence's maximum), in
    one transaction of ``conn`` (a synchronous psycopg connection)."""
    moved = []
    with conn.transaction():
        for name, (sequence, default) in SEQUENCES.items():
            last, called, maximum = conn.execute(
                f"SELECT s.last_value, s.is_called, q.seqmax FROM {sequence} s, pg_sequence q "
                "WHERE q.seqrelid = %s::regclass",
                (sequence,),
            ).fetchone()
            before = last if called else last - 1  # the last number handed out
            room = max(0, min(maximum, limits.get(name, maximum)) - before)
            margin = min(margins.get(name, default), room // 2)
            if margin > 0:
                conn.execute("SELECT setval(%s::regclass, %s, true)", (sequence, before + margin))
            moved.append(Moved(name, before, before + margin, margin < margins.get(name, default)))
    return moved


class Allocated(msgspec.Struct, frozen=True):
    batch_no: int
    before: int  # the next index to give out, as restored
    after: int
    size: int


# Every batch allocation may still take from (``allocations._left``: not void, never exported),
# its cursor moved on, at most to its size; each row locked by the update, as an allocation does.
_MOVE_ALLOCATED = """
UPDATE code_batches b SET allocated = LEAST(b.size, b.allocated + %(margin)s)
  FROM code_batches o
 WHERE o.batch_no = b.batch_no AND %(margin)s > 0 AND b.state <> 'void'
   AND b.allocated < b.size
   AND NOT EXISTS (SELECT 1 FROM code_exports e WHERE e.batch_no = b.batch_no)
RETURNING b.batch_no, o.allocated, b.allocated, b.size
"""


def advance_allocations(conn: Any, margin: int) -> list[Allocated]:
    """Move every batch's allocation cursor on by ``margin`` (at most to its size), in one
    transaction of ``conn``; the batches moved, by number."""
    with conn.transaction():
        rows = conn.execute(_MOVE_ALLOCATED, {"margin": margin}).fetchall()
    return sorted((Allocated(*row) for row in rows), key=lambda a: a.batch_no)


class LostExport(msgspec.Struct, frozen=True):
    export_id: str
    batch_no: int | None  # a unit batch's, or
    case_batch_id: int | None  # a case batch's
    start: int | None  # the range [start, end) of codes in the file; None: unreadable header
    end: int | None


def lost_exports(conn: Any, directory: Path) -> list[LostExport]:
    """The printer-file exports whose files are in ``directory`` (``Settings.export_path``) but
    whose row the restore took back: batch and range from the files' plain headers."""
    from app.codes.printfile import PrintFileError, read_header

    found: dict[uuid.UUID, Path] = {}
    if directory.is_dir():
        for entry in directory.iterdir():
            try:
                found[uuid.UUID(entry.name)] = entry
            except ValueError:
                continue
    if not found:
        return []
    rows = conn.execute("SELECT id FROM code_exports WHERE id = ANY(%s)", (list(found),))
    known = {row[0] for row in rows}
    lost = []
    for export_id in sorted(set(found) - known, key=str):
        header: dict[str, Any] = {}
        for file in sorted(found[export_id].glob("*.tcpf*")):
            try:
                with file.open("rb") as handle:
                    header = read_header(handle)[0]
                break
            except (OSError, PrintFileError):
                continue
        span = header.get("range")
        start, end = span if isinstance(span, list) and len(span) == 2 else (None, None)
        lost.append(
            LostExport(
                str(export_id), header.get("batch_no"), header.get("case_batch_id"), start, end
            )
        )
    return lost
