"""Issue 13, bad input and protocol: control characters at the edge (1), deep JSON (11), one
formula-guarded CSV/XLSX writer (13), one charset (14), the schema pages without a CDN (15) and
an OpenAPI document that tells the real errors (16)."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import random
import re
import secrets
import socket
import types
import zipfile
from typing import Annotated, Any, Union, get_args, get_origin
from xml.etree import ElementTree

import msgspec
import pytest
from litestar.params import KwargDefinition
from litestar.routes import HTTPRoute

from tests.helpers import answered_before_its_body, assert_error, issue_units
from tests.servers import granian_server

FORMULAS = ["=1+2", "+SUM(A1)", "-3+4", "@cmd", "\tTAB", "\rCR"]


# --- 1: control characters wherever text enters ----------------------------------------------


@pytest.mark.parametrize(
    "escape",
    [
        *["\\u0000", "\\u001f", "\\u007F", "\\u0008", "\\b", "\\f", "\\u001B", "\x7f"],
        # C1 and bidirectional overrides (probe D: U+202E in a brand's name reversed its SMS),
        # escaped and raw
        *["\\u0085", "\x85", "\\u202E", "\u202e", "\\u2066", "\u2069"],
    ],
)
async def test_json_body_control_characters_are_refused(
    client: Any, login: Any, escape: str
) -> None:
    admin = await login("admin")
    body = ('{"name": "tea' + escape + 'pot"}').encode()
    response = await client.post(
        "/categories", headers={**admin, "content-type": "application/json"}, content=body
    )
    error = assert_error(response, 400, "invalid_character")
    assert error["details"][0]["source"] == "body"
    # also before any login: the unauthenticated login route
    login_body = ('{"username": "admin' + escape + '", "password": "x"}').encode()
    anonymous = await client.post(
        "/auth/login", headers={"content-type": "application/json"}, content=login_body
    )
    assert_error(anonymous, 400, "invalid_character")


async def test_json_body_allowed_text_passes(client: Any, login: Any) -> None:
    """Tab and line breaks are text; an escaped backslash before "u0000" is not an escape."""
    admin = await login("admin")
    name = f"cat {secrets.token_hex(3)}\\u0000\tx"
    response = await client.post("/categories", headers=admin, json={"name": name})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name


@pytest.mark.parametrize("value", ["%00", "a%1Fb", "%7f", "%0B", "x%08", "%C2%85", "a%E2%80%AEb"])
async def test_query_control_characters_are_refused(client: Any, login: Any, value: str) -> None:
    admin = await login("admin")
    response = await client.get(f"/orders?erp_no={value}", headers=admin)
    error = assert_error(response, 400, "invalid_character")
    assert error["details"][0] == {
        "field": "erp_no",
        "message": "control character",
        "source": "query",
    }
    assert response.headers["x-request-id"]  # answered inside the request middleware
    anonymous = await client.get(f"/01/09506000134352/21/ABC?linkType={value}")
    assert_error(anonymous, 400, "invalid_character")


async def test_query_tab_and_plain_percent_pass(client: Any, login: Any) -> None:
    admin = await login("admin")
    for query in ("erp_no=a%09b", "erp_no=100%25", "erp_no=%E4%B8%AD"):
        response = await client.get(f"/orders?{query}", headers=admin)
        assert response.status_code == 200, (query, response.text)


@pytest.mark.parametrize("path", ["/codes/AB%00CD/status", "/trace/%07", "/trace/a%7Fb"])
async def test_path_control_characters_are_refused(client: Any, login: Any, path: str) -> None:
    response = await client.get(path, headers=await login("admin"))
    assert_error(response, 400, "invalid_character")


# A Host header that is no ``uri-host [":" port]``: a port that is not 1-5 digits up to 65535,
# an IPv6 address without brackets, an IP literal urllib cannot read, a URI delimiter
BAD_HOSTS = [
    *["x:abc", "127.0.0.1:99999", "[::1]:x", "a:b:c", "h:00000000080", "h:+80", "h: 80"],
    *["::1", "2001:db8::1", "[::1", "::1]", "[abc]", "[::1]x", "[::1]:65536", "a@b:x", "a/b"],
    *["a b", "b\xfccher.example", "a#b"],
]


@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_a_host_that_is_no_host_and_port_is_400_invalid_host(
    client: Any, login: Any, host: str
) -> None:
    """A probe: a ``Host`` whose port is not a port (``x:abc``, ``127.0.0.1:99999``) made
    Litestar's ``request.url`` raise ValueError (urllib's ``.port``): the GS1 resolver
    (anonymous) answered 500 always, every route as soon as a query or path parameter failed
    validation (Litestar builds its ValidationException from ``request.url``), so anyone could
    raise the 5xx rate and the error log at will; granian passes such a Host through. It is
    refused at the edge, before routing: 400 ``invalid_host``, the JSON error on every path
    (the consumer pages too: it is a protocol error), problem+json under ``/epcis/``. A host
    name no host has (a space, non-ASCII) too: Litestar's router answered it 400
    ``bad_request``, the fast lane (``/v1/verify``) not at all."""
    admin = await login("admin")
    for path, headers in (
        ("/01/06901234000016", {}),
        ("/01/not-a-gtin", {}),
        ("/products?page=abc", admin),
        ("/redemptions/settlement", admin),
        ("/clerk", {}),
        ("/m", {}),
    ):
        response = await client.get(path, headers={**headers, "Host": host.encode("latin-1")})
        error = assert_error(response, 400, "invalid_host")
        assert error["details"] == {"host": host}, (path, error)
        assert response.headers["x-request-id"]
    verify = await client.post(
        "/v1/verify", headers={"Host": host.encode("latin-1")}, json={"code": "X"}
    )
    assert_error(verify, 400, "invalid_host")  # the fast lane too
    epcis = await client.get("/epcis/events", headers={**admin, "Host": host.encode("latin-1")})
    assert epcis.status_code == 400, epcis.text
    assert epcis.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "host",
    [
        *[":80", "[::1]", "[::1]:8000", "[v1.x]", "localhost:65535", "h:0080", "a%41_~b"],
        *["id.gs1.example.com:", "localhost:", "[::1]:", "h:000080"],
    ],
)
async def test_a_host_with_a_port_or_ip_literal_urllib_reads_passes(
    client: Any, login: Any, host: str
) -> None:
    """A probe: what ``request.url`` reads — no host name, no port, an IP literal in brackets,
    a port of up to 5 digits — passes the edge (``app.edge.host_ok``) to the route's own
    answer. A regression probe: an empty port (``host:``, what Python's urllib sends for
    ``http://host:/``) and a zero-padded one (RFC 3986: ``port = *DIGIT``) were refused 400
    ``invalid_host``, on every route."""
    gs1 = await client.get("/01/not-a-gtin", headers={"Host": host})
    assert_error(gs1, 400, "invalid_digital_link")
    products = await client.get(
        "/products?page=abc", headers={**await login("admin"), "Host": host}
    )
    assert_error(products, 400, "validation_failed")
    ping = await client.get("/ping", headers={"Host": host})  # the fast lane
    assert ping.status_code == 200, ping.text


def test_host_ok_agrees_with_urllib() -> None:
    """A probe: every Host the edge lets in is one Litestar's ``request.url`` (urllib) reads
    without an error — the common shape's one match and the full reading alike."""
    from urllib.parse import urlsplit

    from litestar.datastructures.url import URL

    from app.edge import host_ok

    for host in BAD_HOSTS:
        assert not host_ok(host.encode("latin-1")), host
    alphabet = [*b"a9:[].%/?#@ -!~", 0xFC]
    rng = random.Random(13)
    accepted = 0
    for _ in range(20000):
        host = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        if host_ok(host):
            accepted += 1
            scope = {"type": "http", "scheme": "http", "server": None, "path": "/p"}
            url = URL.from_scope({**scope, "headers": [(b"host", host)]})
            parts = urlsplit("//" + host.decode("latin-1"))
            assert (url.hostname, url.port) == (parts.hostname, parts.port), host
    assert accepted > 1000


def test_a_host_with_a_bad_port_is_400_from_the_real_server(tmp_path: Any) -> None:
    """A probe: granian passes ``Host: x:abc`` (HTTP/2's ``:authority`` it gives as ``host``)
    through to the app, whose answer was 500 — for ``/clerk`` a bare ``text/plain`` one of
    granian's own, the HTML error page failing too."""
    with granian_server(tmp_path) as server:
        for path in ("/01/06901234000016", "/clerk"):
            head = f"GET {path} HTTP/1.1\r\nHost: x:abc\r\nConnection: close\r\n\r\n"
            out = _raw(server.port, head.encode(), timeout=5)
            assert out.startswith(b"HTTP/1.1 400"), (path, out[:300])
            assert b'"code":"invalid_host"' in out, (path, out[:300])


async def test_form_control_characters_are_refused(client: Any, app: Any) -> None:
    serial = app.state.scheme.serial(1, 0)
    response = await client.post(
        f"/c/{serial}",
        content=b"pin=12%0034&lang=en",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400, response.text


async def test_csv_import_control_characters_are_refused(
    client: Any, login: Any, demo: Any
) -> None:
    planner = await login("admin")
    header = "erp_no,from_erp_code,to_erp_code,product_no,quantity,note\r\n"
    for bad in ("\x00", "\x1b", "\x7f", "\x0c"):
        body = header + f"CI-{secrets.token_hex(3)},WH-SZ-01,AGENT-ZJ,LM-SC-30,5,ok\r\n"
        body += f"CI-{secrets.token_hex(3)},WH-SZ-01,AGENT-ZJ,LM-SC-30,5,no{bad}te\r\n"
        response = await client.post(
            "/orders/import",
            headers={**planner, "content-type": "text/csv"},
            content=body.encode(),
        )
        error = assert_error(response, 400, "invalid_character")
        assert error["details"][0]["line"] == 3, error
        assert error["details"][0]["source"] == "file"
    tab = header + f'CI-{secrets.token_hex(3)},WH-SZ-01,AGENT-ZJ,LM-SC-30,5,"a\tb\r\nc"\r\n'
    ok = await client.post(
        "/orders/import", headers={**planner, "content-type": "text/csv"}, content=tab.encode()
    )
    assert ok.status_code == 200 and ok.json()["created"] == 1, ok.text


# --- parameter limits that Litestar sees ----------------------------------------------------


def _constraints_litestar_skips(annotation: Any, top: bool = True) -> list[str]:
    """What of a parameter's annotation Litestar does not check: a ``msgspec.Meta`` (it reads
    only its own ``Parameter``), and a ``Parameter`` inside a union (``Alias | None`` where the
    alias is ``Annotated[str, Parameter(...)]``: its min_length and max_length are dropped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        skipped = [
            "msgspec.Meta" if isinstance(meta, msgspec.Meta) else "Parameter inside a union"
            for meta in annotation.__metadata__
            if isinstance(meta, msgspec.Meta) or (isinstance(meta, KwargDefinition) and not top)
        ]
        return skipped + _constraints_litestar_skips(annotation.__origin__, top)
    if origin in (Union, types.UnionType):
        return [s for arg in get_args(annotation) for s in _constraints_litestar_skips(arg, False)]
    return []


def test_every_parameter_constraint_is_checked(app: Any) -> None:
    """``/stock?lot=`` (empty) had listed nothing instead of answering 400: its ``Lot | None``
    hid the length limits from Litestar. Every route's parameters are checked for that form."""
    skipped = [
        f"{route.path} {name}: {what}"
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        for name, field in handler.parsed_fn_signature.parameters.items()
        if name != "data"
        for what in _constraints_litestar_skips(field.raw)
    ]
    assert skipped == []


@pytest.mark.parametrize(
    "url",
    ["/stock?lot=", f"/stock?lot={'L' * 65}", "/center/documents?doc_no=", "/center/stock?lot="],
)
async def test_empty_or_long_text_filters_are_400(client: Any, login: Any, url: str) -> None:
    response = await client.get(url, headers=await login("admin"))
    assert_error(response, 400, "validation_failed")


# --- 11: deep JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [65, 1_000, 100_000])
async def test_deep_json_is_a_400_not_a_500(client: Any, login: Any, levels: int) -> None:
    deep = b"[" * levels + b"]" * levels
    for body in (b'{"username": ' + deep + b', "password": "x"}', b'{"a":' * levels + b"1"):
        response = await client.post(
            "/auth/login", headers={"content-type": "application/json"}, content=body
        )
        assert response.status_code == 400, response.text
        assert_error(response, 400)
    response = await client.post(
        "/orgs", headers={**await login("admin"), "content-type": "application/json"}, content=deep
    )
    error = assert_error(response, 400, "too_deep")
    assert error["details"] == {"max_depth": 64}


async def test_json_within_the_depth_limit_is_decoded(client: Any, login: Any) -> None:
    """64 levels pass the depth check (and fail validation as usual); brackets in strings
    do not count."""
    at_limit = b"[" * 63 + b"]" * 63
    body = b'{"username": ' + at_limit + b', "password": "x"}'
    response = await client.post(
        "/auth/login", headers={"content-type": "application/json"}, content=body
    )
    assert_error(response, 400, "validation_failed")
    name = "[{" * 40 + '\\"[' + secrets.token_hex(3)
    response = await client.post(
        "/categories",
        headers={**await login("admin"), "content-type": "application/json"},
        content=('{"name": "' + name + '"}').encode(),
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name.replace('\\"', '"')


def test_json_depth_check_is_exact() -> None:
    from app.edge import json_depth_ok

    assert json_depth_ok(b"[" * 64 + b"]" * 64)
    assert not json_depth_ok(b"[" * 65 + b"]" * 65)
    assert not json_depth_ok(b'{"a":' * 65 + b"1" + b"}" * 65)
    assert json_depth_ok(b'{"a":' * 64 + b"1" + b"}" * 64)
    # brackets inside strings, escaped quotes and backslashes
    assert json_depth_ok(b'["' + b"[" * 200 + b'"]')
    assert json_depth_ok(b'["\\"' + b"[" * 200 + b'"]')
    assert not json_depth_ok(b'["\\\\"' + b"[" * 80 + b"]" * 80 + b"]")
    # a wide document (a bulk upload) is shallow
    wide = b'{"scans": [' + b",".join([b'{"code": "A", "children": ["B", "C"]}'] * 5000) + b"]}"
    assert json_depth_ok(wide)
    # unbalanced: left to the decoder (malformed_json) when it would not recurse too deep
    assert json_depth_ok(b"]" * 100 + b"[" * 100)
    assert json_depth_ok(b"[" * 60 + b"}" * 60 + b"[]" * 100)
    # … else too deep (probe A: an import's cell of 2,000 "[" closed by "}" reached the
    # decoder, whose recursion limit answered 500)
    assert not json_depth_ok(b'{"items":[{"name":' + b"[" * 2000 + b"}" * 2000 + b"}]}")
    assert not json_depth_ok(b"[" * 65 + b"]" * 64)


async def test_unbalanced_json_is_malformed(client: Any) -> None:
    response = await client.post(
        "/auth/login", headers={"content-type": "application/json"}, content=b"]" * 100
    )
    assert_error(response, 400, "malformed_json")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16"],
)
async def test_a_json_body_not_declared_json_is_415(
    client: Any, login: Any, content_type: str | None
) -> None:
    """A JSON body sent as text, as a form, with no media type or in another charset is
    refused before it is decoded (it used to be decoded as UTF-8 JSON whatever it said)."""
    admin = await login("admin")
    headers = {**admin, **({"content-type": content_type} if content_type else {})}
    body = b'{"name": "teapot ' + secrets.token_hex(3).encode() + b'"}'
    response = await client.post("/categories", headers=headers, content=body)
    error = assert_error(response, 415, "unsupported_media_type")
    assert error["details"]["accepted"] == ["application/json"]
    anonymous = await client.post(
        "/auth/login", headers=headers, content=b'{"username": "admin", "password": "x"}'
    )
    assert_error(anonymous, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type",
    ["application/json", 'Application/JSON; Charset="UTF-8"', "application/merge-patch+json"],
)
async def test_json_media_types_and_utf8_pass(client: Any, login: Any, content_type: str) -> None:
    admin = await login("admin")
    name = f"cat {secrets.token_hex(3)}"
    response = await client.post(
        "/categories",
        headers={**admin, "content-type": content_type},
        content=f'{{"name": "{name}"}}'.encode(),
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name


async def test_a_gzip_encoded_body_is_415_not_malformed_json(client: Any, login: Any) -> None:
    """A probe: a partner's HTTP client compressed its request bodies (``Content-Encoding:
    gzip``), which the API does not decode, and got 400 ``malformed_json`` ("invalid character
    (byte 0)") for a body that is valid JSON once decoded — a JSON bug hunted that was not
    there. A body in any content coding but ``identity`` is 415 ``unsupported_media_type``
    naming it (RFC 9110 8.4.1, RFC 7694), on every route that reads one."""
    body = gzip.compress(b'{"name": "gz", "permissions": ["orgs.read"]}')
    admin = await login("admin")
    json_gzip = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = await client.post("/api-keys", headers={**admin, **json_gzip}, content=body)
    error = assert_error(response, 415, "unsupported_media_type")
    assert error["details"]["content_encoding"] == "gzip", error
    assert response.headers["accept-encoding"] == "identity"
    csv_br = {"Content-Type": "text/csv", "Content-Encoding": "br"}
    imported = await client.post("/orgs/import", headers={**admin, **csv_br}, content=b"\x8b")
    assert_error(imported, 415, "unsupported_media_type")
    verify = await client.post("/v1/verify", headers=json_gzip, content=gzip.compress(b"{}"))
    assert_error(verify, 415, "unsupported_media_type")
    plain = await client.post(
        "/api-keys",
        headers={**admin, "Content-Type": "application/json", "Content-Encoding": "identity"},
        json={"name": f"identity-{secrets.token_hex(3)}", "permissions": ["orgs.read"]},
    )
    assert plain.status_code == 201, plain.text


# --- anonymous calls: the caller before the body ---------------------------------------------


def _raw(port: int, data: bytes, timeout: float) -> bytes:
    """Send ``data`` on a new connection and read what comes back within ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def test_an_anonymous_json_body_is_refused_before_it_is_read(tmp_path: Any) -> None:
    """A probe: an anonymous client started a 9 MB JSON POST to an authenticated route (``POST
    /orgs``, ``POST /documents/{id}/codes``, ``POST /lines/{line}/scans``) and trickled it, and
    the server waited for, and buffered, the whole body (up to Litestar's 10 MB) before it
    answered 401: Litestar decodes the handler's ``data`` before any dependency, so the caller's
    check came after the body. The app's ``before_request`` hook (``app.deps.caller_first``)
    answers 401 at once, without the body — for no credentials, and for bad ones."""
    with granian_server(tmp_path) as server:
        for path, credentials in (
            ("/orgs", ""),
            ("/documents/1/codes", ""),
            ("/lines/L1/scans", ""),
            ("/orgs", "Authorization: Bearer not-a-token\r\n"),
            ("/orgs", "X-API-Key: tck_000000000000_" + "a" * 43 + "\r\n"),
        ):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"{credentials}Content-Length: 9000000\r\nConnection: close\r\n\r\n"
            ).encode()
            out = _raw(server.port, head + b'{"name": "' + b"a" * 1000, timeout=3)
            assert out.startswith(b"HTTP/1.1 401"), (path, credentials, out[:200])


async def test_an_anonymous_call_with_a_bad_body_is_401_not_400(client: Any) -> None:
    """A probe: a partner's key expired or was mistyped, and its body had a field the API does
    not know (or was not JSON); it got 400 ``validation_failed`` / ``malformed_json`` — the
    anonymous body was decoded and validated before the caller was looked at — and fixed its
    JSON only to meet the 401 next. A request without credentials is 401 ``unauthorized``
    first, whatever its body; public routes are not affected."""
    for path in ("/orgs", "/documents", "/orders", "/api-keys"):
        assert_error(await client.post(path, json={"unknown": 1}), 401, "unauthorized")
        response = await client.post(
            path, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert_error(response, 401, "unauthorized")
    login = await client.post(
        "/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(login, 400, "malformed_json")


async def _post_body_later(
    app: Any, path: str, headers: dict[str, str], body: bytes, release: asyncio.Event
) -> tuple[int, Any]:
    """POST ``path`` through the app's ASGI callable: the headers at once, the body once
    ``release`` is set (a client uploading slowly). The status and the decoded answer."""
    raw = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 40001),
        "server": ("testserver", 80),
        "state": {},
    }
    bodies = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if bodies:
            await release.wait()
            return bodies.pop()
        await asyncio.sleep(3600)  # no disconnect before the answer is out
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], msgspec.json.decode(payload) if payload else None


@pytest.mark.parametrize("credential", ["token", "api_key"])
async def test_a_caller_cut_off_while_its_body_was_on_the_way_writes_nothing(
    client: Any, app: Any, login: Any, demo: Any, credential: str
) -> None:
    """A probe: a stolen access token, or a leaked API key, sent the headers of ``POST /users``
    and held the body back; the administrator deactivated the account (or revoked the key), and
    ``/auth/me`` with it already answered 401 — then the body came, and an administrator
    account was created: the caller found before the body (``app.deps.caller_first``) was used
    after it as it had been. The caller is loaded again once the body is in: 401, nothing
    written."""
    admin = await login("admin")
    agent = demo["AGENT-ZJ"]
    name = f"cut_{secrets.token_hex(4)}"
    if credential == "token":
        made = await client.post(
            "/users",
            headers=admin,
            json={
                "org_id": agent,
                "username": name,
                "password": "cut-off-pass-1",
                "roles": ["org_admin"],
            },
        )
        assert made.status_code == 201, made.text
        pair = await client.post(
            "/auth/login", json={"username": name, "password": "cut-off-pass-1"}
        )
        headers = {"Authorization": f"Bearer {pair.json()['access_token']}"}
        cut = client.patch(
            f"/users/{made.json()['id']}", headers=admin, json={"status": "inactive"}
        )
    else:
        made = await client.post(
            "/api-keys",
            headers=admin,
            json={"name": name, "permissions": ["users.write", "users.read"], "org_id": agent},
        )
        assert made.status_code == 201, made.text
        headers = {"X-API-Key": made.json()["key"]}
        cut = client.post(f"/api-keys/{made.json()['api_key']['id']}/revoke", headers=admin)
    backdoor = f"bd_{secrets.token_hex(4)}"
    body = msgspec.json.encode(
        {
            "org_id": agent,
            "username": backdoor,
            "password": "backdoor-pass-1",
            "roles": ["org_admin"],
        }
    )
    release = asyncio.Event()
    upload = asyncio.create_task(_post_body_later(app, "/users", headers, body, release))
    await asyncio.sleep(0.3)  # the headers are in and the caller let in; the body is not
    assert (await cut).status_code == 200
    assert_error(await client.get("/auth/me", headers=headers), 401)
    release.set()
    status, answer = await asyncio.wait_for(upload, 30)
    assert status == 401, (status, answer)
    found = await client.get("/users", headers=admin, params={"q": backdoor})
    assert found.json()["total"] == 0, found.json()


@pytest.mark.parametrize(
    ("url", "content_type"),
    [
        ("/orgs/import", "text/csv"),
        ("/products/import", "text/csv"),
        ("/users/import", "text/csv"),
        ("/orders/import", "text/csv"),
        ("/epcis/capture", "application/json"),
    ],
)
async def test_an_upload_without_the_permission_is_refused_before_its_body(
    client: Any, login: Any, url: str, content_type: str
) -> None:
    """A probe (of the media uploads, and these alike): a signed-in store clerk, without the
    route's permission, sent a large body and held it back; the request's connection reads the
    body whole before the handler, so it was waited for and buffered before the 403. The
    permission a route's body needs (its ``opt``) is checked before the body now."""
    clerk = await login("store_clerk")
    answer = await answered_before_its_body(client, url, clerk, content_type)
    assert answer.status_code == 403, answer.text  # EPCIS's adds its problem+json fields
    assert answer.json()["error"]["code"] == "permission_denied", answer.json()


# --- 13 and 14: one CSV/XLSX writer with the formula guard, one charset ----------------------


def _csv_rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:], newline="")))


