"""The ERP export of confirmed documents (SPEC I1, issue 19 item 3): incremental by cursor, each
document exactly once even when confirmations commit out of order, scoped, CSV and JSON — on
real PostgreSQL (confirmations held open on connections of their own)."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from tests.field_support import other_brand_admin
from tests.helpers import activate, assert_error, issue_units

Conn = psycopg.AsyncConnection[dict[str, Any]]
# the export waits for every older writing transaction of the database (another test session
# may write meanwhile): what must appear is polled for, up to this long
PATIENCE = 60.0


async def page(
    client: Any, headers: dict[str, str], cursor: str | None, **params: Any
) -> dict[str, Any]:
    query = {k: v for k, v in {"cursor": cursor, **params}.items() if v is not None}
    response = await client.get("/documents/export", headers=headers, params=query)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def drain(client: Any, headers: dict[str, str], cursor: str | None = None) -> str:
    """The cursor after every document ready now."""
    while True:
        body = await page(client, headers, cursor, limit=1000)
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return cursor  # type: ignore[no-any-return]


async def collect(
    client: Any, headers: dict[str, str], cursor: str, wanted: set[int], limit: int = 1
) -> tuple[list[int], str]:
    """Page on from ``cursor`` (``limit`` a page) until every id of ``wanted`` was seen; the ids
    in the order handed out (others' documents too) and the cursor after them."""
    seen: list[int] = []
    deadline = time.monotonic() + PATIENCE
    while not wanted <= set(seen):
        assert time.monotonic() < deadline, f"never exported: {wanted - set(seen)}"
        body = await page(client, headers, cursor, limit=limit)
        seen += [d["id"] for d in body["items"]]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            await asyncio.sleep(0.05)
    return seen, cursor


async def draft(client: Any, clerk: dict[str, str]) -> int:
    made = await client.post("/documents", headers=clerk, json={"kind": "factory_inbound"})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def shipped(client: Any, login: Any, app: Any, demo: Any) -> tuple[dict[str, Any], ...]:
    """Two units received from the factory line, then shipped to the Guangdong agent: the two
    confirmed documents."""
    batch_no, product_id = await issue_units(client, login, demo, 2, product_no="LM-HY-50")
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials, product_id, line="ERP", lot="ERP-LOT")
    clerk = await login("clerk")
    docs = []
    for fields in (
        {"kind": "factory_inbound", "signee": "=cmd|' /C calc'!A0"},
        {"kind": "outbound", "counterparty_id": demo["AGENT-GD"], "signee": "Zhou"},
    ):
        doc = (await client.post("/documents", headers=clerk, json=fields)).json()
        added = await client.post(
            f"/documents/{doc['id']}/codes", headers=clerk, json={"codes": serials}
        )
        assert added.status_code == 200 and added.json()["rejected"] == 0, added.text
        confirmed = await client.post(f"/documents/{doc['id']}/confirm", headers=clerk)
        assert confirmed.status_code == 200, confirmed.text
        docs.append(confirmed.json())
    return tuple(docs)


@pytest.fixture
async def raw() -> AsyncIterator[tuple[Conn, Conn]]:
    """Two connections of the test's own: transactions the test opens and commits itself."""
    url = os.environ["TRACECODE_DATABASE_URL"]
    a = await psycopg.AsyncConnection.connect(url, row_factory=dict_row)
    b = await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


_CONFIRM = "UPDATE documents SET status = 'confirmed', confirmed_at = now() WHERE id = %s"


