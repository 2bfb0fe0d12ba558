"""The field force in the staff app (/m) end to end (SPEC F2–F3, issue 18 item 6): the real app
under granian with the built app (``make console``), in headless Chromium (the browser and
server of tests/test_mobile_browser.py).

A field rep signs in on /m, opens a store's nameplate address (/m/n/<code>, what the phone's own
camera app opens from the QR code) and checks in by entering the nameplate's URL (as a
keyboard-wedge scanner types it) with a GPS position emulated 25 m from the store: the app shows
"in range" with the distance. From there the rep reviews the store — two scores, a comment and a
photo (uploaded to /media/photos) — and the server holds exactly one check-in and one review,
linked, with the photo; the daily track lists the visit.
"""

from __future__ import annotations

import itertools
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from app.demo import DEMO_PASSWORD, STORE_POSITIONS
from tests.field_support import nameplate, user_id
from tests.test_mobile_browser import (  # noqa: F401 (fixtures)
    _errors,
    _find,
    _scan,
    _sign_in,
    _text,
    _wait,
    browser,
    chromium,
    server,
)

STORE = "STORE-HZ-01"


async def test_a_field_rep_checks_in_by_the_nameplate_and_reviews_the_store(
    browser: WebDriver,  # noqa: F811 (the fixture imported above)
    server: str,  # noqa: F811
    client: Any,
    login: Any,
    app: Any,
    demo: dict[str, int],
    tmp_path: Path,
) -> None:
    driver = browser
    store_id = demo[STORE]
    plate = await nameplate(client, login, store_id)
    png = await client.get(
        f"/field/stores/{store_id}/nameplate.png", headers=await login("fieldsup")
    )
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    photo = tmp_path / "shelf.png"
    photo.write_bytes(png.content)  # a real PNG to take as the shelf's photo
    lat, lng = STORE_POSITIONS[STORE]
    # 0.000225° of latitude ≈ 25 m north of the store: well inside the 200 m radius
    driver.execute_cdp_cmd(
        "Emulation.setGeolocationOverride",
        {"latitude": lat + 0.000225, "longitude": lng, "accuracy": 8},
    )
    started = datetime.now(UTC) - timedelta(seconds=1)
    comment = f"shelf tidy, staff know the serum {secrets.token_hex(3)}"

    driver.get(f"{server}/m/")
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get(f"{server}/m/login")
    _find(driver, "[data-test=username] input").send_keys("fieldrep")
    driver.find_element(By.CSS_SELECTOR, "[data-test=password] input").send_keys(DEMO_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "[data-test=login]").click()
    _wait(driver).until(lambda d: "fieldrep" in _text(d, "[data-test=hello]"))
    tasks = _text(driver, "[data-test=tasks]")
    assert "门店签到" in tasks and "拜访计划" in tasks and "今日轨迹" in tasks
    assert "我的业务员" not in tasks  # a rep supervises nobody

    # the QR's address opens the check-in with that nameplate, waiting for a tap
    driver.get(f"{server}/m/n/{plate['code']}")
    _wait(driver).until(lambda d: plate["code"] in _text(d, "[data-test=waiting-nameplate]"))
    # the nameplate's URL entered as a scanner types it: checked in at once
    _scan(driver, plate["url"])
    _wait(driver).until(lambda d: "在范围内" in _text(d, "[data-test=checkin-verdict]"))
    verdict = _find(driver, "[data-test=checkin-verdict]")
    assert verdict.get_attribute("data-flag") == "ok"
    shown = verdict.text
    assert re.search(r"距门店 \d+ m", shown), shown

    # review the store from the check-in
    _find(driver, "[data-test=review-store]").click()
    _wait(driver).until(lambda d: "/m/field/review" in d.current_url)
    _find(driver, "[data-test=shelf-score] .van-rate__item:nth-child(4)").click()
    driver.find_element(
        By.CSS_SELECTOR, "[data-test=knowledge-score] .van-rate__item:nth-child(5)"
    ).click()
    driver.find_element(By.CSS_SELECTOR, "[data-test=review-comment] textarea").send_keys(comment)
    driver.find_element(By.CSS_SELECTOR, "[data-test=photo-input]").send_keys(str(photo))
    _find(driver, "[data-test=photo]")
    _wait(driver).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "[data-test=review-submit]").is_enabled()
    )
    driver.find_element(By.CSS_SELECTOR, "[data-test=review-submit]").click()
    _wait(driver).until(lambda d: "评价已提交" in _text(d, "[data-test=review-verdict]"))

    # the server: exactly one check-in of this visit and one review, linked, with the photo
    rep = await user_id(app, "fieldrep")
    headers = await login("fieldrep")
    answer = await client.get(
        "/field/checkins", headers=headers, params={"rep_id": rep, "store_id": store_id}
    )
    assert answer.status_code == 200, answer.text
    mine = [c for c in answer.json()["items"] if datetime.fromisoformat(c["at"]) >= started]
    assert len(mine) == 1, mine
    checkin = mine[0]
    assert checkin["flag"] == "ok" and checkin["in_range"] is True
    assert 15 <= checkin["distance_m"] <= 35 and checkin["accuracy_m"] == 8
    assert checkin["client_id"].startswith("m-") and checkin["client_at"] is not None
    assert checkin["store_name"] in shown
    answer = await client.get("/field/reviews", headers=headers, params={"store_id": store_id})
    reviews = [r for r in answer.json()["items"] if r["comment"] == comment]
    assert len(reviews) == 1, reviews
    review = reviews[0]
    assert (review["shelf_score"], review["knowledge_score"]) == (4, 5)
    assert review["checkin_id"] == checkin["id"] and len(review["photo_ids"]) == 1
    got = await client.get(f"/media/photos/{review['photo_ids'][0]}", headers=headers)
    assert got.status_code == 200 and got.content == png.content

    # the daily track lists the visit
    driver.get(f"{server}/m/field/track")
    _wait(driver).until(lambda d: checkin["store_name"] in _text(d, "[data-test=track]"))
    assert _errors(driver) == []