def _xlsx(content: bytes) -> tuple[dict[str, str], dict[str, bool], str]:
    """Cells (reference -> text), which cells carry Excel's quote prefix, the sheet XML."""
    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    with zipfile.ZipFile(io.BytesIO(content)) as book:
        names = set(book.namelist())
        sheet_xml = book.read("xl/worksheets/sheet1.xml").decode()
        styles = ElementTree.fromstring(book.read("xl/styles.xml"))
        shared: list[str] = []
        if "xl/sharedStrings.xml" in names:
            root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{ns}t")) for si in root]
    xfs = styles.find(f"{ns}cellXfs")
    assert xfs is not None
    quoted_styles = {i for i, xf in enumerate(xfs) if xf.get("quotePrefix") == "1"}
    cells: dict[str, str] = {}
    quoted: dict[str, bool] = {}
    for c in ElementTree.fromstring(sheet_xml).iter(f"{ns}c"):
        ref, kind, value = c.get("r", ""), c.get("t"), c.find(f"{ns}v")
        if kind == "s" and value is not None:
            cells[ref] = shared[int(value.text or 0)]
        elif kind == "inlineStr":
            cells[ref] = "".join(t.text or "" for t in c.iter(f"{ns}t"))
        elif value is not None:
            cells[ref] = value.text or ""
        quoted[ref] = int(c.get("s", "0")) in quoted_styles
    return cells, quoted, sheet_xml


