"""Printer files (SPEC C3, C4) and the export job that writes them (C6).

An export covers a range of a unit batch (two files: the outer print ``seq,serial,url`` and the
inner print ``seq,pin``, each addressed to a printer and wrapped for it) or a whole case batch
(one file ``seq,sscc,url``). One export row is one job: small exports run inside the request,
large ones on a dramatiq worker; both run ``run_export``, which is idempotent: a retried or
restarted run rewrites the same plain bytes and never creates a second batch or export.

Data keys are not stored anywhere: each is HKDF-derived from the master key and the export id
(``data_key``), so a worker can recreate it while the database keeps only the wrapped form. A
unit export's key is of its batch's key version (``Scheme.derive``); a case export's of none
(``NO_KEY_VERSION``): its labels depend on no key version, so a rotation never stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from app import audit, locks
from app._core import build_sscc
from app.auth.principal import Principal
from app.codes import printfile
from app.codes.batches import VoidWatch
from app.codes.schemas import CaseExportIn, ExportIn, ExportOrder, ExportOut, PartIn, PartOut
from app.codes.scheme import NO_KEY_VERSION, Scheme, file_key
from app.codes.service import own_printer, visible_sql
from app.config import Settings
from app.db import Conn
from app.errors import Conflict, NotFound, Unprocessable, ValidationFailed
from app.locks import Lock
from app.paging import Page, fetch_page

STEP = 1 << 18  # codes per formatting/encryption step: bounds memory whatever the batch size
UNIT_PARTS = ("outer", "inner")
CASE_PARTS = ("cases",)

log = logging.getLogger("tracecode.exports")

_COLUMNS = """e.id, e.brand_id, e.batch_no, e.case_batch_id, e.range_start, e.range_end,
    e.key_version, e.url_prefix, e.parts, e.state, e.progress, e.files, e.error, e.attempts,
    e.created_by, e.created_at, e.started_at, e.finished_at,
    coalesce((SELECT b.state FROM code_batches b WHERE b.batch_no = e.batch_no),
             (SELECT c.state FROM case_batches c WHERE c.id = e.case_batch_id)) AS batch_state"""


# One export is one job writing ~90 bytes a code over its two files (9 GB at this size): a
# batch of up to 2^32 codes is exported in ranges, and no request queues a file bigger than a
# disk (measured: 1M codes in 0.6 s, 88 bytes a code).
MAX_CODES = 100_000_000


def data_key(
    scheme: Scheme, settings: Settings, export_id: uuid.UUID | str, part: str, version: int
) -> bytes:
    """The AES-256 key of one export file (``file_key``): under the export's key version, or,
    for a case export (``NO_KEY_VERSION``: its SSCC labels depend on no key version, so a case
    export queued before a version is retired still runs after — a probe: it recorded the
    version then current, and its run failed ``UnknownKeyVersion``), from the master key
    alone. Case exports recorded before hold that version."""
    return file_key(scheme, settings, f"export.{uuid.UUID(str(export_id)).hex}.{part}", version)


def _out(row: dict[str, Any], printer_id: int | None = None) -> ExportOut:
    """An export; for a printer (``printer_id``), only the files addressed to it: the other part's
    digest of its plaintext let the outer printer find the PINs of a small range by trying them
    all (each printer holds one half, never both)."""
    files = row["files"]
    if printer_id is not None and files:
        mine = {name for name, p in row["parts"].items() if p["printer_id"] == printer_id}
        files = {name: f for name, f in files.items() if name in mine}
    parts = {
        name: PartOut(printer_id=p["printer_id"], method=p["wrap"]["method"])
        for name, p in row["parts"].items()
    }
    return ExportOut(
        id=str(row["id"]),
        batch_no=row["batch_no"],
        case_batch_id=row["case_batch_id"],
        range_start=row["range_start"],
        range_end=row["range_end"],
        total=row["range_end"] - row["range_start"],
        state=row["state"],
        progress=row["progress"],
        parts=parts,
        files=files,
        error=row["error"],
        attempts=row["attempts"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


async def _printer_key(conn: Conn, actor: Principal, printer_id: int) -> str | None:
    """The RSA public key of a file's printer, an active printer of the caller's brand. Its row
    is read ``FOR SHARE``, as a batch's issuance reads it (``service.check_printer``): a
    deactivation committed meanwhile is seen, a later one waits for the export's commit (read
    unlocked, one between the read and the insert was missed: a file for a closed printer)."""
    row = await (
        await conn.execute(
            "SELECT kind, path, status, public_key_pem FROM orgs "
            "WHERE id = %s AND path LIKE %s FOR SHARE",
            (printer_id, f"/{actor.brand_id}/%"),
        )
    ).fetchone()
    if row is None:
        raise NotFound("printer organisation not found", code="unknown_printer")
    if row["kind"] != "printer":
        raise ValidationFailed("the file must go to a printer organisation", code="not_a_printer")
    if row["status"] != "active":
        raise Unprocessable("the printer organisation is inactive", code="printer_inactive")
    return row["public_key_pem"]  # type: ignore[no-any-return]


async def _wrap_parts(
    conn: Conn,
    actor: Principal,
    settings: Settings,
    scheme: Scheme,
    export_id: uuid.UUID,
    version: int,
    default_printer: int,
    requested: dict[str, PartIn],
) -> dict[str, Any]:
    """Per file: its printer and the data key wrapped for it (passphrase or RSA public key)."""
    parts: dict[str, Any] = {}
    for name, part in requested.items():
        printer_id = default_printer if part.printer_id is None else part.printer_id
        public_key = await _printer_key(conn, actor, printer_id)
        key = data_key(scheme, settings, export_id, name, version)
        if part.passphrase is not None:
            # scrypt is deliberately slow: keep it off the event loop
            wrap = await asyncio.to_thread(printfile.wrap_with_passphrase, key, part.passphrase)
        elif public_key:
            wrap = printfile.wrap_with_rsa(key, public_key)
        else:
            raise ValidationFailed(
                f"{name}: give a passphrase, or register the printer's RSA public key first",
                code="no_wrapping_key",
                details={"field": f"{name}.passphrase"},
            )
        parts[name] = {"printer_id": printer_id, "wrap": wrap}
    return parts


async def create_unit_export(
    conn: Conn, actor: Principal, settings: Settings, scheme: Scheme, batch_no: int, data: ExportIn
) -> ExportOut:
    """An export of a unit batch's range: brand staff export any batch of the brand, a printer's
    caller only the batches addressed to it (``own_printer``; another is 404)."""
    actor.require("codes.export")
    own = await own_printer(conn, actor)
    batch = await (
        await conn.execute(
            "SELECT b.batch_no, b.brand_id, b.printer_id, b.size, b.state, b.key_version, "
            "b.allocated, p.gtin FROM code_batches b LEFT JOIN products p ON p.id = b.product_id "
            "WHERE b.batch_no = %s AND b.brand_id = %s FOR UPDATE OF b",
            (batch_no, actor.brand_id),
        )
    ).fetchone()
    if batch is None or own not in (None, batch["printer_id"]):
        raise NotFound("batch not found")
    if batch["state"] == "void":
        raise Unprocessable("the batch is void", code="batch_void")
    if batch["allocated"]:
        # its codes are given out by the allocation API (app/codes/allocations.py): a printer
        # file of the same indexes would print them twice
        raise Conflict("the batch's codes are allocated, not exported", code="batch_allocated")
    start = 0 if data.start is None else data.start
    end = batch["size"] if data.end is None else data.end
    if not 0 <= start < end <= batch["size"]:
        raise ValidationFailed(
            f"the range [{start}, {end}) is outside the batch [0, {batch['size']})",
            code="range_outside_batch",
            details={"start": start, "end": end, "size": batch["size"]},
        )
    if end - start > MAX_CODES:
        raise ValidationFailed(
            f"an export holds at most {MAX_CODES:,} codes: export the batch in ranges",
            code="export_too_large",
            details={"max_codes": MAX_CODES, "asked": end - start},
        )
    if batch["key_version"] not in settings.active_key_versions:
        raise Unprocessable(
            f"the batch's key version {batch['key_version']} is retired "
            f"(TRACECODE_KEY_VERSIONS): its codes are no longer made",
            code="key_version_retired",
        )
    root = settings.public_url
    url_prefix = f"{root}/01/{batch['gtin']}/21/" if batch["gtin"] else f"{root}/c/"
    export_id = uuid.uuid4()
    parts = await _wrap_parts(
        conn,
        actor,
        settings,
        scheme,
        export_id,
        batch["key_version"],
        batch["printer_id"],
        {"outer": data.outer, "inner": data.inner},
    )
    return await _insert(
        conn, actor, export_id, batch_no, None, start, end, batch["key_version"], url_prefix, parts
    )


async def create_case_export(
    conn: Conn,
    actor: Principal,
    settings: Settings,
    scheme: Scheme,
    case_batch_id: int,
    data: CaseExportIn,
) -> ExportOut:
    """The file of a case batch (brand staff: any of the brand; a printer's caller: only the
    case batches addressed to it, ``own_printer``)."""
    actor.require("codes.export")
    own = await own_printer(conn, actor)
    batch = await (
        await conn.execute(
            "SELECT id, printer_id, size, state FROM case_batches WHERE id = %s AND brand_id = %s",
            (case_batch_id, actor.brand_id),
        )
    ).fetchone()
    if batch is None or own not in (None, batch["printer_id"]):
        raise NotFound("case batch not found")
    if batch["state"] == "void":
        raise Unprocessable("the case batch is void", code="batch_void")
    export_id = uuid.uuid4()
    version = NO_KEY_VERSION  # SSCC labels: a rotation never stops the export
    parts = await _wrap_parts(
        conn,
        actor,
        settings,
        scheme,
        export_id,
        version,
        batch["printer_id"],
        {"cases": data.cases},
    )
    url_prefix = f"{settings.public_url}/00/"
    return await _insert(
        conn, actor, export_id, None, case_batch_id, 0, batch["size"], version, url_prefix, parts
    )


async def _insert(
    conn: Conn,
    actor: Principal,
    export_id: uuid.UUID,
    batch_no: int | None,
    case_batch_id: int | None,
    start: int,
    end: int,
    version: int,
    url_prefix: str,
    parts: dict[str, Any],
) -> ExportOut:
    row = await (
        await conn.execute(
            f"""INSERT INTO code_exports AS e (id, brand_id, batch_no, case_batch_id, range_start,
                    range_end, key_version, url_prefix, parts, created_by)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (
                export_id,
                actor.brand_id,
                batch_no,
                case_batch_id,
                start,
                end,
                version,
                url_prefix,
                Jsonb(parts),
                actor.person,  # a key's export: its maker's
            ),
        )
    ).fetchone()
    assert row is not None
    out = _out(row)
    summary = {
        "export_id": out.id,
        "batch_no": batch_no,
        "case_batch_id": case_batch_id,
        "range": [start, end],
        "parts": {
            n: {"printer_id": p.printer_id, "method": p.method} for n, p in out.parts.items()
        },
    }
    await audit.record(conn, actor, "create", "code_export", out.id, after=summary)
    return out


