"""Issue 13, scoping (README: "records outside the caller's subtree answer 404, exactly as if they
did not exist"): every logistics, packing and sales endpoint that takes a code, an SSCC, an order,
a document or an organisation answers another party's record exactly like one that does not
exist — same status, error code, details and message (less the identifier itself), and, for the
per-code answers of a draft or a packing upload, the same per-code result.

The scene (built once): four inner cases of ten units packed at the factory and taken into its
warehouse WH-SZ-01; case 0 went on to AGENT-ZJ and its store STORE-HZ-01, which sold unit 0;
case 1 is on hand at AGENT-ZJ; case 2 stays at WH-SZ-01; case 3 is on its way from WH-SZ-01 to
AGENT-ZJ. Spare units of the batch were never activated, case 4 was never packed."""

from __future__ import annotations

import itertools
import json
import secrets
from dataclasses import dataclass
from typing import Any

import pytest

from app._core import gs1_check_digit
from app.logistics.movements import MOVEMENTS
from tests.helpers import assert_error, sales_order
from tests.test_hardening_logistics import document, move, pack, stock_check

_ids = itertools.count()


@dataclass
class Scene:
    units: list[str]
    spare: list[str]
    cases: list[str]
    product_id: int
    lot: str
    order_id: int  # FACTORY-SZ → AGENT-ZJ
    shipment_id: int  # AGENT-ZJ → STORE-HZ-01 (case 0)
    transit_id: int  # WH-SZ-01 → AGENT-ZJ (case 3, not received)
    never_issued: str  # a genuine-looking serial past the end of the batch
    never_issued_sscc: str  # a valid SSCC of the brand's prefix that was never issued
    other_brand_org: int

    # where the goods are
    @property
    def sold(self) -> str:
        return self.units[0]

    @property
    def at_store(self) -> str:
        return self.units[1]

    @property
    def at_agent(self) -> str:
        return self.units[10]

    @property
    def at_factory(self) -> str:
        return self.units[20]

    @property
    def in_transit(self) -> str:
        return self.units[30]


