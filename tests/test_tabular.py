"""The one CSV/XLSX writer (``app.tabular``): text another organisation typed is written as
text, whatever it looks like.

The XLSX sheet is read back as a spreadsheet program reads it: the sheet XML parsed, an inline
string's ``<t>`` runs joined and OOXML's ``_xHHHH_`` escapes decoded.

The exports streamed from the database (``pooled_batches``) take a bounded share of the pool and
give their connection back when their client stalls: an app of its own with a small pool."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import httpx
import msgspec
import psycopg
import pytest
from psycopg.rows import tuple_row

from app import tabular
from app.demo import DEMO_PASSWORD
from app.tabular import one_batch, xlsx_chunks
from tests.helpers import lifespan_of, verifications_changed

NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"

RICH_LOOKING = [
    "<r>Smith & Sons</r>",
    "<r>a < b</r>",
    "<r></is></c></row></r>",
    "<r><t>one</t></r><r><t>two</t></r>",
    '<r><t>ACME</t></r></is></c><c><f>HYPERLINK("http://evil.example","open")</f></c>'
    '<c t="inlineStr"><is><r><t>.</t></r>',
    "<r>_x0041_ \x07</r>",  # a literal escape and a control character: both read back as typed
    "<r>",
    "</r>",
    "<r></r>",
]


def _sheet(content: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(content)) as book:
        return book.read("xl/worksheets/sheet1.xml").decode()


def _text(cell: ElementTree.Element) -> str:
    """An inline string cell's text, ``_xHHHH_`` decoded (``_x005F_`` is a literal ``_``)."""
    raw = "".join(t.text or "" for t in cell.iter(f"{NS}t"))
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), raw)


def _cells(sheet: str) -> dict[str, str]:
    return {c.get("r", ""): _text(c) for c in ElementTree.fromstring(sheet).iter(f"{NS}c")}


async def test_text_shaped_like_rich_string_xml_is_written_as_text() -> None:
    """A probe: a customer typed ``<r>Smith & Sons</r>`` gave an XLSX whose sheet was not
    well-formed XML (Excel repaired it, dropping rows), and ``<r>…</r>`` text could close its
    own cell and open a ``<f>`` formula cell: XlsxWriter (constant memory) writes a string
    starting ``<r>`` and ending ``</r>`` raw, as rich-string XML. Fails again if an XlsxWriter
    upgrade moves that path away from the hook ``app.tabular`` overrides."""
    rows = [[value, "=1+1"] for value in RICH_LOOKING]
    content = b"".join([c async for c in xlsx_chunks("t", ["text", "note"], one_batch(rows))])
    sheet = _sheet(content)
    cells = _cells(sheet)  # ParseError on the old code
    assert [cells[f"A{n}"] for n in range(2, len(RICH_LOOKING) + 2)] == RICH_LOOKING
    assert ElementTree.fromstring(sheet).find(f".//{NS}f") is None
    assert cells["B2"] == "=1+1"  # the formula guard's text as before


async def _partner_document(client: Any, login: Any, demo: Any, customer: str) -> str:
    """A draft outbound document of the factory warehouse to AGENT-ZJ whose ``customer`` the
    factory's clerk typed: the agent sees it in its management center."""
    created = await client.post(
        "/documents",
        headers=await login("clerk"),
        json={"kind": "outbound", "counterparty_id": demo["AGENT-ZJ"], "customer": customer},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["doc_no"])


async def _agents_sheet(client: Any, login: Any, doc_no: str) -> str:
    got = await client.get(
        "/center/documents",
        headers=await login("agent_admin"),
        params={"doc_no": doc_no, "format": "xlsx"},
    )
    assert got.status_code == 200, got.text
    return _sheet(got.content)


