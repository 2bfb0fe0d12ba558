"""The staff mobile app (/m) end to end: the real app under granian with the built app
(``make console``), in Debian's headless Chromium through its ChromeDriver.

An inspector signs in on /m, the service worker caches the app shell, the store's signed nameplate
is scanned, a scan typed in (manual entry, as a keyboard-wedge scanner types it) gets its verdict
on screen; then, with the network
cut (DevTools offline emulation), scans are queued in IndexedDB and shown as pending; when the
network returns they are sent by themselves, once: the server holds each scan once, also after
the app is asked to send again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import segno
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from app.demo import DEMO_PASSWORD
from app.field import nameplates
from app.web.mobile import mobile_dir
from tests.browser import Browser, start_chromium
from tests.servers import granian_server
from tests.test_inspect import _close_diversion_alerts, goods  # noqa: F401 (fixtures)

GPS = {"latitude": 29.8683, "longitude": 121.5440, "accuracy": 10}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, settings: Any) -> Iterator[str]:
    if not (mobile_dir(settings) / "index.html").is_file():
        pytest.fail("console/dist/m is missing: run `make console` (make test builds it)")
    with granian_server(tmp_path_factory.mktemp("granian")) as running:
        yield running.base


@pytest.fixture(scope="module")
def chromium(server: str) -> Iterator[Browser]:
    def start() -> WebDriver:
        driver = start_chromium("--window-size=412,915", "--lang=zh-CN")  # a phone
        driver.execute_cdp_cmd(
            "Browser.grantPermissions", {"origin": server, "permissions": ["geolocation"]}
        )
        driver.execute_cdp_cmd("Emulation.setGeolocationOverride", GPS)
        driver.execute_cdp_cmd("Network.enable", {})
        return driver

    browser = Browser(start)
    yield browser
    browser.quit()


@pytest.fixture
def browser(chromium: Browser) -> WebDriver:
    return chromium.driver()


def _wait(driver: WebDriver, timeout: float = 20) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,))


def _find(driver: WebDriver, css: str) -> WebElement:
    return _wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, css))


def _text(driver: WebDriver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def _network(driver: WebDriver, offline: bool) -> None:
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )


def _scan(driver: WebDriver, code: str) -> None:
    field = _find(driver, "[data-test=scan-input] input")
    field.send_keys(code + Keys.ENTER)


def _errors(driver: WebDriver) -> list[str]:
    return [
        e["message"]
        for e in driver.get_log("browser")
        if "Content Security Policy" in e["message"]
        or (
            e["level"] == "SEVERE"
            and "Failed to fetch" not in e["message"]
            and "ERR_INTERNET_DISCONNECTED" not in e["message"]
            and "401" not in e["message"]
        )
    ]


async def _scans_of(conn: Any, serial: str) -> int:
    cursor = await conn.execute(
        """SELECT count(*) AS n FROM inspections i JOIN users u ON u.id = i.inspector_id
           WHERE i.serial = %s AND u.username = 'inspector'""",
        (serial,),
    )
    row = await cursor.fetchone()
    await conn.commit()
    return int(row["n"])


async def test_an_inspector_scans_online_and_offline_and_each_scan_is_sent_once(
    browser: WebDriver,
    server: str,
    settings: Any,
    client: Any,
    login: Any,
    demo: Any,
    goods: dict[str, Any],  # noqa: F811 (the fixture imported above)
    conn: Any,
) -> None:
    driver = browser
    driver.get(f"{server}/m/")
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get(f"{server}/m/")
    _wait(driver).until(lambda d: "/m/login" in d.current_url)
    _find(driver, "[data-test=username] input").send_keys("inspector")
    driver.find_element(By.CSS_SELECTOR, "[data-test=password] input").send_keys(DEMO_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "[data-test=login]").click()
    _wait(driver).until(lambda d: "inspector" in _text(d, "[data-test=hello]"))
    tasks = _text(driver, "[data-test=tasks]")
    assert "稽查扫码" in tasks and "今日稽查" in tasks
    assert "出入库单据" not in tasks and "返利申领" not in tasks  # not the inspector's role

    # the service worker is installed and has cached every file of the shell
    cached = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        navigator.serviceWorker.ready
          .then(() => caches.keys())
          .then((keys) => Promise.all(keys.map((k) => caches.open(k).then((c) => c.keys()))))
          .then((lists) => done(lists.flat().map((r) => new URL(r.url).pathname)))
          .catch((e) => done(String(e)));"""
    )
    assets = {f"/m/assets/{p.name}" for p in (mobile_dir(settings) / "assets").iterdir()}
    assert isinstance(cached, list) and assets <= set(cached), cached

    # the store by its nameplate (the field force's signed QR code: {public_url}/m/n/N<id>.<tag>)
    plate = nameplates.code_for(settings, demo["STORE-NB-01"])
    driver.execute_script("localStorage.removeItem('tracecode.m.inspect.store')")
    driver.get(f"{server}/m/inspect")
    _scan(driver, f"{server}/m/n/{plate}")
    org = (
        await client.get(f"/orgs/{demo['STORE-NB-01']}", headers=await login("inspector"))
    ).json()
    _wait(driver).until(lambda d: org["name"] in _text(d, "[data-test=store]"))

    # online: a unit shipped to this very store is in channel, on screen at once
    units = goods["units"]
    started = time.monotonic()
    _scan(driver, units[0])
    _wait(driver).until(lambda d: "正常渠道" in _text(d, "[data-test=verdict]"))
    on_screen_ms = (time.monotonic() - started) * 1000  # with WebDriver's round trips
    # measured in the page: from the code read to the verdict rendered (no camera frame rate)
    in_page_ms = int(_find(driver, "[data-test=verdict]").get_attribute("data-ms") or -1)
    assert 0 <= in_page_ms <= 1000, in_page_ms  # issue 18 targets 300 ms (printed below)
    assert await _scans_of(conn, units[0]) == 1

    # offline: the shell still loads (from the service worker), scans are queued as pending
    _network(driver, offline=True)
    try:
        driver.get(f"{server}/m/inspect")
        _wait(driver).until(lambda d: "离线" in _text(d, "[data-test=net-status]"))
        for n, serial in enumerate((units[10], units[20]), 1):
            _scan(driver, serial)
            _wait(driver).until(
                lambda d, n=n: f"{n} 条待发送" in _text(d, "[data-test=pending-count]")
            )
        _wait(driver).until(lambda d: "2 条待发送" in _text(d, "[data-test=pending-count]"))
        assert "待发送" in _text(driver, "[data-test=verdict]")
        assert await _scans_of(conn, units[10]) == 0 and await _scans_of(conn, units[20]) == 0
    finally:
        _network(driver, offline=False)

    # back online: the queue goes by itself, and each scan reaches the server once
    _wait(driver, 45).until(lambda d: not _text(d, "[data-test=pending-count]"))
    _wait(driver).until(lambda d: "待发送" not in _text(d, "[data-test=verdict]"))
    assert await _scans_of(conn, units[10]) == 1
    assert await _scans_of(conn, units[20]) == 1
    driver.get(f"{server}/m/queue")
    _find(driver, "[data-test=send-now]").click()
    await asyncio.sleep(1)
    assert await _scans_of(conn, units[10]) == 1 and await _scans_of(conn, units[20]) == 1
    assert _errors(driver) == []

    # my inspections of today list all three
    driver.get(f"{server}/m/inspect/today")
    _wait(driver).until(lambda d: units[20] in _text(d, "[data-test=today]"))
    today = _text(driver, "[data-test=today]")
    assert units[0] in today and units[10] in today
    print(
        f"scan to verdict on screen: {in_page_ms} ms in the page, "
        f"{on_screen_ms:.0f} ms seen through WebDriver"
    )


