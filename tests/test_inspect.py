"""Anti-diversion inspection: verdicts on the shelf, the log, the event, summaries equal to a
recount, the leak report, alerts, scoping and bad input (SPEC D1–D5)."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers import activate, assert_error, issue_cases, issue_units, key_of, new_user
from tests.steady import clear_of_midnight
from tests.test_field_scoping import _login, _user
from tests.test_logistics import (  # noqa: F401 (deep_tree, via_branch: fixtures)
    _received,
    confirm,
    deep_tree,
    document,
    pack,
    via_branch,
)

_ids = itertools.count()
GPS = {"lat": 30.2592, "lng": 120.1303}
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module", autouse=True)
async def _close_diversion_alerts(app: Any) -> AsyncIterator[None]:
    """The session shares one database: other modules count the demo agents' alerts (e.g.
    test_verify expects none for AGENT-ZJ), so the alerts raised here go when the module ends."""
    yield
    async with app.state.pool.connection() as conn:
        await conn.execute("DELETE FROM alerts WHERE dedup_key LIKE 'inspect:%'")


@pytest.fixture
async def goods(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """30 units in 3 cases: case 0 shipped to AGENT-ZJ and on to STORE-NB-01 (a store of its distributor), case 1 shipped to
    AGENT-ZJ (at the agent), case 2 never shipped (still at the factory warehouse)."""
    goods = await pack(client, login, app, demo, 3)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    ship = await document(
        client, clerk, goods["cases"][:2], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await confirm(client, clerk, ship)).status_code == 200
    received = await document(client, agent, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, agent, received)).status_code == 200
    to_store = await document(
        client, agent, goods["cases"][:1], kind="outbound", counterparty_id=demo["STORE-NB-01"]
    )
    assert (await confirm(client, agent, to_store)).status_code == 200
    return {**goods, "ship_no": ship["doc_no"], "store_no": to_store["doc_no"]}


async def scan(client: Any, headers: Any, code: str, store: str | int, **extra: Any) -> Any:
    body: dict[str, Any] = {"code": code, "gps": GPS, **extra}
    if isinstance(store, int):
        body["store_id"] = store
    else:
        body["store_code"] = store
    return await client.post("/inspections", headers=headers, json=body)


def forge(serial: str) -> str:
    """The same serial with its last (tag) symbol changed."""
    return serial[:-1] + ("0" if serial[-1] != "0" else "1")


async def rollup(app: Any) -> int:
    from app.inspect.summaries import rollup_alone

    async with await psycopg.AsyncConnection.connect(
        app.state.db_url, autocommit=True, row_factory=dict_row
    ) as conn:
        return await rollup_alone(conn, wait=True) or 0


async def test_verdicts_on_the_shelf(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    units = goods["units"]
    inspector = await login("inspector")

    # the designated store: in channel
    at_home = await scan(client, inspector, units[0], demo["STORE-NB-01"], note="shelf 3")
    assert at_home.status_code == 201, at_home.text
    body = at_home.json()
    assert (body["result"], body["kind"], body["units"]) == ("in_channel", "unit", 1)
    item = body["items"][0]
    assert (item["result"], item["reason"]) == ("in_channel", "designated_store")
    assert item["shipped_to"]["id"] == demo["AGENT-ZJ"]
    assert item["designated_store"]["id"] == demo["STORE-NB-01"]
    assert item["document_no"] == goods["ship_no"]
    assert item["store_document_no"] == goods["store_no"]
    assert item["gps"] == GPS and item["note"] == "shelf 3"
    assert item["product"]["id"] == goods["product_id"]

    # another store of the same agent's area, by its nameplate code and as the whole QR content:
    # in channel
    qr = f"https://qr.example.com/c/{units[1]}"
    nearby = await scan(client, inspector, qr, "STORE-HZ-01")
    assert nearby.status_code == 201, nearby.text
    assert (nearby.json()["items"][0]["reason"], nearby.json()["result"]) == (
        "agent_area",
        "in_channel",
    )

    # a store of another agent: diverted, naming the agent and the document that shipped it
    away = await scan(client, inspector, units[2], "STORE-GZ-01", photo_url="https://p.ex/1.jpg")
    assert away.status_code == 201, away.text
    item = away.json()["items"][0]
    assert (item["result"], item["reason"]) == ("diverted", "outside_agent_area")
    assert item["shipped_to"]["id"] == demo["AGENT-ZJ"]
    assert item["shipped_to"]["province_name"] == "浙江省"
    assert item["document_no"] == goods["ship_no"]
    assert item["store"]["erp_code"] == "STORE-GZ-01" and item["photo_url"] == "https://p.ex/1.jpg"

    # activated, never shipped (still at the factory): unknown route
    unshipped = await scan(client, inspector, units[20], "STORE-HZ-01")
    assert unshipped.status_code == 201, unshipped.text
    item = unshipped.json()["items"][0]
    assert (item["result"], item["reason"]) == ("unknown_route", "never_shipped")
    assert item["shipped_to"] is None and item["document_no"] is None

    # a forged tag: counterfeit — recorded and alerted, answered 422
    fake = forge(units[3])
    forged = await scan(client, inspector, fake, "STORE-SZ-01")
    error = assert_error(forged, 422, "counterfeit")
    assert error["details"]["result"] == "counterfeit"
    assert error["details"]["items"][0]["reason"] == "forged"
    recorded = await client.get(
        "/inspections", headers=inspector, params={"scan_id": error["details"]["id"]}
    )
    assert recorded.json()["total"] == 1
    assert recorded.json()["items"][0]["serial"] == fake

    # every inspection is an event (bizStep inspecting) at the store, with the GPS read point
    events = await (
        await conn.execute(
            """SELECT e.biz_step, e.action, e.event_type, e.biz_location, e.read_point,
                      e.details ->> 'result' AS result
               FROM events e WHERE e.id = ANY(%s) ORDER BY e.id""",
            ([r.json()["event_id"] for r in (at_home, away, unshipped)],),
        )
    ).fetchall()
    await conn.commit()
    assert [(e["biz_step"], e["action"], e["event_type"]) for e in events] == [
        ("inspecting", "OBSERVE", "ObjectEvent")
    ] * 3
    assert [e["result"] for e in events] == ["in_channel", "diverted", "unknown_route"]
    assert events[1]["biz_location"] == demo["STORE-GZ-01"]
    assert events[1]["read_point"] == f"geo:{GPS['lat']},{GPS['lng']}"
    trace = (await client.get(f"/trace/{units[2]}", headers=await login("admin"))).json()
    assert trace["events"][-1]["biz_step"] == "inspecting"

    # the records, filtered (D3)
    mine = await client.get(
        "/inspections",
        headers=inspector,
        params={"store_id": demo["STORE-GZ-01"], "result": "diverted", "per_page": 200},
    )
    assert units[2] in {r["serial"] for r in mine.json()["items"]}
    assert all(r["store"]["id"] == demo["STORE-GZ-01"] for r in mine.json()["items"])
    by_product = await client.get(
        "/inspections",
        headers=inspector,
        params={"product_id": goods["product_id"], "inspector_id": item["inspector_id"]},
    )
    assert by_product.json()["total"] >= 4
    record = await client.get(f"/inspections/{away.json()['items'][0]['id']}", headers=inspector)
    assert record.status_code == 200 and record.json()["serial"] == units[2]


async def test_case_scan_inspects_every_unit(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    inspector = await login("inspector")
    response = await scan(client, inspector, goods["cases"][1], "STORE-SZ-01")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["kind"], body["units"], body["result"]) == ("case", 10, "diverted")
    assert body["counts"]["diverted"] == 10
    assert sorted(i["serial"] for i in body["items"]) == sorted(goods["units"][10:20])
    assert {i["case"] for i in body["items"]} == {goods["cases"][1]}
    assert {i["document_no"] for i in body["items"]} == {goods["ship_no"]}
    assert {i["store_document_no"] for i in body["items"]} == {None}  # never sent to a store
    # a case scanned as its GS1 element string, at the agent's own store: in channel
    home = await scan(client, inspector, f"(00){goods['cases'][1]}", "STORE-HZ-01")
    assert home.json()["counts"] == {
        "counterfeit": 0, "diverted": 0, "unknown_route": 0, "in_channel": 10
    }  # fmt: skip


async def test_diversion_alerts_for_brand_and_source_agent(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    inspector = await login("inspector")
    serial = goods["units"][5]
    first = await scan(client, inspector, serial, "STORE-GZ-01")
    assert first.status_code == 201, first.text

    async def alerts_of(user: str) -> list[dict[str, Any]]:
        response = await client.get(
            "/alerts", headers=await login(user), params={"kind": "diversion", "per_page": 200}
        )
        assert response.status_code == 200, response.text
        return [a for a in response.json()["items"] if a["serial"] == serial]

    brand = await alerts_of("admin")
    assert {a["org_id"] for a in brand} == {demo["BRAND-LUMI"], demo["AGENT-ZJ"]}
    assert {a["severity"] for a in brand} == {"critical"}
    assert all("Zhejiang" in a["message"] and goods["ship_no"] in a["message"] for a in brand)
    agent = await alerts_of("agent_admin")
    assert [a["org_id"] for a in agent] == [demo["AGENT-ZJ"]]
    assert agent[0]["details"]["store_id"] == demo["STORE-GZ-01"]
    assert await alerts_of("gd_admin") == []  # not their goods

    # the same unit scanned again: the open alert counts it, no new alert
    again = await scan(client, inspector, serial, "STORE-SZ-01")
    assert again.status_code == 201
    bumped = await alerts_of("agent_admin")
    assert len(bumped) == 1 and bumped[0]["occurrences"] == 2
    assert bumped[0]["details"]["store_id"] == demo["STORE-SZ-01"]

    # acknowledged through the alerts API
    acked = await client.post(
        f"/alerts/{bumped[0]['id']}/acknowledge", headers=await login("agent_admin")
    )
    assert acked.status_code == 200 and acked.json()["acknowledged_at"] is not None

    # never shipped: a warning to the brand only; a fake: critical to the brand
    unshipped = goods["units"][25]
    await scan(client, inspector, unshipped, "STORE-HZ-01")
    await scan(client, inspector, forge(goods["units"][26]), "STORE-HZ-01")
    everything = (
        await client.get(
            "/alerts", headers=await login("admin"), params={"kind": "diversion", "per_page": 200}
        )
    ).json()["items"]
    warning = [a for a in everything if a["serial"] == unshipped]
    assert [(a["org_id"], a["severity"]) for a in warning] == [(demo["BRAND-LUMI"], "warning")]
    assert not [a for a in everything if a["serial"] == forge(goods["units"][26])]
    fakes = (
        await client.get(
            "/alerts", headers=await login("admin"), params={"kind": "fake", "per_page": 200}
        )
    ).json()["items"]
    fake = [a for a in fakes if a["serial"] == forge(goods["units"][26])]
    assert [(a["severity"], a["details"]["result"]) for a in fake] == [("critical", "counterfeit")]
    # a probe: the same fake in other spellings opened an alert each; it bumps the open one
    forged = forge(goods["units"][26])
    for text in (forged.lower(), f"https://id.example.com/c/{forged}"):
        await scan(client, inspector, text, "STORE-HZ-01")
    fakes = (
        await client.get(
            "/alerts", headers=await login("admin"), params={"kind": "fake", "per_page": 200}
        )
    ).json()["items"]
    same = [a for a in fakes if a["serial"] and a["serial"].upper().endswith(forged.upper())]
    assert [a["occurrences"] for a in same] == [3], same


async def test_summaries_equal_a_recount(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    from app.inspect.summaries import recount

    inspector = await login("inspector")
    units = goods["units"]
    plan = [
        (units[0], "STORE-HZ-01"),
        (units[6], "STORE-GZ-01"),
        (units[7], "STORE-GZ-01"),
        (goods["cases"][1], "STORE-SZ-01"),
        (units[21], "STORE-NB-01"),
        (forge(units[22]), "STORE-GZ-01"),
    ]
    for code, store in plan:
        assert (await scan(client, inspector, code, store)).status_code in (201, 422)
    await rollup(app)
    assert await recount(conn) == []
    await conn.commit()

    # by store and day, against a count of the raw records
    admin = await login("admin")
    by_store = await client.get("/inspections/summary", headers=admin, params={"by": "store"})
    assert by_store.status_code == 200, by_store.text
    raw = await (
        await conn.execute(
            """SELECT (coalesce(sc.client_at, i.at) AT TIME ZONE 'Asia/Shanghai')::date::text
                          AS day, i.store_org_id AS store_org_id, i.result AS result,
                      count(*) AS n
               FROM inspections i JOIN inspection_scans sc ON sc.id = i.scan_id
               WHERE i.brand_id = %s GROUP BY 1, 2, 3""",
            (demo["BRAND-LUMI"],),
        )
    ).fetchall()
    await conn.commit()
    expected: Counter[tuple[str, int, str]] = Counter()
    for r in raw:
        expected[(r["day"], r["store_org_id"], r["result"])] += r["n"]
        expected[(r["day"], r["store_org_id"], "inspections")] += r["n"]
    served: Counter[tuple[str, int, str]] = Counter()
    for row in by_store.json()["stores"]:
        for key in ("inspections", "in_channel", "diverted", "unknown_route", "counterfeit"):
            if row[key]:
                served[(row["day"], row["store"]["id"], key)] += row[key]
    assert served == expected

    # the leak report: AGENT-ZJ's diverted units, where they were found
    leaks = await client.get("/inspections/summary", headers=admin, params={"by": "agent"})
    zj = next(a for a in leaks.json()["agents"] if a["agent"]["id"] == demo["AGENT-ZJ"])
    raw_leaks = await (
        await conn.execute(
            """SELECT store_org_id, count(*) AS n FROM inspections
               WHERE source_org_id = %s AND result = 'diverted' GROUP BY 1""",
            (demo["AGENT-ZJ"],),
        )
    ).fetchall()
    inspected = await (
        await conn.execute(
            "SELECT count(*) AS n FROM inspections WHERE source_org_id = %s", (demo["AGENT-ZJ"],)
        )
    ).fetchone()
    await conn.commit()
    assert {p["store"]["id"]: p["units"] for p in zj["found_at"]} == {
        r["store_org_id"]: r["n"] for r in raw_leaks
    }
    assert zj["diverted"] == sum(r["n"] for r in raw_leaks) >= 12
    assert zj["inspected"] == inspected["n"]
    assert {p["store"]["erp_code"] for p in zj["found_at"]} >= {"STORE-GZ-01", "STORE-SZ-01"}

    # a second roll-up finds nothing left; new scans are pending until rolled up
    assert await rollup(app) == 0
    await scan(client, inspector, units[8], "STORE-GZ-01")
    assert await recount(conn) == []  # pending deltas count as recorded
    await conn.commit()
    assert await rollup(app) == 1


async def test_the_summary_of_one_store(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """A probe: a brand's market supervisor opens 稽查汇总 for one store — the seed (二, 稽查汇总)
    queries it by period and by store — and ``GET /inspections/summary?store_id=`` ignored the
    store: every store of the brand was listed. ``store_id`` narrows both summaries to that
    store, as it narrows the records; a store outside the caller's area answers nothing."""
    inspector = await login("inspector")
    units = goods["units"]
    assert (await scan(client, inspector, units[2], "STORE-HZ-01")).status_code == 201
    assert (await scan(client, inspector, units[3], "STORE-GZ-01")).status_code == 201
    await rollup(app)
    admin, gz = await login("admin"), demo["STORE-GZ-01"]

    async def summary(headers: Any, by: str, store: int) -> dict[str, Any]:
        params = {"by": by, "store_id": store}
        response = await client.get("/inspections/summary", headers=headers, params=params)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    stores = (await summary(admin, "store", gz))["stores"]
    assert stores and {row["store"]["id"] for row in stores} == {gz}
    assert sum(row["diverted"] for row in stores) >= 1
    leaks = (await summary(admin, "agent", gz))["agents"]
    zj = next(a for a in leaks if a["agent"]["id"] == demo["AGENT-ZJ"])
    assert [p["store"]["id"] for p in zj["found_at"]] == [gz]
    # the Zhejiang agent's admin: the Guangzhou store is not of its area
    agent_admin = await login("agent_admin")
    assert (await summary(agent_admin, "store", gz))["stores"] == []


