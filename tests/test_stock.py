"""Stock (SPEC L9): roll-up of movement deltas exactly once, recount from the code state,
low-stock alerts, the ``tracecode stock`` command and subtree scoping — on the real services."""

from __future__ import annotations

import asyncio
import itertools
import random
import subprocess
import sys
import uuid
from collections import Counter
from typing import Any

import pytest

from app.logistics.rollup import recount, rollup
from tests.conftest import ROOT
from tests.helpers import activate, assert_error, issue_units
from tests.race_support import audit_rows, twice_held

_lots = itertools.count()


def lot_name() -> str:
    return f"STK{next(_lots)}"


@pytest.fixture
async def units(client: Any, login: Any, demo: Any, app: Any) -> Any:
    """A fresh 400-unit batch of the sun cream and its serials."""
    batch_no, product_id = await issue_units(client, login, demo, 400)

    class Units:
        pass

    u = Units()
    u.product_id = product_id
    u.serials = [app.state.scheme.serial(batch_no, i) for i in range(400)]
    return u


async def roll(app: Any) -> int:
    async with app.state.pool.connection() as conn:
        return await rollup(conn)


async def stock_of(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/stock", headers=headers, params={**params, "per_page": 200})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def test_activated_units_are_stock_of_the_line_organisation_after_a_rollup(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, units: Any
) -> None:
    lot = lot_name()
    await activate(client, login, units.serials[:30], units.product_id, lot=lot)
    await activate(client, login, units.serials[30:42], units.product_id, lot=lot)
    admin = await login("admin")
    await roll(app)
    rows = await stock_of(client, admin, product_id=units.product_id, lot=lot)
    assert [(r["org_id"], r["on_hand"], r["in_transit"]) for r in rows] == [
        (demo["FACTORY-SZ"], 42, 0)
    ]
    assert rows[0]["org_name"].startswith("Suzhou Factory")
    assert rows[0]["product_name"].startswith("Sun Cream")
    assert await roll(app) == 0  # nothing left: a second roll-up changes nothing
    assert await stock_of(client, admin, product_id=units.product_id, lot=lot) == rows
    assert await recount(conn) == []


async def test_concurrent_rollups_count_every_delta_exactly_once(
    client: Any, login: Any, app: Any, conn: Any, units: Any
) -> None:
    lots = [lot_name(), lot_name()]
    for i in range(40):  # one delta row per upload
        chunk = units.serials[i * 5 : i * 5 + 5]
        await activate(client, login, chunk, units.product_id, lot=lots[i % 2])
    pending = (await (await conn.execute("SELECT count(*) AS n FROM stock_deltas")).fetchone())["n"]
    await conn.commit()
    assert pending >= 40

    async def roller(limit: int) -> int:
        async with app.state.pool.connection() as c:
            return await rollup(c, limit=limit)

    taken = await asyncio.gather(roller(1), roller(2), roller(3))
    assert sum(taken) == pending
    assert await recount(conn) == []
    row = await (
        await conn.execute(
            "SELECT lot, on_hand FROM stock WHERE product_id = %s AND lot = ANY(%s) ORDER BY lot",
            (units.product_id, lots),
        )
    ).fetchall()
    assert [r["on_hand"] for r in row] == [100, 100]