async def test_a_clerk_scans_ten_cases_into_a_factory_inbound_and_confirms(
    browser: WebDriver, server: str, client: Any, login: Any, app: Any, demo: Any
) -> None:
    """L2 on the phone: a new factory inbound, 10 cases scanned in with the running count, one
    case scanned twice (a duplicate, not counted), confirmed: 100 units in 10 cases."""
    from tests.test_logistics import pack

    packed = await pack(client, login, app, demo, 10)
    driver = browser
    driver.get(f"{server}/m/")
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get(f"{server}/m/login")
    _find(driver, "[data-test=username] input").send_keys("clerk")
    driver.find_element(By.CSS_SELECTOR, "[data-test=password] input").send_keys(DEMO_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "[data-test=login]").click()
    _wait(driver).until(lambda d: "clerk" in _text(d, "[data-test=hello]"))
    assert "出入库单据" in _text(driver, "[data-test=tasks]")
    assert "稽查扫码" not in _text(driver, "[data-test=tasks]")

    driver.get(f"{server}/m/documents")
    _find(driver, "[data-test=new-doc]").click()
    Select(_find(driver, "[data-test=doc-kind]")).select_by_value("factory_inbound")
    driver.find_element(By.CSS_SELECTOR, "[data-test=create-doc]").click()
    _wait(driver).until(lambda d: "/m/documents/" in d.current_url)
    doc_id = int(driver.current_url.rstrip("/").rsplit("/", 1)[1])

    for sscc in packed["cases"]:
        _scan(driver, sscc)
    counted = "已扫 10 个码（本机：10 箱 · 0 单品）"
    _wait(driver).until(lambda d: counted in _text(d, "[data-test=doc-counts]"))
    # the server's running count per product: the ten cases as their 100 units
    _wait(driver).until(lambda d: "100" in _text(d, "[data-test=doc-line]"))
    _scan(driver, f"(00){packed['cases'][0]}")  # the same case, as a GS1-128 label reads
    _wait(driver).until(lambda d: "重复扫码" in _text(d, "[data-test=verdict]"))
    assert "已添加 10" in _text(driver, "[data-test=tally]")

    driver.find_element(By.CSS_SELECTOR, "[data-test=confirm-doc]").click()
    _find(driver, ".van-dialog__confirm").click()
    _wait(driver).until(lambda d: "已确认" in _text(d, "[data-test=doc-counts]"))
    assert "已扫 100 件 / 10 箱" in _text(driver, "[data-test=doc-counts]")
    answer = await client.get(f"/documents/{doc_id}", headers=await login("clerk"))
    doc = answer.json()
    assert doc["status"] == "confirmed" and doc["units"] == 100 and doc["packages"] == 10
    assert _errors(driver) == []


