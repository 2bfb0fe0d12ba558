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
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import segno
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
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
from tests.test_logistics import confirm, document, pack

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


def _choose_store(driver: WebDriver, store: dict[str, Any] | None) -> None:
    """The inspection page's store as if chosen before (kept per user: the signed-in one's), or
    none."""
    driver.execute_script(
        """const key = 'tracecode.m.inspect.store.'
            + JSON.parse(localStorage.getItem('tracecode.m.me')).me.user_id;
        if (arguments[0] === null) localStorage.removeItem(key);
        else localStorage.setItem(key, JSON.stringify(arguments[0]));""",
        store,
    )


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
    _choose_store(driver, None)
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
        _choose_store(driver, {"id": demo["STORE-NB-01"], "name": "STORE-NB-01"})
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
    _choose_store(driver, {"id": demo["STORE-NB-01"], "name": "STORE-NB-01"})
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


def _sign_in(
    driver: WebDriver,
    server: str,
    username: str,
    clear: bool = True,
    password: str = DEMO_PASSWORD,
) -> None:
    driver.get(f"{server}/m/login")
    if clear:
        driver.execute_script("localStorage.clear(); sessionStorage.clear();")
        driver.get(f"{server}/m/login")
    _find(driver, "[data-test=username] input").send_keys(username)
    driver.find_element(By.CSS_SELECTOR, "[data-test=password] input").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "[data-test=login]").click()
    _wait(driver).until(lambda d: username in _text(d, "[data-test=hello]"))


def _sscc(body17: str) -> str:
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body17)))
    return body17 + str((10 - total % 10) % 10)


async def _draft(client: Any, login: Any) -> int:
    doc = await document(client, await login("clerk"), kind="factory_inbound")
    return int(doc["id"])


def _to_queue_page(driver: WebDriver) -> None:
    """The queue page opened in the app (not reloaded: the latest answers are in memory)."""
    driver.execute_script(
        "document.querySelector('#app').__vue_app__.config.globalProperties.$router.push('/queue')"
    )
    _wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-test=send-now]"))


