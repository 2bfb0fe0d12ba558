"""The record of serial allocations: who received which ranges, read back and streamed again.

An allocation (``app.codes.allocations``) keeps its ranges, its caller and recipient, never its
codes: they are made again from the ranges whenever they are asked for, the same lines each time
(the Rust core is deterministic). An encrypted file's data key is derived from the master key and
the allocation id (``file_key``, as exports' keys are) and only its wrap is stored, so the file
made again opens with the same passphrase or RSA private key as the first one. The key depends on
no key version (``NO_KEY_VERSION``, as a case export's): a rotation that retires the version
current at allocation time leaves the file fetchable while its batches' versions are active (a
probe: it answered 422 ``not_genuine`` for genuine, live codes). Files recorded before hold the
version then current, and are made again while it is active.

Where the caller sits decides what it reaches (``place``), never the shape of its permissions
(a probe: a contract printer's API key holding ``codes.issue`` read every partner's codes and
PINs, and a printer's user without ``codes.download`` allocated from every batch): brand staff
are the users of the brand's own side (the brand's organisation, its factories and warehouses,
with no organisation of the sales channel above them: planners, line systems); a user at a
printer organisation is that printer's; an API key, and a user in the sales channel (a branch,
an agent, a distributor, a store, or below one), is a partner.

Who sees an allocation (``visible``/``_visible_where``, one rule for reading, listing, tracing
and fetching the codes again): brand staff every allocation of the brand; a printer's users and
a partner the allocations their organisation received. Reading needs ``codes.allocate`` or
``codes.issue``; anything else answers 404, as if it did not exist. Fetching the codes again
needs ``codes.allocate``, and is audited (``fetch_codes``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from app import audit
from app.auth.principal import Principal, path_ids
from app.auth.service import ORG_STATUS
from app.codes import printfile
from app.codes.batches import load_batches, made_under
from app.codes.schemas import AllocationOut, AllocationRangeOut, CodeAllocationOut
from app.codes.scheme import NO_KEY_VERSION, ForgedSerial, Scheme, file_key
from app.config import Settings
from app.db import Conn
from app.errors import Conflict, NotFound, Unprocessable
from app.localtime import aware
from app.orgs.schemas import CHANNEL_KINDS
from app.paging import Page, check_period, fetch_page

Scope = Literal["brand", "printer", "partner"]

COLUMNS = """a.id, a.brand_id, a.pool_id, a.recipient_org_id, a.requested, a.total, a.format,
    a.with_pins, a.note, a.created_by, a.api_key_id, a.client_id, a.created_at,
    COALESCE((SELECT json_agg(json_build_object('batch_no', r.batch_no,
        'first_index', r.first_index, 'last_index', r.last_index,
        'count', r.last_index - r.first_index + 1) ORDER BY r.position)
      FROM code_allocation_ranges r WHERE r.allocation_id = a.id), '[]'::json) AS ranges"""


class Take:
    """One range to give out: indexes ``start..end`` (end exclusive) of a batch."""

    __slots__ = ("batch_no", "end", "start", "version")

    def __init__(self, batch_no: int, start: int, end: int, version: int) -> None:
        self.batch_no, self.start, self.end, self.version = batch_no, start, end, version


class Allocated:
    """An allocation to stream: the record, its ranges, and the file's key wrap and data key.

    ``replayed``: the allocation was made before (a retry with its client id). ``nonce_prefix``:
    the file's, its number among the files made of the allocation (``files_made``, migration
    0145): every file made again is sealed under the same data key, and a random 4-byte prefix
    repeated after ~2^16 of them."""

    __slots__ = ("data_key", "nonce_prefix", "out", "replayed", "takes", "wrap")

    def __init__(
        self,
        out: AllocationOut,
        takes: list[Take],
        wrap: dict[str, Any] | None,
        data_key: bytes | None,
        replayed: bool = False,
        nonce_prefix: bytes | None = None,
    ) -> None:
        self.out, self.takes, self.wrap, self.data_key = out, takes, wrap, data_key
        self.replayed, self.nonce_prefix = replayed, nonce_prefix


async def place(conn: Conn, actor: Principal) -> Scope:
    """Where the caller sits for allocations (module docstring): an API key is a partner (a
    line system's or a partner's server), a user where its organisation sits (``seat``)."""
    if actor.api_key_id is not None:
        return "partner"
    return await seat(conn, actor)


async def seat(conn: Conn, actor: Principal) -> Scope:
    """Where the caller's organisation sits: a printer organisation that printer's; on the
    brand's own side (the brand, its factories and warehouses: no organisation of the sales
    channel on its path) brand staff; in the sales channel a partner. One primary-key read of
    the caller's path."""
    rows = await (
        await conn.execute(
            "SELECT id, kind FROM orgs WHERE id = ANY(%s)", (path_ids(actor.org_path),)
        )
    ).fetchall()
    kinds = {row["id"]: row["kind"] for row in rows}
    if kinds.get(actor.org_id) == "printer":
        return "printer"
    if any(kind in CHANNEL_KINDS for kind in kinds.values()):
        return "partner"
    return "brand"


