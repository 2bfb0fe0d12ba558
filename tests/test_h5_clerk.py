"""The store clerk's rebate pages (issue 16 item 2, seed 1.4) over HTTP on real PostgreSQL and
Redis: sign in with the staff account, scan the outer code, type the PIN, the rebate recorded and
the totals and list updated; and the bad paths — a wrong PIN, a unit of another store, a code
claimed before, malformed and forged codes, posts without their CSRF token, forged tickets,
huge forms and control characters, signed-out and not-a-clerk visitors — each an HTML page with
its status, never a 500.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from html import unescape
from typing import Any

import httpx
import pytest

from app.demo import DEMO_PASSWORD
from app.web.clerk_html import CSP
from tests.h5_support import new_product, result_of, text_of, wrong_pin
from tests.points_support import member_client
from tests.rebates_support import set_rebate, store_goods
from tests.steady import clear_of_midnight
from tests.test_auth import bearer, new_staff
from tests.test_inspect import forge
from tests.test_rebate_claims import code_of

AMOUNT = 3.5
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no {name} field in the page"
    return unescape(found.group(1))


def assert_page(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, (response.status_code, text_of(response.text))
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'sha256-" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    return response.text


def totals(page: str) -> dict[str, tuple[float, int]]:
    """(amount, count) of today, this month and all time, as the page shows them."""
    found = {}
    for key in ("today", "month", "all"):
        box = re.search(rf'id="total-{key}">(.*?)</div>', page, re.S)
        assert box, key
        amount = re.search(r"¥([0-9.]+)", box.group(1))
        count = re.search(r"([0-9]+) (?:件|sold)", text_of(box.group(1)))
        assert amount and count, box.group(1)
        found[key] = (float(amount.group(1)), int(count.group(1)))
    return found


@pytest.fixture(scope="module")
async def goods(client: Any, login: Any, app: Any, demo: Any) -> AsyncIterator[dict[str, Any]]:
    """Case 0 (units 0–9) at STORE-HZ-01, case 1 at AGENT-ZJ, case 2 at the factory; the sun
    cream earns AMOUNT yuan (the units' agent's rule and the default) — the agent's rule deleted
    after the module (it outranks the default later tests of the worker set)."""
    goods = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rebate(client, admin, goods["product_id"], AMOUNT)
    zj = await set_rebate(client, admin, goods["product_id"], AMOUNT, demo["AGENT-ZJ"])
    yield goods
    gone = await client.delete(f"/rebates/rules/{zj['id']}", headers=await login("admin"))
    assert gone.status_code in (204, 404), gone.text


@pytest.fixture
async def phone(app: Any, client: Any, demo: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A clerk's phone: its own address (limits) and cookie jar; the demo's clerks exist (a
    test run alone found none)."""
    async with member_client(app) as mc:
        yield mc


async def sign_in(
    phone: httpx.AsyncClient,
    username: str = "store_clerk",
    password: str = DEMO_PASSWORD,
    code: str = "",
    lang: str = "zh",
) -> httpx.Response:
    params = {"lang": lang, **({"code": code} if code else {})}
    page = assert_page(await phone.get("/clerk/login", params=params))
    assert 'name="username"' in page and 'type="password"' in page
    body = {"csrf": field(page, "csrf"), "username": username, "password": password, "code": code}
    return await phone.post("/clerk/login", data=body)


async def signed_in(phone: httpx.AsyncClient, username: str = "store_clerk") -> None:
    response = await sign_in(phone, username)
    assert response.status_code == 303 and response.headers["location"] == "/clerk", response.text


async def scan(phone: httpx.AsyncClient, code: str, status: int = 200) -> str:
    """Step 1's form: the code; step 2 (or step 1 again with why not)."""
    home = assert_page(await phone.get("/clerk"))
    return assert_page(
        await phone.post("/clerk/scan", data={"csrf": field(home, "csrf"), "code": code}), status
    )


async def claim(phone: httpx.AsyncClient, step2: str, pin: str) -> httpx.Response:
    form = {"csrf": field(step2, "csrf"), "ticket": field(step2, "ticket"), "pin": pin}
    return await phone.post("/clerk/claim", data=form)


async def claims_of(app: Any, code: int) -> int:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM rebate_claims WHERE code_id = %s", (code,)
            )
        ).fetchone()
    return int(row["n"])


# -- the two steps -------------------------------------------------------------------------------