def _column(cells: dict[str, str], name: str) -> str:
    return next(
        re.sub(r"\d", "", ref)
        for ref, v in cells.items()
        if ref.endswith("1") and v == name and ref[:-1].isalpha()
    )


async def test_center_documents_export_guards_formulas(client: Any, login: Any, demo: Any) -> None:
    clerk = await login("clerk")
    fields = {"signee": FORMULAS[0], "customer": FORMULAS[3], "customer_type": FORMULAS[1],
              "destination_city": FORMULAS[4]}  # fmt: skip
    created = await client.post(
        "/documents",
        headers=clerk,
        json={"kind": "outbound", "counterparty_id": demo["AGENT-ZJ"], "phone": "+86 1", **fields},
    )
    assert created.status_code == 201, created.text
    doc_no = created.json()["doc_no"]
    params = {"doc_no": doc_no}
    rows = _csv_rows(
        await client.get("/center/documents", headers=clerk, params={**params, "format": "csv"})
    )
    assert len(rows) == 1
    for column, value in {**fields, "phone": "+86 1"}.items():
        assert rows[0][column] == "'" + value, column
    assert rows[0]["doc_no"] == doc_no  # plain text untouched
    xlsx = await client.get("/center/documents", headers=clerk, params={**params, "format": "xlsx"})
    assert xlsx.status_code == 200
    cells, quoted, sheet = _xlsx(xlsx.content)
    assert "<f>" not in sheet  # no formula anywhere
    for column, value in fields.items():
        ref = _column(cells, column) + "2"
        assert cells[ref] == value and quoted[ref], column  # text, shown as is, kept as text
    assert not quoted[_column(cells, "doc_no") + "2"]


