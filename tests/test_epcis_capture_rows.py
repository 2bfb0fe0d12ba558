"""The capture path's shortcuts keep its results: the hand-built COPY rows store every column as
the typed values did (NULLs, the 'type id' array, the context's prefixes with characters COPY
must escape, the body, both roles of identifiers), a known SGTIN URN head gives what the full
regex gives, and parsing leaves the garbage collector as it found it."""

from __future__ import annotations

import gc
import json
import uuid
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.epcis import identifiers
from app.epcis.document import DocumentError, parse_document
from app.epcis.identifiers import IdentifierError, canonical, known_sgtins

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"


async def test_captured_rows_hold_every_column(client: Any, login: Any, conn: Any) -> None:
    partner = await login("partner")
    tag = uuid.uuid4().hex[:12]
    prefixes = {"ex": 'http://ns.example.com/a"b\\c\td/', "ex2": "http://ns.example.com/2/"}
    observe: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventID": f"urn:uuid:{uuid.uuid4()}",
        "eventTime": "2026-03-01T08:00:01.250+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": [f"urn:epc:id:sgtin:4012345.011111.{tag}{j}" for j in range(3)],
        "action": "OBSERVE",
        "bizStep": "urn:epcglobal:cbv:bizstep:shipping",
        "readPoint": {"id": "urn:epc:id:sgln:4012345.00001.0"},
        "bizTransactionList": [
            {"type": "desadv", "bizTransaction": f"urn:x:desadv:{tag}"},
            {"bizTransaction": f"urn:x:free:{tag}"},
        ],
        "ex:note": 'a "quoted" \\ value',
    }
    pack: dict[str, Any] = {  # no eventID: stored under its hash; a parent
        "type": "AggregationEvent",
        "eventTime": "2026-03-01T00:00:02Z",
        "eventTimeZoneOffset": "+00:00",
        "parentID": "urn:epc:id:sscc:4012345.0000000001",
        "childEPCs": [f"https://id.gs1.org/01/04012345111118/21/{tag}x"],
        "action": "ADD",
        "disposition": "in_progress",
        "bizLocation": {"id": "urn:epc:id:sgln:4012345.00002.0"},
    }
    document = {
        "@context": [CONTEXT, prefixes],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-03-01T08:00:00Z",
        "epcisBody": {"eventList": [observe, pack]},
    }
    response = await client.post(
        "/epcis/capture",
        headers={**partner, "Content-Type": "application/ld+json"},
        content=json.dumps(document),
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] == "success" and job["stored"] == 2, job
    rows = await (
        await conn.execute(
            "SELECT * FROM epcis_events WHERE capture_id = %s ORDER BY id",
            (uuid.UUID(job["captureID"]),),
        )
    ).fetchall()
    assert [r["event_type"] for r in rows] == ["ObjectEvent", "AggregationEvent"]
    first, second = rows
    assert first["event_id"] == observe["eventID"]
    assert second["event_id"].startswith("ni:///sha-256;")
    assert (first["action"], first["biz_step"], first["disposition"]) == (
        "OBSERVE",
        "shipping",
        None,
    )
    assert (second["action"], second["biz_step"], second["disposition"]) == (
        "ADD",
        None,
        "in_progress",
    )
    assert first["event_time"] == datetime(2026, 3, 1, 0, 0, 1, 250000, tzinfo=UTC)
    assert first["record_time"] == second["record_time"]
    # places are stored canonical: an SGLN URN as its Digital Link (``place_key``)
    assert (first["read_point"], first["biz_location"]) == (
        "https://id.gs1.org/414/4012345000016",
        None,
    )
    assert (second["read_point"], second["biz_location"]) == (
        None,
        "https://id.gs1.org/414/4012345000023",
    )
    assert first["biz_transactions"] == [f"desadv urn:x:desadv:{tag}", f" urn:x:free:{tag}"]
    assert second["biz_transactions"] is None
    assert first["context"] == prefixes and second["context"] == prefixes
    assert (first["applied"], first["error_declared"]) == (False, False)
    assert json.loads(bytes(first["body"])) == observe
    assert json.loads(bytes(second["body"])) == pack
    epcs = await (
        await conn.execute(
            "SELECT event_id, role, epc FROM epcis_event_epcs WHERE event_id = ANY(%s) "
            "ORDER BY event_id, role, epc",
            ([first["id"], second["id"]],),
        )
    ).fetchall()
    assert [(r["event_id"], r["role"], r["epc"]) for r in epcs] == [
        *sorted(
            (first["id"], "e", f"https://id.gs1.org/01/04012345111118/21/{tag}{j}")
            for j in range(3)
        ),
        (second["id"], "e", f"https://id.gs1.org/01/04012345111118/21/{tag}x"),
        (second["id"], "p", "https://id.gs1.org/00/040123450000000016"),
    ]


