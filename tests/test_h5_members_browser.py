"""The member flow of the consumer pages in a real headless Chromium (issue 15 item 9), against the
app served by granian (the ``server`` fixture of tests/test_h5_browser.py) with the SMS outbox
drained to the local gateway: scan URL → PIN → genuine → sign up (the code read at the gateway) →
claim → redeem → the redemption code arrives at the gateway; in Chinese and in English, on a
390 × 844 phone screen. Screenshots of the main pages go to ``$TRACECODE_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import Browser, start_chromium
from tests.h5_support import activated_batch, unit
from tests.points_support import member_client, random_phone, set_rule
from tests.sms_gateway import LocalGateway, last_code, sms_gateway  # noqa: F401 - the fixture
from tests.test_h5_browser import server  # noqa: F401 - the fixture

PHONE_SCREEN = {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0}}
SHOTS = os.environ.get("TRACECODE_SCREENSHOTS")


@pytest.fixture(scope="module")
def phone_chromium() -> Iterator[Browser]:
    browser = Browser(
        lambda: start_chromium(
            "--lang=zh-CN", prefs={"intl.accept_languages": "zh-CN,zh"}, mobile=PHONE_SCREEN
        )
    )
    yield browser
    browser.quit()


@pytest.fixture
def phone_browser(phone_chromium: Browser) -> WebDriver:
    return phone_chromium.driver()


def _wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,))


def _shot(driver: WebDriver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(390, max(844, int(height)))
        driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))


def _submit(driver: WebDriver, css: str) -> None:
    """Press the button matched by ``css`` and wait for the next page."""
    old = driver.find_element(By.TAG_NAME, "main")
    driver.find_element(By.CSS_SELECTOR, css).click()

    def gone(_: WebDriver) -> bool:
        try:
            old.is_enabled()
        except WebDriverException:
            return True
        return False

    _wait(driver).until(gone)
    _wait(driver).until(lambda d: d.find_element(By.TAG_NAME, "main"))


def _fits_the_phone(driver: WebDriver) -> None:
    assert driver.execute_script("return window.innerWidth") == 390
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 390
    for button in driver.find_elements(By.CSS_SELECTOR, "button"):
        if button.is_displayed():
            assert button.size["height"] >= 48
    problems = [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]
    ]
    assert not problems, problems


def _wait_for(gateway: LocalGateway, phone: str, template: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [m for m in gateway.messages(phone) if m.get("template_id") == template]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {template} SMS reached the gateway for {phone}")


@pytest.fixture
async def goods(
    client: Any, login: Any, demo: Any, app: Any
) -> AsyncIterator[list[tuple[str, str]]]:
    """Sun-cream units shipped to AGENT-ZJ (a unit never shipped earns no points); 40 points,
    at their agent too (another module's agent rule for it would otherwise win) — the agent's
    rule deleted after the test (it would win over later tests' rules in turn)."""
    batch_no = await activated_batch(client, login, demo, size=4, shipped=True)
    admin = await login("admin")
    found = await client.get("/products", headers=admin, params={"q": "LM-SC-30"})
    await set_rule(client, admin, found.json()["items"][0]["id"], 40)
    zj = await set_rule(client, admin, found.json()["items"][0]["id"], 40, demo["AGENT-ZJ"])
    yield [unit(app, batch_no, i) for i in range(4)]
    gone = await client.delete(f"/points/rules/{zj['id']}", headers=await login("admin"))
    assert gone.status_code in (204, 404), gone.text


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_scan_pin_sign_up_claim_redeem_and_the_code_arrives(
    lang: str,
    server: str,  # noqa: F811
    phone_browser: WebDriver,
    sms_gateway: LocalGateway,  # noqa: F811
    client: Any,
    login: Any,
    goods: list[tuple[str, str]],
) -> None:
    driver = phone_browser
    driver.delete_all_cookies()
    zh = lang == "zh"
    gift = await client.post(
        "/gifts",
        headers=await login("admin"),
        json={
            "name": "旅行装面霜 Travel cream",
            "points_cost": 30,
            "kind": "offline",
            "stock": 10,
            # one unbroken run longer than the screen (probe D: it scrolled the page sideways)
            "description": "30ml-" + "x" * 300,
            # first on the gifts page: other files' gifts (tests/test_redemptions.py) run before
            # this one pushed it off the page's first 20
            "display_order": -1_000_000,
        },
    )
    assert gift.status_code == 201, gift.text
    serial, pin = goods[0 if zh else 1]

    driver.get(f"{server}/c/{serial}?lang={lang}")  # what the QR code opens
    driver.find_element(By.ID, "pin").send_keys(pin)
    _submit(driver, "form.pin button")
    assert driver.find_element(By.ID, "result").get_attribute("data-result") == "genuine"
    assert driver.find_element(By.ID, "claim-points").text == "+40"
    _fits_the_phone(driver)
    _shot(driver, f"1-genuine-{lang}")

    _submit(driver, "#claim button")  # signed out: sign in first
    phone = random_phone()
    driver.find_element(By.ID, "phone").send_keys(phone)
    _fits_the_phone(driver)
    _shot(driver, f"2-login-{lang}")
    _submit(driver, "#login button")
    notice = driver.find_element(By.ID, "notice").text
    assert ("验证码已发送至" in notice) if zh else ("A code was sent to" in notice), notice
    code = await asyncio.to_thread(last_code, phone, 15.0)
    driver.find_element(By.ID, "code").send_keys(code)
    _shot(driver, f"3-code-{lang}")
    _submit(driver, "#login form button")

    result = driver.find_element(By.ID, "result")
    assert result.get_attribute("data-result") == "ok"
    expected = "获得 40 积分" if zh else "You earned 40 points"
    assert expected in result.text
    _fits_the_phone(driver)
    _shot(driver, f"4-claimed-{lang}")

    driver.find_element(By.CSS_SELECTOR, "#result a.button").click()  # to the gifts
    card = _wait(driver).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f'[data-gift="{gift.json()["id"]}"]')
    )
    assert driver.find_element(By.ID, "balance").text == "40"
    _fits_the_phone(driver)
    _shot(driver, f"5-gifts-{lang}")
    card.find_element(By.CSS_SELECTOR, "button").click()
    shown = _wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-code]"))
    redemption_code = shown.get_attribute("data-code")
    _fits_the_phone(driver)
    _shot(driver, f"6-redeemed-{lang}")

    messages = await asyncio.to_thread(_wait_for, sms_gateway, phone, "redemption")
    assert [m["params"]["code"] for m in messages] == [redemption_code]

    for path, name in (
        ("/member", "7-home"),
        ("/member/points", "8-points"),
        ("/member/codes", "9-codes"),
    ):
        driver.get(f"{server}{path}")
        _wait(driver).until(lambda d: d.find_element(By.TAG_NAME, "main"))
        _fits_the_phone(driver)
        _shot(driver, f"{name}-{lang}")
    assert redemption_code in driver.find_element(By.ID, "codes").text