_plan_weeks = itertools.count()


async def test_my_reps_lists_only_plans_the_user_can_decide(
    browser: WebDriver,  # noqa: F811
    server: str,  # noqa: F811
    client: Any,
    login: Any,
    demo: dict[str, int],
) -> None:
    """A probe: the Zhejiang agent's administrator (org_admin: field.supervise and field.read) opens
    "我的业务员" (My reps) on the phone: the plans tab, "waiting for approval", lists fieldrep's
    submitted plan although fieldsup is its supervisor, and opening it offers no approve or
    return (the server would answer 403 not_supervisor). The list should hold the plans of the
    user's own reps (plan.supervisor_id == me), as the page's own comment says."""
    # a Monday in a range no other test plans (2045-01-02 is a Monday): the old range, 2031 on,
    # held the week another test plans for the same rep (2031-03-03), and a run drew it; the
    # next week on each run of this process (the test runs once more when Chromium dies under
    # it, tests/browser.py: a random week met the first run's, 409 duplicate_plan)
    monday = datetime(2045, 1, 2).date() + timedelta(weeks=next(_plan_weeks))
    rep = await login("fieldrep")
    made = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": monday.isoformat(),
            "title": f"probe round {monday}",
            "items": [{"store_id": demo["STORE-HZ-01"], "planned_on": monday.isoformat()}],
        },
    )
    assert made.status_code == 201, made.text
    plan = made.json()
    submitted = await client.post(f"/field/plans/{plan['id']}/submit", headers=rep)
    assert submitted.status_code == 200, submitted.text
    driver = browser
    _sign_in(driver, server, "agent_admin")
    driver.get(f"{server}/m/field/supervise")
    _wait(driver).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "[data-test=sup-plans], .van-empty")
    )
    listed = _text(driver, "[data-test=sup-plans]")
    assert plan["title"] not in listed, listed
    _sign_in(driver, server, "fieldsup")  # its rep's supervisor decides it
    driver.get(f"{server}/m/field/supervise")
    _wait(driver).until(lambda d: plan["title"] in _text(d, "[data-test=sup-plans]"))
