"""Shared by the points and redemption tests: members (a direct insert and a member token, as the
issue-15 contract allows), clients of their own address, goods with a channel agent."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import httpx

from tests import steady
from tests.test_logistics import confirm, document, pack

_ips = itertools.count(1)


def new_ip() -> str:
    """A client address of its own: the verification rate limit (per IP and minute) of one
    test never meets another's."""
    n = next(_ips)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def member_client(app: Any, ip: str | None = None) -> httpx.AsyncClient:
    """A client of the session's app (its lifespan is the ``client`` fixture's) from ``ip``."""
    transport = httpx.ASGITransport(app=app, client=(ip or new_ip(), 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60)


def random_phone() -> str:
    """A mobile number no other test of this worker uses (``tests.steady.phone``)."""
    return steady.phone("139")


async def new_member(
    app: Any, brand_id: int, province: str | None = "浙江省", status: str = "active"
) -> tuple[int, dict[str, str], str]:
    """A member of ``brand_id``: (id, Authorization headers, phone)."""
    from app.members.principal import issue_token

    phone = random_phone()
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                """INSERT INTO members (brand_id, phone, province, status) VALUES (%s, %s, %s, %s)
                   RETURNING id""",
                (brand_id, phone, province, status),
            )
        ).fetchone()
    token, _ = issue_token(app.state.settings, row["id"])
    return int(row["id"]), {"Authorization": f"Bearer {token}"}, phone


async def shipped_goods(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """30 sun-cream units in 3 cases: cases 0 and 1 shipped to AGENT-ZJ (their channel agent),
    case 2 never left the factory (no channel agent)."""
    goods = await pack(client, login, app, demo, 3)
    clerk = await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    await into_channel(client, login, demo, goods["cases"][:2], stocked=True)
    return goods


async def into_channel(
    client: Any,
    login: Any,
    demo: Any,
    codes: list[str],
    agent: str = "AGENT-ZJ",
    *,
    stocked: bool = False,
) -> dict[str, Any]:
    """Ship ``codes`` (units or cases) into the sales channel, as the brand does: a
    ``factory_inbound`` into the brand's warehouse (unless already ``stocked`` there), an
    ``outbound`` to ``agent`` and its receipt there. A member's claim of a unit never shipped is
    refused 422 ``not_shipped`` (SPEC B4: rewards only on codes shipped through the channel).
    Answers the shipment."""
    clerk = await login("clerk")
    if not stocked:
        inbound = await document(client, clerk, codes, kind="factory_inbound")
        assert (done := await confirm(client, clerk, inbound)).status_code == 200, done.text
    ship = await document(client, clerk, codes, kind="outbound", counterparty_id=demo[agent])
    assert (done := await confirm(client, clerk, ship)).status_code == 200, done.text
    receiver = await login(_RECEIVERS[agent])
    received = await document(client, receiver, kind="inbound", shipment_id=ship["id"])
    assert (done := await confirm(client, receiver, received)).status_code == 200, done.text
    return ship


_RECEIVERS = {"AGENT-ZJ": "agent_clerk", "AGENT-GD": "gd_admin"}  # who takes a shipment in


async def set_rule(
    client: Any, headers: dict[str, str], product_id: int, points: int, agent_id: int | None = None
) -> dict[str, Any]:
    response = await client.put(
        "/points/rules",
        headers=headers,
        json={"product_id": product_id, "agent_id": agent_id, "points": points},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def claim_body(scheme: Any, serial: str, client_id: str | None = None, **extra: Any) -> dict:
    return {
        "serial": serial,
        "pin": scheme.pin(serial),
        "client_id": client_id or secrets.token_hex(8),
        **extra,
    }
