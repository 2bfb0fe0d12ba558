"""Code issuance: batches of unit codes (SPEC C2). A batch is one row, never one per code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app import audit
from app.auth.principal import Principal
from app.codes.allocation_records import seat
from app.codes.batches import code_id, load_batches, made_under
from app.codes.lookup import VOID_STATES, case_label
from app.codes.schemas import BatchIn, BatchOut, CodeStatusOut, PrinterOut
from app.codes.scheme import (
    SERIAL_LENGTH,
    ForgedSerial,
    Scheme,
    serial_from_scan,
    sscc_from_scan,
)
from app.config import Settings
from app.db import Conn
from app.errors import BadRequest, Conflict, NotFound, Unprocessable, ValidationFailed
from app.events import builders
from app.events.log import NewEvent, allocate_ids, write_events
from app.events.stock import StockColumn, new_deltas, write_deltas
from app.locks import Lock, xact_lock
from app.paging import Page, fetch_page

_COLUMNS = """b.batch_no, b.brand_id, b.printer_id, b.product_id, b.size, b.key_version, b.state,
    b.note, b.request_key, b.created_by, b.created_at, b.voided_at, b.void_reason"""


async def check_printer(conn: Conn, actor: Principal, printer_id: int) -> None:
    """The printer must be an active organisation of kind printer in the caller's brand.

    Its row is read ``FOR SHARE``, held to the end of the transaction: a deactivation
    (``app.orgs.service.set_status``: an UPDATE of the row) committed before is seen, one
    after waits for this transaction. Read unlocked, a deactivation committed between the read
    and the batch's INSERT was missed: a batch issued to a closed printer (a probe). Not
    ``FOR KEY SHARE`` (as a foreign key takes), which an UPDATE of the status does not wait for;
    nor the brand's ``ROLE_NAMES`` lock that ``set_status`` takes, which would queue every
    issuance of the brand behind the others. Call it after anything else the insert waits for
    (``_product``), so no deactivation waits behind that too. Another brand's row is never
    locked: 404 at once, as for none."""
    row = await (
        await conn.execute(
            "SELECT kind, path, status FROM orgs WHERE id = %s AND path LIKE %s FOR SHARE",
            (printer_id, f"/{actor.brand_id}/%"),
        )
    ).fetchone()
    if row is None:
        raise NotFound("printer organisation not found", code="unknown_printer")
    if row["kind"] != "printer":
        raise ValidationFailed(
            "printer_id must be an organisation of kind printer",
            code="not_a_printer",
            details={"field": "printer_id"},
        )
    if row["status"] != "active":
        raise Unprocessable("the printer organisation is inactive", code="printer_inactive")


async def _product(conn: Conn, actor: Principal, product_id: int) -> None:
    """The product must be the caller's brand's. Held ``FOR KEY SHARE`` (as the batch's foreign
    key holds it) before the printer is checked: the insert then waits for nothing of the
    product's while the printer is held (``check_printer``)."""
    row = await (
        await conn.execute(
            "SELECT 1 FROM products p JOIN orgs o ON o.id = p.org_id "
            "WHERE p.id = %s AND o.path LIKE %s FOR KEY SHARE OF p",
            (product_id, f"/{actor.brand_id}/%"),
        )
    ).fetchone()
    if row is None:
        raise NotFound("product not found", code="unknown_product")


async def own_printer(conn: Conn, actor: Principal) -> int | None:
    """Whose batches the caller reaches, by where its organisation sits
    (``allocation_records.seat``; an API key as its organisation's user), never by the shape of
    its permissions: ``None`` for brand staff (every batch of the brand), else its organisation
    — a printer's (or a partner's) caller reaches only the batches addressed to it (a probe: a
    contract printer's key holding ``codes.issue`` listed, read and voided every printer's
    batches, and with ``codes.export`` exported them to itself)."""
    return None if await seat(conn, actor) == "brand" else actor.org_id


