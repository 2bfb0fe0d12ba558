"""SSCC-18 case-code batches per packing level (SPEC C4).

An SSCC is extension digit + GS1 company prefix + serial reference + check digit; the prefix
names the GS1 member that owns the code. A brand's case batches take its own prefix
(``orgs.gs1_company_prefix``, the platform operator's to set); a brand without one takes the
platform's (``TRACECODE_GS1_COMPANY_PREFIX``: a single-brand deployment as before), but only
while no other brand's case batches carry it, nor another brand has it for its own (a probe: a
second brand's pallets were issued under the first brand's prefix) — else 422
``company_prefix_required``. Each batch keeps the prefix it was issued under
(``case_batches.company_prefix``): its codes, printer files and lookups read it from there.
Serial references are counted per prefix (``sscc_refs``, migration 0096: one platform-wide
sequence ran a long prefix's brand out of room on the other brands' pallets), each batch's range
checked against what its prefix leaves (``sscc_capacity``). So that two prefixes' counts never
make one SSCC (0614141 + 012345678 and 06141410 + 12345678), no prefix in use starts another:
a brand's own is checked when it is set (``app.orgs.service.check_company_prefix``), the
platform's when a brand first takes it (``_company_prefix``: 409 ``duplicate_company_prefix``
after the setting was changed to one such).
"""

from __future__ import annotations

from typing import Any

import msgspec

from app import audit
from app._core import build_sscc
from app.auth.principal import Principal
from app.codes.schemas import CaseBatchIn, CaseBatchOut
from app.config import Settings
from app.db import Conn
from app.errors import Conflict, NotFound, Unprocessable
from app.locks import Lock, xact_lock
from app.paging import Page, fetch_page

# The SSCC extension digit says which packing level a case code labels.
EXTENSION_DIGIT = {"inner": 1, "master": 2, "pallet": 3}
_COLUMNS = """c.id, c.brand_id, c.printer_id, c.level, c.extension_digit, c.company_prefix,
    c.first_ref, c.size, c.state, c.note, c.created_by, c.created_at"""


def _out(row: dict[str, Any]) -> CaseBatchOut:
    ext, prefix, first = row["extension_digit"], row["company_prefix"], row["first_ref"]
    return CaseBatchOut(
        **row,
        first_sscc=build_sscc(ext, prefix, first),
        last_sscc=build_sscc(ext, prefix, first + row["size"] - 1),
    )