async def test_the_mobile_number_fits_its_field_on_a_320_px_screen(
    app: Any, client: Any, demo: Any, tmp_path: Path
) -> None:
    """A probe: on a 320 px wide phone (iPhone SE / 5s, many old Androids) the sign-in page's
    mobile number field is 252 px wide inside, but an 11-digit number in the PIN field's style
    (26 px, ``letter-spacing: .3em``, applied to every ``input``) took 288 px: while typing,
    the first digits scrolled out of sight and the consumer could not check the number the code
    goes to. The phone field now has the text fields' style (``input.text``, as the clerk
    pages'). The page's own HTML is loaded from a file (its CSS is inline)."""
    async with member_client(app) as phone:
        response = await phone.get(
            "/member/login",
            params={"brand": demo["BRAND-LUMI"]},
            headers={"Accept-Language": "zh-CN,zh;q=0.9"},
        )
    assert response.status_code == 200
    saved = tmp_path / "login.html"
    saved.write_text(response.text)
    driver = start_chromium(
        "--window-size=320,640",
        mobile={"deviceMetrics": {"width": 320, "height": 640, "pixelRatio": 2.0}},
    )
    try:
        driver.get(saved.as_uri())
        assert driver.execute_script("return document.documentElement.clientWidth") == 320
        field = driver.find_element(By.ID, "phone")
        field.send_keys("13912345678")
        inner, content = driver.execute_script(
            "const f = document.getElementById('phone'); return [f.clientWidth, f.scrollWidth]",
        )
    finally:
        driver.quit()
    assert content <= inner, f"the number needs {content} px, the field shows {inner} px"