async def test_a_clerk_ships_ten_cases_on_an_outbound_against_an_order(
    browser: WebDriver, server: str, client: Any, login: Any, app: Any, demo: Any
) -> None:
    """L3 on the phone: an outbound against an order (the counterparty comes from the order), 10
    cases scanned with the order line's running count, confirmed: 100 units shipped."""
    from tests.test_logistics import confirm, document, pack

    packed = await pack(client, login, app, demo, 10)
    clerk = await login("clerk")
    inbound = await document(client, clerk, packed["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    erp_no = f"M-OUT-{packed['batch_no']}"
    order = await client.post(
        "/orders",
        headers=await login("partner"),
        json={
            "erp_no": erp_no,
            "from_org_id": demo["WH-SZ-01"],  # the clerk's warehouse: its orders list shows it
            "to_org_id": demo["AGENT-ZJ"],
            "lines": [{"product_id": packed["product_id"], "quantity": 100}],
        },
    )
    assert order.status_code == 201, order.text
    driver = browser
    driver.get(f"{server}/m/")
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get(f"{server}/m/login")
    _find(driver, "[data-test=username] input").send_keys("clerk")
    driver.find_element(By.CSS_SELECTOR, "[data-test=password] input").send_keys(DEMO_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "[data-test=login]").click()
    _wait(driver).until(lambda d: "clerk" in _text(d, "[data-test=hello]"))

    driver.get(f"{server}/m/documents")
    _find(driver, "[data-test=new-doc]").click()
    Select(_find(driver, "[data-test=doc-kind]")).select_by_value("outbound")
    _wait(driver).until(lambda d: erp_no in _text(d, "[data-test=doc-order]"))
    Select(driver.find_element(By.CSS_SELECTOR, "[data-test=doc-order]")).select_by_visible_text(
        erp_no
    )
    driver.find_element(By.CSS_SELECTOR, "[data-test=create-doc]").click()
    _wait(driver).until(lambda d: "/m/documents/" in d.current_url)
    doc_id = int(driver.current_url.rstrip("/").rsplit("/", 1)[1])

    for sscc in packed["cases"]:
        _scan(driver, sscc)
    # the order line: 100 ordered, 100 scanned, nothing left
    _wait(driver).until(lambda d: "100 / 100" in _text(d, "[data-test=doc-line]"))
    driver.find_element(By.CSS_SELECTOR, "[data-test=confirm-doc]").click()
    _find(driver, ".van-dialog__confirm").click()
    _wait(driver).until(lambda d: "已确认" in _text(d, "[data-test=doc-counts]"))
    doc = (await client.get(f"/documents/{doc_id}", headers=clerk)).json()
    assert doc["kind"] == "outbound" and doc["status"] == "confirmed"
    assert doc["units"] == 100 and doc["packages"] == 10
    assert doc["counterparty_id"] == demo["AGENT-ZJ"] and doc["order_id"] == order.json()["id"]
    assert _errors(driver) == []


def _y4m(text: str, path: Path, width: int = 640, height: int = 480, frames: int = 5) -> Path:
    """A video of ``text``'s QR code (black on white, grey 4:2:0), for Chromium's fake camera."""
    matrix = segno.make(text, error="m").matrix
    modules = len(matrix) + 8  # with the quiet zone
    scale = min(width, height) * 3 // 4 // modules
    left, top = (width - modules * scale) // 2, (height - modules * scale) // 2
    luma = bytearray(b"\xff" * (width * height))
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if not dark:
                continue
            for y in range(top + (r + 4) * scale, top + (r + 5) * scale):
                start = y * width + left + (c + 4) * scale
                luma[start : start + scale] = b"\x00" * scale
    chroma = b"\x80" * (width * height // 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + bytes(luma) + chroma)
    return path


@pytest.mark.alone  # beside another xdist worker the fake camera's stream was never read
async def test_the_camera_reads_a_unit_code_and_shows_its_verdict(
    server: str,
    settings: Any,
    demo: Any,
    goods: dict[str, Any],  # noqa: F811 (the fixture imported above)
    conn: Any,
    tmp_path: Path,
) -> None:
    """Chromium's fake camera plays a video of a unit's QR code (its verification URL): ZXing reads
    it through the app's camera scanner and the verdict is on screen."""
    serial = goods["units"][1]
    video = _y4m(f"{settings.public_url}/c/{serial}", tmp_path / "qr.y4m")
    driver = start_chromium(
        "--window-size=412,915",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    )
    try:
        driver.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"origin": server, "permissions": ["geolocation", "videoCapture"]},
        )
        driver.execute_cdp_cmd("Emulation.setGeolocationOverride", GPS)
        driver.get(f"{server}/m/login")
        _find(driver, "[data-test=username] input").send_keys("inspector")
        driver.find_element(By.CSS_SELECTOR, "[data-test=password] input").send_keys(DEMO_PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "[data-test=login]").click()
        _wait(driver).until(lambda d: "inspector" in _text(d, "[data-test=hello]"))
        store = {"id": demo["STORE-NB-01"], "name": "STORE-NB-01"}
        driver.execute_script(
            "localStorage.setItem('tracecode.m.inspect.store', JSON.stringify(arguments[0]))",
            store,
        )
        driver.get(f"{server}/m/inspect")
        _find(driver, ".camera-button").click()
        try:
            _wait(driver, 60).until(lambda d: "正常渠道" in _text(d, "[data-test=verdict]"))
        except TimeoutException:
            page = _text(driver, "body")[:600]
            raise AssertionError(
                f"no in-channel verdict on screen; the page says: {page}"
            ) from None
        in_page_ms = int(_find(driver, "[data-test=verdict]").get_attribute("data-ms") or -1)
        assert 0 <= in_page_ms <= 1000, in_page_ms
        assert serial in _text(driver, "[data-test=verdict]")
        await asyncio.sleep(4)  # the code stays in view (the video loops): still one scan
        assert await _scans_of(conn, serial) == 1
        print(f"camera scan to verdict on screen: {in_page_ms} ms in the page")
    finally:
        driver.quit()


async def test_an_inspection_carries_a_photo_taken_on_the_page(
    browser: WebDriver,
    server: str,
    demo: Any,
    goods: dict[str, Any],  # noqa: F811 (the fixture imported above)
    conn: Any,
    tmp_path: Path,
) -> None:
    """Issue 18 item 4: the inspector adds a photo (uploaded at once to /media/photos); the scan
    that follows is recorded with its id."""
    picture = tmp_path / "shelf.png"
    segno.make("shelf").save(str(picture), scale=4)
    driver = browser
    driver.get(f"{server}/m/")
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get(f"{server}/m/login")
    _find(driver, "[data-test=username] input").send_keys("inspector")
    driver.find_element(By.CSS_SELECTOR, "[data-test=password] input").send_keys(DEMO_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "[data-test=login]").click()
    _wait(driver).until(lambda d: "inspector" in _text(d, "[data-test=hello]"))
    driver.execute_script(
        "localStorage.setItem('tracecode.m.inspect.store', JSON.stringify(arguments[0]))",
        {"id": demo["STORE-NB-01"], "name": "STORE-NB-01"},
    )
    driver.get(f"{server}/m/inspect")
    _find(driver, "[data-test=inspect-photo-input]").send_keys(str(picture))
    _find(driver, "[data-test=inspect-photo]")
    serial = goods["units"][5]
    _scan(driver, serial)
    _wait(driver).until(lambda d: "正常渠道" in _text(d, "[data-test=verdict]"))
    row = await (
        await conn.execute(
            """SELECT sc.photo_ids, p.owner_id, u.username FROM inspections i
               JOIN inspection_scans sc ON sc.id = i.scan_id
               JOIN media_photos p ON p.id = sc.photo_ids[1]
               JOIN users u ON u.id = p.owner_id WHERE i.serial = %s""",
            (serial,),
        )
    ).fetchone()
    await conn.commit()
    assert row is not None and len(row["photo_ids"]) == 1 and row["username"] == "inspector"
    assert _errors(driver) == []