async def _all_files(conn: Conn, actor: Principal) -> bool:
    """Whether the caller sees every export and file of its brand: brand staff holding
    ``codes.export`` (``own_printer``); anyone else (a printer's caller, whatever its
    permissions) only the files addressed to its organisation (README: "only the files
    addressed to them")."""
    return actor.has("codes.export") and await own_printer(conn, actor) is None


def _visible(actor: Principal, row: dict[str, Any] | None, all_files: bool) -> dict[str, Any]:
    """Brand staff with ``codes.export`` (``all_files``: ``_all_files``) see their brand's
    exports; a printer's caller (with ``codes.export`` or ``codes.download``) the exports with a
    file addressed to it."""
    actor.require_any("codes.export", "codes.download")
    if row is not None and row["brand_id"] == actor.brand_id:
        if all_files or any(p["printer_id"] == actor.org_id for p in row["parts"].values()):
            return row
    raise NotFound("export not found")


async def _row(conn: Conn, export_id: str) -> dict[str, Any] | None:
    try:
        key = uuid.UUID(export_id)
    except ValueError:
        return None
    return await (
        await conn.execute(f"SELECT {_COLUMNS} FROM code_exports e WHERE e.id = %s", (key,))
    ).fetchone()


async def load_export(conn: Conn, export_id: str) -> ExportOut:
    """An export by id, without a permission check (for code that just created it)."""
    row = await _row(conn, export_id)
    if row is None:
        raise NotFound("export not found")
    return _out(row)


