"""The console's operations pages end to end in headless Chromium (issue 17): the real app under
granian with the built console (``make console``).

As the brand administrator: an alert (seeded by SQL, as the verification service writes them)
is shown in its severity's colour and acknowledged; a small batch is issued and exported, the
export queued as a job (the async threshold lowered) and written by the worker's function while
the page polls it, its progress bar watched to done, and a printer file downloaded; the
management center's documents are filtered and exported as CSV (the file read back); seeded
verification records are listed in their results' colours. As the planner: the code batches are there, the users are not.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from app.codes import exports
from app.web.console import DEFAULT_DIST
from tests import test_console_browser as base
from tests.servers import granian_server
from tests.test_console_browser import (
    _click,
    _console_errors,
    _downloaded,
    _find,
    _menus,
    _sign_in,
    _sign_out,
    _wait,
)

chromium, browser, downloads = base.chromium, base.browser, base.downloads  # the same Chromium

ASYNC_THRESHOLD = 100  # exports larger than this are queued as jobs on this server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dist = Path(os.environ.get("TRACECODE_CONSOLE_DIST") or DEFAULT_DIST)  # the server's too
    if not (dist / "index.html").is_file():
        pytest.fail(f"{dist} is missing: run `make console` (make test builds it)")
    env = {"TRACECODE_EXPORT_ASYNC_THRESHOLD": str(ASYNC_THRESHOLD)}
    with granian_server(tmp_path_factory.mktemp("granian"), env=env) as running:
        yield running.base


@pytest.fixture(scope="module")
async def demo_units(app: Any, demo: Any) -> list[Any]:
    """Demo units packed, shipped to the agent and its store: the documents of the demo."""
    from app.demo import demo_codes

    async with app.state.pool.connection() as conn:
        return await demo_codes(conn, app.state.scheme, app.state.settings, 2)


def _start(driver: WebDriver, base_url: str, username: str) -> None:
    """Sign in afresh (a failed test before may have left a session behind)."""
    driver.get(f"{base_url}/console/login")
    driver.execute_script("localStorage.clear()")
    _sign_in(driver, base_url, username)


def _row(driver: WebDriver, text: str) -> WebElement:
    """The table row holding ``text`` in one of its cells."""
    return _wait(driver).until(
        lambda d: d.find_element(
            By.XPATH, f"//tr[contains(@class, 'el-table__row')][.//td[contains(., '{text}')]]"
        )
    )


def _column(driver: WebDriver, index: int) -> list[str]:
    cells = driver.find_elements(
        By.CSS_SELECTOR, f".el-table__body tr.el-table__row td:nth-child({index}) .cell"
    )
    return [c.text for c in cells]


def _pick(driver: WebDriver, select_css: str, label: str) -> None:
    """Open an Element Plus select and click its option ``label`` (options live in the body)."""
    driver.find_element(By.CSS_SELECTOR, select_css).click()
    option = _wait(driver).until(
        lambda d: next(
            (
                o
                for o in d.find_elements(By.CSS_SELECTOR, ".el-select-dropdown__item")
                if o.is_displayed() and o.text == label
            ),
            None,
        )
    )
    option.click()


async def test_admin_acknowledges_an_alert_coloured_by_severity(
    server: str, browser: WebDriver, demo: Any, app: Any
) -> None:
    message = f"console e2e critical {uuid.uuid4().hex[:8]}"
    async with app.state.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO alerts (brand_id, org_id, kind, severity, message, dedup_key) "
            "VALUES (%s, %s, 'repeat', 'critical', %s, %s) RETURNING id",
            (demo["BRAND-LUMI"], demo["BRAND-LUMI"], message, f"e2e:{message}"),
        )
        alert_id = (await cur.fetchone())["id"]

    _start(browser, server, "admin")
    browser.find_element(By.CSS_SELECTOR, '[data-menu="alerts"]').click()
    row = _row(browser, message)
    tag = row.find_element(By.CSS_SELECTOR, '[data-severity="critical"]')
    assert "el-tag--danger" in (tag.get_attribute("class") or "")
    # its text content: ``.text`` is empty while the cell is out of view (a clean-clone run)
    assert (tag.get_attribute("textContent") or "").strip() == "严重"
    row.find_element(By.CSS_SELECTOR, '[data-action="acknowledge"]').click()
    _wait(browser).until(lambda d: _row(d, message).find_elements(By.CSS_SELECTOR, "[data-acked]"))

    async with app.state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT acknowledged_at IS NOT NULL AS acked, acknowledged_by FROM alerts WHERE id = %s",
            (alert_id,),
        )
        found = await cur.fetchone()
    assert found["acked"] and found["acknowledged_by"] is not None

    # the open-only filter (in the address) no longer lists it
    browser.get(f"{server}/console/alerts?open=true&severity=critical")
    _find(browser, "#alerts")
    _wait(browser).until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".el-loading-mask"))
    await asyncio.sleep(0.3)
    assert not browser.find_elements(By.XPATH, f"//td[contains(., '{message}')]")
    assert not _console_errors(browser)
    _sign_out(browser)


async def test_admin_sees_verification_records_coloured_by_result(
    server: str, browser: WebDriver, demo: Any, app: Any
) -> None:
    """Three records seeded as the write-behind stores them: the menu opens the page, the code
    filter (in the address) finds them, each tag in its result's colour."""
    prefix = f"E2E{uuid.uuid4().hex[:8].upper()}"
    seeded = {"genuine": "success", "wrong_pin": "warning", "not_genuine": "danger"}
    async with app.state.pool.connection() as conn:
        for n, result in enumerate(seeded):
            await conn.execute(
                """INSERT INTO verifications (at, record_key, serial, brand_id, result, reason,
                       queries, province, city)
                   VALUES (now() - %s * interval '1 minute', %s, %s, %s, %s, %s, 1, '浙江省',
                           '杭州市')""",
                (n, uuid.uuid4(), f"{prefix}{n}", demo["BRAND-LUMI"], result, result),
            )

    _start(browser, server, "admin")
    browser.find_element(By.CSS_SELECTOR, '[data-menu="verifications"]').click()
    _find(browser, "#verifications")
    browser.get(f"{server}/console/verifications?serial={prefix}")
    for n, (result, colour) in enumerate(seeded.items()):
        tag = _row(browser, f"{prefix}{n}").find_element(By.CSS_SELECTOR, "[data-result]")
        assert tag.get_attribute("data-result") == result
        assert f"el-tag--{colour}" in (tag.get_attribute("class") or "")
    assert _column(browser, 4) == [f"{prefix}{n}" for n in range(3)]  # newest first
    assert not _console_errors(browser)
    _sign_out(browser)