_SERIAL = st.text(alphabet="0123456789Aaz.'-;=_%2F/ \t", min_size=0, max_size=24)


@settings(max_examples=400, deadline=None)
@given(
    company=st.sampled_from(["4012345", "0614141", "123456789012", "12345", "4012345x"]),
    ref=st.sampled_from(["011111", "812345", "1", "", "0111111", "01111.1"]),
    serial=_SERIAL,
)
def test_a_known_sgtin_head_converts_as_the_full_parse(company: str, ref: str, serial: str) -> None:
    uri = f"urn:epc:id:sgtin:{company}.{ref}.{serial}"

    def convert() -> str | type[IdentifierError]:
        try:
            return canonical(uri, False)
        except IdentifierError:
            return IdentifierError

    identifiers._SGTIN_HEADS.clear()
    cold = convert()  # the regex (and the general parser)
    with suppress(IdentifierError):  # the head, if valid, is known now
        canonical(f"urn:epc:id:sgtin:{company}.{ref}.1", False)
    assert convert() == cold, uri
    known = known_sgtins([uri, uri])  # a list in one pass: all known, or None
    assert known is None or known == [cold, cold], uri
    assert known_sgtins([uri, 7]) is None


def test_parsing_leaves_the_garbage_collector_as_it_was() -> None:
    good = json.dumps(
        {
            "@context": CONTEXT,
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-03-01T08:00:00Z",
            "epcisBody": {"eventList": []},
        }
    )
    assert gc.isenabled()
    assert parse_document(good) == []
    assert gc.isenabled()
    with pytest.raises(DocumentError):
        parse_document(good.replace("EPCISDocument", "Other"))
    assert gc.isenabled()
    gc.disable()
    try:
        parse_document(good)
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_a_kept_document_body_is_compressed_with_lz4(conn: Any, demo: Any) -> None:
    from app.auth.service import load_user
    from app.epcis import capture

    row = await (await conn.execute("SELECT id FROM users WHERE username = 'partner'")).fetchone()
    partner = await load_user(conn, row["id"])
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-03-01T08:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": [f"urn:epc:id:sgtin:4012345.011111.lz{j}" for j in range(400)],
        "action": "OBSERVE",
    }
    body = json.dumps(
        {
            "@context": CONTEXT,
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-03-01T08:00:00Z",
            "epcisBody": {"eventList": [event]},
        }
    ).encode()
    job = await capture.accept(conn, partner, body)
    stored = await (
        await conn.execute(
            "SELECT pg_column_compression(body) AS method, body FROM epcis_captures WHERE id = %s",
            (uuid.UUID(job.captureID),),
        )
    ).fetchone()
    await conn.rollback()
    assert bytes(stored["body"]) == body
    try:  # a server built without lz4 (the embedded one may be) keeps pglz
        async with conn.transaction():
            await conn.execute("SET LOCAL default_toast_compression = 'lz4'")
        has_lz4 = True
    except Exception:
        has_lz4 = False
    await conn.rollback()
    assert stored["method"] == ("lz4" if has_lz4 else "pglz")