async def get_export(conn: Conn, actor: Principal, export_id: str) -> ExportOut:
    all_files = await _all_files(conn, actor)
    row = _visible(actor, await _row(conn, export_id), all_files)
    return _out(row, None if all_files else actor.org_id)


async def page_exports(
    conn: Conn,
    actor: Principal,
    batch_no: int,
    page: int,
    per_page: int,
    order: ExportOrder = "oldest",
    *,
    case_batch: bool = False,
) -> Page[ExportOut]:
    """One page of a batch's exports — of the unit batch ``batch_no``, or of the case batch of
    that id (``case_batch``: a probe found an SSCC file's export id nowhere to be read again,
    ``GET /case-batches/{id}/exports`` was 405) —, oldest first, or newest first for
    ``order="newest"`` (the console's files dialog shows the newest: a probe saw the export just
    made missing from its one page of the oldest 200); the id breaks a tie of times either way,
    so the pages neither repeat nor skip a row. A printer's caller (``codes.export`` or
    ``codes.download``, as ``_visible``) sees those with a file addressed to it, and only its
    own files: ``_mine``; a probe: a printer's user was refused the list, so it could not find
    its files. A batch the caller may not see (``visible_sql``, as ``GET /batches/{no}`` and
    ``GET /case-batches/{id}``) and has no file of is 404 ``not_found``, as the batch's own
    page: a probe saw an empty page, as if a mistyped number were "not exported yet"; another
    saw a printer told by it which batch numbers went to the brand's other printers (an empty
    page for theirs, 404 for none)."""
    actor.require_any("codes.export", "codes.download")
    where, params, printer = await _mine(conn, actor)
    column = "e.case_batch_id" if case_batch else "e.batch_no"
    found = await fetch_page(
        conn,
        columns=_COLUMNS,
        source="code_exports e",
        where=[f"{column} = %(batch_no)s", *where],
        params={**params, "batch_no": batch_no},
        order="e.created_at DESC, e.id DESC" if order == "newest" else "e.created_at, e.id",
        page=page,
        per_page=per_page,
        make=lambda row: _out(row, printer),
    )
    if found.total == 0:  # with a file addressed to it the caller knows the batch
        await _ensure_seen(conn, actor, batch_no, case_batch)
    return found