@pytest.fixture(scope="module")
async def scene(client: Any, login: Any, app: Any, demo: Any) -> Scene:
    lot = f"SCOPE{next(_ids)}"
    goods = await pack(client, login, app, demo, 4, lot, spare=6)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    store = await login("store_clerk")
    order_id = await sales_order(client, login, demo, goods.product_id, 40)
    shipped = await move(client, clerk, goods.cases[:2], kind="outbound", order_id=order_id)
    await move(client, agent, None, kind="inbound", shipment_id=shipped["id"])
    to_store = await move(
        client, agent, goods.cases[:1], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    await move(client, store, None, kind="inbound", shipment_id=to_store["id"])
    sold = await client.post("/sales", headers=store, json={"codes": [goods.units[0]]})
    assert sold.status_code == 201, sold.text
    transit = await move(
        client, clerk, goods.cases[3:4], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    scheme = app.state.scheme
    batch_no, _, _ = scheme.verify(goods.units[0])
    never_sscc = "16901234999999998"
    brand = await client.post(
        "/orgs",
        headers=await login("platform"),
        json={"kind": "brand", "name": "Scoping Tenant", "erp_code": f"SCOPE-T{next(_ids)}"},
    )
    assert brand.status_code == 201, brand.text
    return Scene(
        units=goods.units,
        spare=goods.spare,
        cases=goods.cases,
        product_id=goods.product_id,
        lot=lot,
        order_id=order_id,
        shipment_id=to_store["id"],
        transit_id=transit["id"],
        never_issued=scheme.serial(batch_no, 1_000_000),
        never_issued_sscc=never_sscc + str(gs1_check_digit(never_sscc)),
        other_brand_org=brand.json()["id"],
    )


def same_error(first: Any, second: Any, labels: tuple[str, str] = ("", "")) -> None:
    """Two answers that must not be told apart: status, code, message and details, once the
    identifier each names is taken out."""
    assert first.status_code == second.status_code, (first.text, second.text)
    a, b = first.json()["error"], second.json()["error"]
    assert _without(a, labels[0]) == _without(b, labels[1]), (a, b)


def _without(error: dict[str, Any], label: str) -> str:
    text = json.dumps(error, sort_keys=True, ensure_ascii=False)
    return text.replace(label, "…") if label else text


# -- POST /returns ------------------------------------------------------------------------------


@pytest.mark.parametrize("attacker", ["gd_admin", "clerk"])
async def test_a_consumer_return_of_another_partys_unit_answers_like_an_unknown_code(
    client: Any, login: Any, scene: Scene, attacker: str
) -> None:
    headers = await login(attacker)

    async def returned(code: str) -> Any:
        return await client.post(
            "/returns", headers=headers, json={"code": code, "reason": "other"}
        )

    unknown = await returned(scene.never_issued)
    assert_error(unknown, 404, "unknown_code")
    for code in (scene.sold, scene.at_store, scene.spare[0]):
        answer = await returned(code)
        assert_error(answer, 404, "unknown_code")  # the sold unit was 403 not_your_org
        same_error(answer, unknown, (code, scene.never_issued))


async def test_the_store_that_sold_a_unit_still_takes_it_back(
    client: Any, login: Any, scene: Scene
) -> None:
    store = await login("store_clerk")
    assert_error(
        await client.post(
            "/returns", headers=store, json={"code": scene.units[2], "reason": "other"}
        ),
        409,
        "not_sold",
    )
    sold = await client.post("/sales", headers=store, json={"codes": [scene.units[3]]})
    assert sold.status_code == 201, sold.text
    back = await client.post(
        "/returns", headers=store, json={"code": scene.units[3], "reason": "other"}
    )
    assert back.status_code == 200, back.text


# -- POST /documents/{id}/codes and POST /sales ---------------------------------------------------

# (attacker, draft, the goods out of its reach: unit attributes and case indexes)
DRAFTS = [
    pytest.param(
        "gd_admin",
        {"kind": "outbound", "counterparty_id": "STORE-GZ-01"},
        ["sold", "at_store", "at_agent", "at_factory", "in_transit"],
        [0, 1, 2, 3],
        id="other-agent-outbound",
    ),
    pytest.param(
        "gd_admin",
        {"kind": "exception", "reason": "gift"},
        ["sold", "at_store", "at_agent", "at_factory", "in_transit"],
        [0, 1, 2, 3],
        id="other-agent-exception",
    ),
    pytest.param(
        "clerk",
        {"kind": "outbound", "counterparty_id": "AGENT-GD"},
        ["sold", "at_store", "at_agent"],
        [0, 1],
        id="factory-warehouse-downstream-goods",
    ),
    pytest.param(
        "store_clerk",
        {"kind": "return"},
        ["at_agent", "at_factory", "in_transit"],
        [1, 2, 3],
        id="store-upstream-goods",
    ),
]


@pytest.mark.parametrize(("attacker", "draft", "units", "cases"), DRAFTS)
async def test_scanning_into_a_draft_tells_nothing_about_goods_held_elsewhere(
    client: Any,
    login: Any,
    demo: Any,
    scene: Scene,
    attacker: str,
    draft: dict[str, Any],
    units: list[str],
    cases: list[int],
) -> None:
    headers = await login(attacker)
    fields = {k: demo[v] if k == "counterparty_id" else v for k, v in draft.items()}
    doc = await document(client, headers, **fields)
    theirs = [getattr(scene, name) for name in units] + [scene.cases[i] for i in cases]
    reference = [scene.spare[0], scene.cases[4]]  # never activated, never packed
    answer = await client.post(
        f"/documents/{doc['id']}/codes", headers=headers, json={"codes": theirs + reference}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    never_activated, never_packed = body["items"][-2:]
    assert (never_activated["reason"], never_packed["reason"]) == ("not_activated", "not_packed")
    for item in body["items"][:-2]:
        like = never_activated if item["kind"] == "unit" else never_packed
        assert {**item, "code": "…"} == {**like, "code": "…"}, item
    assert body["added"] == 0 and body["rejected"] == len(theirs) + 2
    cancelled = await client.post(f"/documents/{doc['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text


async def test_goods_within_reach_are_still_scanned(
    client: Any, login: Any, demo: Any, scene: Scene
) -> None:
    """The sender still scans what it holds or has on the way; the receiver what is on its way
    to it; a factory warehouse what the factory above it holds."""
    checks = [
        ("clerk", {"kind": "outbound", "counterparty_id": demo["AGENT-GD"]}, scene.at_factory),
        ("clerk", {"kind": "factory_inbound"}, scene.at_factory),
        ("agent_clerk", {"kind": "inbound", "shipment_id": scene.transit_id}, scene.in_transit),
        ("store_clerk", {"kind": "return"}, scene.at_store),
        ("agent_admin", {"kind": "exception", "reason": "gift"}, scene.at_store),
    ]
    for username, fields, code in checks:
        headers = await login(username)
        doc = await document(client, headers, **fields)
        added = await client.post(
            f"/documents/{doc['id']}/codes", headers=headers, json={"codes": [code]}
        )
        assert added.status_code == 200 and added.json()["added"] == 1, (username, added.text)
        await client.post(f"/documents/{doc['id']}/cancel", headers=headers)


async def test_selling_another_partys_unit_answers_like_a_unit_never_activated(
    client: Any, login: Any, scene: Scene
) -> None:
    store = await login("store_clerk")
    never = await client.post("/sales", headers=store, json={"codes": [scene.spare[0]]})
    assert_error(never, 422, "bad_codes")
    for code in (scene.at_factory, scene.at_agent, scene.in_transit):
        answer = await client.post("/sales", headers=store, json={"codes": [code]})
        assert_error(answer, 422, "bad_codes")  # was 409 not_held (the code was taken in)
        assert answer.json()["error"]["details"] == {"codes": [code]}
        same_error(answer, never, (code, scene.spare[0]))


# -- a factory inbound receives only from the factory above -----------------------------------


@pytest.mark.parametrize("attacker", ["clerk", "gd_admin"])
async def test_a_factory_inbound_cannot_pull_another_partys_goods(
    client: Any, login: Any, demo: Any, scene: Scene, settings: Any, attacker: str
) -> None:
    headers = await login(attacker)
    answer = await client.post(
        "/documents",
        headers=headers,
        json={"kind": "factory_inbound", "counterparty_id": demo["AGENT-ZJ"]},
    )
    # was 201: scanning the agent's case and confirming moved it to the caller
    assert_error(answer, 422, "bad_org")
    # only a warehouse receives this way, and only from the factory above it: an agent or a
    # store drafting one from its parent (the default) took what its parent held (probe D1)
    for who in ("gd_admin", "store_clerk", "agent_clerk"):
        answer = await client.post(
            "/documents", headers=await login(who), json={"kind": "factory_inbound"}
        )
        assert_error(answer, 422, "bad_org")
    assert await stock_check(settings) == []
    stock = await client.get(
        "/stock", headers=await login("agent_clerk"), params={"lot": scene.lot}
    )
    rows = {r["org_id"]: (r["on_hand"], r["in_transit"]) for r in stock.json()["items"]}
    assert rows[demo["AGENT-ZJ"]] == (10, 10)


# -- organisations, orders and documents by id -------------------------------------------------


def _org_requests(org: int, product_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("post", "/documents", {"json": {"kind": "exception", "reason": "gift", "org_id": org}}),
        ("post", "/sales", {"json": {"codes": ["ABCDEFGHJKMNPQRSTVWX"], "org_id": org}}),
        ("get", "/center/documents", {"params": {"org_id": org}}),
        ("get", "/center/stock", {"params": {"org_id": org}}),
        ("get", "/stock", {"params": {"org_id": org}}),
        ("get", "/stock/thresholds", {"params": {"org_id": org}}),
        ("put", f"/stock/thresholds/{org}/{product_id}", {"json": {"min_units": 1}}),
    ]


@pytest.mark.parametrize("index", range(7))
async def test_an_organisation_outside_the_subtree_answers_like_one_that_does_not_exist(
    client: Any, login: Any, demo: Any, scene: Scene, index: int
) -> None:
    gd = await login("gd_admin")
    missing = 999_999_999
    answers = []
    for org in (missing, demo["STORE-HZ-01"], scene.other_brand_org):
        method, path, kwargs = _org_requests(org, scene.product_id)[index]
        answers.append((org, await getattr(client, method)(path, headers=gd, **kwargs)))
    (_, reference), *others = answers
    assert reference.status_code in (404, 422), reference.text
    for org, answer in others:
        # /documents and /sales answered 403 not_your_org, the centre 404 not_found
        same_error(answer, reference, (str(org), str(missing)))


async def test_a_counterparty_of_another_brand_answers_like_one_that_does_not_exist(
    client: Any, login: Any, scene: Scene
) -> None:
    clerk = await login("clerk")
    missing = 999_999_999
    reference = await client.post(
        "/documents", headers=clerk, json={"kind": "outbound", "counterparty_id": missing}
    )
    assert_error(reference, 422, "unknown_org")
    answer = await client.post(
        "/documents",
        headers=clerk,
        json={"kind": "outbound", "counterparty_id": scene.other_brand_org},
    )
    same_error(answer, reference, (str(scene.other_brand_org), str(missing)))  # was bad_org


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "outbound", "counterparty_id": "STORE-GZ-01"},
        {"kind": "inbound"},
        {"kind": "exception", "reason": "gift"},
        {"kind": "factory_inbound"},
        {"kind": "return"},
    ],
    ids=lambda f: f["kind"],
)
async def test_a_document_against_another_partys_order_answers_like_no_order(
    client: Any, login: Any, demo: Any, scene: Scene, fields: dict[str, Any]
) -> None:
    gd = await login("gd_admin")
    body = {k: demo[v] if k == "counterparty_id" else v for k, v in fields.items()}
    reference = await client.post("/documents", headers=gd, json={**body, "order_id": 999_999_999})
    # a kind that moves no order's goods refuses any order_id, before looking it up
    takes_none = MOVEMENTS[fields["kind"]].order_column is None
    assert_error(reference, 422, "order_not_allowed" if takes_none else "unknown_order")
    # was 422 wrong_order (outbound, inbound) or 201 showing the order's ERP number
    answer = await client.post("/documents", headers=gd, json={**body, "order_id": scene.order_id})
    same_error(answer, reference)


async def test_an_order_number_taken_by_another_party_shows_nothing_of_its_order(
    client: Any, login: Any, demo: Any, scene: Scene
) -> None:
    gd, partner = await login("gd_admin"), await login("partner")
    taken = (await client.get(f"/orders/{scene.order_id}", headers=partner)).json()["erp_no"]
    mine = {
        "kind": "sales",
        "from_org_id": demo["AGENT-GD"],
        "to_org_id": demo["STORE-GZ-01"],
        "lines": [{"product_id": scene.product_id, "quantity": 1}],
    }
    # ERP numbers are one namespace per brand: the number is taken, as for a visible order with
    # other content (was 404 unknown_order: a probe for other parties' order numbers by id)
    answer = await client.post("/orders", headers=gd, json={**mine, "erp_no": taken})
    error = assert_error(answer, 409, "order_no_reused")
    assert error["details"] is None
    # an order between two organisations outside the caller's subtree is refused up front
    assert_error(
        await client.post(
            "/orders",
            headers=gd,
            json={
                **mine,
                "erp_no": f"SCOPE-{next(_ids)}",
                "from_org_id": demo["AGENT-ZJ"],
                "to_org_id": demo["STORE-HZ-01"],
            },
        ),
        422,
        "not_your_org",
    )


BY_ID = [
    ("get", "/documents/{doc}", None),
    ("post", "/documents/{doc}/codes", {"codes": ["ABCDEFGHJKMNPQRSTVWX"]}),
    ("post", "/documents/{doc}/confirm", None),
    ("post", "/documents/{doc}/cancel", None),
    ("post", "/documents/{doc}/approve", {"note": "x"}),
    ("post", "/documents/{doc}/reject", {"note": "x"}),
    ("get", "/orders/{order}", None),
    ("post", "/orders/{order}/receive", None),
]


@pytest.mark.parametrize(("method", "path", "body"), BY_ID, ids=[f"{m} {p}" for m, p, _ in BY_ID])
async def test_another_partys_document_or_order_answers_like_one_that_does_not_exist(
    client: Any, login: Any, scene: Scene, method: str, path: str, body: Any
) -> None:
    """A regression guard (these held before): ids of other parties' records are not found."""
    gd = await login("gd_admin")
    kwargs = {"json": body} if body is not None else {}
    missing = 999_999_999
    reference = await getattr(client, method)(
        path.format(doc=missing, order=missing), headers=gd, **kwargs
    )
    assert reference.status_code == 404, reference.text
    answer = await getattr(client, method)(
        path.format(doc=scene.shipment_id, order=scene.order_id), headers=gd, **kwargs
    )
    same_error(answer, reference)


# -- POST /lines/{line}/scans ---------------------------------------------------------------------


async def test_a_packing_upload_tells_nothing_about_goods_held_elsewhere(
    client: Any, login: Any, app: Any, scene: Scene, settings: Any
) -> None:
    gd = await login("gd_admin")
    response = await client.put(
        "/lines/GD1/context",
        headers=gd,
        json={"product_id": scene.product_id, "lot": scene.lot, "production_date": "2026-11-10"},
    )
    assert response.status_code == 200, response.text

    async def upload(*scans: dict[str, Any]) -> list[dict[str, Any]]:
        body = [{"id": f"scope-{next(_ids)}", "at": "2026-11-10T09:00:00Z", **s} for s in scans]
        answer = await client.post("/lines/GD1/scans", headers=gd, json={"scans": body})
        assert answer.status_code == 200, answer.text
        return answer.json()["scans"]  # type: ignore[no-any-return]

    def like(item: dict[str, Any], reference: dict[str, Any], labels: tuple[str, str]) -> None:
        strip = {"id", "code"}
        a = {k: v for k, v in item.items() if k not in strip}
        b = {k: v for k, v in reference.items() if k not in strip}
        a["message"] = (a.get("message") or "").replace(labels[0], "…")
        b["message"] = (b.get("message") or "").replace(labels[1], "…")
        assert a == b, (item, reference)

    # a unit the factory holds, of the line's product and lot: was ok with a warning
    # already_active; a case the factory holds, closing over its own units: was ok (its count)
    factory_case, never_case = scene.cases[2], scene.never_issued_sscc
    got = await upload(
        {"code": scene.at_factory},
        {"code": scene.never_issued},
        {"code": factory_case, "children": [scene.units[21]]},
        {"code": never_case, "children": [scene.units[21]]},
    )
    assert got[1]["reason"] == "unknown" and got[3]["reason"] == "unknown_case"
    like(got[0], got[1], (scene.at_factory, scene.never_issued))
    like(got[2], got[3], (factory_case, never_case))
    # a new case over a unit the factory holds: was child_rejected "already_bound"; and a unit
    # sold at another agent's store: was rejected already_active / void
    got = await upload({"code": scene.cases[4], "children": [scene.units[22]]})
    ref = await upload({"code": scene.cases[4], "children": [scene.never_issued]})
    like(got[0], ref[0], (scene.units[22], scene.never_issued))
    got = await upload({"code": scene.sold}, {"code": scene.never_issued})
    like(got[0], got[1], (scene.sold, scene.never_issued))
    # nothing of the factory's moved
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM unit_state WHERE parent_sscc = %s", (int(factory_case),)
            )
        ).fetchone()
        fresh = await (
            await conn.execute("SELECT 1 FROM case_state WHERE sscc = %s", (int(scene.cases[4]),))
        ).fetchone()
    assert row is not None and row["n"] == 10 and fresh is None
    assert await stock_check(settings) == []


