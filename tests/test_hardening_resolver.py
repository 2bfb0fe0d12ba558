"""Issue 13, items 9, 14 (pages), 17 and 18: public URLs from the settings only, one charset,
strict JSON numbers, paged lists, and the GS1-Conformant resolver (linkset, HEAD, query strings,
link type URIs, empty redirects). Each test reproduces the defect first."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import msgspec
import pytest

from app.config import SettingsError, load_settings
from app.verify.service import Verifier
from tests.h5_support import activated_batch, text_of, unit
from tests.helpers import assert_error, every_item

GTIN = "06901234000016"  # demo product LM-HY-50 (published)
SERIAL = "ABCDEFGHJKMNPQRSTVWX"
EVIL = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}


@pytest.fixture(autouse=True)
async def pages_verifier(app: Any, client: Any) -> AsyncIterator[None]:
    """A verifier no other test's rate limit reaches, without the never-shipped flag."""
    original = app.state.verifier
    client.cookies.clear()
    settings = msgspec.structs.replace(
        app.state.settings, verify_flag_never_shipped=False, verify_rate_limit=100_000
    )
    app.state.verifier = Verifier(app.state.pool, app.state.redis, app.state.scheme, settings)
    yield
    app.state.verifier = original
    client.cookies.clear()


@contextmanager
def public(app: Any, **changes: Any) -> Iterator[Any]:
    """The app's settings with ``changes`` for the length of a block."""
    original = app.state.settings
    app.state.settings = msgspec.structs.replace(original, **changes)
    try:
        yield app.state.settings
    finally:
        app.state.settings = original


def _hrefs(linkset: dict[str, Any]) -> list[str]:
    """The anchor and the links to this site (a product video may live anywhere)."""
    entry = linkset["linkset"][0]
    ours = ("pip", "verificationService", "defaultLink")
    return [entry["anchor"]] + [
        link["href"] for name in ours for link in entry.get(f"https://gs1.org/voc/{name}", [])
    ]


# -- 9. the Host header ------------------------------------------------------------------------


async def test_a_forged_host_header_never_reaches_a_redirect_or_a_linkset(
    client: Any, app: Any, demo: Any
) -> None:
    redirect = await client.get(f"/01/{GTIN}/21/{SERIAL}", headers=EVIL)
    assert redirect.status_code == 307
    assert "evil" not in redirect.headers["location"]  # was http://evil.example/c/…
    root = app.state.settings.public_url
    assert redirect.headers["location"] == f"{root}/c/{SERIAL}?gtin={GTIN}"
    assert "evil" not in redirect.headers["link"]
    for uri in (f"/01/{GTIN}/21/{SERIAL}?linkType=all", f"/01/{GTIN}?linkType=gs1:pip"):
        response = await client.get(uri, headers=EVIL)
        assert "evil" not in response.text + str(response.headers), uri
    linkset = (await client.get(f"/01/{GTIN}/21/{SERIAL}?linkType=all", headers=EVIL)).json()
    assert all(href.startswith(f"{root}/") for href in _hrefs(linkset))
    described = (await client.get("/.well-known/gs1resolver", headers=EVIL)).json()
    assert described["resolverRoot"] == root


async def test_one_configured_scheme_for_every_link_of_a_linkset(
    client: Any, app: Any, demo: Any
) -> None:
    with public(app, public_scheme="https", resolver_host="id.tracecode.example") as settings:
        assert settings.public_url == "https://id.tracecode.example"
        linkset = (await client.get(f"/01/{GTIN}/21/{SERIAL}", params={"linkType": "all"})).json()
        assert all(h.startswith("https://id.tracecode.example/") for h in _hrefs(linkset))
        redirect = await client.get(f"/01/{GTIN}")
        assert redirect.headers["location"] == f"https://id.tracecode.example/p/{GTIN}"
        root = (await client.get("/.well-known/gs1resolver")).json()["resolverRoot"]
        assert root == "https://id.tracecode.example"


def test_the_resolver_host_setting_is_a_bare_host_and_the_scheme_http_or_https() -> None:
    assert load_settings({}).public_url == "http://127.0.0.1:8000"  # local development
    https = {"TRACECODE_PUBLIC_SCHEME": "https", "TRACECODE_RESOLVER_HOST": "id.example.com"}
    assert load_settings(https).public_url == "https://id.example.com"
    assert (
        load_settings({"TRACECODE_RESOLVER_HOST": "[::1]:8443"}).public_url == "http://[::1]:8443"
    )
    for bad in ("https://id.example.com", "id.example.com/x", "id.example.com\r\nX: y", "a b"):
        with pytest.raises(SettingsError, match="TRACECODE_RESOLVER_HOST"):
            load_settings({"TRACECODE_RESOLVER_HOST": bad})
    with pytest.raises(SettingsError, match="TRACECODE_PUBLIC_SCHEME"):
        load_settings({"TRACECODE_PUBLIC_SCHEME": "ftp"})


