"""Reading scanned codes: units by serial, cases by SSCC, in bulk — the one code lookup.

``read_codes`` turns scanned texts into ``Read`` results in a handful of queries however many
there are: the Rust core verifies every serial at once, batches and case batches are loaded once.
Packing, logistics, inspection and trace all read codes through it; it imports no domain (only
``app.codes``' scheme and batches and the database helper), so every domain may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from app._core import VERIFY_MALFORMED, VERIFY_OK
from app.codes.batches import code_id, load_batches, made_under
from app.codes.scheme import (
    Scheme,
    gtin_from_scan,
    is_valid_sscc,
    scanned,
    serial_from_scan,
    sscc_from_scan,
)
from app.db import Conn, array

LEVEL_RANK = {"unit": 0, "inner": 1, "master": 2, "pallet": 3}
VOID_STATES = ("void", "destroyed")  # a unit or case in these states is goods no more


@dataclass(slots=True)
class Read:
    """One scanned code: what it is, or why it is refused (``reason``)."""

    kind: Literal["unit", "case"]
    label: str  # canonical serial or SSCC, for answers
    code: int = 0  # unit code id, or the SSCC as a number
    level: str = "unit"  # unit, or the case's packing level
    batch: int = 0  # unit batch_no, or case batch id
    batch_product: int | None = None
    reason: str | None = None
    gtin: str | None = None  # the product a Digital Link scan names (checked against the code's)


def case_label(text: str) -> bool:
    """20 characters that are a GS1-128 case label as a scanner sends it: ``00`` and a valid
    SSCC, no brackets (a probe: taken for a unit serial, a genuine case was "forged"). A unit
    serial of that shape is a chance of about one in 10^10 (digits only, then the check digit)."""
    return text.startswith("00") and text.isdigit() and is_valid_sscc(text[2:])


LABEL_MAX = 64  # characters of a scanned text kept as the label of a code that is not one


def _label(text: str, serial: str) -> str:
    """How a scanned text that is not (yet) a known code is named: the text as read, or — past
    ``LABEL_MAX`` — the serial it carries (a probe: forged tags in a long QR URL, or a Digital
    Link with a lot, were kept as the URL's first 64 characters, no serial left, and different
    fakes shared one alert)."""
    text = text.strip()
    return text if len(text) <= LABEL_MAX else serial.strip()[:LABEL_MAX]


async def read_codes(conn: Conn, scheme: Scheme, brand_id: int, texts: list[str]) -> list[Read]:
    """Classify and check every text: genuine codes of this brand, from batches not void. A
    serial of another key version than its batch's is ``forged`` (``made_under``)."""
    reads: list[Read] = []
    unit_at: list[int] = []
    serials: list[str] = []
    case_at: list[int] = []
    for i, text in enumerate(texts):
        if not text.isascii():  # typed full-width, or with a BOM (a probe: "counterfeit")
            text = scanned(text)
        if len(text) == 20 and text.isalnum() and not case_label(text):  # a bare serial
            reads.append(Read("unit", text))
            unit_at.append(i)
            serials.append(text)
            continue
        sscc = sscc_from_scan(text)
        if sscc is not None:
            read = Read("case", sscc)
            if is_valid_sscc(sscc):
                read.code = int(sscc)
                case_at.append(i)
            else:
                read.reason = "invalid_sscc"
        else:
            serial = serial_from_scan(text)
            read = Read("unit", _label(text, serial), gtin=gtin_from_scan(text))
            unit_at.append(i)
            serials.append(serial)
        reads.append(read)
    if unit_at:
        verdicts = scheme.verify_many(serials)
        batches = await load_batches(conn, {v[1] for v in verdicts if v[0] == VERIFY_OK})
        for i, (status, batch_no, index, version) in zip(unit_at, verdicts, strict=True):
            read = reads[i]
            if status != VERIFY_OK:
                read.reason = "malformed" if status == VERIFY_MALFORMED else "forged"
                continue
            batch = batches.get(batch_no)
            if batch is not None and not made_under(batch, version):  # never printed
                read.reason = "forged"
                continue
            read.label = scheme.serial(batch_no, index, version)  # the canonical spelling
            read.code = code_id(batch_no, index)
            read.batch = batch_no
            if batch is None or batch.brand_id != brand_id or index >= batch.size:
                read.reason = "unknown"
            elif batch.state == "void":
                read.reason = "void"
            else:
                read.batch_product = batch.product_id
        await _check_gtins(conn, [reads[i] for i in unit_at])
    if case_at:
        found = await _case_batches(conn, brand_id, [reads[i].label for i in case_at])
        for i in case_at:
            read = reads[i]
            row = found.get(read.label)
            if row is None:
                read.reason = "unknown_case"
                continue
            read.level, read.batch = row["level"], row["id"]  # a void one's too, as a unit's
            if row["state"] == "void":  # (a probe: the trace of a case of a void batch: a 500)
                read.reason = "case_void"
    return reads


async def _check_gtins(conn: Conn, reads: list[Read]) -> None:
    """A Digital Link naming another product's GTIN than the unit's is ``wrong_product`` (the
    serial alone found the unit; a unit of one product never answers to another's GTIN). The
    unit's product is the one it was activated as, else its batch's (a probe: a unit of a batch
    issued without a product took any GTIN); one query, and only when a scan names a GTIN."""
    named = [r for r in reads if r.gtin is not None and r.reason is None]
    if not named:
        return
    rows = await (
        await conn.execute(
            """SELECT q.code, p.gtin
               FROM unnest(%s::bigint[], %s::bigint[]) AS q (code, batch_product)
               LEFT JOIN unit_state u ON u.code = q.code
               JOIN products p ON p.id = coalesce(u.product_id, q.batch_product)""",
            (array([r.code for r in named]), array([r.batch_product for r in named])),
        )
    ).fetchall()
    gtins = {row["code"]: row["gtin"] for row in rows}
    for read in named:
        if read.code in gtins and gtins[read.code] != read.gtin:
            read.reason = "wrong_product"


async def _case_batches(conn: Conn, brand_id: int, ssccs: list[str]) -> dict[str, dict[str, Any]]:
    """The case batch (id, level, state) each SSCC was issued from, by SSCC."""
    rows = await (
        await conn.execute(
            """SELECT q.sscc, cb.id, cb.level, cb.state
               FROM unnest(%s::text[]) AS q (sscc)
               JOIN case_batches cb
                 ON cb.brand_id = %s
                AND cb.extension_digit = substr(q.sscc, 1, 1)::smallint
                AND substr(q.sscc, 2, length(cb.company_prefix)) = cb.company_prefix
                AND substr(q.sscc, 2 + length(cb.company_prefix),
                           16 - length(cb.company_prefix))::bigint
                    BETWEEN cb.first_ref AND cb.first_ref + cb.size - 1""",
            (array(sorted(set(ssccs))), brand_id),
        )
    ).fetchall()
    return {row["sscc"]: row for row in rows}


def sscc_label(code: int) -> str:
    """The 18-digit SSCC of a case code (a case's code is its SSCC as a number)."""
    return f"{code:018d}"