async def test_a_document_code_refused_after_an_offline_scan_is_shown_and_kept(
    browser: WebDriver, server: str, client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a clerk scans two cases into a factory inbound offline, one packed and one never
    packed (a well-formed SSCC); back online the queue sends both in one request, answered 200
    with the second `rejected` (`unknown_case`). The document's tally counts 1 added and 1
    rejected with the reason on screen; the queue page says the refused code's reason (not a
    bare "200") and keeps it, also over a reload, until the clerk dismisses it (the status bar
    counts it meanwhile)."""
    packed = await pack(client, login, app, demo, 1)
    doc_id = await _draft(client, login)
    never_packed = _sscc("0" + str(secrets.randbelow(10**16)).zfill(16))
    driver = browser
    _sign_in(driver, server, "clerk")
    driver.get(f"{server}/m/documents/{doc_id}")
    _find(driver, "[data-test=doc-counts]")
    _network(driver, offline=True)
    try:
        _wait(driver).until(lambda d: "离线" in _text(d, "[data-test=net-status]"))
        _scan(driver, packed["cases"][0])
        _wait(driver).until(lambda d: "1 条待发送" in _text(d, "[data-test=pending-count]"))
        _scan(driver, never_packed)
        _wait(driver).until(lambda d: "2 条待发送" in _text(d, "[data-test=pending-count]"))
    finally:
        _network(driver, offline=False)
    _wait(driver, 45).until(lambda d: not _text(d, "[data-test=pending-count]"))
    _wait(driver).until(lambda d: "已扫 1 个码" in _text(d, "[data-test=doc-counts]"))
    _wait(driver).until(lambda d: "拒绝： 1" in _text(d, "[data-test=tally]"))
    assert "已添加 1" in _text(driver, "[data-test=tally]")
    assert "unknown_case" in _text(driver, "[data-test=verdict]")
    assert "1 条被拒绝" in _text(driver, "[data-test=refused-count]")

    _to_queue_page(driver)
    refused = _text(driver, "[data-test=refused]")
    assert "unknown_case" in refused and never_packed in refused, refused
    recent = _text(driver, "[data-test=recent]")
    assert "unknown_case" in recent and "已添加" in recent, recent
    driver.refresh()  # kept over a reload, until dismissed
    _wait(driver).until(lambda d: "unknown_case" in _text(d, "[data-test=refused]"))
    driver.find_element(By.CSS_SELECTOR, "[data-test=dismiss-refused]").click()
    _wait(driver).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-test=refused]"))
    assert not _text(driver, "[data-test=refused-count]")
    driver.refresh()
    _find(driver, "[data-test=send-now]")
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-test=refused]")


async def test_a_scan_with_a_malformed_percent_escape_gets_a_verdict(
    browser: WebDriver,
    server: str,
    demo: Any,
    goods: dict[str, Any],  # noqa: F811 (the fixture imported above)
) -> None:
    """A probe: a QR whose URL holds a malformed percent escape (a damaged or hostile label:
    `https://…/c/%zz`) is answered on screen as not a code (it made the parser throw and the
    scan was dropped without a verdict or a sound)."""
    driver = browser
    _sign_in(driver, server, "inspector")
    _choose_store(driver, {"id": demo["STORE-NB-01"], "name": "STORE-NB-01"})
    driver.get(f"{server}/m/inspect")
    _find(driver, "[data-test=scan-input] input")
    _scan(driver, "https://t.example.cn/c/%zz")
    _wait(driver).until(lambda d: "不是追溯码" in _text(d, "[data-test=verdict]"))


async def test_queued_scans_are_never_sent_with_another_users_token(
    browser: WebDriver,
    server: str,
    demo: Any,
    goods: dict[str, Any],  # noqa: F811 (the fixture imported above)
    conn: Any,
) -> None:
    """A probe: on one shared phone the inspector queues a shelf scan (the API unreachable);
    the brand admin signs in on /console in the same browser (the shared auth store now holds
    the admin's tokens); the app opened offline does not take the inspector's copy of /auth/me
    for the admin's tokens (it greeted the inspector and, the network back, sent the
    inspector's scan with the admin's token: recorded as the admin's inspection). The scan
    waits in the queue until the inspector signs in again, and is then recorded as theirs."""
    serial = goods["units"][12]
    driver = browser
    _sign_in(driver, server, "inspector")
    _choose_store(driver, {"id": demo["STORE-NB-01"], "name": "STORE-NB-01"})
    driver.get(f"{server}/m/inspect")
    _find(driver, "[data-test=scan-input] input")
    # a dead spot: the API is blocked rather than the network emulated offline (leaving a page
    # under offline emulation let it send its queue as it went)
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/inspections*"]})
    try:
        await _queue_then_switch_user(driver, server, conn, serial)
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        _network(driver, offline=False)
    await asyncio.sleep(4)
    assert await _inspector_of(conn, serial) is None  # kept: not the admin's to send
    _sign_in(driver, server, "inspector", clear=False)
    for _ in range(60):  # sent once the inspector is back
        if await _inspector_of(conn, serial) is not None:
            break
        await asyncio.sleep(0.5)
    assert await _inspector_of(conn, serial) == "inspector"


async def _inspector_of(conn: Any, serial: str) -> str | None:
    row = await (
        await conn.execute(
            """SELECT u.username FROM inspections i JOIN users u ON u.id = i.inspector_id
               WHERE i.serial = %s""",
            (serial,),
        )
    ).fetchone()
    await conn.commit()
    return row["username"] if row else None


async def _queue_then_switch_user(driver: WebDriver, server: str, conn: Any, serial: str) -> None:
    _scan(driver, serial)
    _wait(driver).until(lambda d: "1 条待发送" in _text(d, "[data-test=pending-count]"))
    driver.get("about:blank")
    await asyncio.sleep(1)
    assert await _inspector_of(conn, serial) is None
    # the brand admin signs in on the console of the same browser
    driver.get(f"{server}/console/login")
    _wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#username, #logout"))
    if driver.find_elements(By.CSS_SELECTOR, "#logout"):
        driver.find_element(By.ID, "logout").click()
    _find(driver, "#username").send_keys("admin")
    driver.find_element(By.CSS_SELECTOR, "#password").send_keys(DEMO_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#login-submit").click()
    _wait(driver).until(lambda d: d.find_element(By.ID, "current-user").text == "admin")
    # the staff app opened offline knows nobody: the copy of /auth/me is the inspector's
    _network(driver, offline=True)
    driver.get(f"{server}/m/")
    _wait(driver).until(lambda d: "离线" in _text(d, "[data-test=net-status]"))
    _wait(driver).until(lambda d: "/m/login" in d.current_url or _text(d, "[data-test=hello]"))
    assert "inspector" not in _text(driver, "[data-test=hello]")


async def test_the_next_user_does_not_see_the_previous_users_store(
    browser: WebDriver, server: str, demo: Any, client: Any, login: Any
) -> None:
    """A probe: a phone passed on. The brand inspector picks the Ningbo store and signs out; the
    Guangdong agent's administrator (may inspect, only within AGENT-GD, where the Ningbo store
    answers 404) signs in and opens the inspection page: no store is chosen (the first user's
    was kept for whoever signed in next, so their scans went against it)."""
    gd = await login("gd_admin")
    hidden = await client.get(f"/orgs/{demo['STORE-NB-01']}", headers=gd)
    assert hidden.status_code == 404, hidden.text  # outside the agent's subtree
    admin = await login("admin")
    name = (await client.get(f"/orgs/{demo['STORE-NB-01']}", headers=admin)).json()["name"]
    me = (await client.get("/auth/me", headers=gd)).json()
    assert "inspect.scan" in me["permissions"], me
    driver = browser
    _sign_in(driver, server, "inspector")
    driver.get(f"{server}/m/inspect")
    _find(driver, "[data-test=store]").click()
    # the list is a page of 30 stores: found by name (other tests' stores may fill the page
    # first, as in two CI runs of random order)
    _find(driver, ".van-popup input").send_keys("Tianyi")
    _wait(driver).until(lambda d: name in _text(d, ".van-popup"))

    def pick(d: WebDriver) -> bool:
        """Click the store's cell (scrolled to and clicked by script: the popup may still slide
        in); the list may re-render under the search meanwhile (a stale cell, as in a CI run):
        looked for again."""
        try:
            for cell in d.find_elements(By.CSS_SELECTOR, ".van-popup .van-cell"):
                if name in cell.text:
                    d.execute_script("arguments[0].scrollIntoView({block: 'center'});", cell)
                    d.execute_script("arguments[0].click();", cell)
                    return True
        except StaleElementReferenceException:
            pass
        return False

    _wait(driver).until(pick)
    _wait(driver).until(lambda d: name in _text(d, "[data-test=store]"))
    driver.get(f"{server}/m/")
    _wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".out"))
    driver.find_element(By.CSS_SELECTOR, ".out").click()
    _wait(driver).until(lambda d: "/m/login" in d.current_url)
    _sign_in(driver, server, "gd_admin", clear=False)
    driver.get(f"{server}/m/inspect")
    _find(driver, "[data-test=store]")
    shown = _text(driver, "[data-test=store]")
    assert name not in shown and "选择或扫描门店" in shown, shown


async def test_a_document_code_resent_after_a_lost_answer_counts_as_added(
    browser: WebDriver, server: str, client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a clerk scans case 1; the request reaches the server but its answer is lost (a
    mobile network time-out); the app re-sends it at once under the same `client_id` (the queued
    action's id), and the server, holding the code under that id, answers `added` again — the
    phone counts the server's answer as is: with case 2, 2 cases added and no duplicate (the
    phone said "duplicate" for the clerk's first scan and counted 1 case). Case 1 scanned again
    (a new action, another client id) is a duplicate."""
    packed = await pack(client, login, app, demo, 2)
    doc_id = await _draft(client, login)
    driver = browser
    _sign_in(driver, server, "clerk")
    driver.get(f"{server}/m/documents/{doc_id}")
    _find(driver, "[data-test=doc-counts]")
    # the first request for the document's codes reaches the server, its answer is lost
    driver.execute_script(
        """const real = window.fetch;
        let armed = true;
        window.fetch = async function (input, init) {
          const url = input instanceof Request ? input.url : String(input);
          const method = input instanceof Request ? input.method : (init && init.method) || 'GET';
          if (armed && method === 'POST' && /\\/documents\\/\\d+\\/codes$/.test(url)) {
            armed = false;
            await real(input, init);
            throw new TypeError('Failed to fetch');
          }
          return real(input, init);
        };"""
    )
    _scan(driver, packed["cases"][0])
    _wait(driver).until(lambda d: packed["cases"][0] in _text(d, "[data-test=verdict]"))
    assert "已添加" in _text(driver, "[data-test=verdict]")
    _scan(driver, packed["cases"][1])
    _wait(driver).until(lambda d: packed["cases"][1] in _text(d, "[data-test=verdict]"))
    _wait(driver).until(lambda d: "已扫 2 个码" in _text(d, "[data-test=doc-counts]"))
    await asyncio.sleep(1)
    counts = _text(driver, "[data-test=doc-counts]")
    tally = _text(driver, "[data-test=tally]")
    assert "本机：2 箱" in counts and "已添加 2" in tally and "重复扫码 0" in tally, (counts, tally)
    _scan(driver, packed["cases"][0])  # scanned again by the clerk: a duplicate, not counted
    _wait(driver).until(lambda d: "重复扫码 1" in _text(d, "[data-test=tally]"))
    assert "本机：2 箱" in _text(driver, "[data-test=doc-counts]")


