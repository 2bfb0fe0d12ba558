"""People analytics (A4–A7): the roll-up of members, points ledger rows and verifications into
the summaries exactly once (random streams with concurrent rollers, members changing region and
birthday meanwhile), dead letters, the recount; the endpoints' figures against a count made here,
their filters, scoping (brand staff only for members and verifications, subtrees for
inspections), exports; and rows that came through the real API (claims, verifications).

Each test module makes a brand of its own (through the platform operator's API), so the figures
of other tests never enter its answers."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import os
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from app.analytics.people import Folded, recount, rollup, rollup_alone
from app.members.points import post_entry
from app.members.profile import BANDS, business_today
from tests.helpers import assert_error
from tests.steady import clear_of_midnight
from tests.test_inspect import _close_diversion_alerts, _store, scan  # noqa: F401 (fixture)
from tests.test_inspect import rollup as inspect_rollup

PASSWORD = "people-analytics-1"
PROVINCES = [("浙江省", ["杭州市", "宁波市", ""]), ("广东省", ["广州市", "深圳市"]), ("", [""])]
RESULTS = ["genuine", "genuine", "genuine", "suspicious", "not_genuine", "wrong_pin", "unconfirmed"]
TZ8 = timedelta(hours=8)
_codes = itertools.count(1)


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


async def roll() -> Folded:
    async with await autocommit() as conn:
        folded = await rollup_alone(conn, wait=True)
        assert folded is not None
        return folded


async def staff(client: Any, admin: dict[str, str], org_id: int, roles: list[str]) -> Any:
    username = f"ppl_{uuid.uuid4().hex[:10]}"
    created = await client.post(
        "/users",
        headers=admin,
        json={"org_id": org_id, "username": username, "password": PASSWORD, "roles": roles},
    )
    assert created.status_code == 201, created.text
    token = await client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


class World:
    """A brand of its own: staff, an agent with a store, two categories of products, and what
    was inserted (to count here)."""

    def __init__(self) -> None:
        self.brand = 0
        self.agent = 0
        self.store = 0
        self.admin: dict[str, str] = {}
        self.products: list[int] = []
        self.categories: list[int] = []
        self.category_of: dict[int, int] = {}  # as the products are now
        self.members: dict[int, dict[str, Any]] = {}
        self.claims: list[tuple[int, int, datetime]] = []  # member, product, at
        self.points: dict[int, Counter[str]] = defaultdict(Counter)
        self.verifications: list[tuple[int | None, str, str, str, datetime]] = []


async def org(client: Any, headers: Any, **body: Any) -> int:
    created = await client.post(
        "/orgs", headers=headers, json={"erp_code": f"PPL-{uuid.uuid4().hex[:8]}", **body}
    )
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


@pytest.fixture(scope="module")
async def world(client: Any, login: Any, app: Any) -> World:
    w = World()
    platform = await login("platform")
    w.brand = await org(client, platform, kind="brand", name="People Analytics Brand")
    w.admin = await staff(client, platform, w.brand, ["brand_admin"])
    w.agent = await org(client, w.admin, kind="agent", name="PA agent", parent_id=w.brand)
    w.store = await org(client, w.admin, kind="store", name="PA store", parent_id=w.agent)
    async with app.state.pool.connection() as conn:
        for c in range(2):
            cat = await (
                await conn.execute(
                    "INSERT INTO categories (org_id, name) VALUES (%s, %s) RETURNING id",
                    (w.brand, f"cat {c}"),
                )
            ).fetchone()
            w.categories.append(cat["id"])
            for p in range(2):
                row = await (
                    await conn.execute(
                        """INSERT INTO products (org_id, category_id, name, product_no)
                           VALUES (%s, %s, %s, %s) RETURNING id""",
                        (w.brand, cat["id"], f"product {c}.{p}", f"PA-{c}-{p}"),
                    )
                ).fetchone()
                w.products.append(row["id"])
                w.category_of[row["id"]] = cat["id"]
    # data of its own, so that no test depends on another having run first on its worker
    rng = random.Random(1)
    async with await autocommit() as conn:
        await add_members(conn, w, rng, 10)
        await add_claims(conn, w, rng, 30)
        await add_verifications(conn, w, rng, 40)
    return w


# -- inserting in bulk ---------------------------------------------------------------------------


def _moment(rng: random.Random) -> datetime:
    """A random time of 2023–2025, often near a Shanghai midnight."""
    day = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(1000))
    return day + timedelta(hours=16, minutes=rng.choice([-1, 0, 1, 30]) + rng.randrange(2) * 600)


def _profile(rng: random.Random) -> dict[str, Any]:
    province, cities = rng.choice(PROVINCES)
    city = rng.choice(cities) if province else ""
    birthday = None
    band = None
    if rng.random() < 0.6:
        birthday = date(1950, 1, 1) + timedelta(days=rng.randrange(25_000))
    elif rng.random() < 0.7:
        band = rng.choice(BANDS)[1]
    return {
        "province": province or None,
        "city": city or None,
        "birthday": birthday,
        "age_band": band,
    }


async def add_members(conn: Any, w: World, rng: random.Random, n: int) -> None:
    for _ in range(n):
        p = _profile(rng)
        at = _moment(rng)
        row = await (
            await conn.execute(
                """INSERT INTO members (brand_id, phone, province, city, birthday, age_band,
                                        created_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (
                    w.brand,
                    f"138{rng.randrange(10**8):08d}{len(w.members) % 10}"[:15],
                    p["province"],
                    p["city"],
                    p["birthday"],
                    p["age_band"],
                    at,
                ),
            )
        ).fetchone()
        w.members[row["id"]] = {**p, "created_at": at}


async def change_members(conn: Any, w: World, rng: random.Random, n: int) -> None:
    for member_id in rng.sample(sorted(w.members), min(n, len(w.members))):
        p = _profile(rng)
        await conn.execute(
            "UPDATE members SET province = %s, city = %s, birthday = %s, age_band = %s "
            "WHERE id = %s",
            (p["province"], p["city"], p["birthday"], p["age_band"], member_id),
        )
        w.members[member_id].update(p)


