"""Rebate rules (K2 rebates): a product's rebate in yuan, in steps of 0.5, overridable per channel
agent; the brand's alone, audited with before and after; and the rebate in force shown on the
management center's stock rows (seed 1.3.3 库存管理)."""

from __future__ import annotations

import secrets
from typing import Any

from app._core import gs1_check_digit
from tests.helpers import assert_error, key_of
from tests.points_support import set_rule
from tests.rebates_support import set_rebate, user_id
from tests.test_members_admin import _staff
from tests.test_members_cross_brand import _other_brand_admin


async def new_product(
    client: Any, admin: dict[str, str], category_id: int | None = None, name: str | None = None
) -> dict[str, Any]:
    """A product of the demo brand of its own (so a test's rules and claims are its own)."""
    tag = secrets.token_hex(4)
    digits = f"69{int(tag, 16) % 10**11:011d}"
    response = await client.post(
        "/products",
        headers=admin,
        json={
            "product_no": f"RB-{tag}",
            "name": name or f"Rebate test {tag}",
            "category_id": category_id,
            "gtin": f"{digits}{gs1_check_digit(digits)}",
            "colour_no": f"C{tag[:3]}",
        },
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _audit(conn: Any, rule_id: int) -> list[tuple[str, Any, Any]]:
    rows = await (
        await conn.execute(
            "SELECT action, before, after FROM audit_log WHERE entity = 'rebate_rule' "
            "AND entity_id = %s ORDER BY id",
            (str(rule_id),),
        )
    ).fetchall()
    return [(r["action"], r["before"], r["after"]) for r in rows]


async def test_rules_are_set_listed_overridden_and_removed_with_an_audit_trail(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    admin = await login("admin")
    product = (await new_product(client, admin))["id"]
    default = await set_rebate(client, admin, product, 12.5)
    assert (default["amount"], default["agent_id"]) == (12.5, None)
    override = await set_rebate(client, admin, product, 20, agent_id=demo["AGENT-ZJ"])
    assert override["agent_name"].startswith("Zhejiang Agent")
    again = await set_rebate(client, admin, product, 15)  # an update of the same rule
    assert again["id"] == default["id"] and again["amount"] == 15.0
    assert again["updated_at"] >= default["updated_at"]

    listed = await client.get("/rebates/rules", headers=admin, params={"product_id": product})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["total"] == 2
    assert [(r["agent_id"], r["amount"]) for r in body["items"]] == [
        (None, 15.0),  # the default first
        (demo["AGENT-ZJ"], 20.0),
    ]
    by_agent = await client.get(
        "/rebates/rules", headers=admin, params={"agent_id": demo["AGENT-ZJ"]}
    )
    assert {r["id"] for r in by_agent.json()["items"]} >= {override["id"]}
    assert all(r["agent_id"] == demo["AGENT-ZJ"] for r in by_agent.json()["items"])

    deleted = await client.delete(f"/rebates/rules/{override['id']}", headers=admin)
    assert deleted.status_code == 204, deleted.text
    assert_error(await client.delete(f"/rebates/rules/{override['id']}", headers=admin), 404)

    history = await _audit(conn, default["id"])
    assert [(a, b and b["amount"], c and c["amount"]) for a, b, c in history] == [
        ("create", None, 12.5),
        ("update", 12.5, 15.0),
    ]
    removed = await _audit(conn, override["id"])
    assert [(a, b and b["amount"], c and c["amount"]) for a, b, c in removed] == [
        ("create", None, 20.0),
        ("delete", 20.0, None),
    ]


async def test_a_rule_set_through_an_api_key_names_its_maker(
    client: Any, login: Any, conn: Any
) -> None:
    """A probe: the ERP (an API key the admin made, ``rebates.rules``) set a rebate: the rule's
    ``updated_by`` was null (the key has no user), set by nobody. It names the person behind
    the key now (``Principal.person``), on its creation and on each update."""
    admin = await login("admin")
    key = await key_of(client, admin, ["rebates.rules"])
    product = (await new_product(client, admin))["id"]
    for amount in (3, 5):  # made, then changed
        rule = await set_rebate(client, key, product, amount)
        row = await (
            await conn.execute("SELECT updated_by FROM rebate_rules WHERE id = %s", (rule["id"],))
        ).fetchone()
        assert row["updated_by"] == await user_id(conn, "admin"), row


async def test_the_amount_is_a_multiple_of_half_a_yuan_up_to_100000(
    client: Any, login: Any
) -> None:
    admin = await login("admin")
    product = (await new_product(client, admin))["id"]
    for amount in (0.3, 0.25, -0.5, -1, 100000.5, 1e9, "5", "abc", None, True, [1]):
        response = await client.put(
            "/rebates/rules", headers=admin, json={"product_id": product, "amount": amount}
        )
        error = assert_error(response, 400, "validation_failed")
        assert error["details"][0]["field"] == "amount", (amount, error)
    for raw in (b'{"product_id": %d, "amount": 1e999}', b'{"product_id": %d, "amount": -1e999}'):
        response = await client.put(
            "/rebates/rules",
            headers={**admin, "Content-Type": "application/json"},
            content=raw % product,
        )
        error = assert_error(response, 400, "validation_failed")
        assert error["details"][0]["field"] == "amount", error
    nan = await client.put(  # not JSON at all: malformed
        "/rebates/rules",
        headers={**admin, "Content-Type": "application/json"},
        content=b'{"product_id": %d, "amount": NaN}' % product,
    )
    assert_error(nan, 400)
    missing = await client.put("/rebates/rules", headers=admin, json={"product_id": product})
    assert "amount" in assert_error(missing, 400, "validation_failed")["message"]
    listed = await client.get("/rebates/rules", headers=admin, params={"product_id": product})
    assert listed.json()["total"] == 0  # nothing was written
    for amount in (0, 0.5, 99999.5, 100000):
        assert (await set_rebate(client, admin, product, amount))["amount"] == amount


async def test_product_and_agent_must_be_the_brands(client: Any, login: Any, demo: Any) -> None:
    admin = await login("admin")
    product = (await new_product(client, admin))["id"]
    for body, code in (
        ({"product_id": 10**12, "amount": 1}, "unknown_product"),
        ({"product_id": product, "agent_id": 10**12, "amount": 1}, "unknown_org"),
        ({"product_id": product, "agent_id": demo["BRAND-LUMI"], "amount": 1}, "unknown_org"),
    ):
        assert_error(await client.put("/rebates/rules", headers=admin, json=body), 422, code)


async def test_an_override_is_an_agents_and_points_rules_keep_any_organisation(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a rebate override must name an agent (422 ``unknown_org``, details
    ``agent_id``). The amount in force at a store is its nearest AGENT's rule, but a rule for a
    distributor, a store, a factory or a warehouse was accepted (the check shared with points
    rules took any organisation but the brand) and never paid. Points rules still take them."""
    admin = await login("admin")
    product = (await new_product(client, admin))["id"]
    for erp in ("DIST-NB", "STORE-HZ-01", "FACTORY-SZ", "WH-SZ-01"):
        body = {"product_id": product, "agent_id": demo[erp], "amount": 3}
        error = assert_error(
            await client.put("/rebates/rules", headers=admin, json=body), 422, "unknown_org"
        )
        assert error["details"] == {"field": "agent_id"}, (erp, error)
    listed = await client.get("/rebates/rules", headers=admin, params={"product_id": product})
    assert listed.json()["total"] == 0  # nothing was written
    assert (await set_rebate(client, admin, product, 3, demo["AGENT-GD"]))["amount"] == 3.0
    points = await set_rule(client, admin, product, 7, agent_id=demo["DIST-NB"])
    assert (points["agent_id"], points["points"]) == (demo["DIST-NB"], 7)


async def test_only_the_brand_sets_rules_and_another_brand_sees_none(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    product = (await new_product(client, admin))["id"]
    rule = await set_rebate(client, admin, product, 8)
    body = {"product_id": product, "amount": 1}
    for user in ("store_clerk", "agent_admin", "store_manager", "finance", "analyst"):
        headers = await login(user)
        assert_error(await client.put("/rebates/rules", headers=headers, json=body), 403)
        assert_error(await client.get("/rebates/rules", headers=headers), 403)
        assert_error(await client.delete(f"/rebates/rules/{rule['id']}", headers=headers), 403)

    other_brand, other = await _other_brand_admin(client, login)
    assert_error(
        await client.put("/rebates/rules", headers=other, json=body), 422, "unknown_product"
    )
    own = await new_product(client, other)
    crossed = {"product_id": own["id"], "agent_id": demo["AGENT-ZJ"], "amount": 1}
    assert_error(
        await client.put("/rebates/rules", headers=other, json=crossed), 422, "unknown_org"
    )
    listed = await client.get("/rebates/rules", headers=other)
    assert listed.status_code == 200 and listed.json()["total"] == 0
    assert_error(await client.delete(f"/rebates/rules/{rule['id']}", headers=other), 404)
    still = await client.get("/rebates/rules", headers=admin, params={"product_id": product})
    assert [r["amount"] for r in still.json()["items"]] == [8.0]
    assert other_brand != demo["BRAND-LUMI"]


async def test_staff_below_the_brand_are_refused_rules_whatever_their_role(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: rebate rules are the brand's own staff's, as points rules are (403
    ``brand_staff_only`` below the brand whatever role grants ``rebates.rules``). A user of the
    Zhejiang agent given the permission by a custom role listed the rules, set the product's
    brand-wide default (it pays every agent's stores) and deleted the Guangdong agent's
    override: ``app/rebates/rules.py`` only checked the permission."""
    admin = await login("admin")
    product = (await new_product(client, admin))["id"]
    gd_rule = await set_rebate(client, admin, product, 30, agent_id=demo["AGENT-GD"])
    role = await client.post(
        "/roles",
        headers=admin,
        json={"name": f"rebate_rules_{secrets.token_hex(4)}", "permissions": ["rebates.rules"]},
    )
    assert role.status_code == 201, role.text
    below = await _staff(client, admin, demo["AGENT-ZJ"], [role.json()["name"]])
    for answer in (
        await client.get("/rebates/rules", headers=below, params={"product_id": product}),
        await client.put(
            "/rebates/rules", headers=below, json={"product_id": product, "amount": 99999}
        ),
        await client.delete(f"/rebates/rules/{gd_rule['id']}", headers=below),
    ):
        assert_error(answer, 403, "brand_staff_only")
    still = await client.get("/rebates/rules", headers=admin, params={"product_id": product})
    assert [(r["agent_id"], r["amount"]) for r in still.json()["items"]] == [
        (demo["AGENT-GD"], 30.0)
    ]


# -- the stock rows' rebate (seed 1.3.3 库存管理) ----------------------------------------------


async def test_stock_rows_show_the_rebate_in_force_at_each_organisation(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    admin = await login("admin")
    product = (await new_product(client, admin))["id"]
    places = ("WH-SZ-01", "AGENT-ZJ", "STORE-NB-01", "STORE-HZ-01", "STORE-GZ-01")
    async with app.state.pool.connection() as conn:  # stock rows of its own, removed at the end
        for erp in places:
            await conn.execute(
                "INSERT INTO stock (org_id, product_id, lot, on_hand, in_transit) "
                "VALUES (%s, %s, 'RB1', 5, 0)",
                (demo[erp], product),
            )
    try:

        async def rebates() -> dict[str, Any]:
            response = await client.get(
                "/center/stock", headers=admin, params={"product_id": product}
            )
            assert response.status_code == 200, response.text
            by_org = {r["org_id"]: r["rebate"] for r in response.json()["items"]}
            return {erp: by_org[demo[erp]] for erp in places}

        assert set((await rebates()).values()) == {None}  # no rule: none
        await set_rebate(client, admin, product, 6.5)
        assert set((await rebates()).values()) == {6.5}
        await set_rebate(client, admin, product, 9, agent_id=demo["AGENT-ZJ"])
        assert await rebates() == {
            "WH-SZ-01": 6.5,  # no agent above the factory warehouse: the default
            "AGENT-ZJ": 9.0,  # the agent itself
            "STORE-NB-01": 9.0,  # below DIST-NB below AGENT-ZJ: the nearest agent's
            "STORE-HZ-01": 9.0,
            "STORE-GZ-01": 6.5,  # AGENT-GD has no override
        }
        exported = await client.get(
            "/center/stock", headers=admin, params={"product_id": product, "format": "csv"}
        )
        assert "rebate" in exported.text.splitlines()[0].split(",")
    finally:
        async with app.state.pool.connection() as conn:
            await conn.execute("DELETE FROM stock WHERE product_id = %s", (product,))


async def test_a_rebate_rule_saved_unchanged_writes_no_audit_row(
    client: Any, login: Any, conn: Any
) -> None:
    """A probe: ``PUT /rebates/rules`` with the amount the rule has already answered 200 and
    wrote another ``update`` row, before and after the same. Nothing changes: the rule as it
    is, no row."""
    admin = await login("admin")
    product = (await new_product(client, admin))["id"]
    made = await set_rebate(client, admin, product, 12.5)
    again = await set_rebate(client, admin, product, 12.5)
    assert (again["id"], again["amount"], again["updated_at"]) == (
        made["id"],
        12.5,
        made["updated_at"],
    )
    assert [action for action, _, _ in await _audit(conn, made["id"])] == ["create"]
