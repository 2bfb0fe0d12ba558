"""The staff app's offline queue of 5,000 inspection scans synced when the network returns
(issue 18): target <= 10 s.

    .venv/bin/python bench/bench_mobile_sync.py [--scans 5000] [--workers 1]

Needs the built app (``make console``) and Debian's chromium + chromedriver (``make browser``).

Setup, in-process on a fresh database ``tracecode_bench_mobile`` on the PostgreSQL of
``TRACECODE_DATABASE_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres), with the demo
data: ``--scans`` real unit codes issued, packed in cases of 100 on line BENCH, taken into the
factory warehouse and shipped to AGENT-ZJ (so each is ``in_channel`` at its store STORE-HZ-01).
Then the app runs under granian (``--workers``) on that database, and headless Chromium:

1. signs in as the demo ``inspector`` on /m and opens the inspector page;
2. goes offline (DevTools ``Network.emulateNetworkConditions``);
3. queues one inspection per unit at STORE-HZ-01 in the app's IndexedDB queue (``tracecode-m``,
   store ``queue``), written in the page in one IndexedDB transaction in exactly the shape
   ``OfflineQueue.add`` writes (a client id ``m-<32 hex>``, the user, the body the inspector page
   sends: code, GPS, note, store_id). Typing 5,000 codes through WebDriver would time WebDriver,
   not the sync; the sending is the app's own code, untouched;
4. goes online: the page's ``online`` handler flushes the queue (``sync.ts``: batches of 500
   through ``POST /inspections/batch``, 4 requests at a time);
5. times until the queue in IndexedDB is empty (polled every 50 ms); then queues the same
   actions again (as if every answer had been lost) and syncs them once more; then checks the
   server holds each scan exactly once (one ``inspection_scans`` row per client id, one
   ``inspections`` record per unit, all ``in_channel``).

Prints seconds, scans/s and the machine (CPUs, model, load average). Results go in
bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "tracecode_bench_mobile"
MASTER_KEY = "e5" * 32
TARGET = 10.0
PER_CASE = 100

os.environ["TRACECODE_MASTER_KEY"] = MASTER_KEY
os.environ.pop("TRACECODE_MASTER_KEY_FILE", None)
os.environ.setdefault("TRACECODE_LOG_LEVEL", "WARNING")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from app import db, embedded  # noqa: E402
from app._core import gs1_check_digit  # noqa: E402
from app.auth.principal import Principal  # noqa: E402
from app.auth.service import load_user  # noqa: E402
from app.codes.cases import create_case_batch  # noqa: E402
from app.codes.schemas import BatchIn, CaseBatchIn  # noqa: E402
from app.codes.scheme import scheme_from_settings  # noqa: E402
from app.codes.service import create_batch  # noqa: E402
from app.config import load_settings  # noqa: E402
from app.demo import DEMO_PASSWORD, load_demo  # noqa: E402
from app.logistics import documents  # noqa: E402
from app.logistics.schemas import CodesIn, DocumentIn  # noqa: E402
from app.packing import lines, scans  # noqa: E402
from app.packing.schemas import LineContextIn, ScanIn, ScanUploadIn  # noqa: E402
from tests.servers import granian_server  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
GPS = {"latitude": 30.2590, "longitude": 120.1550, "accuracy": 10}


def database() -> str:
    admin = (
        os.environ.get("TRACECODE_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    try:
        embedded.drop_database(admin, DB_NAME)
    except Exception as exc:  # first run: nothing to drop
        print(f"(no previous bench database: {exc})")
    url = embedded.ensure_database(admin, DB_NAME)
    db.migrate(url)
    return url


async def user(conn: Any, username: str) -> Principal:
    row = await (
        await conn.execute("SELECT id FROM users WHERE username = %s", (username,))
    ).fetchone()
    return await load_user(conn, row["id"])


async def shipped_units(url: str, n: int) -> tuple[list[str], dict[str, int], int]:
    """``n`` real unit serials shipped to AGENT-ZJ; the demo orgs; the inspector's user id."""
    settings = load_settings()
    scheme = scheme_from_settings(settings)
    n_cases = -(-n // PER_CASE)
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        org = await load_demo(conn)
        await conn.commit()
        planner, operator = await user(conn, "planner"), await user(conn, "operator")
        clerk = await user(conn, "clerk")
        product = await (
            await conn.execute("SELECT id FROM products WHERE product_no = 'LM-SC-30'")
        ).fetchone()
        batch, _ = await create_batch(
            conn, planner, settings,
            BatchIn(size=n_cases * PER_CASE, printer_id=org["PRINTER-SH"],
                    product_id=product["id"]),
        )  # fmt: skip
        case_batch, _ = await create_case_batch(
            conn, planner, settings,
            CaseBatchIn(level="inner", size=n_cases, printer_id=org["PRINTER-SH"]),
        )  # fmt: skip
        await lines.set_context(
            conn, operator, "BENCH",
            LineContextIn(product_id=product["id"], lot="BENCH",
                          production_date=date(2026, 11, 20)),
        )  # fmt: skip
        await conn.commit()
        first = int(case_batch.first_sscc[:-1])
        ssccs = [f"{first + i:017d}{gs1_check_digit(f'{first + i:017d}')}" for i in range(n_cases)]
        at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
        serials: list[str] = []
        items: list[ScanIn] = []
        for c in range(n_cases):
            for i in range(c * PER_CASE, (c + 1) * PER_CASE):
                serial = scheme.serial(batch.batch_no, i, batch.key_version)
                serials.append(serial)
                items.append(ScanIn(id=f"u{i}", code=serial, at=at))
            items.append(ScanIn(id=f"c{c}", code=ssccs[c], at=at))
        for start in range(0, len(items), 20_000):
            out = await scans.upload(
                conn, operator, scheme, "BENCH", ScanUploadIn(scans=items[start : start + 20_000])
            )
            await conn.commit()
            assert out.rejected == 0, out
        for kind, fields in (
            ("factory_inbound", {"signee": "bench"}),
            ("outbound", {"counterparty_id": org["AGENT-ZJ"], "signee": "bench"}),
        ):
            doc = await documents.create_document(conn, clerk, DocumentIn(kind=kind, **fields))
            added = await documents.add_codes(conn, clerk, scheme, doc.id, CodesIn(codes=ssccs))
            assert added.rejected == 0, added
            await documents.confirm(conn, clerk, scheme, doc.id)
            await conn.commit()
        inspector = await user(conn, "inspector")
        assert inspector.user_id is not None
        return serials[:n], org, inspector.user_id


def browser(base: str) -> webdriver.Chrome:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        sys.exit(f"{', '.join(missing)} missing: run `make browser` (Debian chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=412,915")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    driver.execute_cdp_cmd(
        "Browser.grantPermissions", {"origin": base, "permissions": ["geolocation"]}
    )
    driver.execute_cdp_cmd("Emulation.setGeolocationOverride", GPS)
    driver.execute_cdp_cmd("Network.enable", {})
    return driver


def network(driver: webdriver.Chrome, offline: bool) -> None:
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )


