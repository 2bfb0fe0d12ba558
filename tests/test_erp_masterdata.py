"""ERP master data (SPEC I1, issue 19 item 3): organisations, products and staff users imported
by ERP code from CSV and JSON — per row, idempotent, dry-run, guarded — on real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import unicodedata
from typing import Any

from app._core import gs1_check_digit
from tests.helpers import activate, assert_error, issue_units, onboarded_brand

_n = itertools.count()
RUN = secrets.token_hex(3).upper()


def code(name: str) -> str:
    """An ERP code of this test session."""
    return f"T{RUN}-{name}"


async def send(
    client: Any,
    headers: dict[str, str],
    entity: str,
    body: str | bytes | dict[str, Any],
    *,
    dry_run: bool = False,
    media: str | None = None,
) -> Any:
    """POST an import: a dict as JSON, text as UTF-8 CSV, bytes as they are (CSV)."""
    if isinstance(body, dict):
        content, media = json.dumps(body).encode(), media or "application/json"
    else:
        content = body.encode() if isinstance(body, str) else body
        media = media or "text/csv"
    return await client.post(
        f"/{entity}/import",
        headers={**headers, "Content-Type": media},
        content=content,
        params={"dry_run": "true"} if dry_run else None,
    )


async def imported(client: Any, headers: dict[str, str], entity: str, body: Any, **kw: Any) -> Any:
    response = await send(client, headers, entity, body, **kw)
    assert response.status_code == 200, response.text
    return response.json()


def counts(result: dict[str, Any]) -> tuple[int, int, int, int]:
    return result["created"], result["updated"], result["unchanged"], result["rejected"]


def errors(result: dict[str, Any]) -> list[tuple[int, str | None, str]]:
    return [(e["row"], e["column"], e["code"]) for e in result["errors"]]


def ids(result: dict[str, Any]) -> dict[str, int]:
    return {r["erp_code"]: r["id"] for r in result["results"] if r.get("id")}


ORG_HEADER = (
    "erp_code,kind,name,parent_erp_code,province_code,province_name,city_code,city_name,"
    "address,contact_name,contact_phone,latitude,longitude\n"
)


def org_file(rows: list[str]) -> str:
    return ORG_HEADER + "".join(r + "\n" for r in rows)


# -- organisations -----------------------------------------------------------------------------


async def test_orgs_by_csv_created_then_unchanged_then_updated(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    agent, dist, s1, s2 = code("AG"), code("DI"), code("S1"), code("S2")
    rows = [
        # a store listed before its parent: parents are applied first whatever the order
        f"{s1},store,温州鹿城店,{dist},330000,浙江省,330300,温州市,鹿城区 1 号,Chen,+86 577 1234,"
        "28.0006,120.6722",
        f"{agent},agent,Wenzhou Agent 温州代理,BRAND-LUMI,330000,浙江省,330300,温州市,,,,,",
        f"{dist},distributor,Ruian Distributor,{agent},330000,浙江省,330300,温州市,,,,,",
        f"{s2},store,Store Two,{agent},,,,,,,,,",
    ]
    first = await imported(client, admin, "orgs", org_file(rows))
    assert counts(first) == (4, 0, 0, 0), first
    assert (first["entity"], first["format"], first["dry_run"]) == ("orgs", "csv", False)
    made = ids(first)
    store = (await client.get(f"/orgs/{made[s1]}", headers=admin)).json()
    assert store["parent_id"] == made[dist] and store["name"] == "温州鹿城店"
    assert (store["latitude"], store["longitude"]) == (28.0006, 120.6722)
    assert (store["city_code"], store["address"], store["contact_phone"]) == (
        "330300",
        "鹿城区 1 号",
        "+86 577 1234",
    )
    assert (await client.get(f"/orgs/{made[dist]}", headers=admin)).json()["parent_id"] == made[
        agent
    ]

    # the same file again: nothing changes, and the answer says so
    again = await imported(client, admin, "orgs", org_file(rows))
    assert counts(again) == (0, 0, 4, 0)
    assert {r["result"] for r in again["results"]} == {"unchanged"}
    assert ids(again) == made

    # an update by ERP code: a new address, the store moved to the agent, a column left out
    changed = (
        "erp_code,parent_erp_code,address,latitude,longitude\n"
        f"{s1},{agent},鹿城区 2 号,28.0006,120.6722\n"
        f"{s2},{agent},,,\n"
    )
    third = await imported(client, admin, "orgs", changed)
    assert counts(third) == (0, 1, 1, 0), third
    result = next(r for r in third["results"] if r["erp_code"] == s1)
    assert result["result"] == "updated" and result["changed"] == ["address", "parent_erp_code"]
    store = (await client.get(f"/orgs/{made[s1]}", headers=admin)).json()
    assert (store["parent_id"], store["address"], store["name"]) == (
        made[agent],
        "鹿城区 2 号",
        "温州鹿城店",
    )
    assert store["contact_name"] == "Chen"  # not in the file: kept

    # deactivated by status, and back
    off = await imported(client, admin, "orgs", f"erp_code,status\n{s2},inactive\n")
    assert counts(off) == (0, 1, 0, 0)
    assert (await client.get(f"/orgs/{made[s2]}", headers=admin)).json()["status"] == "inactive"


async def test_bad_org_rows_are_reported_and_the_good_ones_applied(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    good, dup, child, ring_a, ring_b = (code(x) for x in ("G1", "DUP", "CH", "RA", "RB"))
    new_parent_bad = code("BADP")
    rows = [
        f"{good},agent,Good Agent,BRAND-LUMI,,,,,,,,30.1,120.1",  # 1 good
        f"{code('U')},store,Unknown parent,NO-SUCH-{RUN},,,,,,,,,",  # 2
        f"{code('LAT')},store,Bad latitude,{good},,,,,,,,95,120",  # 3
        f"{code('ONE')},store,Half a position,{good},,,,,,,,30.1,",  # 4
        f"{dup},store,First,{good},,,,,,,,,",  # 5
        f"{dup},store,Second,{good},,,,,,,,,",  # 6
        f'{code("F")},store,"=HYPERLINK(""http://x"")",{good},,,,,,,,,',  # 7
        f"{code('NUL')},store,Nul\x00name,{good},,,,,,,,,",  # 8
        f"{code('BEL')},store,Bell\x07,{good},,,,,,,,,",  # 9
        "STORE-HZ-01,agent,Kind changed,BRAND-LUMI,,,,,,,,,",  # 10
        f"{code('NONAME')},store,,{good},,,,,,,,,",  # 11
        f"{new_parent_bad},store,Bad child parent,{good},,,,,,,,abc,1",  # 12
        f"{child},store,Child of a rejected row,{new_parent_bad},,,,,,,,,",  # 13
        f"{ring_a},agent,Ring A,{ring_b},,,,,,,,,",  # 14
        f"{ring_b},agent,Ring B,{ring_a},,,,,,,,,",  # 15
        f"{code('X')},store,Extra values,{good},,,,,,,,,,surplus",  # 16
        f"{code('HIER')},agent,Agent under a store,STORE-HZ-01,,,,,,,,,",  # 17
        f"{code('REG')},store,Region mismatch,{good},330000,浙江省,440100,广州市,,,,,",  # 18
    ]
    result = await imported(client, admin, "orgs", org_file(rows))
    assert counts(result) == (1, 0, 0, 17), result
    assert sorted(errors(result)) == sorted(
        [
            (2, "parent_erp_code", "unknown_parent"),
            (3, "latitude", "bad_coordinates"),
            (4, "longitude", "bad_coordinates"),
            (5, "erp_code", "duplicate_in_file"),
            (6, "erp_code", "duplicate_in_file"),
            (7, "name", "formula_value"),
            (8, "name", "invalid_character"),
            (9, "name", "invalid_character"),
            (10, "kind", "kind_changed"),
            (11, "name", "missing_value"),
            (12, "latitude", "bad_coordinates"),
            (13, "parent_erp_code", "parent_rejected"),
            (14, "parent_erp_code", "parent_cycle"),
            (15, "parent_erp_code", "parent_cycle"),
            (16, None, "extra_values"),
            (17, None, "bad_hierarchy"),
            (18, "city_code", "region_mismatch"),
        ]
    )
    first = result["errors"][0]
    assert set(first) == {"row", "line", "erp_code", "column", "code", "message"}
    assert all(e["line"] == e["row"] + 1 for e in result["errors"])  # the header is line 1
    assert [r["result"] for r in result["results"]].count("rejected") == 17
    made = ids(result)
    assert list(made) == [good]
    found = await client.get("/orgs", headers=admin, params={"q": f"T{RUN}-", "per_page": 200})
    names = {o["erp_code"] for o in found.json()["items"]}
    assert good in names and not names & {dup, child, ring_a, code("NUL"), code("HIER")}
    hz = (await client.get(f"/orgs/{demo['STORE-HZ-01']}", headers=admin)).json()
    assert hz["kind"] == "store" and hz["name"] != "Kind changed"


async def test_org_rows_store_a_province_by_its_full_name_and_check_a_name_alone(
    client: Any, login: Any, demo: Any
) -> None:
    """As ``POST /orgs`` (a probe there): a province written another way is stored by its
    code's full name, and is no change the next time; a name without a code gives the code, or
    is rejected ``validation_failed`` on ``province_name`` when it is no province's."""
    admin = await login("admin")
    typed, alone, bad = code("PVT"), code("PVA"), code("PVB")
    rows = [
        f"{typed},store,Typed,AGENT-ZJ,330000, Zhejiang ,330100,杭州市,,,,,",
        f"{alone},store,Alone,AGENT-ZJ,,浙江,330100,杭州市,,,,,",
        f"{bad},store,Nowhere,AGENT-ZJ,,Atlantis,,,,,,,",
    ]
    result = await imported(client, admin, "orgs", org_file(rows))
    assert counts(result) == (2, 0, 0, 1), result
    assert errors(result) == [(3, "province_name", "validation_failed")]
    made = ids(result)
    for erp in (typed, alone):
        org = (await client.get(f"/orgs/{made[erp]}", headers=admin)).json()
        assert (org["province_code"], org["province_name"]) == ("330000", "浙江省"), org
    again = await imported(client, admin, "orgs", org_file(rows[:2]))
    assert counts(again) == (0, 0, 2, 0), again
    renamed = await imported(client, admin, "orgs", f"erp_code,province_name\n{typed},Guangdong\n")
    assert errors(renamed) == [(1, "province_name", "region_mismatch")], renamed


