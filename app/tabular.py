"""The one CSV and XLSX writer of every export (management center, inspections).

Both stream: CSV chunk by chunk as row batches arrive; XLSX written by XlsxWriter in
constant-memory mode to a temporary file and streamed when finished (a ZIP needs its end).

Formula guard (CSV injection): a text cell that starts with ``= + - @``, a tab or a carriage
return would be run as a formula by a spreadsheet program. In CSV it gets a leading apostrophe
(``'=1+1``), as OWASP advises; in XLSX the cell is written as text with Excel's "quote prefix"
style, so it shows unchanged and stays text even when edited. Numbers, dates and empty cells are
never touched (a negative stock level stays a number).

Text stays text (``_plain_text_sheet``): XlsxWriter in constant-memory mode takes a string that
starts with ``<r>`` and ends with ``</r>`` for rich-string XML made by ``write_rich_string`` and
copies it into the sheet unescaped, so text another organisation typed (a customer, a display
name) broke the sheet or planted a ``<f>`` formula cell the guard above never sees (probe).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from datetime import date, datetime
from functools import cache
from typing import Any

from litestar.response import Stream

from app.localtime import ZONE

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_MEDIA = "text/csv"  # Litestar adds "; charset=utf-8" to text/* itself
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_MAX_ROWS = 1_048_575  # a worksheet's rows, less the header


class SheetFull(Exception):
    """More rows than one XLSX sheet holds: the workbook is never finished (a probe: the rows
    past the sheet were dropped without a word, and the file looked complete)."""


Rows = Iterable[Sequence[Any]]


def formula_safe(text: str) -> str:
    """``text``, with an apostrophe in front when a spreadsheet would run it as a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text


def local_time(value: datetime) -> str:
    """A moment as the brands' wall clock shows it, with its offset (``…+08:00``): a file read
    in Beijing showed UTC times, eight hours off what the console shows (probe AA)."""
    return (value.astimezone(ZONE) if value.tzinfo is not None else value).isoformat()


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return formula_safe(value)
    if isinstance(value, datetime):
        return local_time(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


async def one_batch(rows: Rows) -> AsyncIterator[Rows]:
    """Rows already in memory, as the batches the writers take."""
    yield rows


async def csv_chunks(columns: Sequence[str], batches: AsyncIterable[Rows]) -> AsyncIterator[bytes]:
    """UTF-8 CSV with a BOM (so Excel reads Chinese names), a header row, then the rows; one
    chunk per batch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([csv_cell(c) for c in columns])
    yield ("\ufeff" + buffer.getvalue()).encode()
    async for rows in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([[csv_cell(v) for v in row] for row in rows])
        yield buffer.getvalue().encode()


EXACT_DIGITS = 15  # a spreadsheet number holds this many digits exactly (a double)


def _xlsx_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return local_time(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**EXACT_DIGITS:
        return str(value)  # a code id of 17 digits came back with its last digits lost (probe AB)
    return value


@cache
def _plain_text_sheet() -> type:
    """A worksheet class whose every string cell is escaped text (made on first use: XlsxWriter
    is imported by the first XLSX export, not at start-up).

    XlsxWriter 3.3 (``Worksheet._write_cell``, constant memory) hands a string shaped
    ``<r>…</r>`` to ``_xml_rich_inline_string``, which writes it raw; its public way round,
    ``write_rich_string``, escapes ``_xHHHH_`` and control characters twice (the text would not
    read back as typed). We never write rich strings, so that path writes an inline string like
    any other, escaped (control characters are already escaped by then). Checked against the
    installed XlsxWriter by ``tests/test_tabular.py``: a renamed hook fails it."""
    from xlsxwriter.worksheet import Worksheet

    class PlainTextSheet(Worksheet):
        def _xml_rich_inline_string(self, string: str, attributes: Any = ()) -> None:
            # ``string`` starts with "<" and ends with ">": no edge whitespace to preserve
            self._xml_inline_string(string, False, list(attributes))

    return PlainTextSheet


async def xlsx_chunks(
    sheet_name: str, columns: Sequence[str], batches: AsyncIterable[Rows]
) -> AsyncIterator[bytes]:
    """An XLSX workbook (one sheet, a bold header row) written in constant memory; a row past
    the sheet's last raises ``SheetFull`` (the routes that can count first refuse such an
    export with 422 ``too_many_rows`` before it starts; a count that rose meanwhile cuts it)."""
    import xlsxwriter

    fd, path = tempfile.mkstemp(prefix="tracecode-", suffix=".xlsx")
    os.close(fd)
    try:
        book = xlsxwriter.Workbook(
            path,
            {
                "constant_memory": True,
                "strings_to_formulas": False,  # a note like "=1+1" stays text
                "strings_to_urls": False,
                "strings_to_numbers": False,
                "default_date_format": "yyyy-mm-dd",
            },
        )
        sheet = book.add_worksheet(sheet_name[:31], worksheet_class=_plain_text_sheet())
        bold = book.add_format({"bold": True})
        quoted = book.add_format({"quote_prefix": True})
        sheet.write_row(0, 0, list(columns), bold)
        sheet.freeze_panes(1, 0)

        def write(rows: Rows, first: int) -> int:
            n = first
            for row in rows:
                if n > XLSX_MAX_ROWS:  # XlsxWriter would drop it and go on
                    raise SheetFull(f"more than {XLSX_MAX_ROWS:,} rows do not fit one XLSX sheet")
                for col, value in enumerate(row):
                    if isinstance(value, str) and value.startswith(FORMULA_START):
                        sheet.write_string(n, col, value, quoted)
                    elif value is not None:
                        sheet.write(n, col, _xlsx_cell(value))
                n += 1
            return n

        at = 1
        async for rows in batches:
            at = await asyncio.to_thread(write, rows, at)
        await asyncio.to_thread(book.close)
        with open(path, "rb") as handle:  # noqa: ASYNC230 - local temp file, read in chunks
            while chunk := handle.read(1 << 18):
                yield chunk
    finally:
        os.unlink(path)


class Download(Stream):
    """A streamed file whose own media type wins: Litestar 2.25's ``Stream`` takes the
    handler's (JSON) over it, contrary to its docstring."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


def download(chunks: AsyncIterator[bytes], fmt: str, filename: str) -> Download:
    """The streamed answer of an export: CSV or XLSX, as an attachment named ``filename``."""
    return Download(
        chunks,
        media_type=XLSX_MEDIA if fmt == "xlsx" else CSV_MEDIA,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
