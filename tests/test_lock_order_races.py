"""Lock-order inversions race probes found, each answered 409 ``retry`` to one side (a
deadlock PostgreSQL broke): nothing a clerk, a line or a member can act on.

- Receiving by order (``POST /orders/{id}/receive``: the receipt's draft names the order — a
  foreign key's KEY SHARE on its row — then its goods are locked) against the sender's next
  shipment of the same order (its lines, then the order FOR UPDATE, which waited for the
  receipt's KEY SHARE while the receipt waited for the lines): the shipment takes the order FOR
  NO KEY UPDATE, which a foreign key's KEY SHARE does not block.
- Unpacking a pallet (``POST /packing/unpack``, a line's undo, an EPCIS unpacking: the pallet,
  then its cases) against a document moving it (every box of the tree in SSCC order: the cases,
  issued before the pallet, first): a correction now locks the tree the document's way
  (``app.logistics.movements.lock_cases``), then the units.
- A staff reply to a complaint (the complaint's row, then a WeChat message to its member — a
  foreign key's KEY SHARE on the member) against the member's erasure (the member's row FOR
  UPDATE once its phone, a unique key, changed; then the complaints): the erasure closes the
  complaints before it changes the phone.
- An SMS gateway's batch of "TD" replies (in phone order: one phone's opt-out, the brand's
  marketing lock, then the next phone's member's row) against the erasure of that next member
  (its row, then the brand's marketing lock): the batch takes every member's row first.
- Creating a serial pool (its rows' foreign keys took its batches in the order listed) against
  an allocation from another pool of the same batches (in batch order): the creation reads its
  batches FOR SHARE in batch order first.
- Two lines' uploads activating the same new units, scanned in opposite orders (each inserted
  its units' state rows in scan order, waiting for a row the other had just inserted): the
  uploads insert new units and cases in code order, the order their state rows are locked in.

Each test holds a row from a third transaction so that both sides are under way at once."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import msgspec

from tests import steady
from tests.helpers import issue_cases, issue_units, sales_order
from tests.points_support import member_client, new_member
from tests.race_support import held_in_turn, lock_waiters
from tests.test_hardening_logistics import stock_check
from tests.test_logistics import confirm, document, pack, palletised
from tests.test_packing import scan, serials, set_line, set_rules
from tests.test_sms import _signed, callback_secret
from tests.test_wechat import _account, _bind, wechat

# the fixtures: the local WeChat the brand's account points at; the SMS callbacks' secret
__all__ = ["callback_secret", "wechat"]


async def _erase_me(app: Any, member: dict[str, str]) -> Any:
    async with member_client(app) as mc:
        return await mc.delete("/members/me", headers=member)


def _no_deadlock(answers: list[Any]) -> None:
    for answer in answers:
        assert answer.status_code < 500, answer.text
        if answer.status_code >= 400:
            assert answer.json()["error"]["code"] != "retry", answer.text


async def test_the_next_shipment_of_an_order_goes_while_its_receipt_by_order_waits(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """The receipt of the first shipment waits for its goods (held); the second shipment of the
    order is confirmed meanwhile (it waited for the receipt's draft before: then a deadlock)."""
    goods = await pack(client, login, app, demo, 2)
    clerk, agent = await login("clerk"), await login("agent_clerk")
    inbound = await document(client, clerk, goods["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    first, second = goods["cases"]
    order_id = await sales_order(client, login, demo, goods["product_id"], 20)
    shipped = await document(client, clerk, [first], kind="outbound", order_id=order_id)
    assert (await confirm(client, clerk, shipped)).status_code == 200
    next_one = await document(client, clerk, [second], kind="outbound", order_id=order_id)
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM case_state WHERE sscc = %s FOR UPDATE", (int(first),))
        receiving = asyncio.ensure_future(client.post(f"/orders/{order_id}/receive", headers=agent))
        assert await lock_waiters(watch, 1), "the receipt waits for its goods"
        shipping = await asyncio.wait_for(confirm(client, clerk, next_one), 30)
        assert shipping.status_code == 200, shipping.text
        assert not receiving.done()
        await holder.commit()
        received = await asyncio.wait_for(receiving, 30)
    assert received.status_code == 200, received.text
    assert received.json()["units"] == 10
    assert await stock_check(settings) == []


async def test_a_pallet_unpacked_as_its_outbound_is_confirmed(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    """The unpacking is queued first (the pallet held), the outbound behind it: the unpacking
    empties the pallet, then the outbound finds it empty (422) — before, 409 ``retry``."""
    goods = await palletised(client, login, app, demo)
    pallet, clerk, operator = goods["pallet"], await login("clerk"), await login("operator")
    ship = await document(
        client, clerk, [pallet], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    body = {"parent": pallet, "reason": "rework"}
    answers = await held_in_turn(
        app,
        "SELECT 1 FROM case_state WHERE sscc = %s FOR UPDATE",
        (int(pallet),),
        lambda: client.post("/packing/unpack", headers=operator, json=body),
        lambda: confirm(client, clerk, ship),
    )
    _no_deadlock(answers)
    assert answers[0].status_code == 200, answers[0].text
    assert await stock_check(settings) == []


async def test_a_lines_undo_of_a_pallet_as_its_factory_inbound_is_confirmed(
    client: Any, login: Any, app: Any, demo: Any, settings: Any
) -> None:
    goods = await pack(client, login, app, demo, 2)
    pallet = (await issue_cases(client, login, demo, "pallet", 1))[0]
    operator, clerk = await login("operator"), await login("clerk")
    scan = {
        "id": f"lock-{secrets.token_hex(6)}",
        "code": pallet,
        "children": goods["cases"],
        "at": "2026-11-10T08:05:00Z",
    }
    body = (await client.post("/lines/L9/scans", headers=operator, json={"scans": [scan]})).json()
    assert body["rejected"] == 0, body
    inbound = await document(client, clerk, [pallet], kind="factory_inbound")
    answers = await held_in_turn(
        app,
        "SELECT 1 FROM case_state WHERE sscc = %s FOR UPDATE",
        (int(pallet),),
        lambda: client.post("/lines/L9/undo", headers=operator, json={"reason": "wrong pallet"}),
        lambda: confirm(client, clerk, inbound),
    )
    _no_deadlock(answers)
    assert answers[0].status_code == 200, answers[0].text
    assert await stock_check(settings) == []


async def test_a_pool_listing_its_batches_newest_first_is_made_as_another_pool_allocates(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """The allocation from pool [b1, b2] has taken b1 and waits for b2 (a third transaction
    holds it); a new pool [b2, b1] is created meanwhile: it waits for b1, then both are made."""
    planner = await login("planner")
    b1, _ = await issue_units(client, login, demo, 10)
    b2, _ = await issue_units(client, login, demo, 10)
    assert b1 < b2

    async def pool(batches: list[int]) -> Any:
        name = f"lock-{secrets.token_hex(6)}"
        return await client.post("/pools", headers=planner, json={"name": name, "batches": batches})

    first = await pool([b1, b2])
    assert first.status_code == 201, first.text
    allocation = {"pool_id": first.json()["id"], "count": 15}
    answers = await held_in_turn(  # the allocation waits for b2, the new pool for b1
        app,
        "SELECT 1 FROM code_batches WHERE batch_no = %s FOR KEY SHARE",
        (b2,),
        lambda: client.post("/allocations", headers=planner, json=allocation),
        lambda: pool([b2, b1]),
    )
    _no_deadlock(answers)
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]


async def test_a_reply_to_a_complaint_and_the_erasure_of_its_wechat_bound_member(
    client: Any, login: Any, app: Any, demo: Any, wechat: Any
) -> None:
    """The reply waits for the complaint (a third transaction holds it), the erasure behind it:
    the reply goes first (its WeChat message to the member), then the erasure closes the
    complaint. Before, the erasure had taken the member's row FOR UPDATE and the reply's
    message waited for it: a deadlock, the erasure refused 409 ``retry``."""
    brand = demo["BRAND-LUMI"]
    service = await login("service")
    await _account(client, await login("admin"), wechat)
    member_id, member, _ = await new_member(app, brand)
    await _bind(app, brand, member_id, wechat.user("o" + secrets.token_hex(12)))
    filed = await client.post(
        "/members/me/complaints",
        headers=member,
        json={"kind": "complaint", "body": f"leaks {secrets.token_hex(3)}"},
    )
    assert filed.status_code == 201, filed.text
    complaint = filed.json()["id"]
    answers = await held_in_turn(
        app,
        "SELECT 1 FROM complaints WHERE id = %s FOR NO KEY UPDATE",
        (complaint,),
        lambda: client.post(
            f"/complaints/{complaint}/reply", headers=service, json={"reply": "sorry"}
        ),
        lambda: _erase_me(app, member),
    )
    _no_deadlock(answers)
    assert [a.status_code for a in answers] == [200, 204], [a.text for a in answers]


async def test_a_batch_of_td_replies_and_the_erasure_of_a_member_it_names(
    client: Any, app: Any, demo: Any, callback_secret: None
) -> None:
    """The erasure holds its member's row and waits for its balance (a third transaction holds
    it); a batch of replies names another phone of the brand, then the member's: it waits for
    the member's row. Before, it held the brand's marketing lock by then (the first phone's),
    which the erasure takes next: a deadlock, the batch refused 409 ``retry``."""
    brand = demo["BRAND-LUMI"]
    member_id, member, phone = await new_member(app, brand)
    first = steady.phone("130")  # before the member's 13x phone in the batch's order
    assert first < phone
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO point_balances (member_id, balance) VALUES (%s, 0)", (member_id,)
        )
    body = msgspec.json.encode(
        {"replies": [{"phone": p, "text": "TD", "brand_id": brand} for p in (first, phone)]}
    )
    answers = await held_in_turn(  # the erasure waits for the balance, the replies for its row
        app,
        "SELECT 1 FROM point_balances WHERE member_id = %s FOR UPDATE",
        (member_id,),
        lambda: _erase_me(app, member),
        lambda: client.post("/sms/callbacks/http/replies", content=body, headers=_signed(body)),
    )
    _no_deadlock(answers)
    assert [a.status_code for a in answers] == [204, 200], [a.text for a in answers]


async def test_two_lines_activating_the_same_new_units_in_opposite_orders(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """Two lines read the same ten new units, in opposite orders, each into its own case, while
    a third transaction is inserting the fifth unit's row. Line A (units 1 to 10) waits at the
    fifth; line B, from the tenth down, had inserted the tenth to the sixth and waited at the
    fifth too: released, each waited for the other's rows, and B's whole upload was 409
    ``retry``. In code order B waits for A's first unit, then answers per scan: its units
    ``already_bound``, its case ``empty_case``."""
    batch_no, product_id = await issue_units(client, login, demo, 10)
    await set_rules(client, login, product_id, [])
    units = serials(app, batch_no, 0, 10)
    a_case, b_case = await issue_cases(client, login, demo, "inner", 2)
    lines = [f"DLa{batch_no}", f"DLb{batch_no}"]
    for line in lines:
        await set_line(client, login, product_id, line)
    operator = await login("operator")

    def upload(line: str, codes: list[str], case: str) -> Any:
        body = {"scans": [scan(code) for code in codes] + [scan(case)]}
        return client.post(f"/lines/{line}/scans", headers=operator, json=body)

    brand = demo["BRAND-LUMI"]
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute(  # rolled back below: only the fifth unit's insert is held
            """INSERT INTO unit_state (code, brand_id, product_id, lot, production_date, status,
                   disposition, holder_org_id, activated_at, last_event_id)
               VALUES (%s, %s, %s, 'HELD', '2026-11-20', 'active', 'active', %s, now(), 0)""",
            ((batch_no << 32) | 4, brand, product_id, brand),
        )
        first = asyncio.ensure_future(upload(lines[0], units, a_case))
        assert await lock_waiters(watch, 1), "line A should wait for the fifth unit"
        second = asyncio.ensure_future(upload(lines[1], units[::-1], b_case))
        assert await lock_waiters(watch, 2), "line B should wait too"
        await holder.rollback()
        answers = list(await asyncio.wait_for(asyncio.gather(first, second), 60))
    _no_deadlock(answers)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    won, lost = (a.json()["scans"] for a in answers)
    assert {(s["result"], s.get("parent")) for s in won} == {("ok", a_case), ("ok", None)}, won
    assert [(s["result"], s.get("reason")) for s in lost] == [
        ("rejected", "already_bound")
    ] * 10 + [("rejected", "empty_case")], lost
