"""Issue 13 item 18: HEAD answers wherever GET does — every GET route of the app, the
authenticated API, ``/metrics`` and ``/schema*`` included — with the status and headers of GET,
errors included, no body, and without running a GET's side effect (an audited download) for it.

The routes are walked from ``app.routes``, so a GET route added later is covered (or, with a path
parameter of a new name, fails here until the name gets a plausible value below)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.routes import HTTPRoute

from tests import steady
from tests.h5_support import activated_batch, unit

GTIN = "06901234000016"  # demo product LM-HY-50 (published)

# Answers whose body, and so length, changes from one request to the next.
_LIVE = {"/metrics", "/health", "/audit", "/alerts", "/c/{serial:str}", "/C/{serial:str}"}


def _get_routes(app: Any) -> list[str]:
    return sorted(
        route.path
        for route in app.routes
        if isinstance(route, HTTPRoute) and "GET" in route.route_handler_map
    )


def _fill(path: str, values: dict[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"{path}: give the path parameter {name!r} a plausible value"
        return str(values[name])

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, path)


async def _first_id(client: Any, headers: dict[str, str], path: str, default: int = 1) -> int:
    answer = await client.get(path, headers=headers)
    assert answer.status_code == 200, (path, answer.text)
    items = answer.json()["items"]
    return int(items[0]["id"]) if items else default


async def _member(app: Any, brand_id: int) -> int:
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "INSERT INTO members (brand_id, phone) VALUES (%s, %s) RETURNING id",
                (brand_id, steady.phone("139")),
            )
        ).fetchone()
    return int(row["id"])


@pytest.fixture
async def plausible(client: Any, app: Any, login: Any, demo: Any) -> dict[str, Any]:
    """A value for every path parameter of the app's GET routes (existing records mostly)."""
    admin = await login("admin")
    batch_no = await activated_batch(client, login, demo, size=3)
    serial, _ = unit(app, batch_no, 0)
    made = await client.post(
        f"/batches/{batch_no}/exports",
        headers=await login("planner"),
        json={"outer": {"passphrase": "outer-pass-h1"}, "inner": {"passphrase": "inner-pass-h2"}},
    )
    assert made.status_code == 201, made.text
    gift = await client.post(
        "/gifts",
        headers=admin,
        json={"name": "HEAD gift", "points_cost": 10, "kind": "offline", "stock": 1},
    )
    assert gift.status_code == 201, gift.text
    return {
        "org_id": demo["FACTORY-SZ"],
        "user_id": await _first_id(client, admin, "/users"),
        "product_id": await _first_id(client, admin, "/products"),
        "batch_no": batch_no,
        "export_id": made.json()["id"],
        "part": "outer",
        "batch_id": await _first_id(client, admin, "/case-batches"),
        "serial": serial,
        "code": serial,
        "line": "LINE-H1",
        "order_id": await _first_id(client, admin, "/orders"),
        "doc_id": await _first_id(client, admin, "/documents"),
        "record_id": await _first_id(client, admin, "/inspections"),
        "scan_id": 1,
        "rest": f"{GTIN}/21/{serial}",
        "gtin": GTIN,
        "name": "swagger-ui.css",
        "path": "openapi.yaml",
        # members and loyalty (issue 15)
        "member_id": await _member(app, demo["BRAND-LUMI"]),
        "gift_id": gift.json()["id"],
        "campaign_id": await _first_id(client, admin, "/sms/campaigns"),
        # rebates (issue 16): none yet, so GET and HEAD both answer 404
        "statement_id": 1,
        # field force (issue 18): a store's nameplate (JSON, PNG, PDF); no plan or photo yet
        "store_id": demo["STORE-HZ-01"],
        "plan_id": 1,
        "photo_id": "00000000-0000-4000-8000-000000000000",
        "media_id": "00000000-0000-4000-8000-000000000000",  # catalogue media: none of this id
        # serial allocation and webhooks (issue 19): none yet, so GET and HEAD both answer 404
        "allocation_id": "00000000-0000-4000-8000-000000000000",
        "pool_id": 1,
        "sub_id": 1,
        "delivery_id": 1,
        # EPCIS (issue 19): no capture job or event of these ids, so GET and HEAD both answer 404
        "capture_id": "00000000-0000-4000-8000-000000000000",
        "event_id": "urn:uuid:00000000-0000-4000-8000-000000000000",
        # promotions and complaints (W2, W3): none of these ids, so GET and HEAD both answer 404
        "promotion_id": 987654321,
        "complaint_id": 987654321,
        # alert triage (B6) and fraud holds (B5): none of these ids, so GET and HEAD both 404
        "alert_id": 987654321,
        "hold_id": 987654321,
    }


async def _audit_rows(app: Any) -> int:
    async with app.state.pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) AS n FROM audit_log")).fetchone()
    return int(row["n"])


