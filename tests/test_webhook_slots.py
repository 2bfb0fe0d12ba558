"""The webhook sender's slots (probe K): one brand's endpoints that never answer hold no other
brand's deliveries back. Before, a round claimed as many deliveries as there were slots and
waited for the slowest: a tenant with a few silent endpoints (or many replays to them) delayed
every other tenant by a time-out per round."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from tests.field_support import other_brand_admin
from tests.test_webhooks import (  # noqa: F401  (fixtures)
    Receiver,
    quiet_afterwards,
    receiver,
    subscribe,
    wh,
)


async def test_one_brands_silent_endpoints_hold_no_other_brand_back(
    wh: Any,  # noqa: F811
    login: Any,
    settings: Any,
    app: Any,
    receiver: Receiver,  # noqa: F811
) -> None:
    """Six silent endpoints of another brand are due first; four slots, each attempt timing out
    after 4 s. Our brand's delivery goes out at once, not after a time-out. Both brands are the
    test's own: the demo brand may hold deliveries other tests left due (CI: a backlog of
    another module's subscription to an unresolvable name came first and took the 10 s)."""
    from app.webhooks import sender

    silent = 6
    theirs, ours = await other_brand_admin(wh, login), await other_brand_admin(wh, login)
    subs = []
    for i in range(silent):
        receiver.plan(f"/silent{i}", ["timeout"])
        subs.append(
            await subscribe(wh, theirs, receiver.url + f"/silent{i}", ["alert.counterfeit"])
        )
    quick = await subscribe(wh, ours, receiver.url + "/quick", ["alert.counterfeit"])
    async with app.state.pool.connection() as conn:
        brands = await (
            await conn.execute(
                "SELECT id, brand_id FROM webhook_subscriptions WHERE id = ANY(%s)",
                ([s["id"] for s in subs] + [quick["id"]],),
            )
        ).fetchall()
        brand_of = {r["id"]: r["brand_id"] for r in brands}
        for brand in (brand_of[subs[0]["id"]], brand_of[quick["id"]]):  # theirs first: older
            await conn.execute(
                "INSERT INTO webhook_events (brand_id, kind, org_ids, data) "
                "VALUES (%s, 'alert.counterfeit', ARRAY[%s::bigint], '{}')",
                (brand, brand),
            )
            await conn.commit()
    tight = msgspec.structs.replace(
        settings, webhook_allow_private=True, webhook_concurrency=4, webhook_timeout_seconds=4
    )
    started = time.monotonic()
    async with app.state.pool.connection() as conn:
        await conn.set_autocommit(True)
        client = sender.make_client(tight)
        sweeping = asyncio.create_task(sender.sweep(conn, client, tight))
        while not receiver.log("/quick"):
            assert time.monotonic() - started < 10, "the other brand's delivery never came"
            await asyncio.sleep(0.05)
        waited = time.monotonic() - started
        stats = await sweeping
        await client.aclose()
        await conn.set_autocommit(False)
    assert waited < 2.5, f"held back {waited:.1f} s behind another brand's silent endpoints"
    assert stats.delivered >= 1 and stats.retried >= silent