async def test_sign_in_scan_pin_the_rebate_the_totals_and_the_list(
    phone: httpx.AsyncClient, app: Any, goods: dict[str, Any]
) -> None:
    for path in ("/clerk", "/clerk/claims"):
        response = await phone.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/clerk/login"
    response = await sign_in(phone)
    assert response.status_code == 303 and response.headers["location"] == "/clerk"
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("tc_clerk="))
    assert "HttpOnly" in session and "Path=/clerk" in session and "samesite=lax" in session.lower()
    assert "Secure" not in session  # plain http here (https: test below)
    assert any(c.startswith("tc_clerk_refresh=") and "Path=/clerk" in c for c in cookies)

    # today's and this month's totals (Asia/Shanghai) read before and after the claim: the day
    # (and the month, at its end) must not turn between the two
    await clear_of_midnight()
    home = assert_page(await phone.get("/clerk"))
    before = totals(home)
    assert "第一步" in text_of(home) and 'id="code"' in home and "Hangzhou store" not in home
    assert "store_clerk" in text_of(home)  # signed in as

    serial, scheme = goods["units"][0], app.state.scheme
    step2 = await scan(phone, f"https://tc.example/c/{serial}")  # the QR's content
    assert "Sun Cream SPF50" in text_of(step2) and serial in text_of(step2)
    assert "第二步" in text_of(step2) and 'name="pin"' in step2
    assert serial not in field(step2, "ticket")  # sealed

    done = await claim(phone, step2, scheme.pin(serial))
    page = assert_page(done)
    assert result_of(page) == "ok"
    assert f"返利 ¥{AMOUNT:.2f} 已记入您的账户" in text_of(page)
    assert "已同时登记此产品的销售" in text_of(page)
    again = assert_page(await claim(phone, step2, scheme.pin(serial)))  # a second press
    assert result_of(again) == "ok" and f"¥{AMOUNT:.2f}" in text_of(again)
    assert await claims_of(app, code_of(app, serial)) == 1

    after = totals(assert_page(await phone.get("/clerk")))
    for key in ("today", "month", "all"):
        assert after[key] == (before[key][0] + AMOUNT, before[key][1] + 1), key
    listing = assert_page(await phone.get("/clerk/claims"))
    assert serial in text_of(listing) and "Sun Cream SPF50" in text_of(listing)
    assert "未结算" in text_of(listing) and totals(listing) == after
    english = text_of(assert_page(await phone.get("/clerk/claims?lang=en")))
    assert "My rebates" in english and "unsettled" in english and "This month" in english


async def test_a_wrong_pin_shows_the_form_again_and_the_right_one_claims(
    phone: httpx.AsyncClient, app: Any, goods: dict[str, Any]
) -> None:
    await signed_in(phone)
    serial = goods["units"][1]
    pin = app.state.scheme.pin(serial)
    step2 = await scan(phone, serial)
    short = assert_page(await claim(phone, step2, "12"), 400)  # a typo costs no attempt
    assert "验证码应为" in text_of(short) and 'name="pin"' in short
    wrong = assert_page(await claim(phone, step2, wrong_pin(pin)), 422)
    assert re.search(r"验证码错误，还可尝试 \d+ 次", text_of(wrong)), text_of(wrong)
    assert field(wrong, "ticket") == field(step2, "ticket")  # the same claim, the PIN again
    done = assert_page(await claim(phone, wrong, f" {pin[:3]}-{pin[3:]} "))  # spaces forgiven
    assert result_of(done) == "ok"
    assert await claims_of(app, code_of(app, serial)) == 1


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_a_unit_of_another_store_is_refused_naming_its_store(
    lang: str, app: Any, client: Any, goods: dict[str, Any]
) -> None:
    serial = goods["units"][2]
    async with member_client(app) as phone:
        await signed_in(phone, "gz_clerk")
        step2 = await scan(phone, serial)
        form = {
            "csrf": field(step2, "csrf"),
            "ticket": field(step2, "ticket"),
            "pin": app.state.scheme.pin(serial),
            "lang": lang,
        }
        refused = text_of(assert_page(await phone.post("/clerk/claim", data=form), 422))
    if lang == "zh":
        assert "此产品应在「Hangzhou West Lake Store 杭州西湖店」销售" in refused, refused
    else:
        assert "supposed to be sold at Hangzhou West Lake Store 杭州西湖店" in refused, refused
    assert await claims_of(app, code_of(app, serial)) == 0


@pytest.mark.parametrize(
    ("clerk", "unit", "words"),
    [
        # a unit at AGENT-ZJ (case 1), at a store of another agent
        ("gz_clerk", 11, "此产品应由「Zhejiang Agent 浙江代理」的门店销售"),
        # the same, at a store of that agent, but never delivered to it
        ("store_clerk", 12, "此产品未发往本店（记录在「Zhejiang Agent 浙江代理」）"),
    ],
)
async def test_units_not_delivered_to_the_store_are_refused_naming_where_they_are(
    clerk: str, unit: int, words: str, app: Any, client: Any, goods: dict[str, Any]
) -> None:
    serial = goods["units"][unit]
    async with member_client(app) as phone:
        await signed_in(phone, clerk)
        refused = await claim(phone, await scan(phone, serial), app.state.scheme.pin(serial))
        assert words in text_of(assert_page(refused, 422)), text_of(refused.text)
    assert await claims_of(app, code_of(app, serial)) == 0


async def test_too_many_wrong_pins_lock_the_code(
    phone: httpx.AsyncClient, app: Any, goods: dict[str, Any]
) -> None:
    await signed_in(phone)
    serial = goods["units"][7]
    step2 = await scan(phone, serial)
    bad = wrong_pin(app.state.scheme.pin(serial))
    for _ in range(app.state.settings.pin_max_failures):
        response = await claim(phone, step2, bad)
        if response.status_code == 429:
            break
        assert_page(response, 422)
    locked = await claim(phone, step2, app.state.scheme.pin(serial))  # even the right PIN
    page = text_of(assert_page(locked, 429))
    assert int(locked.headers["retry-after"]) > 0
    assert re.search(r"此码已锁定，请 \d+ 分钟后再试", page), page
    assert await claims_of(app, code_of(app, serial)) == 0


