"""The salesperson picker's list (L6, ``GET /documents/salespeople``): a warehouse clerk, who holds
``logistics.scan`` but not ``users.read``, finds whom an outbound to a store may name as its
responsible salesperson, and the one picked is taken by ``POST /documents``."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from tests.helpers import assert_error, new_user, onboarded_brand
from tests.points_support import shipped_goods
from tests.test_logistics import confirm, document


async def _names(client: Any, headers: dict[str, str], **params: Any) -> list[str]:
    response = await client.get("/documents/salespeople", headers=headers, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    # what a picker needs, never a phone or an e-mail address
    assert set(body["items"][0]) == {
        "id",
        "username",
        "display_name",
        "org_id",
        "org_name",
        "org_kind",
    }
    return [row["username"] for row in body["items"]]


async def test_an_agent_clerk_picks_a_salesperson_for_a_shipment_to_a_store(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    agent = await login("agent_clerk")
    assert_error(await client.get("/users", headers=agent), 403)  # the directory stays closed
    names = await _names(client, agent, per_page=200)
    # the clerk's own organisation first, then its stores'; never another agent's people
    assert names[0] in {"agent_admin", "agent_clerk", "fieldrep", "fieldrep2", "fieldsup"}
    assert {"fieldrep", "fieldsup", "store_clerk"} <= set(names)
    assert not {"gz_clerk", "gd_fieldrep", "admin", "clerk"} & set(names)
    assert await _names(client, agent, q="FIELDREP") == ["fieldrep", "fieldrep2"]
    # its own store named: the same list (they are of its subtree)
    assert "store_clerk" in await _names(
        client, agent, store_id=demo["STORE-HZ-01"], q="store_clerk"
    )  # searched: the subtree's users outgrow a page as other tests add theirs

    goods = await shipped_goods(client, login, app, demo)
    rep = next(
        row
        for row in (
            await client.get("/documents/salespeople", headers=agent, params={"q": "fieldrep2"})
        ).json()["items"]
    )
    ship = await document(
        client,
        agent,
        goods["cases"][:1],
        kind="outbound",
        counterparty_id=demo["STORE-HZ-01"],
        salesperson_id=rep["id"],
    )
    assert ship["salesperson_id"] == rep["id"]
    assert (await confirm(client, agent, ship)).status_code == 200
    assert await _salesperson_on(app, goods["cases"][0]) == (rep["id"], demo["STORE-HZ-01"])


async def test_who_is_listed_and_who_may_ask(client: Any, login: Any, demo: Any) -> None:
    admin = await login("admin")
    tag = secrets.token_hex(3)
    made = await new_user(client, admin, demo["AGENT-ZJ"], ["field_rep"], username=f"left-{tag}")
    agent = await login("agent_clerk")
    assert f"left-{tag}" in await _names(client, agent, q=tag)
    gone = await client.patch(f"/users/{made['id']}", headers=admin, json={"status": "inactive"})
    assert gone.status_code == 200, gone.text
    listed = await client.get("/documents/salespeople", headers=agent, params={"q": tag})
    assert listed.json()["items"] == []  # one who left is never offered (the draft says 422)
    # no logistics.scan: 403; a store of another brand is as unknown as the draft says
    assert_error(await client.get("/documents/salespeople", headers=await login("analyst")), 403)
    brand, _ = await onboarded_brand(client, login)
    assert_error(
        await client.get("/documents/salespeople", headers=agent, params={"store_id": brand["id"]}),
        422,
        "unknown_org",
    )
    assert_error(
        await client.get("/documents/salespeople", headers=agent, params={"q": "x" * 101}), 400
    )
    assert_error(
        await client.get("/documents/salespeople", headers=agent, params={"store_id": "x"}), 400
    )
    # read in parallel with writes elsewhere: pages stay consistent (a list, no locks taken)
    pages = await asyncio.gather(
        *(client.get("/documents/salespeople", headers=agent) for _ in range(4))
    )
    assert len({tuple(r["id"] for r in p.json()["items"]) for p in pages}) == 1


async def test_another_agent_s_store_lists_no_one_to_an_agent_s_clerk(
    client: Any, login: Any, demo: Any
) -> None:
    """A review: any clerk with ``logistics.scan`` could name any store of the brand as
    ``store_id`` and list its active users' usernames — another agent's stores' people too,
    across subtrees. A clerk of the sales channel now lists its own subtree's stores only
    (another is 422 ``unknown_org``, as one of another brand); the brand's own stock, which
    supplies any store, still lists the store it ships to."""
    agent = await login("agent_clerk")
    refused = await client.get(
        "/documents/salespeople", headers=agent, params={"store_id": demo["STORE-GZ-01"]}
    )
    assert_error(refused, 422, "unknown_org")
    assert "gz_clerk" not in refused.text
    for other in ("AGENT-GD", "STORE-GZ-01"):  # nor by a name's part, nor another agent's own
        assert_error(
            await client.get(
                "/documents/salespeople",
                headers=agent,
                params={"store_id": demo[other], "q": "gz"},
            ),
            422,
            "unknown_org",
        )
    store = await login("store_clerk")  # a store's clerk: a sibling store is refused as well
    assert_error(
        await client.get(
            "/documents/salespeople", headers=store, params={"store_id": demo["STORE-GZ-01"]}
        ),
        422,
        "unknown_org",
    )
    factory = await login("clerk")  # the factory warehouse ships to any store of the brand
    names = await _names(client, factory, store_id=demo["STORE-GZ-01"], per_page=200)
    assert "gz_clerk" in names and "store_clerk" not in names
    assert "gd_admin" not in await _names(client, factory, store_id=demo["AGENT-GD"])  # no store


async def _salesperson_on(app: Any, case: Any) -> tuple[int | None, int | None]:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT salesperson_id, store_org_id FROM unit_state WHERE parent_sscc = %s",
                (case,),
            )
        ).fetchone()
    return row["salesperson_id"], row["store_org_id"]


async def test_a_salesperson_who_left_or_moved_after_the_draft_is_named_on_no_shipped_unit(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the draft refused a salesperson who is no active user of the caller's reach, but
    the confirmation never checked again — a store clerk deactivated between the draft and its
    confirmation (or moved to another agent by the user import) was written as the responsible
    salesperson of every unit shipped. The confirmation now answers 422 ``unknown_user`` as the
    draft does, nothing moves, and the draft stays to be corrected or confirmed later."""
    admin, agent = await login("admin"), await login("agent_clerk")
    made = await new_user(client, admin, demo["STORE-HZ-01"], ["store_clerk"])
    rep_id, name = made["id"], made["username"]
    goods = await shipped_goods(client, login, app, demo)
    ship = await document(
        client,
        agent,
        goods["cases"][:1],
        kind="outbound",
        counterparty_id=demo["STORE-HZ-01"],
        salesperson_id=rep_id,
    )

    async def set_status(status: str) -> None:
        done = await client.patch(f"/users/{rep_id}", headers=admin, json={"status": status})
        assert done.status_code == 200, done.text

    async def move_to(erp_code: str) -> None:
        row = {"erp_code": f"SP-{name}", "username": name, "org_erp_code": erp_code}
        done = await client.post("/users/import", headers=admin, json={"items": [row]})
        assert done.status_code == 200 and done.json()["rejected"] == 0, done.text

    await set_status("inactive")  # left
    assert_error(await confirm(client, agent, ship), 422, "unknown_user")
    await set_status("active")
    await move_to("STORE-GZ-01")  # out of the Zhejiang agent's reach
    assert_error(await confirm(client, agent, ship), 422, "unknown_user")
    assert await _salesperson_on(app, goods["cases"][0]) == (None, None)  # nothing moved
    await move_to("STORE-HZ-01")  # back: the draft ships, naming them
    confirmed = await confirm(client, agent, ship)
    assert confirmed.status_code == 200, confirmed.text
    assert await _salesperson_on(app, goods["cases"][0]) == (rep_id, demo["STORE-HZ-01"])


