"""The last days of the calendar in query and body dates: a clear answer, never a 500 (the day
after 9999-12-31 is not a date, so bounds computed as "the next midnight" used to overflow)."""

from __future__ import annotations

from typing import Any

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
