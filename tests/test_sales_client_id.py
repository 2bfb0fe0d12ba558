"""POST /sales with a client id (issue 18: the staff app re-sends a sale whose answer was lost):
the same client id and body answer the first sale, nothing is sold twice; the same client id with
another body is 409 client_id_reused."""

from __future__ import annotations

import secrets
from typing import Any

from tests.helpers import assert_error
from tests.points_support import shipped_goods
from tests.test_logistics import confirm, document, pack


async def test_a_resent_sale_answers_the_first(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    units = await _at_store(client, login, app, demo)
    store = await login("store_clerk")

    cid = f"sale-{secrets.token_hex(6)}"
    body = {"codes": units[:2], "customer": "Ms Wang", "client_id": cid}
    first = await client.post("/sales", headers=store, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["units"] == 2 and first.json()["status"] == "confirmed"
    again = await client.post("/sales", headers=store, json=body)
    assert again.status_code == 200, again.text  # a replay, as /batches and /inspections answer
    assert again.json() == first.json()  # the first answer, not "already sold"
    sales = await (
        await conn.execute(
            "SELECT count(*) AS n FROM documents WHERE kind = 'sale' AND client_id = %s", (cid,)
        )
    ).fetchone()
    assert sales["n"] == 1

    # the same client id with another body
    reused = await client.post("/sales", headers=store, json={**body, "codes": units[2:3]})
    assert_error(reused, 409, "client_id_reused")
    # the client id is the user's own: another user's same id is a new sale (here refused,
    # as those units are sold), never the first user's answer
    manager = await login("store_manager")
    theirs = await client.post("/sales", headers=manager, json=body)
    assert_error(theirs, 409, "not_held")
    # without a client id, a re-send is refused as before: the units are sold
    plain = {"codes": units[3:4]}
    assert (await client.post("/sales", headers=store, json=plain)).status_code == 201
    assert_error(await client.post("/sales", headers=store, json=plain), 409, "not_held")
    # a malformed client id
    assert_error(
        await client.post("/sales", headers=store, json={**plain, "client_id": "has space"}), 400
    )


async def test_an_api_key_s_client_id_is_its_own(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """Two agents' tills (API keys) number their sales alike: Guangdong's sale under the client
    id Zhejiang's key used is a sale of its own (201), and a re-send answers each key its own
    sale. Before, the id was looked up among every key's sales of the brand: Guangdong's sale
    was 409 client_id_reused, and Zhejiang's body sent by Guangdong's key 404 (probe)."""
    goods = await shipped_goods(client, login, app, demo)  # cases 0 and 1 at AGENT-ZJ

    async def till(user: str, org: str) -> dict[str, str]:
        made = await client.post(
            "/api-keys",
            headers=await login(user),
            json={"name": "till", "permissions": ["logistics.scan"], "org_id": demo[org]},
        )
        assert made.status_code == 201, made.text
        return {"X-API-Key": made.json()["key"]}

    zj, gd = await till("agent_admin", "AGENT-ZJ"), await till("gd_admin", "AGENT-GD")
    clerk, gd_admin = await login("clerk"), await login("gd_admin")
    ship = await document(
        client, clerk, goods["cases"][2:3], kind="outbound", counterparty_id=demo["AGENT-GD"]
    )
    assert (await confirm(client, clerk, ship)).status_code == 200
    received = await document(client, gd_admin, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, gd_admin, received)).status_code == 200
    cid = f"pos-{secrets.token_hex(4)}"
    zj_body = {"codes": [goods["units"][0]], "client_id": cid}
    gd_body = {"codes": [goods["units"][25]], "client_id": cid}
    first = await client.post("/sales", headers=zj, json=zj_body)
    assert first.status_code == 201, first.text
    theirs = await client.post("/sales", headers=gd, json=gd_body)
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != first.json()["id"]
    again = await client.post("/sales", headers=zj, json=zj_body)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    again = await client.post("/sales", headers=gd, json=gd_body)
    assert again.status_code == 200 and again.json()["id"] == theirs.json()["id"]
    assert_error(await client.post("/sales", headers=gd, json=zj_body), 409, "client_id_reused")


async def test_a_moved_clerks_resent_sale_answers_the_first(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a clerk of STORE-HZ-01 sells under client id c, the answer lost; the brand moves
    the clerk by the user import (to another store, then to an agent), and the app, signed in
    again, re-sends the queued sale. It was 404 ``unknown_document``: the replay found the sale,
    then read it as the clerk's *new* organisation sees documents (and the lock was keyed by the
    organisation too); the app drops a 404 from its queue, a sale the server holds. A re-send
    answers the first sale (200), sold once, after either move; another id of the moved clerk
    is a new sale, checked as ever (a clerk of an agent sells for the agent)."""
    from tests.test_field_scoping import _login, _user
    from tests.test_inspect import moved_by_import

    units = await _at_store(client, login, app, demo)

    admin = await login("admin")
    name = f"ms{secrets.token_hex(4)}"
    _, seller = await _user(client, admin, demo["STORE-HZ-01"], ["store_clerk"], name)
    body = {"codes": units[:1], "client_id": f"mv-sale-{secrets.token_hex(4)}"}
    first = await client.post("/sales", headers=seller, json=body)
    assert first.status_code == 201, first.text
    for org in ("STORE-GZ-01", "AGENT-GD"):
        await moved_by_import(client, admin, name, org)
        seller = await _login(client, name)
        again = await client.post("/sales", headers=seller, json=body)
        assert again.status_code == 200, (org, again.text)
        assert again.json() == first.json(), org
    sales = await (
        await conn.execute(
            "SELECT count(*) AS n FROM documents WHERE kind = 'sale' AND client_id = %s",
            (body["client_id"],),
        )
    ).fetchone()
    assert sales["n"] == 1
    # the same id with another body is still the first sale's; a new id is a new sale of the
    # clerk's organisation now (AGENT-GD holds none of these units)
    other = {**body, "codes": units[1:2]}
    assert_error(await client.post("/sales", headers=seller, json=other), 409, "client_id_reused")
    fresh = {**other, "client_id": f"mv-new-{secrets.token_hex(4)}"}
    assert_error(await client.post("/sales", headers=seller, json=fresh), 422, "bad_codes")


async def _at_store(client: Any, login: Any, app: Any, demo: Any) -> list[str]:
    """A case's units packed, shipped to AGENT-ZJ and on to STORE-HZ-01, received there."""
    goods = await pack(client, login, app, demo, 1)
    clerk, agent, store = (
        await login("clerk"),
        await login("agent_clerk"),
        await login("store_clerk"),
    )
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    ship = await document(
        client, clerk, goods["cases"], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await confirm(client, clerk, ship)).status_code == 200
    received = await document(client, agent, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, agent, received)).status_code == 200
    to_store = await document(
        client, agent, goods["cases"], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    assert (await confirm(client, agent, to_store)).status_code == 200
    units: list[str] = goods["units"]
    store_in = await document(client, store, units, kind="inbound", shipment_id=to_store["id"])
    assert (await confirm(client, store, store_in)).status_code == 200
    return units