async def test_a_code_claimed_before_is_refused_to_the_next_clerk(
    phone: httpx.AsyncClient, app: Any, client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    serial = goods["units"][3]
    pin = app.state.scheme.pin(serial)
    await signed_in(phone)
    assert result_of(assert_page(await claim(phone, await scan(phone, serial), pin))) == "ok"
    admin = await login("admin")
    name = f"clerk-{secrets.token_hex(4)}"
    created = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["STORE-HZ-01"],
            "username": name,
            "password": "Clerk-pass-2026",
            "display_name": name,
            "roles": ["store_clerk"],
        },
    )
    assert created.status_code == 201, created.text
    async with member_client(app) as other:
        await sign_in(other, name, "Clerk-pass-2026")
        refused = await claim(other, await scan(other, serial), pin)
        assert "此码的返利已被领取" in text_of(assert_page(refused, 409))
        mine = assert_page(await other.get("/clerk/claims"))
        assert 'id="empty"' in mine and serial not in mine  # only one's own claims


async def test_malformed_forged_and_case_codes_are_answered_at_once(
    phone: httpx.AsyncClient, app: Any, goods: dict[str, Any]
) -> None:
    await signed_in(phone)
    bad = text_of(await scan(phone, "not a code <b>", 400))
    assert "无法识别此码" in bad
    forged = text_of(await scan(phone, forge(goods["units"][4]), 422))
    assert "此码不是本系统签发的防伪码" in forged
    case = text_of(await scan(phone, "(00)" + goods["cases"][0], 400))
    assert "这是箱码" in case
    # a link carrying the code lands on step 2 at once
    direct = assert_page(await phone.get("/clerk", params={"code": goods["units"][4]}))
    assert 'name="ticket"' in direct and "Sun Cream SPF50" in text_of(direct)


