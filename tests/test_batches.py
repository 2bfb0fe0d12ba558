"""Code batches: issue, list, show, void, idempotent create, permissions (SPEC C2)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from app._core import gs1_check_digit
from tests.field_support import other_brand_admin
from tests.helpers import (
    activate,
    assert_error,
    every_item,
    issue_cases,
    issue_units,
    key_of,
    onboarded_brand,
    scheme_for_tests,
)
from tests.race_support import lock_waiters


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


async def _contract_printer_key(
    client: Any, admin: dict[str, str], demo: Any, permissions: list[str]
) -> tuple[int, dict[str, str]]:
    """A new printer organisation of the brand and an API key at it (its serialization server)."""
    org = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "printer",
            "name": f"Contract printer {secrets.token_hex(3)}",
            "erp_code": f"CP-{secrets.token_hex(3)}",
            "parent_id": demo["BRAND-LUMI"],
        },
    )
    assert org.status_code == 201, org.text
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": "serialbox", "permissions": permissions, "org_id": org.json()["id"]},
    )
    assert made.status_code == 201, made.text
    return int(org.json()["id"]), {"X-API-Key": made.json()["key"]}


async def test_a_contract_printers_issuing_key_cannot_void_or_list_another_printers_batch(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a contract printer's serialization server holds ``codes.issue`` and
    ``codes.allocate`` (the set-up tests/test_allocations.py uses: "it issues the batches it then
    allocates"). Allocation scoped it by where it sits, but the batch endpoints scoped by the
    shape of its permissions (``_visible_sql``: any ``codes.issue`` holder was brand staff): the
    key listed every batch of the brand, read another printer's batch and VOIDED it (200) —
    every label that printer printed then verified as void. Now, by where its organisation sits
    (``allocation_records.seat``), a caller at a printer reaches only the batches addressed to
    it: another printer's batch is 404 to read or void, unlisted, and not issued (404
    ``unknown_printer``); its own it still issues, reads and lists. A key of the brand itself
    is brand staff."""
    admin = await login("admin")
    ours, key = await _contract_printer_key(client, admin, demo, ["codes.allocate", "codes.issue"])
    batch_no, _ = await issue_units(client, login, demo, 10)  # addressed to PRINTER-SH
    listed = await client.get("/batches", headers=key, params={"per_page": 200})
    assert listed.status_code == 200, listed.text
    seen = [b["batch_no"] for b in listed.json()["items"]]
    shown = await client.get(f"/batches/{batch_no}", headers=key)
    voided = await client.post(
        f"/batches/{batch_no}/void", headers=key, json={"reason": "not mine"}
    )
    state = (await client.get(f"/batches/{batch_no}", headers=await login("planner"))).json()
    assert voided.status_code == 404, voided.text  # 200: the other printer's batch is void
    assert state["state"] != "void"
    assert shown.status_code == 404, shown.text
    assert batch_no not in seen, "another printer's batch is listed"
    assert_error(
        await client.post(
            "/batches", headers=key, json={"size": 5, "printer_id": demo["PRINTER-SH"]}
        ),
        404,
        "unknown_printer",
    )
    own = await client.post("/batches", headers=key, json={"size": 5, "printer_id": ours})
    assert own.status_code == 201, own.text
    mine = own.json()["batch_no"]
    assert (await client.get(f"/batches/{mine}", headers=key)).status_code == 200
    listed = await client.get("/batches", headers=key, params={"per_page": 200})
    assert [b["batch_no"] for b in listed.json()["items"]] == [mine]
    # the brand's own key (its ERP) sits where its organisation sits: brand staff
    erp = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": "erp", "permissions": ["codes.issue"], "org_id": demo["BRAND-LUMI"]},
    )
    assert erp.status_code == 201, erp.text
    brand_key = {"X-API-Key": erp.json()["key"]}
    issued = await client.post(
        "/batches", headers=brand_key, json={"size": 5, "printer_id": demo["PRINTER-SH"]}
    )
    assert issued.status_code == 201, issued.text
    assert (await client.get(f"/batches/{batch_no}", headers=brand_key)).status_code == 200


