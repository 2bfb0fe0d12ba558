"""Headless Chromium for the browser tests (Debian's chromium and chromedriver: ``make browser``).

``start_chromium()`` starts one with what every browser test shares: headless, no sandbox (tests run as
root in CI), no /dev/shm, its console log kept, a 30 s page-load limit. ``Browser`` keeps a test
module's Chromium and hands it to each test, starting a new one when the last one died.

A loaded machine can take Chromium down under a test: "session deleted as the browser has closed
the connection … Unable to receive message from renderer" (seen once in CI, on a stolen-time host,
after some thirty green runs; it failed the test and every later test of the module sharing that
session). That is not the page misbehaving, so tests in ``*_browser.py`` modules run once more
when, and only when, that is how they failed (tests/conftest.py marks them for
pytest-rerunfailures with ``BROWSER_DIED``); the rerun gets a fresh Chromium from ``Browser``.
Every other failure fails at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# How a test fails when Chromium itself went away (matched against "ExceptionType: message").
BROWSER_DIED = [
    r"^InvalidSessionIdException: ",
    r"browser has closed the connection",
    r"disconnected: Unable to receive message from renderer",
    r"chrome not reachable",
    r"^WebDriverException: Message: tab crashed",
]


def start_chromium(
    *arguments: str, prefs: dict[str, Any] | None = None, mobile: dict[str, Any] | None = None
) -> WebDriver:
    """A headless Chromium with ``arguments`` added to the shared ones, Chrome ``prefs`` and
    ``mobile`` emulation (ChromeDriver's ``mobileEmulation``) when given."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make browser` (Debian chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    for arg in arguments:
        options.add_argument(arg)
    if mobile is not None:
        options.add_experimental_option("mobileEmulation", mobile)
    if prefs is not None:
        options.add_experimental_option("prefs", prefs)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver


class Browser:
    """One module's Chromium, started by ``start`` on first use and again after it died."""

    def __init__(self, start: Callable[[], WebDriver]) -> None:
        self._start = start
        self._driver: WebDriver | None = None

    def driver(self) -> WebDriver:
        if self._driver is not None and not _alive(self._driver):
            self.quit()
        if self._driver is None:
            self._driver = self._start()
        return self._driver

    def quit(self) -> None:
        if self._driver is not None:
            with contextlib.suppress(WebDriverException):
                self._driver.quit()
            self._driver = None


def _alive(driver: WebDriver) -> bool:
    try:
        driver.execute_script("return 1")  # runs with the page's JavaScript off too
    except WebDriverException:
        return False
    return True