async def test_pages_hand_out_each_document_once_with_its_erp_codes(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    partner = await login("partner")
    start = await drain(client, partner)
    inbound, outbound = await shipped(client, login, app, demo)
    seen, cursor = await collect(client, partner, start, {inbound["id"], outbound["id"]})
    mine = [i for i in seen if i in (inbound["id"], outbound["id"])]
    assert mine == [inbound["id"], outbound["id"]]  # confirmation order, each once
    assert len(seen) == len(set(seen))

    body = await page(client, partner, start, limit=1000)
    doc = next(d for d in body["items"] if d["id"] == outbound["id"])
    assert (doc["doc_no"], doc["direction"], doc["kind"]) == (
        outbound["doc_no"],
        "outbound",
        "outbound",
    )
    assert (doc["org_erp_code"], doc["counterparty_erp_code"]) == ("WH-SZ-01", "AGENT-GD")
    assert (doc["units"], doc["handler_username"], doc["confirmed_at"]) == (
        2,
        "clerk",
        outbound["confirmed_at"],
    )
    line = doc["lines"][0]
    assert (line["product_no"], line["gtin"], line["lot"], line["units"]) == (
        "LM-HY-50",
        "06901234000016",
        "ERP-LOT",
        2,
    )
    # what the seed's documents list beside units (五.1.3): loose units, so no package type;
    # the organisation whose packing line packed them
    assert (line["package_level"], line["manufacturer_erp_code"], line["manufacturer_name"]) == (
        None,
        "FACTORY-SZ",
        "Suzhou Factory 苏州工厂",
    )

    # nothing new: an empty page, the same place; a document confirmed now comes next
    idle = await page(client, partner, cursor)
    assert idle["items"] == [] and idle["has_more"] is False
    later = await draft(client, await login("clerk"))
    url = os.environ["TRACECODE_DATABASE_URL"]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as other:
        await other.execute(_CONFIRM, (later,))
    seen, _ = await collect(client, partner, idle["next_cursor"], {later})
    assert inbound["id"] not in seen and outbound["id"] not in seen and later in seen


async def test_the_csv_export_has_one_row_per_line_and_the_cursor_in_headers(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    from app.erp.export import decode_cursor

    partner = await login("partner")
    start = await drain(client, partner)
    inbound, outbound = await shipped(client, login, app, demo)
    await collect(client, partner, start, {inbound["id"], outbound["id"]})
    response = await client.get(
        "/documents/export",
        headers=partner,
        params={"cursor": start, "format": "csv", "limit": 1000},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    as_json = await page(client, partner, start, limit=1000)
    assert decode_cursor(
        settings, demo["BRAND-LUMI"], response.headers["x-next-cursor"]
    ) == decode_cursor(settings, demo["BRAND-LUMI"], as_json["next_cursor"])
    assert response.headers["x-has-more"] == "false"
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    mine = [r for r in rows if r["doc_no"] in (inbound["doc_no"], outbound["doc_no"])]
    assert [(r["doc_no"], r["product_no"], r["units"]) for r in mine] == [
        (inbound["doc_no"], "LM-HY-50", "2"),
        (outbound["doc_no"], "LM-HY-50", "2"),
    ]
    assert mine[0]["signee"] == "'=cmd|' /C calc'!A0"  # the formula guard of every export
    assert mine[1]["counterparty_erp_code"] == "AGENT-GD"
    assert [(r["package_level"], r["manufacturer_erp_code"]) for r in mine] == [
        ("", "FACTORY-SZ"),
        ("", "FACTORY-SZ"),
    ]


async def test_a_confirmation_that_commits_late_is_not_skipped(
    client: Any, login: Any, raw: tuple[Conn, Conn]
) -> None:
    """Document 1 is confirmed first but commits last; document 2, confirmed after it, commits
    at once. A page read in between must not move past document 1: neither shows until 1 has
    committed, then both, in confirmation order."""
    slow, fast = raw
    partner, clerk = await login("partner"), await login("clerk")
    first, second = await draft(client, clerk), await draft(client, clerk)
    start = await drain(client, partner)
    await slow.execute(_CONFIRM, (first,))  # open: not committed
    await fast.execute(_CONFIRM, (second,))  # committed
    between = await page(client, partner, start, limit=1000)
    assert second not in [d["id"] for d in between["items"]]
    await slow.commit()
    seen, _ = await collect(client, partner, between["next_cursor"], {first, second})
    assert [i for i in seen if i in (first, second)] == [first, second]


async def test_a_transaction_of_another_database_does_not_hold_the_export_back(
    client: Any, login: Any, raw: tuple[Conn, Conn]
) -> None:
    """A session's left-out: transaction ids are the cluster's, and the horizon was the
    snapshot's whole ``pg_snapshot_xmin``, so a transaction open in ANOTHER database of the
    server (another tenant's, another test session's) held every export page back until it
    ended. Now only this database's transactions do (``app.db.HORIZON_CTE``); one of this
    database still does."""
    held, fast = raw
    partner, clerk = await login("partner"), await login("clerk")
    elsewhere_doc, here_doc = await draft(client, clerk), await draft(client, clerk)
    start = await drain(client, partner)
    url = os.environ["TRACECODE_DATABASE_URL"]
    assert conninfo_to_dict(url).get("dbname") != "postgres"
    elsewhere = await psycopg.AsyncConnection.connect(make_conninfo(url, dbname="postgres"))
    try:
        await elsewhere.execute("SELECT pg_current_xact_id()")  # an xid, held open
        await fast.execute(_CONFIRM, (elsewhere_doc,))
        now = await page(client, partner, start, limit=1000)
        assert elsewhere_doc in [d["id"] for d in now["items"]], now
    finally:
        await elsewhere.close()
    await held.execute("SELECT pg_current_xact_id()")  # this database's: holds it back
    await fast.execute(_CONFIRM, (here_doc,))
    later = await page(client, partner, now["next_cursor"], limit=1000)
    assert here_doc not in [d["id"] for d in later["items"]]
    await held.rollback()
    seen, _ = await collect(client, partner, later["next_cursor"], {here_doc})
    assert here_doc in seen


async def test_concurrent_confirmations_are_each_exported_once(
    client: Any, login: Any, app: Any
) -> None:
    """Five connections confirm 30 documents, each in a transaction held open a random moment,
    while the ERP pages three at a time: every document exactly once."""
    partner, clerk = await login("partner"), await login("clerk")
    drafts = [await draft(client, clerk) for _ in range(30)]
    start = await drain(client, partner)
    url = os.environ["TRACECODE_DATABASE_URL"]
    rng = random.Random(19)

    async def confirmer(ids: list[int]) -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            for doc_id in ids:
                await conn.execute(_CONFIRM, (doc_id,))
                await asyncio.sleep(rng.random() * 0.2)
                await conn.commit()

    workers = asyncio.gather(*(confirmer(drafts[i::5]) for i in range(5)))
    seen, _ = await collect(client, partner, start, set(drafts), limit=3)
    await workers
    assert sorted(i for i in seen if i in drafts) == sorted(drafts)
    assert len(seen) == len(set(seen))


async def test_the_export_is_scoped_and_answers_api_keys(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    gd = await login("gd_admin")
    made = await client.post(
        "/api-keys", headers=gd, json={"name": "gd-erp", "permissions": ["orders.write"]}
    )
    assert made.status_code == 201, made.text
    key = {"X-API-Key": made.json()["key"]}
    start = await drain(client, key)
    inbound, outbound = await shipped(client, login, app, demo)
    seen, cursor = await collect(client, key, start, {outbound["id"]})
    assert inbound["id"] not in seen  # the factory's own receipt is none of the agent's
    everything = (await page(client, key, None, limit=1000))["items"]
    gd_codes = {"AGENT-GD", "STORE-GZ-01", "STORE-SZ-01"}
    assert everything and all(
        d["org_erp_code"] in gd_codes or d["counterparty_erp_code"] in gd_codes for d in everything
    )
    store = await login("store_clerk")  # the Hangzhou store: none of these
    assert outbound["id"] not in [d["id"] for d in (await page(client, store, None))["items"]]
    outbound_only = await page(client, key, start, direction="inbound", limit=1000)
    assert outbound["id"] not in [d["id"] for d in outbound_only["items"]]

    other = await client.post(
        "/api-keys", headers=gd, json={"name": "gd-orgs", "permissions": ["orgs.read"]}
    )
    no_reader = {"X-API-Key": other.json()["key"]}
    assert_error(await client.get("/documents/export", headers=no_reader), 403, "permission_denied")
    for bad in ("nonsense", "djEuMS4y!", "djEuLTEuMg", "djEuOTk5OTk5OTk5OTk5OTk5OTk5OTkuMQ"):
        response = await client.get("/documents/export", headers=key, params={"cursor": bad})
        assert_error(response, 400, "bad_cursor")
    for params in ({"limit": 0}, {"limit": 1001}, {"format": "xml"}, {"kind": "gift"}):
        assert_error(await client.get("/documents/export", headers=key, params=params), 400)
    assert_error(await client.get("/documents/export"), 401)
    assert cursor


async def test_a_partners_cursor_is_sealed_and_skips_the_rest_of_the_brand(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """Probe M: a page that was not full moved the cursor on to the brand's last confirmation,
    in plain text, so an agent learned when and how often the rest of the brand confirmed
    documents. Kept at the agent's own last document instead, each poll read all the brand's
    documents since then again (review R2). Now the cursor is sealed and moves on for all."""
    from app.erp.export import decode_cursor

    zj = await login("agent_admin")
    cursor = await drain(client, zj)
    _, outbound = await shipped(client, login, app, demo)  # to the Guangdong agent
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT confirm_xid::text AS xid FROM documents WHERE id = %s", (outbound["id"],)
            )
        ).fetchone()
    past = (int(row["xid"]), outbound["id"])
    deadline = time.monotonic() + PATIENCE
    while (
        decode_cursor(settings, demo["BRAND-LUMI"], cursor) < past
    ):  # skipped once below the horizon
        assert time.monotonic() < deadline, "the cursor never moved past the brand's documents"
        body = await page(client, zj, cursor, limit=1000)
        assert outbound["id"] not in [d["id"] for d in body["items"]]
        cursor = body["next_cursor"]
        await asyncio.sleep(0.05)

    again = await page(client, zj, cursor)
    assert again["items"] == [] and again["next_cursor"] != cursor  # a fresh nonce each page
    assert decode_cursor(settings, demo["BRAND-LUMI"], again["next_cursor"]) == decode_cursor(
        settings, demo["BRAND-LUMI"], cursor
    )
    assert row["xid"].encode() not in base64.urlsafe_b64decode(cursor + "==")
    altered = cursor[:30] + ("A" if cursor[30] != "A" else "B") + cursor[31:]
    response = await client.get("/documents/export", headers=zj, params={"cursor": altered})
    assert_error(response, 400, "bad_cursor")
    other = await other_brand_admin(client, login)  # bound to the brand (review R3)
    response = await client.get("/documents/export", headers=other, params={"cursor": cursor})
    assert_error(response, 400, "bad_cursor")
    plain = base64.urlsafe_b64encode(f"v1.{past[0]}.{past[1]}".encode()).decode().rstrip("=")
    old = await page(client, zj, plain)  # a cursor handed out before sealing is still taken
    assert decode_cursor(settings, demo["BRAND-LUMI"], old["next_cursor"]) >= past


async def test_a_plain_cursor_ahead_of_the_horizon_is_refused(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A probe: a made-up cursor of the plain form naming a position past every transaction
    (``v1.9223372036854775000.1``) was taken, and the sealed ``next_cursor`` kept it: an ERP
    polling with it would skip every document confirmed from then on. No page hands out a
    position at or above the horizon, so such a cursor is 400 ``bad_cursor``; a plain cursor
    below it is still taken."""
    from app.erp.export import decode_cursor

    admin = await login("admin")
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x")
        ).fetchone()
    plain = lambda xid: base64.urlsafe_b64encode(f"v1.{xid}.1".encode()).decode()  # noqa: E731
    for xid in (int(row["x"]) + 1_000_000, 9223372036854775000):
        for fmt in ("json", "csv"):
            response = await client.get(
                "/documents/export", headers=admin, params={"cursor": plain(xid), "format": fmt}
            )
            assert_error(response, 400, "bad_cursor")
    taken = await page(client, admin, plain(1))
    assert (1, 1) <= decode_cursor(settings, demo["BRAND-LUMI"], taken["next_cursor"])


def test_cursors_sealed_before_the_shared_helper_still_open(settings: Any) -> None:
    """The cursor's sealing moved to ``app.sealing`` (shared with the EPCIS nextPageToken): a
    cursor sealed as the export sealed it before opens to the same position, one sealed now
    opens the old way, and the plain ``v1.`` form is still taken."""
    import secrets
    import struct

    from Crypto.Cipher import AES

    from app.erp.export import decode_cursor, encode_cursor

    def cipher(nonce: bytes) -> Any:  # the export's own, before
        sealer = AES.new(settings.subkey("erp-export-cursor"), AES.MODE_GCM, nonce=nonce)
        sealer.update(b"17")
        return sealer

    position = (2**40 + 7, 123)
    nonce = secrets.token_bytes(12)
    sealed, tag = cipher(nonce).encrypt_and_digest(struct.pack(">QQ", *position))
    before = base64.urlsafe_b64encode(b"\x02" + nonce + sealed + tag).decode().rstrip("=")
    assert decode_cursor(settings, 17, before) == position
    now = encode_cursor(settings, 17, position)
    raw = base64.urlsafe_b64decode(now + "=" * (-len(now) % 4))
    assert len(raw) == 45 and raw[:1] == b"\x02"
    opened = cipher(raw[1:13]).decrypt_and_verify(raw[13:29], raw[29:])
    assert struct.unpack(">QQ", opened) == position
    plain = base64.urlsafe_b64encode(b"v1.99.5").decode().rstrip("=")
    assert decode_cursor(settings, 17, plain) == (99, 5)