# -- 14. one charset on the consumer pages -----------------------------------------------------


async def test_consumer_pages_name_one_charset(client: Any, demo: Any) -> None:
    for path, status in (
        (f"/p/{GTIN}", 200),
        ("/p/123", 400),
        (f"/c/{SERIAL}", 200),
        ("/c/NOT-A-SERIAL", 400),
    ):
        response = await client.get(path)
        assert response.status_code == status, path
        assert response.headers["content-type"] == "text/html; charset=utf-8", path


# -- 17. malformed serials, strict numbers, paged lists -----------------------------------------


async def test_code_status_of_an_overlong_serial_is_a_400(client: Any, login: Any) -> None:
    planner = await login("planner")
    assert_error(
        await client.get(f"/codes/{'A' * 65}/status", headers=planner), 400, "malformed_serial"
    )
    assert_error(
        await client.get(f"/codes/{'A' * 64}/status", headers=planner), 400, "malformed_serial"
    )


async def test_integers_in_bodies_are_json_integers(client: Any, login: Any, demo: Any) -> None:
    planner = await login("planner")
    body = {"printer_id": demo["PRINTER-SH"]}
    for raw in (b"1e3", b"1000.0", b'"1000"', b"1E1"):
        content = b'{"size": ' + raw + b', "printer_id": ' + str(demo["PRINTER-SH"]).encode() + b"}"
        response = await client.post(
            "/batches", headers={**planner, "Content-Type": "application/json"}, content=content
        )
        error = assert_error(response, 400, "validation_failed")
        assert error["details"][0]["field"] == "size", error
    # a float id, a string flag: the same rule in every body (nested ones too)
    admin = await login("admin")
    for content in (
        b'{"name": "Strict", "display_order": 2.0}',
        b'{"name": "Strict", "display_order": "2"}',
    ):
        response = await client.post(
            "/categories", headers={**admin, "Content-Type": "application/json"}, content=content
        )
        assert_error(response, 400, "validation_failed")
    product = (await client.get("/products", headers=admin)).json()["items"][0]
    for rule in (b'"quantity": 1e1', b'"quantity": 10, "strict": "false"'):
        response = await client.put(
            f"/packing/rules/{product['id']}",
            headers={**admin, "Content-Type": "application/json"},
            content=b'[{"level": "inner", ' + rule + b"}]",
        )
        error = assert_error(response, 400, "validation_failed")
        assert error["details"][0]["field"].startswith("[0]."), error  # in the list's item
    made = await client.post("/batches", headers=planner, json={**body, "size": 3})
    assert made.status_code == 201, made.text
    assert made.json()["size"] == 3


