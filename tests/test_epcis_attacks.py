"""EPCIS 2.0 under attack (issue 19 item 1): other organisations of the same brand, hostile
query parameters and bodies, the single-event resource, oversized identifiers — on the real
PostgreSQL.

The last four tests were open defects of ``app/epcis/capture.py`` / ``document.py`` when they
were written (strict xfails), fixed since."""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from app.epcis.search import PAGE_BYTES
from tests.test_epcis import CONTEXT, _object, capture, captured, document, event_list, query
from tests.test_erp_export import shipped

DECLARATION = {"declarationTime": "2026-12-01T00:00:00Z", "reason": "incorrect_data"}


def _epc(tag: str) -> str:
    return f"urn:epc:id:sgtin:0614141.107346.{tag}{secrets.token_hex(3)}"


async def _single(client: Any, headers: dict[str, str], event: Any) -> Any:
    return await client.post(
        "/epcis/events",
        headers={**headers, "Content-Type": "application/json"},
        content=event if isinstance(event, bytes) else json.dumps(event).encode(),
    )


async def _event(client: Any, headers: dict[str, str], event_id: str) -> Any:
    return await client.get(f"/epcis/events/{quote(event_id, safe='')}", headers=headers)


# -- fixed ---------------------------------------------------------------------------------------


