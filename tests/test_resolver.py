"""GS1 Digital Link resolver conformance cases (SPEC I4)."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.h5_support import activated_batch, result_of, text_of, unit
from tests.helpers import assert_error
from tests.points_support import new_ip

WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + bytes(range(256)) * 8

GTIN = "06901234000016"  # demo product LM-HY-50
GTIN2 = "06901234000023"  # demo Sun Cream (published)
SERIAL = "ABCDEFGHJKMNPQRSTVWX"


async def test_a_serial_uri_redirects_to_the_verification_page(
    client: Any, demo: Any, settings: Any
) -> None:
    response = await client.get(f"/01/{GTIN}/21/{SERIAL}")
    assert response.status_code == 307
    # the page checks the unit is of this GTIN's product (a unit of another is not genuine)
    assert response.headers["location"] == f"{settings.public_url}/c/{SERIAL}?gtin={GTIN}"
    assert response.headers["access-control-allow-origin"] == "*"
    # GTIN-13 form, lot qualifier, data attribute and trailing slash are all accepted
    for uri in (
        f"/01/{GTIN[1:]}/21/{SERIAL}",
        f"/01/{GTIN}/10/LOT-7/21/{SERIAL}?17=271231",
        f"/01/{GTIN}/21/{SERIAL}/",
    ):
        again = await client.get(uri)
        assert again.status_code == 307, uri
        assert again.headers["location"].split("?")[0].endswith(f"/c/{SERIAL}"), uri


async def test_a_product_uri_redirects_to_the_product_page(
    client: Any, demo: Any, settings: Any
) -> None:
    response = await client.get(f"/01/{GTIN}")
    assert response.status_code == 307
    assert response.headers["location"] == f"{settings.public_url}/p/{GTIN}"


async def test_link_type_is_honoured_and_unknown_types_fall_back(client: Any, demo: Any) -> None:
    pip = await client.get(f"/01/{GTIN}/21/{SERIAL}", params={"linkType": "gs1:pip"})
    assert pip.status_code == 307 and pip.headers["location"].endswith(f"/p/{GTIN}")
    unknown = await client.get(f"/01/{GTIN}/21/{SERIAL}", params={"linkType": "gs1:recipeInfo"})
    assert unknown.status_code == 307
    assert unknown.headers["location"].endswith(f"/c/{SERIAL}?gtin={GTIN}")


async def test_linkset_lists_every_link(client: Any, demo: Any, login: Any) -> None:
    admin = await login("admin")
    product = (await client.get("/products", headers=admin, params={"gtin": GTIN})).json()["items"][
        0
    ]
    await client.patch(
        f"/products/{product['id']}",
        headers=admin,
        json={"video_url": "https://video.example.com/serum.mp4"},
    )
    response = await client.get(f"/01/{GTIN}/21/{SERIAL}", params={"linkType": "all"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/linkset+json")
    entry = response.json()["linkset"][0]
    assert entry["anchor"].endswith(f"/01/{GTIN}/21/{SERIAL}")
    assert entry["https://gs1.org/voc/pip"][0]["href"].endswith(f"/p/{GTIN}")
    verification = entry["https://gs1.org/voc/verificationService"][0]["href"]
    assert verification.endswith(f"/c/{SERIAL}?gtin={GTIN}")
    assert (
        entry["https://gs1.org/voc/instructions"][0]["href"]
        == "https://video.example.com/serum.mp4"
    )
    assert entry["https://gs1.org/voc/defaultLink"][0]["href"].endswith(f"/c/{SERIAL}?gtin={GTIN}")
    negotiated = await client.get(f"/01/{GTIN}", headers={"Accept": "application/linkset+json"})
    assert negotiated.status_code == 200 and "linkset" in negotiated.json()
    instructions = await client.get(f"/01/{GTIN}", params={"linkType": "gs1:instructions"})
    assert instructions.headers["location"] == "https://video.example.com/serum.mp4"


async def test_head_and_options(client: Any, demo: Any) -> None:
    head = await client.head(f"/01/{GTIN}/21/{SERIAL}")
    assert head.status_code == 307 and head.content == b""
    options = await client.options(f"/01/{GTIN}/21/{SERIAL}")
    assert options.status_code == 204
    assert "GET" in options.headers["allow"] and "OPTIONS" in options.headers["allow"]


async def test_bad_uris_are_400_and_unknown_products_404(client: Any, demo: Any) -> None:
    for uri in (
        f"/01/{GTIN[:-1]}9/21/{SERIAL}",  # wrong check digit
        "/01/123/21/X",  # too short
        f"/01/{GTIN}/21/",  # empty serial
        f"/01/{GTIN}/21/{'X' * 21}",  # serial over 20 characters
        f"/01/{GTIN}/99/{SERIAL}",  # not a key qualifier
        "/00/106141411234567890",
    ):  # SSCC check digit
        assert_error(await client.get(uri), 400, "invalid_digital_link")
    # an escaped "/" belongs to its value: the lot "L1/21/XYZ" names no serial XYZ (the path
    # was decoded before it was split: a redirect to the verification of XYZ)
    lot = await client.get(f"/01/{GTIN}/10/L1%2F21%2FXYZ")
    assert lot.status_code == 307 and lot.headers["location"].endswith(f"/p/{GTIN}"), lot.headers
    assert_error(await client.get(f"/01/{GTIN}//21/{SERIAL}"), 400, "invalid_digital_link")
    assert_error(await client.get("/01/09521234543213/21/X"), 404, "unknown_gtin")
    assert_error(await client.get("/00/106141411234567897"), 404, "no_links")


async def test_well_known_description(client: Any) -> None:
    response = await client.get("/.well-known/gs1resolver")
    body = response.json()
    # the resolver standard's description schema (1.2.0): primary keys by their numeric AI
    assert body["supportedPrimaryKeys"] == ["01", "00"]
    assert "gs1:verificationService" in body["linkTypes"]
    assert response.headers["access-control-allow-origin"] == "*"


async def test_the_description_answers_a_cors_preflight(client: Any) -> None:
    """A web app's preflighted request for the description (one with a header of its own) was
    answered by the framework's OPTIONS: 204 without any ``Access-Control-Allow-*`` header,
    so the browser blocked it, while ``/01/…``'s preflight passed."""
    preflight = await client.options(
        "/.well-known/gs1resolver",
        headers={
            "Origin": "https://scanner.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "accept",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert "accept" in preflight.headers["access-control-allow-headers"].lower()


def _gtin13() -> str:
    from app._core import gs1_check_digit

    data = "69" + "".join(secrets.choice("0123456789") for _ in range(10))
    return data + str(gs1_check_digit(data))


async def test_the_printed_qr_of_a_unit_of_an_unpublished_product_verifies_it(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the outer print of a batch whose product has a GTIN carries the Digital Link
    ``/01/{GTIN-14}/21/{serial}`` (README "printer files"); the resolver's default link for a
    URI naming a serial is the verification page ``/c/{serial}`` (README "GS1 resolver"). But
    the resolver only looked at *published* products (``published`` defaults to false, and a
    brand unpublishes a product to take it off the H5 list), so the QR printed on a genuine,
    activated unit answered 404 ``unknown_gtin`` while ``/c/{serial}`` verified it. The
    product's own page stays unlisted: no ``gs1:pip`` link, and the bare GTIN is 404."""
    from tests.helpers import activate, scheme_for_tests

    admin, planner = await login("admin"), await login("planner")
    n = secrets.token_hex(3).upper()
    gtin = _gtin13()
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": f"Probe toner {n}", "product_no": f"PRT-{n}", "gtin": gtin},
    )
    assert made.status_code == 201, made.text
    assert made.json()["published"] is False
    product = made.json()["id"]
    batch = await client.post(
        "/batches",
        headers=planner,
        json={"size": 2, "printer_id": demo["PRINTER-SH"], "product_id": product},
    )
    assert batch.status_code == 201, batch.text
    serial = scheme_for_tests().serial(int(batch.json()["batch_no"]), 0)
    await activate(client, login, [serial], product, line=f"PRT{n}")
    page = await client.get(f"/c/{serial}")
    assert page.status_code == 200, page.text
    qr = await client.get(f"/01/0{gtin}/21/{serial}")
    assert qr.status_code == 307, f"{qr.status_code} {qr.text}"
    assert qr.headers["location"].endswith(f"/c/{serial}?gtin=0{gtin}")
    target = urlsplit(qr.headers["location"])
    followed = await client.get(f"{target.path}?{target.query}")  # the unit's own GTIN: its form
    assert followed.status_code == 200 and 'name="pin"' in followed.text, followed.text
    assert "/p/" not in qr.headers["link"]  # no product page of an unpublished product
    assert (await client.get(f"/01/0{gtin}")).status_code == 404


# What a phone's browser sends when the consumer opens a link (Chrome on Android).
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8"


async def test_a_scanned_digital_link_of_no_product_of_ours_is_a_page_not_json(
    app: Any, client: Any, demo: Any
) -> None:
    """A probe: a consumer scans a fake pack whose QR copies the Digital Link form
    (``/01/{gtin}/21/{serial}``) with a GTIN no brand registered, or a QR whose link was cut
    short or has a wrong check digit. The phone's browser (``Accept: text/html…``, Chinese) got
    the resolver's JSON error (404 ``unknown_gtin``, 400 ``invalid_digital_link``): raw English
    JSON on the outcome that matters most to the consumer. For a client that asks for HTML
    first, the same status with a consumer page in the visitor's language: "not genuine" for a
    unit's code of no product of ours, "not recognised" (no verdict) for a link nobody could
    read, "not found" for a bare GTIN; API clients keep the JSON error."""
    transport = httpx.ASGITransport(app=app, client=(new_ip(), 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as phone:
        zh = {"Accept": BROWSER, "Accept-Language": "zh-CN,zh;q=0.9"}
        en = {"Accept": BROWSER, "Accept-Language": "en-US,en;q=0.9"}
        unknown = await phone.get(f"/01/09521234543213/21/{SERIAL}", headers=zh)
        cut = await phone.get(f"/01/{GTIN[:-1]}9/21/{SERIAL}", headers=en)  # wrong check digit
        bare = await phone.get("/01/09521234543213", headers=en)
        head = await phone.head(f"/01/09521234543213/21/{SERIAL}", headers=zh)
    for response, status, lang in ((unknown, 404, "zh"), (cut, 400, "en"), (bare, 404, "en")):
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("text/html"), response.text[:200]
        assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in response.text
        assert '<meta name="viewport"' in response.text
        assert response.headers["vary"].startswith("Accept, Accept-Language")
        assert response.headers["access-control-allow-origin"] == "*"
    assert result_of(unknown.text) == "not_genuine" and "不是正品码" in text_of(unknown.text)
    assert result_of(cut.text) == "unreadable" and "Not genuine" not in text_of(cut.text)
    assert "scan the QR code" in text_of(cut.text)
    assert result_of(bare.text) == "error" and "no product" in text_of(bare.text)
    assert head.status_code == 404 and head.content == b""
    assert head.headers["content-type"].startswith("text/html")
    # an API client (any type, JSON first, or no Accept at all) keeps the JSON error
    for accept in ("*/*", "application/json, text/html", ""):
        api = await client.get(f"/01/09521234543213/21/{SERIAL}", headers={"Accept": accept})
        assert_error(api, 404, "unknown_gtin")


async def test_a_product_of_a_brand_turned_off_resolves_as_unpublished(
    client: Any, login: Any
) -> None:
    """A probe: a brand the platform operator turned off kept its Digital Links: ``/01/{gtin}``
    still sent a phone to the product's page (its ``gs1:pip`` link), as if the brand were on
    the platform. Now such a product resolves as an unpublished one: no ``gs1:pip`` link, the
    bare GTIN 404 ``unknown_gtin``, a unit's printed QR still to its verification page."""
    from tests.helpers import onboarded_brand

    brand, admin = await onboarded_brand(client, login)
    gtin = _gtin13()
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": "Off cream", "product_no": "OFF-1", "gtin": gtin, "published": True},
    )
    assert made.status_code == 201, made.text
    before = await client.get(f"/01/0{gtin}")
    assert before.status_code == 307 and before.headers["location"].endswith(f"/p/0{gtin}")
    platform = await login("platform")
    off = await client.post(f"/orgs/{brand['id']}/deactivate", headers=platform)
    assert off.status_code == 200, off.text
    assert_error(await client.get(f"/01/0{gtin}"), 404, "unknown_gtin")
    unit = await client.get(f"/01/0{gtin}/21/ABC123")
    assert unit.status_code == 307 and "/c/ABC123?gtin=" in unit.headers["location"]
    assert "/p/" not in unit.headers["link"], unit.headers["link"]
    linkset = await client.get(f"/01/0{gtin}/21/ABC123", params={"linkType": "linkset"})
    assert "pip" not in linkset.text, linkset.text


async def test_a_catalogue_video_is_linked_under_the_public_url_by_its_own_type(
    client: Any, login: Any, settings: Any
) -> None:
    """A probe: a product video uploaded here (``/media/catalog/{id}`` in ``video_url``, as the
    console sets it) was linked by its bare path — in the linkset, the ``Link`` header and the
    ``Location`` of ``gs1:instructions`` —, a link leading nowhere outside this server, and
    typed ``video/mp4`` whatever it was (a WebM here). Now the medium's ``absolute_url`` and
    its own media type; a video elsewhere is typed by its extension, or not at all."""
    from tests.h5_support import new_product

    uploaded = await client.post(
        "/media/catalog",
        params={"kind": "video"},
        headers={**await login("admin"), "Content-Type": "application/octet-stream"},
        content=WEBM + secrets.token_bytes(8),
    )
    assert uploaded.status_code == 201, uploaded.text
    medium = uploaded.json()
    assert medium["content_type"] == "video/webm"
    gtin = (await new_product(client, login, video_url=medium["url"]))["gtin"].zfill(14)
    linkset = await client.get(f"/01/{gtin}", params={"linkType": "linkset"})
    video = linkset.json()["linkset"][0]["https://gs1.org/voc/instructions"][0]
    assert video["href"] == medium["absolute_url"] == f"{settings.public_url}{medium['url']}"
    assert video["type"] == "video/webm"
    redirect = await client.get(f"/01/{gtin}", params={"linkType": "gs1:instructions"})
    assert redirect.status_code == 307
    assert redirect.headers["location"] == medium["absolute_url"]
    link = redirect.headers["link"]
    assert f'<{medium["absolute_url"]}>; rel="https://gs1.org/voc/instructions"; ' in link
    assert 'type="video/webm"' in link and "video/mp4" not in link
    # a video elsewhere: its type by its name's extension, or none (no guess, no "video/mp4")
    for url, kind in (
        ("https://video.example.com/a/serum.WebM?s=1", "video/webm"),
        ("https://video.example.com/watch?v=abc", None),
    ):
        gtin = (await new_product(client, login, video_url=url))["gtin"].zfill(14)
        linkset = await client.get(f"/01/{gtin}", params={"linkType": "linkset"})
        video = linkset.json()["linkset"][0]["https://gs1.org/voc/instructions"][0]
        assert video["href"] == url and video.get("type") == kind, video
        redirect = await client.get(f"/01/{gtin}", params={"linkType": "gs1:instructions"})
        entry = next(e for e in redirect.headers["link"].split(", <") if "instructions" in e)
        assert ("type=" in entry) is (kind is not None), entry


async def test_a_link_cut_short_after_its_key_is_refused_as_unreadable(
    app: Any, client: Any, demo: Any
) -> None:
    """A probe: a QR whose link was cut right after the key (``…/01/``, ``…/01``, ``…/00/``)
    answered routing's English JSON 404 ``not_found`` without CORS — while one cut a segment
    later (``/01/{gtin}/21``) is the resolver's 400 ``invalid_digital_link``, or the "code not
    recognised" page to a browser. Now both alike."""
    for path in ("/01/", "/01", "/00/", "/00", f"/01/{GTIN}/21"):
        api = await client.get(path)
        assert_error(api, 400, "invalid_digital_link")
        assert api.headers["access-control-allow-origin"] == "*", path
    assert (await client.head("/01")).status_code == 400
    transport = httpx.ASGITransport(app=app, client=(new_ip(), 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as phone:
        for path in ("/01/", "/00"):
            page = await phone.get(
                path, headers={"Accept": BROWSER, "Accept-Language": "zh-CN,zh;q=0.9"}
            )
            assert page.status_code == 400
            assert page.headers["content-type"].startswith("text/html"), page.text[:200]
            assert '<html lang="zh-CN">' in page.text
            assert result_of(page.text) == "unreadable"
            assert page.headers["access-control-allow-origin"] == "*"


def test_the_query_goes_in_the_target_s_query_before_its_fragment() -> None:
    from app.web.resolver import with_query

    assert with_query("https://v.example/serum.mp4#t=5", "17=271231") == (
        "https://v.example/serum.mp4?17=271231#t=5"
    )
    assert with_query("https://v.example/s.mp4?a=1#t=5", "17=271231&lang=en") == (
        "https://v.example/s.mp4?a=1&17=271231&lang=en#t=5"
    )
    assert with_query("https://h/c/S?gtin=1", "17=2") == "https://h/c/S?gtin=1&17=2"
    assert with_query("https://h/p/1", "") == "https://h/p/1"


async def test_the_query_reaches_a_link_target_that_has_a_fragment(client: Any, login: Any) -> None:
    """A probe: a video named with a media fragment (``…/serum.mp4#t=5``, start at 5 s) got
    the request's query after the fragment (``…#t=5?17=271231``): the data attributes never
    reached the target's server (the standard: the resolver passes the query on)."""
    from tests.h5_support import new_product

    product = await new_product(client, login, video_url="https://video.example.com/s.mp4#t=5")
    gtin = product["gtin"].zfill(14)
    redirect = await client.get(f"/01/{gtin}?17=271231&linkType=gs1:instructions")
    assert redirect.status_code == 307, redirect.text
    assert redirect.headers["location"] == "https://video.example.com/s.mp4?17=271231#t=5"


async def test_data_attributes_are_checked_against_their_ai_format(
    client: Any, demo: Any, settings: Any
) -> None:
    """A probe: the resolver says it validates the Digital Link syntax
    (``validatesDigitalLinkSyntax``) but any data attribute but a date passed with 1-90 CSET 82
    characters: a net weight ``3103=ABCDEF`` (N6), a variant ``20=XYZ`` (N2), an expiry
    date-time ``7003=ZZ`` (N10) were redirected and handed on. Each AI's format is checked now,
    and an all-digit key that is no AI is refused; other keys (no AI: extensions) pass on."""
    uri = f"/01/{GTIN}/21/{SERIAL}"
    for query in ("3103=ABCDEF", "3103=12", "20=XYZ", "7003=ZZ", "7003=2712312460", "3106=1"):
        assert_error(await client.get(f"{uri}?{query}"), 400, "invalid_digital_link")
    assert_error(await client.get(f"{uri}?12345=1"), 400, "invalid_digital_link")  # no AI
    assert_error(await client.get(f"{uri}?8004=X1"), 400, "invalid_digital_link")  # a key
    good = "3103=000189&20=01&7003=2712312359&422=156&10x=1&utm_source=qr"
    response = await client.get(f"{uri}?{good}")
    assert response.status_code == 307, response.text
    assert response.headers["location"] == (f"{settings.public_url}/c/{SERIAL}?gtin={GTIN}&{good}")


async def test_dates_are_calendar_dates(client: Any, demo: Any) -> None:
    """A probe: ``17=270229`` (29 February 2027, a common year) was accepted: every February
    had a 29th. Now the year by GS1's sliding window and its leap day; day 00 ("end of the
    month") stays allowed where GS1 allows it (11, 12, 13, 15, 16, 17)."""
    uri = f"/01/{GTIN}/21/{SERIAL}"
    for bad in ("17=270229", "17=270230", "15=270431", "7006=270200"):
        assert_error(await client.get(f"{uri}?{bad}"), 400, "invalid_digital_link")
    for good in ("17=280229", "17=270200", "16=270228", "7006=270101"):
        assert (await client.get(f"{uri}?{good}")).status_code == 307, good


@pytest.mark.parametrize(
    ("accept", "link_type", "answer"),
    [
        ("application/linkset+json", None, "application/linkset+json"),
        ("application/linkset+json, */*;q=0.1", None, "application/linkset+json"),
        ("application/linkset+json;q=0, */*", None, 307),
        ("application/linkset+json; q=0", None, 307),
        ("application/linkset+json;q=0.5, text/html", None, 307),
        ("*/*", None, 307),
        ("application/json", None, 307),
        (BROWSER, None, 307),
        ("", "linkset", "application/linkset+json"),
        ("*/*", "linkset", "application/linkset+json"),
        ("application/json", "all", "application/json"),
        ("application/linkset+json;q=0, application/json", "linkset", "application/json"),
    ],
)
async def test_a_linkset_is_answered_only_where_acceptable(
    client: Any, demo: Any, accept: str, link_type: str | None, answer: str | int
) -> None:
    """A probe: content negotiation looked for the text ``application/linkset+json`` anywhere
    in ``Accept``: ``application/linkset+json;q=0, */*`` (RFC 9110: q=0 is "not acceptable")
    got the linkset. Now the q-values are read: a linkset when ``Accept`` names it with a
    q-value above 0 and under none other, or when ``linkType`` asks for it."""
    params = {"linkType": link_type} if link_type else {}
    response = await client.get(
        f"/01/{GTIN}/21/{SERIAL}", params=params, headers={"Accept": accept}
    )
    if answer == 307:
        assert response.status_code == 307, response.text
        assert response.headers["location"].endswith(f"/c/{SERIAL}?gtin={GTIN}")
    else:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(str(answer))
        assert "linkset" in response.json()


@pytest.mark.parametrize(
    ("accept", "page"),
    [
        ("text/html;q=0", False),
        ("text/html;q=0, application/json;q=0", False),
        ("text/html;q=0, */*", False),
        ("text/*;q=0, */*", False),
        ("application/json;q=0, text/html;q=0.1, */*;q=0.5", True),
        ("application/json;q=0, text/*", True),
        ("text/html, */*", True),
        (BROWSER, True),
        ("*/*", False),
        ("application/json, text/html", False),
        ("", False),
    ],
)
async def test_a_page_only_where_html_is_acceptable_before_json(
    client: Any, accept: str, page: bool
) -> None:
    """A probe: whether a client wants a page (``pages.wants_page``, the resolver's refusals and
    every H5 page's errors) was Litestar's ``request.accept``, which takes ``q=0`` for a type
    accepted: ``Accept: text/html;q=0`` (RFC 9110 12.5.1: "not acceptable") got the HTML page,
    and ``application/json;q=0, text/html;q=0.1, */*;q=0.5`` the JSON it refused. Now the
    q-values are read as the linkset's are (``app.web.accept``)."""
    response = await client.get(f"/01/09521234543213/21/{SERIAL}", headers={"Accept": accept})
    assert response.status_code == 404, response.text
    html = response.headers["content-type"].startswith("text/html")
    assert html is page, (accept, response.headers["content-type"])
    if not page:
        assert_error(response, 404, "unknown_gtin")


async def test_a_query_string_not_utf_8_is_a_bad_link_not_a_500(app: Any, client: Any) -> None:
    """A server that passes a query string's raw bytes on (uvicorn, hypercorn) gave the
    resolver one that is no UTF-8: ``request.url`` failed to decode it, a 500. Now a 400."""
    await client.get("/health")  # the app's lifespan has started
    path = f"/01/{GTIN}/21/{SERIAL}"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"17=271231&lang=\xff", "root_path": "",
        "client": ("127.0.0.1", 9), "server": ("testserver", 80),
        "headers": [(b"host", b"testserver")],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 400, sent
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert b"invalid_digital_link" in body, body


@pytest.mark.parametrize(
    "uri",
    [
        f"/01/{GTIN}/01/{GTIN2}",  # a second primary key after the first
        f"/01/{GTIN}/21/{SERIAL}/01/{GTIN2}/21/{SERIAL}",  # a second item after a whole one
        f"/01/01/{GTIN}",  # "01" is no GTIN
        f"/01/{GTIN}/10/01/{GTIN2}",  # lot "01", then a stray segment
        f"/00/106141411234567897/01/{GTIN2}",  # nothing may follow an SSCC
    ],
)
async def test_a_path_naming_a_second_key_is_refused_not_resolved_to_it(
    client: Any, demo: Any, uri: str
) -> None:
    """A probe: the parser takes every segment before the *last* readable ``/01/`` or ``/00/``
    as a custom path prefix, which the resolver (served at the root) never looked at: an
    invalid URI whose leading key is the serum's was redirected to the sun cream's page —
    what a GS1-aware scanner reads first (GTIN A) was not where the consumer was sent (B)."""
    response = await client.get(uri)
    assert_error(response, 400, "invalid_digital_link")
    assert response.headers["access-control-allow-origin"] == "*"


async def test_the_leading_item_is_never_swapped_for_a_genuine_unit_appended(
    app: Any, client: Any, login: Any, demo: Any
) -> None:
    """A probe: a pack's QR ``/01/{serum}/21/{forged}`` with a genuine unit of the sun cream
    appended led the phone to that unit's verification, not to "not genuine". Now the link is
    unreadable: the "code not recognised" page, no verdict on anyone's unit."""
    batch = await activated_batch(client, login, demo)  # the demo sun cream (GTIN2)
    genuine, _ = unit(app, batch, 0)
    page = await client.get(
        f"/01/{GTIN}/21/{SERIAL}/01/{GTIN2}/21/{genuine}",
        headers={"Accept": BROWSER, "Accept-Language": "en"},
    )
    assert page.status_code == 400, page.headers.get("location")
    assert result_of(page.text) == "unreadable"


@pytest.mark.parametrize(
    "uri",
    [
        f"/01/{GTIN}/21/%2E%2E",
        f"/01/{GTIN}/21/%2E",
        f"/01/{GTIN}/21/.%2E",
        f"/01/{GTIN}/10/%2E%2E/21/{SERIAL}",  # the linkset's anchor: …/10/..
        f"/01/{GTIN}/22/%2E",
    ],
)
async def test_a_dot_segment_qualifier_is_refused(client: Any, demo: Any, uri: str) -> None:
    """A probe: a (forged) serial ``..`` or ``.`` — CSET 82 characters — was redirected to
    ``/c/..?gtin=…`` (``quote`` leaves dots alone), which a browser resolves to the site root
    (or ``/c/``: "no such page") instead of a verdict on the code; a lot so made the anchor's
    path another one. No serial of ours is one: refused as unreadable."""
    assert_error(await client.get(uri), 400, "invalid_digital_link")


async def test_a_serial_with_an_escaped_slash_is_unreadable_not_no_such_page(
    app: Any, client: Any, demo: Any
) -> None:
    """A probe: ``/01/{gtin}/21/A%2FB`` (a CSET 82 serial "A/B", a counterfeit's) was redirected
    to ``/c/A%2FB?gtin=…``, which the router decodes to ``/c/A/B``: the 404 "no such page".
    No serial of ours holds a ``/``: the API gets 400 ``invalid_digital_link``, a browser the
    "code not recognised" page any serial nobody can read gets (``/c/A%25B``'s). A lot with a
    ``/`` (escaped in the anchor only) still resolves."""
    assert_error(await client.get(f"/01/{GTIN}/21/A%2FB"), 400, "invalid_digital_link")
    transport = httpx.ASGITransport(app=app, client=(new_ip(), 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as phone:
        headers = {"Accept": BROWSER, "Accept-Language": "en"}
        page = await phone.get(f"/01/{GTIN}/21/A%2FB", headers=headers)
        other = await phone.get(f"/c/A%25B?gtin={GTIN}", headers=headers)
    assert page.status_code == other.status_code == 400, text_of(page.text)[:300]
    assert result_of(page.text) == result_of(other.text) == "unreadable"
    lot = await client.get(f"/01/{GTIN}/10/A%2FB/21/{SERIAL}")
    assert lot.status_code == 307, lot.text
    assert lot.headers["location"].split("?")[0].endswith(f"/c/{SERIAL}")
    assert f"/01/{GTIN}/10/A%2FB/21/{SERIAL}?linkType=linkset>" in lot.headers["link"]


async def test_an_edge_refusal_of_a_digital_link_carries_cors(client: Any) -> None:
    """A probe: every resolver answer carries ``Access-Control-Allow-Origin: *``, refusals too,
    but a Digital Link with a control character (``%00`` in a serial, ``%01`` in the query),
    refused by the edge check (``app.edge.check_edge``: 400 ``invalid_character``), had none:
    a web scanner on another origin saw a CORS failure instead of the 400. Other paths' edge
    refusals stay without it."""
    for uri in (
        f"/01/{GTIN}/21/A%00B",
        f"/01/{GTIN}?x=%01",
        "/00/106141411234567897?x=%01",
        "/01?x=%01",
        "/.well-known/gs1resolver?x=%01",
    ):
        response = await client.get(uri, headers={"Origin": "https://scanner.example"})
        assert_error(response, 400, "invalid_character")
        assert response.headers.get("access-control-allow-origin") == "*", uri
    other = await client.get("/health?x=%01", headers={"Origin": "https://scanner.example"})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


async def test_a_preflight_is_answered_before_the_uri_is_read(client: Any, demo: Any) -> None:
    """A probe: the CORS preflight of a malformed Digital Link was 400 while an unknown GTIN's
    was 204: a preflight carries no URI to judge, the GET after it is answered."""
    preflight = {"Origin": "https://scanner.example", "Access-Control-Request-Method": "GET"}
    for uri in (f"/01/{GTIN[:-1]}9", f"/01/{GTIN}/01/{GTIN2}", "/01", "/01/09521234543213/21/X"):
        response = await client.options(uri, headers=preflight)
        assert response.status_code == 204, (uri, response.text)
        assert response.headers["access-control-allow-origin"] == "*"


async def test_a_preflight_of_a_path_the_edge_refuses_is_answered(client: Any) -> None:
    """A review: a preflight of a resolver path with a control character got the edge's 400 (with
    CORS) — a browser takes only a 2xx preflight, so a web scanner saw a CORS failure, never the
    400. Answered as every resolver preflight: 204; the GET itself is the 400."""
    path = "/01/09521234543213/21/ABC%E2%80%AE"
    asked = {"Origin": "https://scanner.example", "Access-Control-Request-Method": "GET"}
    out = await client.request("OPTIONS", path, headers=asked)
    assert out.status_code == 204, (out.status_code, out.text)
    assert out.headers["access-control-allow-origin"] == "*"
    assert out.headers["access-control-allow-headers"] == "Accept"
    got = await client.get(path, headers={"Origin": "https://scanner.example"})
    assert_error(got, 400, "invalid_character")
    assert got.headers["access-control-allow-origin"] == "*"
    # a Host that is none is no browser's preflight: 400 as for any other method
    bad_host = {**asked, "Host": "a b"}
    out = await client.request("OPTIONS", "/01/09521234543213/21/ABC", headers=bad_host)
    assert_error(out, 400, "invalid_host")