def request_key_owner(actor: Principal, alias: str) -> tuple[str, str]:
    """Whose request key it is, as an allocation's client id (``allocations._earlier``): an API
    key's keys are its own, a user's are shared by the user's organisation. Returns the lock's
    owner text and the condition matching the caller's batches under ``%(rk)s`` — or one kept
    from before keys were the caller's that could not be attributed (no ``caller_org_id``:
    migration 0090), which stays the brand's (``%(brand)s``). A probe: keys were the brand's,
    so two contract printers' servers both numbering ``run-1`` collided (409 for the second, of
    a batch it cannot see)."""
    if actor.api_key_id is not None:
        owner, mine = f"key:{actor.api_key_id}", f"{alias}.api_key_id = %(key)s"
    else:
        owner = f"org:{actor.org_id}"
        mine = f"{alias}.api_key_id IS NULL AND {alias}.caller_org_id = %(org)s"
    where = (
        f"(({mine} AND {alias}.request_key = %(rk)s) OR ({alias}.caller_org_id IS NULL "
        f"AND {alias}.brand_id = %(brand)s AND {alias}.request_key = %(rk)s))"
    )
    return owner, where


def request_key_params(actor: Principal, request_key: str) -> dict[str, Any]:
    """The parameters of ``request_key_owner``'s condition."""
    return {
        "key": actor.api_key_id,
        "org": actor.org_id,
        "brand": actor.brand_id,
        "rk": request_key,
    }


async def _requested_before(conn: Conn, actor: Principal, data: BatchIn) -> BatchOut | None:
    """The batch the caller issued earlier under this request key, if any; 409
    ``request_key_reused`` if it was issued for another size, printer, product or note. The
    caller's key stays locked until the transaction ends, so a concurrent retry waits and then
    finds the first batch."""
    assert data.request_key is not None
    owner, where = request_key_owner(actor, "b")
    await xact_lock(conn, Lock.BATCH_REQUEST_KEY, f"{owner}:{data.request_key}")
    existing = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM code_batches b WHERE {where} "
            "ORDER BY b.caller_org_id IS NULL LIMIT 1",
            request_key_params(actor, data.request_key),
        )
    ).fetchone()
    if existing is None:
        return None
    out = BatchOut(**existing)
    # the note too (a probe: a retry with another note was answered with the first batch, the
    # new note dropped)
    asked = (data.size, data.printer_id, data.product_id, data.note)
    if (out.size, out.printer_id, out.product_id, out.note) != asked:
        raise Conflict("this request key was used for a different batch", code="request_key_reused")
    return out


async def create_batch(
    conn: Conn, actor: Principal, settings: Settings, data: BatchIn
) -> tuple[BatchOut, bool]:
    """Issue a batch; returns (batch, created). The caller's request key sent again returns the
    first batch (``_requested_before``); another caller's same key is another request.

    A caller that is not brand staff (``own_printer``) issues batches addressed to its own
    organisation only: another printer is 404 ``unknown_printer``."""
    actor.require("codes.issue")
    brand_id = actor.brand_id
    own = await own_printer(conn, actor)
    if own is not None and data.printer_id != own:
        raise NotFound("printer organisation not found", code="unknown_printer")
    if data.request_key is not None:
        earlier = await _requested_before(conn, actor, data)
        if earlier is not None:
            return earlier, False
    if data.product_id is not None:
        await _product(conn, actor, data.product_id)
    await check_printer(conn, actor, data.printer_id)  # held to the commit: last before the insert
    row = await (
        await conn.execute(
            """INSERT INTO code_batches
                   (batch_no, brand_id, printer_id, product_id, size, key_version, note,
                    request_key, created_by, api_key_id, caller_org_id)
               VALUES (nextval('code_batch_no_seq'), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               RETURNING batch_no""",
            (
                brand_id,
                data.printer_id,
                data.product_id,
                data.size,
                settings.current_key_version,
                data.note,
                data.request_key,
                actor.user_id,
                actor.api_key_id,
                actor.org_id,
            ),
        )
    ).fetchone()
    assert row is not None
    out = await _get(conn, row["batch_no"])
    await audit.record(conn, actor, "issue", "code_batch", out.batch_no, after=out, org_id=brand_id)
    return out, True


async def _get(conn: Conn, batch_no: int) -> BatchOut:
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM code_batches b WHERE b.batch_no = %s", (batch_no,)
        )
    ).fetchone()
    if row is None:
        raise NotFound("batch not found")
    return BatchOut(**row)


