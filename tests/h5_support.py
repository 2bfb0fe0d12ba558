"""What the consumer-page tests share: genuine activated units, their PINs, products, HTML reading.

How a unit becomes "activated" lives in ``activate`` alone: it follows tests/test_verify.py
(commissioning on a packing line, through tests/helpers.py), so a change there is one line here.
"""

from __future__ import annotations

import re
import secrets
from html import unescape
from typing import Any

from app._core import gs1_check_digit
from tests import helpers
from tests.points_support import into_channel


async def activate(client: Any, login: Any, serials: list[str], product_id: int) -> None:
    """Make the units verifiable as genuine: commissioned on a packing line, as in
    tests/test_verify.py."""
    await helpers.activate(client, login, serials, product_id)


async def new_product(client: Any, login: Any, **fields: Any) -> dict[str, Any]:
    """A published product of the demo brand with a fresh GTIN-13."""
    body = "69" + "".join(str(secrets.randbelow(10)) for _ in range(10))
    payload = {
        "name": "H5 test product",
        "product_no": f"H5-{secrets.token_hex(4)}",
        "gtin": body + str(gs1_check_digit(body)),
        "published": True,
        **fields,
    }
    created = await client.post("/products", headers=await login("admin"), json=payload)
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


async def activated_batch(
    client: Any,
    login: Any,
    demo: Any,
    product_id: int | None = None,
    size: int = 20,
    *,
    shipped: bool = False,
) -> int:
    """A new batch of ``size`` codes for the product (default: the demo sun cream), all activated:
    never shipped (a check with the flag on answers ``never_shipped``) unless ``shipped``, then
    shipped to AGENT-ZJ (``points_support.into_channel``), as a unit must be to earn points."""
    if product_id is None:
        batch_no, product_id = await helpers.issue_units(client, login, demo, size)
    else:
        created = await client.post(
            "/batches",
            headers=await login("planner"),
            json={"size": size, "printer_id": demo["PRINTER-SH"], "product_id": product_id},
        )
        assert created.status_code == 201, created.text
        batch_no = int(created.json()["batch_no"])
    scheme = helpers.scheme_for_tests()
    serials = [scheme.serial(batch_no, i) for i in range(size)]
    await activate(client, login, serials, product_id)
    if shipped:
        await into_channel(client, login, demo, serials)
    return batch_no


def unit(app: Any, batch_no: int, index: int) -> tuple[str, str]:
    """The serial of one unit and the PIN printed inside its pack."""
    serial = app.state.scheme.serial(batch_no, index)
    return serial, app.state.scheme.pin(serial)


def wrong_pin(pin: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in pin)


def text_of(page: str) -> str:
    """The visible text of a page, tags dropped and whitespace collapsed (for assertions)."""
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", page))).strip()


def result_of(page: str) -> str | None:
    """The ``data-result`` of the answer box: genuine, suspicious, not_genuine, wrong_pin, …"""
    found = re.search(r'id="result" data-result="([a-z_]+)"', page)
    return found.group(1) if found else None


def has_pin_form(page: str) -> bool:
    return 'name="pin"' in page and 'method="post"' in page