async def _ensure_seen(conn: Conn, actor: Principal, batch_no: int, case_batch: bool) -> None:
    """404 unless the caller sees the unit batch ``batch_no`` or the case batch of that id
    (``visible_sql``, one rule for both)."""
    if case_batch:
        alias, source, what = "c", "case_batches c WHERE c.id", "case batch"
    else:
        alias, source, what = "b", "code_batches b WHERE b.batch_no", "batch"
    seen, seen_params = await visible_sql(conn, actor, alias)
    row = await (
        await conn.execute(
            f"SELECT 1 FROM {source} = %(no)s AND {seen}", {**seen_params, "no": batch_no}
        )
    ).fetchone()
    if row is None:
        raise NotFound(f"no {what} {batch_no}")


async def list_exports(conn: Conn, actor: Principal, batch_no: int) -> list[ExportOut]:
    """All of a batch's exports the caller sees (the batch's detail shows them: ``_mine``, as
    ``page_exports``); none for a caller without ``codes.export`` or ``codes.download`` (one
    that only issues batches sees the batch, not its files)."""
    if not actor.has_any("codes.export", "codes.download"):
        return []
    where, params, printer = await _mine(conn, actor)
    rows = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM code_exports e WHERE e.batch_no = %(batch_no)s AND "
            + " AND ".join(where)
            + " ORDER BY e.created_at",
            {**params, "batch_no": batch_no},
        )
    ).fetchall()
    return [_out(r, printer) for r in rows]


async def _mine(conn: Conn, actor: Principal) -> tuple[list[str], dict[str, Any], int | None]:
    """The exports a caller lists, as ``_visible`` reads one (brand staff: every one of the
    brand; a printer's caller: those with a file addressed to it), and whose files it is shown
    (``None``: all; else its organisation's)."""
    where = ["e.brand_id = %(brand_id)s"]
    params: dict[str, Any] = {"brand_id": actor.brand_id}
    if await _all_files(conn, actor):
        return where, params, None
    where.append(
        "EXISTS (SELECT 1 FROM jsonb_each(e.parts) p "
        "WHERE (p.value->>'printer_id')::bigint = %(org)s)"
    )
    return where, {**params, "org": actor.org_id}, actor.org_id