async def test_a_void_of_a_batch_the_caller_cannot_see_waits_on_no_lock(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: ``POST /batches/{no}/void`` locked the row ``FOR UPDATE`` by its number alone,
    before the visibility check: another brand's void of our batch number (and a contract
    printer's of another printer's batch) waited for our transaction on it, then answered 404 —
    a wait telling it the batch exists and is busy, and its lock holding up our uploads and
    allocations meanwhile. Only a batch the caller sees is locked: 404 at once."""
    _, other = await onboarded_brand(client, login)
    _, printer_key = await _contract_printer_key(
        client, await login("admin"), demo, ["codes.allocate", "codes.issue"]
    )
    for outsider in (other, printer_key):
        batch_no, _ = await issue_units(client, login, demo, 5)  # addressed to PRINTER-SH
        async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
            await holder.execute(
                "SELECT 1 FROM code_batches WHERE batch_no = %s FOR UPDATE", (batch_no,)
            )
            voiding = asyncio.ensure_future(
                client.post(f"/batches/{batch_no}/void", headers=outsider, json={"reason": "x"})
            )
            waited = await lock_waiters(watch, 1)
            await holder.commit()
            assert_error(await voiding, 404, "not_found")
        assert not waited, "a void of a batch the caller cannot see waited on the batch's lock"
    planner = await login("planner")  # the brand's own void still waits for the holder
    batch_no, _ = await issue_units(client, login, demo, 5)
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute(
            "SELECT 1 FROM code_batches WHERE batch_no = %s FOR UPDATE", (batch_no,)
        )
        voiding = asyncio.ensure_future(
            client.post(f"/batches/{batch_no}/void", headers=planner, json={"reason": "recall"})
        )
        assert await lock_waiters(watch, 1), "the brand's void should wait for the held row"
        await holder.commit()
        assert (await voiding).json()["state"] == "void"


async def test_a_void_of_a_case_batch_the_caller_cannot_see_waits_on_no_lock(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: ``POST /case-batches/{id}/void`` locked any case batch of the caller's brand
    ``FOR UPDATE`` before the visibility check: a contract printer's void of a batch addressed
    to PRINTER-SH waited for an upload holding it (``FOR KEY SHARE``), then answered 404 — and
    held up the uploads behind it. Under the unit batches' rule: 404 at once."""
    _, other = await onboarded_brand(client, login)
    _, printer_key = await _contract_printer_key(
        client, await login("admin"), demo, ["codes.issue"]
    )
    planner = await login("planner")
    for caller in (other, printer_key, planner):
        made = await client.post(
            "/case-batches",
            headers=planner,
            json={"level": "inner", "size": 2, "printer_id": demo["PRINTER-SH"]},
        )
        assert made.status_code == 201, made.text
        url = f"/case-batches/{made.json()['id']}/void"
        async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
            await holder.execute(
                "SELECT 1 FROM case_batches WHERE id = %s FOR KEY SHARE", (made.json()["id"],)
            )
            voiding = asyncio.ensure_future(client.post(url, headers=caller, json={"reason": "x"}))
            waited = await lock_waiters(watch, 1)
            await holder.commit()
            answer = await voiding
        if caller is planner:  # the brand's own void waits for the upload
            assert waited and answer.json()["state"] == "void", answer.text
        else:
            assert not waited, "a void of a case batch the caller cannot see waited on its lock"
            assert_error(answer, 404, "not_found")


@pytest.mark.parametrize("blank", [" ", "\u200b", "\ufeff", "\u3000"], ids=repr)
async def test_a_void_reason_of_blanks_alone_is_refused(
    client: Any, login: Any, demo: Any, blank: str
) -> None:
    """A probe: batches (and case batches) were voided for "   ", U+200B, U+FEFF or U+3000
    alone — the reason everyone tracing the batch's units reads. README: a reason others read
    needs one visible character (400 ``validation_failed``)."""
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 5)
    cases = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "inner", "size": 2, "printer_id": demo["PRINTER-SH"]},
    )
    assert cases.status_code == 201, cases.text
    for url in (f"/batches/{batch_no}/void", f"/case-batches/{cases.json()['id']}/void"):
        refused = await client.post(url, headers=planner, json={"reason": blank * 3})
        assert_error(refused, 400, "validation_failed")
    state = (await client.get(f"/batches/{batch_no}", headers=planner)).json()["state"]
    assert state == "issued"
    voided = await client.post(
        f"/batches/{batch_no}/void", headers=planner, json={"reason": f"{blank}recall{blank}"}
    )
    assert voided.status_code == 200, voided.text


