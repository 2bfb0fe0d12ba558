"""EPCIS 2.0 capture and query (SPEC I3, issue 19 item 1) on the real PostgreSQL: the
conformance documents capture and query back equal, invalid ones are refused whole with the
standard's exception types, query parameters combine and page stably, a partner's aggregation
changes Tracecode's code state under the line's rules and is followed by a Tracecode outbound
of the same case, and every read is scoped to the caller."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from app.codes.scheme import gs1_check_digit
from app.epcis.identifiers import canonical, place_key
from tests.field_support import other_brand_admin
from tests.helpers import activate, epcis_conformance, issue_cases, issue_units
from tests.servers import worker_process
from tests.test_epcis_hash import LEAKED_PREFIXES
from tests.test_logistics import confirm
from tests.test_logistics import document as logistics_document

CONFORMANCE = epcis_conformance()
MANIFEST = json.loads((CONFORMANCE / "manifest.json").read_text())
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
GTIN = "06901234000023"  # the demo sun cream (LM-SC-30)
_ids = itertools.count()


def document(events: list[dict[str, Any]], context: Any = CONTEXT) -> dict[str, Any]:
    return {
        "@context": context,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-12-01T08:00:00Z",
        "epcisBody": {"eventList": events},
    }


async def capture(
    client: Any,
    headers: dict[str, str],
    body: bytes | dict[str, Any],
    media: str = "application/ld+json",
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(
        "/epcis/capture", headers={**headers, "Content-Type": media}, content=raw
    )


async def captured(
    client: Any, headers: dict[str, str], body: Any, state: str = "success"
) -> dict[str, Any]:
    response = await capture(client, headers, body)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/epcis/capture/{response.json()['captureID']}"
    job = (await client.get(response.headers["location"], headers=headers)).json()
    assert job["state"] == state, json.dumps(job)
    return job  # type: ignore[no-any-return]


async def query(client: Any, headers: dict[str, str], **params: str) -> Any:
    response = await client.get("/epcis/events", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response


def event_list(response: Any) -> list[dict[str, Any]]:
    return response.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]  # type: ignore[no-any-return]


def unit_link(serial: str) -> str:
    return f"https://id.gs1.org/01/{GTIN}/21/{serial}"


def case_link(sscc: str) -> str:
    return f"https://id.gs1.org/00/{sscc}"


def _valid() -> list[dict[str, Any]]:
    return MANIFEST["valid"]  # type: ignore[no-any-return]


# -- the conformance documents -----------------------------------------------------------------


async def test_valid_documents_capture_and_query_back_equal(client: Any, login: Any) -> None:
    partner = await login("partner")
    latest: dict[str, dict[str, Any]] = {}  # eventID -> the event as last sent
    hashes: dict[str, list[str]] = {}
    for entry in _valid():
        raw = (CONFORMANCE / entry["file"]).read_bytes()
        job = await captured(client, partner, raw)
        sent = json.loads(raw)["epcisBody"]["eventList"]
        assert job["events"] == len(sent), entry["file"]
        if entry.get("idempotency"):  # the same document again stores nothing
            again = await captured(client, partner, raw)
            assert again["stored"] == 0, entry["file"]
        given = [e for e in sent if "eventID" in e]
        for event in given:
            latest[event["eventID"]] = event
        hashes[entry["file"]] = entry.get("hashes", [])
    for event_id, event in latest.items():
        response = await client.get(f"/epcis/events/{quote(event_id, safe='')}", headers=partner)
        assert response.status_code == 200, (event_id, response.text)
        back = response.json()
        assert back.pop("recordTime")  # the capturing server's; a sent one is not kept
        context = back.pop("@context")  # a JSON-LD document of its own: the standard's context
        assert context == CONTEXT or CONTEXT in context, context
        assert back == {k: v for k, v in event.items() if k != "recordTime"}, event_id
    # events sent without an eventID get the CBV 2.0 event hash: the reference ones (but the
    # three the reference computed with prefixes leaked from other documents: test_epcis_hash)
    for file, expected in hashes.items():
        for index, event_hash in enumerate(expected):
            if (file, index) in LEAKED_PREFIXES:
                continue
            response = await client.get(
                f"/epcis/events/{quote(event_hash, safe='')}", headers=partner
            )
            assert response.status_code == 200, (file, event_hash, response.text)


@pytest.mark.parametrize("entry", MANIFEST["invalid"], ids=lambda e: e["file"].split("/")[-1])
async def test_invalid_documents_are_refused_whole(
    client: Any, login: Any, entry: dict[str, Any]
) -> None:
    partner = await login("partner")
    raw = (CONFORMANCE / entry["file"]).read_bytes()
    response = await capture(client, partner, raw, entry["content_type"])
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "epcisException:ValidationException", body
    assert body["status"] == 400 and body["detail"]
    assert body["error"]["code"] == "epcis_validation"
    if entry.get("unique_epcs"):  # nothing of the document was kept
        text = raw.decode()
        epcs = sorted(
            set(
                part
                for part in text.split('"')
                if part.startswith("urn:epc:id:sgtin:0614141.107346.X")
            )
        )
        for epc in epcs:
            try:
                found = await query(client, partner, MATCH_anyEPC=epc)
            except AssertionError:
                continue  # a malformed identifier cannot even be asked for
            assert event_list(found) == [], (entry["file"], epc)


async def test_hostile_and_wrong_requests(client: Any, login: Any) -> None:
    partner = await login("partner")
    bad_media = await capture(client, partner, b"{}", "text/plain")
    assert_problem(bad_media, 415, "unsupported_media_type")
    for raw in (
        b"{",
        b"[]",
        b'{"@context": "x", "type": "EPCISDocument"}',
        b"\x00" * 10,
        b"[" * 5000,
    ):
        response = await capture(client, partner, raw)
        assert response.status_code == 400, (raw[:20], response.text)
        assert response.json()["type"] == "epcisException:ValidationException"
    for params in (
        {"EQ_colour": "red"},
        {"perPage": "0"},
        {"perPage": "abc"},
        {"GE_eventTime": "yesterday"},
        {"GE_eventTime": "2026-01-01T00:00:00"},  # no time zone
        {"LT_eventTime": "2026-01-01T00:00:00+23:59"},  # a zone past xsd's +14:00
        {"nextPageToken": "not-ours"},
        {"eventType": "ObjectEvnt"},
        {"MATCH_epc": "urn:epc:id:sgtin:0614141.107346"},
        {"MATCH_epc": "urn:x:\x00"},
        {"EQ_bizLocation": "urn:tracecode:org:\x07"},
        {"MATCH_anyEPC": "|".join(f"urn:x:{i}" for i in range(1001))},
        {"EQ_readPoint": "urn:x:" + "a" * 3000},
        # probes: forms past xsd:dateTime, and patterns not served, answered as if they matched
        {"GE_eventTime": "20261201T080000+0800"},
        {"GE_eventTime": "2026-12-01T08:00+08:00"},
        {"LT_recordTime": "2026-12-01T08:00:00.5\u0663Z"},
        {"MATCH_epc": "urn:epc:idpat:sgtin:0614141.*.*"},
        {"MATCH_anyEPC": "urn:epc:idpat:sscc:0614141.*"},
        {"MATCH_parentID": "urn:epc:idpat:sgln:0614141.00777.*"},
    ):
        response = await client.get("/epcis/events", headers=partner, params=params)
        assert response.status_code == 400, (params, response.text)
        body = response.json()
        if body["error"]["code"] == "invalid_character":  # refused at the edge, before the query
            continue
        assert body["type"] == "epcisException:QueryParameterException", (params, body)
    clerk = await login("clerk")  # no epcis.capture
    doc = document([_object("OBSERVE", ["urn:epc:id:sgtin:0614141.107346.P1"])])
    assert_problem(await capture(client, clerk, doc), 403, "permission_denied")
    missing = await client.get(
        "/epcis/events/urn%3Auuid%3A00000000-0000-0000-0000-000000000000", headers=partner
    )
    assert_problem(missing, 404, "epcis_event_not_found")
    unknown_job = await client.get(
        "/epcis/capture/00000000-0000-0000-0000-000000000000", headers=partner
    )
    assert_problem(unknown_job, 404, "capture_not_found")
    # probe T: a key of the brand holding only catalog.read read every event and capture job
    admin = await login("admin")
    made = await client.post(
        "/api-keys", headers=admin, json={"name": "catalog-only", "permissions": ["catalog.read"]}
    )
    assert made.status_code == 201, made.text
    catalog_only = {"X-API-Key": made.json()["key"]}
    for path in ("/epcis/events", "/epcis/capture", "/epcis/events/urn%3Auuid%3A0"):
        assert_problem(await client.get(path, headers=catalog_only), 403, "permission_denied")


def assert_problem(response: Any, status: int, code: str) -> None:
    """The project's error, with the binding's problem+json fields beside it."""
    body = response.json()
    assert response.status_code == status and body["error"]["code"] == code, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["status"] == status and body["type"].startswith("epcisException:")


def _object(action: str, epcs: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventTime": fields.pop("eventTime", "2026-11-30T10:00:00.000+08:00"),
        "eventTimeZoneOffset": "+08:00",
        "epcList": epcs,
        "action": action,
        **fields,
    }


# -- query parameters and paging ----------------------------------------------------------------


async def test_query_parameters_combine_and_pages_are_stable(client: Any, login: Any) -> None:
    partner = await login("partner")
    tag = f"Q{next(_ids)}x{id(client) % 10000}"
    events = []
    for i in range(12):
        events.append(
            _object(
                "OBSERVE" if i % 3 else "ADD",
                [
                    f"urn:epc:id:sgtin:0614141.107346.{tag}{i}",
                    f"urn:epc:id:sgtin:0614141.107346.{tag}s",
                ],
                eventTime=f"2026-11-{10 + i:02d}T10:00:00.000+08:00",
                bizStep="shipping" if i % 2 else "https://ref.gs1.org/cbv/BizStep-receiving",
                disposition="in_transit" if i % 2 else "in_progress",
                readPoint={"id": f"urn:epc:id:sgln:0614141.00777.{tag}"},
                bizTransactionList=[
                    {
                        "type": "po",
                        "bizTransaction": f"urn:epcglobal:cbv:bt:0614141000005:{tag}-{i % 4}",
                    }
                ],
            )
        )
    await captured(client, partner, document(events))
    shared = f"urn:epc:id:sgtin:0614141.107346.{tag}s"
    everything = event_list(await query(client, partner, MATCH_epc=shared, perPage="1000"))
    assert len(everything) == 12
    # the same EPC as a Digital Link
    dl = event_list(
        await query(client, partner, MATCH_epc=f"https://example.com/01/10614141073464/21/{tag}s")
    )
    assert len(dl) == 12
    combined = event_list(
        await query(
            client,
            partner,
            MATCH_epc=shared,
            EQ_bizStep="shipping",
            EQ_action="OBSERVE",
            GE_eventTime="2026-11-12T00:00:00+08:00",
            LT_eventTime="2026-11-20T00:00:00+08:00",
        )
    )
    # shipping = odd i; OBSERVE = i not divisible by 3; days 12..19 = i in 2..9 -> 5, 7
    assert [e["eventTime"][:10] for e in combined] == ["2026-11-15", "2026-11-17"]
    receiving = event_list(
        await query(client, partner, MATCH_epc=shared, EQ_bizStep="receiving|cbv:BizStep-shipping")
    )
    assert len(receiving) == 12
    by_disposition = event_list(
        await query(client, partner, MATCH_epc=shared, EQ_disposition="in_progress")
    )
    assert len(by_disposition) == 6
    by_tx = event_list(
        await query(
            client,
            partner,
            MATCH_epc=shared,
            EQ_bizTransaction_po=f"urn:epcglobal:cbv:bt:0614141000005:{tag}-1",
        )
    )
    assert len(by_tx) == 3
    by_point = event_list(
        await query(
            client,
            partner,
            EQ_readPoint=f"urn:epc:id:sgln:0614141.00777.{tag}",
            eventType="ObjectEvent",
        )
    )
    assert len(by_point) == 12
    # the pattern matches other tests' events too: every page of it
    pattern: set[str] = set()
    wide = {"MATCH_anyEPC": "urn:epc:idpat:sgtin:0614141.107346.*", "perPage": "1000"}
    while True:
        response = await query(client, partner, **wide)
        pattern |= {e["eventID"] for e in event_list(response)}
        link = response.headers.get("link")
        if not link:
            break
        wide["nextPageToken"] = link.split("nextPageToken=")[1].split(">")[0]
    assert {e["eventID"] for e in everything} <= pattern

    # pages of 5: stable, no event twice, none lost, while new events arrive
    seen: list[str] = []
    params: dict[str, str] = {"MATCH_epc": shared, "perPage": "5"}
    pages = 0
    while True:
        response = await query(client, partner, **params)
        seen += [e["eventID"] for e in event_list(response)]
        pages += 1
        if pages == 1:  # an event captured between pages comes last, once
            extra = _object("OBSERVE", [shared], eventTime="2026-11-30T11:00:00.000+08:00")
            await captured(client, partner, document([extra]))
        link = response.headers.get("link")
        if not link:
            break
        token = link.split("nextPageToken=")[1].split(">")[0]
        params["nextPageToken"] = token
    assert len(seen) == 13 == len(set(seen)) and pages == 3
    assert seen[:12] == [e["eventID"] for e in everything]


async def test_error_declaration_parameters_find_the_declared_events(
    client: Any, login: Any, conn: Any
) -> None:
    """GE_/LT_errorDeclarationTime, EXISTS_errorDeclaration, EQ_errorReason and
    EQ_correctiveEventID were refused as unknown parameters (400): a partner could not ask which
    of its events had been declared erroneous, or since when."""
    partner = await login("partner")
    tag = f"ED{secrets.token_hex(4)}"
    plain, later, inline = (
        _object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.{tag}{i}"]) for i in range(3)
    )
    corrective = f"urn:uuid:{uuid.uuid4()}"
    await captured(client, partner, document([plain, later]))
    declared = {
        "declarationTime": "2026-12-01T00:00:00Z",
        "reason": "incorrect_data",
        "correctiveEventIDs": [corrective],
    }
    inline["errorDeclaration"] = {
        "declarationTime": "2026-12-02T08:00:00.0000001+08:00",  # rounds up to 00:00:00.000001Z
        "reason": "https://ref.gs1.org/cbv/ER-did_not_occur",
    }
    await captured(client, partner, document([{**later, "errorDeclaration": declared}, inline]))
    ours = "|".join(f"urn:epc:id:sgtin:0614141.107346.{tag}{i}" for i in range(3))

    async def found(**params: str) -> list[str]:
        events = event_list(await query(client, partner, MATCH_anyEPC=ours, **params))
        return sorted(e["epcList"][0][-1] for e in events)

    assert await found() == ["0", "1", "2"]
    assert await found(EXISTS_errorDeclaration="") == ["1", "2"]
    assert await found(EXISTS_errorDeclaration="true") == ["1", "2"]
    assert await found(GE_errorDeclarationTime="2026-12-01T12:00:00Z") == ["2"]
    assert await found(LT_errorDeclarationTime="2026-12-01T08:00:00+08:00") == []
    assert await found(LT_errorDeclarationTime="2026-12-01T00:00:00.000001Z") == ["1"]
    assert await found(GE_errorDeclarationTime="2026-12-02T00:00:00.000001Z") == ["2"]
    assert await found(GE_errorDeclarationTime="2026-12-02T00:00:00.000002Z") == []
    assert await found(EQ_errorReason="gs1:ER-incorrect_data") == ["1"]
    assert await found(EQ_errorReason="did_not_occur|urn:example:er:other") == ["2"]
    assert await found(EQ_correctiveEventID=corrective) == ["1"]
    assert await found(EQ_correctiveEventID=f"urn:uuid:{uuid.uuid4()}") == []
    # over both sources at once: only declared events, Tracecode's own events included in the SQL
    everywhere = event_list(
        await query(
            client,
            partner,
            EXISTS_errorDeclaration="",
            GE_errorDeclarationTime="2026-11-01T00:00:00Z",
            EQ_errorReason="incorrect_data|did_not_occur",
            EQ_correctiveEventID=corrective,
            perPage="1000",
        )
    )
    assert [e["epcList"][0] for e in everywhere] == [later["epcList"][0]]
    # events declared before migration 0098 take their time from the body they carry
    await conn.execute(
        "UPDATE epcis_events SET error_declared_at = NULL WHERE body::text LIKE %s",
        (f"%{tag.encode().hex()}%",),
    )
    migration = (
        Path(__file__).parent.parent / "app/migrations/0098_epcis_error_declaration_time.sql"
    )
    await conn.execute(migration.read_text().split(";", 1)[1])  # the UPDATE after the ALTER
    await conn.commit()
    assert await found(GE_errorDeclarationTime="2026-12-01T00:00:00Z") == ["1", "2"]
    assert await found(LT_errorDeclarationTime="2026-12-02T00:00:00.000001Z") == ["1"]
    for params in (
        {"EXISTS_errorDeclaration": "false"},
        {"EXISTS_errorDeclaration": ["", ""]},
        {"GE_errorDeclarationTime": "2026-12-01"},
        {"LT_errorDeclarationTime": ["2026-12-01T00:00:00Z"] * 2},
    ):
        response = await client.get("/epcis/events", headers=partner, params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["type"] == "epcisException:QueryParameterException"


async def test_single_event_capture_201_then_409(client: Any, login: Any) -> None:
    partner = await login("partner")
    event = {
        "@context": CONTEXT,
        **_object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.S{next(_ids)}x{id(client)}"]),
    }
    headers = {**partner, "Content-Type": "application/json"}
    first = await client.post("/epcis/events", headers=headers, content=json.dumps(event))
    assert first.status_code == 201, first.text
    event_id = first.json()["eventID"]
    assert event_id.startswith("ni:///sha-256;") and event_id.endswith("?ver=CBV2.0")
    again = await client.post("/epcis/events", headers=headers, content=json.dumps(event))
    assert (
        again.status_code == 409
        and again.json()["type"] == "epcisException:ResourceAlreadyExistsException"
    )
    back = await client.get(first.headers["location"], headers=partner)
    assert back.status_code == 200 and back.json()["eventID"] == event_id
    # a probe: the same event in a capture document was another event (another hash)
    job = await captured(client, partner, document([event]))
    assert job["stored"] == 0, job
    assert len(event_list(await query(client, partner, MATCH_epc=event["epcList"][0]))) == 1
    # a probe: a refusal for a permission answered 400 ValidationException (the 403 inside it)
    commissioning = _object(
        "ADD",
        [unit_link(f"PZ{next(_ids)}")],
        bizStep="commissioning",
        readPoint={"id": "urn:tracecode:line:EP1"},
    )
    refused = await client.post("/epcis/events", headers=headers, content=json.dumps(commissioning))
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == "epcisException:SecurityException"
    # probes: a time that rounds past the calendar was a 500 (and a job left pending); an
    # aggregation ADD or DELETE without its parent was taken (EPCIS 2.0 7.4.3)
    last = {**event, "eventTime": "9999-12-31T23:59:59.9999Z", "eventTimeZoneOffset": "+00:00"}
    last.pop("eventID", None)
    orphan = {
        "@context": CONTEXT,
        "type": "AggregationEvent",
        "eventTime": "2026-11-30T10:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "childEPCs": [f"urn:epc:id:sgtin:0614141.107346.PO{next(_ids)}"],
        "action": "ADD",
    }
    for bad in (last, orphan, {**orphan, "action": "DELETE", "childEPCs": []}):
        answer = await client.post("/epcis/events", headers=headers, content=json.dumps(bad))
        assert answer.status_code == 400, answer.text
        assert answer.json()["type"] == "epcisException:ValidationException"
    assert (
        await client.post(
            "/epcis/events",
            headers=headers,
            content=json.dumps({**orphan, "action": "OBSERVE"}),
        )
    ).status_code == 201


# -- Tracecode's own codes -----------------------------------------------------------------------


async def state_of_unit(conn: Any, app: Any, serial: str) -> dict[str, Any]:
    batch_no, index, _ = app.state.scheme.verify(serial)
    row = await (
        await conn.execute(
            "SELECT disposition, parent_sscc FROM unit_state WHERE code = %s",
            (batch_no << 32 | index,),
        )
    ).fetchone()
    await conn.commit()
    return dict(row)


def packing(parent: str, children: list[str], line: str) -> dict[str, Any]:
    """A contract packer's aggregation: ``children`` into ``parent`` on ``line``."""
    return {
        "type": "AggregationEvent",
        "eventTime": "2026-11-30T10:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "parentID": parent,
        "childEPCs": children,
        "action": "ADD",
        "bizStep": "packing",
        "disposition": "in_progress",
        "readPoint": {"id": f"urn:tracecode:line:{line}"},
    }


