"""CSV import of ERP orders (SPEC L1).

The file is UTF-8 (a BOM is fine) or GB18030 — what Excel writes on Chinese Windows; a declared
``charset`` is honoured, another is 415 (``app.csvread``) —, one row per order line, a header row
naming the columns::

    erp_no,kind,from_erp_code,to_erp_code,order_date,product_no,quantity,note

``gtin`` may stand in for ``product_no`` (either column, or both: the GTIN wins when filled).
``kind`` defaults to ``sales``, ``order_date`` (YYYY-MM-DD or YYYY/MM/DD) to today. Rows sharing an
``erp_no`` form one order and must agree on its header fields. An ``erp_no`` as Excel shows a
long number ("2.02611E+11": ``app.csvread.excel_scientific``) is ``bad_erp_no``, as a malformed
one is: its rows make no order.

Every row is checked before anything is written; an order with any bad row is rejected as a
whole, the other orders are created through ``orders.create_order`` (source ``csv``), each in a
savepoint, so importing the same file again creates nothing new.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Literal

import msgspec

from app import locks
from app._core import Gs1Error, normalize_gtin
from app.auth.principal import Principal
from app.csvread import MAX_BYTES as MAX_BYTES  # the route's limit
from app.csvread import MEDIA_TYPES as MEDIA_TYPES
from app.csvread import Encoding, decode, excel_scientific, read_rows, refuse_control
from app.csvread import read_body as read_body
from app.db import Conn
from app.errors import AppError, Conflict
from app.localtime import check_day
from app.locks import Lock
from app.logistics.orders import create_order
from app.logistics.schemas import OrderIn, OrderLineIn

MAX_ROWS = 100_000
MAX_LINES_PER_ORDER = 1000  # as OrderIn allows
MAX_ERRORS_LISTED = 1000
COLUMNS = (
    "erp_no",
    "kind",
    "from_erp_code",
    "to_erp_code",
    "order_date",
    "product_no",
    "gtin",
    "quantity",
    "note",
)
# each entry: one of these columns is needed (the first is named when none is there)
_REQUIRED = (
    ("erp_no",),
    ("from_erp_code",),
    ("to_erp_code",),
    ("quantity",),
    ("product_no", "gtin"),
)
KINDS = ("sales", "purchase", "transfer", "return")
_ERP_NO = re.compile(r"^[!-~]{1,64}$")
_DATE = re.compile(r"^([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})$")
# a quantity as the master-data imports read it: ASCII digits only (probe P: Python's int() took
# "1_000", "+5", full-width and Arabic-Indic digits)
_QUANTITY = re.compile(r"[0-9]{1,9}")


class RowError(msgspec.Struct, frozen=True, kw_only=True):
    """One problem: the file line (the header is line 1), the column, and what is wrong."""

    line: int
    column: str | None
    code: str
    message: str
    erp_no: str | None = None


class ImportedOrder(msgspec.Struct, frozen=True, kw_only=True):
    erp_no: str
    result: Literal["created", "existing", "rejected"]
    id: int | None = None


class ImportOut(msgspec.Struct, frozen=True, kw_only=True):
    created: int
    existing: int
    rejected: int
    rows: int
    errors: list[RowError]
    errors_total: int
    orders: Annotated[list[ImportedOrder], msgspec.Meta(description="one entry per order")]


class _Row(msgspec.Struct, kw_only=True, gc=False):
    """One CSV row: its file line and the value of each column ("" when absent or empty)."""

    line: int
    erp_no: str = ""
    kind: str = ""
    from_erp_code: str = ""
    to_erp_code: str = ""
    order_date: str = ""
    product_no: str = ""
    gtin: str = ""
    quantity: str = ""
    note: str = ""
    extra: bool = False  # more non-empty values than header columns


@dataclass
class _Order:
    erp_no: str
    first_line: int
    header: tuple[str, str, str, str, str] | None = None  # kind, from, to, date, note
    rows: list[_Row] = field(default_factory=list)
    bad: bool = False
    lines: list[tuple[int, int, int]] = field(default_factory=list)  # (line, product, qty)


def parse(raw: bytes, max_rows: int = MAX_ROWS, encoding: Encoding | None = None) -> list[_Row]:
    """Rows of the CSV with their file line numbers (``app.csvread``; ``encoding``: the one its
    ``Content-Type`` declares); 400 on a bad encoding or header or malformed CSV, or
    ``invalid_character`` on a control character (tab and line breaks pass)."""
    text = decode(raw, encoding)
    refuse_control(text)
    _, records = read_rows(text, COLUMNS, _REQUIRED, max_rows)
    return [_Row(line=r.line, extra=r.extra, **r.values) for r in records]


def _date(text: str) -> date:
    match = _DATE.match(text)
    if match is None:
        raise ValueError
    return date(int(match[1]), int(match[2]), int(match[3]))


async def _lookup_orgs(conn: Conn, brand: int, codes: set[str]) -> dict[str, int]:
    rows = await (
        await conn.execute(
            "SELECT erp_code, id FROM orgs WHERE erp_code = ANY(%s) AND path LIKE %s",
            (sorted(codes), f"/{brand}/%"),
        )
    ).fetchall()
    return {r["erp_code"]: r["id"] for r in rows}


def _nfc(number: str) -> str:
    """A product number as the catalogue keeps it, in Unicode NFC (``app.catalog.schemas.nfc``):
    a file saved on a Mac names "CAFÉ-1" decomposed ("E" and U+0301) — a review: its rows named
    no product, ``unknown_product``."""
    return unicodedata.normalize("NFC", number)


async def _lookup_products(
    conn: Conn, brand: int, numbers: set[str], gtins: set[str]
) -> tuple[dict[str, list[int]], dict[str, int]]:
    """The brand's products by number (in NFC: a number as the file writes it, or in NFC) and
    by GTIN-14."""
    wanted = numbers | {_nfc(number) for number in numbers}
    rows = await (
        await conn.execute(
            """SELECT p.id, p.product_no, p.gtin FROM products p JOIN orgs o ON o.id = p.org_id
               WHERE (p.product_no = ANY(%s) OR p.gtin = ANY(%s)) AND o.path LIKE %s""",
            (sorted(wanted), sorted(gtins), f"/{brand}/%"),
        )
    ).fetchall()
    by_no: dict[str, list[int]] = {}
    by_gtin: dict[str, int] = {}
    for r in rows:
        by_no.setdefault(_nfc(r["product_no"]), []).append(r["id"])
        if r["gtin"]:
            by_gtin[r["gtin"]] = r["id"]
    return by_no, by_gtin


class _References(msgspec.Struct, frozen=True, gc=False):
    """What the rows name, looked up once for the whole file."""

    orgs: dict[str, int]  # organisation id by ERP code (the brand's)
    by_no: dict[str, list[int]]  # product ids by product number (several: ambiguous)
    by_gtin: dict[str, int]  # product id by GTIN-14
    gtins: dict[int, str]  # the row's GTIN as GTIN-14, by file line (absent: not a valid GTIN)


@dataclass(slots=True)
class _Errors:
    """The problems found, and who collects them: a bad row rejects its whole order."""

    found: list[RowError] = field(default_factory=list)

    def fail(
        self, order: _Order | None, row: _Row, column: str | None, code: str, msg: str
    ) -> None:
        erp_no = order.erp_no if order else (row.erp_no or None)
        self.found.append(
            RowError(line=row.line, column=column, code=code, message=msg, erp_no=erp_no)
        )
        if order is not None:
            order.bad = True


async def import_orders(
    conn: Conn, actor: Principal, raw: bytes, encoding: Encoding | None = None
) -> ImportOut:
    """Check every row, then create each order without a bad row (idempotent by ``erp_no``).
    ``encoding``: the one the file's ``Content-Type`` declares (``app.csvread.decode``).

    The checks run as passes over all rows (orders and their header fields, then products and
    quantities, then order sizes), so each row's problems are listed in column order."""
    actor.require("orders.write")
    rows = parse(raw, encoding=encoding)
    refs = await _references(conn, actor.brand_id, rows)
    errors = _Errors()
    orders, grouped = _group_orders(rows, refs, errors)
    _check_lines(grouped, refs, errors)
    _check_sizes(grouped, errors)
    results, counts = await _create_orders(conn, actor, orders, refs, errors)
    errors.found.sort(key=lambda e: e.line)
    return ImportOut(
        **counts,
        rows=len(rows),
        errors=errors.found[:MAX_ERRORS_LISTED],
        errors_total=len(errors.found),
        orders=results,
    )


