"""Rebate queries (R2): claims by store, clerk, product, category, agent, period and settlement
status, paged with the totals of every match, scoped to the caller's subtree (an agent its
stores', a store its own: seed 1.3.2, 1.3.3), exported as CSV and XLSX that add up; the clerk's
own summary; the kept refusals.

Each test writes claims of a product of its own (``tests.rebates_support.insert_claims``) and
filters by it, so the sums are exact whatever else the session wrote."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.auth.principal import Principal
from app.codes.scheme import load_scheme
from app.rebates.queries import CLAIM_COLUMNS, REFUSAL_COLUMNS, clerk_summary
from tests.helpers import assert_error, issue_units, scheme_for_tests
from tests.rebates_support import insert_claims, user_id
from tests.steady import clear_of_midnight
from tests.test_hardening_protocol import _column, _csv_rows, _xlsx
from tests.test_members_cross_brand import _other_brand_admin
from tests.test_rebates import new_product

SH = ZoneInfo("Asia/Shanghai")
D1 = datetime(2026, 3, 1, 10, 0, tzinfo=SH)
D2 = datetime(2026, 3, 31, 23, 30, tzinfo=SH)  # 15:30 UTC: still 31 March in Shanghai
FORMULA_STORE = '=HYPERLINK("http://x") store'


async def _world(client: Any, login: Any, demo: Any, app: Any) -> dict[str, Any]:
    """A product and category of their own, a store named like a formula below AGENT-ZJ, and
    claims of that product at four stores (two statements among them):

    =========== ============= ============ ======= =====================
    store       clerk         amounts      when    agent / statement
    =========== ============= ============ ======= =====================
    HZ-01       store_clerk   10, 12.5     D1      ZJ; the 10 pending
    HZ-01       store_clerk   5            D2      ZJ
    NB-01       store_manager 7.5          D1      ZJ
    GZ-01       gz_clerk      20, 20, 0.5  D1      GD; a 20 paid
    formula     store_clerk   3            D1      ZJ
    =========== ============= ============ ======= =====================
    """
    admin = await login("admin")
    tag = secrets.token_hex(3)
    category = await client.post("/categories", headers=admin, json={"name": f"RB cat {tag}"})
    assert category.status_code == 201, category.text
    product = await new_product(client, admin, category_id=category.json()["id"])
    store = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "store",
            "name": FORMULA_STORE,
            "erp_code": f"RB-X-{tag}",
            "parent_id": demo["AGENT-ZJ"],
        },
    )
    assert store.status_code == 201, store.text
    world = {"product": product, "category": category.json()["id"], "store": store.json()["id"]}
    async with app.state.pool.connection() as conn:
        ids = {
            name: await user_id(conn, name) for name in ("store_clerk", "store_manager", "gz_clerk")
        }
        world["users"] = ids

        async def claims(
            store_id: int, clerk: str, amounts: list[float], at: Any, agent: str
        ) -> list[int]:
            return await insert_claims(
                conn,
                brand_id=demo["BRAND-LUMI"],
                store_id=store_id,
                clerk_id=ids[clerk],
                product_id=product["id"],
                amounts=amounts,
                at=at,
                agent_id=demo[agent],
            )

        hz = await claims(demo["STORE-HZ-01"], "store_clerk", [10, 12.5], D1, "AGENT-ZJ")
        await claims(demo["STORE-HZ-01"], "store_clerk", [5], D2, "AGENT-ZJ")
        await claims(demo["STORE-NB-01"], "store_manager", [7.5], D1, "AGENT-ZJ")
        gz = await claims(demo["STORE-GZ-01"], "gz_clerk", [20, 20, 0.5], D1, "AGENT-GD")
        await claims(world["store"], "store_clerk", [3], D1, "AGENT-ZJ")
        await _statement(conn, demo, demo["STORE-HZ-01"], hz[:1], "pending")
        await _statement(conn, demo, demo["STORE-GZ-01"], gz[:1], "paid")
    return world


async def _statement(conn: Any, demo: Any, store_id: int, claims: list[int], status: str) -> int:
    """A statement of these claims in ``status`` (pending or paid), written directly."""
    paid = status == "paid"
    row = await (
        await conn.execute(
            """INSERT INTO rebate_statements (brand_id, store_id, period_start, period_end,
                   claims, amount, status, approved_at, paid_at, payment_ref, paid_on)
               SELECT %s, %s, '2026-03-01', '2026-04-01', count(*), sum(amount), %s,
                      CASE WHEN %s THEN now() END, CASE WHEN %s THEN now() END,
                      CASE WHEN %s THEN 'PAY-RB' END, CASE WHEN %s THEN current_date END
               FROM rebate_claims WHERE id = ANY(%s) RETURNING id""",
            (demo["BRAND-LUMI"], store_id, status, paid, paid, paid, paid, claims),
        )
    ).fetchone()
    await conn.execute(
        "UPDATE rebate_claims SET statement_id = %s WHERE id = ANY(%s)", (row["id"], claims)
    )
    return int(row["id"])


async def _claims(client: Any, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get("/rebates", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _sums(body: dict[str, Any]) -> tuple[int, float]:
    return body["total"], body["amount"]


async def test_claims_filtered_paged_and_totalled(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    world = await _world(client, login, demo, app)
    admin = await login("admin")
    mine = {"product_id": world["product"]["id"]}
    everything = await _claims(client, admin, **mine, per_page=200)
    assert _sums(everything) == (8, 78.5)
    stamps = [(r["claimed_at"], r["claim_id"]) for r in everything["items"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    row = everything["items"][0]  # the D2 claim
    assert (row["amount"], row["store_id"], row["settlement"]) == (
        5.0,
        demo["STORE-HZ-01"],
        "unsettled",
    )
    assert row["product_name"] == world["product"]["name"]
    assert (row["gtin"], row["colour_no"]) == (
        world["product"]["gtin"],
        world["product"]["colour_no"],
    )
    assert row["category"].startswith("RB cat") and row["clerk_name"] == "Hangzhou store clerk"
    assert row["agent_name"].startswith("Zhejiang Agent") and row["store_city"] == "杭州市"
    assert row["serial"] is None  # the test codes' batches do not exist

    page = await _claims(client, admin, **mine, per_page=3, page=2)
    assert len(page["items"]) == 3 and _sums(page) == (8, 78.5)  # totals of all, not the page
    assert [r["claim_id"] for r in page["items"]] == [
        r["claim_id"] for r in everything["items"][3:6]
    ]
    past = await _claims(client, admin, **mine, per_page=3, page=9)
    assert past["items"] == [] and _sums(past) == (8, 78.5)

    users = world["users"]
    for params, expected in (
        ({"store_id": demo["STORE-HZ-01"]}, (3, 27.5)),
        ({"clerk_id": users["gz_clerk"]}, (3, 40.5)),
        ({"agent_id": demo["AGENT-GD"]}, (3, 40.5)),
        ({"agent_id": demo["AGENT-ZJ"]}, (5, 38.0)),
        ({"category_id": world["category"]}, (8, 78.5)),
        ({"from": "2026-03-31", "to": "2026-03-31"}, (1, 5.0)),  # Shanghai days, inclusive
        ({"to": "2026-03-30"}, (7, 73.5)),
        ({"from": "2026-04-01"}, (0, 0.0)),
        ({"status": "unsettled"}, (6, 48.5)),
        ({"status": "pending"}, (1, 10.0)),
        ({"status": "paid"}, (1, 20.0)),
        ({"status": "approved"}, (0, 0.0)),
        ({"store_id": demo["STORE-HZ-01"], "status": "unsettled", "from": "2026-03-01"}, (2, 17.5)),
    ):
        assert _sums(await _claims(client, admin, **mine, **params)) == expected, params
    paid = await _claims(client, admin, **mine, status="paid")
    assert paid["items"][0]["statement_id"] is not None
    assert_error(
        await client.get(
            "/rebates", headers=admin, params={"from": "2026-04-02", "to": "2026-04-01"}
        ),
        400,
        "bad_period",
    )
    for bad in ({"status": "done"}, {"per_page": 201}, {"from": "yesterday"}, {"format": "pdf"}):
        assert_error(await client.get("/rebates", headers=admin, params=bad), 400)


async def test_agents_see_their_stores_stores_their_own_other_brands_nothing(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    world = await _world(client, login, demo, app)
    mine = {"product_id": world["product"]["id"]}
    agent = await client.get("/rebates", headers=await login("agent_admin"), params=mine)
    assert agent.status_code == 200, agent.text
    assert _sums(agent.json()) == (5, 38.0)  # HZ-01, NB-01 (below DIST-NB) and the new store
    assert {r["store_id"] for r in agent.json()["items"]} == {
        demo["STORE-HZ-01"],
        demo["STORE-NB-01"],
        world["store"],
    }
    store = await _claims(client, await login("store_manager"), **mine)
    assert _sums(store) == (3, 27.5)
    assert {r["store_id"] for r in store["items"]} == {demo["STORE-HZ-01"]}
    gz = await login("gz_clerk")
    assert _sums(await _claims(client, gz, **mine)) == (3, 40.5)
    gd = await login("gd_admin")
    assert _sums(await _claims(client, gd, **mine)) == (3, 40.5)
    # filters naming another subtree answer nothing, not an error that would confirm an id
    for params in (
        {"store_id": demo["STORE-HZ-01"]},
        {"agent_id": demo["AGENT-ZJ"]},
        {"clerk_id": world["users"]["store_clerk"]},
    ):
        assert _sums(await _claims(client, gz, **mine, **params)) == (0, 0.0)
    manager = await login("store_manager")
    assert _sums(await _claims(client, manager, **mine, store_id=demo["STORE-GZ-01"])) == (0, 0.0)
    # no rebates.read: refused
    assert_error(await client.get("/rebates", headers=await login("agent_clerk")), 403)
    _, other = await _other_brand_admin(client, login)
    assert _sums(await _claims(client, other)) == (0, 0.0)
    assert _sums(await _claims(client, other, **mine)) == (0, 0.0)
    finance = await _claims(client, await login("finance"), **mine)
    assert _sums(finance) == (8, 78.5)


async def test_csv_and_xlsx_exports_hold_every_match_add_up_and_guard_formulas(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    world = await _world(client, login, demo, app)
    agent = await login("agent_admin")
    mine = {"product_id": world["product"]["id"]}
    page = await _claims(client, agent, **mine, per_page=2)
    exported = await client.get("/rebates", headers=agent, params={**mine, "format": "csv"})
    assert "attachment" in exported.headers["content-disposition"]
    rows = _csv_rows(exported)
    assert list(rows[0]) == CLAIM_COLUMNS
    assert len(rows) == page["total"] == 5
    assert sum(float(r["amount"]) for r in rows) == page["amount"] == 38.0
    formula = [r for r in rows if int(r["store_id"]) == world["store"]]
    assert [r["store_name"] for r in formula] == ["'" + FORMULA_STORE]  # the guard's apostrophe
    assert {r["settlement"] for r in rows} == {"unsettled", "pending"}

    xlsx = await client.get("/rebates", headers=agent, params={**mine, "format": "xlsx"})
    assert xlsx.status_code == 200, xlsx.text
    assert xlsx.headers["content-type"].startswith("application/vnd.openxmlformats")
    cells, quoted, sheet = _xlsx(xlsx.content)
    assert "<f>" not in sheet
    assert [cells[f"{_column(cells, c)}1"] for c in CLAIM_COLUMNS] == CLAIM_COLUMNS
    amount, store = _column(cells, "amount"), _column(cells, "store_name")
    body = range(2, 2 + page["total"])
    assert sum(float(cells[f"{amount}{n}"]) for n in body) == 38.0
    assert f"{amount}{2 + page['total']}" not in cells
    guarded = [f"{store}{n}" for n in body if cells[f"{store}{n}"] == FORMULA_STORE]
    assert len(guarded) == 1 and quoted[guarded[0]]

    store_csv = await client.get(
        "/rebates",
        headers=await login("store_manager"),
        params={**mine, "format": "csv", "status": "unsettled"},
    )
    parsed = list(csv.DictReader(io.StringIO(store_csv.content.decode("utf-8-sig"))))
    assert [(r["store_id"], r["amount"]) for r in parsed] == [
        (str(demo["STORE-HZ-01"]), "5.0"),
        (str(demo["STORE-HZ-01"]), "12.5"),
    ]


async def _claim_of_a_real_code(
    client: Any, login: Any, demo: Any, app: Any
) -> tuple[int, int, int, int]:
    """A claim at STORE-HZ-01 by store_clerk of unit 2 of a new batch (the current key version),
    with its tally-queue row as a claim writes it, of a new product of its own: (batch_no, key
    version, product id, claim id)."""
    batch_no, _ = await issue_units(client, login, demo, 3)
    product = (await new_product(client, await login("admin")))["id"]
    async with app.state.pool.connection() as conn:
        version = (
            await (
                await conn.execute(
                    "SELECT key_version FROM code_batches WHERE batch_no = %s", (batch_no,)
                )
            ).fetchone()
        )["key_version"]
        claim = await (
            await conn.execute(
                """WITH c AS (
                       INSERT INTO rebate_claims (code_id, brand_id, store_id, clerk_id,
                           product_id, amount, client_id, event_id)
                       VALUES (%s, %s, %s, %s, %s, 2.5, %s, 0) RETURNING id
                   )
                   INSERT INTO rebate_tally_queue (claim_id) SELECT id FROM c
                   RETURNING claim_id""",
                (
                    (batch_no << 32) | 2,
                    demo["BRAND-LUMI"],
                    demo["STORE-HZ-01"],
                    await user_id(conn, "store_clerk"),
                    product,
                    secrets.token_hex(6),
                ),
            )
        ).fetchone()
    assert claim is not None
    return batch_no, version, product, claim["claim_id"]


async def test_a_real_code_shows_its_serial_in_pages_and_exports(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    batch_no, version, product, _ = await _claim_of_a_real_code(client, login, demo, app)
    admin = await login("admin")
    serial = scheme_for_tests().serial(batch_no, 2, version)
    body = await _claims(client, admin, product_id=product)
    assert [(r["serial"], r["code_id"]) for r in body["items"]] == [(serial, (batch_no << 32) | 2)]
    rows = _csv_rows(
        await client.get("/rebates", headers=admin, params={"product_id": product, "format": "csv"})
    )
    assert [r["serial"] for r in rows] == [serial]


async def test_the_claims_list_and_its_files_survive_a_retired_key_version(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: once a key rotation retired version 1 (``TRACECODE_KEY_VERSIONS=2``), ``GET
    /rebates`` answered the brand's finance staff 422 ``not_genuine`` for any list holding a
    claim of an old unit, ``format=csv``/``xlsx`` a 200 whose body broke off after the header,
    and the clerk's ``GET /rebates/me`` 422 too. Now such a claim is listed and exported with
    its serial null, as a statement's claims show it."""
    _, version, product, claim = await _claim_of_a_real_code(client, login, demo, app)
    admin = await login("admin")
    kept = app.state.scheme
    s = app.state.settings
    app.state.scheme = load_scheme(s.master_key_bytes(), [version + 1], version + 1, s.pin_length)
    try:
        body = await _claims(client, admin, product_id=product)
        assert [(r["claim_id"], r["serial"]) for r in body["items"]] == [(claim, None)]
        mine = {"product_id": product}
        rows = _csv_rows(
            await client.get("/rebates", headers=admin, params={**mine, "format": "csv"})
        )
        assert [(r["serial"], r["amount"]) for r in rows] == [("", "2.5")]
        xlsx = await client.get("/rebates", headers=admin, params={**mine, "format": "xlsx"})
        assert xlsx.status_code == 200, xlsx.text
        cells, _, _ = _xlsx(xlsx.content)
        assert f"{_column(cells, 'amount')}2" in cells  # the row written, not broken off
        assert f"{_column(cells, 'serial')}2" not in cells  # an empty cell
        me = await client.get("/rebates/me", headers=await login("store_clerk"))
        assert me.status_code == 200, me.text
        assert {r["claim_id"]: r["serial"] for r in me.json()["items"]}[claim] is None
    finally:
        app.state.scheme = kept