async def visible_sql(conn: Conn, actor: Principal, alias: str = "b") -> tuple[str, dict[str, Any]]:
    """Who sees a batch, unit or case (``alias``: its table's; one rule for both, README: case
    batches are "seen … under the unit batches' rule"): brand staff holding ``codes.issue`` or
    ``codes.export`` see their brand's batches; any other caller with one of those or
    ``codes.download`` (a printer's, wherever its permissions say otherwise: ``own_printer``)
    the batches addressed to its organisation. 403 without any of the three."""
    if not actor.has_any("codes.issue", "codes.export", "codes.download"):
        actor.require("codes.issue")
    brand = {"brand": actor.brand_id}
    where = f"{alias}.brand_id = %(brand)s"
    if actor.has_any("codes.issue", "codes.export") and await own_printer(conn, actor) is None:
        return where, brand
    return f"{where} AND {alias}.printer_id = %(org)s", {**brand, "org": actor.org_id}


async def get_batch(conn: Conn, actor: Principal, batch_no: int) -> BatchOut:
    where, params = await visible_sql(conn, actor)
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM code_batches b WHERE b.batch_no = %(no)s AND {where}",
            {**params, "no": batch_no},
        )
    ).fetchone()
    if row is None:
        raise NotFound("batch not found")
    return BatchOut(**row)


async def list_batches(
    conn: Conn,
    actor: Principal,
    *,
    state: str | None,
    printer_id: int | None,
    product_id: int | None,
    page: int,
    per_page: int,
) -> Page[BatchOut]:
    where, params = await visible_sql(conn, actor)
    clauses = [where]
    for column, value in (("state", state), ("printer_id", printer_id), ("product_id", product_id)):
        if value is not None:
            clauses.append(f"b.{column} = %({column})s")
            params[column] = value
    return await fetch_page(
        conn,
        columns=_COLUMNS,
        source="code_batches b",
        where=clauses,
        params=params,
        order="b.batch_no DESC",
        page=page,
        per_page=per_page,
        make=lambda row: BatchOut(**row),
    )


async def void_batch(conn: Conn, actor: Principal, batch_no: int, reason: str) -> BatchOut:
    """Void a batch: its codes verify as void from now on (printed labels to be destroyed)."""
    actor.require("codes.issue")
    # an upload activating its codes holds the batch (FOR KEY SHARE, app.packing.scans): the
    # void waits for it, so its units are voided too, or the upload for the void, which then
    # refuses them. Only a batch the caller sees is locked (``visible_sql``): locked by number
    # alone, another brand's void of it waited for our transactions on the row, then answered
    # 404 — a wait telling it the batch exists and is busy, and its lock held ours up (a probe)
    where, params = await visible_sql(conn, actor)
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM code_batches b WHERE b.batch_no = %(no)s AND {where} "
            "FOR UPDATE",
            {**params, "no": batch_no},
        )
    ).fetchone()
    if row is None:
        raise NotFound("batch not found")
    before = BatchOut(**row)
    if before.state == "void":
        return before
    # every active unit of the batch in one statement: as long as it takes (no API time limit)
    await conn.execute("SET LOCAL statement_timeout = 0")
    await conn.execute(
        "UPDATE code_batches SET state = 'void', voided_at = now(), voided_by = %s, "
        "void_reason = %s WHERE batch_no = %s",
        (actor.person, reason, batch_no),  # a key's void: its maker's
    )
    await _decommission(conn, actor, batch_no, reason)
    after = await _get(conn, batch_no)
    await audit.record(
        conn,
        actor,
        "void",
        "code_batch",
        batch_no,
        before=before,
        after=after,
        org_id=before.brand_id,
    )
    return after


