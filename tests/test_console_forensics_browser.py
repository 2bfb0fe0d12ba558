"""The console's fraud and leaks page end to end in headless Chromium (B5): the real app under
granian with the built console (``make console``).

As the brand administrator (``fraud.review``, ``members.write``): a member put on hold through
the API is found in the holds list, its hold opened and confirmed with a note and "also freeze
the member" — the API then answers the hold confirmed with that note and the member frozen
for it; a hold already decided (released) offers no decision.
"""

from __future__ import annotations

import secrets
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests import test_console_browser as base
from tests.points_support import new_member
from tests.test_console_browser import _click, _console_errors, _find, _wait
from tests.test_console_ops_browser import _start

chromium, browser, server = base.chromium, base.browser, base.server  # the same Chromium
downloads = base.downloads


async def _hold(client: Any, admin: dict[str, str], member_id: int, note: str) -> int:
    made = await client.post(
        "/forensics/holds",
        headers=admin,
        json={"party_kind": "member", "party_id": member_id, "note": note},
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def _text(driver: WebDriver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text.strip()


async def test_a_reviewer_confirms_a_members_hold_and_freezes_the_member_in_the_console(
    server: str, browser: WebDriver, app: Any, demo: Any, client: Any, login: Any
) -> None:
    admin = await login("admin")
    tag = secrets.token_hex(4)
    member_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
    hold_id = await _hold(client, admin, member_id, f"e2e seen at two tills {tag}")
    other_id, _, _ = await new_member(app, demo["BRAND-LUMI"])
    released_id = await _hold(client, admin, other_id, f"e2e released {tag}")
    released = await client.post(
        f"/forensics/holds/{released_id}/release", headers=admin, json={"note": "e2e"}
    )
    assert released.status_code == 200, released.text

    _start(browser, server, "admin")
    _console_errors(browser)  # drained: an earlier test's answers are not this one's
    _click(browser, '[data-menu="forensics"]')
    _wait(browser).until(lambda d: "/console/forensics" in d.current_url)
    # the open member holds, newest first: this one on the first page
    browser.get(f"{server}/console/forensics?state=open&party_kind=member")
    _find(browser, f'[data-member="{member_id}"]')
    _click(browser, f'[data-hold="{hold_id}"]')
    # the drawer slides in: a cell still outside the window reads "" (waited for, not read once)
    _wait(browser).until(lambda d: _text(d, '[data-field="note"]').endswith(tag))
    _wait(browser).until(lambda d: _text(d, '[data-field="state"]') == "待审核")

    decision = f"e2e ring confirmed {tag}"
    _click(browser, '[data-action="confirm"]')
    _find(browser, 'textarea[name="decision-note"]').send_keys(decision)
    _click(browser, '[data-field="also-freeze"]')
    _wait(browser).until(
        lambda d: (
            "is-checked" in (_find(d, '[data-field="also-freeze"]').get_attribute("class") or "")
        )
    )
    _click(browser, '[data-action="save-decision"]')
    _wait(browser).until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, '[data-field="state"]').get_attribute("data-state")
            == "confirmed"
        )
    )
    _find(browser, '[data-field="no-actions"]')
    assert browser.find_elements(By.CSS_SELECTOR, '[data-action="release"]') == []
    # the freeze is made after the confirmation: its outcome is shown when it is done
    _find(browser, '[data-result="follow-up-done"]')
    assert browser.find_elements(By.CSS_SELECTOR, '[data-result="follow-up-failed"]') == []

    hold = (await client.get(f"/forensics/holds/{hold_id}", headers=admin)).json()
    assert (hold["state"], hold["note"], hold["decision_note"]) == (
        "confirmed",
        f"e2e seen at two tills {tag}",
        decision,
    )
    assert _text(browser, '[data-field="decision-note"]') == decision
    member = (await client.get(f"/members/{member_id}", headers=admin)).json()
    assert member["status"] == "frozen", member
    assert member["frozen_reason"] == f"欺诈审核 #{hold_id} 已确认: {decision}"

    # a decided hold: shown as it is, no decision offered
    _find(browser, "body").send_keys(Keys.ESCAPE)
    browser.get(f"{server}/console/forensics?state=released&party_kind=member")
    _click(browser, f'[data-hold="{released_id}"]')
    _wait(browser).until(lambda d: _text(d, '[data-field="decision-note"]') == "e2e")
    assert _text(browser, '[data-field="note"]') == f"e2e released {tag}"
    _find(browser, '[data-field="no-actions"]')
    assert browser.find_elements(By.CSS_SELECTOR, '[data-action="confirm"]') == []
    assert browser.find_elements(By.CSS_SELECTOR, '[data-action="release"]') == []
    assert _console_errors(browser) == []