async def test_low_stock_threshold_raises_an_alert_the_store_sees(
    client: Any, login: Any, demo: Any, app: Any, conn: Any, units: Any
) -> None:
    zj = await login("agent_admin")
    store = demo["STORE-HZ-01"]
    created = await client.post(
        "/users",
        headers=zj,
        json={
            "org_id": store,
            "username": "hz_manager",
            "password": "password-123",
            "roles": ["org_admin"],
        },
    )
    assert created.status_code == 201, created.text
    manager = await login("hz_manager", "password-123")
    await roll(app)
    held = await stock_of(client, manager, product_id=units.product_id)
    on_hand = sum(r["on_hand"] for r in held)  # other tests may have sold the store some
    url = f"/stock/thresholds/{store}/{units.product_id}"
    response = await client.put(url, headers=manager, json={"min_units": on_hand + 5})
    assert response.status_code == 200, response.text
    assert response.json() | {"org_name": "", "product_name": ""} == {
        "org_id": store,
        "org_name": "",
        "product_id": units.product_id,
        "product_name": "",
        "min_units": on_hand + 5,
        "on_hand": on_hand,
        "below": True,
    }
    alerts = await client.get("/alerts", headers=manager, params={"kind": "low_stock"})
    assert alerts.status_code == 200, alerts.text
    mine = [a for a in alerts.json()["items"] if a["details"].get("product_id") == units.product_id]
    assert len(mine) == 1, alerts.json()
    severity = "critical" if on_hand == 0 else "warning"
    assert (mine[0]["org_id"], mine[0]["severity"]) == (store, severity)
    assert mine[0]["brand_id"] == demo["BRAND-LUMI"]
    assert "Sun Cream" in mine[0]["message"]
    assert f"{on_hand} on hand, minimum {on_hand + 5}" in mine[0]["message"]
    # Setting it again bumps the one open alert instead of opening a second.
    await client.put(url, headers=manager, json={"min_units": on_hand + 6})
    again = (await client.get("/alerts", headers=manager, params={"kind": "low_stock"})).json()
    assert [a["occurrences"] for a in again["items"] if a["id"] == mine[0]["id"]] == [2]
    # Another agent's users see neither the alert nor the threshold.
    gd = await login("gd_admin")
    theirs = (await client.get("/alerts", headers=gd, params={"kind": "low_stock"})).json()
    assert all(a["org_id"] != store for a in theirs["items"])
    listed = await client.get("/stock/thresholds", headers=gd)
    assert all(t["org_id"] != store for t in listed.json()["items"])
    # its product's: other tests leave thresholds of the store for their products (at 0)
    listed = await client.get(
        "/stock/thresholds",
        headers=zj,
        params={"org_id": store, "product_id": units.product_id},
    )
    assert [t["min_units"] for t in listed.json()["items"]] == [on_hand + 6]
    # acknowledged, it holds while the stock does not fall further: the same minimum set again
    # (a probe: a new alert each time, and after each roll-up under the minimum)
    acked = await client.post(f"/alerts/{mine[0]['id']}/acknowledge", headers=manager)
    assert acked.status_code == 200, acked.text

    async def open_alerts() -> list[Any]:
        found = await client.get("/alerts", headers=manager, params={"kind": "low_stock"})
        return [
            a
            for a in found.json()["items"]
            if a["details"].get("product_id") == units.product_id and not a["acknowledged_at"]
        ]

    await client.put(url, headers=manager, json={"min_units": on_hand + 6})
    assert await open_alerts() == []
    await client.put(url, headers=manager, json={"min_units": on_hand + 9})  # a new minimum
    assert len(await open_alerts()) == 1
    await client.put(url, headers=manager, json={"min_units": 0})
    # Leave the agent's subtree without alerts for the tests that count them.
    await conn.execute(
        "DELETE FROM alerts WHERE dedup_key = %s", (f"low_stock:{store}:{units.product_id}",)
    )
    await conn.commit()