async def test_a_customer_typed_like_a_rich_string_keeps_the_sheet_whole(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the factory clerk typed the customer ``<r>Smith & Sons</r>`` on a document; the
    agent's management-center XLSX then held a sheet that was not well-formed XML (Excel: "We
    found a problem with some content"). Now the cell is the text as typed."""
    customer = "<r>Smith & Sons</r>"
    sheet = await _agents_sheet(
        client, login, await _partner_document(client, login, demo, customer)
    )
    assert customer in _cells(sheet).values()


async def test_a_partners_text_cannot_plant_a_formula_in_an_xlsx_export(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a customer (200 characters at most) starting ``<r>`` and ending ``</r>``, typed
    by the factory clerk, closed its own cell and opened a HYPERLINK formula cell in the agent's
    management-center XLSX, past the formula guard (which looks at ``= + - @`` tab CR only).
    Now the cell holds exactly the typed text and the sheet no formula."""
    customer = RICH_LOOKING[4]
    assert len(customer) <= 200
    sheet = await _agents_sheet(
        client, login, await _partner_document(client, login, demo, customer)
    )
    assert ElementTree.fromstring(sheet).find(f".//{NS}f") is None
    assert customer in _cells(sheet).values()


async def test_a_row_past_the_sheet_is_refused_never_dropped() -> None:
    """A probe: XlsxWriter drops a row past the sheet's last (1,048,576 with the header) and
    goes on, so an export whose rows grew after its count (or that never counted) was delivered
    as a complete workbook without its last rows. The writer now refuses the row."""

    async def batches() -> AsyncIterator[list[tuple[Any, ...]]]:
        yield [("first",)]
        for _ in range(tabular.XLSX_MAX_ROWS // 100_000):  # empty rows cost nothing to write
            yield [()] * 100_000
        yield [()] * (tabular.XLSX_MAX_ROWS % 100_000 - 1)  # the sheet is full with these
        yield [("last",)]

    with pytest.raises(tabular.SheetFull):
        _ = [chunk async for chunk in tabular.xlsx_chunks("t", ["v"], batches())]


# full-width formula starts (a Chinese input method in full-width mode) and formulas after blanks
GUARDED = [
    *(f'{lead}HYPERLINK("http://evil.example","refund")' for lead in "=+-@＝＋－＠"),
    *(f"{blank}=1+1" for blank in (" ", "  ", "\u3000", "\n", "\u00a0", " \t", "\r\n")),
    " \u3000＋86 138",
    "\tplain",  # a tab or a CR first is guarded whatever follows, as before
    "\rplain",
    "-12.50",  # a number written as text was guarded before, and still is
]
UNGUARDED = ["plain", " plain", "a=1", "中文＝名", "\u3000", "   ", "", "1-2", "x@y.example"]


def _quoted_styles(content: bytes) -> set[str]:
    """The indexes of the workbook's cell formats with Excel's quote prefix."""
    with zipfile.ZipFile(io.BytesIO(content)) as book:
        styles = ElementTree.fromstring(book.read("xl/styles.xml"))
    xfs = styles.find(f"{NS}cellXfs")
    assert xfs is not None
    return {str(n) for n, xf in enumerate(xfs) if xf.get("quotePrefix") == "1"}


async def test_full_width_and_blank_led_formulas_are_guarded_in_csv_and_xlsx() -> None:
    """A probe: a complaint typed ``＝HYPERLINK(…)`` (full-width, as a Chinese input method in
    full-width mode types it: East Asian Excel/WPS read it as ``=``) or `` =HYPERLINK(…)`` (a
    blank, U+3000, a line feed or NBSP first: programs that trim cells on import drop it) went
    into the CSV export unguarded — the guard looked at the first character for ``= + - @``
    only. Now such a cell gets the apostrophe in front of the whole cell, and in XLSX the quote
    prefix; numbers (a negative amount) stay numbers, other text stays as typed."""
    from decimal import Decimal

    for value in GUARDED:
        assert tabular.csv_cell(value) == "'" + value, repr(value)
    for value in UNGUARDED:
        assert tabular.csv_cell(value) == value, repr(value)
    assert tabular.csv_cell(-5) == -5 and tabular.csv_cell(Decimal("-12.50")) == Decimal("-12.50")

    texts = GUARDED + UNGUARDED
    csv_file = b"".join([c async for c in tabular.csv_chunks(["v"], one_batch([[-5]]))])
    assert csv_file.decode("utf-8-sig").splitlines()[1] == "-5"  # a number, unguarded

    rows: list[list[Any]] = [[value, -5, Decimal("-12.50")] for value in texts]
    content = b"".join([c async for c in xlsx_chunks("t", ["v", "n", "d"], one_batch(rows))])
    quoted = _quoted_styles(content)
    cells = {c.get("r", ""): c for c in ElementTree.fromstring(_sheet(content)).iter(f"{NS}c")}
    for n, value in enumerate(texts, start=2):
        cell = cells.get(f"A{n}")
        if value == "":
            assert cell is None
            continue
        assert cell is not None and _text(cell) == value, repr(value)  # shown as typed
        assert (cell.get("s") in quoted) == (value in GUARDED), repr(value)
        for col in "BC":  # negative numbers: number cells, no quote prefix
            number = cells[f"{col}{n}"]
            assert number.get("t") in (None, "n") and number.get("s") not in quoted
            assert float(number.findtext(f"{NS}v") or "") < 0


# -- exports streamed from the database: a bounded share of the pool, cut off when stalled ------

POOL = 4  # a small pool (TRACECODE_DB_POOL_MAX): its export streams may hold one connection


async def _download(app: Any, path: str, query: str, token: str) -> tuple[int, asyncio.Task[Any]]:
    """Start ``GET path?query`` on ``app`` as a client that reads the first two pieces of the
    answer (the header row and one batch of rows) and then stops reading, as a browser on a
    slow or paused connection does (its socket buffer full: the server's send waits). The
    answer's status, once the client stopped reading (200) or the answer ended (any other),
    and the request's task."""
    settled = asyncio.Event()
    status = 0
    pieces = 0
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # still connected, never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal pieces, status
        if message["type"] == "http.response.start":
            status = message["status"]
        if message["type"] == "http.response.body":
            if status != 200:
                settled.set()
                return
            pieces += 1
            if pieces >= 2:
                settled.set()
                await asyncio.Event().wait()  # the client reads no more

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 40123),
        "server": ("testserver", 80),
    }
    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(settled.wait(), 20)
    return status, task


async def _stop(downloads: list[asyncio.Task[Any]]) -> None:
    for task in downloads:
        task.cancel()
    await asyncio.gather(*downloads, return_exceptions=True)


@pytest.fixture
async def small_pool_app(settings: Any, demo: Any, app: Any) -> AsyncIterator[Any]:
    """An app of its own with a pool of ``POOL`` connections (and a few verification records of
    the brand's to export)."""
    async with app.state.pool.connection() as conn:
        await conn.cursor().executemany(
            "INSERT INTO verifications (at, record_key, serial, brand_id, result, reason) "
            "VALUES (%s, %s, %s, %s, 'not_genuine', 'forged')",
            [
                (datetime.now(UTC), uuid.uuid4(), f"BULKPOOL{i}", demo["BRAND-LUMI"])
                for i in range(5)
            ],
        )
    from app.main import create_app

    small = create_app(
        msgspec.structs.replace(
            settings,
            db_pool_min=1,
            db_pool_max=POOL,
            db_pool_timeout=1.0,
            redis_namespace=settings.redis_namespace + "bulkpool",
        )
    )
    async with lifespan_of(small):
        yield small
    async with app.state.pool.connection() as conn:
        pool = await (
            await conn.execute("SELECT id FROM verifications WHERE serial LIKE 'BULKPOOL%%'")
        ).fetchall()
        async with verifications_changed(conn, [row["id"] for row in pool]):
            await conn.execute("DELETE FROM verifications WHERE serial LIKE 'BULKPOOL%%'")


async def _token(client: httpx.AsyncClient) -> str:
    login = await client.post("/auth/login", json={"username": "admin", "password": DEMO_PASSWORD})
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


def _served(app: Any) -> httpx.AsyncClient:
    """An httpx client on ``app`` whose lifespan already runs (``small_pool_app``)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40124)),
        base_url="http://testserver",
        timeout=60,
    )


async def test_stalled_csv_downloads_do_not_take_the_whole_database_pool(
    small_pool_app: Any,
) -> None:
    """A probe: every streamed CSV/XLSX export (``/center/documents``, ``/center/stock``,
    ``/verifications``, ``/rebates``, members, redemptions …) held a pooled PostgreSQL
    connection, in an open transaction with a server-side cursor, for as long as its client
    took to read the file — for ever when the client stopped reading but stayed connected. As
    many stalled downloads as the pool held (20 by default, /tmp/probe_bulk/stall_pool.py) and
    every other request needing the database — log-ins, the console, consumers' ``POST
    /v1/verify`` — waited ``TRACECODE_DB_POOL_TIMEOUT`` and answered 503. Now the export
    streams hold at most a quarter of the pool (``app.tabular.EXPORT_SHARE``), further exports
    are refused with 429, and ordinary requests keep answering."""
    app = small_pool_app
    async with _served(app) as client:
        token = await _token(client)
        tries = [await _download(app, "/verifications", "format=csv", token) for _ in range(POOL)]
        try:
            assert [status for status, _ in tries] == [200] + [429] * (POOL - 1)
            headers = {"Authorization": f"Bearer {token}"}
            orgs = await client.get("/orgs", headers=headers)
            verify = await client.post("/v1/verify", json={"serial": "0" * 20})
            assert orgs.status_code == 200, orgs.text
            assert verify.status_code != 503, verify.text
        finally:
            await _stop([task for _, task in tries])


async def test_an_export_past_the_pools_share_is_429_exports_busy_before_it_starts(
    small_pool_app: Any,
) -> None:
    """A probe: an export asked for while the pool's export streams are all taken (one of four
    connections here: ``max(1, TRACECODE_DB_POOL_MAX // 4)``) is refused before its answer
    starts — 429 ``exports_busy`` with ``Retry-After`` —, whatever its domain or format; a
    HEAD takes no stream for long; once the stalled download is gone, exports answer again."""
    app = small_pool_app
    async with _served(app) as client:
        token = await _token(client)
        headers = {"Authorization": f"Bearer {token}"}
        status, stalled = await _download(app, "/verifications", "format=csv", token)
        assert status == 200
        try:
            for path, fmt in (("/center/stock", "csv"), ("/center/documents", "xlsx")):
                busy = await client.get(path, headers=headers, params={"format": fmt})
                assert busy.status_code == 429, busy.text
                assert busy.json()["error"]["code"] == "exports_busy"
                assert busy.headers["Retry-After"] == str(tabular.EXPORT_RETRY_AFTER)
        finally:
            await _stop([stalled])
        head = await client.head("/center/stock", headers=headers, params={"format": "csv"})
        assert head.status_code == 200
        again = await client.get("/center/stock", headers=headers, params={"format": "csv"})
        assert again.status_code == 200, again.text
        assert again.content.startswith("\ufeff".encode())


async def test_a_stalled_downloads_connection_goes_back_to_the_pool(
    small_pool_app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe: a client that stops reading but stays connected held its export's connection
    (and the export's share of the pool) for ever. Now the download is cut off after
    ``EXPORT_IDLE_SECONDS`` without a piece taken (shortened here), logged as an error after the
    answer started, and the connection is given back: the pool hands out all its connections
    again, none of them is left idle in the export's transaction, and exports answer again."""
    monkeypatch.setattr(tabular, "EXPORT_IDLE_SECONDS", 0.5)
    app = small_pool_app
    pool = app.state.pool
    async with _served(app) as client:
        token = await _token(client)
        status, stalled = await _download(app, "/verifications", "format=csv", token)
        assert status == 200
        with caplog.at_level(logging.ERROR):
            await asyncio.wait_for(stalled, 10)  # cut off, not left waiting for the client
        assert "StalledDownload" in caplog.text  # logged as an error after the answer started
        taken = [await pool.getconn(timeout=2) for _ in range(POOL)]
        try:
            rows = await (
                await taken[0].execute(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state LIKE 'idle in transaction%%' AND query LIKE '%%export_%%'"
                )
            ).fetchone()
            assert rows is not None and rows["n"] == 0
            await taken[0].rollback()
        finally:
            for conn in taken:
                await pool.putconn(conn)
        again = await client.get(
            "/verifications", headers={"Authorization": f"Bearer {token}"}, params={"format": "csv"}
        )
        assert again.status_code == 200, again.text


async def test_postgresql_ends_an_idle_export_and_the_pool_discards_its_connection(
    small_pool_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export's own transaction is limited too: a reader left idle longer than
    ``EXPORT_IDLE_SECONDS`` (its client not reading) has its session ended by PostgreSQL
    (``idle_in_transaction_session_timeout``), the next read fails, and the pool discards the
    broken connection and makes a new one; the export's share is given back."""
    monkeypatch.setattr(tabular, "EXPORT_IDLE_SECONDS", 0.3)
    pool = small_pool_app.state.pool
    batches = tabular.pooled_batches(
        pool,
        "SELECT g FROM generate_series(1, 10) g",
        None,
        name="export",
        batch=2,
        row_factory=tuple_row,
    )
    assert await anext(batches) == [(1,), (2,)]
    await asyncio.sleep(1.0)  # PostgreSQL ends the idle transaction's session meanwhile
    with pytest.raises(psycopg.Error):  # the session ended (25P03), or its socket closed
        await anext(batches)
    assert tabular._streams.get(pool, 0) == 0
    taken = [await pool.getconn(timeout=2) for _ in range(POOL)]  # all there, all working
    try:
        for conn in taken:
            await conn.execute("SELECT 1")
            await conn.rollback()
    finally:
        for conn in taken:
            await pool.putconn(conn)
    assert pool.get_stats().get("returns_bad") == 1  # discarded: "discarding closed connection"
