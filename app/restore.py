"""After a PostgreSQL restore to an earlier point: the sequences that name things outside the
database moved past whatever may have been issued after that point (probe O).

A serial and its PIN are made from the batch number and the index alone, a case's SSCC from its
serial reference, a document's number from its sequence. A restore takes these sequences back
with the rest: the next batch after it got the number of a batch issued after the restore
point — the same serials and PINs, maybe printed on goods already. Nothing in the restored
database tells how far the lost work went, so each sequence moves on by a margin the operator
may set (the defaults cover far more than a day's issuance of a large brand), and never by more
than half of the room its range has left (review R3: SSCC serial references end where the
company prefix leaves no digit, at 9,999,999 for a 9-digit prefix). SSCC serial references are
counted per company prefix in a table (``sscc_refs``), each prefix's moved on in its own room
(``advance_ssccs``). Safe to run twice, and while the service already serves: a sequence is
read and set under its own lock (``advance``), a count under its row's, so each only ever moves
forward, and a gap in numbers is harmless.

Ids held outside the database are moved on the same way where holding one gives something:
a member token's only claim is its member's id (``app.members.principal``), valid for 30 days,
and a store's printed nameplate is signed over the store's id (``app.field.nameplates``): the
lost member's token, or the lost store's nameplate, would name whoever was given the id again.
So are the ids the API hands out and webhook messages carry (``IDS``, one margin, ``--ids``): an
ERP keeps the order id ``POST /orders`` answered and later reads, cancels or closes that order
by it; a webhook receiver keeps the ``document_id``, ``order_id``, ``claim_id``,
``statement_id``, ``redemption_id``, ``alert_id`` and ``delivery_id`` it was sent; the console
keeps a fraud hold's, a complaint's, a promotion's, a draw campaign's, prize's or result's id
in its pages and links, the staff app a check-in's for the review it sends later, the brand's
auditor an anchor's. (Printers are organisations: their ids move with ``orgs``.) Without the
move the next order would get the lost order's id, and the ERP's order would name it (a probe).
Staff tokens need nothing: an access token lives only as long as its session's refresh token
row (``sid``, a random id), which the restore took back with the user; API keys are a random
prefix and secret; allocations, exports and webhook messages (``webhook_id``) are named by
random UUIDs. (Sign-outs made after the restore point are undone, though: the README's restore
section says what to do.)

Serial allocation (``app.codes.allocations``) gives a batch's indexes out in order from
``code_batches.allocated``, which the restore took back too: the next allocation would hand out
again the serials and PINs streamed to a line or a partner after the restore point. Every batch
that may still be allocated (not void, never printed from a printer-file export) has it moved on
by a margin (the default covers more than a day of a busy line system), never past the batch's
size. A batch that had given nothing out is moved too (its first allocation may be the lost
one): it is then refused for printer-file exports (409 ``batch_allocated``), as an allocated
batch is — issue a new batch for printing. Printer-file exports have no cursor of their own
(each names its own range), but their files outlive the restore: the export files still on disk
whose export the restore took back (``lost_exports``) are listed with their batch and range,
codes printed already that must not be exported again, and found first, because a lost export
also took its batch out of allocation — which the restore undid: that batch's cursor moves past
the end of every lost range as well (a probe: the fixed margin stopped inside a range printed
after the point, and the next allocation streamed its printed serials again).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

# what each sequence names outside the database, and the default margin
SEQUENCES = {
    "batches": ("code_batch_no_seq", 100_000),  # serials and PINs (a batch: up to 2^32 codes)
    "documents": ("document_no_seq", 1_000_000),  # document numbers on paper (7 digits)
    "members": ("members_id_seq", 10_000_000),  # a member token's subject (valid 30 days)
    "orgs": ("orgs_id_seq", 100_000),  # a store's id, signed on its printed nameplate
}
# The tables whose ids leave the system: a route takes them back (``/orders/{id}``, …) or a
# webhook message carries them (``app/migrations``' ``webhook_*`` builders). Each table's id
# sequence moves on by one margin (``--ids``): more than a day of claims and webhook deliveries
# of a large brand, a small part of a bigint.
IDS = (
    "orders",  # an ERP's order: /orders/{id}; webhooks' order_id
    "documents",  # /documents/{id}; webhooks' document_id, shipment_id
    "case_batches",  # /case-batches/{id}; a printer file's case_batch_id
    "products",  # /products/{id}; webhooks' product_id
    "categories",  # /categories/{id}
    "gifts",  # /gifts/{id}; webhooks' gift_id
    "redemptions",  # webhooks' redemption_id
    "point_claims",  # webhooks' claim_id (points.claimed)
    "point_rules",  # /points/rules/{id}
    "rebate_claims",  # webhooks' claim_id (rebate.claimed)
    "rebate_rules",  # /rebates/rules/{id}
    "rebate_statements",  # /rebates/statements/{id}; webhooks' statement_id
    "alerts",  # /alerts/{id}; webhooks' alert_id
    "users",  # /users/{id}; webhooks' clerk_id
    "roles",  # /roles/{id}
    "api_keys",  # /api-keys/{id}/revoke
    "code_pools",  # /pools/{id}
    "visit_plans",  # /field/plans/{id}
    "inspections",  # /inspections/{id}
    "inspection_scans",  # /inspections/scans/{id}
    "sms_templates",  # /sms/templates/{id}
    "sms_campaigns",  # /sms/campaigns/{id}
    "webhook_subscriptions",  # /webhooks/subscriptions/{id}
    "webhook_deliveries",  # every webhook message's delivery_id; /webhooks/deliveries/{id}
    "fraud_holds",  # /forensics/holds/{id} (release, confirm)
    "complaints",  # /complaints/{id} (take, reply, close)
    "promotions",  # /promotions/{id}
    "draw_campaigns",  # /draws/{id}
    "draw_prizes",  # /draws/{campaign}/prizes/{id}
    "draws",  # /draws/{campaign}/results/{id}/fulfil
    "field_checkins",  # a check-in's id, sent back as a review's checkin_id (the staff app)
    "event_chain_anchors",  # an anchor's id, kept by the brand's auditor (GET /chain/anchors)
)
IDS_MARGIN = 10_000_000
# the default margin of every company prefix's SSCC serial references (``advance_ssccs``)
SSCCS = 1_000_000
# the default margin of every batch's allocation cursor: more than a day of ten lines taking
# 600 codes a minute each
ALLOCATIONS = 10_000_000


class Moved(msgspec.Struct, frozen=True):
    name: str  # a key of SEQUENCES, "<table>.id" of IDS, or "ssccs <company prefix>"
    before: int
    after: int
    capped: bool  # the margin was more than half of the room left


def _targets(conn: Any, margins: dict[str, int]) -> list[tuple[str, str, int]]:
    """(name, sequence, margin) of every sequence to move: ``SEQUENCES``, then the id sequence
    of each table of ``IDS`` (an identity or a serial column alike)."""
    targets = [
        (name, seq, margins.get(name, default)) for name, (seq, default) in SEQUENCES.items()
    ]
    rows = conn.execute(
        "SELECT t, pg_get_serial_sequence(t, 'id') FROM unnest(%s::text[]) WITH ORDINALITY AS"
        " x(t, n) ORDER BY n",
        (list(IDS),),
    ).fetchall()
    for table, sequence in rows:
        if sequence is None:
            raise ValueError(f"{table}.id has no sequence (app.restore.IDS)")
        targets.append((f"{table}.id", sequence, margins.get("ids", IDS_MARGIN)))
    return targets


def advance(conn: Any, margins: dict[str, int]) -> list[Moved]:
    """Move each sequence on by its margin (``margins`` by the keys of ``SEQUENCES``, and
    ``"ids"`` for every table of ``IDS``; a missing key: its default), within the sequence's
    maximum; ``conn``: a synchronous psycopg connection in autocommit mode (each sequence moved
    in a short transaction of its own).

    What is atomic for a sequence in PostgreSQL: ``nextval`` and ``setval`` each are, alone —
    neither is transactional, and there is no compare-and-set. Reading ``last_value`` and then
    calling ``setval`` (even in one statement) leaves a gap between the two in which another
    session's ``nextval`` may move the sequence past what was read, and the ``setval`` then
    moves it back behind numbers already handed out (a probe: two pallets with one SSCC, when
    their serial references were a sequence taken a block at a time). A sequence cannot be
    ``LOCK``ed nor its row locked, but ``nextval`` and ``setval`` take a RowExclusiveLock on it,
    held to the end of their transaction, and ``ALTER SEQUENCE`` (all but ``RESTART`` alone) a
    ShareRowExclusiveLock, which conflicts with it ("ALTER SEQUENCE blocks concurrent nextval,
    currval, lastval, and setval calls"). So each sequence is first altered without a change
    (``START WITH`` its own start): that waits for every transaction that took from the sequence
    to end, and holds off any other until this one commits; the read and the ``setval`` under it
    are then one atomic step, and the value set, the one read plus a margin
    of 0 or more, is never behind the sequence's current value. (``ALTER SEQUENCE`` wants the
    sequence's owner: the role that migrates. A long transaction that took from a sequence, a
    large import, holds the command up, and new takers wait behind it, for that long.)"""
    moved = []
    for name, sequence, requested in _targets(conn, margins):
        with conn.transaction():
            start = conn.execute(
                "SELECT seqstart FROM pg_sequence WHERE seqrelid = %s::regclass", (sequence,)
            ).fetchone()[0]
            conn.execute(f"ALTER SEQUENCE {sequence} START WITH {int(start)}")  # the lock
            last, called, maximum = conn.execute(
                f"SELECT s.last_value, s.is_called, q.seqmax FROM {sequence} s, pg_sequence q "
                "WHERE q.seqrelid = %s::regclass",
                (sequence,),
            ).fetchone()
            before = last if called else last - 1  # the last number handed out
            room = max(0, maximum - before)
            margin = min(requested, room // 2)
            if margin > 0:
                conn.execute("SELECT setval(%s::regclass, %s, true)", (sequence, before + margin))
        moved.append(Moved(name, before, before + margin, margin < requested))
    return moved


def advance_ssccs(conn: Any, margin: int, prefixes: Sequence[str]) -> list[Moved]:
    """Move each company prefix's SSCC serial references (``sscc_refs``) on by ``margin``, never
    by more than half of the room its prefix leaves (``cases.sscc_capacity``): every prefix
    counted, and ``prefixes`` (the brands' own and the platform's) too, whose first case batch
    may be the lost work (counted from 0). A count's row is read ``FOR UPDATE``: a case batch
    taking a block of it (``cases._allocate_refs``) holds the row to its end, so the read waits
    for it, and the next waits for the move; the count only ever moves forward."""
    from app.codes.cases import sscc_capacity

    conn.execute(
        "INSERT INTO sscc_refs (company_prefix, last_ref) SELECT p, 0 FROM unnest(%s::text[]) p"
        " ON CONFLICT (company_prefix) DO NOTHING",
        (sorted(set(prefixes)),),
    )
    moved = []
    for (prefix,) in conn.execute(
        "SELECT company_prefix FROM sscc_refs ORDER BY company_prefix"
    ).fetchall():
        with conn.transaction():
            before = conn.execute(
                "SELECT last_ref FROM sscc_refs WHERE company_prefix = %s FOR UPDATE", (prefix,)
            ).fetchone()[0]
            step = min(margin, max(0, sscc_capacity(prefix) - before) // 2)
            if step > 0:
                conn.execute(
                    "UPDATE sscc_refs SET last_ref = %s WHERE company_prefix = %s",
                    (before + step, prefix),
                )
        moved.append(Moved(f"ssccs {prefix}", before, before + step, step < margin))
    return moved


def _int(value: Any) -> int | None:
    """A whole number from a file's header, or None (a damaged or foreign header)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
                str(export_id),
                _int(header.get("batch_no")),
                _int(header.get("case_batch_id")),
                _int(start),
                _int(end),
            )
        )
    return lost