async def test_a_serial_of_another_key_than_its_batchs_is_refused_at_the_scan(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe's left-out: after a rotation a serial made with the old key for a unit of a batch
    issued under the new one was never printed (the claim refuses it, ``made_under``), yet step
    2 showed the unit's product and asked for its PIN. Now the scan answers it as any forged
    code: 422, the forged page."""
    from tests.helpers import issue_units
    from tests.test_verify import _rotated, activated_under_the_new_key

    _, pid = await issue_units(client, login, demo, 1)
    async with _rotated(app, "1,2", 2) as (c2, app2):
        scheme = app2.state.scheme
        batch_no, printed = await activated_under_the_new_key(c2, app2, login, demo, pid, 2, "RK3")
        async with member_client(app2) as clerk_phone:
            await signed_in(clerk_phone)
            forged = text_of(await scan(clerk_phone, scheme.serial(batch_no, 1, 1), 422))
            assert "此码不是本系统签发的防伪码" in forged
            assert 'name="ticket"' in await scan(clerk_phone, printed[1])


async def test_a_clerk_with_a_password_to_replace_is_told_to_replace_it_first(
    phone: httpx.AsyncClient, client: Any, login: Any, demo: Any
) -> None:
    """A clerk whose password the administrator gave to be replaced (``must_change_password``)
    signs in and is told, on a page, to change it in the staff app or the console first: the
    rebate claims refuse it (403 ``password_change_required``) until then."""
    name = f"due_clerk_{secrets.token_hex(3)}"
    made = await client.post(
        "/users",
        headers=await login("admin"),
        json={
            "org_id": demo["STORE-HZ-01"],
            "username": name,
            "password": "Given-pass-2026",
            "roles": ["store_clerk"],
            "must_change_password": True,
        },
    )
    assert made.status_code == 201, made.text
    signed = await sign_in(phone, name, "Given-pass-2026")
    assert signed.status_code == 303, signed.text
    told = text_of(assert_page(await phone.get("/clerk"), 403))
    assert "请先在员工 App（/m）或管理后台修改初始密码" in told


async def test_a_link_with_a_code_survives_the_sign_in(
    phone: httpx.AsyncClient, goods: dict[str, Any]
) -> None:
    serial = goods["units"][4]
    first = await phone.get("/clerk", params={"code": serial})
    assert first.status_code == 303 and first.headers["location"] == f"/clerk/login?code={serial}"
    english = await phone.get("/clerk", params={"lang": "en"})
    assert english.headers["location"] == "/clerk/login?lang=en"
    response = await sign_in(phone, code=serial)
    assert response.status_code == 303 and response.headers["location"] == f"/clerk?code={serial}"
    step2 = assert_page(await phone.get(response.headers["location"]))
    assert 'name="ticket"' in step2
    # signed in already, the sign-in page goes on to the step
    again = await phone.get("/clerk/login", params={"code": serial})
    assert again.status_code == 303 and again.headers["location"] == f"/clerk?code={serial}"


# -- signing in and out --------------------------------------------------------------------------


async def test_wrong_password_and_accounts_that_may_not_claim(
    phone: httpx.AsyncClient, app: Any
) -> None:
    wrong = await sign_in(phone, password="not-the-password")
    assert "用户名或密码错误" in text_of(assert_page(wrong, 401))
    assert "tc_clerk" not in phone.cookies
    english = await sign_in(phone, password="nope", lang="en")
    assert "Wrong username or password" in text_of(assert_page(english, 401))
    # a warehouse clerk of an agent signs in, but may not claim: a clear refusal, a way out
    assert (await sign_in(phone, "agent_clerk")).status_code == 303
    home = assert_page(await phone.get("/clerk"), 403)
    assert "您的账号没有领取销售返利的权限" in text_of(home) and 'action="/clerk/logout"' in home
    out = await phone.post("/clerk/logout", data={"csrf": field(home, "csrf")})
    assert out.status_code == 303 and "tc_clerk" not in phone.cookies


async def test_sign_out_revokes_the_session(phone: httpx.AsyncClient) -> None:
    await signed_in(phone)
    refresh = phone.cookies.get("tc_clerk_refresh")
    home = assert_page(await phone.get("/clerk"))
    out = await phone.post("/clerk/logout", data={"csrf": field(home, "csrf")})
    assert out.status_code == 303 and out.headers["location"] == "/clerk/login"
    assert "tc_clerk" not in phone.cookies and "tc_clerk_refresh" not in phone.cookies
    assert (await phone.get("/clerk")).status_code == 303
    phone.cookies.set("tc_clerk_refresh", refresh or "", path="/clerk")  # kept by a thief: dead
    response = await phone.get("/clerk")
    assert response.status_code == 303 and response.headers["location"] == "/clerk/login"


async def test_an_expired_access_token_is_renewed_by_the_refresh_token(
    phone: httpx.AsyncClient, app: Any
) -> None:
    from app.auth import tokens

    await signed_in(phone)
    old_refresh = phone.cookies.get("tc_clerk_refresh")
    claims = tokens.decode(app.state.settings.jwt_key(), phone.cookies["tc_clerk"], "access")
    expired, _ = tokens.issue(app.state.settings.jwt_key(), int(claims["sub"]), "access", -60)
    phone.cookies.set("tc_clerk", expired, path="/clerk")
    page = await phone.get("/clerk")
    assert_page(page)
    assert any(c.startswith("tc_clerk=") for c in page.headers.get_list("set-cookie"))
    assert phone.cookies.get("tc_clerk_refresh") != old_refresh  # rotated
    phone.cookies.set("tc_clerk", "forged.token.here", path="/clerk")
    assert (await phone.get("/clerk")).status_code == 303


async def test_cookies_are_secure_behind_https(app: Any, client: Any) -> None:
    transport = httpx.ASGITransport(app=app, client=("10.251.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as h:
        page = assert_page(await h.get("/clerk/login"))
        body = {"csrf": field(page, "csrf"), "username": "store_clerk", "password": DEMO_PASSWORD}
        signed = await h.post("/clerk/login", data=body)
    assert signed.status_code == 303
    for cookie in signed.headers.get_list("set-cookie"):
        assert "Secure" in cookie and "HttpOnly" in cookie, cookie


# -- hostile input ------------------------------------------------------------------------------


async def test_posts_without_their_token_or_from_another_site_are_refused(
    phone: httpx.AsyncClient, app: Any, goods: dict[str, Any]
) -> None:
    body = {"username": "store_clerk", "password": DEMO_PASSWORD}
    assert "页面已过期" in text_of(assert_page(await phone.post("/clerk/login", data=body), 403))
    assert "tc_clerk" not in phone.cookies
    await signed_in(phone)
    serial = goods["units"][5]
    step2 = await scan(phone, serial)
    form = {"ticket": field(step2, "ticket"), "pin": app.state.scheme.pin(serial)}
    assert_page(await phone.post("/clerk/claim", data=form), 403)
    assert_page(await phone.post("/clerk/claim", data=form | {"csrf": "x" * 43}), 403)
    evil = {"Origin": "https://evil.example"}
    real = form | {"csrf": field(step2, "csrf")}
    assert_page(await phone.post("/clerk/claim", data=real, headers=evil), 403)
    assert_page(await phone.post("/clerk/scan", data={"code": serial}), 403)
    assert_page(await phone.post("/clerk/logout", data={}), 403)
    assert await claims_of(app, code_of(app, serial)) == 0
    assert (await phone.get("/clerk")).status_code == 200  # still signed in


async def test_forged_tickets_huge_forms_and_control_characters_are_pages(
    phone: httpx.AsyncClient, app: Any, goods: dict[str, Any]
) -> None:
    await signed_in(phone)
    serial = goods["units"][6]
    step2 = await scan(phone, serial)
    csrf, ticket = field(step2, "csrf"), field(step2, "ticket")
    pin = app.state.scheme.pin(serial)
    for forged in (ticket[:-4] + "AAAA", "", "%%%", "x" * 2000):
        form = {"csrf": csrf, "ticket": forged, "pin": pin}
        gone = assert_page(await phone.post("/clerk/claim", data=form), 410)
        assert "此操作已过期" in text_of(gone)
    huge = await phone.post("/clerk/scan", data={"csrf": csrf, "code": "A" * 10_000})
    assert_page(huge, 413)
    control = await phone.post(
        "/clerk/scan",
        content=f"csrf={csrf}&code=AB%00CD".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_page(control, 400)
    assert_page(await phone.get("/clerk/claims?page=abc"), 400)
    assert_page(await phone.get("/clerk/claims?page=0"), 400)
    assert await claims_of(app, code_of(app, serial)) == 0
    # a ticket is its clerk's: another clerk's phone cannot spend it
    async with member_client(app) as other:
        await signed_in(other, "gz_clerk")
        home = assert_page(await other.get("/clerk"))
        form = {"csrf": field(home, "csrf"), "ticket": ticket, "pin": pin}
        assert_page(await other.post("/clerk/claim", data=form), 410)


async def test_a_link_with_an_invisible_mark_is_step_one_with_the_code_less_it(
    phone: httpx.AsyncClient, goods: dict[str, Any]
) -> None:
    """A scan link pasted from a chat app carries an invisible directional mark (U+2069) after
    the serial, which the edge check refuses: the clerk's phone got the API's JSON 400. Now step
    1 (or the sign-in form) with the code less the mark and why; the scan form goes on with it;
    another refused character on the clerk's pages is the error page in their name, with the
    way back. An API client keeps the JSON."""
    serial = goods["units"][4]
    out = await phone.get(f"/clerk/login?code={serial}%E2%81%A9", headers=BROWSER)
    login = assert_page(out, 400)
    assert 'name="username"' in login and field(login, "code") == serial
    assert "隐藏字符" in text_of(login) and "销售返利" in text_of(login)
    await signed_in(phone)
    page = await phone.get(f"/clerk?code={serial}%E2%81%A9", headers=BROWSER)
    step1 = assert_page(page, 400)
    assert page.headers["content-security-policy"] == CSP  # the camera's script allowed
    assert field(step1, "code") == serial and "隐藏字符" in text_of(step1)
    form = {"csrf": field(step1, "csrf"), "code": field(step1, "code")}
    assert 'name="ticket"' in assert_page(await phone.post("/clerk/scan", data=form))
    other = assert_page(await phone.get("/clerk/claims?page=1%E2%81%A9", headers=BROWSER), 400)
    assert "销售返利" in text_of(other) and 'href="/clerk"' in other
    assert "隐藏字符" in text_of(other) and "稍后再试" not in text_of(other)
    api = await phone.get(f"/clerk?code={serial}%E2%81%A9", headers={"Accept": "*/*"})
    assert api.status_code == 400 and api.json()["error"]["code"] == "invalid_character"


async def test_a_scan_with_a_group_separator_goes_on_and_other_controls_show_step_one_again(
    phone: httpx.AsyncClient, app: Any, goods: dict[str, Any]
) -> None:
    """A keyboard-wedge scanner reading a GS1 symbol types a group separator (U+001D) with the
    code: the error page "请求无法处理，请稍后再试", the scan lost. GS1's separator is taken out
    and the scan goes on; another control character is step 1 again, the code less it and why;
    signed out, the sign-in keeps the code."""
    await signed_in(phone)
    home = assert_page(await phone.get("/clerk"))
    serial, csrf = goods["units"][4], field(home, "csrf")
    for body in (f"code={serial}%1D", f"code=%1D{serial}\x1d"):
        step2 = await phone.post("/clerk/scan", content=f"csrf={csrf}&{body}", headers=FORM)
        assert 'name="ticket"' in assert_page(step2), body
    # another control character, also one sent half raw, half escaped beside a GS (a review:
    # the bytes' check took it for separators only, and the scan went on)
    for other in (b"%0B%1D", b"\xe2%80%ae%1D"):
        body = f"csrf={csrf}&code={serial}".encode() + other
        step1 = assert_page(await phone.post("/clerk/scan", content=body, headers=FORM), 400)
        assert field(step1, "code") == serial and 'action="/clerk/scan"' in step1, other
        assert "隐藏字符" in text_of(step1) and "稍后再试" not in text_of(step1)
        assert 'id="totals"' in step1
    async with member_client(app) as signed_out:
        blank = assert_page(await signed_out.get("/clerk/login"))
        body = f"csrf={field(blank, 'csrf')}&code={serial}%1D"
        again = await signed_out.post("/clerk/scan", content=body, headers=FORM)
        assert f'href="/clerk/login?code={serial}"' in assert_page(again, 401)


async def test_a_sign_in_with_hidden_characters_shows_the_form_again(
    phone: httpx.AsyncClient,
) -> None:
    """A username pasted with bidi isolates (as a chat app wraps names): the error page "请求无法
    处理，请稍后再试", the username gone. Now the form again, 400, the username less them and
    why, no sign-in tried; a form not in UTF-8 likewise, saying it could not be read."""
    page = assert_page(await phone.get("/clerk/login"))
    body = f"csrf={field(page, 'csrf')}&username=%E2%81%A8store_clerk%E2%81%A9&password=x"
    again = assert_page(await phone.post("/clerk/login", content=body, headers=FORM), 400)
    assert field(again, "username") == "store_clerk" and 'type="password"' in again
    assert "隐藏字符" in text_of(again) and "稍后再试" not in text_of(again)
    assert "tc_clerk" not in phone.cookies
    gbk = f"csrf={field(page, 'csrf')}&username=store_clerk&password=%C4%E3"
    unread = assert_page(await phone.post("/clerk/login", content=gbk, headers=FORM), 400)
    assert field(unread, "username") == "store_clerk" and "无法识别提交的内容" in text_of(unread)
    await signed_in(phone)  # the form as it was sent again signs in


async def test_the_clerks_error_pages_say_why_in_their_name_with_the_way_back(
    phone: httpx.AsyncClient, goods: dict[str, Any]
) -> None:
    """A form over the size limit (a password pasted over it): 413 "请求无法处理，请稍后再试" on
    the consumer pages' "正品验证" — sent again later it is refused the same. Now it says it is
    too long, as the clerk's pages, with a link back to the form; a control character the edge
    check refuses in a form shown nowhere again (the claim's) says so too."""
    page = assert_page(await phone.get("/clerk/login"))
    form = {"csrf": field(page, "csrf"), "username": "store_clerk", "password": "x" * 5000}
    long = assert_page(await phone.post("/clerk/login", data=form), 413)
    assert "内容过长" in text_of(long) and "稍后再试" not in text_of(long)
    assert "销售返利" in text_of(long) and 'href="/clerk/login"' in long
    await signed_in(phone)
    step2 = await scan(phone, goods["units"][4])
    control = f"csrf={field(step2, 'csrf')}&ticket={field(step2, 'ticket')}&pin=12%0034"
    refused = assert_page(await phone.post("/clerk/claim", content=control, headers=FORM), 400)
    assert "隐藏字符" in text_of(refused) and "稍后再试" not in text_of(refused)
    assert "销售返利" in text_of(refused) and 'href="/clerk"' in refused
    english = await phone.post("/clerk/scan?lang=en", data={"code": "A" * 10_000})
    assert "too long" in text_of(assert_page(english, 413))


async def test_a_signed_out_post_asks_to_sign_in_again(phone: httpx.AsyncClient) -> None:
    page = assert_page(await phone.get("/clerk/login"))
    form = {"csrf": field(page, "csrf"), "ticket": "x", "pin": "123456"}
    again = assert_page(await phone.post("/clerk/claim", data=form), 401)
    assert "请重新登录" in text_of(again) and 'href="/clerk/login"' in again


# -- languages, tickets --------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_pages_are_in_both_languages(phone: httpx.AsyncClient, lang: str) -> None:
    page = assert_page(await phone.get("/clerk/login", params={"lang": lang}))
    assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in page
    assert ("店员登录" in page) == (lang == "zh") and ("Clerk sign-in" in page) == (lang == "en")
    assert (await sign_in(phone, lang=lang)).status_code == 303
    home = text_of(assert_page(await phone.get("/clerk")))
    words = ("第一步", "今日", "本月", "累计") if lang == "zh" else ("Step 1", "Today", "All time")
    assert all(w in home for w in words), home


def test_no_literal_words_in_the_clerk_templates() -> None:
    """Every Chinese word of the clerk pages comes from app/web/i18n.py."""
    from pathlib import Path

    for name in ("clerk_html.py", "clerk_pages.py"):
        source = (Path(__file__).parent.parent / "app" / "web" / name).read_text()
        code = re.sub(r'""".*?"""', "", source, flags=re.S)
        code = re.sub(r"#.*", "", code)
        assert not re.search(r"[\u4e00-\u9fff]", code), name


def test_tickets_are_sealed_bound_and_expire(settings: Any) -> None:
    import time

    from app.web import clerk_pages

    ticket = clerk_pages.issue_ticket(settings, "SERIAL", 7)
    assert "SERIAL" not in ticket
    opened = clerk_pages.open_ticket(settings, ticket)
    assert opened and (opened.serial, opened.user_id) == ("SERIAL", 7)
    assert re.fullmatch(r"h5c-[0-9a-f]{16}", opened.client_id)
    assert clerk_pages.open_ticket(settings, ticket[:-2] + "AA") is None
    from app.web import session

    member = session.issue_ticket(settings, "SERIAL", "123456", 7)
    assert clerk_pages.open_ticket(settings, member) is None  # another key
    real = time.time
    try:
        time.time = lambda: real() + clerk_pages.TICKET_TTL + 1  # type: ignore[assignment]
        assert clerk_pages.open_ticket(settings, ticket) is None
    finally:
        time.time = real  # type: ignore[assignment]


async def test_a_page_after_a_renewed_session_sends_the_new_cookies(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """The access cookie gone (expired), a claim page renews the session with the refresh
    token: every answer sends the new pair back — the expired ticket's 410 too — so the next
    page signs in with it, a minute later still, and the clerk's other sessions go on. Before,
    that page left the pair out: the browser sent the spent refresh token next, and a minute
    later that ended every session of the clerk (auth probe)."""
    name = f"renew_{secrets.token_hex(3)}"
    user_id, other_device = await new_staff(
        client, await login("admin"), demo["STORE-HZ-01"], name, ["store_clerk"], "password-123"
    )
    async with member_client(app) as phone:
        page = assert_page(await phone.get("/clerk/login"))
        signed = await phone.post(
            "/clerk/login",
            data={"csrf": field(page, "csrf"), "username": name, "password": "password-123"},
        )
        assert signed.status_code == 303, signed.text
        csrf = field(assert_page(await phone.get("/clerk")), "csrf")
        phone.cookies.delete("tc_clerk", path="/clerk")  # the access cookie expired
        expired = await phone.post("/clerk/claim", data={"csrf": csrf, "ticket": "", "pin": "1"})
        assert expired.status_code == 410
        sent = expired.headers.get_list("set-cookie")
        assert any(c.startswith("tc_clerk_refresh=") for c in sent), sent
        async with app.state.pool.connection() as conn:  # a minute later
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() - interval '1 minute' "
                "WHERE user_id = %s AND revoked_at IS NOT NULL",
                (user_id,),
            )
        phone.cookies.delete("tc_clerk", path="/clerk")
        assert_page(await phone.get("/clerk"))  # signed in by the renewed refresh token
    assert (await client.get("/auth/me", headers=bearer(other_device))).status_code == 200


async def test_clerk_scanning_a_gs1_128_case_label_as_00_and_18_digits_is_told_it_is_a_case(
    phone: httpx.AsyncClient, app: Any, goods: dict[str, Any]
) -> None:
    """A probe: a clerk's scanner reads a case's GS1-128 label as ``00`` and the SSCC (no
    brackets): "forged". The page says it is a case code, as for ``(00)SSCC``."""
    await signed_in(phone)
    case = text_of(await scan(phone, "00" + goods["cases"][0], 400))
    assert "这是箱码" in case


FULL_WIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")


async def test_clerk_page_reads_a_gs1_128_case_label_after_a_bom_or_in_full_width_as_a_case(
    phone: Any,
    goods: dict[str, Any],
) -> None:
    """A probe: a case's GS1-128 label (``00`` + SSCC) read after a BOM or typed full-width was
    "not genuine" (422) on the clerk's page."""
    await signed_in(phone)
    case = goods["cases"][0]
    for text in ("\ufeff00" + case, ("00" + case).translate(FULL_WIDTH_DIGITS)):
        page = text_of(await scan(phone, text, 400))
        assert "这是箱码" in page, (text, page[:200])


async def test_clerk_page_refuses_a_digital_link_naming_another_products_gtin(
    phone: httpx.AsyncClient, client: Any, login: Any, app: Any, goods: dict[str, Any]
) -> None:
    """A probe: the clerk's page kept only the serial of a scanned Digital Link, so a genuine
    serial and PIN copied onto another product's pack earned the rebate (the sale recorded),
    where ``POST /rebates/claims`` refuses it (422 ``not_genuine``, ``wrong_product``). The
    ticket carries the code as scanned and the claim's verification checks its GTIN: the page
    answers the refusal, and no claim is made."""
    other = await new_product(client, login, name="Other product 其他")
    serial = goods["units"][8]
    pin = app.state.scheme.pin(serial)
    link = f"http://testserver/01/{other['gtin'].zfill(14)}/21/{serial}"
    api = await client.post(
        "/rebates/claims",
        headers=await login("store_clerk"),
        json={"serial": link, "pin": pin, "client_id": "h5-clerk-dl-api"},
    )
    assert api.status_code == 422 and api.json()["error"]["code"] == "not_genuine", api.text
    await signed_in(phone)
    answer = await claim(phone, await scan(phone, link), pin)
    assert "不是有效的正品防伪码" in text_of(assert_page(answer, 422))
    assert await claims_of(app, code_of(app, serial)) == 0


async def test_head_of_a_clerk_page_does_not_spend_the_refresh_token(
    phone: httpx.AsyncClient, app: Any
) -> None:
    """A probe: ``HEAD /clerk`` with an expired access token renewed the pair, spending the
    refresh token (README: a HEAD has no side effect of its GET) — a link checker or a chat
    preview replaying the cookies spent the session, and its owner's next page, sending the
    spent token later, ended every session of the clerk. HEAD answers GET's status without
    renewing (the token only read), and the token still renews GET's pair."""
    from app.auth import tokens

    await signed_in(phone)
    key = app.state.settings.jwt_key()
    refresh = phone.cookies["tc_clerk_refresh"]
    claims = tokens.decode(key, phone.cookies["tc_clerk"], "access")
    expired, _ = tokens.issue(key, int(claims["sub"]), "access", -60, sid=claims.get("sid"))
    phone.cookies.set("tc_clerk", expired, path="/clerk")
    for path in ("/clerk", "/clerk/claims", "/clerk/login"):
        head = await phone.head(path)
        assert head.status_code == (303 if path == "/clerk/login" else 200), path
        assert not head.headers.get_list("set-cookie"), (path, head.headers)
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT revoked_at IS NOT NULL AS spent FROM refresh_tokens WHERE id = %s",
                (tokens.token_id(tokens.decode(key, refresh, "refresh")),),
            )
        ).fetchone()
    assert not row["spent"]
    renewed = await phone.get("/clerk")
    assert_page(renewed)
    assert any(c.startswith("tc_clerk_refresh=") for c in renewed.headers.get_list("set-cookie"))


