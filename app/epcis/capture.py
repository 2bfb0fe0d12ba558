"""EPCIS 2.0 capture (SPEC I3): a partner posts an EPCISDocument, a worker applies it.

``accept`` checks the document at once (``app.epcis.document``: the standard's JSON schema and
CBV rules, identifiers parsed; a bad document is refused with the standard's exception type and
nothing is kept) and stores it as a capture job. The route applies a document of up to
``TRACECODE_EPCIS_INLINE_EVENTS`` events at once and hands a larger one to
``workers.epcis.capture_job``; either way the answer is 202 with the job to poll
(``/epcis/capture/{id}``), already finished in the first case.

``run`` applies one job in one transaction, all or nothing:

1. every event gets its eventID: the one sent, else the CBV 2.0 event hash; events whose
   eventID the capturing organisation already holds, or that is one of Tracecode's own events
   of the brand, are skipped (a retried document stores nothing twice; no eventID names two
   events), and declaring one of Tracecode's events erroneous is refused;
2. events that name Tracecode's own codes (an SGTIN of one of the brand's products, an SSCC of
   one of its case batches) change code state through the same services as the line API, with
   the same rules and rejections: commissioning (ObjectEvent ADD) and packing (AggregationEvent
   ADD, bizStep packing or none) on the line named by the readPoint ``urn:tracecode:line:{code}``,
   unpacking (AggregationEvent DELETE, bizStep unpacking or none, dated as a line's scan may
   be, written at its eventTime and taking out only what was packed by then: ``edits.unpack``,
   so late events leave the same state in any arrival order); a unit of the brand named by its
   QR URL is the brand's even when void; observations (OBSERVE) change nothing, and are
   refused unless the capturer's subtree holds the goods or has them on their way (the brand's
   own organisation observes any). None of them may state a disposition (or persistent one) of
   a state Tracecode keeps (``OBSERVED_DISPOSITIONS``). Any other event on Tracecode codes is
   refused: its effect would bypass the rules of the API that owns it. An event first sent
   declared erroneous obeys the same rules — applied in a savepoint rolled back (``_dry_run``)
   — and changes nothing. An SGTIN of the brand's GTIN
   names a unit only as its label prints it (``_as_printed``). The document's cases
   are locked in key order first, and an attempt that deadlocks anyway is applied again
   (``APPLY_ATTEMPTS``);
3. the events are written as sent, with the fields the query filters on and their identifiers.

A refused job is ``failed`` with the exception and the event it concerns; a job whose worker
died is taken up again by the broker (the state row is locked while it runs, and a finished job
is never redone).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg.errors
from psycopg.types.json import Jsonb

from app.auth.principal import Principal
from app.auth.service import load_api_key_by_id, load_user
from app.codes.lookup import read_codes
from app.codes.scheme import VERIFY_OK, Scheme
from app.db import Conn
from app.deadletters import POISON, reason_of
from app.epcis.document import (
    DISPOSITION_SPELLINGS,
    CapturedEvent,
    DocumentError,
    declaration_time,
    gc_paused,
    parse_document,
    served_context,
)
from app.epcis.hashing import active_prefixes, event_hash
from app.epcis.identifiers import CANONICAL_ORIGIN, gtin_serial, place_key, sscc
from app.errors import AppError, NotFound
from app.locks import Lock, xact_lock
from app.logistics.movements import lock_cases
from app.packing import edits, lines, scans
from app.packing.schemas import LineContextIn, ScanIn, ScanUploadIn, UnpackIn
from app.paging import Page, fetch_page

log = logging.getLogger("tracecode.epcis")

MAX_BYTES = 64 * 1024 * 1024
# One document parsed at a time per process, off the event loop: a 64 MB document is ~600 MB of
# Python objects while parsed, and parsed on the loop it stalled every other request for seconds
# (probe G: four at once took an API process to 2.5 GB and /ping to 1 s).
_PARSING = asyncio.Semaphore(1)
LINE_PREFIX = "urn:tracecode:line:"
# The ILMD lot of a commissioning event (CBV master data): its key as an IRI, once its prefix
# is expanded by the document's and the event's @context (``cbvmda`` is the standard context's).
MDA = "urn:epcglobal:cbv:mda#"
# the lot's IRI as the EPCIS 2.0 context writes it (cbvmda: urn:epcglobal:cbv:mda:) and as
# EPCIS 1.x documents and Tracecode's own ILMD wrote it (urn:epcglobal:cbv:mda#)
LOT_IRIS = frozenset((MDA + "lotNumber", "urn:epcglobal:cbv:mda:lotNumber"))

# What an OBSERVE event on Tracecode's own codes may say: an observation that changes nothing
# Tracecode keeps (where a unit is, who holds it, whether it is sold or gone). A shipping,
# receiving, selling or decommissioning step, or a disposition such as in_transit or
# retail_sold, is refused as the ADD form is (a probe: stored as a mere observation and served
# back to the brand beside its own events, by anyone of the brand, with no rule checked).
# A disposition is its ``disposition`` and each one its ``persistentDisposition`` sets or unsets
# (EPCIS 2.0 §7.3.3: the same statement, held until unset; a probe: ``set: destroyed`` was
# stored as a mere observation). The events Tracecode applies — commissioning, packing,
# unpacking — leave their codes active and on hand where they are, so they may state only these
# too (a probe: a commissioning sent ``retail_sold`` activated the units and the query served
# them as sold): ``active`` (CBV: a commissioned object just created, usable), ``in_progress``
# (proceeding through its life cycle), ``container_closed`` / ``container_open`` (packed and
# closed, or opened), ``available`` and the words of a quality or count that Tracecode keeps no
# state for. Refused: ``encoded`` (not yet commissioned), and every disposition of a shipment,
# sale, return, recall, reservation or end of life (in_transit, retail_sold, returned, recalled,
# reserved, unavailable, non_sellable_other, inactive, expired, destroyed, disposed, dispensed,
# partially_dispensed, stolen, no_pedigree_match): Tracecode's API changes those states.
OBSERVING_STEPS = frozenset(
    {"inspecting", "cycle_counting", "stock_taking", "sensor_reporting", "sampling", "other"}
)
OBSERVED_DISPOSITIONS = frozenset(
    "active available conformant non_conformant in_progress sellable_accessible "
    "sellable_not_accessible damaged needs_replacement unknown container_closed container_open "
    "completeness_inferred completeness_verified mismatch_class mismatch_instance "
    "mismatch_quantity".split()
)


class CaptureOut(msgspec.Struct, frozen=True, kw_only=True):
    """A capture job. ``state``: pending, running, success or failed; ``errors`` says why a
    failed one was refused (EPCIS exception ``type``, ``title``, ``detail``)."""

    captureID: str
    state: str
    running: bool
    success: bool | None
    events: int
    stored: int | None
    createdAt: datetime
    finishedAt: datetime | None
    errors: dict[str, Any] | None


class Refused(Exception):
    """A document the worker cannot apply (Tracecode's rules refused an event)."""

    def __init__(self, detail: str, index: int, reasons: Any = None) -> None:
        super().__init__(detail)
        self.detail, self.index, self.reasons = detail, index, reasons

    def body(self) -> dict[str, Any]:
        return {
            "type": "epcisException:ValidationException",
            "title": "an event was refused by Tracecode's rules",
            "status": 400,
            "detail": self.detail,
            "pointer": f"/epcisBody/eventList/{self.index}",
            "reasons": self.reasons,
        }


class Denied(Refused):
    """An event the capturer may not apply (a permission it lacks, a 403 of the service the
    event goes through): a SecurityException naming the event, as every refusal does (a probe:
    the job's record named no event, and a long document's sender could not tell which)."""

    def __init__(self, exc: AppError, index: int) -> None:
        super().__init__(exc.message, index, exc.code)
        self.status = exc.status

    def body(self) -> dict[str, Any]:
        return {
            "type": "epcisException:SecurityException",
            "title": self.reasons,
            "status": self.status,
            "detail": self.detail,
            "pointer": f"/epcisBody/eventList/{self.index}",
        }


async def accept(conn: Conn, actor: Principal, raw: bytes) -> CaptureOut:
    """Check the document and store it as a pending job (the caller commits, then runs or
    enqueues it). Raises DocumentError."""
    actor.require("epcis.capture")
    if len(raw) < 1 << 20:  # a usual document: parsed at once (a thread costs more than this)
        events = parse_document(raw)
    else:
        async with _PARSING:
            events = await asyncio.to_thread(parse_document, raw)
    capture_id = uuid.uuid4()
    _remember(capture_id, events)
    await conn.execute(_LZ4)
    row = await (
        await conn.execute(
            f"""INSERT INTO epcis_captures (id, brand_id, org_id, user_id, api_key_id, state,
                                            event_count, body)
                VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s) RETURNING {_COLUMNS}""",
            (
                capture_id,
                actor.brand_id,
                actor.org_id,
                actor.user_id,
                actor.api_key_id,
                len(events),
                raw,
            ),
        )
    ).fetchone()
    assert row is not None
    return _out(row)


_COLUMNS = "id, state, event_count, stored, errors, created_at, finished_at"
# The body is kept until the job has run: compressed with lz4 where the server has it (two to
# three times faster than the default pglz on a document; this transaction only).
_LZ4 = (
    "SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings "
    "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)


def _out(row: dict[str, Any]) -> CaptureOut:
    return CaptureOut(
        captureID=str(row["id"]),
        state=row["state"],
        running=row["state"] in ("pending", "running"),
        success=None if row["state"] in ("pending", "running") else row["state"] == "success",
        events=row["event_count"],
        stored=row["stored"],
        createdAt=row["created_at"],
        finishedAt=row["finished_at"],
        errors=row["errors"],
    )


async def get(conn: Conn, actor: Principal, capture_id: uuid.UUID) -> CaptureOut:
    """A capture job of the caller's subtree (404 otherwise), for its capturers and readers."""
    actor.require_any("epcis.capture", "orgs.read")
    row = await (
        await conn.execute(
            f"SELECT {', '.join('c.' + c for c in _COLUMNS.split(', '))}, o.path "
            "FROM epcis_captures c JOIN orgs o ON o.id = c.org_id WHERE c.id = %s",
            (capture_id,),
        )
    ).fetchone()
    if row is None or not actor.sees(row["path"]):
        raise NotFound("no such capture job", code="capture_not_found")
    return _out(row)


async def list_jobs(conn: Conn, actor: Principal, page: int, per_page: int) -> Page[CaptureOut]:
    """The capture jobs of the caller's subtree, newest first."""
    actor.require_any("epcis.capture", "orgs.read")
    return await fetch_page(
        conn,
        columns=", ".join("c." + c for c in _COLUMNS.split(", ")),
        source="epcis_captures c JOIN orgs o ON o.id = c.org_id",
        where=["c.brand_id = %(brand)s", "o.path LIKE %(path)s"],
        params={"brand": actor.brand_id, "path": actor.org_path + "%"},
        order="c.created_at DESC, c.id",
        page=page,
        per_page=per_page,
        make=_out,
    )


async def last_event_id(conn: Conn, capture_id: str) -> str:
    """The eventID of a single-event capture."""
    row = await (
        await conn.execute(
            "SELECT event_id FROM epcis_events WHERE capture_id = %s ORDER BY id DESC LIMIT 1",
            (uuid.UUID(capture_id),),
        )
    ).fetchone()
    assert row is not None
    return str(row["event_id"])


# -- the worker's side -------------------------------------------------------------------------


MAX_RUNS = 5  # runs of a job that keep failing for a reason not of its document: then failed


RUN_LOCK_GRACE = "2s"  # as an export's (app.codes.exports.RUN_LOCK_GRACE)


async def run(conn: Conn, scheme: Scheme, capture_id: str) -> str:
    """Apply one capture job; return its final state (``running``: another session runs it).
    Safe to run twice (a finished job is left alone) and concurrently (the job row is locked
    while it runs: a second delivery — the brokers deliver at least once, and the orphan sweeper
    sends a job again while it waits in the queue — waits for it ``RUN_LOCK_GRACE``, long enough
    for a killed runner's session to close, then leaves the job to its runner: waiting for the
    whole run parked a worker thread, as an export's copy did, a probe). Each run is counted
    first, in a transaction of its own: a job whose runs keep failing for a reason that is not
    its document's (its worker killed, an implementation error) is failed after ``MAX_RUNS``
    with the standard's ImplementationException — the orphan sweeper sent it again for ever —
    and one that raises an error of its data is failed at once."""
    job_id = uuid.UUID(capture_id)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('lock_timeout', %s, true)", (RUN_LOCK_GRACE,))
            counted = await (
                await conn.execute(
                    "UPDATE epcis_captures SET runs = runs + 1 "
                    "WHERE id = %s AND state IN ('pending', 'running') RETURNING runs",
                    (job_id,),
                )
            ).fetchone()
    except psycopg.errors.LockNotAvailable:
        log.info("capture %s: another session runs it, left to it", capture_id)
        return "running"
    async with conn.transaction():
        job = await (
            await conn.execute(
                "SELECT id, brand_id, org_id, user_id, api_key_id, state, "
                "CASE WHEN %s THEN body END AS body FROM epcis_captures WHERE id = %s FOR UPDATE",
                (job_id not in _parsed, job_id),
            )
        ).fetchone()
        if job is None or job["state"] in ("success", "failed"):
            return job["state"] if job else "missing"
        if counted is not None and counted["runs"] > MAX_RUNS:
            detail = f"the capture failed {MAX_RUNS} times; it is not tried again"
            await _finish(conn, job["id"], "failed", None, _implementation(detail))
            return "failed"
        try:
            stored = await _apply_retrying(conn, scheme, job)
        except Contended as exc:
            await _finish(conn, job["id"], "failed", None, exc.body())
            return "failed"
        except (Refused, DocumentError, AppError) as exc:
            await _finish(conn, job["id"], "failed", None, _error_body(exc))
            return "failed"
        except (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
            # the document's own values, past what the database keeps (a job that raised this
            # would be retried for ever): refused like any invalid value
            detail = f"a value of the document cannot be stored ({type(exc).__name__})"
            body = {
                "type": "epcisException:ValidationException",
                "title": "value",
                "status": 400,
                "detail": detail,
            }
            await _finish(conn, job["id"], "failed", None, body)
            return "failed"
        except POISON as exc:  # an error of its data that no run will get past
            log.error("capture %s failed: %s", capture_id, reason_of(exc))
            detail = f"the document could not be stored ({type(exc).__name__})"
            await _finish(conn, job["id"], "failed", None, _implementation(detail))
            return "failed"
        await _finish(conn, job["id"], "success", stored, None)
        return "success"


# Attempts of a job's events against concurrent writers of the same codes: a deadlock or a
# serialization failure rolls back the attempt's savepoint (its locks with it) and the events are
# applied again, after the other transaction, as they would be had it committed first (a probe:
# two documents unpacking the same cases in crossed order deadlocked, and the error escaped as
# the binding's 409 "eventID exists", the job left pending for the sweeper).
APPLY_ATTEMPTS = 3
# SQLSTATE class 40 (psycopg's DeadlockDetected and SerializationFailure are no subclasses of
# its TransactionRollback)
_ROLLED_BACK = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.TransactionRollback,
)


class Contended(Exception):
    """A job whose events kept conflicting with concurrent writers of the same codes (a
    deadlock each attempt, or the line's ``busy``)."""

    def body(self) -> dict[str, Any]:
        return {
            "type": "epcisException:ImplementationException",
            "title": "retry",
            "status": 503,
            "detail": f"the document's codes were changed concurrently {APPLY_ATTEMPTS} times "
            "while it was applied; nothing was stored: send it again",
        }


async def _apply_retrying(conn: Conn, scheme: Scheme, job: dict[str, Any]) -> int:
    """``_apply`` in a savepoint, again on a deadlock or serialization failure; ``Contended``
    after ``APPLY_ATTEMPTS``."""
    for attempt in range(1, APPLY_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                return await _apply(conn, scheme, job)
        except _ROLLED_BACK as exc:
            log.warning("capture %s attempt %d: %s", job["id"], attempt, type(exc).__name__)
    raise Contended


def _implementation(detail: str) -> dict[str, Any]:
    return {
        "type": "epcisException:ImplementationException",
        "title": "implementation",
        "status": 500,
        "detail": detail,
    }


def _error_body(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, Refused):
        return exc.body()
    if isinstance(exc, DocumentError):
        return {"type": exc.type, "title": exc.title, "status": exc.status, "detail": exc.detail}
    assert isinstance(exc, AppError)
    return {
        "type": "epcisException:SecurityException"
        if exc.status in (401, 403)
        else "epcisException:ValidationException",
        "title": exc.code,
        "status": exc.status,
        "detail": exc.message,
    }


async def _finish(
    conn: Conn, job_id: uuid.UUID, state: str, stored: int | None, errors: Any
) -> None:
    await conn.execute(
        "UPDATE epcis_captures SET state = %s, stored = %s, errors = %s, body = NULL, "
        "finished_at = now() WHERE id = %s",
        (state, stored, Jsonb(errors) if errors is not None else None, job_id),
    )


async def _apply(conn: Conn, scheme: Scheme, job: dict[str, Any]) -> int:
    actor = await _capturer(conn, job)
    events = _parsed.pop(job["id"], None)
    if events is None:
        body = job["body"]
        if body is None:  # an earlier run of the job in this process took the events, and failed
            row = await (
                await conn.execute("SELECT body FROM epcis_captures WHERE id = %s", (job["id"],))
            ).fetchone()
            body = row["body"] if row else b""
        events = parse_document(bytes(body))
    with gc_paused():
        ids = [e.event_id or e.hashed or event_hash(e.raw, e.context) for e in events]
    await xact_lock(conn, Lock.EPCIS_CAPTURE, job["org_id"])
    known = await _known_ids(conn, job["brand_id"], job["org_id"], ids)
    theirs = await _tracecode_ids(conn, job["brand_id"], ids)
    if theirs:
        _refuse_declarations(ids, events, theirs)
        known.update(dict.fromkeys(theirs, True))  # held by the brand: never stored again
    fresh: list[tuple[int, str, CapturedEvent]] = []
    declared: list[tuple[str, CapturedEvent]] = []
    for index, (event_id, event) in enumerate(zip(ids, events, strict=True)):
        if event_id not in known:
            known[event_id] = "errorDeclaration" in event.raw  # stored once per document too
            fresh.append((index, event_id, event))
        elif "errorDeclaration" in event.raw and not known[event_id]:
            known[event_id] = True
            declared.append((event_id, event))
    applied, sgtins = await _apply_to_codes(conn, scheme, actor, fresh)
    await _write(conn, job, fresh, applied, sgtins)
    await _declare_errors(conn, job["org_id"], declared)
    return len(fresh) + len(declared)


# The events of the documents this process accepted last, by capture id, until run takes them:
# the route applies a small document right after accepting it, and the parse is half the work.
# Bounded (a job handed to a worker is run elsewhere, and its entry just ages out); a job not
# found here is parsed from the stored body, with the same result (parse_document is pure).
_parsed: OrderedDict[uuid.UUID, list[CapturedEvent]] = OrderedDict()
_PARSED_JOBS = 4
_PARSED_EVENTS = 1_000  # larger documents go to the workers by default


def _remember(capture_id: uuid.UUID, events: list[CapturedEvent]) -> None:
    if len(events) <= _PARSED_EVENTS:
        _parsed[capture_id] = events
        while len(_parsed) > _PARSED_JOBS:
            _parsed.popitem(last=False)


async def _declare_errors(
    conn: Conn, org_id: int, declared: list[tuple[str, CapturedEvent]]
) -> None:
    """An event sent again with its eventID and an ``errorDeclaration`` declares the stored one
    erroneous (EPCIS 2.0 section 7.4.1.2): the stored event takes the declaration — only the
    declaration: the rest of what was sent replaces nothing (a declaration carrying other
    content rewrote the stored event, past every check a capture makes). Only the organisation
    that captured an event declares it erroneous; the state it changed is not undone (a
    corrective event does that)."""
    for event_id, event in declared:
        row = await (
            await conn.execute(
                "SELECT id, body FROM epcis_events WHERE org_id = %s AND event_id = %s FOR UPDATE",
                (org_id, event_id),
            )
        ).fetchone()
        if row is None:
            continue
        stored = msgspec.json.decode(bytes(row["body"]))
        stored["errorDeclaration"] = event.raw["errorDeclaration"]
        await conn.execute(
            "UPDATE epcis_events SET body = %s, error_declared = true, error_declared_at = %s "
            "WHERE id = %s",
            (msgspec.json.encode(stored), declaration_time(event.raw), row["id"]),
        )


async def _capturer(conn: Conn, job: dict[str, Any]) -> Principal:
    """The capturer as it is now: a disabled user, or a key that stopped working (revoked, its
    organisation inactive, its maker gone), captures nothing; a key's permissions are those its
    maker still holds."""
    if job["user_id"] is not None:
        return await load_user(conn, job["user_id"])
    return await load_api_key_by_id(conn, job["api_key_id"])


async def _known_ids(conn: Conn, brand_id: int, org_id: int, ids: list[str]) -> dict[str, bool]:
    """The eventIDs the capturing organisation holds already, each with whether it carries an
    error declaration. Another organisation's event of the same id is its own record (the
    same real event told by two parties, or a clash): neither sees nor blocks the other."""
    rows = await (
        await conn.execute(
            "SELECT event_id, error_declared FROM epcis_events "
            "WHERE event_id = ANY(%s) AND brand_id = %s AND org_id = %s",
            (ids, brand_id, org_id),
        )
    ).fetchall()
    return {r["event_id"]: r["error_declared"] for r in rows}


# A ``urn:uuid:`` eventID (in the lower case ``event_key`` gives it) whose UUID PostgreSQL reads:
# only such an eventID can be the uuid of one of Tracecode's events.
_UUID_ID = re.compile(r"urn:uuid:[0-9a-f]{8}(?:-?[0-9a-f]{4}){3}-?[0-9a-f]{12}")


async def _tracecode_ids(conn: Conn, brand_id: int, ids: list[str]) -> set[str]:
    """The eventIDs of the document that are Tracecode's own events of the brand
    (``urn:uuid:{events.event_uuid}``, as the query serves them beside the captured ones): the
    brand holds each already, so none is stored again under it (a probe: an event captured
    under the eventID of a unit's commissioning was served beside it, and GET
    /epcis/events/{eventID} answered one of the two). One read per document, on the index of
    ``events.event_uuid`` (the UUIDs as an array of unknown length: a literal one of thousands
    was planned as a scan of the whole table)."""
    uuids = [i[9:] for i in ids if _UUID_ID.fullmatch(i)]
    if not uuids:
        return set()
    rows = await (
        await conn.execute(
            "SELECT e.event_uuid FROM events e WHERE e.brand_id = %s "
            "AND e.event_uuid = ANY(ARRAY(SELECT u::uuid FROM unnest(%s::text[]) u))",
            (brand_id, uuids),
        )
    ).fetchall()
    if not rows:
        return set()
    found = {r["event_uuid"] for r in rows}
    return {i for i in ids if _UUID_ID.fullmatch(i) and _as_uuid(i[9:]) in found}


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _refuse_declarations(ids: list[str], events: list[CapturedEvent], theirs: set[str]) -> None:
    """An ``errorDeclaration`` under the eventID of one of Tracecode's own events: refused (the
    query served it beside that event, a retraction of Tracecode's record by anyone who sent
    it; Tracecode's events are corrected through its API, by a corrective event)."""
    for index, (event_id, event) in enumerate(zip(ids, events, strict=True)):
        if event_id in theirs and "errorDeclaration" in event.raw:
            raise Refused(
                "the eventID is one of Tracecode's own events, which only Tracecode's API "
                "corrects: it cannot be declared erroneous by EPCIS",
                index,
                {"eventID": event_id},
            )


# -- Tracecode's own codes ---------------------------------------------------------------------


async def _apply_to_codes(
    conn: Conn, scheme: Scheme, actor: Principal, fresh: list[tuple[int, str, CapturedEvent]]
) -> tuple[set[str], dict[str, str]]:
    """Apply the events naming Tracecode codes, in document order; return their eventIDs, and
    the SGTIN of each unit of the brand the document names by its QR URL."""
    units = {
        f"{CANONICAL_ORIGIN}/01/{gtin}/21/" for gtin in await _brand_gtins(conn, actor.brand_id)
    }
    cases = await _brand_cases(conn, scheme, actor.brand_id, fresh)
    qr_units = await _brand_qr_units(conn, scheme, actor.brand_id, fresh)
    cases.update(qr_units)
    stems = {prefix[:35] for prefix in units}  # …/01/{the GTIN without its check digit}
    applied: set[str] = set()
    observed: list[tuple[int, list[str]]] = []  # the observations: their Tracecode codes
    await _lock_cases(conn, fresh, cases)
    for index, event_id, event in fresh:
        named = [epc for epc in _codes_of(event) if _is_ours(epc, units, stems, cases)]
        if not named:
            continue
        _as_printed(scheme, index, named, units, stems)
        if event.action == "OBSERVE":
            _observation(index, event)  # stored, changes nothing
            observed.append((index, named))
        elif "errorDeclaration" in event.raw:
            await _dry_run(conn, scheme, actor, index, event_id, event)
        else:
            await _apply_one(conn, scheme, actor, index, event_id, event)
            applied.add(event_id)
    await _held(conn, scheme, actor, observed)
    return applied, {url: sgtin for url, sgtin in qr_units.items() if sgtin is not None}


async def _lock_cases(
    conn: Conn, fresh: list[tuple[int, str, CapturedEvent]], cases: set[str]
) -> None:
    """Lock the brand's cases the document's aggregations name, in key order, before applying
    them: each event locks its own case first (``edits.unpack``, ``scans.upload``), so two
    documents naming the same cases in crossed order deadlocked (a probe). Cases before units,
    as the line and the documents lock them; one read, only for a document naming two or more.
    A declared event's too: its dry run (``_dry_run``) locks them as its undeclared form does."""
    numbers = {
        int(number)
        for _, _, e in fresh
        if e.event_type == "AggregationEvent" and e.action != "OBSERVE"
        for epc in _codes_of(e)
        if epc.startswith(_SSCC_LINK) and (number := sscc(epc)) is not None and number in cases
    }
    if len(numbers) > 1:  # with the cases inside them, as a document locks a pallet's tree
        await lock_cases(conn, sorted(numbers))


def _codes_of(e: CapturedEvent) -> list[str]:
    return [*e.epcs, e.parent_id] if e.parent_id else e.epcs


async def _held(
    conn: Conn, scheme: Scheme, actor: Principal, named: list[tuple[int, list[str]]]
) -> None:
    """Refuse an observation (OBSERVE) naming Tracecode codes the capturer's subtree neither
    holds nor has on their way to it, as the line's corrections do
    (``app.packing.edits._on_hand``): every write is scoped to who holds the goods (a probe: an
    agent recorded a unit still at the factory as damaged, and the brand's query served it as a
    fact about the unit). The brand's own organisation observes anything of the brand. One read
    for the document, after its events are applied (a unit it commissions is held by the line's
    organisation then)."""
    if not named or actor.org_path == f"/{actor.brand_id}/":
        return
    texts = sorted({epc for _, codes in named for epc in codes})
    reads = await read_codes(conn, scheme, actor.brand_id, texts)
    keys = {text: (r.kind, r.code) for text, r in zip(texts, reads, strict=True) if r.code}
    held = await _held_codes(conn, actor, list(keys.values()))
    for index, codes in named:
        missing = [epc for epc in codes if keys.get(epc) not in held]
        if missing:
            raise Refused(
                "an OBSERVE event may name only Tracecode codes the capturing organisation "
                "holds or has on their way to it",
                index,
                [{"code": epc, "reason": "not_held"} for epc in missing[:50]],
            )


async def _held_codes(
    conn: Conn, actor: Principal, codes: list[tuple[str, int]]
) -> set[tuple[str, int]]:
    """Which of the units and cases (kind, code) are held by the actor's subtree or in transit
    to it."""
    units = [code for kind, code in codes if kind == "unit"]
    cases = [code for kind, code in codes if kind == "case"]
    if not units and not cases:
        return set()
    rows = await (
        await conn.execute(
            """SELECT 'unit' AS kind, s.code, h.path AS holder_path, t.path AS transit_path
               FROM unit_state s JOIN orgs h ON h.id = s.holder_org_id
               LEFT JOIN orgs t ON t.id = s.transit_to
               WHERE s.code = ANY(%(units)s) AND s.brand_id = %(brand)s
               UNION ALL
               SELECT 'case', s.sscc, h.path, t.path
               FROM case_state s JOIN orgs h ON h.id = s.holder_org_id
               LEFT JOIN orgs t ON t.id = s.transit_to
               WHERE s.sscc = ANY(%(cases)s) AND s.brand_id = %(brand)s""",
            {"units": units, "cases": cases, "brand": actor.brand_id},
        )
    ).fetchall()
    return {
        (r["kind"], r["code"])
        for r in rows
        if actor.sees(r["holder_path"])
        or (r["transit_path"] is not None and actor.sees(r["transit_path"]))
    }


def _observation(index: int, e: CapturedEvent) -> None:
    """Refuse an OBSERVE event on Tracecode's codes that tells of more than an observation."""
    if (e.biz_step is not None and e.biz_step not in OBSERVING_STEPS) or _changes_state(e):
        raise Refused(
            "an OBSERVE event on Tracecode codes may only observe them (bizStep "
            f"{', '.join(sorted(OBSERVING_STEPS))}, or none; a disposition or persistent "
            "disposition that changes no state); shipments, receipts, sales and decommissioning "
            "go through Tracecode's API",
            index,
            _said(e, {"bizStep": e.biz_step}),
        )


def _changes_state(e: CapturedEvent) -> bool:
    """Whether the event states a disposition (its own, or one its ``persistentDisposition``
    sets or unsets) of a state Tracecode keeps (``OBSERVED_DISPOSITIONS``)."""
    if e.disposition is not None and e.disposition not in OBSERVED_DISPOSITIONS:
        return True
    persistent = e.raw.get("persistentDisposition")
    if not persistent:
        return False
    # checked by the document: arrays of CBV dispositions in any spelling, or URIs
    return any(
        DISPOSITION_SPELLINGS.get(value, value) not in OBSERVED_DISPOSITIONS
        for field in ("set", "unset")
        for value in persistent.get(field, ())
    )


def _said(e: CapturedEvent, reasons: dict[str, Any]) -> dict[str, Any]:
    """The dispositions an event states, for the reasons of its refusal."""
    reasons["disposition"] = e.disposition
    if "persistentDisposition" in e.raw:
        reasons["persistentDisposition"] = e.raw["persistentDisposition"]
    return reasons


def _applied_disposition(index: int, e: CapturedEvent) -> None:
    """Refuse a commissioning, packing or unpacking event whose disposition says its codes are
    anything but active and on hand where they are (``OBSERVED_DISPOSITIONS``)."""
    if _changes_state(e):
        raise Refused(
            "a commissioning, packing or unpacking event on Tracecode codes leaves them active "
            "and on hand: its disposition (and persistent disposition) may only say so (active, "
            "in_progress, container_closed, container_open, or another that changes no state); "
            "shipments, sales, recalls and decommissioning go through Tracecode's API",
            index,
            _said(e, {"bizStep": e.biz_step}),
        )


def _applied_step(index: int, e: CapturedEvent, step: str) -> None:
    """Refuse a packing or unpacking AggregationEvent whose bizStep tells of anything else (a
    probe: one saying ``shipping`` packed the case and was served back as a shipment of it,
    while the ObjectEvent saying so is refused). Without a bizStep it is what its action says."""
    if e.biz_step is not None and e.biz_step != step:
        raise Refused(
            f"an AggregationEvent {e.action} on Tracecode codes is their {step} (bizStep {step}, "
            "or none); shipments, receipts, sales and the rest go through Tracecode's API",
            index,
            _said(e, {"bizStep": e.biz_step}),
        )


def _line_time(index: int, e: CapturedEvent) -> None:
    """Refuse an unpacking dated before the platform or over a day ahead, as the line refuses
    a commissioning or packing scan (``scans.EARLIEST``/``MAX_AHEAD``: a probe: one of 2099
    was applied and served as the case's last event for ever)."""
    if not scans.EARLIEST <= e.event_time <= datetime.now(UTC) + scans.MAX_AHEAD:
        raise Refused(
            "the event's time is before 2000 or over a day ahead: the scanner's clock is wrong",
            index,
            [{"code": e.parent_id, "reason": "bad_time", "message": scans.MESSAGES["bad_time"]}],
        )


def _is_ours(epc: str, units: set[str], stems: set[str], others: set[str]) -> bool:
    """Whether a canonical EPC is a unit of one of the brand's GTINs (``units``: the SGTIN
    Digital Link prefix of each; ``stems``: the same without the GTIN's check digit, so a
    brand's GTIN with a wrong one is the brand's, which ``_as_printed`` refuses), one of its
    case codes or one of its units named by the URL of its QR code (``others``: the SSCCs and
    URLs of the document that are the brand's)."""
    if epc[:40] in units:  # len("https://id.gs1.org/01/") + 14 + len("/21/")
        return gtin_serial(epc) is not None
    if epc[:35] in stems and epc[36:40] == "/21/":
        return gtin_serial(epc) is not None
    if epc.startswith(_SSCC_LINK):
        return sscc(epc) in others
    return epc in others


# A serial as Tracecode prints it: Crockford Base32 capitals and digits (no I, L, O, U), which
# the line's reader also reads in lower case, with O for 0, I or L for 1 and hyphens.
_PRINTED = re.compile(r"[0-9A-HJKMNP-TV-Z]+")


def _as_printed(
    scheme: Scheme, index: int, named: list[str], units: set[str], stems: set[str]
) -> None:
    """Refuse an SGTIN of the brand's GTIN that names a unit otherwise than its label does,
    which the line would read as the unit while the query's rule (the serial exactly as
    printed: an SGTIN's serial is case-sensitive) says it is not it: its GTIN with a wrong check
    digit (no GTIN at all; the line's ``wrong_product`` — a probe: a commissioning answered
    success and activated nothing, a sale of the brand's serial was stored), or its serial in
    another spelling (``not_as_printed``, in lower case, O for 0, L for 1, with hyphens — a
    probe: the commissioning activated the unit and MATCH_epc by its SGTIN never found it).
    No read: a serial is verified only when it is not spelled as printed."""
    refused: list[dict[str, str]] = []
    spelled: list[tuple[str, str]] = []
    for epc in named:
        if epc[:40] in units:
            if not _PRINTED.fullmatch(epc, 40) and (found := gtin_serial(epc)) is not None:
                spelled.append((epc, found[1]))
        elif epc[:35] in stems and epc[36:40] == "/21/":
            message = "a GTIN of the brand's with a wrong check digit: no product's GTIN"
            refused.append({"code": epc, "reason": "wrong_product", "message": message})
    if spelled:
        verdicts = scheme.verify_many([serial for _, serial in spelled])
        for (epc, serial), (status, batch_no, unit, version) in zip(spelled, verdicts, strict=True):
            label = scheme.serial(batch_no, unit, version) if status == VERIFY_OK else serial
            if label != serial:
                refused.append(
                    {
                        "code": epc,
                        "reason": "not_as_printed",
                        "message": f"the serial is printed {label}: an SGTIN's serial is "
                        "case-sensitive, so this one names no unit",
                    }
                )
    if refused:
        raise Refused(
            "an SGTIN of the brand's product names a unit only as its label does", index, refused
        )


async def _brand_qr_units(
    conn: Conn, scheme: Scheme, brand_id: int, fresh: list[tuple[int, str, CapturedEvent]]
) -> dict[str, str | None]:
    """The QR-code URLs (``…/c/{serial}``) of the document that name the brand's units: the
    identifier of a unit whose product has no GTIN, which must obey the same rules. Each with
    the unit's SGTIN (Digital Link), when its product has a GTIN: the event is stored under
    both (``_write``), so ``MATCH_epc`` finds it by the SGTIN, as the unit's own events (a
    probe: an observation by the QR URL was found by neither)."""
    # any URL with a /c/ segment: read as the line API reads a scan (``serial_from_scan``: a
    # query string, a trailing slash, a path before /c/ — a probe: such a unit's commissioning
    # was stored as a foreign event and activated nothing)
    urls = {
        epc
        for _, _, e in fresh
        for epc in [*e.epcs, *([e.parent_id] if e.parent_id else [])]
        if epc.lower().startswith(("https://", "http://")) and "/c/" in epc.lower()
    }
    if not urls:
        return {}
    ordered = sorted(urls)
    reads = await read_codes(conn, scheme, brand_id, ordered)
    ours = {url: r for url, r in zip(ordered, reads, strict=True) if r.reason in _OURS}
    products = sorted({r.batch_product for r in ours.values() if r.batch_product is not None})
    rows = await (
        await conn.execute(
            "SELECT id, gtin FROM products WHERE id = ANY(%s) AND gtin IS NOT NULL", (products,)
        )
    ).fetchall()
    gtins = {row["id"]: row["gtin"] for row in rows}
    return {
        url: f"{CANONICAL_ORIGIN}/01/{gtins[r.batch_product]}/21/{r.label}"
        if r.batch_product in gtins
        else None
        for url, r in ours.items()
    }


_SSCC_LINK = f"{CANONICAL_ORIGIN}/00/"
# The reads of a QR URL that make it the brand's unit: a usable one, or one the line refuses for
# a reason of its own (a void unit, as ``_brand_cases`` keeps a void case: a probe: a void unit's
# URL was taken for a foreign code, its commissioning acknowledged and its shipment stored).
_OURS = frozenset({None, "void", "wrong_product"})


async def _brand_gtins(conn: Conn, brand_id: int) -> set[str]:
    """The GTINs of the brand's products: those owned anywhere in its tree, as the catalogue,
    batches and lines take them (a probe: a factory's product's units were foreign here, their
    shipments stored past the documents' rules and their commissioning never activating them)."""
    rows = await (
        await conn.execute(
            """SELECT p.gtin FROM products p JOIN orgs o ON o.id = p.org_id
               WHERE o.path LIKE %s AND p.gtin IS NOT NULL""",
            (f"/{brand_id}/%",),
        )
    ).fetchall()
    return {r["gtin"] for r in rows}


async def _brand_cases(
    conn: Conn, scheme: Scheme, brand_id: int, fresh: list[tuple[int, str, CapturedEvent]]
) -> set[str]:
    """The SSCCs of the document that are case codes issued to the brand."""
    numbers = sorted(
        {
            number
            for _, _, e in fresh
            for epc in [*e.epcs, *([e.parent_id] if e.parent_id else [])]
            if epc.startswith(_SSCC_LINK) and (number := sscc(epc)) is not None
        }
    )
    reads = await read_codes(conn, scheme, brand_id, numbers) if numbers else []
    return {n for n, r in zip(numbers, reads, strict=True) if r.reason != "unknown_case"}


async def _apply_one(
    conn: Conn, scheme: Scheme, actor: Principal, index: int, event_id: str, e: CapturedEvent
) -> None:
    tag = "epcis:" + hashlib.sha256(event_id.encode()).hexdigest()[:40]
    at = e.event_time
    kind = _kind(index, e)
    if kind == "commissioning":
        units = [ScanIn(id=f"{tag}:{i}", code=epc, at=at) for i, epc in enumerate(e.epcs)]
        await _upload(conn, scheme, actor, index, e, units)
    elif kind == "packing":
        assert e.parent_id is not None
        parent = ScanIn(id=f"{tag}:p", code=e.parent_id, at=at, children=list(e.epcs))
        await _upload(conn, scheme, actor, index, e, [parent])
    else:
        assert e.parent_id is not None
        data = UnpackIn(
            parent=e.parent_id, children=list(e.epcs) or None, reason=f"EPCIS event {event_id}"
        )
        try:  # dated by its eventTime, as a packing is (a probe: dated on arrival)
            await edits.unpack(conn, actor, scheme, data, at)
        except AppError as exc:
            if exc.status == 403:  # a permission the capturer lacks: a SecurityException
                raise Denied(exc, index) from exc
            raise Refused(f"unpacking refused: {exc.message}", index, _reasons(exc)) from exc


async def _dry_run(
    conn: Conn, scheme: Scheme, actor: Principal, index: int, event_id: str, e: CapturedEvent
) -> None:
    """An event first sent declared erroneous: applied as its undeclared form would be, in a
    savepoint always rolled back, so it passes every rule and permission that form must (the
    line's scope, ``packing.scan``, the holder of what it unpacks: a probe stored a packing of
    a factory's units on the factory's line by an agent, a commissioning by a partner without
    ``packing.scan``), refused alike, and changes nothing. The rollback takes back its writes
    and the locks it took; a refusal raised inside leaves with it."""
    async with conn.transaction(force_rollback=True):
        await _apply_one(conn, scheme, actor, index, event_id, e)


def _kind(index: int, e: CapturedEvent) -> str:
    """What an ADD or DELETE event on Tracecode codes does — ``commissioning``, ``packing`` or
    ``unpacking`` — once the rules that need no read pass (its step and disposition, a line's
    readPoint, an unpacking's time); any other is refused: its effect would bypass the rules of
    the API that owns it (an event first sent declared erroneous too: ``_dry_run``; a probe:
    declared, a sale of a unit the capturer never held was stored)."""
    if e.event_type == "ObjectEvent" and e.action == "ADD" and e.biz_step == "commissioning":
        cases = [epc for epc in e.epcs if epc.startswith(_SSCC_LINK)]
        if cases:  # on a line a case scan packs what came before it (a probe: silently packed)
            raise Refused(
                "a commissioning ObjectEvent names units; cases are packed by an AggregationEvent",
                index,
                {"cases": cases[:50]},
            )
        kind = "commissioning"
    elif e.event_type == "AggregationEvent" and e.action == "ADD" and e.parent_id and e.epcs:
        kind = "packing"
        _applied_step(index, e, kind)
    elif e.event_type == "AggregationEvent" and e.action == "DELETE" and e.parent_id:
        kind = "unpacking"
        _applied_step(index, e, kind)
    else:
        raise Refused(
            "an event on Tracecode codes may commission (ObjectEvent ADD, bizStep commissioning), "
            "pack (AggregationEvent ADD) or unpack (AggregationEvent DELETE) them, or observe them "
            "(OBSERVE); shipments, receipts, sales and the rest go through Tracecode's API",
            index,
        )
    _applied_disposition(index, e)
    if kind == "unpacking":
        _line_time(index, e)
    else:
        _line_of(index, e)
    return kind


def _reasons(exc: AppError) -> Any:
    """The reasons of a refused unpacking: one per code the service names (``not_in_container``:
    not inside, or packed into the container after the event's time), as the line's rejections
    are; else the service's error code."""
    codes = exc.details.get("codes") if isinstance(exc.details, dict) else None
    if not codes:
        return exc.code
    return [{"code": code, "reason": exc.code, "message": exc.message} for code in codes[:50]]


async def _upload(
    conn: Conn,
    scheme: Scheme,
    actor: Principal,
    index: int,
    e: CapturedEvent,
    items: list[ScanIn],
) -> None:
    """Through the line API, on the readPoint's line. A commissioning event's ILMD lot is the
    units' lot (the line's product and production date with it), as an offline scanner's
    context is; without one the line's own lot holds."""
    line = _line_of(index, e)
    try:
        context = await _lot_context(conn, actor, line, e, index)
        upload = ScanUploadIn(scans=items, context=context)
        out = await scans.upload(conn, actor, scheme, line, upload)
    except AppError as exc:
        if exc.status == 403:  # a permission the capturer lacks: a SecurityException
            raise Denied(exc, index) from exc
        if exc.code == "busy":  # another upload packing the same codes: a passing conflict,
            # answered as one (a probe: a permanent ValidationException "busy")
            raise Contended from exc
        raise Refused(f"the line refused the event: {exc.message}", index, exc.code) from exc
    rejected = [
        {"code": s.code, "reason": s.reason, "message": s.message}
        for s in out.scans
        if s.result == "rejected"
    ]
    if rejected:
        raise Refused("the line's rules refused codes of the event", index, rejected)


def _line_of(index: int, e: CapturedEvent) -> str:
    """The code of the packing line a commissioning or packing event's readPoint names."""
    if not e.read_point or not e.read_point.startswith(LINE_PREFIX):
        raise Refused(
            f"commissioning and packing Tracecode codes needs the readPoint of a packing line "
            f"({LINE_PREFIX}{{line code}})",
            index,
        )
    return e.read_point.removeprefix(LINE_PREFIX)


def _expanded(key: str, prefixes: dict[str, str]) -> str:
    """A JSON-LD key as an IRI: ``prefix:local`` with a known prefix expanded, else as it is
    (a probe: ``mda:lotNumber`` under the document's own prefix for the CBV master data was no
    lot, and ``cbvmda:lotNumber`` under a rebound ``cbvmda`` was one)."""
    prefix, colon, local = key.partition(":")
    namespace = prefixes.get(prefix) if colon else None
    return namespace + local if namespace is not None else key


async def _lot_context(
    conn: Conn, actor: Principal, line: str, e: CapturedEvent, index: int
) -> LineContextIn | None:
    ilmd = e.raw.get("ilmd") or {}
    # cbvmda is the standard context's prefix: a @context may declare it again with the IRI it
    # has there (urn:epcglobal:cbv:mda:), never with another (app.epcis.document._own_terms)
    prefixes = {**active_prefixes(e.context), "cbvmda": MDA}
    lot = next((v for key, v in ilmd.items() if _expanded(key, prefixes) in LOT_IRIS), None)
    if lot is None:
        return None
    current = await lines.get_line(conn, actor, line)
    if current.product_id is None or current.production_date is None:
        raise Refused("set the line's production context first", index, "no_line_context")
    try:
        return msgspec.convert(
            {
                "product_id": current.product_id,
                "lot": lot,
                "production_date": current.production_date,
            },
            LineContextIn,
        )
    except msgspec.ValidationError as exc:
        raise Refused(
            f"the ILMD lot is not a GS1 lot (1 to 20 characters of GS1 CSET 82): {exc}",
            index,
            "invalid_lot",
        ) from exc


# -- writing the events ------------------------------------------------------------------------


async def _write(
    conn: Conn,
    job: dict[str, Any],
    fresh: list[tuple[int, str, CapturedEvent]],
    applied: set[str],
    sgtins: dict[str, str],
) -> None:
    """COPY the fresh events and their identifiers, in COPY's text format built by hand (one
    string per event, one per event's identifiers), sent in chunks so that PostgreSQL parses
    a chunk while the next one is built. A unit of the brand named by its QR URL is one of the
    event's identifiers under its SGTIN too (``sgtins``: only documents naming such URLs)."""
    if not fresh:
        return
    row = await (
        await conn.execute(
            "SELECT array_agg(n ORDER BY n) AS ids FROM (SELECT nextval(pg_get_serial_sequence("
            "'epcis_events', 'id')) AS n FROM generate_series(1, %s)) s",
            (len(fresh),),
        )
    ).fetchone()
    assert row is not None
    ids: list[int] = row["ids"]
    head = f"\t{job['brand_id']}\t{job['org_id']}\t{job['id']}\t"
    now = f"\t{datetime.now(UTC).isoformat()}\t"
    contexts: dict[int, str] = {}  # id(context) -> its column (one context object per document)
    encode = msgspec.json.encode
    async with conn.cursor().copy(
        "COPY epcis_events (id, brand_id, org_id, capture_id, event_id, event_type, action, "
        "biz_step, disposition, event_time, record_time, read_point, biz_location, "
        "biz_transactions, applied, error_declared, error_declared_at, context, body) FROM STDIN"
    ) as copy:
        rows: list[str] = []
        for row_id, (_, event_id, e) in zip(ids, fresh, strict=True):
            context = contexts.get(id(e.context))
            if context is None:
                served = served_context(e.context)
                context = NULL if served is None else _text(encode(served).decode())
                contexts[id(e.context)] = context
            rows.append(
                f"{row_id}{head}{_text(event_id)}\t{_text(e.event_type)}\t"
                f"{_nullable(e.action)}\t{_nullable(e.biz_step)}\t{_nullable(e.disposition)}\t"
                f"{e.event_time.isoformat()}{now}{_nullable(place_key(e.read_point))}\t"
                f"{_nullable(place_key(e.biz_location))}\t{_text_array(e.biz_transactions)}\t"
                f"{'t' if event_id in applied else 'f'}\t"
                f"{_declared(e.raw) if 'errorDeclaration' in e.raw else _UNDECLARED}\t{context}\t"
                f"\\\\x{encode(e.raw).hex()}\n"
            )
            if len(rows) == _CHUNK:
                await copy.write("".join(rows).encode())
                rows.clear()
        if rows:
            await copy.write("".join(rows).encode())
    async with conn.cursor().copy("COPY epcis_event_epcs (epc, role, event_id) FROM STDIN") as copy:
        lines: list[str] = []
        for count, (row_id, (_, _, e)) in enumerate(zip(ids, fresh, strict=True), 1):
            role = "x" if e.event_type == "TransformationEvent" else "e"
            if e.epcs:
                tail = f"\t{role}\t{row_id}\n"
                epcs = map(_text, e.epcs) if _SPECIAL.search("".join(e.epcs)) else e.epcs
                lines.append(tail.join(epcs) + tail)
                if sgtins:
                    lines += [f"{sgtins[epc]}{tail}" for epc in e.epcs if epc in sgtins]
            if e.parent_id:
                lines.append(f"{_text(e.parent_id)}\tp\t{row_id}\n")
                if sgtins and e.parent_id in sgtins:
                    lines.append(f"{sgtins[e.parent_id]}\tp\t{row_id}\n")
            if count % _CHUNK == 0:
                await copy.write("".join(lines).encode())
                lines.clear()
        if lines:
            await copy.write("".join(lines).encode())


_UNDECLARED = "f\t\\N"  # error_declared, error_declared_at


def _declared(raw: dict[str, Any]) -> str:
    """The COPY columns ``error_declared`` and ``error_declared_at`` of an event sent with an
    ``errorDeclaration``."""
    when = declaration_time(raw)
    assert when is not None
    return f"t\t{when.isoformat()}"


_CHUNK = 250  # events per COPY write
NULL = "\\N"
_SPECIAL = re.compile(r"[\\\t\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: str) -> str:
    """A value in COPY's text format (validated identifiers hold none of its special
    characters; anything else is escaped)."""
    return value.translate(_ESCAPES) if _SPECIAL.search(value) else value


def _nullable(value: str | None) -> str:
    return NULL if value is None else _text(value)


def _text_array(pairs: list[tuple[str, str]]) -> str:
    """``{"type id",…}`` (text[] of 'type id' pairs) in COPY's text format, NULL when empty."""
    if not pairs:
        return NULL
    items = (f"{t} {v}".replace("\\", "\\\\").replace('"', '\\"') for t, v in pairs)
    return _text("{" + ",".join(f'"{item}"' for item in items) + "}")