async def add_claims(conn: Any, w: World, rng: random.Random, n: int) -> None:
    """Claims (with their ledger rows) and a few adjustments and expiries, in one statement
    per kind."""
    members = sorted(w.members)
    rows = []
    for _ in range(n):
        member, product = rng.choice(members), rng.choice(w.products)
        rows.append((member, product, rng.randint(1, 50), _moment(rng), next(_codes)))
    await conn.execute(
        """WITH r AS (SELECT * FROM unnest(%(m)s::bigint[], %(p)s::bigint[], %(pts)s::int[],
                                           %(at)s::timestamptz[], %(code)s::bigint[])
                      AS r(member_id, product_id, points, at, code)),
                c AS (INSERT INTO point_claims (code_id, member_id, brand_id, product_id, points,
                                                client_id, event_id, claimed_at)
                      SELECT -(%(base)s + code), member_id, %(brand)s, product_id, points,
                             'pa-' || code, 0, at FROM r
                      RETURNING id, member_id, points, claimed_at),
                b AS (INSERT INTO point_balances AS b (member_id, balance)
                      SELECT member_id, sum(points) FROM c GROUP BY member_id ORDER BY member_id
                      ON CONFLICT (member_id) DO UPDATE SET balance = b.balance + EXCLUDED.balance)
           INSERT INTO points_ledger (member_id, brand_id, kind, points, claim_id, at)
           SELECT member_id, %(brand)s, 'claim', points, id, claimed_at FROM c""",
        {
            "m": [r[0] for r in rows],
            "p": [r[1] for r in rows],
            "pts": [r[2] for r in rows],
            "at": [r[3] for r in rows],
            "code": [r[4] for r in rows],
            "base": os.getpid() * 10**9,
            "brand": w.brand,
        },
    )
    for member, product, points, at, _ in rows:
        w.claims.append((member, product, at))
        w.points[member]["claimed"] += points
    others = [(rng.choice(members), rng.choice(["adjustment", "expiry"])) for _ in range(n // 5)]
    for member, kind in others:
        points = rng.randint(1, 9) * (1 if kind == "adjustment" and rng.random() < 0.5 else -1)
        # through the ledger's own writer: the balance moves with it, never below zero
        posted = await post_entry(
            conn, member_id=member, brand_id=w.brand, kind=kind, points=points, reason="test"
        )
        if posted is None:  # more than the member has: not written
            continue
        w.points[member]["expired" if kind == "expiry" else "adjusted"] += (
            abs(points) if (kind == "expiry") else points
        )


async def move_products(conn: Any, w: World, rng: random.Random, n: int) -> None:
    """``n`` moves of a product to the other category (a product may move there and back)."""
    for _ in range(n):
        product = rng.choice(w.products)
        other = next(c for c in w.categories if c != w.category_of[product])
        await conn.execute("UPDATE products SET category_id = %s WHERE id = %s", (other, product))
        w.category_of[product] = other


async def add_verifications(conn: Any, w: World, rng: random.Random, n: int) -> None:
    rows = []
    for _ in range(n):
        province, cities = rng.choice(PROVINCES)
        city = rng.choice(cities)
        product = rng.choice([*w.products, None])
        rows.append((product, province, city, rng.choice(RESULTS), _moment(rng)))
    w.verifications.extend(rows)
    await conn.execute(
        """INSERT INTO verifications (at, record_key, brand_id, product_id, result, reason,
                                      province, city)
           SELECT at, gen_random_uuid(), %(brand)s, product_id, result, 'test',
                  nullif(province, ''), nullif(city, '')
           FROM unnest(%(p)s::bigint[], %(prov)s::text[], %(city)s::text[], %(res)s::text[],
                       %(at)s::timestamptz[]) AS r(product_id, province, city, result, at)""",
        {
            "brand": w.brand,
            "p": [r[0] for r in rows],
            "prov": [r[1] for r in rows],
            "city": [r[2] for r in rows],
            "res": [r[3] for r in rows],
            "at": [r[4] for r in rows],
        },
    )


def shanghai(at: datetime) -> date:
    return (at.astimezone(UTC) + TZ8).date()


# -- the roll-up ---------------------------------------------------------------------------------


async def test_rollup_equals_recount_after_random_streams_with_concurrent_rollers(
    world: World, auto: Any
) -> None:
    """40 rounds of members, member changes (region, birthday, band), claims, adjustments,
    expiries, verifications and products moved to the other category (some there and back in
    one round), each round its own transaction, while four rollers run at the same time: every
    summary equals the recount, and the queues are empty."""
    rng = random.Random(17)
    stop = asyncio.Event()
    folds: list[Folded] = []

    async def roller() -> None:
        async with await autocommit() as conn:
            while not stop.is_set():
                folded = await rollup_alone(conn, wait=bool(rng.random() < 0.5), limit=97)
                if folded is not None:
                    folds.append(folded)
                await asyncio.sleep(0.01)

    rollers = [asyncio.create_task(roller()) for _ in range(4)]
    try:
        for round_no in range(40):
            async with auto.transaction():
                await add_members(auto, world, rng, 8)
                if round_no % 3 == 2:
                    await change_members(auto, world, rng, 6)
                await add_claims(auto, world, rng, 25)
                await add_verifications(auto, world, rng, 60)
                if round_no % 4 == 1:
                    await move_products(auto, world, rng, 1 + round_no % 3)
            await asyncio.sleep(0)
    finally:
        stop.set()
        await asyncio.gather(*rollers)
    assert any(f.members or f.ledger or f.verifications for f in folds)
    await roll()
    for queue in (
        "analytics_member_queue",
        "analytics_ledger_queue",
        "analytics_verify_queue",
        "analytics_product_queue",
    ):
        row = await (await auto.execute(f"SELECT count(*) AS n FROM {queue}")).fetchone()
        assert row["n"] == 0, queue
    assert await recount(auto) == []


async def test_the_recount_finds_a_changed_cell_and_accounts_for_what_is_queued(
    world: World, auto: Any
) -> None:
    rng = random.Random(5)
    await roll()
    await add_members(auto, world, rng, 3)
    await add_claims(auto, world, rng, 5)
    await change_members(auto, world, rng, 2)
    await add_verifications(auto, world, rng, 7)
    assert await recount(auto) == []  # queued, not folded yet: still equal
    await roll()
    await auto.execute(
        "UPDATE analytics_member_regions SET members = members + 1 WHERE brand_id = %s "
        "AND level = 0 AND day = (SELECT min(day) FROM analytics_member_regions "
        "WHERE brand_id = %s AND level = 0)",
        (world.brand, world.brand),
    )
    found = await recount(auto)
    assert [m.table for m in found] == ["analytics_member_regions"]
    await auto.execute(
        "UPDATE analytics_member_regions SET members = members - 1 WHERE brand_id = %s "
        "AND level = 0 AND day = (SELECT min(day) FROM analytics_member_regions "
        "WHERE brand_id = %s AND level = 0)",
        (world.brand, world.brand),
    )
    assert await recount(auto) == []
    # the birthdays' months, which GET /analytics/points/ages reads, were never recounted
    # (probe O)
    bump = (
        "UPDATE analytics_points_ages_m SET balance = balance + %s WHERE brand_id = %s "
        "AND month = (SELECT min(month) FROM analytics_points_ages_m WHERE brand_id = %s)"
    )
    await auto.execute(bump, (1000, world.brand, world.brand))
    assert [m.table for m in await recount(auto)] == ["analytics_points_ages_m"]
    await auto.execute(bump, (-1000, world.brand, world.brand))
    assert await recount(auto) == []


async def test_a_queue_row_that_cannot_be_folded_is_dead_lettered_and_the_rest_folded(
    world: World, auto: Any
) -> None:
    rng = random.Random(9)
    await roll()
    await auto.execute("INSERT INTO analytics_ledger_queue (ledger_id) VALUES (-17)")
    await add_claims(auto, world, rng, 10)
    folded = await roll()
    assert folded.ledger >= 10
    dead = await (
        await auto.execute(
            "DELETE FROM dead_letters WHERE queue = 'analytics_ledger_queue' "
            "AND payload = convert_to('{\"ledger_id\":-17}', 'UTF8') RETURNING reason"
        )
    ).fetchall()
    assert len(dead) == 1 and "do not exist" in dead[0]["reason"]
    assert await recount(auto) == []


# -- the endpoints -------------------------------------------------------------------------------


async def get(client: Any, headers: Any, path: str, **params: Any) -> Any:
    response = await client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_member_regions_equal_a_count_of_the_members(client: Any, world: World) -> None:
    await roll()
    members = world.members.values()
    by_province = Counter(m["province"] for m in members)
    out = await get(client, world.admin, "/analytics/members/regions")
    assert out["members"] == len(world.members)
    assert {r["province"]: r["members"] for r in out["regions"]} == by_province
    assert out["regions"][0]["members"] == max(by_province.values())
    months = Counter(f"{shanghai(m['created_at']):%Y-%m}" for m in members)
    assert {t["period"]: t["members"] for t in out["trend"]} == months

    start, end = date(2023, 6, 1), date(2024, 2, 10)
    inside = [m for m in members if start <= shanghai(m["created_at"]) <= end]
    zj = [m for m in inside if m["province"] == "浙江省"]
    out = await get(
        client,
        world.admin,
        "/analytics/members/regions",
        province="Zhejiang",
        granularity="day",
        **{"from": start.isoformat(), "to": end.isoformat()},
    )
    assert out["province"] == "浙江省" and out["members"] == len(zj)
    assert {r["city"]: r["members"] for r in out["regions"]} == Counter(m["city"] for m in zj)
    days = Counter(f"{shanghai(m['created_at']):%Y-%m-%d}" for m in zj)
    assert {t["period"]: t["members"] for t in out["trend"]} == days


def _band(m: dict[str, Any], today: date) -> str | None:
    if m["birthday"] is None:
        return m["age_band"]
    born = m["birthday"]
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return [band for lowest, band in BANDS if age >= lowest][-1]


async def test_points_by_age_band_equal_the_ledger(client: Any, world: World) -> None:
    await roll()
    today = business_today()
    expected: dict[str | None, Counter[str]] = defaultdict(Counter)
    for member_id, m in world.members.items():
        cell = expected[_band(m, today)]
        cell["members"] += 1
        for k, v in world.points[member_id].items():
            cell[k] += v
    out = await get(client, world.admin, "/analytics/points/ages")
    got = {b["age_band"]: b for b in out["bands"]}
    assert set(got) == set(expected)
    for band, cell in expected.items():
        balance = cell["claimed"] - cell["expired"] + cell["adjusted"]
        assert got[band]["members"] == cell["members"]
        assert got[band]["claimed"] == cell["claimed"]
        assert got[band]["expired"] == cell["expired"]
        assert got[band]["adjusted"] == cell["adjusted"]
        assert got[band]["balance"] == balance
    order = [b["age_band"] for b in out["bands"]]
    assert order == sorted(order, key=lambda b: [x for _, x in BANDS].index(b) if b else 99)


def _cycle(claims: list[tuple[int, int, datetime]], key: Any) -> dict[Any, dict[str, Any]]:
    """Per subject: members, purchases, span, since-last buckets, as the endpoint answers."""
    today = business_today()
    pairs: dict[tuple[Any, int], list[date]] = defaultdict(list)
    for member, product, at in claims:
        pairs[(key(product), member)].append(shanghai(at))
    out: dict[Any, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for (subject, _), days in pairs.items():
        row = out[subject]
        row["members"] += 1
        row["purchases"] += len(days)
        row["span"] += (max(days) - min(days)).days
        since = (today - max(days)).days
        bucket = (
            next(
                b
                for limit, b in ((30, "d0_30"), (90, "d31_90"), (180, "d91_180"), (365, "d181_365"))
                if since <= limit
            )
            if since <= 365
            else "over_365"
        )
        row[bucket] += 1
        row["once"] += len(days) == 1
    return out


async def test_purchase_cycle_by_product_and_category(client: Any, world: World) -> None:
    await roll()
    out = await get(client, world.admin, "/analytics/members/cycle")
    expected = _cycle(world.claims, lambda p: p)
    assert {r["subject_id"] for r in out["items"]} == set(expected)
    for r in out["items"]:
        e = expected[r["subject_id"]]
        assert (r["members"], r["purchases"]) == (e["members"], e["purchases"])
        assert r["frequency"] == round(e["purchases"] / e["members"], 3)
        gaps = e["purchases"] - e["members"]
        assert r["avg_interval_days"] == (round(e["span"] / gaps, 1) if gaps else None)
        assert r["since_last"] == {
            k: e[k] for k in ("d0_30", "d31_90", "d91_180", "d181_365", "over_365")
        }
        assert r["purchases_per_member"]["once"] == e["once"]
        assert r["name"].startswith("product ")
    everything = _cycle(world.claims, lambda p: 0)[0]
    assert out["total"]["members"] == everything["members"]
    assert out["total"]["purchases"] == everything["purchases"]

    by_cat = await get(client, world.admin, "/analytics/members/cycle", by="category")
    expected = _cycle(world.claims, lambda p: world.category_of[p])
    assert {r["subject_id"]: r["members"] for r in by_cat["items"]} == {
        k: v["members"] for k, v in expected.items()
    }
    # the members whose last purchase of the category's products was in 2024
    category = world.category_of[world.products[0]]
    last: dict[tuple[int, int], date] = {}
    for member, product, at in world.claims:
        if world.category_of[product] == category:
            last[(product, member)] = max(last.get((product, member), date.min), shanghai(at))
    in_2024 = Counter(p for (p, _), d in last.items() if d.year == 2024)
    span = {"from": "2024-01-01", "to": "2024-12-31"}
    out = await get(client, world.admin, "/analytics/members/cycle", category_id=category, **span)
    assert out["total"] is None
    assert {r["subject_id"]: r["members"] for r in out["items"]} == in_2024


async def test_verifications_by_day_region_product_and_category(client: Any, world: World) -> None:
    await roll()
    start, end = date(2024, 1, 1), date(2024, 12, 30)
    inside = [v for v in world.verifications if start <= shanghai(v[4]) <= end]
    span = {"from": start.isoformat(), "to": end.isoformat()}
    out = await get(client, world.admin, "/analytics/verifications", granularity="month", **span)
    assert out["totals"]["total"] == len(inside)
    assert out["totals"]["counterfeit"] == sum(v[3] == "not_genuine" for v in inside)
    assert {p["period"]: p["total"] for p in out["periods"]} == Counter(
        f"{shanghai(v[4]):%Y-%m}" for v in inside
    )
    assert {r["province"]: r["suspicious"] for r in out["regions"]} == {
        p or None: sum(v[1] == p and v[3] == "suspicious" for v in inside)
        for p in {v[1] for v in inside}
    }
    gd = await get(client, world.admin, "/analytics/verifications", province="广东省", **span)
    assert {(r["province"], r["city"]): r["total"] for r in gd["regions"]} == Counter(
        ("广东省", v[2] or None) for v in inside if v[1] == "广东省"
    )
    assert {p["period"]: p["genuine"] for p in gd["periods"]} == Counter(
        f"{shanghai(v[4]):%Y-%m-%d}" for v in inside if v[1] == "广东省" and v[3] == "genuine"
    ) | {p["period"]: 0 for p in gd["periods"] if p["genuine"] == 0}
    product = world.products[1]
    one = await get(client, world.admin, "/analytics/verifications", product_id=product, **span)
    assert one["product_ids"] == [product]
    assert one["totals"]["total"] == sum(v[0] == product for v in inside)
    category = world.category_of[product]
    cat = await get(client, world.admin, "/analytics/verifications", category_id=category, **span)
    assert cat["totals"]["total"] == sum(
        v[0] is not None and world.category_of[v[0]] == category for v in inside
    )
    bad = await client.get(
        "/analytics/verifications",
        headers=world.admin,
        params={"from": "2023-01-01", "to": "2024-12-31"},
    )
    assert_error(bad, 400, "bad_period")


async def test_a4_a7_take_a_province_as_a1_does_and_refuse_an_unknown_one(
    client: Any, world: World, login: Any
) -> None:
    """A probe: A4 and A7 verifications read ``province=330000`` as a name no record has (200,
    nothing, the code echoed), and every report answered ``province=Atlantis`` with zeros, as
    if it had none, where ``GET /members`` says 400. A province is its name, full, short or in
    English, or its 6-digit code; an unknown one is 400 ``validation_failed`` on ``province``."""
    await roll()
    zj = [m for m in world.members.values() if m["province"] == "浙江省"]
    inside = [v for v in world.verifications if date(2024, 1, 1) <= shanghai(v[4])]
    inside = [v for v in inside if shanghai(v[4]) <= date(2024, 12, 30) and v[1] == "浙江省"]
    admin = await login("admin")
    for path, headers, span in (
        ("/analytics/members/regions", world.admin, {}),
        ("/analytics/verifications", world.admin, {"from": "2024-01-01", "to": "2024-12-30"}),
        ("/analytics/inspections", admin, {}),
    ):
        named = await get(client, headers, path, province="浙江省", **span)
        assert named["province"] == "浙江省"
        for spelt in ("330000", " 330000 ", "浙江", "ZheJiang"):
            assert await get(client, headers, path, province=spelt, **span) == named, spelt
        for unknown in ("Atlantis", "330100", "990000", "33", "３３００００"):
            answer = await client.get(path, headers=headers, params={"province": unknown})
            error = assert_error(answer, 400, "validation_failed")
            assert [d["field"] for d in error["details"]] == ["province"], unknown
    regions = await get(client, world.admin, "/analytics/members/regions", province="330000")
    assert regions["members"] == len(zj)
    verified = await get(client, world.admin, "/analytics/verifications", province="330000",
                         **{"from": "2024-01-01", "to": "2024-12-30"})  # fmt: skip
    assert verified["totals"]["total"] == len(inside)


async def test_a7_from_alone_in_the_future_is_its_own_day_as_in_a1(
    client: Any, world: World, login: Any
) -> None:
    """A probe: ``/analytics/verifications`` and ``/analytics/inspections`` answered a ``from``
    after today, ``to`` not given, 400 ``bad_period`` "from is after to" (``to`` defaulted to
    today); A1 reads it as that one day. ``to`` defaults to today, or to ``from`` if later."""
    later = business_today() + timedelta(days=10)
    for path, headers in (
        ("/analytics/verifications", world.admin),
        ("/analytics/inspections", await login("admin")),
    ):
        out = await get(client, headers, path, **{"from": later.isoformat()})
        assert (out["from_date"], out["to_date"]) == (later.isoformat(), later.isoformat())
        assert out["totals"]["total" if "total" in out["totals"] else "inspections"] == 0
        past = (business_today() - timedelta(days=5)).isoformat()
        out = await get(client, headers, path, **{"from": past})
        assert out["to_date"] == business_today().isoformat()


async def test_scoping_brand_staff_subtrees_and_other_brands(
    client: Any, world: World, login: Any
) -> None:
    await roll()
    agent_admin = await staff(client, world.admin, world.agent, ["org_admin"])
    for path in (
        "/analytics/members/regions",
        "/analytics/members/cycle",
        "/analytics/points/ages",
        "/analytics/verifications",
    ):
        assert_error(await client.get(path, headers=agent_admin), 403, "brand_staff_only")
        service = await staff(client, world.admin, world.brand, ["member_service"])
        assert_error(await client.get(path, headers=service), 403)
        assert (await client.get(path)).status_code == 401
    analyst = await staff(client, world.admin, world.brand, ["analyst"])
    assert (await get(client, analyst, "/analytics/points/ages"))["members"] == len(world.members)
    # the demo brand's admin sees its own brand's members, never these
    demo = await get(client, await login("admin"), "/analytics/members/regions")
    assert demo["members"] != len(world.members) or not world.members
    # inspections: the subtree (no inspections at this brand's stores)
    out = await get(client, agent_admin, "/analytics/inspections")
    assert out["totals"]["inspections"] == 0 and out["stores"] == []


async def test_a7_verifications_of_another_brands_product_or_category_are_404(
    client: Any, world: World, login: Any
) -> None:
    """A probe: ``GET /analytics/verifications?product_id=`` (or ``category_id=``) naming a
    product or category of another brand, or none at all, answered 200 with all-zero counts and
    ``product_ids: []``, as if the product existed and had never been verified, while the sales
    reports (A1–A3) answer 404 for it. Now the same check (``products_of``): 404 ``not_found``."""
    path = "/analytics/verifications"
    product = world.products[0]
    other = await login("admin")  # the demo brand's: this brand's ids are not its own
    for params in ({"product_id": product}, {"category_id": world.category_of[product]}):
        assert_error(await client.get(path, headers=other, params=params), 404, "not_found")
        assert (await client.get(path, headers=world.admin, params=params)).status_code == 200
    for params in ({"product_id": 987654321}, {"category_id": 987654321}):
        assert_error(await client.get(path, headers=world.admin, params=params), 404, "not_found")


async def test_a5_purchase_cycle_of_another_brands_product_or_category_is_404(
    client: Any, world: World, login: Any
) -> None:
    """A probe: ``GET /analytics/members/cycle?product_id=`` / ``?by=category&category_id=``
    naming a product or category of another brand, or an id that exists nowhere, answered 200
    with no rows and ``total: null`` instead of 404, unlike the sales reports (A1–A3). Now the
    same check (``products_of``): 404 ``not_found``."""
    path = "/analytics/members/cycle"
    product = world.products[0]
    category = world.category_of[product]
    other = await login("admin")  # the demo brand's: this brand's ids are not its own
    for params in (
        {"product_id": product},
        {"category_id": category},
        {"by": "category", "category_id": category},
    ):
        assert_error(await client.get(path, headers=other, params=params), 404, "not_found")
        assert (await client.get(path, headers=world.admin, params=params)).status_code == 200
    for params in ({"product_id": 987654321}, {"by": "category", "category_id": 987654321}):
        assert_error(await client.get(path, headers=world.admin, params=params), 404, "not_found")


async def test_inspection_statistics_come_from_the_inspection_summary(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """The demo brand's inspection summary (whatever other tests inspected), read as the
    analytics endpoint groups it: by day, by the stores' province, by store."""
    from app.inspect.summaries import rollup as inspect_rollup

    await inspect_rollup(auto)
    today = business_today()
    rows = await (
        await auto.execute(
            """SELECT m.day, s.province_name, m.store_org_id, m.result, m.units
               FROM inspection_summary m JOIN orgs s ON s.id = m.store_org_id
               WHERE m.brand_id = %s AND m.day BETWEEN %s AND %s""",
            (demo["BRAND-LUMI"], today - timedelta(days=29), today),
        )
    ).fetchall()
    out = await get(client, await login("admin"), "/analytics/inspections")
    assert out["totals"]["inspections"] == sum(r["units"] for r in rows)
    assert out["totals"]["diverted"] == sum(r["units"] for r in rows if r["result"] == "diverted")
    by_store = Counter()
    for r in rows:
        by_store[r["store_org_id"]] += r["units"]
    assert {s["store_id"]: s["inspections"] for s in out["stores"]} == dict(by_store)


async def test_a7_stores_are_paged_and_their_file_lists_every_store(
    client: Any, login: Any, app: Any, demo: Any, monkeypatch: Any
) -> None:
    """A probe: ``GET /analytics/inspections`` listed at most the 100 most inspected stores
    (``STORES_LISTED``) and its ``table=stores`` file was cut to the same 100, neither saying
    so. Every list is paged: the stores are a page (``page``, ``per_page`` ≤ 200, default
    ``STORES_LISTED``) with ``stores_total``; the file lists every store. Stores of an agent of
    this test's own (through the API), inspected 3, 2 and 1 times, the page size lowered to 2."""
    from app.analytics import people_stats
    from tests.points_support import shipped_goods

    admin, inspector = await login("admin"), await login("inspector")
    agent = await _store_parent(client, admin, demo["BRAND-LUMI"])
    stores = [await _store(client, admin, agent) for _ in range(3)]
    goods = await shipped_goods(client, login, app, demo)
    units = iter(goods["units"][20:26])  # never shipped: unknown route
    for store, n in zip(stores, (3, 2, 1), strict=True):
        for _ in range(n):
            assert (await scan(client, inspector, next(units), store)).status_code == 201
    await inspect_rollup(app)
    reader = await staff(client, admin, agent, ["org_admin"])
    monkeypatch.setattr(people_stats, "STORES_LISTED", 2)

    async def listed(**params: Any) -> tuple[list[int], dict[str, Any]]:
        out = await get(client, reader, "/analytics/inspections", **params)
        return [s["store_id"] for s in out["stores"]], out

    ids, out = await listed()
    assert ids == stores[:2], out
    assert (out["stores_page"], out["stores_per_page"], out["stores_total"]) == (1, 2, 3)
    assert out["totals"]["inspections"] == 6
    assert (await listed(page=2))[0] == stores[2:]
    assert (await listed(page=3, per_page=1))[0] == stores[2:]
    ids, out = await listed(page=4, per_page=1)
    assert (ids, out["stores_total"]) == ([], 3)
    for fmt in ("csv", "xlsx"):
        params = {"format": fmt, "table": "stores", "per_page": 1}
        file = await client.get("/analytics/inspections", headers=reader, params=params)
        assert file.status_code == 200, file.text
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(file.content.decode("utf-8-sig"))))
            assert [int(r["store_id"]) for r in rows] == stores
            assert [int(r["inspections"]) for r in rows] == [3, 2, 1]
    for bad in ({"per_page": 0}, {"per_page": 201}, {"page": 0}):
        assert_error(await client.get("/analytics/inspections", headers=reader, params=bad), 400)


async def _store_parent(client: Any, admin: dict[str, str], brand: int) -> int:
    """An agent of the brand with no store but the test's own."""
    return await org(client, admin, kind="agent", name=f"A7 agent {uuid.uuid4().hex[:6]}",
                     parent_id=brand)  # fmt: skip


async def test_exports_csv_and_xlsx(client: Any, world: World) -> None:
    await roll()
    response = await client.get(
        "/analytics/members/regions", headers=world.admin, params={"format": "csv"}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert sum(int(r["members"]) for r in rows) == len(world.members)
    response = await client.get(
        "/analytics/members/cycle", headers=world.admin, params={"format": "csv"}
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert {"subject_id", "since_last_d0_30", "purchases_per_member_once"} <= set(rows[0])
    response = await client.get(
        "/analytics/verifications",
        headers=world.admin,
        params={"format": "xlsx", "table": "regions", "from": "2024-01-01", "to": "2024-12-30"},
    )
    assert response.status_code == 200 and response.content[:2] == b"PK"
    response = await client.get(
        "/analytics/points/ages", headers=world.admin, params={"format": "csv"}
    )
    assert response.status_code == 200 and b"age_band" in response.content


def _xlsx_header(content: bytes) -> list[str]:
    """The first row of an XLSX file's first sheet (inline or shared strings)."""
    from tests.test_center import _sheet_cells

    cells = _sheet_cells(content)
    row = sorted(
        (k for k in cells if k[-1:] == "1" and k[:-1].isalpha()), key=lambda k: (len(k), k)
    )
    return [cells[k] for k in row]


async def test_a4_a7_files_of_an_empty_period_keep_their_columns(client: Any, login: Any) -> None:
    """A probe: a brand analyst exports ``GET /analytics/verifications?format=csv`` (and the
    members', inspections' files) for a period with nothing in it — next week's, a quiet region
    — to feed a spreadsheet or an ETL job. The sales files keep their header row whatever the
    period holds; these answered a one-column file whose only header was the list's name
    (``periods``, ``regions``, ``stores``, ``items``), so the file's columns changed with the
    data (``people_stats.table_of``: ``if not items: return [table], []``). Now the columns are
    the list's fields, in CSV and XLSX alike."""
    admin = await login("admin")
    quiet = {"from": "2099-01-01", "to": "2099-01-02"}
    cases = (
        ("/analytics/verifications", {"table": "periods"}, "total"),
        ("/analytics/verifications", {"table": "regions"}, "province"),
        ("/analytics/inspections", {"table": "stores"}, "store_id"),
        ("/analytics/members/regions", {"table": "regions"}, "members"),
        ("/analytics/members/cycle", {}, "purchases"),
    )
    headers = {}
    for path, extra, column in cases:
        for fmt in ("csv", "xlsx"):
            answer = await client.get(path, headers=admin, params={**quiet, **extra, "format": fmt})
            assert answer.status_code == 200, answer.text
            if fmt == "csv":
                lines = answer.content.decode("utf-8-sig").splitlines()
                assert len(lines) == 1, lines  # the header alone
                first = lines[0].split(",")
            else:
                first = _xlsx_header(answer.content)
            headers[f"{path} {extra} {fmt}"] = (column in first and len(first) > 1, first)
    assert all(ok for ok, _ in headers.values()), headers


# -- through the API -----------------------------------------------------------------------------


async def test_verifications_and_claims_through_the_api_are_counted(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """Units verified by consumers (flushed by the verify flusher) and claimed by a member
    appear in the demo brand's statistics of today."""
    import redis as redis_sync

    from app.verify import records
    from tests.points_support import claim_body, member_client, new_member, set_rule, shipped_goods

    admin = await login("admin")
    await clear_of_midnight()  # today's figures: the day must not turn during the test
    today = business_today().isoformat()
    await roll()
    before = await get(client, admin, "/analytics/verifications", **{"from": today, "to": today})
    goods = await shipped_goods(client, login, app, demo)
    product = goods["product_id"]
    await set_rule(client, admin, product, 7)
    cycle_before = await get(client, admin, "/analytics/members/cycle", product_id=product)
    scheme = app.state.scheme
    serials = goods["units"][:3]
    _, headers, _ = await new_member(app, demo["BRAND-LUMI"])
    async with member_client(app) as mc:
        for serial in serials:
            answer = await mc.post("/v1/verify", json={"serial": serial, "pin": scheme.pin(serial)})
            assert answer.status_code == 200, answer.text
            claimed = await mc.post(
                "/members/me/claims", headers=headers, json=claim_body(scheme, serial)
            )
            assert claimed.status_code in (200, 201), claimed.text
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)
    with psycopg.connect(settings.database_url, autocommit=True) as pg:
        while records.flush(sync_redis, pg, settings.redis_namespace):
            pass
    await roll()
    after = await get(client, admin, "/analytics/verifications", **{"from": today, "to": today})
    assert after["totals"]["total"] - before["totals"]["total"] >= 6  # 3 verifies + 3 claims
    cycle = await get(client, admin, "/analytics/members/cycle", product_id=product)
    members_before = cycle_before["items"][0]["members"] if cycle_before["items"] else 0
    assert cycle["items"][0]["members"] == members_before + 1
    assert cycle["items"][0]["since_last"]["d0_30"] >= 1
    async with await autocommit() as conn:
        assert await recount(conn) == []


async def test_a_claim_sent_again_is_one_verification_of_a7_and_the_dashboard(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """A probe: a store clerk's rebate claim sent three times under one ``client_id`` (the till
    lost the answer and retried) is checked, not counted as a new query of the code — its
    retries are recorded ``claim_retry`` — yet A7 and the dashboard's verifications of today
    grew by 3. They grow by the one claim; the recount agrees, and ``GET /verifications`` still
    lists the retries, each with its reason."""
    import redis as redis_sync

    from app.verify import records
    from tests.points_support import member_client
    from tests.rebates_support import rebate_body, set_rebate, store_goods

    admin, clerk = await login("admin"), await login("store_clerk")
    await clear_of_midnight()  # today's figures: the day must not turn during the test
    today = business_today().isoformat()
    goods = await store_goods(client, login, app, demo)
    await set_rebate(client, admin, goods["product_id"], 3)
    sync_redis = redis_sync.Redis.from_url(settings.redis_url)

    async def flushed_figures() -> tuple[int, int]:
        with psycopg.connect(settings.database_url, autocommit=True) as pg:
            while records.flush(sync_redis, pg, settings.redis_namespace):
                pass
        await roll()
        a7 = await get(client, admin, "/analytics/verifications", **{"from": today, "to": today})
        board = await get(client, admin, "/analytics/dashboard")
        return a7["totals"]["total"], board["verifications"]["today"]

    before = await flushed_figures()
    serial = goods["units"][0]
    body = rebate_body(app.state.scheme, serial)
    async with member_client(app) as mc:  # the claim, then the till's two retries of it
        sent = [await mc.post("/rebates/claims", headers=clerk, json=body) for _ in range(3)]
    assert [r.status_code for r in sent] == [201, 200, 200]
    after = await flushed_figures()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    async with await autocommit() as conn:
        assert await recount(conn) == []
    listed = await get(client, admin, "/verifications", serial=serial, **{"from": today})
    reasons = sorted(r["reason"] for r in listed["items"])
    assert reasons == ["claim_retry", "claim_retry", "first_query"]


async def test_rollup_without_the_lock_folds_nothing_twice(world: World, auto: Any) -> None:
    """Verification counts fold additively: two plain ``rollup`` calls racing on them consume
    each queue row once."""
    rng = random.Random(3)
    await roll()
    await add_verifications(auto, world, rng, 500)
    async with await autocommit() as a, await autocommit() as b:
        await asyncio.gather(rollup_alone(a, wait=True, limit=7), rollup(b, limit=11))
    assert await recount(auto) == []


async def test_a_rollup_folds_verifications_on_a_second_connection_meanwhile(
    world: World, auto: Any
) -> None:
    """``other``: verifications fold on a second connection while members and points fold on
    the first; each queue row once, the summaries equal the recount."""
    rng = random.Random(23)
    await roll()
    await add_members(auto, world, rng, 20)
    await add_claims(auto, world, rng, 60)
    await add_verifications(auto, world, rng, 300)
    async with await autocommit() as a, await autocommit() as b:
        folded = await rollup_alone(a, wait=True, limit=53, other=b)
    assert folded is not None
    assert folded.members >= 20 and folded.ledger >= 60 and folded.verifications > 0
    for queue in (
        "analytics_member_queue",
        "analytics_ledger_queue",
        "analytics_verify_queue",
        "analytics_product_queue",
    ):
        row = await (await auto.execute(f"SELECT count(*) AS n FROM {queue}")).fetchone()
        assert row["n"] == 0, queue
    assert await recount(auto) == []


async def test_periods_cut_anywhere_equal_a_count(client: Any, world: World) -> None:
    """Whole months are read from the month summaries and the rest day by day: periods that
    start and end anywhere (inside a month, on its first or last day) answer the same figures as
    a count of the members and verifications themselves."""
    await roll()
    rng = random.Random(41)
    days = [shanghai(v[4]) for v in world.verifications]
    low, high = min(days), max(days)
    for _ in range(12):
        a = low + timedelta(days=rng.randrange((high - low).days + 1))
        b = a + timedelta(days=rng.choice([0, 1, 27, 30, 31, 45, 62, 200, 365]))
        if rng.random() < 0.3:
            a = a.replace(day=1)
        span = {"from": a.isoformat(), "to": b.isoformat()}
        inside = [v for v in world.verifications if a <= shanghai(v[4]) <= b]
        out = await get(
            client, world.admin, "/analytics/verifications", granularity="month", **span
        )
        assert out["totals"]["total"] == len(inside), span
        assert sum(r["total"] for r in out["regions"]) == len(inside), span
        by_product = Counter(v[0] for v in inside if v[0] is not None)
        product = world.products[rng.randrange(len(world.products))]
        one = await get(client, world.admin, "/analytics/verifications", product_id=product, **span)
        assert one["totals"]["total"] == by_product[product], span
        assert sum(r["total"] for r in one["regions"]) == by_product[product], span
        members = [m for m in world.members.values() if a <= shanghai(m["created_at"]) <= b]
        regions = await get(client, world.admin, "/analytics/members/regions", **span)
        assert regions["members"] == len(members), span
        assert {r["province"]: r["members"] for r in regions["regions"]} == Counter(
            m["province"] or None for m in members
        ), span


async def test_a_product_moved_to_another_category_takes_its_verifications_along(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """A probe: A7 by ``category_id`` is documented as "the products of one category of the brand"
    (and A2 sales by category follow a product to its new category). After a product is moved
    from category A to category B, the verifications of "category B's products" over a period
    equal those of the product itself, A shows none of them, and ``tracecode analytics
    recount`` finds nothing to report. Cells kept per category stayed with the old one."""
    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    tag = uuid.uuid4().hex[:8]
    cats = []
    for n in range(2):
        made = await client.post("/categories", headers=admin, json={"name": f"probe {tag} {n}"})
        assert made.status_code == 201, made.text
        cats.append(made.json()["id"])
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": f"probe {tag}", "product_no": f"PRB-{tag}", "category_id": cats[0]},
    )
    assert made.status_code == 201, made.text
    product = made.json()["id"]
    await auto.execute(
        """INSERT INTO verifications (at, record_key, brand_id, product_id, result, reason,
                                      province, city)
           SELECT '2093-03-10T04:00:00Z', gen_random_uuid(), %s, %s, 'genuine', 'test',
                  '浙江省', '杭州市'
           FROM generate_series(1, 3)""",
        (brand, product),
    )
    await roll()
    moved = await client.patch(f"/products/{product}", headers=admin, json={"category_id": cats[1]})
    assert moved.status_code == 200, moved.text
    await roll()
    span = {"from": "2093-03-01", "to": "2093-03-31"}
    by_product = await get(client, admin, "/analytics/verifications", product_id=product, **span)
    assert by_product["totals"]["total"] == 3
    new_cat = await get(client, admin, "/analytics/verifications", category_id=cats[1], **span)
    old_cat = await get(client, admin, "/analytics/verifications", category_id=cats[0], **span)
    drift = [m for m in await recount(auto) if m.table.startswith("analytics_verifications")]
    assert (new_cat["totals"]["total"], old_cat["totals"]["total"], drift) == (3, 0, []), (
        f"category B {new_cat['totals']['total']}, category A {old_cat['totals']['total']}, "
        f"recount {drift[:3]}"
    )


async def claim_one(conn: Any, brand: int, member: int, product: int, at: str) -> None:
    """A member's points claim of a (made-up) unit of ``product`` at ``at``, with its ledger row
    and balance, as ``add_claims`` writes them (codes of their own: 7 × 10⁸ above its)."""
    code = -(os.getpid() * 10**9 + 7 * 10**8 + next(_codes))
    await conn.execute(
        """WITH c AS (INSERT INTO point_claims (code_id, member_id, brand_id, product_id, points,
                                               client_id, event_id, claimed_at)
                      VALUES (%(code)s, %(m)s, %(b)s, %(p)s, 5, 'one-' || %(code)s, 0, %(at)s)
                      RETURNING id, member_id, points, claimed_at),
                b AS (INSERT INTO point_balances AS b (member_id, balance)
                      SELECT member_id, points FROM c
                      ON CONFLICT (member_id) DO UPDATE SET balance = b.balance + EXCLUDED.balance)
           INSERT INTO points_ledger (member_id, brand_id, kind, points, claim_id, at)
           SELECT member_id, %(b)s, 'claim', points, id, claimed_at FROM c""",
        {"code": code, "m": member, "b": brand, "p": product, "at": at},
    )


async def test_a5_purchases_follow_a_product_moved_to_another_category(
    client: Any, login: Any, app: Any, demo: Any, auto: Any
) -> None:
    """A probe: ``GET /analytics/members/cycle?by=category`` kept a purchase under the category
    its product had when the claim was folded (a member's state per category was folded from
    each claim), so after ``PATCH /products/{id}`` moved the product to another category, its
    past purchases stayed under the old one and ``tracecode analytics recount`` (which counts
    by the product's category now) reported them for ever; A2 sales and A7 verifications follow
    a product to its new category. Now a member's categories are derived from its products,
    again for every member of a moved product: a member who bought X and Y of category A is one
    member with two purchases of A; X moved to B, A keeps Y's purchase, and B holds X's, of the
    members who bought X before the move too (without buying again), and the recount agrees —
    while the move is still queued as well."""
    from tests.points_support import new_member

    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    await roll()  # earlier rows out of the way
    tag = uuid.uuid4().hex[:8]
    cats = []
    for n in range(2):
        made = await client.post("/categories", headers=admin, json={"name": f"cyc {tag} {n}"})
        assert made.status_code == 201, made.text
        cats.append(made.json()["id"])
    products = []
    for n in range(2):
        made = await client.post(
            "/products",
            headers=admin,
            json={"name": f"cyc {tag} {n}", "product_no": f"CYC-{tag}-{n}", "category_id": cats[0]},
        )
        assert made.status_code == 201, made.text
        products.append(made.json()["id"])
    moved_product, kept_product = products
    buyer, earlier = (await new_member(app, brand))[0], (await new_member(app, brand))[0]
    await claim_one(auto, brand, buyer, moved_product, "2093-03-10T04:00:00Z")
    await claim_one(auto, brand, buyer, kept_product, "2093-03-20T04:00:00Z")
    await claim_one(auto, brand, earlier, moved_product, "2093-03-15T04:00:00Z")
    await roll()

    span = {"from": "2093-01-01", "to": "2093-12-31", "by": "category"}
    path = "/analytics/members/cycle"

    async def shown(category: int) -> list[tuple[int, int]]:
        out = await get(client, admin, path, category_id=category, **span)
        return [(i["members"], i["purchases"]) for i in out["items"]]

    async def drift() -> list[Any]:
        return [m for m in await recount(auto) if m.table.startswith("analytics_cycle")]

    assert (await shown(cats[0]), await shown(cats[1])) == ([(2, 3)], [])
    moved = await client.patch(
        f"/products/{moved_product}", headers=admin, json={"category_id": cats[1]}
    )
    assert moved.status_code == 200, moved.text
    assert await drift() == []  # the move queued: counted as before until it is folded
    await claim_one(auto, brand, buyer, moved_product, "2093-04-10T04:00:00Z")
    await roll()

    found = (await shown(cats[1]), await shown(cats[0]), await drift())
    assert found == ([(2, 3)], [(1, 1)], []), (
        f"category B {found[0]}, category A {found[1]}, recount {found[2][:4]}"
    )


async def test_a_ledger_row_naming_another_brand_is_folded_for_its_member(
    app: Any, demo: Any, auto: Any
) -> None:
    """A probe: two ledger rows of one member under two brand ids (one row of a brand that is
    not its member's, put in by SQL) in one batch: the fold's upsert of the member's facts
    affected the member's row twice, PostgreSQL raised CardinalityViolation — a
    ProgrammingError, which ``app.deadletters.is_poison`` took for a bug of ours, so the batch
    was retried as it was, for ever: the people roll-up stopped for every brand. Now a ledger
    row is folded under its member's brand, as ``recount`` counts it."""
    from tests.points_support import new_member

    brand = demo["BRAND-LUMI"]
    other = demo["AGENT-ZJ"]  # an organisation that is not the member's brand
    await roll()  # earlier rows out of the way
    bad_member, _, _ = await new_member(app, brand)
    good_member, _, _ = await new_member(app, brand)
    insert = (
        "INSERT INTO points_ledger (member_id, brand_id, kind, points, reason) "
        "VALUES (%s, %s, 'adjustment', %s, 'probe') RETURNING id"
    )
    ledger = []
    for member, org, points in (
        (good_member, brand, 7),
        (bad_member, brand, 5),
        (bad_member, other, 3),  # the row of another brand
        (good_member, brand, 4),
    ):
        ledger.append((await (await auto.execute(insert, (member, org, points))).fetchone())["id"])
        await auto.execute(  # the balance with its ledger: ``check_balances`` of others agrees
            "INSERT INTO point_balances (member_id, balance) VALUES (%s, %s) ON CONFLICT "
            "(member_id) DO UPDATE SET balance = point_balances.balance + EXCLUDED.balance",
            (member, points),
        )
    try:
        errors = []
        for _ in range(2):  # what the periodic roller does each second
            try:
                await roll()
            except Exception as exc:
                errors.append(exc)
        facts = {
            r["member_id"]: (r["brand_id"], r["balance"])
            for r in await (
                await auto.execute(
                    "SELECT member_id, brand_id, balance FROM analytics_member_facts "
                    "WHERE member_id = ANY(%s)",
                    ([good_member, bad_member],),
                )
            ).fetchall()
        }
        queued = await (
            await auto.execute(
                "SELECT count(*) AS n FROM analytics_ledger_queue WHERE ledger_id = ANY(%s)",
                (ledger,),
            )
        ).fetchone()
    finally:  # the queue freed of these rows, so later roll-ups are not held
        await auto.execute(
            "DELETE FROM analytics_ledger_queue WHERE ledger_id = ANY(%s)", (ledger,)
        )
    assert errors == [], f"the people roll-up fails on every pass: {errors[0]!r}"
    assert facts == {good_member: (brand, 11), bad_member: (brand, 8)}, facts
    assert queued["n"] == 0
    assert await recount(auto) == []


async def test_a_deleted_category_is_no_row_of_the_purchase_cycle(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a category emptied (its product moved out, ``category_id: null``) and deleted
    (``DELETE /categories/{id}``: 204) still has a row in ``GET /analytics/members/cycle?
    by=category`` — its old id and ``name: null`` — until the next analytics roll-up folds the
    move: the console shows a nameless category. Expected: a deleted category is no row (its
    cells folded or left out when it is deleted)."""
    from tests.points_support import new_member

    admin, brand = await login("admin"), demo["BRAND-LUMI"]
    await roll()
    tag = uuid.uuid4().hex[:8]
    cat = await client.post("/categories", headers=admin, json={"name": f"gone {tag}"})
    assert cat.status_code == 201, cat.text
    category = cat.json()["id"]
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": f"gone {tag}", "product_no": f"GONE-{tag}", "category_id": category},
    )
    assert made.status_code == 201, made.text
    product = made.json()["id"]
    buyer = (await new_member(app, brand))[0]
    async with await autocommit() as auto:
        await claim_one(auto, brand, buyer, product, "2094-03-10T04:00:00Z")
    await roll()
    span = {"from": "2094-01-01", "to": "2094-12-31", "by": "category"}
    moved = await client.patch(f"/products/{product}", headers=admin, json={"category_id": None})
    assert moved.status_code == 200, moved.text
    deleted = await client.delete(f"/categories/{category}", headers=admin)
    assert deleted.status_code == 204, deleted.text
    shown = await client.get("/analytics/members/cycle", headers=admin, params=span)
    assert shown.status_code == 200, shown.text
    rows = [(i["subject_id"], i["name"]) for i in shown.json()["items"]]
    assert (category, None) not in rows, f"the deleted category is still a row: {rows}"


# -- erased memberships (a probe: counted again, under an unknown region and band) ---------------


async def _own_brand(client: Any, login: Any) -> tuple[int, dict[str, str]]:
    platform = await login("platform")
    brand = await org(client, platform, kind="brand", name=f"Erased {uuid.uuid4().hex[:8]}")
    return brand, await staff(client, platform, brand, ["brand_admin"])


def _bands(ages: dict[str, Any]) -> list[tuple[Any, ...]]:
    keys = ("age_band", "members", "claimed", "adjusted", "expired", "balance")
    return [tuple(b[k] for k in keys) for b in ages["bands"]]


async def test_an_erased_member_leaves_a4_and_a6_its_points_staying_in_its_band(
    client: Any, login: Any, app: Any, auto: Any
) -> None:
    """A probe: a member erased (``POST /members/{id}/erase``: its region, birthday and band
    cleared) was still counted by A4 and A6, under an unknown province and band, its points
    moved there — and the same phone signed up again was one person counted twice; the recount
    counted the same way. An erased membership is no member: it leaves the member counts, and
    its points (the adjustment, the balance the erasure forfeits) stay in the band it was
    counted in, as does its recount."""
    from tests.points_support import new_member

    brand, admin = await _own_brand(client, login)
    born = date(business_today().year - 40, 5, 5)  # 39 or 40: 35_44
    gone, _, phone = await new_member(app, brand, province="浙江省")
    stays, _, _ = await new_member(app, brand, province="浙江省")
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE members SET birthday = %s, city = '杭州市' WHERE id = ANY(%s)",
            (born, [gone, stays]),
        )
        await post_entry(
            conn, member_id=gone, brand_id=brand, kind="adjustment", points=50, reason="grant"
        )
    await roll()
    assert (await get(client, admin, "/analytics/members/regions"))["members"] == 2
    assert _bands(await get(client, admin, "/analytics/points/ages")) == [
        ("35_44", 2, 0, 50, 0, 50)
    ]
    erased = await client.post(f"/members/{gone}/erase", headers=admin)
    assert erased.status_code == 204, erased.text
    assert await recount(auto) == []  # queued: counted as it was until folded
    async with app.state.pool.connection() as conn:  # the same phone signs up again
        await conn.execute(
            "INSERT INTO members (brand_id, phone, province, city, birthday) "
            "VALUES (%s, %s, '浙江省', '杭州市', %s)",
            (brand, phone, born),
        )
    await roll()
    regions = await get(client, admin, "/analytics/members/regions")
    assert regions["members"] == 2, regions
    assert [(r["province"], r["members"]) for r in regions["regions"]] == [("浙江省", 2)]
    assert sum(t["members"] for t in regions["trend"]) == 2
    cities = await get(client, admin, "/analytics/members/regions", province="Zhejiang")
    assert [(r["city"], r["members"]) for r in cities["regions"]] == [("杭州市", 2)]
    ages = await get(client, admin, "/analytics/points/ages")
    assert ages["members"] == 2 and ages["balance"] == 0, ages
    assert _bands(ages) == [("35_44", 2, 0, 50, 50, 0)]  # the forfeit too, in its band
    assert await recount(auto) == []


async def test_a_member_erased_by_sql_or_before_it_was_ever_counted_is_no_member(
    client: Any, login: Any, app: Any, auto: Any
) -> None:
    """A membership erased by SQL that changes its status alone (its profile left) is queued by
    the trigger and leaves A4 and A6; one erased before any roll-up counted it is never
    counted as a member (its points under the unknown band, which no member holds: A6 does not
    list it). The recount agrees at each step."""
    from tests.points_support import new_member

    brand, admin = await _own_brand(client, login)
    by_sql, _, _ = await new_member(app, brand, province="广东省")
    stays, _, _ = await new_member(app, brand, province="浙江省")
    born = date(business_today().year - 40, 5, 5)
    async with app.state.pool.connection() as conn:
        await conn.execute("UPDATE members SET birthday = %s WHERE id = %s", (born, stays))
        await post_entry(
            conn, member_id=by_sql, brand_id=brand, kind="adjustment", points=7, reason="grant"
        )
    await roll()
    regions = await get(client, admin, "/analytics/members/regions")
    assert sorted((r["province"], r["members"]) for r in regions["regions"]) == [
        ("广东省", 1),
        ("浙江省", 1),
    ]
    await auto.execute(
        "UPDATE members SET status = 'erased', erased_at = now() WHERE id = %s", (by_sql,)
    )
    early, _, _ = await new_member(app, brand, province="广东省")
    async with app.state.pool.connection() as conn:
        await post_entry(
            conn, member_id=early, brand_id=brand, kind="adjustment", points=30, reason="grant"
        )
    erased = await client.post(f"/members/{early}/erase", headers=admin)
    assert erased.status_code == 204, erased.text
    assert await recount(auto) == []
    await roll()
    regions = await get(client, admin, "/analytics/members/regions")
    assert regions["members"] == 1, regions
    assert [(r["province"], r["members"]) for r in regions["regions"]] == [("浙江省", 1)]
    ages = await get(client, admin, "/analytics/points/ages")
    assert ages["members"] == 1 and _bands(ages) == [("35_44", 1, 0, 0, 0, 0)], ages
    assert await recount(auto) == []
    held = await (
        await auto.execute(
            "SELECT members, adjusted, expired, balance FROM analytics_points_ages "
            "WHERE brand_id = %s AND age_band = '' AND birthday = 'infinity'",
            (brand,),
        )
    ).fetchall()
    # the one erased by SQL: counted with no birthday nor band, its points stay there; the one
    # never counted: its points (the forfeit too) there, no member
    assert [tuple(r.values()) for r in held] == [(0, 37, 30, 7)], held


async def _facts(conn: Any, member: int) -> tuple[Any, ...]:
    row = await (
        await conn.execute(
            "SELECT birthday, province, city, age_band, erased, adjusted "
            "FROM analytics_member_facts WHERE member_id = %s",
            (member,),
        )
    ).fetchone()
    assert row is not None
    return tuple(row.values())


async def _cells(conn: Any, brand: int) -> list[tuple[Any, ...]]:
    rows = await (
        await conn.execute(
            "SELECT birthday, members, adjusted, expired, balance FROM analytics_points_ages "
            "WHERE brand_id = %s AND (members, adjusted, expired, balance) <> (0, 0, 0, 0) "
            "ORDER BY 1",
            (brand,),
        )
    ).fetchall()
    return [tuple(r.values()) for r in rows]


async def test_an_erased_members_facts_keep_no_birthday_day_nor_region(
    client: Any, login: Any, app: Any, auto: Any
) -> None:
    """A probe: a member set its birthday, province and city, was rolled up, erased itself
    (``DELETE /members/me``: "clears the profile") and rolled up again — its facts kept the
    exact birthday, province and city under its id, for ever. They keep the birthday's month
    (the month cell its points stay in; in the day cells they move to the month's first day)
    and no region; the recount agrees (migration 0146: tests/test_migrations.py)."""
    from tests.points_support import member_client, new_member
    from tests.test_members_auth import new_phone, sign_in

    brand, admin = await _own_brand(client, login)
    headers, body = await sign_in(client, app, brand, new_phone("136"))
    member = body["member"]["id"]
    born = date(business_today().year - 40, 3, 14)  # 39 or 40: 35_44, as is 1 March
    first = born.replace(day=1)
    profile = {"birthday": born.isoformat(), "province": "浙江省", "city": "杭州市"}
    assert (await client.patch("/members/me", headers=headers, json=profile)).status_code == 200
    stays, _, _ = await new_member(app, brand)  # A6 lists a band while a member holds it
    async with app.state.pool.connection() as conn:
        await conn.execute("UPDATE members SET birthday = %s WHERE id = %s", (born, stays))
        await post_entry(
            conn, member_id=member, brand_id=brand, kind="adjustment", points=20, reason="grant"
        )
    await roll()
    assert await _facts(auto, member) == (born, "浙江省", "杭州市", "", False, 20)
    async with member_client(app) as mc:
        assert (await mc.delete("/members/me", headers=headers)).status_code == 204
    await roll()
    assert await _facts(auto, member) == (first, "", "", "", True, 20)
    # its points (the forfeit too) on the month's first day, the member who stays on its own
    assert await _cells(auto, brand) == [(first, 0, 20, 20, 0), (born, 1, 0, 0, 0)]
    months = await (
        await auto.execute(
            "SELECT month, members, adjusted, expired FROM analytics_points_ages_m "
            "WHERE brand_id = %s AND (members, adjusted, expired) <> (0, 0, 0)",
            (brand,),
        )
    ).fetchall()
    assert [tuple(r.values()) for r in months] == [(first, 1, 20, 20)]
    ages = await get(client, admin, "/analytics/points/ages")
    assert _bands(ages) == [("35_44", 1, 0, 20, 20, 0)], ages  # still in the band it was in
    assert await recount(auto) == []
