"""ERP master data under attack (issue 19 item 3): values that slip past a field's pattern, cells
a spreadsheet would run, and the like — each refused per row, on real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.race_support import lock_waiters
from tests.test_erp_masterdata import RUN, code, counts, errors, ids, imported, send


async def test_a_value_ending_in_a_line_break_is_refused_not_a_second_record(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    """``"AGENT-ZJ\\n"`` passes a ``^…$`` pattern (``$`` matches before a final line feed): it
    would have been a new organisation beside ``AGENT-ZJ`` that no CSV file can ever name."""
    admin = await login("admin")
    new = code("NL")
    orgs = {
        "items": [
            {"erp_code": new + "\n", "kind": "agent", "name": "A", "parent_erp_code": "BRAND-LUMI"},
            {"erp_code": code("NL2"), "kind": "agent", "name": "B", "parent_erp_code": "AGENT-ZJ\n"},
            {"erp_code": code("NL3"), "kind": "agent", "name": "C", "parent_erp_code": "BRAND-LUMI",
             "contact_phone": "0571 1234\n", "province_code": "330000\n"},
        ]
    }  # fmt: skip
    result = await imported(client, admin, "orgs", orgs)
    assert counts(result) == (0, 0, 0, 3), result
    assert sorted(errors(result)) == [
        (1, "erp_code", "invalid_value"),
        (2, "parent_erp_code", "invalid_value"),
        (3, "contact_phone", "invalid_value"),  # a row's first bad column is reported
    ]
    stored = await (
        await conn.execute("SELECT count(*) AS n FROM orgs WHERE erp_code LIKE %s", (new + "%",))
    ).fetchone()
    assert stored["n"] == 0

    products = {
        "items": [
            {"erp_code": code("PNL") + "\n", "product_no": f"PNL-{RUN}", "name": "P"},
            {"erp_code": code("PNL2"), "product_no": f"PNL2-{RUN}", "name": "P",
             "gtin": "06901234000993\n", "image_url": "https://img.example/p.png\n"},
        ]
    }  # fmt: skip
    result = await imported(client, admin, "products", products)
    assert counts(result) == (0, 0, 0, 2), result
    assert sorted(errors(result)) == [
        (1, "erp_code", "invalid_value"),
        (2, "gtin", "invalid_value"),  # a row's first bad column is reported
    ]
    users = {
        "items": [
            {"erp_code": code("UNL"), "username": f"u{RUN.lower()}nl\n",
             "org_erp_code": "AGENT-ZJ", "roles": ["field_rep"]},
            {"erp_code": code("UNL2"), "username": f"u{RUN.lower()}nl2",
             "org_erp_code": "AGENT-ZJ", "roles": ["field_rep\n"], "email": "a@b.example\n"},
        ]
    }  # fmt: skip
    result = await imported(client, admin, "users", users)
    assert counts(result) == (0, 0, 0, 2), result
    assert sorted(errors(result)) == [
        (1, "username", "invalid_value"),
        (2, "roles", "invalid_value"),  # a row's first bad column is reported
    ]
    # the same values without the line feed are fine (and CSV cells, stripped, never had one)
    fine = {"items": [{**orgs["items"][0], "erp_code": new}]}
    assert counts(await imported(client, admin, "orgs", fine, dry_run=True)) == (1, 0, 0, 0)


async def test_formula_cells_are_refused_in_every_column_a_spreadsheet_shows(
    client: Any, login: Any, demo: Any
) -> None:
    """A barcode or an e-mail address is shown by a spreadsheet like a name: a formula there is
    refused like one in a name (an e-mail address's pattern lets ``=cmd|…!A0@x.y`` through)."""
    admin = await login("admin")
    formula = '=HYPERLINK("http://evil.example","x")'
    products = {
        "items": [
            {"erp_code": code("PF1"), "product_no": f"PF1-{RUN}", "name": "P", "barcode": formula},
            {
                "erp_code": code("PF2"),
                "product_no": f"PF2-{RUN}",
                "name": "P",
                "barcode": "@SUM(1)",
            },
            {"erp_code": code("PF3"), "product_no": f"PF3-{RUN}", "name": "P", "barcode": "690123"},
        ]
    }
    result = await imported(client, admin, "products", products, dry_run=True)
    assert counts(result) == (1, 0, 0, 2), result
    assert errors(result) == [(1, "barcode", "formula_value"), (2, "barcode", "formula_value")]
    users = (
        "erp_code,username,org_erp_code,roles,email\n"
        f"{code('UF1')},u{RUN.lower()}f1,AGENT-ZJ,field_rep,=cmd|'/Ccalc'!A0@evil.example\n"
        f"{code('UF2')},u{RUN.lower()}f2,AGENT-ZJ,field_rep,rep@lumi.example\n"
    )
    result = await imported(client, admin, "users", users, dry_run=True)
    assert counts(result) == (1, 0, 0, 1), result
    assert errors(result) == [(1, "email", "formula_value")]


async def test_full_width_and_blank_led_formula_cells_are_refused_as_the_exports_guard_them(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the exports' guard missed a full-width ``＝``/``＋``/``－``/``＠`` (a Chinese
    input method in full-width mode) and a formula after leading blanks; the import's
    ``formula_value`` check, the same rule, let such a name be stored. Now refused alike."""
    admin = await login("admin")
    names = ["＝HYPERLINK(1)", "＋1", "－1", "＠SUM(1)", " =1+1", "\u3000=1+1", "\u00a0@SUM(1)"]
    items = [
        {"erp_code": code(f"PW{n}"), "product_no": f"PW{n}-{RUN}", "name": name}
        for n, name in enumerate(names)
    ]
    fine = {"erp_code": code("PWOK"), "product_no": f"PWOK-{RUN}", "name": "中文＝名 -1"}
    result = await imported(client, admin, "products", {"items": [*items, fine]}, dry_run=True)
    assert counts(result) == (1, 0, 0, len(names)), result
    assert errors(result) == [(n, "name", "formula_value") for n in range(1, len(names) + 1)]


async def test_a_user_moved_by_import_into_a_moving_org_keeps_no_stale_role(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: README: "A user moved by import loses the custom roles and the field supervisor
    its old place gave it"; an organisation's move drops the custom roles of organisations no
    longer above its users. The users import read the target store's path at its start and
    moved the user without the brand's role-name lock (``Lock.ROLE_NAMES``) that ``move_org``,
    ``create_user`` and ``_set_roles`` take: the store, moved to AGENT-GD while the import
    waited for the user's row, took the user in under Guangdong, and the roles were dropped
    against the store's old path — a Guangdong user kept a custom role of the Zhejiang agent,
    which neither order of the two moves gives. ``_move`` takes the lock first and reads both
    paths again under it."""
    admin, agent = await login("admin"), await login("agent_admin")
    role = f"zzr{RUN.lower()}"
    made = await client.post(
        "/roles", headers=agent, json={"name": role, "permissions": ["orgs.read"]}
    )
    assert made.status_code == 201, made.text
    s, t, u = code("MVS"), code("MVT"), code("MVU")
    orgs = await imported(client, admin, "orgs", {"items": [
        {"erp_code": s, "kind": "store", "name": "Move S", "parent_erp_code": "AGENT-ZJ"},
        {"erp_code": t, "kind": "store", "name": "Move T", "parent_erp_code": "AGENT-ZJ"},
    ]})  # fmt: skip
    store_t = ids(orgs)[t]
    users = await imported(client, admin, "users", {"items": [
        {"erp_code": u, "username": f"mvu{RUN.lower()}", "org_erp_code": s,
         "roles": ["store_clerk", role]},
    ]})  # fmt: skip
    user_id = ids(users)[u]
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (user_id,))
        moving_user = asyncio.ensure_future(
            send(client, admin, "users", {"items": [{"erp_code": u, "org_erp_code": t}]})
        )
        assert await lock_waiters(watch, 1), "the import should wait for the user's row"
        moving_store = asyncio.ensure_future(
            client.post(
                f"/orgs/{store_t}/move", headers=admin, json={"parent_id": demo["AGENT-GD"]}
            )
        )
        await asyncio.wait([moving_store], timeout=2)  # done now, or waiting for the import
        await holder.rollback()
        user_answer, store_answer = await asyncio.gather(moving_user, moving_store)
    assert user_answer.status_code == 200 and store_answer.status_code == 200, (
        user_answer.text,
        store_answer.text,
    )
    store = (await client.get(f"/orgs/{store_t}", headers=admin)).json()
    got = (await client.get(f"/users/{user_id}", headers=admin)).json()
    assert store["parent_id"] == demo["AGENT-GD"], store
    assert got["org_id"] == store_t, got  # the import waited for nothing but the user's row
    assert role not in got["roles"], got  # under Guangdong now, without Zhejiang's role