async def test_scoping(client: Any, login: Any, demo: Any, goods: dict[str, Any]) -> None:
    agent_admin = await login("agent_admin")
    name = f"zj_inspector_{secrets.token_hex(3)}"
    created = await client.post(
        "/users",
        headers=agent_admin,
        json={
            "org_id": demo["AGENT-ZJ"],
            "username": name,
            "password": "inspect-pass-1",
            "roles": ["inspector"],
        },
    )
    assert created.status_code == 201, created.text
    zj_inspector = await login(name, "inspect-pass-1")

    # an agent's inspector inspects only its own area's stores; outside it an organisation is
    # as unknown as a missing one (probe B: 403 not_your_area, and a name and kind for a
    # non-store, told the sibling's organisations apart)
    assert_error(
        await scan(client, zj_inspector, goods["units"][9], "STORE-GZ-01"), 422, "unknown_store"
    )
    missing = await scan(client, zj_inspector, goods["units"][9], "NO-SUCH-STORE")
    sibling = await scan(client, zj_inspector, goods["units"][9], "AGENT-GD")
    for answer in (missing, sibling):
        assert_error(answer, 422, "unknown_store")
    assert missing.json() == sibling.json()
    own = await scan(client, zj_inspector, goods["units"][9], "STORE-HZ-01")
    assert own.status_code == 201, own.text
    record_id = own.json()["items"][0]["id"]
    # a field rep has no inspection permission
    assert_error(
        await scan(client, await login("fieldrep"), goods["units"][9], "STORE-HZ-01"),
        403,
        "permission_denied",
    )

    # agent B reads neither agent A's records nor its scans
    gd = await login("gd_admin")
    assert_error(await client.get(f"/inspections/{record_id}", headers=gd), 404)
    assert_error(await client.get(f"/inspections/scans/{own.json()['id']}", headers=gd), 404)
    theirs = (await client.get("/inspections", headers=gd, params={"per_page": 200})).json()
    assert record_id not in {r["id"] for r in theirs["items"]}

    # a ZJ unit found at a GD store: GD sees it (its store), ZJ sees it (its goods)
    diverted = await scan(client, await login("inspector"), goods["units"][4], "STORE-GZ-01")
    diverted_id = diverted.json()["items"][0]["id"]
    assert (await client.get(f"/inspections/{diverted_id}", headers=gd)).status_code == 200
    zj_view = await client.get(
        "/inspections", headers=agent_admin, params={"source_id": demo["AGENT-ZJ"], "per_page": 200}
    )
    assert diverted_id in {r["id"] for r in zj_view.json()["items"]}
    assert all(r["shipped_to"]["id"] == demo["AGENT-ZJ"] for r in zj_view.json()["items"])
    # ... and the leak report of GD does not show ZJ, ZJ's shows only ZJ
    gd_leaks = (await client.get("/inspections/summary", headers=gd, params={"by": "agent"})).json()
    assert demo["AGENT-ZJ"] not in {a["agent"]["id"] for a in gd_leaks["agents"]}
    zj_stores = (
        await client.get("/inspections/summary", headers=agent_admin, params={"by": "store"})
    ).json()
    # ZJ's stores only: the demo's and those other tests opened under it (tests.test_inspect_batch)
    area: set[int] = set()
    for page in itertools.count(1):
        found = await client.get(
            "/orgs",
            headers=agent_admin,
            params={"root_id": demo["AGENT-ZJ"], "kind": "store", "page": page, "per_page": 200},
        )
        assert found.status_code == 200, found.text
        area |= {o["id"] for o in found.json()["items"]}
        if page * 200 >= found.json()["total"]:
            break
    assert {demo["STORE-HZ-01"], demo["STORE-NB-01"]} <= area and demo["STORE-GZ-01"] not in area
    assert {s["store"]["id"] for s in zj_stores["stores"]} <= area, zj_stores


