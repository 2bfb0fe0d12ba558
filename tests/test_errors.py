"""Every error is JSON {"error": {code, message, details}} with the right 4xx (SPEC Errors)."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from litestar import get
from litestar.exceptions import InternalServerException

from app.errors import exception_handlers
from app.front import Tracecode
from app.logs import configure_logging
from tests.helpers import assert_error
from tests.test_front import captured_log, lines


async def test_malformed_json_is_a_400(client: Any, login: Any) -> None:
    admin = await login("admin")
    response = await client.post(
        "/orgs", headers={**admin, "Content-Type": "application/json"}, content=b'{"kind": "store",'
    )
    assert_error(response, 400, "malformed_json")


async def test_wrong_types_and_unknown_fields_name_the_field(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    wrong = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": "store", "name": "x", "erp_code": "E-1", "parent_id": "not-a-number"},
    )
    error = assert_error(wrong, 400, "validation_failed")
    assert error["details"][0]["field"] == "parent_id"
    assert "parent_id" in error["message"]
    extra = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "store",
            "name": "x",
            "erp_code": "E-2",
            "parent_id": demo["AGENT-ZJ"],
            "evil": 1,
        },
    )
    assert "evil" in assert_error(extra, 400, "validation_failed")["message"]
    not_object = await client.post("/orgs", headers=admin, json=[1, 2])
    assert_error(not_object, 400, "validation_failed")


async def test_missing_unknown_and_whole_body_errors_say_where(client: Any, login: Any) -> None:
    """A missing or unknown member is named in ``details`` (it was null), nested ones with
    their path; an empty body is said to be empty (it was named "data", an internal name)."""
    admin = await login("admin")
    json_headers = {**admin, "content-type": "application/json"}
    cases = {
        b"{}": ("name", "missing required field"),
        b'{"name": "x", "bogus": 1}': ("bogus", "unknown field"),
        b'{"kind": "sales", "lines": [{"quantity": 1}]}': ("lines[0].product_id", "missing"),
        b"": ("", "empty"),
        b"[]": ("", "Expected `object`"),
    }
    for body, (field, words) in cases.items():
        path = "/orders" if b"lines" in body else "/categories"
        response = await client.post(path, headers=json_headers, content=body)
        error = assert_error(response, 400, "validation_failed")
        assert error["details"] == [
            {"field": field, "message": error["details"][0]["message"], "source": "body"}
        ], error
        assert words in error["details"][0]["message"], error


async def test_out_of_range_numbers_never_reach_500(client: Any, login: Any, demo: Any) -> None:
    admin = await login("admin")
    huge = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": "store", "name": "x", "erp_code": "E-3", "parent_id": 2**70},
    )
    assert 400 <= huge.status_code < 500
    assert_error(huge, huge.status_code)
    big_path = await client.get(f"/orgs/{2**63 + 5}", headers=admin)
    assert 400 <= big_path.status_code < 500
    assert_error(big_path, big_path.status_code)
    neg_page = await client.get("/orgs", headers=admin, params={"page": -1})
    assert_error(neg_page, 400, "validation_failed")
    bad_bool = await client.get("/products", headers=admin, params={"published": "maybe"})
    assert_error(bad_bool, 400, "validation_failed")
    # refused by PostgreSQL (a bigint): the answer still says which value and why
    cycle = await client.get(
        "/analytics/members/cycle", headers=admin, params={"product_id": 2**63}
    )
    error = assert_error(cycle, 400, "validation_failed")
    assert "out of range" in error["details"][0]["message"], error
    assert error["message"] == "invalid request: bigint out of range", error


async def test_status_codes_for_each_kind_of_failure(client: Any, login: Any) -> None:
    assert_error(await client.get("/no/such/route"), 404, "not_found")
    assert_error(await client.delete("/health"), 405, "method_not_allowed")
    assert_error(await client.get("/orgs"), 401, "unauthorized")
    analyst = await login("analyst")
    assert_error(
        await client.post("/categories", headers=analyst, json={"name": "x"}),
        403,
        "permission_denied",
    )
    admin = await login("admin")
    assert_error(await client.get("/orgs/999999999", headers=admin), 404, "not_found")
    assert_error(
        await client.post("/categories", headers=admin, json={"name": "护肤 Skincare"}),
        409,
        "duplicate_category",
    )


async def test_non_json_body_is_refused_cleanly(client: Any, login: Any) -> None:
    admin = await login("admin")
    response = await client.post(
        "/categories", headers={**admin, "Content-Type": "text/plain"}, content=b"hello"
    )
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code)


def test_serial_and_gs1_failures_from_the_core_map_to_4xx(settings: Any) -> None:
    import msgspec

    from app.codes.scheme import Scheme, check_in_batch, normalize_gtin
    from app.errors import handle_serial_error

    scheme = Scheme(settings.master_key_bytes(), [1], 1)
    serial = scheme.serial(7, 3)
    forged = serial[:-1] + ("0" if serial[-1] != "0" else "1")
    cases: list[tuple[Any, int, str]] = []
    for call, status, code in (
        (lambda: scheme.verify("too-short"), 400, "malformed_serial"),
        (lambda: scheme.verify(forged), 422, "not_genuine"),
        (lambda: check_in_batch(3, 3), 422, "not_genuine"),
        (lambda: normalize_gtin("6901234000048"), 400, "invalid_gs1"),
    ):
        try:
            call()
        except ValueError as exc:
            cases.append((handle_serial_error(None, exc), status, code))  # type: ignore[arg-type]
    assert len(cases) == 4
    for response, status, code in cases:
        body = msgspec.json.decode(msgspec.json.encode(response.content))
        assert response.status_code == status and body["error"]["code"] == code


async def test_a_bad_query_value_is_named_as_the_client_sent_it(client: Any, login: Any) -> None:
    """Every GET without path parameters, every query parameter of a date or enum type, sent a
    value it cannot take: the error names the parameter as the OpenAPI document does (it named
    the handler's own ``fmt``, ``date_from``, …)."""
    admin = await login("admin")
    doc = (await client.get("/schema/openapi.json")).json()
    checked, wrong = 0, []
    for path, operations in doc["paths"].items():
        get = operations.get("get")
        if get is None or "{" in path:
            continue
        for p in get.get("parameters", []):
            schema = p.get("schema", {})
            kinds = [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]
            if p["in"] != "query" or not any(
                "enum" in s or s.get("format") in ("date", "date-time") for s in kinds
            ):
                continue
            response = await client.get(path, headers=admin, params={p["name"]: "§bad§"})
            if response.status_code in (401, 403):
                continue  # not the admin's to read (a member's own lists): the check never ran
            checked += 1
            body = response.json()
            if path.startswith("/epcis/"):  # the binding's QueryParameterException names it
                if response.status_code != 400 or not body["detail"].startswith(p["name"]):
                    wrong.append((path, p["name"], response.status_code, body))
                continue
            details = body["error"]["details"] if response.status_code == 400 else None
            if details and all(d["message"] == "required" for d in details):
                assert all(d["field"] != p["name"] for d in details), details
                continue  # another parameter is required first: named as the client knows it
            if not details or p["name"] not in [d.get("field") for d in details]:
                wrong.append((path, p["name"], response.status_code, body))
    assert checked >= 30
    assert not wrong, [(*w[:3], w[3]["error"]) for w in wrong]


async def test_an_unknown_page_under_schema_is_a_json_404(client: Any) -> None:
    """A probe: a partner's tool probes ``/schema/redoc`` or ``/schema/openapi.yaml``-like paths for the
    API description. What it sees under ``/schema/<anything>`` (not a known page): a 404 HTML
    page (Litestar's OpenAPI controller), while every other unknown path is the JSON error.
    What it should see: 404 ``{"error": {"code": "not_found", …}}`` as application/json."""
    for path in ("/schema/redoc", "/schema/elements", "/schema/nothing"):
        response = await client.get(path)
        assert response.headers["content-type"].startswith("application/json"), (
            path,
            response.headers["content-type"],
            response.text[:80],
        )
        assert_error(response, 404, "not_found")
    for path in ("/schema", "/schema/swagger", "/schema/openapi.json"):  # the known pages stay
        assert (await client.get(path)).status_code == 200, path


@get("/db-down", sync_to_thread=False)
def _db_down() -> None:
    raise psycopg.OperationalError("connection to server at 10.0.0.5 failed: Connection refused")


@get("/internal", sync_to_thread=False)
def _internal() -> None:
    raise InternalServerException()


async def _one(handler: Any, path: str, rid: str) -> tuple[httpx.Response, dict[str, Any]]:
    """One GET of an app of ``handler`` alone; the answer and its request's error line."""
    app = Tracecode(route_handlers=[handler], exception_handlers=exception_handlers)
    configure_logging("WARNING")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with captured_log() as log:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get(path, headers={"X-Request-ID": rid})
    (error,) = [e for e in lines(log, "tracecode.errors") if e.get("request_id") == rid]
    return response, error


async def test_a_database_outage_error_line_names_method_path_and_route() -> None:
    """A probe: ``handle_db_error`` logged an unreachable database ("database unavailable")
    with the error only, no method, path or route (README: errors are logged "with their
    method, path and route", as ``handle_unexpected`` writes them): no telling which endpoint
    met the outage. Now the line carries them (``request_context``)."""
    response, error = await _one(_db_down, "/db-down", "dbdown-1")
    assert response.status_code == 503
    assert (error["level"], error["msg"]) == ("ERROR", "database unavailable")
    assert (error["method"], error["path"], error["route"]) == ("GET", "/db-down", "/db-down")


async def test_a_500_from_an_http_exception_carries_the_request_id_and_its_context() -> None:
    """A probe: a 500 reaching the handlers as Litestar's ``HTTPException`` (its
    ``InternalServerException``; ``ImproperlyConfiguredException`` when an answer cannot be
    serialised) answered ``details`` null (README: a 500's ``details`` carry the request id)
    and logged "http error" without method, path or route. Now as any other 500."""
    response, error = await _one(_internal, "/internal", "internal-1")
    assert response.status_code == 500
    assert response.json()["error"]["details"] == {"request_id": "internal-1"}
    assert (error["level"], error["msg"]) == ("ERROR", "http error")
    assert (error["method"], error["path"], error["route"]) == ("GET", "/internal", "/internal")
