"""The regions and agents the sales reports read (migration 0036, ``sales_org_regions``): kept
by a trigger on orgs as organisations are made, moved, given another region or kind, so the
regions report (A3) and the store ranking's agents (A1) follow an organisation as it is now,
and ``region_drift`` (a recomputation from orgs) finds nothing. 2097 is this test's own year."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from app.analytics.sales import region_drift
from tests.test_analytics_sales import (
    REGIONS,
    STORES,
    auto,  # noqa: F401  (the fixture)
    get,
    products,
    roll_all,
    sell,
    stock_units,
)

YEAR = {"from": "2097-01-01", "to": "2097-12-31", "limit": 10_000}


async def _org(client: Any, admin: dict[str, str], **fields: Any) -> int:
    n = f"{os.getpid()}-{datetime.now(UTC).timestamp():.6f}".replace(".", "")
    body = {"name": f"Kept {fields['kind']} {n}", "erp_code": f"KEPT-{n}"[:64]} | fields
    response = await client.post("/orgs", headers=admin, json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _regions(client: Any, admin: dict[str, str], stores: set[int], **more: Any) -> Any:
    """The regions report's rows and the ranking's (store, agent) pairs of ``stores``."""
    rows = (await get(client, admin, REGIONS, **YEAR, **more))["items"]
    ranking = (await get(client, admin, STORES, **YEAR))["items"]
    agents = {(i["store_id"], i["agent_id"]) for i in ranking if i["store_id"] in stores}
    return rows, agents


async def test_regions_and_agents_follow_moves_region_and_kind_changes(
    client: Any,
    login: Any,
    demo: Any,
    auto: Any,  # noqa: F811
) -> None:
    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    agent = await _org(client, admin, kind="agent", parent_id=brand, province_code="440000",
                       province_name="广东省")  # fmt: skip
    dist = await _org(client, admin, kind="distributor", parent_id=agent)
    store = await _org(client, admin, kind="store", parent_id=dist, province_code="330000",
                       province_name="浙江省", city_code="330100", city_name="杭州市")  # fmt: skip
    assert await region_drift(auto) == []
    product = next(iter((await products(auto, brand)).values()))["id"]
    await sell(auto, await stock_units(auto, brand, store, product, 2),
               datetime(2097, 5, 10, 4, tzinfo=UTC))  # fmt: skip
    await roll_all()

    def mine(rows: list[Any], agent_id: int) -> list[Any]:
        return [
            (r["province_code"], r.get("city_code"), r["stores"], r["units"])
            for r in rows
            if r["agent_id"] == agent_id
        ]

    rows, agents = await _regions(client, admin, {store})
    assert mine(rows, agent) == [("330000", None, 1, 2)]
    assert agents == {(store, agent)}

    # the distributor (and so the store under it) moves to the demo's Zhejiang agent
    zj = demo["AGENT-ZJ"]
    before = {(r["province_code"], r["agent_id"]): r["units"] for r in rows}
    moved = await client.post(f"/orgs/{dist}/move", headers=admin, json={"parent_id": zj})
    assert moved.status_code == 200, moved.text
    assert await region_drift(auto) == []
    rows, agents = await _regions(client, admin, {store})
    assert mine(rows, agent) == []
    after = {(r["province_code"], r["agent_id"]): r["units"] for r in rows}
    assert after[("330000", zj)] == before.get(("330000", zj), 0) + 2
    assert agents == {(store, zj)}

    # the store is given another city: the city report follows
    patched = await client.patch(f"/orgs/{store}", headers=admin,
                                 json={"city_code": "330200", "city_name": "宁波市"})  # fmt: skip
    assert patched.status_code == 200, patched.text
    assert await region_drift(auto) == []
    cities, _ = await _regions(client, admin, {store}, level="city")
    ningbo = {(r["city_code"], r["agent_id"]): r["units"] for r in cities}
    assert ningbo[("330200", zj)] >= 2

    # a change of kind recomputes the subtree below (undone: the kind is not editable by API)
    async with auto.transaction(force_rollback=True):
        await auto.execute("UPDATE orgs SET kind = 'agent' WHERE id = %s", (dist,))
        row = await (
            await auto.execute("SELECT agent_id FROM sales_org_regions WHERE org_id = %s", (store,))
        ).fetchone()
        assert row["agent_id"] == dist
        assert await region_drift(auto) == []
    assert await region_drift(auto) == []


async def test_region_drift_finds_a_tampered_row(auto: Any) -> None:  # noqa: F811
    """A kept row changed behind the trigger's back is found (and put back)."""
    async with auto.transaction(force_rollback=True):
        row = await (
            await auto.execute(
                """UPDATE sales_org_regions SET agent_id = -1
                   WHERE org_id = (SELECT min(org_id) FROM sales_org_regions) RETURNING org_id"""
            )
        ).fetchone()
        assert await region_drift(auto) == [row["org_id"]]
