"""Consumer H5 pages (SPEC V1): the scan page, the PIN answer in every state, the product page,
languages, escaping, page weight and friendly error pages — over HTTP on real PostgreSQL + Redis."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import msgspec
import pytest

from app._core import gs1_check_digit
from app.verify.service import Verifier
from app.web import html as page_html
from app.web.i18n import from_accept_language
from tests.h5_support import (
    activated_batch,
    has_pin_form,
    new_product,
    result_of,
    text_of,
    unit,
    wrong_pin,
)
from tests.helpers import onboarded_brand, within_one_minute
from tests.points_support import member_client, new_ip

MAX_PAGE = 100 * 1024
TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")

Swap = Callable[..., Verifier]


@pytest.fixture(autouse=True)
async def pages_verifier(app: Any, client: Any) -> AsyncIterator[Swap]:
    """A verifier for these tests: no never-shipped flag, a rate limit no other test trips; and
    no language cookie carried from one test to the next."""
    original = app.state.verifier
    client.cookies.clear()

    def swap(**changes: Any) -> Verifier:
        settings = msgspec.structs.replace(
            app.state.settings,
            **{"verify_flag_never_shipped": False, "verify_rate_limit": 100_000, **changes},
        )
        app.state.verifier = Verifier(app.state.pool, app.state.redis, app.state.scheme, settings)
        return app.state.verifier  # type: ignore[no-any-return]

    swap()
    yield swap
    app.state.verifier = original
    client.cookies.clear()


@pytest.fixture
async def batch(client: Any, login: Any, demo: Any) -> int:
    return await activated_batch(client, login, demo)


def assert_page(response: Any, status: int = 200) -> str:
    """An HTML page (never JSON), mobile-ready, within the weight budget."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html"), response.headers
    page: str = response.text
    assert page.startswith("<!doctype html>")
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in page
    assert len(response.content) <= MAX_PAGE
    assert 'id="lang-switch"' in page
    return page


async def post_pin(client: Any, serial: str, pin: str, lang: str = "zh", **kw: Any) -> Any:
    return await client.post(f"/c/{serial}", data={"pin": pin, "lang": lang}, **kw)


# -- the scan page -------------------------------------------------------------------------------


async def test_scan_page_shows_the_product_and_a_pin_form_in_chinese_by_default(
    client: Any, app: Any, batch: int
) -> None:
    serial, _ = unit(app, batch, 1)
    response = await client.get(f"/c/{serial}")
    page = assert_page(response)
    assert '<html lang="zh-CN">' in page and response.headers["content-language"] == "zh-CN"
    assert response.headers["cache-control"] == "no-store"
    text = text_of(page)
    assert "Sun Cream SPF50 防晒霜" in text and "30 ml" in text and serial in text
    assert "批号 LOT1" in text and "生产日期 2026-11-01" in text  # from the packing line
    assert "防伪码有效" in text and "请输入包装内刮开的验证码" in text
    assert result_of(page) == "pin_required"
    assert has_pin_form(page)
    assert 'inputmode="numeric"' in page and 'autocomplete="off"' in page
    assert f'action="/c/{serial}"' in page
    assert 'href="/p/06901234000023"' in page  # the product page link
    assert f'href="/c/{serial}?lang=en"' in page


async def test_an_upper_case_short_form_qr_url_opens_the_verification_page(
    client: Any, app: Any, batch: int
) -> None:
    """A probe: SPEC C1 prints the short form in capitals too (alphanumeric QR mode), so a phone
    opens ``https://trace.example.com/C/{serial}`` (it lower-cases the scheme and host only).
    ``POST /v1/verify`` reads that URL as the unit's, but the consumer in WeChat got routing's
    English JSON 404. ``/C/`` is the scan page (and its PIN form's answer, and ``/P/`` the
    product page), in Chinese; the form posts to ``/c/``."""
    serial, pin = unit(app, batch, 0)
    api = await client.post("/v1/verify", json={"serial": f"HTTPS://TRACE.EXAMPLE.COM/C/{serial}"})
    assert api.json()["reason"] == "pin_required"  # the API reads the upper-case URL
    page = assert_page(await client.get(f"/C/{serial}", headers={"Accept-Language": "zh-CN"}))
    assert '<html lang="zh-CN">' in page and result_of(page) == "pin_required"
    assert has_pin_form(page) and f'action="/c/{serial}"' in page
    answered = await client.post(f"/C/{serial}", data={"pin": pin})
    assert result_of(assert_page(answered)) == "genuine"
    assert (await client.get("/P/06901234000023")).status_code == 200
    missing = await client.get(f"/C/{serial}/more")  # the consumer prefixes' 404 page
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")