async def _in_store(client: Any, login: Any, app: Any, demo: Any) -> list[str]:
    """Two cases of 10 units packed: the first received by STORE-HZ-01 (through AGENT-ZJ), the
    second still in the factory warehouse. The 20 units."""
    goods_ = await pack(client, login, app, demo, 2)
    units: list[str] = goods_["units"]
    clerk, agent, store = (
        await login("clerk"),
        await login("agent_clerk"),
        await login("store_clerk"),
    )
    inbound = await document(client, clerk, goods_["cases"], kind="factory_inbound")
    assert (await confirm(client, clerk, inbound)).status_code == 200
    ship = await document(
        client, clerk, goods_["cases"][:1], kind="outbound", counterparty_id=demo["AGENT-ZJ"]
    )
    assert (await confirm(client, clerk, ship)).status_code == 200
    received = await document(client, agent, kind="inbound", shipment_id=ship["id"])
    assert (await confirm(client, agent, received)).status_code == 200
    to_store = await document(
        client, agent, goods_["cases"][:1], kind="outbound", counterparty_id=demo["STORE-HZ-01"]
    )
    assert (await confirm(client, agent, to_store)).status_code == 200
    store_in = await document(client, store, units[:10], kind="inbound", shipment_id=to_store["id"])
    assert (await confirm(client, store, store_in)).status_code == 200
    return units


