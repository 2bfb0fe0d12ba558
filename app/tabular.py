"""The one CSV and XLSX writer of every export (management center, inspections).

Both stream: CSV chunk by chunk as row batches arrive; XLSX written by XlsxWriter in
constant-memory mode to a temporary file and streamed when finished (a ZIP needs its end).

Formula guard (CSV injection): a text cell that starts with ``= + - @`` or their full-width
forms ``＝ ＋ － ＠`` (a Chinese input method in full-width mode) — also after leading blanks
(space, tab, CR, LF, U+3000, U+00A0: programs that trim a cell on import drop them) — or with a
tab or a carriage return would be run as a formula by a spreadsheet program (``formula_lead``).
In CSV it gets a leading apostrophe in front of the whole cell (``'=1+1``, ``' =1+1``), as
OWASP advises; in XLSX the cell is written as text with Excel's "quote prefix"
style, so it shows unchanged and stays text even when edited. Numbers, dates and empty cells are
never touched (a negative stock level stays a number).

Text stays text (``_plain_text_sheet``): XlsxWriter in constant-memory mode takes a string that
starts with ``<r>`` and ends with ``</r>`` for rich-string XML made by ``write_rich_string`` and
copies it into the sheet unescaped, so text another organisation typed (a customer, a display
name) broke the sheet or planted a ``<f>`` formula cell the guard above never sees (probe).

Exports read from the database while they send (``pooled_batches``: a server-side cursor on a
pooled connection of their own, in one transaction). A client that stopped reading but stayed
connected held that connection for ever, and as many stalled downloads as the pool's size left
every other request — consumers' ``POST /v1/verify`` too — 503 (a probe). So:

* the streams of a pool hold at most ``max(1, max_size // EXPORT_SHARE)`` of its connections at
  once (5 of the default 20): a further export asked for meanwhile is 429 ``exports_busy`` with
  ``Retry-After``, decided by the handler, before the answer starts;
* an export's transaction sets ``idle_in_transaction_session_timeout`` to
  ``EXPORT_IDLE_SECONDS`` (``SET LOCAL``: for it alone, whatever
  ``TRACECODE_DB_IDLE_IN_TRANSACTION_TIMEOUT`` says): PostgreSQL ends the session of a stream
  whose client stopped reading, and its snapshot no longer holds VACUUM back;
* a download waits at most ``EXPORT_IDLE_SECONDS`` for the client to take each piece, then is
  cut off (``StalledDownload``, logged by ``app.front`` as an error after the answer started;
  the client sees a broken download): its reader is closed, so the connection goes back to the
  pool — which discards it when PostgreSQL has ended its session. PostgreSQL's limit alone
  would not do: the pool counts a connection as taken until it is given back, and the stalled
  send never returns to give it back.

A slow client that keeps reading is never cut off; it only takes one of the export streams.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from functools import cache
from typing import Any

import psycopg
from litestar.response import Stream
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Receive, Scope, Send
from psycopg_pool import AsyncConnectionPool

from app.errors import TooManyRequests
from app.localtime import ZONE

# a spreadsheet runs a text cell as a formula when it starts with one of these — the full-width
# forms are what a Chinese input method in full-width mode types, and East Asian Excel/WPS read
# them as their ASCII forms — also after leading blanks, which programs that trim a cell on
# import (LibreOffice's "Trim spaces", Google Sheets' clean-up) drop; a tab or a carriage
# return is guarded as the cell's first character whatever follows (OWASP)
FORMULA_START = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
FORMULA_BLANKS = " \t\r\n\u3000\u00a0"
CSV_MEDIA = "text/csv"  # Litestar adds "; charset=utf-8" to text/* itself
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_MAX_ROWS = 1_048_575  # a worksheet's rows, less the header
EXPORT_SHARE = 4  # the export streams of a pool hold at most a quarter of its connections
EXPORT_IDLE_SECONDS = 60.0  # an export's transaction idle, or a piece unsent, this long: cut off
EXPORT_RETRY_AFTER = 30  # seconds: the Retry-After of 429 ``exports_busy``


class SheetFull(Exception):
    """More rows than one XLSX sheet holds: the workbook is never finished (a probe: the rows
    past the sheet were dropped without a word, and the file looked complete)."""


class StalledDownload(Exception):
    """The client took no piece of a download for ``EXPORT_IDLE_SECONDS``: the answer is cut."""


Rows = Iterable[Sequence[Any]]


def formula_lead(text: str) -> str | None:
    """The character that makes a spreadsheet run ``text`` as a formula (a tab or a carriage
    return first, or a formula start after any leading blanks: ``FORMULA_START``), or None.
    The one rule of the CSV and XLSX exports and the master-data import's ``formula_value``."""
    if text.startswith(("\t", "\r")):
        return text[0]
    stripped = text.lstrip(FORMULA_BLANKS)
    return stripped[0] if stripped.startswith(FORMULA_START) else None


def formula_safe(text: str) -> str:
    """``text``, with an apostrophe in front of the whole cell when a spreadsheet would run it
    as a formula (``formula_lead``)."""
    return "'" + text if formula_lead(text) is not None else text


def local_time(value: datetime) -> str:
    """A moment as the brands' wall clock shows it, with its offset (``…+08:00``): a file read
    in Beijing showed UTC times, eight hours off what the console shows (probe AA). A moment
    past 9999 there (stored before bodies were bounded, ``app.bodies.AwareTime``) keeps its own
    offset."""
    try:
        return (value.astimezone(ZONE) if value.tzinfo is not None else value).isoformat()
    except OverflowError:
        return value.isoformat()


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