async def test_every_get_route_answers_head_like_get(
    client: Any, app: Any, login: Any, plausible: dict[str, Any]
) -> None:
    admin = await login("admin")
    paths = _get_routes(app)
    assert {"/users", "/metrics", "/schema/openapi.json", "/auth/me"} <= set(paths)
    statuses: set[int] = set()
    for template in paths:
        uri = _fill(template, plausible)
        for headers in (admin, {}):  # authenticated, and anonymous (401 on the API)
            get = await client.get(uri, headers=headers)
            before = await _audit_rows(app)
            head = await client.head(uri, headers=headers)
            assert await _audit_rows(app) == before, f"HEAD {uri} wrote an audit row"
            assert head.status_code == get.status_code, (uri, headers, head.status_code)
            assert head.content == b"", uri
            assert head.headers.get("content-type") == get.headers.get("content-type"), uri
            if template not in _LIVE:
                assert head.headers.get("content-length") == get.headers.get("content-length"), uri
            statuses.add(get.status_code)
    assert {200, 401} <= statuses  # the sweep reached records, and the login wall


async def test_head_errors_have_the_status_of_get_and_no_body(client: Any, login: Any) -> None:
    admin = await login("admin")
    cases = [
        ("/users", {}, 401),  # no token
        ("/users", {"Authorization": "Bearer not-a-token"}, 401),
        ("/users/999999999", admin, 404),
        ("/users?per_page=201", admin, 400),
        ("/batches/999999999/exports", await login("analyst"), 403),
        ("/no/such/route", admin, 404),
    ]
    for uri, headers, status in cases:
        get = await client.get(uri, headers=headers)
        head = await client.head(uri, headers=headers)
        assert get.status_code == head.status_code == status, (uri, get.status_code)
        assert get.json()["error"]["code"] and head.content == b"", uri
        assert head.headers["content-length"] == get.headers["content-length"], uri


async def test_head_is_allowed_next_to_get_and_not_elsewhere(client: Any) -> None:
    options = await client.options("/metrics")
    assert options.headers["allow"] == "GET, HEAD, OPTIONS"
    refused = await client.delete("/metrics")
    assert refused.status_code == 405 and "HEAD" in refused.headers["allow"]
    # a route without GET answers HEAD as any other method it lacks
    post_only = await client.head("/auth/login")
    assert post_only.status_code == 405 and post_only.content == b""
    assert "HEAD" not in post_only.headers.get("allow", "")
    assert (await client.head("/v1/verify")).status_code == 405  # the raw ASGI route


async def test_head_of_an_export_file_is_checked_like_get_and_is_no_download(
    client: Any, app: Any, login: Any, plausible: dict[str, Any]
) -> None:
    admin, printer = await login("admin"), await login("printer")
    uri = f"/exports/{plausible['export_id']}/files/outer"
    before = await _audit_rows(app)
    head = await client.head(uri, headers=printer)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert head.headers["content-disposition"].endswith('.tcpf"')
    assert await _audit_rows(app) == before  # HEAD downloads nothing: not audited
    assert (await client.head(uri, headers=await login("agent_admin"))).status_code in (403, 404)
    got = await client.get(uri, headers=printer)
    assert len(got.content) == int(head.headers["content-length"])
    trail = await client.get(
        "/audit",
        headers=admin,
        params={"entity": "code_export", "entity_id": plausible["export_id"]},
    )
    assert [a["action"] for a in trail.json()["items"]] == ["download", "create"]


def test_head_routes_stay_out_of_the_openapi_document(app: Any) -> None:
    """HEAD is answered everywhere but documented only where a route declares it."""
    paths = app.openapi_schema.to_schema()["paths"]
    documented = sorted(p for p, item in paths.items() if "head" in item)
    assert documented == ["/.well-known/gs1resolver", "/00/{rest}", "/01/{rest}", "/health"]


async def test_head_of_a_listing_s_file_is_no_export(client: Any, app: Any, login: Any) -> None:
    """A probe: ``HEAD /verifications?format=csv`` (and of the member and redemption lists)
    wrote an ``export`` audit row for consumers' data that never left."""
    admin = await login("admin")
    for path, fmt in (
        ("/verifications", "csv"),
        ("/verifications", "xlsx"),
        ("/members", "csv"),
        ("/redemptions", "csv"),
    ):
        before = await _audit_rows(app)
        head = await client.head(path, headers=admin, params={"format": fmt})
        assert head.status_code == 200 and head.content == b"", (path, fmt)
        assert await _audit_rows(app) == before, f"HEAD {path}?format={fmt} wrote an audit row"
        got = await client.get(path, headers=admin, params={"format": fmt})
        assert got.status_code == 200, got.text
        assert await _audit_rows(app) == before + 1, (path, fmt)  # the GET is an export