async def test_a_refused_sale_names_the_codes_that_cannot_be_sold(
    browser: WebDriver, server: str, client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a store clerk sells a basket of two units, one in the store's stock, one never
    shipped to the store. POST /sales answers 422 `bad_codes` with `details.codes`: the phone
    names the refused code and marks it in the basket (it said only "codes that cannot be
    sold")."""
    units = await _in_store(client, login, app, demo)
    good, bad = units[0], units[15]  # the second case never left the factory warehouse

    driver = browser
    _sign_in(driver, server, "store_clerk")
    driver.get(f"{server}/m/sale")
    _scan(driver, good)
    _scan(driver, bad)
    _wait(driver).until(lambda d: "本单 2 件" in _text(d, "body"))
    driver.find_element(By.CSS_SELECTOR, "[data-test=sell]").click()
    _wait(driver).until(lambda d: "不能售出" in _text(d, "[data-test=verdict]"))
    verdict = _text(driver, "[data-test=verdict]")
    assert bad in verdict and good not in verdict, verdict
    marked = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-test=basket-refused]")]
    assert len(marked) == 1 and bad in marked[0], marked


async def test_a_sale_made_offline_is_dated_when_the_phone_made_it(
    browser: WebDriver, server: str, client: Any, login: Any, app: Any, demo: Any, conn: Any
) -> None:
    """A probe: a sale scanned while the shop had no signal was dated when the queue sent it
    (the sales analytics count it by that day). The phone sends its time of the sale
    (``client_at``): the unit is sold at that time, the upload is its record time."""
    units = await _in_store(client, login, app, demo)
    driver = browser
    driver.get_log("browser")  # the earlier tests' entries (a refused sale's 422): not this one's
    _sign_in(driver, server, "store_clerk")
    driver.get(f"{server}/m/sale")
    _wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-test=sell]"))
    _network(driver, offline=True)
    try:
        _scan(driver, units[1])
        _wait(driver).until(lambda d: "本单 1 件" in _text(d, "body"))
        driver.find_element(By.CSS_SELECTOR, "[data-test=sell]").click()
        _wait(driver).until(lambda d: "离线保存" in _text(d, "[data-test=verdict]"))
        await asyncio.sleep(3)  # the shop stays offline a while
    finally:
        _network(driver, offline=False)
    batch_no, index, _ = app.state.scheme.verify(units[1])

    async def sold() -> Any:
        found = await conn.execute(
            """SELECT u.sold_at, d.client_at, d.created_at FROM unit_state u
               JOIN events e ON e.id = u.last_event_id
               JOIN documents d ON d.event_id = e.id
               WHERE u.code = %s AND u.status = 'sold'""",
            ((batch_no << 32) | index,),
        )
        row = await found.fetchone()
        await conn.commit()
        return row

    deadline = time.monotonic() + 45
    while (row := await sold()) is None:
        assert time.monotonic() < deadline, "the queued sale never arrived"
        await asyncio.sleep(0.5)
    assert row["client_at"] is not None and row["sold_at"] == row["client_at"]
    assert (row["created_at"] - row["client_at"]).total_seconds() >= 2.5  # sent afterwards
    assert _errors(driver) == []