async def _decommission(conn: Conn, actor: Principal, batch_no: int, reason: str) -> None:
    """The batch's activated units become void too: a decommissioning event per place they are
    at (their holder, or the receiver of a shipment they are on), their state, and the stock
    they leave (the same transaction as the batch's void). An event at the voider's place only
    was none of the holders' (a probe: an agent's EPCIS feed never showed the units leave its
    stock, and its trace hid the reason). A void unit leaves its case, as a replaced one does
    (``packing.edits.replace``), with an unpacking event per case (``_unpackings``): a probe
    found the void units left inside, and their case could then be neither unpacked (409
    ``not_on_hand``) nor shipped (409 ``void``), its good units stuck."""
    ids = await allocate_ids(conn, 1)
    # the old parent from the row as locked (RETURNING gives the new one, NULL)
    rows = await (
        await conn.execute(
            """UPDATE unit_state u SET status = 'void', disposition = 'inactive',
                   parent_sscc = NULL, last_event_id = %s, updated_at = now()
               FROM (SELECT code, parent_sscc FROM unit_state
                     WHERE code >= %s AND code < %s AND status = 'active' FOR UPDATE) old
               WHERE u.code = old.code
               RETURNING u.code, u.holder_org_id, u.transit_to, u.product_id, u.lot,
                         old.parent_sscc""",
            (ids[0], code_id(batch_no, 0), code_id(batch_no + 1, 0)),
        )
    ).fetchall()
    if not rows:
        return
    deltas = new_deltas()
    places: dict[int, list[int]] = {}
    for row in rows:
        where = row["transit_to"] or row["holder_org_id"]
        column: StockColumn = "in_transit" if row["transit_to"] else "on_hand"
        deltas[(where, row["product_id"], row["lot"], column)] -= 1
        places.setdefault(where, []).append(row["code"])
    now = datetime.now(UTC)
    # the units' last event is the first of them (a void unit's is read by nothing else)
    event_ids = [ids[0], *await allocate_ids(conn, len(places) - 1)]
    events = [
        builders.decommission(
            id=event_id,
            brand_id=actor.brand_id,
            at=now,
            units=units,
            biz_location=place,
            recorded_by=actor.person,
            details={"batch_no": batch_no, "reason": reason},
        )
        for event_id, (place, units) in zip(event_ids, sorted(places.items()), strict=True)
    ]
    events += await _unpackings(conn, actor, rows, now, {"batch_no": batch_no, "reason": reason})
    await write_events(conn, events)
    await write_deltas(conn, deltas, ids[0])


async def _unpackings(
    conn: Conn, actor: Principal, rows: list[dict[str, Any]], at: datetime, details: dict[str, Any]
) -> list[NewEvent]:
    """One AggregationEvent DELETE per case the voided units (``rows``) left, at its holder —
    the implicit unpacking a movement writes for goods that leave their case
    (``logistics.movements``, which numbers them after its movement's event too); the case keeps
    the rest."""
    inside: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        if row["parent_sscc"] is not None:
            inside.setdefault(row["parent_sscc"], []).append(row)
    if not inside:
        return []
    ids = await allocate_ids(conn, len(inside))
    return [
        builders.disaggregate(
            id=event_id,
            brand_id=actor.brand_id,
            at=at,
            parent=parent,
            units=[row["code"] for row in units],
            biz_location=units[0]["holder_org_id"],
            recorded_by=actor.person,
            details=details,
        )
        for event_id, (parent, units) in zip(ids, sorted(inside.items()), strict=True)
    ]


async def code_status(conn: Conn, actor: Principal, scheme: Scheme, serial: str) -> CodeStatusOut:
    """Where a serial stands in its lifecycle (issued, not active / active / void / unknown).

    Verification without the database first (``scheme.verify`` raises for malformed and forged
    serials); then the batch (a serial of another key version than its batch's is forged, void,
    never issued) and the unit's state row (activated on a line, voided by a replacement)
    decide. ``GET /trace/{serial}`` has the whole history.

    Who may ask is who sees the batch (its brand's planners; a printer's caller holding
    ``codes.issue`` or ``codes.export`` the batches addressed to it: ``own_printer``) or the
    unit (held by, or on its way to, the caller's subtree); to anyone else the code is
    ``unknown``, as ``/trace`` answers 404.

    The serial is read as every reader reads a scan (``serial_from_scan``: full-width, a BOM,
    blanks; a probe: 400 here, ``active`` at ``/trace``); a case's code is no serial, 400 —
    its ``00{SSCC}`` label too, which the Rust core would call forged (a probe: 422)."""
    actor.require("orgs.read")
    text = serial_from_scan(serial)
    if case_label(text) or (len(text) != SERIAL_LENGTH and sscc_from_scan(text) is not None):
        raise BadRequest(
            "a case's code (SSCC), not a unit serial: GET /trace/{code} follows a case",
            code="malformed_serial",
        )
    batch_no, index, version = scheme.verify(text)
    canonical = scheme.serial(batch_no, index, version)
    unknown = CodeStatusOut(
        serial=canonical, status="unknown", batch_no=None, index=None, key_version=None
    )
    batch = (await load_batches(conn, [batch_no])).get(batch_no)
    if batch is not None and not made_under(batch, version):  # 422, as a forged serial
        raise ForgedSerial("serial does not verify under its batch's key version")
    if batch is None or batch.brand_id != actor.brand_id or index >= batch.size:
        return unknown
    row = await (
        await conn.execute(
            """SELECT u.status, h.path AS holder_path, t.path AS transit_path
               FROM unit_state u JOIN orgs h ON h.id = u.holder_org_id
               LEFT JOIN orgs t ON t.id = u.transit_to WHERE u.code = %s""",
            (code_id(batch_no, index),),
        )
    ).fetchone()
    sees_batch = actor.has_any("codes.issue", "codes.export") and (
        await own_printer(conn, actor) in (None, batch.printer_id)
    )
    sees_unit = row is not None and (
        actor.sees(row["holder_path"])
        or (row["transit_path"] is not None and actor.sees(row["transit_path"]))
    )
    if not (sees_batch or sees_unit):
        return unknown
    if batch.state == "void":
        status = "void"
    elif row is None:
        status = "issued_not_active"
    else:
        status = "void" if row["status"] in VOID_STATES else "active"
    return CodeStatusOut(
        serial=canonical, status=status, batch_no=batch_no, index=index, key_version=version
    )


