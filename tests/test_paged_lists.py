"""Issue 13 item 17: every list is paged — ``?page=&per_page=`` in, ``{items, page, per_page,
total}`` out. ``GET /printers``, ``/batches/{no}/exports``, ``/roles``, ``/permissions`` and
``/api-keys`` answered bare lists; the OpenAPI document now shows no GET answering one."""

from __future__ import annotations

from typing import Any

from app.auth.permissions import PERMISSIONS
from tests.helpers import assert_error, new_org, onboarded_brand

# A product's packing rules are one product's configuration (a rule per container level, at most
# a few), read and replaced whole with PUT of the same array: not a list of records to page.
_NOT_A_LIST = {"/packing/rules/{product_id}"}


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_no_get_answers_a_bare_json_array(app: Any) -> None:
    doc = app.openapi_schema.to_schema()
    bare, paged = [], []
    for path, item in doc["paths"].items():
        answer = item.get("get", {}).get("responses", {}).get("200", {})
        for media_type, content in (answer.get("content") or {}).items():
            if "json" not in media_type:
                continue
            schema = _resolve(doc, content.get("schema", {}))
            if schema.get("type") == "array" and path not in _NOT_A_LIST:
                bare.append(path)
            if {"page", "per_page"} <= set(schema.get("properties", {})):
                assert {"items", "page", "per_page", "total"} <= set(schema["properties"]), path
                assert schema["properties"]["items"]["type"] == "array", path
                paged.append(path)
    assert bare == []
    newly = {"/printers", "/batches/{batch_no}/exports", "/roles", "/permissions", "/api-keys"}
    assert newly <= set(paged)


async def _pages(client: Any, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Walk a list one item a page; each page says the same total."""
    whole = (await client.get(path, headers=headers, params={"per_page": 200})).json()
    assert whole["page"] == 1 and whole["per_page"] == 200
    seen: list[dict[str, Any]] = []
    for page in range(1, whole["total"] + 2):
        one = await client.get(path, headers=headers, params={"page": page, "per_page": 1})
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["total"] == whole["total"] and body["page"] == page
        seen.extend(body["items"])
    assert seen == whole["items"] and len(seen) == whole["total"]  # the last page was empty
    assert_error(await client.get(path, headers=headers, params={"per_page": 201}), 400)
    assert_error(await client.get(path, headers=headers, params={"page": 0}), 400)
    return seen


async def test_the_five_lists_page(client: Any, login: Any, demo: Any) -> None:
    # a brand of the test's own: the demo brand's keys and printers are made by other tests
    # (xdist workers) while these are paged, and each page must say the same total
    brand, admin = await onboarded_brand(client, login)
    planner = await login("planner")
    for name in ("pg-1", "pg-2"):
        made = await client.post(
            "/api-keys", headers=admin, json={"name": name, "permissions": ["catalog.read"]}
        )
        assert made.status_code == 201, made.text
    keys = await _pages(client, "/api-keys", admin)
    assert sorted(k["name"] for k in keys) == ["pg-1", "pg-2"]

    roles = await _pages(client, "/roles", admin)
    assert roles[0]["builtin"] and {"brand_admin", "planner"} <= {r["name"] for r in roles}

    permissions = await _pages(client, "/permissions", await login("analyst"))
    assert [p["name"] for p in permissions] == list(PERMISSIONS)

    made_printers = [(await new_org(client, admin, "printer", brand["id"]))["id"] for _ in "ab"]
    printers = await _pages(client, "/printers", admin)
    assert sorted(p["id"] for p in printers) == sorted(made_printers)

    batch = await client.post(
        "/batches", headers=planner, json={"size": 10, "printer_id": demo["PRINTER-SH"]}
    )
    assert batch.status_code == 201, batch.text
    no = batch.json()["batch_no"]
    made = []
    for start, end in ((0, 5), (5, 10)):
        export = await client.post(
            f"/batches/{no}/exports",
            headers=planner,
            json={
                "start": start,
                "end": end,
                "outer": {"passphrase": "outer-pass-pg"},
                "inner": {"passphrase": "inner-pass-pg"},
            },
        )
        assert export.status_code == 201, export.text
        made.append(export.json()["id"])
    exports = await _pages(client, f"/batches/{no}/exports", planner)
    assert [e["id"] for e in exports] == made  # oldest first
    # a batch the brand does not have: 404, not an empty page (a probe)
    nothing = await client.get("/batches/999999999/exports", headers=planner)
    assert nothing.status_code == 404 and nothing.json()["error"]["code"] == "not_found"
