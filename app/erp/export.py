"""The ERP export of confirmed documents (入库单 / 出库单), incremental by cursor (SPEC I1, L10).

An ERP polls ``GET /documents/export?cursor=…`` and gets the documents confirmed since its last
page — each exactly once, in a stable order, even while confirmations commit concurrently — as
JSON (with ``next_cursor``) or CSV (one row per document line; the cursor in ``X-Next-Cursor``).
Scoped like the documents list: the caller's brand, documents whose organisation or counterparty
lies in the caller's subtree; read by ``require_reader``'s holders (API keys included).

Why not ``confirmed_at`` or the id. Both are fixed before the confirming transaction commits, and
transactions commit in any order: a page read while a document confirmed at 10:00:00.100 (id 7)
is still committing, but after one confirmed at 10:00:00.200 (id 8) committed, would hand out a
cursor past 7 — and document 7, committed a moment later, would never be exported. A sequence
number has the same flaw; a "safety lag" only makes it rarer.

The order used instead (migration 0031): each document records the id of the transaction that
confirmed it (``confirm_xid``, set by a trigger), and a page only reads documents whose
transaction is older than every transaction of this database still running — ``confirm_xid <
horizon`` (``app.db.HORIZON_CTE``: the snapshot's ``pg_snapshot_xmin`` without other databases'
transactions), taken in the page's own statement. Below
the horizon nothing can change any more: every such transaction has committed or rolled back,
and a new confirmation gets a newer transaction id (or runs in one that is still open, which holds
the horizon back). So the order ``(confirm_xid, id)`` below the horizon is final, and the cursor
``(confirm_xid, id)`` of the last document handed out is exact. The cost is latency, never a
loss: a long-running writing transaction of this database delays the export until it ends.

A page that is not full moves the cursor on to the brand's last confirmation below the horizon
(the caller has seen all of its own up to there), so that the next poll does not read again the
rest of the brand's documents. The cursor is sealed (``app.sealing``: AES-256-GCM under a key of
its own, bound to the brand, a fresh nonce each page): a partner learns nothing from it of when
or how often the rest of the brand confirmed documents (probe M), and cannot forge one. Cursors
handed out before (base64 of ``v1.<xid>.<id>``, a position among the caller's own documents) are
still taken — but not one whose xid is at or past the page's horizon: every position handed out
was below the horizon of its page, and the horizon never moves back, so such a cursor is made up
(a probe: one far ahead was kept, and the documents confirmed until the horizon reached it would
never have been exported). Keep the same filters for one cursor.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from typing import Any, Literal

from app import localtime, sealing
from app.auth.principal import Principal
from app.config import Settings
from app.db import HORIZON_CTE, Conn
from app.erp.schemas import ExportDocument, ExportLine, ExportPage
from app.errors import BadRequest
from app.logistics.orders import require_reader

Direction = Literal["inbound", "outbound"]
_PLAIN = re.compile(r"v1\.(\d{1,20})\.(\d{1,20})")  # cursors handed out before sealing
_SEALED = b"\x02"  # version byte, then nonce (12), the position sealed (16), tag (16)
_POSITION = struct.Struct(">QQ")
_START = (0, 0)

# one statement, one snapshot: the page (one more than asked: is there more?), the last
# confirmation below the same horizon in the whole brand, and the horizon (a plain cursor's
# position is below it: ``export_page``)
_PAGE = (
    f"WITH {HORIZON_CTE},"
    + """
page AS (
    SELECT d.id, d.confirm_xid FROM documents d
      JOIN orgs o ON o.id = d.org_id LEFT JOIN orgs c ON c.id = d.counterparty_id
     WHERE d.brand_id = %(brand)s AND d.confirm_xid IS NOT NULL
       AND (d.confirm_xid, d.id) > (%(xid)s::xid8, %(id)s)
       AND d.confirm_xid < (SELECT x FROM horizon)
       AND (starts_with(o.path, %(scope)s) OR starts_with(c.path, %(scope)s)) {filters}
     ORDER BY d.confirm_xid, d.id LIMIT %(limit)s),