# the export streams reading from each pool now (see the module's docstring)
_streams: weakref.WeakKeyDictionary[AsyncConnectionPool, int] = weakref.WeakKeyDictionary()


class _Share:
    """One export stream's place among its pool's (``EXPORT_SHARE``), taken when made — 429
    ``exports_busy`` when they are all taken — and given back once: when its reader ends
    (read, failed or closed) or, never read (a HEAD), when the reader is dropped."""

    __slots__ = ("held", "pool", "read")

    def __init__(self, pool: AsyncConnectionPool) -> None:
        taken = _streams.get(pool, 0)
        if taken >= max(1, pool.max_size // EXPORT_SHARE):
            raise TooManyRequests(
                "as many exports as the server streams at once are running; try again shortly",
                code="exports_busy",
                details={"retry_after": EXPORT_RETRY_AFTER},
                headers={"Retry-After": str(EXPORT_RETRY_AFTER)},
            )
        _streams[pool] = taken + 1
        self.pool, self.held, self.read = pool, True, False

    def give_back(self) -> None:
        if self.held:
            self.held = False
            _streams[self.pool] -= 1

    def unread(self) -> None:
        """The reader was dropped: given back now unless it started (then its end does)."""
        if not self.read:
            self.give_back()


def pooled_batches(
    pool: AsyncConnectionPool,
    sql: str,
    params: Any,
    convert: Callable[[Any], Sequence[Any]] | None = None,
    *,
    name: str,
    batch: int,
    row_factory: Any = None,
) -> AsyncIterator[Rows]:
    """The rows of ``sql`` (each through ``convert``, if given), ``batch`` at a time, from a
    server-side cursor (``name`` and a random suffix) on a connection of ``pool`` held while
    they are read — every export that streams from the database reads through this. Raises 429
    ``exports_busy`` here, when called, if the pool's export streams are all taken; the rows
    are read once iterated. ``row_factory``: the cursor's (the connection's by default)."""
    share = _Share(pool)
    reader = _read(share, sql, params, convert, name, batch, row_factory)
    weakref.finalize(reader, share.unread)
    return reader


async def _read(
    share: _Share,
    sql: str,
    params: Any,
    convert: Callable[[Any], Sequence[Any]] | None,
    name: str,
    batch: int,
    row_factory: Any,
) -> AsyncIterator[Rows]:
    share.read = True
    closed = False  # by its writer, wanting no more rows
    try:
        async with share.pool.connection() as conn:
            idle_ms = int(EXPORT_IDLE_SECONDS * 1000)
            await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {idle_ms}")
            cursor = conn.cursor(f"{name}_{uuid.uuid4().hex}", row_factory=row_factory)
            async with cursor:
                await cursor.execute(sql, params)
                while rows := await cursor.fetchmany(batch):
                    try:
                        yield rows if convert is None else [convert(row) for row in rows]
                    except GeneratorExit:
                        closed = True
                        raise
    except psycopg.Error:
        # closed after PostgreSQL ended the idle session: its cursor cannot be closed, and the
        # pool discards the connection; the reason the download ended is reported by its writer
        if not closed:
            raise
    finally:
        share.give_back()


@asynccontextmanager
async def _closing(batches: AsyncIterable[Rows]) -> AsyncIterator[None]:
    """Close ``batches`` (a reader holding a connection) when the writer ends, however it ends:
    a download cut off closes its writer, and the reader's connection goes back at once."""
    try:
        yield
    finally:
        close = getattr(batches, "aclose", None)
        if close is not None:
            await close()


async def csv_chunks(columns: Sequence[str], batches: AsyncIterable[Rows]) -> AsyncIterator[bytes]:
    """UTF-8 CSV with a BOM (so Excel reads Chinese names), a header row, then the rows; one
    chunk per batch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([csv_cell(c) for c in columns])
    async with _closing(batches):
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
                    if isinstance(value, str) and formula_lead(value) is not None:
                        sheet.write_string(n, col, value, quoted)
                    elif value is not None:
                        sheet.write(n, col, _xlsx_cell(value))
                n += 1
            return n

        at = 1
        async with _closing(batches):
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
    handler's (JSON) over it, contrary to its docstring. Sent through ``_Sending``."""

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = self.media_type
        response = super().to_asgi_response(*args, **kwargs)
        assert isinstance(response, ASGIStreamingResponse)
        return _Sending(response)


class _Sending:
    """A download as Litestar sends it, each message sent within ``EXPORT_IDLE_SECONDS`` (else
    ``StalledDownload``: cut off), and its writer closed as the answer ends, however it ends
    (whole, cut off, the client gone, a HEAD): the rows' reader gives its connection back then,
    not when the garbage collector finds it."""

    __slots__ = ("response",)

    def __init__(self, response: ASGIStreamingResponse) -> None:
        self.response = response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_within(message: Any) -> None:
            try:
                async with asyncio.timeout(EXPORT_IDLE_SECONDS):
                    await send(message)
            except TimeoutError:
                raise StalledDownload(
                    f"the client took no piece of the download for {EXPORT_IDLE_SECONDS:g} s"
                ) from None

        try:
            await self.response(scope, receive, send_within)
        finally:
            close = getattr(self.response.iterator, "aclose", None)
            if close is not None:
                await close()


def download(chunks: AsyncIterator[bytes], fmt: str, filename: str) -> Download:
    """The streamed answer of an export: CSV or XLSX, as an attachment named ``filename``."""
    return Download(
        chunks,
        media_type=XLSX_MEDIA if fmt == "xlsx" else CSV_MEDIA,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
