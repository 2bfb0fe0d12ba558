"""The published OpenAPI document (app/apidocs.py) and README's "Error codes" against what the
service really answers, driven with the demo data: the media types, bodies, parameters and
statuses of the operations a typed client (console/src/api/schema.d.ts, openapi-fetch, a
partner's generated client) or schemathesis meets, and every error code named."""

from __future__ import annotations

import gzip
import json
import re
import secrets
from pathlib import Path
from typing import Any

import httpx

from app.epcis import query
from tests.helpers import issue_units
from tests.test_console import api_error_codes
from tests.test_epcis import CONTEXT, _object

README = Path(__file__).resolve().parent.parent / "README.md"
_ROW = re.compile(r"^\| `([a-z_0-9]+)` \| ([^|]+) \| ([^|]+) \|$", re.M)


async def _spec(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/schema/openapi.json")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _media(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip()


def _documented(
    spec: dict[str, Any], path: str, method: str, response: httpx.Response
) -> list[str]:
    """What of ``response`` (status, media type) the document does not list for the operation."""
    op = spec["paths"][path][method]
    status = str(response.status_code)
    if status not in op["responses"]:
        return [f"{method.upper()} {path}: {status} not in {sorted(op['responses'])}"]
    content = op["responses"][status].get("content") or {}
    media = _media(response)
    if content and media not in content:
        return [f"{method.upper()} {path}: {status} {media} not in {sorted(content)}"]
    return []


def readme_error_codes() -> dict[str, str]:
    """README's "Error codes" section: each code with its status column."""
    text = README.read_text()
    start = text.index("\n### Error codes\n")
    end = re.compile(r"^#{1,3} ", re.M).search(text, start + 2)
    section = text[start : end.start() if end else len(text)]
    rows = _ROW.findall(section)
    assert len(rows) == len({code for code, _, _ in rows}), "a code listed twice"
    return {code: status.strip() for code, status, _ in rows}


def test_every_error_code_in_app_is_named_in_the_readme() -> None:
    """Every ``code`` app/ can answer (found as tests/test_console.py finds them for the
    console's Chinese texts) is a row of README's "Error codes" with its status, and every row
    is a code app/ still answers: a code added, or one dropped, without its line fails here."""
    documented = readme_error_codes()
    codes = api_error_codes()
    assert len(codes) > 200, sorted(codes)  # the collector still finds the codes
    missing = {code: where for code, where in sorted(codes.items()) if code not in documented}
    assert not missing, f'error codes not named in README "Error codes": {missing}'
    stale = sorted(documented.keys() - codes.keys())
    assert not stale, f'README "Error codes" names codes app/ no longer answers: {stale}'
    for code, status in documented.items():
        assert re.fullmatch(r"[1-5]\d\d(, [1-5]\d\d)*|other 4xx", status), (code, status)


async def test_allocated_codes_are_documented_as_the_media_types_they_are_sent_in(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: ``POST /allocations`` streams its codes as ``text/plain`` (SERIAL,PIN lines) or
    ``application/octet-stream`` (a TCPF1 file, ``format=file``), both for the 201 and for the
    200 replay, and ``GET /allocations/{id}/codes`` sends the same; the document said
    ``application/json`` with an empty schema for all of them, so a generated client parsed
    the lines as JSON and failed (app/apidocs.py: STREAMED)."""
    spec = await _spec(client)
    admin = await login("admin")
    batch_no, _ = await issue_units(client, login, demo, 20)
    wrong: list[str] = []
    body = {"batch_no": batch_no, "count": 2, "client_id": secrets.token_hex(6)}
    first = await client.post("/allocations", headers=admin, json=body)
    assert first.status_code == 201, first.text
    wrong += _documented(spec, "/allocations", "post", first)
    again = await client.post("/allocations", headers=admin, json=body)
    assert again.status_code == 200, again.text
    wrong += _documented(spec, "/allocations", "post", again)
    passphrase = "correct horse battery staple"
    as_file = {"batch_no": batch_no, "count": 2, "format": "file", "passphrase": passphrase}
    sealed = await client.post("/allocations", headers=admin, json=as_file)
    assert sealed.status_code == 201, sealed.text
    wrong += _documented(spec, "/allocations", "post", sealed)
    allocation = first.headers["x-allocation-id"]
    codes = await client.get(f"/allocations/{allocation}/codes", headers=admin)
    assert codes.status_code == 200, codes.text
    wrong += _documented(spec, "/allocations/{allocation_id}/codes", "get", codes)
    assert wrong == [], "\n".join(wrong)
    answer = spec["paths"]["/allocations"]["post"]["responses"]["201"]
    assert "application/json" not in answer["content"]
    assert "X-Allocation-Id" in answer["headers"]


async def test_routes_that_read_a_raw_body_document_it(
    client: httpx.AsyncClient, login: Any
) -> None:
    """A probe: three operations read their body themselves and the document showed none:
    ``POST /orders/import`` (the CSV file, ``text/csv``), ``POST /epcis/capture`` (an
    EPCISDocument, ``application/ld+json`` or ``application/json``) and ``POST /epcis/events``
    (one event), so the typed client had ``requestBody?: never`` for them and could not send
    the file or the event at all (app/apidocs.py: UPLOADS)."""
    spec = await _spec(client)
    partner = await login("partner")
    csv = "erp_no,kind,from_erp_code,to_erp_code,product_no,quantity\n"
    csv += f"SO-CT-{secrets.token_hex(3)},sales,FACTORY-SZ,AGENT-ZJ,LM-SC-30,3\n"
    imported = await client.post(
        "/orders/import", headers={**partner, "Content-Type": "text/csv"}, content=csv.encode()
    )
    assert imported.status_code == 200 and imported.json()["created"] == 1, imported.text
    event = {"@context": CONTEXT, **_object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.CT{secrets.token_hex(4)}"])}  # fmt: skip
    headers = {**partner, "Content-Type": "application/json"}
    made = await client.post("/epcis/events", headers=headers, content=json.dumps(event))
    assert made.status_code == 201, made.text
    read = {
        ("/orders/import", "post"): {"text/csv"},
        ("/epcis/events", "post"): {"application/json", "application/ld+json"},
        ("/epcis/capture", "post"): {"application/json", "application/ld+json"},
    }
    for (path, method), types in read.items():
        body = spec["paths"][path][method].get("requestBody") or {}
        assert set(body.get("content", {})) == types, (path, body)
        assert all(c.get("schema") for c in body["content"].values()), (path, body)


async def test_the_epcis_query_parameters_are_documented(
    client: httpx.AsyncClient, login: Any
) -> None:
    """A probe: ``GET /epcis/events`` takes the EPCIS 2.0 query parameters (``eventType``,
    ``GE_eventTime``, ``MATCH_epc``, ``perPage``, ``nextPageToken``, …) and answers them, but
    the document listed none (the handler reads ``request.query_params`` itself): Swagger UI
    offered none, and the typed client had ``query?: never``. Every parameter the query reads
    is documented (app/epcis/routes.py: QUERY_PARAMETERS), but the ``EQ_bizTransaction_{type}``
    family, which the operation's description names."""
    spec = await _spec(client)
    partner = await login("partner")
    tag = secrets.token_hex(4)
    for i in range(2):
        event = {"@context": CONTEXT, **_object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.QP{tag}{i}"])}  # fmt: skip
        made = await client.post(
            "/epcis/events",
            headers={**partner, "Content-Type": "application/json"},
            content=json.dumps(event),
        )
        assert made.status_code == 201, made.text
    wanted = "urn:epc:idpat:sgtin:0614141.107346.*"
    paged = await client.get(
        "/epcis/events", headers=partner, params={"MATCH_anyEPC": wanted, "perPage": "1"}
    )
    assert paged.status_code == 200 and 'rel="next"' in paged.headers.get("link", ""), paged.text
    op = spec["paths"]["/epcis/events"]["get"]
    documented = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
    assert documented == query._LISTS | query._SCALARS, documented ^ (query._LISTS | query._SCALARS)
    assert "EQ_bizTransaction_{type}" in op["description"]


async def test_every_status_a_route_answers_is_documented_for_it(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: statuses answered that the operation did not list: ``POST /sms/campaigns``
    sent again with the same ``client_id`` answers 200 with the first campaign (not in
    app/apidocs.py: REPLAYS); ``GET /epcis/events`` answers 406 ``not_acceptable`` to an
    ``Accept`` of neither JSON-LD nor JSON (NEGOTIATED); a body-less change (``POST
    /documents/{id}/confirm``, ``DELETE /sms/opt-outs/{phone}``) is refused 415 for a
    ``Content-Encoding: gzip`` body and 413 for an over-large one, as README says "on every
    route", but ``_codes`` listed 413/415 only where a ``requestBody`` was documented."""
    spec = await _spec(client)
    marketer, partner, clerk = await login("marketer"), await login("partner"), await login("clerk")
    wrong: list[str] = []
    template = await client.post(
        "/sms/templates",
        headers=marketer,
        json={"name": f"ct_{secrets.token_hex(3)}", "body": "{season}新品上市"},
    )
    assert template.status_code == 201, template.text
    body = {
        "template_id": template.json()["id"],
        "audience": "members",
        "filter": {"provinces": ["西藏自治区"]},
        "variables": {"season": "春季"},
        "client_id": secrets.token_hex(5),
    }
    first = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert first.status_code == 201, first.text
    replay = await client.post("/sms/campaigns", headers=marketer, json=body)
    assert replay.status_code == 200, replay.text
    wrong += _documented(spec, "/sms/campaigns", "post", replay)

    refused = await client.get("/epcis/events", headers={**partner, "Accept": "text/html"})
    assert refused.status_code == 406, refused.text
    wrong += _documented(spec, "/epcis/events", "get", refused)

    draft = await client.post(
        "/documents", headers=clerk, json={"kind": "outbound", "counterparty_id": demo["AGENT-GD"]}
    )
    assert draft.status_code == 201, draft.text
    gz = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    encoded = await client.post(
        f"/documents/{draft.json()['id']}/confirm",
        headers={**clerk, **gz},
        content=gzip.compress(b"{}"),
    )
    assert encoded.status_code == 415, encoded.text
    wrong += _documented(spec, "/documents/{doc_id}/confirm", "post", encoded)
    opt_out = await client.request(
        "DELETE", "/sms/opt-outs/13900000042", headers={**marketer, **gz}, content=gzip.compress(b"{}")
    )  # fmt: skip
    assert opt_out.status_code == 415, opt_out.text
    wrong += _documented(spec, "/sms/opt-outs/{phone}", "delete", opt_out)
    large = await client.post(
        f"/documents/{draft.json()['id']}/cancel",
        headers={**clerk, "Content-Type": "application/json"},
        content=b" " * (12 * 1024 * 1024),
    )
    assert large.status_code == 413, large.text
    wrong += _documented(spec, "/documents/{doc_id}/cancel", "post", large)
    assert wrong == [], "\n".join(wrong)
    changes = [
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in ("post", "put", "patch", "delete")
        and not {"413", "415"} <= set(op.get("responses", {}))
    ]
    assert changes == [], f"changes without 413/415: {changes}"


async def test_epcis_error_bodies_are_documented_with_their_problem_fields(
    client: httpx.AsyncClient, login: Any
) -> None:
    """A probe: every EPCIS error is RFC 7807 ``application/problem+json``: ``type``
    (``epcisException:ResourceAlreadyExistsException``, …: what an EPCIS client branches on),
    ``title``, ``status`` and ``detail`` beside the project's ``error``; the document gave these
    answers the bare ``Error`` schema, so the typed client had no ``type`` to branch on. They
    are the ``EpcisProblem`` component, an ``Error`` with those fields."""
    spec = await _spec(client)
    partner = await login("partner")
    event = {"@context": CONTEXT, **_object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.PB{secrets.token_hex(4)}"])}  # fmt: skip
    headers = {**partner, "Content-Type": "application/json"}
    assert (await client.post("/epcis/events", headers=headers, content=json.dumps(event))).status_code == 201  # fmt: skip
    exists = await client.post("/epcis/events", headers=headers, content=json.dumps(event))
    assert exists.status_code == 409, exists.text
    assert _media(exists) == "application/problem+json"
    body = exists.json()
    assert body["type"] == "epcisException:ResourceAlreadyExistsException"

    problem = spec["components"]["schemas"]["EpcisProblem"]
    assert problem["allOf"] == [{"$ref": "#/components/schemas/Error"}]
    assert set(problem["required"]) == set(body) == {"error", "type", "title", "status", "detail"}
    for path, item in spec["paths"].items():
        for op in item.values() if path.startswith("/epcis/") else ():
            for status, answer in op["responses"].items():
                if status[0] in "45":
                    assert answer["content"] == {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/EpcisProblem"}
                        }
                    }, (path, status)


async def test_error_codes_a_route_answers_are_named_in_the_readme(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: codes that ordinary requests with the demo data meet were named nowhere, in
    README or the document: ``not_draft`` (cancel a cancelled document), ``nothing_to_undo``
    (404 of ``POST /lines/{line}/undo``), ``bad_range`` (webhook replay), ``epcis_event_exists``,
    ``epcis_query_parameter``, ``epcis_event_not_found``, and ``unknown_document`` /
    ``unknown_inspection`` as the 404 of a path id (where README's errors named 404
    ``not_found`` only). Each is a row of README's "Error codes" with the status it answers
    (the codes stay as they are: clients branch on them)."""
    clerk, operator, admin, partner = (
        await login("clerk"), await login("operator"), await login("admin"), await login("partner")
    )  # fmt: skip
    seen: dict[str, tuple[int, str]] = {}

    def note(label: str, response: httpx.Response) -> None:
        assert response.status_code >= 400, (label, response.status_code, response.text)
        seen[label] = (response.status_code, response.json()["error"]["code"])

    draft = await client.post("/documents", headers=clerk, json={"kind": "outbound", "counterparty_id": demo["AGENT-GD"]})  # fmt: skip
    doc = draft.json()["id"]
    assert (await client.post(f"/documents/{doc}/cancel", headers=clerk)).status_code == 200
    note("POST /documents/{id}/cancel (again)", await client.post(f"/documents/{doc}/cancel", headers=clerk))  # fmt: skip
    line = f"CT{secrets.token_hex(2).upper()}"
    product = (await client.get("/products", headers=admin, params={"q": "LM-SC-30"})).json()["items"][0]["id"]  # fmt: skip
    context = {"product_id": product, "lot": "CT1", "production_date": "2026-11-10"}
    assert (await client.put(f"/lines/{line}/context", headers=operator, json=context)).status_code == 200  # fmt: skip
    note("POST /lines/{line}/undo", await client.post(f"/lines/{line}/undo", headers=operator, json={"reason": "x"}))  # fmt: skip
    hook = await client.post(
        "/webhooks/subscriptions",
        headers=admin,
        json={"url": "https://93.184.216.34/ct", "event_kinds": ["shipment.confirmed"]},
    )
    assert hook.status_code == 201, hook.text
    note("POST /webhooks/subscriptions/{id}/replay", await client.post(
        f"/webhooks/subscriptions/{hook.json()['id']}/replay", headers=admin,
        json={"from": "2026-01-01T00:00:00Z", "to": "2026-12-31T00:00:00Z"}))  # fmt: skip
    gone = await client.delete(f"/webhooks/subscriptions/{hook.json()['id']}", headers=admin)
    assert gone.status_code == 204, gone.text  # no deliveries for other tests' shipments
    event = {"@context": CONTEXT, **_object("OBSERVE", [f"urn:epc:id:sgtin:0614141.107346.EC{secrets.token_hex(4)}"])}  # fmt: skip
    json_headers = {**partner, "Content-Type": "application/json"}
    await client.post("/epcis/events", headers=json_headers, content=json.dumps(event))
    note("POST /epcis/events (again)", await client.post("/epcis/events", headers=json_headers, content=json.dumps(event)))  # fmt: skip
    note("GET /epcis/events?nextPageToken=x", await client.get("/epcis/events", headers=partner, params={"nextPageToken": "x"}))  # fmt: skip
    note("GET /epcis/events/{id}", await client.get("/epcis/events/urn%3Auuid%3A0", headers=partner))  # fmt: skip
    note("GET /documents/{id}", await client.get("/documents/987654", headers=clerk))
    note("GET /inspections/{id}", await client.get("/inspections/987654", headers=await login("inspector")))  # fmt: skip

    documented = readme_error_codes()
    unnamed = {
        label: f"{status} {code}"
        for label, (status, code) in seen.items()
        if str(status) not in documented.get(code, "").split(", ")
    }
    assert unnamed == {}, f'codes not named with their status in README "Error codes": {unnamed}'
    assert seen["GET /documents/{id}"] == (404, "unknown_document")
    assert seen["GET /inspections/{id}"] == (404, "unknown_inspection")
