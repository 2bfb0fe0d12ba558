"""Orders by CSV import and the management center: document lines and stock, filtered, paged,
scoped to the caller's subtree, exported as CSV and XLSX (SPEC L1, L10)."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import secrets
import zipfile
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree

import pytest

from app.logistics.rollup import rollup
from tests.helpers import assert_error
from tests.test_logistics import confirm, document, pack, palletised
from tests.test_stock import _subtree

_ids = itertools.count()
HEADER = "erp_no,kind,from_erp_code,to_erp_code,order_date,product_no,gtin,quantity,note\n"


async def import_csv(client: Any, headers: dict[str, str], text: str | bytes) -> Any:
    body = text.encode() if isinstance(text, str) else text
    return await client.post(
        "/orders/import", headers={**headers, "Content-Type": "text/csv"}, content=body
    )


async def test_csv_import_keeps_valid_orders_and_names_bad_rows(
    client: Any, login: Any, demo: Any
) -> None:
    partner = await login("partner")
    n = next(_ids)
    good, mixed, other = f"CSV-A-{n}", f"CSV-B-{n}", f"CSV-C-{n}"
    text = (
        HEADER
        # line 2-3: a good order of two products, one by product number, one by GTIN-13
        + f"{good},sales,FACTORY-SZ,AGENT-ZJ,2026/11/10,LM-SC-30,,500,first\n"
        + f"{good},sales,FACTORY-SZ,AGENT-ZJ,2026/11/10,,6901234000016,200,first\n"
        # line 4-9: an order with every kind of bad row: all of it is rejected
        + f"{mixed},sales,FACTORY-SZ,AGENT-ZJ,2026-11-11,LM-SC-30,,10,\n"
        + f"{mixed},sales,FACTORY-SZ,AGENT-ZJ,2026-11-11,NO-SUCH,,10,\n"
        + f"{mixed},sales,FACTORY-SZ,AGENT-ZJ,2026-11-11,LM-HY-50,,ten,\n"
        + f"{mixed},sales,FACTORY-SZ,AGENT-ZJ,2026-11-11,,6901234000023,5,\n"
        + f"{mixed},sales,FACTORY-SZ,AGENT-XX,2026-11-11,LM-LS-01,,5,\n"
        + f"{mixed},sales,FACTORY-SZ,AGENT-ZJ,2026-13-45,LM-LS-01,,5,\n"
        + "\n"  # a blank line is skipped (and still counted)
        # line 11-12: a good transfer between agents, the note quoted
        + f'{other},transfer,AGENT-ZJ,AGENT-GD,,LM-LS-01,,3,"with, comma"\n'
        + f'{other},transfer,AGENT-ZJ,AGENT-GD,,LM-HY-50,,4,"with, comma"\n'
        # line 13: bad ERP number
        + "bad number,sales,FACTORY-SZ,AGENT-ZJ,,LM-SC-30,,1,\n"
    )
    response = await import_csv(client, partner, text)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["created"], body["existing"], body["rejected"]) == (2, 0, 1), body
    assert body["rows"] == 11
    found = {(e["line"], e["column"], e["code"]) for e in body["errors"]}
    assert found == {
        (5, "product_no", "unknown_product"),
        (6, "quantity", "bad_quantity"),
        (7, "gtin", "duplicate_product"),  # LM-SC-30 again (by its GTIN), first on line 4
        (8, "to_erp_code", "unknown_org"),
        (8, "to_erp_code", "inconsistent_order"),
        (9, "order_date", "bad_date"),
        (9, "order_date", "inconsistent_order"),
        (9, "product_no", "duplicate_product"),  # LM-LS-01, first on line 8
        (13, "erp_no", "bad_erp_no"),
    }, body["errors"]
    assert all(e["message"] for e in body["errors"])
    assert {o["erp_no"]: o["result"] for o in body["orders"]} == {
        good: "created",
        mixed: "rejected",
        other: "created",
    }

    listed = (await client.get("/orders", headers=partner, params={"erp_no": good})).json()
    (order,) = listed["items"]
    assert order["source"] == "csv" and order["order_date"] == "2026-11-10"
    assert order["note"] == "first"
    assert sorted(line["quantity"] for line in order["lines"]) == [200, 500]
    assert (await client.get("/orders", headers=partner, params={"erp_no": mixed})).json()[
        "total"
    ] == 0

    # the same file again creates nothing new
    again = (await import_csv(client, partner, text)).json()
    assert (again["created"], again["existing"], again["rejected"]) == (0, 2, 1)
    ids = {o["erp_no"]: o["id"] for o in again["orders"] if o["id"]}
    assert ids[good] == order["id"]

    # the same ERP number with other content: that order is refused, named at its first line
    changed = HEADER + f"{good},sales,FACTORY-SZ,AGENT-ZJ,2026-11-10,LM-SC-30,,501,first\n"
    third = (await import_csv(client, partner, changed)).json()
    assert (third["created"], third["rejected"]) == (0, 1)
    assert [(e["line"], e["code"]) for e in third["errors"]] == [(2, "order_no_reused")]

    # GB18030 from Chinese Excel, with a Chinese note
    gbk = HEADER + f"CSV-G-{n},sales,FACTORY-SZ,STORE-HZ-01,,LM-SC-30,,1,春季补货\n"
    got = (await import_csv(client, partner, gbk.encode("gb18030"))).json()
    assert got["created"] == 1, got
    stored = (await client.get("/orders", headers=partner, params={"erp_no": f"CSV-G-{n}"})).json()
    assert stored["items"][0]["note"] == "春季补货"


async def test_csv_quantities_and_dates_are_ascii_digits_only(
    client: Any, login: Any, demo: Any
) -> None:
    """Probe P: a quantity was read by Python's int(): "1_000", "+5", full-width "１２" and
    Arabic-Indic "٣" were numbers here and errors in the master-data imports. Dates alike."""
    partner = await login("partner")
    n = next(_ids)
    cells = ["1_000", "+5", "１２", "٣", " 7", "1e3"]
    text = HEADER + "".join(
        f"CSV-Q-{n}-{i},sales,FACTORY-SZ,AGENT-ZJ,2026-11-10,LM-SC-30,,{cell},\n"
        for i, cell in enumerate(cells)
    )
    text += f"CSV-Q-{n}-d,sales,FACTORY-SZ,AGENT-ZJ,２０２６-11-10,LM-SC-30,,5,\n"
    text += f"CSV-Q-{n}-y,sales,FACTORY-SZ,AGENT-ZJ,9999-12-31,LM-SC-30,,5,\n"  # probe AA
    response = await import_csv(client, partner, text)
    assert response.status_code == 200, response.text
    body = response.json()
    found = sorted((e["line"], e["column"], e["code"]) for e in body["errors"])
    wanted = [(line, "quantity", "bad_quantity") for line in range(2, 2 + len(cells))]
    # " 7": a CSV cell is trimmed, so it is 7
    wanted.remove((6, "quantity", "bad_quantity"))
    dates = [(8, "order_date", "bad_date"), (9, "order_date", "bad_date")]
    assert found == [*wanted, *dates], body["errors"]


async def test_csv_import_refuses_bad_files(client: Any, login: Any) -> None:
    partner = await login("partner")
    error = assert_error(
        await import_csv(client, partner, "erp_no,colour,quantity\nX,red,1\n"), 400, "bad_header"
    )
    assert error["details"]["unknown"] == ["colour"]
    assert "from_erp_code" in error["details"]["missing"]
    assert_error(await import_csv(client, partner, ""), 400, "empty_file")
    assert_error(await import_csv(client, partner, b"\xff\xfe\x00bad"), 400, "bad_encoding")
    assert_error(
        await import_csv(client, partner, HEADER + 'X,sales,A,B,,P,,1,"unclosed\n'),
        400,
        "malformed_csv",
    )
    json_body = await client.post("/orders/import", headers=partner, json={"rows": []})
    assert_error(json_body, 415, "unsupported_media_type")
    rows = HEADER + "X,,A,B,,P,,1,\n" * 100_001
    assert_error(await import_csv(client, partner, rows), 413, "too_many_rows")
    huge = HEADER + "X,,A,B,,P,,1," + "n" * (10 * 1024 * 1024) + "\n"
    assert_error(await import_csv(client, partner, huge), 413, "payload_too_large")
    clerk = await login("agent_clerk")  # no orders.write
    assert_error(await import_csv(client, clerk, HEADER), 403, "permission_denied")


async def test_csv_import_honours_a_declared_charset_and_refuses_a_stray_byte(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe (the master-data imports' too, ``app.csvread``): the charset of ``Content-Type``
    was ignored — a GBK file declared ``charset=gbk`` whose bytes happen to be UTF-8 ("一品山庄"
    is the UTF-8 of "һƷɽׯ") was read as that mojibake, a Big5 file as GB18030 — and a UTF-8
    file with one stray Latin-1 byte was read as GB18030, its Chinese notes as mojibake. A
    declared GBK is read as GB18030, another charset than UTF-8 or GB18030 is 415, and the
    UTF-8 file with a bad byte is 400 ``bad_encoding`` naming its line."""
    partner = await login("partner")
    n = next(_ids)
    gbk = HEADER + f"CSV-CS-{n},sales,FACTORY-SZ,STORE-HZ-01,,LM-SC-30,,1,一品山庄\n"
    response = await client.post(
        "/orders/import",
        headers={**partner, "Content-Type": "text/csv; charset=gbk"},
        content=gbk.encode("gbk"),
    )
    assert response.status_code == 200 and response.json()["created"] == 1, response.text
    stored = (await client.get("/orders", headers=partner, params={"erp_no": f"CSV-CS-{n}"})).json()
    assert stored["items"][0]["note"] == "一品山庄"
    big5 = await client.post(
        "/orders/import",
        headers={**partner, "Content-Type": "text/csv; charset=big5"},
        content=gbk.replace("一品山庄", "台北").encode("big5"),
    )
    assert_error(big5, 415, "unsupported_media_type")
    stray = HEADER + (
        f"CSV-CT-{n},sales,FACTORY-SZ,STORE-HZ-01,,LM-SC-30,,1,春季补货\n"
        f"CSV-CT-{n},sales,FACTORY-SZ,STORE-HZ-01,,LM-LS-01,,1,Cafés\n"
    )
    raw = stray.encode().replace("é".encode(), b"\xe9")
    error = assert_error(await import_csv(client, partner, raw), 400, "bad_encoding")
    assert error["details"] == {"line": 3}, error