async def test_a_document_is_not_confirmed_while_its_scanned_codes_are_still_queued(
    browser: WebDriver, server: str, client: Any, login: Any, app: Any, demo: Any
) -> None:
    """A probe: a clerk loads a truck: case 1 is scanned online (added), case 2 in a dead spot
    (its request fails: 1 pending). The clerk taps confirm; the page sent the queue, which failed
    again, and confirmed the document anyway: shipped with 1 case while the phone still held the
    other, refused later (`not_draft`). Now the document stays a draft and the clerk is told 1
    code is still waiting to be sent; back in coverage, confirm sends it first: 2 cases."""
    packed = await pack(client, login, app, demo, 2)
    doc_id = await _draft(client, login)
    driver = browser
    _sign_in(driver, server, "clerk")
    driver.get(f"{server}/m/documents/{doc_id}")
    _find(driver, "[data-test=doc-counts]")
    _scan(driver, packed["cases"][0])
    _wait(driver).until(lambda d: "已添加 1" in _text(d, "[data-test=tally]"))

    # a dead spot for the document's codes only (the mobile network drops the big uploads)
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/documents/*/codes"]})
    try:
        _scan(driver, packed["cases"][1])
        _wait(driver).until(lambda d: "1 条待发送" in _text(d, "[data-test=pending-count]"))
        driver.find_element(By.CSS_SELECTOR, "[data-test=confirm-doc]").click()
        _find(driver, ".van-dialog__confirm").click()
        _wait(driver).until(lambda d: "还有 1 个码等待发送" in _text(d, ".van-toast"))
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    clerk = await login("clerk")
    doc = (await client.get(f"/documents/{doc_id}", headers=clerk)).json()
    assert doc["status"] == "draft", doc

    driver.find_element(By.CSS_SELECTOR, "[data-test=confirm-doc]").click()
    _find(driver, ".van-dialog__confirm").click()
    _wait(driver).until(lambda d: "已确认" in _text(d, "[data-test=doc-counts]"))
    doc = (await client.get(f"/documents/{doc_id}", headers=clerk)).json()
    assert doc["status"] == "confirmed" and doc["packages"] == 2, doc


def _stored_tokens(driver: WebDriver) -> dict[str, Any]:
    """The token pair the app keeps (the auth store's, shared with the console)."""
    raw = driver.execute_script("return localStorage.getItem('tracecode.console.tokens');")
    assert isinstance(raw, str), raw
    tokens: dict[str, Any] = json.loads(raw)
    return tokens


def _fill_password_form(driver: WebDriver, current: str, new: str, confirm: str) -> None:
    for test, value in (("current", current), ("new", new), ("confirm", confirm)):
        field = _find(driver, f"[data-test={test}-password] input")
        field.send_keys(Keys.CONTROL, "a")  # replaced as typed (Vue sees the input events)
        field.send_keys(Keys.BACKSPACE, value)
    driver.find_element(By.CSS_SELECTOR, "[data-test=change-password-submit]").click()


async def test_a_user_changes_their_own_password_on_the_phone_and_stays_signed_in(
    browser: WebDriver, server: str, client: Any, login: Any, demo: Any
) -> None:
    """An inspector made for the test (the demo users' passwords are other tests' sign-in)
    opens "修改密码" from the home page: a confirmation typed differently is refused on the
    page, a wrong current password by the server (its words, `wrong_password`); then the
    password is changed. The phone stays signed in with the new pair it kept — reloaded, the
    home page and today's inspections load — while the pair it had is dead, and the API takes
    the new password and refuses the old one."""
    username = f"m_pw_{secrets.token_hex(3)}"
    old, new = f"old-{secrets.token_urlsafe(9)}", f"new-{secrets.token_urlsafe(9)}"
    body = {"org_id": demo["BRAND-LUMI"], "username": username, "password": old}
    made = await client.post(
        "/users", headers=await login("admin"), json={**body, "roles": ["inspector"]}
    )
    assert made.status_code == 201, made.text
    driver = browser
    driver.get_log("browser")  # the earlier tests' entries (a refused sale's 422): not this one's
    _sign_in(driver, server, username, password=old)
    before = _stored_tokens(driver)
    _find(driver, "[data-test=change-password]").click()
    _wait(driver).until(lambda d: d.current_url.endswith("/m/password"))

    _fill_password_form(driver, old, new, new + "x")
    _wait(driver).until(
        lambda d: "两次输入的新密码不一致" in _text(d, "[data-test=confirm-password]")
    )
    _fill_password_form(driver, "not-the-password", new, new)
    _wait(driver).until(lambda d: "当前密码错误（wrong_password）" in _text(d, ".van-toast"))
    assert driver.current_url.endswith("/m/password")  # still signed in, on the page
    assert _stored_tokens(driver) == before

    _fill_password_form(driver, old, new, new)
    _wait(driver).until(lambda d: "密码已修改" in _text(d, ".van-toast"))
    _wait(driver).until(lambda d: username in _text(d, "[data-test=hello]"))
    after = _stored_tokens(driver)
    assert after["refresh_token"] != before["refresh_token"]

    # signed in with the pair kept: reloaded, the app asks the server who the user is and lists
    # the user's inspections of today (none yet)
    driver.get(f"{server}/m/")
    _wait(driver).until(lambda d: username in _text(d, "[data-test=hello]"))
    driver.get(f"{server}/m/inspect/today")
    _wait(driver).until(lambda d: "今天还没有稽查记录" in _text(d, ".van-empty"))
    assert "/m/login" not in driver.current_url
    bearer = {"Authorization": f"Bearer {after['access_token']}"}
    assert (await client.get("/auth/me", headers=bearer)).json()["username"] == username
    dead = {"Authorization": f"Bearer {before['access_token']}"}
    assert (await client.get("/auth/me", headers=dead)).status_code == 401

    signed = await client.post("/auth/login", json={"username": username, "password": new})
    assert signed.status_code == 200, signed.text
    refused = await client.post("/auth/login", json={"username": username, "password": old})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_credentials"
    # the refused change answered 422 (logged by Chromium as a failed resource): nothing else
    assert [e for e in _errors(driver) if "/auth/password" not in e] == []


async def test_a_password_given_to_be_replaced_is_replaced_before_anything_else_on_the_phone(
    browser: WebDriver, server: str, client: Any, login: Any, demo: Any
) -> None:
    """A user whose password the administrator gave to be replaced (``must_change_password``:
    every other API call is 403 ``password_change_required``) lands on the change page, with
    its notice and no way back but signing out, whatever page it opens; changed, the app goes
    on as usual."""
    username = f"m_due_{secrets.token_hex(3)}"
    given, mine = f"given-{secrets.token_urlsafe(9)}", f"mine-{secrets.token_urlsafe(9)}"
    body = {"org_id": demo["BRAND-LUMI"], "username": username, "password": given}
    made = await client.post(
        "/users",
        headers=await login("admin"),
        json={**body, "roles": ["inspector"], "must_change_password": True},
    )
    assert made.status_code == 201, made.text
    driver = browser
    driver.get(f"{server}/m/login")
    driver.execute_script("localStorage.clear(); sessionStorage.clear();")
    driver.get(f"{server}/m/login")
    _find(driver, "[data-test=username] input").send_keys(username)
    driver.find_element(By.CSS_SELECTOR, "[data-test=password] input").send_keys(given)
    driver.find_element(By.CSS_SELECTOR, "[data-test=login]").click()
    _wait(driver).until(lambda d: d.current_url.endswith("/m/password"))
    assert "初始密码由他人设置" in _text(driver, "[data-test=password-due]")
    driver.get(f"{server}/m/inspect/today")  # any other page: the change first
    _wait(driver).until(lambda d: d.current_url.endswith("/m/password"))
    _fill_password_form(driver, given, mine, mine)
    _wait(driver).until(lambda d: username in _text(d, "[data-test=hello]"))
    driver.get(f"{server}/m/inspect/today")
    _wait(driver).until(lambda d: "今天还没有稽查记录" in _text(d, ".van-empty"))
    signed = await client.post("/auth/login", json={"username": username, "password": mine})
    me = await client.get(
        "/auth/me", headers={"Authorization": f"Bearer {signed.json()['access_token']}"}
    )
    assert me.json()["must_change_password"] is False