async def test_admin_issues_a_batch_and_watches_its_export_to_done(
    server: str, browser: WebDriver, downloads: Path, demo: Any, app: Any, monkeypatch: Any
) -> None:
    note = f"e2e-{uuid.uuid4().hex[:8]}"
    _start(browser, server, "admin")
    browser.find_element(By.CSS_SELECTOR, '[data-menu="batches"]').click()
    _click(browser, '[data-action="issue"]')
    size = _find(browser, '[data-field="size"] input')
    size.clear()
    size.send_keys("5000")
    browser.find_element(By.CSS_SELECTOR, 'input[name="note"]').send_keys(note)
    browser.find_element(By.CSS_SELECTOR, '[data-action="issue-submit"]').click()
    row = _row(browser, note)
    batch_no = int(row.find_element(By.CSS_SELECTOR, "td:first-child .cell").text)
    assert row.find_element(By.CSS_SELECTOR, '[data-state="issued"]')

    row.find_element(By.CSS_SELECTOR, '[data-action="export"]').click()
    _find(browser, 'input[name="passphrase"]').send_keys("console e2e passphrase")
    browser.find_element(By.CSS_SELECTOR, '[data-action="export-start"]').click()
    job = _find(browser, "[data-job-state]")
    assert job.get_attribute("data-job-state") == "queued"  # 5000 > the threshold: a job

    async with app.state.pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM code_exports WHERE batch_no = %s", (batch_no,))
        export_id = (await cur.fetchone())["id"]

    # The worker's function (workers/codes.py run_export_job) writes it in five slow steps
    # while the page polls GET /exports/{id}.
    monkeypatch.setattr(exports, "STEP", 1000)
    ran: list[str] = []
    worker = threading.Thread(
        target=lambda: ran.append(
            exports.run_export(
                app.state.db_url,
                app.state.settings,
                app.state.scheme,
                str(export_id),
                lambda done, total: time.sleep(0.6),
            )
        )
    )
    worker.start()
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        box = browser.find_element(By.CSS_SELECTOR, "[data-job-state]")
        state = box.get_attribute("data-job-state") or ""
        percent = box.find_element(
            By.CSS_SELECTOR, ".el-progress__text, .el-progress-bar__innerText"
        )
        seen.append((state, percent.text))
        if state == "done":
            break
        await asyncio.sleep(0.05)
    worker.join(60)
    assert ran == ["done"]
    assert seen[-1] == ("done", "100%"), seen
    between = {p for s, p in seen if s == "running" and p not in ("0%", "100%")}
    assert between, f"no progress between 0 and 100 seen: {seen}"

    _click(browser, '[data-download="outer"]')
    file = _downloaded(downloads, f"{export_id}-outer.tcpf")
    assert file.stat().st_size > 0
    close = [
        b
        for b in browser.find_elements(By.CSS_SELECTOR, ".el-dialog__headerbtn")
        if b.is_displayed()
    ]
    close[0].click()
    _wait(browser).until(
        lambda d: _row(d, note).find_elements(By.CSS_SELECTOR, '[data-state="exported"]')
    )
    assert not _console_errors(browser)
    _sign_out(browser)


