"""The console's product media upload end to end in headless Chromium (K1, W1): the real app
under granian with the built console (``make console``).

As the brand administrator: in the new-product dialog, "Upload" beside the image URL sends a PNG
to ``POST /media/catalog``, the field fills with its path and the dialog previews it; saved, the
products list shows it as a thumbnail — drawn, so the console's CSP let the same-origin image in —
and the consumer page ``/p/{gtin}`` shows the same picture.

On the Media page: an image uploaded and never saved on a product is found with the "unused"
filter, as a thumbnail, and deleted after a confirmation; one a product shows names the product
and has no delete button; the usage against the quota is shown.
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests import test_console_browser as base
from tests.h5_support import new_product
from tests.images import png
from tests.test_catalog_media import upload
from tests.test_console_browser import _click, _console_errors, _find, _wait
from tests.test_console_catalogue_browser import _dialog_closed, _gtin13
from tests.test_console_ops_browser import _row, _start

chromium, browser, server = base.chromium, base.browser, base.server  # the same Chromium
downloads = base.downloads

_DRAWN = "return arguments[0].complete && arguments[0].naturalWidth > 0"


async def test_admin_uploads_a_product_image_and_sees_its_thumbnail(
    server: str, browser: WebDriver, app: Any, demo: Any, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8].upper()
    name, gtin = f"E2E图片{tag}", _gtin13("69" + str(uuid.uuid4().int)[:10])
    picture = tmp_path / "product.png"
    picture.write_bytes(png(int(tag, 16) & 0xFFFFFF, b"taken at 31.23N 121.47E"))

    _start(browser, server, "admin")
    _console_errors(browser)  # drained: an earlier test's answers are not this one's
    browser.get(f"{server}/console/catalog/products")
    _click(browser, '#catalog-products [data-action="create"]')
    _find(browser, 'input[name="product_name"]').send_keys(name)
    browser.find_element(By.CSS_SELECTOR, 'input[name="product_no"]').send_keys(f"E2E-M-{tag}")
    browser.find_element(By.CSS_SELECTOR, 'input[name="gtin"]').send_keys(gtin)
    upload = _find(browser, '[data-upload="image"] input[type="file"]')
    upload.send_keys(str(picture))
    field = browser.find_element(By.CSS_SELECTOR, 'input[name="image_url"]')
    _wait(browser).until(lambda _: field.get_attribute("value").startswith("/media/catalog/"))
    path = field.get_attribute("value")
    preview = _find(browser, '[data-preview="image"]')
    _wait(browser).until(lambda d: d.execute_script(_DRAWN, preview))
    _click(browser, '[data-dialog="product"] [data-field="published"]')
    _click(browser, '[data-dialog="product"] [data-action="save"]')
    _wait(browser).until(lambda d: _dialog_closed(d, "product"))

    browser.get(f"{server}/console/catalog/products?q={tag}")
    row = _row(browser, name)
    thumbnail = _wait(browser).until(
        lambda _: row.find_element(By.CSS_SELECTOR, "[data-thumbnail] img")
    )
    assert thumbnail.get_attribute("src") == f"{server}{path}"
    _wait(browser).until(lambda d: d.execute_script(_DRAWN, thumbnail))
    assert _console_errors(browser) == []

    browser.get(f"{server}/p/{gtin}")
    image = _find(browser, ".product img")
    assert image.get_attribute("src") == f"{server}{path}"
    _wait(browser).until(lambda d: d.execute_script(_DRAWN, image))


async def test_admin_finds_an_unused_medium_on_the_media_page_and_deletes_it(
    server: str, browser: WebDriver, client: Any, login: Any
) -> None:
    admin = await login("admin")
    orphan = (await upload(client, admin, png(secrets.randbelow(1 << 24)))).json()
    shown = (await upload(client, admin, png(secrets.randbelow(1 << 24)))).json()
    name = f"E2E媒体{uuid.uuid4().hex[:8].upper()}"
    product = await new_product(client, login, name=name, image_url=shown["url"])

    _start(browser, server, "admin")
    _console_errors(browser)  # drained: an earlier test's answers are not this one's
    browser.get(f"{server}/console/catalog/media?unused=false&per_page=200")
    names = _find(browser, f'[data-products="{shown["id"]}"] [data-product="{product["id"]}"]')
    assert names.text == name
    assert not browser.find_elements(By.CSS_SELECTOR, f'[data-delete="{shown["id"]}"]')
    usage = _find(browser, "[data-usage] [data-quota]")
    assert usage.get_attribute("data-quota") == str(2 * 1024**3)
    assert int(usage.get_attribute("data-used") or 0) >= orphan["size_bytes"] + shown["size_bytes"]

    browser.get(f"{server}/console/catalog/media?unused=true&per_page=200")
    thumbnail = _find(browser, f'[data-thumbnail="{orphan["id"]}"] img')
    assert thumbnail.get_attribute("src") == f"{server}{orphan['url']}"
    _wait(browser).until(lambda d: d.execute_script(_DRAWN, thumbnail))
    assert _find(browser, f'[data-products="{orphan["id"]}"]').get_attribute("data-count") == "0"
    assert not browser.find_elements(By.CSS_SELECTOR, f'[data-products="{shown["id"]}"]')
    _click(browser, f'[data-delete="{orphan["id"]}"]')
    _click(browser, ".el-message-box__btns .el-button--primary")
    _wait(browser).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, f'[data-delete="{orphan["id"]}"]')
    )
    assert (await client.get(orphan["url"])).status_code == 404
    assert (await client.get(shown["url"])).status_code == 200
    assert _console_errors(browser) == []