async def test_rollup_raises_low_stock_for_the_organisations_it_touches(
    client: Any, login: Any, demo: Any, app: Any, units: Any
) -> None:
    factory, admin = demo["FACTORY-SZ"], await login("factory_admin")
    # some on hand whatever other tests left at the factory (none on hand is a critical alert)
    await activate(client, login, units.serials[190:195], units.product_id, lot=lot_name())
    await roll(app)
    url = f"/stock/thresholds/{factory}/{units.product_id}"
    first = await client.put(url, headers=admin, json={"min_units": 1})
    on_hand = first.json()["on_hand"]
    set_ = await client.put(url, headers=admin, json={"min_units": on_hand + 10})
    assert set_.json()["below"] is True
    opened = (await client.get("/alerts", headers=admin, params={"kind": "low_stock"})).json()
    alert = next(
        a
        for a in opened["items"]
        if a["org_id"] == factory and a["details"]["product_id"] == units.product_id
    )
    assert alert["severity"] == "warning" and alert["acknowledged_at"] is None
    acked = await client.post(f"/alerts/{alert['id']}/acknowledge", headers=admin)
    assert acked.status_code == 200, acked.text

    def open_here(listed: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            a
            for a in listed["items"]
            if a["org_id"] == factory
            and a["details"]["product_id"] == units.product_id
            and a["acknowledged_at"] is None
        ]

    lot = lot_name()
    await activate(client, login, units.serials[200:205], units.product_id, lot=lot)
    await roll(app)  # risen, still 5 below: the acknowledged alert holds (a probe: a new one)
    listed = (await client.get("/alerts", headers=admin, params={"kind": "low_stock"})).json()
    assert open_here(listed) == []
    await activate(client, login, units.serials[205:215], units.product_id, lot=lot)
    await roll(app)  # now above it: nothing opens
    listed = (await client.get("/alerts", headers=admin, params={"kind": "low_stock"})).json()
    assert open_here(listed) == []
    back = await client.put(url, headers=admin, json={"min_units": on_hand + 20})  # under again
    assert back.json()["below"] is True
    listed = (await client.get("/alerts", headers=admin, params={"kind": "low_stock"})).json()
    fresh = open_here(listed)
    assert len(fresh) == 1 and fresh[0]["details"]["on_hand"] == on_hand + 15
    # restocked to the minimum: the open alert closes by itself (a probe: it stayed open, and
    # the dashboard counted it, until someone acknowledged a shelf that was full again)
    await activate(client, login, units.serials[215:220], units.product_id, lot=lot)
    await roll(app)
    listed = (await client.get("/alerts", headers=admin, params={"kind": "low_stock"})).json()
    assert open_here(listed) == []
    closed = next(a for a in listed["items"] if a["id"] == fresh[0]["id"])
    assert closed["details"]["recovered"] is True and closed["acknowledged_by"] is None
    await client.put(url, headers=admin, json={"min_units": on_hand + 21})  # under once more
    listed = (await client.get("/alerts", headers=admin, params={"kind": "low_stock"})).json()
    assert [a["details"]["on_hand"] for a in open_here(listed)] == [on_hand + 20]
    await client.put(url, headers=admin, json={"min_units": 0})  # leave other tests alone


def stock_command(action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "stock", action],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


async def test_stock_check_exits_0_when_consistent_and_1_on_a_corrupted_row(
    client: Any, login: Any, demo: Any, conn: Any, units: Any
) -> None:
    lot = lot_name()
    await activate(client, login, units.serials[300:307], units.product_id, lot=lot)
    done = await asyncio.to_thread(stock_command, "rollup")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rolled up ") and "rolled up 0 " not in done.stdout
    done = await asyncio.to_thread(stock_command, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stock equals the recount" in done.stdout

    key = (demo["FACTORY-SZ"], units.product_id, lot)
    corrupt = (
        "UPDATE stock SET on_hand = on_hand + %s WHERE org_id = %s AND product_id = %s AND lot = %s"
    )
    await conn.execute(corrupt, (3, *key))
    await conn.commit()
    try:
        done = await asyncio.to_thread(stock_command, "check")
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"lot '{lot}': stock on_hand 10 in_transit 0, code state on_hand 7" in done.stdout
        assert "1 mismatches" in done.stdout
    finally:
        await conn.execute(corrupt, (-3, *key))
        await conn.commit()
    assert (await asyncio.to_thread(stock_command, "check")).returncode == 0


async def _subtree(app: Any, org_id: int) -> set[int]:
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                """SELECT o.id FROM orgs o JOIN orgs top ON o.path LIKE top.path || '%%'
                   WHERE top.id = %s""",
                (org_id,),
            )
        ).fetchall()
    return {row["id"] for row in rows}


