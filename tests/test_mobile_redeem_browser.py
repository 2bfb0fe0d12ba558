"""The counter tasks of the staff app (/m) end to end: redeeming a member's gift code (M4) and a
consumer's return with an exchange (L8), in the real app under granian with the built app
(``make console``) in headless Chromium (the browser and server of tests/test_mobile_browser.py).

A store clerk types the code of a member's SMS (loosely: lower case, a dash), sees the gift and
the member's masked phone, hands the gift out after a confirmation — the server records the clerk
and the store — and the same code typed again reads "already used" (您的兑换码已使用) with no
button to hand it out twice. Then the clerk scans a sold unit brought back, sees where and when it
was sold, picks "damaged", scans the unit given in exchange and sends it: the answer is on screen
and the server holds the return and the exchange's sale.
"""

from __future__ import annotations

from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.helpers import new_user
from tests.points_support import new_member
from tests.rebates_support import store_goods
from tests.test_mobile_browser import (  # noqa: F401 (fixtures)
    _errors,
    _find,
    _scan,
    _sign_in,
    _text,
    _wait,
    browser,
    chromium,
    server,
)
from tests.test_redemptions import give, new_gift, redeem


def _code(app: Any, serial: str) -> int:
    batch_no, index, _ = app.state.scheme.verify(serial)
    return int((batch_no << 32) | index)


def _confirm_dialog(driver: WebDriver) -> None:
    _find(driver, ".van-dialog__confirm").click()


async def test_a_store_clerk_hands_a_gift_out_once_by_its_code(
    browser: WebDriver,  # noqa: F811 (the fixture imported above)
    server: str,  # noqa: F811
    client: Any,
    login: Any,
    app: Any,
    demo: dict[str, int],
) -> None:
    driver = browser
    member_id, headers, phone = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, name="Silk scarf 丝巾", points_cost=30, stock=5)
    made = await redeem(app, headers, gift["id"])
    assert made.status_code == 201, made.text
    code = made.json()["code"]

    _sign_in(driver, server, "store_clerk")
    assert "礼品兑换" in _text(driver, "[data-test=tasks]")
    driver.get(f"{server}/m/redeem")
    _scan(driver, f"{code[:5].lower()}-{code[5:]}")  # as read out: lower case, a dash
    _wait(driver).until(lambda d: "Silk scarf 丝巾" in _text(d, "[data-test=gift]"))
    assert _text(driver, "[data-test=phone]").endswith(phone[:3] + "****" + phone[-4:])
    assert "兑换码有效" in _text(driver, "[data-test=verdict]")
    _find(driver, "[data-test=fulfil]").click()
    _confirm_dialog(driver)
    _wait(driver).until(lambda d: "已兑换：Silk scarf 丝巾" in _text(d, "[data-test=verdict]"))
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """SELECT r.status, r.fulfilled_org_id, u.username FROM redemptions r
                   JOIN users u ON u.id = r.fulfilled_by WHERE r.id = %s""",
                (made.json()["id"],),
            )
        ).fetchone()
    assert (row["status"], row["fulfilled_org_id"], row["username"]) == (
        "fulfilled",
        demo["STORE-HZ-01"],
        "store_clerk",
    )

    # the same code again: already used, in the seed's words, and nothing to hand out
    _find(driver, "[data-test=next]").click()
    _scan(driver, code)
    _wait(driver).until(lambda d: "您的兑换码已使用" in _text(d, "[data-test=state]"))
    assert "已由你" in _text(driver, "[data-test=verdict]")  # it was this clerk's own
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-test=fulfil]")
    # a code that cannot be one is said so before anything is sent
    _scan(driver, "ABC")
    _wait(driver).until(lambda d: "10 位字母和数字" in _text(d, "[data-test=verdict]"))
    assert _errors(driver) == []