async def test_a_batch_voided_through_an_api_key_names_its_maker_and_so_do_its_events(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe: the brand's recall tool (an API key the admin made, ``codes.issue``) voided a
    batch with units on a shelf and in a case: the batch's ``voided_by`` was null, and so was
    the ``recorded_by`` of the decommissioning and unpacking events its void wrote — a void by
    nobody. Both name the person behind the key now (``Principal.person``)."""
    batch_no, product_id = await issue_units(client, login, demo, 3)
    scheme = scheme_for_tests()
    units = [scheme.serial(batch_no, i) for i in range(3)]
    await activate(client, login, units, product_id, line="VK1")
    box = (await issue_cases(client, login, demo, "inner", 1))[0]
    scan = {"id": f"vk-{box}", "code": box, "at": "2026-11-01T09:00:00+08:00",
            "children": units[:2]}  # fmt: skip
    packed = await client.post(
        "/lines/VK1/scans", headers=await login("operator"), json={"scans": [scan]}
    )
    assert packed.json()["scans"][0]["result"] == "ok", packed.text
    admin = await login("admin")
    key = await key_of(client, admin, ["codes.issue"])
    voided = await client.post(f"/batches/{batch_no}/void", headers=key, json={"reason": "recall"})
    assert voided.status_code == 200, voided.text
    maker = (await client.get("/auth/me", headers=admin)).json()["user_id"]
    row = await (
        await conn.execute("SELECT voided_by FROM code_batches WHERE batch_no = %s", (batch_no,))
    ).fetchone()
    assert row["voided_by"] == maker, row
    events = await (
        await conn.execute(
            "SELECT biz_step, recorded_by FROM events WHERE details ->> 'batch_no' = %s "
            "AND brand_id = %s ORDER BY id",
            (str(batch_no), demo["BRAND-LUMI"]),
        )
    ).fetchall()
    assert [(e["biz_step"], e["recorded_by"]) for e in events] == [
        ("decommissioning", maker),
        ("unpacking", maker),
    ], events


async def test_a_contract_printers_key_lists_no_other_printer(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``GET /printers`` answered every printer organisation of the brand — names, ERP
    codes, status, whether a key is registered — to anyone holding ``codes.issue``, a contract
    printer's serialization server included: it learnt the brand's other (competing) printers,
    which ``GET /orgs`` and the batch endpoints never show it (``list_printers`` scoped by brand
    only). Now by where the caller sits (``own_printer``): a caller at a printer lists its own
    printer only, brand staff every printer of the brand."""
    admin = await login("admin")
    ours, key = await _contract_printer_key(client, admin, demo, ["codes.allocate", "codes.issue"])
    listed = await client.get("/printers", headers=key, params={"per_page": 200})
    assert listed.status_code == 200, listed.text
    assert [p["id"] for p in listed.json()["items"]] == [ours], listed.json()["items"]
    planner = await login("planner")
    every = await every_item(client, "/printers", planner)  # by id: other tests' printers too
    assert {ours, demo["PRINTER-SH"]} <= {p["id"] for p in every}


async def test_a_printer_user_lists_its_own_printer(client: Any, login: Any, demo: Any) -> None:
    """A probe: README gives ``GET /printers`` to "a caller at a printer: its own only", and the
    demo printer user (built-in role ``printer``: ``codes.download``, ``codes.allocate``)
    registers its own RSA key (``PUT /printers/{id}/public-key``), but it was refused the list
    (403 ``permission_denied``, ``codes.issue``): it could not learn its printer's id nor
    whether its key is registered. Any permission of code issuance lists: its own printer only,
    and a role holding none of them is still refused."""
    printer = await login("printer")
    listed = await client.get("/printers", headers=printer, params={"per_page": 200})
    assert listed.status_code == 200, listed.text
    assert [p["id"] for p in listed.json()["items"]] == [demo["PRINTER-SH"]]
    assert "has_public_key" in listed.json()["items"][0]
    assert_error(await client.get("/printers", headers=await login("operator")), 403)


async def _printer(client: Any, admin: dict[str, str], demo: Any) -> int:
    """A new printer organisation of the brand: its id."""
    org = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "printer",
            "name": f"Race printer {secrets.token_hex(3)}",
            "erp_code": f"RP-{secrets.token_hex(3)}",
            "parent_id": demo["BRAND-LUMI"],
        },
    )
    assert org.status_code == 201, org.text
    return int(org.json()["id"])