async def test_odd_query_values_are_query_parameter_exceptions(client: Any, login: Any) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` raises: perPage=² answered 500."""
    partner = await login("partner")
    for params in ({"perPage": "²"}, {"perPage": "１０"}, {"perPage": "1e3"}):
        response = await client.get("/epcis/events", headers=partner, params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["type"] == "epcisException:QueryParameterException"


def _problem(response: Any, status: int, kind: str, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["gs1-epcis-version"] == "2.0.0"
    body = response.json()
    assert (body["type"], body["status"]) == (f"epcisException:{kind}", status), body
    assert body["error"]["code"] == code, body


async def test_errors_before_routing_are_problems_under_epcis(client: Any, login: Any) -> None:
    """Schemathesis: a C1 control in an EPCIS path or query, a path no route has (a capture
    id that is no UUID) or a method none takes was answered before routing with the project's
    plain JSON error, where the binding documents problem+json."""
    partner = await login("partner")
    for url in ("/epcis/events?MATCH_epc=%C2%82", "/epcis/capture/%C2%82x", "/epcis/events/a%01"):
        _problem(
            await client.get(url, headers=partner),
            400,
            "QueryParameterException",
            "invalid_character",
        )
    posted = await client.post("/epcis/capture?x=%00", headers=partner, content=b"{}")
    _problem(posted, 400, "ValidationException", "invalid_character")
    for url in ("/epcis/capture/not-a-uuid", "/epcis/nowhere"):
        _problem(
            await client.get(url, headers=partner), 404, "NoSuchResourceException", "not_found"
        )
    wrong = await client.delete("/epcis/events", headers=partner)
    _problem(wrong, 405, "EPCISException", "method_not_allowed")
    assert "GET" in wrong.headers["allow"]
    plain = await client.get("/orgs?q=%C2%82", headers=partner)  # elsewhere: the plain error
    assert plain.headers["content-type"] == "application/json"
    assert plain.json()["error"]["code"] == "invalid_character"
    assert (await client.get("/nowhere")).headers["content-type"] == "application/json"


async def test_a_deeply_nested_single_event_is_a_validation_exception(
    client: Any, login: Any
) -> None:
    """POST /epcis/events decoded the body before any depth check: the decoder's recursion
    limit answered 500."""
    partner = await login("partner")
    for raw in (b"[" * 100_000, b'{"a":' * 100_000, b"[" * 70 + b"]" * 70):
        response = await _single(client, partner, raw)
        assert response.status_code == 400, (raw[:10], response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == "epcisException:ValidationException"


async def test_an_error_declaration_posted_as_a_single_event_answers_its_event(
    client: Any, login: Any
) -> None:
    """The declaration changes the event stored by an earlier capture, so no row of its own
    capture holds it: the answer looked for one and failed (500, the declaration stored)."""
    partner = await login("partner")
    by_hash = _object("OBSERVE", [_epc("DH")])
    by_id = _object("OBSERVE", [_epc("DI")], eventID=f"urn:uuid:{uuid.uuid4()}")
    for event in (by_hash, by_id):
        first = await _single(client, partner, event)
        assert first.status_code == 201, first.text
        event_id = first.json()["eventID"]
        declared = await _single(client, partner, {**event, "errorDeclaration": DECLARATION})
        assert declared.status_code == 201, declared.text
        assert declared.json() == {"eventID": event_id}
        assert declared.headers["location"] == first.headers["location"]
        back = await _event(client, partner, event_id)
        assert back.status_code == 200 and back.json()["errorDeclaration"] == DECLARATION
        again = await _single(client, partner, {**event, "errorDeclaration": DECLARATION})
        assert again.status_code == 409, again.text  # declared already


async def test_a_transaction_type_with_escapes_and_reserved_characters_is_queried_and_paged(
    client: Any, login: Any
) -> None:
    """The parameter name was percent-decoded twice (``…50%25off`` asked for ``…50%off``), and
    the next page's link left names unescaped (``&``/``#`` in a type broke it: 400)."""
    partner = await login("partner")
    kinds = ["urn:example:btt:50%25off", "urn:example:btt:a&b#c"]
    tag = secrets.token_hex(4)
    events = [
        _object(
            "OBSERVE",
            [_epc("BT")],
            bizTransactionList=[{"type": kind, "bizTransaction": f"urn:example:bt:{tag}"}],
        )
        for kind in kinds
        for _ in range(2)
    ]
    await captured(client, partner, document(events))
    for kind in kinds:
        params = {f"EQ_bizTransaction_{kind}": f"urn:example:bt:{tag}", "perPage": "1"}
        first = await query(client, partner, **params)
        assert len(event_list(first)) == 1, kind
        link = first.headers["link"]
        following = await client.get(link[1 : link.index(">")], headers=partner)
        assert following.status_code == 200, following.text
        found = event_list(first) + event_list(following)
        assert len({e["eventID"] for e in found}) == 2
        assert all(e["bizTransactionList"][0]["type"] == kind for e in found)


async def test_own_events_match_only_the_transaction_type_asked_for(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Tracecode's own events were matched by the transaction's id alone: a purchase-order
    query found the shipment whose despatch advice bears that number."""
    _, outbound = await shipped(client, login, app, demo)
    admin = await login("admin")
    advice = f"urn:tracecode:bt:desadv:{quote(outbound['doc_no'], safe='')}"
    shipping = event_list(await query(client, admin, EQ_bizTransaction_desadv=advice))
    assert [e["bizStep"] for e in shipping] == ["shipping"]
    assert event_list(await query(client, admin, EQ_bizTransaction_po=advice)) == []
    assert event_list(await query(client, admin, EQ_bizTransaction_recadv=advice)) == []


async def test_a_transaction_parameter_without_a_value_matches_nothing(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: ``EQ_bizTransaction_desadv=`` (no value) filtered nothing — every event
    served — while ``MATCH_epc=`` and every other list parameter without a value match
    nothing. It matches nothing too, Tracecode's events and captured ones alike."""
    await shipped(client, login, app, demo)
    admin = await login("admin")
    assert event_list(await query(client, admin, EQ_bizStep="shipping")) != []
    for kind in ("desadv", "po", "urn:example:btt:x"):
        for value in ("", "|"):
            params = {f"EQ_bizTransaction_{kind}": value}
            assert event_list(await query(client, admin, **params)) == [], (kind, value)


# -- open (capture.py / document.py) --------------------------------------------------------------


async def _two_capturers(client: Any, login: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Two organisations of one brand that both capture: the Zhejiang and Guangdong agents."""
    return await login("agent_admin"), await login("gd_admin")


async def test_another_organisations_declaration_cannot_rewrite_an_event(
    client: Any, login: Any
) -> None:
    zj, gd = await _two_capturers(client, login)
    event_id = f"urn:uuid:{uuid.uuid4()}"
    mine = _object("OBSERVE", [_epc("ZJ")], eventID=event_id, bizStep="inspecting")
    await captured(client, zj, document([mine]))
    assert (await _event(client, gd, event_id)).status_code == 404  # not gd's to see
    forged = _object("OBSERVE", [_epc("GD")], eventID=event_id, bizStep="shipping")
    await captured(client, gd, document([{**forged, "errorDeclaration": DECLARATION}]))
    back = (await _event(client, zj, event_id)).json()
    assert back["epcList"] == mine["epcList"] and back["bizStep"] == "inspecting", back


async def test_an_eventid_held_by_another_organisation_is_as_if_absent(
    client: Any, login: Any
) -> None:
    zj, gd = await _two_capturers(client, login)
    event_id = f"urn:uuid:{uuid.uuid4()}"
    zj_epc = _epc("ZJ")
    await captured(client, zj, document([_object("OBSERVE", [zj_epc], eventID=event_id)]))
    theirs = _object("OBSERVE", [_epc("GD")], eventID=event_id)
    single = await _single(client, gd, theirs)
    assert single.status_code == 201, single.text
    job = await captured(client, gd, document([theirs]))
    assert job["stored"] == 0, job  # now its own: a retry stores nothing twice
    assert (await _event(client, gd, event_id)).json()["epcList"] == theirs["epcList"]
    assert (await _event(client, zj, event_id)).json()["epcList"] == [zj_epc]


@pytest.mark.parametrize("where", ["eventID", "epcList"])
async def test_an_oversized_identifier_is_refused_not_a_stuck_job(
    client: Any, login: Any, where: str
) -> None:
    zj, _ = await _two_capturers(client, login)
    huge = "urn:example:" + secrets.token_hex(4000)
    event = _object("OBSERVE", [huge] if where == "epcList" else [_epc("H")])
    if where == "eventID":
        event["eventID"] = huge
    response = await capture(client, zj, document([event]))
    jobs = (await client.get("/epcis/capture", headers=zj)).json()["items"]
    assert all(j["state"] != "pending" for j in jobs), jobs[:3]
    assert response.status_code in (400, 413), response.text
    assert response.json()["type"].startswith("epcisException:")


async def test_a_tracecode_code_named_by_its_qr_url_obeys_the_same_rules(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    from tests.helpers import issue_units

    batch_no, _ = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    url = f"{settings.public_scheme}://{settings.resolver_host}/c/{serial}"
    operator = await login("operator")
    ship = _object("ADD", [url], bizStep="shipping", disposition="in_transit")
    job = await captured(client, operator, document([ship]), state="failed")
    assert "commission" in job["errors"]["detail"], job


# -- found by an adversarial probe (2026-12-03), fixed -------------------------------------------

EX = [CONTEXT, {"ex": "https://partner.example.com/ns/"}]


async def test_control_characters_in_a_captured_document_are_refused(
    client: Any, login: Any
) -> None:
    """SOH, ESC and DEL in an extension value were stored and served to whoever queried: the
    capture read the raw body past the API's control-character check. A tab or a line break
    in text stays allowed, as in every JSON body."""
    partner = await login("partner")
    for text in ("a\u0001b", "\u001b[31mred", "del\u007f", "nul\u0000"):
        raw = json.dumps(document([_object("OBSERVE", [_epc("CC")], **{"ex:note": text})], EX))
        assert "\\u00" in raw or "\x7f" in raw
        response = await capture(client, partner, raw.encode())
        assert response.status_code == 400, (text, response.text)
        assert response.json()["type"] == "epcisException:ValidationException"
        assert "control character" in response.json()["detail"]
        single = await _single(client, partner, _object("OBSERVE", [_epc("CS")], **{"ex:n": text}))
        assert single.status_code == 400, single.text
    ok = _object("OBSERVE", [_epc("CT")], **{"ex:note": "a\ttab and a\nline"})
    job = await captured(client, partner, document([ok], EX))
    assert job["stored"] == 1


async def test_one_eventid_twice_in_a_document_with_other_content_is_refused(
    client: Any, login: Any
) -> None:
    """The second of two different events sharing an eventID was dropped without a word."""
    partner = await login("partner")
    event_id = f"urn:uuid:{uuid.uuid4()}"
    first = _object("OBSERVE", [_epc("D1")], eventID=event_id)
    other = _object("ADD", [_epc("D2")], eventID=event_id)
    response = await capture(client, partner, document([first, other]))
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("/epcisBody/eventList/1/eventID")
    assert event_list(await query(client, partner, MATCH_epc=first["epcList"][0])) == []
    # the same event twice is one event; the eventID again with a declaration declares it
    declared = {**first, "errorDeclaration": DECLARATION}
    job = await captured(client, partner, document([first, first, declared]))
    assert job["stored"] == 2  # the event, and the declaration applied to it
    (stored,) = event_list(await query(client, partner, MATCH_epc=first["epcList"][0]))
    assert stored["errorDeclaration"]["reason"] == DECLARATION["reason"]


async def test_an_eventid_equal_to_another_events_hash_in_a_document_is_refused(
    client: Any, login: Any
) -> None:
    """A probe: an event without an eventID is identified by its CBV 2.0 event hash; another
    event of the same document given that hash as its eventID, with other content, was dropped
    without a word (the job a success, ``stored`` 1). It is the same eventID twice: 400 at the
    later one's eventID, nothing stored. The same event with and without its hash is one."""
    from app.epcis.document import parse_document
    from app.epcis.hashing import event_hash

    partner = await login("partner")
    first = _object("OBSERVE", [_epc("H1")])
    (parsed,) = parse_document(json.dumps(document([first])).encode())
    hashed = event_hash(parsed.raw, parsed.context)
    other = _object("OBSERVE", [_epc("H2")], eventID=hashed)
    for events in ([first, other], [other, first]):
        response = await capture(client, partner, document(events))
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "epcisException:ValidationException"
        assert response.json()["detail"].startswith("/epcisBody/eventList/1/eventID")
    for event in (first, other):
        assert event_list(await query(client, partner, MATCH_epc=event["epcList"][0])) == []
    job = await captured(client, partner, document([first, {**first, "eventID": hashed}]))
    assert job["stored"] == 1


async def test_two_events_without_eventids_of_one_hash_and_other_content_are_refused(
    client: Any, login: Any
) -> None:
    """A probe: two events of one document without eventIDs whose CBV 2.0 event hashes meet
    (the hash keeps milliseconds; it reads ``true`` and ``"True"`` alike) but whose content
    differs: the second was dropped without a word (success, ``stored`` 1 of 2). They share
    an eventID: 400 at the later one, nothing stored. The same event twice is still one."""
    partner = await login("partner")
    epc = _epc("HC")
    pairs = [
        (
            _object("OBSERVE", [epc], eventTime="2026-11-30T10:00:00.0001+08:00"),
            _object("OBSERVE", [epc], eventTime="2026-11-30T10:00:00.0004+08:00"),
        ),
        (
            _object("OBSERVE", [epc], **{"ex:flag": True}),
            _object("OBSERVE", [epc], **{"ex:flag": "True"}),
        ),
    ]
    for first, second in pairs:
        for events in ([first, second], [first, first, second]):
            response = await capture(client, partner, document(events, EX))
            assert response.status_code == 400, response.text
            assert response.json()["type"] == "epcisException:ValidationException"
            assert response.json()["detail"].startswith(
                f"/epcisBody/eventList/{len(events) - 1}/eventID"
            ), response.text
    assert event_list(await query(client, partner, MATCH_epc=epc)) == []
    job = await captured(client, partner, document([pairs[1][0], pairs[1][0]], EX))
    assert (job["events"], job["stored"]) == (2, 1)


async def _tracecode_event_id(client: Any, login: Any, app: Any, demo: Any) -> str:
    """The eventID of one of Tracecode's own events, as the query serves it: a unit's
    commissioning on a line."""
    from tests.helpers import activate, issue_units
    from tests.test_epcis import unit_link

    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    await activate(client, login, [serial], product_id, line="EP1")
    events = event_list(await query(client, await login("partner"), MATCH_epc=unit_link(serial)))
    assert [e["bizStep"] for e in events] == ["commissioning"], events
    return str(events[0]["eventID"])


async def test_an_event_under_the_eventid_of_a_tracecode_event_is_not_stored(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: only captured events were looked up for an eventID the brand holds, so an event
    sent under the eventID of one of Tracecode's own events (a unit's commissioning, seen in
    the query) was stored, and the query served two different events under one eventID. Sent
    alone it is 409 ResourceAlreadyExistsException; in a document it is not stored, as an
    eventID the brand holds (in any spelling of the UUID)."""
    own_id = await _tracecode_event_id(client, login, app, demo)
    partner = await login("partner")
    event = _object("OBSERVE", [_epc("TC")], eventID=own_id)
    answer = await _single(client, partner, event)
    _problem(answer, 409, "ResourceAlreadyExistsException", "epcis_event_exists")
    spellings = [own_id.upper().replace("URN:UUID:", "urn:uuid:"), own_id.replace("-", "")]
    events = [event, *({**event, "eventID": i} for i in spellings)]
    fresh = _object("OBSERVE", [_epc("TF")])
    job = await captured(client, partner, document([*events, fresh]))
    assert job["stored"] == 1
    assert event_list(await query(client, partner, MATCH_epc=event["epcList"][0])) == []
    served = (await _event(client, partner, own_id)).json()
    assert served["bizStep"] == "commissioning", served


async def test_a_tracecode_event_cannot_be_declared_erroneous_by_epcis(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: an event carrying the eventID of one of Tracecode's own events and an
    errorDeclaration was stored as a fresh captured event, served by the query beside
    Tracecode's under the same eventID — to an EPCIS consumer a retraction of Tracecode's
    record, by someone who may not make one. It is refused (400, Tracecode's events are
    corrected through its API), alone or in a document, and nothing is stored."""
    own_id = await _tracecode_event_id(client, login, app, demo)
    partner = await login("partner")
    declared = {**_object("OBSERVE", [_epc("TE")], eventID=own_id), "errorDeclaration": DECLARATION}
    answer = await _single(client, partner, declared)
    _problem(answer, 400, "ValidationException", "epcis_validation")
    assert "Tracecode's own events" in answer.json()["detail"], answer.json()
    fresh = _object("OBSERVE", [_epc("TG")])
    job = await captured(client, partner, document([fresh, declared]), "failed")
    assert job["errors"]["pointer"] == "/epcisBody/eventList/1", job
    for event in (declared, fresh):
        assert event_list(await query(client, partner, MATCH_epc=event["epcList"][0])) == []
    served = (await _event(client, partner, own_id)).json()
    assert "errorDeclaration" not in served, served


async def test_an_observation_of_tracecode_codes_needs_the_goods_held(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the Guangdong agent captured an OBSERVE (inspecting, damaged) of a unit still
    at the factory, which it never held, and the brand's query served it as a fact about the
    unit. Every write is scoped to who holds the goods: an observation of Tracecode codes is
    refused (the job failed, nothing stored) unless the capturer's subtree holds them or has
    them on their way; the brand's own organisation observes any of the brand's."""
    from tests.helpers import activate, issue_units
    from tests.test_epcis import unit_link

    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    await activate(client, login, [serial], product_id, line="EP1")
    at_factory = unit_link(serial)
    _, outbound = await shipped(client, login, app, demo)  # two units on their way to Guangdong
    admin = await login("admin")
    advice = f"urn:tracecode:bt:desadv:{quote(outbound['doc_no'], safe='')}"
    (shipping,) = event_list(await query(client, admin, EQ_bizTransaction_desadv=advice))
    on_their_way = shipping["epcList"]
    gd, zj = await login("gd_admin"), await login("agent_admin")

    def damaged(epcs: list[str]) -> dict[str, Any]:
        return _object("OBSERVE", epcs, bizStep="inspecting", disposition="damaged")

    ok = damaged(on_their_way)
    job = await captured(client, gd, document([ok, damaged([at_factory])]), "failed")
    assert job["errors"]["pointer"] == "/epcisBody/eventList/1", job
    assert job["errors"]["reasons"] == [{"code": at_factory, "reason": "not_held"}], job
    job = await captured(client, zj, document([damaged(on_their_way[:1])]), "failed")
    assert job["errors"]["reasons"][0]["reason"] == "not_held", job
    for epc in (at_factory, *on_their_way):
        served = event_list(await query(client, admin, MATCH_epc=epc, eventType="ObjectEvent"))
        assert [e for e in served if e.get("disposition") == "damaged"] == [], served
    assert (await captured(client, gd, document([ok])))["stored"] == 1
    partner = await login("partner")
    assert (await captured(client, partner, document([damaged([at_factory])])))["stored"] == 1


async def test_an_unknown_action_in_a_query_is_a_query_parameter_exception(
    client: Any, login: Any
) -> None:
    partner = await login("partner")
    response = await client.get("/epcis/events", headers=partner, params={"EQ_action": "FOO"})
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "epcisException:QueryParameterException"
    assert event_list(await query(client, partner, EQ_action="ADD|OBSERVE", perPage="1")) != []


async def test_an_event_or_context_too_large_is_a_capture_limit(client: Any, login: Any) -> None:
    """A 50 MB event was stored, and a page of such events answered 96 MB."""
    partner = await login("partner")
    big = _object("OBSERVE", [_epc("BG")], **{"ex:blob": "x" * (1024 * 1024)})
    small = _object("OBSERVE", [_epc("SM")])
    response = await capture(client, partner, document([small, big], EX))
    assert response.status_code == 413, response.text
    assert response.json()["type"] == "epcisException:CaptureLimitExceededException"
    assert response.json()["detail"].startswith("/epcisBody/eventList/1")
    context = [CONTEXT, {f"p{i}": f"https://partner.example.com/{i:060d}/" for i in range(1000)}]
    response = await capture(client, partner, document([small], context))
    assert response.status_code == 413, response.text
    assert response.json()["detail"].startswith("/@context")


async def test_a_page_of_large_events_ends_at_the_byte_budget(client: Any, login: Any) -> None:
    """Events of up to 1 MiB, perPage up to 1000: one page could be a gigabyte. A page ends
    once its captured events reach ``PAGE_BYTES``, and the next page goes on from there."""
    partner = await login("partner")
    shared = _epc("PB")
    blob = 900_000
    events = [
        _object("OBSERVE", [shared, _epc(f"P{i}")], **{"ex:blob": chr(65 + i) * blob})
        for i in range(20)
    ]
    job = await captured(client, partner, document(events, EX))
    assert job["stored"] == 20
    per_page = (PAGE_BYTES - 1) // blob + 1  # the events that start before the budget ends
    assert per_page < 20
    params = {"MATCH_epc": shared, "perPage": "1000"}
    pages: list[list[dict[str, Any]]] = []
    while True:
        response = await query(client, partner, **params)
        assert len(response.content) < PAGE_BYTES + 2 * blob
        pages.append(event_list(response))
        link = response.headers.get("link")
        if not link:
            break
        params["nextPageToken"] = link.split("nextPageToken=")[1].split(">")[0]
    assert [len(page) for page in pages] == [per_page, 20 - per_page]
    blobs = [e["ex:blob"] for page in pages for e in page]
    assert blobs == [chr(65 + i) * blob for i in range(20)]


async def test_a_document_in_another_charset_is_415(client: Any, login: Any) -> None:
    """``charset=utf-16`` was accepted and the body decoded as UTF-8 all the same."""
    partner = await login("partner")
    raw = json.dumps(document([_object("OBSERVE", [_epc("CH")])])).encode()
    response = await capture(client, partner, raw, media="application/ld+json; charset=utf-16")
    assert response.status_code == 415, response.text
    response = await capture(client, partner, raw, media='application/json; charset="UTF-8"')
    assert response.status_code == 202, response.text


async def test_a_declaration_adds_only_itself_and_a_declared_event_changes_no_state(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """The defects (probe F2, F3): a declaration's other content replaced the stored event (an
    OBSERVE became a shipment nobody could have captured), and an event first sent already
    declared erroneous still changed the codes' state."""
    from tests.helpers import issue_units
    from tests.test_epcis import unit_link

    partner = await login("partner")
    event_id = f"urn:uuid:{uuid.uuid4()}"
    observed = _object("OBSERVE", [_epc("F2")], eventID=event_id)
    await captured(client, partner, document([observed]))
    rewrite = {
        **_object("ADD", [_epc("F2X")], eventID=event_id, bizStep="shipping"),
        "errorDeclaration": DECLARATION,
    }
    await captured(client, partner, document([rewrite]))
    stored = (await _event(client, partner, event_id)).json()
    assert stored["errorDeclaration"] == DECLARATION
    assert (stored["action"], stored["epcList"]) == ("OBSERVE", observed["epcList"])
    assert "bizStep" not in stored

    operator = await login("operator")
    batch_no, product_id = await issue_units(client, login, demo, 2)
    serial = app.state.scheme.serial(batch_no, 0)
    response = await client.put(
        "/lines/F3/context",
        headers=operator,
        json={"product_id": product_id, "lot": "F3", "production_date": "2026-11-30"},
    )
    assert response.status_code == 200, response.text
    commission = {
        **_object("ADD", [unit_link(serial)], bizStep="commissioning"),
        "readPoint": {"id": "urn:tracecode:line:F3"},
        "errorDeclaration": DECLARATION,
    }
    await captured(client, operator, document([commission]))
    status = await client.get(f"/codes/{serial}/status", headers=await login("planner"))
    assert status.json()["status"] != "active", status.json()


async def test_an_event_first_sent_declared_obeys_the_rules_of_its_undeclared_form(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: ``_apply_to_codes`` skipped every event carrying an ``errorDeclaration`` before
    any rule, so the Guangdong agent, which never held the factory's unit, stored a sale of it
    (and an observation of it) by sending them already declared erroneous, served to the brand
    by MATCH_epc beside the unit's own events. A declared event is checked as its undeclared
    form is (step, disposition, holder) and only its effect is skipped."""
    from tests.helpers import activate, issue_units
    from tests.test_epcis import unit_link

    batch_no, product_id = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    await activate(client, login, [serial], product_id, line="DR1")
    gd = await login("gd_admin")
    sale = _object("ADD", [unit_link(serial)], bizStep="retail_selling", disposition="retail_sold")
    seen = _object("OBSERVE", [unit_link(serial)], bizStep="inspecting")
    sold_seen = _object("OBSERVE", [unit_link(serial)], disposition="retail_sold")
    for event, why in (
        (sale, "may commission"),
        (seen, "not_held"),
        (sold_seen, "may only observe"),
    ):
        declared = {**event, "errorDeclaration": DECLARATION}
        job = await captured(client, gd, document([declared]), state="failed")
        assert job["errors"]["pointer"] == "/epcisBody/eventList/0", job
        assert why in json.dumps(job["errors"]), (why, job)
    # the brand's own organisation observes any of its units: declared, that is stored
    admin = await login("admin")
    await captured(client, admin, document([{**seen, "errorDeclaration": DECLARATION}]))
    served = event_list(await query(client, admin, MATCH_epc=unit_link(serial)))
    assert sorted(e.get("bizStep") for e in served) == ["commissioning", "inspecting"], served


async def test_a_capturer_without_the_line_permission_gets_a_security_exception(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Probe F6: the line's 403 was wrapped as a 400 ValidationException."""
    from tests.helpers import issue_units
    from tests.test_epcis import unit_link

    batch_no, _ = await issue_units(client, login, demo, 1)
    commission = {
        **_object("ADD", [unit_link(app.state.scheme.serial(batch_no, 0))]),
        "bizStep": "commissioning",
        "readPoint": {"id": "urn:tracecode:line:F3"},
    }
    partner = await login("partner")  # epcis.capture, no packing.scan
    job = await captured(client, partner, document([commission]), state="failed")
    assert job["errors"]["type"] == "epcisException:SecurityException", job
    assert job["errors"]["status"] == 403


async def test_a_declared_packing_or_unpacking_obeys_the_line_and_the_holder(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: an event first sent declared erroneous was checked only for its step,
    disposition, readPoint and time, so the Guangdong agent stored a packing of the factory's
    units into a case on the factory's line EP1 (refused undeclared: the line is not its own),
    and an unpacking of the factory's case. Declared, each is refused as its undeclared form
    is (a dry run of its effect); the factory's own declared unpacking is stored and changes
    nothing."""
    from tests.helpers import activate, issue_cases, issue_units
    from tests.test_epcis import case_link, packing, unit_link, units_in

    batch_no, product_id = await issue_units(client, login, demo, 2)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(2)]
    await activate(client, login, serials, product_id, line="EP1")
    case = (await issue_cases(client, login, demo, "inner", 1))[0]
    pack = packing(case_link(case), [unit_link(s) for s in serials], "EP1")
    unpack = {**pack, "action": "DELETE", "bizStep": "unpacking", "disposition": "container_open"}
    gd, operator = await login("gd_admin"), await login("operator")
    for event in (pack, "pack", unpack):
        if event == "pack":  # the factory packs the case, for the agent to try unpacking it
            await captured(client, operator, document([pack]))
            assert await units_in(conn, case) == 2
            continue
        assert isinstance(event, dict)
        plain = await captured(client, gd, document([event]), state="failed")
        declared = {**event, "errorDeclaration": DECLARATION}
        job = await captured(client, gd, document([declared]), state="failed")
        assert job["errors"]["pointer"] == "/epcisBody/eventList/0", job
        assert (job["errors"]["type"], job["errors"]["detail"]) == (
            plain["errors"]["type"],
            plain["errors"]["detail"],
        ), (plain, job)
    assert event_list(await query(client, gd, MATCH_epc=unit_link(serials[0]))) == []
    job = await captured(client, operator, document([{**unpack, "errorDeclaration": DECLARATION}]))
    assert job["stored"] == 1
    assert await units_in(conn, case) == 2  # declared: checked, not applied


async def test_a_declared_commissioning_without_the_line_permission_is_a_security_exception(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the partner (``epcis.capture``, no ``packing.scan``) is refused a
    commissioning, yet stored it about the brand's unit, on a line that does not exist, by
    sending it declared erroneous. It is refused alike: a SecurityException naming it."""
    from tests.helpers import issue_units
    from tests.test_epcis import unit_link

    batch_no, _ = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    commission = {
        **_object("ADD", [unit_link(serial)]),
        "bizStep": "commissioning",
        "readPoint": {"id": "urn:tracecode:line:NOSUCHLINE"},
        "errorDeclaration": DECLARATION,
    }
    partner = await login("partner")
    job = await captured(client, partner, document([commission]), state="failed")
    assert job["errors"]["type"] == "epcisException:SecurityException", job
    assert (job["errors"]["status"], job["errors"]["pointer"]) == (403, "/epcisBody/eventList/0")
    assert event_list(await query(client, partner, MATCH_epc=unit_link(serial))) == []


async def test_a_brand_unit_named_by_its_epc_tag_uri_obeys_the_same_rules(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a unit named by its EPC tag URI (``urn:epc:tag:sgtin-198:F.CP.IR.SN``, the
    pure identity URN with a filter value) was a foreign identifier: the Guangdong agent stored
    a sale of a unit still at the factory. It is the unit (``sgtin-96`` and ``sscc-96`` alike):
    the sale is refused, a commissioning by it activates the unit and the query finds it by the
    unit's SGTIN; an EPC raw URI (the tag's bits) is refused at once."""
    from tests.helpers import issue_units
    from tests.test_epcis import unit_link

    batch_no, product_id = await issue_units(client, login, demo, 1)
    operator = await login("operator")
    context = {"product_id": product_id, "lot": "TAG1", "production_date": "2026-11-30"}
    assert (await client.put("/lines/TAG1/context", headers=operator, json=context)).is_success
    serial = app.state.scheme.serial(batch_no, 0)
    tag = f"urn:epc:tag:sgtin-198:0.6901234.000002.{serial}"
    commission = {
        **_object("ADD", [tag], bizStep="commissioning"),
        "readPoint": {"id": "urn:tracecode:line:TAG1"},
    }
    await captured(client, operator, document([commission]))
    status = await client.get(f"/codes/{serial}/status", headers=await login("planner"))
    assert status.json()["status"] == "active", status.json()
    gd = await login("gd_admin")
    sale = _object("ADD", [tag], bizStep="retail_selling", disposition="retail_sold")
    job = await captured(client, gd, document([sale]), state="failed")
    assert "may commission" in job["errors"]["detail"], job
    served = event_list(await query(client, operator, MATCH_epc=unit_link(serial)))
    assert tag in [epc for e in served for epc in e.get("epcList", [])], served
    raw = _object("OBSERVE", ["urn:epc:raw:96.x30700048440663802E185523"])
    response = await capture(client, gd, document([raw]))
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("/epcisBody/eventList/0/epcList/0"), response.text


async def test_every_error_of_the_epcis_routes_is_problem_json(client: Any, login: Any) -> None:
    """The project's own errors on /epcis/* (no token, a missing permission, a media type, an
    unknown event or job) were plain project JSON, not the binding's problem+json."""
    partner, printer = await login("partner"), await login("printer")
    raw = json.dumps(document([_object("OBSERVE", [_epc("PJ")])])).encode()
    cases = {
        "SecurityException": [
            (await client.get("/epcis/events"), 401),
            (await capture(client, printer, raw), 403),
        ],
        "UnsupportedMediaTypeException": [
            (await capture(client, partner, raw, media="text/plain"), 415)
        ],
        "NoSuchResourceException": [
            (await _event(client, partner, f"urn:uuid:{uuid.uuid4()}"), 404),
            (await client.get(f"/epcis/capture/{uuid.uuid4()}", headers=partner), 404),
        ],
    }
    for kind, answers in cases.items():
        for response, status in answers:
            assert response.status_code == status, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["gs1-epcis-version"] == "2.0.0"
            body = response.json()
            assert body["type"] == f"epcisException:{kind}", body
            assert body["status"] == status and body["detail"] == body["error"]["message"]
            assert body["error"]["code"]


async def test_a_commissioning_events_ilmd_lot_is_the_units_lot(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """The event's ILMD lot was ignored: its units took the line's lot."""
    from tests.helpers import issue_units
    from tests.test_epcis import unit_link

    operator = await login("operator")
    batch_no, product_id = await issue_units(client, login, demo, 3)
    context = {"product_id": product_id, "lot": "LINE-LOT", "production_date": "2026-11-30"}
    assert (await client.put("/lines/IL/context", headers=operator, json=context)).is_success
    serial = app.state.scheme.serial

    def commission(index: int, **ilmd: Any) -> dict[str, Any]:
        return {
            **_object("ADD", [unit_link(serial(batch_no, index))], bizStep="commissioning"),
            "readPoint": {"id": "urn:tracecode:line:IL"},
            **({"ilmd": ilmd} if ilmd else {}),
        }

    await captured(client, operator, document([commission(0, **{"cbvmda:lotNumber": "EVT-7"})]))
    await captured(client, operator, document([commission(1)]))
    for bad in ("two words", "L" * 21, 7, "LOT#1"):
        job = await captured(
            client, operator, document([commission(2, **{"cbvmda:lotNumber": bad})]), "failed"
        )
        assert job["errors"]["reasons"] == "invalid_lot", job
    rows = await (
        await conn.execute(
            "SELECT code & 4294967295 AS i, lot FROM unit_state WHERE code >> 32 = %s ORDER BY 1",
            (batch_no,),
        )
    ).fetchall()
    assert [(r["i"], r["lot"]) for r in rows] == [(0, "EVT-7"), (1, "LINE-LOT")]
    # a probe: a case named among a commissioning event's EPCs packed the units before it
    from tests.helpers import issue_cases
    from tests.test_epcis import case_link

    case = (await issue_cases(client, login, demo, "inner", 1))[0]
    packed = {**commission(2), "epcList": [unit_link(serial(batch_no, 2)), case_link(case)]}
    job = await captured(client, operator, document([packed]), "failed")
    assert job["errors"]["reasons"] == {"cases": [case_link(case)]}, job
    left = await conn.execute(
        "SELECT count(*) AS n FROM unit_state WHERE code = %s", ((batch_no << 32) | 2,)
    )
    assert (await left.fetchone())["n"] == 0  # nothing of the document applied
    # and the OpenAPI document says so (probe A: it named application/json)
    doc = (await client.get("/schema/openapi.json")).json()
    for path, item in doc["paths"].items():
        for operation in item.values() if path.startswith("/epcis/") else ():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], path
