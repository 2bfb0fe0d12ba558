"""Lucky draws beside a member's erasure and a consumer's return (a race probe's findings).

- A return and the erasure of the same member at once deadlocked (409 ``retry`` to one of them):
  the return takes the draw, the points claim, the balance; the erasure cleared the draws'
  fulfilment notes after taking the balance. It clears them before, with the held draws.
- A gift handed over as, or after, its member was erased kept the staff's note (a parcel's
  address) under the erased member: the fulfilment takes the member's row first, as the erasure
  does, and keeps no note for an erased member.
- A draw's client id sent again after a return withdrew its draw (the unit sold again) was 409
  ``claim_conflict`` — "try again", for ever —: it is 409 ``claim_withdrawn``, as a points claim's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.members import erasure
from tests.points_support import claim_body, into_channel, member_client, new_member, set_rule
from tests.race_support import held_in_turn
from tests.test_draws import DRAW, campaign_body, new_campaign, no_other_campaign, prize
from tests.test_logistics import confirm, document, pack

__all__ = ["no_other_campaign"]  # the fixture: each test's draws go to its own campaign

GIFT = [prize("Mirror", "gift", 999, 1)]


@pytest.fixture(scope="module")
async def goods(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """30 sun-cream units: case 0 at AGENT-ZJ, cases 1–2 delivered on to its store
    STORE-HZ-01 (to be sold, returned and sold again)."""
    goods = await pack(client, login, app, demo, 3)
    await into_channel(client, login, demo, goods["cases"])
    agent, store = await login("agent_clerk"), await login("store_clerk")
    ship = await document(
        client, agent, goods["cases"][1:], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    assert (await confirm(client, agent, ship)).status_code == 200
    received = await document(client, store, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, store, received)).status_code == 200
    goods["at_agent"], goods["on_shelf"] = goods["units"][:10], goods["units"][10:]
    return goods


async def _draw(
    app: Any, headers: dict[str, str], serial: str, client_id: str | None = None
) -> Any:
    async with member_client(app) as mc:
        return await mc.post(
            DRAW, headers=headers, json=claim_body(app.state.scheme, serial, client_id)
        )


async def _sell(client: Any, login: Any, serial: str) -> None:
    sold = await client.post("/sales", headers=await login("store_clerk"), json={"codes": [serial]})
    assert sold.status_code in (200, 201), sold.text


async def _give_back(client: Any, login: Any, serial: str) -> Any:
    return await client.post(
        "/returns", headers=await login("store_clerk"), json={"code": serial, "reason": "other"}
    )


async def test_a_return_and_the_erasure_of_its_member_at_once_both_go_through(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """The return takes the draw's row and waits for the points claim's (a third transaction
    holds it); the erasure then runs while it waits. Before, the erasure took the balance and
    then waited for the draw (its note to clear), the return then waited for the balance: a
    deadlock. Now the erasure waits for the draw before the balance, and both go through."""
    admin, service = await login("admin"), await login("service")
    await set_rule(client, admin, goods["product_id"], 10)
    campaign = await new_campaign(client, admin, campaign_body(goods["product_id"], GIFT))
    serial = goods["on_shelf"].pop()
    await _sell(client, login, serial)
    member_id, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        claimed = await mc.post(
            "/members/me/claims", headers=headers, json=claim_body(app.state.scheme, serial)
        )
    assert claimed.status_code == 201 and claimed.json()["status"] == "credited", claimed.text
    won = await _draw(app, headers, serial)
    assert won.status_code == 201 and won.json()["fulfil_status"] == "pending", won.text
    fulfilled = await client.post(
        f"/draws/{campaign['id']}/results/{won.json()['draw_id']}/fulfil",
        headers=admin,
        json={"note": "SF-123 1 West Lake Rd, Hangzhou"},
    )
    assert fulfilled.status_code == 200, fulfilled.text
    answers = await held_in_turn(  # the return waits for the claim, the erasure for the draw
        app,
        "SELECT 1 FROM point_claims WHERE id = %s FOR UPDATE",
        (claimed.json()["claim_id"],),
        lambda: _give_back(client, login, serial),
        lambda: client.post(f"/members/{member_id}/erase", headers=service),
    )
    assert [a.status_code for a in answers] == [200, 204], [a.text for a in answers]
    assert answers[0].json()["draw_withdrawn"] is not None
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT fulfil_note, withdrawn_at FROM draws WHERE id = %s",
                (won.json()["draw_id"],),
            )
        ).fetchone()
    assert row["fulfil_note"] == erasure.ERASED and row["withdrawn_at"] is not None


@pytest.mark.parametrize("when", ["during", "after"])
async def test_a_gift_handed_over_during_or_after_the_erasure_keeps_no_note(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any], when: str
) -> None:
    """``during``: the erasure under way (its transaction not committed), the fulfilment waits
    for it and then finds the member erased; ``after``: it comes later. Either way the gift is
    marked handed over, the staff's note (an address) not kept."""
    admin = await login("admin")
    campaign = await new_campaign(client, admin, campaign_body(goods["product_id"], GIFT))
    brand = demo["BRAND-LUMI"]
    member_id, headers, _ = await new_member(app, brand)
    won = await _draw(app, headers, goods["at_agent"].pop())
    assert won.status_code == 201 and won.json()["fulfil_status"] == "pending", won.text
    url = f"/draws/{campaign['id']}/results/{won.json()['draw_id']}/fulfil"
    note = {"note": "SF-9 Room 5, 1 Lake Rd"}
    if when == "after":
        erased = await client.post(f"/members/{member_id}/erase", headers=await login("service"))
        assert erased.status_code == 204, erased.text
        fulfilled = await client.post(url, headers=admin, json=note)
    else:
        async with app.state.pool.connection() as conn, conn.transaction():
            await erasure.erase(conn, None, brand, member_id)  # under way: not committed
            handing = asyncio.ensure_future(client.post(url, headers=admin, json=note))
            await asyncio.sleep(1.0)
            assert not handing.done()  # it waits for the erasure
        fulfilled = await asyncio.wait_for(handing, 30)
    assert fulfilled.status_code == 200, fulfilled.text
    body = fulfilled.json()
    assert (body["fulfil_status"], body["fulfil_note"]) == ("fulfilled", erasure.ERASED)
    again = await client.post(url, headers=admin, json=note)  # the desk's retry
    assert again.status_code == 200 and again.json()["fulfil_note"] == erasure.ERASED


async def test_a_withdrawn_draws_client_id_sent_again_is_claim_withdrawn(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    admin = await login("admin")
    await new_campaign(client, admin, campaign_body(goods["product_id"], GIFT))
    serial = goods["on_shelf"].pop()
    await _sell(client, login, serial)
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    first = await _draw(app, headers, serial, "till-draw-1")
    assert first.status_code == 201, first.text
    assert (await _give_back(client, login, serial)).status_code == 200
    await _sell(client, login, serial)
    for _ in range(2):  # the same answer each time: nothing to try again
        again = await _draw(app, headers, serial, "till-draw-1")
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "claim_withdrawn"
    fresh = await _draw(app, headers, serial, "till-draw-2")  # a new draw of the unit sold again
    assert fresh.status_code == 201, fresh.text
