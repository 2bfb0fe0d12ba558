"""The regions and agents the sales reports read (migration 0036, ``sales_org_regions``): kept
by a trigger on orgs as organisations are made, moved, given another region or kind, so the
regions report (A3) and the store ranking's agents (A1) follow an organisation as it is now,
and ``region_drift`` (a recomputation from orgs) finds nothing; and the ranking of one whole
month read in index order (migration 0037). 2097 is these tests' own year."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from typing import Any

from app.analytics.sales import (
    _RANKING,
    _RANKING_MONTH,
    _limit_sql,
    _store_params,
    region_drift,
    store_sums,
)
from tests.test_analytics_sales import (
    REGIONS,
    STORES,
    auto,  # noqa: F401  (the fixture)
    get,
    give_back,
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


async def test_region_drift_finds_a_tampered_row(auto: Any, demo: Any) -> None:  # noqa: F811
    """A kept row changed behind the trigger's back is found (and put back). (``demo``: the
    demo's organisations have rows, whichever test of the worker ran first.)"""
    async with auto.transaction(force_rollback=True):
        row = await (
            await auto.execute(
                """UPDATE sales_org_regions SET agent_id = -1
                   WHERE org_id = (SELECT min(org_id) FROM sales_org_regions) RETURNING org_id"""
            )
        ).fetchone()
        assert await region_drift(auto) == [row["org_id"]]


async def test_a_whole_months_ranking_read_in_index_order_equals_the_general_one(
    client: Any,
    login: Any,
    demo: Any,
    auto: Any,  # noqa: F811
) -> None:
    """One whole month brand-wide is ranked from ``sales_store_monthly_rank`` (migration 0037):
    the same stores, units, ties, totals and counts as the general ranking of the same month,
    with and without a limit; a store whose units were all returned is not listed."""
    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    stores = [await _org(client, admin, kind="store", parent_id=demo["AGENT-ZJ"]) for _ in range(5)]
    product = next(iter((await products(auto, brand)).values()))["id"]
    for store, n in zip(stores, (3, 1, 3, 2, 1), strict=True):  # ties: 3, 3 and 1, 1
        await sell(auto, await stock_units(auto, brand, store, product, n),
                   datetime(2097, 6, 1 + n, 4, tzinfo=UTC))  # fmt: skip
    returned = await stock_units(auto, brand, stores[1], product, 2)
    await sell(auto, returned, datetime(2097, 6, 20, 4, tzinfo=UTC))
    await give_back(auto, returned)
    await roll_all()
    june = {"from": "2097-06-01", "to": "2097-06-30"}
    fast = await get(client, admin, STORES, **june, limit=10_000)
    mine = [
        (i["store_id"], i["units"], i["rank"]) for i in fast["items"] if i["store_id"] in stores
    ]
    a, b, c, d, e = stores
    assert mine == [(a, 3, 1), (c, 3, 1), (d, 2, 3), (b, 1, 4), (e, 1, 4)]
    assert fast["units"] == sum(i["units"] for i in fast["items"])
    assert fast["stores"] == len(fast["items"])
    for limit in (None, 2):
        params = _store_params(date(2097, 6, 1), date(2097, 6, 30)) | {"brand": brand}
        general = _RANKING.format(source=store_sums(False, date(2097, 6, 1), date(2097, 6, 30)),
                                  join="", where="true", limit=_limit_sql(limit))  # fmt: skip
        month = _RANKING_MONTH.format(limit=_limit_sql(limit))
        assert (
            await (await auto.execute(month, params)).fetchall()
            == await (await auto.execute(general, params)).fetchall()
        )