async def _references(conn: Conn, brand: int, rows: list[_Row]) -> _References:
    """The brand's organisations and products the rows name (one query each)."""
    gtins: dict[int, str] = {}
    for row in rows:
        if row.gtin:
            try:
                gtins[row.line] = normalize_gtin(row.gtin)
            except (Gs1Error, ValueError):
                pass
    orgs = await _lookup_orgs(
        conn,
        brand,
        {code for row in rows for code in (row.from_erp_code, row.to_erp_code) if code},
    )
    by_no, by_gtin = await _lookup_products(
        conn, brand, {row.product_no for row in rows if row.product_no}, set(gtins.values())
    )
    return _References(orgs, by_no, by_gtin, gtins)


def _group_orders(
    rows: list[_Row], refs: _References, errors: _Errors
) -> tuple[dict[str, _Order], list[tuple[_Row, _Order]]]:
    """First pass: the orders by ``erp_no`` and their header fields (kind, the two
    organisations, date, note), which every row of an order must repeat. Returns the orders and
    each row with a valid ``erp_no`` beside its order."""
    orders: dict[str, _Order] = {}
    grouped: list[tuple[_Row, _Order]] = []
    orgs, fail = refs.orgs, errors.fail
    for row in rows:
        erp_no = row.erp_no
        message = _erp_no_problem(erp_no)
        if message is not None:
            fail(None, row, "erp_no", "bad_erp_no", message)
            continue
        order = orders.get(erp_no)
        if order is None:
            order = orders[erp_no] = _Order(erp_no, row.line)
        grouped.append((row, order))
        if row.extra:
            fail(order, row, None, "extra_values", "more values than header columns")
        kind = row.kind or "sales"
        if kind not in KINDS:
            fail(order, row, "kind", "bad_kind", f"kind: one of {', '.join(KINDS)}")
        ends: dict[str, int] = {}
        for column, code in ("from_erp_code", row.from_erp_code), ("to_erp_code", row.to_erp_code):
            if not code:
                fail(order, row, column, "missing_value", f"{column} is required")
            elif code not in orgs:
                fail(order, row, column, "unknown_org", f"no organisation with ERP code {code!r}")
            else:
                ends[column] = orgs[code]
        if len(ends) == 2 and ends["from_erp_code"] == ends["to_erp_code"]:
            fail(order, row, "to_erp_code", "same_org", "an order goes between two organisations")
        when = row.order_date
        if when:
            try:
                day = _date(when)
                check_day(day, 366, "order_date")
                # compared as a date: 2026-11-01 and 2026/11/1 are one day (a probe: a
                # spreadsheet's reformatted cell made the order inconsistent_order)
                when = day.isoformat()
            except ValueError:
                message = f"order_date {when!r}: a date as YYYY-MM-DD, from 2000 to next year"
                fail(order, row, "order_date", "bad_date", message)
        if len(row.note) > 500:
            fail(order, row, "note", "note_too_long", "note: at most 500 characters")
        header = (kind, row.from_erp_code, row.to_erp_code, when, row.note)
        if order.header is None:
            order.header = header
        elif order.header != header:
            names = ("kind", "from_erp_code", "to_erp_code", "order_date", "note")
            column = next(n for n, a, b in zip(names, order.header, header, strict=True) if a != b)
            message = f"{column} differs from line {order.first_line} of order {erp_no}"
            fail(order, row, column, "inconsistent_order", message)
    return orders, grouped