async def test_a_control_character_in_a_file_with_cr_line_ends_is_named_on_its_line(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the import refuses a file holding a control character, naming its first bad
    line; in a file of lone-CR line ends (Excel for Mac's "CSV (Macintosh)") it named line 1,
    the header, for a BEL on line 3 (``app.csvread.refuse_control`` split on LF only). Lines
    end as the rows count them: CR, CRLF or LF."""
    partner = await login("partner")
    n = next(_ids)
    rows = (
        f"CSV-CR-{n},sales,FACTORY-SZ,AGENT-ZJ,,LM-SC-30,,1,ok\r"
        f"CSV-CR-{n}b,sales,FACTORY-SZ,AGENT-ZJ,,LM-SC-30,,1,bell\x07\r"
    )
    for text in (HEADER.replace("\n", "\r") + rows, HEADER + rows.replace("\r", "\r\n", 1)):
        error = assert_error(await import_csv(client, partner, text), 400, "invalid_character")
        assert error["details"][0]["line"] == 3, (text, error)


async def test_order_numbers_excel_showed_in_scientific_notation_are_not_merged(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ERP order numbers are often long digit strings (202611100001), which Excel shows
    in scientific notation and saves so: two orders became "2.02611E+11" twice, read as one
    valid ``erp_no`` — 200 ``created: 1``, one order holding both orders' lines. A number as
    Excel's scientific notation is no order number: each row is ``bad_erp_no`` (naming its
    line and column, and saying to format the column as text) and no order is created."""
    partner = await login("partner")
    mangled = f"2.{secrets.randbelow(90000) + 10000}E+11"  # a 12-digit number as Excel shows it
    text = HEADER + (
        f"{mangled},sales,FACTORY-SZ,AGENT-ZJ,,LM-SC-30,,5,\n"  # was 202611100001
        f"{mangled},sales,FACTORY-SZ,AGENT-ZJ,,LM-HY-50,,7,\n"  # was 202611100002
    )
    response = await import_csv(client, partner, text)
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["created"] == 0 and got["orders"] == [], got
    found = {(e["line"], e["column"], e["code"]) for e in got["errors"]}
    assert found == {(2, "erp_no", "bad_erp_no"), (3, "erp_no", "bad_erp_no")}, got["errors"]
    assert "scientific notation" in got["errors"][0]["message"], got["errors"]


@pytest.fixture(scope="module")
async def shipped(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """Three cases packed, into the factory warehouse, shipped to the Zhejiang agent against an
    order and received there: four documents of one product and lot."""
    goods = await pack(client, login, app, demo, 3)
    clerk, partner = await login("clerk"), await login("partner")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound", signee="Li")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    order = await client.post(
        "/orders",
        headers=partner,
        json={
            "erp_no": f"CENTER-{next(_ids)}-{goods['batch_no']}",
            "from_org_id": demo["FACTORY-SZ"],
            "to_org_id": demo["AGENT-ZJ"],
            "lines": [{"product_id": goods["product_id"], "quantity": 30}],
        },
    )
    assert order.status_code == 201, order.text
    ship = await document(
        client,
        clerk,
        goods["cases"],
        kind="outbound",
        order_id=order.json()["id"],
        signee="Wang Fang",
        phone="+86 138 0000 0000",
        customer="浙江代理",
        customer_type="agent",
        destination_city="杭州市",
    )
    assert (await confirm(client, clerk, ship)).status_code == 200
    agent = await login("agent_clerk")
    received = await client.post(f"/orders/{order.json()['id']}/receive", headers=agent)
    assert received.status_code == 200, received.text
    draft = await document(client, agent, kind="outbound", counterparty_id=demo["STORE-HZ-01"])
    return {
        **goods,
        "inbound": inbound,
        "ship": ship,
        "receipt": received.json(),
        "draft": draft,
        "order_no": order.json()["erp_no"],
    }


async def rows_of(client: Any, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get("/center/documents", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_center_lists_document_lines_with_filters_and_paging(
    client: Any, login: Any, demo: Any, shipped: dict[str, Any]
) -> None:
    admin = await login("admin")
    ship = shipped["ship"]
    (row,) = (await rows_of(client, admin, doc_no=ship["doc_no"]))["items"]
    assert row["doc_no"] == ship["doc_no"] and row["kind"] == "outbound"
    assert (row["status"], row["direction"]) == ("confirmed", "outbound")
    assert row["org_id"] == demo["WH-SZ-01"] and row["counterparty_id"] == demo["AGENT-ZJ"]
    assert row["org_name"].startswith("Factory Warehouse") and row["org_city"] == "苏州市"
    assert row["counterparty_name"].startswith("Zhejiang Agent")
    assert (row["signee"], row["phone"], row["destination_city"]) == (
        "Wang Fang",
        "+86 138 0000 0000",
        "杭州市",
    )
    assert (row["customer"], row["customer_type"]) == ("浙江代理", "agent")
    assert row["handler_name"] == "Factory warehouse clerk"
    assert row["order_no"] == shipped["order_no"]
    assert (row["product_id"], row["product_no"], row["lot"]) == (
        shipped["product_id"],
        "LM-SC-30",
        "LOG1",
    )
    assert (row["units"], row["packages"]) == (30, 3)
    assert row["gtin"] == "06901234000023" and row["category"] == "护肤 Skincare"

    # a draft has no lines yet: one row with empty product columns
    (draft,) = (await rows_of(client, admin, doc_no=shipped["draft"]["doc_no"]))["items"]
    assert draft["status"] == "draft" and draft["product_id"] is None and draft["units"] is None

    # filters: organisation subtree, counterparty, kind, status, product, period, handler
    mine = {shipped[k]["doc_no"] for k in ("inbound", "ship", "receipt", "draft")}  # four documents

    async def numbers(**params: Any) -> set[str]:
        page = await rows_of(client, admin, per_page=200, **params)
        return {r["doc_no"] for r in page["items"]} & mine

    assert await numbers(org_id=demo["FACTORY-SZ"]) == {
        shipped["inbound"]["doc_no"],
        ship["doc_no"],
    }
    assert await numbers(org_id=demo["AGENT-ZJ"]) == {
        shipped["receipt"]["doc_no"],
        shipped["draft"]["doc_no"],
    }
    # the counterparty's subtree: the agent, and its store the draft goes to
    assert await numbers(counterparty_id=demo["AGENT-ZJ"]) == {
        ship["doc_no"],
        shipped["draft"]["doc_no"],
    }
    assert await numbers(counterparty_id=demo["STORE-HZ-01"]) == {shipped["draft"]["doc_no"]}
    assert await numbers(kind="inbound", org_kind="agent") == {shipped["receipt"]["doc_no"]}
    assert await numbers(direction="inbound", org_id=demo["FACTORY-SZ"]) == {
        shipped["inbound"]["doc_no"]
    }
    assert await numbers(status="draft") == {shipped["draft"]["doc_no"]}
    assert await numbers(product_id=shipped["product_id"]) == mine - {shipped["draft"]["doc_no"]}
    # the period: the days the four documents are dated (the brands' calendar, Asia/Shanghai),
    # as they were dated when the module's fixture made them — "today" read here was another
    # day when midnight passed since (the fixture runs before any test of the module)
    days = set()
    for key in ("inbound", "ship", "receipt", "draft"):
        (dated,) = (await rows_of(client, admin, doc_no=shipped[key]["doc_no"]))["items"]
        days.add(datetime.fromisoformat(dated["doc_date"]).date())
    first, last = min(days), max(days)
    assert await numbers(**{"from": str(first), "to": str(last)}) == mine
    assert await numbers(**{"from": str(last + timedelta(days=1))}) == set()
    assert await numbers(handler_id=ship["handler_id"]) == {
        shipped["inbound"]["doc_no"],
        ship["doc_no"],
    }
    category = (await client.get("/categories", headers=admin)).json()
    categories = category["items"] if isinstance(category, dict) else category
    other = next(c["id"] for c in categories if c["name"] != "护肤 Skincare")
    assert await numbers(category_id=other) == set()

    # paging: the total comes with each page, pages do not overlap
    first = await rows_of(client, admin, org_id=demo["WH-SZ-01"], per_page=1, page=1)
    second = await rows_of(client, admin, org_id=demo["WH-SZ-01"], per_page=1, page=2)
    assert first["total"] == second["total"] >= 2
    assert first["items"][0]["doc_no"] != second["items"][0]["doc_no"]
    past = await rows_of(client, admin, org_id=demo["WH-SZ-01"], page=10_000)
    assert past["items"] == [] and past["total"] == first["total"]

    # bad input: clear 4xx
    assert_error(
        await client.get("/center/documents", headers=admin, params={"kind": "teleport"}), 400
    )
    assert_error(
        await client.get(
            "/center/documents", headers=admin, params={"from": "2026-02-01", "to": "2026-01-01"}
        ),
        400,
        "bad_period",
    )
    assert_error(
        await client.get("/center/documents", headers=admin, params={"format": "pdf"}), 400
    )
    assert_error(
        await client.get("/center/documents", headers=admin, params={"org_id": 999_999}),
        404,
        "unknown_org",
    )
    assert_error(
        await client.get("/center/documents", headers=await login("printer")),
        403,
        "permission_denied",
    )


async def test_an_agent_sees_only_its_own_rows(
    client: Any, login: Any, demo: Any, shipped: dict[str, Any]
) -> None:
    zj, gd = await login("agent_clerk"), await login("gd_admin")
    theirs = {shipped[k]["doc_no"] for k in ("ship", "receipt", "draft")}
    # by number: other tests (other workers too) add newer rows the agent sees
    for doc_no in theirs:  # the shipment to it, its receipt, its draft
        assert (await rows_of(client, zj, doc_no=doc_no))["items"], doc_no
    inbound = await rows_of(client, zj, doc_no=shipped["inbound"]["doc_no"])
    assert inbound["items"] == []  # inside the factory
    everything = await rows_of(client, gd, per_page=200)
    assert not theirs & {r["doc_no"] for r in everything["items"]}
    # each row has a side in GD's tree: ZJ only across from GD or one of its organisations (goods
    # other tests moved between the two trees: to GD itself, or to a store of its own)
    area: set[int] = set()
    for page in itertools.count(1):
        found = await client.get("/orgs", headers=gd, params={"page": page, "per_page": 200})
        assert found.status_code == 200, found.text
        area |= {o["id"] for o in found.json()["items"]}
        if page * 200 >= found.json()["total"]:
            break
    assert demo["AGENT-GD"] in area and demo["AGENT-ZJ"] not in area
    for row in everything["items"]:
        assert row["org_id"] in area or row["counterparty_id"] in area, row
    assert_error(
        await client.get("/center/documents", headers=gd, params={"org_id": demo["AGENT-ZJ"]}),
        404,
    )
    exported = await client.get(
        "/center/documents",
        headers=gd,
        params={"format": "csv", "doc_no": shipped["ship"]["doc_no"]},
    )
    assert exported.status_code == 200
    assert len(list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))) == 1  # header
    assert_error(
        await client.get("/center/stock", headers=gd, params={"org_id": demo["AGENT-ZJ"]}), 404
    )


def _as_text(value: Any) -> str:
    """A JSON value as the CSV writes it (app.tabular: formula-like text gets an apostrophe)."""
    from app.tabular import formula_safe

    return "" if value is None else formula_safe(value) if isinstance(value, str) else str(value)


async def test_csv_export_parses_back_to_the_same_rows(
    client: Any, login: Any, shipped: dict[str, Any]
) -> None:
    # every row the agent sees, however many earlier tests of the session left: the JSON pages
    # one after another, then the export of the same (unfiltered) query
    agent = await login("agent_clerk")
    rows: list[dict[str, Any]] = []
    for number in itertools.count(1):
        page = await rows_of(client, agent, per_page=200, page=number)
        rows += page["items"]
        if not page["items"] or len(rows) >= page["total"]:
            break
    assert len(rows) == page["total"] and page["total"] >= 3  # the shipment's rows at least
    assert {shipped[k]["doc_no"] for k in ("ship", "receipt", "draft")} <= {
        r["doc_no"] for r in rows
    }
    response = await client.get("/center/documents", headers=agent, params={"format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    parsed = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    expected = [{k: _as_text(v) for k, v in row.items()} for row in rows]
    assert len(parsed) == len(expected) == page["total"]
    for got, want in zip(parsed, expected, strict=True):
        stamps = got.pop("confirmed_at"), want.pop("confirmed_at")
        assert got == want
        if stamps[1]:  # the same instant: JSON says ...Z, the CSV the ISO offset
            assert datetime.fromisoformat(stamps[0]) == datetime.fromisoformat(stamps[1])
        else:
            assert stamps[0] == ""


def _sheet_cells(content: bytes) -> dict[str, str]:
    """Cell reference -> text of the first sheet (inline or shared strings, numbers)."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(io.BytesIO(content)) as book:
        names = set(book.namelist())
        assert {"[Content_Types].xml", "xl/workbook.xml", "xl/worksheets/sheet1.xml"} <= names
        shared: list[str] = []
        if "xl/sharedStrings.xml" in names:
            root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t"))
                      for si in root.findall("m:si", ns)]  # fmt: skip
        sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet1.xml"))
    cells: dict[str, str] = {}
    for c in sheet.iter(f"{{{ns['m']}}}c"):
        kind, value = c.get("t"), c.find("m:v", ns)
        if kind == "s" and value is not None:
            cells[c.get("r", "")] = shared[int(value.text or 0)]
        elif kind == "inlineStr":
            cells[c.get("r", "")] = "".join(t.text or "" for t in c.iter(f"{{{ns['m']}}}t"))
        elif value is not None:
            cells[c.get("r", "")] = value.text or ""
    return cells


async def test_xlsx_export_opens_with_the_rows(
    client: Any, login: Any, shipped: dict[str, Any]
) -> None:
    admin = await login("admin")
    ship = shipped["ship"]["doc_no"]
    response = await client.get(
        "/center/documents", headers=admin, params={"format": "xlsx", "doc_no": ship}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    cells = _sheet_cells(response.content)
    assert (cells["A1"], cells["B1"]) == ("doc_id", "doc_no")
    assert cells["B2"] == ship and "B3" not in cells
    letters = [a + b for a in ["", "A"] for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    columns = {cells[f"{x}1"]: x for x in letters if f"{x}1" in cells}
    assert len(columns) == 33
    assert cells[f"{columns['destination_city']}2"] == "杭州市"
    assert cells[f"{columns['units']}2"] == "30"


async def test_center_stock_from_the_rollup(
    client: Any, login: Any, app: Any, demo: Any, shipped: dict[str, Any]
) -> None:
    async with app.state.pool.connection() as conn:
        await rollup(conn)
    agent = await login("agent_clerk")
    params = {"product_id": shipped["product_id"], "lot": "LOG1", "per_page": 200}
    rows = (await client.get("/center/stock", headers=agent, params=params)).json()["items"]
    # the agent's subtree as it is now: other tests ship this product and lot to stores of
    # their own below AGENT-ZJ
    subtree = await _subtree(app, demo["AGENT-ZJ"])
    assert rows and all(r["org_id"] in subtree for r in rows)
    at_agent = next(r for r in rows if r["org_id"] == demo["AGENT-ZJ"])
    # the module's shipment still at the agent: test_stock_rows_count_the_packages_held moves
    # one of its three cases on to the store (before this test in some orders)
    codes = [(b << 32) | i for b, i, _ in map(app.state.scheme.verify, shipped["units"])]
    async with app.state.pool.connection() as conn:
        held = await (
            await conn.execute(
                """SELECT count(*) AS n FROM unit_state
                    WHERE code = ANY(%s) AND holder_org_id = %s AND status = 'active'""",
                (codes, demo["AGENT-ZJ"]),
            )
        ).fetchone()
    assert held["n"] >= 20 and at_agent["on_hand"] >= held["n"]
    assert at_agent["product_no"] == "LM-SC-30"
    assert at_agent["org_kind"] == "agent" and at_agent["org_city"] == "杭州市"
    factory = await client.get(
        "/center/stock", headers=await login("admin"), params={**params, "org_kind": "agent"}
    )
    assert {r["org_kind"] for r in factory.json()["items"]} == {"agent"}
    exported = await client.get("/center/stock", headers=agent, params={**params, "format": "csv"})
    parsed = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [(int(r["org_id"]), r["lot"], int(r["on_hand"])) for r in parsed] == [
        (r["org_id"], r["lot"], r["on_hand"]) for r in rows
    ]
    xlsx = await client.get("/center/stock", headers=agent, params={**params, "format": "xlsx"})
    assert _sheet_cells(xlsx.content)["A1"] == "org_id"


async def test_document_rows_name_the_manufacturer_and_the_package_type(
    client: Any, login: Any, app: Any, demo: Any, shipped: dict[str, Any]
) -> None:
    """A probe: the agent's clerk looks up its inbound in the management center; the seed lists
    生产商 (manufacturer) on the factory's and the agent's in/out records (五.1.3.1, 1.3.2) and
    包装类型 (package type) beside 包装数量 on the agent's inbound, but no row, document line or
    document named the factory that packed the goods, nor what kind of package ``packages: 3``
    counted. Each line names both (written on confirmation); a line of loose units has no
    package type, one of a pallet says ``pallet``."""
    agent, clerk = await login("agent_clerk"), await login("clerk")
    for key, reader in (("inbound", clerk), ("ship", clerk), ("receipt", agent)):
        (row,) = (await rows_of(client, reader, doc_no=shipped[key]["doc_no"]))["items"]
        assert (row["units"], row["packages"], row["package_level"]) == (30, 3, "inner")
        assert row["manufacturer_id"] == demo["FACTORY-SZ"]
        assert row["manufacturer"] == "Suzhou Factory 苏州工厂"
    (draft,) = (await rows_of(client, agent, doc_no=shipped["draft"]["doc_no"]))["items"]
    assert (draft["manufacturer"], draft["package_level"]) == (None, None)
    (line,) = (await client.get(f"/documents/{shipped['receipt']['id']}", headers=agent)).json()[
        "lines"
    ]
    assert (line["package_level"], line["manufacturer"]) == ("inner", "Suzhou Factory 苏州工厂")

    # loose units and a pallet
    goods = await palletised(client, login, app, demo)
    loose = await pack(client, login, app, demo, 1)
    inbound = await document(client, clerk, loose["units"][:4], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    (row,) = (await rows_of(client, clerk, doc_no=inbound["doc_no"]))["items"]
    assert (row["units"], row["packages"], row["package_level"]) == (4, 0, None)
    ship = await document(
        client,
        clerk,
        [goods["pallet"], loose["units"][0]],
        kind="outbound",
        counterparty_id=demo["AGENT-ZJ"],
    )
    shipment = await confirm(client, clerk, ship)
    assert shipment.status_code == 200, shipment.text
    (line,) = shipment.json()["lines"]
    assert (line["units"], line["packages"], line["package_level"]) == (21, 1, "pallet")
    exported = await client.get(
        "/center/documents", headers=clerk, params={"format": "csv", "doc_no": ship["doc_no"]}
    )
    (parsed,) = csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig")))
    assert list(parsed)[-3:] == ["manufacturer_id", "manufacturer", "package_level"]
    assert (parsed["manufacturer"], parsed["package_level"]) == (
        "Suzhou Factory 苏州工厂",
        "pallet",
    )


async def test_stock_rows_count_the_packages_held(
    client: Any, login: Any, app: Any, demo: Any, shipped: dict[str, Any]
) -> None:
    """A probe: an agent's clerk opens 本地库存 (the seed, 五.1.3.1–1.3.3: 产品数量 *and* 包装数量
    per stock row); the rows of ``GET /center/stock`` and ``GET /stock`` had units only — the
    agent holding three sealed cases could not see it held 3 packages. A row counts the
    outermost cases on hand that hold a unit: one shipped on leaves the agent's count and joins
    the store's once received; a case the store sells unit by unit counts until its last unit is
    sold."""
    admin = await login("admin")
    product, agent_id, store_id = shipped["product_id"], demo["AGENT-ZJ"], demo["STORE-HZ-01"]

    async def packages(org: int) -> int:
        """The org's packages by both lists (0: no row yet)."""
        async with app.state.pool.connection() as conn:
            await rollup(conn)
        params = {"org_id": org, "product_id": product, "lot": "LOG1"}
        listed = (await client.get("/stock", headers=admin, params=params)).json()["items"]
        params["include_zero"] = True
        rows = (await client.get("/center/stock", headers=admin, params=params)).json()["items"]
        counts = [r["packages"] for r in rows if r["org_id"] == org]
        assert [r["packages"] for r in listed if r["org_id"] == org] == counts
        return int(counts[0]) if counts else 0

    at_agent, at_store = await packages(agent_id), await packages(store_id)
    assert at_agent >= 3
    agent = await login("agent_clerk")
    case, units = shipped["cases"][0], shipped["units"][:10]
    to_store = await document(client, agent, [case], kind="outbound", counterparty_id=store_id)
    assert (await confirm(client, agent, to_store)).status_code == 200
    assert await packages(agent_id) == at_agent - 1
    store = await login("store_clerk")
    receipt = await document(client, store, kind="inbound", shipment_id=to_store["id"])
    assert (await confirm(client, store, receipt)).status_code == 200
    assert await packages(store_id) == at_store + 1
    for i, unit in enumerate(units):
        sold = await client.post("/sales", headers=store, json={"codes": [unit]})
        assert sold.status_code == 201, sold.text
        if i == 8:
            assert await packages(store_id) == at_store + 1  # one unit left in it
    assert await packages(store_id) == at_store  # emptied: no package
    params = {"org_id": store_id, "product_id": product, "lot": "LOG1", "include_zero": True}
    exported = await client.get("/center/stock", headers=admin, params={**params, "format": "csv"})
    (parsed,) = csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig")))
    assert list(parsed)[-1] == "packages" and int(parsed["packages"]) == at_store


async def test_an_import_never_waits_and_never_holds_up_single_orders(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Probe C: every order of an import took one lock per brand until the import committed,
    so a single order waited out a 3,000-order import, and retried imports waiting on it held
    every pooled connection (503 everywhere). Probe G: a lock per ERP number instead filled
    PostgreSQL's shared lock table at ~6,000 orders. One import of a brand runs at a time, the
    next is told so at once; single orders take no lock."""
    from app import locks
    from app.locks import Lock

    partner = await login("partner")
    n = next(_ids)
    rows = [
        f"{no},sales,FACTORY-SZ,AGENT-ZJ,,LM-SC-30,,5,\n" for no in (f"BUSY-A-{n}", f"BUSY-B-{n}")
    ]
    async with app.state.pool.connection() as other:  # another import of the brand, running
        product = await (
            await other.execute(
                "SELECT id FROM products WHERE product_no = 'LM-SC-30' AND org_id = %s",
                (demo["BRAND-LUMI"],),
            )
        ).fetchone()
        await other.execute(*locks.xact(Lock.ORDER_IMPORT, demo["BRAND-LUMI"]))
        busy = await import_csv(client, partner, HEADER + "".join(rows))
        assert_error(busy, 409, "orders_busy")
        single = {
            "erp_no": f"BUSY-C-{n}",
            "kind": "sales",
            "from_org_id": demo["FACTORY-SZ"],
            "to_org_id": demo["AGENT-ZJ"],
            "lines": [{"product_id": product["id"], "quantity": 1}],
        }
        made = await client.post("/orders", headers=partner, json=single)  # not kept waiting
        assert made.status_code == 201, made.text
        await other.rollback()
    done = await import_csv(client, partner, HEADER + "".join(rows))
    assert done.status_code == 200 and done.json()["created"] == 2, done.text


async def test_orders_of_one_number_raced_make_one_order(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    """Without a lock, the number's unique key decides: ten identical orders at once make one
    (201, the others 200 with it); ten of one number with other content, one (the others 409
    order_no_reused)."""
    partner = await login("partner")
    product = await (
        await conn.execute("SELECT id FROM products WHERE product_no = 'LM-SC-30'")
    ).fetchone()
    await conn.commit()

    def order(erp_no: str, quantity: int) -> dict[str, Any]:
        return {
            "erp_no": erp_no,
            "kind": "sales",
            "from_org_id": demo["FACTORY-SZ"],
            "to_org_id": demo["AGENT-ZJ"],
            "lines": [{"product_id": product["id"], "quantity": quantity}],
        }

    n = next(_ids)
    same = await asyncio.gather(
        *[client.post("/orders", headers=partner, json=order(f"RACE-{n}", 3)) for _ in range(10)]
    )
    assert sorted(r.status_code for r in same) == [200] * 9 + [201], [r.text for r in same]
    assert len({r.json()["id"] for r in same}) == 1
    other = await asyncio.gather(
        *[
            client.post("/orders", headers=partner, json=order(f"RACE-{n}b", q))
            for q in range(1, 11)
        ]
    )
    codes = sorted(r.status_code for r in other)
    assert codes == [201] + [409] * 9, [r.text for r in other]
    assert all(
        r.json()["error"]["code"] == "order_no_reused" for r in other if r.status_code == 409
    )


async def test_a_large_import_takes_a_bounded_number_of_locks(
    client: Any, login: Any, app: Any, conn: Any
) -> None:
    """Probe G: an import took one advisory lock per ERP number in one transaction; ~6,000
    orders filled PostgreSQL's shared lock table ("out of shared memory") for every database
    on the server. It takes one. The import is held at its first insert (the table locked by
    another transaction) while its locks are counted."""
    from app.locks import Lock

    n, count = next(_ids), 3_000
    rows = "".join(f"BIG-{n}-{i},sales,FACTORY-SZ,AGENT-ZJ,,LM-SC-30,,1,\n" for i in range(count))
    async with app.state.pool.connection() as other:
        await other.execute("LOCK TABLE orders IN EXCLUSIVE MODE")
        upload = asyncio.create_task(import_csv(client, await login("partner"), HEADER + rows))
        for _ in range(400):
            locks = await (
                await conn.execute(
                    """SELECT count(*) FILTER (WHERE locktype = 'advisory' AND granted) AS held,
                              count(*) FILTER (WHERE NOT granted) AS waiting,
                              count(*) FILTER (WHERE locktype = 'advisory' AND classid = %s)
                                  AS import_lock
                       FROM pg_locks WHERE pid <> pg_backend_pid() AND database =
                           (SELECT oid FROM pg_database WHERE datname = current_database())""",
                    (int(Lock.ORDER_IMPORT),),
                )
            ).fetchone()
            await conn.commit()
            if locks["waiting"]:
                break
            await asyncio.sleep(0.025)
        await other.rollback()
    done = await upload
    assert done.status_code == 200 and done.json()["created"] == count, done.text
    assert locks["waiting"] and (locks["held"], locks["import_lock"]) == (1, 1)


@pytest.mark.parametrize(
    ("user", "path"),
    [
        ("admin", "/inspections"),
        ("admin", "/field/checkins"),
        ("admin", "/field/reviews"),
        ("planner", "/allocations"),
        ("admin", "/members"),
        ("admin", "/center/documents"),
    ],
)
async def test_a_period_that_ends_before_it_starts_is_400_everywhere(
    client: Any, login: Any, user: str, path: str
) -> None:
    """Probe L: some lists answered such a period with nothing (200), as if no row matched;
    others with 400 under one code or another. Now 400 ``bad_period`` everywhere."""
    backwards = {"from": "2026-03-10", "to": "2026-03-01"}
    if path == "/allocations":
        backwards = {"from": "2026-03-10T00:00:00+08:00", "to": "2026-03-01T00:00:00+08:00"}
    answer = await client.get(path, headers=await login(user), params=backwards)
    assert_error(answer, 400, "bad_period")


async def test_a_backwards_period_of_a_webhook_delivery_log_is_400(client: Any, login: Any) -> None:
    admin = await login("admin")
    made = await client.post(
        "/webhooks/subscriptions",
        headers=admin,
        json={"url": "https://partner.invalid/hook", "event_kinds": ["shipment.confirmed"]},
    )
    assert made.status_code == 201, made.text
    backwards = {"from": "2026-03-10T00:00:00+08:00", "to": "2026-03-01T00:00:00+08:00"}
    answer = await client.get(
        f"/webhooks/subscriptions/{made.json()['id']}/deliveries", headers=admin, params=backwards
    )
    assert_error(answer, 400, "bad_period")
    # gone again: later tests' shipments would queue deliveries to it for the session's senders
    gone = await client.delete(f"/webhooks/subscriptions/{made.json()['id']}", headers=admin)
    assert gone.status_code == 204, gone.text
