"""The console's product media upload end to end in headless Chromium (K1, W1): the real app
under granian with the built console (``make console``).

As the brand administrator: in the new-product dialog, "Upload" beside the image URL sends a PNG
to ``POST /media/catalog``, the field fills with its path and the dialog previews it; saved, the
products list shows it as a thumbnail — drawn, so the console's CSP let the same-origin image in —
and the consumer page ``/p/{gtin}`` shows the same picture.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests import test_console_browser as base
from tests.test_catalog_media import png
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