async def file_for_download(
    conn: Conn,
    actor: Principal,
    settings: Settings,
    export_id: str,
    part: str,
    *,
    audited: bool = True,
) -> Path:
    """The encrypted file of one part, after checking who asks; every download is audited
    (``audited=False``: the same checks for a HEAD, which downloads nothing)."""
    path, _ = await _download(conn, actor, settings, export_id, part, audited)
    return path


async def watched_file(
    conn: Conn,
    actor: Principal,
    settings: Settings,
    pool: AsyncConnectionPool,
    export_id: str,
    part: str,
    *,
    audited: bool = True,
) -> tuple[Path, VoidWatch]:
    """``file_for_download``'s file, and what its download asks before each piece it sends
    (``app.byteranges.file_answer``): a batch voided while the file is sent cuts it off."""
    path, row = await _download(conn, actor, settings, export_id, part, audited)
    if row["batch_no"] is not None:
        return path, VoidWatch(pool, (row["batch_no"],))
    return path, VoidWatch(pool, case_batch_id=row["case_batch_id"])


async def _download(
    conn: Conn, actor: Principal, settings: Settings, export_id: str, part: str, audited: bool
) -> tuple[Path, dict[str, Any]]:
    all_files = await _all_files(conn, actor)
    row = _visible(actor, await _row(conn, export_id), all_files)
    info = row["parts"].get(part)
    if info is None:
        raise NotFound(f"this export has no {part} file")
    if not all_files and info["printer_id"] != actor.org_id:
        raise NotFound(f"this export has no {part} file for you")
    # the batch first: an export of a batch voided before it ran is queued, then failed, and
    # never done — "not ready" kept a printer's tool polling for a file that never comes (a
    # probe)
    if row["batch_state"] == "void":  # its labels are to be destroyed, not printed
        raise Unprocessable("the batch is void", code="batch_void")
    if row["state"] == "failed":  # no file will come of it: export again
        raise Conflict(
            f"the export failed ({row['error'] or 'no reason recorded'}): export the batch again",
            code="export_failed",
        )
    if row["state"] != "done":
        raise Conflict(f"the export is {row['state']}, not done", code="export_not_ready")
    if row["batch_no"] is not None and row["key_version"] not in settings.active_key_versions:
        # its codes no longer verify: labels printed from it would read "not genuine" (a probe:
        # an export of the batch was refused, its earlier files still handed to the printer)
        raise Unprocessable(
            f"the batch's key version {row['key_version']} is retired (TRACECODE_KEY_VERSIONS)",
            code="key_version_retired",
        )
    path = export_file(settings, row["id"], part)
    if not path.exists():
        raise Conflict("the export file is no longer on disk", code="export_file_missing")
    if not audited:
        return path, row
    await audit.record(
        conn,
        actor,
        "download",
        "code_export",
        row["id"],
        after={
            "part": part,
            "printer_id": info["printer_id"],
            "batch_no": row["batch_no"],
            "case_batch_id": row["case_batch_id"],
            "range": [row["range_start"], row["range_end"]],
        },
        org_id=row["brand_id"],
    )
    return path, row


def export_file(settings: Settings, export_id: uuid.UUID | str, part: str) -> Path:
    return settings.export_path / str(export_id) / f"{part}.tcpf"


# The job -----------------------------------------------------------------------------------


def _unit_lines(scheme: Scheme, row: dict[str, Any], start: int, end: int) -> dict[str, bytes]:
    batch_no, version = row["batch_no"], row["key_version"]
    return {
        "outer": scheme.print_lines(
            batch_no, start, end, "outer", row["url_prefix"], version=version
        ),
        "inner": scheme.print_lines(batch_no, start, end, "inner", version=version),
    }


def _case_lines(case: dict[str, Any], url_prefix: str, start: int, end: int) -> dict[str, bytes]:
    ext, prefix, first = case["extension_digit"], case["company_prefix"], case["first_ref"]
    lines = []
    for i in range(start, end):
        sscc = build_sscc(ext, prefix, first + i)
        lines.append(f"{i + 1},{sscc},{url_prefix}{sscc}\n")
    return {"cases": "".join(lines).encode()}