async def test_the_clerk_sees_their_own_totals_and_claims(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    admin = await login("admin")
    username = f"rb-clerk-{secrets.token_hex(3)}"
    created = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["STORE-HZ-01"],
            "username": username,
            "password": "tracecode-demo",
            "roles": ["store_clerk"],
            "display_name": "Rebate clerk",
        },
    )
    assert created.status_code == 201, created.text
    clerk = await login(username)
    empty = await client.get("/rebates/me", headers=clerk)
    assert empty.status_code == 200, empty.text
    assert empty.json()["all_time"] == {"claims": 0, "amount": 0.0} and empty.json()["items"] == []

    product = (await new_product(client, admin))["id"]
    await clear_of_midnight()  # today's and the month's totals as of ``now``
    now = datetime.now(UTC)
    local = now.astimezone(SH)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    times = [datetime(2020, 1, 1, tzinfo=SH), month_start + timedelta(seconds=1), now]
    async with app.state.pool.connection() as conn:
        clerk_id = await user_id(conn, username)
        for at, amounts in zip(times, ([100], [10], [3, 1.5]), strict=True):
            await insert_claims(
                conn,
                brand_id=demo["BRAND-LUMI"],
                store_id=demo["STORE-HZ-01"],
                clerk_id=clerk_id,
                product_id=product,
                amounts=amounts,
                at=at,
            )
    today = (2 + (times[1] >= day_start), 4.5 + 10 * (times[1] >= day_start))
    response = await client.get("/rebates/me", headers=clerk, params={"per_page": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["today"]["claims"], body["today"]["amount"]) == today
    assert body["month"] == {"claims": 3, "amount": 14.5}
    assert body["all_time"] == {"claims": 4, "amount": 114.5}
    assert body["total"] == 4 and [r["amount"] for r in body["items"]] == [1.5, 3.0]  # newest
    assert {r["clerk_name"] for r in body["items"]} == {"Rebate clerk"}
    second = (
        await client.get("/rebates/me", headers=clerk, params={"page": 2, "per_page": 2})
    ).json()
    assert [r["amount"] for r in second["items"]] == [10.0, 100.0]

    # the H5 page's call: the service function itself
    async with app.state.pool.connection() as conn:
        path = f"/{demo['BRAND-LUMI']}/{demo['AGENT-ZJ']}/{demo['STORE-HZ-01']}/"
        principal = Principal(demo["STORE-HZ-01"], path, frozenset({"sales.claim"}), clerk_id)
        direct = await clerk_summary(conn, principal, 1, 2)
    assert direct.all_time.claims == 4 and [r.amount for r in direct.items] == [1.5, 3.0]
    assert_error(await client.get("/rebates/me", headers=await login("analyst")), 403)


async def test_refusals_are_seen_where_tried_and_where_the_unit_belonged(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    tag = secrets.token_hex(4)
    async with app.state.pool.connection() as conn:
        clerk, gz_clerk = await user_id(conn, "store_clerk"), await user_id(conn, "gz_clerk")
        for store, who, expected_store, expected_agent, at in (
            ("STORE-HZ-01", clerk, "STORE-GZ-01", "AGENT-GD", D1),  # a GZ unit tried at HZ
            ("STORE-GZ-01", gz_clerk, None, "AGENT-ZJ", D2),  # a ZJ unit (at the agent) at GZ
            ("STORE-GZ-01", gz_clerk, "STORE-SZ-01", "AGENT-GD", D2),  # inside Guangdong
        ):
            await conn.execute(
                """INSERT INTO rebate_refusals (at, brand_id, code_id, serial, clerk_id,
                       store_id, reason, expected_store_id, expected_agent_id, holder_org_id)
                   VALUES (%s, %s, 1, %s, %s, %s, 'other_store', %s, %s, %s)""",
                (
                    at,
                    demo["BRAND-LUMI"],
                    f"RF{tag}",
                    who,
                    demo[store],
                    expected_store and demo[expected_store],
                    demo[expected_agent],
                    demo[expected_store or expected_agent],
                ),
            )

    async def seen(user: str, **params: Any) -> list[tuple[str, str | None]]:
        response = await client.get(
            "/rebates/refusals", headers=await login(user), params={"per_page": 200, **params}
        )
        assert response.status_code == 200, response.text
        return [
            (r["store_name"][:7], r["expected_agent_name"] and r["expected_agent_name"][:7])
            for r in response.json()["items"]
            if r["serial"] == f"RF{tag}"
        ]

    assert sorted(await seen("admin")) == [
        ("Guangzh", "Guangdo"),
        ("Guangzh", "Zhejian"),
        ("Hangzho", "Guangdo"),
    ]
    assert sorted(await seen("agent_admin")) == [("Guangzh", "Zhejian"), ("Hangzho", "Guangdo")]
    assert await seen("store_manager") == [("Hangzho", "Guangdo")]  # tried at its store
    assert sorted(await seen("gz_clerk")) == [
        ("Guangzh", "Guangdo"),
        ("Guangzh", "Zhejian"),
        ("Hangzho", "Guangdo"),
    ]
    assert await seen("admin", store_id=demo["STORE-HZ-01"]) == [("Hangzho", "Guangdo")]
    assert len(await seen("admin", **{"from": "2026-03-31", "to": "2026-03-31"})) == 2
    assert_error(await client.get("/rebates/refusals", headers=await login("agent_clerk")), 403)
    _, other = await _other_brand_admin(client, login)
    assert (await client.get("/rebates/refusals", headers=other)).json()["total"] == 0

    rows = _csv_rows(
        await client.get(
            "/rebates/refusals",
            headers=await login("agent_admin"),
            params={"format": "csv", "from": "2026-03-01", "to": "2026-03-31"},
        )
    )
    assert list(rows[0]) == REFUSAL_COLUMNS
    assert sum(r["serial"] == f"RF{tag}" for r in rows) == 2
    xlsx = await client.get(
        "/rebates/refusals", headers=await login("admin"), params={"format": "xlsx"}
    )
    cells, _, _ = _xlsx(xlsx.content)
    assert cells["A1"] == "id" and f"RF{tag}" in cells.values()
