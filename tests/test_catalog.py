"""Catalogue: categories and products with GS1-validated GTINs (SPEC K1)."""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from app._core import gs1_check_digit
from tests.helpers import (
    acting,
    assert_error,
    every_item,
    issue_cases,
    onboarded_brand,
    sales_order,
)
from tests.race_support import audit_rows, deleted_once, lock_waiters, twice_held


async def test_product_crud_with_every_field(client: Any, login: Any) -> None:
    admin = await login("admin")
    category = (
        await client.post("/categories", headers=admin, json={"name": "Body 身体护理"})
    ).json()
    payload = {
        "name": "Body Lotion 身体乳",
        "product_no": "LM-BL-200",
        "category_id": category["id"],
        "spec": "200 ml",
        "product_type": "lotion",
        "barcode": "6901234000047",
        "gtin": "6901234000047",
        "image_url": "https://img.example.com/bl.png",
        "colour_no": "N/A",
        "efficacy": "保湿 moisturising",
        "video_url": "https://v.example.com/bl.mp4",
        "display_order": 5,
        "published": True,
    }
    created = await client.post("/products", headers=admin, json=payload)
    assert created.status_code == 201, created.text
    product = created.json()
    assert product["gtin"] == "06901234000047"  # GTIN-13 stored as GTIN-14
    for field in ("name", "spec", "efficacy", "video_url", "colour_no", "published"):
        assert product[field] == payload[field]
    assert (await client.get(f"/products/{product['id']}", headers=admin)).json() == product
    patched = await client.patch(
        f"/products/{product['id']}", headers=admin, json={"published": False, "spec": "250 ml"}
    )
    assert patched.json()["published"] is False and patched.json()["spec"] == "250 ml"
    assert patched.json()["name"] == payload["name"]
    assert_error(
        await client.delete(f"/categories/{category['id']}", headers=admin), 409, "category_in_use"
    )
    assert (await client.delete(f"/products/{product['id']}", headers=admin)).status_code == 204
    assert_error(await client.get(f"/products/{product['id']}", headers=admin), 404)
    assert (await client.delete(f"/categories/{category['id']}", headers=admin)).status_code == 204


async def test_gtin_check_digit_and_uniqueness(client: Any, login: Any) -> None:
    admin = await login("admin")
    bad = await client.post(
        "/products", headers=admin, json={"name": "x", "product_no": "G-1", "gtin": "6901234000048"}
    )
    assert_error(bad, 400, "invalid_gtin")
    letters = await client.post(
        "/products", headers=admin, json={"name": "x", "product_no": "G-2", "gtin": "69012340000AB"}
    )
    assert_error(letters, 400, "validation_failed")
    taken = await client.post(
        "/products",
        headers=admin,
        json={"name": "x", "product_no": "G-3", "gtin": "06901234000016"},
    )
    assert_error(taken, 409, "duplicate_gtin")
    number = await client.post(
        "/products", headers=admin, json={"name": "x", "product_no": "LM-HY-50"}
    )
    assert_error(number, 409, "duplicate_product_no")
    gtin8 = await client.post(
        "/products", headers=admin, json={"name": "x", "product_no": "G-8", "gtin": "96385074"}
    )
    assert gtin8.status_code == 201 and gtin8.json()["gtin"] == "00000096385074"


async def test_the_all_zero_gtin_is_not_a_gtin(client: Any, login: Any) -> None:
    """A probe: an ERP that writes "no barcode" as 0000000000000 (or 00000000) got its first
    product stored with GTIN 00000000000000 (its check digit happens to be 0) and a Digital
    Link ``/01/00000000000000``, and every later product was ``duplicate_gtin``. GS1 allocates
    no all-zero GTIN: 400 ``invalid_gtin``, as a wrong check digit is, on create, on change
    and as a catalogue filter."""
    admin = await login("admin")
    for gtin in ("00000000", "000000000000", "0000000000000", "00000000000000"):
        made = await client.post(
            "/products",
            headers=admin,
            json={"name": "No barcode", "product_no": f"ZERO-{secrets.token_hex(3)}", "gtin": gtin},
        )
        assert_error(made, 400, "invalid_gtin")
    product_id = await _new_product(client, admin)
    changed = await client.patch(
        f"/products/{product_id}", headers=admin, json={"gtin": "0000000000000"}
    )
    assert_error(changed, 400, "invalid_gtin")
    listed = await client.get("/products", headers=admin, params={"gtin": "00000000000000"})
    assert_error(listed, 400, "invalid_gtin")


async def test_look_alike_product_numbers_and_padded_category_names_are_refused(
    client: Any, login: Any
) -> None:
    """Probe Q: "LM-HY-50" with a blank at either end, in full-width letters, with a zero-width
    or no-break space were each a new product, and a CSV import (its cells trimmed) booked an
    order line naming one of them against another. A product number's words are one space
    apart, without other blanks, zero-width marks or full-width forms of ASCII characters; a
    category's name has no blank at either end."""
    admin = await login("admin")
    for number in (
        " LM-HY-50",
        "LM-HY-50 ",
        "ＬＭ－ＨＹ－５０",
        "LM-HY\u200b-50",
        "LM-HY-50\xa0",
        "LM  HY-50",
    ):
        made = await client.post(
            "/products", headers=admin, json={"name": "x", "product_no": number}
        )
        assert_error(made, 400, "validation_failed")
    for number in ("LM HY 9", "水乳-01"):  # words one space apart; Chinese characters welcome
        made = await client.post(
            "/products", headers=admin, json={"name": "x", "product_no": number}
        )
        assert made.status_code == 201, made.text
    for name in (" 护肤", "护肤 ", "护肤\u3000"):
        assert_error(
            await client.post("/categories", headers=admin, json={"name": name}),
            400,
            "validation_failed",
        )
    rows = await client.post(
        "/products/import",
        headers=admin,
        json={"items": [{"erp_code": "LOOK-1", "product_no": "ＬＭ－ＨＹ－５０", "name": "x"}]},
    )
    assert rows.status_code == 200 and rows.json()["rejected"] == 1, rows.text


