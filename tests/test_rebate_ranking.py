"""Rebate rankings (R3): the roll-up of queued claims into ``rebate_totals`` exactly once (with
concurrent rollers while claims arrive), dead letters, the recount and its command, and the
store and clerk rankings (order, ties, region, agent scope, Asia/Shanghai months, exports) — on
the real services. Each test ranks months of its own far in the future, so the claims of other
tests (made now) never enter its rankings."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from app.rebates.ranking import recount, rollup
from tests.conftest import ROOT
from tests.helpers import assert_error
from tests.rebates_support import insert_claims
from tests.test_center import _sheet_cells

_names = itertools.count(1)
STORES = "/rebates/rankings/stores"
CLERKS = "/rebates/rankings/clerks"
ZJ = ("330000", "浙江省", "330100", "杭州市")
NB = ("330000", "浙江省", "330200", "宁波市")
GD = ("440000", "广东省", "440100", "广州市")


async def autocommit() -> psycopg.AsyncConnection[dict[str, Any]]:
    return await psycopg.AsyncConnection.connect(
        os.environ["TRACECODE_DATABASE_URL"], autocommit=True, row_factory=dict_row
    )


@pytest.fixture
async def auto(client: Any) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    """An autocommit connection (the roll-up commits batch by batch), of a migrated database
    (``client``: the app's start migrates it)."""
    async with await autocommit() as conn:
        yield conn


async def new_store(conn: Any, parent_id: int, region: tuple[str, ...], name: str = "") -> int:
    """A store organisation under ``parent_id`` in ``region`` (province code/name, city)."""
    n = next(_names)
    row = await (
        await conn.execute(
            """INSERT INTO orgs (parent_id, kind, name, erp_code, province_code, province_name,
                                 city_code, city_name)
               VALUES (%s, 'store', %s, %s, %s, %s, %s, %s) RETURNING id""",
            (parent_id, name or f"Rank store {n}", f"RANK-S{n}-{os.getpid()}", *region),
        )
    ).fetchone()
    await conn.execute(
        "UPDATE orgs SET path = (SELECT path FROM orgs WHERE id = %s) || id || '/' WHERE id = %s",
        (parent_id, row["id"]),
    )
    return int(row["id"])


async def new_clerk(conn: Any, store_id: int) -> int:
    n = next(_names)
    row = await (
        await conn.execute(
            """INSERT INTO users (org_id, username, password_hash, display_name)
               VALUES (%s, %s, 'x', %s) RETURNING id""",
            (store_id, f"rank_clerk_{n}_{os.getpid()}", f"Clerk {n}"),
        )
    ).fetchone()
    return int(row["id"])


async def product_of(conn: Any, brand: int) -> int:
    row = await (
        await conn.execute(
            "SELECT p.id FROM products p JOIN orgs o ON o.id = p.org_id WHERE o.path LIKE %s "
            "ORDER BY p.id LIMIT 1",
            (f"/{brand}/%",),
        )
    ).fetchone()
    return int(row["id"])


async def claims(
    conn: Any, demo: Any, store: int, clerk: int, amounts: list[float], at: datetime
) -> None:
    brand = demo["BRAND-LUMI"]
    await insert_claims(
        conn,
        brand_id=brand,
        store_id=store,
        clerk_id=clerk,
        product_id=await product_of(conn, brand),
        amounts=amounts,
        at=at,
    )


def shanghai_month(at: datetime) -> date:
    local = at.astimezone(UTC) + timedelta(hours=8)
    return date(local.year, local.month, 1)


async def roll_all() -> int:
    async with await autocommit() as conn:
        return await rollup(conn)


async def rank(client: Any, headers: dict[str, str], path: str = STORES, **params: Any) -> Any:
    response = await client.get(path, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# -- roll-up --------------------------------------------------------------------------------------


async def test_rollup_equals_recount_with_concurrent_rollers_while_claims_arrive(
    demo: Any, auto: Any
) -> None:
    """3,000+ random claims (random stores, clerks, amounts, months, some a minute either side
    of an Asia/Shanghai month end) inserted in 60 rounds while four roll-ups run at the same
    time on their own connections: every claim is counted once, the totals equal the recount
    and a count made here."""
    rng = random.Random(16)
    stores = [await new_store(auto, demo["AGENT-ZJ"], ZJ) for _ in range(6)]
    clerks = {s: [await new_clerk(auto, s), await new_clerk(auto, s)] for s in stores}
    expected: dict[tuple[int, int, date], list[Decimal]] = defaultdict(list)
    inserted = 0
    done = asyncio.Event()

    async def claimer() -> None:
        nonlocal inserted
        async with await autocommit() as conn:
            for _ in range(60):
                for _ in range(rng.randint(3, 8)):
                    store = rng.choice(stores)
                    clerk = rng.choice(clerks[store])
                    month = rng.randint(1, 6)
                    if rng.random() < 0.3:  # right at the Shanghai month end (UTC 16:00)
                        end = datetime(2040, month + 1, 1, tzinfo=UTC) - timedelta(hours=8)
                        at = end + timedelta(minutes=rng.choice([-1, 0, 1]))
                    else:
                        at = datetime(
                            2040, month, rng.randint(1, 28), rng.randint(0, 23), tzinfo=UTC
                        )
                    amounts = [rng.randint(1, 400) / 2 for _ in range(rng.randint(1, 20))]
                    await claims(conn, demo, store, clerk, amounts, at)
                    expected[store, clerk, shanghai_month(at)] += [Decimal(str(a)) for a in amounts]
                    inserted += len(amounts)
                await asyncio.sleep(0.005)
        done.set()

    async def roller(limit: int) -> int:
        taken = 0
        async with await autocommit() as conn:
            while not done.is_set():
                taken += await rollup(conn, limit=limit)
                await asyncio.sleep(0)
            return taken + await rollup(conn, limit=limit)

    results = await asyncio.gather(claimer(), roller(7), roller(50), roller(300), roller(1000))
    assert sum(results[1:]) >= inserted >= 3000  # other tests' claims may be queued too
    assert await roll_all() == 0
    assert await recount(auto) == []
    rows = await (
        await auto.execute(
            "SELECT store_id, clerk_id, month, claims, amount FROM rebate_totals "
            "WHERE store_id = ANY(%s)",
            (stores,),
        )
    ).fetchall()
    got = {(r["store_id"], r["clerk_id"], r["month"]): (r["claims"], r["amount"]) for r in rows}
    assert got == {k: (len(v), sum(v)) for k, v in expected.items()}
    by_store: dict[tuple[int, date], list[Decimal]] = defaultdict(list)
    for (store, _, month), amounts in expected.items():
        by_store[store, month] += amounts
    rows = await (
        await auto.execute(
            "SELECT store_id, month, claims, amount FROM rebate_store_totals "
            "WHERE store_id = ANY(%s)",
            (stores,),
        )
    ).fetchall()
    got_stores = {(r["store_id"], r["month"]): (r["claims"], r["amount"]) for r in rows}
    assert got_stores == {k: (len(v), sum(v)) for k, v in by_store.items()}
    left = await (await auto.execute("SELECT count(*) AS n FROM rebate_tally_queue")).fetchone()
    assert left["n"] == 0


async def test_a_poisoned_queue_row_is_dead_lettered_and_the_others_fold(
    demo: Any, auto: Any
) -> None:
    store = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    clerk = await new_clerk(auto, store)
    at = datetime(2043, 3, 10, tzinfo=UTC)
    await claims(auto, demo, store, clerk, [1.5] * 10, at)
    ghost = 9_000_000_000_000 + random.SystemRandom().randrange(1_000_000)
    await auto.execute("INSERT INTO rebate_tally_queue (claim_id) VALUES (%s)", (ghost,))
    await claims(auto, demo, store, clerk, [2.0] * 5, at)
    assert await roll_all() >= 16
    row = await (
        await auto.execute(
            "SELECT claims, amount FROM rebate_totals WHERE store_id = %s AND month = '2043-03-01'",
            (store,),
        )
    ).fetchone()
    assert (row["claims"], row["amount"]) == (15, Decimal("25.0"))
    dead = await (
        await auto.execute(
            "SELECT convert_from(payload, 'UTF8') AS payload, reason FROM dead_letters "
            "WHERE queue = 'rebate_tally_queue' ORDER BY at DESC LIMIT 1"
        )
    ).fetchone()
    assert str(ghost) in dead["payload"] and "UnknownClaim" in dead["reason"]
    queued = await (
        await auto.execute(
            "SELECT count(*) AS n FROM rebate_tally_queue WHERE claim_id = %s", (ghost,)
        )
    ).fetchone()
    assert queued["n"] == 0
    assert await recount(auto) == []


def rebates_command(action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "rebates", action],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


async def test_rebates_recount_exits_0_when_equal_and_1_on_a_corrupted_total(
    demo: Any, auto: Any
) -> None:
    store = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    clerk = await new_clerk(auto, store)
    await claims(auto, demo, store, clerk, [3.0, 4.5], datetime(2043, 5, 2, tzinfo=UTC))
    done = await asyncio.to_thread(rebates_command, "rollup")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rolled up ") and "rolled up 0 " not in done.stdout
    done = await asyncio.to_thread(rebates_command, "recount")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rebate totals equal the recount" in done.stdout
    corrupt = (
        "UPDATE rebate_totals SET claims = claims + %s, amount = amount + %s WHERE store_id = %s"
    )
    await auto.execute(corrupt, (1, 10, store))
    try:
        done = await asyncio.to_thread(rebates_command, "recount")
        assert done.returncode == 1, done.stdout + done.stderr
        assert (
            f"month 2043-05 store {store} clerk {clerk}: totals 3 claims 17.5 yuan, "
            "claims say 2 claims 7.5 yuan" in done.stdout
        )
        assert "1 mismatches" in done.stdout
    finally:
        await auto.execute(corrupt, (-1, -10, store))
    corrupt = "UPDATE rebate_store_totals SET claims = claims + %s WHERE store_id = %s"
    await auto.execute(corrupt, (2, store))
    try:
        done = await asyncio.to_thread(rebates_command, "recount")
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"store {store} (store total): totals 4 claims 7.5 yuan" in done.stdout
    finally:
        await auto.execute(corrupt, (-2, store))
    assert (await asyncio.to_thread(rebates_command, "recount")).returncode == 0


async def test_the_worker_sweep_folds_what_is_queued(demo: Any, auto: Any) -> None:
    """The roller middleware every worker process runs (workers/rebates.py) picks claims up."""
    from workers.rebates import RebateRoller

    store = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    clerk = await new_clerk(auto, store)
    await claims(auto, demo, store, clerk, [5.0] * 3, datetime(2043, 7, 1, tzinfo=UTC))
    roller = RebateRoller()
    roller.after_worker_boot(None, None)  # type: ignore[arg-type]
    try:
        for _ in range(100):
            row = await (
                await auto.execute("SELECT claims FROM rebate_totals WHERE store_id = %s", (store,))
            ).fetchone()
            if row is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        roller.before_worker_shutdown(None, None)  # type: ignore[arg-type]
    assert row is not None and row["claims"] == 3


# -- rankings -------------------------------------------------------------------------------------


async def test_stores_rank_by_amount_or_count_and_ties_share_a_rank(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    a, b, c = [await new_store(auto, demo["AGENT-ZJ"], ZJ) for _ in range(3)]
    at = datetime(2041, 1, 15, tzinfo=UTC)
    for store, amounts in ((a, [10.0] * 10), (b, [50.0] * 2), (c, [1.0] * 30)):
        await claims(auto, demo, store, await new_clerk(auto, store), amounts, at)
    await roll_all()
    admin = await login("admin")
    out = await rank(client, admin, month="2041-01")
    assert (out["from_month"], out["to_month"], out["by"]) == ("2041-01", "2041-01", "amount")
    assert [(r["rank"], r["store_id"], r["claims"], r["amount"]) for r in out["items"]] == [
        (1, a, 10, 100.0),  # tied on amount: more claims first
        (1, b, 2, 100.0),
        (3, c, 30, 30.0),
    ]
    first = out["items"][0]
    assert first["agent_id"] == demo["AGENT-ZJ"] and first["agent_name"].startswith("Zhejiang")
    assert (first["province_code"], first["city_name"]) == ("330000", "杭州市")
    by_count = await rank(client, admin, month="2041-01", by="count")
    assert [(r["rank"], r["store_id"]) for r in by_count["items"]] == [(1, c), (2, a), (3, b)]
    top = await rank(client, admin, month="2041-01", limit=2)
    assert [r["store_id"] for r in top["items"]] == [a, b]
    assert (await rank(client, admin, month="2041-02"))["items"] == []


async def test_region_filter_and_agent_scoping(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    hz = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    nb = await new_store(auto, demo["DIST-NB"], NB)  # under the Ningbo distributor of AGENT-ZJ
    gz = await new_store(auto, demo["AGENT-GD"], GD)
    at = datetime(2041, 4, 2, tzinfo=UTC)
    for store, amount in ((hz, 30.0), (nb, 20.0), (gz, 10.0)):
        await claims(auto, demo, store, await new_clerk(auto, store), [amount], at)
    await roll_all()
    admin = await login("admin")

    async def ids(headers: dict[str, str], **params: Any) -> list[int]:
        out = await rank(client, headers, month="2041-04", **params)
        return [r["store_id"] for r in out["items"]]

    assert await ids(admin) == [hz, nb, gz]
    assert await ids(admin, province="330000") == [hz, nb]
    assert await ids(admin, province="浙江省") == [hz, nb]
    # any spelling of it, as the analytics take it; an unknown one is 400 (a probe: 浙江 found none)
    assert await ids(admin, province="浙江") == await ids(admin, province="Zhejiang") == [hz, nb]
    unknown = await client.get(
        STORES, params={"month": "2041-04", "province": "Atlantis"}, headers=admin
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "validation_failed"
    assert await ids(admin, city="330200") == [nb]
    assert await ids(admin, city="广州市") == [gz]
    assert await ids(admin, province="440000", city="330100") == []
    assert await ids(admin, agent_id=demo["AGENT-GD"]) == [gz]
    zj_admin = await login("agent_admin")
    assert await ids(zj_admin) == [hz, nb]  # an agent ranks its own stores
    out = await rank(client, zj_admin, month="2041-04")
    assert [r["agent_id"] for r in out["items"]] == [demo["AGENT-ZJ"]] * 2
    assert_error(
        await client.get(
            STORES, headers=zj_admin, params={"month": "2041-04", "agent_id": demo["AGENT-GD"]}
        ),
        404,
    )
    assert_error(  # not an agent
        await client.get(STORES, headers=admin, params={"agent_id": demo["STORE-HZ-01"]}), 404
    )
    assert await ids(await login("store_manager")) == []  # a store sees itself only
    assert_error(await client.get(STORES, headers=await login("agent_clerk")), 403)
    assert_error(await client.get(STORES), 401)


async def test_months_are_asia_shanghai_months(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    store = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    clerk = await new_clerk(auto, store)
    await claims(auto, demo, store, clerk, [1.0], datetime(2042, 10, 31, 15, 59, 59, tzinfo=UTC))
    await claims(auto, demo, store, clerk, [2.0], datetime(2042, 10, 31, 16, 0, tzinfo=UTC))
    await claims(auto, demo, store, clerk, [4.0], datetime(2042, 10, 31, 17, 0, tzinfo=UTC))
    await claims(auto, demo, store, clerk, [8.0], datetime(2042, 12, 31, 16, 0, tzinfo=UTC))
    await roll_all()
    admin = await login("admin")

    async def amount(**params: Any) -> float:
        out = await rank(client, admin, **params)
        return sum(r["amount"] for r in out["items"] if r["store_id"] == store)

    assert await amount(month="2042-10") == 1.0
    assert await amount(month="2042-11") == 6.0  # 2042-10-31T17:00Z is November 1st, 01:00
    assert await amount(month="2042-12") == 0.0
    assert await amount(month="2043-01") == 8.0
    assert await amount(from_month="2042-10", to_month="2042-12") == 7.0
    out = await rank(client, admin, from_month="2042-10", to_month="2043-01")
    assert (out["from_month"], out["to_month"]) == ("2042-10", "2043-01")
    assert await amount(from_month="2042-10", to_month="2043-01") == 15.0


async def test_clerks_rank_with_their_names_and_stores(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    hz, gz = (
        await new_store(auto, demo["AGENT-ZJ"], ZJ),
        await new_store(auto, demo["AGENT-GD"], GD),
    )
    x, y, z = await new_clerk(auto, hz), await new_clerk(auto, hz), await new_clerk(auto, gz)
    at = datetime(2041, 6, 6, tzinfo=UTC)
    for store, clerk, amounts in ((hz, x, [5.0] * 2), (hz, y, [20.0]), (gz, z, [1.0] * 3)):
        await claims(auto, demo, store, clerk, amounts, at)
    await roll_all()
    out = await rank(client, await login("admin"), CLERKS, month="2041-06")
    assert [
        (r["rank"], r["clerk_id"], r["store_id"], r["claims"], r["amount"]) for r in out["items"]
    ] == [
        (1, y, hz, 1, 20.0),
        (2, x, hz, 2, 10.0),
        (3, z, gz, 3, 3.0),
    ]
    assert out["items"][0]["clerk_name"].startswith("Clerk ")
    assert out["items"][0]["clerk_username"].startswith("rank_clerk_")
    assert out["items"][2]["agent_id"] == demo["AGENT-GD"]
    by_count = await rank(client, await login("admin"), CLERKS, month="2041-06", by="count")
    assert [r["clerk_id"] for r in by_count["items"]] == [z, x, y]
    zj = await rank(client, await login("agent_admin"), CLERKS, month="2041-06")
    assert [r["clerk_id"] for r in zj["items"]] == [y, x]
    gd = await rank(client, await login("admin"), CLERKS, month="2041-06", province="440000")
    assert [r["clerk_id"] for r in gd["items"]] == [z]


async def test_rankings_export_as_csv_and_xlsx(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    store = await new_store(auto, demo["AGENT-ZJ"], ZJ, name="=HYPERLINK(1) 门店")
    clerk = await new_clerk(auto, store)
    await claims(auto, demo, store, clerk, [2.5, 2.5], datetime(2041, 8, 8, tzinfo=UTC))
    await roll_all()
    admin = await login("admin")
    response = await client.get(STORES, headers=admin, params={"month": "2041-08", "format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "rebate-store-ranking-2041-08-2041-08.csv" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "rank",
        "store_id",
        "store",
        "store_erp_code",
        "province",
        "city",
        "agent",
        "claims",
        "amount",
    ]
    assert rows[1][:3] == ["1", str(store), "'=HYPERLINK(1) 门店"]  # formula guard
    assert rows[1][4:] == ["浙江省", "杭州市", rows[1][6], "2", "5.0"]
    assert rows[1][6].startswith("Zhejiang")
    response = await client.get(
        CLERKS, headers=admin, params={"month": "2041-08", "format": "xlsx"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    cells = _sheet_cells(response.content)
    assert (cells["A1"], cells["B1"], cells["C1"], cells["L1"]) == (
        "rank",
        "clerk_id",
        "clerk",
        "amount",
    )
    assert (cells["A2"], cells["B2"], cells["F2"], cells["L2"]) == (
        "1",
        str(clerk),
        "=HYPERLINK(1) 门店",
        "5",
    )


async def test_bad_ranking_parameters_are_a_clear_400(client: Any, login: Any) -> None:
    admin = await login("admin")
    for params, code in (
        ({"month": "2041-13"}, None),
        ({"month": "2041-1"}, None),
        ({"month": "\u0662\u0660\u0664\u0661-01"}, None),  # Arabic-Indic digits (a probe: 200)
        ({"from_month": "２０４１-01", "to_month": "2041-02"}, None),  # fullwidth
        ({"month": "2041-01\n"}, None),
        ({"month": "0000-01"}, "bad_period"),  # was a 500 (no year 0 in a date)
        ({"from_month": "0000-12", "to_month": "0001-01"}, "bad_period"),
        ({"month": "2041-01", "from_month": "2041-01"}, "bad_period"),
        ({"from_month": "2041-05", "to_month": "2041-04"}, "bad_period"),
        ({"from_month": "2030-01", "to_month": "2033-01"}, "bad_period"),
        ({"by": "sales"}, None),
        ({"limit": 0}, None),
        ({"agent_id": "x"}, None),
        ({"format": "pdf"}, None),
    ):
        for path in (STORES, CLERKS):
            assert_error(await client.get(path, headers=admin, params=params), 400, code)
    span = await rank(client, admin, from_month="2030-01", to_month="2032-12")
    assert (span["from_month"], span["to_month"]) == ("2030-01", "2032-12")


async def test_a_store_whose_claims_were_all_withdrawn_is_not_ranked(
    client: Any, login: Any, demo: Any, auto: Any
) -> None:
    """A probe: a consumer's return withdraws the store's only claim and empties its cells, and
    the store was still ranked, with 0 claims and 0.0 (within ``limit`` too)."""
    from app.auth.service import load_user
    from app.rebates.returns import withdraw

    store = await new_store(auto, demo["AGENT-ZJ"], ZJ)
    clerk = await new_clerk(auto, store)
    await claims(auto, demo, store, clerk, [2.0], datetime(2046, 6, 10, tzinfo=UTC))
    await roll_all()
    admin = await login("admin")
    ranked = await rank(client, admin, month="2046-06")
    assert [i["claims"] for i in ranked["items"] if i["store_id"] == store] == [1]
    row = await (
        await auto.execute("SELECT code_id FROM rebate_claims WHERE store_id = %s", (store,))
    ).fetchone()
    user = await (await auto.execute("SELECT id FROM users WHERE username = 'admin'")).fetchone()
    assert await withdraw(auto, await load_user(auto, user["id"]), row["code_id"]) is not None
    for path in (STORES, CLERKS):
        for by in ("amount", "count"):
            items = (await rank(client, admin, path, month="2046-06", by=by))["items"]
            assert [i for i in items if i["store_id"] == store] == [], (path, by)