async def test_a_source_agent_reads_only_its_own_goods_of_a_scan(
    client: Any, login: Any, demo: Any, app: Any, goods: dict[str, Any]
) -> None:
    """A case scanned at a store whose units came through two agents: the agent that is only the
    source of some reads, in the scan, the records of its own goods only — as the list shows
    them —, counted and judged over those; the store's side reads them all. Before, it read every
    record of the scan (probe)."""
    whole = await scan(client, await login("inspector"), goods["cases"][1], "STORE-HZ-01")
    assert whole.status_code == 201, whole.text
    scan_id = whole.json()["id"]
    serials = sorted(i["serial"] for i in whole.json()["items"])
    theirs = serials[:4]  # as if these had come through the Guangdong agent
    moved = "UPDATE inspections SET source_org_id = %s WHERE scan_id = %s AND serial = ANY(%s)"
    async with app.state.pool.connection() as conn:
        await conn.execute(moved, (demo["AGENT-GD"], scan_id, theirs))
    try:
        gd = await client.get(f"/inspections/scans/{scan_id}", headers=await login("gd_admin"))
        assert gd.status_code == 200, gd.text
        assert sorted(i["serial"] for i in gd.json()["items"]) == theirs
        assert (gd.json()["units"], sum(gd.json()["counts"].values())) == (4, 4)
        store_side = await client.get(
            f"/inspections/scans/{scan_id}", headers=await login("agent_admin")
        )
        assert store_side.json()["units"] == 10 and len(store_side.json()["items"]) == 10
    finally:  # as recorded again: the module's roll-up test recounts the records
        async with app.state.pool.connection() as conn:
            await conn.execute(moved, (demo["AGENT-ZJ"], scan_id, theirs))