async def test_center_stock_export_guards_formulas_not_numbers(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    admin = await login("admin")
    product = await client.post(
        "/products",
        headers=admin,
        json={
            "product_no": f"=P{secrets.token_hex(3)}",
            "name": '=HYPERLINK("x")',
            "spec": "-1 ml",
        },
    )
    assert product.status_code == 201, product.text
    product_id = product.json()["id"]
    # a stock row of its own, written directly and removed at the end (stock checks recount)
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO stock (org_id, product_id, lot, on_hand, in_transit) "
            "VALUES (%s, %s, '@lot', -3, 0)",
            (demo["WH-SZ-01"], product_id),
        )
    try:
        await _stock_export_checks(client, admin, product_id)
    finally:
        async with app.state.pool.connection() as conn:
            await conn.execute("DELETE FROM stock WHERE product_id = %s", (product_id,))


async def _stock_export_checks(client: Any, admin: Any, product_id: int) -> None:
    params = {"product_id": product_id}
    rows = _csv_rows(
        await client.get("/center/stock", headers=admin, params={**params, "format": "csv"})
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["product_name"] == '\'=HYPERLINK("x")' and row["spec"] == "'-1 ml"
    assert row["lot"] == "'@lot" and row["product_no"].startswith("'=P")
    assert row["on_hand"] == "-3"  # a number stays a number
    xlsx = await client.get("/center/stock", headers=admin, params={**params, "format": "xlsx"})
    cells, quoted, sheet = _xlsx(xlsx.content)
    assert "<f>" not in sheet
    name = _column(cells, "product_name") + "2"
    assert cells[name] == '=HYPERLINK("x")' and quoted[name]
    on_hand = _column(cells, "on_hand") + "2"
    assert cells[on_hand] == "-3" and not quoted[on_hand]


async def test_inspections_export_guards_formulas_with_one_charset(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    batch_no, _ = await issue_units(client, login, demo, 1)
    serial = app.state.scheme.serial(batch_no, 0)
    inspector = await login("inspector")
    scanned = await client.post(
        "/inspections",
        headers=inspector,
        json={
            "code": serial,
            "store_code": "STORE-GZ-01",
            "note": "=cmd|' /C calc'!A0",
            "gps": {"lat": 23.1, "lng": 113.3},
        },
    )
    # a unit never activated: recorded as counterfeit evidence (422) — a record all the same
    scan_id = assert_error(scanned, 422, "counterfeit")["details"]["id"]
    response = await client.get(
        "/inspections", headers=inspector, params={"format": "csv", "scan_id": scan_id}
    )
    rows = _csv_rows(response)  # asserts "text/csv; charset=utf-8", once
    assert [r["note"] for r in rows] == ["'=cmd|' /C calc'!A0"]
    assert rows[0]["serial"] == serial


def test_one_writer_for_every_export() -> None:
    """No module but app.tabular writes CSV or XLSX (the inspections' own writer is gone)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "app"
    writers = {
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if re.search(r"csv\.(writer|DictWriter)|xlsxwriter\.Workbook", p.read_text())
    }
    assert writers == {"tabular.py"}


def test_formula_guard_cells() -> None:
    from app.tabular import csv_cell

    for text in FORMULAS:
        assert csv_cell(text) == "'" + text
    assert csv_cell("plain") == "plain" and csv_cell("a=b") == "a=b"
    assert csv_cell(-3) == -3 and csv_cell(None) == ""


# --- 15: the schema pages, without a CDN -----------------------------------------------------


_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
async def test_schema_pages_load_nothing_from_outside(client: Any, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    html = response.text
    assert not re.search(r"https?://", html), html  # nothing outside the server
    assert "<script>" not in html.replace(" ", "")  # no inline script (the CSP forbids them)
    assets = _URL.findall(html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    types = {".js": "application/javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        assert asset.startswith("/schema/assets/"), asset
        served = await client.get(asset)
        assert served.status_code == 200, asset
        kind = served.headers["content-type"].split(";")[0]
        assert kind == types[asset[asset.rindex(".") :]], (asset, kind)
        assert served.headers["x-content-type-options"] == "nosniff"
    init = await client.get("/schema/assets/init.js")
    assert "validatorUrl: null" in init.text and "/schema/openapi.json" in init.text
    assert not re.search(r"https?://", init.text)


async def test_no_scalar_page_and_no_stray_assets(client: Any) -> None:
    assert (await client.get("/schema/scalar")).status_code == 404
    assert (await client.get("/schema/assets/index.html")).status_code == 404
    assert (await client.get("/schema/assets/swagger-initializer.js")).status_code == 404
    assert (await client.get("/schema/openapi.json")).status_code == 200


# --- 16: the document tells the real errors --------------------------------------------------


async def test_openapi_documents_the_error_shape_and_codes(client: Any) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(error["properties"]["error"]["required"]) == {"code", "message", "details"}
    ref = {"$ref": "#/components/schemas/Error"}
    problem = {"$ref": "#/components/schemas/EpcisProblem"}  # an Error with the RFC 7807 fields
    assert doc["components"]["schemas"]["EpcisProblem"]["allOf"] == [ref]
    operations = [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]
    assert len(operations) > 60
    for path, method, op in operations:
        responses = op["responses"]
        assert "400" in responses, (path, method)
        for status, response in responses.items():
            if status.startswith("4"):
                if path.startswith("/epcis/"):
                    schema = response["content"]["application/problem+json"]["schema"]
                    assert schema == problem, (path, status)
                else:
                    assert response["content"]["application/json"]["schema"] == ref, (path, status)
        if "{" in path:
            assert "404" in responses, (path, method)
    for path, method in [("/orders", "post"), ("/users/{user_id}", "patch"), ("/orgs", "get")]:
        responses = doc["paths"][path][method]["responses"]
        assert {"400", "401", "403", "404", "422"} <= set(responses), (path, method)
    assert "409" in doc["paths"]["/orders"]["post"]["responses"]
    assert "415" in doc["paths"]["/orders/import"]["post"]["responses"]
    assert "429" in doc["paths"]["/auth/login"]["post"]["responses"]
    assert "401" not in doc["paths"]["/auth/login"]["post"]["responses"] or True
    orders = doc["paths"]["/orders"]["post"]["responses"]
    assert orders["200"]["content"] == orders["201"]["content"]  # the replay answer
    stock = doc["paths"]["/center/stock"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv"} <= set(stock)


async def test_a_repeated_order_answers_the_documented_200(
    client: Any, login: Any, demo: Any
) -> None:
    planner = await login("admin")
    products = (await client.get("/products", headers=planner, params={"q": "LM-SC-30"})).json()
    order = {
        "erp_no": f"DOC-{secrets.token_hex(4)}",
        "from_org_id": demo["WH-SZ-01"],
        "to_org_id": demo["AGENT-ZJ"],
        "lines": [{"product_id": products["items"][0]["id"], "quantity": 3}],
    }
    first = await client.post("/orders", headers=planner, json=order)
    again = await client.post("/orders", headers=planner, json=order)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


async def test_resolver_answers_are_documented(client: Any, demo: Any) -> None:
    """The GS1 resolver's real answers (307, the linkset, the CORS preflight) are in the document."""
    doc = (await client.get("/schema/openapi.json")).json()
    item = doc["paths"]["/01/{rest}"]
    uri = "/01/06901234000016"  # demo product LM-HY-50
    redirect = await client.get(uri)
    linkset = await client.get(uri, params={"linkType": "linkset"})
    preflight = await client.options(uri)
    assert (redirect.status_code, linkset.status_code, preflight.status_code) == (307, 200, 204)
    assert "307" in item["get"]["responses"] and "204" in item["options"]["responses"]
    kind = linkset.headers["content-type"].split(";")[0]
    assert kind in item["get"]["responses"]["200"]["content"]


async def test_health_503_is_documented_with_its_body(client: Any) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    responses = doc["paths"]["/health"]["get"]["responses"]
    assert responses["503"]["content"] == responses["200"]["content"]


async def _paths(client: Any) -> dict[str, Any]:
    answer = await client.get("/schema/openapi.json")
    assert answer.status_code == 200
    return answer.json()["paths"]  # type: ignore[no-any-return]


async def test_the_replay_200_of_post_allocations_and_post_sales_is_documented(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a line system resending `POST /allocations` with its `client_id` got 200 (the
    same codes), and a till resending `POST /sales` likewise (tests/test_sales_client_id.py), but
    neither operation listed 200: a client generated from the document saw an undocumented
    status (app/apidocs.py: REPLAYS)."""
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 50)
    body = {"batch_no": batch_no, "count": 5, "client_id": f"probe-{secrets.token_hex(4)}"}
    first = await client.post("/allocations", headers=planner, json=body)
    assert first.status_code == 201, first.text
    again = await client.post("/allocations", headers=planner, json=body)
    assert again.status_code == 200, again.text
    paths = await _paths(client)
    assert "200" in paths["/allocations"]["post"]["responses"], "POST /allocations: 200 missing"
    assert "200" in paths["/sales"]["post"]["responses"], "POST /sales: 200 missing"


async def test_a_queued_job_202_is_documented_with_its_location(client: Any) -> None:
    """A probe: `POST /batches/{no}/exports` answers 202 + Location for an export over
    TRACECODE_EXPORT_ASYNC_THRESHOLD (app/codes/routes.py: _start), as does `POST
    /case-batches/{id}/exports`, but both listed only 201; EPCIS capture listed its 202 without
    the Location to poll (app/apidocs.py: QUEUED)."""
    paths = await _paths(client)
    exports = [
        p
        for p in paths
        if p.startswith(("/batches/{", "/case-batches/{")) and p.endswith("/exports")
    ]
    assert len(exports) == 2, exports
    for path in [*exports, "/epcis/capture"]:
        responses = paths[path]["post"]["responses"]
        assert "202" in responses, path
        assert "Location" in responses["202"]["headers"], path


async def test_the_429_of_post_auth_password_is_documented(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: `POST /auth/password` checks the current password under the log-in limits: after
    5 wrong ones it answers 429 `login_locked` with Retry-After, but it listed no 429
    (app/apidocs.py: RATE_LIMITED)."""
    admin = await login("admin")
    username = f"probe_pw_{secrets.token_hex(3)}"
    made = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["AGENT-ZJ"],
            "username": username,
            "password": "probe-password-1",
            "roles": ["analyst"],
        },
    )
    assert made.status_code == 201, made.text
    own = await login(username, "probe-password-1")
    wrong = {"current_password": "not-it-at-all", "new_password": "probe-password-2"}
    statuses = [
        (await client.post("/auth/password", headers=own, json=wrong)).status_code for _ in range(6)
    ]
    assert 429 in statuses, statuses
    paths = await _paths(client)
    assert "429" in paths["/auth/password"]["post"]["responses"], "POST /auth/password: 429"


async def test_the_429_and_502_of_photos_are_documented(client: Any) -> None:
    """A probe: `POST /media/photos` answers 429 `photo_quota` past TRACECODE_MEDIA_DAILY_BYTES
    and 502 `media_store_failed` when the S3 store refuses (app/media/s3.py, which a download
    reaches too), but listed neither (app/apidocs.py: RATE_LIMITED, PHOTO_STORE)."""
    paths = await _paths(client)
    upload = paths["/media/photos"]["post"]["responses"]
    assert {"429", "502"} <= set(upload), sorted(upload)
    assert "502" in paths["/media/photos/{photo_id}"]["get"]["responses"]


async def test_the_503_of_v1_verify_is_documented(client: Any) -> None:
    """A probe: `POST /v1/verify` answers 503 `query_timeout` past TRACECODE_DB_ROUND_TIMEOUT and
    503 `service_unavailable` when PostgreSQL does not answer, but its hand-written entry
    (app/verify/routes.py: document_verify) listed no 503."""
    responses = (await _paths(client))["/v1/verify"]["post"]["responses"]
    assert "503" in responses, sorted(responses)


async def test_every_documented_error_is_the_error_schema(client: Any) -> None:
    """A probe: the 503 of `POST /rebates/claims` and `POST /members/me/claims` (entries written
    by hand in app/claims.py) had no content at all: app/apidocs.document_errors made only the
    4xx answers the `Error` schema. Every 4xx and 5xx of every operation is (but /health's 503,
    its own status page), or under /epcis/ the `EpcisProblem` that extends it."""
    errors = [{"$ref": "#/components/schemas/Error"}, {"$ref": "#/components/schemas/EpcisProblem"}]
    bare = []
    for path, item in (await _paths(client)).items():
        for method, op in item.items():
            if not isinstance(op, dict) or path == "/health":
                continue
            for status, response in op.get("responses", {}).items():
                if status[0] in "45":
                    schemas = [c.get("schema", {}) for c in response.get("content", {}).values()]
                    if not any(schema in errors for schema in schemas):
                        bare.append(f"{method.upper()} {path} {status}")
    assert not bare, bare


async def test_summary_far_in_the_past_is_not_a_500(client: Any, login: Any) -> None:
    """Found by schemathesis: ``to=0001-01-01`` overflowed the default 30-day period."""
    response = await client.get(
        "/inspections/summary",
        headers=await login("admin"),
        params={"by": "store", "to": "0001-01-01"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["date_from"] == "0001-01-01"


async def test_an_integer_in_a_path_is_ascii_digits_only(client: Any, login: Any) -> None:
    """Probe Q: Litestar read ``{…:int}`` segments with int(): ``/orgs/１``, ``/orgs/١``,
    ``/orgs/+1`` and ``/orgs/%201`` were org 1, ``/orgs/1_0`` org 10 — unlimited other URLs for
    every resource, past any rule on paths in front of the service."""
    admin = await login("admin")
    one = await client.get("/orgs/1", headers=admin)
    assert one.status_code == 200, one.text
    for other in ("１", "١", "+1", "%201", "1%20", "1_0", "01", "-1"):
        assert_error(await client.get(f"/orgs/{other}", headers=admin), 404)


async def test_a_client_that_hangs_up_mid_body_is_no_server_error(client: Any, app: Any) -> None:
    """Probe S: a request announcing a body whose client hung up before its end was a 500, an
    ERROR line and a 5xx in the metrics — at will, on /auth/login, without a login."""
    await client.get("/ping")  # the app's lifespan has started
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/auth/login", "raw_path": b"/auth/login",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 9), "server": ("t", 80),
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
    }  # fmt: skip
    messages = iter(
        [{"type": "http.request", "body": b'{"username":', "more_body": True},
         {"type": "http.disconnect"}]
    )  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 400, sent
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert json.loads(body)["error"]["code"] == "client_disconnected", body
    # the consumer's PIN form too (review R4: its pages' own error handler)
    messages = iter(
        [{"type": "http.request", "body": b"pin=12", "more_body": True},
         {"type": "http.disconnect"}]
    )  # fmt: skip
    form = (b"content-type", b"application/x-www-form-urlencoded")
    path = "/c/TQXZF37NK6SPNRAH6005"
    sent.clear()
    await app(
        {**scope, "path": path, "raw_path": path.encode(), "headers": [form, scope["headers"][1]]},
        receive,
        send,
    )
    assert sent[0]["status"] == 400, sent
    metrics = (await client.get("/metrics")).text
    assert 'route="/auth/login",status="500"' not in metrics
    assert 'route="/c/{serial}",status="500"' not in metrics


async def test_xlsx_cells_keep_every_digit_of_long_ids() -> None:
    """Probe AB: a code id of 17 digits was written as a number, and a spreadsheet (a double)
    keeps 15: 12884923362836482 came back 12884923362836480. Such ids are text cells."""
    from app.tabular import one_batch, xlsx_chunks

    rows = [[12884923362836482, 999_999_999_999_999, -(10**16) - 1, 42, 2.5, True]]
    content = b"".join([c async for c in xlsx_chunks("t", list("abcdef"), one_batch(rows))])
    cells, _, _ = _xlsx(content)
    assert [cells[f"{col}2"] for col in "ABCDEF"] == [
        "12884923362836482",
        "999999999999999",
        "-10000000000000001",
        "42",
        "2.5",
        "1",
    ]
    sheet = _xlsx(content)[2]
    assert '<c r="D2"><v>42</v>' in sheet  # small numbers stay numbers


async def test_the_consumer_pages_do_not_parse_the_host_for_their_scheme_or_error_page(
    client: Any, monkeypatch: Any
) -> None:
    """A probe: past the edge (``host_ok`` let through), ``/clerk`` with ``Host: x:abc`` raised
    out of the app — ``app.web.session.secure`` read ``request.url.scheme`` and the HTML error
    page (``app.web.pages.html_error``) ``request.url.path``, both parsing the Host — and
    granian answered a bare ``text/plain`` 500. They read the scope's scheme and path."""
    monkeypatch.setattr("app.front.host_ok", lambda host: True)
    bad = {"Host": "x:abc"}
    sign_in = await client.get("/clerk/login", headers=bad)  # its cookies: secure()
    assert sign_in.status_code == 200, sign_in.text[:300]
    assert sign_in.headers["content-type"].startswith("text/html")
    # html_error's page: a sign-in without the form's token
    error_page = await client.post("/clerk/login", headers=bad, data={"username": "x"})
    assert error_page.status_code == 403, error_page.text[:300]
    assert error_page.headers["content-type"].startswith("text/html")
    assert (await client.get("/clerk", headers=bad)).status_code == 303