def go_offline(driver: webdriver.Chrome) -> None:
    """Cut the network and wait until the app shows it is offline."""
    network(driver, offline=True)
    wait(driver).until(
        lambda d: any(
            word in d.find_element(By.CSS_SELECTOR, "[data-test=net-status]").text
            for word in ("离线", "ffline")
        )
    )


def wait(driver: webdriver.Chrome, timeout: float = 30) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,))


# the queue's IndexedDB, as console/src/mobile/offline/queue.ts opens and writes it (its
# DB_VERSION 2: ordered by n; a script opening version 1 after the page failed to open it)
QUEUE_PUT = """
const [actions, done] = [arguments[0], arguments[arguments.length - 1]];
const open = indexedDB.open('tracecode-m', 2);
open.onupgradeneeded = () => open.result.createObjectStore('queue', {keyPath: 'id'})
  .createIndex('order', 'n');
open.onerror = () => done('open: ' + open.error);
open.onsuccess = () => {
  const tx = open.result.transaction('queue', 'readwrite');
  const store = tx.objectStore('queue');
  for (const a of actions) store.put(a);
  tx.oncomplete = () => { open.result.close(); done('ok'); };
  tx.onerror = () => done('put: ' + tx.error);
};
"""
QUEUE_COUNT = """
const done = arguments[arguments.length - 1];
const open = indexedDB.open('tracecode-m', 2);
open.onerror = () => done(-1);
open.onsuccess = () => {
  const req = open.result.transaction('queue', 'readonly').objectStore('queue').count();
  req.onsuccess = () => { open.result.close(); done(req.result); };
  req.onerror = () => done(-1);
};
"""