async def test_a_dry_run_answers_what_would_happen_and_changes_nothing(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    agent, store = code("DRA"), code("DRS")
    rows = org_file(
        [
            f"{agent},agent,Dry agent,BRAND-LUMI,,,,,,,,,",
            f"{store},store,Dry store,{agent},,,,,,,,,",
        ]
    )
    dry = await imported(client, admin, "orgs", rows, dry_run=True)
    assert dry["dry_run"] is True and counts(dry) == (2, 0, 0, 0), dry
    assert all(r["id"] for r in dry["results"])  # the ids it had in the rolled-back run
    listed = await client.get("/orgs", headers=admin, params={"q": agent})
    assert listed.json()["total"] == 0
    real = await imported(client, admin, "orgs", rows)
    assert counts(real) == (2, 0, 0, 0)
    assert counts(await imported(client, admin, "orgs", rows, dry_run=True)) == (0, 0, 2, 0)


async def test_json_rows_get_the_same_checks(client: Any, login: Any, demo: Any) -> None:
    admin = await login("admin")
    agent = code("JA")
    body = {
        "items": [
            {"erp_code": agent, "kind": "agent", "name": "JSON agent", "parent_erp_code": "BRAND-LUMI",
             "latitude": 31.2, "longitude": 121.5},
            {"erp_code": code("JB"), "kind": "store", "name": "Bad lat", "parent_erp_code": agent,
             "latitude": "31.2", "longitude": 121.5},
            {"erp_code": code("JC"), "kind": "store", "name": "@SUM(1)", "parent_erp_code": agent},
            {"erp_code": code("JD"), "kind": "store", "name": "Nul\u0000", "parent_erp_code": agent},
            {"erp_code": code("JE"), "kind": "store", "name": "x", "colour": "red"},
            {"erp_code": code("JF"), "kind": "brand", "name": "No brands", "parent_erp_code": agent},
        ]
    }  # fmt: skip
    result = await imported(client, admin, "orgs", body)
    assert result["format"] == "json" and counts(result) == (1, 0, 0, 5), result
    assert [(r, c, k) for r, c, k in errors(result)] == [
        (2, "latitude", "bad_coordinates"),
        (3, "name", "formula_value"),
        (4, "name", "invalid_character"),
        (5, "colour", "unknown_column"),
        (6, "kind", "invalid_value"),
    ]
    assert all(e["line"] is None for e in result["errors"])
    assert counts(await imported(client, admin, "orgs", body)) == (0, 0, 1, 5)


async def test_a_number_past_a_float_s_range_is_its_row_s_error(
    client: Any, login: Any, demo: Any
) -> None:
    """1e400 (no float holds it) in a JSON row is that row's error (bad_coordinates, or
    invalid_value in a text column); the file's other rows are imported. Before, the decoder's
    "number out of range" refused the whole file with 400 (probe)."""
    admin = await login("admin")
    good, far, wide = code("JN"), code("JO"), code("JP")
    body = (
        '{"items": ['
        f'{{"erp_code": "{good}", "kind": "store", "name": "ok", "parent_erp_code": "AGENT-ZJ"}},'
        f'{{"erp_code": "{far}", "kind": "store", "name": "far", "parent_erp_code": "AGENT-ZJ",'
        ' "latitude": 1e400, "longitude": 1},'
        f'{{"erp_code": "{wide}", "kind": "store", "name": -1e400, "parent_erp_code": "AGENT-ZJ"}}'
        "]}"
    )
    result = await imported(client, admin, "orgs", body.encode(), media="application/json")
    assert counts(result) == (1, 0, 0, 2), result
    assert errors(result) == [(2, "latitude", "bad_coordinates"), (3, "name", "invalid_value")]
    assert list(ids(result)) == [good]
    broken = await send(client, admin, "orgs", b'{"items": [1e400', media="application/json")
    assert broken.status_code == 400, broken.text  # not JSON at all: still the file's error


async def test_files_that_cannot_be_read_are_refused_whole(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    gb = org_file([f"{code('GB')},store,温州瓯海店,BRAND-LUMI,,,,,,,,,"]).replace(
        ",store,", ",agent,"
    )
    got = await imported(client, admin, "orgs", gb.encode("gb18030"))
    assert counts(got) == (1, 0, 0, 0), got
    bom = "\ufeff" + org_file([f"{code('BOM')},agent,带 BOM 的代理,BRAND-LUMI,,,,,,,,,"])
    assert counts(await imported(client, admin, "orgs", bom.encode())) == (1, 0, 0, 0)
    found = (await client.get("/orgs", headers=admin, params={"q": code("GB")})).json()["items"]
    # the search matches code("GBK1") of another test too
    agent = [o for o in found if o["erp_code"] == code("GB")]
    assert agent[0]["name"] == "温州瓯海店"

    utf16 = org_file([f"{code('U16')},agent,x,BRAND-LUMI,,,,,,,,,"]).encode("utf-16")
    assert (
        "UTF-16"
        in assert_error(await send(client, admin, "orgs", utf16), 400, "bad_encoding")["message"]
    )
    assert_error(
        await send(client, admin, "orgs", b"erp_code\n\xff\xfe\x00\x81"), 400, "bad_encoding"
    )
    error = assert_error(
        await send(client, admin, "orgs", "erp_code,colour\nX,red\n"), 400, "bad_header"
    )
    assert error["details"]["unknown"] == ["colour"]
    missing = assert_error(
        await send(client, admin, "orgs", "name,kind\nX,store\n"), 400, "bad_header"
    )
    assert missing["details"]["missing"] == ["erp_code"]
    assert_error(await send(client, admin, "orgs", ""), 400, "empty_file")
    assert_error(
        await send(client, admin, "orgs", 'erp_code,name\nX,"open\n'), 400, "malformed_csv"
    )
    assert_error(
        await send(client, admin, "orgs", "erp_code\n" + "X\n" * 15_001), 413, "too_many_rows"
    )
    huge = "erp_code,address\nX," + "a" * (10 * 1024 * 1024) + "\n"
    assert_error(await send(client, admin, "orgs", huge), 413, "payload_too_large")
    assert_error(
        await send(client, admin, "orgs", "<xml/>", media="application/xml"),
        415,
        "unsupported_media_type",
    )
    assert_error(
        await send(client, admin, "orgs", "{", media="application/json"), 400, "malformed_json"
    )
    for charset in ("latin-1", "utf-16"):  # JSON is UTF-8, as on every other JSON endpoint
        assert_error(
            await send(
                client, admin, "orgs", {"items": []}, media=f"application/json; charset={charset}"
            ),
            415,
            "unsupported_media_type",
        )
    explicit = await send(
        client, admin, "orgs", {"items": []}, media="application/json; charset=UTF-8"
    )
    assert explicit.status_code == 200, explicit.text
    assert_error(await send(client, admin, "orgs", {"rows": []}), 400, "validation_failed")
    deep = '{"items": [' + "[" * 100 + "]" * 100 + "]}"
    assert_error(await send(client, admin, "orgs", deep, media="application/json"), 400, "too_deep")
    unbalanced = '{"items": [{"erp_code": "X1", "name": ' + "[" * 2000 + "}" * 2000 + "}]}"
    for kind in ("orgs", "products", "users"):  # was 500: the decoder's recursion limit
        answer = await send(client, admin, kind, unbalanced, media="application/json")
        assert_error(answer, 400, "too_deep")
    too_many = {"items": [{"erp_code": "X"}] * 15_001}
    assert_error(await send(client, admin, "orgs", too_many), 413, "too_many_rows")
    with_password = "erp_code,name,password\nX,Y,secret12\n"  # only users are told about passwords
    assert_error(await send(client, admin, "orgs", with_password), 400, "bad_header")
    clerk = await login("clerk")  # no orgs.write
    assert_error(await send(client, clerk, "orgs", ORG_HEADER), 403, "permission_denied")
    assert_error(await send(client, {}, "orgs", ORG_HEADER), 401)  # fmt: skip


async def test_other_organisations_are_out_of_reach(client: Any, login: Any, demo: Any) -> None:
    """An agent's administrator imports within its own subtree only; an API key of the agent
    likewise."""
    gd = await login("gd_admin")
    rows = org_file(
        [
            f"{code('GD1')},store,Foshan store,AGENT-GD,,,,,,,,23.02,113.12",
            f"{code('GD2')},store,Under the other agent,AGENT-ZJ,,,,,,,,,",
            "STORE-HZ-01,store,Taken over,AGENT-GD,,,,,,,,,",
            f"{code('GD3')},agent,An agent under the brand,BRAND-LUMI,,,,,,,,,",
        ]
    )
    result = await imported(client, gd, "orgs", rows)
    assert counts(result) == (1, 0, 0, 3), result
    assert errors(result) == [
        (2, "parent_erp_code", "unknown_parent"),
        (3, "erp_code", "erp_code_taken"),
        (4, "parent_erp_code", "unknown_parent"),
    ]
    made = await client.post(
        "/api-keys",
        headers=gd,
        json={"name": f"erp-{RUN}", "permissions": ["orgs.write", "orgs.read"]},
    )
    assert made.status_code == 201, made.text
    key = {"X-API-Key": made.json()["key"]}
    again = await imported(client, key, "orgs", rows)
    assert counts(again) == (0, 0, 1, 3)
    assert_error(await send(client, key, "users", "erp_code\n"), 403, "permission_denied")


async def test_the_erp_integration_user_imports_organisations_and_products(
    client: Any, login: Any, demo: Any
) -> None:
    """The built-in partner role (an ERP system's account) holds what the organisation and
    product imports take; staff are imported by a key holding what their roles grant."""
    partner = await login("partner")
    files = {
        "orgs": f"erp_code,kind,name,parent_erp_code\n{code('PA')},agent,Partner's,BRAND-LUMI\n",
        "products": f"erp_code,product_no,name\n{code('PP')},NO-{code('PP')},Partner's\n",
    }
    for entity, body in files.items():
        result = await imported(client, partner, entity, body, dry_run=True)
        assert counts(result) == (1, 0, 0, 0), result["errors"]
    staff = (
        f"erp_code,username,org_erp_code,roles\n{code('PU')},t{RUN.lower()}.pu,AGENT-ZJ,field_rep\n"
    )
    assert_error(await send(client, partner, "users", staff), 403, "permission_denied")
    admin = await login("admin")
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={
            "name": f"hr-{RUN}",
            "permissions": ["users.write", "orgs.read", "catalog.read", "field.visit"],
        },
    )
    assert made.status_code == 201, made.text
    key = {"X-API-Key": made.json()["key"]}
    result = await imported(client, key, "users", staff)
    assert counts(result) == (1, 0, 0, 0), result["errors"]
    assert result["results"][0]["initial_password"]


async def test_two_uploads_of_one_file_create_each_code_once(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    rows = org_file(
        [f"{code(f'C{i}')},agent,Concurrent {i},BRAND-LUMI,,,,,,,,," for i in range(20)]
    )
    first, second = await asyncio.gather(
        imported(client, admin, "orgs", rows), imported(client, admin, "orgs", rows)
    )
    assert sorted([counts(first), counts(second)]) == [(0, 0, 20, 0), (20, 0, 0, 0)]


# -- products ----------------------------------------------------------------------------------

PRODUCT_HEADER = "erp_code,product_no,name,category,spec,gtin,published\n"


async def test_products_by_json_and_csv(client: Any, login: Any, demo: Any) -> None:
    admin = await login("admin")
    p1, p2 = code("P1"), code("P2")
    n = next(_n)
    body12 = f"69{RUN[:4].translate(str.maketrans('ABCDEF', '123456'))}{n:06d}"
    gtin13 = body12 + str(gs1_check_digit(body12))
    body = {
        "items": [
            {"erp_code": p1, "product_no": f"NO-{p1}", "name": "Night Cream 晚霜",
             "category": "护肤 Skincare", "spec": "50 g", "gtin": gtin13, "published": True},
            {"erp_code": p2, "product_no": f"NO-{p2}", "name": "Toner 爽肤水"},
        ]
    }  # fmt: skip
    first = await imported(client, admin, "products", body)
    assert counts(first) == (2, 0, 0, 0), first
    made = ids(first)
    product = (await client.get(f"/products/{made[p1]}", headers=admin)).json()
    assert (product["erp_code"], product["gtin"], product["spec"]) == (p1, "0" + gtin13, "50 g")
    assert product["category_id"] is not None and product["published"] is True
    assert counts(await imported(client, admin, "products", body)) == (0, 0, 2, 0)

    # the CSV of the same products, with a change: same ids, one updated
    csv_file = PRODUCT_HEADER + (
        f"{p1},NO-{p1},Night Cream 晚霜,护肤 Skincare,50 g,{gtin13},true\n"
        f"{p2},NO-{p2},Toner 爽肤水 200ml,,,,false\n"
    )
    second = await imported(client, admin, "products", csv_file)
    assert counts(second) == (0, 1, 1, 0), second
    assert ids(second) == made
    toner = next(r for r in second["results"] if r["erp_code"] == p2)
    assert toner["changed"] == ["name"]
    assert counts(await imported(client, admin, "products", csv_file)) == (0, 0, 2, 0)

    bad = PRODUCT_HEADER + (
        f"{code('P3')},NO-{code('P3')},Bad GTIN,,,6901234000017,\n"
        f"{code('P4')},NO-{code('P4')},Unknown category,No such category,,,\n"
        f"{code('P5')},NO-{code('P5')},Taken GTIN,,,{gtin13},\n"
        f"{code('P6')},,,,,,\n"
        f"{code('P7')},NO-{code('P7')},-10% promo,,,,\n"
        f"{code('P8')},NO-{code('P8')},Bad flag,,,,maybe\n"
    )
    result = await imported(client, admin, "products", bad)
    assert errors(result) == [
        (1, "gtin", "invalid_gtin"),
        (2, "category", "unknown_category"),
        (3, None, "duplicate_gtin"),
        (4, "product_no", "missing_value"),
        (4, "name", "missing_value"),
        (5, "name", "formula_value"),
        (6, "published", "invalid_value"),
    ]
    agent_admin = await login("agent_admin")  # catalog.write is the brand's
    assert_error(await send(client, agent_admin, "products", bad), 403, "permission_denied")


async def test_a_product_kept_by_hand_is_adopted_by_its_number(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    number = f"HAND-{RUN}"
    made = await client.post(
        "/products", headers=admin, json={"name": "By hand", "product_no": number}
    )
    assert made.status_code == 201, made.text
    erp = code("ADOPT")
    rows = f"erp_code,product_no,name\n{erp},{number},By hand\n"
    first = await imported(client, admin, "products", rows)
    assert counts(first) == (0, 1, 0, 0), first
    assert first["results"][0]["changed"] == ["erp_code"]
    assert ids(first) == {erp: made.json()["id"]}
    assert counts(await imported(client, admin, "products", rows)) == (0, 0, 1, 0)


async def test_an_all_zero_gtin_is_each_row_s_invalid_gtin(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: an ERP writing "no barcode" as 0000000000000 got its file's first product
    stored with GTIN 00000000000000 (the check digit of zeros is 0) and every later row of the
    file refused as ``duplicate_gtin`` ("GTIN 00000000000000 is already used"). Zeros are no
    GTIN: each such row is ``invalid_gtin``, the others of the file applied."""
    admin = await login("admin")
    rows = PRODUCT_HEADER + "".join(
        f"{code(f'Z{n}')},NO-{code(f'Z{n}')},No barcode {n},,,{gtin},\n"
        for n, gtin in enumerate(("0000000000000", "00000000", "00000000000000"))
    )
    rows += f"{code('Z3')},NO-{code('Z3')},With barcode,,,{a_gtin()},\n"
    result = await imported(client, admin, "products", rows)
    assert counts(result) == (1, 0, 0, 3), result
    assert errors(result) == [(n, "gtin", "invalid_gtin") for n in (1, 2, 3)]


async def test_a_product_name_of_only_invisible_marks_is_each_row_s_error(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``POST /products`` refuses a name of only blanks or invisible marks, but the
    import created products named U+200B or U+3000 (shown as nothing on the consumer page and in
    every list): each such row is refused on its ``name``, the others of the file applied."""
    admin = await login("admin")
    rows = PRODUCT_HEADER + "".join(
        f"{code(f'B{n}')},NO-{code(f'B{n}')},{name},,,,\n"
        for n, name in enumerate(("\u200b", "\u3000", "\ufeff\u00a0"))
    )
    rows += f"{code('B3')},NO-{code('B3')},A name,,,,\n"
    result = await imported(client, admin, "products", rows)
    assert counts(result) == (1, 0, 0, 3), result
    assert [(n, field) for n, field, _ in errors(result)] == [(n, "name") for n in (1, 2, 3)]


def a_gtin() -> str:
    """A GTIN-13 of this test session, new at each call."""
    body12 = f"68{RUN[:4].translate(str.maketrans('ABCDEF', '123456'))}{next(_n):06d}"
    return body12 + str(gs1_check_digit(body12))


def outcome(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["erp_code"], r["result"]) for r in result["results"]]


async def test_a_product_file_gives_freed_numbers_and_gtins_whatever_its_order(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the ERP renumbers a product (P1: A → B) and gives the freed number A to a new
    product (P2), listed first in its file. Rows ran in file order: the first import rejected
    P2 (``duplicate_product_no``: A was still P1's) and the very same file sent again created
    it — against "importing the same file twice changes nothing the second time", and its dry
    run reported refused a row the file makes valid. A row taking a number or GTIN another row
    gives up now runs after it (along chains too); rows giving each other their values in a
    ring (a swap) are refused, each ``product_no_cycle`` / ``gtin_cycle``, every time."""
    admin = await login("admin")
    header = "erp_code,product_no,name,gtin\n"
    p1, p2 = code("RN1"), code("RN2")
    a, b = f"A-{RUN}", f"B-{RUN}"
    first = await imported(client, admin, "products", f"{header}{p1},{a},One,\n")
    assert outcome(first) == [(p1, "created")], first
    renumbered = f"erp_code,product_no,name\n{p2},{a},Two\n{p1},{b},One\n"
    dry = await imported(client, admin, "products", renumbered, dry_run=True)
    once = await imported(client, admin, "products", renumbered)
    twice = await imported(client, admin, "products", renumbered)
    assert outcome(once) == outcome(dry) == [(p2, "created"), (p1, "updated")], once["errors"]
    assert counts(twice) == (0, 0, 2, 0), twice

    # a chain: P5 (new) takes P3's GTIN, P4 takes P3's number, P3 a new number and GTIN
    p3, p4, p5 = code("RN3"), code("RN4"), code("RN5")
    g1, g2 = a_gtin(), a_gtin()
    c, d, e, f = (f"{x}-{RUN}" for x in "CDEF")
    setup = f"{header}{p3},{c},Three,{g1}\n{p4},{d},Four,\n"
    assert counts(await imported(client, admin, "products", setup)) == (2, 0, 0, 0)
    chain = f"{header}{p5},{f},Five,{g1}\n{p4},{c},Four,\n{p3},{e},Three,{g2}\n"
    dry = await imported(client, admin, "products", chain, dry_run=True)
    once = await imported(client, admin, "products", chain)
    expected = [(p5, "created"), (p4, "updated"), (p3, "updated")]
    assert outcome(once) == outcome(dry) == expected, once["errors"]
    assert [r["changed"] for r in once["results"][1:]] == [["product_no"], ["product_no", "gtin"]]
    assert counts(await imported(client, admin, "products", chain)) == (0, 0, 3, 0)

    # a swap of numbers, then of GTINs: no order frees either value first; refused, every time
    s1, s2 = code("SW1"), code("SW2")
    g3, g4 = a_gtin(), a_gtin()
    x, y = f"X-{RUN}", f"Y-{RUN}"
    setup = f"{header}{s1},{x},S1,{g3}\n{s2},{y},S2,{g4}\n"
    assert counts(await imported(client, admin, "products", setup)) == (2, 0, 0, 0)
    for swap, column in (
        (f"{header}{s1},{y},S1,{g3}\n{s2},{x},S2,{g4}\n", "product_no"),
        (f"{header}{s1},{x},S1,{g4}\n{s2},{y},S2,{g3}\n", "gtin"),
    ):
        for dry_run in (True, False, False):
            result = await imported(client, admin, "products", swap, dry_run=dry_run)
            assert errors(result) == [
                (1, column, f"{column}_cycle"),
                (2, column, f"{column}_cycle"),
            ]
            assert counts(result) == (0, 0, 0, 2), result
    assert counts(await imported(client, admin, "products", setup)) == (0, 0, 2, 0)


async def test_a_product_s_changed_category_is_named_by_its_column(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a product moved to another category (``category`` column) answered
    ``changed: ["category_id"]`` — no column of the import, where the other imports name
    theirs (``parent_erp_code``, ``org_erp_code``). The column's name is reported."""
    admin = await login("admin")
    made = await client.post("/categories", headers=admin, json={"name": f"Cat {RUN}"})
    assert made.status_code == 201, made.text
    p = code("CAT")
    made = await imported(client, admin, "products", f"erp_code,product_no,name\n{p},CAT-{RUN},C\n")
    assert outcome(made) == [(p, "created")], made
    moved = f"erp_code,category,spec\n{p},Cat {RUN},10 ml\n"
    result = await imported(client, admin, "products", moved)
    assert outcome(result) == [(p, "updated")], result
    assert result["results"][0]["changed"] == ["spec", "category"], result["results"]


async def test_a_product_number_excel_showed_in_scientific_notation_is_refused(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a brand numbering its products by a long digit string (the EAN, 6901234567892)
    keeps its catalogue in Excel; saved as CSV the column reads "6.90123E+12", and
    ``/products/import`` created a product of that number (200 ``created``), silently, while
    the same cell in the ``gtin`` column was refused. Such a product number is its row's
    ``invalid_value`` saying Excel turned it into scientific notation, by JSON too; a number
    merely holding an "E" is fine."""
    admin = await login("admin")
    x, y = code("SCI1"), code("SCI2")
    text = (
        "erp_code,product_no,name\r\n"
        f"{x},6.90123E+12,Sci Cream 科学面霜\r\n"
        f"{y},SCI-{RUN}-1E5,Sci Serum\r\n"
    )
    got = await imported(client, admin, "products", text, dry_run=True)
    assert errors(got) == [(1, "product_no", "invalid_value")], got
    assert counts(got) == (1, 0, 0, 1), got
    assert "scientific notation" in got["errors"][0]["message"], got["errors"]
    body = {"items": [{"erp_code": x, "product_no": "6.90123e+12", "name": "Sci"}]}
    by_json = await imported(client, admin, "products", body, dry_run=True)
    assert errors(by_json) == [(1, "product_no", "invalid_value")], by_json


# -- users -------------------------------------------------------------------------------------

USER_HEADER = "erp_code,username,display_name,org_erp_code,roles,phone,email\n"


async def test_users_get_a_one_time_password_once(client: Any, login: Any, demo: Any) -> None:
    admin = await login("admin")
    u1, u2 = code("E1"), code("E2")
    name1, name2 = f"t{RUN.lower()}.wang", f"t{RUN.lower()}.li"
    rows = USER_HEADER + (
        f"{u1},{name1},王芳,STORE-HZ-01,store_clerk,+86 138 0000 0001,wang@example.com\n"
        f"{u2},{name2},李雷,AGENT-ZJ,warehouse_clerk field_rep,,\n"
    )
    first = await imported(client, admin, "users", rows)
    assert counts(first) == (2, 0, 0, 0), first
    secrets_by_code = {r["erp_code"]: r["initial_password"] for r in first["results"]}
    assert all(len(p) >= 20 for p in secrets_by_code.values())
    login_ok = await client.post(
        "/auth/login", json={"username": name1, "password": secrets_by_code[u1]}
    )
    assert login_ok.status_code == 200, login_ok.text
    # one-time: replaced before anything else (it stayed the user's password for good)
    signed = {"Authorization": f"Bearer {login_ok.json()['access_token']}"}
    refused = await client.get("/documents", headers=signed)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "password_change_required"
    user = (await client.get(f"/users/{ids(first)[u2]}", headers=admin)).json()
    assert user["must_change_password"] is True
    assert (user["erp_code"], user["org_id"], user["roles"]) == (
        u2,
        demo["AGENT-ZJ"],
        ["field_rep", "warehouse_clerk"],
    )

    again = await imported(client, admin, "users", rows)
    assert counts(again) == (0, 0, 2, 0)
    assert all("initial_password" not in r for r in again["results"])

    # moved to another organisation, one role less, a new name: by ERP code
    moved = USER_HEADER + f"{u2},{name2},李雷 (宁波),DIST-NB,warehouse_clerk,,\n"
    third = await imported(client, admin, "users", moved)
    assert counts(third) == (0, 1, 0, 0), third
    assert third["results"][0]["changed"] == ["org_erp_code", "display_name", "roles"]
    user = (await client.get(f"/users/{ids(first)[u2]}", headers=admin)).json()
    assert (user["org_id"], user["roles"], user["display_name"]) == (
        demo["DIST-NB"],
        ["warehouse_clerk"],
        "李雷 (宁波)",
    )


async def test_passwords_are_never_imported_and_bad_user_rows_are_named(
    client: Any, login: Any, demo: Any
) -> None:
    admin = await login("admin")
    with_password = (
        "erp_code,username,org_erp_code,roles,password\nX,xx.x,AGENT-ZJ,field_rep,secret1\n"
    )
    assert_error(await send(client, admin, "users", with_password), 400, "password_not_imported")
    assert_error(await send(client, admin, "users", ""), 400, "empty_file")
    assert_error(await send(client, admin, "users", "erp_code,colour\n"), 400, "bad_header")
    body = {"items": [{"erp_code": code("PW"), "username": f"t{RUN.lower()}.pw",
                       "org_erp_code": "AGENT-ZJ", "roles": ["field_rep"], "password": "secret12"}]}  # fmt: skip
    result = await imported(client, admin, "users", body)
    assert errors(result) == [(1, "password", "password_not_imported")]

    agent_admin = await login("agent_admin")  # administers AGENT-ZJ's subtree only
    rows = USER_HEADER + (
        f"{code('A1')},t{RUN.lower()}.a1,,STORE-GZ-01,store_clerk,,\n"  # another agent's store
        f"{code('A2')},t{RUN.lower()}.a2,,STORE-HZ-01,brand_admin,,\n"  # stronger than the caller
        f"{code('A3')},t{RUN.lower()}.a3,,STORE-HZ-01,no_such_role,,\n"
        f"{code('A4')},admin,,STORE-HZ-01,store_clerk,,\n"  # the brand admin's username
        f"{code('A5')},t{RUN.lower()}.a5,,STORE-HZ-01,,,not-an-email\n"
        f"{code('A6')},t{RUN.lower()}.a6,=cmd|' /C calc'!A0,STORE-HZ-01,store_clerk,,\n"
        f"{code('A7')},t{RUN.lower()}.a7,,NB-{RUN},store_clerk,,\n"
        f"{code('A8')},t{RUN.lower()}.a8,Good,STORE-HZ-01,store_clerk,,\n"
        f"{code('A9')},t{RUN.lower()}.a8,Same username,STORE-HZ-01,store_clerk,,\n"
        f"{code('A10')},Clerk,,STORE-HZ-01,store_clerk,,\n"  # a user's name, in another case
        f"{code('A11')},T{RUN.upper()}.A8,,STORE-HZ-01,store_clerk,,\n"  # rows 8 and 9's (a probe)
    )
    result = await imported(client, agent_admin, "users", rows)
    assert counts(result) == (0, 0, 0, 11), result
    assert errors(result) == [
        (1, "org_erp_code", "unknown_org"),
        (2, None, "permission_escalation"),
        (3, None, "unknown_role"),
        (4, "username", "username_taken"),
        (5, "email", "invalid_value"),
        (6, "display_name", "formula_value"),
        (7, "org_erp_code", "unknown_org"),
        (8, "username", "duplicate_in_file"),
        (9, "username", "duplicate_in_file"),
        (10, "username", "username_taken"),
        (11, "username", "duplicate_in_file"),
    ]
    # a user of the brand (outside the agent's subtree) is not the agent's to change
    staff = await imported(
        client,
        admin,
        "users",
        USER_HEADER + f"{code('HQ')},t{RUN.lower()}.hq,,BRAND-LUMI,analyst,,\n",
    )
    assert counts(staff) == (1, 0, 0, 0)
    taken = await imported(
        client, agent_admin, "users", f"erp_code,display_name\n{code('HQ')},Mine\n"
    )
    assert errors(taken) == [(1, "erp_code", "erp_code_taken")]


async def test_a_users_import_never_reaches_into_another_brand(
    client: Any, login: Any, demo: Any
) -> None:
    """Probe B: the platform operator's import moved a brand's user (adopted by username) into
    another brand's store, history and all; an organisation cannot move across brands."""
    platform = await login("platform")
    other_brand = code("XB")
    made = await client.post(
        "/orgs", headers=platform, json={"kind": "brand", "name": "XB", "erp_code": other_brand}
    )
    assert made.status_code == 201, made.text
    username = f"xb-{RUN}".lower()
    user = await client.post(
        "/users",
        headers=platform,
        json={
            "org_id": demo["STORE-GZ-01"],
            "username": username,
            "password": "tracecode-demo",
            "roles": ["store_clerk"],
        },
    )
    assert user.status_code == 201, user.text
    rows = (
        f"erp_code,username,org_erp_code,roles\n{code('XU')},{username},{other_brand},store_clerk\n"
    )
    out = await imported(client, platform, "users", rows)
    assert out["errors"] and out["errors"][0]["code"] == "unknown_org", out
    me = await client.get(f"/users/{user.json()['id']}", headers=platform)
    assert me.json()["org_id"] == demo["STORE-GZ-01"]


async def test_two_brands_keep_their_own_erp_codes(client: Any, login: Any, demo: Any) -> None:
    """ERP codes are per brand (migration 0045): a brand hosted beside another may use its
    codes. Before, the second brand's organisation was refused (409, telling it the code was
    in use elsewhere), and an import named the other brand's organisation: "erp_code_taken"."""
    platform, admin = await login("platform"), await login("admin")
    brand_code, same = code("OB"), code("SAME")
    other = await client.post(
        "/orgs", headers=platform, json={"kind": "brand", "name": "Other", "erp_code": brand_code}
    )
    assert other.status_code == 201, other.text
    theirs = {"kind": "agent", "name": "Theirs", "erp_code": same, "parent_id": other.json()["id"]}
    made = await client.post("/orgs", headers=platform, json=theirs)
    assert made.status_code == 201, made.text
    ours = await imported(
        client, admin, "orgs", org_file([f"{same},agent,Ours,BRAND-LUMI" + "," * 9])
    )
    assert counts(ours) == (1, 0, 0, 0), ours
    # the import's second run names Lumi's organisation, and a user import puts its user there
    renamed = org_file([f"{same},agent,Ours renamed,BRAND-LUMI" + "," * 9])
    assert counts(await imported(client, admin, "orgs", renamed)) == (0, 1, 0, 0)
    username = f"t{RUN.lower()}.same"
    rows = USER_HEADER + f"{code('SU')},{username},,{same},warehouse_clerk,,\n"
    assert counts(await imported(client, admin, "users", rows)) == (1, 0, 0, 0)
    found = await client.get("/users", headers=admin, params={"q": username})
    assert [u["org_id"] for u in found.json()["items"]] == [ours["results"][0]["id"]]
    assert (await client.get(f"/orgs/{made.json()['id']}", headers=platform)).json()["name"] == (
        "Theirs"
    )
    # within a brand a code is one organisation's; a brand's code is one brand's
    assert_error(
        await client.post("/orgs", headers=platform, json=theirs), 409, "duplicate_erp_code"
    )
    copy = {"kind": "brand", "name": "Copy", "erp_code": brand_code}
    assert_error(await client.post("/orgs", headers=platform, json=copy), 409, "duplicate_erp_code")


async def test_a_user_moved_by_import_leaves_the_old_organisations_roles_behind(
    client: Any, login: Any, demo: Any
) -> None:
    """Probe F: the moved user kept a custom role of its old agent, whose admin could no
    longer see the user but could still widen the role's permissions."""
    admin, zj = await login("admin"), await login("agent_admin")
    role = f"zj_helper_{RUN}".lower()
    made = await client.post(
        "/roles", headers=zj, json={"name": role, "permissions": ["orgs.read"]}
    )
    assert made.status_code == 201, made.text
    username = f"mv-{RUN}".lower()
    user = await client.post(
        "/users",
        headers=zj,
        json={
            "org_id": demo["AGENT-ZJ"],
            "username": username,
            "password": "tracecode-demo",
            "roles": ["field_rep", role],
        },
    )
    assert user.status_code == 201, user.text
    rows = f"erp_code,username,org_erp_code\n{code('MV')},{username},AGENT-GD\n"
    out = await imported(client, admin, "users", rows)
    assert out["updated"] == 1, out
    moved = (await client.get(f"/users/{user.json()['id']}", headers=admin)).json()
    assert moved["org_id"] == demo["AGENT-GD"]
    assert moved["roles"] == ["field_rep"], moved


async def test_a_user_moved_away_leaves_its_api_keys_behind_dead(
    client: Any, login: Any, demo: Any
) -> None:
    """Probe U: a key made at the old agent kept working after its maker moved away — it read
    the old agent's users and made new keys there — and the maker no longer saw it to revoke."""
    admin = await login("admin")
    username = f"km-{RUN}".lower()
    user = await client.post(
        "/users",
        headers=admin,
        json={
            "org_id": demo["AGENT-ZJ"],
            "username": username,
            "password": "tracecode-demo",
            "roles": ["org_admin"],
        },
    )
    assert user.status_code == 201, user.text
    maker = await login(username)
    made = await client.post(
        "/api-keys", headers=maker, json={"name": username, "permissions": ["users.read"]}
    )
    assert made.status_code == 201, made.text
    as_key = {"X-API-Key": made.json()["key"]}
    assert (await client.get("/users", headers=as_key)).status_code == 200
    rows = f"erp_code,username,org_erp_code\n{code('KM')},{username},AGENT-GD\n"
    assert (await imported(client, admin, "users", rows))["updated"] == 1
    assert_error(await client.get("/users", headers=as_key), 401, "api_key_revoked")


async def test_an_import_adopts_no_account_stronger_than_the_importer(
    client: Any, login: Any
) -> None:
    """Probe F: a brand admin's import gave the platform operator's account an ERP code
    (``PATCH /users`` of that account is 403 ``stronger_account``)."""
    admin, platform = await login("admin"), await login("platform")
    rows = f"erp_code,username\n{code('PLAT')},platform\n"
    out = await imported(client, admin, "users", rows)
    assert [e["code"] for e in out["errors"]] == ["stronger_account"], out
    me = (await client.get("/auth/me", headers=platform)).json()
    found = await client.get("/users", headers=platform, params={"q": "platform"})
    [row] = [u for u in found.json()["items"] if u["id"] == me["user_id"]]
    assert row.get("erp_code") is None, row


async def test_a_blank_roles_cell_says_nothing(client: Any, login: Any, demo: Any) -> None:
    """A probe: an empty roles cell (a spreadsheet's blank column) took every role of the user
    it updated, and created a user with none."""
    admin = await login("admin")
    u1, u2 = code("BR1"), code("BR2")
    name1, name2 = f"t{RUN.lower()}.br1", f"t{RUN.lower()}.br2"
    first = await imported(
        client, admin, "users", USER_HEADER + f"{u1},{name1},王芳,STORE-HZ-01,store_clerk,,\n"
    )
    assert counts(first) == (1, 0, 0, 0), first
    blank = USER_HEADER + f"{u1},{name1},王芳芳,STORE-HZ-01, ,,\n"
    second = await imported(client, admin, "users", blank)
    assert counts(second) == (0, 1, 0, 0), second
    assert second["results"][0]["changed"] == ["display_name"]
    user = (await client.get(f"/users/{ids(first)[u1]}", headers=admin)).json()
    assert (user["roles"], user["display_name"]) == (["store_clerk"], "王芳芳")
    new = await imported(
        client, admin, "users", USER_HEADER + f"{u2},{name2},李雷,STORE-HZ-01,,,\n"
    )
    assert counts(new) == (0, 0, 0, 1), new
    assert errors(new) == [(1, "roles", "missing_value")]


async def test_a_key_cannot_move_the_user_who_made_it(client: Any, login: Any, demo: Any) -> None:
    """A probe: the users import moved the key's own maker (its sessions ended), where the
    maker's own token, and the key on PATCH /users, are refused 422 own_account."""
    zj = await login("agent_admin")
    me = (await client.get("/auth/me", headers=zj)).json()
    made = await client.post(
        "/api-keys", headers=zj, json={"name": f"own-{RUN}", "permissions": me["permissions"]}
    )
    assert made.status_code == 201, made.text
    key = {"X-API-Key": made.json()["key"]}
    row = {"erp_code": code("OWN"), "username": me["username"], "org_erp_code": "STORE-HZ-01"}
    for headers in (zj, key):
        result = await imported(client, headers, "users", {"items": [row]})
        assert counts(result)[3] == 1 and result["errors"][0]["code"] == "own_account", result
    assert (await client.get("/auth/me", headers=zj)).json()["org_id"] == demo["AGENT-ZJ"]


async def test_a_closed_agent_loads_with_its_closed_stores(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: an ERP's first full load held a closed agent and its closed store. The import
    applied the agent's ``status: inactive`` as soon as it created it, so the store (a row of
    the same file, applied after its parent) was refused ``parent_inactive`` — on every import
    again: the file never converged. Deactivations now wait for the file's other rows."""
    admin = await login("admin")
    agent, store = code("NA"), code("NS")
    rows = (
        "erp_code,kind,name,parent_erp_code,status\n"
        f"{agent},agent,Closed agent,BRAND-LUMI,inactive\n"
        f"{store},store,Closed store,{agent},inactive\n"
    )
    first = await imported(client, admin, "orgs", rows)
    assert errors(first) == [] and counts(first) == (2, 0, 0, 0), first["errors"]
    for made in ids(first).values():
        found = await client.get(f"/orgs/{made}", headers=admin)
        assert found.json()["status"] == "inactive", found.text
    again = await imported(client, admin, "orgs", rows)
    assert counts(again) == (0, 0, 2, 0), again["errors"]


async def test_a_store_moves_out_of_the_agent_the_same_file_closes(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a sync file closes agent A and hands its store to agent B. Whether the store
    moved hung on the rows' order: listed after A (as a file sorted by level lists it) it was
    refused ``parent_inactive`` (A deactivated a row earlier), on every re-import; listed
    before A it moved."""
    admin = await login("admin")
    a, b, s = code("CA"), code("CB"), code("CS")
    setup = (
        "erp_code,kind,name,parent_erp_code\n"
        f"{a},agent,Closing agent,BRAND-LUMI\n"
        f"{b},agent,Taking agent,BRAND-LUMI\n"
        f"{s},store,Store,{a}\n"
    )
    made = await imported(client, admin, "orgs", setup)
    assert counts(made) == (3, 0, 0, 0)
    head = "erp_code,kind,name,parent_erp_code,status\n"
    close = f"{a},agent,Closing agent,BRAND-LUMI,inactive\n"
    move = f"{s},store,Store,{b},active\n"
    store_first = await imported(client, admin, "orgs", head + move + close, dry_run=True)
    assert counts(store_first) == (0, 2, 0, 0), store_first["errors"]
    agent_first = await imported(client, admin, "orgs", head + close + move)
    assert errors(agent_first) == [], agent_first["errors"]
    assert counts(agent_first) == (0, 2, 0, 0)
    store = (await client.get(f"/orgs/{ids(made)[s]}", headers=admin)).json()
    assert store["parent_id"] == ids(made)[b], store
    closed = (await client.get(f"/orgs/{ids(made)[a]}", headers=admin)).json()
    assert closed["status"] == "inactive", closed
    # and back: the agent reopened, the store returned to it, whatever the order
    reopen = f"{a},agent,Closing agent,BRAND-LUMI,active\n"
    back = f"{s},store,Store,{a},active\n"
    returned = await imported(client, admin, "orgs", head + back + reopen)
    assert errors(returned) == [] and counts(returned) == (0, 2, 0, 0), returned["errors"]
    # a store leaving an agent a row further down reopens: activations come first
    assert counts(await imported(client, admin, "orgs", head + close)) == (0, 1, 0, 0)
    reopened = await imported(client, admin, "orgs", head + move + reopen)
    assert errors(reopened) == [] and counts(reopened) == (0, 2, 0, 0), reopened["errors"]


async def test_a_deactivation_the_service_refuses_rejects_its_whole_row(
    client: Any, login: Any, demo: Any
) -> None:
    """Deactivations wait for the file's other rows, but are tried with their own: an agent's
    administrator closing its own organisation (``own_org``) changes nothing of that row,
    not even the name it gives."""
    zj = await login("agent_admin")
    row = "erp_code,name,status\nAGENT-ZJ,Renamed while closing,inactive\n"
    result = await imported(client, zj, "orgs", row)
    assert errors(result) == [(1, None, "own_org")], result["errors"]
    found = (await client.get(f"/orgs/{demo['AGENT-ZJ']}", headers=zj)).json()
    assert found["name"] != "Renamed while closing" and found["status"] == "active", found


async def _goods_on_their_way_to(client: Any, login: Any, app: Any, demo: Any, org_id: int) -> None:
    """One unit received from the line and shipped (confirmed) to ``org_id``: in transit."""
    batch_no, product_id = await issue_units(client, login, demo, 1, product_no="LM-HY-50")
    serials = [app.state.scheme.serial(batch_no, 0)]
    await activate(client, login, serials, product_id, line="ERP", lot=f"ERP-{RUN}")
    clerk = await login("clerk")
    for fields in ({"kind": "factory_inbound"}, {"kind": "outbound", "counterparty_id": org_id}):
        doc = (await client.post("/documents", headers=clerk, json=fields)).json()
        added = await client.post(
            f"/documents/{doc['id']}/codes", headers=clerk, json={"codes": serials}
        )
        assert added.status_code == 200 and added.json()["rejected"] == 0, added.text
        confirmed = await client.post(f"/documents/{doc['id']}/confirm", headers=clerk)
        assert confirmed.status_code == 200, confirmed.text


async def test_a_closing_row_whose_deactivation_is_refused_after_the_other_rows_is_not_applied(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a row renaming and closing a branch was applied when its turn came (its
    deactivation only tried, and undone), then deactivated after the file's other rows. A later
    row moved an agent with goods on their way to it under the branch: the deactivation was
    refused ``goods_in_transit``, the row answered ``rejected`` — and its rename was kept, the
    branch active. README: a bad row is "not applied". A closing row is now applied whole, its
    changes with its deactivation, after the other rows: refused, nothing of it is left; a dry
    run answers the same."""
    admin = await login("admin")
    branch, agent = code("CGB"), code("CGA")  # code("GB"): a store of another test
    setup = (
        "erp_code,kind,name,parent_erp_code\n"
        f"{branch},branch,Closing branch,BRAND-LUMI\n"
        f"{agent},agent,Agent with goods coming,BRAND-LUMI\n"
    )
    made = ids(await imported(client, admin, "orgs", setup))
    await _goods_on_their_way_to(client, login, app, demo, made[agent])
    body = (
        "erp_code,name,parent_erp_code,status\n"
        f"{branch},Renamed while closing,BRAND-LUMI,inactive\n"
        f"{agent},Agent with goods coming,{branch},active\n"
    )
    for dry_run in (True, False):
        result = await imported(client, admin, "orgs", body, dry_run=dry_run)
        assert errors(result) == [(1, None, "goods_in_transit")], result["errors"]
        assert counts(result) == (0, 1, 0, 1) and ids(result) == {agent: made[agent]}, result
    found = (await client.get(f"/orgs/{made[branch]}", headers=admin)).json()
    assert (found["name"], found["status"]) == ("Closing branch", "active"), found
    moved = (await client.get(f"/orgs/{made[agent]}", headers=admin)).json()
    assert moved["parent_id"] == made[branch], moved


async def test_a_new_organisation_closed_whose_deactivation_is_refused_is_not_created(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a new branch with ``status: inactive`` was created when its row's turn came and
    deactivated after the file's other rows; a later row moving an agent with goods on their way
    to it under the branch got the deactivation refused ``goods_in_transit``: the branch stayed,
    active, its row answered ``rejected`` (and a re-import ``updated``). It is now created, the
    rows below it applied, and deactivated in one step: refused, the branch is not created and
    the row below it is ``parent_rejected``, every time. Without such a row, a new closed branch
    takes an existing store and a new closed store under it."""
    admin = await login("admin")
    branch, agent, store, new_store = code("NB"), code("NG"), code("NX"), code("NY")
    setup = (
        "erp_code,kind,name,parent_erp_code\n"
        f"{agent},agent,Agent with goods coming,BRAND-LUMI\n"
        f"{store},store,Store to archive,BRAND-LUMI\n"
    )
    made = ids(await imported(client, admin, "orgs", setup))
    await _goods_on_their_way_to(client, login, app, demo, made[agent])
    head = "erp_code,kind,name,parent_erp_code,status\n"
    closed = f"{branch},branch,Closed branch,BRAND-LUMI,inactive\n"
    body = head + closed + f"{agent},agent,Agent with goods coming,{branch},active\n"
    for dry_run in (True, False, False):
        result = await imported(client, admin, "orgs", body, dry_run=dry_run)
        assert errors(result) == [
            (1, None, "goods_in_transit"),
            (2, "parent_erp_code", "parent_rejected"),
        ], result["errors"]
        assert counts(result) == (0, 0, 0, 2) and ids(result) == {}, result
    listed = (await client.get("/orgs", headers=admin, params={"q": branch})).json()
    assert listed["items"] == [], listed
    found = (await client.get(f"/orgs/{made[agent]}", headers=admin)).json()
    assert found["parent_id"] == demo["BRAND-LUMI"], found

    archive = (
        head
        + f"{new_store},store,New closed store,{branch},inactive\n"
        + closed
        + f"{store},store,Store to archive,{branch},active\n"
    )
    result = await imported(client, admin, "orgs", archive)
    assert errors(result) == [] and counts(result) == (2, 1, 0, 0), result["errors"]
    got = ids(result)
    for org_id, parent_id, status in (
        (got[branch], demo["BRAND-LUMI"], "inactive"),
        (got[new_store], got[branch], "inactive"),
        (made[store], got[branch], "active"),
    ):
        found = (await client.get(f"/orgs/{org_id}", headers=admin)).json()
        assert (found["parent_id"], found["status"]) == (parent_id, status), found
    assert counts(await imported(client, admin, "orgs", archive)) == (0, 0, 3, 0)


async def test_a_chain_of_new_closed_rows_deeper_than_kinds_nest_is_refused_not_a_crash(
    client: Any, login: Any, demo: Any
) -> None:
    """A review: a file of new ``inactive`` rows, each the parent of the next (a branch under
    the brand, a store under it, a store under that one …), crashed at 900 rows, a 500
    (``RecursionError``): each new closed row applies the rows below it within its own step, and
    a refused one the rows below it again, a level of recursion a row. Organisations nest at
    most 4 deep below their brand (``CHILD_KINDS``): a row deeper down a chain of the file's
    parents is refused ``bad_hierarchy`` before any row is applied; the others are judged as
    ever — the store under a store ``bad_hierarchy`` by the service, the rows below it
    ``parent_rejected``."""
    admin = await login("admin")
    chain = [code(f"DEEP{n}") for n in range(1000)]
    body = f"erp_code,kind,name,parent_erp_code,status\n{chain[0]},branch,c0,BRAND-LUMI,inactive\n"
    body += "".join(f"{chain[n]},store,c{n},{chain[n - 1]},inactive\n" for n in range(1, 1000))
    result = await imported(client, admin, "orgs", body, dry_run=True)
    assert counts(result) == (2, 0, 0, 998), counts(result)
    assert [e[2] for e in errors(result)[:4]] == [
        "bad_hierarchy",
        "parent_rejected",
        "parent_rejected",
        "bad_hierarchy",
    ], result["errors"][:4]
    assert errors(result)[3][:2] == (6, "parent_erp_code"), result["errors"][3]


async def test_a_row_sharing_its_code_with_a_bad_row_is_not_applied(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: README says ``duplicate_in_file`` rejects *every* row sharing an erp_code
    (product number, username): which one is meant cannot be told. A repeat was only looked for
    among the rows that passed their own checks, so when one of two rows with the same code
    failed (here a formula), the other was applied as if it were the only one."""
    admin = await login("admin")
    store = code("DUP")
    rows = (
        "erp_code,kind,name,parent_erp_code\n"
        f"{store},store,=HYPERLINK(1),AGENT-ZJ\n"
        f"{store},store,Second,AGENT-ZJ\n"
    )
    result = await imported(client, admin, "orgs", rows, dry_run=True)
    assert (2, "erp_code", "duplicate_in_file") in errors(result), errors(result)
    assert counts(result) == (0, 0, 0, 2), result["results"]

    p = code("PD")
    products = (
        "erp_code,product_no,name\n"
        f"{p},NO-{p},@bad\n"
        f"{p},NO2-{p},Same code\n"
        f"{code('PD2')},NO-{p},Same number\n"
    )
    result = await imported(client, admin, "products", products, dry_run=True)
    assert counts(result) == (0, 0, 0, 3), (result["results"], result["errors"])


async def test_rows_naming_one_product_number_composed_and_decomposed_are_each_duplicate(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a product number is kept in NFC, so "CAFÉ-1" typed composed and decomposed (as
    on a Mac) is one number — but repeats were looked for among the numbers as read, so of two
    rows naming it so, the first made the product and the second was ``duplicate_product_no``
    (or the other way round, by their order). Both are ``duplicate_in_file``, in either order,
    in JSON and CSV alike."""
    admin = await login("admin")
    composed = unicodedata.normalize("NFC", f"CAFÉ-{code('NFC')}")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    both = [(1, "product_no", "duplicate_in_file"), (2, "product_no", "duplicate_in_file")]
    for first, second in ((composed, decomposed), (decomposed, composed)):
        rows = [(code("NFC-A"), first, "Coffee A"), (code("NFC-B"), second, "Coffee B")]
        columns = ("erp_code", "product_no", "name")
        body = {"items": [dict(zip(columns, r, strict=True)) for r in rows]}
        result = await imported(client, admin, "products", body, dry_run=True)
        assert sorted(errors(result)) == both, result["errors"]
        csv = "\ufefferp_code,product_no,name\n" + "".join(",".join(r) + "\n" for r in rows)
        result = await imported(client, admin, "products", csv, dry_run=True)  # UTF-8: a BOM
        assert sorted(errors(result)) == both, result["errors"]
        assert counts(result) == (0, 0, 0, 2), result["results"]


async def test_a_user_moved_by_import_keeps_the_roles_its_row_lists_or_is_refused(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a row moved a user from a store of agent ZJ to one of agent GD listing its
    roles, a custom role of ZJ among them. The import answered ``updated`` (changed:
    org_erp_code) yet the user no longer held the listed role (dropped by the move); the same
    row creating a user at GD is ``unknown_role``, and so is the moving row now, nothing of it
    applied."""
    admin, zj = await login("admin"), await login("agent_admin")
    role = f"zj_listed_{RUN}".lower()
    made = await client.post(
        "/roles", headers=zj, json={"name": role, "permissions": ["orgs.read"]}
    )
    assert made.status_code == 201, made.text
    user, name = code("RD"), f"t{RUN.lower()}.rd"
    head = "erp_code,username,org_erp_code,roles\n"
    created = await imported(
        client, admin, "users", head + f"{user},{name},STORE-HZ-01,store_clerk {role}\n"
    )
    assert counts(created) == (1, 0, 0, 0), created["errors"]
    moved = await imported(
        client, admin, "users", head + f"{user},{name},STORE-GZ-01,store_clerk {role}\n"
    )
    assert errors(moved) == [(1, None, "unknown_role")], moved
    found = (await client.get(f"/users/{created['results'][0]['id']}", headers=admin)).json()
    assert found["org_id"] == demo["STORE-HZ-01"], found
    assert sorted(found["roles"]) == sorted(["store_clerk", role]), found
    # without the role the row moves it
    plain = await imported(
        client, admin, "users", head + f"{user},{name},STORE-GZ-01,store_clerk\n"
    )
    assert errors(plain) == [] and counts(plain) == (0, 1, 0, 0), plain


async def test_an_agent_s_own_record_with_its_own_parent_is_unchanged(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the agent's administrator imports its own organisation's row as the ERP holds
    it, parent included (the brand, unchanged). Nothing differed, yet the row was rejected
    ``unknown_parent`` ("no organisation BRAND-LUMI among those you administer"): an unchanged
    parent was judged as if it were a move. A move there is still refused."""
    zj = await login("agent_admin")
    name = "Zhejiang Agent 浙江代理"
    without = await imported(client, zj, "orgs", f"erp_code,name\nAGENT-ZJ,{name}\n", dry_run=True)
    assert counts(without) == (0, 0, 1, 0), without["errors"]
    row = f"erp_code,kind,name,parent_erp_code\nAGENT-ZJ,agent,{name},BRAND-LUMI\n"
    result = await imported(client, zj, "orgs", row, dry_run=True)
    assert counts(result) == (0, 0, 1, 0), result["errors"]
    elsewhere = f"erp_code,kind,name,parent_erp_code\nAGENT-ZJ,agent,{name},AGENT-GD\n"
    result = await imported(client, zj, "orgs", elsewhere, dry_run=True)
    assert errors(result) == [(1, "parent_erp_code", "unknown_parent")], result["errors"]


async def test_user_moved_keeps_a_listed_role_its_new_place_also_defines(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: agents ZJ and GD each have a custom role of the same name (names are unique
    along a line, not across siblings). A user row moving a user from a ZJ store to a GD store
    and listing that name means GD's role, yet the row was refused ``unknown_role``: a listed
    name among the roles the move dropped (ZJ's) was refused, GD's of that name never looked
    up, although it IS the new organisation's (creating the user at GD with that row was fine)."""
    admin, zj, gd = await login("admin"), await login("agent_admin"), await login("gd_admin")
    role = f"promo_{secrets.token_hex(3)}"
    for who in (zj, gd):
        made = await client.post(
            "/roles", headers=who, json={"name": role, "permissions": ["orgs.read"]}
        )
        assert made.status_code == 201, made.text
    head = "erp_code,username,org_erp_code,roles\n"
    fresh, fname = code("RX"), f"rx{secrets.token_hex(3)}"
    at_gd = await imported(
        client,
        admin,
        "users",
        head + f"{fresh},{fname},STORE-GZ-01,store_clerk {role}\n",
        dry_run=True,
    )
    assert counts(at_gd) == (1, 0, 0, 0), at_gd["errors"]  # the role is GD's too
    user, name = code("RM"), f"rm{secrets.token_hex(3)}"
    created = await imported(
        client, admin, "users", head + f"{user},{name},STORE-HZ-01,store_clerk {role}\n"
    )
    assert counts(created) == (1, 0, 0, 0), created["errors"]
    moved = await imported(
        client, admin, "users", head + f"{user},{name},STORE-GZ-01,store_clerk {role}\n"
    )
    assert errors(moved) == [] and counts(moved) == (0, 1, 0, 0), moved
    found = (await client.get(f"/users/{created['results'][0]['id']}", headers=admin)).json()
    assert found["org_id"] == demo["STORE-GZ-01"] and role in found["roles"], found


async def test_org_reactivation_and_move_out_of_a_reopened_agent_in_any_order(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: README (ERP import) applies a reactivation "before them, so a file can close an
    agent together with its stores, or move a store out of it, in any order". Agent A and its
    store S both closed, a file reopening both and moving S to AGENT-GD worked with A's row
    first but refused S ``parent_inactive`` with S's row first: ``orgs._parents_first`` ordered
    reactivations by the rows' new parent only, never by the inactive old parent a move out of
    it needs live (``move_org``). Before that, a dry run of the closing (with a store created
    under the closing agent) changes nothing and answers what the real run does."""
    admin = await login("admin")
    a, s, t = code("DA"), code("DS"), code("DT")
    setup = (
        "erp_code,kind,name,parent_erp_code\n"
        f"{a},agent,Dry agent,BRAND-LUMI\n"
        f"{s},store,Dry store,{a}\n"
    )
    made = await imported(client, admin, "orgs", setup)
    assert counts(made) == (2, 0, 0, 0), made["errors"]
    head = "erp_code,kind,name,parent_erp_code,status\n"
    body = (
        head
        + f"{a},agent,Dry agent renamed,BRAND-LUMI,inactive\n"
        + f"{t},store,New under closing,{a},active\n"
        + f"{s},store,Dry store,{a},inactive\n"
    )
    dry = await imported(client, admin, "orgs", body, dry_run=True)
    assert errors(dry) == [] and counts(dry) == (1, 2, 0, 0), dry
    for org_id in ids(made).values():
        found = (await client.get(f"/orgs/{org_id}", headers=admin)).json()
        assert found["status"] == "active" and "renamed" not in found["name"], found
    listed = (await client.get("/orgs", headers=admin, params={"per_page": 200})).json()
    assert t not in {o.get("erp_code") for o in listed["items"]}
    real = await imported(client, admin, "orgs", body)
    assert counts(real) == counts(dry) and errors(real) == []
    # a reactivation and a move in one file: the closed store reopens and moves to GD while
    # its closed agent reopens — README: "in any order"
    reopen_store = f"{s},store,Dry store,AGENT-GD,active\n"
    reopen_agent = f"{a},agent,Dry agent,BRAND-LUMI,active\n"
    agent_first = await imported(
        client, admin, "orgs", head + reopen_agent + reopen_store, dry_run=True
    )
    assert errors(agent_first) == [] and counts(agent_first) == (0, 2, 0, 0), agent_first
    store_first = await imported(client, admin, "orgs", head + reopen_store + reopen_agent)
    assert errors(store_first) == [] and counts(store_first) == (0, 2, 0, 0), store_first
    store = (await client.get(f"/orgs/{ids(made)[s]}", headers=admin)).json()
    assert store["parent_id"] == demo["AGENT-GD"] and store["status"] == "active", store


async def test_a_utf8_file_with_a_stray_byte_is_refused_naming_its_line(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a UTF-8 file whose Chinese text reads fine but which holds one stray byte of
    another encoding (a Windows-1252 "é" pasted in) was read as GB18030, which takes almost any
    byte pair: 200 ``created`` with every Chinese name stored as mojibake ("温州鹿城" as
    "娓╁窞楣垮煄"). Such a file — more well-formed UTF-8 sequences of three bytes than bad
    bytes — is 400 ``bad_encoding`` naming the line of the bad byte. A GB18030 file whose first
    characters happen to be UTF-8 too ("台" in GB18030 is the UTF-8 of U+0328) is still read
    as GB18030."""
    x1, x2, x3 = code("ENC1"), code("ENC2"), code("ENC5")
    text = (
        "erp_code,kind,name,parent_erp_code\n"
        f"{x1},store,温州鹿城,AGENT-ZJ\n"
        f"{x2},store,Cafés Milano,AGENT-ZJ\n"
    )
    raw = text.encode("utf-8").replace("é".encode(), b"\xe9")  # one Latin-1 byte
    admin = await login("admin")
    error = assert_error(await send(client, admin, "orgs", raw, dry_run=True), 400, "bad_encoding")
    assert error["details"] == {"line": 3}, error

    gb = f"erp_code,kind,name,parent_erp_code\n{x3},store,台州椒江店,AGENT-ZJ\n"
    got = await imported(client, admin, "orgs", gb.encode("gb18030"))
    stored = (await client.get(f"/orgs/{ids(got)[x3]}", headers=admin)).json()
    assert stored["name"] == "台州椒江店", stored


async def test_a_declared_csv_charset_is_honoured_or_refused(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the CSV imports ignored the ``charset`` of ``Content-Type`` (the JSON body's is
    checked) and guessed UTF-8, else GB18030. A GBK file declared ``text/csv; charset=gbk``
    whose bytes happen to be valid UTF-8 ("一品山庄" in GBK is the UTF-8 of "һƷɽׯ") was
    stored as that mojibake, and a Big5 file declared ``charset=big5`` as GB18030 mojibake.
    A declared GBK, GB2312 or GB18030 is read as GB18030, a declared UTF-8 as UTF-8 only (400
    ``bad_encoding`` naming the line otherwise), any other charset is 415 before the body is
    read, as for a JSON body."""
    admin = await login("admin")
    x1, x2, x3 = code("ENC3"), code("ENC4"), code("ENC6")
    gbk = f"erp_code,kind,name,parent_erp_code\n{x1},store,一品山庄,AGENT-ZJ\n".encode("gbk")
    got = await imported(client, admin, "orgs", gbk, media="text/csv; charset=GBK")
    stored = (await client.get(f"/orgs/{ids(got)[x1]}", headers=admin)).json()
    assert stored["name"] == "一品山庄", stored

    big5 = f"erp_code,kind,name,parent_erp_code\n{x2},store,台北信義店,AGENT-ZJ\n".encode("big5")
    for charset in ("big5", "latin-1", "utf-16", ""):
        response = await send(
            client, admin, "orgs", big5, media=f"text/csv; charset={charset}", dry_run=True
        )
        assert_error(response, 415, "unsupported_media_type")
    gb = f"erp_code,kind,name,parent_erp_code\n{x3},store,温州鹿城,AGENT-ZJ\n".encode("gb18030")
    response = await send(client, admin, "orgs", gb, media='text/csv; charset="utf-8"')
    assert assert_error(response, 400, "bad_encoding")["details"] == {"line": 2}
    utf8 = await imported(client, admin, "orgs", gb.decode("gb18030").encode(), media="text/csv")
    assert counts(utf8) == (1, 0, 0, 0), utf8


async def test_a_bad_byte_after_a_bom_is_named_on_its_own_line(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe (review): the line of a UTF-8 file's bad byte was counted from the decoder's
    offset, which leaves out the 3 bytes of a BOM it dropped: a bad byte starting line 2 of a
    file saved with a BOM was named on line 1. The file's offset counts them now."""
    from app.csvread import decode
    from app.errors import BadRequest

    for declared in ("utf-8", None):
        try:
            decode(b"\xef\xbb\xbfab\n\xffc", declared)  # type: ignore[arg-type]
        except BadRequest as exc:
            assert exc.details == {"line": 2}, (declared, exc.details)
        else:
            raise AssertionError("a bad byte was read")
    admin = await login("admin")
    header = "\ufefferp_code,kind,name,parent_erp_code\n".encode()
    row = f"{code('BOM1')},store,温州鹿城,AGENT-ZJ\n".encode()
    for media in ("text/csv; charset=utf-8", "text/csv"):  # declared, and told from GB18030
        response = await send(client, admin, "orgs", header + b"\xe9" + row, media=media)
        assert assert_error(response, 400, "bad_encoding")["details"] == {"line": 2}, media


async def test_a_csv_declared_us_ascii_is_read_as_utf8(client: Any, login: Any, demo: Any) -> None:
    """A probe (review): a CSV body declared ``charset=us-ascii`` (or ``ascii``) — ASCII, a
    subset of UTF-8, what some ERP exports name — was refused 415 ``unsupported_media_type``. It
    is read as UTF-8, strictly (a GB18030 byte is 400 ``bad_encoding``, never guessed); Latin-1
    and the other charsets are still 415."""
    admin = await login("admin")
    for n, charset in enumerate(("us-ascii", "US-ASCII", "ascii")):
        body = f"erp_code,kind,name,parent_erp_code\n{code(f'ASC{n}')},store,Ascii,AGENT-ZJ\n"
        got = await imported(
            client, admin, "orgs", body, media=f"text/csv; charset={charset}", dry_run=True
        )
        assert counts(got) == (1, 0, 0, 0), (charset, got)
    gb = f"erp_code,kind,name,parent_erp_code\n{code('ASC9')},store,温州,AGENT-ZJ\n"
    response = await send(
        client, admin, "orgs", gb.encode("gb18030"), media="text/csv; charset=us-ascii"
    )
    assert assert_error(response, 400, "bad_encoding")["details"] == {"line": 2}
    for charset in ("iso-8859-1", "latin-1", "windows-1252"):
        response = await send(
            client, admin, "orgs", "erp_code\n", media=f"text/csv; charset={charset}"
        )
        assert_error(response, 415, "unsupported_media_type")


async def test_an_excel_gbk_file_whose_bytes_are_also_utf8_keeps_its_chinese(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a file saved "CSV (逗号分隔)" by Excel on Chinese Windows — GBK, no BOM, no
    charset declared — whose every Chinese character happens to be GBK bytes that are also
    well-formed two-byte UTF-8 ("一品山庄", about 2 % of one-row files of a random
    two-character name) was read as UTF-8: 200 ``created`` and the name stored as "һƷɽׯ".
    Without a BOM or a charset, a file whose only non-ASCII characters are two-byte UTF-8 and
    that GB18030 reads is read as GB18030 (Excel's UTF-8 CSV has a BOM). The trade-off, as
    documented: a BOM-less UTF-8 file of Latin accents only is GB18030 too; a BOM or
    ``charset=utf-8`` keeps it UTF-8."""
    from app.csvread import decode

    admin = await login("admin")
    x = code("GBK1")
    raw = f"erp_code,kind,name,parent_erp_code\r\n{x},store,一品山庄,AGENT-ZJ\r\n".encode("gbk")
    got = await imported(client, admin, "orgs", raw)
    stored = (await client.get(f"/orgs/{ids(got)[x]}", headers=admin)).json()
    assert stored["name"] == "一品山庄", stored
    latin = "name\nCafé\n".encode()
    assert decode(latin) == "name\nCaf茅\n"  # the trade-off
    assert decode(b"\xef\xbb\xbf" + latin) == decode(latin, "utf-8") == "name\nCafé\n"
    assert decode("name\nCafé 温州\n".encode()) == "name\nCafé 温州\n"  # three-byte UTF-8
    # a no-break space keeps a file UTF-8 (a review: "25\u00a0°C" read as Chinese; a symbol
    # alone is 400: test_a_gbk_file_that_may_be_utf8_with_symbols_is_refused_not_guessed)
    assert decode("name\n25\u00a0°C\n".encode()) == "name\n25\u00a0°C\n"


async def test_a_bad_byte_in_a_file_with_cr_line_ends_is_named_on_its_line(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a file with classic-Mac line ends (a lone CR: Excel for Mac's "CSV
    (Macintosh)", some ERP exports) is read row by row, its rows' errors naming lines 2, 3 …,
    but a byte that does not read was 400 ``bad_encoding`` naming line 1 whatever its line
    (``app.csvread._bad_encoding`` counted LF only). CR, CRLF and LF each end a line."""
    admin = await login("admin")
    head = "\ufefferp_code,kind,name,parent_erp_code\r".encode()
    good = f"{code('CR1')},store,温州鹿城店,AGENT-ZJ\r".encode()
    bad = f"{code('CR2')},store,Caf".encode() + b"\xe9" + b",AGENT-ZJ\r"
    for media in ("text/csv", "text/csv; charset=utf-8"):
        response = await send(client, admin, "orgs", head + good + bad, media=media, dry_run=True)
        error = assert_error(response, 400, "bad_encoding")
        assert error["details"] == {"line": 3}, (media, error)
    mixed = head + good.replace(b"\r", b"\r\n") + b"\n" + bad
    response = await send(client, admin, "orgs", mixed, dry_run=True)
    assert assert_error(response, 400, "bad_encoding")["details"] == {"line": 4}


async def test_blank_lines_above_the_header_are_skipped(client: Any, login: Any, demo: Any) -> None:
    """A probe: a sheet starting at A2 (or below a row of empty cells, saved as ",,,") was 400
    ``empty_file``: the header was looked for on line 1 only. Blank lines above the header are
    skipped, and the rows' errors still name their file lines; a file of blank lines alone is
    still ``empty_file``."""
    admin = await login("admin")
    x, y = code("A2A"), code("A2B")
    text = (
        "\r\n,,,\r\nerp_code,kind,name,parent_erp_code\r\n"
        f"{x},store,Sheet at A3,AGENT-ZJ\r\n{y},planet,Bad kind,AGENT-ZJ\r\n"
    )
    got = await imported(client, admin, "orgs", text, dry_run=True)
    assert counts(got) == (1, 0, 0, 1), got
    assert [(e["line"], e["column"]) for e in got["errors"]] == [(5, "kind")], got["errors"]
    assert_error(await send(client, admin, "orgs", "\n,,\n \n"), 400, "empty_file")
    unclosed = await send(client, admin, "orgs", '\n\n"erp_code,name\n')
    assert assert_error(unclosed, 400, "malformed_csv")["details"] == {"line": 3}


async def test_empty_header_cells_excel_writes_are_ignored_while_their_columns_are_empty(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: Excel writes the empty cells of a column it once held (``erp_code,name,,``) and
    such a header was 400 ``bad_header`` (an unknown column ""). A column whose header cell is
    empty is ignored while every row leaves it empty; a value under it is still 400
    ``bad_header``, naming its line."""
    admin = await login("admin")
    x = code("EH1")
    text = f"erp_code,kind,,name,parent_erp_code,,\r\n{x},store,,Trailing,AGENT-ZJ,,\r\n"
    got = await imported(client, admin, "orgs", text, dry_run=True)
    assert counts(got) == (1, 0, 0, 0) and errors(got) == [], got
    filled = text + f"{code('EH2')},store,,Filled,AGENT-ZJ,,lost?\r\n"
    error = assert_error(await send(client, admin, "orgs", filled, dry_run=True), 400, "bad_header")
    assert error["details"]["unknown"] == [""] and error["details"]["line"] == 3, error


async def test_rows_sharing_a_code_share_one_short_message(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: every row sharing an ``erp_code`` was ``duplicate_in_file`` with a message
    listing every row sharing it, one such message per row: O(rows²) (8,000 rows of one code,
    a 48 KB file: a 47 MB answer, ~365 MB of memory; 50,000 rows would kill the worker). The
    message names the first five rows and counts the others, the same for every row."""
    admin = await login("admin")
    many, two = code("DUPM"), code("DUPT")
    body = "erp_code\n" + f"{many}\n" * 2000 + f"{two}\n{two}\n"
    response = await send(client, admin, "orgs", body, dry_run=True)
    assert response.status_code == 200, response.text[:300]
    got = response.json()
    assert got["rejected"] == 2002 and got["errors_total"] == 2002, got["errors_total"]
    messages = {e["message"] for e in got["errors"] if e["erp_code"] == many}
    assert messages == {
        f"erp_code {many!r} is on rows 1, 2, 3, 4, 5 and 1,995 more rows of this file"
    }
    assert len(response.content) < 400_000, len(response.content)
    listed = {e["message"] for e in got["errors"] if e["erp_code"] == two}
    assert listed <= {f"erp_code {two!r} is on rows 2001, 2002 of this file"}


async def test_a_header_or_a_line_far_too_wide_is_refused_at_once(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the header's repeated columns were found by ``names.count`` per column
    (O(columns²) on the event loop: a 270 KB header of 40,000 columns held every request 15 s),
    and every row checked each empty header cell again and walked the whole header for its
    values (``erp_code`` then 100,000 commas, 2,000 rows: 13 s). A header of more than 200
    cells (the empty ones counted; the widest import has 17 columns) is 400 ``bad_header``
    with ``max_columns``, a line of more than 2,000 commas 400 ``malformed_csv`` naming it,
    before the reader makes it a list of cells; 200 cells still read."""
    admin = await login("admin")
    named = ",".join(f"c{i}" for i in range(1000)) + "\n"
    empty = "erp_code" + "," * 100_000 + f"\n{code('WH1')}\n{code('WH2')}\n"
    for body in (named, empty, "erp_code" + "," * 200 + "\n"):
        error = assert_error(
            await send(client, admin, "orgs", body, dry_run=True), 400, "bad_header"
        )
        assert error["details"]["max_columns"] == 200 and error["details"]["unknown"] == [], error
    widest = "erp_code,kind,name,parent_erp_code" + "," * 196 + "\n"
    row = f"{code('WH3')},store,Wide,AGENT-ZJ" + "," * 196 + "\n"
    got = await imported(client, admin, "orgs", widest + row, dry_run=True)
    assert counts(got) == (1, 0, 0, 0) and errors(got) == [], got
    far = widest + row + f"{code('WH4')},store,Far,AGENT-ZJ" + "," * 2001 + "\n"
    error = assert_error(await send(client, admin, "orgs", far, dry_run=True), 400, "malformed_csv")
    assert error["details"] == {"line": 3, "max_values": 2000}, error
    from app import csvread

    assert (csvread.MAX_COLUMNS, csvread.MAX_LINE_COMMAS) == (200, 2000)  # as documented


async def test_an_import_takes_a_few_savepoints_not_one_a_row(
    client: Any, login: Any, demo: Any, monkeypatch: Any
) -> None:
    """A probe: every row's writes ran in a savepoint of its own, one transaction of as many
    subtransactions as rows: past 64 PostgreSQL's subtransaction cache overflows and each row's
    foreign key lock on the shared parent joins a growing multixact — 3,000 new agents took 18 s,
    9,000 79 s. Rows are written in chunks of one savepoint; a chunk with a failing row is run
    again in halves down to that row, rejected alone. Counted (savepoints opened), not timed."""
    import psycopg

    brand, admin = await onboarded_brand(client, login)
    opened = 0
    transaction = psycopg.AsyncConnection.transaction

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        opened += 1
        return transaction(self, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "transaction", counting)
    tag = secrets.token_hex(3).upper()
    rows = [f"S{tag}-{i},store,Store {i},{brand['erp_code']}" for i in range(600)]
    rows[150] = f"S{tag}-150,store,Bad,S{tag}-1"  # a store under a store: bad_hierarchy
    rows[420] = f"S{tag}-420,factory,Bad,S{tag}-2"
    body = "erp_code,kind,name,parent_erp_code\n" + "".join(r + "\n" for r in rows)
    result = await imported(client, admin, "orgs", body)
    assert counts(result) == (598, 0, 0, 2)
    assert errors(result) == [(151, None, "bad_hierarchy"), (421, None, "bad_hierarchy")]
    assert opened < 40, f"{opened} savepoints for 600 rows"
    opened = 0
    assert counts(await imported(client, admin, "orgs", body)) == (0, 0, 598, 2)
    products = "erp_code,product_no,name\n" + "".join(
        f"P{tag}-{i},PN{tag}-{i},Product {i}\n" for i in range(600)
    )
    opened = 0
    assert counts(await imported(client, admin, "products", products)) == (600, 0, 0, 0)
    assert opened < 20, f"{opened} savepoints for 600 rows"


async def test_a_json_import_over_the_row_limit_is_counted_before_it_is_decoded(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a JSON import's items were all decoded, each a dict, before their number was
    compared with the limit: 10 MB of ``{}`` cost ~260 MB for one 413 ``too_many_rows``. The
    items of a body with more braces than the limit are counted first, without being kept
    (one shared object each): reading a 2 MB body costs ~3 times itself, no longer ~25 times
    (measured on the reading alone, where nothing else allocates meanwhile)."""
    import tracemalloc

    from app.erp.orgs import SPEC
    from app.erp.rows import read_items
    from app.errors import PayloadTooLarge

    admin = await login("admin")
    items = 700_000  # 2 MB: many times the limit
    raw = b'{"items":[' + b"{}," * (items - 1) + b"{}]}"
    response = await send(client, admin, "orgs", raw, media="application/json")
    assert assert_error(response, 413, "too_many_rows")["details"] == {"max_rows": SPEC.max_rows}
    tracemalloc.start()
    try:
        read_items(raw, "json", SPEC)
    except PayloadTooLarge as exc:
        assert exc.code == "too_many_rows", exc.code
    else:
        raise AssertionError("700,000 items were read")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 6 * len(raw), f"peak {peak / 2**20:.1f} MB for a {len(raw) / 2**20:.1f} MB body"
    nested = {"items": [{"erp_code": code("JN1"), "roles": [{}], "x": {}}]}  # braces, one item
    got = await imported(client, admin, "orgs", nested, dry_run=True)
    assert got["rows"] == 1 and {e["code"] for e in got["errors"]} == {"unknown_column"}, got


async def test_a_short_row_is_refused_not_read_as_empty_cells(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a row with fewer cells than the header (cut short: hand-edited, pasted, a line
    break left unquoted) was read as if its missing cells were empty, and an empty cell clears
    an optional field: the product's spec, barcode, colour and efficacy were wiped, answered
    ``updated``. Such a row is ``missing_values`` and not applied (as too many is
    ``extra_values``); a row short only of header cells left empty (Excel's ``,,``) reads."""
    admin = await login("admin")
    p = code("SHORT")
    header = "erp_code,product_no,name,spec,barcode,colour_no,efficacy,,\n"
    full = f"{p},PN-{p},Serum,30ml,B-{p},C01,moisturises\n"  # short of the unnamed cells only
    made = await imported(client, admin, "products", header + full)
    assert counts(made) == (1, 0, 0, 0) and errors(made) == [], made
    short = await imported(client, admin, "products", header + f"{p},PN-{p},Serum,31ml\n")
    assert counts(short) == (0, 0, 0, 1) and errors(short) == [(1, None, "missing_values")], short
    assert short["errors"][0]["line"] == 2, short
    stored = (await client.get(f"/products/{ids(made)[p]}", headers=admin)).json()
    kept = [stored[k] for k in ("spec", "barcode", "colour_no", "efficacy")]
    assert kept == ["30ml", f"B-{p}", "C01", "moisturises"], stored


async def test_a_gbk_file_that_may_be_utf8_with_symbols_is_refused_not_guessed(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: Excel's GBK "CSV (逗号分隔)" (no BOM) naming a contact 卢伟 (C2 AC CE B0) is
    well-formed UTF-8 too — "¬ΰ" — and a Latin-1 symbol ("¬", U+00AC) kept it UTF-8: 200 and
    "¬ΰ" stored. GBK's 卢 鲁 陆 路 露 鹿 … (C2 A1–C2 BF) are all such symbols. A file without a
    BOM or a charset that both read, with no character of three UTF-8 bytes and a Latin-1
    symbol, is 400 ``bad_encoding`` naming the symbol's line (save it as CSV UTF-8 or declare
    its charset); declared ``charset=gbk`` it reads. And "李芳路" in GBK (路 is "·") was refused
    as UTF-8 holding a stray byte: only characters of three bytes or more count for UTF-8."""
    from app.csvread import decode

    admin = await login("admin")
    x = code("LUWEI")
    text = f"erp_code,kind,name,parent_erp_code,contact_name\r\n{x},store,Lu,AGENT-ZJ,卢伟\r\n"
    error = assert_error(await send(client, admin, "orgs", text.encode("gbk")), 400, "bad_encoding")
    assert error["details"] == {"line": 2} and "charset=gbk" in error["message"], error
    got = await imported(client, admin, "orgs", text.encode("gbk"), media="text/csv; charset=gbk")
    stored = (await client.get(f"/orgs/{ids(got)[x]}", headers=admin)).json()
    assert stored["contact_name"] == "卢伟", stored
    assert decode("name\n李芳路\n".encode("gbk")) == "name\n李芳路\n"
    assert decode("name\n25°C 卢伟\n".encode()) == "name\n25°C 卢伟\n"  # three-byte UTF-8


async def test_a_row_with_a_gtin_under_another_brands_prefix_is_that_rows_error(
    client: Any, login: Any
) -> None:
    """A probe: a tenant could take a GTIN under another brand's GS1 company prefix (its product
    page and Digital Link). The import goes through ``create_product``: such a row is
    ``gtin_of_other_brand`` on ``gtin``, the file's other rows applied."""
    prefix = "57" + "".join(str(secrets.randbelow(10)) for _ in range(7))
    await onboarded_brand(client, login, gs1_company_prefix=prefix)
    _, other = await onboarded_brand(client, login)
    body12 = prefix + f"{secrets.randbelow(1000):03d}"
    theirs = body12 + str(gs1_check_digit(body12))
    rows = PRODUCT_HEADER + (
        f"{code('GP1')},NO-{code('GP1')},Not mine,,,{theirs},true\n"
        f"{code('GP2')},NO-{code('GP2')},Mine,,,{a_gtin()},true\n"
    )
    result = await imported(client, other, "products", rows)
    assert counts(result) == (1, 0, 0, 1), result
    assert errors(result) == [(1, "gtin", "gtin_of_other_brand")]


async def test_rows_naming_one_gtin_in_any_of_its_forms_are_each_duplicate(
    client: Any, login: Any, demo: Any
) -> None:
    """Two new products of one file with one GTIN (the second as its EAN-13, the first as its
    GTIN-14): the first row made its product and the second was ``duplicate_gtin`` — or the
    other way round, by their order. Which product is meant cannot be told: both rows are
    ``duplicate_in_file``, in either order, nothing made."""
    admin = await login("admin")
    ean13 = a_gtin()
    both = [(1, "gtin", "duplicate_in_file"), (2, "gtin", "duplicate_in_file")]
    for first, second in ((f"0{ean13}", ean13), (ean13, f"0{ean13}"), (ean13, ean13)):
        header = "erp_code,product_no,name,gtin\n"
        csv = f"{header}{code('GD-A')},GA-{RUN},A,{first}\n{code('GD-B')},GB-{RUN},B,{second}\n"
        for dry_run in (True, False):
            result = await imported(client, admin, "products", csv, dry_run=dry_run)
            assert sorted(errors(result)) == both, result["errors"]
            assert counts(result) == (0, 0, 0, 2), result["results"]