async def test_an_agent_names_no_other_agent_s_store_clerk_as_the_salesperson(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the picker refused the Zhejiang agent's clerk another agent's store (422
    ``unknown_org``), yet ``POST /documents`` accepted that store's clerk as ``salesperson_id``
    for an outbound there (201): the agent wrote Guangdong's clerk onto its goods, and 201 or
    422 told it which ids are active staff of another agent's store. The draft takes whom the
    picker lists: from the sales channel, its own subtree's users only (422 ``unknown_user``,
    exactly as for an id that does not exist); the brand's own stock, which supplies any store,
    still names the store's staff."""
    agent, factory = await login("agent_clerk"), await login("clerk")
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM users WHERE username = 'gz_clerk'")
        ).fetchone()
    gz_clerk = row["id"]
    body = {"kind": "outbound", "counterparty_id": demo["STORE-GZ-01"]}
    missing = await client.post(
        "/documents", headers=agent, json={**body, "salesperson_id": 999_999_999}
    )
    assert_error(missing, 422, "unknown_user")
    named = await client.post(
        "/documents", headers=agent, json={**body, "salesperson_id": gz_clerk}
    )
    # told apart from an id that does not exist by nothing
    assert (named.status_code, named.json()) == (missing.status_code, missing.json())
    listed = await _names(client, factory, store_id=demo["STORE-GZ-01"], q="gz_clerk")
    assert listed == ["gz_clerk"]
    by_stock = await client.post(
        "/documents", headers=factory, json={**body, "salesperson_id": gz_clerk}
    )
    assert by_stock.status_code == 201, by_stock.text


