"""The last days of the calendar in query and body dates: a clear answer, never a 500 (the day
after 9999-12-31 is not a date, so bounds computed as "the next midnight" used to overflow)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import assert_error


async def test_field_lists_and_the_track_take_the_last_day(client: Any, login: Any) -> None:
    rep = await login("fieldrep")
    for path, params in (
        ("/field/checkins", {"from": "2026-01-01", "to": "9999-12-31"}),
        ("/field/checkins", {"to": "9999-12-31", "format": "csv"}),
        ("/field/reviews", {"to": "9999-12-31"}),
        ("/field/track", {"day": "9999-12-31"}),
    ):
        answer = await client.get(path, headers=rep, params=params)
        assert answer.status_code == 200, (path, answer.text)


async def test_a_plan_period_past_2099_is_refused(client: Any, login: Any, demo: Any) -> None:
    body = {
        "period": "week",
        "starts_on": "9999-12-27",  # a Monday: the week would end past the calendar
        "title": "far",
        "items": [{"store_id": demo["STORE-HZ-01"], "planned_on": "9999-12-27"}],
    }
    answer = await client.post("/field/plans", headers=await login("fieldrep"), json=body)
    assert_error(answer, 400, "bad_period_start")


async def test_a_sales_report_ending_on_the_last_day_is_refused(client: Any, login: Any) -> None:
    answer = await client.get(
        "/analytics/sales/stores",
        headers=await login("admin"),
        params={"from": "9999-12-01", "to": "9999-12-31"},
    )
    assert_error(answer, 400, "bad_period")


def _date_queries(doc: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    """Every GET of the OpenAPI document without path parameters, with the query parameters
    typed date or date-time: (path, {name: format})."""
    found = []
    for path, operations in doc["paths"].items():
        get = operations.get("get")
        if get is None or "{" in path:
            continue
        dates = {}
        for p in get.get("parameters", []):
            schema = p.get("schema", {})
            for s in [schema, *schema.get("oneOf", []), *schema.get("anyOf", [])]:
                if p["in"] == "query" and s.get("format") in ("date", "date-time"):
                    dates[p["name"]] = s["format"]
        if dates:
            found.append((path, dates))
    return found


EDGES = {
    "date": ("0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31"),
    "date-time": ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00"),
}


@pytest.mark.parametrize("user", ["admin", "agent_admin"])  # two tests: a minute each
async def test_every_date_query_takes_the_first_and_last_days(
    client: Any, login: Any, user: str
) -> None:
    """Both ends of the calendar in every date parameter of every list and report, alone and
    together, as the brand's admin and as an agent: an answer or a 4xx, never a 500."""
    doc = (await client.get("/schema/openapi.json")).json()
    queries = _date_queries(doc)
    assert len(queries) >= 20  # the sweep sees the API's lists and reports
    failed = []
    headers = await login(user)
    for path, dates in queries:
        for name, fmt in dates.items():
            for value in EDGES[fmt]:
                tries = [{name: value}] + [
                    {name: value, other: edge}
                    for other, other_fmt in dates.items()
                    if other != name
                    for edge in EDGES[other_fmt]
                ]
                for params in tries:
                    answer = await client.get(path, headers=headers, params=params)
                    kind = answer.headers["content-type"].split(";")[0]
                    if answer.status_code >= 500 or kind not in (
                        "application/json",
                        "text/csv",
                        "application/ld+json",  # GET /epcis/events
                        "application/problem+json",  # its errors
                    ):
                        failed.append((path, params, answer.status_code))
    assert failed == []


async def test_a_statement_of_the_last_days_is_refused(client: Any, login: Any) -> None:
    finance = await login("finance")
    answer = await client.post(
        "/rebates/statements", headers=finance, json={"from": "9999-01-01", "to": "9999-12-31"}
    )
    assert_error(answer, 400, "bad_period")
    answer = await client.post(
        "/rebates/statements", headers=finance, json={"from": "9999-12-31", "to": "9999-12-31"}
    )
    assert answer.status_code in (400, 422), answer.text


async def test_a_sales_report_from_the_first_day_is_refused(client: Any, login: Any) -> None:
    for path in (
        "/analytics/sales/stores",
        "/analytics/sales/products",
        "/analytics/sales/regions",
    ):
        for params in ({"from": "0001-01-01", "to": "0001-01-02"}, {"to": "0001-01-05"}):
            answer = await client.get(path, headers=await login("admin"), params=params)
            assert_error(answer, 400, "bad_period")