async def set_printer_key(conn: Conn, actor: Principal, printer_id: int, pem: str) -> None:
    """Register a printer's RSA public key: the printer's own users, or those of the tree who
    may both manage organisations and export printer files (the key decides who reads the
    files: probe T found an ERP partner's key, with ``orgs.write`` only, re-keying a printer)."""
    from app.codes.printfile import PrintFileError, public_key

    row = await (
        await conn.execute("SELECT kind, path FROM orgs WHERE id = %s", (printer_id,))
    ).fetchone()
    own = actor.org_id == printer_id and actor.has("codes.download")
    if not own:
        actor.require("orgs.write", "codes.export")
        actor.ensure_sees(row["path"] if row else None, "printer organisation")
    if row is None or row["kind"] != "printer":
        raise NotFound("printer organisation not found", code="unknown_printer")
    try:  # stored as its public part only, in one spelling
        pem = public_key(pem).export_key("PEM").decode()
    except PrintFileError as exc:
        raise ValidationFailed(str(exc), code="invalid_public_key") from None
    # held as the UPDATE would hold it: a key set meanwhile is waited for, then compared
    held = await (
        await conn.execute(
            "SELECT public_key_pem FROM orgs WHERE id = %s FOR NO KEY UPDATE", (printer_id,)
        )
    ).fetchone()
    if held is not None and held["public_key_pem"] == pem:  # the key it has already (a retry):
        # no write, no row (a probe: a ``set_public_key`` row each time)
        return
    await conn.execute("UPDATE orgs SET public_key_pem = %s WHERE id = %s", (pem, printer_id))
    await audit.record(
        conn,
        actor,
        "set_public_key",
        "org",
        printer_id,
        after={"public_key_pem": pem},
        org_id=printer_id,
    )


async def list_printers(conn: Conn, actor: Principal, page: int, per_page: int) -> Page[PrinterOut]:
    """The printer organisations the caller may address batches and files to (planners choose
    where files go): brand staff every one of the brand, anyone else (``own_printer``) its own
    organisation only — a probe: a contract printer's key listed the brand's other printers.
    Any permission of code issuance lets the caller list them (README: "a caller at a printer:
    its own only"): a probe found the demo printer user (``codes.download``,
    ``codes.allocate``) refused, so it could not learn its id nor whether its RSA key, which it
    registers itself, was there."""
    actor.require_any("codes.issue", "codes.export", "codes.download", "codes.allocate")
    where = ["kind = 'printer'", "path LIKE %(prefix)s"]
    params: dict[str, Any] = {"prefix": f"/{actor.brand_id}/%"}
    own = await own_printer(conn, actor)
    if own is not None:
        where.append("id = %(own)s")
        params["own"] = own
    return await fetch_page(
        conn,
        columns="id, name, erp_code, status, public_key_pem IS NOT NULL AS has_public_key",
        source="orgs",
        where=where,
        params=params,
        order="id",
        page=page,
        per_page=per_page,
        make=lambda row: PrinterOut(**row),
    )