async def scope(conn: Conn, actor: Principal) -> Scope:
    """Which batches and pools the caller may allocate from (``app.codes.allocations``): 403
    without ``codes.allocate``, then where the caller sits (``place``)."""
    actor.require("codes.allocate")
    return await place(conn, actor)


async def reader_scope(conn: Conn, actor: Principal) -> Scope:
    """Where a reader of allocations sits: 403 without ``codes.allocate`` or ``codes.issue``."""
    actor.require_any("codes.allocate", "codes.issue")
    return await place(conn, actor)


def data_key(
    scheme: Scheme, settings: Settings, allocation_id: uuid.UUID | str, version: int
) -> bytes:
    """The AES-256 key of an allocation's file (``file_key``: never stored), of no key version
    (``NO_KEY_VERSION``) for the files made now, of the version then current for older ones."""
    return file_key(scheme, settings, f"allocation.{uuid.UUID(str(allocation_id)).hex}", version)


def _out(row: dict[str, Any]) -> AllocationOut:
    ranges = [AllocationRangeOut(**r) for r in row.pop("ranges")]
    return AllocationOut(**{**row, "id": str(row["id"])}, ranges=ranges)


async def load(conn: Conn, allocation_id: str) -> AllocationOut | None:
    """The allocation (no visibility check); ``None`` for an unknown or malformed id."""
    try:
        key = uuid.UUID(allocation_id)
    except ValueError:
        return None
    row = await (
        await conn.execute(f"SELECT {COLUMNS} FROM code_allocations a WHERE a.id = %s", (key,))
    ).fetchone()
    return None if row is None else _out(row)


def _sees_all(kind: Scope) -> bool:
    """Brand staff see every allocation of the brand; others those their organisation got."""
    return kind == "brand"


def visible(actor: Principal, kind: Scope, out: AllocationOut | None) -> AllocationOut:
    """``out`` if the caller (sitting at ``kind``: ``place``) may see it (module docstring),
    else 404 ``unknown_allocation``."""
    if out is not None and out.brand_id == actor.brand_id:
        if _sees_all(kind) or out.recipient_org_id == actor.org_id:
            return out
    raise NotFound("allocation not found", code="unknown_allocation")


def _visible_where(actor: Principal, kind: Scope) -> tuple[list[str], dict[str, Any]]:
    where = ["a.brand_id = %(brand)s"]
    params: dict[str, Any] = {"brand": actor.brand_id}
    if not _sees_all(kind):
        where.append("a.recipient_org_id = %(org)s")
        params["org"] = actor.org_id
    return where, params


async def get_allocation(conn: Conn, actor: Principal, allocation_id: str) -> AllocationOut:
    kind = await reader_scope(conn, actor)  # 403 first for a caller who may see none
    return visible(actor, kind, await load(conn, allocation_id))