async def test_scan_page_in_english_by_query_and_the_choice_is_remembered(
    client: Any, app: Any, batch: int
) -> None:
    serial, _ = unit(app, batch, 2)
    response = await client.get(f"/c/{serial}", params={"lang": "en"})
    page = assert_page(response)
    assert '<html lang="en">' in page
    assert "Enter the PIN hidden inside the pack" in text_of(page)
    assert "tc_lang=en" in response.headers["set-cookie"]
    assert f'href="/c/{serial}?lang=zh"' in page and ">中文<" in page
    # the cookie now keeps English, even against the browser's Chinese preference
    later = await client.get(f"/c/{serial}", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="en">' in later.text and "set-cookie" not in later.headers
    # and the switch link back to Chinese wins over the cookie
    back = await client.get(f"/c/{serial}", params={"lang": "zh"})
    assert '<html lang="zh-CN">' in back.text and "tc_lang=zh" in back.headers["set-cookie"]


@pytest.mark.parametrize(
    ("header", "picked"),
    [
        ("en-US,en;q=0.9", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("fr-FR,fr;q=0.9,en;q=0.5", "en"),
        ("en;q=0.2,zh-TW;q=0.8", "zh"),
        ("en, zh", "en"),  # equal q: the first listed
        ("de", None),
        ("en;q=0", None),
        ("", None),
    ],
)
async def test_accept_language_picks_the_page_language(
    client: Any, app: Any, batch: int, header: str, picked: str | None
) -> None:
    assert from_accept_language(header) == picked
    serial, _ = unit(app, batch, 3)
    page = assert_page(await client.get(f"/c/{serial}", headers={"Accept-Language": header}))
    assert '<html lang="en">' in page if picked == "en" else '<html lang="zh-CN">' in page


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_not_genuine_codes_get_the_friendly_message_and_no_form(
    client: Any, login: Any, demo: Any, app: Any, batch: int, lang: str
) -> None:
    scheme = app.state.scheme
    serial, _ = unit(app, batch, 4)
    forged = serial[:-1] + ("0" if serial[-1] != "0" else "1")
    issued = await client.post(
        "/batches",
        headers=await login("planner"),
        json={"size": 3, "printer_id": demo["PRINTER-SH"]},
    )
    never_activated = scheme.serial(issued.json()["batch_no"], 0)
    expected = {"zh": "不是正品码", "en": "It is not a genuine code"}[lang]
    for code in (forged, scheme.serial(batch, 10_000), never_activated):
        page = assert_page(await client.get(f"/c/{code}", params={"lang": lang}))
        assert result_of(page) == "not_genuine", code
        assert expected in text_of(page) and not has_pin_form(page)
        assert {"zh": "非正品码", "en": "Not genuine"}[lang] in text_of(page)
    # the form posted for a forged code answers the same, without a form
    page = assert_page(await post_pin(client, forged, "123456", lang))
    assert result_of(page) == "not_genuine" and not has_pin_form(page)


async def test_a_voided_batch_is_not_genuine(client: Any, login: Any, demo: Any, app: Any) -> None:
    batch_no = await activated_batch(client, login, demo, size=3)
    await client.post(
        f"/batches/{batch_no}/void", headers=await login("planner"), json={"reason": "recall"}
    )
    app.state.verifier._batches.clear()
    serial, _ = unit(app, batch_no, 0)
    page = assert_page(await client.get(f"/c/{serial}", params={"lang": "en"}))
    assert result_of(page) == "not_genuine" and "voided" in text_of(page)
    assert not has_pin_form(page)


@pytest.mark.parametrize(("lang", "words"), [("zh", "无法识别"), ("en", "cannot be read")])
async def test_a_malformed_serial_is_a_friendly_400_page(
    client: Any, lang: str, words: str
) -> None:
    for bad in ("NOT-A-SERIAL", "%3Cscript%3E", "X" * 600):
        response = await client.get(f"/c/{bad}", params={"lang": lang})
        page = assert_page(response, 400)
        assert words in text_of(page) and not has_pin_form(page)
        assert "<script>" not in page.replace("<script>for(", "")  # only our own script
    posted = await post_pin(client, "NOT-A-SERIAL", "123456", lang)
    assert words in text_of(assert_page(posted, 400))


@pytest.mark.parametrize(
    ("lang", "headline", "scan"),
    [("zh", "无法识别该码", "扫描"), ("en", "Code not recognised", "scan")],
)
async def test_a_link_cut_short_or_with_a_stray_character_is_not_called_not_genuine(
    client: Any, app: Any, batch: int, lang: str, headline: str, scan: str
) -> None:
    """A probe: a genuine pack's link, cut short by a chat app or with the full stop of the
    sentence it was pasted in (``…/c/{serial}。``), is a malformed serial: the page answered 400
    with the verdict "✕ 非正品码" / "✕ Not genuine" above "防伪码格式不正确，请核对后重新输入" — a
    counterfeit verdict for a code nobody could read, and "type it again" on a page with nowhere
    to type it. Now a neutral "code not recognised" (``data-result="unreadable"``) and the
    advice to scan the QR code again; the PIN form posted to it answers the same."""
    serial, pin = unit(app, batch, 6)
    for path in (f"/c/{serial}%E3%80%82", f"/c/{serial}.", f"/c/{serial[:-2]}"):
        page = assert_page(await client.get(path, params={"lang": lang}), 400)
        text = text_of(page)
        assert result_of(page) == "unreadable", (path, text)
        assert headline in text and scan in text, text
        assert "非正品" not in text and "Not genuine" not in text and "不是正品" not in text, text
        assert not has_pin_form(page)
    posted = assert_page(await post_pin(client, serial[:-2], pin, lang), 400)
    assert result_of(posted) == "unreadable" and headline in text_of(posted)


async def test_a_link_with_a_character_the_edge_refuses_is_a_page_to_a_browser(
    client: Any, app: Any, batch: int
) -> None:
    """A probe: a scanned link with an invisible directional mark a chat app left on it (U+202C
    after the serial, or in a campaign's query parameter) is refused by the request layer's
    edge check before routing (400 ``invalid_character``), which shaped its answer for the
    EPCIS paths only: a phone's browser got routing's English JSON, without the pages' CSP,
    nosniff or no-referrer, on ``/c/``, ``/p/`` and ``/01/…/21/…`` alike. Now the 400 "code not
    recognised" page in the visitor's language with the pages' headers (on the member pages,
    the error page); an API client, and the API's own paths, keep the JSON error."""
    serial, _ = unit(app, batch, 8)
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    for lang, headline in (("zh", "无法识别该码"), ("en", "Code not recognised")):
        accept = {"Accept": browser, "Accept-Language": "zh-CN" if lang == "zh" else "en-US"}
        for link in (
            f"/c/{serial}%E2%80%AC",
            f"/c/{serial}?from=wechat%E2%80%AC",
            f"/01/06901234000023/21/{serial}%E2%80%AC",
            "/p/06901234000023%E2%80%AC",
        ):
            answer = await client.get(link, headers=accept)
            page = assert_page(answer, 400)
            assert headline in text_of(page) and result_of(page) == "unreadable", (link, page)
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"] == "no-referrer"
            assert "Accept" in answer.headers["vary"]
    for link in ("/member/login?brand=1%E2%80%AC", "/member?x=%E2%80%AC"):
        member = await client.get(link, headers={"Accept": browser})
        assert "出错了" in text_of(assert_page(member, 400)), link
    for link, accept in (
        (f"/c/{serial}%E2%80%AC", {}),
        (f"/c/{serial}%E2%80%AC", {"Accept": "application/json"}),
        ("/01/06901234000023?x=%E2%80%AC", {"Accept": "*/*"}),
        ("/products?q=%E2%80%AC", {"Accept": browser}),  # the API's: JSON
        ("/members/me?x=%E2%80%AC", {"Accept": browser}),
    ):
        refused = await client.get(link, headers=accept)
        assert refused.status_code == 400, (link, refused.text)
        assert refused.json()["error"]["code"] == "invalid_character", (link, refused.text)


async def test_unknown_addresses_of_the_consumer_pages_are_pages_not_json(
    client: Any, app: Any, batch: int
) -> None:
    """A probe: a link to the consumer pages cut short by a chat app (``/c/``), a member page
    address typed wrong (``/member/point``), a scan link with something appended after the
    serial (``/c/{serial}/x``) answered routing's English JSON 404 to a phone's browser, with no
    way back to the pages. Now a 404 page in the visitor's language."""
    serial, _ = unit(app, batch, 7)
    for path, lang, words in (
        ("/c/", "zh", "重新扫描"),
        ("/member/point", "en", "scan the QR code"),
        (f"/c/{serial}/x", "zh", "重新扫描"),
        ("/p/", "en", "No such page"),
    ):
        accept = {"Accept-Language": "zh-CN,zh;q=0.9" if lang == "zh" else "en-US,en;q=0.9"}
        page = assert_page(await client.get(path, headers=accept), 404)
        assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in page, (path, page[:200])
        assert words in text_of(page), (path, text_of(page))
    assert (await client.get(f"/c/{serial}")).status_code == 200  # the pages themselves stay


# -- the PIN answer ------------------------------------------------------------------------------


async def test_right_pin_genuine_first_then_repeat_with_time_and_place(
    client: Any, app: Any, batch: int
) -> None:
    serial, pin = unit(app, batch, 5)
    response = await post_pin(client, serial, pin)
    page = assert_page(response)
    assert response.headers["cache-control"] == "no-store"
    text = text_of(page)
    assert result_of(page) == "genuine" and "✓ 正品" in text
    assert "这是该防伪码第一次被查询" in text and "Sun Cream SPF50 防晒霜" in text
    assert not has_pin_form(page)
    first_at = TIME.search(text)
    assert first_at and "查询次数 1" in text and "首次查询地点 未知地区" in text
    again = text_of(assert_page(await post_pin(client, serial, pin, "en")))
    assert "This product is genuine" in again and "checked 2 times" in again
    assert f"first on {first_at.group(0)} in an unknown place" in again
    assert "Times checked 2" in again


async def test_repeat_queries_past_the_threshold_warn_of_a_copy(
    client: Any, app: Any, batch: int, pages_verifier: Swap
) -> None:
    pages_verifier(verify_repeat_threshold=1)
    serial, pin = unit(app, batch, 6)
    assert result_of((await post_pin(client, serial, pin)).text) == "genuine"
    page = assert_page(await post_pin(client, serial, pin))
    assert result_of(page) == "suspicious"
    assert "警告" in text_of(page) and "很可能已被复制" in text_of(page)
    # scanning again also warns, and still offers the form
    scan = assert_page(await client.get(f"/c/{serial}", params={"lang": "en"}))
    assert result_of(scan) == "suspicious" and "probably been copied" in text_of(scan)
    assert has_pin_form(scan)


async def test_never_shipped_units_are_suspicious(
    client: Any, app: Any, batch: int, pages_verifier: Swap
) -> None:
    pages_verifier(verify_flag_never_shipped=True)
    serial, pin = unit(app, batch, 7)
    page = assert_page(await post_pin(client, serial, pin, "en"))
    assert result_of(page) == "suspicious" and "! Caution" in text_of(page)
    assert "never shipped" in text_of(page)


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_wrong_pins_then_lockout(
    client: Any, app: Any, batch: int, pages_verifier: Swap, lang: str
) -> None:
    pages_verifier(pin_max_failures=3, pin_lockout_seconds=600)
    serial, pin = unit(app, batch, 8 if lang == "zh" else 9)
    bad = wrong_pin(pin)
    words = {
        "zh": ("验证码错误", "还可尝试 2 次", "还可尝试 1 次", "已暂时锁定", "10 分钟"),
        "en": ("Wrong PIN", "attempts left: 2", "attempts left: 1", "locked", "10 min"),
    }[lang]
    first = assert_page(await post_pin(client, serial, bad, lang))
    assert result_of(first) == "wrong_pin" and words[0] in text_of(first)
    assert words[1] in text_of(first)
    assert has_pin_form(first)  # the form comes back
    assert "Sun Cream" in text_of(first)
    second = assert_page(await post_pin(client, serial, bad, lang))
    assert words[2] in text_of(second) and has_pin_form(second)
    locked = await post_pin(client, serial, bad, lang)
    page = assert_page(locked)
    assert result_of(page) == "locked" and words[3] in text_of(page) and words[4] in text_of(page)
    assert not has_pin_form(page)
    assert 590 <= int(locked.headers["retry-after"]) <= 600
    # the right PIN waits too, and so does the scan page
    assert result_of((await post_pin(client, serial, pin, lang)).text) == "locked"
    scan = assert_page(await client.get(f"/c/{serial}", params={"lang": lang}))
    assert result_of(scan) == "locked" and not has_pin_form(scan)


async def test_a_badly_typed_pin_is_a_friendly_400_and_costs_no_attempt(
    client: Any, app: Any, batch: int, pages_verifier: Swap
) -> None:
    pages_verifier(pin_max_failures=3)
    serial, pin = unit(app, batch, 11)
    for typed in ("12ab56", "123", "", "1" * 30):
        response = await post_pin(client, serial, typed, "en")
        page = assert_page(response, 400)
        assert "The PIN is 6 digits" in text_of(page) and has_pin_form(page)
        assert "Sun Cream" in text_of(page)
    missing = await client.post(f"/c/{serial}", content=b"", headers={"Accept": "*/*"})
    assert "验证码应为 6 位数字" in text_of(assert_page(missing, 400))
    # none of those spent an attempt: the first wrong PIN still leaves two
    page = assert_page(await post_pin(client, serial, wrong_pin(pin), "en"))
    assert "attempts left: 2" in text_of(page)
    # full-width digits and spaces, as some phone keyboards type them, are the PIN
    full_width = " ".join(pin).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert result_of(assert_page(await post_pin(client, serial, full_width))) == "genuine"


async def test_a_form_with_too_many_fields_is_a_400_page_and_costs_no_attempt(
    client: Any, app: Any, batch: int, pages_verifier: Swap
) -> None:
    """The defect: 11 fields or more crashed the page (parse_qs's ValueError, a 500)."""
    pages_verifier(pin_max_failures=3)
    serial, pin = unit(app, batch, 12)
    flood = {f"f{i}": "1" for i in range(30)} | {"pin": wrong_pin(pin), "lang": "en"}
    assert_page(await client.post(f"/c/{serial}", data=flood), 400)
    page = assert_page(await post_pin(client, serial, wrong_pin(pin), "en"))
    assert "attempts left: 2" in text_of(page)  # the flood spent none
    # a repeated field counts its first value, as a browser sends one
    twice = await client.post(
        f"/c/{serial}",
        content=f"pin={pin}&pin=000000&lang=en".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert result_of(assert_page(twice)) == "genuine"


async def test_rate_limited_pages_are_429_with_retry_after(
    client: Any, app: Any, batch: int, pages_verifier: Swap
) -> None:
    redis, ns = app.state.redis, app.state.settings.redis_namespace

    async def clear() -> None:
        keys = [k async for k in redis.scan_iter(match=f"{ns}:rl:*")]
        if keys:
            await redis.delete(*keys)

    pages_verifier(verify_rate_limit=2)
    await within_one_minute()  # the four pages are counted in one clock minute
    await clear()
    try:
        serial, pin = unit(app, batch, 12)
        for _ in range(2):
            assert_page(await client.get(f"/c/{serial}"))
        for response in (
            await client.get(f"/c/{serial}", params={"lang": "en"}),
            await post_pin(client, serial, pin, "en"),
        ):
            page = assert_page(response, 429)
            assert 1 <= int(response.headers["retry-after"]) <= 60
            assert "Too many checks" in text_of(page) and not has_pin_form(page)
    finally:
        await clear()


# -- the product page ----------------------------------------------------------------------------


@pytest.mark.parametrize("gtin", ["6901234000023", "06901234000023"])
async def test_product_page_by_gtin(client: Any, demo: Any, gtin: str) -> None:
    response = await client.get(f"/p/{gtin}")
    page = assert_page(response)
    text = text_of(page)
    assert (
        "Sun Cream SPF50 防晒霜" in text
        and "规格 30 ml" in text
        and "商品条码 06901234000023" in text
    )
    assert "品牌" in text
    assert response.headers["cache-control"] == "public, max-age=300"
    chosen = await client.get(f"/p/{gtin}", params={"lang": "en"})
    english = text_of(assert_page(chosen))
    assert "Size 30 ml" in english and "GTIN 06901234000023" in english
    # it sets the language cookie: no shared cache may hand that to the next visitor
    assert "tc_lang=en" in chosen.headers["set-cookie"]
    assert chosen.headers["cache-control"] == "private, max-age=300"
    assert f'href="/p/{gtin}?lang=en"' in page
    # the way to the brand's other products and its story (W1)
    brand = demo["BRAND-LUMI"]
    assert f'href="/brand/products?brand={brand}"' in page
    assert f'href="/brand/story?brand={brand}"' in page


async def test_product_page_shows_the_descriptive_fields(client: Any, login: Any) -> None:
    product = await new_product(
        client,
        login,
        name="Night Serum 夜间精华",
        spec="50 ml",
        product_type="serum",
        colour_no="N01",
        efficacy="Repairs overnight 修护",
        image_url="https://img.example.com/serum.png",
        video_url="https://video.example.com/serum.mp4",
    )
    page = assert_page(await client.get(f"/p/{product['gtin']}", headers={"Accept-Language": "en"}))
    text = text_of(page)
    for part in (
        "Night Serum 夜间精华",
        "Size 50 ml",
        "Type serum",
        "Shade N01",
        "Repairs overnight",
    ):
        assert part in text
    assert '<img src="https://img.example.com/serum.png" alt="Night Serum 夜间精华">' in page
    assert 'href="https://video.example.com/serum.mp4"' in page
    assert len(page.encode()) <= MAX_PAGE  # images are linked, never inlined


async def test_unknown_unpublished_and_malformed_gtins_are_friendly_pages(
    client: Any, login: Any
) -> None:
    page = assert_page(await client.get("/p/6901234999990"), 404)
    assert "未找到该商品条码对应的产品" in text_of(page)
    hidden = await new_product(client, login, published=False)
    page = assert_page(await client.get(f"/p/{hidden['gtin']}", params={"lang": "en"}), 404)
    assert "There is no product with this GTIN" in text_of(page)
    for bad in ("6901234000024", "abc", "1" * 30):
        page = assert_page(await client.get(f"/p/{bad}", params={"lang": "en"}), 400)
        assert "not a valid GTIN" in text_of(page)


async def test_the_product_pages_of_an_organisation_turned_off_are_404_pages(
    client: Any, login: Any
) -> None:
    """A probe: a brand the platform operator turned off (``POST /orgs/{id}/deactivate``) had
    its list, story and sign-in pages answer 404, but its products' pages ``/p/{gtin}`` stayed
    public (naming the brand, linking to its 404 pages). Now a product of an organisation
    turned off — the brand, or one above the product's owner (turning an agent off turns off
    its subtree) — is as unpublished: the 404 page, and off the brand's list; back on, back."""
    platform = await login("platform")
    brand, admin = await onboarded_brand(client, login)
    tag = secrets.token_hex(4).upper()
    agent = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "agent",
            "name": f"Agent {tag}",
            "erp_code": f"AG-{tag}",
            "parent_id": brand["id"],
        },
    )
    assert agent.status_code == 201, agent.text
    gtins = {}
    for owner in ("brand", "agent"):
        body = "59" + "".join(str(secrets.randbelow(10)) for _ in range(10))
        gtin = body + str(gs1_check_digit(body))
        made = {"name": f"Cream of the {owner}", "product_no": f"{owner}-{tag}", "gtin": gtin}
        made |= {"published": True} | ({"org_id": agent.json()["id"]} if owner == "agent" else {})
        answer = await client.post("/products", headers=admin, json=made)
        assert answer.status_code == 201, answer.text
        gtins[owner] = gtin

    async def shown() -> dict[str, int]:
        return {
            owner: (await client.get(f"/p/{gtin}", params={"lang": "en"})).status_code
            for owner, gtin in gtins.items()
        }

    listed = {"brand": brand["id"], "lang": "en"}
    assert await shown() == {"brand": 200, "agent": 200}
    off = await client.post(f"/orgs/{agent.json()['id']}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    assert await shown() == {"brand": 200, "agent": 404}
    page = assert_page(await client.get(f"/p/{gtins['agent']}", params={"lang": "en"}), 404)
    assert "There is no product with this GTIN" in text_of(page)
    listing = assert_page(await client.get("/brand/products", params=listed))
    assert gtins["brand"] in listing and gtins["agent"] not in listing
    off = await client.post(f"/orgs/{brand['id']}/deactivate", headers=platform)
    assert off.status_code == 200, off.text
    assert await shown() == {"brand": 404, "agent": 404}
    back = await client.post(f"/orgs/{brand['id']}/activate", headers=platform)
    assert back.status_code == 200, back.text
    assert await shown() == {"brand": 200, "agent": 404}


# -- escaping and weight -------------------------------------------------------------------------


async def test_product_fields_are_escaped(client: Any, login: Any, demo: Any, app: Any) -> None:
    evil = "<script>alert(1)</script>"
    product = await new_product(
        client,
        login,
        name=evil,
        spec='"><img src=x onerror=alert(2)>',
        efficacy="<b>bold</b>",
        image_url='https://img.example.com/a.png?"onerror="alert(3)',
    )
    batch_no = await activated_batch(client, login, demo, product_id=product["id"], size=2)
    serial, pin = unit(app, batch_no, 0)
    pages = [
        (await client.get(f"/c/{serial}")).text,
        (await post_pin(client, serial, pin)).text,
        (await post_pin(client, serial, wrong_pin(pin))).text,
        (await client.get(f"/p/{product['gtin']}")).text,
    ]
    for page in pages:
        assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert page.count("<script") == 1  # ours, the double-submit guard
        assert "<img src=x" not in page and "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
        assert '"onerror="' not in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in pages[3]


async def test_every_page_is_small_and_the_form_posts_to_itself(
    client: Any, app: Any, batch: int
) -> None:
    serial, pin = unit(app, batch, 13)
    responses = [
        await client.get(f"/c/{serial}"),
        await post_pin(client, serial, wrong_pin(pin)),
        await post_pin(client, serial, pin, "en"),
        await client.get("/p/6901234000023"),
        await client.get("/c/NOT-A-SERIAL"),
        await client.get("/p/6901234999990"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 400, 404]
    for response in responses:
        assert len(response.content) <= MAX_PAGE
        assert len(response.content) < 12 * 1024  # today's size, so growth is noticed
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert re.search(r"<script>[^<]*</script>", response.text)  # the hashed inline script


async def test_the_scan_page_and_the_answer_weigh_about_3_kb_on_the_wire(
    client: Any, app: Any, batch: int
) -> None:
    """A probe: README, "about 3 KB a page", but the scan page of an activated unit was ~4.9 KB
    on the wire and the genuine answer ~4.6 KB, even to a phone that sends ``Accept-Encoding:
    gzip``: the pages were never compressed. Now a page over 1 KB is gzip-compressed for a client
    that accepts it (``console.accepts_gzip``, as the console's files), ``Vary: Accept-Encoding``
    beside the pages' own; a client refusing gzip (``q=0``) gets the page as it is."""
    serial, pin = unit(app, batch, 1)
    gz = {"Accept-Encoding": "gzip"}
    scan = await client.get(f"/c/{serial}", headers=gz)
    assert has_pin_form(assert_page(scan))
    answer = await post_pin(client, serial, pin, headers=gz)
    assert result_of(assert_page(answer)) == "genuine"
    for response in (scan, answer):
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["vary"] == "Accept-Language, Cookie, Accept-Encoding"
        assert response.num_bytes_downloaded <= 3584, response.num_bytes_downloaded
        assert len(response.content) > 4096  # the page itself is bigger
    refused = await client.get(f"/c/{serial}", headers={"Accept-Encoding": "br, gzip;q=0"})
    assert_page(refused)
    assert "content-encoding" not in refused.headers
    assert refused.num_bytes_downloaded == len(refused.content) > 4096


async def test_the_json_api_is_unchanged_beside_the_pages(
    client: Any, app: Any, batch: int
) -> None:
    serial, _ = unit(app, batch, 14)
    answer = await client.post("/v1/verify", json={"serial": serial})
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["reason"] == "pin_required"
    missing = await client.get("/v1/no-such-route")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_an_oversized_form_is_a_friendly_413_page(client: Any, app: Any, batch: int) -> None:
    serial, _ = unit(app, batch, 15)
    response = await client.post(f"/c/{serial}", data={"pin": "1" * 5000, "lang": "en"})
    page = assert_page(response, 413)
    assert result_of(page) == "error" and "请求无法处理" in text_of(page)  # the form went unread


async def test_the_pin_form_sent_again_is_not_counted_again(
    client: Any, app: Any, batch: int, settings: Any
) -> None:
    """A probe: a browser's retry or a reload of the answer counted the consumer's one check
    twice ("queried 2 times … beware"), a few more "probably copied". The form's own check is
    the verification's retry key, for ten minutes; a new form is a new check."""
    from app.ops.rebuild import retry_key

    serial, pin = unit(app, batch, 2)
    page = assert_page(await client.get(f"/c/{serial}"))
    check = re.search(r'name="check" value="([0-9a-f]{24})"', page)
    assert check is not None, page
    form = {"pin": pin, "lang": "zh", "check": check.group(1)}
    first = assert_page(await client.post(f"/c/{serial}", data=form))
    assert result_of(first) == "genuine" and "第一次被查询" in text_of(first)
    for _ in range(3):
        again = assert_page(await client.post(f"/c/{serial}", data=form))
        assert result_of(again) == "genuine" and "查询次数 1" in text_of(again)
    batch_no, index, _ = app.state.scheme.verify(serial)
    key = retry_key(settings.redis_namespace, (batch_no << 32) | index, f"h5:{check.group(1)}")
    assert 590 < await app.state.redis.ttl(key) <= 600
    # the genuine answer has no PIN form (its language switch sends this one again): the next
    # check is a new page
    assert 'class="pin"' not in first
    page_of_new_form = assert_page(await client.get(f"/c/{serial}"))
    new = re.search(r'name="check" value="([0-9a-f]{24})"', page_of_new_form)
    assert new is not None and new.group(1) != check.group(1)
    later = assert_page(await client.post(f"/c/{serial}", data={**form, "check": new.group(1)}))
    assert "查询次数 2" in text_of(later)
    # a check that is none of ours is no retry key: counted
    odd = assert_page(await client.post(f"/c/{serial}", data={**form, "check": "x" * 24}))
    assert "查询次数 3" in text_of(odd)
    # the language switch of an answer sends its form again; of a wrong PIN, never
    switch = re.search(r'<form class="switch" method="post" action="([^"]*)">(.*?)</form>', later)
    assert switch is not None and switch.group(1) == f"/c/{serial}"
    sent = dict(re.findall(r'name="(\w+)" value="([^"]*)"', switch.group(2)))
    assert sent == {"pin": pin, "check": new.group(1), "switch": "1", "lang": "en"}
    assert 'id="lang-switch" href' in odd  # no check of ours: the plain link
    wrong = assert_page(await client.post(f"/c/{serial}", data={**form, "pin": wrong_pin(pin)}))
    assert '<form class="switch"' not in wrong and 'id="lang-switch" href' in wrong


async def test_a_database_out_of_reach_is_a_503_page_as_it_is_a_503_answer(
    client: Any, app: Any, monkeypatch: Any
) -> None:
    """A probe: the pages answered 500 ("consumer page failed") where the JSON API answers 503
    to try again shortly (the pool out of connections, a query cancelled)."""
    from psycopg_pool import PoolTimeout

    async def busy(*_: Any, **__: Any) -> Any:  # every connection of the pool taken
        raise PoolTimeout("couldn't get a connection after 5.00 sec")

    monkeypatch.setattr(app.state.pool, "getconn", busy)
    page = await client.get("/p/6901234000023")
    api = await client.get("/products")
    monkeypatch.undo()
    assert api.status_code == 503, api.text
    assert_page(page, 503)
    assert page.headers["retry-after"] == "5"


async def test_a_consumer_page_failure_is_logged_with_method_path_and_route(
    client: Any, monkeypatch: Any
) -> None:
    """A probe: the pages' error handler (``html_error``) logged an unexpected failure as
    "consumer page failed" with the traceback only, no method, path or route (README: errors
    are logged "with their method, path and route"). Now with them, the route a template."""
    import app.web.pages as pages
    from tests.test_front import captured_log, lines

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the product query failed")

    monkeypatch.setattr(pages, "published_product", broken)
    with captured_log() as log:
        page = await client.get("/p/06901234000023", headers={"X-Request-ID": "page-1"})
    assert_page(page, 500)
    (error,) = [e for e in lines(log, "tracecode.web") if e.get("request_id") == "page-1"]
    assert (error["level"], error["msg"]) == ("ERROR", "consumer page failed")
    assert (error["method"], error["path"], error["route"]) == (
        "GET",
        "/p/06901234000023",
        "/p/{gtin}",
    )
    assert "RuntimeError: the product query failed" in error["exc"]


async def test_the_language_switch_of_an_answer_read_after_its_check_expired_counts_nothing(
    client: Any, app: Any, batch: int, settings: Any
) -> None:
    """A probe: the switch of an answer left open past its check's ten minutes sent the PIN
    again, its retry key gone: "checked 2 times". Past them (the check carries its time) the
    switch leads to the scan page, as the plain link did, and counts nothing."""
    import time

    from app.ops.rebuild import retry_key

    serial, pin = unit(app, batch, 3)
    check = f"{int(time.time()) - 700:08x}{'ab' * 8}"  # a form made eleven minutes ago
    first = assert_page(
        await client.post(f"/c/{serial}", data={"pin": pin, "lang": "zh", "check": check})
    )
    assert result_of(first) == "genuine" and "第一次被查询" in text_of(first)
    switch = re.search(r'<form class="switch" method="post" action="([^"]*)">(.*?)</form>', first)
    assert switch is not None
    sent = dict(re.findall(r'name="(\w+)" value="([^"]*)"', switch.group(2)))
    assert sent == {"pin": pin, "check": check, "switch": "1", "lang": "en"}
    batch_no, index, _ = app.state.scheme.verify(serial)
    key = retry_key(settings.redis_namespace, (batch_no << 32) | index, f"h5:{check}")
    assert await app.state.redis.delete(key) == 1  # its ten minutes are over
    later = assert_page(await client.post(switch.group(1), data=sent))
    assert result_of(later) == "pin_required" and 'class="pin"' in later  # the scan page
    assert 'lang="en"' in later
    again = assert_page(await post_pin(client, serial, pin, "en"))
    assert "checked 2 times" in text_of(again)  # the next check is the second, no more


async def test_the_pin_form_refuses_a_post_from_another_site(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: ``POST /c/{serial}`` took a form posted from any site, so a hostile page could
    have each visitor's browser spend wrong PINs on a brand's codes from the visitor's own
    address, locking genuine packs. A post whose ``Origin`` names another host is a 403 page
    and spends no attempt; an opaque ``null`` Origin (the pages' own, under ``no-referrer``)
    passes, as on the member and clerk forms (``session.check_origin``)."""
    batch_no = await activated_batch(client, login, demo, size=2)
    serial, pin = unit(app, batch_no, 0)
    async with member_client(app) as phone:  # an address of its own: the per-client lockout
        evil = {"Origin": "https://evil.example"}
        posted = await phone.post(
            f"/c/{serial}", data={"pin": wrong_pin(pin), "lang": "en"}, headers=evil
        )
        own = await phone.post(
            f"/c/{serial}", data={"pin": wrong_pin(pin), "lang": "en"}, headers={"Origin": "null"}
        )
    assert "页面已过期" in text_of(assert_page(posted, 403))  # the page, not the JSON error
    left = re.search(r"attempts left: (\d)", text_of(own.text))
    assert left is not None, text_of(own.text)
    assert int(left.group(1)) == app.state.settings.pin_max_failures - 1


async def test_a_form_posted_from_a_hostile_page_with_an_opaque_origin_is_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a hostile page under ``<meta name="referrer" content="no-referrer">`` (or in a
    sandboxed frame) has its visitors' browsers post wrong PINs to ``POST /c/{serial}`` with
    ``Origin: null``, which ``session.check_origin`` let through as the pages' own: a wrong PIN
    was answered and an attempt spent. The browser says where the post comes from,
    ``Sec-Fetch-Site: cross-site`` (``same-site``: a sibling host, none of the pages' own either):
    a 403 page, no attempt spent; the pages' own ``null`` (``same-origin``) passes. The member
    and clerk forms follow the same rule."""
    batch_no = await activated_batch(client, login, demo, size=2)
    serial, pin = unit(app, batch_no, 0)
    hostile = {"Origin": "null", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    sibling = {"Origin": "null", "Sec-Fetch-Site": "same-site"}
    own = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    wrong = {"pin": wrong_pin(pin), "lang": "en"}
    async with member_client(app) as phone:  # an address of its own: the per-client lockout
        posted = await phone.post(f"/c/{serial}", data=wrong, headers=hostile)
        from_sibling = await phone.post(f"/c/{serial}", data=wrong, headers=sibling)
        answered = await phone.post(f"/c/{serial}", data=wrong, headers=own)
        sign_in = await phone.get("/member/login", params={"brand": demo["BRAND-LUMI"]})
        token = re.search(r'name="csrf" value="([^"]*)"', sign_in.text)
        assert token is not None
        otp = {"csrf": token.group(1), "brand": demo["BRAND-LUMI"], "phone": "13800000000"}
        member_posts = [
            await phone.post("/member/otp", data=otp, headers=headers)
            for headers in (hostile, sibling)
        ]
        clerk = {"csrf": token.group(1), "username": "store_clerk", "password": "not-it"}
        clerk_posts = [
            await phone.post("/clerk/login", data=clerk, headers=headers)
            for headers in (hostile, sibling, own)
        ]
    expired = re.compile("页面已过期|This page has expired")
    assert not expired.search(text_of(answered.text))
    for refused in (posted, from_sibling, *member_posts, *clerk_posts[:2]):
        assert expired.search(text_of(assert_page(refused, 403)))
    left = re.search(r"attempts left: (\d)", text_of(answered.text))
    assert left is not None, text_of(answered.text)
    assert int(left.group(1)) == app.state.settings.pin_max_failures - 1  # only its own spent
    assert clerk_posts[2].status_code == 401  # the clerk's own post: a wrong password


async def test_the_scan_page_of_an_unpublished_product_links_to_no_missing_page(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the scan page linked "Product details" to ``/p/{gtin}`` for an unpublished
    product too, whose page is 404 (README "GS1 resolver": an unpublished product has no public
    page). The answer links a published product's page only, and the link opens a page."""
    hidden = await new_product(client, login, name="Unlisted 未上架", published=False)
    batch_no = await activated_batch(client, login, demo, product_id=hidden["id"], size=1)
    serial, pin = unit(app, batch_no, 0)
    for response in (
        await client.get(f"/c/{serial}", params={"lang": "en"}),
        await post_pin(client, serial, pin, "en"),
    ):
        page = assert_page(response)
        assert "Unlisted" in text_of(page) and 'href="/p/' not in page
    shown = await new_product(client, login, name="Listed 已上架")
    batch_no = await activated_batch(client, login, demo, product_id=shown["id"], size=1)
    serial, pin = unit(app, batch_no, 0)
    page = assert_page(await post_pin(client, serial, pin, "en"))
    link = re.search(r'href="(/p/[^"]*)"', page)
    assert link is not None, text_of(page)
    assert_page(await client.get(link.group(1), params={"lang": "en"}))


# -- browser-facing security of the pages ------------------------------------------------------


@contextmanager
def configured(app: Any, **changes: Any) -> Iterator[None]:
    """The app's settings with ``changes`` (``TRACECODE_…``) for the length of a block."""
    original = app.state.settings
    app.state.settings = msgspec.structs.replace(original, **changes)
    try:
        yield
    finally:
        app.state.settings = original


def browser(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    """A client with an address and cookies of its own (``base_url``: its scheme and Host)."""
    transport = httpx.ASGITransport(app=app, client=(new_ip(), 40000))
    return httpx.AsyncClient(transport=transport, base_url=base_url, timeout=60)


@pytest.mark.parametrize(
    "path",
    ["/p/6901234000023?lang=en", "/clerk/login?lang=en", "/c/ABC?lang=en", "/member/login?lang=en"],
)
async def test_the_language_cookie_is_secure_over_https(
    app: Any, client: Any, demo: Any, path: str
) -> None:
    """A probe: a visitor on https who tapped the language switch (``?lang=en``) got the
    ``tc_lang`` cookie without ``Secure``, while every other cookie of the pages is Secure over
    https (``session.secure``: an https request, or ``TRACECODE_PUBLIC_SCHEME=https`` behind a
    proxy that speaks http to us); a network attacker could plant or read it over plain http."""
    async with browser(app, "https://testserver") as h:
        over_https = await h.get(path)
    with configured(app, public_scheme="https"):
        async with browser(app) as h:
            behind_proxy = await h.get(path)
    async with browser(app) as h:
        plain = await h.get(path)
    for response in (over_https, behind_proxy, plain):
        lang = [c for c in response.headers.get_list("set-cookie") if c.startswith("tc_lang=en;")]
        assert len(lang) == 1, response.headers
        assert "HttpOnly" in lang[0] and "samesite=lax" in lang[0].lower()
        assert ("Secure" in lang[0]) is (response is not plain), lang[0]


async def test_pages_served_over_https_load_no_picture_over_http(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the catalogue takes ``http://`` picture URLs (``image_url``, a gift's
    ``picture_url``) and the pages put them as they are into ``<img src>``, under a CSP of
    ``img-src https: http: data:``. Served over https (``TRACECODE_PUBLIC_SCHEME=https``, or an
    https request), the scan page, the answer and the product page loaded the picture over
    plain http: mixed content — blocked by Android WebViews, a broken padlock elsewhere, a
    picture any network on the way can swap on the page that tells genuine from fake. Now their
    CSP (the clerk pages' too) upgrades it to https and allows no plain-http picture; over http
    (development) the CSP is as it was."""
    product = await new_product(client, login, image_url="http://img.example.com/sun.png")
    batch_no = await activated_batch(client, login, demo, product_id=product["id"], size=1)
    serial, pin = unit(app, batch_no, 0)
    paths = (f"/c/{serial}", f"/p/{product['gtin']}", "/clerk/login")

    async def pages(h: httpx.AsyncClient) -> list[httpx.Response]:
        answer = await h.post(f"/c/{serial}", data={"pin": pin, "lang": "zh"})
        return [answer, *[await h.get(path) for path in paths]]

    with configured(app, public_scheme="https"):
        async with browser(app, "https://testserver") as h:
            over_https = await pages(h)
        async with browser(app) as h:  # behind a proxy that speaks http to us
            behind_proxy = await pages(h)
    async with browser(app) as h:
        plain = await pages(h)
    for response in over_https + behind_proxy:
        assert response.status_code == 200, response.text[:200]
        csp = response.headers["content-security-policy"]
        assert csp.endswith("; upgrade-insecure-requests") and "img-src https: data:;" in csp
        assert " http:" not in csp, csp
    assert 'src="http://img.example.com/sun.png"' in over_https[0].text  # upgraded by the browser
    for response in plain:
        assert response.status_code == 200, response.text[:200]
        csp = response.headers["content-security-policy"]
        assert "upgrade-insecure-requests" not in csp and "img-src https: http: data:" in csp


async def test_forms_posted_through_a_proxy_that_rewrites_host_are_accepted(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: behind a TLS proxy that passes its upstream as ``Host`` (nginx's default
    ``proxy_set_header Host $proxy_host``: ``127.0.0.1:8000``), a browser's post from the
    public page says ``Origin: https://{public host}``, which ``session.check_origin`` compared
    with ``Host`` alone: every PIN, member and clerk form was a 403 "this page has expired".
    The configured public host (``TRACECODE_RESOLVER_HOST``) is ours too; any other host, or
    the public host on another port, is still refused."""
    batch_no = await activated_batch(client, login, demo, size=2)
    serial, pin = unit(app, batch_no, 0)
    public = {"Origin": "https://id.tracecode.example", "Sec-Fetch-Site": "same-origin"}
    others = [
        {"Origin": "https://evil.example"},
        {"Origin": "https://id.tracecode.example:8443"},
        {"Origin": "https://tracecode.example"},
    ]
    with configured(app, resolver_host="id.tracecode.example"):
        async with browser(app, "http://127.0.0.1:8000") as phone:  # the proxy's upstream
            answered = await post_pin(phone, serial, wrong_pin(pin), "en", headers=public)
            sign_in = await phone.get("/clerk/login")
            token = re.search(r'name="csrf" value="([^"]*)"', sign_in.text)
            assert token is not None
            clerk = {"csrf": token.group(1), "username": "store_clerk", "password": "not-it"}
            member = {"csrf": token.group(1)}
            accepted = [
                await phone.post("/clerk/login", data=clerk, headers=public),
                await phone.post("/member/logout", data=member, headers=public),
            ]
            refused = [
                await phone.post(path, data=form, headers=headers)
                for headers in others
                for path, form in (("/clerk/login", clerk), ("/member/logout", member))
            ]
            refused.append(await post_pin(phone, serial, wrong_pin(pin), "en", headers=others[0]))
    left = re.search(r"attempts left: (\d)", text_of(assert_page(answered)))
    assert left is not None, text_of(answered.text)
    assert int(left.group(1)) == app.state.settings.pin_max_failures - 1  # only its own spent
    assert [r.status_code for r in accepted] == [401, 303]  # a wrong password; signed out
    for response in refused:
        assert "页面已过期" in text_of(assert_page(response, 403))


async def test_the_pages_may_not_be_framed_even_by_old_webviews(
    client: Any, app: Any, batch: int, demo: Any
) -> None:
    """A probe: the scan, product, member and clerk pages forbade framing by CSP's
    ``frame-ancestors 'none'`` alone, which old WebViews ignore (clickjacking the PIN and claim
    forms); they send ``X-Frame-Options: DENY`` too, as ``/schema`` does, error pages included."""
    serial, pin = unit(app, batch, 4)
    async with browser(app) as phone:
        pages = [
            await phone.get(f"/c/{serial}"),
            await post_pin(phone, serial, pin),
            await phone.get("/p/06901234000023"),
            await phone.get("/p/6901234999990"),  # 404
            await phone.head(f"/c/{serial}"),
            await phone.get("/member/login", params={"brand": demo["BRAND-LUMI"]}),
            await phone.get("/clerk/login"),
            await phone.post("/clerk/login", data={}),  # 403, no token
        ]
    for page in pages:
        assert page.headers["content-type"].startswith("text/html"), page.request.url
        assert page.headers.get("x-frame-options") == "DENY", page.request.url
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def _clerk_login_post(phone: Any, headers: dict[str, str]) -> Any:
    sign_in = await phone.get("/clerk/login")
    token = re.search(r'name="csrf" value="([^"]*)"', sign_in.text)
    assert token is not None
    form = {"csrf": token.group(1), "username": "store_clerk", "password": "not-it"}
    return await phone.post("/clerk/login", data=form, headers=headers)


@pytest.mark.parametrize(
    ("configured_host", "origin"),
    [
        # the QR codes read https://id.tracecode.example:443/c/…; a browser's Origin never
        # names the scheme's default port (RFC 6454 4: the default port is omitted)
        ("id.tracecode.example:443", "https://id.tracecode.example"),
        # host names are case-insensitive; a browser's Origin is always lower case
        ("ID.Tracecode.Example", "https://id.tracecode.example"),
    ],
)
async def test_a_post_from_the_public_host_is_ours_however_the_host_setting_is_spelt(
    client: Any, demo: Any, app: Any, configured_host: str, origin: str
) -> None:
    """A probe: behind a proxy that rewrites ``Host`` (the case ``check_origin``'s new
    ``resolver_host`` comparison was made for), a clerk's sign-in posted from the public page
    is refused 403 "this page has expired" when ``TRACECODE_RESOLVER_HOST`` names the host with
    its scheme's default port (``…:443`` with https) or in capitals: the browser's ``Origin``
    is ``https://id.tracecode.example`` (lower case, no default port), compared as a raw string
    with the setting. The user should get the sign-in's own answer (401, a wrong password)."""
    headers = {"Origin": origin, "Sec-Fetch-Site": "same-origin"}
    # (public_scheme stays http: this client talks http to us, and Secure cookies would not
    # come back; the browser talks https to the proxy)
    with configured(app, resolver_host=configured_host):
        async with browser(app, "http://127.0.0.1:8000") as phone:  # the proxy's upstream
            answered = await _clerk_login_post(phone, headers)
    assert answered.status_code == 401, answered.text[-400:]


# -- readable text -------------------------------------------------------------------------------


def _luminance(colour: str) -> float:
    """WCAG 2's relative luminance of ``rrggbb``."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _colour(selector: str, prop: str) -> str:
    """The ``prop`` colour (``#rrggbb``) of the pages' CSS rule for ``selector``."""
    rule = re.search(rf"(?:^|}}|\n){re.escape(selector)}{{([^}}]*)}}", page_html.CSS)
    assert rule, selector
    found = re.search(rf"(?:^|;){prop}:#([0-9a-fA-F]{{6}})", rule.group(1))
    assert found, (selector, prop, rule.group(1))
    return found.group(1)


def test_small_text_on_the_pages_is_readable_in_daylight() -> None:
    """A probe: two kinds of small text on the consumer pages fell below WCAG 2's 4.5:1 contrast
    for normal-size text (1.4.3): the footer (13 px, ``#7b8794`` on the page's ``#f3f5f7``:
    3.35:1) and the points gained on the points history (16 px bold ``.plus``, ``#1f9d55`` on
    white: 3.49:1; bold text is large only from 18.7 px) — hard to read on an old phone's dim
    screen outdoors. Now the hints' ``#52606d`` (5.9:1) and a darker green (``#15803d``)."""
    body = _colour("body", "background")
    assert _contrast(_colour("footer", "color"), body) >= 4.5
    for selector in (".plus", ".minus", ".hint", ".small", "dt"):
        assert _contrast(_colour(selector, "color"), "ffffff") >= 4.5, selector


async def test_a_post_to_an_address_no_page_has_is_404_not_405(client: Any, demo: Any) -> None:
    """A probe (of this session's catch-all 404 pages, GET and HEAD only at first): a POST (or
    PUT, DELETE) to an address no route has under these prefixes was 405
    ``method_not_allowed`` for a resource whose GET answers 404 — a client was told the address
    exists and only the method is wrong. 404 for every method."""
    for method, path in (
        ("POST", "/member/no-such-page"),
        ("POST", "/c/ABCDEFGHJKMNPQRSTVWX/extra"),
        ("DELETE", "/p/06901234000016/extra"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 404, (method, path, response.status_code, response.text)


def test_every_points_ledger_kind_has_its_words() -> None:
    """A review: a member who won a draw's points prize got a 500 on ``/member/points`` — the
    ledger's new kind ``draw`` had no ``kind_draw`` words (``word`` raised KeyError). Every
    ledger kind the API can answer has its words in both languages."""
    from typing import get_args

    from app.members.schemas_points import LedgerKind
    from app.web.i18n import WORDS

    for kind in get_args(LedgerKind):
        assert {"zh", "en"} <= set(WORDS[f"kind_{kind}"]), kind