async def test_the_salesperson_is_judged_by_the_organisation_shipping_not_the_caller(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the brand's admin drafting the Zhejiang agent's outbound to its store
    (``org_id`` AGENT-ZJ) named the Guangdong agent's store clerk as its salesperson (201), as
    the check judged the caller's subtree (the whole brand) — README: never another agent's
    store's staff. The draft and its confirmation judge the document's organisation, as the
    picker does (``documents.salesperson_paths``): its own people, and a store's only when it is
    of the brand's own stock."""
    admin = await login("admin")
    gz_clerk = (await client.get("/users", headers=admin, params={"q": "gz_clerk"})).json()
    gz_id = next(row["id"] for row in gz_clerk["items"] if row["username"] == "gz_clerk")
    for_agent = {"kind": "outbound", "org_id": demo["AGENT-ZJ"]}
    named = await client.post(
        "/documents",
        headers=admin,
        json={**for_agent, "counterparty_id": demo["STORE-HZ-01"], "salesperson_id": gz_id},
    )
    assert_error(named, 422, "unknown_user")
    for_stock = {"kind": "outbound", "org_id": demo["WH-SZ-01"]}  # the brand's stock: any store
    by_stock = await client.post(
        "/documents",
        headers=admin,
        json={**for_stock, "counterparty_id": demo["STORE-GZ-01"], "salesperson_id": gz_id},
    )
    assert by_stock.status_code == 201, by_stock.text
    # at the confirmation too: the agent's store clerk moved to another agent's store since
    made = await new_user(client, admin, demo["STORE-HZ-01"], ["store_clerk"])
    draft = await client.post(
        "/documents",
        headers=admin,
        json={**for_agent, "counterparty_id": demo["STORE-HZ-01"], "salesperson_id": made["id"]},
    )
    assert draft.status_code == 201, draft.text
    row = {"erp_code": f"SP-{made['username']}", "username": made["username"],
           "org_erp_code": "STORE-GZ-01"}  # fmt: skip
    moved = await client.post("/users/import", headers=admin, json={"items": [row]})
    assert moved.status_code == 200 and moved.json()["rejected"] == 0, moved.text
    confirmed = await client.post(f"/documents/{draft.json()['id']}/confirm", headers=admin)
    assert_error(confirmed, 422, "unknown_user")


async def test_a_salesperson_only_on_an_outbound_to_a_store(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a ``salesperson_id`` on an outbound to a distributor was accepted and shown on
    the document, yet its units got none (L6: an outbound to a store gives its units the store
    and the salesperson, ``movements.move_state``); on an inbound, a return, an exception or a
    factory inbound it was stored as well. Either answers 422 ``salesperson_not_allowed`` now,
    as a ``reason``, ``order_id`` or ``counterparty_id`` on the wrong kind does."""
    agent = await login("agent_clerk")
    listed = await client.get("/documents/salespeople", headers=agent, params={"q": "fieldrep"})
    rep = listed.json()["items"][0]["id"]
    to_distributor = await client.post(
        "/documents",
        headers=agent,
        json={"kind": "outbound", "counterparty_id": demo["DIST-NB"], "salesperson_id": rep},
    )
    assert_error(to_distributor, 422, "salesperson_not_allowed")
    for kind in ("inbound", "return", "exception", "factory_inbound"):
        made = await client.post(
            "/documents", headers=agent, json={"kind": kind, "salesperson_id": rep}
        )
        assert_error(made, 422, "salesperson_not_allowed")
    to_store = await client.post(
        "/documents",
        headers=agent,
        json={"kind": "outbound", "counterparty_id": demo["STORE-HZ-01"], "salesperson_id": rep},
    )
    assert to_store.status_code == 201, to_store.text


async def test_a_draft_kept_naming_a_salesperson_it_may_not_loses_it_at_confirmation(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A review: a draft kept from before a salesperson was refused on an outbound to other than
    a store (it was named on no unit) was 422 ``salesperson_not_allowed`` at its confirmation,
    and no request takes a salesperson off a draft — it could only be cancelled and scanned
    again. It loses the salesperson and is confirmed as any other."""
    agent, admin = await login("agent_clerk"), await login("admin")
    users = (await client.get("/users", headers=admin, params={"q": "fieldrep"})).json()
    rep = next(u["id"] for u in users["items"] if u["username"] == "fieldrep")
    made = await client.post(
        "/documents", headers=agent, json={"kind": "outbound", "counterparty_id": demo["DIST-NB"]}
    )
    assert made.status_code == 201, made.text
    async with app.state.pool.connection() as conn:  # as such a draft was kept
        await conn.execute(
            "UPDATE documents SET salesperson_id = %s WHERE id = %s", (rep, made.json()["id"])
        )
    confirmed = await client.post(f"/documents/{made.json()['id']}/confirm", headers=agent)
    assert_error(confirmed, 422, "empty_document")  # checked on, past the salesperson
