"""Serial allocation (issue 19 item 4): N codes of a batch or of a pool of batches, given once.

Line systems and partners' serialization servers ask for numbers the way QU4RTET's serialbox
does with pools and regions. A batch gives out its indexes in order: ``code_batches.allocated``
is the next index not yet given out, read and advanced under the batch row's lock
(``SELECT … FOR UPDATE``), so concurrent allocations queue on the row and never overlap. A pool
locks its batches in batch-number order (two pools sharing batches cannot deadlock, nor an
allocation and a pool being made, which reads its batches in that order too) and takes from
them in the pool's order, rolling over to the next batch when one is used up.

Every allocation records its ranges (batch, first..last index) keyed by (batch_no, first_index):
a serial's allocation is one index probe. The codes themselves are never stored;
``app.codes.allocation_stream`` makes them from the ranges with the Rust core, and
``app.codes.allocation_records`` reads the records back and streams an allocation's codes again.

A retry is safe with a client id (an idempotency key): the id is locked (an advisory lock of the
caller and the id) and looked up before anything is given out, so a retry of a request whose
answer was lost, even racing the first, finds the first allocation and streams its codes again
(``_replay``); the same id with another request is 409 ``client_id_reused``. An API key's ids
are its own; a user's are shared by the user's organisation (``caller_org_id``).

Who allocates (``codes.allocate``, held at brand level only), by where the caller sits
(``allocation_records.place``), whatever else its role holds:
- brand staff (users of the brand's own side — the brand's organisation, its factories and
  warehouses, no sales channel organisation above them: planners, line systems, brand admins):
  every batch and pool of the brand;
- a printer's users (at a printer organisation): the batches addressed to their printer and
  the pools shared with it;
- a partner (an API key, or a user in the sales channel): only the pools shared with its
  organisation.

A batch is either printed from exports or allocated, never both: allocation refuses a batch with
a printer-file export, and an export refuses a batch with allocated codes. Nor does allocation
give out a batch whose codes reached a line some other way (a unit at or past the batch's next
index is active: the demo's batches, codes made with the master key by hand): 409
``batch_in_use``, and a pool skips such a batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from app import audit
from app.auth.principal import Principal
from app.codes import printfile
from app.codes.allocation_records import (
    Allocated,
    Scope,
    Take,
    again,
    check_recipient,
    data_key,
    load,
    place,
    scope,
    visible,
)
from app.codes.schemas import AllocationIn, AllocationOut, PoolBatchOut, PoolIn, PoolOut
from app.codes.scheme import NO_KEY_VERSION, Scheme
from app.config import Settings
from app.db import Conn
from app.errors import Conflict, Forbidden, NotFound, Unprocessable, ValidationFailed
from app.locks import Lock, xact_lock
from app.paging import Page, fetch_page

_POOL_COLUMNS = "p.id, p.brand_id, p.name, p.recipient_org_id, p.created_by, p.created_at"
# A batch's state for allocation: what is left (nothing once void or printed from an export),
# and whether a code not yet allocated is already active (``in_use``: one range probe of the
# units' primary key).
_BATCH_COLUMNS = """b.batch_no, b.brand_id, b.printer_id, b.size, b.allocated, b.state,
    b.key_version, EXISTS
     (SELECT 1 FROM code_exports e WHERE e.batch_no = b.batch_no) AS exported, EXISTS
     (SELECT 1 FROM unit_state u WHERE u.code >= (b.batch_no::bigint << 32) + b.allocated
         AND u.code < (b.batch_no::bigint << 32) + b.size) AS in_use"""


def _left(row: dict[str, Any], versions: Sequence[int]) -> int:
    """Codes left to give out: none once void, printed from an export, active another way, or
    made under a retired key version (its codes are no longer made: a probe — they were given
    out, then the stream broke on them after its 201)."""
    if row["state"] == "void" or row["exported"] or row["in_use"]:
        return 0
    if row["key_version"] not in versions:
        return 0
    return int(row["size"] - row["allocated"])


# Pools -------------------------------------------------------------------------------------


async def _pool_out(conn: Conn, row: dict[str, Any], versions: Sequence[int]) -> PoolOut:
    batches = await (
        await conn.execute(
            f"SELECT {_BATCH_COLUMNS} FROM code_pool_batches pb "
            "JOIN code_batches b ON b.batch_no = pb.batch_no "
            "WHERE pb.pool_id = %s ORDER BY pb.position",
            (row["id"],),
        )
    ).fetchall()
    items = [
        PoolBatchOut(
            batch_no=b["batch_no"],
            size=b["size"],
            allocated=b["allocated"],
            remaining=_left(b, versions),
            state=b["state"],
        )
        for b in batches
    ]
    return PoolOut(**row, batches=items, remaining=sum(b.remaining for b in items))


def _pool_where(actor: Principal, kind: Scope) -> tuple[list[str], dict[str, Any]]:
    where = ["p.brand_id = %(brand)s"]
    params: dict[str, Any] = {"brand": actor.brand_id}
    if kind != "brand":
        where.append("p.recipient_org_id = %(org)s")
        params["org"] = actor.org_id
    return where, params


async def _pool_recipient(
    conn: Conn, actor: Principal, kind: Scope, org_id: int | None
) -> int | None:
    """Whom a new pool is shared with: brand staff choose any organisation of the brand (or
    none); a printer or partner only its own organisation (given or not; another: 404
    ``unknown_org``)."""
    if kind != "brand":
        if org_id not in (None, actor.org_id):
            raise NotFound("recipient organisation not found", code="unknown_org")
        return actor.org_id
    if org_id is not None:
        await check_recipient(conn, actor, org_id)
    return org_id


async def create_pool(
    conn: Conn, actor: Principal, data: PoolIn, versions: Sequence[int]
) -> PoolOut:
    """A pool of the brand's batches, used up in the order given. Needs both ``codes.issue`` and
    ``codes.allocate`` (planners and brand admins hold both; a role of ``codes.issue`` alone is
    refused: 403 naming ``codes.allocate``).

    Brand staff pool any batch of the brand; a printer or partner (``place``) only the batches
    addressed to its organisation, shared with its organisation (a probe: a contract printer's
    key holding ``codes.issue`` pooled another printer's batch for itself and took its codes):
    another batch is 404 ``unknown_batch``, as when allocating from it directly. A name is taken
    (409 ``pool_name_taken``) by a pool of the same recipient only, one the caller sees."""
    actor.require("codes.issue", "codes.allocate")
    kind = await place(conn, actor)
    if len(set(data.batches)) != len(data.batches):
        raise ValidationFailed("a batch is listed twice", code="duplicate_batch")
    recipient = await _pool_recipient(conn, actor, kind, data.recipient_org_id)
    rows = await (
        await conn.execute(
            # shared, in batch order, as an allocation locks a pool's batches (a probe: the
            # foreign keys of the pool's rows took them in the order given, and a pool listed
            # newest first deadlocked with an allocation from another pool of the same
            # batches); a void or an export waits, or is waited for, and is then seen
            f"SELECT {_BATCH_COLUMNS} FROM code_batches b "
            "WHERE b.batch_no = ANY(%s) AND b.brand_id = %s ORDER BY b.batch_no FOR SHARE",
            (list(data.batches), actor.brand_id),
        )
    ).fetchall()
    found = {r["batch_no"]: r for r in rows if kind == "brand" or r["printer_id"] == actor.org_id}
    for batch_no in data.batches:
        _check_batch(found.get(batch_no), batch_no, versions)
    # unique among the pools of one recipient (migration 0145), so a printer or partner clashes
    # only with a pool it sees (``_pool_where``; a probe: a brand-wide name told a printer the
    # names of the brand's pools, and a name it took first refused the planner's pool)
    existing = await (
        await conn.execute(
            "SELECT 1 FROM code_pools WHERE brand_id = %s AND name = %s "
            "AND recipient_org_id IS NOT DISTINCT FROM %s::bigint",
            (actor.brand_id, data.name, recipient),
        )
    ).fetchone()
    if existing is not None:
        raise Conflict("a pool of this name exists", code="pool_name_taken")
    row = await (
        await conn.execute(
            "INSERT INTO code_pools (brand_id, name, recipient_org_id, created_by) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            (actor.brand_id, data.name, recipient, actor.person),
        )
    ).fetchone()
    assert row is not None
    await conn.execute(
        "INSERT INTO code_pool_batches (pool_id, position, batch_no) "
        "SELECT %s, ord - 1, no FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(no, ord)",
        (row["id"], list(data.batches)),
    )
    out = await _get_pool(conn, actor, kind, row["id"], versions)
    await audit.record(conn, actor, "create", "code_pool", out.id, after=out, org_id=out.brand_id)
    return out


def _check_batch(
    row: dict[str, Any] | None, batch_no: int, versions: Sequence[int]
) -> dict[str, Any]:
    if row is None:
        raise NotFound(f"batch {batch_no} not found", code="unknown_batch")
    if row["state"] == "void":
        raise Unprocessable(f"batch {batch_no} is void", code="batch_void")
    if row["key_version"] not in versions:
        raise Unprocessable(
            f"batch {batch_no}'s key version {row['key_version']} is retired "
            "(TRACECODE_KEY_VERSIONS): its codes are no longer made",
            code="key_version_retired",
        )
    if row["exported"]:
        raise Conflict(
            f"batch {batch_no} is printed from printer-file exports; it cannot be allocated",
            code="batch_exported",
        )
    if row["in_use"]:
        raise Conflict(
            f"batch {batch_no} has active codes that no allocation gave out; it cannot be "
            "allocated (its codes reached the line another way)",
            code="batch_in_use",
        )
    return row


async def get_pool(conn: Conn, actor: Principal, pool_id: int, versions: Sequence[int]) -> PoolOut:
    return await _get_pool(conn, actor, await scope(conn, actor), pool_id, versions)


async def _get_pool(
    conn: Conn, actor: Principal, kind: Scope, pool_id: int, versions: Sequence[int]
) -> PoolOut:
    where, params = _pool_where(actor, kind)
    row = await (
        await conn.execute(
            f"SELECT {_POOL_COLUMNS} FROM code_pools p WHERE p.id = %(id)s AND "
            + " AND ".join(where),
            {**params, "id": pool_id},
        )
    ).fetchone()
    if row is None:
        raise NotFound("pool not found", code="unknown_pool")
    return await _pool_out(conn, row, versions)


async def list_pools(
    conn: Conn, actor: Principal, page: int, per_page: int, versions: Sequence[int]
) -> Page[PoolOut]:
    """The pools the caller may allocate from, newest first, each with what is left."""
    where, params = _pool_where(actor, await scope(conn, actor))
    listed = await fetch_page(
        conn,
        columns=_POOL_COLUMNS,
        source="code_pools p",
        where=where,
        params=params,
        order="p.id DESC",
        page=page,
        per_page=per_page,
        make=lambda row: row,
    )
    items = [await _pool_out(conn, row, versions) for row in listed.items]
    return Page(items=items, total=listed.total, page=listed.page, per_page=listed.per_page)


# Taking codes -------------------------------------------------------------------------------


async def _lock_batch(
    conn: Conn, actor: Principal, kind: Scope, batch_no: int, versions: Sequence[int]
) -> list[dict[str, Any]]:
    where = "b.batch_no = %(no)s AND b.brand_id = %(brand)s"
    if kind == "partner":
        raise Forbidden(
            "a partner allocates from the pools shared with its organisation",
            code="pool_required",
        )
    if kind == "printer":
        where += " AND b.printer_id = %(org)s"
    params = {"no": batch_no, "brand": actor.brand_id, "org": actor.org_id}
    # Locked first, read after: the columns' subqueries (an export of the batch, its active
    # units) see what the transaction that held the lock committed. Read in the locking
    # statement they saw the snapshot taken before the wait: an export committed meanwhile was
    # missed and its codes allocated as well (printed and handed out twice).
    await conn.execute(f"SELECT 1 FROM code_batches b WHERE {where} FOR UPDATE OF b", params)
    row = await (
        await conn.execute(f"SELECT {_BATCH_COLUMNS} FROM code_batches b WHERE {where}", params)
    ).fetchone()
    return [_check_batch(row, batch_no, versions)]


async def _lock_pool(conn: Conn, pool_id: int) -> list[dict[str, Any]]:
    source = "FROM code_pool_batches pb JOIN code_batches b ON b.batch_no = pb.batch_no "
    await conn.execute(  # locked first, read after (see _lock_batch)
        f"SELECT 1 {source} WHERE pb.pool_id = %s ORDER BY b.batch_no FOR UPDATE OF b",
        (pool_id,),
    )
    rows = await (
        await conn.execute(
            f"SELECT pb.position, {_BATCH_COLUMNS} {source} WHERE pb.pool_id = %s", (pool_id,)
        )
    ).fetchall()
    return sorted(rows, key=lambda r: r["position"])


def _plan(
    rows: list[dict[str, Any]], count: int, partial: bool, versions: Sequence[int]
) -> list[Take]:
    """The ranges ``count`` codes take from ``rows`` in order (409 if too few are left)."""
    remaining = sum(_left(r, versions) for r in rows)
    if remaining == 0 or (remaining < count and not partial):
        raise Conflict(
            f"{remaining} codes are left, {count} asked for",
            code="not_enough_codes",
            details={"remaining": remaining, "requested": count},
        )
    takes, wanted = [], count
    for row in rows:
        n = min(_left(row, versions), wanted)
        if n:
            start = row["allocated"]
            takes.append(Take(row["batch_no"], start, start + n, row["key_version"]))
            wanted -= n
    return takes


def _check_request(settings: Settings, data: AllocationIn) -> None:
    if (data.batch_no is None) == (data.pool_id is None):
        raise ValidationFailed("give exactly one of batch_no and pool_id", code="batch_or_pool")
    if data.count > settings.allocation_max:
        raise ValidationFailed(
            f"at most {settings.allocation_max} codes per allocation",
            code="count_over_maximum",
            details={"field": "count", "maximum": settings.allocation_max},
        )
    if data.passphrase is not None and data.format != "file":
        # never plain lines where the caller asked for encryption: say so instead
        raise ValidationFailed(
            'a passphrase encrypts a file: ask for "format": "file", or give no passphrase',
            code="passphrase_needs_file",
            details={"field": "passphrase"},
        )


async def _wrap(
    conn: Conn,
    scheme: Scheme,
    settings: Settings,
    data: AllocationIn,
    recipient: int,
    allocation_id: uuid.UUID,
) -> dict[str, Any] | None:
    """The file's data key (derived from the allocation id, of no key version) wrapped for the
    passphrase or the recipient's RSA key; ``None`` for lines."""
    if data.format != "file":
        return None
    key = data_key(scheme, settings, allocation_id, NO_KEY_VERSION)
    if data.passphrase is not None:
        # scrypt is deliberately slow: keep it off the event loop
        return await asyncio.to_thread(printfile.wrap_with_passphrase, key, data.passphrase)
    row = await (
        await conn.execute("SELECT public_key_pem FROM orgs WHERE id = %s", (recipient,))
    ).fetchone()
    if row is None or not row["public_key_pem"]:
        raise ValidationFailed(
            "give a passphrase, or register the recipient's RSA public key first",
            code="no_wrapping_key",
            details={"field": "passphrase"},
        )
    return printfile.wrap_with_rsa(key, row["public_key_pem"])


# Client ids: a retry answers the first allocation --------------------------------------------


def _fingerprint(data: AllocationIn) -> bytes:
    """SHA-256 of the request without its client id and passphrase (whether one was given
    counts; the passphrase itself is checked against the first allocation's wrap)."""
    bare = msgspec.structs.replace(data, client_id=None, passphrase=None)
    return hashlib.sha256(msgspec.json.encode([bare, data.passphrase is not None])).digest()


async def _earlier(conn: Conn, actor: Principal, client_id: str) -> dict[str, Any] | None:
    """The allocation the caller already made under ``client_id``. The id stays locked until
    the transaction ends, so a concurrent retry waits and then finds the first allocation."""
    if actor.api_key_id is not None:
        owner, where = f"key:{actor.api_key_id}", "a.api_key_id = %(key)s"
    else:
        owner, where = f"org:{actor.org_id}", "a.api_key_id IS NULL AND a.caller_org_id = %(org)s"
    await xact_lock(conn, Lock.ALLOCATION_CLIENT_ID, f"{owner}:{client_id}")
    return await (
        await conn.execute(
            f"SELECT a.id, a.client_hash, a.wrap FROM code_allocations a WHERE {where} "
            "AND a.client_id = %(client)s",
            {"key": actor.api_key_id, "org": actor.org_id, "client": client_id},
        )
    ).fetchone()


async def _same_passphrase(wrap: dict[str, Any] | None, passphrase: str | None) -> bool:
    if passphrase is None or wrap is None or wrap.get("method") != "scrypt+aes-256-gcm":
        return True  # the fingerprint already tells a passphrase from none
    try:
        await asyncio.to_thread(printfile.unwrap, wrap, passphrase=passphrase, private_key_pem=None)
    except printfile.WrongKey:
        return False
    return True


async def _replay(
    conn: Conn,
    actor: Principal,
    kind: Scope,
    scheme: Scheme,
    settings: Settings,
    data: AllocationIn,
    earlier: dict[str, Any],
) -> Allocated:
    """The first allocation again for a retry of the same request (audited ``replay``)."""
    same = bytes(earlier["client_hash"]) == _fingerprint(data)
    if not same or not await _same_passphrase(earlier["wrap"], data.passphrase):
        raise Conflict(
            "this client id was used for another allocation request",
            code="client_id_reused",
            details={"allocation_id": str(earlier["id"])},
        )
    out = visible(actor, kind, await load(conn, str(earlier["id"])))
    # as ``GET /allocations/{id}/codes``: not again to a recipient closed since
    await check_recipient(conn, actor, out.recipient_org_id, field="client_id")
    made = await again(conn, scheme, settings, out)
    await audit.record(
        conn, actor, "replay", "code_allocation", out.id, after={"client_id": data.client_id}
    )
    made.replayed = True
    return made


# Allocating -----------------------------------------------------------------------------------


async def allocate(
    conn: Conn, actor: Principal, settings: Settings, scheme: Scheme, data: AllocationIn
) -> Allocated:
    """Give out ``data.count`` codes once and record who received which ranges (audited); with
    a client id already used by the caller for the same request, the first allocation again.

    The caller commits before streaming the codes: the batch rows stay locked until then."""
    kind = await scope(conn, actor)
    _check_request(settings, data)
    if data.client_id is not None:
        earlier = await _earlier(conn, actor, data.client_id)
        if earlier is not None:
            return await _replay(conn, actor, kind, scheme, settings, data, earlier)
    versions = scheme.versions
    pool = None
    if data.pool_id is not None:
        pool = await _get_pool(conn, actor, kind, data.pool_id, versions)
    recipient = actor.org_id
    if pool is not None and pool.recipient_org_id is not None and kind == "brand":
        recipient = pool.recipient_org_id  # brand staff fetching on the partner's behalf
    allocation_id = uuid.uuid4()
    # (scrypt) before any row is locked
    wrap = await _wrap(conn, scheme, settings, data, recipient, allocation_id)
    if pool is not None and pool.recipient_org_id is not None:
        # the organisation the pool was shared with may have been closed since (a probe: codes
        # and PINs given out to it, 201): held, as the batches next, to the commit
        await check_recipient(conn, actor, pool.recipient_org_id, field="pool_id")
    if pool is not None:
        rows = await _lock_pool(conn, pool.id)
    else:
        assert data.batch_no is not None
        rows = await _lock_batch(conn, actor, kind, data.batch_no, versions)
    takes = _plan(rows, data.count, data.partial, versions)
    for take in takes:
        await conn.execute(
            "UPDATE code_batches SET allocated = %s, "
            "state = CASE WHEN state = 'issued' THEN 'exported' ELSE state END "
            "WHERE batch_no = %s",
            (take.end, take.batch_no),
        )
    out = await _record(
        conn, actor, data, takes, allocation_id=allocation_id, pool=pool, recipient=recipient,
        wrap=wrap,
    )  # fmt: skip
    if wrap is None:
        return Allocated(out, takes, None, None)
    key = data_key(scheme, settings, allocation_id, NO_KEY_VERSION)
    # the allocation's first file (``_record`` counts it in ``files_made``)
    return Allocated(out, takes, wrap, key, nonce_prefix=printfile.file_prefix(0))


async def _record(
    conn: Conn,
    actor: Principal,
    data: AllocationIn,
    takes: list[Take],
    *,
    allocation_id: uuid.UUID,
    pool: PoolOut | None,
    recipient: int,
    wrap: dict[str, Any] | None,
) -> AllocationOut:
    """Write the allocation, its ranges and its audit row (``allocate``)."""
    total = sum(t.end - t.start for t in takes)
    await conn.execute(
        """INSERT INTO code_allocations (id, brand_id, pool_id, recipient_org_id, requested,
               total, format, with_pins, note, created_by, api_key_id, caller_org_id, client_id,
               client_hash, key_version, wrap, files_made)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            allocation_id,
            actor.brand_id,
            pool.id if pool else None,
            recipient,
            data.count,
            total,
            data.format,
            data.pins,
            data.note,
            actor.user_id,
            actor.api_key_id,
            actor.org_id,
            data.client_id,
            None if data.client_id is None else _fingerprint(data),
            None if wrap is None else NO_KEY_VERSION,  # the file's key: of no key version
            None if wrap is None else Jsonb(wrap),
            0 if wrap is None else 1,  # the answer's file is the first, nonce prefix 0
        ),
    )
    await conn.execute(
        "INSERT INTO code_allocation_ranges (batch_no, first_index, last_index, allocation_id, "
        "position) SELECT b, f, l, %s, ord - 1 FROM unnest(%s::bigint[], %s::bigint[], "
        "%s::bigint[]) WITH ORDINALITY AS t(b, f, l, ord)",
        (
            allocation_id,
            [t.batch_no for t in takes],
            [t.start for t in takes],
            [t.end - 1 for t in takes],
        ),
    )
    out = await load(conn, str(allocation_id))
    assert out is not None
    summary = {
        "pool_id": out.pool_id,
        "recipient_org_id": recipient,
        "requested": out.requested,
        "total": out.total,
        "format": out.format,
        "with_pins": out.with_pins,
        "client_id": out.client_id,
        "ranges": [[r.batch_no, r.first_index, r.last_index] for r in out.ranges],
    }
    await audit.record(conn, actor, "allocate", "code_allocation", out.id, after=summary)
    return out
