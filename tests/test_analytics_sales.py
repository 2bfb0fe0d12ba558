"""Sales analytics (A1–A3) and the dashboard on the real services: sales through the real sale
path (``POST /sales``, a consumer's return, a rebate claim that sells) and random streams of
sales and returns written by SQL (the trigger queues them as it does for the app), rolled up by
concurrent rollers — every sale counted once, the summaries equal to the recount and to a count
made here; the three reports with their filters, scopes and files; the dashboard's figures.
Each bulk test sells on days of its own far in the future, so other tests' sales (made today)
never enter its reports."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import os
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from app.analytics import dashboard
from app.analytics.sales import recount, rollup, split
from tests.conftest import ROOT
from tests.helpers import assert_error
from tests.points_support import member_client
from tests.rebates_support import rebate_body, set_rebate, store_goods
from tests.steady import clear_of_midnight
from tests.test_center import _sheet_cells
from tests.test_inspect import _close_diversion_alerts, goods, scan  # noqa: F401 (fixtures)
from tests.test_members_cross_brand import _other_brand_admin

STORES = "/analytics/sales/stores"
PRODUCTS = "/analytics/sales/products"
REGIONS = "/analytics/sales/regions"
ZJ = ("330000", "浙江省", "330100", "杭州市")
NB = ("330000", "浙江省", "330200", "宁波市")
GD = ("440000", "广东省", "440100", "广州市")
_names = itertools.count(1)
# made-up unit codes of batches far above any real one, apart for each test process
_codes = itertools.count(((1_900_000_000 + os.getpid() % 100_000) << 32) + 1)


async def autocommit() -> psycopg.AsyncConnection[dict[str, Any]]:
    return await psycopg.AsyncConnection.connect(
        os.environ["TRACECODE_DATABASE_URL"], autocommit=True, row_factory=dict_row
    )


@pytest.fixture
async def auto(client: Any) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    # ``client``: the app's start migrates the database (a test run first on its worker met
    # no tables)
    async with await autocommit() as conn:
        yield conn


async def new_store(conn: Any, parent_id: int, region: tuple[str, ...]) -> int:
    n = next(_names)
    row = await (
        await conn.execute(
            """INSERT INTO orgs (parent_id, kind, name, erp_code, province_code, province_name,
                                 city_code, city_name)
               VALUES (%s, 'store', %s, %s, %s, %s, %s, %s) RETURNING id""",
            (parent_id, f"Sales store {n}", f"SALES-S{n}-{os.getpid()}", *region),
        )
    ).fetchone()
    await conn.execute(
        "UPDATE orgs SET path = (SELECT path FROM orgs WHERE id = %s) || id || '/' WHERE id = %s",
        (parent_id, row["id"]),
    )
    return int(row["id"])


async def products(conn: Any, brand: int) -> dict[str, dict[str, Any]]:
    rows = await (
        await conn.execute(
            "SELECT id, product_no, product_type, category_id FROM products WHERE org_id = %s",
            (brand,),
        )
    ).fetchall()
    return {r["product_no"]: r for r in rows}


# Each state change below writes the stock delta its movement would, so the stock stays equal
# to its recount for the tests that check it later in the session.
_DELTAS = """INSERT INTO stock_deltas (org_id, product_id, lot, on_hand, in_transit, event_id)
             SELECT holder_org_id, product_id, lot, {sign} * count(*), 0, 0 FROM moved
             GROUP BY holder_org_id, product_id, lot"""


async def stock_units(conn: Any, brand: int, store: int, product: int, n: int) -> list[int]:
    """``n`` active units of ``product`` on ``store``'s shelf (state rows of made-up codes)."""
    codes = [next(_codes) for _ in range(n)]
    await conn.execute(
        """WITH moved AS (
               INSERT INTO unit_state (code, brand_id, product_id, lot, production_date, status,
                                       disposition, holder_org_id, activated_at, last_event_id)
               SELECT c, %s, %s, 'AN1', '2090-01-01', 'active', 'sellable_accessible', %s,
                      now(), 0
               FROM unnest(%s::bigint[]) c
               RETURNING holder_org_id, product_id, lot
           ) """
        + _DELTAS.format(sign=1),
        (brand, product, store, codes),
    )
    return codes


async def sell(conn: Any, codes: list[int], at: datetime) -> None:
    """Sold at ``at``: the state change the sale movement makes (the trigger queues it)."""
    await conn.execute(
        """WITH moved AS (
               UPDATE unit_state SET status = 'sold', disposition = 'retail_sold', sold_at = %s
               WHERE code = ANY(%s) RETURNING holder_org_id, product_id, lot
           ) """
        + _DELTAS.format(sign=-1),
        (at, codes),
    )


async def give_back(conn: Any, codes: list[int]) -> None:
    """A consumer's return: the state change of the consumer_return movement."""
    await conn.execute(
        """WITH moved AS (
               UPDATE unit_state SET status = 'active', disposition = 'returned', sold_at = NULL
               WHERE code = ANY(%s) RETURNING holder_org_id, product_id, lot
           ) """
        + _DELTAS.format(sign=1),
        (codes,),
    )


def shanghai(at: datetime) -> date:
    return (at.astimezone(UTC) + timedelta(hours=8)).date()


async def get(client: Any, headers: dict[str, str], path: str, **params: Any) -> Any:
    response = await client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def roll_all() -> int:
    async with await autocommit() as conn:
        return await rollup(conn)


# -- the period split -----------------------------------------------------------------------------


def test_a_period_is_whole_months_and_the_days_at_either_end() -> None:
    p = split(date(2091, 1, 15), date(2091, 4, 10))
    assert (p.m1, p.m2) == (date(2091, 2, 1), date(2091, 3, 1))
    assert (p.d1, p.d2, p.d3, p.d4) == (
        date(2091, 1, 15), date(2091, 1, 31), date(2091, 4, 1), date(2091, 4, 10)
    )  # fmt: skip
    whole = split(date(2091, 1, 1), date(2091, 12, 31))
    assert (whole.m1, whole.m2) == (date(2091, 1, 1), date(2091, 12, 1))
    assert whole.d1 > whole.d2 and whole.d3 > whole.d4
    inside = split(date(2091, 2, 3), date(2091, 2, 20))
    assert inside.m1 > inside.m2 and (inside.d1, inside.d2) == (date(2091, 2, 3), date(2091, 2, 20))
    assert inside.d3 > inside.d4
    edge = split(date(2091, 1, 31), date(2091, 3, 1))
    assert (edge.m1, edge.m2) == (date(2091, 2, 1), date(2091, 2, 1))