@pytest.mark.parametrize("patched", [0, 1])
async def test_a_users_import_moving_users_and_a_patch_of_one_s_roles_both_go_through(
    client: Any, login: Any, demo: Any, app: Any, patched: int
) -> None:
    """A probe (review): an ERP users import moving a user took the brand's role-name lock
    (``Lock.ROLE_NAMES``) and then the user's row; ``PATCH /users/{id}`` of the user's roles
    took the row and then the lock: each waited for the other, and PostgreSQL ended one of them
    (409 ``retry``). Both take the lock first now — the import before any user's row, so also
    when the PATCH is of the second row's user, whose row the import locks after the first
    row's move took the lock (``patched=1``): the PATCH and then the import, both applied."""
    admin = await login("admin")
    s, t = code(f"DLS{patched}"), code(f"DLT{patched}")
    a, b = code(f"DLA{patched}"), code(f"DLB{patched}")
    orgs = await imported(client, admin, "orgs", {"items": [
        {"erp_code": s, "kind": "store", "name": "Lock S", "parent_erp_code": "AGENT-ZJ"},
        {"erp_code": t, "kind": "store", "name": "Lock T", "parent_erp_code": "AGENT-ZJ"},
    ]})  # fmt: skip
    users = await imported(client, admin, "users", {"items": [
        {"erp_code": c, "username": f"dl{n}{patched}{RUN.lower()}", "org_erp_code": s,
         "roles": ["store_clerk"]}
        for n, c in enumerate((a, b))
    ]})  # fmt: skip
    target = ids(users)[(a, b)[patched]]
    moves = {"items": [{"erp_code": a, "org_erp_code": t}, {"erp_code": b, "org_erp_code": t}]}
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (target,))
        patch = asyncio.ensure_future(
            client.patch(
                f"/users/{target}", headers=admin, json={"roles": ["analyst", "store_clerk"]}
            )
        )
        assert await lock_waiters(watch, 1), "the PATCH should wait for the user's row"
        moving = asyncio.ensure_future(send(client, admin, "users", moves))
        assert await lock_waiters(watch, 2), "the import should wait too"
        await holder.rollback()
        patch_answer, import_answer = await asyncio.gather(patch, moving)
    assert patch_answer.status_code == 200, patch_answer.text
    assert import_answer.status_code == 200, import_answer.text
    assert counts(import_answer.json()) == (0, 2, 0, 0), import_answer.text
    got = (await client.get(f"/users/{target}", headers=admin)).json()
    assert got["org_id"] == ids(orgs)[t] and got["roles"] == ["analyst", "store_clerk"], got
