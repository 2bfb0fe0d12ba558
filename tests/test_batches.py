"""Code batches: issue, list, show, void, idempotent create, permissions (SPEC C2)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.helpers import assert_error


async def test_issue_show_list_and_void_a_batch(client: Any, login: Any, demo: Any) -> None:
    planner = await login("planner")
    created = await client.post(
        "/batches",
        headers=planner,
        json={"size": 1000, "printer_id": demo["PRINTER-SH"], "note": "line 1 lot A"},
    )
    assert created.status_code == 201, created.text
    batch = created.json()
    assert batch["size"] == 1000 and batch["state"] == "issued" and batch["key_version"] == 1
    shown = (await client.get(f"/batches/{batch['batch_no']}", headers=planner)).json()
    assert shown == {**batch, "exports": []}
    listed = (await client.get("/batches", headers=planner, params={"state": "issued"})).json()
    assert batch["batch_no"] in {b["batch_no"] for b in listed["items"]}
    voided = await client.post(
        f"/batches/{batch['batch_no']}/void", headers=planner, json={"reason": "misprint"}
    )
    assert voided.json()["state"] == "void" and voided.json()["void_reason"] == "misprint"
    audit = await client.get(
        "/audit",
        headers=await login("admin"),
        params={"entity": "code_batch", "entity_id": str(batch["batch_no"])},
    )
    assert [a["action"] for a in audit.json()["items"]] == ["void", "issue"]


async def test_largest_batch_is_one_row(client: Any, login: Any, demo: Any, conn: Any) -> None:
    planner = await login("planner")
    big = await client.post(
        "/batches", headers=planner, json={"size": 4_294_967_296, "printer_id": demo["PRINTER-SH"]}
    )
    assert big.status_code == 201 and big.json()["size"] == 4_294_967_296
    too_big = await client.post(
        "/batches", headers=planner, json={"size": 4_294_967_297, "printer_id": demo["PRINTER-SH"]}
    )
    assert_error(too_big, 400, "validation_failed")
    zero = await client.post(
        "/batches", headers=planner, json={"size": 0, "printer_id": demo["PRINTER-SH"]}
    )
    assert_error(zero, 400, "validation_failed")


async def test_create_with_a_request_key_is_idempotent_under_concurrent_retries(
    client: Any, login: Any, demo: Any
) -> None:
    planner = await login("planner")
    body = {"size": 50, "printer_id": demo["PRINTER-SH"], "request_key": "erp-order-77"}
    answers = await asyncio.gather(
        *[client.post("/batches", headers=planner, json=body) for _ in range(5)]
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 201]
    assert len({a.json()["batch_no"] for a in answers}) == 1
    reused = await client.post("/batches", headers=planner, json={**body, "size": 51})
    assert_error(reused, 409, "request_key_reused")


async def test_bad_printers_and_products_are_refused(client: Any, login: Any, demo: Any) -> None:
    planner = await login("planner")
    assert_error(
        await client.post("/batches", headers=planner, json={"size": 5, "printer_id": 999999}),
        404,
        "unknown_printer",
    )
    assert_error(
        await client.post(
            "/batches", headers=planner, json={"size": 5, "printer_id": demo["AGENT-ZJ"]}
        ),
        400,
        "not_a_printer",
    )
    assert_error(
        await client.post(
            "/batches",
            headers=planner,
            json={"size": 5, "printer_id": demo["PRINTER-SH"], "product_id": 999999},
        ),
        404,
        "unknown_product",
    )


async def test_only_planners_issue_and_printers_see_only_their_batches(
    client: Any, login: Any, demo: Any
) -> None:
    planner = await login("planner")
    batch = (
        await client.post(
            "/batches", headers=planner, json={"size": 5, "printer_id": demo["PRINTER-SH"]}
        )
    ).json()
    for user in ("agent_admin", "operator", "printer"):
        denied = await client.post(
            "/batches",
            headers=await login(user),
            json={"size": 5, "printer_id": demo["PRINTER-SH"]},
        )
        assert_error(denied, 403, "permission_denied")
    printer = await login("printer")
    assert (await client.get(f"/batches/{batch['batch_no']}", headers=printer)).status_code == 200
    assert_error(
        await client.post(
            f"/batches/{batch['batch_no']}/void", headers=printer, json={"reason": "x"}
        ),
        403,
        "permission_denied",
    )
    assert_error(
        await client.get(f"/batches/{batch['batch_no']}", headers=await login("agent_admin")), 403
    )
