"""Claims' webhook events — rebate and points claims, the sales they make — and rebate refusals
(probes): what each announces, to whom, once. Deliveries are read from the outbox
(``webhook_deliveries`` / ``webhook_events``), which the database triggers write with the
change itself; no sender runs."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.points_support import claim_body, member_client, new_member, set_rule, shipped_goods
from tests.rebates_support import rebate_body, set_rebate, store_goods
from tests.test_logistics import confirm, document

URL = "https://93.184.216.34/rebate-events/"


@pytest.fixture(autouse=True)
async def _pause_mine(app: Any) -> AsyncIterator[None]:
    """After each test its subscriptions are paused and their deliveries set aside: a sweep of
    test_webhooks.py in the same worker took them (an address that never answers) before its
    own, and found its own still sending."""
    yield
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE webhook_subscriptions SET active = false WHERE url LIKE %s", (URL + "%",)
        )
        await conn.execute(
            """UPDATE webhook_deliveries SET state = 'dead'
                WHERE state IN ('pending', 'sending') AND subscription_id IN
                      (SELECT id FROM webhook_subscriptions WHERE url LIKE %s)""",
            (URL + "%",),
        )


async def subscribe(client: Any, headers: dict[str, str], kinds: list[str], **extra: Any) -> int:
    body = {"url": URL + secrets.token_hex(4), "event_kinds": kinds, **extra}
    made = await client.post("/webhooks/subscriptions", headers=headers, json=body)
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def got(app: Any, sub: int, kind: str | None = None) -> list[dict[str, Any]]:
    """The events queued for subscription ``sub`` (of ``kind``), oldest first."""
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                """SELECT e.kind, e.data, e.org_ids FROM webhook_deliveries d
                     JOIN webhook_events e ON e.id = d.event_id
                    WHERE d.subscription_id = %s AND d.replay_of IS NULL
                      AND (%s::text IS NULL OR e.kind = %s) ORDER BY e.id""",
                (sub, kind, kind),
            )
        ).fetchall()
    return [dict(r) for r in rows]


async def three_subs(client: Any, login: Any, kinds: list[str]) -> tuple[int, int, int]:
    return (
        await subscribe(client, await login("admin"), kinds),
        await subscribe(client, await login("agent_admin"), kinds),
        await subscribe(client, await login("gd_admin"), kinds),
    )


async def test_statement_events_carry_the_period_the_statement_covers(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A statement for January 2003 is announced with January's last day as its end, as the API
    shows it (period_to), not the first day of February."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from tests.rebates_support import insert_claims, user_id

    brand = await subscribe(client, await login("admin"), ["rebate.statement"])
    async with app.state.pool.connection() as conn:
        product = (await (await conn.execute("SELECT id FROM products LIMIT 1")).fetchone())["id"]
        await insert_claims(
            conn,
            brand_id=demo["BRAND-LUMI"],
            store_id=demo["STORE-HZ-01"],
            clerk_id=await user_id(conn, "store_clerk"),
            product_id=product,
            amounts=[3, 4],
            at=datetime(2003, 1, 15, 12, tzinfo=ZoneInfo("Asia/Shanghai")),
            agent_id=demo["AGENT-ZJ"],
        )
        await conn.commit()
    made = await client.post(
        "/rebates/statements", headers=await login("finance"), json={"period": "2003-01"}
    )
    assert made.status_code == 201, made.text
    [statement] = made.json()["statements"]
    assert statement["period_to"] == "2003-01-31"
    mine = [e for e in await got(app, brand) if e["data"]["statement_id"] == statement["id"]]
    assert len(mine) == 1 and mine[0]["data"]["claims"] == 2
    assert mine[0]["data"]["period_start"] == "2003-01-01"
    assert mine[0]["data"]["period_end"] == statement["period_to"]


async def test_concurrent_claims_of_an_undelivered_unit_are_refused_and_alerted_once(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A clerk's app re-sends a rebate claim of a unit never delivered to the store (or two
    clerks scan it at once): every claim is refused 422 not_delivered and the brand hears of
    the diversion once. The claims of one round were kept in ONE upsert of alerts with the
    same dedup key twice: CardinalityViolation, 500 for all of them."""
    import asyncio

    brand = await subscribe(client, await login("admin"), ["alert.diversion"])
    goods = await store_goods(client, login, app, demo)
    await set_rebate(client, await login("admin"), goods["product_id"], 2.5)
    clerk = await login("store_clerk")
    serial = goods["units"][12]  # case 1: at AGENT-ZJ, never delivered to the store
    async with member_client(app) as mc:
        answers = await asyncio.gather(
            *[
                mc.post(
                    "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, serial)
                )
                for _ in range(10)
            ]
        )
    assert sorted(a.status_code for a in answers) == [422] * 10, [a.text for a in answers]
    mine = [e for e in await got(app, brand) if e["data"]["serial"] == serial]
    assert len(mine) == 1