async def test_a_name_of_only_blanks_or_invisible_marks_is_refused(client: Any, login: Any) -> None:
    """A probe: a master-data manager who cleared a product's name (or pasted an ideographic
    space, a zero-width space, a BOM or a no-break space) got 201, and the product showed with
    no name on the consumer page, in the catalogue and in every report; a category could be
    named by a zero-width mark alone. A name needs one visible character, and a category's
    name is one with no blank — a zero-width mark included — at either end: 400
    ``validation_failed``."""
    admin = await login("admin")
    for name in ("   ", "\u3000", "\u200b", "\ufeff", "\u00a0", " \u2060\t"):
        made = await client.post(
            "/products",
            headers=admin,
            json={"name": name, "product_no": f"BLANK-{secrets.token_hex(3)}"},
        )
        assert_error(made, 400, "validation_failed")
    product = (
        await client.post(
            "/products",
            headers=admin,
            json={"name": " 晚霜 ", "product_no": f"BLANK-{secrets.token_hex(3)}"},
        )
    ).json()
    assert product["name"] == " 晚霜 "  # a visible character is enough: no CSV names it
    cleared = await client.patch(f"/products/{product['id']}", headers=admin, json={"name": "  "})
    assert_error(cleared, 400, "validation_failed")
    category = await client.post(
        "/categories", headers=admin, json={"name": f"Masks {secrets.token_hex(3)}"}
    )
    assert category.status_code == 201, category.text
    for name in ("\u200b", "\ufeff护肤", "护肤\u200d"):
        assert_error(
            await client.post("/categories", headers=admin, json={"name": name}),
            400,
            "validation_failed",
        )
        assert_error(
            await client.patch(
                f"/categories/{category.json()['id']}", headers=admin, json={"name": name}
            ),
            400,
            "validation_failed",
        )


async def test_filters_and_paging(client: Any, login: Any) -> None:
    admin = await login("admin")
    skincare = next(
        c
        for c in (await client.get("/categories", headers=admin)).json()["items"]
        if c["name"].startswith("护肤")
    )
    listed = (
        await client.get("/products", headers=admin, params={"category_id": skincare["id"]})
    ).json()
    # the demo's two skin-care products, and nothing of another category (other tests of the
    # same session may add products to this one: ERP imports)
    assert {"LM-HY-50", "LM-SC-30"} <= {p["product_no"] for p in listed["items"]}
    assert all(p["category_id"] == skincare["id"] for p in listed["items"]), listed
    by_text = (await client.get("/products", headers=admin, params={"q": "lipstick"})).json()
    assert [p["product_no"] for p in by_text["items"]] == ["LM-LS-01"]
    # the search's own wildcards are only characters (probe A: q=% matched every product)
    for q in ("%", "_", "LM_LS", "\\"):
        found = (await client.get("/products", headers=admin, params={"q": q})).json()["items"]
        assert all(q.lower() in (p["name"] + p["product_no"]).lower() for p in found), (q, found)
        assert "LM-LS-01" not in {p["product_no"] for p in found}
    exact = (await client.get("/products", headers=admin, params={"q": "LM-LS"})).json()
    assert [p["product_no"] for p in exact["items"]] == ["LM-LS-01"]
    by_gtin = (
        await client.get("/products", headers=admin, params={"gtin": "6901234000023"})
    ).json()
    assert [p["product_no"] for p in by_gtin["items"]] == ["LM-SC-30"]
    page1 = (await client.get("/products", headers=admin, params={"per_page": 2})).json()
    page2 = (await client.get("/products", headers=admin, params={"per_page": 2, "page": 2})).json()
    assert len(page1["items"]) == 2 and page1["total"] >= 3
    assert not {p["id"] for p in page1["items"]} & {p["id"] for p in page2["items"]}
    assert_error(await client.get("/products", headers=admin, params={"per_page": 1000}), 400)


async def test_agents_read_the_brand_catalogue_but_cannot_write_it(client: Any, login: Any) -> None:
    clerk = await login("store_clerk")
    listed = (await client.get("/products", headers=clerk)).json()
    assert {"LM-HY-50", "LM-SC-30", "LM-LS-01"} <= {p["product_no"] for p in listed["items"]}
    product_id = listed["items"][0]["id"]
    assert_error(
        await client.patch(f"/products/{product_id}", headers=clerk, json={"name": "hacked"}),
        403,
        "permission_denied",
    )