def _steps(start: int, end: int) -> Iterator[tuple[int, int]]:
    for s in range(start, end, STEP):
        yield s, min(s + STEP, end)


def _claim(conn: psycopg.Connection[Any], key: uuid.UUID) -> dict[str, Any] | str:
    """The export claimed for a run (its row), or its state when no run may start: done,
    missing, failed — for good: its readers were told to export again (``_fail_run``; a probe:
    a job's retry finished a failed export, a second set of files of the range) —, or failed
    once ``MAX_RUNS`` runs died (as the orphan sweeper fails it)."""
    from app.ops.orphans import _FAILED as RUNS_DIED  # app.ops imports this module
    from app.ops.orphans import MAX_RUNS

    row = conn.execute(
        f"UPDATE code_exports e SET state = 'running', attempts = attempts + 1, "
        f"started_at = now(), progress = 0, error = NULL "
        f"WHERE id = %s AND state IN ('queued', 'running') AND attempts < %s "
        f"RETURNING {_COLUMNS}",
        (key, MAX_RUNS),
    ).fetchone()
    if row is not None:
        return row
    conn.execute(RUNS_DIED, (key,))
    found = conn.execute("SELECT state FROM code_exports WHERE id = %s", (key,)).fetchone()
    return found["state"] if found else "missing"


#: How long a run waits for its export's run lock before leaving the export to the session that
#: holds it: a killed runner's session, which PostgreSQL closes a moment after its process dies,
#: or the orphan sweeper checking the lock; never a whole run (``run_export``).
RUN_LOCK_GRACE = "2s"


def _take_run_lock(conn: psycopg.Connection[Any], export_id: str) -> bool:
    """Take the export's run lock (``Lock.EXPORT_RUN``, a session advisory lock: held after this
    transaction ends), waiting at most ``RUN_LOCK_GRACE``; false when another session holds it."""
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (RUN_LOCK_GRACE,))
            conn.execute(*locks.acquire(Lock.EXPORT_RUN, export_id))
    except psycopg.errors.LockNotAvailable:
        return False
    return True


def run_export(
    db_url: str,
    settings: Settings,
    scheme: Scheme,
    export_id: str,
    on_progress: Callable[[int, int], None] | None = None,
) -> str:
    """Write the files of an export; return its final state (``running``: another session
    holds it). Safe to run twice or concurrently.

    A run claims the export with a session advisory lock (released if the process dies), writes
    ``*.partial`` files and renames them when complete, so a killed run leaves no half file
    under the final name and the next run starts over with the same plain content. A second run
    (a job delivered twice: the brokers deliver at least once, and the orphan sweeper sends a
    job again while it waits in the broker's queue) waits for the lock only ``RUN_LOCK_GRACE``,
    then leaves the export to its holder and returns: waiting for the whole run parked a worker
    thread for hours, and a few such copies every thread of the worker (a probe). Nothing is
    left undone: the lock goes with its holder's session, so a runner that dies frees it (a
    killed process's session closes within the grace — RabbitMQ delivers a dead worker's job
    again at once; a lost host's once PostgreSQL drops it), and the orphan sweeper sends again
    the job of an export left running with its lock free. Once it has the lock a run finds the
    export done and leaves it, or redoes it if the other runner failed or died — at most
    ``MAX_RUNS`` times in all: a delivery of an export whose runs keep killing their worker
    (the broker delivers an unacknowledged job again each time) fails it as the orphan sweeper
    does, writing nothing.
    """
    key = uuid.UUID(export_id)
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        if not _take_run_lock(conn, export_id):
            log.info("export %s: another session holds its run, left to it", export_id)
            return "running"
        try:
            row = _claim(conn, key)
            if isinstance(row, str):  # no run may start
                if row == "failed":  # its runs died: their partial files go (a probe)
                    shutil.rmtree(settings.export_path / export_id, ignore_errors=True)
                return row
            table, column = (
                ("code_batches", "batch_no") if row["batch_no"] else ("case_batches", "id")
            )
            ref = row["batch_no"] or row["case_batch_id"]

            def check_batch(lock: str = "") -> None:
                batch = conn.execute(
                    f"SELECT state FROM {table} WHERE {column} = %s {lock}", (ref,)
                ).fetchone()
                if batch is None or batch["state"] == "void":
                    raise BatchVoided

            if _failed_as_retired(conn, settings, scheme, row):
                return "failed"
            try:  # voided since it was queued, or while it runs: checked at every step
                check_batch()
                files = _write_files(conn, settings, scheme, row, on_progress, check_batch)
                with conn.transaction():
                    # FOR SHARE: a void under way (it holds the batch) is waited for, and seen
                    check_batch("FOR SHARE")
                    conn.execute(
                        "UPDATE code_exports SET state = 'done', files = %s, progress = %s, "
                        "finished_at = now() WHERE id = %s",
                        (Jsonb(files), row["range_end"] - row["range_start"], key),
                    )
                    conn.execute(
                        f"UPDATE {table} SET state = 'exported' WHERE {column} = %s "
                        "AND state = 'issued'",
                        (ref,),
                    )
            except BatchVoided:  # its labels are to be destroyed: no file (probe AB)
                shutil.rmtree(settings.export_path / str(key), ignore_errors=True)
                conn.execute(
                    "UPDATE code_exports SET state = 'failed', error = 'the batch is void' "
                    "WHERE id = %s",
                    (key,),
                )
                return "failed"
            except Exception as exc:
                log.exception("export %s failed", export_id)  # the whole error, paths too
                _fail_run(conn, key, exc, settings.export_path / export_id)
                raise
            return "done"
        finally:
            conn.execute(*locks.release(Lock.EXPORT_RUN, export_id))