async def test_categories_and_lines_are_paged_like_every_other_list(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    # every page: other tests add the demo brand's categories (and lines, below), past the
    # default page of 50 and, on a whole run, past a page of 200
    categories = (await client.get("/categories", headers=admin, params={"per_page": 200})).json()
    assert set(categories) == {"items", "page", "per_page", "total"}
    assert len(await every_item(client, "/categories", admin)) == categories["total"] >= 2
    first = (await client.get("/categories", headers=admin, params={"per_page": 1})).json()
    second = (
        await client.get("/categories", headers=admin, params={"per_page": 1, "page": 2})
    ).json()
    assert len(first["items"]) == len(second["items"]) == 1
    assert first["items"][0]["id"] != second["items"][0]["id"]
    assert first["total"] == categories["total"]
    operator = await login("operator")
    product = (await client.get("/products", headers=operator)).json()["items"][0]
    for line in ("PAGED-1", "PAGED-2"):
        context = {"product_id": product["id"], "lot": "L1", "production_date": "2026-11-30"}
        put = await client.put(f"/lines/{line}/context", headers=operator, json=context)
        assert put.status_code == 200, put.text
    lines = (await client.get("/lines", headers=operator, params={"per_page": 200})).json()
    assert set(lines) == {"items", "page", "per_page", "total"}
    every_line = await every_item(client, "/lines", operator)
    assert len(every_line) == lines["total"] >= 2
    assert {"PAGED-1", "PAGED-2"} <= {line["code"] for line in every_line}
    one = (await client.get("/lines", headers=operator, params={"per_page": 1})).json()
    assert len(one["items"]) == 1 and one["total"] == lines["total"]
    assert_error(await client.get("/lines", headers=operator, params={"per_page": 201}), 400)


# -- 18. GS1 resolver conformance ----------------------------------------------------------------


async def test_link_type_linkset_answers_the_linkset(client: Any, demo: Any) -> None:
    for link_type in ("linkset", "all"):
        response = await client.get(f"/01/{GTIN}/21/{SERIAL}", params={"linkType": link_type})
        assert response.status_code == 200, link_type
        assert response.headers["content-type"].startswith("application/linkset+json")
        entry = response.json()["linkset"][0]
        assert entry["anchor"].endswith(f"/01/{GTIN}/21/{SERIAL}")
        assert "https://gs1.org/voc/defaultLink" in entry
    plain = await client.get(f"/01/{GTIN}?linkType=linkset", headers={"Accept": "application/json"})
    assert plain.headers["content-type"] == "application/json" and "linkset" in plain.json()
    assert plain.headers["vary"] == "Accept"
    # the GTIN-13 form is anchored at its canonical GTIN-14 URI
    short = (await client.get(f"/01/{GTIN[1:]}?linkType=linkset")).json()
    assert short["linkset"][0]["anchor"].endswith(f"/01/{GTIN}")


async def test_a_link_type_uri_is_honoured_like_its_curie(client: Any, demo: Any) -> None:
    for link_type in (
        "gs1:pip",
        "https://gs1.org/voc/pip",
        "http://gs1.org/voc/pip",
        "https://www.gs1.org/voc/pip",
        "https://ref.gs1.org/voc/pip",
    ):
        response = await client.get(f"/01/{GTIN}/21/{SERIAL}", params={"linkType": link_type})
        assert response.status_code == 307, link_type
        assert response.headers["location"].endswith(f"/p/{GTIN}"), link_type
    default = await client.get(
        f"/01/{GTIN}/21/{SERIAL}", params={"linkType": "https://gs1.org/voc/defaultLink"}
    )
    assert default.headers["location"].endswith(f"/c/{SERIAL}?gtin={GTIN}")


async def test_the_query_string_is_passed_on_without_link_type(client: Any, demo: Any) -> None:
    response = await client.get(f"/01/{GTIN}/21/{SERIAL}?17=271231&foo=bar%20baz&lang=en")
    assert response.headers["location"].endswith(
        f"/c/{SERIAL}?gtin={GTIN}&17=271231&foo=bar%20baz&lang=en"
    )
    typed = await client.get(f"/01/{GTIN}?foo=bar&linkType=https%3A%2F%2Fgs1.org%2Fvoc%2Fpip&x=1")
    assert typed.headers["location"].endswith(f"/p/{GTIN}?foo=bar&x=1")
    lower = await client.get(f"/01/{GTIN}?linktype=gs1:pip")
    assert lower.headers["location"].endswith(f"/p/{GTIN}")


async def test_redirects_carry_no_body_and_list_every_link(client: Any, demo: Any) -> None:
    response = await client.get(f"/01/{GTIN}/21/{SERIAL}")
    assert response.status_code == 307
    assert response.content == b"" and response.headers["content-length"] == "0"
    assert "json" not in response.headers.get("content-type", "")
    links = response.headers["link"]
    for link_type in ("pip", "verificationService"):
        found = re.search(rf'<([^>]+)>; rel="https://gs1.org/voc/{link_type}";([^,]+)', links)
        assert found, links
        assert 'title="' in found.group(2)  # every exposed link has a title
    titles = [unquote(t) for t in re.findall(r"title\*=UTF-8''([^,;]+)", links)]
    assert any("验证真伪" in t for t in titles), titles  # the full title, RFC 8187-encoded
    assert re.search(rf'<[^>]+/01/{GTIN}/21/{SERIAL}\?linkType=linkset>; rel="linkset"', links)
    assert "HEAD" in response.headers["access-control-allow-methods"]


async def test_head_answers_the_headers_of_get_without_a_body(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    for path in (
        "/.well-known/gs1resolver",
        "/ping",
        f"/p/{GTIN}",
        "/p/123",
        f"/01/{GTIN}/21/{SERIAL}",
        f"/01/{GTIN}/21/{SERIAL}?linkType=linkset",
        f"/01/{GTIN}9/21/{SERIAL}",  # a bad URI: 400, no body either
    ):
        get, head = await client.get(path), await client.head(path)
        assert head.status_code == get.status_code, path
        assert head.content == b"", path
        for name in ("content-type", "content-length", "location", "link", "cache-control"):
            assert head.headers.get(name) == get.headers.get(name), (path, name)
    health_get, health_head = await client.get("/health"), await client.head("/health")
    assert health_head.status_code == health_get.status_code and health_head.content == b""
    assert health_head.headers["content-type"] == health_get.headers["content-type"]
    # the scan page: headers and status of GET, without a verification (and no false length)
    batch = await activated_batch(client, login, demo)
    serial, pin = unit(app, batch, 0)
    get = await client.get(f"/c/{serial}")
    for _ in range(3):
        head = await client.head(f"/c/{serial}")
        assert head.status_code == 200 and head.content == b""
        assert "content-length" not in head.headers
        for name in ("content-type", "content-security-policy", "cache-control"):
            assert head.headers[name] == get.headers[name], name
    assert (await client.head("/c/NOT-A-SERIAL")).status_code == 400
    answer = await client.post(f"/c/{serial}", data={"pin": pin, "lang": "en"})
    assert "Times checked 1" in text_of(answer.text)  # the HEADs were not counted
