"""What the consumer-page tests share: genuine activated units, their PINs, products, HTML reading.

How a unit becomes "activated" lives in ``activate`` alone: it follows tests/test_verify.py (whole
batch set active until per-unit commissioning on the packing line lands; then activate the units
through the packing line here, in this one place).
"""

from __future__ import annotations

import re
import secrets
from html import unescape
from typing import Any

from app._core import gs1_check_digit


async def activate(client: Any, login: Any, conn: Any, batch_no: int, size: int) -> None:
    """Make every unit of the batch verifiable as genuine (as tests/test_verify.py does)."""
    await conn.execute("UPDATE code_batches SET state = 'active' WHERE batch_no = %s", (batch_no,))
    await conn.commit()


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
    client: Any, login: Any, demo: Any, conn: Any, product_id: int | None = None, size: int = 20
) -> int:
    """A new batch of ``size`` codes for the product (default: the demo sun cream), activated."""
    planner = await login("planner")
    if product_id is None:
        found = await client.get("/products", headers=planner, params={"q": "LM-SC-30"})
        product_id = found.json()["items"][0]["id"]
    created = await client.post(
        "/batches",
        headers=planner,
        json={"size": size, "printer_id": demo["PRINTER-SH"], "product_id": product_id},
    )
    assert created.status_code == 201, created.text
    batch_no = int(created.json()["batch_no"])
    await activate(client, login, conn, batch_no, size)
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