async def test_csv_export_and_replay(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    inspector = await login("inspector")
    client_id = f"app-{next(_ids)}-{goods['batch_no']}"
    first = await scan(client, inspector, goods["units"][11], "STORE-GZ-01", client_id=client_id)
    assert first.status_code == 201, first.text
    again = await scan(client, inspector, goods["units"][11], "STORE-GZ-01", client_id=client_id)
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["id"] == first.json()["id"]
    # the same id with another code is refused, not answered with the first unit's verdict
    # (probe C: a counterfeit scanned under a reused id answered in_channel, unrecorded)
    forged = await scan(client, inspector, "Z" * 20, "STORE-GZ-01", client_id=client_id)
    assert_error(forged, 409, "client_id_reused")
    listed = await client.get(
        "/inspections", headers=inspector, params={"scan_id": first.json()["id"]}
    )
    assert listed.json()["total"] == 1  # recorded once

    exported = await client.get(
        "/inspections",
        headers=inspector,
        params={"format": "csv", "store_id": demo["STORE-GZ-01"], "result": "diverted"},
    )
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    total = (
        await client.get(
            "/inspections",
            headers=inspector,
            params={"store_id": demo["STORE-GZ-01"], "result": "diverted"},
        )
    ).json()["total"]
    assert len(rows) == total and total >= 1
    assert goods["units"][11] in {r["serial"] for r in rows}
    assert {r["shipped_to_code"] for r in rows} >= {"AGENT-ZJ"}


async def _store(client: Any, admin: dict[str, str], parent: int) -> int:
    """A store of its own (its records are the test's only)."""
    made = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "store",
            "name": f"Shelf {secrets.token_hex(3)}",
            "erp_code": f"IT-{secrets.token_hex(4)}",
            "parent_id": parent,
        },
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def test_an_offline_scan_is_listed_exported_and_evented_at_its_scan_time(
    client: Any, login: Any, app: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    """A scan queued offline carries the phone's time (``client_at``): it is shown beside the
    upload time, orders and filters the list, is a column of the export, is the event's
    eventTime (recordTime stays the server's) and puts the units on its business day in the
    summary. Before, an inspection had the upload time only."""
    inspector, admin = await login("inspector"), await login("admin")
    store = await _store(client, admin, demo["AGENT-GD"])
    await clear_of_midnight()  # the dashboard's 14 days read before and after the scans
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    hour_ago = now - timedelta(hours=1)
    day = (now - timedelta(days=2)).date()
    days_ago = datetime.combine(day, time(12), SHANGHAI)
    units = goods["units"][17:20]
    shown = (await client.get("/analytics/dashboard", headers=admin)).json()
    live = await scan(client, inspector, units[0], store)
    queued = await scan(client, inspector, units[1], store, client_at=hour_ago.isoformat())
    older = await scan(client, inspector, units[2], store, client_at=days_ago.isoformat())
    for made in (live, queued, older):
        assert made.status_code == 201, made.text
    body = queued.json()
    assert datetime.fromisoformat(body["client_at"]) == hour_ago
    assert datetime.fromisoformat(body["at"]) >= now  # the upload's
    assert datetime.fromisoformat(body["items"][0]["client_at"]) == hour_ago
    assert live.json()["client_at"] is None and live.json()["items"][0]["client_at"] is None
    again = await client.get(f"/inspections/scans/{body['id']}", headers=inspector)
    assert datetime.fromisoformat(again.json()["client_at"]) == hour_ago

    # newest first by the scan's time: uploaded last, the two days old scan is listed last
    listed = await client.get("/inspections", headers=inspector, params={"store_id": store})
    assert [r["serial"] for r in listed.json()["items"]] == units
    record = listed.json()["items"][1]
    assert datetime.fromisoformat(record["client_at"]) == hour_ago
    that_day = await client.get(
        "/inspections", headers=inspector, params={"store_id": store, "from": day, "to": day}
    )
    assert [r["serial"] for r in that_day.json()["items"]] == [units[2]]
    today = now.date().isoformat()
    recent = await client.get(
        "/inspections", headers=inspector, params={"store_id": store, "from": today}
    )
    assert units[2] not in {r["serial"] for r in recent.json()["items"]}

    # the export has the column
    exported = await client.get(
        "/inspections", headers=inspector, params={"store_id": store, "format": "csv"}
    )
    assert exported.status_code == 200, exported.text
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert [r["serial"] for r in rows] == units
    assert rows[0]["client_at"] == ""
    assert datetime.fromisoformat(rows[1]["client_at"]) == hour_ago
    assert datetime.fromisoformat(rows[2]["client_at"]) == days_ago

    # the event happened when the unit was scanned; it was recorded on upload
    event = await (
        await conn.execute(
            "SELECT event_uuid, event_time, tz_offset, record_time FROM events WHERE id = %s",
            (body["event_id"],),
        )
    ).fetchone()
    await conn.commit()
    assert event["event_time"] == hour_ago and event["tz_offset"] == "+08:00"
    assert event["record_time"] >= now
    epcis = await client.get(f"/epcis/events/urn:uuid:{event['event_uuid']}", headers=admin)
    assert epcis.status_code == 200, epcis.text
    assert datetime.fromisoformat(epcis.json()["eventTime"]) == hour_ago
    assert datetime.fromisoformat(epcis.json()["recordTime"]) >= now

    # the summary counts the units on the day they were scanned
    await rollup(app)
    summary = await client.get(
        "/inspections/summary", headers=admin, params={"by": "store", "from": day, "to": day}
    )
    cells = [
        (c["day"], c["inspections"]) for c in summary.json()["stores"] if c["store"]["id"] == store
    ]
    assert cells == [(day.isoformat(), 1)]
    # and so does the dashboard's count of diversions (it counted them on the upload's day)
    dashboard = (await client.get("/analytics/dashboard", headers=admin)).json()
    assert dashboard["days"] == shown["days"]  # not across midnight
    scanned = {day.isoformat(): 1, hour_ago.date().isoformat(): 1}
    scanned[now.date().isoformat()] = scanned.get(now.date().isoformat(), 0) + 1
    grew = {
        d: after - before
        for d, before, after in zip(
            shown["days"],
            shown["diversions"]["trend"],
            dashboard["diversions"]["trend"],
            strict=True,
        )
        if after != before
    }
    assert grew == scanned, grew
    from app.inspect.summaries import recount

    assert await recount(conn) == []
    await conn.commit()


async def test_a_scan_time_ahead_of_the_clock_or_too_old_is_refused(
    client: Any, login: Any, conn: Any, goods: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``client_at`` is checked by the field check-ins' rule (at most 10 minutes ahead, 30 days
    old, with its zone): 400 ``invalid_client_at``, nothing recorded — but only after a retry
    of a recorded scan is answered: its replay stands whatever the clock says now."""
    inspector = await login("inspector")
    unit, other = goods["units"][16], goods["units"][15]
    now = datetime.now(UTC)
    for bad in (now + timedelta(minutes=20), now - timedelta(days=31), "2026-12-01T10:00:00"):
        when = bad if isinstance(bad, str) else bad.isoformat()
        refused = await scan(client, inspector, unit, "STORE-HZ-01", client_at=when)
        error = assert_error(refused, 400, "invalid_client_at")
        assert error["details"][0]["field"] == "client_at"
    counted = await (
        await conn.execute("SELECT count(*) AS n FROM inspections WHERE serial = %s", (unit,))
    ).fetchone()
    await conn.commit()
    assert counted["n"] == 0
    ahead = (now + timedelta(minutes=5)).isoformat()  # a phone's clock a little ahead: fine
    cid = f"ahead-{next(_ids)}-{goods['batch_no']}"
    made = await scan(client, inspector, unit, "STORE-HZ-01", client_id=cid, client_at=ahead)
    assert made.status_code == 201, made.text

    from app.field import checkins

    monkeypatch.setattr(checkins, "CLOCK_SKEW", timedelta(0))  # now that time is too far ahead
    again = await scan(client, inspector, unit, "STORE-HZ-01", client_id=cid, client_at=ahead)
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"], again.text
    fresh = await scan(
        client, inspector, other, "STORE-HZ-01", client_id=cid + "-2", client_at=ahead
    )
    assert_error(fresh, 400, "invalid_client_at")


async def test_a_scan_recorded_before_client_at_existed_still_replays(
    client: Any, login: Any, conn: Any, goods: dict[str, Any]
) -> None:
    """The request's fingerprint leaves ``client_at`` out when it is not sent: a scan recorded
    (and fingerprinted) before the field existed, retried as it was, is answered, not 409."""
    inspector = await login("inspector")
    cid = f"old-{next(_ids)}-{goods['batch_no']}"
    body = {"code": goods["units"][14], "gps": GPS, "store_code": "STORE-HZ-01", "client_id": cid}
    made = await client.post("/inspections", headers=inspector, json=body)
    assert made.status_code == 201, made.text

    from app.inspect.schemas import InspectionIn

    def spec(f: Any) -> Any:
        if f.default is not msgspec.NODEFAULT:
            return (f.name, f.type, f.default)
        if f.default_factory is not msgspec.NODEFAULT:
            return (f.name, f.type, msgspec.field(default_factory=f.default_factory))
        return (f.name, f.type)

    fields = [spec(f) for f in msgspec.structs.fields(InspectionIn) if f.name != "client_at"]
    before = msgspec.defstruct("InspectionIn", fields, kw_only=True)  # the request's old shape
    old = msgspec.json.encode(msgspec.convert({**body, "client_id": None}, before))
    await conn.execute(
        "UPDATE inspection_scans SET client_hash = %s WHERE id = %s",
        (hashlib.sha256(old).digest(), made.json()["id"]),
    )
    await conn.commit()
    again = await client.post("/inspections", headers=inspector, json=body)
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"], again.text


async def test_bad_input_is_a_clear_4xx(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    inspector = await login("inspector")
    unit = goods["units"][12]
    assert_error(await scan(client, inspector, unit, 999_999_999), 422, "unknown_store")
    assert_error(await scan(client, inspector, unit, "NO-SUCH-STORE"), 422, "unknown_store")
    huge = await scan(client, inspector, unit, 2**63)  # probe AB: PostgreSQL's bigint error
    assert "store_id" in assert_error(huge, 400, "validation_failed")["message"]
    assert_error(await scan(client, inspector, unit, demo["AGENT-GD"]), 422, "not_a_store")
    no_store = await client.post("/inspections", headers=inspector, json={"code": unit, "gps": GPS})
    assert_error(no_store, 422, "no_store")
    for gps in ({"lat": 91, "lng": 0}, {"lat": 0, "lng": -181}, {"lat": "north", "lng": 0}):
        assert_error(await scan(client, inspector, unit, "STORE-HZ-01", gps=gps), 400)
    assert_error(
        await client.post(
            "/inspections", headers=inspector, json={"code": unit, "store_code": "STORE-HZ-01"}
        ),
        400,
    )  # no GPS
    assert_error(await scan(client, inspector, unit, "STORE-HZ-01", colour="red"), 400)
    assert_error(await scan(client, inspector, unit, "STORE-HZ-01", photo_url="ftp://x"), 400)
    assert_error(await scan(client, inspector, "", "STORE-HZ-01"), 400)
    malformed = await client.post(
        "/inspections",
        headers={**inspector, "Content-Type": "application/json"},
        content=b'{"code": "x", "gps": {',
    )
    assert_error(malformed, 400, "malformed_json")
    # a serial with a bad tag, a malformed serial, an SSCC of no batch: counterfeit, 422
    assert_error(await scan(client, inspector, forge(unit), "STORE-HZ-01"), 422, "counterfeit")
    bad = assert_error(await scan(client, inspector, "NOT-A-CODE", "STORE-HZ-01"), 422)
    assert bad["details"]["items"][0]["reason"] == "malformed"
    sscc = assert_error(await scan(client, inspector, "999999999999999997", "STORE-HZ-01"), 422)
    assert sscc["details"]["items"][0]["reason"] in ("unknown_case", "invalid_sscc")
    # queries
    assert_error(await client.get("/inspections", headers=inspector, params={"result": "x"}), 400)
    assert_error(
        await client.get("/inspections/summary", headers=inspector, params={"by": "x"}), 400
    )
    assert_error(
        await client.get(
            "/inspections/summary",
            headers=inspector,
            params={"from": "2026-12-01", "to": "2026-11-01"},
        ),
        400,
        "bad_period",
    )
    assert_error(
        await client.get("/inspections", headers=inspector, params={"from": "yesterday"}), 400
    )
    assert_error(await client.get("/inspections/999999999", headers=inspector), 404)
    assert_error(await client.get("/inspections"), 401)


async def test_a_scan_of_nothing_is_refused_not_recorded_as_a_counterfeit(
    client: Any, login: Any, conn: Any, goods: dict[str, Any]
) -> None:
    """A probe: a blank ``code`` — spaces, a lone BOM, zero-width marks, an ideographic space
    (what a scanner sends when it read nothing) — was recorded as a counterfeit unit with an
    empty serial, answered 422 ``counterfeit`` and raised a critical ``fake`` alert. A scan of
    nothing is no counterfeit: 400 ``validation_failed`` on ``code``, nothing recorded (in a
    batch too, where the app then sends each scan on its own). A code with something in it,
    however malformed, is read and judged as before."""
    inspector = await login("inspector")
    tag = secrets.token_hex(4)
    blanks = [" ", "\t\n", "\ufeff", "\u3000", "\u200b\ufeff ", "\u2060"]
    for i, blank in enumerate(blanks):
        answer = await scan(client, inspector, blank, "STORE-HZ-01", client_id=f"nil-{tag}-{i}")
        error = assert_error(answer, 400, "validation_failed")
        assert error["details"][0]["field"] == "code", error
    items = [{"code": c, "gps": GPS, "store_code": "STORE-HZ-01", "client_id": f"nil-{tag}-b{i}"}
             for i, c in enumerate([goods["units"][12], "\ufeff"])]  # fmt: skip
    batch = await client.post("/inspections/batch", headers=inspector, json={"items": items})
    assert_error(batch, 400, "validation_failed")
    recorded = await (
        await conn.execute(
            "SELECT count(*) AS n FROM inspection_scans WHERE client_id LIKE %s", (f"nil-{tag}-%",)
        )
    ).fetchone()
    assert recorded["n"] == 0
    # something to read, however malformed: counterfeit, as before (a BOM before it is dropped)
    for text in ("NOT-A-CODE", "\ufeff NOT-A-CODE", "-"):
        bad = assert_error(await scan(client, inspector, text, "STORE-HZ-01"), 422, "counterfeit")
        assert bad["details"]["items"][0]["reason"] == "malformed"
    genuine = await scan(client, inspector, "\ufeff" + goods["units"][12], "STORE-HZ-01")
    assert genuine.status_code == 201 and genuine.json()["result"] == "in_channel", genuine.text


async def test_the_worker_thread_rolls_up(
    client: Any, login: Any, app: Any, conn: Any, goods: dict[str, Any]
) -> None:
    import asyncio

    from app.inspect.summaries import recount
    from workers.inspect import InspectionRoller

    response = await scan(client, await login("inspector"), goods["units"][13], "STORE-GZ-01")
    assert response.status_code == 201
    roller = InspectionRoller()
    roller.after_worker_boot(None, None)  # type: ignore[arg-type]
    try:
        for _ in range(100):
            row = await (
                await conn.execute("SELECT count(*) AS n FROM inspection_deltas")
            ).fetchone()
            await conn.commit()
            if row["n"] == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        await asyncio.to_thread(roller.before_worker_shutdown, None, None)  # type: ignore[arg-type]
    assert row["n"] == 0
    assert await recount(conn) == []
    await conn.commit()


async def test_an_api_key_s_inspection_client_ids_are_its_own(
    client: Any, login: Any, demo: Any
) -> None:
    """Two keys of one organisation number their scans alike: the second key's scan under the
    first key's client id is a scan of its own (single and batch), and each key's re-send answers
    its own. Before, every key of the organisation shared the ids: the second key got the first
    key's verdict, or 409 client_id_reused (probe)."""
    admin = await login("admin")

    async def key() -> dict[str, str]:
        made = await client.post(
            "/api-keys",
            headers=admin,
            json={
                "name": f"scanner-{secrets.token_hex(3)}",
                "permissions": ["inspect.scan", "reports.read"],
                "org_id": demo["BRAND-LUMI"],
            },
        )
        assert made.status_code == 201, made.text
        return {"X-API-Key": made.json()["key"]}

    first_key, second_key = await key(), await key()
    cid = f"scan-{secrets.token_hex(4)}"
    body = {"code": "NOTACODE1", "gps": GPS, "store_id": demo["STORE-HZ-01"], "client_id": cid}
    first = await client.post("/inspections", headers=first_key, json=body)
    assert first.status_code == 422, first.text  # a counterfeit: recorded, answered 422
    mine = first.json()["error"]["details"]["id"]
    other = await client.post(
        "/inspections", headers=second_key, json={**body, "code": "NOTACODE2"}
    )
    assert other.status_code == 422, other.text
    theirs = other.json()["error"]["details"]["id"]
    assert theirs != mine
    again = await client.post("/inspections", headers=first_key, json=body)
    assert again.json()["error"]["details"]["id"] == mine
    batch = await client.post(
        "/inspections/batch",
        headers=second_key,
        json={"items": [{**body, "client_id": f"{cid}-b"}]},
    )
    assert batch.status_code == 200 and batch.json()["recorded"] == 1, batch.text
    reused = await client.post(
        "/inspections/batch",
        headers=first_key,
        json={"items": [{**body, "client_id": f"{cid}-b"}]},
    )
    assert reused.json()["recorded"] == 1, reused.text  # a scan of its own, not a replay
    ids = {b.json()["items"][0]["scan"]["id"] for b in (batch, reused)}
    assert len(ids) == 2


async def test_an_inspection_through_an_api_key_names_its_maker_on_its_event(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe: the brand's market-check tool (an API key the admin made, ``inspect.scan``)
    scanned at a store, one scan and a batch: each inspection's EPCIS event had ``recorded_by``
    null — an observation by nobody in the event log (the scan's row names the key). The events
    name the person behind the key now (``Principal.person``); the scan keeps no inspector (a
    key's client ids are the key's own)."""
    admin = await login("admin")
    key = await key_of(client, admin, ["inspect.scan", "reports.read"])
    body = {"code": "NOTACODE3", "gps": GPS, "store_id": demo["STORE-HZ-01"]}
    single = await client.post("/inspections", headers=key, json=body)
    assert single.status_code == 422, single.text  # a counterfeit: recorded, answered 422
    item = {**body, "client_id": f"key-{secrets.token_hex(4)}"}
    batch = await client.post("/inspections/batch", headers=key, json={"items": [item]})
    assert batch.status_code == 200 and batch.json()["recorded"] == 1, batch.text
    scans = [single.json()["error"]["details"]["id"], batch.json()["items"][0]["scan"]["id"]]
    rows = await (
        await conn.execute(
            """SELECT s.inspector_id, e.recorded_by FROM inspection_scans s
                 JOIN events e ON e.id = s.event_id WHERE s.id = ANY(%s)""",
            (scans,),
        )
    ).fetchall()
    await conn.commit()
    maker = (await client.get("/auth/me", headers=admin)).json()["user_id"]
    assert [(r["inspector_id"], r["recorded_by"]) for r in rows] == [(None, maker)] * 2, rows


async def test_an_inspections_read_point_is_a_geo_uri_in_plain_decimals(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe: the read point was ``f"geo:{lat},{lng}"``, and a coordinate near zero was
    written in exponent form (``geo:1e-05,…``), no geo URI (RFC 5870) at all. Each coordinate
    is plain decimal now (``app.events.builders.geo_uri``), the others written as before; a
    single scan's event and a batch's alike."""
    inspector = await login("inspector")
    gps = {"lat": 0.00001, "lng": -1.5e-7}
    body = {"code": "NOTACODE4", "gps": gps, "store_id": demo["STORE-HZ-01"]}
    single = await client.post("/inspections", headers=inspector, json=body)
    assert single.status_code == 422, single.text  # a counterfeit: recorded, answered 422
    item = {**body, "gps": {"lat": -33.8688197, "lng": 151.0}, "client_id": f"geo-{next(_ids)}"}
    batch = await client.post("/inspections/batch", headers=inspector, json={"items": [item]})
    assert batch.status_code == 200 and batch.json()["recorded"] == 1, batch.text
    scans = [single.json()["error"]["details"]["id"], batch.json()["items"][0]["scan"]["id"]]
    rows = await (
        await conn.execute(
            """SELECT e.read_point FROM inspection_scans s
                 JOIN events e ON e.id = s.event_id WHERE s.id = ANY(%s) ORDER BY s.id""",
            (scans,),
        )
    ).fetchall()
    await conn.commit()
    assert [r["read_point"] for r in rows] == [
        "geo:0.00001,-0.00000015",
        "geo:-33.8688197,151.0",
    ], rows


async def moved_by_import(client: Any, admin: dict[str, str], name: str, org_erp: str) -> None:
    """The brand moves user ``name`` to organisation ``org_erp`` by the user import (which ends
    the user's sessions); the user's ERP code is ``MV-<name>``, so a second move updates it."""
    row = {"erp_code": f"MV-{name}", "username": name, "org_erp_code": org_erp}
    imported = await client.post("/users/import", headers=admin, json={"items": [row]})
    assert imported.status_code == 200 and imported.json()["rejected"] == 0, imported.text


async def test_a_moved_inspectors_retried_scan_is_replayed_not_recorded_twice(
    client: Any, login: Any, demo: Any, conn: Any, goods: dict[str, Any]
) -> None:
    """A probe: an inspector of AGENT-ZJ scans at STORE-NB-01 under client id c, the answer
    lost; the brand moves the inspector by the user import, and the app, signed in again,
    re-sends the queued scan under c. Moved to the brand's own organisation, the re-send was
    recorded a second time (201: the unit counted twice in the records, the summary and the
    audit); moved to AGENT-GD, it was 422 ``unknown_store`` and the app dropped a scan the server
    holds. The replay lookup, its lock and the unique key were the inspector's *current*
    organisation's. An inspector's client ids are the inspector's own: the re-send answers the
    first scan (200, replayed), recorded once, after either move."""
    admin = await login("admin")
    name = f"pi{secrets.token_hex(4)}"
    _, inspector = await _user(client, admin, demo["AGENT-ZJ"], ["inspector"], name)
    body = {
        "code": goods["units"][3],
        "gps": GPS,
        "store_id": demo["STORE-NB-01"],
        "client_id": f"mv-{secrets.token_hex(4)}",
    }
    first = await client.post("/inspections", headers=inspector, json=body)
    assert first.status_code == 201, first.text
    for org in ("BRAND-LUMI", "AGENT-GD"):
        await moved_by_import(client, admin, name, org)
        inspector = await _login(client, name)
        again = await client.post("/inspections", headers=inspector, json=body)
        assert again.status_code == 200, (org, again.text)
        assert (again.json()["id"], again.json()["replayed"]) == (first.json()["id"], True)
    rows = await (
        await conn.execute(
            "SELECT count(*) AS n FROM inspection_scans WHERE client_id = %s", (body["client_id"],)
        )
    ).fetchone()
    assert rows["n"] == 1, f"the retried scan was recorded {rows['n']} times"


async def test_goods_the_agent_shipped_into_another_area_are_diverted_there(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """A probe: AGENT-ZJ shipped its goods to a Guangdong store itself; that store became the
    units' "designated store", and the inspection there answered in channel (窜货 unseen)."""
    agent, gz = await login("agent_clerk"), await login("gz_clerk")
    cross = await document(
        client, agent, goods["cases"][1:2], kind="outbound", counterparty_id=demo["STORE-GZ-01"]
    )
    assert (await confirm(client, agent, cross)).status_code == 200
    received = await document(client, gz, kind="inbound", shipment_id=cross["id"])
    assert (await confirm(client, gz, received)).status_code == 200
    found = await scan(client, await login("inspector"), goods["units"][10], "STORE-GZ-01")
    assert found.status_code == 201, found.text
    item = found.json()["items"][0]
    assert (item["result"], item["reason"]) == ("diverted", "outside_agent_area")
    assert item["shipped_to"]["id"] == demo["AGENT-ZJ"]


FULL_WIDTH = str.maketrans(
    "0123456789ABCDEFGHJKMNPQRSTVWXYZ",
    "０１２３４５６７８９ＡＢＣＤＥＦＧＨＪＫＭＮＰＱＲＳＴＶＷＸＹＺ",
)


async def test_a_full_width_serial_is_read_as_the_unit_not_as_a_counterfeit(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """A probe: a scanner behind a Chinese input method in full-width mode typed a genuine
    serial, read by /v1/verify but recorded here as a counterfeit (and /trace answered 400)."""
    serial = goods["units"][1]  # shipped to AGENT-ZJ: in channel at STORE-HZ-01
    typed = serial.translate(FULL_WIDTH)
    assert (await client.post("/v1/verify", json={"serial": typed})).json()["serial"] == serial
    inspector = await login("inspector")
    response = await scan(client, inspector, typed, "STORE-HZ-01")
    assert response.status_code == 201, response.text
    assert response.json()["result"] == "in_channel"
    assert response.json()["items"][0]["serial"] == serial
    traced = await client.get(f"/trace/{typed}", headers=await login("admin"))
    assert traced.status_code == 200, traced.text


async def test_an_sscc_in_full_width_digits_or_after_a_bom_is_read_as_the_case(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """A probe: a case code in full-width digits, or after a BOM, was recorded as one
    counterfeit code with a fake alert instead of the case and its 10 units."""
    case = goods["cases"][1]  # at AGENT-ZJ: its 10 units in channel at STORE-HZ-01
    inspector = await login("inspector")
    for text in (
        case.translate(FULL_WIDTH),
        "（００）" + case.translate(FULL_WIDTH),
        "\ufeff" + case,
    ):
        response = await scan(client, inspector, text, "STORE-HZ-01")
        assert response.status_code == 201, (text, response.text)
        body = response.json()
        assert (body["kind"], body["units"], body["result"]) == ("case", 10, "in_channel"), text


async def test_a_digital_link_with_another_products_gtin_is_wrong_product_for_any_unit(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a counterfeiter printed the serum's GTIN with the genuine serial of a sun-cream
    unit whose batch was issued without a product (the product given on the line). /v1/verify
    called it ``wrong_product``, but every read through ``read_codes`` — an inspection, a
    document — took it for the genuine unit: the GTIN was compared with the batch's product
    only. The unit's activated product decides (its batch's when it was never activated)."""
    scheme = app.state.scheme
    planner, inspector = await login("planner"), await login("inspector")
    clerk = await login("clerk")
    with_product, product_id = await issue_units(client, login, demo, 1)
    bare = await client.post(
        "/batches", headers=planner, json={"size": 1, "printer_id": demo["PRINTER-SH"]}
    )
    assert bare.status_code == 201, bare.text
    control, unit = scheme.serial(with_product, 0), scheme.serial(bare.json()["batch_no"], 0)
    await activate(client, login, [control, unit], product_id, line="ZG1")  # both sun cream
    serum = "06901234000016"  # the demo serum's GTIN (another product)

    async def reads(serial: str) -> tuple[Any, ...]:
        link = f"https://qr.example.com/01/{serum}/21/{serial}"
        verified = await client.post("/v1/verify", json={"serial": link, "pin": scheme.pin(serial)})
        inspected = await scan(client, inspector, link, "STORE-HZ-01")
        doc = await document(client, clerk, kind="factory_inbound")
        added = await client.post(
            f"/documents/{doc['id']}/codes", headers=clerk, json={"codes": [link]}
        )
        return (
            verified.json()["reason"],
            inspected.status_code,
            added.json()["items"][0].get("reason"),
        )

    assert await reads(control) == ("wrong_product", 422, "wrong_product")
    assert await reads(unit) == ("wrong_product", 422, "wrong_product")


async def test_a_diverted_unit_names_its_own_shipment_not_one_of_a_case_it_had_left(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a unit taken out of its case at the factory and shipped alone later was
    reported (record, alert, CSV) as shipped by the case's document, which never held it."""
    goods = await pack(client, login, app, demo, 1)
    units, cases = goods["units"], goods["cases"]
    clerk, operator = await login("clerk"), await login("operator")
    inbound = await document(client, clerk, cases, kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    out = await client.post(
        "/packing/unpack",
        headers=operator,
        json={"parent": cases[0], "children": [units[0]], "reason": "rework"},
    )
    assert out.status_code == 200, out.text
    the_case = await document(
        client, clerk, cases, kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await confirm(client, clerk, the_case)).status_code == 200
    the_unit = await document(
        client, clerk, [units[0]], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await confirm(client, clerk, the_unit)).status_code == 200
    found = await scan(client, await login("inspector"), units[0], "STORE-GZ-01")
    assert found.status_code == 201, found.text
    item = found.json()["items"][0]
    assert item["result"] == "diverted"
    assert item["document_no"] == the_unit["doc_no"], (the_case["doc_no"], the_unit["doc_no"])


async def _at_agent_zj(
    client: Any, login: Any, app: Any, demo: Any, receiver: str
) -> tuple[list[str], list[str], dict[str, Any]]:
    """A case packed, taken into the factory, shipped to AGENT-ZJ and received there by
    ``receiver``: its units, the case, the factory's outbound."""
    packed = await pack(client, login, app, demo, 1)
    cases, clerk = packed["cases"], await login("clerk")
    inbound = await document(client, clerk, cases, kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    ship = await document(client, clerk, cases, kind="outbound", counterparty_id=demo["AGENT-ZJ"])
    assert (await confirm(client, clerk, ship)).status_code == 200
    agent = await login(receiver)
    received = await document(client, agent, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, agent, received)).status_code == 200
    return packed["units"], cases, ship


async def test_a_unit_relabelled_in_its_case_at_the_agent_names_the_cases_shipment(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a replacement takes over the old unit's state and its stay in the case; found
    diverted, it named no document (its stay began at the replacing)."""
    from tests.helpers import issue_units

    units, _, ship = await _at_agent_zj(client, login, app, demo, "agent_clerk")
    batch_no, _ = await issue_units(client, login, demo, 1)
    new = app.state.scheme.serial(batch_no, 0)
    relabelled = await client.post(
        "/packing/replace",
        headers=await login("admin"),
        json={"old": units[0], "new": new, "reason": "label torn"},
    )
    assert relabelled.status_code == 200, relabelled.text
    inspector = await login("inspector")
    sibling = (await scan(client, inspector, units[1], "STORE-GZ-01")).json()["items"][0]
    assert sibling["document_no"] == ship["doc_no"]
    found = await scan(client, inspector, new, "STORE-GZ-01")
    assert found.status_code == 201, found.text
    item = found.json()["items"][0]
    assert (item["result"], item["shipped_to"]["id"]) == ("diverted", demo["AGENT-ZJ"])
    assert item["document_no"] == ship["doc_no"], item


async def test_a_unit_relabelled_loose_at_the_agent_names_the_shipment_that_brought_it(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a loose unit at the agent relabelled (P5: the new code takes over its channel
    and shipping time) and shipped on to a store was in channel there, but its record named no
    document where its sibling's named the factory's outbound (D2: the leak report loses it) —
    the shipments were searched from the new code only. They are searched from each code it
    replaced, up to the replacement, and back through a relabel of a relabel; in the bulk upload
    too."""
    units, cases, ship = await _at_agent_zj(client, login, app, demo, "agent_admin")
    agent = await login("agent_admin")
    out = await client.post(
        "/packing/unpack", headers=agent, json={"parent": cases[0], "reason": "pick"}
    )
    assert out.status_code == 200, out.text
    batch_no, _ = await issue_units(client, login, demo, 2)
    first, new = (app.state.scheme.serial(batch_no, i) for i in range(2))
    admin = await login("admin")
    for old, code in ((units[0], first), (first, new)):  # relabelled, then again
        body = {"old": old, "new": code, "reason": "label torn"}
        assert (await client.post("/packing/replace", headers=admin, json=body)).status_code == 200
    on = await document(
        client, agent, [new, units[1]], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    assert (await confirm(client, agent, on)).status_code == 200
    store = await login("store_clerk")
    got = await document(client, store, kind="inbound", shipment_id=on["id"])
    assert (await confirm(client, store, got)).status_code == 200
    inspector, tag = await login("inspector"), f"relabelled-{secrets.token_hex(4)}"
    named = []
    for code in (units[1], new):
        found = await scan(client, inspector, code, "STORE-HZ-01")
        assert found.status_code == 201, found.text
        named.append(found.json()["items"][0])
    bulk = await client.post(
        "/inspections/batch",
        headers=inspector,
        json={
            "items": [{"code": new, "gps": GPS, "store_id": demo["STORE-HZ-01"], "client_id": tag}]
        },
    )
    assert bulk.status_code == 200 and bulk.json()["recorded"] == 1, bulk.text
    named.append(bulk.json()["items"][0]["scan"]["items"][0])
    expected = ("in_channel", "designated_store", ship["doc_no"], on["doc_no"])
    for item in named:
        assert (
            item["result"],
            item["reason"],
            item["document_no"],
            item["store_document_no"],
        ) == expected, item


async def _one_case_in_stock(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """One case of 10 units, received in the factory warehouse."""
    goods = await pack(client, login, app, demo, 1)
    clerk = await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    return goods


async def _ship(client: Any, login: Any, demo: Any, case: str, to: str, receiver: str) -> str:
    """The factory warehouse ships ``case`` to ``to``, whose ``receiver`` receives it; the
    shipment's number."""
    clerk, who = await login("clerk"), await login(receiver)
    ship = await document(client, clerk, [case], kind="outbound", counterparty_id=demo[to])
    assert (await confirm(client, clerk, ship)).status_code == 200
    received = await document(client, who, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, who, received)).status_code == 200
    return str(ship["doc_no"])


async def _return(client: Any, login: Any, demo: Any, case: str, sender: str) -> None:
    """``sender`` returns ``case`` to the factory warehouse, which receives it."""
    clerk, who = await login("clerk"), await login(sender)
    back = await document(client, who, [case], kind="return", counterparty_id=demo["WH-SZ-01"])
    assert (await confirm(client, who, back)).status_code == 200
    home = await document(client, clerk, kind="inbound", shipment_id=back["id"])
    assert (await confirm(client, clerk, home)).status_code == 200


async def test_a_diverted_unit_names_the_shipment_that_gave_it_to_the_agent_now(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the factory ships a case to the Zhejiang agent (A); it comes back; it goes to
    the Guangdong agent (B) and comes back; it goes to the Zhejiang agent again (C). A unit of
    it found at a Guangdong store is diverted, shipped to Zhejiang by C — the shipment that
    designated it to Zhejiang now. The answer (record, alert, CSV) named A, a closed shipment
    whose goods the factory had received back: ``_documents`` kept the unit's first shipment to
    the agent, where it now keeps the latest one from the brand's stock."""
    goods = await _one_case_in_stock(client, login, app, demo)
    case, unit = goods["cases"][0], goods["units"][0]
    a = await _ship(client, login, demo, case, "AGENT-ZJ", "agent_clerk")
    await _return(client, login, demo, case, "agent_clerk")
    await _ship(client, login, demo, case, "AGENT-GD", "gd_admin")
    await _return(client, login, demo, case, "gd_admin")
    c = await _ship(client, login, demo, case, "AGENT-ZJ", "agent_clerk")
    found = await scan(client, await login("inspector"), unit, "STORE-GZ-01")
    assert found.status_code == 201, found.text
    record = found.json()["items"][0]
    assert (record["result"], record["shipped_to"]["erp_code"]) == ("diverted", "AGENT-ZJ")
    assert record["document_no"] == c, f"named {record['document_no']}: A={a}, C={c}"


async def test_goods_the_agent_returned_to_the_factory_are_not_its_leak(
    client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: the Zhejiang agent receives a case (A) and returns it to the factory warehouse,
    which receives it: the brand's own stock again. A unit of it turns up on a Guangdong store's
    shelf. The inspection called it diverted from Zhejiang (document A), raised a critical
    diversion alert to Zhejiang and counted it in Zhejiang's leak report, blaming the agent for
    goods the factory has held since. It is ``unknown_route`` (``returned_to_stock``): no agent
    named, alerted or counted, as for goods that left the brand's stock without a shipment."""
    goods = await _one_case_in_stock(client, login, app, demo)
    case, units = goods["cases"][0], goods["units"]
    await _ship(client, login, demo, case, "AGENT-ZJ", "agent_clerk")
    inspector = await login("inspector")
    # while the return is on its way back the agent still holds the goods: its leak
    clerk, agent = await login("clerk"), await login("agent_clerk")
    back = await document(client, agent, [case], kind="return", counterparty_id=demo["WH-SZ-01"])
    assert (await confirm(client, agent, back)).status_code == 200
    on_the_way = (await scan(client, inspector, units[1], "STORE-GZ-01")).json()["items"][0]
    assert (on_the_way["result"], on_the_way["shipped_to"]["erp_code"]) == (
        "diverted",
        "AGENT-ZJ",
    )
    home = await document(client, clerk, kind="inbound", shipment_id=back["id"])
    assert (await confirm(client, clerk, home)).status_code == 200
    for store in ("STORE-GZ-01", "STORE-HZ-01"):  # anywhere: the brand holds them
        found = await scan(client, inspector, units[0], store)
        assert found.status_code == 201, found.text
        record = found.json()["items"][0]
        assert (record["result"], record["reason"]) == ("unknown_route", "returned_to_stock")
        assert record["shipped_to"] is None and record["document_no"] is None, record
        assert record["designated_store"] is None, record
        alerted = await (
            await conn.execute(
                "SELECT org_id, message FROM alerts WHERE (details ->> 'inspection')::bigint = %s",
                (found.json()["id"],),
            )
        ).fetchall()
        assert [a["org_id"] for a in alerted] == [demo["BRAND-LUMI"]], alerted
        assert alerted[0]["message"].startswith("Returned to the brand's stock"), alerted
    # shipped out again, it is the new agent's
    await _ship(client, login, demo, case, "AGENT-GD", "gd_admin")
    again = (await scan(client, inspector, units[0], "STORE-GZ-01")).json()["items"][0]
    assert (again["result"], again["shipped_to"]["erp_code"]) == ("in_channel", "AGENT-GD")


async def test_goods_the_factory_ships_to_an_agents_warehouse_are_in_that_agents_area(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: an agent may have warehouses (SPEC U1) and any organisation of the brand may be
    a counterparty; a unit's designated channel is the organisation the factory first shipped it
    to: the agent. The outbound designated the counterparty itself, so goods the factory
    shipped to AGENT-ZJ's own warehouse had the warehouse as their "agent" — a subtree holding
    no store —, and once the agent shipped them on to its own store STORE-HZ-01, the inspection
    there answered ``diverted`` / ``outside_agent_area`` (a diversion alert against the agent,
    and its rebate claims refused alike). A shipment designates the nearest organisation of the
    sales channel at or above its receiver now: the agent, ``in_channel``."""
    admin = await login("admin")
    tag = f"{secrets.token_hex(3)}{next(_ids)}"
    made = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "warehouse",
            "name": f"Agent warehouse {tag}",
            "erp_code": f"AWH-{tag}",
            "parent_id": demo["AGENT-ZJ"],
        },
    )
    assert made.status_code == 201, made.text
    warehouse = made.json()["id"]
    goods = await pack(client, login, app, demo, 1)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    store = await login("store_clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    ship = await document(client, clerk, goods["cases"], kind="outbound", counterparty_id=warehouse)
    assert (await confirm(client, clerk, ship)).status_code == 200
    received = await document(
        client, agent, kind="inbound", org_id=warehouse, shipment_id=ship["id"]
    )
    assert (await confirm(client, agent, received)).status_code == 200
    on = await document(
        client,
        agent,
        goods["cases"],
        kind="outbound",
        org_id=warehouse,
        counterparty_id=demo["STORE-HZ-01"],
    )
    assert (await confirm(client, agent, on)).status_code == 200
    at_store = await document(client, store, kind="inbound", shipment_id=on["id"])
    assert (await confirm(client, store, at_store)).status_code == 200
    scan = await client.post(
        "/inspections",
        headers=await login("inspector"),
        json={"code": goods["units"][0], "store_id": demo["STORE-HZ-01"], "gps": GPS},
    )
    assert scan.status_code == 201, scan.text
    item = scan.json()["items"][0]
    assert (item["result"], item["reason"]) == ("in_channel", "designated_store"), item
    assert item["shipped_to"]["id"] == demo["AGENT-ZJ"], item["shipped_to"]
    # the shipment that brought them into the agent's area, and the one to the store
    assert (item["document_no"], item["store_document_no"]) == (ship["doc_no"], on["doc_no"])


async def test_goods_shipped_straight_to_an_agents_store_are_in_channel_in_its_area(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: the factory ships a case straight to STORE-HZ-01, a store of AGENT-ZJ (直供门店);
    a unit of it is then found at STORE-NB-01, a store of ZJ's own distributor — inside ZJ's
    sales area (SPEC D1: the agent and store from the outbound against the store's organisation;
    README: in_channel in "the designated agent's subtree"). It was answered ``diverted`` /
    ``outside_agent_area`` with the *store* as the agent it was shipped to, and a critical
    diversion alert opened for that store as if it were the agent: ``_judge`` took the
    designated channel's own subtree as the area, and for a direct-to-store shipment the channel
    is the store itself. The area is the designated agent's now — the nearest agent at or above
    the channel: in_channel there (a case shipped straight to DIST-NB as well, at ZJ's own
    store), and a diversion elsewhere is the agent's, alerted to it."""
    g = await pack(client, login, app, demo, 2)
    clerk = await login("clerk")
    inbound = await document(client, clerk, g["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    for case, to in zip(g["cases"], ("STORE-HZ-01", "DIST-NB"), strict=True):
        ship = await document(client, clerk, [case], kind="outbound", counterparty_id=demo[to])
        assert (await confirm(client, clerk, ship)).status_code == 200
    inspector = await login("inspector")
    home = await scan(client, inspector, g["units"][0], "STORE-HZ-01")
    item = home.json()["items"][0]
    assert (item["result"], item["reason"]) == ("in_channel", "designated_store"), item
    for code, where in ((g["units"][1], "STORE-NB-01"), (g["units"][10], "STORE-HZ-01")):
        nearby = await scan(client, inspector, code, where)
        assert nearby.status_code == 201, nearby.text
        item = nearby.json()["items"][0]
        assert (item["result"], item["reason"]) == ("in_channel", "agent_area"), (where, item)
        assert item["shipped_to"]["id"] == demo["AGENT-ZJ"], item["shipped_to"]
    away = await scan(client, inspector, g["units"][2], "STORE-GZ-01")
    assert away.status_code == 201, away.text
    item = away.json()["items"][0]
    assert (item["result"], item["shipped_to"]["id"]) == ("diverted", demo["AGENT-ZJ"]), item
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT org_id FROM alerts WHERE details ->> 'inspection' = %s",
                (str(away.json()["id"]),),
            )
        ).fetchall()
    assert sorted(r["org_id"] for r in rows) == sorted([demo["BRAND-LUMI"], demo["AGENT-ZJ"]])


async def test_one_diverted_scan_reaches_the_brands_webhook_once(
    client: Any, login: Any, app: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """A probe: a brand's ERP subscribed to ``alert.diversion`` got TWO deliveries for one
    diverted unit found on a Guangdong shelf — the brand's alert and the twin raised for
    AGENT-ZJ, each an event fanned out to every subscription above its organisation — and opened
    two tickets. Now each subscription gets one per finding: the brand its own alert, the agent
    its own; and after the agent acknowledged its alert, a scan again (the brand's open alert
    counted, the agent's raised anew) sends the agent its new one and the brand nothing."""
    admin, agent = await login("admin"), await login("agent_admin")
    subs: dict[int, int] = {}
    for headers, org in ((admin, demo["BRAND-LUMI"]), (agent, demo["AGENT-ZJ"])):
        made = await client.post(
            "/webhooks/subscriptions",
            headers=headers,
            json={"url": "https://hooks.example.com/tc", "event_kinds": ["alert.diversion"]},
        )
        assert made.status_code == 201 and made.json()["org_id"] == org, made.text
        subs[org] = made.json()["id"]
    serial = goods["units"][12]  # case 1, at AGENT-ZJ

    async def delivered() -> dict[int, list[int]]:
        """The organisation of the alert of each delivery, by the subscription's organisation."""
        async with app.state.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    """SELECT d.subscription_id, (e.data ->> 'org_id')::bigint AS org_id
                         FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
                        WHERE d.subscription_id = ANY(%s) AND e.data ->> 'serial' = %s
                        ORDER BY d.id""",
                    (list(subs.values()), serial),
                )
            ).fetchall()
        return {
            org: [r["org_id"] for r in rows if r["subscription_id"] == sub]
            for org, sub in subs.items()
        }

    try:
        inspector = await login("inspector")
        found = await scan(client, inspector, serial, "STORE-GZ-01")
        assert found.status_code == 201 and found.json()["result"] == "diverted", found.text
        brand, zj = demo["BRAND-LUMI"], demo["AGENT-ZJ"]
        assert await delivered() == {brand: [brand], zj: [zj]}
        alerts = (await client.get("/alerts", headers=agent, params={"per_page": 200})).json()
        mine = [a for a in alerts["items"] if a["serial"] == serial]
        assert len(mine) == 1
        acked = await client.post(f"/alerts/{mine[0]['id']}/acknowledge", headers=agent)
        assert acked.status_code == 200, acked.text
        assert (await scan(client, inspector, serial, "STORE-SZ-01")).status_code == 201
        assert await delivered() == {brand: [brand], zj: [zj, zj]}
    finally:
        async with app.state.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM webhook_subscriptions WHERE id = ANY(%s)", (list(subs.values()),)
            )


async def test_a_case_digital_link_with_a_fragment_is_read_as_the_case(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """A probe: a genuine case scanned as a GS1 Digital Link with a fragment
    (``https://id.example.com/00/{sscc}#shelf``; a query was cut already) was read as a unit's
    serial: recorded as a counterfeit ``malformed`` unit, 422, and a critical ``fake`` alert
    against the brand's own goods (``sscc_from_scan`` kept the fragment)."""
    inspector = await login("inspector")
    case = goods["cases"][1]  # shipped to AGENT-ZJ: in channel at its own store
    response = await scan(
        client, inspector, f"https://id.example.com/00/{case}#shelf", "STORE-HZ-01"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["kind"], body["units"], body["result"]) == ("case", 10, "in_channel")


async def _move(client: Any, sender: Any, receiver: Any, codes: list[str], to: int) -> str:
    """Ship ``codes`` from ``sender`` to organisation ``to`` and receive them there; the
    outbound's number."""
    out = await document(client, sender, codes, kind="outbound", counterparty_id=to)
    assert (await confirm(client, sender, out)).status_code == 200
    inbound = await document(client, receiver, kind="inbound", shipment_id=out["id"])
    assert (await confirm(client, receiver, inbound)).status_code == 200
    return str(out["doc_no"])


async def test_a_case_mixing_two_agents_goods_alerts_the_brand_once_per_agent(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a case whose units came through two agents (Zhejiang's and Guangdong's goods,
    repacked together at the Guangzhou store's line) found at a store outside both areas. Each
    agent's own alert was right (5 units each), but the brand's one alert said "Diverted: 10
    units … shipped to Zhejiang Agent (its document)" with ``details.shipped_to`` Zhejiang and
    ``units`` 10: the brand's analyst (and its webhook) blamed one agent for all, Guangdong's
    leak unnamed (``alert_rows`` grouped the brand's findings by result only and described
    them by the first). Now the brand has one alert per source agent, each with that agent's
    units and document; the app's retry of the scan raises nothing more."""
    goods = await pack(client, login, app, demo, 2)
    clerk = await login("clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    zj, gd, gz = await login("agent_clerk"), await login("gd_admin"), await login("gz_clerk")
    shipped = {
        demo["AGENT-ZJ"]: await _move(client, clerk, zj, goods["cases"][:1], demo["AGENT-ZJ"]),
        demo["AGENT-GD"]: await _move(client, clerk, gd, goods["cases"][1:], demo["AGENT-GD"]),
    }
    await _move(client, zj, gz, goods["cases"][:1], demo["STORE-GZ-01"])
    await _move(client, gd, gz, goods["cases"][1:], demo["STORE-GZ-01"])
    admin = await login("admin")
    _, operator = await _user(client, admin, demo["STORE-GZ-01"], ["line_operator"])
    for case in goods["cases"]:
        opened = await client.post(
            "/packing/unpack", headers=operator, json={"parent": case, "reason": "repack"}
        )
        assert opened.status_code == 200, opened.text
    (mixed,) = await issue_cases(client, login, demo, "inner", 1)
    context = {"product_id": goods["product_id"], "lot": "LOG1", "production_date": "2026-11-10"}
    assert (await client.put("/lines/GZX/context", headers=operator, json=context)).is_success
    at = "2026-12-01T08:00:00Z"
    units = goods["units"][0:5] + goods["units"][10:15]
    scans = [{"id": f"mx{i}", "code": u, "at": at} for i, u in enumerate(units)]
    scans.append({"id": "mxc", "code": mixed, "at": at})
    packed = await client.post("/lines/GZX/scans", headers=operator, json={"scans": scans})
    assert packed.status_code == 200 and packed.json()["rejected"] == 0, packed.text
    tag = secrets.token_hex(3).upper()
    store = await client.post(
        "/orgs",
        headers=admin,
        json={"kind": "store", "name": f"Direct {tag}", "erp_code": f"DS-{tag}",
              "parent_id": demo["BRAND-LUMI"]},
    )  # fmt: skip
    assert store.status_code == 201, store.text
    body = {"code": mixed, "gps": GPS, "store_id": store.json()["id"], "client_id": f"mx-{tag}"}
    inspector = await login("inspector")
    for _ in range(2):  # the app's retry: the first scan's answer, no alert counted again
        found = await client.post("/inspections", headers=inspector, json=body)
        assert found.status_code in (200, 201), found.text
    sources = sorted(i["shipped_to"]["erp_code"] for i in found.json()["items"])
    assert sources == ["AGENT-GD"] * 5 + ["AGENT-ZJ"] * 5

    async def alerts_of(org: int) -> list[dict[str, Any]]:
        got = await client.get(
            "/alerts", headers=admin, params={"kind": "diversion", "per_page": 200}
        )
        return [a for a in got.json()["items"] if a["serial"] == mixed and a["org_id"] == org]

    brand = await alerts_of(demo["BRAND-LUMI"])
    assert sorted(
        (a["details"]["shipped_to"], a["details"]["units"], a["details"]["document_no"],
         a["occurrences"])
        for a in brand
    ) == sorted((agent, 5, doc, 1) for agent, doc in shipped.items())  # fmt: skip
    for a in brand:  # each names its agent's own shipment, never the other's
        own = shipped[a["details"]["shipped_to"]]
        (other,) = set(shipped.values()) - {own}
        assert a["message"].startswith("Diverted: 5 units of ") and f"({own})" in a["message"]
        assert other not in a["message"], a
        assert a["details"]["document_nos"] == [a["details"]["document_no"]]
    for agent, doc in shipped.items():
        (own,) = await alerts_of(agent)
        assert (own["details"]["units"], own["details"]["document_no"]) == (5, doc)
    # another scan of the case: each open alert counts it, none is added
    body["client_id"] = f"mx-{tag}-again"
    assert (await client.post("/inspections", headers=inspector, json=body)).status_code == 201
    again = await alerts_of(demo["BRAND-LUMI"])
    assert sorted(a["occurrences"] for a in again) == [2, 2]


async def test_an_agent_supplied_by_its_branch_shipping_into_a_sister_agents_store_is_diverted(
    client: Any,
    login: Any,
    deep_tree: dict[str, Any],  # noqa: F811
    via_branch: dict[str, Any],  # noqa: F811
) -> None:
    """A probe (brand inspector, SPEC D1/D4): the factory ships to branch BR (分公司), BR ships on
    to its agent A1, and A1 ships a case into store S2 of its sister agent A2 (窜货). Inspected
    at S2 the units were ``in_channel`` / ``designated_store``, shipped to the branch: the
    branch's outbound to A1 kept the branch as the units' channel (``movements.move_state``
    kept the first designation for any sender in the channel), so the whole branch was the
    "agent area" and no diversion between its agents was ever seen, alerted or put in A1's leak
    report. A branch's outbound designates anew: diverted, outside A1's area, shipped to A1."""
    tree = deep_tree
    await _received(
        client, tree["A1_clerk"], tree["S2_clerk"], via_branch["cases"][1:2], tree["S2"]
    )
    found = await scan(client, await login("inspector"), via_branch["units"][12], tree["S2"])
    assert found.status_code == 201, found.text
    item = found.json()["items"][0]
    assert (item["result"], item["reason"], item["shipped_to"]["id"]) == (
        "diverted", "outside_agent_area", tree["A1"],
    ), item  # fmt: skip


async def test_goods_a_branch_ships_to_its_agent_again_name_the_branchs_shipment(
    client: Any,
    login: Any,
    app: Any,
    demo: Any,
    deep_tree: dict[str, Any],  # noqa: F811
) -> None:
    """The factory ships a case to agent A1 (under branch BR), A1 returns it to its branch and
    the branch sends it to A1 again; A1 then ships it into S2, a store of its sister agent. The
    diversion named the factory's first shipment to A1 as the one that made A1 answer for the
    goods: the inspection took the branch for a seller on, as the logistics did (a probe of the
    deep channel). The branch's shipment designated them anew, and it is the one named."""
    tree, clerk = deep_tree, await login("clerk")
    goods = await pack(client, login, app, demo, 1)
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    first = await _received(client, clerk, tree["A1_clerk"], goods["cases"], tree["A1"])
    back = await document(
        client, tree["A1_clerk"], goods["cases"], kind="return", counterparty_id=tree["BR"]
    )
    assert (await confirm(client, tree["A1_clerk"], back)).status_code == 200
    got = await document(client, tree["BR_clerk"], kind="inbound", shipment_id=back["id"])
    assert (await confirm(client, tree["BR_clerk"], got)).status_code == 200
    again = await _received(client, tree["BR_clerk"], tree["A1_clerk"], goods["cases"], tree["A1"])
    await _received(client, tree["A1_clerk"], tree["S2_clerk"], goods["cases"], tree["S2"])
    found = await scan(client, await login("inspector"), goods["units"][0], tree["S2"])
    assert found.status_code == 201, found.text
    item = found.json()["items"][0]
    assert (item["result"], item["shipped_to"]["id"]) == ("diverted", tree["A1"]), item
    assert item["document_no"] == again["doc_no"] != first["doc_no"], item


@pytest.mark.parametrize(
    "prefix",
    [
        "https://verify.lumi-anti-counterfeit-service.example.com.cn/products/c/",
        "https://qr.example.com/01/06901234000016/10/LOT-2026-12-A/21/",  # 64 characters
    ],
    ids=["long_url", "digital_link_with_lot"],
)
async def test_forged_codes_in_a_long_qr_keep_their_serials_and_alerts(
    client: Any, login: Any, conn: Any, goods: dict[str, Any], prefix: str
) -> None:
    """A probe: two different forged tags whose QR text runs past 64 characters (a
    counterfeiter's long resolver URL; a GS1 Digital Link with a lot) were recorded as the
    text's first 64 characters — no serial left, the evidence lost — and the second bumped the
    first one's alert. Past 64 characters a code that is not one is named by the serial it
    carries: each record keeps its forged serial, each opens its own alert."""
    inspector = await login("inspector")
    forged = [forge(goods["units"][20]), forge(goods["units"][21])]
    answers = [await scan(client, inspector, prefix + f, "STORE-HZ-01") for f in forged]
    assert [a.status_code for a in answers] == [422, 422], answers[0].text
    serials = [a.json()["error"]["details"]["items"][0]["serial"] for a in answers]
    assert serials == forged
    rows = await (
        await conn.execute(
            "SELECT dedup_key FROM alerts WHERE kind = 'fake' AND details ->> 'inspection' = ANY(%s)",
            ([str(a.json()["error"]["details"]["id"]) for a in answers],),
        )
    ).fetchall()
    assert len({r["dedup_key"] for r in rows}) == 2, rows


async def test_the_inspector_filter_lists_who_made_the_records_each_caller_sees(
    client: Any, login: Any, demo: Any, goods: dict[str, Any]
) -> None:
    """The console's inspector filter offered the inspectors of the newest 200 records only (an
    inspector or a report reader may not read the user directory): one who inspects rarely was
    missing. ``GET /inspections/inspectors`` names everyone behind the records the caller sees,
    by name, with how many and the newest; another agent's inspectors are not among them."""
    tag = secrets.token_hex(3)
    zj, gd = await login("agent_admin"), await login("gd_admin")
    people = {}
    for admin, org, who in ((zj, "AGENT-ZJ", "b"), (gd, "AGENT-GD", "a")):
        made = await new_user(client, admin, demo[org], ["inspector"], username=f"{who}-insp-{tag}")
        people[org] = (made["id"], await login(made["username"], made["password"]))
    for unit in goods["units"][20:22]:  # case 2: never shipped, found at a ZJ store
        answer = await scan(client, people["AGENT-ZJ"][1], unit, "STORE-HZ-01")
        assert answer.status_code == 201, answer.text
    answer = await scan(client, people["AGENT-GD"][1], goods["units"][22], "STORE-GZ-01")
    assert answer.status_code == 201, answer.text

    async def inspectors(headers: Any, **query: Any) -> list[tuple[int, str, int]]:
        found = await client.get("/inspections/inspectors", headers=headers, params=query)
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["total"] == len(body["items"]) and all(i["last_at"] for i in body["items"])
        return [(i["id"], i["username"], i["records"]) for i in body["items"]]

    zj_id, gd_id = people["AGENT-ZJ"][0], people["AGENT-GD"][0]
    assert await inspectors(zj, q=tag) == [(zj_id, f"b-insp-{tag}", 2)]
    assert await inspectors(gd, q=f"INSP-{tag}") == [(gd_id, f"a-insp-{tag}", 1)]  # any case
    both = [(gd_id, f"a-insp-{tag}", 1), (zj_id, f"b-insp-{tag}", 2)]
    assert await inspectors(await login("admin"), q=tag) == both  # by name
    # the inspector itself reads its own area's records: itself
    assert await inspectors(people["AGENT-ZJ"][1], q=tag) == [(zj_id, f"b-insp-{tag}", 2)]
    assert await inspectors(zj, q="%") == []  # a % is a %, not every name
    for bad in ({"q": ""}, {"q": "x" * 65}, {"per_page": 201}, {"page": 0}):
        assert_error(await client.get("/inspections/inspectors", headers=zj, params=bad), 400)
    assert_error(
        await client.get("/inspections/inspectors", headers=await login("fieldrep")),
        403,
        "permission_denied",
    )