# -- the real sale path ---------------------------------------------------------------------------


async def test_store_sales_returns_and_rebate_claims_count_once(
    client: Any, login: Any, app: Any, demo: Any, auto: Any
) -> None:
    """Two units sold by scanning, one of them returned, a rebate claim that sells a third and
    a rebate claim of a unit already sold: the store has sold 2 more units today."""
    stocked = await store_goods(client, login, app, demo)
    store, admin = demo["STORE-HZ-01"], await login("admin")
    manager = await login("store_manager")
    await roll_all()
    await clear_of_midnight()  # today's figures: the day must not turn during the test
    today = shanghai(datetime.now(UTC)).isoformat()

    async def sold_here() -> int:
        out = await get(client, manager, STORES, **{"from": today, "to": today})
        return sum(i["units"] for i in out["items"] if i["store_id"] == store)

    before = await sold_here()
    clerk = await login("store_clerk")
    units = stocked["units"]
    sold = await client.post("/sales", headers=clerk, json={"codes": units[:2]})
    assert sold.status_code == 201, sold.text
    back = await client.post("/returns", headers=clerk, json={"code": units[1], "reason": "other"})
    assert back.status_code == 200, back.text
    await set_rebate(client, admin, stocked["product_id"], 2.0)
    async with member_client(app) as mc:
        for serial in (units[2], units[0]):
            made = await mc.post(
                "/rebates/claims", headers=clerk, json=rebate_body(app.state.scheme, serial)
            )
            assert made.status_code == 201, made.text
    assert await roll_all() >= 4  # two sales, a return, the claim's sale
    assert await sold_here() == before + 2
    assert await recount(auto) == []


# -- random streams, concurrent roll-ups ----------------------------------------------------------