async def test_admin_filters_documents_and_exports_them_as_csv(
    server: str, browser: WebDriver, downloads: Path, demo: Any, demo_units: list[Any]
) -> None:
    _start(browser, server, "admin")
    browser.find_element(By.CSS_SELECTOR, '[data-menu="center-documents"]').click()
    _wait(browser).until(lambda d: _column(d, 1))
    assert len(set(_column(browser, 2))) > 1  # several kinds before the filter

    _pick(browser, '[data-filter="kind"]', "出库")
    browser.find_element(By.CSS_SELECTOR, '[data-action="search"]').click()
    _wait(browser).until(lambda d: _column(d, 2) and set(_column(d, 2)) == {"出库"})
    assert "kind=outbound" in browser.current_url
    shown = set(_column(browser, 1))
    total = int(re.sub(r"\D", "", _find(browser, ".el-pagination__total").text))

    browser.find_element(By.CSS_SELECTOR, '[data-export="csv"]').click()
    exported = _downloaded(downloads, "documents-*.csv")
    rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8-sig"))))
    assert rows and {row["kind"] for row in rows} == {"outbound"}
    # every document of the filter, not only the page shown (the earlier tests of a worker may
    # have made more than a page: the test compared the file with the page)
    assert len(rows) == total and shown <= {row["doc_no"] for row in rows}
    assert not _console_errors(browser)
    _sign_out(browser)


async def test_a_planner_sees_the_batches_but_not_the_users(
    server: str, browser: WebDriver, demo_units: list[Any]
) -> None:
    # a batch to list (the demo's, issued by ``demo_units``): the demo data alone holds none,
    # and on a worker where no earlier test had issued one the list stayed empty
    _start(browser, server, "planner")
    menus = _menus(browser)
    assert "batches" in menus and "users" not in menus and "alerts" not in menus
    browser.find_element(By.CSS_SELECTOR, '[data-menu="batches"]').click()
    _wait(browser).until(lambda d: _column(d, 1))
    assert browser.find_element(By.CSS_SELECTOR, '[data-action="issue"]').is_displayed()
    browser.get(f"{server}/console/users")
    _find(browser, "#forbidden")
    _sign_out(browser)