async def units_in(conn: Any, sscc: str) -> int:
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM unit_state WHERE parent_sscc = %s", (int(sscc),)
        )
    ).fetchone()
    await conn.commit()
    return int(row["n"])


async def test_partner_aggregation_then_a_tracecode_outbound_of_the_same_case(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    batch_no, product_id = await issue_units(client, login, demo, 20)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(20)]
    await activate(client, login, serials, product_id, line="EP1")
    cases = await issue_cases(client, login, demo, "inner", 2)
    operator = await login("operator")  # the contract packer's line operator
    parent = f"urn:epc:id:sscc:{cases[0][1:8]}.{cases[0][0]}{cases[0][8:17]}"
    aggregation = packing(parent, [unit_link(s) for s in serials[:10]], "EP1")
    await captured(client, operator, document([aggregation]))
    assert await units_in(conn, cases[0]) == 10

    # the same rules and rejections as the line: a unit already in a case is refused, whole
    observe = _object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.W{next(_ids)}"])
    again = {**aggregation, "parentID": case_link(cases[1]), "childEPCs": [unit_link(serials[0])]}
    job = await captured(client, operator, document([observe, again]), state="failed")
    assert job["errors"]["type"] == "epcisException:ValidationException"
    assert job["errors"]["reasons"][0]["reason"] in ("already_bound", "child_rejected"), job
    assert event_list(await query(client, operator, MATCH_epc=observe["epcList"][0])) == []
    # no line: refused
    no_line = {
        **aggregation,
        "parentID": case_link(cases[1]),
        "childEPCs": [unit_link(serials[15])],
    }
    del no_line["readPoint"]
    failed = await captured(client, operator, document([no_line]), state="failed")
    assert "readPoint" in failed["errors"]["detail"]
    # shipping Tracecode codes by EPCIS is refused: that is the logistics API's
    ship = _object("ADD", [unit_link(serials[12])], bizStep="shipping")
    refused = await captured(client, operator, document([ship]), state="failed")
    assert "commission" in refused["errors"]["detail"], refused
    assert (await state_of_unit(conn, app, serials[12]))["disposition"] != "in_transit"

    # Tracecode's outbound of the case the partner packed
    clerk = await login("clerk")
    inbound = await client.post("/documents", headers=clerk, json={"kind": "factory_inbound"})
    assert inbound.status_code == 201, inbound.text
    doc = inbound.json()
    added = await client.post(
        f"/documents/{doc['id']}/codes", headers=clerk, json={"codes": [cases[0]]}
    )
    assert added.status_code == 200 and added.json()["rejected"] == 0, added.text
    assert (await client.post(f"/documents/{doc['id']}/confirm", headers=clerk)).status_code == 200
    out = await client.post(
        "/documents", headers=clerk, json={"kind": "outbound", "counterparty_id": demo["AGENT-ZJ"]}
    )
    assert out.status_code == 201, out.text
    out_doc = out.json()
    added = await client.post(
        f"/documents/{out_doc['id']}/codes", headers=clerk, json={"codes": [cases[0]]}
    )
    assert added.status_code == 200 and added.json()["rejected"] == 0, added.text
    confirmed = await client.post(f"/documents/{out_doc['id']}/confirm", headers=clerk)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["units"] == 10

    # one query over both sources: the partner's event and Tracecode's own, in order
    admin = await login("admin")
    history = event_list(
        await query(client, admin, MATCH_anyEPC=case_link(cases[0]), perPage="100")
    )
    steps = [(e["type"], e["bizStep"]) for e in history]
    assert ("AggregationEvent", "packing") in steps
    assert ("ObjectEvent", "receiving") in steps or ("ObjectEvent", "shipping") in steps
    assert steps[-1] == ("AggregationEvent", "packing")  # the captured one comes after the own
    shipping = [e for e in history if e.get("bizStep") == "shipping"]
    assert (
        shipping
        and shipping[0]["destinationList"][0]["destination"] == "urn:tracecode:org:AGENT-ZJ"
    )
    # a unit of the case, as an EPC URN
    urn = event_list(await query(client, admin, MATCH_epc=unit_link(serials[3])))
    assert any(e["type"] == "AggregationEvent" for e in urn)

    # scope: the agent sees the shipment to it, not the factory's packing or the partner's capture
    agent = await login("agent_admin")
    seen = event_list(await query(client, agent, MATCH_anyEPC=case_link(cases[0])))
    assert seen and all(e.get("bizStep") == "shipping" for e in seen), seen
    other = await other_brand_admin(client, login)
    assert event_list(await query(client, other, MATCH_anyEPC=case_link(cases[0]))) == []
    jobs = (await client.get("/epcis/capture", headers=admin)).json()["items"]
    assert jobs
    hidden = await client.get(f"/epcis/capture/{jobs[0]['captureID']}", headers=other)
    assert_problem(hidden, 404, "capture_not_found")


