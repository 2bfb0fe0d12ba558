"""The verification records list (``GET /verifications``, the console's verification records):
the brand's stored verifications filtered (period, result, product, province and city, serial),
paged, coloured by severity and exported as CSV or XLSX; an agent sees its own units' records,
another agent and another brand nothing of them."""

from __future__ import annotations

import csv
import io
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import assert_error
from tests.points_support import shipped_goods
from tests.test_members_cross_brand import _other_brand_admin

PATH = "/verifications"

# result, reason, province, city, days ago, PIN given
SEEDS = [
    ("genuine", "ok", "浙江省", "杭州市", 0, True),
    ("unconfirmed", "pin_required", "浙江省", "宁波市", 1, False),
    ("suspicious", "over_threshold", "广东省", "广州市", 2, True),
    ("not_genuine", "unknown", "广东省", "深圳市", 3, False),
    ("wrong_pin", "wrong_pin", None, None, 4, True),
    ("locked", "locked", "浙江省", "杭州市", 40, True),  # before the default 30 days
]
SEVERITY = {
    "genuine": "ok",
    "unconfirmed": "info",
    "suspicious": "warning",
    "wrong_pin": "warning",
    "not_genuine": "critical",
    "locked": "critical",
}


@pytest.fixture(scope="module")
async def seeded(client: Any, login: Any, app: Any, demo: Any) -> dict[str, Any]:
    """Six records of the brand with serials of one new prefix (the first five of a unit at
    AGENT-ZJ, the sixth of a unit still at the factory), stored as the write-behind stores
    them; and one record of another brand."""
    goods = await shipped_goods(client, login, app, demo)
    scheme = app.state.scheme
    zj, factory = goods["units"][0], goods["units"][25]
    prefix = "VR" + secrets.token_hex(4).upper()
    now = datetime.now(UTC)
    rows = []
    for i, (result, reason, province, city, days, pin) in enumerate(SEEDS):
        batch_no, index, _ = scheme.verify(factory if i == 5 else zj)
        rows.append(
            (
                now - timedelta(days=days, minutes=i),
                uuid.uuid4(),
                batch_no << 32 | index,
                f"{prefix}{i}",
                demo["BRAND-LUMI"],
                goods["product_id"],
                result,
                reason,
                i + 1,
                pin,
                f"203.0.113.{i + 1}",
                province,
                city,
            )
        )
    other_brand, other = await _other_brand_admin(client, login)
    rows.append(
        (now, uuid.uuid4(), None, f"{prefix}X", other_brand, None, "not_genuine", "unknown", 0,
         False, None, "浙江省", "杭州市")
    )  # fmt: skip
    async with app.state.pool.connection() as conn:
        await conn.cursor().executemany(
            """INSERT INTO verifications (at, record_key, code_id, serial, brand_id, product_id,
                   result, reason, queries, pin_given, client_ip, province, city)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            rows,
        )
    return {"prefix": prefix, "other": other, "product_id": goods["product_id"]}


async def listed(client: Any, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get(PATH, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_the_brand_lists_filters_and_colours_its_records(
    client: Any, login: Any, seeded: dict[str, Any]
) -> None:
    analyst, prefix = await login("analyst"), seeded["prefix"]
    page = await listed(client, analyst, serial=prefix.lower())  # the last 30 days
    assert page["total"] == 5
    items = page["items"]
    assert [i["serial"] for i in items] == [f"{prefix}{i}" for i in range(5)]  # newest first
    assert {i["result"]: i["severity"] for i in items} == {r: SEVERITY[r] for r, *_ in SEEDS[:5]}
    first = items[0]
    assert first["product_id"] == seeded["product_id"] and first["product_name"]
    assert (first["province"], first["city"], first["client_ip"]) == (
        "浙江省",
        "杭州市",
        "203.0.113.1",
    )
    assert first["pin_given"] is True and first["queries"] == 1
    # a longer period finds the sixth; filters narrow
    today = datetime.now(UTC).date()
    since = (today - timedelta(days=60)).isoformat()
    assert (await listed(client, analyst, serial=prefix, **{"from": since}))["total"] == 6
    for params, expected in [
        ({"result": "not_genuine"}, [3]),
        ({"province": "广东省"}, [2, 3]),
        ({"province": "浙江省", "city": "宁波市"}, [1]),
        ({"product_id": seeded["product_id"], "result": "genuine"}, [0]),
        ({"serial": f"{prefix}4"}, [4]),
        ({"from": since, "to": (today - timedelta(days=35)).isoformat()}, [5]),
    ]:
        got = await listed(client, analyst, serial=params.pop("serial", prefix), **params)
        assert [i["serial"] for i in got["items"]] == [f"{prefix}{n}" for n in expected], params
    paged = await listed(client, analyst, serial=prefix, per_page=2, page=2)
    assert paged["total"] == 5 and [i["serial"] for i in paged["items"]] == [
        f"{prefix}2",
        f"{prefix}3",
    ]
    # a wildcard in the serial is a character, not a pattern
    assert (await listed(client, analyst, serial="%"))["total"] == 0


async def test_exports_are_every_match(client: Any, login: Any, seeded: dict[str, Any]) -> None:
    admin, prefix = await login("admin"), seeded["prefix"]
    got = await client.get(PATH, headers=admin, params={"serial": prefix, "format": "csv"})
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["id", "at", "result", "severity"]
    assert [r[rows[0].index("serial")] for r in rows[1:]] == [f"{prefix}{i}" for i in range(5)]
    # probe AA: times as the console shows them, Beijing's, with the offset (they were UTC)
    listed_at = (await listed(client, admin, serial=prefix))["items"]
    at_column = rows[0].index("at")
    for row in rows[1:]:
        assert row[at_column].endswith("+08:00"), row[at_column]
    assert {datetime.fromisoformat(r[at_column]) for r in rows[1:]} == {
        datetime.fromisoformat(i["at"].replace("Z", "+00:00")) for i in listed_at
    }
    sheet = await client.get(PATH, headers=admin, params={"serial": prefix, "format": "xlsx"})
    assert sheet.status_code == 200 and sheet.content[:2] == b"PK"
    # probe T: consumers' addresses and member ids left in files no audit row told of
    trail = await client.get(
        "/audit", headers=admin, params={"entity": "verification", "action": "export"}
    )
    mine = [r for r in trail.json()["items"] if r["after"]["filters"].get("serial") == prefix]
    assert sorted(r["after"]["format"] for r in mine) == ["csv", "xlsx"], trail.text


async def test_scoped_to_the_brand_and_the_subtree(
    client: Any, login: Any, seeded: dict[str, Any]
) -> None:
    """AGENT-ZJ's admin sees the records of its unit, not the factory's one; AGENT-GD's admin
    and another brand's admin see none of them (the other brand sees only its own)."""
    prefix, since = seeded["prefix"], (datetime.now(UTC).date() - timedelta(days=60)).isoformat()
    agent = await listed(client, await login("agent_admin"), serial=prefix, **{"from": since})
    assert agent["total"] == 5 and f"{prefix}5" not in {i["serial"] for i in agent["items"]}
    other_agent = await listed(client, await login("gd_admin"), serial=prefix, **{"from": since})
    assert other_agent["total"] == 0
    other = await listed(client, seeded["other"], serial=prefix, **{"from": since})
    assert [i["serial"] for i in other["items"]] == [f"{prefix}X"]


async def test_refusals(client: Any, login: Any, seeded: dict[str, Any]) -> None:
    analyst = await login("analyst")
    assert_error(await client.get(PATH, headers=await login("store_clerk")), 403)
    assert_error(await client.get(PATH), 401)
    today = datetime.now(UTC).date()
    for params in (
        {"from": today.isoformat(), "to": (today - timedelta(days=1)).isoformat()},
        {"from": (today - timedelta(days=400)).isoformat()},
    ):
        assert_error(await client.get(PATH, headers=analyst, params=params), 400, "bad_period")
    for params in ({"result": "fake"}, {"per_page": 500}, {"format": "pdf"}):
        assert_error(await client.get(PATH, headers=analyst, params=params), 400)


async def test_an_agents_staff_see_no_members_in_the_verification_records(
    client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: README says staff below the brand "see no member even if a role grants
    members.read" (the member list 403 ``brand_staff_only``, a member's scans 403/404), yet
    AGENT-ZJ's administrator read the ``member_id`` and the consumer's IP address of every
    record of its units in ``GET /verifications`` and its CSV, and ``?member_id=`` gave it a
    member's scan history. Below the brand both are null, and the filter is 403
    ``brand_staff_only``; the brand's own staff see them as before."""
    goods = await shipped_goods(client, login, app, demo)
    serial = goods["units"][0]
    batch_no, index, _ = app.state.scheme.verify(serial)
    member = 800_000_000 + secrets.randbelow(100_000)
    async with app.state.pool.connection() as conn:
        await conn.execute(
            """INSERT INTO verifications (at, record_key, code_id, serial, brand_id, product_id,
                   result, reason, queries, pin_given, client_ip, province, city, member_id)
               VALUES (%s, %s, %s, %s, %s, %s, 'genuine', 'first_query', 1, true,
                       '198.51.100.7', '浙江省', '杭州市', %s)""",
            (
                datetime.now(UTC),
                uuid.uuid4(),
                batch_no << 32 | index,
                serial,
                demo["BRAND-LUMI"],
                goods["product_id"],
                member,
            ),
        )
    agent, admin = await login("agent_admin"), await login("admin")
    assert (await client.get(f"/members/{member}/scans", headers=agent)).status_code in (403, 404)
    mine = (await listed(client, agent, serial=serial))["items"]
    assert [(i["member_id"], i["client_ip"]) for i in mine] == [(None, None)], mine
    got = await client.get(PATH, headers=agent, params={"serial": serial, "format": "csv"})
    assert got.status_code == 200, got.text
    rows = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig"))))
    head = rows[0]
    assert [(r[head.index("member_id")], r[head.index("client_ip")]) for r in rows[1:]] == [
        ("", "")
    ]
    refused = await client.get(PATH, headers=agent, params={"member_id": member})
    assert_error(refused, 403, "brand_staff_only")
    brand = (await listed(client, admin, member_id=member))["items"]
    assert [(i["member_id"], i["client_ip"]) for i in brand] == [(member, "198.51.100.7")]
