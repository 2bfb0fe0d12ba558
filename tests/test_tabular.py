"""The one CSV/XLSX writer (``app.tabular``): text another organisation typed is written as
text, whatever it looks like.

The XLSX sheet is read back as a spreadsheet program reads it: the sheet XML parsed, an inline
string's ``<t>`` runs joined and OOXML's ``_xHHHH_`` escapes decoded."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any
from xml.etree import ElementTree

from app.tabular import one_batch, xlsx_chunks

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
    from collections.abc import AsyncIterator

    import pytest

    from app import tabular

    async def batches() -> AsyncIterator[list[tuple[Any, ...]]]:
        yield [("first",)]
        for _ in range(tabular.XLSX_MAX_ROWS // 100_000):  # empty rows cost nothing to write
            yield [()] * 100_000
        yield [()] * (tabular.XLSX_MAX_ROWS % 100_000 - 1)  # the sheet is full with these
        yield [("last",)]

    with pytest.raises(tabular.SheetFull):
        _ = [chunk async for chunk in tabular.xlsx_chunks("t", ["v"], batches())]