# -- races and the worker ----------------------------------------------------------------------


async def test_identifiers_and_event_ids_in_capitals_name_the_same_things(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """Probe Q: an EPC URN, a Digital Link or a unit's QR URL with its scheme, URN prefix or
    host in capitals (case-insensitive parts) was kept as a foreign URI: a shipment of the
    brand's unit got through, a packing was acknowledged and never applied. A ``urn:uuid:``
    eventID sent again in capitals was stored twice."""
    batch_no, product_id = await issue_units(client, login, demo, 8)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(8)]
    await activate(client, login, serials, product_id, line="EPQ")
    operator = await login("operator")
    for spelled in (
        f"HTTPS://ID.GS1.ORG/01/{GTIN}/21/{serials[0]}",
        f"HTTPS://tracecode.example/c/{serials[1]}",
        f"https://tracecode.example/C/{serials[2]}",
    ):
        ship = _object("ADD", [spelled], bizStep="shipping")
        refused = await captured(client, operator, document([ship]), state="failed")
        assert "commission" in refused["errors"]["detail"], (spelled, refused)

    cases = await issue_cases(client, login, demo, "inner", 1)
    parent = f"URN:EPC:id:sscc:{cases[0][1:8]}.{cases[0][0]}{cases[0][8:17]}"
    children = [f"Https://Id.Gs1.Org/01/{GTIN}/21/{s}" for s in serials[4:8]]
    await captured(client, operator, document([packing(parent, children, "EPQ")]))
    assert await units_in(conn, cases[0]) == 4
    found = event_list(await query(client, operator, MATCH_parentID=case_link(cases[0])))
    # the captured event, found by the lower-case spelling, and Tracecode's own of its packing
    assert [e["type"] for e in found] == ["AggregationEvent"] * 2

    partner = await login("partner")
    headers = {**partner, "Content-Type": "application/json"}
    event_id = f"urn:uuid:{uuid.uuid4()}"
    observe = _object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.Q{next(_ids)}"])
    first = await client.post(
        "/epcis/events", headers=headers, content=json.dumps({**observe, "eventID": event_id})
    )
    assert first.status_code == 201, first.text
    capitals = {**observe, "eventID": event_id.upper()}
    again = await client.post("/epcis/events", headers=headers, content=json.dumps(capitals))
    assert again.status_code == 409, again.text
    back = await client.get(f"/epcis/events/{event_id.upper()}", headers=partner)
    assert back.status_code == 200 and back.json()["eventID"] == event_id, back.text

    # one stored in capitals before (review R3): migration 0050 lowers it, so it is found again
    # and a document sent again repeats it instead of storing it twice
    await conn.execute(
        "UPDATE epcis_events SET event_id = upper(event_id) WHERE event_id = %s", (event_id,)
    )
    await conn.commit()
    assert (await client.get(f"/epcis/events/{event_id}", headers=partner)).status_code == 404
    migration = Path(__file__).parent.parent / "app/migrations/0050_epcis_uuid_event_ids.sql"
    await conn.execute(migration.read_text())
    await conn.commit()
    back = await client.get(f"/epcis/events/{event_id.upper()}", headers=partner)
    assert back.status_code == 200 and back.json()["eventID"] == event_id, back.text
    again = await client.post("/epcis/events", headers=headers, content=json.dumps(capitals))
    assert again.status_code == 409, again.text


async def test_the_same_document_raced_is_stored_once(client: Any, login: Any, conn: Any) -> None:
    partner = await login("partner")
    tag = f"R{next(_ids)}x{id(conn) % 100000}"
    epcs = [f"urn:epc:id:sgtin:0614141.107346.{tag}{i}" for i in range(3)]
    doc = document([_object("OBSERVE", [epc]) for epc in epcs])  # no eventIDs: hashed
    answers = await asyncio.gather(*(capture(client, partner, doc) for _ in range(6)))
    assert [a.status_code for a in answers] == [202] * 6
    jobs = [(await client.get(a.headers["location"], headers=partner)).json() for a in answers]
    assert all(j["state"] == "success" for j in jobs), jobs
    assert sum(j["stored"] for j in jobs) == 3
    row = await (
        await conn.execute(
            "SELECT count(*) AS n FROM epcis_event_epcs WHERE epc LIKE %s",
            (f"https://id.gs1.org/01/10614141073464/21/{tag}%",),
        )
    ).fetchone()
    await conn.commit()
    assert row["n"] == 3


async def test_two_partners_packing_one_unit_at_once_exactly_one_wins(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    batch_no, product_id = await issue_units(client, login, demo, 4)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(4)]
    await activate(client, login, serials, product_id, line="EP2")
    cases = await issue_cases(client, login, demo, "inner", 2)
    operator = await login("operator")

    def packing(case: str) -> dict[str, Any]:
        return document(
            [
                {
                    "type": "AggregationEvent",
                    "eventTime": "2026-11-30T10:00:00.000+08:00",
                    "eventTimeZoneOffset": "+08:00",
                    "parentID": case_link(case),
                    "childEPCs": [unit_link(s) for s in serials],
                    "action": "ADD",
                    "bizStep": "packing",
                    "readPoint": {"id": "urn:tracecode:line:EP2"},
                }
            ]
        )

    answers = await asyncio.gather(*(capture(client, operator, packing(c)) for c in cases))
    jobs = [(await client.get(a.headers["location"], headers=operator)).json() for a in answers]
    states = sorted(job["state"] for job in jobs)
    assert states == ["failed", "success"]
    rows = await (
        await conn.execute(
            "SELECT DISTINCT parent_sscc FROM unit_state WHERE code >= %s AND code < %s",
            (batch_no << 32, (batch_no + 1) << 32),
        )
    ).fetchall()
    await conn.commit()
    assert len(rows) == 1 and str(rows[0]["parent_sscc"]).zfill(18) in cases


async def test_a_large_document_is_a_worker_job(client: Any, login: Any, app: Any) -> None:
    partner = await login("partner")
    tag = f"J{next(_ids)}x{id(app) % 100000}"
    size = app.state.settings.epcis_inline_events + 1
    doc = document(
        [_object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.{tag}-{i}"]) for i in range(size)]
    )
    response = await capture(client, partner, doc)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "pending" and response.json()["running"]
    with worker_process():
        deadline = time.monotonic() + 90
        while True:
            job = (await client.get(response.headers["location"], headers=partner)).json()
            if job["state"] != "pending" and job["state"] != "running":
                break
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.3)
    assert job["state"] == "success" and job["stored"] == size, job
    found = await query(client, partner, MATCH_epc=f"urn:epc:id:sgtin:0614141.107346.{tag}-7")
    assert len(event_list(found)) == 1


async def test_a_document_over_a_megabyte_is_parsed_beside_the_event_loop(
    client: Any, login: Any, app: Any
) -> None:
    """Probe G: a 64 MB document was parsed on the event loop (every other request waited
    seconds) and several at once took gigabytes. A document over 1 MB is parsed in a thread,
    one at a time per process; its answers are the same."""
    partner = await login("partner")
    tag = f"M{next(_ids)}x{id(app) % 100000}"
    epcs = [
        [f"urn:epc:id:sgtin:0614141.107346.{tag}-{e}-{i}" for i in range(500)] for e in range(50)
    ]
    events = [_object("OBSERVE", group) for group in epcs]
    raw = json.dumps(document(events)).encode()
    assert len(raw) > 1 << 20
    job = await captured(client, partner, raw)
    assert job["stored"] == 50
    found = await query(client, partner, MATCH_epc=epcs[49][499])
    assert len(event_list(found)) == 1
    events[-1]["action"] = "LOOK"  # refused whole, by the same checks
    refused = await capture(client, partner, json.dumps(document(events)).encode())
    assert_problem(refused, 400, "epcis_validation")
    assert "eventList/49/action" in refused.json()["detail"]