async def test_rollup_equals_recount_and_a_count_with_concurrent_rollers(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """Random sales and returns (2,400 units of 3 products on 6 stores under two agents, days
    spread over 2091, some a minute either side of an Asia/Shanghai midnight) committed in 80
    transactions by two writers while four roll-ups run on their own connections: every change
    is folded once; the summaries equal the recount and the reports equal a count made here."""
    rng = random.Random(17)
    brand = demo["BRAND-LUMI"]
    zj = [await new_store(auto, demo["AGENT-ZJ"], ZJ) for _ in range(3)]
    nb = [await new_store(auto, demo["DIST-NB"], NB)]
    gd = [await new_store(auto, demo["AGENT-GD"], GD) for _ in range(2)]
    stores = zj + nb + gd
    catalog = await products(auto, brand)
    items = list(catalog.values())
    shelf: dict[int, tuple[int, int]] = {}  # code -> (store, product)
    for s in stores:
        for p in items:
            for code in await stock_units(auto, brand, s, p["id"], 400 // len(items)):
                shelf[code] = (s, p["id"])
    sold_at: dict[int, datetime] = {}
    done = asyncio.Event()

    def moment() -> datetime:
        day = datetime(2091, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 363))
        if rng.random() < 0.2:  # around 16:00 UTC = midnight in Shanghai
            return day.replace(hour=16) + timedelta(minutes=rng.choice([-1, 0, 1]))
        return day + timedelta(minutes=rng.randint(0, 24 * 60 - 1))

    async def writer(codes: list[int]) -> None:
        async with await autocommit() as conn:
            for _ in range(40):
                async with conn.transaction():
                    unsold = [c for c in codes if c not in sold_at]
                    for code in rng.sample(unsold, min(len(unsold), rng.randint(5, 40))):
                        sold_at[code] = moment()
                        await sell(conn, [code], sold_at[code])
                    sold = [c for c in codes if c in sold_at]
                    back = rng.sample(sold, min(len(sold), rng.randint(0, 4)))
                    await give_back(conn, back)
                    for code in back:
                        del sold_at[code]

    async def roller() -> None:
        async with await autocommit() as conn:
            while not done.is_set():
                await rollup(conn, limit=rng.choice([7, 50, 500]))
                await asyncio.sleep(0)

    codes = list(shelf)
    rng.shuffle(codes)
    rollers = [asyncio.create_task(roller()) for _ in range(4)]
    await asyncio.gather(writer(codes[::2]), writer(codes[1::2]))
    done.set()
    await asyncio.gather(*rollers)
    await roll_all()
    assert await recount(auto) == []
    left = await (await auto.execute("SELECT count(*) AS n FROM sales_queue")).fetchone()
    assert left["n"] == 0

    expected: dict[tuple[int, int, date], int] = defaultdict(int)
    for code, at in sold_at.items():
        expected[(*shelf[code], shanghai(at))] += 1

    def units(keep: Any) -> dict[int, int]:
        out: dict[int, int] = defaultdict(int)
        for (s, p, d), n in expected.items():
            if keep(s, p, d):
                out[s] += n
        return dict(out)

    admin = await login("admin")
    year = {"from": "2091-01-01", "to": "2091-12-31", "limit": 10_000}
    ranking = await get(client, admin, STORES, **year)
    mine = {i["store_id"]: i["units"] for i in ranking["items"] if i["store_id"] in stores}
    assert mine == units(lambda s, p, d: True)
    # the ranks: by units, ties share
    listed = [i["units"] for i in ranking["items"]]
    assert listed == sorted(listed, reverse=True)
    # a period with partial months at both ends, one product; a category; a region; an agent
    lo, hi = date(2091, 2, 17), date(2091, 7, 3)
    one = items[0]["id"]
    got = await get(client, admin, STORES, **{"from": lo, "to": hi, "product_id": one})
    assert {i["store_id"]: i["units"] for i in got["items"] if i["store_id"] in stores} == units(
        lambda s, p, d: p == one and lo <= d <= hi
    )
    skincare = catalog["LM-HY-50"]["category_id"]
    in_cat = {p["id"] for p in items if p["category_id"] == skincare}
    got = await get(client, admin, STORES, **year, category_id=skincare)
    assert {i["store_id"]: i["units"] for i in got["items"] if i["store_id"] in stores} == units(
        lambda s, p, d: p in in_cat
    )
    got = await get(client, admin, STORES, **year, province="440000")
    assert {i["store_id"] for i in got["items"]} >= set(gd)
    assert not {i["store_id"] for i in got["items"]} & set(zj + nb)
    # a probe: the English name found nothing here, while A4-A7 take it
    for name in ("广东省", "Guangdong", " guangdong "):
        named = await get(client, admin, STORES, **year, province=name)
        assert named["items"] == got["items"], name
    got = await get(client, admin, STORES, **year, agent_id=demo["AGENT-ZJ"])
    assert {i["store_id"]: i["units"] for i in got["items"] if i["store_id"] in stores} == units(
        lambda s, p, d: s in zj + nb
    )
    assert {i["agent_name"] for i in got["items"] if i["store_id"] in stores} == {
        "Zhejiang Agent 浙江代理"
    }
    assert len((await get(client, admin, STORES, **{**year, "limit": 2}))["items"]) == 2

    # A2: per product, per type, series by month and by day — brand-wide and an agent's
    report = await get(client, admin, PRODUCTS, **year, granularity="month")
    by_product: dict[int, int] = defaultdict(int)
    by_month: dict[str, int] = defaultdict(int)
    for (_s, p, d), n in expected.items():
        by_product[p] += n
        by_month[f"{d:%Y-%m}"] += n
    # other tests sell nothing in 2091: the brand-wide figures are all ours
    assert {p["product_id"]: p["units"] for p in report["products"]} == {
        p: n for p, n in by_product.items() if n
    }
    assert {s["period"]: s["units"] for s in report["series"]} == {
        m: n for m, n in by_month.items() if n
    } | {s["period"]: 0 for s in report["series"] if not by_month.get(s["period"])}
    assert sum(t["units"] for t in report["types"]) == report["units"] == sum(by_product.values())
    agent = await login("agent_admin")
    zj_products: dict[int, int] = defaultdict(int)
    zj_days: dict[str, int] = defaultdict(int)
    for (s, p, d), n in expected.items():
        if s in zj + nb and lo <= d <= hi:
            zj_products[p] += n
            zj_days[d.isoformat()] += n
    for granularity in ("day", "month"):
        mine = await get(client, agent, PRODUCTS, **{"from": lo, "to": hi}, granularity=granularity)
        assert {p["product_id"]: p["units"] for p in mine["products"] if p["units"]} == {
            p: n for p, n in zj_products.items() if n
        }
    daily = await get(client, agent, PRODUCTS, **{"from": lo, "to": hi}, granularity="day")
    assert {s["period"]: s["units"] for s in daily["series"] if s["units"]} == {
        d: n for d, n in zj_days.items() if n
    }

    # A3: by province and agent, by city
    regions = await get(client, admin, REGIONS, **year)
    per_agent = {a["agent_name"]: a["units"] for a in regions["agents"]}
    assert per_agent["Zhejiang Agent 浙江代理"] == sum(units(lambda s, p, d: s in zj + nb).values())
    assert per_agent["Guangdong Agent 广东代理"] == sum(units(lambda s, p, d: s in gd).values())
    cities = await get(client, admin, REGIONS, **year, level="city")
    nb_units = next(i for i in cities["items"] if i["city_code"] == "330200")
    assert nb_units["units"] == sum(units(lambda s, p, d: s in nb).values())

    # the files: the same rows, adding up
    text = (await client.get(STORES, headers=admin, params={**year, "format": "csv"})).text
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert sum(int(r["units"]) for r in rows) == ranking["units"]
    xlsx = await client.get(PRODUCTS, headers=admin, params={**year, "format": "xlsx"})
    assert xlsx.status_code == 200
    cells = _sheet_cells(xlsx.content)
    assert (cells["A1"], cells["B1"], cells["F1"]) == ("product_id", "product", "units")
    units_cells = [v for k, v in cells.items() if k.startswith("F") and k != "F1"]
    assert sum(int(float(v)) for v in units_cells) == report["units"]
    region_csv = await client.get(REGIONS, headers=admin, params={**year, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(region_csv.text.lstrip("\ufeff"))))
    assert sum(int(r["units"]) for r in rows) == regions["units"]


async def test_periods_across_years_and_month_ends_and_stores_netting_zero(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """Periods read from the running totals of a year and of a month: across a new year, the
    29th of February of a leap year, a month's last and first days; a store whose units were
    all returned is not listed. 2095–2096 are this test's own years."""
    brand, admin = demo["BRAND-LUMI"], await login("admin")
    a = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    b = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    p1, p2 = [p["id"] for p in list((await products(auto, brand)).values())[:2]]

    def at(day: str) -> datetime:  # noon in Shanghai
        return datetime.fromisoformat(day).replace(hour=4, tzinfo=UTC)

    for store, product, day, n in ((a, p1, "2095-12-31", 2), (a, p1, "2096-01-01", 1),
                                   (a, p2, "2096-02-29", 3), (a, p1, "2096-03-01", 1),
                                   (b, p1, "2096-01-15", 2)):  # fmt: skip
        codes = await stock_units(auto, brand, store, product, n)
        await sell(auto, codes, at(day))
        if store == b:
            await give_back(auto, codes)
    await roll_all()
    assert await recount(auto) == []

    async def ranked(lo: str, hi: str, **more: Any) -> dict[int, int]:
        out = await get(client, admin, STORES, **{"from": lo, "to": hi}, **more)
        return {i["store_id"]: i["units"] for i in out["items"] if i["store_id"] in (a, b)}

    assert await ranked("2095-12-31", "2096-02-29") == {a: 6}
    assert await ranked("2095-12-01", "2095-12-31") == {a: 2}
    assert await ranked("2096-01-01", "2096-02-28") == {a: 1}
    assert await ranked("2096-02-29", "2096-03-01") == {a: 4}
    assert await ranked("2096-01-02", "2096-02-28") == {}
    assert await ranked("2095-12-31", "2096-03-01", product_id=p1) == {a: 4}
    assert await ranked("2096-01-01", "2096-03-01", product_id=p1) == {a: 2}
    assert await ranked("2096-02-29", "2096-02-29", product_id=p2) == {a: 3}
    assert await ranked("2096-01-01", "2096-01-31", product_id=p1) == {a: 1}

    agent = await login("agent_admin")
    days = await get(client, agent, PRODUCTS, **{"from": "2096-02-28", "to": "2096-03-01"},
                     granularity="day")  # fmt: skip
    assert {s["period"]: s["units"] for s in days["series"] if s["units"]} == {
        "2096-02-29": 3, "2096-03-01": 1
    }  # fmt: skip
    months = await get(client, agent, PRODUCTS, **{"from": "2095-12-31", "to": "2096-03-01"})
    assert {p["product_id"]: p["units"] for p in months["products"]} == {p1: 4, p2: 3}
    brand_wide = await get(client, admin, PRODUCTS, **{"from": "2095-12-15", "to": "2096-03-01"})
    assert {s["period"]: s["units"] for s in brand_wide["series"] if s["units"]} == {
        "2095-12": 2, "2096-01": 1, "2096-02": 3, "2096-03": 1
    }  # fmt: skip
    regions = await get(client, admin, REGIONS, **{"from": "2095-12-31", "to": "2096-03-01"})
    assert [(i["province_code"], i["agent_name"], i["stores"], i["units"])
            for i in regions["items"]] == [("330000", "Zhejiang Agent 浙江代理", 1, 7)]  # fmt: skip


async def test_scopes_brand_agent_store_and_another_brand(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    brand = demo["BRAND-LUMI"]
    zj = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    gd = await new_store(auto, demo["AGENT-GD"], GD)
    product = next(iter((await products(auto, brand)).values()))["id"]
    at = datetime(2092, 5, 5, 4, tzinfo=UTC)
    await sell(auto, await stock_units(auto, brand, zj, product, 3), at)
    await sell(auto, await stock_units(auto, brand, gd, product, 5), at)
    await sell(auto, await stock_units(auto, brand, demo["STORE-HZ-01"], product, 2), at)
    await roll_all()
    when = {"from": "2092-05-01", "to": "2092-05-31"}

    async def seen(user: str | dict[str, str]) -> dict[int, int]:
        headers = await login(user) if isinstance(user, str) else user
        out = await get(client, headers, STORES, **when)
        return {i["store_id"]: i["units"] for i in out["items"]}

    assert await seen("admin") == {zj: 3, gd: 5, demo["STORE-HZ-01"]: 2}
    assert await seen("analyst") == {zj: 3, gd: 5, demo["STORE-HZ-01"]: 2}
    assert await seen("agent_admin") == {zj: 3, demo["STORE-HZ-01"]: 2}
    assert await seen("gd_admin") == {gd: 5}
    assert await seen("store_manager") == {demo["STORE-HZ-01"]: 2}
    _, other = await _other_brand_admin(client, login)
    assert await seen(other) == {}
    # another agent's id, a product of another brand: not found; no reports.read: 403
    agent = await login("agent_admin")
    assert_error(
        await client.get(STORES, headers=agent, params={**when, "agent_id": demo["AGENT-GD"]}),
        404,
    )
    assert_error(await client.get(STORES, headers=other, params={"product_id": product}), 404)
    assert_error(await client.get(STORES, headers=await login("store_clerk")), 403)
    regions = await get(client, agent, REGIONS, **when)
    assert {a["agent_name"] for a in regions["agents"]} == {"Zhejiang Agent 浙江代理"}
    assert regions["units"] == 5
    report = await get(client, await login("store_manager"), PRODUCTS, **when)
    assert report["units"] == 2
    # a bad period
    assert_error(
        await client.get(STORES, headers=agent, params={"from": "2092-05-02", "to": "2092-05-01"}),
        400,
        "bad_period",
    )
    # a probe: a period in the calendar's last month was a 500 (its month after is no date)
    for path, extra in ((STORES, {}), (PRODUCTS, {"agent_id": demo["AGENT-ZJ"]}), (REGIONS, {})):
        for start in ("9999-12-15", "9999-11-02"):
            answer = await client.get(
                path, headers=agent, params={"from": start, "to": "9999-12-29", **extra}
            )
            assert_error(answer, 400, "bad_period")


async def test_a2_store_id_names_one_seller_never_a_subtree(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """A probe: ``GET /analytics/sales/products?store_id=`` checked no kind (``scope``): given
    an agent's or the brand's own id it answered the sums of that organisation's whole subtree,
    presented as one store's report. A store filter names one seller as the store ranking (A1)
    lists it — a store, or an agent or distributor selling to consumers —: its own sales; the
    brand's id, or one outside the caller's subtree, is 404 ``not_found``."""
    admin, agent = await login("admin"), await login("agent_admin")
    for headers, org in ((admin, demo["BRAND-LUMI"]), (agent, demo["AGENT-GD"])):
        answer = await client.get(PRODUCTS, headers=headers, params={"store_id": org})
        assert_error(answer, 404, "not_found")
    zj, brand = demo["AGENT-ZJ"], demo["BRAND-LUMI"]
    product = next(iter((await products(auto, brand)).values()))["id"]
    codes = await stock_units(auto, brand, demo["STORE-HZ-01"], product, 2)
    await sell(auto, codes, datetime(2082, 3, 3, 4, tzinfo=UTC))  # a day of this test's own
    await roll_all()
    period = {"from": "2082-03-01", "to": "2082-03-31"}
    own = await get(client, admin, PRODUCTS, **period, store_id=zj)
    subtree = await get(client, admin, PRODUCTS, **period, agent_id=zj)
    assert (own["units"], subtree["units"]) == (0, 2), (own, subtree)  # the agent sold none
    ok = await client.get(PRODUCTS, headers=admin, params={"store_id": demo["STORE-HZ-01"]})
    assert ok.status_code == 200, ok.text


async def test_a3_takes_the_city_filter_and_a2_a_limit_as_a1_does(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """A probe: ``GET /analytics/sales/regions?level=city&city=330200`` declared no ``city``:
    the filter was dropped without a word, every city's rows and units answered. SPEC A3 and
    the README (``/analytics/sales/regions?…``) give the regions A1's filters; the by-product
    report (A2, ``/analytics/sales/products?…``) took no ``limit`` either. A3 takes ``city`` as
    A1 does (a 6-digit code or a name), A2 a ``limit`` of its products (its units, types and
    series count them all), as A3 limits its rows."""
    brand, admin = demo["BRAND-LUMI"], await login("admin")
    hz = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    nb = await new_store(auto, demo["DIST-NB"], NB)
    first, second = [p["id"] for p in (await products(auto, brand)).values()][:2]
    at = datetime(2079, 4, 4, 4, tzinfo=UTC)  # a day of this test's own
    await sell(auto, await stock_units(auto, brand, hz, first, 2), at)
    await sell(auto, await stock_units(auto, brand, nb, first, 5), at)
    await sell(auto, await stock_units(auto, brand, nb, second, 1), at)
    await roll_all()
    period = {"from": "2079-04-01", "to": "2079-04-30"}
    for city in ("330200", "宁波市"):
        for level in ("city", "province"):
            out = await get(client, admin, REGIONS, **period, level=level, city=city)
            assert out["units"] == 6, (city, level, out)
            assert {i["province_code"] for i in out["items"]} == {"330000"}
        assert {i["city_code"] for i in out["items"]} == {None}  # by province: no city
        cities = await get(client, admin, REGIONS, **period, level="city", city=city)
        assert {i["city_code"] for i in cities["items"]} == {"330200"}, cities
        ranked = await get(client, admin, STORES, **period, city=city)
        assert {i["store_id"] for i in ranked["items"]} == {nb}
    assert (await get(client, admin, REGIONS, **period))["units"] == 8
    # A2: the first product only, the totals of both
    report = await get(client, admin, PRODUCTS, **period, limit=1)
    assert [p["product_id"] for p in report["products"]] == [first], report
    assert report["units"] == sum(t["units"] for t in report["types"]) == 8
    assert len((await get(client, admin, PRODUCTS, **period))["products"]) == 2
    text = (await client.get(PRODUCTS, headers=admin, params={**period, "limit": 1,
                                                               "format": "csv"})).text  # fmt: skip
    assert len(list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))) == 1
    for path in (PRODUCTS, REGIONS):
        assert_error(await client.get(path, headers=admin, params={"limit": 0}), 400)


async def test_an_unknown_province_is_400_and_a_province_is_named_as_a4_a7_name_it(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``province=Atlantis`` (or a code no province has) answered 200 with nothing, as
    if the province sold nothing, where ``GET /members`` says 400. A province is its name, full,
    short or in English, or its 6-digit code (``app.provinces.query_province``, as A4-A7 and
    the member list read it); an unknown one is 400 ``validation_failed`` on ``province``."""
    admin = await login("admin")
    period = {"from": "2078-07-01", "to": "2078-07-31"}  # no test sells then: no answer moves
    for path in (STORES, PRODUCTS, REGIONS):
        coded = await get(client, admin, path, **period, province="330000")
        for spelt in ("浙江省", "浙江", " zhejiang "):
            assert await get(client, admin, path, **period, province=spelt) == coded, spelt
        for unknown in ("Atlantis", "330100", "990000", "３３００００"):
            answer = await client.get(path, headers=admin, params={"province": unknown})
            error = assert_error(answer, 400, "validation_failed")
            assert [d["field"] for d in error["details"]] == ["province"], (path, unknown)


async def test_a_period_is_at_most_three_calendar_years_as_the_readme_says(
    client: Any, login: Any
) -> None:
    """A probe: the limit was 3 * 366 days, so 2084-01-01..2087-01-02 (two days past three
    years) was answered. Three years from a day end the day before it three years later (from
    29 February: on 28 February)."""
    admin = await login("admin")
    for path in (STORES, PRODUCTS, REGIONS):
        for start, last in (("2084-01-01", "2086-12-31"), ("2084-02-29", "2087-02-28")):
            answer = await client.get(path, headers=admin, params={"from": start, "to": last})
            assert answer.status_code == 200, (path, start, answer.text)
            after = (date.fromisoformat(last) + timedelta(days=1)).isoformat()
            answer = await client.get(path, headers=admin, params={"from": start, "to": after})
            assert_error(answer, 400, "bad_period")


async def _distributor(conn: Any, parent_id: int) -> int:
    """A distributor of the agent, with the agent's region (it sells to consumers, L7)."""
    row = await (
        await conn.execute(
            """INSERT INTO orgs (parent_id, kind, name, erp_code, province_code, province_name,
                                 city_code, city_name)
               VALUES (%s, 'distributor', %s, %s, %s, %s, %s, %s) RETURNING id""",
            (parent_id, "A2 distributor", f"A2-DIST-{os.getpid()}", *ZJ),
        )
    ).fetchone()
    await conn.execute(
        "UPDATE orgs SET path = (SELECT path FROM orgs WHERE id = %s) || id || '/' WHERE id = %s",
        (parent_id, row["id"]),
    )
    return int(row["id"])


async def test_a2_drills_into_a_distributor_a1_ranks_as_a_store(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """A probe (of the fix above, when it took ``kind = 'store'`` only): a distributor selling
    to consumers (``POST /sales`` takes ``RETAIL_KINDS``) is ranked by A1 as a store, with its
    id as ``store_id``; drilling into that row with A2 answered 404 "store not found". A2
    answers the seller A1 listed: its own units."""
    brand, admin = demo["BRAND-LUMI"], await login("admin")
    dist = await _distributor(auto, demo["AGENT-ZJ"])
    product = next(iter((await products(auto, brand)).values()))["id"]
    codes = await stock_units(auto, brand, dist, product, 3)
    await sell(auto, codes, datetime(2081, 7, 14, 4, tzinfo=UTC))  # a day of this test's own
    await roll_all()
    period = {"from": "2081-07-01", "to": "2081-07-31"}
    ranked = await get(client, admin, STORES, **period)
    assert next(i for i in ranked["items"] if i["store_id"] == dist)["units"] == 3
    drilled = await get(client, admin, PRODUCTS, **period, store_id=dist)
    assert drilled["units"] == 3


async def test_a_row_that_cannot_be_folded_is_dead_lettered(auto: Any) -> None:
    """A queued sale whose sum overflows its cell goes to the dead letters; the others fold."""
    fake = -(os.getpid() % 100_000) - 1  # a brand id no organisation has
    day = date(2093, 1, 1)
    await auto.execute(
        """INSERT INTO sales_monthly (brand_id, month, store_id, product_id, units)
           VALUES (%s, %s, 1, 1, 9223372036854775807)""",
        (fake, day),
    )
    try:
        await auto.execute(
            """INSERT INTO sales_queue (brand_id, day, store_id, product_id, units)
               VALUES (%(b)s, %(d)s, 1, 1, 1), (%(b)s, %(d)s, 2, 1, 1)""",
            {"b": fake, "d": day},
        )
        await roll_all()
        dead = await (
            await auto.execute(
                "SELECT payload FROM dead_letters WHERE queue = 'sales_queue' "
                "AND convert_from(payload, 'UTF8')::jsonb ->> 'brand_id' = %s",
                (str(fake),),
            )
        ).fetchall()
        assert len(dead) == 1
        folded = await (
            await auto.execute(
                "SELECT units FROM sales_store_monthly WHERE brand_id = %s AND store_id = 2",
                (fake,),
            )
        ).fetchone()
        assert folded["units"] == 1
    finally:
        for table in ("sales_monthly", "sales_store_monthly", "sales_store_years",
                      "sales_product_daily", "sales_product_monthly"):  # fmt: skip
            await auto.execute(f"DELETE FROM {table} WHERE brand_id = %s", (fake,))
        await auto.execute(
            "DELETE FROM dead_letters WHERE queue = 'sales_queue' "
            "AND convert_from(payload, 'UTF8')::jsonb ->> 'brand_id' = %s",
            (str(fake),),
        )


def analytics_command(action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "analytics", action],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_recount_command_finds_a_tampered_cell(demo: Any, auto: Any) -> None:
    brand = demo["BRAND-LUMI"]
    store = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    product = next(iter((await products(auto, brand)).values()))["id"]
    await sell(
        auto, await stock_units(auto, brand, store, product, 2), datetime(2094, 3, 3, tzinfo=UTC)
    )
    ok = await asyncio.to_thread(analytics_command, "recount")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "sales equal the recount" in ok.stdout
    await auto.execute(
        "UPDATE sales_store_monthly SET units = units + 1 WHERE brand_id = %s AND store_id = %s",
        (brand, store),
    )
    try:
        bad = await asyncio.to_thread(analytics_command, "recount")
        assert bad.returncode == 1
        assert "sales_store_monthly" in bad.stdout
    finally:
        await auto.execute(
            "UPDATE sales_store_monthly SET units = units - 1 WHERE brand_id = %s AND store_id = %s",
            (brand, store),
        )


# -- the dashboard --------------------------------------------------------------------------------


async def test_dashboard_figures_match_what_was_done(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    brand, admin = demo["BRAND-LUMI"], await login("admin")
    # today's figures: an alert written before midnight was not the agent's "today" after it
    await clear_of_midnight()
    before = await get(client, admin, "/analytics/dashboard")
    assert len(before["days"]) == 14 and before["days"][-1] == before["today"]
    for name in ("verifications", "counterfeits", "activations", "diversions", "shipments"):
        assert len(before[name]["trend"]) == 14
        assert before[name]["trend"][-1] == before[name]["today"]
    now = datetime.now(UTC)
    await auto.execute(
        """INSERT INTO verifications (at, record_key, brand_id, result, reason)
           VALUES (%(at)s, gen_random_uuid(), %(b)s, 'genuine', 'first_query'),
                  (%(at)s, gen_random_uuid(), %(b)s, 'not_genuine', 'forged'),
                  (%(at)s, gen_random_uuid(), %(b)s, 'not_genuine', 'forged')""",
        {"at": now, "b": brand},
    )
    await auto.execute(
        """INSERT INTO alerts (brand_id, org_id, kind, severity, message, details, dedup_key)
           VALUES (%s, %s, 'low_stock', 'warning', 'test', '{"product_id": 0}', %s)""",
        (brand, demo["STORE-HZ-01"], f"low_stock:test:{os.getpid()}:{now.timestamp()}"),
    )
    after = await get(client, admin, "/analytics/dashboard")
    if after["today"] == before["today"]:  # not across midnight (Asia/Shanghai)
        assert after["verifications"]["today"] == before["verifications"]["today"] + 3
        assert after["counterfeits"]["today"] == before["counterfeits"]["today"] + 2
        assert after["low_stock"]["today"] == before["low_stock"]["today"] + 1
        assert after["low_stock"]["trend"][-1] == before["low_stock"]["trend"][-1] + 1
    # the agent: its subtree's figures, no brand-wide ones
    agent = await get(client, await login("agent_admin"), "/analytics/dashboard")
    assert agent["verifications"] is None and agent["activations"] is None
    assert agent["low_stock"]["today"] >= 1
    gd = await get(client, await login("gd_admin"), "/analytics/dashboard")
    assert gd["low_stock"]["today"] <= after["low_stock"]["today"] - 1
    # a closed day: kept as counted from its sources; the worker's pass counts them all
    yesterday = date.fromisoformat(after["days"][-2])
    await auto.execute(
        """INSERT INTO verifications (at, record_key, brand_id, result, reason)
           VALUES (%s, gen_random_uuid(), %s, 'genuine', 'first_query')""",
        (now - timedelta(days=1), brand),
    )
    # counted before the day settled (within an hour of its end): the worker counts it again
    await auto.execute(
        """UPDATE dashboard_days SET counted_at = ((day + 1)::timestamp AT TIME ZONE
               'Asia/Shanghai') + interval '10 minutes'
           WHERE brand_id = %s AND day = %s""",
        (brand, yesterday),
    )
    assert await dashboard.refresh(auto) >= 1
    kept = await (
        await auto.execute(
            "SELECT verifications FROM dashboard_days WHERE brand_id = %s AND day = %s",
            (brand, yesterday),
        )
    ).fetchone()
    assert (
        kept["verifications"]
        == (await dashboard.count_day(auto, brand, yesterday))["verifications"]
    )
    shown = await get(client, admin, "/analytics/dashboard")
    assert shown["verifications"]["trend"][-2] == kept["verifications"]
    assert_error(await client.get("/analytics/dashboard", headers=await login("store_clerk")), 403)


async def test_head_of_the_dashboard_keeps_no_day(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """A probe: HEAD /analytics/dashboard counted the closed days it had not kept and stored
    them, as its GET does (README: a HEAD has no side effect of its GET). It answers GET's
    status from a count it does not keep."""
    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    kept = "SELECT count(*) AS n FROM dashboard_days WHERE brand_id = %s"
    await auto.execute("DELETE FROM dashboard_days WHERE brand_id = %s", (brand,))
    head = await client.head("/analytics/dashboard", headers=admin)
    assert head.status_code == 200 and head.content == b""
    assert (await (await auto.execute(kept, (brand,))).fetchone())["n"] == 0
    assert (await client.get("/analytics/dashboard", headers=admin)).status_code == 200
    assert (await (await auto.execute(kept, (brand,))).fetchone())["n"] == 13


async def test_an_agent_s_diversions_count_its_goods_diverted_as_its_alerts_and_records_do(
    client: Any,
    login: Any,
    goods: dict[str, Any],  # noqa: F811
) -> None:
    """A probe: AGENT-ZJ's goods were found at a Guangdong store (another agent's): AGENT-ZJ's
    administrator got a critical diversion alert and the record in ``GET
    /inspections?result=diverted`` for today, but the dashboard's diversions for AGENT-ZJ stayed
    0: they counted only inspections at the caller's stores. They count the records' scope now:
    at the caller's stores or of its goods found anywhere."""
    agent = await login("agent_admin")
    before = await get(client, agent, "/analytics/dashboard")
    today = before["today"]

    async def diverted_today() -> int:
        listed = await get(
            client,
            agent,
            "/inspections",
            result="diverted",
            per_page=1,
            to=today,
            **{"from": today},
        )
        return int(listed["total"])

    listed_before = await diverted_today()
    away = await scan(client, await login("inspector"), goods["units"][3], "STORE-GZ-01")
    assert away.status_code == 201, away.text
    assert away.json()["items"][0]["result"] == "diverted"
    alerts = await get(client, agent, "/alerts", kind="diversion", open=True)
    assert goods["units"][3] in {a["serial"] for a in alerts["items"]}
    assert await diverted_today() == listed_before + 1
    after = await get(client, agent, "/analytics/dashboard")
    assert after["today"] == today  # not across midnight
    assert after["diversions"]["today"] == before["diversions"]["today"] + 1, (
        before["diversions"],
        after["diversions"],
    )


async def test_a_product_that_nets_nothing_is_listed_by_no_path(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """A probe: brand-wide (no store condition) the product report listed a product sold and
    given back, with 0 units; the stores' path (the agent's) did not. 2088 is this test's own
    year."""
    brand = demo["BRAND-LUMI"]
    store = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    p1, p2 = [p["id"] for p in list((await products(auto, brand)).values())[:2]]
    at = datetime(2088, 5, 5, 4, tzinfo=UTC)
    await sell(auto, await stock_units(auto, brand, store, p1, 2), at)
    back = await stock_units(auto, brand, store, p2, 1)
    await sell(auto, back, at)
    await give_back(auto, back)
    await roll_all()
    when = {"from": "2088-05-01", "to": "2088-05-31"}
    for user in ("agent_admin", "admin"):
        for granularity in ("day", "month"):
            shown = await get(client, await login(user), PRODUCTS, granularity=granularity, **when)
            assert {p["product_id"]: p["units"] for p in shown["products"]} == {p1: 2}, user
            assert [s["units"] for s in shown["series"]] == [2], (user, shown["series"])


async def test_the_dashboard_counts_units_an_offline_line_uploads_days_late(
    client: Any, login: Any, app: Any, demo: Any, auto: Any
) -> None:
    """A probe: a closed day settled an hour after it ended, and the units an offline scanner
    activated on it and uploaded days later were never counted."""
    from tests.helpers import issue_units
    from tests.test_packing import scan, set_line, upload

    admin = await login("admin")
    first = await get(client, admin, "/analytics/dashboard")
    day = date.fromisoformat(first["days"][-4])
    assert await dashboard.refresh(auto) >= 0  # every closed day counted and kept
    batch_no, product_id = await issue_units(client, login, demo, 10)
    await set_line(client, login, product_id, "LATE1")
    codes = [app.state.scheme.serial(batch_no, i) for i in range(5)]
    body = await upload(
        client, login, "LATE1", [scan(c, at=f"{day}T12:00:00+08:00") for c in codes]
    )
    assert [s["result"] for s in body["scans"]] == ["ok"] * 5
    counted = (await dashboard.count_day(auto, demo["BRAND-LUMI"], day))["activations"]
    assert counted >= 5
    shown = await get(client, admin, "/analytics/dashboard")
    assert shown["activations"]["trend"][-4] == counted


async def test_a_recount_of_a_day_and_units_activated_late_on_it_take_turns(
    client: Any, login: Any, app: Any, demo: Any, auto: Any
) -> None:
    """A probe: a recount of a closed day counted, then a late upload of that day committed
    and dropped no row (none yet), then the recount kept its count: the units were never
    counted. The recount holds the day's lock from before it counts to its commit (another
    transaction cannot take it meanwhile), and a late upload takes it before it drops the row:
    it waits, and the units are counted after."""
    from app.locks import Lock, xact
    from tests.helpers import issue_units
    from tests.test_packing import scan, set_line, upload

    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    day = date.fromisoformat((await get(client, admin, "/analytics/dashboard"))["days"][-5])
    statement, params = xact(Lock.DASHBOARD_DAY, f"{brand}:{day}")
    taken = statement.replace("pg_advisory_xact_lock", "pg_try_advisory_xact_lock")
    async with await psycopg.AsyncConnection.connect(
        os.environ["TRACECODE_DATABASE_URL"], row_factory=dict_row
    ) as recount:
        await recount.execute("SELECT 1")  # a transaction open, as a dashboard request's is
        await dashboard.save_day(recount, brand, day)
        assert not (await (await auto.execute(taken, params)).fetchone())["ok"]
        batch_no, product_id = await issue_units(client, login, demo, 5)
        await set_line(client, login, product_id, "LATE9")
        late = [scan(app.state.scheme.serial(batch_no, i), at=f"{day}T12:00:00+08:00")
                for i in range(5)]  # fmt: skip
        uploading = asyncio.create_task(upload(client, login, "LATE9", late))
        await asyncio.sleep(0.5)
        assert not uploading.done()  # it waits for the day's recount
        await recount.commit()
        body = await asyncio.wait_for(uploading, 30)
    assert [s["result"] for s in body["scans"]] == ["ok"] * 5
    truth = (await dashboard.count_day(auto, brand, day))["activations"]
    shown = await get(client, admin, "/analytics/dashboard")
    assert shown["activations"]["trend"][-5] == truth >= 5


async def test_verifications_stored_after_their_day_closed_are_counted(
    client: Any, login: Any, app: Any, demo: Any, auto: Any, settings: Any
) -> None:
    """A probe: the worker (the only flusher of the verification records Redis queues) down
    over midnight, the closed day counted meanwhile and kept as final: the records stored
    after it, of that day, never reached the dashboard (late activations were counted)."""
    import json

    import redis

    from tests.helpers import issue_units
    from tests.test_h5_members import flush_records

    await asyncio.to_thread(flush_records, settings)
    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    batch_no, _ = await issue_units(client, login, demo, 3)
    answer = await client.post("/v1/verify", json={"serial": app.state.scheme.serial(batch_no, 0)})
    assert answer.status_code == 200, answer.text
    before = await get(client, admin, "/analytics/dashboard")  # the closed days counted, kept
    day = date.fromisoformat(before["days"][-3])
    queue = f"{settings.redis_namespace}:verif:queue"
    r = redis.Redis.from_url(settings.redis_url)
    try:  # the record waited in the queue since 23:59 that day (Beijing)
        [element] = r.lrange(queue, 0, -1)
        record = json.loads(element) | {"at": f"{day}T23:59:00+08:00"}
        r.lset(queue, 0, json.dumps(record))
    finally:
        r.close()
    await asyncio.to_thread(flush_records, settings)
    truth = (await dashboard.count_day(auto, brand, day))["verifications"]
    after = await get(client, admin, "/analytics/dashboard")
    assert after["verifications"]["trend"][-3] == truth == before["verifications"]["trend"][-3] + 1


async def test_sales_of_a_product_kept_under_the_factory_are_reported_and_filterable(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """A probe: the brand keeps a product of its catalogue under its factory (``org_id`` of
    ``POST /products``, as ``app.catalog.service._owner`` allows) and issues codes for it like
    any other (a product of the brand's tree); 3 units sold at a Zhejiang store. The brand-wide
    product report listed them, but the sales analytics took "the brand's products" to be those
    whose ``org_id`` is the brand itself (``products_of``, ``_PRODUCT_FOUND``, the ``every``
    list of ``_product_rows``): ``?product_id=`` of it answered 404 ``product not found`` on
    all three reports (``?category_id=`` of its category, kept under the factory too,
    ``category not found``), ``?type=`` of its type found nothing, and the agent's product report
    left its units out while the agent's store ranking counted them. 2087 is this test's own
    year."""
    admin, tag = await login("admin"), uuid.uuid4().hex[:6]
    kept = await client.post(
        "/categories", headers=admin, json={"name": f"Factory {tag}", "org_id": demo["FACTORY-SZ"]}
    )
    assert kept.status_code == 201, kept.text
    category = int(kept.json()["id"])
    made = await client.post(
        "/products",
        headers=admin,
        json={
            "name": f"Factory range {tag}",
            "product_no": f"FR-{tag}",
            "product_type": f"fr{tag}",
            "category_id": category,
            "org_id": demo["FACTORY-SZ"],
        },
    )
    assert made.status_code == 201, made.text
    product = int(made.json()["id"])
    batch = await client.post(
        "/batches",
        headers=await login("planner"),
        json={"size": 3, "printer_id": demo["PRINTER-SH"], "product_id": product},
    )
    assert batch.status_code == 201, batch.text  # the brand's product, for issuing codes
    store = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    codes = await stock_units(auto, demo["BRAND-LUMI"], store, product, 3)
    await sell(auto, codes, datetime(2087, 6, 10, 4, tzinfo=UTC))
    await roll_all()
    when = {"from": "2087-06-01", "to": "2087-06-30"}
    brand_wide = await get(client, admin, PRODUCTS, **when)
    assert {p["product_id"]: p["units"] for p in brand_wide["products"]} == {product: 3}
    problems = []
    for user in ("admin", "agent_admin"):
        headers = await login(user)
        for path in (STORES, PRODUCTS, REGIONS):
            for extra in ({"product_id": product}, {"type": f"fr{tag}"}, {"category_id": category}):
                answer = await client.get(path, headers=headers, params={**when, **extra})
                units = answer.json().get("units") if answer.status_code == 200 else None
                if units != 3:
                    problems.append((user, path, extra, answer.status_code, units))
        ranking = await get(client, headers, STORES, **when)
        report = await get(client, headers, PRODUCTS, **when)
        if ranking["units"] != report["units"]:
            problems.append((user, "A1 units != A2 units", ranking["units"], report["units"]))
    assert problems == []


async def test_a_region_group_is_found_through_an_index(demo: Any, app: Any) -> None:
    """An ERP import of agents slowed down as it went: the orgs trigger's group lookup
    (``sales_region_group``, migration 0036: IS NOT DISTINCT FROM on six columns) scanned every
    group of every brand. Migration 0125 gives it an index: with sequential scans off, the
    lookup of a group that exists goes through it (in this transaction's own counts)."""
    import psycopg
    from psycopg.rows import dict_row

    conninfo = app.state.pool.conninfo
    async with await psycopg.AsyncConnection.connect(conninfo, row_factory=dict_row) as c:
        await c.execute("SET enable_seqscan = off")  # a small table is cheaper to scan
        group = await (
            await c.execute(
                "SELECT id, city, province_code, province_name, city_code, city_name, agent_id "
                "FROM sales_region_groups ORDER BY agent_id NULLS LAST, id LIMIT 1"
            )
        ).fetchone()
        assert group is not None  # the demo's organisations have theirs
        found = await (
            await c.execute(
                "SELECT sales_region_group(%s, %s, %s, %s, %s, %s) AS id",
                [
                    group[k]
                    for k in (
                        "city",
                        "province_code",
                        "province_name",
                        "city_code",
                        "city_name",
                        "agent_id",
                    )
                ],
            )
        ).fetchone()
        scans = await (
            await c.execute(
                """SELECT pg_stat_get_xact_numscans(i) AS n,
                          pg_stat_get_xact_tuples_returned(i) AS entries,
                          (SELECT count(*) FROM sales_region_groups WHERE city = %s) AS alike
                   FROM CAST('sales_region_groups_lookup_idx' AS regclass) AS i""",
                (group["city"],),
            )
        ).fetchone()
        await c.rollback()
    assert found["id"] == group["id"]
    # by the whole key: one entry read, not every group of its kind (an index scan on ``city``
    # alone, the old lookup's best with scans off, reads them all)
    assert scans["alike"] >= 2 and (scans["n"], scans["entries"]) == (1, 1), scans
