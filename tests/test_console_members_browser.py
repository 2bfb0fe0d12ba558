"""The console's member admin and SMS pages end to end in headless Chromium (M5, W4): the real
app under granian with the built console (``make console``).

As the brand administrator: a member who claimed points by scan + PIN is opened from the members
list; the drawer's points ledger shows the claim with its product and the balance, and a points
adjustment made there moves the balance once. On the SMS page, a dry run of a campaign to the
members of one province shows the audience the API counts; an agent's administrator is offered
store managers only, and no template writing (the API refuses both below the brand).
"""

from __future__ import annotations

import uuid
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests import test_console_browser as base
from tests.points_support import claim_body, member_client, new_member, set_rule, shipped_goods
from tests.test_console_browser import _click, _console_errors, _find, _wait
from tests.test_console_ops_browser import _pick, _row, _start

chromium, browser, server = base.chromium, base.browser, base.server  # the same Chromium
downloads = base.downloads


def _type(driver: WebDriver, css: str, text: str) -> None:
    field = _find(driver, css)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    field.send_keys(text)


def _text(driver: WebDriver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text.strip()


async def test_the_admin_opens_a_members_detail_sees_its_claim_and_adjusts_its_points(
    server: str, browser: WebDriver, app: Any, demo: Any, client: Any, login: Any
) -> None:
    admin = await login("admin")
    goods = await shipped_goods(client, login, app, demo)
    await set_rule(client, admin, goods["product_id"], 10)
    product = (await client.get(f"/products/{goods['product_id']}", headers=admin)).json()
    member_id, headers, phone = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        claimed = await mc.post(
            "/members/me/claims",
            headers=headers,
            json=claim_body(app.state.scheme, goods["units"][0]),
        )
    assert claimed.status_code == 201, claimed.text
    points = claimed.json()["points"]
    assert points > 0

    _start(browser, server, "admin")
    _console_errors(browser)  # drained: an earlier test's answers are not this one's
    browser.get(f"{server}/console/members?phone={phone}")
    _click(browser, f'[data-detail="{member_id}"]')
    # the ledger tab opens first; the drawer slides in: a cell still outside the window reads ""
    claim = f"扫码积分 +{points} {product['name']}"
    _wait(browser).until(lambda d: claim in " ".join(_row(d, "扫码积分").text.split()))
    _wait(browser).until(lambda d: _text(d, '[data-field="balance"]') == str(points))
    assert _text(browser, '[data-field="phone"]') == phone  # brand admin: members.read_phone

    reason = f"e2e goodwill {uuid.uuid4().hex[:6]}"
    _click(browser, '[data-action="adjust"]')
    _type(browser, '[data-field="adjust-amount"] input', "5")
    _find(browser, 'input[name="reason"]').send_keys(reason, Keys.TAB)
    _click(browser, '[data-action="save-adjust"]')
    _wait(browser).until(lambda d: _text(d, '[data-field="balance"]') == str(points + 5))
    _wait(browser).until(lambda d: "调整 +5" in " ".join(_row(d, reason).text.split()))

    ledger = (await client.get(f"/members/{member_id}/points", headers=admin)).json()
    assert ledger["balance"] == points + 5
    assert [(e["kind"], e["points"]) for e in ledger["items"] if e["reason"] == reason] == [
        ("adjustment", 5)
    ]
    assert _console_errors(browser) == []


async def test_a_dry_run_campaign_shows_its_audience_and_an_agent_is_offered_store_managers_only(
    server: str, browser: WebDriver, app: Any, demo: Any, client: Any, login: Any
) -> None:
    admin = await login("admin")
    name = f"e2e_{uuid.uuid4().hex[:8]}"
    made = await client.post(
        "/sms/templates", headers=admin, json={"name": name, "body": "{gift}到店了"}
    )
    assert made.status_code == 201, made.text
    province = "西藏自治区"
    for _ in range(2):
        await new_member(app, demo["BRAND-LUMI"], province=province)
    body = {
        "template_id": made.json()["id"],
        "audience": "members",
        "filter": {"provinces": [province]},
        "variables": {"gift": "面霜"},
        "dry_run": True,
    }
    counted = await client.post("/sms/campaigns", headers=admin, json=body)
    assert counted.status_code == 201, counted.text
    expected = counted.json()
    assert expected["recipients"] >= 2

    _start(browser, server, "admin")
    _console_errors(browser)
    _click(browser, '[data-menu="sms"]')
    _click(browser, '[data-action="new-campaign"]')
    _pick(browser, '[data-dialog="campaign"] [data-field="template"]', name)
    _find(browser, 'input[name="var-gift"]').send_keys("面霜")
    _pick(browser, '[data-dialog="campaign"] [data-field="provinces"]', province)
    _click(browser, '[data-dialog="campaign"] .el-dialog__title')  # the options close
    _click(browser, '[data-action="dry-run"]')
    shown = _wait(browser).until(
        lambda d: d.find_element(By.CSS_SELECTOR, '[data-result="dry-run"]')
    )
    assert shown.text.startswith(
        f"将发送 {expected['recipients']} 人，跳过 {expected['skipped']} 人"
    ), shown.text
    assert _console_errors(browser) == []

    # below the brand: store managers only, and the templates are read, not written
    _start(browser, server, "agent_admin")
    _click(browser, '[data-menu="sms"]')
    _click(browser, '[data-action="new-campaign"]')
    radios = _find(browser, '[data-dialog="campaign"] [data-field="audience"]')
    # its text once shown: Selenium reads none while the dialog still opens (a loaded run)
    assert _wait(browser).until(lambda _: radios.text.split()) == ["门店负责人"]
    _click(browser, '[data-dialog="campaign"] .el-dialog__headerbtn')
    _click(browser, "#tab-templates")
    _row(browser, name)
    assert browser.find_elements(By.CSS_SELECTOR, '[data-action="new-template"]') == []
    assert browser.find_elements(By.CSS_SELECTOR, '[data-table="templates"] [data-edit]') == []
