"""A store nameplate read through the phone camera (issue 18: "Chromium's fake camera reads a real
unit code and a store nameplate"): the unit code is tests/test_mobile_browser.py's camera test;
here a field rep's check-in page reads the nameplate's QR code from Chromium's fake camera
(a video of the nameplate made by the test) and checks in, in range, exactly once — the code
stays in view while the video loops.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By

from app.demo import DEMO_PASSWORD, STORE_POSITIONS
from tests.browser import start_chromium
from tests.field_support import nameplate, user_id
from tests.test_mobile_browser import (  # noqa: F401 (fixtures)
    _errors,
    _find,
    _text,
    _wait,
    _y4m,
    server,
)

STORE = "STORE-NB-01"


async def test_the_camera_reads_a_store_nameplate_and_checks_in(
    server: str,  # noqa: F811 (the fixture imported above)
    client: Any,
    login: Any,
    app: Any,
    demo: dict[str, int],
    tmp_path: Path,
) -> None:
    store_id = demo[STORE]
    plate = await nameplate(client, login, store_id)
    video = _y4m(plate["url"], tmp_path / "nameplate.y4m")
    lat, lng = STORE_POSITIONS[STORE]
    driver = start_chromium(
        "--window-size=412,915",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    )
    started = datetime.now(UTC) - timedelta(seconds=1)
    try:
        driver.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"origin": server, "permissions": ["geolocation", "videoCapture"]},
        )
        # 0.000225° of latitude ≈ 25 m north of the store: inside the 200 m radius
        driver.execute_cdp_cmd(
            "Emulation.setGeolocationOverride",
            {"latitude": lat + 0.000225, "longitude": lng, "accuracy": 10},
        )
        driver.get(f"{server}/m/login")
        _find(driver, "[data-test=username] input").send_keys("fieldrep2")
        driver.find_element(By.CSS_SELECTOR, "[data-test=password] input").send_keys(DEMO_PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "[data-test=login]").click()
        _wait(driver).until(lambda d: "fieldrep2" in _text(d, "[data-test=hello]"))
        driver.get(f"{server}/m/field/checkin")
        _find(driver, ".camera-button").click()
        _wait(driver, 30).until(lambda d: "在范围内" in _text(d, "[data-test=checkin-verdict]"))
        verdict = _find(driver, "[data-test=checkin-verdict]")
        assert verdict.get_attribute("data-flag") == "ok"
        await asyncio.sleep(4)  # the nameplate stays in view (the video loops): still one
        assert _errors(driver) == []
    finally:
        driver.quit()
    rep = await user_id(app, "fieldrep2")
    answer = await client.get(
        "/field/checkins",
        headers=await login("fieldrep2"),
        params={"rep_id": rep, "store_id": store_id},
    )
    assert answer.status_code == 200, answer.text
    mine = [c for c in answer.json()["items"] if datetime.fromisoformat(c["at"]) >= started]
    assert len(mine) == 1, mine
    assert mine[0]["flag"] == "ok" and 15 <= mine[0]["distance_m"] <= 35