async def test_an_sgtin_matches_a_unit_only_under_its_product_s_gtin(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """An SGTIN is its GTIN and its serial together: ``MATCH_epc`` / ``MATCH_anyEPC`` with a
    Tracecode serial under another company's GTIN match nothing (a probe: the serial alone
    matched the unit's commissioning). And one event by its id is a JSON-LD document: its
    ``@context`` with it (a probe found none)."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials, product_id, line=f"PG{next(_ids)}")
    admin = await login("admin")
    mine = event_list(
        await query(client, admin, MATCH_epc=f"https://id.gs1.org/01/{GTIN}/21/{serials[0]}")
    )
    assert len(mine) == 1
    other = f"https://id.gs1.org/01/10614141073464/21/{serials[0]}"
    assert event_list(await query(client, admin, MATCH_epc=other)) == []
    urn = f"urn:epc:id:sgtin:0614141.107346.{serials[0]}"
    assert event_list(await query(client, admin, MATCH_anyEPC=urn)) == []
    one = await client.get(f"/epcis/events/{quote(mine[0]['eventID'], safe='')}", headers=admin)
    assert one.status_code == 200, one.text
    assert one.json()["@context"] == CONTEXT or CONTEXT in one.json()["@context"]
    assert one.json()["eventID"] == mine[0]["eventID"]


async def test_two_sgtins_of_one_serial_or_ed_match_the_unit_in_either_order(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: ``MATCH_epc=A|B`` is an OR, yet with A the unit's own SGTIN and B another
    company's SGTIN of the same serial the unit's events vanished: ``match_of`` kept one GTIN
    per unit (the last value's) and ``of_their_gtins`` then dropped the unit. Asked in the
    other order, they were found."""
    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    await activate(client, login, [serial], product_id, line=f"PO{next(_ids)}")
    admin = await login("admin")
    mine = unit_link(serial)
    other = f"urn:epc:id:sgtin:0614141.107346.{serial}"
    for asked in (f"{other}|{mine}", f"{mine}|{other}"):
        assert len(event_list(await query(client, admin, MATCH_epc=asked))) == 1, asked


async def test_match_epc_with_another_spelling_of_a_serial_matches_nothing(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: an SGTIN's serial is case-sensitive (README: "the rest of an EPC URN is
    case-sensitive"; GS1 AI 21), so ``…/21/bfyx…`` and ``…/21/BFYX…`` are two EPCs; yet
    MATCH_epc with the unit's serial in lower case (or with the look-alikes O for 0, L for 1)
    returned the unit's events, which list only the printed EPC: ``match_of`` read the serial
    through ``scheme.verify``, which folds case and look-alikes."""
    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    await activate(client, login, [serial], product_id, line=f"PL{next(_ids)}")
    admin = await login("admin")
    assert len(event_list(await query(client, admin, MATCH_epc=unit_link(serial)))) == 1
    spellings = {serial.lower(), serial.replace("0", "O").replace("1", "L")} - {serial}
    assert spellings
    for spelled in spellings:
        asked = unit_link(spelled)
        assert event_list(await query(client, admin, MATCH_epc=asked)) == [], asked


async def test_places_in_either_spelling_class_patterns_and_scalar_parameters(
    client: Any, login: Any
) -> None:
    """Probes: EQ_readPoint / EQ_bizLocation compared the text as sent, so an SGLN URN did not
    find its Digital Link; a GRAI class pattern matched nothing (its serial follows the key,
    not ``/21/``); a repeated scalar parameter was taken silently (the last one won); a time
    finer than a microsecond was cut, so GE_ took an event before it."""
    partner = await login("partner")
    tag = f"P{next(_ids)}x{id(client) % 10000}"
    urn = f"urn:epc:id:sgln:0614141.00888.{tag}"
    link = canonical(urn)
    assert link.startswith("https://id.gs1.org/414/")
    asset = f"urn:epc:id:grai:0614141.12345.{tag}"
    unchecked = f"https://id.gs1.org/01/10614141073460/21/{tag}"  # check digit 4, not 0
    events = [
        _object(
            "OBSERVE",
            [asset, unchecked],
            eventTime="2026-11-29T10:00:00.000000+08:00",
            readPoint={"id": urn},
            bizLocation={"id": link},
        )
    ]
    await captured(client, partner, document(events))
    for params in (
        {"EQ_readPoint": link},
        {"EQ_readPoint": urn},
        {"EQ_bizLocation": urn},
        {"EQ_bizLocation": "HTTPS://ID.GS1.ORG" + link.removeprefix("https://id.gs1.org")},
        {"MATCH_epc": "urn:epc:idpat:grai:0614141.12345.*", "EQ_readPoint": urn},
        {"EQ_readPoint": urn, "GE_eventTime": "2026-11-29T09:59:59.9999995+08:00"},
        {"EQ_readPoint": urn, "LT_eventTime": "2026-11-29T10:00:00.0000005+08:00"},
    ):
        found = event_list(await query(client, partner, **params))
        assert [e["epcList"] for e in found] == [[asset, unchecked]], params
    # a probe: captured with a wrong check digit (capture does not check it), asked for: a 400
    found = event_list(await query(client, partner, MATCH_epc=unchecked))
    assert [e["epcList"] for e in found] == [[asset, unchecked]]
    for params in (
        {"EQ_readPoint": urn, "GE_eventTime": "2026-11-29T10:00:00.0000005+08:00"},
        {"EQ_readPoint": urn, "LT_eventTime": "2026-11-29T10:00:00+08:00"},
        {"MATCH_epc": "urn:epc:idpat:grai:0614141.12346.*", "EQ_readPoint": urn},
    ):
        assert event_list(await query(client, partner, **params)) == [], params
    for repeated in ("perPage", "GE_eventTime", "nextPageToken"):
        value = {"perPage": "5", "GE_eventTime": "2026-11-29T10:00:00Z"}.get(repeated, "x")
        response = await client.get(
            "/epcis/events", headers=partner, params=[(repeated, value), (repeated, value)]
        )
        assert response.status_code == 400, (repeated, response.text)
        assert response.json()["type"] == "epcisException:QueryParameterException"


async def test_the_place_migration_writes_what_capture_stores(conn: Any) -> None:
    """0066 brings stored SGLN URNs to the form ``place_key`` stores now: the same text for
    every shape it converts, and the value itself for the ones it leaves."""
    sql = Path(__file__).parent.parent / "app" / "migrations" / "0066_epcis_place_keys.sql"
    create = sql.read_text().split("UPDATE")[0]
    await conn.execute(create)
    values = [
        "urn:epc:id:sgln:0614141.00777.0",
        "urn:epc:id:sgln:0614141.12345.400",
        "urn:epc:id:sgln:4012345.00001.ab9",
        "urn:epc:id:sgln:061414.123456.0",
        "urn:epc:id:sgln:951234567890..X1",
        "urn:epc:id:sgln:0614141.12345.a%2Fb",  # an escape: left as it was (still matched)
        "urn:tracecode:line:L1",
        "geo:22.5,114.0",
    ]
    for value in values:
        cur = await conn.execute("SELECT pg_temp.sgln_key(%s) AS key", [value])
        expected = place_key(value) if "%" not in value else value
        assert (await cur.fetchone())["key"] == expected, value


async def test_a_value_in_the_cbv_namespace_must_be_a_cbv_word(client: Any, login: Any) -> None:
    """A probe: ``urn:epcglobal:cbv:bizstep:pz_unknown`` was stored as sent, and never found
    again (a query reads the namespace's values as their CBV words)."""
    partner = await login("partner")
    epc = f"urn:epc:id:sgtin:0614141.107346.CB{next(_ids)}"
    for field, value in (
        ("bizStep", "urn:epcglobal:cbv:bizstep:pz_unknown"),
        ("bizStep", "https://ref.gs1.org/cbv/BizStep-pz_unknown"),
        ("bizStep", "cbv:BizStep-pz_unknown"),
        ("bizStep", "https://ref.gs1.org/cbv/Disp-active"),  # a word, of another vocabulary
        ("disposition", "urn:epcglobal:cbv:disp:pz_unknown"),
    ):
        response = await capture(
            client, partner, document([_object("OBSERVE", [epc], **{field: value})])
        )
        assert response.status_code == 400, (value, response.text)
        assert response.json()["type"] == "epcisException:ValidationException"
    own = "https://example.com/steps/pz_unknown"  # an extension's own namespace: as sent
    await captured(client, partner, document([_object("OBSERVE", [epc], bizStep=own)]))
    assert len(event_list(await query(client, partner, MATCH_epc=epc, EQ_bizStep=own))) == 1


async def test_a_tracecode_bizstep_captured_is_found_by_its_own_value(
    client: Any, login: Any
) -> None:
    """A probe: a partner captured an event whose bizStep is in Tracecode's namespace
    (``urn:tracecode:bizstep:claiming``, kept as sent by ``document._vocabulary``); asking
    ``EQ_bizStep`` with exactly that value found nothing: the query cut it to ``claiming``
    (``document.cbv_word``) and compared that with the stored URI."""
    partner = await login("partner")
    epc = _epc("TB")
    step = "urn:tracecode:bizstep:claiming"
    await captured(client, partner, document([_object("OBSERVE", [epc], bizStep=step)]))
    everything = event_list(await query(client, partner, MATCH_epc=epc))
    assert [e["bizStep"] for e in everything] == [step]
    assert len(event_list(await query(client, partner, MATCH_epc=epc, EQ_bizStep=step))) == 1


async def test_a_gs1_curie_capture_reads_as_a_cbv_word_is_read_so_by_the_query(
    client: Any, login: Any
) -> None:
    """A probe: capture reads ``gs1:BizStep-shipping``, ``gs1:Disp-in_transit`` and
    ``gs1:BTT-po`` as the CBV words (``document._spellings``) and stores ``shipping``; the query
    read ``cbv:`` CURIEs but not ``gs1:`` ones (``document._CBV_URI``), so the very spelling the
    partner captured with found nothing. The query now reads capture's own tables."""
    partner = await login("partner")
    epc = _epc("GC")
    event = _object(
        "OBSERVE",
        [epc],
        bizStep="gs1:BizStep-shipping",
        disposition="gs1:Disp-in_transit",
        bizTransactionList=[{"type": "gs1:BTT-po", "bizTransaction": "urn:x:po:GC1"}],
    )
    await captured(client, partner, document([event]))
    for params in (
        {"EQ_bizStep": "shipping"},
        {"EQ_bizStep": "gs1:BizStep-shipping"},
        {"EQ_disposition": "gs1:Disp-in_transit"},
        {"EQ_bizTransaction_gs1:BTT-po": "urn:x:po:GC1"},
        {"EQ_bizTransaction_po": "urn:x:po:GC1"},
    ):
        found = event_list(await query(client, partner, MATCH_epc=epc, **params))
        assert len(found) == 1, params


async def _unit(conn: Any, app: Any, serial: str) -> dict[str, Any] | None:
    batch, index, _ = app.state.scheme.verify(serial)
    row = await (
        await conn.execute(
            "SELECT u.status, u.lot, o.erp_code AS holder FROM unit_state u "
            "JOIN orgs o ON o.id = u.holder_org_id WHERE code = %s",
            ((batch << 32) | index,),
        )
    ).fetchone()
    await conn.commit()
    return row  # type: ignore[no-any-return]


async def test_an_observation_of_tracecode_codes_changes_nothing_or_is_refused(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: OBSERVE shipping, receiving, selling and decommissioning events on the brand's
    units were stored as mere observations (by an agent, of units it never held, too) and
    served back beside the brand's own events; unit state unchanged, no rule checked. An
    observation that changes nothing Tracecode keeps still goes in."""
    from tests.helpers import activate, issue_units

    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials, product_id, line="OB1")
    for user in ("operator", "agent_admin"):
        headers = await login(user)
        for step, disposition in (
            ("shipping", "in_transit"),
            ("receiving", "in_progress"),
            ("retail_selling", "retail_sold"),
            ("decommissioning", "inactive"),
            ("inspecting", "retail_sold"),
            (None, "destroyed"),
        ):
            fields = {"bizStep": step} if step else {}
            event = _object("OBSERVE", [unit_link(serials[0])], disposition=disposition, **fields)
            job = await captured(client, headers, document([event]), state="failed")
            assert "may only observe" in json.dumps(job["errors"]), job
    before = await _unit(conn, app, serials[0])
    assert before is not None and (before["status"], before["holder"]) == ("active", "FACTORY-SZ")
    fine = _object(
        "OBSERVE", [unit_link(serials[1])], bizStep="inspecting", disposition="conformant"
    )
    await captured(client, await login("operator"), document([fine]))
    shown = event_list(await query(client, await login("admin"), MATCH_epc=unit_link(serials[0])))
    assert [e.get("bizStep") for e in shown] == ["commissioning"], shown


async def test_an_observation_setting_a_persistent_disposition_is_refused_like_a_disposition(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: an OBSERVE of one of the brand's active units carrying
    ``persistentDisposition: {"set": ["destroyed"]}`` was stored and served to the brand as a
    fact about the unit, while the same event with ``disposition: "destroyed"`` was refused. A
    persistent disposition is the same statement (EPCIS 2.0 §7.3.3: it holds until unset), so
    it is refused the same way, set or unset; one that changes no state goes in."""
    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    await activate(client, login, [serial], product_id, line="PZ1")
    partner = await login("partner")
    plain = _object("OBSERVE", [unit_link(serial)], disposition="destroyed")
    await captured(client, partner, document([plain]), "failed")
    for persistent in ({"set": ["destroyed"]}, {"unset": ["cbv:Disp-active", "recalled"]}):
        event = _object("OBSERVE", [unit_link(serial)], persistentDisposition=persistent)
        job = await captured(client, partner, document([event]), "failed")
        assert job["errors"]["reasons"]["persistentDisposition"] == persistent, job
    served = event_list(await query(client, partner, MATCH_epc=unit_link(serial)))
    assert [e for e in served if "persistentDisposition" in e] == [], served
    fine = _object(
        "OBSERVE", [unit_link(serial)], persistentDisposition={"set": ["non_conformant"]}
    )
    await captured(client, partner, document([fine]))


async def test_a_commissioning_event_calling_its_units_sold_is_refused(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: an ObjectEvent ADD, bizStep commissioning, with ``disposition: "retail_sold"``
    activated the brand's fresh units and was stored as sent, so the brand's query
    ``EQ_disposition=retail_sold`` listed units Tracecode holds as active at the factory. The
    events Tracecode applies (commissioning, packing, unpacking) may state only a disposition
    that changes no state (``active``, ``in_progress``, ``container_closed``, …), as an
    OBSERVE."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials[:1], product_id, line="PZ2")  # sets the context
    operator = await login("operator")
    line = {"readPoint": {"id": "urn:tracecode:line:PZ2"}}
    for said in ({"disposition": "retail_sold"}, {"persistentDisposition": {"set": ["stolen"]}}):
        event = _object("ADD", [unit_link(serials[1])], bizStep="commissioning", **said, **line)
        job = await captured(client, operator, document([event]), "failed")
        assert "leaves them active" in job["errors"]["detail"], job
    sold = event_list(
        await query(client, operator, MATCH_epc=unit_link(serials[1]), EQ_disposition="retail_sold")
    )
    assert sold == []
    event = _object(
        "ADD", [unit_link(serials[1])], bizStep="commissioning", disposition="active", **line
    )
    await captured(client, operator, document([event]))


async def test_a_units_qr_url_in_any_scanned_spelling_is_applied(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a unit named by its QR URL with a query string (or a trailing slash) was stored
    as a foreign event, its commissioning applied to nothing; the line API reads it."""
    from tests.helpers import issue_units

    batch_no, product_id = await issue_units(client, login, demo, 2)
    operator = await login("operator")
    set_line = await client.put(
        "/lines/QR1/context",
        headers=operator,
        json={"product_id": product_id, "lot": "L-QR", "production_date": "2026-11-30"},
    )
    assert set_line.status_code == 200, set_line.text
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    urls = [f"https://tracecode.example/c/{serials[0]}?src=qr", f"http://x.example/c/{serials[1]}/"]
    event = _object(
        "ADD", urls, bizStep="commissioning", readPoint={"id": "urn:tracecode:line:QR1"}
    )
    await captured(client, operator, document([event]))
    for serial in serials:
        row = await _unit(conn, app, serial)
        assert row is not None and row["status"] == "active", (serial, row)


async def test_a_unit_observed_by_its_qr_url_is_found_by_match_epc(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the brand observed one of its units naming it by its QR URL (README: capture
    reads it as the brand's unit); the observation was stored, but MATCH_epc found it neither
    by that URL nor by the unit's SGTIN: ``match_of`` turned a QR URL into the unit only (no
    captured EPC to compare) and the captured event kept the URL only. Tracecode's own events
    of the unit were found both ways (and a URL of that shape naming another system's item
    was never found). Capture now stores the event under the unit's SGTIN too, and a query by
    a QR URL asks for the URL as captured and for the unit's SGTIN."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials, product_id, line=f"PQ{next(_ids)}")
    admin = await login("admin")
    url = f"https://tracecode.example/c/{serials[0]}"
    seen = _object("OBSERVE", [url], bizStep="inspecting", disposition="conformant")
    job = await captured(client, admin, document([seen]))
    assert job["stored"] == 1, job
    for asked in (url, unit_link(serials[0])):
        steps = [e["bizStep"] for e in event_list(await query(client, admin, MATCH_epc=asked))]
        assert sorted(steps) == ["commissioning", "inspecting"], (asked, steps)
    # and the other way round: an observation by the SGTIN is found by the QR URL
    sampled = _object("OBSERVE", [unit_link(serials[1])], bizStep="sampling")
    await captured(client, admin, document([sampled]))
    asked = f"https://tracecode.example/c/{serials[1]}"
    steps = [e["bizStep"] for e in event_list(await query(client, admin, MATCH_epc=asked))]
    assert sorted(steps) == ["commissioning", "sampling"], steps
    # a URL of that shape naming no Tracecode unit is a foreign URI: found as captured
    foreign = f"https://other.example/c/{secrets.token_hex(10).upper()}"
    await captured(client, admin, document([_object("OBSERVE", [foreign])]))
    assert len(event_list(await query(client, admin, MATCH_epc=foreign))) == 1


async def test_the_ilmd_lot_is_read_by_its_expanded_key(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: the lot under the document's own prefix for the CBV master data was ignored
    (the line's lot taken instead), and ``cbvmda:lotNumber`` under a rebound ``cbvmda`` taken.
    ``cbvmda`` may be declared again only as the standard context binds it (a rebinding is
    refused at capture: ``test_a_rebound_standard_prefix_does_not_change_other_events_on_a_page``),
    and its lot is then read as the lot."""
    from tests.helpers import issue_units

    operator = await login("operator")
    batch_no, product_id = await issue_units(client, login, demo, 5)
    context = {"product_id": product_id, "lot": "LINE-LOT", "production_date": "2026-11-30"}
    assert (await client.put("/lines/LOT1/context", headers=operator, json=context)).is_success
    for index, (prefixes, key, lot) in enumerate(
        (
            ({"mda": "urn:epcglobal:cbv:mda#"}, "mda:lotNumber", "EVT-9"),
            ({"cbvmda": "https://example.com/other#"}, "cbvmda:lotNumber", None),
            ({"cbvmda": "urn:epcglobal:cbv:mda:"}, "cbvmda:lotNumber", "EVT-9"),
            # A probe: the standard's own IRI (cbvmda is urn:epcglobal:cbv:mda: in the EPCIS
            # 2.0 context) under another prefix, or written out, was no lot
            ({"m": "urn:epcglobal:cbv:mda:"}, "m:lotNumber", "EVT-9"),
            ({}, "urn:epcglobal:cbv:mda:lotNumber", "EVT-9"),
        )
    ):
        serial = app.state.scheme.serial(batch_no, index)
        event = {
            **_object("ADD", [unit_link(serial)], bizStep="commissioning"),
            "readPoint": {"id": "urn:tracecode:line:LOT1"},
            "ilmd": {key: "EVT-9"},
        }
        body = document([event], context=[CONTEXT, prefixes])
        if lot is None:
            refused = await capture(client, operator, body)
            assert refused.status_code == 400, refused.text
            assert refused.json()["detail"].startswith("/@context/1/cbvmda"), refused.json()
            continue
        await captured(client, operator, body)
        row = await _unit(conn, app, serial)
        assert row is not None and row["lot"] == lot, (key, row)


def _epc(tag: str) -> str:
    return f"urn:epc:id:sgtin:0614141.107346.{tag}{secrets.token_hex(4)}"


async def test_an_event_is_found_by_ge_its_own_sub_microsecond_event_time(
    client: Any, login: Any
) -> None:
    """A probe: capture kept eventTime truncated to whole microseconds (``document._time`` via
    ``datetime.fromisoformat``), while the query rounds a finer GE_/LT_ time *up*
    (``query._time``): an event was not found by GE_eventTime equal to its own eventTime, and
    was found by LT_eventTime equal to it. Both now round up."""
    partner = await login("partner")
    epc = _epc("T7")
    when = "2026-11-20T10:00:00.1234567+08:00"
    await captured(client, partner, document([_object("OBSERVE", [epc], eventTime=when)]))
    at_or_after = event_list(await query(client, partner, MATCH_epc=epc, GE_eventTime=when))
    before = event_list(await query(client, partner, MATCH_epc=epc, LT_eventTime=when))
    # the event's time is its time: GE finds it, LT does not
    assert (len(at_or_after), len(before)) == (1, 0), (at_or_after, before)


async def _sub_org_product(client: Any, login: Any, demo: Any) -> tuple[int, str]:
    """A product of the brand owned by its factory (as the catalogue allows), with a GTIN."""
    from app._core import gs1_check_digit

    admin = await login("admin")
    body13 = f"0690{secrets.randbelow(10**9):09d}"
    gtin = body13 + str(gs1_check_digit(body13))
    made = await client.post(
        "/products",
        headers=admin,
        json={
            "name": f"Factory product {gtin}",
            "product_no": f"FP-{gtin[-6:]}",
            "gtin": gtin,
            "org_id": demo["FACTORY-SZ"],
        },
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"]), gtin


async def test_a_shipment_of_a_unit_of_a_factory_owned_product_is_refused(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: ``capture._brand_gtins`` took only products whose ``org_id`` is the brand
    itself, but the catalogue, batches and lines treat every product owned in the brand's tree
    as the brand's (``lines.brand_product``): a shipping event on such a unit's SGTIN was
    stored as a foreign event, past the documents API's rules. It is refused now."""
    product_id, gtin = await _sub_org_product(client, login, demo)
    planner = await login("planner")
    batch = await client.post(
        "/batches",
        headers=planner,
        json={"size": 3, "printer_id": demo["PRINTER-SH"], "product_id": product_id},
    )
    assert batch.status_code == 201, batch.text
    batch_no = int(batch.json()["batch_no"])
    serials = [app.state.scheme.serial(batch_no, i) for i in range(3)]
    await activate(client, login, serials[:1], product_id, line="EPF1")
    operator = await login("operator")
    link = f"https://id.gs1.org/01/{gtin}/21/{serials[0]}"
    # the unit is the brand's own code: a shipment by EPCIS bypasses the documents API
    ship = _object("ADD", [link], bizStep="shipping", disposition="in_transit")
    job = await captured(client, operator, document([ship]), state="failed")
    assert "commission" in job["errors"]["detail"], job


async def test_commissioning_a_unit_of_a_factory_owned_product_activates_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe, the same cause: the commissioning job answered success, the event was stored
    as a foreign one, and the unit was never activated."""
    product_id, gtin = await _sub_org_product(client, login, demo)
    planner = await login("planner")
    batch = await client.post(
        "/batches",
        headers=planner,
        json={"size": 2, "printer_id": demo["PRINTER-SH"], "product_id": product_id},
    )
    assert batch.status_code == 201, batch.text
    batch_no = int(batch.json()["batch_no"])
    serial = app.state.scheme.serial(batch_no, 0)
    operator = await login("operator")
    context = await client.put(
        "/lines/EPF2/context",
        headers=operator,
        json={"product_id": product_id, "lot": "L1", "production_date": "2026-11-01"},
    )
    assert context.status_code == 200, context.text
    link = f"https://id.gs1.org/01/{gtin}/21/{serial}"
    commission = _object(
        "ADD", [link], bizStep="commissioning", readPoint={"id": "urn:tracecode:line:EPF2"}
    )
    await captured(client, operator, document([commission]))
    row = await (
        await conn.execute("SELECT status FROM unit_state WHERE code = %s", (batch_no << 32 | 0,))
    ).fetchone()
    await conn.commit()
    # acknowledged as success: the unit must be active, as the line would have made it
    assert row is not None and row["status"] == "active", row


async def test_accept_xml_only_is_not_acceptable(client: Any, login: Any) -> None:
    """A probe: a client accepting only XML got a 200 JSON-LD body; the binding answers 406
    NotAcceptableException. A wildcard or JSON still gets the events."""
    partner = await login("partner")
    response = await client.get("/epcis/events", headers={**partner, "Accept": "application/xml"})
    assert response.status_code == 406, (response.status_code, response.text[:200])
    assert response.json()["type"] == "epcisException:NotAcceptableException"
    for accept in ("application/xml, */*;q=0.1", "application/json", "application/ld+json"):
        answer = await client.get("/epcis/events", headers={**partner, "Accept": accept})
        assert answer.status_code == 200, (accept, answer.text[:200])


def _prefix_map(context: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in context if isinstance(context, list) else [context]:
        if isinstance(part, dict):
            found.update({k: v for k, v in part.items() if isinstance(v, str)})
    return found


async def test_one_prefix_bound_to_two_namespaces_by_two_documents_keeps_each_meaning(
    client: Any, login: Any
) -> None:
    """A probe: two partners' documents both use the prefix ``ex``, for their own namespaces.
    Queried back on one page, each event's ``ex:temperature`` must still name its own IRI (the
    page's context took the last document's binding for all)."""
    zj, admin = await login("agent_admin"), await login("admin")
    gd = await login("gd_admin")
    shared = _epc("NS")
    for who, namespace in ((zj, "https://zj.example.com/ns/"), (gd, "https://gd.example.com/ns/")):
        event = _object("OBSERVE", [shared], **{"ex:temperature": "5"})
        await captured(client, who, document([event], [CONTEXT, {"ex": namespace}]))
    body = (await query(client, admin, MATCH_epc=shared)).json()
    events = body["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert len(events) == 2
    iris = set()
    for event in events:
        prefixes = {**_prefix_map(body["@context"]), **_prefix_map(event.get("@context"))}
        iris.add(prefixes["ex"] + "temperature")
    assert iris == {
        "https://zj.example.com/ns/temperature",
        "https://gd.example.com/ns/temperature",
    }, (body["@context"], events)


async def test_an_event_with_its_own_context_keeps_its_document_prefix_on_a_page(
    client: Any, login: Any
) -> None:
    """A probe: two documents bind ``ex`` to two namespaces; the second's event also has an
    @context of its own (declaring ``ey``). Queried back on one page, that event's own @context
    replaced its document's, so its ``ex:t`` named the page's ``ex`` (the first document's
    namespace). README: events whose documents bind one prefix to different namespaces keep
    their own @context — the document's bindings, then the event's."""
    zj, gd, admin = await login("agent_admin"), await login("gd_admin"), await login("admin")
    shared = _epc("CX")
    first = _object("OBSERVE", [shared], **{"ex:t": "1"})
    await captured(client, zj, document([first], [CONTEXT, {"ex": "https://a.example/ns/"}]))
    second = _object("OBSERVE", [shared], **{"ex:t": "2", "ey:u": "3"})
    second = {"@context": {"ey": "https://c.example/ns/"}, **second}
    await captured(client, gd, document([second], [CONTEXT, {"ex": "https://b.example/ns/"}]))
    body = (await query(client, admin, MATCH_epc=shared)).json()
    events = body["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert len(events) == 2
    meaning = {}
    for event in events:
        prefixes = {**_prefix_map(body["@context"]), **_prefix_map(event.get("@context"))}
        meaning[event["ex:t"]] = (prefixes.get("ex"), prefixes.get("ey"))
    assert meaning == {
        "1": ("https://a.example/ns/", None),
        "2": ("https://b.example/ns/", "https://c.example/ns/"),
    }, (body["@context"], events)


async def test_a_context_cannot_redefine_the_standards_terms_for_other_events(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a document's @context object may bind prefixes, and it bound ``bizStep`` (or
    ``@vocab``) too; the query lifted it into the page's @context, where it redefined the
    bizStep of every event of the page — Tracecode's own commissioning of the unit included.
    A @context (the document's or an event's) holding a JSON-LD keyword or a term of the EPCIS
    2.0 context is refused, 400 naming it, nothing stored; namespace prefixes stay free."""
    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    await activate(client, login, [serial], product_id, line="EP1")
    partner = await login("partner")
    observe = _object("OBSERVE", [unit_link(serial)], bizStep="inspecting")
    evil = "https://evil.example/step"
    for context, pointer, event in (
        ([CONTEXT, {"bizStep": evil, "ex": "https://ex.example/"}], "/@context/1/bizStep", observe),
        ({"@vocab": evil}, "/@context/@vocab", observe),
        (
            [CONTEXT, {"ex": "https://ex.example/", "@version": 1.1}],
            "/@context/1/@version",
            observe,
        ),
        (CONTEXT, "/epcisBody/eventList/0/@context/type", {"@context": {"type": evil}, **observe}),
    ):
        response = await capture(client, partner, document([event], context))
        assert response.status_code == 400, (context, response.text)
        body = response.json()
        assert body["type"] == "epcisException:ValidationException", body
        assert body["detail"].startswith(pointer + ":"), (pointer, body["detail"])
    page = (await query(client, partner, MATCH_epc=unit_link(serial))).json()
    assert page["@context"] == CONTEXT, page["@context"]
    events = page["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert [e["bizStep"] for e in events] == ["commissioning"], events
    prefix = [CONTEXT, {"example": "http://ns.example.com/epcis/"}]
    await captured(client, partner, document([observe], prefix))


MDA = "urn:epcglobal:cbv:mda#"  # the CBV master data namespace, as Tracecode reads cbvmda


def _contexts(context: Any) -> list[Any]:
    return context if isinstance(context, list) else [context]


async def test_a_rebound_standard_prefix_does_not_change_other_events_on_a_page(
    client: Any, login: Any
) -> None:
    """A probe: ``cbvmda`` (like ``gs1``, ``cbv``, ``epcis``) is a prefix of the EPCIS 2.0
    context, ``@protected`` there. A document's @context binding it to its own namespace was
    stored (``document._own_terms`` refused the standard's other terms only) and the query
    lifted that binding into the page's @context (``search.search`` compared a captured context
    only with the other captured ones), so another partner's commissioning event on the same
    page said its ``cbvmda:lotNumber`` was ``https://evil.example/mda#lotNumber``. Such a
    binding is refused at capture now (400 naming it), as the standard's terms are."""
    zj, gd, admin = await login("agent_admin"), await login("gd_admin"), await login("admin")
    theirs, mine = _epc("RB"), _epc("LT")
    rebinding = [CONTEXT, {"cbvmda": "https://evil.example/mda#"}]
    sent = await capture(client, zj, document([_object("OBSERVE", [theirs])], rebinding))
    assert sent.status_code == 400, sent.text
    assert sent.json()["type"] == "epcisException:ValidationException", sent.json()
    assert sent.json()["detail"].startswith("/@context/1/cbvmda:"), sent.json()
    await captured(client, zj, document([_object("OBSERVE", [theirs])]))
    lot = _object("ADD", [mine], bizStep="commissioning", ilmd={"cbvmda:lotNumber": "LOT-9"})
    await captured(client, gd, document([lot]))
    body = (await query(client, admin, MATCH_epc=f"{theirs}|{mine}")).json()
    events = body["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert len(events) == 2, events
    event = next(e for e in events if "ilmd" in e)
    bindings = {**_prefix_map(body["@context"]), **_prefix_map(event.get("@context"))}
    assert bindings.get("cbvmda", MDA) == MDA, (body["@context"], event)


async def test_a_prefix_named_urn_does_not_rewrite_tracecodes_own_identifiers(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a document's @context could bind any prefix name, ``urn`` included, and the
    query lifted ``{"urn": "https://evil.example/"}`` into the page's @context, where, as a
    JSON-LD prefix, it rewrote every ``urn:`` IRI of the page: Tracecode's own commissioning of
    the unit, served beside the partner's observation, had the eventID
    ``https://evil.example/uuid:…`` and the readPoint ``https://evil.example/tracecode:line:EP1``.
    A prefix named like a URI scheme (urn, http, https, ni, geo, …, in any case) is refused at
    capture now (400 naming it); one stored before stays with its event, off the page."""
    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    await activate(client, login, [serial], product_id, line="EP1")
    partner = await login("partner")
    observe = _object("OBSERVE", [unit_link(serial)], bizStep="inspecting")
    for name in ("urn", "URN", "https"):
        context = [CONTEXT, {name: "https://evil.example/"}]
        sent = await capture(client, partner, document([observe], context))
        assert sent.status_code == 400, (name, sent.text)
        assert sent.json()["detail"].startswith(f"/@context/1/{name}:"), sent.json()
    event_id = f"urn:uuid:{uuid.uuid4()}"
    await captured(client, partner, document([{**observe, "eventID": event_id}]))
    await conn.execute(  # as a capture before the rule stored it
        "UPDATE epcis_events SET context = %s::jsonb WHERE event_id = %s",
        ('{"urn": "https://evil.example/"}', event_id),
    )
    await conn.commit()
    page = (await query(client, partner, MATCH_epc=unit_link(serial))).json()
    events = page["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert len(events) == 2, events
    own = next(e for e in events if e["bizStep"] == "commissioning")
    assert own["eventID"].startswith("urn:uuid:")
    bindings = {**_prefix_map(page["@context"]), **_prefix_map(own.get("@context"))}
    assert "urn" not in bindings, page["@context"]
    theirs = next(e for e in events if e["eventID"] == event_id)
    assert theirs["@context"] == {"urn": "https://evil.example/"}, theirs


async def test_one_event_with_its_own_context_is_served_with_the_standard_context(
    client: Any, login: Any
) -> None:
    """A probe: ``GET /epcis/events/{eventID}`` built its answer as
    ``{"@context": <the page's context>, **event}`` (``routes.get_event``), so the @context of
    an event sent with one of its own overwrote the page's: the answer's only context was
    ``{"ey": …}`` — no EPCIS 2.0 context and no binding of ``ex``, which the event's document
    declared. One event is served now as the list serves it: the page's context (the standard
    one, the document's prefixes), then the event's own (``search.one_event``)."""
    partner = await login("partner")
    event_id = f"urn:uuid:{uuid.uuid4()}"
    event = {
        "@context": {"ey": "https://c.example/ns/"},
        **_object("OBSERVE", [_epc("OC")], eventID=event_id, **{"ex:t": "2", "ey:u": "3"}),
    }
    await captured(client, partner, document([event], [CONTEXT, {"ex": "https://b.example/ns/"}]))
    response = await client.get(f"/epcis/events/{quote(event_id, safe='')}", headers=partner)
    assert response.status_code == 200, response.text
    context = response.json()["@context"]
    assert CONTEXT in _contexts(context), context
    bindings = _prefix_map(context)
    assert bindings.get("ex") == "https://b.example/ns/", context
    assert bindings.get("ey") == "https://c.example/ns/", context


async def test_a_documents_remote_context_is_served_with_its_events(
    client: Any, login: Any
) -> None:
    """A probe: a partner's document named its own remote context beside the EPCIS one
    (``[epcis-context, "https://partner.example/ctx.jsonld"]``) and its events used a prefix
    that context declares (``ex:t``), which capture takes (a remote context may declare any
    prefix). Capture kept only a context's object entries (``capture._prefixes``), so the remote
    context was dropped: the query and ``GET /epcis/events/{eventID}`` served the event with
    ``ex`` bound to nothing. The remote context is kept now and served in the event's own
    @context (never the page's: it may declare anything)."""
    partner = await login("partner")
    event_id = f"urn:uuid:{uuid.uuid4()}"
    remote = "https://partner.example/ctx.jsonld"
    event = _object("OBSERVE", [_epc("RC")], eventID=event_id, **{"ex:t": "2"})
    await captured(client, partner, document([event], [CONTEXT, remote, {"ey": "urn:ey:"}]))
    one = await client.get(f"/epcis/events/{quote(event_id, safe='')}", headers=partner)
    assert one.status_code == 200, one.text
    assert _contexts(one.json()["@context"]) == [CONTEXT, remote, {"ey": "urn:ey:"}], one.json()
    body = (await query(client, partner, MATCH_epc=event["epcList"][0])).json()
    (served,) = body["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert body["@context"] == CONTEXT, body["@context"]
    assert served["@context"] == [remote, {"ey": "urn:ey:"}], served


async def test_capture_a_valid_time_near_the_calendar_end_with_an_offset(
    client: Any, login: Any
) -> None:
    """A probe: 9999-12-31T23:59:59.9999999+14:00 is 9999-12-31T10:00:00Z (rounded up), a valid
    time inside the calendar, yet the document was refused: the sub-microsecond rounding was
    applied before the offset, in local time, and overflowed past year 9999."""
    partner = await login("partner")
    when = "9999-12-31T23:59:59.9999999+14:00"
    event = _object("OBSERVE", [_epc("EE")], eventTime=when, eventTimeZoneOffset="+14:00")
    await captured(client, partner, document([event]))


async def test_a_query_time_at_the_calendar_start_with_a_fraction_is_taken(
    client: Any, login: Any
) -> None:
    """A probe: ``GE_eventTime=0001-01-01T00:00:00+14:00`` was answered, but the same time with
    a fraction, ``…00.5+14:00``, was 400: ``query._time`` moved a time with a fraction to UTC
    (year 0, outside Python's calendar) before adding the fraction. Both are valid
    xsd:dateTime values; the calendar's end with an offset is still taken too."""
    partner = await login("partner")
    for when in (
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00.5+14:00",
        "0001-01-01T00:00:00.0000001+14:00",
        "9999-12-31T23:59:59.9999999+14:00",
    ):
        answer = await client.get("/epcis/events", headers=partner, params={"GE_eventTime": when})
        assert answer.status_code == 200, (when, answer.text)
    late = {"GE_eventTime": "9999-12-31T23:59:59.9999999-01:00"}  # past the calendar in UTC
    assert (await client.get("/epcis/events", headers=partner, params=late)).status_code == 400


async def test_accept_headers(client: Any, login: Any) -> None:
    """Accept: a browser's, JSON-LD, a wildcard or weighted JSON is 200; JSON refused is 406."""
    partner = await login("partner")
    ok = [
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8",
        'application/ld+json;profile="https://gs1.org/voc/"',
        "APPLICATION/JSON",
        "application/json ; q=0.5",
        "application/*",
        "application/xml;q=0, application/json",
    ]
    for accept in ok:
        answer = await client.get("/epcis/events", headers={**partner, "Accept": accept})
        assert answer.status_code == 200, (accept, answer.status_code, answer.text[:200])
    bad = ["application/json;q=0", "*/*;q=0", "text/html", "application/json;q=0.0, text/xml"]
    for accept in bad:
        answer = await client.get("/epcis/events", headers={**partner, "Accept": accept})
        assert answer.status_code == 406, (accept, answer.status_code, answer.text[:200])
        assert answer.json()["type"] == "epcisException:NotAcceptableException"


async def test_sub_microsecond_edges(client: Any, login: Any) -> None:
    """.9999999 rolls into the next second/day: found by GE at its own time, with offsets too."""
    partner = await login("partner")
    for when in (
        "2026-12-31T23:59:59.9999999Z",
        "2026-12-31T23:59:59.99999951+08:00",
        "2026-06-30T10:00:00.0000000001-05:30",
    ):
        epc = _epc("SM")
        await captured(client, partner, document([_object("OBSERVE", [epc], eventTime=when)]))
        ge = event_list(await query(client, partner, MATCH_epc=epc, GE_eventTime=when))
        lt = event_list(await query(client, partner, MATCH_epc=epc, LT_eventTime=when))
        assert (len(ge), len(lt)) == (1, 0), (when, ge, lt)
        got = await client.get(f"/epcis/events/{quote(ge[0]['eventID'], safe='')}", headers=partner)
        assert got.status_code == 200, got.text


async def test_an_own_events_served_time_satisfies_the_time_filter_that_returned_it(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: Tracecode's own event at 08:00:00.123456+08:00 (a scan time kept whole) was
    served with its eventTime cut to milliseconds (``query._iso``): ``GE_eventTime=….1234Z``
    returned it though the time it was served with, .123, is before the bound. Own and
    captured events' times are now served to the microsecond, as stored and compared."""
    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    operator = await login("operator")
    line = f"PT{next(_ids)}"
    ctx = {"product_id": product_id, "lot": "LOT1", "production_date": "2026-11-01"}
    assert (await client.put(f"/lines/{line}/context", headers=operator, json=ctx)).is_success
    scan = {"id": f"t-{serial}", "code": serial, "at": "2026-11-01T08:00:00.123456+08:00"}
    done = await client.post(f"/lines/{line}/scans", headers=operator, json={"scans": [scan]})
    assert done.status_code == 200 and done.json()["rejected"] == 0, done.text
    admin = await login("admin")
    bound = "2026-11-01T00:00:00.1234Z"
    found = event_list(await query(client, admin, MATCH_epc=unit_link(serial), GE_eventTime=bound))
    assert [e["eventTime"] for e in found] == ["2026-11-01T00:00:00.123456Z"], found
    assert found[0]["recordTime"].endswith("Z") and len(found[0]["recordTime"]) == 27
    partner = await login("partner")
    epc = _epc("RT")
    await captured(client, partner, document([_object("OBSERVE", [epc])]))
    (event,) = event_list(await query(client, partner, MATCH_epc=epc))
    recorded = event["recordTime"]
    assert len(recorded) == 27, recorded  # 2026-12-01T08:00:00.123456Z
    at = event_list(await query(client, partner, MATCH_epc=epc, GE_recordTime=recorded))
    after = event_list(await query(client, partner, MATCH_epc=epc, LT_recordTime=recorded))
    assert (len(at), len(after)) == (1, 0), (at, after)


async def test_an_aggregation_stating_a_shipment_step_is_refused_like_an_object_event(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: an AggregationEvent ADD on Tracecode codes was applied as a packing whatever its
    bizStep: one saying ``shipping`` packed the case and was stored and served back as a
    shipment of it, which Tracecode never made, while the ObjectEvent saying so is refused. A
    packing aggregation says ``packing`` (an unpacking ``unpacking``) or nothing; any other
    step fails the job (ValidationException naming the event), nothing packed."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials, product_id, line="ZES1")
    case = (await issue_cases(client, login, demo, "inner", 1))[0]
    operator = await login("operator")
    event = {**packing(case_link(case), [unit_link(s) for s in serials], "ZES1")}
    event["bizStep"] = "shipping"
    del event["disposition"]
    job = await captured(client, operator, document([event]), state="failed")
    assert job["errors"]["type"] == "epcisException:ValidationException", job
    assert job["errors"]["pointer"] == "/epcisBody/eventList/0", job
    assert await units_in(conn, case) == 0


async def test_a_void_units_qr_url_is_refused_as_the_line_refuses_it(
    client: Any, login: Any, app: Any, demo: Any, settings: Any, conn: Any
) -> None:
    """A probe: a unit of a voided batch named by its QR URL (``…/c/{serial}``) was taken for a
    foreign code (``capture._brand_qr_units`` kept only reads without a reason): its
    commissioning on a line was acknowledged ``success`` and stored, never applied, and a
    shipment of it was stored past every rule, while the line answers the same URL ``void`` and
    the same unit by its SGTIN is refused. Both jobs fail, naming the event."""
    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    planner = await login("planner")
    voided = await client.post(f"/batches/{batch_no}/void", headers=planner, json={"reason": "x"})
    assert voided.status_code == 200, voided.text
    operator = await login("operator")
    context = {"product_id": product_id, "lot": "L1", "production_date": "2026-11-01"}
    assert (await client.put("/lines/ZEV1/context", headers=operator, json=context)).is_success
    url = f"{settings.public_scheme}://{settings.resolver_host}/c/{serial}"
    scan = {"id": "zev1-a", "code": url, "at": "2026-11-30T10:00:00+08:00"}
    line = await client.post("/lines/ZEV1/scans", headers=operator, json={"scans": [scan]})
    assert line.json()["scans"][0]["reason"] == "void", line.text  # the line's answer
    commission = {
        **_object("ADD", [url], bizStep="commissioning"),
        "readPoint": {"id": "urn:tracecode:line:ZEV1"},
    }
    job = await captured(client, operator, document([commission]), state="failed")
    assert job["errors"]["pointer"] == "/epcisBody/eventList/0", job
    assert "void" in json.dumps(job["errors"]["reasons"]), job
    ship = _object("ADD", [url], bizStep="shipping", disposition="in_transit")
    job = await captured(client, operator, document([ship]), state="failed")
    assert job["errors"]["pointer"] == "/epcisBody/eventList/0", job


async def test_an_unpacking_dated_outside_the_platforms_time_is_refused(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: an AggregationEvent DELETE on a Tracecode case was applied whatever its
    eventTime, while a commissioning or packing is refused ``bad_time`` before 2000 or over a
    day ahead (``app.packing.scans.EARLIEST``/``MAX_AHEAD``): an unpacking dated 2099 took the
    units out now and was served as the case's last event for ever. It is refused like the
    line's scans (job failed naming the event, reason ``bad_time``), the case left as it was."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials, product_id, line="ZET1")
    case = (await issue_cases(client, login, demo, "inner", 1))[0]
    operator = await login("operator")
    pack = packing(case_link(case), [unit_link(s) for s in serials], "ZET1")
    await captured(client, operator, document([pack]))
    assert await units_in(conn, case) == 2
    for when in ("2099-01-01T00:00:00Z", "1999-06-01T00:00:00Z"):
        unpack = {
            **pack,
            "action": "DELETE",
            "bizStep": "unpacking",
            "childEPCs": [unit_link(serials[0])],
            "eventTime": when,
            "eventTimeZoneOffset": "+00:00",
        }
        del unpack["disposition"]
        job = await captured(client, operator, document([unpack]), state="failed")
        assert job["errors"]["pointer"] == "/epcisBody/eventList/0", job
        assert "bad_time" in json.dumps(job["errors"]["reasons"]), job
        assert await units_in(conn, case) == 2


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_an_unpacking_sent_late_is_dated_by_its_event_time_not_its_arrival(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a contract packer's MES (a partner with ``epcis.capture``) uploads its offline
    events hours late, in one document: case C unpacked at T-2h (AggregationEvent DELETE), its
    units repacked into case D at T-1h. The packing into D was dated by its eventTime, the
    unpacking of C by the upload's arrival (T): the event log, ``GET /trace`` and the container
    stays said the units sat in C and D at once from T-1h to T, the unpacking after the
    repacking it preceded. The unpacking is written at its eventTime, as a packing is."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials, product_id, line="LATE1")
    first, second = await issue_cases(client, login, demo, "inner", 2)
    operator = await login("operator")
    now = datetime.now(UTC)
    pack_c = {
        **packing(case_link(first), [unit_link(s) for s in serials], "LATE1"),
        "eventTime": _iso(now - timedelta(hours=3)),
    }
    await captured(client, operator, document([pack_c]))
    assert await units_in(conn, first) == 2
    unpack_c = {**pack_c, "action": "DELETE", "bizStep": "unpacking",
                "eventTime": _iso(now - timedelta(hours=2))}  # fmt: skip
    del unpack_c["disposition"]
    pack_d = {**pack_c, "parentID": case_link(second), "eventTime": _iso(now - timedelta(hours=1))}
    await captured(client, operator, document([unpack_c, pack_d]))
    assert await units_in(conn, first) == 0 and await units_in(conn, second) == 2

    trace = (await client.get(f"/trace/{serials[0]}", headers=await login("admin"))).json()
    unpacking = [e for e in trace["events"] if e["biz_step"] == "unpacking"]
    assert len(unpacking) == 1, trace["events"]
    at = datetime.fromisoformat(unpacking[0]["event_time"])
    assert abs(at - (now - timedelta(hours=2))) < timedelta(seconds=1), (at, trace["events"])
    stays = {s["code"]: s for s in trace["containers"]}
    removed = datetime.fromisoformat(stays[first]["removed_at"])
    assert removed <= datetime.fromisoformat(stays[second]["added_at"]), stays


async def test_an_unpacking_of_all_arriving_late_leaves_what_was_packed_after_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a contract packer's MES sends its events out of order: case C (two units packed
    at T-3h) was emptied at T-2h (AggregationEvent DELETE without childEPCs) and a third unit
    packed into it at T-1h; the packing of T-1h arrives first, the unpacking after it. The
    unpacking took out whatever C held on arrival, the unit packed an hour after it too: C ended
    empty, where by the events' own times (and in the other arrival order) it holds that unit.
    An unpacking without childEPCs takes out only what was packed into C by its eventTime."""
    batch_no, product_id = await issue_units(client, login, demo, 3)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(3)]
    await activate(client, login, serials, product_id, line="LATE2")
    case = (await issue_cases(client, login, demo, "inner", 1))[0]
    operator = await login("operator")
    now = datetime.now(UTC)
    pack = {
        **packing(case_link(case), [unit_link(s) for s in serials[:2]], "LATE2"),
        "eventTime": _iso(now - timedelta(hours=3)),
    }
    await captured(client, operator, document([pack]))
    later = {
        **pack,
        "childEPCs": [unit_link(serials[2])],
        "eventTime": _iso(now - timedelta(hours=1)),
    }
    await captured(client, operator, document([later]))  # arrives first
    unpack_all = {**pack, "action": "DELETE", "bizStep": "unpacking",
                  "eventTime": _iso(now - timedelta(hours=2))}  # fmt: skip
    del unpack_all["disposition"], unpack_all["childEPCs"]
    await captured(client, operator, document([unpack_all]))  # arrives last
    rows = await (
        await conn.execute("SELECT code FROM unit_state WHERE parent_sscc = %s", (int(case),))
    ).fetchall()
    await conn.commit()
    assert [r["code"] for r in rows] == [batch_no << 32 | 2], rows


async def test_an_unpacking_dated_before_its_units_were_packed_is_refused(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """An EPCIS unpacking naming a unit packed into the case after the unpacking's eventTime is
    refused ``not_in_container`` naming the unit (never written before the packing it would
    undo), the case left as it was; one of all children finding nothing packed by its eventTime
    is refused ``empty_case``. The operator's own unpacking (``POST /packing/unpack``) is dated
    now and takes them out."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials, product_id, line="LATE3")
    case = (await issue_cases(client, login, demo, "inner", 1))[0]
    operator = await login("operator")
    now = datetime.now(UTC)
    pack = {
        **packing(case_link(case), [unit_link(s) for s in serials], "LATE3"),
        "eventTime": _iso(now - timedelta(hours=1)),
    }
    await captured(client, operator, document([pack]))
    unpack = {**pack, "action": "DELETE", "bizStep": "unpacking",
              "childEPCs": [unit_link(serials[0])], "eventTime": _iso(now - timedelta(hours=2))}  # fmt: skip
    del unpack["disposition"]
    job = await captured(client, operator, document([unpack]), state="failed")
    assert job["errors"]["pointer"] == "/epcisBody/eventList/0", job
    reasons = job["errors"]["reasons"]
    assert [(r["code"], r["reason"]) for r in reasons] == [(serials[0], "not_in_container")], job
    del unpack["childEPCs"]
    job = await captured(client, operator, document([unpack]), state="failed")
    assert "empty_case" in json.dumps(job["errors"]["reasons"]), job
    assert await units_in(conn, case) == 2
    taken = await client.post(
        "/packing/unpack", headers=operator, json={"parent": case, "reason": "rework"}
    )
    assert taken.status_code == 200, taken.text
    assert await units_in(conn, case) == 0


async def test_an_agent_s_epcis_feed_shows_the_void_of_the_goods_it_holds(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: an agent holds 4 units received from the factory; the brand voids their batch
    (a recall). The agent's ``GET /epcis/events`` saw only the shipping and receiving, never the
    decommissioning that took the units out of its stock: the one event was at the voider's
    organisation, none of the agent's, and its ``/trace`` showed it with the reason blanked as
    another party's. The void writes a decommissioning per place the units are at."""
    batch_no, product_id = await issue_units(client, login, demo, 4)
    units = [app.state.scheme.serial(batch_no, i) for i in range(4)]
    await activate(client, login, units, product_id, line="RC1")
    clerk, agent_clerk = await login("clerk"), await login("agent_clerk")
    inbound = await logistics_document(client, clerk, units, kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    out = await logistics_document(
        client, clerk, units, kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await confirm(client, clerk, out)).status_code == 200
    receipt = await logistics_document(
        client, agent_clerk, None, kind="inbound", shipment_id=out["id"]
    )
    assert (await confirm(client, agent_clerk, receipt)).status_code == 200
    voided = await client.post(
        f"/batches/{batch_no}/void", headers=await login("planner"), json={"reason": "recall"}
    )
    assert voided.status_code == 200, voided.text
    agent = await login("agent_admin")
    trace = (await client.get(f"/trace/{units[0]}", headers=agent)).json()
    assert trace["state"]["status"] == "void"
    last = trace["events"][-1]
    assert last["biz_step"] == "decommissioning"  # the trace tells the agent, and why
    assert (last["details"] or {}).get("reason") == "recall", last
    feed = await client.get(
        "/epcis/events", headers=agent, params={"MATCH_epc": unit_link(units[0])}
    )
    assert feed.status_code == 200, feed.text
    steps = [(e.get("bizStep"), e.get("action")) for e in event_list(feed)]
    assert ("decommissioning", "DELETE") in steps, steps


async def test_a_brand_sgtin_with_a_wrong_gtin_check_digit_is_refused_as_the_line_refuses_it(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: ``…/01/0690123400002{4}/21/{the brand's serial}`` (the GTIN's check digit
    mistyped) was a foreign identifier to capture (``_is_ours`` compared all 14 digits), so a
    commissioning answered ``success`` and activated nothing, and a sale of the brand's serial
    was stored, while the line answers that text ``wrong_product``. It is the brand's GTIN with
    a wrong check digit: the job fails naming the code ``wrong_product``; a foreign GTIN with a
    wrong one stays a foreign identifier (stored as sent, as the event-hash reference takes
    it)."""
    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials[1:], product_id, line="WCD1")
    wrong = f"{GTIN[:-1]}{(int(GTIN[-1]) + 1) % 10}"
    mistyped = [f"https://id.gs1.org/01/{wrong}/21/{s}" for s in serials]
    operator, admin = await login("operator"), await login("admin")
    line = {"readPoint": {"id": "urn:tracecode:line:WCD1"}}
    events = [
        (operator, _object("ADD", mistyped[:1], bizStep="commissioning", **line)),
        (operator, _object("ADD", mistyped[1:], bizStep="retail_selling")),
        (admin, _object("OBSERVE", mistyped[1:], bizStep="inspecting")),
    ]
    for headers, event in events:
        job = await captured(client, headers, document([event]), state="failed")
        assert job["errors"]["pointer"] == "/epcisBody/eventList/0", job
        assert [r["reason"] for r in job["errors"]["reasons"]] == ["wrong_product"], job
    assert await _unit(conn, app, serials[0]) is None  # nothing activated
    digit = (gs1_check_digit("0614141107346") + 1) % 10
    foreign = f"https://id.gs1.org/01/0614141107346{digit}/21/{serials[0]}"
    await captured(client, operator, document([_object("OBSERVE", [foreign])]))


async def test_a_unit_named_by_its_serial_in_another_spelling_is_refused(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a commissioning of ``…/21/{serial in lower case}`` activated the unit (the
    line's reader folds case, reads O for 0 and L for 1), while the query's rule (the serial
    exactly as printed) says that EPC is not the unit: MATCH_epc by the unit's SGTIN never found
    the event that activated it. An SGTIN of the brand's GTIN names a unit only as printed:
    another spelling fails the job, ``not_as_printed`` with the printed serial, in any event;
    the printed one commissions and is found."""
    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    operator, admin = await login("operator"), await login("admin")
    context = {"product_id": product_id, "lot": "SP", "production_date": "2026-11-01"}
    assert (await client.put("/lines/SP1/context", headers=operator, json=context)).is_success
    line = {"readPoint": {"id": "urn:tracecode:line:SP1"}}
    spellings = [serial.lower()]  # and O for 0, L for 1, where the serial has one
    spellings += [serial.replace(a, b, 1) for a, b in (("0", "O"), ("1", "L")) if a in serial]
    for spelled in spellings:
        for headers, event in (
            (operator, _object("ADD", [unit_link(spelled)], bizStep="commissioning", **line)),
            (admin, _object("OBSERVE", [unit_link(spelled)], bizStep="inspecting")),
        ):
            job = await captured(client, headers, document([event]), state="failed")
            (reason,) = job["errors"]["reasons"]
            assert reason["reason"] == "not_as_printed", job
            assert serial in reason["message"], job
    assert await _unit(conn, app, serial) is None
    event = _object("ADD", [unit_link(serial)], bizStep="commissioning", **line)
    await captured(client, operator, document([event]))
    assert (await _unit(conn, app, serial) or {}).get("status") == "active"
    found = event_list(await query(client, admin, MATCH_epc=unit_link(serial)))
    assert any(e["eventID"].startswith("ni:") for e in found), found


async def test_an_instance_identifier_as_a_quantity_class_is_refused(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: ``quantityList[].epcClass`` took any identifier, so the Guangdong agent stored
    "1 of ``…/01/{gtin}/21/{the factory's unit}`` sold at retail", refused as an epcList: capture
    checks EPC lists for Tracecode codes, not classes. An epcClass names a class: an SGTIN (or
    another identifier of one object) there is 400 ValidationException, nothing kept."""
    batch_no, _ = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    gd = await login("gd_admin")
    sale = {
        **_object("ADD", [], bizStep="retail_selling", disposition="retail_sold"),
        "quantityList": [{"epcClass": unit_link(serial), "quantity": 1}],
    }
    response = await capture(client, gd, document([sale]))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "epcisException:ValidationException", body
    assert body["detail"].startswith("/epcisBody/eventList/0/quantityList/0/epcClass"), body
    for named in ("urn:epc:id:sscc:0614141.1234567890", "urn:epc:id:gid:95100000.12345.400"):
        sale["quantityList"] = [{"epcClass": named, "quantity": 1}]
        assert (await capture(client, gd, document([sale]))).status_code == 400, named
    sale["quantityList"] = [{"epcClass": "urn:epc:class:lgtin:4012345.012345.998877"}]
    await captured(client, gd, document([sale]))  # a class, of no Tracecode product


async def test_a_line_busy_with_the_same_codes_fails_the_job_as_a_retry(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, monkeypatch: Any
) -> None:
    """A probe: the line's 409 ``busy`` (another upload kept winning the race for the same
    codes) failed the capture as a 400 ValidationException, as if the document were wrong. It is
    a passing conflict: the job fails with the binding's 503 ImplementationException ``retry``
    (send it again), nothing kept. The race is made certain by leaving the line no attempt."""
    from app.packing import scans

    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    operator = await login("operator")
    context = {"product_id": product_id, "lot": "BZ", "production_date": "2026-11-01"}
    assert (await client.put("/lines/SP1/context", headers=operator, json=context)).is_success
    line = {"readPoint": {"id": "urn:tracecode:line:SP1"}}
    event = _object("ADD", [unit_link(serial)], bizStep="commissioning", **line)
    monkeypatch.setattr(scans, "_ATTEMPTS", 0)
    job = await captured(client, operator, document([event]), state="failed")
    assert (job["errors"]["status"], job["errors"]["title"]) == (503, "retry"), job
    assert await _unit(conn, app, serial) is None
    monkeypatch.undo()
    await captured(client, operator, document([event]))
    assert (await _unit(conn, app, serial) or {}).get("status") == "active"


def test_an_event_s_time_zone_offset_is_always_one_epcis_takes() -> None:
    """``eventTimeZoneOffset`` is an xsd offset, -14:00 to +14:00 (``app.epcis.document._when``
    refuses any other); RFC 3339 writes up to ±23:59. ``tz_offset`` gives a time's own offset
    within that range, and the brands' zone's (+08:00) beyond it — never one a capture refuses."""
    from app.events.log import tz_offset

    moment = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    for hours, minutes, expected in [
        (0, 0, "+00:00"),
        (14, 0, "+14:00"),
        (-14, 0, "-14:00"),
        (5, 45, "+05:45"),
        (-9, -30, "-09:30"),
        (14, 30, "+08:00"),
        (-14, -1, "+08:00"),
        (23, 59, "+08:00"),
        (-23, -59, "+08:00"),
    ]:
        zone = timezone(timedelta(hours=hours, minutes=minutes))
        assert tz_offset(moment.astimezone(zone)) == expected, (hours, minutes)


async def test_a_scan_at_an_offset_past_14_hours_is_never_served_as_an_invalid_event(
    client: Any, login: Any, app: Any, demo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe: a line's scan at +14:30 was stored with ``tz_offset`` "+14:30" and served by
    ``GET /epcis/events/{id}`` as an ``eventTimeZoneOffset`` our own ``POST /epcis/capture``
    refuses (and so would a partner's EPCIS repository). The line now answers such a scan
    ``bad_time``; behind that, with the line's rule widened, the event is served at the brands'
    zone's offset, +08:00, at the instant scanned."""
    from app.packing import scans

    monkeypatch.setattr(scans, "MAX_OFFSET", timedelta(hours=24), raising=False)
    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    operator = await login("operator")
    context = {"product_id": product_id, "lot": "TZ", "production_date": "2026-11-01"}
    assert (await client.put("/lines/TZ1/context", headers=operator, json=context)).is_success
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    at = hour_ago.astimezone(timezone(timedelta(hours=14, minutes=30))).isoformat()
    scan = {"id": f"tz14-{serial}", "code": serial, "at": at}
    answer = await client.post("/lines/TZ1/scans", headers=operator, json={"scans": [scan]})
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
    trace = await client.get(f"/trace/{serial}", headers=await login("admin"))
    event_id = trace.json()["events"][0]["event_id"]
    got = await client.get(
        f"/epcis/events/{quote(event_id, safe='')}", headers=await login("partner")
    )
    assert got.status_code == 200, got.text
    assert got.json()["eventTimeZoneOffset"] == "+08:00", got.text
    assert datetime.fromisoformat(got.json()["eventTime"]) == hour_ago


async def test_a_page_token_is_bound_to_its_query(client: Any, login: Any, settings: Any) -> None:
    """A probe: the nextPageToken was bound to the brand alone. A run over ``MATCH_epc=X|Y``
    (X captured first, pages of one) handed out X and a token; that token given with
    ``MATCH_epc=Y2`` (Y2 captured before X) answered 200 empty: Y2's events silently skipped.
    Now 400 ``QueryParameterException``; the same query with its values in another order, or
    with another ``perPage``, goes on. A token of before the binding (positions only) is 400."""
    from app import sealing
    from app.epcis.query import Position, QueryError, next_token, read_token

    partner = await login("partner")
    y2, x, y = _epc("Y2"), _epc("X"), _epc("Y")
    for epc in (y2, x, y):
        await captured(client, partner, document([_object("OBSERVE", [epc])]))
    first = await query(client, partner, MATCH_epc=f"{x}|{y}", perPage="1")
    assert [e["epcList"] for e in event_list(first)] == [[x]]
    token = first.headers["link"].split("nextPageToken=")[1].split(">")[0]
    for other in ({"MATCH_epc": y2}, {"MATCH_epc": x}, {"MATCH_epc": f"{x}|{y}|{y2}"}, {}):
        response = await client.get(
            "/epcis/events", headers=partner, params={**other, "nextPageToken": token}
        )
        assert_problem(response, 400, "epcis_query_parameter")
        assert response.json()["type"] == "epcisException:QueryParameterException"
    rest = await query(client, partner, MATCH_epc=f"{y}|{x}", perPage="10", nextPageToken=token)
    assert [e["epcList"] for e in event_list(rest)] == [[y]]
    assert [e["epcList"] for e in event_list(await query(client, partner, MATCH_epc=y2))] == [[y2]]
    bound = next_token(settings, "7;one query", Position(), Position())
    assert read_token(settings, "7;one query", bound) == (Position(), Position())
    old = sealing.seal(settings, "epcis-page-token", "7", b"\x03", sealing.token_bytes(bound))
    for token, to in ((bound, "7;another"), (old, "7")):  # another query's; the brand's alone
        with pytest.raises(QueryError):
            read_token(settings, to, token)


async def test_an_event_id_of_a_slash_is_not_found_not_the_whole_collection(
    client: Any, login: Any
) -> None:
    """A probe: ``GET /epcis/events/%2F`` (eventID "/") and ``/epcis/events//`` answered 200
    with every event (the router's path normalisation made them the collection's URL)."""
    admin = await login("admin")
    for path in ("/epcis/events/%2F", "/epcis/events//", "/epcis/events/%2F%2F"):
        assert_problem(await client.get(path, headers=admin), 404, "epcis_event_not_found")
    assert (await client.get("/epcis/events/", headers=admin)).status_code == 200


async def test_a_parameter_name_is_bounded_like_a_value(client: Any, login: Any) -> None:
    """A probe: values were limited to 2000 characters, names not: a 10 KB
    ``EQ_bizTransaction_`` type ran as a query (200), and a 10 KB unknown name was echoed twice
    in the error. A name is at most ``EQ_bizTransaction_`` and a type URI as long as capture
    takes; an unknown one is shown cut."""
    from app.epcis.query import MAX_NAME

    admin = await login("admin")
    long_type = await client.get(
        "/epcis/events?EQ_bizTransaction_" + "p" * 10000 + "=1", headers=admin
    )
    assert_problem(long_type, 400, "epcis_query_parameter")
    assert len(long_type.content) < 1000, len(long_type.content)
    unknown = await client.get("/epcis/events?" + "x" * 10240 + "=1", headers=admin)
    assert_problem(unknown, 400, "epcis_query_parameter")
    assert len(unknown.content) < 1000, len(unknown.content)
    short = await client.get("/epcis/events?" + "x" * 100 + "=1", headers=admin)
    assert_problem(short, 400, "epcis_query_parameter")
    assert "x" * 60 + "'…" in short.json()["detail"] and "x" * 61 not in short.text
    kind = "urn:example:btt:" + "p" * (MAX_NAME - 34)  # the longest name taken
    assert len("EQ_bizTransaction_" + kind) == MAX_NAME
    fits = await query(client, admin, **{f"EQ_bizTransaction_{kind}": "urn:example:bt:1"})
    assert event_list(fits) == []