def _fail_run(conn: psycopg.Connection[Any], key: uuid.UUID, exc: Exception, folder: Path) -> None:
    """Record the error a run failed with. A passing one — PostgreSQL unreachable, or the
    transaction rolled back: an ``OperationalError`` other than a statement timeout, as
    ``app.jobs.retry_when`` tells them — leaves the export to be run again, ``running`` with
    the error shown meanwhile: by its job's retry, or by the orphan sweeper for a run inside a
    request (whose 503 says a worker will finish it). Any other fails it for good: its readers
    are told to export again (409 ``export_failed``, the CLI's poll ends), so no run takes it up
    again (``_claim``), and the error is marked ``final_failure``: its job is not retried but
    dead-lettered at once (``app.jobs.retry_when``). Its ``folder`` goes then: a run that failed
    after renaming its ``*.partial`` files left whole printer files of an export no one may
    download, and no later delivery comes to remove them (a review probe)."""
    text = failure_text(exc)[:500]
    passing = isinstance(exc, psycopg.OperationalError)
    if passing and not isinstance(exc, psycopg.errors.QueryCanceled):
        with contextlib.suppress(psycopg.Error):  # its connection may be gone with the server
            conn.execute(
                "UPDATE code_exports SET error = %s WHERE id = %s AND state = 'running'",
                (text, key),
            )
        return
    conn.execute("UPDATE code_exports SET state = 'failed', error = %s WHERE id = %s", (text, key))
    shutil.rmtree(folder, ignore_errors=True)  # failed first: a row left running is run again
    exc.final_failure = True  # type: ignore[attr-defined]


def _failed_as_retired(
    conn: psycopg.Connection[Any], settings: Settings, scheme: Scheme, row: dict[str, Any]
) -> bool:
    """Fail the export, writing nothing, when its key version was retired since it was queued:
    its data keys cannot be made again (a unit export's codes are no longer made; a case export
    recorded before ``NO_KEY_VERSION`` had its data keys wrapped under that version: it is
    asked again). Its error is a stable reason naming the version, where the run failed
    ``UnknownKeyVersion`` with a traceback (and a worker's job was retried)."""
    version = row["key_version"]
    if version == NO_KEY_VERSION or version in scheme.versions:
        return False
    again = "its codes are no longer made" if row["batch_no"] else "export the case batch again"
    shutil.rmtree(settings.export_path / str(row["id"]), ignore_errors=True)
    conn.execute(
        "UPDATE code_exports SET state = 'failed', error = %s WHERE id = %s",
        (f"the key version {version} is retired (TRACECODE_KEY_VERSIONS): {again}", row["id"]),
    )
    return True


