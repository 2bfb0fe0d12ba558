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


async def tenant_units(
    client: Any, app: Any, login: Any, size: int = 3, *, shipped: bool = False
) -> dict[str, Any]:
    """A brand onboarded for the test with a published product and ``size`` activated units
    of it (``serials``), commissioned on a line of its own; with ``shipped``, shipped to an
    agent of its own (the sales channel, as a unit must be to be drawn). Answers the brand, its admin's headers, the product id and the serials."""
    from tests.test_logistics import confirm, document

    brand, admin = await helpers.onboarded_brand(client, login)
    tag = secrets.token_hex(3)
    product = await client.post(
        "/products",
        headers=admin,
        json={"name": f"Tenant cream {tag}", "product_no": f"TC-{tag}", "published": True},
    )
    assert product.status_code == 201, product.text

    async def org(kind: str, parent: int) -> int:
        made = await client.post(
            "/orgs",
            headers=admin,
            json={"kind": kind, "name": f"{kind} {tag}", "erp_code": f"{kind}-{tag}",
                  "parent_id": parent},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        return int(made.json()["id"])

    batch = await client.post(
        "/batches",
        headers=admin,
        json={"size": size, "printer_id": await org("printer", brand["id"]),
              "product_id": product.json()["id"]},
    )  # fmt: skip
    assert batch.status_code == 201, batch.text
    serials = [app.state.scheme.serial(batch.json()["batch_no"], i) for i in range(size)]
    line, context = f"TN{tag}", {"lot": "L1", "production_date": "2026-11-01"}
    ctx = await client.put(
        f"/lines/{line}/context",
        headers=admin,
        json={"product_id": product.json()["id"], **context},
    )
    assert ctx.status_code == 200, ctx.text
    scans = [{"id": f"t-{s}", "code": s, "at": "2026-11-01T08:00:00+08:00"} for s in serials]
    done = await client.post(f"/lines/{line}/scans", headers=admin, json={"scans": scans})
    assert done.status_code == 200 and done.json()["rejected"] == 0, done.text
    if shipped:  # commissioned by the brand's admin, held by the brand: shipped from there
        agent = await org("agent", brand["id"])
        ship = await document(client, admin, serials, kind="outbound", counterparty_id=agent)
        assert (ok := await confirm(client, admin, ship)).status_code == 200, ok.text
    return {"brand": brand, "admin": admin, "product_id": product.json()["id"], "serials": serials}