class Allocated(msgspec.Struct, frozen=True):
    batch_no: int
    before: int  # the next index to give out, as restored
    after: int
    size: int
    lost_end: int | None  # the end of the last range a lost printer file of the batch holds


# Every batch allocation may still take from (``allocations._left``: not void, never exported),
# its cursor moved on by the margin and at least past the end of every range a lost printer file
# of the batch holds, at most to its size; each row locked by the update, as an allocation does.
# (A batch with an export the restore kept is left alone: allocation refuses it anyway.)
_MOVE_ALLOCATED = """
UPDATE code_batches b
   SET allocated = LEAST(b.size, GREATEST(b.allocated + %(margin)s, coalesce(l.lost_end, 0)))
  FROM code_batches o
  LEFT JOIN (SELECT x.batch_no, max(x.lost_end) AS lost_end
               FROM unnest(%(batches)s::bigint[], %(ends)s::bigint[]) AS x(batch_no, lost_end)
              GROUP BY x.batch_no) l ON l.batch_no = o.batch_no
 WHERE o.batch_no = b.batch_no AND b.state <> 'void' AND b.allocated < b.size
   AND (%(margin)s > 0 OR l.lost_end > b.allocated)
   AND NOT EXISTS (SELECT 1 FROM code_exports e WHERE e.batch_no = b.batch_no)
RETURNING b.batch_no, o.allocated, b.allocated, b.size, l.lost_end
"""


def advance_allocations(conn: Any, margin: int, lost: Sequence[LostExport] = ()) -> list[Allocated]:
    """Move every batch's allocation cursor on by ``margin``, and a batch with a lost printer
    file (``lost``: ``lost_exports``) at least to the end of its last lost range — never back,
    at most to the batch's size (then the whole batch is taken) — in one transaction of
    ``conn``; the batches moved, by number."""
    printed = [x for x in lost if x.batch_no is not None and x.end is not None]
    params = {
        "margin": margin,
        "batches": [x.batch_no for x in printed],
        "ends": [x.end for x in printed],
    }
    with conn.transaction():
        rows = conn.execute(_MOVE_ALLOCATED, params).fetchall()
    return sorted((Allocated(*row) for row in rows), key=lambda a: a.batch_no)
