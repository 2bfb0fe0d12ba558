"""tests/browser.py's ``Browser``: a Chromium that died (its renderer or the whole browser killed)
is replaced by a working one on the next test's ``driver()``, and one still alive is kept."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest
from selenium.common.exceptions import WebDriverException

from tests.browser import BROWSER_DIED, Browser, start_chromium

PAGE = "data:text/html,<title>alive</title>"


def _kill(chromedriver: int, renderer: bool) -> None:
    """Kill ChromeDriver's Chromium (the process without --type=) or its pages' renderers."""
    for pid, args in _descendants(chromedriver):
        if ("--type=renderer" in args) if renderer else ("--type=" not in args):
            os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[tuple[int, str]]:
    found = []
    for line in subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout.splitlines():
        child, args = line.strip().split(" ", 1)
        found += [(int(child), args), *_descendants(int(child))]
    return found


@pytest.mark.parametrize("renderer", [True, False], ids=["renderer", "browser"])
def test_a_dead_chromium_is_replaced_and_a_live_one_kept(renderer: bool) -> None:
    browser = Browser(start_chromium)
    try:
        first = browser.driver()
        first.get(PAGE)
        assert browser.driver() is first  # alive: kept
        _kill(first.service.process.pid, renderer)
        with pytest.raises(WebDriverException) as died:
            first.get(PAGE)
        # the failure is one tests/conftest.py reruns
        error = f"{type(died.value).__name__}: {died.value}"
        assert any(re.search(pattern, error) for pattern in BROWSER_DIED), error
        second = browser.driver()
        assert second is not first
        second.get(PAGE)
        assert second.title == "alive"
    finally:
        browser.quit()