def _erp_no_problem(erp_no: str) -> str | None:
    """Why ``erp_no`` is no order number, or ``None``: a number as Excel shows it in scientific
    notation is none either (a probe: "2.02611E+11" merged two orders into one)."""
    if not _ERP_NO.match(erp_no):
        return "erp_no: 1 to 64 printable ASCII characters, no spaces"
    return excel_scientific("erp_no", erp_no)


def _check_lines(grouped: list[tuple[_Row, _Order]], refs: _References, errors: _Errors) -> None:
    """Second pass: each row's product (by GTIN, else product number) and quantity, one line
    per product in an order; the good lines are added to their order."""
    by_no, by_gtin, gtins, fail = refs.by_no, refs.by_gtin, refs.gtins, errors.fail
    for row, order in grouped:
        product: int | None = None
        text_gtin, text_no = row.gtin, row.product_no
        if text_gtin:
            if row.line not in gtins:
                fail(order, row, "gtin", "invalid_gtin", f"gtin {text_gtin!r} is not a valid GTIN")
            elif gtins[row.line] not in by_gtin:
                fail(order, row, "gtin", "unknown_product", f"no product with GTIN {text_gtin}")
            else:
                product = by_gtin[gtins[row.line]]
        elif text_no:
            found = by_no.get(_nfc(text_no), [])
            if not found:
                fail(order, row, "product_no", "unknown_product", f"no product {text_no!r}")
            elif len(found) > 1:
                message = f"several products are numbered {text_no!r}: use the gtin column"
                fail(order, row, "product_no", "ambiguous_product", message)
            else:
                product = found[0]
        else:
            fail(order, row, "product_no", "missing_value", "product_no or gtin is required")
        quantity = int(row.quantity) if _QUANTITY.fullmatch(row.quantity) else None
        if quantity is None or not 1 <= quantity <= 100_000_000:
            message = f"quantity {row.quantity!r}: a whole number of units from 1 to 100,000,000"
            fail(order, row, "quantity", "bad_quantity", message)
        if product is not None:
            earlier = next((ln for ln, p, _ in order.lines if p == product), None)
            if earlier is not None:
                message = f"the product is already on line {earlier} of order {order.erp_no}"
                fail(
                    order, row, "gtin" if text_gtin else "product_no", "duplicate_product", message
                )
            else:  # a bad quantity rejects the order anyway; the product still counts
                order.lines.append((row.line, product, quantity or 0))