async def test_admin_traces_a_shipped_unit(
    server: str, browser: WebDriver, demo_units: list[Any]
) -> None:
    serial = next(u.serial for u in demo_units if u.story.startswith("shipped"))
    _start(browser, server, "admin")
    browser.find_element(By.CSS_SELECTOR, '[data-menu="trace"]').click()
    _find(browser, 'input[name="code"]').send_keys(serial)
    browser.find_element(By.CSS_SELECTOR, '[data-action="trace"]').click()
    _wait(browser).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#trace-events .el-timeline-item")) >= 2
    )
    assert serial in browser.find_element(By.ID, "trace-summary").text
    assert f"code={serial}" in browser.current_url
    assert not _console_errors(browser)
    browser.find_element(By.CSS_SELECTOR, 'input[name="code"]').clear()
    browser.find_element(By.CSS_SELECTOR, 'input[name="code"]').send_keys("not-a-code")
    browser.find_element(By.CSS_SELECTOR, '[data-action="trace"]').click()
    # the API's refusal in the console's language, with its stable code
    assert _find(browser, "#trace-error").text == "码的格式不正确（malformed_code）"
    _sign_out(browser)


async def test_admin_closes_one_order_and_cancels_another(
    server: str, browser: WebDriver, app: Any, demo: Any
) -> None:
    """The orders page's buttons (orders.write): close an open order, cancel an untouched one;
    an ended order shows neither."""
    from app.logistics.orders import create_order
    from app.logistics.schemas import OrderIn, OrderLineIn
    from tests.helpers import acting

    tag = uuid.uuid4().hex[:8].upper()
    async with app.state.pool.connection() as conn:
        actor = await acting(conn, "partner")
        found = await conn.execute("SELECT id FROM products WHERE product_no = 'LM-SC-30'")
        product = (await found.fetchone())["id"]
        for end in ("CLOSE", "CANCEL"):
            data = OrderIn(
                erp_no=f"UI-{tag}-{end}",
                from_org_id=demo["FACTORY-SZ"],
                to_org_id=demo["AGENT-ZJ"],
                lines=[OrderLineIn(product_id=product, quantity=5)],
            )
            await create_order(conn, actor, data)
    _start(browser, server, "admin")
    _console_errors(browser)  # drained: an earlier test's answers (its 400s) are not this one's
    for end, button, shown in (
        ("CLOSE", "close-order", "已关闭"),
        ("CANCEL", "cancel-order", "已取消"),
    ):
        browser.get(f"{server}/console/orders?erp_no=UI-{tag}-{end}")
        row = _row(browser, f"UI-{tag}-{end}")
        row.find_element(By.CSS_SELECTOR, f".{button}").click()
        _click(browser, ".el-message-box__btns .el-button--primary")
        number = f"UI-{tag}-{end}"
        _wait(browser).until(lambda d, n=number, s=shown: s in _row(d, n).text)
        assert not _row(browser, number).find_elements(By.CSS_SELECTOR, ".close-order")
    async with app.state.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT erp_no, status FROM orders WHERE erp_no LIKE %s", (f"UI-{tag}-%",)
            )
        ).fetchall()
    assert {r["erp_no"]: r["status"] for r in rows} == {
        f"UI-{tag}-CLOSE": "closed",
        f"UI-{tag}-CANCEL": "cancelled",
    }
    assert not _console_errors(browser)
    _sign_out(browser)


def _plan_actions(driver: WebDriver, server: str, plan_id: int) -> list[str]:
    """The actions the plans page's drawer offers on the plan (after its answer has come)."""
    driver.get(f"{server}/console/field/plans?status=submitted&per_page=200")
    _click(driver, f'[data-plan="{plan_id}"]')
    _find(driver, '[data-test="plan-status"]')
    time.sleep(0.5)
    return [
        e.get_attribute("data-action") or ""
        for e in driver.find_elements(By.CSS_SELECTOR, ".el-drawer [data-action]")
        if e.is_displayed()
    ]


_plan_weeks = itertools.count()