async def list_allocations(
    conn: Conn,
    actor: Principal,
    *,
    batch_no: int | None = None,
    pool_id: int | None = None,
    client_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: int = 1,
    per_page: int = 50,
) -> Page[AllocationOut]:
    """The allocations the caller sees, newest first, each with its ranges. Filters: a batch
    (any range of it), a pool, a client id, made at or after ``since`` and before ``until``
    (a time without zone is Beijing time, as every listed time filter)."""
    where, params = _visible_where(actor, await reader_scope(conn, actor))
    if batch_no is not None:
        where.append(
            "EXISTS (SELECT 1 FROM code_allocation_ranges r "
            "WHERE r.allocation_id = a.id AND r.batch_no = %(batch)s)"
        )
        params["batch"] = batch_no
    if pool_id is not None:
        where.append("a.pool_id = %(pool)s")
        params["pool"] = pool_id
    if client_id is not None:
        where.append("a.client_id = %(client)s")
        params["client"] = client_id
    check_period(since and aware(since), until and aware(until))
    if since is not None:
        where.append("a.created_at >= %(since)s")
        params["since"] = aware(since)
    if until is not None:
        where.append("a.created_at < %(until)s")
        params["until"] = aware(until)
    return await fetch_page(
        conn,
        columns=COLUMNS,
        source="code_allocations a",
        where=where,
        params=params,
        order="a.created_at DESC, a.id",
        page=page,
        per_page=per_page,
        make=_out,
    )


async def again(
    conn: Conn, scheme: Scheme, settings: Settings, out: AllocationOut, *, made: bool = True
) -> Allocated:
    """What streams ``out``'s codes once more: its ranges, and for a file the stored wrap, the
    derived data key and the file's nonce prefix (409 ``refetch_unavailable`` for a file made
    before keys were kept; 422 ``key_version_retired`` for one whose key was of a version retired
    since: ``_file``). ``made=False``: no file is made (a HEAD), none is counted."""
    ranges = await (
        await conn.execute(
            "SELECT r.batch_no, r.first_index, r.last_index, b.key_version, b.state "
            "FROM code_allocation_ranges r JOIN code_batches b ON b.batch_no = r.batch_no "
            "WHERE r.allocation_id = %s ORDER BY r.position",
            (uuid.UUID(out.id),),
        )
    ).fetchall()
    for r in ranges:  # a probe: a void batch's codes and PINs were handed out again
        if r["state"] == "void":
            raise Unprocessable(
                f"batch {r['batch_no']} is void: its labels are to be destroyed, not printed",
                code="batch_void",
            )
        if r["key_version"] not in scheme.versions:
            raise Unprocessable(
                f"batch {r['batch_no']}'s key version {r['key_version']} is retired "
                "(TRACECODE_KEY_VERSIONS): its codes are no longer made",
                code="key_version_retired",
            )
    takes = [
        Take(r["batch_no"], r["first_index"], r["last_index"] + 1, r["key_version"]) for r in ranges
    ]
    if out.format != "file":
        return Allocated(out, takes, None, None)
    wrap, key, file_no = await _file(conn, scheme, settings, out.id, made)
    return Allocated(out, takes, wrap, key, nonce_prefix=printfile.file_prefix(file_no))


async def _file(
    conn: Conn, scheme: Scheme, settings: Settings, allocation_id: str, made: bool
) -> tuple[dict[str, Any], bytes, int]:
    """An allocation file's stored wrap, its data key, made again (``again``), and the file's
    number (counted in ``files_made`` when ``made``; the first file, the allocation's answer, is
    0): no two files of the allocation share a nonce prefix."""
    query = (
        "UPDATE code_allocations SET files_made = files_made + 1 WHERE id = %s "
        "RETURNING wrap, key_version, files_made - 1 AS file_no"
        if made
        else "SELECT wrap, key_version, files_made AS file_no FROM code_allocations WHERE id = %s"
    )
    row = await (await conn.execute(query, (uuid.UUID(allocation_id),))).fetchone()
    if row is None or row["wrap"] is None:
        raise Conflict(
            "this allocation's file was made before files could be made again",
            code="refetch_unavailable",
        )
    version = row["key_version"]
    if version != NO_KEY_VERSION and version not in scheme.versions:
        # a file recorded before its key depended on no version, under one retired since
        raise Unprocessable(
            f"this allocation's file was encrypted under key version {version}, retired since "
            "(TRACECODE_KEY_VERSIONS): it cannot be made again",
            code="key_version_retired",
        )
    return row["wrap"], data_key(scheme, settings, allocation_id, version), row["file_no"]