async def test_a_rebate_claim_of_another_agents_goods_is_a_diversion_alert_not_a_claim(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Goods of AGENT-ZJ's channel passed on by ZJ to a store of AGENT-GD and claimed there.
    Once the claim was GD's store's (and ZJ's webhook received it: migration 0074); since a
    probe, goods outside their channel agent's area earn no rebate: the claim is refused
    ``wrong_agent``, no ``rebate.claimed`` event tells of it, and the brand's subscription gets
    the ``alert.diversion``, as an inspection at that store would raise."""
    from tests.points_support import shipped_goods

    brand, zj, gd = await three_subs(client, login, ["rebate.claimed", "alert.diversion"])
    goods = await shipped_goods(client, login, app, demo)  # cases 0, 1 at AGENT-ZJ
    agent = await login("agent_clerk")
    ship = await document(
        client, agent, goods["cases"][1:2], kind="outbound", counterparty_id=demo["STORE-GZ-01"]
    )
    assert (await confirm(client, agent, ship)).status_code == 200
    gz = await login("gz_clerk")
    received = await document(client, gz, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, gz, received)).status_code == 200
    await set_rebate(client, await login("admin"), goods["product_id"], 2.5)
    serial = goods["units"][15]
    async with member_client(app) as mc:
        made = await mc.post(
            "/rebates/claims", headers=gz, json=rebate_body(app.state.scheme, serial)
        )
    assert made.status_code == 422 and made.json()["error"]["code"] == "wrong_agent", made.text

    def of_unit(events: list[dict[str, Any]]) -> list[str]:
        return [e["kind"] for e in events if e["data"].get("serial") == serial]

    assert of_unit(await got(app, brand)) == ["alert.diversion"]
    assert "rebate.claimed" not in of_unit(await got(app, zj)) + of_unit(await got(app, gd))


async def test_a_sale_made_by_a_rebate_claim_is_announced_as_sale_confirmed(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a clerk's rebate claim of an unsold unit on the store's shelf sells it
    (``"sale_recorded": true``; README "Sales analytics" counts it as a sale), but no
    ``sale.confirmed`` was written, though the webhooks table promises one whenever "a sale to
    consumers is recorded": the trigger (migration 0056, ``webhook_documents``) heard sale
    documents only, and a store's ERP that books its sales from ``sale.confirmed`` missed every
    sale its clerks made by claiming a rebate. Now (migration 0092) each such sale is one
    ``sale.confirmed`` to the store, its agent and the brand, shaped as a sale document's (one
    line) with ``source`` ``rebate_claim``; another agent's subscription gets none. A probe:
    the event named no document, though the claim writes the sale's (migration 0104's
    release): an ERP could not match it to its cursor export; it names it (0113)."""
    kinds = ["sale.confirmed", "rebate.claimed"]
    brand_sub, zj_sub, gd_sub = await three_subs(client, login, kinds)
    store_sub = await subscribe(client, await login("store_manager"), kinds)
    goods = await store_goods(client, login, app, demo)  # case 0 at STORE-HZ-01
    await set_rebate(client, await login("admin"), goods["product_id"], 2.5)
    async with member_client(app) as mc:
        claimed = await mc.post(
            "/rebates/claims",
            headers=await login("store_clerk"),
            json=rebate_body(app.state.scheme, goods["units"][1]),
        )
    assert claimed.status_code == 201, claimed.text
    assert claimed.json()["sale_recorded"] is True
    assert len(await got(app, store_sub, "rebate.claimed")) == 1
    for sub in (store_sub, zj_sub, brand_sub):
        sales = await got(app, sub, "sale.confirmed")
        assert len(sales) == 1, f"subscription {sub}: {len(sales)} sale.confirmed for one sale"
        sale = sales[0]["data"]
        assert (sale["org_id"], sale["kind"]) == (demo["STORE-HZ-01"], "sale")
        assert (sale["source"], sale["claim_id"]) == ("rebate_claim", claimed.json()["claim_id"])
        doc = await client.get(f"/documents/{sale['document_id']}", headers=await login("admin"))
        assert doc.status_code == 200, doc.text
        assert (doc.json()["kind"], doc.json()["doc_no"]) == ("sale", sale["doc_no"])
        assert doc.json()["org_id"] == demo["STORE-HZ-01"] and doc.json()["units"] == 1
        assert [(x["product_id"], x["units"]) for x in sale["lines"]] == [(goods["product_id"], 1)]
    assert await got(app, gd_sub, "sale.confirmed") == []


async def _points_claimed(
    client: Any, login: Any, app: Any, demo: Any, kinds: list[str]
) -> tuple[int, int, dict[str, Any], int, Any]:
    """The brand's and AGENT-ZJ's subscriptions to ``kinds``, then a new member's points claim
    of a unit on AGENT-ZJ's shelf (the product's rule: 7 points, unless another test's agent
    rule applies): the subscriptions, the goods, the member and the claim's answer."""
    brand_sub = await subscribe(client, await login("admin"), kinds)
    agent_sub = await subscribe(client, await login("agent_admin"), kinds)
    goods = await shipped_goods(client, login, app, demo)  # cases 0, 1 at AGENT-ZJ
    await set_rule(client, await login("admin"), goods["product_id"], 7)
    member_id, member, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        made = await mc.post(
            "/members/me/claims",
            headers=member,
            json=claim_body(app.state.scheme, goods["units"][0]),
        )
    assert made.status_code == 201, made.text
    return brand_sub, agent_sub, goods, member_id, made


async def test_points_claimed_sent_to_an_agent_does_not_name_the_member(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: ``points.claimed`` was one event for the brand and the unit's channel agent
    (migration 0028, ``webhook_point_claims``: org_ids [brand, agent]), ``member_id``
    included, though members are the brand head office's ("Who sees members": the agent's
    ``GET /members/{id}`` is refused) — an agent's ERP received the member behind every claim
    of its goods. Now (migration 0092) the brand's subscription gets the claim with the member,
    the agent's its own event of the same claim without it; each one event per claim."""
    kinds = ["points.claimed"]
    brand_sub, agent_sub, _, member_id, made = await _points_claimed(
        client, login, app, demo, kinds
    )
    looked = await client.get(f"/members/{member_id}", headers=await login("agent_admin"))
    assert looked.status_code in (403, 404), looked.text  # the agent may not read the member
    [brand_event] = await got(app, brand_sub, "points.claimed")
    assert brand_event["data"]["member_id"] == member_id
    [agent_event] = await got(app, agent_sub, "points.claimed")
    assert agent_event["data"]["claim_id"] == made.json()["claim_id"]
    assert agent_event["data"]["points"] == made.json()["points"]  # (an agent rule may apply)
    assert "member_id" not in agent_event["data"], agent_event["data"]


async def test_a_points_claim_that_sells_its_unit_is_announced_as_sale_confirmed(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a member's points claim of an unsold unit on a retail shelf (here AGENT-ZJ's)
    sells it (``point_claims.sale_event_id``; a sale in the sales analytics) but wrote no
    ``sale.confirmed``: only sale documents were announced (migration 0056). Now (migration
    0092) one ``sale.confirmed`` per claim-made sale, to the seller and those above it, shaped
    as a sale document's (one line) with ``source`` ``points_claim`` and no member — naming
    the claim's sale document (0113; it said none)."""
    kinds = ["sale.confirmed"]
    brand_sub, agent_sub, goods, _, made = await _points_claimed(client, login, app, demo, kinds)
    for sub in (brand_sub, agent_sub):
        [sale] = [e["data"] for e in await got(app, sub, "sale.confirmed")]
        assert (sale["source"], sale["claim_id"]) == ("points_claim", made.json()["claim_id"])
        assert sale["org_id"] == demo["AGENT-ZJ"] and sale["doc_no"].startswith("XS")
        doc = await client.get(f"/documents/{sale['document_id']}", headers=await login("admin"))
        assert (doc.json()["kind"], doc.json()["doc_no"]) == ("sale", sale["doc_no"])
        assert [(x["product_id"], x["units"]) for x in sale["lines"]] == [(goods["product_id"], 1)]
        assert "member_id" not in sale
