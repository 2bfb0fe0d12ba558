"""The clerk's rebate pages in a real headless Chromium (issue 16 item 2), against the app served
by granian (the ``server`` fixture of tests/test_h5_browser.py): sign in → scan the outer code (a
keyboard-wedge scanner types it and presses Enter) → the product and the PIN form → a wrong PIN,
then the right one → the rebate recorded → the totals and the list → sign out; in Chinese and in
English, on a 390 × 844 phone screen. Screenshots go to ``$TRACECODE_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from app.demo import DEMO_PASSWORD
from tests.h5_support import wrong_pin
from tests.rebates_support import set_rebate, store_goods
from tests.steady import clear_of_midnight
from tests.test_h5_browser import server  # noqa: F401 - the fixture
from tests.test_h5_members_browser import (  # noqa: F401 - phone_browser, phone_chromium are fixtures
    _fits_the_phone,
    _shot,
    _submit,
    _wait,
    phone_browser,
    phone_chromium,
)

AMOUNT = 2.5


@pytest.fixture(scope="module")
async def goods(client: Any, login: Any, app: Any, demo: Any) -> AsyncIterator[dict[str, Any]]:
    """Case 0 at STORE-HZ-01 (``store_goods``); the sun cream earns AMOUNT yuan there — the
    agent's rule deleted after the module (it outranks the default later tests set)."""
    goods = await store_goods(client, login, app, demo)
    admin = await login("admin")
    await set_rebate(client, admin, goods["product_id"], AMOUNT)
    zj = await set_rebate(client, admin, goods["product_id"], AMOUNT, demo["AGENT-ZJ"])
    yield goods
    gone = await client.delete(f"/rebates/rules/{zj['id']}", headers=await login("admin"))
    assert gone.status_code in (204, 404), gone.text


def _count(driver: WebDriver, key: str) -> int:
    text = driver.find_element(By.ID, f"total-{key}").text
    found = re.search(r"([0-9]+) (?:件|sold)", text)
    assert found, text
    return int(found.group(1))


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_sign_in_scan_pin_the_rebate_and_the_totals(
    lang: str,
    server: str,  # noqa: F811
    phone_browser: WebDriver,  # noqa: F811
    app: Any,
    goods: dict[str, Any],
) -> None:
    # the clerk's today count (Asia/Shanghai) is read before the claim and after it, screens
    # apart: the day must not turn between the two
    await clear_of_midnight()
    driver = phone_browser
    driver.delete_all_cookies()
    zh = lang == "zh"
    serial = goods["units"][0 if zh else 1]
    pin = app.state.scheme.pin(serial)

    driver.get(f"{server}/clerk")  # signed out: the sign-in page
    _wait(driver).until(lambda d: d.find_element(By.ID, "username"))
    assert driver.current_url.endswith("/clerk/login")
    if not zh:
        driver.find_element(By.ID, "lang-switch").click()
        _wait(driver).until(lambda d: "Clerk sign-in" in d.title)
    driver.find_element(By.ID, "username").send_keys("store_clerk")
    driver.find_element(By.ID, "password").send_keys(DEMO_PASSWORD)
    _fits_the_phone(driver)
    _shot(driver, f"clerk-1-login-{lang}")
    _submit(driver, "#login button")

    today = _count(driver, "today")
    _fits_the_phone(driver)
    _shot(driver, f"clerk-2-home-{lang}")
    old = driver.find_element(By.TAG_NAME, "main")
    driver.find_element(By.ID, "code").send_keys(f"{server}/c/{serial}" + Keys.ENTER)  # a scanner
    _wait(driver).until(lambda d: d.find_elements(By.ID, "pin") and not _alive(old))
    assert "Sun Cream SPF50" in driver.find_element(By.ID, "product-name").text
    _fits_the_phone(driver)
    _shot(driver, f"clerk-3-pin-{lang}")

    driver.find_element(By.ID, "pin").send_keys(wrong_pin(pin))
    _submit(driver, "#claim button")
    error = driver.find_element(By.ID, "form-error").text
    assert ("验证码错误" in error) if zh else ("Wrong PIN" in error), error
    driver.get_log("browser")  # the 422 of the wrong PIN is logged: read out of the way
    driver.find_element(By.ID, "pin").send_keys(pin)
    _submit(driver, "#claim button")

    result = driver.find_element(By.ID, "result")
    assert result.get_attribute("data-result") == "ok"
    assert driver.find_element(By.ID, "claimed-amount").text == f"¥{AMOUNT:.2f}"
    expected = "已同时登记此产品的销售" if zh else "The sale of this unit is recorded"
    assert expected in driver.find_element(By.ID, "sale").text
    _fits_the_phone(driver)
    _shot(driver, f"clerk-4-claimed-{lang}")

    driver.find_element(By.CSS_SELECTOR, "#result a.button").click()  # scan the next one
    _wait(driver).until(lambda d: d.find_element(By.ID, "totals"))
    assert _count(driver, "today") == today + 1
    driver.find_element(By.CSS_SELECTOR, 'nav a[href="/clerk/claims"]').click()
    listing = _wait(driver).until(lambda d: d.find_element(By.ID, "claims"))
    assert serial in listing.text
    _fits_the_phone(driver)
    _shot(driver, f"clerk-5-claims-{lang}")

    driver.get(f"{server}/clerk")
    _submit(driver, "#account button")  # sign out
    assert driver.find_element(By.ID, "username")
    driver.get(f"{server}/clerk")
    assert driver.current_url.endswith("/clerk/login")


def _alive(element: Any) -> bool:
    try:
        element.is_enabled()
    except Exception:
        return False
    return True