tail AS (
    SELECT d.id, d.confirm_xid FROM documents d
     WHERE d.brand_id = %(brand)s AND d.confirm_xid IS NOT NULL
       AND d.confirm_xid < (SELECT x FROM horizon)
     ORDER BY d.confirm_xid DESC, d.id DESC LIMIT 1)
SELECT 'page' AS part, id, confirm_xid::text AS xid FROM page
UNION ALL SELECT 'tail', id, confirm_xid::text FROM tail
UNION ALL SELECT 'horizon', NULL, x::text FROM horizon"""
)

_DOCUMENTS = """SELECT d.id, d.doc_no, d.direction, d.kind, d.org_id, o.erp_code AS org_erp_code,
       o.name AS org_name, d.counterparty_id, c.erp_code AS counterparty_erp_code,
       c.name AS counterparty_name, d.order_id, r.erp_no AS order_erp_no, d.shipment_id,
       s.doc_no AS shipment_doc_no, d.doc_date, d.confirmed_at, h.username AS handler_username,
       d.signee, d.phone, d.customer, d.customer_type, d.destination_city,
       sp.erp_code AS salesperson_erp_code, d.reason, d.note, d.discrepancies
    FROM documents d JOIN orgs o ON o.id = d.org_id
    LEFT JOIN orgs c ON c.id = d.counterparty_id
    LEFT JOIN orders r ON r.id = d.order_id
    LEFT JOIN documents s ON s.id = d.shipment_id
    LEFT JOIN users h ON h.id = d.handler_id
    LEFT JOIN users sp ON sp.id = d.salesperson_id
    WHERE d.id = ANY(%s)"""

_LINES = """SELECT l.document_id, l.product_id, p.erp_code AS product_erp_code, p.product_no,
       p.gtin, p.name AS product_name, l.lot, l.units, l.packages, l.package_level,
       f.erp_code AS manufacturer_erp_code, f.name AS manufacturer_name
    FROM document_lines l JOIN products p ON p.id = l.product_id
    LEFT JOIN orgs f ON f.id = l.manufacturer_id
    WHERE l.document_id = ANY(%s) ORDER BY l.document_id, l.product_id, l.lot"""

CSV_COLUMNS = [
    *("doc_no", "direction", "kind", "doc_date", "confirmed_at", "org_erp_code", "org_name"),
    *("counterparty_erp_code", "counterparty_name", "order_erp_no", "shipment_doc_no"),
    *("handler_username", "signee", "phone", "customer", "customer_type", "destination_city"),
    *("salesperson_erp_code", "reason", "note", "line_no", "product_erp_code", "product_no"),
    *("gtin", "product_name", "lot", "units", "packages", "document_id"),
    *("package_level", "manufacturer_erp_code", "manufacturer_name"),  # added last: 2026-12-06
]


_PURPOSE = "erp-export-cursor"  # the cursor's own key (``app.sealing``), bound to the brand


def encode_cursor(settings: Settings, brand_id: int, position: tuple[int, int]) -> str:
    return sealing.seal(settings, _PURPOSE, str(brand_id), _SEALED, _POSITION.pack(*position))


def decode_cursor(settings: Settings, brand_id: int, cursor: str | None) -> tuple[int, int]:
    """The position a cursor stands for; none: the start. 400 ``bad_cursor`` for anything that
    is not a cursor this export handed out (a plain one: see ``export_page``)."""
    return _decoded(settings, brand_id, cursor)[0]


def _decoded(settings: Settings, brand_id: int, cursor: str | None) -> tuple[tuple[int, int], bool]:
    """``decode_cursor``'s position, and whether the cursor was of the plain form (not sealed:
    anyone may write one)."""
    if not cursor:
        return _START, False
    raw = sealing.token_bytes(cursor)
    if len(raw) == sealing.OVERHEAD + _POSITION.size and raw[:1] == _SEALED:
        opened = sealing.unseal(settings, _PURPOSE, str(brand_id), _SEALED, raw)
        if opened is None:  # not sealed by this service's key for this brand, or altered
            raise _bad_cursor()
        xid, doc_id = _POSITION.unpack(opened)
        if max(xid, doc_id) < 2**63:
            return (xid, doc_id), False
    match = _PLAIN.fullmatch(raw.decode("ascii", "replace"))
    if match is None or max(int(match[1]), int(match[2])) >= 2**63:
        raise _bad_cursor()
    return (int(match[1]), int(match[2])), True


def _bad_cursor() -> BadRequest:
    return BadRequest("not a cursor of this export", code="bad_cursor")


async def export_page(
    conn: Conn,
    actor: Principal,
    settings: Settings,
    *,
    cursor: str | None,
    limit: int,
    direction: Direction | None = None,
    kind: str | None = None,
) -> ExportPage:
    """The documents confirmed after ``cursor`` (at most ``limit``) and the cursor after them."""
    require_reader(actor)
    (xid, doc_id), plain = _decoded(settings, actor.brand_id, cursor)
    filters, params = "", {"direction": direction, "kind": kind}
    if direction is not None:
        filters += " AND d.direction = %(direction)s"
    if kind is not None:
        filters += " AND d.kind = %(kind)s"
    rows = await (
        await conn.execute(
            _PAGE.format(filters=filters),
            {
                **params,
                "brand": actor.brand_id,
                "scope": actor.org_path,
                "xid": str(xid),
                "id": doc_id,
                "limit": limit + 1,
            },
        )
    ).fetchall()
    horizon = next(int(r["xid"]) for r in rows if r["part"] == "horizon")
    if plain and xid >= horizon:  # a position no page handed out (a probe: one far ahead was
        raise _bad_cursor()  # kept, and every document confirmed since would have been skipped)
    page = [(int(r["xid"]), r["id"]) for r in rows if r["part"] == "page"]
    tail = [(int(r["xid"]), r["id"]) for r in rows if r["part"] == "tail"]
    has_more = len(page) > limit
    page = page[:limit]
    if has_more:
        position = page[-1]
    else:  # every document of the caller's up to the horizon is on this page
        position = max([(xid, doc_id), *page, *tail])
    items = await _documents(conn, [d for _, d in page])
    return ExportPage(
        items=items,
        next_cursor=encode_cursor(settings, actor.brand_id, position),
        has_more=has_more,
    )


async def _documents(conn: Conn, ids: list[int]) -> list[ExportDocument]:
    """The documents (with their lines) in the order of ``ids``."""
    if not ids:
        return []
    docs = {r["id"]: r for r in await (await conn.execute(_DOCUMENTS, (ids,))).fetchall()}
    lines: dict[int, list[ExportLine]] = {i: [] for i in ids}
    for row in await (await conn.execute(_LINES, (ids,))).fetchall():
        lines[row.pop("document_id")].append(ExportLine(**row))
    return [
        ExportDocument(
            **docs[i],
            units=sum(line.units for line in lines[i]),
            packages=sum(line.packages for line in lines[i]),
            lines=lines[i],
        )
        for i in ids
    ]


def csv_rows(documents: Sequence[ExportDocument]) -> list[list[Any]]:
    """One row per document line (a document without lines: one row, its line columns empty),
    in ``CSV_COLUMNS`` order."""
    rows: list[list[Any]] = []
    for doc in documents:
        head: list[Any] = [
            *(doc.doc_no, doc.direction, doc.kind, doc.doc_date, doc.confirmed_at),
            *(doc.org_erp_code, doc.org_name, doc.counterparty_erp_code, doc.counterparty_name),
            *(doc.order_erp_no, doc.shipment_doc_no, doc.handler_username, doc.signee, doc.phone),
            *(doc.customer, doc.customer_type, doc.destination_city, doc.salesperson_erp_code),
            *(doc.reason, doc.note),
        ]
        for n, line in enumerate(doc.lines or [None], start=1):
            if line is None:
                rows.append([*head, *[None] * 8, doc.id, None, None, None])
                continue
            rows.append(
                [
                    *head,
                    *(n, line.product_erp_code, line.product_no, line.gtin, line.product_name),
                    *(line.lot, line.units, line.packages, doc.id),
                    *(line.package_level, line.manufacturer_erp_code, line.manufacturer_name),
                ]
            )
    return rows


def filename() -> str:
    return f"documents-{localtime.today()}.csv"