def _check_sizes(grouped: list[tuple[_Row, _Order]], errors: _Errors) -> None:
    """Third pass: at most ``MAX_LINES_PER_ORDER`` rows per order (the first row over is named)."""
    for row, order in grouped:
        order.rows.append(row)
        if len(order.rows) == MAX_LINES_PER_ORDER + 1:
            message = f"an order has at most {MAX_LINES_PER_ORDER} lines"
            errors.fail(order, row, None, "too_many_lines", message)


async def _create_orders(
    conn: Conn, actor: Principal, orders: dict[str, _Order], refs: _References, errors: _Errors
) -> tuple[list[ImportedOrder], dict[str, int]]:
    """Create each order without a bad row through ``create_order``, each in a savepoint (an
    order it refuses is rejected and leaves no trace); the result of each and their counts.

    One import of a brand's orders runs at a time: the brand's ``ORDER_IMPORT`` lock is tried,
    never waited for (409 ``orders_busy``). Waiting would hold a pooled connection for as long as
    that import runs — an ERP's retries so took every connection of the pool — and a lock per
    ERP number filled PostgreSQL's shared lock table at ~6,000 orders (probe G). Single orders
    take no lock (``create_order``): they never wait for an import, except one writing the same
    number."""
    results: list[ImportedOrder] = []
    counts = {"created": 0, "existing": 0, "rejected": 0}
    free = await (await conn.execute(*locks.xact_try(Lock.ORDER_IMPORT, actor.brand_id))).fetchone()
    if not free or not free["ok"]:
        raise Conflict(
            "another import of this brand's orders is running; retry when it is done",
            code="orders_busy",
        )
    for order in orders.values():
        if order.bad or order.header is None:
            results.append(ImportedOrder(erp_no=order.erp_no, result="rejected"))
            counts["rejected"] += 1
            continue
        kind, from_code, to_code, when, note = order.header
        data = OrderIn(
            erp_no=order.erp_no,
            kind=kind,  # type: ignore[arg-type]
            from_org_id=refs.orgs[from_code],
            to_org_id=refs.orgs[to_code],
            order_date=_date(when) if when else None,
            note=note,
            lines=[OrderLineIn(product_id=p, quantity=q) for _, p, q in order.lines],
        )
        try:
            async with conn.transaction():  # a savepoint: a refused order leaves no trace
                out, created = await create_order(conn, actor, data, source="csv")
        except AppError as exc:
            errors.found.append(
                RowError(
                    line=order.first_line,
                    column="erp_no",
                    code=exc.code,
                    message=exc.message,
                    erp_no=order.erp_no,
                )
            )
            results.append(ImportedOrder(erp_no=order.erp_no, result="rejected"))
            counts["rejected"] += 1
            continue
        result: Literal["created", "existing"] = "created" if created else "existing"
        results.append(ImportedOrder(erp_no=order.erp_no, result=result, id=out.id))
        counts[result] += 1
    return results, counts