async def create_case_batch(
    conn: Conn, actor: Principal, settings: Settings, data: CaseBatchIn
) -> tuple[CaseBatchOut, bool]:
    """Allocate ``size`` consecutive SSCC serial references of the brand's prefix. A
    printer's caller (``own_printer``) issues them to its own organisation only (else 404
    ``unknown_printer``), as unit batches."""
    from app.codes.service import check_printer, own_printer

    actor.require("codes.issue")
    brand_id = actor.brand_id
    own = await own_printer(conn, actor)
    if own is not None and data.printer_id != own:
        raise NotFound("printer organisation not found", code="unknown_printer")
    # One allocator of the brand at a time, so request keys are idempotent (a caller, whose
    # keys they are, is of one brand: the lock covers its key).
    await xact_lock(conn, Lock.CASE_ALLOCATION, brand_id)
    if data.request_key is not None:
        earlier = await _requested_before(conn, actor, data)
        if earlier is not None:
            return earlier, False
    await check_printer(conn, actor, data.printer_id)
    prefix = await _company_prefix(conn, brand_id, settings)
    first = await _allocate_refs(conn, prefix, data.size)
    row = await (
        await conn.execute(
            f"""INSERT INTO case_batches AS c (brand_id, printer_id, level, extension_digit,
                    company_prefix, first_ref, size, note, request_key, created_by, api_key_id,
                    caller_org_id)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (
                brand_id,
                data.printer_id,
                data.level,
                EXTENSION_DIGIT[data.level],
                prefix,
                first,
                data.size,
                data.note,
                data.request_key,
                actor.user_id,
                actor.api_key_id,
                actor.org_id,
            ),
        )
    ).fetchone()
    assert row is not None
    out = _out(row)
    await audit.record(conn, actor, "issue", "case_batch", out.id, after=out, org_id=brand_id)
    return out, True


async def _requested_before(conn: Conn, actor: Principal, data: CaseBatchIn) -> CaseBatchOut | None:
    """The batch the caller issued earlier under this request key (its key, as for unit
    batches: ``request_key_owner``), if any; 409 ``request_key_reused`` if it was issued for
    another level, size, printer or note."""
    from app.codes.service import request_key_owner, request_key_params

    assert data.request_key is not None
    _, where = request_key_owner(actor, "c")
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM case_batches c WHERE {where} "
            "ORDER BY c.caller_org_id IS NULL LIMIT 1",
            request_key_params(actor, data.request_key),
        )
    ).fetchone()
    if row is None:
        return None
    asked = (data.level, data.size, data.printer_id, data.note)
    if (row["level"], row["size"], row["printer_id"], row["note"]) != asked:
        raise Conflict("this request key was used for a different batch", code="request_key_reused")
    return _out(row)


async def _company_prefix(conn: Conn, brand_id: int, settings: Settings) -> str:
    """The GS1 company prefix the brand's next case batch is issued under: its own, read
    ``FOR KEY SHARE`` (a change of it, ``app.orgs.service.update_org``, waits for this batch and
    then finds it: 409 ``in_use``), else the platform's while it is no other brand's (see the
    module docstring; decided under the SSCC block lock, so of two brands' first batches one
    comes second and sees the other's)."""
    row = await (
        await conn.execute(
            "SELECT gs1_company_prefix FROM orgs WHERE id = %s FOR KEY SHARE", (brand_id,)
        )
    ).fetchone()
    if row is not None and row["gs1_company_prefix"] is not None:
        return str(row["gs1_company_prefix"])
    prefix = settings.gs1_company_prefix
    await xact_lock(conn, Lock.SSCC_BLOCK, 0)  # as check_company_prefix: one decides first
    found = await (
        await conn.execute(
            """SELECT EXISTS (SELECT 1 FROM case_batches
                               WHERE company_prefix = %(prefix)s AND brand_id = %(brand)s) AS mine,
                      EXISTS (SELECT 1 FROM case_batches
                               WHERE company_prefix = %(prefix)s AND brand_id <> %(brand)s)
                   OR EXISTS (SELECT 1 FROM orgs
                               WHERE kind = 'brand' AND id <> %(brand)s
                                 AND gs1_company_prefix IS NOT NULL
                                 AND (starts_with(gs1_company_prefix, %(prefix)s)
                                      OR starts_with(%(prefix)s, gs1_company_prefix))) AS theirs,
                  (SELECT min(company_prefix) FROM sscc_refs
                    WHERE company_prefix <> %(prefix)s
                      AND (starts_with(company_prefix, %(prefix)s)
                           OR starts_with(%(prefix)s, company_prefix))) AS overlapped""",
            {"prefix": prefix, "brand": brand_id},
        )
    ).fetchone()
    assert found is not None
    if found["overlapped"] is not None:  # the setting was changed to a prefix of one in use
        raise Conflict(
            f"the platform's GS1 company prefix {prefix} and {found['overlapped']}, which case "
            "codes were issued under, start one another: their SSCCs would collide",
            code="duplicate_company_prefix",
            details={"field": "gs1_company_prefix", "brand_id": brand_id},
        )
    if found["theirs"] and not found["mine"]:  # a brand that issued under it before keeps it
        raise Unprocessable(
            f"the brand has no GS1 company prefix of its own and the platform's ({prefix}) is "
            f"another brand's: the platform operator sets the brand's (PATCH /orgs/{brand_id} "
            "gs1_company_prefix) before its first case batch",
            code="company_prefix_required",
            details={"field": "gs1_company_prefix", "brand_id": brand_id},
        )
    return prefix


def sscc_capacity(company_prefix: str) -> int:
    """The last serial reference an SSCC of this company prefix can hold: the digits the prefix
    leaves of the 17-digit body, after the extension digit."""
    return 10 ** (16 - len(company_prefix)) - 1


async def _allocate_refs(conn: Conn, prefix: str, size: int) -> int:
    """The first of ``size`` consecutive serial references of the company prefix (the brand's,
    ``_company_prefix``), its count's row held to the end of the transaction; 422
    ``sscc_range_exhausted`` past what the prefix leaves (a 9-digit one leaves 7 digits), the
    count then rolled back with the refused batch."""
    capacity = sscc_capacity(prefix)
    row = await (
        await conn.execute(
            """INSERT INTO sscc_refs AS r (company_prefix, last_ref) VALUES (%(prefix)s, %(size)s)
               ON CONFLICT (company_prefix) DO UPDATE SET last_ref = r.last_ref + %(size)s
               RETURNING last_ref""",
            {"prefix": prefix, "size": size},
        )
    ).fetchone()
    assert row is not None
    last: int = row["last_ref"]
    if last > capacity:
        raise Unprocessable(
            f"company prefix {prefix} has serial references up to {capacity}, "
            f"{max(0, capacity - (last - size))} left",
            code="sscc_range_exhausted",
        )
    return last - size + 1


async def get_case_batch(
    conn: Conn, actor: Principal, batch_id: int, lock: str = ""
) -> CaseBatchOut:
    """One case batch, seen under the unit batches' rule (``visible_sql``: a probe found
    ``codes.export`` demanded, so a key that issued and voided batches could not void this one,
    and a printer's user could not read the case batches addressed to it); ``lock``: a row
    lock taken of it only when the caller sees it (``FOR UPDATE``)."""
    from app.codes.service import visible_sql

    where, params = await visible_sql(conn, actor, "c")
    row = await (
        await conn.execute(
            f"SELECT {_COLUMNS} FROM case_batches c WHERE c.id = %(id)s AND {where} {lock}",
            {**params, "id": batch_id},
        )
    ).fetchone()
    if row is None:
        raise NotFound("case batch not found")
    return _out(row)


async def void_case_batch(conn: Conn, actor: Principal, batch_id: int, reason: str) -> CaseBatchOut:
    """Void a case batch whose codes are not in use (labels misprinted or stolen): scans refuse
    its codes from now on (``case_void``), and so do exports (a probe: no way to void one).
    409 ``case_batch_in_use`` while a case of it holds goods or sits in a container (unpack
    those first: a probe voided the batch of an emptied case on a pallet, which then could not
    be named to take it off). An upload packing a case holds its batch (``FOR KEY SHARE``,
    ``app.packing.scans``): the void waits for it, or it for the void. A batch the caller does
    not see is 404 at once, its row neither locked nor waited for (``void_batch``'s rule: a
    probe's printer waited on another printer's batch, held up the uploads behind it)."""
    actor.require("codes.issue")
    before = await get_case_batch(conn, actor, batch_id, "FOR UPDATE")
    if before.state == "void":
        return before
    used = await (
        await conn.execute(
            """SELECT count(*) AS n FROM case_state c
                WHERE c.case_batch_id = %(id)s AND c.status = 'active'
                  AND (c.parent_sscc IS NOT NULL
                       OR EXISTS (SELECT 1 FROM unit_state u WHERE u.parent_sscc = c.sscc)
                       OR EXISTS (SELECT 1 FROM case_state k WHERE k.parent_sscc = c.sscc))""",
            {"id": batch_id},
        )
    ).fetchone()
    if used is not None and used["n"]:
        raise Conflict(
            f"{used['n']} cases of this batch are packed: unpack them before voiding it",
            code="case_batch_in_use",
            details={"cases": used["n"]},
        )
    await conn.execute("UPDATE case_batches SET state = 'void' WHERE id = %s", (batch_id,))
    after = await get_case_batch(conn, actor, batch_id)
    await audit.record(
        conn,
        actor,
        "void",
        "case_batch",
        batch_id,
        before=before,
        after={**msgspec.to_builtins(after), "reason": reason},
        org_id=actor.brand_id,
    )
    return after


async def list_case_batches(
    conn: Conn, actor: Principal, page: int, per_page: int
) -> Page[CaseBatchOut]:
    """The case batches the caller sees, newest first (the unit batches' rule: ``visible_sql``)."""
    from app.codes.service import visible_sql

    where, params = await visible_sql(conn, actor, "c")
    return await fetch_page(
        conn,
        columns=_COLUMNS,
        source="case_batches c",
        where=[where],
        params=params,
        order="c.id DESC",
        page=page,
        per_page=per_page,
        make=_out,
    )