async def test_a_refresh_race_between_two_clerk_pages_does_not_sign_the_clerk_out(
    phone: httpx.AsyncClient, app: Any
) -> None:
    """A probe: two pages of the clerk opened at once after the access token expired (tabs
    restored after a break) both send the same refresh token: one renews the pair, the other
    is refused as a race (``service.REPLAY_GRACE``) — and that one answered a 303 that deleted
    both session cookies, signing the clerk out whichever answer the browser applied last. The
    refused one asks again (307 to itself, marked ``again=1``) and sets no cookie: the browser
    keeps the new pair."""
    from app.auth import tokens

    await signed_in(phone)
    key = app.state.settings.jwt_key()
    refresh = phone.cookies["tc_clerk_refresh"]
    claims = tokens.decode(key, phone.cookies["tc_clerk"], "access")
    expired, _ = tokens.issue(key, int(claims["sub"]), "access", -60, sid=claims.get("sid"))
    transport = phone._transport  # the same phone, two requests with the cookies of the moment

    async def page(path: str, cookies: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as tab:
            for name, value in cookies.items():
                tab.cookies.set(name, value, path="/clerk")
            return await tab.get(path)

    stale = {"tc_clerk": expired, "tc_clerk_refresh": refresh}
    first = await page("/clerk", stale)
    second = await page("/clerk/claims?page=1", stale)  # in flight with them, answered after
    assert first.status_code == 200
    assert second.status_code == 307
    assert second.headers["location"] == "/clerk/claims?page=1&again=1"
    assert not second.headers.get_list("set-cookie")
    # asked again with the pair the browser holds by then (the first page's): signed in
    pair = dict(c.split(";")[0].split("=", 1) for c in first.headers.get_list("set-cookie"))
    again = await page("/clerk/claims?page=1&again=1", {k: pair[k] for k in stale})
    assert_page(again)


def _session_set(response: httpx.Response) -> list[str]:
    """The session cookies (``tc_clerk``, ``tc_clerk_refresh``) a response sets or deletes."""
    return [c for c in response.headers.get_list("set-cookie") if c.startswith("tc_clerk")]


async def test_a_refresh_race_asks_again_once_then_signs_in_keeping_the_cookies(
    phone: httpx.AsyncClient, app: Any
) -> None:
    """A probe (review): a page refused as a refresh race asked again (307 to itself) with no
    limit: when the other page's new pair never landed (its answer lost), the browser asked
    again with the spent token until "too many redirects" — and past ``service.REPLAY_GRACE``
    the token sent again was a replay that ended every session of the clerk. It asks again
    once (``again=1``); raced again, a GET is sent to the sign-in page (which shows its form)
    and a post is the 401 sign-in page — neither deleting the cookies: the new pair may land."""
    from app.auth import tokens

    await signed_in(phone)
    token = field(assert_page(await phone.get("/clerk")), "csrf")  # the form's, for a post
    key = app.state.settings.jwt_key()
    claims = tokens.decode(key, phone.cookies["tc_clerk"], "access")
    expired, _ = tokens.issue(key, int(claims["sub"]), "access", -60, sid=claims.get("sid"))
    stale = {
        "tc_clerk": expired,
        "tc_clerk_refresh": phone.cookies["tc_clerk_refresh"],
        "tc_csrf": phone.cookies["tc_csrf"],
    }

    async def tab(path: str, cookies: dict[str, str], form: Any = None) -> httpx.Response:
        transport = phone._transport  # the same phone, the cookies of the moment
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as t:
            for name, value in cookies.items():
                t.cookies.set(name, value, path="/" if name == "tc_csrf" else "/clerk")
            return await (t.post(path, data=form) if form else t.get(path))

    first = await tab("/clerk", stale)  # renews the pair; its answer never reaches the browser
    assert first.status_code == 200 and _session_set(first)
    asked = await tab("/clerk/claims?page=1", stale)
    assert asked.status_code == 307
    assert asked.headers["location"] == "/clerk/claims?page=1&again=1"
    twice = await tab(asked.headers["location"], stale)
    assert twice.status_code == 303 and twice.headers["location"] == "/clerk/login?again=1"
    assert not _session_set(twice)
    login = await tab(twice.headers["location"], stale)
    assert 'name="username"' in assert_page(login) and not _session_set(login)

    posted = await tab("/clerk/scan", stale, {"csrf": token, "code": "x"})
    assert posted.status_code == 307 and posted.headers["location"] == "/clerk/scan?again=1"
    reposted = await tab(posted.headers["location"], stale, {"csrf": token, "code": "x"})
    signed_out = assert_page(reposted, 401)  # the scan kept through the sign-in
    assert 'href="/clerk/login?code=x"' in signed_out and not _session_set(reposted)

    odd = await tab("/clerk/claims?again=0&page=1", stale)  # a link with an odd marker: asked
    assert odd.status_code == 303 and odd.headers["location"] == "/clerk/login?again=1"  # once
    asked = await tab("/clerk/claims?again=&page=2", stale)
    assert asked.status_code == 303, asked.headers  # its marker counts, whatever its value

    pair = {c.split("=", 1)[0]: c.split(";")[0].split("=", 1)[1] for c in _session_set(first)}
    assert_page(await tab("/clerk", {**stale, **pair}))  # the new pair: signed in all along


async def test_the_sign_in_holds_no_connection_while_the_password_is_checked(
    app: Any, phone: httpx.AsyncClient, monkeypatch: Any
) -> None:
    """A probe (``POST /auth/login``'s, through this page too): the sign-in held the page's
    pooled connection, idle in its transaction, through argon2id; a burst of right-password
    sign-ins held every connection. The page takes the pool, and the log-in gives its
    connection back before the check (``app.auth.service.login``)."""
    import asyncio

    from tests.test_auth import LOGIN_READ, checks_begun, held_in_transaction, paused_checks

    page = assert_page(await phone.get("/clerk/login"))
    body = {"csrf": field(page, "csrf"), "username": "store_clerk", "password": DEMO_PASSWORD}
    entered, go = paused_checks(monkeypatch)
    signing = asyncio.ensure_future(phone.post("/clerk/login", data={**body, "code": ""}))
    try:
        await checks_begun(entered, 1)
        held = await held_in_transaction(app, LOGIN_READ)
    finally:
        go.set()
    signed = await signing
    assert signed.status_code == 303 and signed.headers["location"] == "/clerk", signed.text
    assert held == 0, "the sign-in held its pooled connection through the password check"
