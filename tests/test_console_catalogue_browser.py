"""The console's catalogue, points rules and gift edit end to end in headless Chromium (K1, K2,
M3): the real app under granian with the built console (``make console``).

As the brand administrator: a category is created on the categories page, a product with a GTIN
in it on the products page (a GTIN with a wrong check digit is named at its field first, and
nothing is sent), published from its row — its consumer page ``/p/{gtin}`` then shows it, and
did not before; a gift's stock is edited (only the stock is sent: its other fields stay) and a
points rule set for a product picked by name.
"""

from __future__ import annotations

import uuid
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests import test_console_browser as base
from tests.test_console_browser import _click, _console_errors, _find, _sign_out, _wait
from tests.test_console_ops_browser import _pick, _row, _start

chromium, browser, server = base.chromium, base.browser, base.server  # the same Chromium
downloads = base.downloads


def _gtin13(body12: str) -> str:
    """``body12`` with its GS1 check digit (mod 10, weights 3 and 1 from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body12)))
    return body12 + str((10 - total % 10) % 10)


def _type(driver: WebDriver, css: str, text: str) -> None:
    field = _find(driver, css)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    field.send_keys(text)


def _dialog_closed(driver: WebDriver, name: str) -> bool:
    return not any(
        d.is_displayed() for d in driver.find_elements(By.CSS_SELECTOR, f'[data-dialog="{name}"]')
    )


async def test_admin_creates_a_category_and_publishes_a_product_with_a_gtin(
    server: str, browser: WebDriver, app: Any, demo: Any, client: Any
) -> None:
    tag = uuid.uuid4().hex[:8].upper()
    category, name = f"E2E分类{tag}", f"E2E水乳{tag}"
    gtin = _gtin13("69" + str(uuid.uuid4().int)[:10])
    wrong = gtin[:-1] + str((int(gtin[-1]) + 1) % 10)

    _start(browser, server, "admin")
    _console_errors(browser)  # drained: an earlier test's answers are not this one's
    _click(browser, '[data-menu="catalog-categories"]')
    _click(browser, '#catalog-categories [data-action="create"]')
    _find(browser, 'input[name="category_name"]').send_keys(category)
    _click(browser, '[data-action="save"]')
    _row(browser, category)

    _click(browser, '[data-menu="catalog-products"]')
    _click(browser, '#catalog-products [data-action="create"]')
    _find(browser, 'input[name="product_name"]').send_keys(name)
    browser.find_element(By.CSS_SELECTOR, 'input[name="product_no"]').send_keys(f"E2E-{tag}")
    _pick(browser, '[data-dialog="product"] [data-field="category"]', category)
    browser.find_element(By.CSS_SELECTOR, 'input[name="spec"]').send_keys("100ml")
    browser.find_element(By.CSS_SELECTOR, 'input[name="gtin"]').send_keys(wrong)
    _click(browser, '[data-dialog="product"] [data-action="save"]')
    error = _find(browser, '[data-dialog="product"] .el-form-item__error')
    assert error.text == "GTIN 校验位不正确"
    _type(browser, 'input[name="gtin"]', gtin)
    _click(browser, '[data-dialog="product"] [data-action="save"]')
    _wait(browser).until(lambda d: _dialog_closed(d, "product"))

    browser.get(f"{server}/console/catalog/products?q={tag}")
    row = _row(browser, name)
    assert f"0{gtin}" in row.text and category in row.text  # stored and shown as GTIN-14
    assert row.find_element(By.CSS_SELECTOR, '[data-published="false"]')
    assert (await client.get(f"/p/{gtin}")).status_code == 404  # not published yet
    row.find_element(By.CSS_SELECTOR, "[data-publish]").click()
    _wait(browser).until(
        lambda d: _row(d, name).find_elements(By.CSS_SELECTOR, '[data-published="true"]')
    )

    page = await client.get(f"/p/{gtin}")
    assert page.status_code == 200 and name in page.text and category in page.text
    async with app.state.pool.connection() as conn:
        found = await (
            await conn.execute(
                "SELECT p.gtin, p.spec, p.published, c.name AS category, p.org_id "
                "FROM products p JOIN categories c ON c.id = p.category_id WHERE p.name = %s",
                (name,),
            )
        ).fetchone()
    assert found == {
        "gtin": f"0{gtin}",
        "spec": "100ml",
        "published": True,
        "category": category,
        "org_id": demo["BRAND-LUMI"],
    }
    assert not _console_errors(browser)
    _sign_out(browser)


async def test_admin_edits_a_gifts_stock_and_sets_a_points_rule(
    server: str, browser: WebDriver, app: Any, client: Any, login: Any
) -> None:
    tag = uuid.uuid4().hex[:8].upper()
    headers = await login("admin")
    created = await client.post(
        "/gifts",
        headers=headers,
        json={
            "name": f"E2E礼品{tag}",
            "points_cost": 300,
            "kind": "offline",
            "stock": 5,
            # on the page's first rows: the gifts list in display order, and the gifts the
            # worker's earlier tests made (order 0) pushed a new one off the first page
            "display_order": -999_000,
        },
    )
    assert created.status_code == 201, created.text
    gift = created.json()
    product = await client.post(
        "/products",
        headers=headers,
        json={"name": f"E2E积分品{tag}", "product_no": f"E2EP-{tag}"},
    )
    assert product.status_code == 201, product.text
    product_id = product.json()["id"]

    _start(browser, server, "admin")
    _console_errors(browser)
    browser.get(f"{server}/console/gifts")
    _row(browser, gift["name"])
    _click(browser, f'[data-edit="{gift["id"]}"]')
    _type(browser, '[data-dialog="gift"] [data-field="stock"] input', "42")
    _click(browser, '[data-dialog="gift"] [data-action="save"]')
    _wait(browser).until(lambda d: "42" in _row(d, gift["name"]).text)
    after = (await client.get(f"/gifts/{gift['id']}", headers=headers)).json()
    assert after["stock"] == 42
    assert {k: v for k, v in after.items() if k not in ("stock", "updated_at")} == {
        k: v for k, v in gift.items() if k not in ("stock", "updated_at")
    }

    _click(browser, '[data-menu="points-rules"]')
    _click(browser, '#points-rules [data-action="create"]')
    _find(browser, '[data-field="product"] input').send_keys(tag)
    option = _wait(browser).until(
        lambda d: next(
            (
                o
                for o in d.find_elements(By.CSS_SELECTOR, ".el-select-dropdown__item")
                if o.is_displayed() and tag in o.text
            ),
            None,
        )
    )
    option.click()
    browser.find_element(By.CSS_SELECTOR, 'input[name="rule_points"]').send_keys("15")
    _click(browser, '#points-rules .el-dialog [data-action="save"]')
    _wait(browser).until(lambda d: _row(d, f"E2E积分品{tag}"))
    assert "15" in _row(browser, f"E2E积分品{tag}").text
    rules = await client.get(f"/points/rules?product_id={product_id}", headers=headers)
    assert [(r["agent_id"], r["points"]) for r in rules.json()["items"]] == [(None, 15)]
    assert not _console_errors(browser)
    _sign_out(browser)
