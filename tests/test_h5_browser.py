"""The consumer pages in a real headless Chromium (Debian's, driven through its ChromeDriver), against
the real app served by granian over HTTP: scan, type the PIN, read the answer — with JavaScript on
and off, on a 360 px wide phone screen.

Chromium is required, not optional: ``make test`` installs it (``make browser``); when it is
missing these tests fail with that instruction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import Browser, start_chromium
from tests.h5_support import activated_batch, unit, wrong_pin
from tests.servers import granian_server

ROOT = Path(__file__).resolve().parent.parent
PHONE = {"deviceMetrics": {"width": 360, "height": 740, "pixelRatio": 3.0}}
PREFS = {"intl.accept_languages": "zh-CN,zh"}  # a phone set to Chinese, as most consumers' are


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app under granian on a free port, with this test session's database and Redis."""
    env = {
        "TRACECODE_VERIFY_FLAG_NEVER_SHIPPED": "false",  # nothing is shipped in these tests
        "TRACECODE_VERIFY_RATE_LIMIT": "10000",
    }
    with granian_server(tmp_path_factory.mktemp("granian"), env) as running:
        yield running.base


def _phone(javascript: bool) -> WebDriver:
    if javascript:
        return start_chromium("--lang=zh-CN", prefs=PREFS, mobile=PHONE)
    # ChromeDriver's emulated taps need JavaScript; a narrow window instead
    prefs = {**PREFS, "profile.managed_default_content_settings.javascript": 2}
    return start_chromium("--lang=zh-CN", "--window-size=360,740", prefs=prefs)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    browser = Browser(lambda: _phone(javascript=True))
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def chromium_without_js() -> Iterator[Browser]:
    browser = Browser(lambda: _phone(javascript=False))
    yield browser
    browser.quit()


@pytest.fixture
def browser(chromium: Browser) -> WebDriver:
    return chromium.driver()


@pytest.fixture
def browser_without_js(chromium_without_js: Browser) -> WebDriver:
    return chromium_without_js.driver()


@pytest.fixture
async def units(client: Any, login: Any, demo: Any, app: Any) -> list[tuple[str, str]]:
    """Genuine activated units of the demo sun cream: (serial, PIN)."""
    batch_no = await activated_batch(client, login, demo, size=10)
    return [unit(app, batch_no, index) for index in range(10)]


def _wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,))


def _answer(driver: WebDriver, action: Callable[[], None]) -> tuple[str, str]:
    """Do ``action`` (which loads another page); the new page's answer: data-result and text."""
    old = driver.find_element(By.ID, "result")

    def gone(_: WebDriver) -> bool:
        try:
            old.is_enabled()
        except WebDriverException:  # stale, or "node does not belong to the document"
            return True
        return False

    action()
    _wait(driver).until(gone)
    box = _wait(driver).until(lambda d: d.find_element(By.ID, "result"))
    return box.get_attribute("data-result") or "", box.text


def _submit_pin(driver: WebDriver, pin: str) -> tuple[str, str]:
    """Type the PIN, press the button; the answer."""
    field = driver.find_element(By.ID, "pin")
    field.clear()
    field.send_keys(pin)
    button = driver.find_element(By.CSS_SELECTOR, "form.pin button")
    return _answer(driver, button.click)


def _csp_errors(driver: WebDriver) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]
    ]


async def test_scan_type_the_pin_and_read_genuine(
    server: str, browser: WebDriver, units: list[tuple[str, str]]
) -> None:
    serial, pin = units[0]
    browser.get(f"{server}/c/{serial}")
    assert browser.find_element(By.ID, "product-name").text == "Sun Cream SPF50 防晒霜"
    assert "防伪码有效" in browser.find_element(By.ID, "message").text
    field = browser.find_element(By.ID, "pin")
    assert field.get_attribute("inputmode") == "numeric"
    assert field.get_attribute("autocomplete") == "off"
    # a phone screen: nothing wider than 360 px, tap targets at least 48 px high
    assert browser.execute_script("return window.innerWidth") == 360
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 360
    button = browser.find_element(By.CSS_SELECTOR, "form.pin button")
    assert button.size["height"] >= 48 and field.size["height"] >= 48
    switch = browser.find_element(By.ID, "lang-switch")
    assert switch.size["height"] >= 44
    assert not _csp_errors(browser)

    result, text = _submit_pin(browser, pin)
    assert result == "genuine"
    assert "正品" in text and "这是该防伪码第一次被查询" in text
    assert browser.find_elements(By.ID, "pin") == []

    # the language switch: the same answer in English, not counted again (a probe: it led
    # back to the PIN form, and the PIN typed again read "checked 2 times")
    switch = browser.find_element(By.ID, "lang-switch")
    assert switch.size["height"] >= 44
    result, text = _answer(browser, switch.click)
    assert result == "genuine" and "first time this code has been checked" in text
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    result, text = _answer(browser, browser.find_element(By.ID, "lang-switch").click)
    assert result == "genuine" and "第一次被查询" in text  # and back: still the one check
    assert not _csp_errors(browser)
    # the next scan of the code, a new check, counts
    browser.get(f"{server}/c/{serial}")
    result, text = _submit_pin(browser, pin)
    assert result == "genuine" and "已被查询 2 次" in text


async def test_a_wrong_pin_shows_the_wrong_pin_message_and_the_form_again(
    server: str, browser: WebDriver, units: list[tuple[str, str]]
) -> None:
    serial, pin = units[1]
    browser.get(f"{server}/c/{serial}")
    result, text = _submit_pin(browser, wrong_pin(pin))
    assert result == "wrong_pin" and "验证码错误" in text and "还可尝试 4 次" in text
    assert browser.find_element(By.ID, "pin").is_displayed()
    result, text = _submit_pin(browser, pin)
    assert result == "genuine" and "第一次被查询" in text


async def test_the_inline_script_runs_under_the_content_security_policy(
    server: str, browser: WebDriver, units: list[tuple[str, str]]
) -> None:
    """The double-submit guard (the pages' only script) is allowed by its CSP hash and works."""
    serial, _ = units[2]
    browser.get(f"{server}/c/{serial}")
    browser.execute_script(
        "document.querySelector('form.pin').addEventListener('submit', e => e.preventDefault())"
    )
    browser.find_element(By.ID, "pin").send_keys("123456")
    button = browser.find_element(By.CSS_SELECTOR, "form.pin button")
    button.click()
    assert button.get_attribute("disabled") is not None
    assert not _csp_errors(browser)


async def test_without_javascript_the_form_still_works(
    server: str, browser_without_js: WebDriver, units: list[tuple[str, str]]
) -> None:
    driver = browser_without_js
    driver.get("data:text/html,<title>off</title><script>document.title='on'</script>")
    assert driver.title == "off"  # JavaScript really is off in this browser
    serial, pin = units[3]
    driver.get(f"{server}/c/{serial}")
    result, text = _submit_pin(driver, wrong_pin(pin))
    assert result == "wrong_pin" and "验证码错误" in text
    result, text = _submit_pin(driver, pin)
    assert result == "genuine" and "这是该防伪码第一次被查询" in text