async def test_an_agent_reads_its_own_subtree_stock_only(
    client: Any, login: Any, demo: Any, app: Any, units: Any
) -> None:
    lot = lot_name()
    await activate(client, login, units.serials[320:323], units.product_id, lot=lot)
    await roll(app)
    zj, gd = await login("agent_admin"), await login("gd_admin")
    assert await stock_of(client, zj, lot=lot) == []  # the factory is not below the agent
    assert len(await stock_of(client, await login("admin"), lot=lot)) == 1
    assert_error(await client.get("/stock", headers=zj, params={"org_id": demo["AGENT-GD"]}), 404)
    assert_error(
        await client.get("/stock", headers=gd, params={"org_id": demo["STORE-HZ-01"]}), 404
    )
    # The agent sees its own and its stores' stock, never the other agent's (and vice versa).
    # (other tests add stores below the agents: the subtrees are read, not listed)
    zj_orgs, gd_orgs = await _subtree(app, demo["AGENT-ZJ"]), await _subtree(app, demo["AGENT-GD"])
    assert {demo[e] for e in ("DIST-NB", "STORE-HZ-01", "STORE-NB-01")} <= zj_orgs
    assert not zj_orgs & gd_orgs
    assert {r["org_id"] for r in await stock_of(client, zj)} <= zj_orgs
    assert {r["org_id"] for r in await stock_of(client, gd)} <= gd_orgs
    store_rows = await stock_of(client, zj, org_id=demo["STORE-HZ-01"])
    assert {r["org_id"] for r in store_rows} <= {demo["STORE-HZ-01"]}
    assert_error(
        await client.put(
            f"/stock/thresholds/{demo['STORE-HZ-01']}/{units.product_id}",
            headers=gd,
            json={"min_units": 3},
        ),
        404,
    )
    assert_error(await client.get("/stock", headers=await login("printer")), 403)
    assert_error(await client.get("/stock", headers=await login("planner")), 403)
    # The store clerk (logistics.scan) reads its own store's stock.
    clerk = await login("store_clerk")
    assert (await client.get("/stock", headers=clerk)).status_code == 200


async def test_bad_stock_input_is_a_clear_4xx(
    client: Any, login: Any, demo: Any, units: Any
) -> None:
    zj, store = await login("agent_admin"), demo["STORE-HZ-01"]
    url = f"/stock/thresholds/{store}/{units.product_id}"
    assert_error(await client.put(url, headers=zj, json={"min_units": -1}), 400)
    assert_error(await client.put(url, headers=zj, json={"min_units": "x"}), 400)
    assert_error(await client.put(url, headers=zj, json={"min_units": 1, "extra": 1}), 400)
    assert_error(
        await client.put(url, headers={**zj, "content-type": "application/json"}, content=b"{nope"),
        400,
    )
    assert_error(
        await client.put(f"/stock/thresholds/{store}/999999999", headers=zj, json={"min_units": 1}),
        404,
    )
    assert_error(
        await client.put(
            f"/stock/thresholds/999999999/{units.product_id}", headers=zj, json={"min_units": 1}
        ),
        404,
    )
    assert_error(await client.get("/stock", headers=zj, params={"page": 0}), 400)
    assert_error(await client.get("/stock", headers=zj, params={"org_id": "abc"}), 400)
    assert_error(await client.get("/stock"), 401)