def failure_text(exc: BaseException) -> str:
    """What an export's failure tells its readers (the export's ``error``, the API's answer):
    an OS error without its path — the printer reads it, and the server's folders are the
    operator's (a probe) —, anything else as raised."""
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or 'the files could not be written'}"
    return f"{type(exc).__name__}: {exc}"


class BatchVoided(Exception):
    """The export's batch was voided: its run stops (a 6-hour export ran on to the end)."""


def _writers(
    scheme: Scheme, settings: Settings, row: dict[str, Any], handles: dict[str, Any]
) -> dict[str, printfile.Writer]:
    """The encrypted file writer of each part, its header naming the export, part and range."""
    writers = {}
    for name, handle in handles.items():
        part = row["parts"][name]
        metadata = {
            "export_id": str(row["id"]),
            "part": name,
            "printer_id": part["printer_id"],
            "batch_no": row["batch_no"],
            "case_batch_id": row["case_batch_id"],
            "range": [row["range_start"], row["range_end"]],
            "columns": _COLUMNS_OF[name],
        }
        key = data_key(scheme, settings, row["id"], name, row["key_version"])
        writers[name] = printfile.Writer(handle, metadata, part["wrap"], key)
    return writers


def _write_files(
    conn: psycopg.Connection[dict[str, Any]],
    settings: Settings,
    scheme: Scheme,
    row: dict[str, Any],
    on_progress: Callable[[int, int], None] | None,
    check_batch: Callable[[], None],
) -> dict[str, Any]:
    start, end = row["range_start"], row["range_end"]
    case = None
    if row["case_batch_id"] is not None:
        case = conn.execute(
            "SELECT extension_digit, company_prefix, first_ref FROM case_batches WHERE id = %s",
            (row["case_batch_id"],),
        ).fetchone()
    directory = settings.export_path / str(row["id"])
    directory.mkdir(parents=True, exist_ok=True)
    names = list(row["parts"])
    handles = {n: open(directory / f"{n}.tcpf.partial", "wb") for n in names}
    try:
        writers = _writers(scheme, settings, row, handles)
        digests = {name: hashlib.sha256() for name in names if name not in _SECRET_PARTS}
        for s, e in _steps(start, end):
            chunk = (
                _case_lines(case, row["url_prefix"], s, e)
                if case is not None
                else _unit_lines(scheme, row, s, e)
            )
            for name in names:
                if name in digests:
                    digests[name].update(chunk[name])
                writers[name].write(chunk[name])
            conn.execute(
                "UPDATE code_exports SET progress = %s WHERE id = %s", (e - start, row["id"])
            )
            check_batch()
            if on_progress is not None:
                on_progress(e - start, end - start)
        for name in names:
            writers[name].close()
            handles[name].flush()
            os.fsync(handles[name].fileno())
    except BaseException:  # no half file left behind (a killed process leaves one: rewritten)
        for handle in handles.values():
            # closing flushes what is buffered: on a full disk it fails again, and the file
            # must go all the same (a probe: two .partial files stayed, holding the space)
            with contextlib.suppress(OSError):
                handle.close()
            Path(handle.name).unlink(missing_ok=True)
        raise
    finally:
        for handle in handles.values():
            handle.close()
    files: dict[str, dict[str, Any]] = {}
    for name in names:
        partial = directory / f"{name}.tcpf.partial"
        final = directory / f"{name}.tcpf"
        partial.replace(final)
        files[name] = {"bytes": final.stat().st_size, "plain_bytes": writers[name].bytes_in}
        if name in digests:
            files[name]["plain_sha256"] = digests[name].hexdigest()
    return files


# The parts whose plain text is secret keep no digest of it: the inner file's ``seq,pin`` lines
# of a short export are found again from their SHA-256 by trying every PIN (a million tries for
# one label: under a second), without the master key or the passphrase (a probe: the PIN of a
# one-label reprint came back from ``code_exports.files``). AES-GCM checks the file's integrity.
_SECRET_PARTS = frozenset({"inner"})


_COLUMNS_OF = {
    "outer": ["seq", "serial", "url"],
    "inner": ["seq", "pin"],
    "cases": ["seq", "sscc", "url"],
}