async def test_only_the_reps_supervisor_is_offered_to_decide_a_plan(
    server: str, browser: WebDriver, demo: Any, client: Any, login: Any
) -> None:
    """A probe: a plan submitted by ``fieldrep`` (supervisor ``fieldsup``) opened by the Zhejiang
    agent's administrator (``org_admin``: field.supervise and field.read) showed Approve and
    Return, which always fail (403 ``not_supervisor``): the drawer offered them to any holder of
    field.supervise. The plan now names its rep's supervisor, and only that user is offered them."""
    # a Monday no other test plans, new on each run: the test runs once more when Chromium dies
    # under it (tests/browser.py), and the plan of its first run held the fixed week it had
    # (409 duplicate_plan). 2039-01-03 is a Monday; the other tests' weeks of fieldrep are
    # before 2039 or (tests/test_mobile_field_browser.py) from 2045. The next week on each run
    # of this process (a random one of 300 met the first run's once in 300 reruns).
    monday = (date(2039, 1, 3) + timedelta(weeks=next(_plan_weeks))).isoformat()
    rep = await login("fieldrep")
    made = await client.post(
        "/field/plans",
        headers=rep,
        json={
            "period": "week",
            "starts_on": monday,
            "title": f"ui {uuid.uuid4().hex[:6]}",
            "items": [{"store_id": demo["STORE-HZ-01"], "planned_on": monday}],
        },
    )
    assert made.status_code == 201, made.text
    plan_id = made.json()["id"]
    submitted = await client.post(f"/field/plans/{plan_id}/submit", headers=rep)
    assert submitted.status_code == 200, submitted.text
    refused = await client.post(
        f"/field/plans/{plan_id}/approve", headers=await login("agent_admin")
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "not_supervisor"

    _start(browser, server, "agent_admin")
    assert _plan_actions(browser, server, plan_id) == []
    _start(browser, server, "fieldsup")  # the drawer stays open over the header: a new session
    assert _plan_actions(browser, server, plan_id) == ["approve", "return"]


async def test_an_approver_approves_one_exception_outbound_and_rejects_another(
    server: str, browser: WebDriver, client: Any, login: Any, app: Any, demo: Any
) -> None:
    """L4 in the console: the factory's approver had no page to decide the warehouse's exception
    outbounds (gifts, samples) — only the API. The approvals page lists those pending; approve
    with a note (the goods leave stock), reject with a reason (none given: the box asks for
    one); the requester's note stays beside the decision's."""
    from tests.rebates_support import store_goods
    from tests.test_logistics import confirm, document

    goods = await store_goods(client, login, app, demo)  # case 2 never left the factory
    clerk = await login("clerk")
    pending = []
    for unit in goods["units"][20:22]:
        doc = await document(client, clerk, [unit], kind="exception", reason="gift", note="fair")
        assert (await confirm(client, clerk, doc)).json()["status"] == "pending_approval"
        pending.append(doc)
    gift, sample = pending
    _start(browser, server, "approver")
    _console_errors(browser)
    assert "approvals" in _menus(browser)
    for doc, action, note in ((gift, "approve", "trade fair ok"), (sample, "reject", "")):
        browser.get(f"{server}/console/approvals?doc_no={doc['doc_no']}")
        _row(browser, doc["doc_no"])
        _click(browser, f'[data-{action}="{doc["id"]}"]')
        box = _find(browser, ".el-message-box__input input")
        if action == "reject":  # a rejection says why: the empty box is refused
            _click(browser, ".el-message-box__btns .el-button--primary")
            _find(browser, ".el-message-box__errormsg")
            note = "no stock for samples"
        box.send_keys(note)
        _click(browser, ".el-message-box__btns .el-button--primary")
        _wait(browser).until(
            lambda d, n=doc["doc_no"]: (
                not d.find_elements(
                    By.XPATH, f"//tr[contains(@class, 'el-table__row')][.//td[contains(., '{n}')]]"
                )
            )
        )  # decided: no longer pending
    approver = await login("approver")
    decided = [
        (await client.get(f"/documents/{d['id']}", headers=approver)).json() for d in pending
    ]
    assert [(d["status"], d["note"], d["decision_note"]) for d in decided] == [
        ("confirmed", "fair", "trade fair ok"),
        ("rejected", "fair", "no stock for samples"),
    ]
    assert not _console_errors(browser)
    _sign_out(browser)