async def check_recipient(
    conn: Conn, actor: Principal, org_id: int, field: str = "recipient_org_id"
) -> None:
    """An organisation of the brand (else 404 ``unknown_org``), active with every one above it:
    a pool shared with a closed organisation was made, where a batch for a closed printer is
    refused (a probe): 422 ``org_inactive`` (``field``: the request's field naming it). The
    recipient of a pool, of a pool's allocation, and of an allocation fetched again.

    Its line (it and every organisation above it) is held ``FOR SHARE`` first, read after: a
    deactivation (an UPDATE of one of the rows, ``app.orgs.service.set_status``) committed
    before is seen, one after waits for this transaction, as for a batch's printer
    (``service.check_printer``). Only the brand's rows are locked (another's: 404 at once)."""
    brand = f"/{actor.brand_id}/%"
    await conn.execute(
        "SELECT 1 FROM orgs o JOIN orgs a "
        "ON a.id = ANY(string_to_array(trim(both '/' FROM o.path), '/')::bigint[]) "
        "WHERE o.id = %s AND o.path LIKE %s ORDER BY a.id FOR SHARE OF a",
        (org_id, brand),
    )
    row = await (
        await conn.execute(
            f"SELECT {ORG_STATUS} AS status FROM orgs o WHERE o.id = %s AND o.path LIKE %s",
            (org_id, brand),
        )
    ).fetchone()
    if row is None:
        raise NotFound("recipient organisation not found", code="unknown_org")
    if row["status"] != "active":
        raise Unprocessable(
            f"organisation {org_id} is inactive (or one above it)",
            code="org_inactive",
            details={"field": field},
        )


async def fetch_codes(
    conn: Conn,
    actor: Principal,
    scheme: Scheme,
    settings: Settings,
    allocation_id: str,
    *,
    audited: bool = True,
) -> Allocated:
    """The codes of an allocation again, as first given (lines or the file for the same key);
    audited (``audited=False``: the same checks for a HEAD, which streams nothing)."""
    # 403 without codes.allocate: the codes (and PINs) are for those who allocate
    kind = await scope(conn, actor)
    out = visible(actor, kind, await load(conn, allocation_id))
    # its recipient may have been closed since (a probe: its codes and PINs were streamed again
    # to brand staff after): 422 ``org_inactive``, as a new allocation for it
    await check_recipient(conn, actor, out.recipient_org_id, field="allocation_id")
    made = await again(conn, scheme, settings, out, made=audited)
    if audited:
        await audit.record(
            conn, actor, "fetch_codes", "code_allocation", out.id,
            after={"format": out.format, "total": out.total},
        )  # fmt: skip
    return made


async def allocation_of(
    conn: Conn, actor: Principal, scheme: Scheme, serial: str
) -> CodeAllocationOut:
    """The allocation that gave out a serial (404 ``not_allocated`` if none did).

    400 for a malformed serial and 422 for a forged one, as everywhere (``scheme.verify``; one
    of another key version than its batch's too: ``made_under``)."""
    batch_no, index, version = scheme.verify(serial)
    batch = (await load_batches(conn, [batch_no])).get(batch_no)
    if batch is not None and not made_under(batch, version):
        raise ForgedSerial("serial does not verify under its batch's key version")
    kind = await reader_scope(conn, actor)  # 403 first for a caller who may see none
    row = await (
        await conn.execute(
            "SELECT allocation_id, last_index FROM code_allocation_ranges "
            "WHERE batch_no = %s AND first_index <= %s ORDER BY first_index DESC LIMIT 1",
            (batch_no, index),
        )
    ).fetchone()
    out = None
    if row is not None and row["last_index"] >= index:
        out = await load(conn, str(row["allocation_id"]))
    try:
        found = visible(actor, kind, out)
    except NotFound:
        raise NotFound("no allocation gave out this code", code="not_allocated") from None
    return CodeAllocationOut(
        serial=scheme.serial(batch_no, index, version),
        batch_no=batch_no,
        index=index,
        allocation=found,
    )
