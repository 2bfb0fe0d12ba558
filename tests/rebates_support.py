"""Shared by the rebate tests: goods delivered to a store, rules, claim bodies and bulk claims.

``store_goods`` moves real goods through the channel (factory → AGENT-ZJ → STORE-HZ-01) with the
logistics API; ``insert_claims`` writes claim rows directly (with their tally-queue rows, as a
claim round does) for the tests of queries, rankings and statements that need many claims
quickly; the claim path itself is tested through ``POST /rebates/claims``.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.points_support import shipped_goods
from tests.test_logistics import confirm, document

_codes = itertools.count(1)


async def store_goods(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """30 sun-cream units in 3 cases: case 0 delivered to STORE-HZ-01 (received by its clerk),
    case 1 at AGENT-ZJ (its channel agent) and case 2 never left the factory."""
    goods = await shipped_goods(client, login, app, demo)
    agent, store = await login("agent_clerk"), await login("store_clerk")
    ship = await document(
        client, agent, goods["cases"][:1], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    assert (await confirm(client, agent, ship)).status_code == 200
    received = await document(client, store, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, store, received)).status_code == 200
    return goods


async def set_rebate(
    client: Any,
    headers: dict[str, str],
    product_id: int,
    amount: float,
    agent_id: int | None = None,
) -> dict[str, Any]:
    response = await client.put(
        "/rebates/rules",
        headers=headers,
        json={"product_id": product_id, "agent_id": agent_id, "amount": amount},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def rebate_body(scheme: Any, serial: str, client_id: str | None = None, **extra: Any) -> dict:
    return {
        "serial": serial,
        "pin": scheme.pin(serial),
        "client_id": client_id or secrets.token_hex(8),
        **extra,
    }


async def user_id(conn: Any, username: str) -> int:
    row = await (
        await conn.execute("SELECT id FROM users WHERE username = %s", (username,))
    ).fetchone()
    return int(row["id"])


async def insert_claims(
    conn: Any,
    *,
    brand_id: int,
    store_id: int,
    clerk_id: int,
    product_id: int,
    amounts: list[Decimal | float],
    at: datetime,
    agent_id: int | None = None,
) -> list[int]:
    """Claim rows (and their tally-queue rows) of made-up codes, ``at`` each; their ids. The codes
    come from batch numbers no real batch uses (1 << 30 and up)."""
    codes = [(1 << 30 | next(_codes)) << 32 for _ in amounts]
    rows = await (
        await conn.execute(
            """WITH c AS (
                   INSERT INTO rebate_claims (code_id, brand_id, store_id, clerk_id, agent_id,
                                              product_id, amount, client_id, event_id, claimed_at)
                   SELECT code, %(brand)s, %(store)s, %(clerk)s, %(agent)s, %(product)s, amount,
                          'seed-' || code, 0, %(at)s
                   FROM unnest(%(codes)s::bigint[], %(amounts)s::numeric[]) AS r(code, amount)
                   RETURNING id
               ), q AS (INSERT INTO rebate_tally_queue (claim_id) SELECT id FROM c)
               SELECT id FROM c ORDER BY id""",
            {
                "brand": brand_id,
                "store": store_id,
                "clerk": clerk_id,
                "agent": agent_id,
                "product": product_id,
                "codes": codes,
                "amounts": [Decimal(str(a)) for a in amounts],
                "at": at,
            },
        )
    ).fetchall()
    return [int(r["id"]) for r in rows]