async def test_rollup_equals_recount_after_10000_random_movements(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """Units travel factory → warehouse → agents → store → consumers and back at random, through
    the documents API, while roll-ups run concurrently; every unit moved counts as a movement."""
    rng = random.Random(9)
    batch_no, product_id = await issue_units(client, login, demo, 1000)
    serial = {(batch_no << 32) | i: app.state.scheme.serial(batch_no, i) for i in range(1000)}
    codes = list(serial)
    lots = [lot_name(), lot_name()]
    for lot, start in zip(lots, (0, 500), strict=True):
        await activate(
            client, login, [serial[c] for c in codes[start : start + 500]], product_id, lot=lot
        )
    wh, zj, gd, store = demo["WH-SZ-01"], demo["AGENT-ZJ"], demo["AGENT-GD"], demo["STORE-HZ-01"]
    users = {
        wh: await login("clerk"),
        zj: await login("agent_clerk"),
        gd: await login("gd_admin"),
        store: await login("store_clerk"),
    }
    downstream = {wh: [zj, gd], zj: [store], gd: [], store: []}
    upstream = {zj: wh, gd: wh, store: zj}
    kinds: Counter[str] = Counter()
    pending: list[tuple[int, int, set[int]]] = []  # (shipment id, receiver, codes in transit)

    async def held(org: int, status: str = "active", for_sale: bool = False) -> list[int]:
        rows = await (
            await conn.execute(
                """SELECT code FROM unit_state WHERE code >= %s AND code < %s AND status = %s
                   AND holder_org_id = %s AND transit_to IS NULL
                   AND NOT (%s AND disposition IS NOT DISTINCT FROM 'damaged') ORDER BY code""",
                (batch_no << 32, (batch_no + 1) << 32, status, org, for_sale),
            )
        ).fetchall()
        await conn.commit()
        return [r["code"] for r in rows]

    async def run(org: int, picked: list[int], **fields: Any) -> dict[str, Any]:
        headers = users[org]
        created = await client.post("/documents", headers=headers, json=fields)
        assert created.status_code == 201, created.text
        doc = created.json()
        if picked:
            body = {"codes": [serial[c] for c in picked]}
            added = await client.post(f"/documents/{doc['id']}/codes", headers=headers, json=body)
            assert added.json()["rejected"] == 0, added.json()
        done, _ = await asyncio.gather(
            client.post(f"/documents/{doc['id']}/confirm", headers=headers), roll(app)
        )
        assert done.status_code == 200, done.text
        return done.json()  # type: ignore[no-any-return]

    factory_stock = list(codes)
    doc = await run(wh, factory_stock, kind="factory_inbound")
    movements = doc["units"]
    kinds[doc["kind"]] += 1
    while movements < 10_000:
        step = rng.random()
        if pending and step < 0.35:  # receive a shipment, whole or in part
            i = rng.randrange(len(pending))
            shipment, receiver, left = pending[i]
            part = (
                sorted(left)
                if rng.random() < 0.5
                else rng.sample(sorted(left), k=max(1, len(left) // 2))
            )
            doc = await run(receiver, part, kind="inbound", shipment_id=shipment)
            left -= set(part)
            if not left:
                pending.pop(i)
        else:
            org = rng.choice([wh, wh, zj, gd, store])
            stock = await held(org)
            if not stock:
                continue
            picked = rng.sample(stock, k=rng.randint(1, min(len(stock), 300)))
            if org == store and step < 0.75:
                sellable = await held(org, for_sale=True)  # not those returned damaged
                if not sellable:
                    continue
                picked = rng.sample(sellable, k=rng.randint(1, min(len(sellable), 300)))
                sold = await client.post(
                    "/sales", headers=users[store], json={"codes": [serial[c] for c in picked]}
                )
                assert sold.status_code == 201, sold.text
                doc = sold.json()
                for code in rng.sample(picked, k=min(3, len(picked))):  # some come back
                    back = await client.post(
                        "/returns",
                        headers=users[store],
                        json={"code": serial[code], "reason": "damaged"},
                    )
                    assert back.status_code == 200, back.text
                    movements += 1
                    kinds["consumer"] += 1
            elif downstream[org] and step < 0.85:
                to = rng.choice(downstream[org])
                doc = await run(org, picked, kind="outbound", counterparty_id=to)
                pending.append((doc["id"], to, set(picked)))
            elif org in upstream:
                to = upstream[org]
                doc = await run(org, picked, kind="return", counterparty_id=to)
                pending.append((doc["id"], to, set(picked)))
            else:
                continue
        movements += doc["units"]
        kinds[doc["kind"]] += 1
    await roll(app)
    assert await recount(conn) == []
    assert set(kinds) == {"factory_inbound", "outbound", "return", "inbound", "sale", "consumer"}
    expected: dict[tuple[int, str], list[int]] = {}
    for row in await (
        await conn.execute(
            """SELECT coalesce(transit_to, holder_org_id) AS org, lot, transit_to IS NULL AS here
               FROM unit_state WHERE code >= %s AND code < %s AND status = 'active'""",
            (batch_no << 32, (batch_no + 1) << 32),
        )
    ).fetchall():
        expected.setdefault((row["org"], row["lot"]), [0, 0])[0 if row["here"] else 1] += 1
    await conn.commit()
    rows = await stock_of(client, await login("admin"), product_id=product_id)
    got = {
        (r["org_id"], r["lot"]): [r["on_hand"], r["in_transit"]]
        for r in rows
        if r["lot"] in lots and (r["on_hand"] or r["in_transit"])
    }
    assert got == expected and len({org for org, _ in got}) >= 4


async def test_a_threshold_set_while_the_rollup_folds_leaves_no_false_alert(
    client: Any, login: Any, app: Any, demo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe: a warehouse sets its minimum stock while the roll-up folds new stock in. Either
    order ends with the stock above the minimum and no low-stock alert open. The request
    evaluated the stock the fold had not committed (an alert opened) and the fold the threshold
    not yet committed (nothing closed it): an alert stayed open above the minimum. Threshold
    checks now take turns (``Lock.STOCK_THRESHOLDS``); the request is held between its check
    and its commit here while the roll-up runs."""
    from app.logistics import stock as stock_module
    from app.logistics.rollup import rollup_alone

    factory, admin = demo["FACTORY-SZ"], await login("factory_admin")
    batch_no, product_id = await issue_units(client, login, demo, 30)
    serials = [app.state.scheme.serial(batch_no, i) for i in range(30)]
    await activate(client, login, serials[:5], product_id, lot="SKEW-A")

    async def roll() -> None:
        async with app.state.pool.connection() as roll_conn:
            await roll_conn.set_autocommit(True)
            await rollup_alone(roll_conn, wait=True)

    await roll()
    url = f"/stock/thresholds/{factory}/{product_id}"
    first = await client.put(url, headers=admin, json={"min_units": 0})
    assert first.status_code == 200, first.text
    on_hand = first.json()["on_hand"]
    await activate(client, login, serials[5:25], product_id, lot="SKEW-B")  # not rolled up yet

    checked, go = asyncio.Event(), asyncio.Event()
    original = stock_module.check_thresholds

    async def pausing(conn: Any, pairs: Any) -> Any:
        assert conn.info.transaction_status  # the request's transaction, open
        below = await original(conn, pairs)
        checked.set()
        await go.wait()
        return below

    monkeypatch.setattr(stock_module, "check_thresholds", pausing)
    setting = asyncio.create_task(client.put(url, headers=admin, json={"min_units": on_hand + 10}))
    await asyncio.wait_for(checked.wait(), 30)
    rolling = asyncio.create_task(roll())
    async with app.state.pool.connection() as conn:  # the fold done, or waiting for its turn
        for _ in range(300):
            waiting = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event = 'advisory'"
                )
            ).fetchone()
            if rolling.done() or waiting["n"]:
                break
            await asyncio.sleep(0.02)
    go.set()
    response = await asyncio.wait_for(setting, 30)
    await asyncio.wait_for(rolling, 30)
    assert response.status_code == 200, response.text
    assert response.json()["on_hand"] == on_hand  # it read the stock before the fold
    monkeypatch.undo()
    async with app.state.pool.connection() as conn:
        stock = await (
            await conn.execute(
                "SELECT coalesce(sum(on_hand), 0) AS n FROM stock "
                "WHERE org_id = %s AND product_id = %s",
                (factory, product_id),
            )
        ).fetchone()
        alerts = await (
            await conn.execute(
                "SELECT details FROM alerts WHERE dedup_key = %s AND acknowledged_at IS NULL",
                (f"low_stock:{factory}:{product_id}",),
            )
        ).fetchall()
    await client.put(url, headers=admin, json={"min_units": 0})
    assert stock["n"] == on_hand + 20
    assert [a["details"] for a in alerts] == []


async def test_a_connection_given_back_in_autocommit_serves_the_next_request_in_a_transaction(
    client: Any, app: Any
) -> None:
    """A roller's connection set to autocommit went back to the pool as it was, and the next
    request on it committed statement by statement: a failed request kept its first writes."""
    async with app.state.pool.connection() as conn:
        await conn.set_autocommit(True)
        used = conn
    for _ in range(250):  # the pool resets a returned connection in a task of its own
        if not used.autocommit:
            break
        await asyncio.sleep(0.02)
    assert not used.autocommit


async def test_two_thresholds_set_at_once_are_audited_one_after_the_other(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: the audit log is the thresholds' only history. Two ``PUT
    /stock/thresholds/{org}/{product}`` at once (two managers, a retry with another value)
    both read the minimum in place before either wrote, so both rows said ``before: 5``: the
    history read 5→10 and 5→20 and never showed the 10 the second change replaced. Thresholds
    are set one at a time now, taken before ``before`` is read: the second row's ``before`` is
    the first's ``after``."""
    admin = await login("admin")
    found = await client.get("/products", headers=admin, params={"q": "LM-HY-50"})
    product = found.json()["items"][0]["id"]
    org = demo["STORE-HZ-01"]
    url = f"/stock/thresholds/{org}/{product}"
    async with app.state.pool.connection() as conn:
        kept = await (
            await conn.execute(
                "SELECT min_units FROM stock_thresholds WHERE org_id = %s AND product_id = %s",
                (org, product),
            )
        ).fetchone()
    try:
        assert (await client.put(url, headers=admin, json={"min_units": 5})).status_code == 200
        answers = await twice_held(
            app,
            client,
            "SELECT 1 FROM stock_thresholds WHERE org_id = %s AND product_id = %s FOR UPDATE",
            (org, product),
            "PUT",
            url,
            admin,
            bodies=({"min_units": 10}, {"min_units": 20}),
        )
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        *_, first, second = await audit_rows(app, "stock_threshold", f"{org}:{product}", "set")
        assert second["before"]["min_units"] == first["after"]["min_units"], (
            f"history: {first['before']} -> {first['after']}, then {second['before']} -> "
            f"{second['after']}: the change in between is missing"
        )
    finally:  # the store's threshold as it was (0: never below)
        restore = {"min_units": kept["min_units"] if kept else 0}
        assert (await client.put(url, headers=admin, json=restore)).status_code == 200


async def test_a_low_stock_threshold_can_be_set_for_a_product_kept_under_the_factory(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the brand keeps a product of its catalogue under its factory (``org_id`` of
    ``POST /products``, as ``app.catalog.service._owner`` allows; the codes take it as the
    brand's). The brand admin's ``PUT /stock/thresholds/{store}/{product}`` for it answered 404
    ``product not found``: ``set_threshold`` looked the product up with ``org_id = brand``
    instead of the brand's tree, so no low-stock alert could ever be raised for it and the
    dashboard never showed its shortage."""
    admin, tag = await login("admin"), uuid.uuid4().hex[:6]
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": f"Factory {tag}", "product_no": f"FR-{tag}", "org_id": demo["FACTORY-SZ"]},
    )
    assert made.status_code == 201, made.text
    url = f"/stock/thresholds/{demo['STORE-HZ-01']}/{made.json()['id']}"
    try:
        answer = await client.put(url, headers=admin, json={"min_units": 5})
        assert answer.status_code == 200, answer.text
        assert answer.json()["below"] is True  # none on hand: the alert is raised
    finally:  # 0: never below (the alert, if raised, recovered)
        await client.put(url, headers=admin, json={"min_units": 0})


async def test_stock_org_filter_outside_the_subtree_answers_unknown_org_as_the_center_does(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: an agent asks for the stock of another agent's organisation, or of one that does not
    exist, through the stock endpoints: ``GET /stock?org_id=``, ``GET /stock/thresholds?org_id=``
    and ``PUT /stock/thresholds/{org}/{product}``. They answer 404 ``not_found``, while
    ``GET /center/stock?org_id=`` (the same stock, the same organisation) answers 404
    ``unknown_org``. README (Logistics, scoping): "an organisation outside the subtree as the
    organisation a document, sale or report is for (422 / 404 ``unknown_org``)": the stock
    report's organisation filter should answer that one stable code, as the center does, so a
    client handling ``unknown_org`` handles both endpoints."""
    gd = await login("gd_admin")
    product = (await client.get("/products", headers=gd, params={"q": "LM-SC-30"})).json()
    product_id = product["items"][0]["id"]
    for org in (demo["STORE-HZ-01"], 999_999_999):
        center = await client.get("/center/stock", headers=gd, params={"org_id": org})
        assert_error(center, 404, "unknown_org")
        assert_error(
            await client.get("/stock", headers=gd, params={"org_id": org}), 404, "unknown_org"
        )
        assert_error(
            await client.get("/stock/thresholds", headers=gd, params={"org_id": org}),
            404,
            "unknown_org",
        )
        assert_error(
            await client.put(
                f"/stock/thresholds/{org}/{product_id}", headers=gd, json={"min_units": 1}
            ),
            404,
            "unknown_org",
        )


async def test_a_threshold_set_to_what_it_is_writes_no_audit_row(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: ``PUT /stock/thresholds/{org}/{product}`` with the minimum in place wrote a
    ``set`` row, before and after the same, every time (and bumped the open low-stock alert
    as if the stock had been found short again). README: a call that changes nothing, as a
    points or rebate rule set to what it is, answers 200 as it is and writes no row."""
    admin, tag = await login("admin"), uuid.uuid4().hex[:6]
    made = await client.post(
        "/products", headers=admin, json={"name": f"Same {tag}", "product_no": f"SM-{tag}"}
    )
    assert made.status_code == 201, made.text
    org, product = demo["STORE-HZ-01"], made.json()["id"]
    url = f"/stock/thresholds/{org}/{product}"

    async def occurrences() -> list[int]:
        async with app.state.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT occurrences FROM alerts WHERE dedup_key = %s",
                    (f"low_stock:{org}:{product}",),
                )
            ).fetchall()
        return [r["occurrences"] for r in rows]

    try:
        first = await client.put(url, headers=admin, json={"min_units": 7})
        assert first.status_code == 200 and first.json()["below"] is True, first.text
        assert await occurrences() == [1]  # none on hand: the alert is raised
        again = await client.put(url, headers=admin, json={"min_units": 7})
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        assert len(await audit_rows(app, "stock_threshold", f"{org}:{product}", "set")) == 1
        assert await occurrences() == [1]
    finally:  # 0: never below (the alert recovered)
        await client.put(url, headers=admin, json={"min_units": 0})
    assert len(await audit_rows(app, "stock_threshold", f"{org}:{product}", "set")) == 2