async def test_a_store_reads_the_catalogue_entries_its_brand_keeps_elsewhere(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: README, "A brand's catalogue is readable by its whole tree". A product the brand
    keeps under its factory (``POST /products`` with ``org_id`` the factory) was ordered to a
    store, shipped and sold there, yet the store's staff got 404 for it (``GET /products/{id}``)
    and did not find it in the catalogue list, nor the factory's category — while its order
    line and its packing rules named it. The store reads every product and category of its
    brand (another brand's stay unseen: ``test_another_brand_cannot_see_or_touch_this_catalogue``)
    and still writes none."""
    admin = await login("admin")
    tag = secrets.token_hex(3).upper()
    category = await client.post(
        "/categories",
        headers=admin,
        json={"name": f"Factory line {tag}", "org_id": demo["FACTORY-SZ"]},
    )
    assert category.status_code == 201, category.text
    made = await client.post(
        "/products",
        headers=admin,
        json={
            "name": f"Factory line cream {tag}",
            "product_no": f"FAC-{tag}",
            "org_id": demo["FACTORY-SZ"],
            "category_id": category.json()["id"],
            "published": True,
        },
    )
    assert made.status_code == 201, made.text
    product_id = made.json()["id"]
    order_id = await sales_order(client, login, demo, product_id, 12, to="STORE-HZ-01")
    manager = await login("store_manager")
    order = await client.get(f"/orders/{order_id}", headers=manager)
    assert product_id in {line["product_id"] for line in order.json()["lines"]}, order.text
    one = await client.get(f"/products/{product_id}", headers=manager)
    assert one.status_code == 200 and one.json() == made.json(), one.text
    listed = await client.get("/products", headers=manager, params={"q": f"FAC-{tag}"})
    assert [p["id"] for p in listed.json()["items"]] == [product_id], listed.text
    # every page: in display order a new category comes last, after every other test's
    categories = await every_item(client, "/categories", manager)
    assert category.json()["id"] in {c["id"] for c in categories}
    assert_error(
        await client.patch(f"/products/{product_id}", headers=manager, json={"name": "x"}), 403
    )


async def test_an_agent_cannot_write_the_brand_products_packing_rules(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: an API key made at an agent holding ``catalog.write`` may not change the
    brand's product (``PATCH /products/{id}``: 404, the owner is outside its subtree), yet
    ``PUT /packing/rules/{id}`` replaced that product's packing rules (200) — which then
    reject the factory's cases (``strict``): it checked only that the product is the brand's.
    It is written as the product is now (404), and the rules stay."""
    admin = await login("admin")
    product_id = await _new_product(client, admin)
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={
            "name": "agent-" + secrets.token_hex(3),
            "org_id": demo["AGENT-ZJ"],
            "permissions": ["catalog.read", "catalog.write"],
        },
    )
    assert made.status_code == 201, made.text
    key = {"X-API-Key": made.json()["key"]}
    assert_error(
        await client.patch(f"/products/{product_id}", headers=key, json={"spec": "30 ml"}), 404
    )
    rules = await client.put(
        f"/packing/rules/{product_id}", headers=key, json=[{"level": "inner", "quantity": 7}]
    )
    assert_error(rules, 404, "not_found")
    assert (await client.get(f"/packing/rules/{product_id}", headers=key)).json() == []


async def test_another_brand_cannot_see_or_touch_this_catalogue(
    client: Any, login: Any, app: Any
) -> None:
    from app.orgs.schemas import OrgIn
    from app.orgs.service import create_org
    from app.users.schemas import UserIn
    from app.users.service import create_user

    async with app.state.pool.connection() as conn:
        brand = await create_org(conn, None, OrgIn(kind="brand", name="Rival", erp_code="RIVAL"))
        await create_user(
            conn,
            None,
            UserIn(
                org_id=brand.id,
                username="rival_admin",
                password="password-123",
                roles=["brand_admin"],
            ),
        )
    rival = await login("rival_admin", "password-123")
    ours = (await client.get("/products", headers=await login("admin"))).json()["items"][0]
    assert (await client.get("/products", headers=rival)).json()["total"] == 0
    assert (await client.get("/categories", headers=rival)).json()["items"] == []
    assert_error(await client.get(f"/products/{ours['id']}", headers=rival), 404)
    assert_error(
        await client.patch(f"/products/{ours['id']}", headers=rival, json={"name": "x"}), 404
    )
    assert_error(await client.delete(f"/products/{ours['id']}", headers=rival), 404)
    assert (await client.get("/users", headers=rival)).json()["total"] == 1
    mine = await client.post(
        "/products", headers=rival, json={"name": "Rival cream", "product_no": "LM-HY-50"}
    )
    assert mine.status_code == 201  # product numbers are unique per brand, not globally


async def test_deleting_a_product_whose_units_are_active_is_refused(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: DELETE /products/{id} relied on foreign keys alone to refuse a product in use,
    and ``unit_state.product_id`` has none. A product whose codes were activated from a batch
    issued without a product (the line's context named it, since moved on to another product)
    was deleted with 204, and its genuine, activated units then verified as never activated.
    409 ``in_use`` now, and the units still verify with their product."""
    from tests.helpers import activate, scheme_for_tests

    admin, planner = await login("admin"), await login("planner")
    n = secrets.token_hex(3).upper()
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": f"Probe serum {n}", "product_no": f"PRB-{n}", "published": True},
    )
    assert made.status_code == 201, made.text
    product = made.json()["id"]
    batch = await client.post(
        "/batches", headers=planner, json={"size": 3, "printer_id": demo["PRINTER-SH"]}
    )
    assert batch.status_code == 201, batch.text
    batch_no = int(batch.json()["batch_no"])
    scheme = scheme_for_tests()
    serials = [scheme.serial(batch_no, i) for i in range(3)]
    line = f"PRB{n}"
    await activate(client, login, serials, product, line=line)
    # the line moves on to the next product
    other = (await client.get("/products", headers=admin, params={"q": "LM-SC-30"})).json()
    moved = await client.put(
        f"/lines/{line}/context",
        headers=await login("operator"),
        json={"product_id": other["items"][0]["id"], "lot": "L2", "production_date": "2026-11-02"},
    )
    assert moved.status_code == 200, moved.text
    before = await client.post("/v1/verify", json={"serial": serials[0]})
    assert before.status_code == 200, before.text
    gone = await client.delete(f"/products/{product}", headers=admin)
    after = await client.post("/v1/verify", json={"serial": serials[1]})
    assert_error(gone, 409, "in_use")
    assert after.json()["product"]["id"] == product, after.text


def _gtin(base: str) -> str:
    from app._core import gs1_check_digit

    return f"{base}{gs1_check_digit(base)}"


async def test_a_products_gtin_stays_once_its_codes_are_issued(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a product's GTIN is printed into its batches' labels (the outer print's url is
    ``{public URL}/01/{GTIN-14}/21/{serial}``), and a Digital Link naming another GTIN than the
    unit's product is ``not_genuine`` / ``wrong_product``. ``PATCH /products/{id}`` changed the
    GTIN of a product whose units were printed and activated, and from then on every genuine
    pack answered "not a genuine code" (a fake alert) and its resolver route 404. The GTIN of a
    product with codes issued or units activated stays now (409 ``in_use``, as its deletion)
    and its printed labels keep verifying; a GTIN given to a product that had none, or changed
    on a product no batch names yet, is taken."""
    from tests.helpers import activate

    admin, planner = await login("admin"), await login("planner")
    tag = secrets.token_hex(3).upper()
    gtin = _gtin(f"69012341{secrets.randbelow(10_000):04d}")
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": f"GTIN {tag}", "product_no": f"GT-{tag}", "gtin": gtin, "published": True},
    )
    assert made.status_code == 201, made.text
    product = made.json()
    # no codes yet: the GTIN may still change (and back)
    free = await client.patch(f"/products/{product['id']}", headers=admin, json={"gtin": None})
    assert free.status_code == 200 and free.json()["gtin"] is None, free.text
    given = await client.patch(f"/products/{product['id']}", headers=admin, json={"gtin": gtin})
    assert given.status_code == 200 and given.json()["gtin"] == product["gtin"], given.text
    batch = await client.post(
        "/batches",
        headers=planner,
        json={"size": 2, "printer_id": demo["PRINTER-SH"], "product_id": product["id"]},
    )
    assert batch.status_code == 201, batch.text
    scheme = app.state.scheme
    serials = [scheme.serial(batch.json()["batch_no"], i) for i in range(2)]
    other = _gtin(f"69012342{secrets.randbelow(10_000):04d}")
    issued = await client.patch(f"/products/{product['id']}", headers=admin, json={"gtin": other})
    assert_error(issued, 409, "in_use")  # issued, maybe printed: not activated yet
    await activate(client, login, serials, product["id"], line=f"GT{tag}")
    for change in ({"gtin": other}, {"gtin": None}):
        refused = await client.patch(f"/products/{product['id']}", headers=admin, json=change)
        assert_error(refused, 409, "in_use")
    same = await client.patch(
        f"/products/{product['id']}", headers=admin, json={"gtin": gtin, "name": f"GTIN {tag} 2"}
    )
    assert same.status_code == 200, same.text  # its own GTIN again: no change
    host = app.state.settings.resolver_host
    printed = f"https://{host}/01/{product['gtin']}/21/{serials[0]}"  # as exported
    answer = await client.post(
        "/v1/verify", json={"serial": printed, "pin": scheme.pin(serials[0])}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["reason"] != "wrong_product", answer.json()
    assert answer.json()["result"] != "not_genuine", answer.json()
    resolved = await client.get(f"/01/{product['gtin']}/21/{serials[1]}")
    assert resolved.status_code == 307, (resolved.status_code, resolved.text[:200])

    # a product that had no GTIN, its codes printed without one (``/c/{serial}``): one is given
    bare = await client.post(
        "/products",
        headers=admin,
        json={"name": f"Bare {tag}", "product_no": f"BR-{tag}", "published": True},
    )
    assert bare.status_code == 201, bare.text
    bare_batch = await client.post(
        "/batches",
        headers=planner,
        json={"size": 1, "printer_id": demo["PRINTER-SH"], "product_id": bare.json()["id"]},
    )
    assert bare_batch.status_code == 201, bare_batch.text
    late = _gtin(f"69012343{secrets.randbelow(10_000):04d}")
    named = await client.patch(f"/products/{bare.json()['id']}", headers=admin, json={"gtin": late})
    assert named.status_code == 200 and named.json()["gtin"] == late.zfill(14), named.text


# -- races: a row read before another request's write of it (check-then-act) ----------------------


async def _new_product(client: Any, admin: dict[str, str]) -> int:
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": "race", "product_no": f"RACE-{secrets.token_hex(3)}"},
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


async def test_a_category_deleted_twice_at_once_is_deleted_once(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: two deletions of one category at once (a double click, a retry) both read it
    and found it empty before either deleted it, and both answered 204 with a ``delete`` audit
    row each. The category's row is locked before the check now: one 204, one 404, one audit
    row — as one after the other."""
    admin = await login("admin")
    made = await client.post(
        "/categories", headers=admin, json={"name": f"Race {secrets.token_hex(3)}"}
    )
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    answers = await twice_held(
        app,
        client,
        "SELECT 1 FROM categories WHERE id = %s FOR UPDATE",
        (cid,),
        "DELETE",
        f"/categories/{cid}",
        admin,
    )
    await deleted_once(app, answers, "category", cid, "delete")


async def test_a_product_deleted_twice_at_once_is_deleted_once(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: two deletions of one unused product at once both passed the in-use check and
    both answered 204 with a ``delete`` audit row each. The product's row is locked first now:
    one 204, one 404, one audit row."""
    admin = await login("admin")
    pid = await _new_product(client, admin)
    answers = await twice_held(
        app,
        client,
        "SELECT 1 FROM products WHERE id = %s FOR UPDATE",
        (pid,),
        "DELETE",
        f"/products/{pid}",
        admin,
    )
    await deleted_once(app, answers, "product", pid, "delete")


async def test_two_changes_of_a_product_at_once_are_audited_one_after_the_other(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: the audit log is a product's history. Two ``PATCH /products/{id}`` at once both
    read the product as it was before either wrote, so both rows' ``before`` named the old
    name and the history never showed the one the second change replaced. The row is locked
    where ``before`` is read now: the second row's ``before`` is the first's ``after``."""
    admin = await login("admin")
    pid = await _new_product(client, admin)
    answers = await twice_held(
        app,
        client,
        "SELECT 1 FROM products WHERE id = %s FOR UPDATE",
        (pid,),
        "PATCH",
        f"/products/{pid}",
        admin,
        bodies=({"name": "race one"}, {"name": "race two"}),
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    first, second = await audit_rows(app, "product", pid, "update")
    assert second["before"]["name"] == first["after"]["name"], (
        f"history: {first['before']['name']} -> {first['after']['name']}, then "
        f"{second['before']['name']} -> {second['after']['name']}: a change is missing"
    )


async def test_a_gtin_change_racing_a_batch_issue_of_its_product_is_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: README (catalogue K1): a product's GTIN, printed on its batches' labels, "stays once a
    batch names it" (409 ``in_use``). ``catalog.service._check_gtin_change`` checks for a batch
    with a plain read while the product row is held only ``FOR NO KEY UPDATE``, which does not
    conflict with the ``FOR KEY SHARE`` lock that a batch insert's foreign key takes on the
    product. A ``POST /batches`` for the product whose transaction is still open when the PATCH
    checks is not seen: both commit, and a batch names the product whose GTIN then changed —
    its labels print the new GTIN or, if exported meanwhile, the old one answers
    ``wrong_product``. Expected: the PATCH waits for the issuing transaction and answers 409
    ``in_use`` (e.g. lock the product ``FOR UPDATE`` when the GTIN changes, or take
    ``FOR SHARE`` on the product in ``codes.service.create_batch``)."""
    admin = await login("admin")
    tag = secrets.token_hex(3).upper()
    # each test's GTINs of a prefix of their own: two tests' random four digits met once in
    # ten thousand runs on one worker (duplicate_gtin)
    gtin = _gtin(f"69012346{secrets.randbelow(10_000):04d}")
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": f"GTR {tag}", "product_no": f"GTR-{tag}", "gtin": gtin},
    )
    assert made.status_code == 201, made.text
    product = made.json()
    other = _gtin(f"69012344{secrets.randbelow(10_000):04d}")
    async with app.state.pool.connection() as issuing, app.state.pool.connection() as watch:
        # a batch issued for the product, its transaction not yet committed (as
        # codes.service.create_batch's INSERT between its statement and its commit)
        await issuing.execute(
            """INSERT INTO code_batches (batch_no, brand_id, printer_id, product_id, size,
                   key_version, note, created_by)
               VALUES (nextval('code_batch_no_seq'), %s, %s, %s, 1, 1, 'race', NULL)""",
            (demo["BRAND-LUMI"], demo["PRINTER-SH"], product["id"]),
        )
        patch = asyncio.ensure_future(
            client.patch(f"/products/{product['id']}", headers=admin, json={"gtin": other})
        )
        done, _ = await asyncio.wait({patch}, timeout=2)
        if not done:
            assert await lock_waiters(watch, 1)
        await issuing.commit()
        answer = await patch
    assert_error(answer, 409, "in_use")


@pytest.mark.parametrize("join", ["create", "patch"])
async def test_a_category_deleted_while_a_product_joins_it_answers_unknown_category(
    client: Any, app: Any, login: Any, join: str
) -> None:
    """A probe: a product is created in (or moved to) a category while another admin deletes
    that empty category. One after the other, the request is 400 ``unknown_category``; at
    once, it read the category before the deletion committed and its write met the foreign
    key: 409 ``in_use``, a code that names no reason a client can act on. The category is read
    ``FOR KEY SHARE`` now: the request waits for the deletion and finds the category gone."""
    from app.catalog import service as catalog

    admin = await login("admin")
    cat = await client.post(
        "/categories", headers=admin, json={"name": f"Doomed {secrets.token_hex(3)}"}
    )
    assert cat.status_code == 201, cat.text
    cid = cat.json()["id"]
    body = {"name": "doomed product", "product_no": f"PP-{secrets.token_hex(3)}"}
    if join == "patch":
        made = await client.post("/products", headers=admin, json=body)
        assert made.status_code == 201, made.text
        request = client.patch(
            f"/products/{made.json()['id']}", headers=admin, json={"category_id": cid}
        )
    else:
        request = client.post("/products", headers=admin, json={**body, "category_id": cid})
    async with app.state.pool.connection() as deleter, app.state.pool.connection() as watch:
        actor = await acting(deleter, "admin")
        await catalog.delete_category(deleter, actor, cid)  # not committed yet
        racing = asyncio.ensure_future(request)
        assert await lock_waiters(watch, 1), "the request should wait for the category's row"
        await deleter.commit()
        answer = await racing
    assert_error(answer, 400, "unknown_category")


def _draw(product_ids: list[int]) -> dict[str, Any]:
    """A lucky-draw campaign of the products, running now (``POST /draws``'s body)."""
    now = datetime.now(UTC)
    return {
        "name": f"Draw {secrets.token_hex(3)}",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=7)).isoformat(),
        "product_ids": product_ids,
        "no_prize_weight": 1,
        "prizes": [{"name": "gift", "kind": "gift", "quantity": 1, "weight": 1}],
    }


async def test_a_product_a_lucky_draw_names_is_in_use(client: Any, login: Any) -> None:
    """A probe: a campaign names its products in an array (``draw_campaigns.product_ids``, no
    foreign key), and ``DELETE /products/{id}`` looked at foreign keys and stock only: 204, and
    the campaign's own product list saved again was then 422 ``unknown_product``. 409
    ``in_use`` while a campaign not withdrawn names it; once withdrawn, the product may go."""
    _, office = await onboarded_brand(client, login)
    pid = await _new_product(client, office)
    made = await client.post("/draws", headers=office, json=_draw([pid]))
    assert made.status_code == 201, made.text
    campaign = made.json()["id"]
    used = assert_error(await client.delete(f"/products/{pid}", headers=office), 409, "in_use")
    assert used["details"] == {"draw_campaign_id": campaign}
    saved = await client.patch(
        f"/draws/{campaign}", headers=office, json={"product_ids": [pid], "name": "renamed"}
    )
    assert saved.status_code == 200, saved.text
    assert (await client.delete(f"/draws/{campaign}", headers=office)).status_code == 204
    gone = await client.delete(f"/products/{pid}", headers=office)
    assert gone.status_code == 204, gone.text


@pytest.mark.parametrize("first", ["deletion", "campaign"])
async def test_a_product_deletion_and_a_draw_naming_it_meet_one_after_the_other(
    client: Any, app: Any, login: Any, first: str
) -> None:
    """Of a product's deletion and a campaign naming it at once, exactly one wins: both take the
    brand's lock (``Lock.DRAW_PRODUCTS``; the deletion after the product's row) — the second
    waits for the first and then sees it (422 ``unknown_product`` for a campaign after the
    deletion, 409 ``in_use`` for a deletion after the campaign)."""
    from app.auth.service import load_user
    from app.bodies import aware_time
    from app.catalog import service as catalog
    from app.draws import service as draws
    from app.draws.schemas import DrawCampaignIn

    brand, office = await onboarded_brand(client, login)
    pid = await _new_product(client, office)
    body = _draw([pid])
    async with app.state.pool.connection() as held, app.state.pool.connection() as watch:
        user = await (
            await held.execute("SELECT id FROM users WHERE org_id = %s", (brand["id"],))
        ).fetchone()
        actor = await load_user(held, user["id"])
        if first == "deletion":
            await catalog.delete_product(held, actor, pid)  # not committed yet
            request = client.post("/draws", headers=office, json=body)
        else:
            data = msgspec.convert(body, DrawCampaignIn, dec_hook=lambda _, v: aware_time(v))
            await draws.create_campaign(held, actor, data)  # not committed yet
            request = client.delete(f"/products/{pid}", headers=office)
        racing = asyncio.ensure_future(request)
        done, _ = await asyncio.wait({racing}, timeout=2)
        if not done:
            assert await lock_waiters(watch, 1)
        await held.commit()
        answer = await racing
    if first == "deletion":
        assert_error(answer, 422, "unknown_product")
    else:
        assert_error(answer, 409, "in_use")


async def test_a_draw_naming_products_an_erp_import_renumbers_at_once_both_succeed(
    client: Any, app: Any, login: Any
) -> None:
    """A review: a campaign's write held its products ``FOR KEY SHARE`` in id order, and an ERP
    import renumbering them (a ``product_no`` is a unique key: its change locks the row ``FOR
    UPDATE``) takes them in file order — the import having renumbered the later one, the
    campaign held the earlier one and waited for the later, and the import then waited for the
    earlier: a deadlock (40P01). The campaign reads its products with no row lock now. Made
    deterministic by a third product, between the two in the file, held while both are sent."""
    _, office = await onboarded_brand(client, login)
    tag = secrets.token_hex(3)
    codes = [f"DL-{tag}-{n}" for n in range(3)]  # the campaign's first product, the held, the last
    made = await client.post(
        "/products/import",
        headers=office,
        json={"items": [{"erp_code": c, "product_no": c, "name": "deadlock"} for c in codes]},
    )
    assert made.status_code == 200, made.text
    ids = [r["id"] for r in made.json()["results"]]
    assert ids == sorted(ids) and all(r["result"] == "created" for r in made.json()["results"])
    renumbered = [{"erp_code": c, "product_no": f"{c}-NEW"} for c in reversed(codes)]
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM products WHERE id = %s FOR UPDATE", (ids[1],))
        body = {"items": renumbered}
        importing = asyncio.ensure_future(
            client.post("/products/import", headers=office, json=body)
        )
        assert await lock_waiters(watch, 1), "the import should wait for the held product"
        drawing = asyncio.ensure_future(
            client.post("/draws", headers=office, json=_draw([ids[0], ids[2]]))
        )
        done, _ = await asyncio.wait({drawing}, timeout=2)
        if not done:  # the campaign waits for the import (it did: then the deadlock)
            assert await lock_waiters(watch, 2)
        await holder.commit()
        imported, drawn = await asyncio.wait_for(asyncio.gather(importing, drawing), 60)
    assert drawn.status_code == 201, drawn.text
    assert imported.status_code == 200, imported.text
    results = imported.json()["results"]
    assert [r["result"] for r in results] == ["updated"] * 3, results


async def test_a_product_number_or_category_name_typed_decomposed_is_the_same(
    client: Any, login: Any
) -> None:
    """A probe: "CAFÉ-1" typed on a Mac (NFD: "E" and U+0301) and on Windows (NFC: "É") made
    two products of the "same" number (and two categories of the same name). Numbers and
    category names are kept in NFC now, by the API and the ERP import alike."""
    _, office = await onboarded_brand(client, login)
    number = unicodedata.normalize("NFC", "CAFÉ-1")
    decomposed = unicodedata.normalize("NFD", number)
    cream = unicodedata.normalize("NFC", "Crème")
    assert decomposed != number
    made = await client.post(
        "/products", headers=office, json={"name": "a", "product_no": decomposed}
    )
    assert made.status_code == 201, made.text
    assert made.json()["product_no"] == number
    for no in (number, decomposed):
        again = await client.post("/products", headers=office, json={"name": "b", "product_no": no})
        assert_error(again, 409, "duplicate_product_no")
    other = await _new_product(client, office)
    renumbered = await client.patch(
        f"/products/{other}", headers=office, json={"product_no": decomposed}
    )
    assert_error(renumbered, 409, "duplicate_product_no")
    category = await client.post(
        "/categories", headers=office, json={"name": unicodedata.normalize("NFD", cream)}
    )
    assert category.status_code == 201 and category.json()["name"] == cream, category.text
    twin = await client.post("/categories", headers=office, json={"name": cream})
    assert_error(twin, 409, "duplicate_category")
    # the ERP's row names both decomposed: the product is adopted, put in the category
    row = {"erp_code": "CAFE-1", "product_no": decomposed}
    row["category"] = unicodedata.normalize("NFD", cream)
    imported = await client.post("/products/import", headers=office, json={"items": [row]})
    assert imported.status_code == 200, imported.text
    result = imported.json()["results"][0]
    assert (result["result"], result["id"]) == ("updated", made.json()["id"]), imported.json()
    shown = (await client.get(f"/products/{result['id']}", headers=office)).json()
    assert shown["category_id"] == category.json()["id"]


async def test_a_number_or_name_nfc_lengthens_past_its_limit_names_its_field(
    client: Any, login: Any
) -> None:
    """A review: the limits were checked before the NFC normalisation, and NFC lengthens a few
    characters (U+0958, a composition exclusion, is two): a 64-character number became 65 and
    met the column's CHECK — 422 with no field, and an ERP row's error named no column. The
    limit is checked again in NFC: 400 ``validation_failed`` naming the field (the row's
    column ``invalid_value``)."""
    _, office = await onboarded_brand(client, login)
    number = "A" * 63 + "\u0958"  # 64 characters, 65 in NFC
    name = "A" * 99 + "\u0958"  # 100, 101 in NFC
    assert len(unicodedata.normalize("NFC", number)) == 65
    made = await client.post("/products", headers=office, json={"name": "n", "product_no": number})
    assert assert_error(made, 400, "validation_failed")["details"][0]["field"] == "product_no"
    pid = await _new_product(client, office)
    patched = await client.patch(f"/products/{pid}", headers=office, json={"product_no": number})
    assert assert_error(patched, 400, "validation_failed")["details"][0]["field"] == "product_no"
    category = await client.post("/categories", headers=office, json={"name": name})
    assert assert_error(category, 400, "validation_failed")["details"][0]["field"] == "name"
    kept = await client.post("/categories", headers=office, json={"name": "c"})
    assert kept.status_code == 201, kept.text
    renamed = await client.patch(
        f"/categories/{kept.json()['id']}", headers=office, json={"name": name}
    )
    assert assert_error(renamed, 400, "validation_failed")["details"][0]["field"] == "name"
    fits = "A" * 62 + "\u0958"  # 64 in NFC: as long as a number may be
    fine = await client.post("/products", headers=office, json={"name": "n", "product_no": fits})
    assert fine.status_code == 201, fine.text
    rows = [
        {"erp_code": f"LONG-{secrets.token_hex(3)}", "product_no": number, "name": "n"},
        {"erp_code": f"LONG-{secrets.token_hex(3)}", "product_no": "LONG-1", "category": name},
    ]
    imported = await client.post(
        "/products/import", headers=office, json={"items": rows}, params={"dry_run": "true"}
    )
    assert imported.status_code == 200, imported.text
    found = [(e["column"], e["code"]) for e in imported.json()["errors"]]
    assert found == [("product_no", "invalid_value"), ("category", "invalid_value")], found


async def test_an_order_file_naming_a_product_number_decomposed_finds_it(
    client: Any, login: Any, demo: Any
) -> None:
    """A review: the catalogue keeps numbers in NFC, and ``POST /orders/import`` looked a CSV's
    ``product_no`` up as written — a file saved on a Mac ("CAFÉ-1" decomposed) was 422
    ``unknown_product`` for every row. The number is compared in NFC."""
    number = unicodedata.normalize("NFC", f"CAFÉ-{secrets.token_hex(3)}")
    made = await client.post(
        "/products", headers=await login("admin"), json={"name": "café", "product_no": number}
    )
    assert made.status_code == 201, made.text
    erp_no = f"NFD-{secrets.token_hex(4)}"
    decomposed = unicodedata.normalize("NFD", number)
    text = (
        "erp_no,kind,from_erp_code,to_erp_code,order_date,product_no,quantity\n"
        f"{erp_no},sales,FACTORY-SZ,AGENT-ZJ,,{decomposed},5\n"
    )
    answer = await client.post(
        "/orders/import",
        headers={**await login("partner"), "Content-Type": "text/csv; charset=utf-8"},
        content=text.encode(),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["errors"] == [], answer.json()
    assert [o["result"] for o in answer.json()["orders"]] == ["created"], answer.json()


async def test_a_product_patch_that_changes_nothing_writes_no_audit_row(
    client: Any, app: Any, login: Any
) -> None:
    """A probe: ``PATCH /products/{id}`` with ``{}`` or with the values the product already
    has (its GTIN in another spelling too) wrote an ``update`` audit row, before and after the
    same, and the latter moved ``updated_at``: ``update_product`` kept every field sent. README:
    a call that changes nothing answers 200 with the entity as it is and writes no row."""
    admin = await login("admin")
    made = await client.post(
        "/products",
        headers=admin,
        json={"name": "Unchanged cream", "product_no": f"UC-{secrets.token_hex(3)}"},
    )
    assert made.status_code == 201, made.text
    product = made.json()
    gtin = _gtin(f"69012347{secrets.randbelow(10_000):04d}")  # sent again as 14 digits: same
    set_ = await client.patch(f"/products/{product['id']}", headers=admin, json={"gtin": gtin})
    assert set_.status_code == 200, set_.text
    product = set_.json()
    kept = len(await audit_rows(app, "product", product["id"], "update"))
    for body in (
        {},
        {"name": product["name"], "product_no": product["product_no"], "category_id": None},
        {"gtin": "0" + gtin, "published": False},
    ):
        answer = await client.patch(f"/products/{product['id']}", headers=admin, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == product, body
    assert len(await audit_rows(app, "product", product["id"], "update")) == kept
    changed = await client.patch(
        f"/products/{product['id']}", headers=admin, json={"name": product["name"], "spec": "5 ml"}
    )
    assert changed.status_code == 200 and changed.json()["spec"] == "5 ml", changed.text
    (row,) = (await audit_rows(app, "product", product["id"], "update"))[kept:]
    assert (row["before"]["spec"], row["after"]["spec"]) == ("", "5 ml")


async def test_a_category_patch_of_its_own_name_writes_no_audit_row(
    client: Any, app: Any, login: Any
) -> None:
    """A probe: ``PATCH /categories/{id}`` with ``{}`` or ``{"name": <its name>}`` wrote an
    ``update`` audit row, before and after the same, and moved ``updated_at``
    (``update_category``). Now: 200 with the category as it is, nothing written."""
    admin = await login("admin")
    made = await client.post(
        "/categories", headers=admin, json={"name": f"Unchanged {secrets.token_hex(3)}"}
    )
    assert made.status_code == 201, made.text
    category = made.json()
    for body in ({}, {"name": category["name"]}, {"display_order": category["display_order"]}):
        answer = await client.patch(f"/categories/{category['id']}", headers=admin, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == category, body
    assert await audit_rows(app, "category", category["id"], "update") == []
    moved = await client.patch(
        f"/categories/{category['id']}", headers=admin, json={"display_order": 3}
    )
    assert moved.status_code == 200 and moved.json()["display_order"] == 3, moved.text
    assert len(await audit_rows(app, "category", category["id"], "update")) == 1


async def test_names_reasons_and_texts_others_read_need_a_visible_character(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: beyond the catalogue, an organisation's name, an API key's name, an SMS
    template's body, a plan's return reason and a packing correction's reason took zero-width
    marks alone (a store with no name on every statement, an SMS of nothing). Each needs one
    visible character, as the catalogue's names: 400 ``validation_failed``."""
    admin, operator = await login("admin"), await login("operator")
    supervisor = await login("fieldsup")
    blank = "\u200b\u2060"
    cases = [
        (
            admin,
            "/orgs",
            {"kind": "store", "name": blank, "parent_id": demo["AGENT-ZJ"]},
        ),
        (admin, "/api-keys", {"name": blank, "permissions": ["catalog.read"]}),
        (admin, "/sms/templates", {"name": f"t{secrets.token_hex(3)}", "body": blank}),
        (supervisor, "/field/plans/1/return", {"reason": blank}),
        (operator, "/packing/unpack", {"parent": "X", "reason": blank}),
    ]
    for headers, url, body in cases:
        answer = await client.post(url, headers=headers, json=body)
        assert_error(answer, 400, "validation_failed")
        name = next(k for k, v in body.items() if v == blank)
        assert name in answer.text, (url, answer.text)
    made = await client.post(
        "/api-keys", headers=admin, json={"name": "\u200b ERP", "permissions": ["catalog.read"]}
    )
    assert made.status_code == 201, made.text


def _gtin_under(prefix: str, length: int = 13) -> str:
    """A valid GTIN of ``length`` digits (13, or 14 with indicator digit 1) under ``prefix``."""
    body = prefix + "".join(str(secrets.randbelow(10)) for _ in range(12 - len(prefix)))
    body = ("1" + body) if length == 14 else body
    return body + str(gs1_check_digit(body))


async def test_a_gtin_under_another_brands_company_prefix_is_refused(
    client: Any, login: Any
) -> None:
    """A probe: a tenant created a published product with a GTIN under another brand's GS1
    company prefix (GTINs are printed on every pack), taking that brand's product page
    ``/p/{gtin}`` and its Digital Link ``/01/{gtin}``; the brand itself was then refused its own
    product (409 ``duplicate_gtin``, which told the tenant the GTIN was taken). Now a GTIN under
    another brand's prefix is 422 ``gtin_of_other_brand`` naming ``gtin`` — on create and on
    PATCH, whether the brand has catalogued it or not —; the brand's own are its to use, and a
    brand without a prefix claims none."""
    prefix = "58" + "".join(str(secrets.randbelow(10)) for _ in range(7))
    _, admin_a = await onboarded_brand(client, login, gs1_company_prefix=prefix)
    _, admin_b = await onboarded_brand(client, login)  # no prefix of its own
    own, case_level = _gtin_under(prefix), _gtin_under(prefix, 14)
    for gtin in (own, case_level):
        squat = {"name": "Knock-off", "product_no": f"SQ-{gtin}", "gtin": gtin}
        error = assert_error(
            await client.post("/products", headers=admin_b, json=squat), 422, "gtin_of_other_brand"
        )
        assert error["details"] == {"field": "gtin"}, error
    made = await client.post(
        "/products", headers=admin_a, json={"name": "Serum", "product_no": "A-1", "gtin": own}
    )
    assert made.status_code == 201, made.text
    # catalogued by the brand: still refused as the other brand's, not as a duplicate
    taken = await client.post(
        "/products", headers=admin_b, json={"name": "Copy", "product_no": "SQ-2", "gtin": own}
    )
    assert_error(taken, 422, "gtin_of_other_brand")
    # no one's prefix: B's to use; changed to one under A's prefix, refused, nothing written
    free = _gtin_under("59" + "".join(str(secrets.randbelow(10)) for _ in range(7)))
    mine = await client.post(
        "/products", headers=admin_b, json={"name": "B's", "product_no": "B-1", "gtin": free}
    )
    assert mine.status_code == 201, mine.text
    url = f"/products/{mine.json()['id']}"
    moved = await client.patch(url, headers=admin_b, json={"gtin": case_level})
    assert_error(moved, 422, "gtin_of_other_brand")
    assert (await client.get(url, headers=admin_b)).json()["gtin"] == "0" + free
    renamed = await client.patch(url, headers=admin_b, json={"name": "B's own"})
    assert renamed.status_code == 200, renamed.text


async def test_a_gtin_under_the_prefix_another_brand_s_case_codes_carry_is_refused(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: the demo brand has no GS1 company prefix of its own, so its case codes (SSCCs)
    carry the platform's ``TRACECODE_GS1_COMPANY_PREFIX`` — which no other brand may then be
    given (409 ``duplicate_company_prefix``) —, yet a new tenant catalogued a GTIN under it
    (201): it took a product page ``/p/{gtin}`` and Digital Link of the demo brand's range, and
    the demo brand could never be given its prefix (409: another brand's GTINs carried it).
    The GTIN's check agrees with the prefix's now: a prefix another brand's case codes were
    issued under is that brand's (422 ``gtin_of_other_brand``, the GTIN-14 of a case too); the
    demo brand's own GTINs under it still save."""
    prefix = app.state.settings.gs1_company_prefix
    await issue_cases(client, login, demo, "inner", 1)  # the demo brand's case codes carry it
    _, tenant = await onboarded_brand(client, login)  # no prefix of its own
    for gtin in (_gtin_under(prefix), _gtin_under(prefix, 14)):
        squat = {"name": "Squat", "product_no": f"SQ-{gtin}", "gtin": gtin, "published": True}
        error = assert_error(
            await client.post("/products", headers=tenant, json=squat), 422, "gtin_of_other_brand"
        )
        assert error["details"] == {"field": "gtin"}, error
    admin = await login("admin")
    own = {"name": "Own", "product_no": f"OWN-{secrets.token_hex(4)}", "gtin": _gtin_under(prefix)}
    made = await client.post("/products", headers=admin, json=own)
    assert made.status_code == 201, made.text
    gone = await client.delete(f"/products/{made.json()['id']}", headers=admin)
    assert gone.status_code == 204, gone.text


async def test_a_product_catalogued_while_its_prefix_is_given_to_another_brand_is_refused(
    client: Any, login: Any, app: Any
) -> None:
    """A GTIN is checked against the brands' prefixes, and a prefix against the brands' GTINs
    (``app.orgs.service.check_company_prefix``): done at once, each read the other's row not
    yet committed and both were written — a prefix given over a GTIN another brand had just
    catalogued. The GTIN's check takes the prefix's lock and comes second: 422
    ``gtin_of_other_brand``."""
    from app.orgs.schemas import OrgPatch
    from app.orgs.service import update_org

    prefix = "8" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    given, _ = await onboarded_brand(client, login)
    _, admin = await onboarded_brand(client, login)
    product = {"name": "Racing cream", "product_no": "RC-1", "gtin": _gtin_under(prefix)}
    async with app.state.pool.connection() as giving, app.state.pool.connection() as watch:
        platform = await acting(giving, "platform")
        patch = OrgPatch(gs1_company_prefix=prefix)
        await update_org(giving, platform, given["id"], patch)  # not committed yet
        made = asyncio.ensure_future(client.post("/products", headers=admin, json=product))
        done, _ = await asyncio.wait({made}, timeout=2)
        assert not done, (await made).text  # it waits for the prefix's transaction
        assert await lock_waiters(watch, 1)
        await giving.commit()
        answer = await made
    assert_error(answer, 422, "gtin_of_other_brand")
