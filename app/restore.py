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
"""

from __future__ import annotations

from typing import Any

import msgspec

# what each sequence names outside the database, and the default margin
SEQUENCES = {
    "batches": ("code_batch_no_seq", 100_000),  # serials and PINs (a batch: up to 2^32 codes)
    "ssccs": ("sscc_serial_ref_seq", 1_000_000),  # case labels
    "documents": ("document_no_seq", 1_000_000),  # document numbers on paper (7 digits)
}


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
