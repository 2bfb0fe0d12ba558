"""The webhook sender's slots (probe K): one brand's endpoints that never answer hold no other
brand's deliveries back. Before, a round claimed as many deliveries as there were slots and
waited for the slowest: a tenant with a few silent endpoints (or many replays to them) delayed
every other tenant by a time-out per round."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from msgspec.inspect import type_info

from app.config import Settings
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


def _claimed(settings: Any, url: str, brand: int) -> Any:
    from app.webhooks import signing
    from app.webhooks.sender import Claimed

    return Claimed(
        id=1,
        attempts=1,
        subscription_id=1,
        brand_id=brand,
        msg_id="msg_x",
        kind="k",
        data="{}",
        occurred_at=datetime.now(UTC),
        url=url,
        secret_sealed=signing.seal(settings, signing.new_secret()),
        previous_sealed=[],
    )


@pytest.mark.usefixtures("client")  # the app started: quiet_afterwards uses its pool
async def test_names_that_never_resolve_hold_back_no_other_brands_webhooks(
    settings: Any, monkeypatch: Any
) -> None:
    """A probe: every attempt first resolves its name (``app.webhooks.urls.check_resolved``),
    then with ``loop.getaddrinfo``, a blocking call in the event loop's default executor:
    min(32, CPUs + 4) threads shared by all brands, and a thread stays blocked after its attempt
    has timed out. A partner whose endpoint names never answer DNS (its own name servers drop
    the queries) filled that executor with its 8 slots or, refilling freed slots, on any host;
    then another brand's endpoint, which resolves at once and answers 204, timed out at every
    attempt. Now look-ups have threads of their own, and a brand has at most its share of the
    slots (``sender.brand_share``) of look-ups running, stuck ones counted: its further attempts
    are retried at once, and the other brand's is delivered."""
    from app.webhooks import sender, urls

    s = msgspec.structs.replace(settings, webhook_allow_private=False, webhook_timeout_seconds=1.0)
    release = threading.Event()
    hung: list[str] = []
    real = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).endswith(".hang.example"):  # a name server that never answers
            hung.append(host)
            release.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host == "partner-b.example":  # another brand's endpoint, resolving at once
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]
        return real(host, port, *args, **kwargs)

    async def answered(*_: Any) -> httpx.Response:  # brand B's receiver: 204 at once
        return httpx.Response(204)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(sender, "_send", answered)
    client = sender.make_client(s)
    a, b = -101, -102  # brands no other test's deliveries belong to
    share = max(1, s.webhook_concurrency // 2)  # brand A's slots at most (sender.brand_share)
    try:
        for wave in range(4):  # the sweeper refills each slot as its attempt times out
            outs = await asyncio.gather(
                *(
                    sender.attempt(client, s, _claimed(s, f"https://n{wave}-{i}.hang.example/h", a))
                    for i in range(share)
                )
            )
            assert all(o.result == "retry" for o in outs)
        out = await sender.attempt(client, s, _claimed(s, "https://partner-b.example/hook", b))
        assert out.result == "delivered", (out.result, out.error)
        assert len(hung) == share, f"brand A holds {len(hung)} threads, not its {share}"
    finally:
        release.set()
        await client.aclose()
    for _ in range(500):  # its threads end, and so does its count
        if a not in urls._running:
            break
        await asyncio.sleep(0.01)
    assert a not in urls._running, urls._running
    most = next(f for f in type_info(Settings).fields if f.name == "webhook_concurrency")
    assert urls.RESOLVER_THREADS > most.type.le, "above any WEBHOOK_CONCURRENCY (app/config.py)"