async def test_a_batch_is_not_issued_to_a_printer_closed_while_the_issuance_runs(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: ``POST /batches`` read the printer's status unlocked (``check_printer``), so a
    deactivation committed between that read and the insert was missed: 201, a batch for a
    printer closed by the time the batch existed. The printer's row is read ``FOR SHARE`` last
    before the insert: the issuance sees a deactivation committed meanwhile, 422
    ``printer_inactive``, and no batch is made. (The issuance is held by a transaction holding
    its product's row while the deactivation commits.)"""
    admin, planner = await login("admin"), await login("planner")
    printer = await _printer(client, admin, demo)
    found = await client.get("/products", headers=planner, params={"q": "LM-SC-30"})
    product_id = found.json()["items"][0]["id"]
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", (product_id,))
        issuing = asyncio.ensure_future(
            client.post(
                "/batches",
                headers=planner,
                json={"size": 5, "printer_id": printer, "product_id": product_id},
            )
        )
        assert await lock_waiters(watch, 1), "the issuance should wait for the held product"
        closed = await client.post(f"/orgs/{printer}/deactivate", headers=admin)
        assert closed.status_code == 200, closed.text
        await holder.commit()
        issued = await asyncio.wait_for(issuing, 60)
    assert_error(issued, 422, "printer_inactive")
    listed = await client.get("/batches", headers=planner, params={"printer_id": printer})
    assert listed.json()["total"] == 0, listed.text


async def test_a_printers_deactivation_waits_for_a_batch_being_issued_to_it(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """The other order: an issuance past its check of the printer holds the printer's row to
    its commit, so a deactivation sent meanwhile waits for it (unlocked, the deactivation
    committed at once and the batch was issued after it to a closed printer): the batch is
    issued (201), the printer is closed after it, and the next batch for it is refused. (The
    issuance is held after its check by a transaction holding the planner's user row, which the
    insert's foreign key check waits for.)"""
    admin, planner = await login("admin"), await login("planner")
    printer = await _printer(client, admin, demo)
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM users WHERE username = 'planner' FOR UPDATE")
        issuing = asyncio.ensure_future(
            client.post("/batches", headers=planner, json={"size": 5, "printer_id": printer})
        )
        assert await lock_waiters(watch, 1), "the issuance should wait for the held user"
        closing = asyncio.ensure_future(client.post(f"/orgs/{printer}/deactivate", headers=admin))
        waited = await lock_waiters(watch, 2)
        await holder.commit()
        issued, closed = await asyncio.wait_for(asyncio.gather(issuing, closing), 60)
    assert waited, "the deactivation should wait for the issuance holding the printer"
    assert issued.status_code == 201, issued.text
    assert closed.status_code == 200, closed.text
    again = await client.post("/batches", headers=planner, json={"size": 5, "printer_id": printer})
    assert_error(again, 422, "printer_inactive")


async def test_a_request_key_sent_again_with_another_note_is_another_request(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a planner reusing last night's request key for tonight's batch was answered 200
    with last night's batch, tonight's note dropped. The note is part of the request, for unit
    and case batches alike."""
    planner = await login("planner")
    body = {"size": 50, "printer_id": demo["PRINTER-SH"], "request_key": "night-run-note",
            "note": "run of 2026-11-24"}  # fmt: skip
    assert (await client.post("/batches", headers=planner, json=body)).status_code == 201
    again = await client.post("/batches", headers=planner, json=body)
    assert again.status_code == 200, again.text  # the same request: a retry
    other = await client.post("/batches", headers=planner, json={**body, "note": "2026-11-25"})
    assert_error(other, 409, "request_key_reused")
    cases = {"level": "inner", "size": 5, "printer_id": demo["PRINTER-SH"],
             "request_key": "night-run-cases", "note": "run of 2026-11-24"}  # fmt: skip
    assert (await client.post("/case-batches", headers=planner, json=cases)).status_code == 201
    other = await client.post("/case-batches", headers=planner, json={**cases, "note": "later"})
    assert_error(other, 409, "request_key_reused")


async def test_a_printers_request_key_is_not_another_printers(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: two contract printers' serialization servers (API keys at their own printer
    organisations) both number their requests ``run-1``. Request keys were the brand's, so
    printer B's first batch and case batch under ``run-1`` were refused 409
    ``request_key_reused`` for printer A's, which B cannot see — B's request never made, and B
    learned which keys A used. A key is the caller's, as a client id (an API key's its own, a
    user's its organisation's): B gets batches of its own, A's retry still gets A's."""
    admin = await login("admin")
    a_org, a_key = await _contract_printer_key(client, admin, demo, ["codes.issue"])
    b_org, b_key = await _contract_printer_key(client, admin, demo, ["codes.issue"])
    rk = f"run-{secrets.token_hex(3)}"
    body = {"size": 5, "request_key": rk}
    cases = {"level": "inner", "size": 2, "request_key": rk}
    a = await client.post("/batches", headers=a_key, json={**body, "printer_id": a_org})
    ca = await client.post("/case-batches", headers=a_key, json={**cases, "printer_id": a_org})
    assert a.status_code == 201 and ca.status_code == 201, (a.text, ca.text)

    b = await client.post("/batches", headers=b_key, json={**body, "printer_id": b_org})
    cb = await client.post("/case-batches", headers=b_key, json={**cases, "printer_id": b_org})
    assert b.status_code == 201, b.text  # was 409 request_key_reused
    assert b.json()["printer_id"] == b_org and b.json()["batch_no"] != a.json()["batch_no"]
    assert cb.status_code == 201, cb.text  # was 409 request_key_reused
    assert cb.json()["printer_id"] == b_org

    again = await client.post("/batches", headers=a_key, json={**body, "printer_id": a_org})
    assert again.status_code == 200 and again.json()["batch_no"] == a.json()["batch_no"]
    cagain = await client.post("/case-batches", headers=a_key, json={**cases, "printer_id": a_org})
    assert cagain.status_code == 200 and cagain.json()["id"] == ca.json()["id"]
    # the brand's planner (a user: its organisation's keys) with the same key: another request
    planner = await login("planner")
    mine = {**body, "printer_id": demo["PRINTER-SH"]}
    assert (await client.post("/batches", headers=planner, json=mine)).status_code == 201
    assert (await client.post("/batches", headers=planner, json=mine)).status_code == 200


async def test_a_case_batch_is_voided_unless_a_case_of_it_holds_goods(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a case batch had a void state that scans and exports honour but no way to reach
    it (a planner with misprinted or stolen pallet labels). Voided, its codes are refused on
    the line; one of its cases holding goods makes the void 409 until it is unpacked."""
    planner, operator = await login("planner"), await login("operator")
    batch_no, product_id = await issue_units(client, login, demo, 4)
    scheme = scheme_for_tests()
    units = [scheme.serial(batch_no, i) for i in range(4)]
    await activate(client, login, units, product_id, line="CV1")
    made = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "inner", "size": 3, "printer_id": demo["PRINTER-SH"]},
    )
    assert made.status_code == 201, made.text
    batch = made.json()["id"]
    first = int(made.json()["first_sscc"][:-1])
    boxes = [f"{first + i:017d}{gs1_check_digit(f'{first + i:017d}')}" for i in range(3)]

    async def pack(box: str, children: list[str]) -> dict[str, Any]:
        scan = {"id": f"cv-{box}", "code": box, "at": "2026-11-01T09:00:00+08:00",
                "children": children}  # fmt: skip
        answer = await client.post("/lines/CV1/scans", headers=operator, json={"scans": [scan]})
        assert answer.status_code == 200, answer.text
        return answer.json()["scans"][0]  # type: ignore[no-any-return]

    assert (await pack(boxes[0], units[:2]))["result"] == "ok"
    url = f"/case-batches/{batch}/void"
    held = assert_error(
        await client.post(url, headers=planner, json={"reason": "stolen"}),
        409,
        "case_batch_in_use",
    )
    assert held["details"] == {"cases": 1}
    unpacked = await client.post(
        "/packing/unpack",
        headers=operator,
        json={"parent": boxes[0], "children": units[:2], "reason": "relabel"},
    )
    assert unpacked.status_code == 200, unpacked.text
    voided = await client.post(url, headers=planner, json={"reason": "stolen"})
    assert voided.status_code == 200, voided.text
    assert voided.json()["state"] == "void"
    refused = await pack(boxes[1], units[2:])
    assert (refused["result"], refused["reason"]) == ("rejected", "case_void")
    assert (await client.post(url, headers=planner, json={"reason": "again"})).status_code == 200
    # another brand's admin: no such batch; a reason with a control character: refused
    other = await other_brand_admin(client, login)
    assert_error(await client.post(url, headers=other, json={"reason": "x"}), 404)
    assert_error(await client.post(url, headers=planner, json={"reason": "a\u0000b"}), 400)


async def test_a_case_batch_voided_while_an_upload_packs_a_case_of_it_waits_for_it(
    client: Any, login: Any, app: Any, demo: Any, monkeypatch: Any
) -> None:
    """A probe's check that held: the upload, paused after it locked its case batch (``FOR KEY
    SHARE``, ``scans._batches_live``) and before it reads the cases' state, is waited for by the
    case batch's void, which then finds the new case holding goods (409
    ``case_batch_in_use``)."""
    from app.packing import scans as scans_module
    from tests.test_logistics import waiting_for_a_lock
    from tests.test_packing import scan, set_line, upload

    batch_no, product_id = await issue_units(client, login, demo, 3)
    scheme = scheme_for_tests()
    units = [scheme.serial(batch_no, i) for i in range(3)]
    planner = await login("planner")
    made = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "inner", "size": 1, "printer_id": demo["PRINTER-SH"]},
    )
    assert made.status_code == 201, made.text
    batch = made.json()
    await set_line(client, login, product_id, "CVR")
    paused, go = asyncio.Event(), asyncio.Event()
    locked = scans_module._locked

    async def pausing(conn: Any, row: Any, codes: list[int]) -> Any:
        if not paused.is_set():
            paused.set()
            await go.wait()
        return await locked(conn, row, codes)

    monkeypatch.setattr(scans_module, "_locked", pausing)
    packing = asyncio.create_task(
        upload(client, login, "CVR", [scan(u) for u in units] + [scan(batch["first_sscc"])])
    )
    await paused.wait()
    void = asyncio.create_task(
        client.post(f"/case-batches/{batch['id']}/void", headers=planner, json={"reason": "x"})
    )
    async with app.state.pool.connection() as conn:
        assert await waiting_for_a_lock(conn)
    go.set()
    body, voided = await packing, await void
    assert body["rejected"] == 0, body
    assert_error(voided, 409, "case_batch_in_use")


async def test_a_case_batch_is_voided_by_whoever_may_issue_and_void_batches(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``POST /case-batches/{id}/void`` checked ``codes.issue`` (as a unit batch's void
    does), then read the batch through ``get_case_batch``, which demanded ``codes.export``: the
    brand's ERP key holding ``codes.issue`` issued a case batch (201) and voided unit batches,
    but voiding its case batch was 403 "missing codes.export", and so was reading it back.
    README: case batches are "seen, exported, voided and issued under the unit batches' rule"
    (now one rule: ``service.visible_sql``)."""
    admin = await login("admin")
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": "erp-cases", "permissions": ["codes.issue"], "org_id": demo["BRAND-LUMI"]},
    )
    assert made.status_code == 201, made.text
    key = {"X-API-Key": made.json()["key"]}
    unit = await client.post(
        "/batches", headers=key, json={"size": 3, "printer_id": demo["PRINTER-SH"]}
    )
    assert unit.status_code == 201, unit.text
    unit_void = await client.post(
        f"/batches/{unit.json()['batch_no']}/void", headers=key, json={"reason": "misprint"}
    )
    assert unit_void.status_code == 200, unit_void.text  # the unit batch's rule
    case = await client.post(
        "/case-batches",
        headers=key,
        json={"level": "master", "size": 3, "printer_id": demo["PRINTER-SH"]},
    )
    assert case.status_code == 201, case.text
    voided = await client.post(
        f"/case-batches/{case.json()['id']}/void", headers=key, json={"reason": "misprint"}
    )
    assert voided.status_code == 200, voided.text
    assert voided.json()["state"] == "void"
    shown = await client.get(f"/case-batches/{case.json()['id']}", headers=key)
    assert shown.status_code == 200, shown.text


async def test_a_printer_sees_the_case_batches_addressed_to_it(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the demo printer's user (role ``printer``: ``codes.download``) lists and reads
    the unit batches addressed to its printer, but ``GET /case-batches`` and
    ``GET /case-batches/{id}`` of a case batch addressed to it answered 403 (missing
    ``codes.export``): case batches are seen under the unit batches' rule
    (``service.visible_sql``). Now 200, its own case batches only: another printer's is
    unlisted and 404."""
    ssccs = await issue_cases(client, login, demo, "inner", 2)  # addressed to PRINTER-SH
    planner = await login("planner")
    listed = (await client.get("/case-batches", headers=planner)).json()["items"]
    mine = next(b for b in listed if b["first_sscc"] == ssccs[0])
    ours, _ = await _contract_printer_key(client, await login("admin"), demo, ["codes.issue"])
    other = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "inner", "size": 2, "printer_id": ours},
    )
    assert other.status_code == 201, other.text
    printer = await login("printer")
    seen = await client.get("/case-batches", headers=printer, params={"per_page": 200})
    assert seen.status_code == 200, seen.text
    ids = [b["id"] for b in seen.json()["items"]]
    assert mine["id"] in ids and other.json()["id"] not in ids
    assert {b["printer_id"] for b in seen.json()["items"]} == {demo["PRINTER-SH"]}
    one = await client.get(f"/case-batches/{mine['id']}", headers=printer)
    assert one.status_code == 200, one.text
    assert_error(await client.get(f"/case-batches/{other.json()['id']}", headers=printer), 404)


async def test_a_void_is_read_at_once_by_this_process_s_verifications(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the verifier keeps each batch (its state) in a per-process cache for
    ``BATCH_TTL`` (5 s), and ``POST /batches/{no}/void`` did not clear it: a code of a batch
    verified in the seconds before its void still answered as live after it, and a claim
    right after the void was verified as genuine. The void drops the batch from this process's
    verifiers' caches now: the next verification answers ``not_genuine`` / ``void``."""
    from tests.points_support import member_client

    planner = await login("planner")
    batch = await client.post(
        "/batches", headers=planner, json={"size": 2, "printer_id": demo["PRINTER-SH"]}
    )
    assert batch.status_code == 201, batch.text
    scheme = app.state.scheme
    serials = [scheme.serial(batch.json()["batch_no"], i) for i in range(2)]
    async with member_client(app) as mc:
        before = await mc.post("/v1/verify", json={"serial": serials[0]})
        assert before.status_code == 200 and before.json()["reason"] != "void", before.text
        voided = await client.post(
            f"/batches/{batch.json()['batch_no']}/void", headers=planner, json={"reason": "leak"}
        )
        assert voided.status_code == 200, voided.text
        after = await mc.post("/v1/verify", json={"serial": serials[1]})
    assert after.status_code == 200, after.text
    assert (after.json()["result"], after.json()["reason"]) == ("not_genuine", "void"), after.json()


async def test_a_verification_while_the_void_commits_does_not_keep_the_batch_live(
    client: Any, login: Any, demo: Any, app: Any, monkeypatch: Any
) -> None:
    """The void forgot the batch in the verifiers' caches before its transaction committed: a
    verification in between read the batch as still live and cached it so for ``BATCH_TTL``
    (5 s). The cache is emptied once the void has committed (the in-between read is made
    here by wrapping the service call the route makes, on its own connection as the verifier
    reads)."""
    from app.codes import routes, service

    planner = await login("planner")
    batch = await client.post(
        "/batches", headers=planner, json={"size": 1, "printer_id": demo["PRINTER-SH"]}
    )
    assert batch.status_code == 201, batch.text
    batch_no = batch.json()["batch_no"]
    verifier = app.state.verifier
    real = service.void_batch

    async def void_then_read(*args: Any) -> Any:
        voided = await real(*args)
        seen = await verifier.batch(batch_no)  # another connection: the void is not committed
        assert seen is not None and seen.state != "void"
        return voided

    monkeypatch.setattr(routes.service, "void_batch", void_then_read)
    voided = await client.post(f"/batches/{batch_no}/void", headers=planner, json={"reason": "x"})
    assert voided.status_code == 200, voided.text
    cached = await verifier.batch(batch_no)
    assert cached is not None and cached.state == "void"


async def _brand_with_printer(client: Any, login: Any, prefix: str | None = None) -> dict[str, Any]:
    """A brand onboarded by the platform operator (with ``prefix`` as its GS1 company prefix,
    or none), its admin, and a printer of its own."""
    platform = await login("platform")
    extra = {} if prefix is None else {"gs1_company_prefix": prefix}
    brand, admin = await onboarded_brand(client, login, **extra)
    assert brand["gs1_company_prefix"] == prefix
    printer = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "printer",
            "name": "Nova printer",
            "erp_code": "NV-P",
            "parent_id": brand["id"],
        },
    )
    assert printer.status_code == 201, printer.text
    return {
        "brand_id": brand["id"],
        "admin": admin,
        "platform": platform,
        "printer_id": printer.json()["id"],
    }


def _prefix(digits: int = 9) -> str:
    """A GS1 company prefix of ``digits`` digits no other test gives (a brand's is unique)."""
    return "8" + "".join(str(secrets.randbelow(10)) for _ in range(digits - 1))


async def test_a_second_brands_case_codes_are_issued_under_its_own_company_prefix(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: an SSCC (C4) is `extension + GS1 company prefix + serial reference + check`,
    the prefix naming the GS1 member that owns the case code. Every brand's case batches took
    the one platform-wide ``TRACECODE_GS1_COMPANY_PREFIX`` (the demo brand's, its GTINs
    06901234…), so a second brand onboarded on the platform printed its pallets under the first
    brand's company prefix. A brand has its own (the platform operator's to set): without one,
    while another brand's case codes carry the platform's, its first case batch is 422
    ``company_prefix_required``; with one, its batches carry it; the demo brand's stay as
    before."""
    platform_prefix = app.state.settings.gs1_company_prefix
    lumi_cases = await issue_cases(client, login, demo, "inner", 1)
    assert lumi_cases[0][1 : 1 + len(platform_prefix)] == platform_prefix
    nova = await _brand_with_printer(client, login)
    body = {"level": "inner", "size": 1, "printer_id": nova["printer_id"]}
    refused = assert_error(
        await client.post("/case-batches", headers=nova["admin"], json=body),
        422,
        "company_prefix_required",
    )
    assert refused["details"]["field"] == "gs1_company_prefix"
    prefix = _prefix()
    patched = await client.patch(
        f"/orgs/{nova['brand_id']}", headers=nova["platform"], json={"gs1_company_prefix": prefix}
    )
    assert patched.status_code == 200 and patched.json()["gs1_company_prefix"] == prefix
    batch = await client.post("/case-batches", headers=nova["admin"], json=body)
    assert batch.status_code == 201, batch.text
    assert batch.json()["company_prefix"] == prefix
    assert batch.json()["first_sscc"][1:10] == prefix
    assert not batch.json()["first_sscc"][1:].startswith(platform_prefix)
    lumi_again = await issue_cases(client, login, demo, "inner", 1)
    assert lumi_again[0][1 : 1 + len(platform_prefix)] == platform_prefix


async def test_a_brands_company_prefix_stays_once_its_case_codes_carry_it(
    client: Any, login: Any, demo: Any
) -> None:
    """A brand's own company prefix is printed in its SSCCs, as a product's GTIN in its codes:
    changed (or taken away) before its first case batch, fine; after, 409 ``in_use`` — and the
    brand's earlier batches keep the prefix they were issued under."""
    first, second = _prefix(), _prefix()
    nova = await _brand_with_printer(client, login, first)
    url = f"/orgs/{nova['brand_id']}"
    changed = await client.patch(url, headers=nova["platform"], json={"gs1_company_prefix": second})
    assert changed.status_code == 200 and changed.json()["gs1_company_prefix"] == second
    body = {"level": "master", "size": 2, "printer_id": nova["printer_id"]}
    batch = await client.post("/case-batches", headers=nova["admin"], json=body)
    assert batch.status_code == 201, batch.text
    assert batch.json()["company_prefix"] == second
    for value in (first, None):
        error = assert_error(
            await client.patch(url, headers=nova["platform"], json={"gs1_company_prefix": value}),
            409,
            "in_use",
        )
        assert error["details"] == {"field": "gs1_company_prefix"}
    # the same value again changes nothing; other fields stay editable
    same = await client.patch(
        url, headers=nova["platform"], json={"gs1_company_prefix": second, "name": "Nova Two"}
    )
    assert same.status_code == 200 and same.json()["gs1_company_prefix"] == second
    shown = await client.get(f"/case-batches/{batch.json()['id']}", headers=nova["admin"])
    assert shown.json()["first_sscc"] == batch.json()["first_sscc"]


async def test_a_brands_serial_references_end_where_its_own_prefix_leaves_no_digit(
    client: Any, login: Any, demo: Any
) -> None:
    """The range check is the brand's prefix's: a 12-digit prefix leaves 4 digits of serial
    reference (9,999 at most), so a batch of 10,000 is 422 ``sscc_range_exhausted`` for it,
    whatever room the platform's 7-digit prefix leaves."""
    nova = await _brand_with_printer(client, login, _prefix(12))
    body = {"level": "pallet", "size": 10_000, "printer_id": nova["printer_id"]}
    error = assert_error(
        await client.post("/case-batches", headers=nova["admin"], json=body),
        422,
        "sscc_range_exhausted",
    )
    assert "up to 9999" in error["message"]


async def test_a_long_prefix_brands_serial_references_are_its_own_whatever_others_issued(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: serial references came from one platform-wide sequence, so a brand with a
    12-digit prefix (room for 9,999) found the room taken by the other brands' pallets (every
    case batch of the platform's 7-digit prefix moved the sequence on): its first batch was 422
    ``sscc_range_exhausted`` once the platform had issued 9,999 cases. They are counted per
    prefix now (``sscc_refs``): the brand's start at 1 and run to 9,999, a refused batch takes
    none, and the demo brand's go on from where they were."""
    before = await issue_cases(client, login, demo, "inner", 1)
    nova = await _brand_with_printer(client, login, _prefix(12))
    body = {"level": "pallet", "printer_id": nova["printer_id"]}
    first = await client.post("/case-batches", headers=nova["admin"], json={**body, "size": 9000})
    assert first.status_code == 201, first.text
    assert first.json()["first_ref"] == 1
    error = assert_error(
        await client.post("/case-batches", headers=nova["admin"], json={**body, "size": 1000}),
        422,
        "sscc_range_exhausted",
    )
    assert "999 left" in error["message"], error
    last = await client.post("/case-batches", headers=nova["admin"], json={**body, "size": 999})
    assert last.status_code == 201, last.text
    assert (last.json()["first_ref"], last.json()["last_sscc"][-5:-1]) == (9001, "9999")
    after = await issue_cases(client, login, demo, "inner", 1)
    assert int(after[0][8:-1]) == int(before[0][8:-1]) + 1  # the platform prefix's, going on


async def test_a_company_prefix_starting_one_in_use_is_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Counted per prefix, two prefixes of which one starts the other would make one SSCC
    (0614141 + 012345678 and 06141410 + 12345678). A brand may not be given one that starts,
    or extends, a prefix case codes were issued under (the platform's, which the demo brand's
    pallets carry, included: it was only refused when equal), 409
    ``duplicate_company_prefix``; nor may a brand take the platform's setting once it was
    changed to one such."""
    import msgspec

    from app.codes.cases import _company_prefix
    from app.errors import Conflict

    platform_prefix = app.state.settings.gs1_company_prefix
    await issue_cases(client, login, demo, "inner", 1)  # the platform's prefix in use
    nova = await _brand_with_printer(client, login)
    url = f"/orgs/{nova['brand_id']}"
    for value in (platform_prefix + "5", platform_prefix[:-1]):
        error = assert_error(
            await client.patch(url, headers=nova["platform"], json={"gs1_company_prefix": value}),
            409,
            "duplicate_company_prefix",
        )
        assert error["details"] == {"field": "gs1_company_prefix"}
    changed = msgspec.structs.replace(app.state.settings, gs1_company_prefix=platform_prefix + "0")
    async with app.state.pool.connection() as conn, conn.transaction():
        try:
            taken = await _company_prefix(conn, nova["brand_id"], changed)
        except Conflict as refused:
            assert refused.code == "duplicate_company_prefix"
        else:
            raise AssertionError(f"the brand took {taken}, which extends {platform_prefix}")


async def test_a_second_brands_sscc_epc_urn_splits_at_its_own_prefix_length(
    client: Any, login: Any, demo: Any
) -> None:
    """An SSCC's EPC URN (``urn:epc:id:sscc:{company prefix}.{extension + serial reference}``,
    an RFID tag's) splits at the length of the prefix the case was issued under, which the
    batch names: a 9-digit brand's case reads ``{prefix}.{ext}{7 digits}``, the URN is read back
    as its SSCC by EPCIS (canonical Digital Link) and by the brand's trace."""
    from app._core import sscc_urn
    from app.codes.scheme import sscc_from_scan
    from app.epcis.identifiers import canonical

    prefix = _prefix()
    nova = await _brand_with_printer(client, login, prefix)
    body = {"level": "pallet", "size": 1, "printer_id": nova["printer_id"]}
    batch = (await client.post("/case-batches", headers=nova["admin"], json=body)).json()
    sscc = batch["first_sscc"]
    urn = sscc_urn(sscc, len(batch["company_prefix"]))
    assert urn == f"urn:epc:id:sscc:{prefix}.3{batch['first_ref']:07d}"
    assert canonical(urn) == f"https://id.gs1.org/00/{sscc}"
    assert sscc_from_scan(urn) == sscc
    traced = await client.get(f"/trace/{urn}", headers=nova["admin"])
    assert traced.status_code == 200, traced.text
    assert (traced.json()["kind"], traced.json()["code"]) == ("case", sscc)