async def test_a_consumer_returns_a_damaged_unit_for_another_on_the_phone(
    browser: WebDriver,  # noqa: F811 (the fixture imported above)
    server: str,  # noqa: F811
    client: Any,
    login: Any,
    app: Any,
    demo: dict[str, int],
) -> None:
    driver = browser
    units = (await store_goods(client, login, app, demo))["units"]
    clerk = await login("store_clerk")
    sold = await client.post("/sales", headers=clerk, json={"codes": [units[0]]})
    assert sold.status_code == 201, sold.text

    _sign_in(driver, server, "store_clerk")
    assert "退换货" in _text(driver, "[data-test=tasks]")
    driver.get(f"{server}/m/return")
    _scan(driver, units[0])
    _wait(driver).until(lambda d: "杭州西湖店" in _text(d, "[data-test=sold-by]"))
    assert _text(driver, "[data-test=sold-at]")
    assert _text(driver, "[data-test=product]") not in ("", "—")
    Select(_find(driver, "[data-test=reason]")).select_by_value("damaged")
    _scan(driver, units[0])  # the returned unit itself is no exchange
    _wait(driver).until(lambda d: "同一件" in _text(d, "[data-test=verdict]"))
    _scan(driver, units[1])
    _wait(driver).until(lambda d: units[1] in _text(d, "[data-test=exchange]"))
    _find(driver, "[data-test=submit-return]").click()
    _confirm_dialog(driver)
    _wait(driver).until(lambda d: f"已换出：{units[1]}" in _text(d, "[data-test=answer]"))
    assert "破损" in _text(driver, "[data-test=answer]")
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                """SELECT code, status, disposition FROM unit_state
                   WHERE code = ANY(%s) ORDER BY code""",
                ([_code(app, u) for u in units[:2]],),
            )
        ).fetchall()
    states = {r["status"] + "/" + r["disposition"] for r in rows}
    assert states == {"active/damaged", "sold/retail_sold"}, rows
    # scanned again: no longer sold, so the page refuses it as the API would (not_sold)
    _find(driver, "[data-test=again]").click()
    _scan(driver, units[0])
    _wait(driver).until(lambda d: "不能退货" in _text(d, "[data-test=verdict]"))
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-test=submit-return]")
    assert _errors(driver) == []


async def test_customer_service_hands_a_gift_out_at_a_store_found_by_name(
    browser: WebDriver,  # noqa: F811 (the fixture imported above)
    server: str,  # noqa: F811
    client: Any,
    login: Any,
    app: Any,
    demo: dict[str, int],
) -> None:
    """A probe: the brand's customer service hands a physical gift out for a store (M4); the page
    offered the first 200 active stores in a list, so a brand with more never offered the rest.
    The store is searched by name or ERP code, as the inspection page's (StorePicker), and the
    server records the store chosen."""
    driver = browser
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    await give(client, login, member_id, 100)
    gift = await new_gift(client, login, name="Tote bag 帆布袋", points_cost=30, stock=5)
    made = await redeem(app, headers, gift["id"])
    assert made.status_code == 201, made.text
    service = await new_user(client, await login("admin"), demo["BRAND-LUMI"], ["voucher_service"])

    _sign_in(driver, server, service["username"], password=service["password"])
    driver.get(f"{server}/m/redeem")
    _scan(driver, made.json()["code"])
    _wait(driver).until(lambda d: "Tote bag 帆布袋" in _text(d, "[data-test=gift]"))
    assert "选择门店" in _text(driver, "[data-test=store]")
    assert not _find(driver, "[data-test=fulfil]").is_enabled()  # no store chosen yet
    _find(driver, "[data-test=store]").click()
    _find(driver, ".van-popup input").send_keys("STORE-HZ-01")
    cell = "[data-test=store-STORE-HZ-01]"
    _wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, cell))
    driver.execute_script("arguments[0].click();", driver.find_element(By.CSS_SELECTOR, cell))
    _wait(driver).until(lambda d: "杭州西湖店" in _text(d, "[data-test=store]"))
    _find(driver, "[data-test=fulfil]").click()
    _confirm_dialog(driver)
    _wait(driver).until(lambda d: "已兑换：Tote bag 帆布袋" in _text(d, "[data-test=verdict]"))
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT status, fulfilled_org_id FROM redemptions WHERE id = %s",
                (made.json()["id"],),
            )
        ).fetchone()
    assert (row["status"], row["fulfilled_org_id"]) == ("fulfilled", demo["STORE-HZ-01"])
    assert _errors(driver) == []