def flush(driver: webdriver.Chrome, actions: list[dict[str, Any]]) -> float:
    """Put the actions in the (offline) queue, go online; seconds until the queue is empty."""
    put = driver.execute_async_script(QUEUE_PUT, actions)
    assert put == "ok", put
    assert driver.execute_async_script(QUEUE_COUNT) == len(actions)
    started = time.perf_counter()
    network(driver, offline=False)
    deadline = started + 120
    while True:
        left = driver.execute_async_script(QUEUE_COUNT)
        if left == 0:
            return time.perf_counter() - started
        if time.perf_counter() > deadline:
            sys.exit(f"the queue still holds {left} scans after 120 s")
        time.sleep(0.05)


def sync(base: str, serials: list[str], store_id: int, user_id: int) -> tuple[float, list[str]]:
    """Queue one inspection per serial offline, go online; seconds until the queue is empty
    and the client ids sent."""
    driver = browser(base)
    try:
        driver.get(f"{base}/m/login")
        wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-test=username] input"))
        driver.find_element(By.CSS_SELECTOR, "[data-test=username] input").send_keys("inspector")
        driver.find_element(By.CSS_SELECTOR, "[data-test=password] input").send_keys(DEMO_PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "[data-test=login]").click()
        wait(driver).until(
            lambda d: "inspector" in d.find_element(By.CSS_SELECTOR, "[data-test=hello]").text
        )
        driver.get(f"{base}/m/inspect")
        wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-test=scan-input]"))
        go_offline(driver)
        now = int(time.time() * 1000)
        gps = {"lat": GPS["latitude"], "lng": GPS["longitude"]}  # as gps.ts fixes it
        actions = [
            {
                "id": "m-" + secrets.token_hex(16),
                "kind": "inspection",
                "user": user_id,
                "body": {"code": s, "gps": gps, "note": "", "store_id": store_id},
                "label": f"STORE-HZ-01 · {s}",
                "created": now,
                "n": n,
                "attempts": 0,
            }
            for n, s in enumerate(serials, 1)
        ]
        seconds = flush(driver, actions)
        # the answers were lost, say: the same queue again (same client ids) counts nothing twice
        go_offline(driver)
        again = flush(driver, actions)
        print(f"the same {len(actions):,} scans re-sent (replayed by client id): {again:.2f} s")
        return seconds, [a["id"] for a in actions]
    finally:
        driver.quit()


async def check(url: str, client_ids: list[str], serials: list[str]) -> None:
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        row = await (
            await conn.execute(
                """SELECT count(*) AS scans, count(DISTINCT client_id) AS ids,
                          count(*) FILTER (WHERE result = 'in_channel') AS in_channel
                   FROM inspection_scans WHERE client_id = ANY(%s)""",
                (client_ids,),
            )
        ).fetchone()
        records = await (
            await conn.execute(
                """SELECT count(*) AS n, count(DISTINCT serial) AS serials FROM inspections
                   WHERE serial = ANY(%s)""",
                (serials,),
            )
        ).fetchone()
    n = len(client_ids)
    print(f"server: {row['scans']} scans for {n} client ids ({row['ids']} distinct, "
          f"{row['in_channel']} in_channel); {records['n']} unit records of "
          f"{records['serials']} serials")  # fmt: skip
    ok = (row["scans"], row["ids"], records["n"], records["serials"]) == (n, n, n, n)
    if not ok:
        sys.exit("FAIL: the server does not hold each scan exactly once")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, "
          f"Python {platform.python_version()}")  # fmt: skip
    url = database()
    started = time.perf_counter()
    serials, org, inspector_id = asyncio.run(shipped_units(url, args.scans))
    print(f"setup: {len(serials):,} units issued, packed and shipped to AGENT-ZJ in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    env = {"TRACECODE_DATABASE_URL": url, "TRACECODE_MASTER_KEY": MASTER_KEY}
    with (
        tempfile.TemporaryDirectory() as logs,
        granian_server(Path(logs), env=env, workers=args.workers) as server,
    ):
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        seconds, client_ids = sync(server.base, serials, org["STORE-HZ-01"], inspector_id)
        print("load average after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    asyncio.run(check(url, client_ids, serials))
    verdict = "OK" if seconds <= TARGET else "MISSED"
    print(f"synced {len(client_ids):,} queued scans in {seconds:.2f} s "
          f"({len(client_ids) / seconds:,.0f} scans/s; granian workers: {args.workers}); "
          f"target <= {TARGET:.0f} s: {verdict}")  # fmt: skip
    return 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
