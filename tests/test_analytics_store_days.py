"""The store ranking's faster paths (issue 17): one product's cells of whole months read from
``sales_monthly``'s key alone (migration 0039: it includes the units), one month's without a
sum, the product checked in the ranking's own query, the listed stores' organisations and
agents looked up by key for a short list. Random sales and returns (with ties) against a count
made here, for many random periods, with and without a product, short and long lists.
2093–2094 are this file's own years."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.analytics.sales import FEW, recount
from tests.test_analytics_regions_kept import _org
from tests.test_analytics_sales import (
    REGIONS,
    STORES,
    ZJ,
    auto,  # noqa: F401  (the fixture)
    get,
    give_back,
    new_store,
    products,
    roll_all,
    sell,
    shanghai,
    stock_units,
)


async def test_store_sums_of_random_periods_equal_a_count(
    client: Any,
    login: Any,
    demo: Any,
    auto: Any,  # noqa: F811
) -> None:
    rng = random.Random(1738)
    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    agent = await _org(client, admin, kind="agent", parent_id=brand, province_code="330000",
                       province_name="浙江省")  # fmt: skip
    stores = [await new_store(auto, agent, ZJ) for _ in range(4)]
    p1, p2 = [p["id"] for p in list((await products(auto, brand)).values())[:2]]
    sold: dict[tuple[int, int, date], int] = defaultdict(int)
    first = datetime(2093, 1, 1, 4, tzinfo=UTC)
    for _ in range(60):
        store, product = rng.choice(stores), rng.choice((p1, p2))
        at = first + timedelta(days=rng.randint(0, 480), minutes=rng.choice((0, 11 * 60 + 59)))
        codes = await stock_units(auto, brand, store, product, rng.randint(1, 3))
        await sell(auto, codes, at)
        back = codes[: rng.choice((0, 0, 0, 1, len(codes)))]  # some returned, some all
        await give_back(auto, back)
        sold[(store, product, shanghai(at))] += len(codes) - len(back)
    # ties: two stores with the same units on the same day of each of two months
    for store in stores[:2]:
        for day in (datetime(2093, 6, 10, 4, tzinfo=UTC), datetime(2094, 2, 28, 4, tzinfo=UTC)):
            await sell(auto, await stock_units(auto, brand, store, p1, 2), day)
            sold[(store, p1, shanghai(day))] += 2
    await roll_all()
    assert await recount(auto) == []

    def expected(lo: date, hi: date, product: int | None = None) -> dict[int, int]:
        out: dict[int, int] = defaultdict(int)
        for (s, p, d), n in sold.items():
            if lo <= d <= hi and product in (None, p):
                out[s] += n
        return {s: n for s, n in out.items() if n}

    periods = [(date(2093, 2, 15), date(2093, 5, 20)), (date(2093, 6, 1), date(2093, 6, 30)),
               (date(2093, 12, 31), date(2094, 1, 1)), (date(2093, 1, 1), date(2094, 4, 30)),
               (date(2094, 2, 28), date(2094, 3, 1)), (date(2093, 6, 10), date(2093, 6, 10))]  # fmt: skip
    for _ in range(24):
        lo = date(2093, 1, 1) + timedelta(days=rng.randint(0, 480))
        hi = lo + timedelta(days=rng.choice((0, 5, 30, 45, 100, 300)))
        periods.append((lo, hi))
    for lo, hi in periods:
        span = {"from": lo.isoformat(), "to": hi.isoformat(), "limit": 10_000}
        for product in (None, p1):
            more = {"product_id": product} if product else {}
            got = await get(client, admin, STORES, **span, **more)
            mine = [(i["store_id"], i["units"], i["rank"]) for i in got["items"]
                    if i["store_id"] in stores]  # fmt: skip
            want = expected(lo, hi, product)
            assert {s: n for s, n, _ in mine} == want, (lo, hi, product)
            units = [n for _, n, _ in mine]
            assert units == sorted(units, reverse=True)
            ranks = {n: r for _, n, r in mine}  # a tie shares its rank
            assert all(ranks[n] == r for _, n, r in mine)
            for limit in (3, FEW, FEW + 1):  # a short list (joins by key) is the long one's head
                short = await get(client, admin, STORES, **(span | {"limit": limit}), **more)
                assert short["items"] == got["items"][:limit]
                assert (short["units"], short["stores"]) == (got["units"], got["stores"])
        regions = await get(client, admin, REGIONS, **span)
        ours = [(i["stores"], i["units"]) for i in regions["items"] if i["agent_id"] == agent]
        want = expected(lo, hi)
        assert ours == ([(len(want), sum(want.values()))] if want else []), (lo, hi)


async def test_a_product_not_of_the_brand_is_not_found_and_one_without_sales_ranks_nothing(
    client: Any,
    login: Any,
    demo: Any,
    auto: Any,  # noqa: F811
) -> None:
    """The one-product ranking checks the product in its own query: another brand's product (or
    none) is 404, as with an agent or a category too; a product of the brand without sales in
    the period is an empty ranking."""
    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    other = await (
        await auto.execute(  # of another brand's tree: one of the brand's factory is the brand's
            "SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id "
            "WHERE o.path NOT LIKE %s LIMIT 1",
            (f"/{brand}/%",),
        )
    ).fetchone()
    span = {"from": "2093-03-01", "to": "2093-03-31"}
    for product in [9_000_000_000] + ([other["id"]] if other else []):
        for more in ({}, {"agent_id": demo["AGENT-ZJ"]}, {"from": "2093-03-02"}):
            response = await client.get(
                STORES, headers=admin, params=span | more | {"product_id": product}
            )
            assert response.status_code == 404, response.text
            assert "product not found" in response.text
    p1 = next(iter((await products(auto, brand)).values()))["id"]
    empty = await get(client, admin, STORES, **{"from": "2099-03-01", "to": "2099-03-31"},
                      product_id=p1)  # fmt: skip
    assert (empty["units"], empty["stores"], empty["items"]) == (0, 0, [])


async def test_the_product_cells_key_includes_their_units(auto: Any) -> None:  # noqa: F811
    row = await (
        await auto.execute("SELECT pg_get_indexdef('sales_monthly_pkey'::regclass) AS d")
    ).fetchone()
    assert row["d"].endswith("(brand_id, product_id, month, store_id) INCLUDE (units)")