async def test_a_salesperson_outside_the_subtree_answers_like_a_user_that_does_not_exist(
    client: Any, login: Any, app: Any, demo: Any, scene: Scene
) -> None:
    gd = await login("gd_admin")
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT username, id FROM users WHERE username IN ('fieldrep', 'gd_admin')"
            )
        ).fetchall()
    ids = {row["username"]: row["id"] for row in rows}
    body = {"kind": "outbound", "counterparty_id": demo["STORE-GZ-01"]}
    missing = 999_999_999
    reference = await client.post(
        "/documents", headers=gd, json={**body, "salesperson_id": missing}
    )
    assert_error(reference, 422, "unknown_user")  # was 409 in_use (a foreign key error)
    answer = await client.post(
        "/documents", headers=gd, json={**body, "salesperson_id": ids["fieldrep"]}
    )
    same_error(answer, reference)  # was 201: another agent's field rep credited with the sales
    own = await client.post(
        "/documents", headers=gd, json={**body, "salesperson_id": ids["gd_admin"]}
    )
    assert own.status_code == 201, own.text


async def test_a_deactivated_user_is_refused_as_a_documents_salesperson(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a user deactivated (a salesperson who left) is still accepted as the ``salesperson_id``
    of a new outbound to a store: 201, and the units shipped get a designated salesperson who
    can no longer sign in. Every other naming of a person checks the account is live (a rep's
    supervisor: 422 ``bad_supervisor`` for an inactive one). Expected: 422 (``unknown_user``,
    as for a salesperson outside the subtree), no draft made."""
    admin, agent = await login("admin"), await login("agent_clerk")
    made = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["AGENT-ZJ"],
            "username": f"gone-{secrets.token_hex(3)}",
            "password": "tracecode-demo",
            "roles": ["store_clerk"],
        },
    )
    assert made.status_code == 201, made.text
    gone = made.json()["id"]
    off = await client.patch(f"/users/{gone}", headers=admin, json={"status": "inactive"})
    assert off.status_code == 200, off.text
    draft = await client.post(
        "/documents",
        headers=agent,
        json={
            "kind": "outbound",
            "counterparty_id": demo["STORE-HZ-01"],
            "salesperson_id": gone,
        },
    )
    assert_error(draft, 422, "unknown_user")
