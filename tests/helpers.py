"""Assertions shared by the tests."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Every error has the one shape: {"error": {"code", "message", "details"}}."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


def scheme_for_tests() -> Any:
    """The serial scheme of the test session's settings (the app's is built the same way)."""
    from app.codes.scheme import scheme_from_settings
    from app.config import load_settings

    settings = load_settings()
    return scheme_from_settings(settings)


async def issue_units(
    client: Any, login: Any, demo: Any, size: int, product_no: str = "LM-SC-30"
) -> tuple[int, int]:
    """A new batch of unit codes for a demo product: (batch_no, product_id)."""
    planner = await login("planner")
    found = await client.get("/products", headers=planner, params={"q": product_no})
    product_id = found.json()["items"][0]["id"]
    response = await client.post(
        "/batches",
        headers=planner,
        json={"size": size, "printer_id": demo["PRINTER-SH"], "product_id": product_id},
    )
    assert response.status_code == 201, response.text
    return int(response.json()["batch_no"]), int(product_id)


async def issue_cases(client: Any, login: Any, demo: Any, level: str, size: int) -> list[str]:
    """SSCCs of a new case-code batch of one packing level."""
    response = await client.post(
        "/case-batches",
        headers=await login("planner"),
        json={"level": level, "size": size, "printer_id": demo["PRINTER-SH"]},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    first = int(body["first_sscc"][:-1])
    from app._core import gs1_check_digit

    return [f"{first + i:017d}{gs1_check_digit(f'{first + i:017d}')}" for i in range(size)]


async def activate(
    client: Any,
    login: Any,
    serials: list[str],
    product_id: int,
    line: str = "T1",
    lot: str = "LOT1",
) -> dict[str, Any]:
    """Activate units on a packing line (commissioning), as the demo line operator."""
    operator = await login("operator")
    response = await client.put(
        f"/lines/{line}/context",
        headers=operator,
        json={"product_id": product_id, "lot": lot, "production_date": "2026-11-01"},
    )
    assert response.status_code == 200, response.text
    scans = [
        {"id": f"act-{serial}", "code": serial, "at": "2026-11-01T08:00:00+08:00"}
        for serial in serials
    ]
    response = await client.post(f"/lines/{line}/scans", headers=operator, json={"scans": scans})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["rejected"] == 0, body
    return body


def epcis_conformance() -> Any:
    """The EPCIS conformance documents (``../shared/epcis-conformance`` beside the checkout, or
    this machine's ``/work/shared`` when the checkout is a clone elsewhere, as CI's is)."""
    from pathlib import Path

    for base in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")):
        if (base / "epcis-conformance" / "manifest.json").is_file():
            return base / "epcis-conformance"
    raise FileNotFoundError("../shared/epcis-conformance (the EPCIS conformance documents)")


_orders = itertools.count()


async def sales_order(
    client: Any, login: Any, demo: Any, product_id: int, quantity: int, to: str = "AGENT-ZJ"
) -> int:
    """A new sales order (by the ERP partner) from the factory to a demo organisation: its id."""
    response = await client.post(
        "/orders",
        headers=await login("partner"),
        json={
            "erp_no": f"SO-T{next(_orders)}-{product_id}",
            "kind": "sales",
            "from_org_id": demo["FACTORY-SZ"],
            "to_org_id": demo[to],
            "lines": [{"product_id": product_id, "quantity": quantity}],
        },
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def key_of(
    client: Any, headers: dict[str, str], permissions: list[str], org_id: int | None = None
) -> dict[str, str]:
    """The headers of a new API key (a partner system's) made by the caller of ``headers``,
    with ``permissions``, for ``org_id`` (none: the caller's organisation): its actions are
    recorded as its maker's (``Principal.person``)."""
    import secrets

    body: dict[str, Any] = {"name": f"crm {secrets.token_hex(3)}", "permissions": permissions}
    if org_id is not None:
        body["org_id"] = org_id
    made = await client.post("/api-keys", headers=headers, json=body)
    assert made.status_code == 201, made.text
    return {"X-API-Key": made.json()["key"]}


async def acting(conn: Any, username: str) -> Any:
    """The principal of a demo user, loaded on ``conn``: for driving a service on a connection
    of its own (a transaction held open while a request races it)."""
    from app.auth.service import load_user

    row = await (
        await conn.execute("SELECT id FROM users WHERE username = %s", (username,))
    ).fetchone()
    return await load_user(conn, row["id"])


@asynccontextmanager
async def lifespan_of(app: Any) -> AsyncIterator[None]:
    """``app``'s lifespan, run by a task of its own (the lifespan's task group must be entered
    and left by one task): a start-up error is raised here; shut down on leaving."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def run_lifespan() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run_lifespan())
    await asyncio.wait([task, asyncio.create_task(started.wait())], return_when="FIRST_COMPLETED")
    if task.done():
        task.result()  # start-up failed: raise its error
    try:
        yield
    finally:
        stop.set()
        await task


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[Any]:
    """An app of its own, its lifespan running (``lifespan_of``), and an httpx client calling
    it."""
    import httpx

    async with (
        lifespan_of(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=60
        ) as client,
    ):
        yield client


async def every_item(
    client: Any, path: str, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    """Every item of a paged list, page after page of 200, each page saying the same total: a
    list of the demo's (its organisations, keys, categories, lines …) grows with every test of
    the process, past the first 200 on a whole run, and what a test made may sit on any page
    (lists in display, id or path order put a new item last, or anywhere)."""
    items: list[dict[str, Any]] = []
    total = None
    for page in itertools.count(1):
        answer = await client.get(
            path, headers=headers, params={**params, "page": page, "per_page": 200}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert total in (None, body["total"]), (total, body["total"])
        total = body["total"]
        items += body["items"]
        if not body["items"] or len(items) >= total:
            break
    assert len(items) == total, (len(items), total)
    return items


async def new_org(
    client: Any, headers: dict[str, str], kind: str, parent_id: int, **fields: Any
) -> dict[str, Any]:
    """An organisation made for the test by ``headers``' holder under ``parent_id`` (a random
    ``name`` and ``erp_code`` unless given in ``fields``): the 201's body."""
    import secrets

    tag = secrets.token_hex(4)
    body = {"kind": kind, "name": f"{kind} {tag}", "erp_code": f"T-{tag}", "parent_id": parent_id}
    made = await client.post("/orgs", headers=headers, json={**body, **fields})
    assert made.status_code == 201, made.text
    return dict(made.json())


async def new_user(
    client: Any, headers: dict[str, str], org_id: int, roles: list[str], **fields: Any
) -> dict[str, Any]:
    """A user made for the test by ``headers``' holder at ``org_id`` (``fields``: more of its
    own, e.g. ``phone``; a random ``username`` and ``password`` unless given): the 201's body,
    with the ``password`` it was given."""
    import secrets

    body = {
        "org_id": org_id,
        "username": f"u-{secrets.token_hex(5)}",
        "password": secrets.token_urlsafe(16),
        "roles": roles,
        **fields,
    }
    made = await client.post("/users", headers=headers, json=body)
    assert made.status_code == 201, made.text
    return {**made.json(), "password": body["password"]}


async def signed_in(client: Any, user: dict[str, Any]) -> dict[str, str]:
    """The Authorization headers of ``user`` (``new_user``'s answer) signed in by password."""
    token = await client.post(
        "/auth/login", json={"username": user["username"], "password": user["password"]}
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def onboarded_brand(
    client: Any, login: Any, **fields: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """A brand onboarded for the test by the platform operator (``fields``: more of the brand's
    own, e.g. its ``gs1_company_prefix``), and its ``brand_admin``'s headers: the brand, the
    headers."""
    import secrets

    platform = await login("platform")
    # 4 bytes: with 3, the ~34 brands of a run shared a tag (erp_code) once in ~30,000 runs
    tag = secrets.token_hex(4).upper()
    body = {"kind": "brand", "name": f"Tenant {tag}", "erp_code": f"TN-{tag}", **fields}
    brand = await client.post("/orgs", headers=platform, json=body)
    assert brand.status_code == 201, brand.text
    username, password = f"tn-{tag.lower()}", secrets.token_urlsafe(16)
    user = {"org_id": brand.json()["id"], "username": username, "password": password}
    made = await client.post("/users", headers=platform, json={**user, "roles": ["brand_admin"]})
    assert made.status_code == 201, made.text
    token = await client.post("/auth/login", json={"username": username, "password": password})
    assert token.status_code == 200, token.text
    return brand.json(), {"Authorization": f"Bearer {token.json()['access_token']}"}


async def within_one_minute(seconds: float = 10.0) -> None:
    """Wait for the next clock minute when fewer than ``seconds`` are left of this one. The
    verifier counts an address's verifications per clock minute (``app/verify/service.py``):
    a test's requests split across two minutes are counted apart, and the limit it expects
    is never reached."""
    left = 60 - time.time() % 60
    if left < seconds:
        await asyncio.sleep(left + 0.1)


# The people analytics count a verification when it is inserted (the table's trigger queues it:
# ``analytics_verify_queue``); nothing in the service deletes one or moves it to another day,
# but a test that does so by SQL left the summaries counting it where it was — the recount of a
# later test on the same database found it (a shuffled-order run: three wrong PINs too many).
_REQUEUE = """
INSERT INTO analytics_verify_queue (brand_id, day, product_id, province, city, result, n)
SELECT brand_id, (at AT TIME ZONE 'Asia/Shanghai')::date, product_id, coalesce(province, ''),
       coalesce(city, ''), result, {sign}count(*)
FROM verifications WHERE id = ANY(%s) AND brand_id IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6
"""


@asynccontextmanager
async def verifications_changed(conn: Any, ids: list[int]) -> AsyncIterator[None]:
    """Around a test's own UPDATE or DELETE of verification records ``ids``: the analytics
    uncount them as they were and count them as they are after (none, deleted)."""
    await conn.execute(_REQUEUE.format(sign="-"), (ids,))
    yield
    await conn.execute(_REQUEUE.format(sign=""), (ids,))


async def answered_before_its_body(
    client: Any, url: str, headers: dict[str, str], content_type: str = "application/octet-stream"
) -> Any:
    """The answer to ``POST url`` whose body stalls after its first bytes (a client holding an
    upload back), which must come within 3 s, without the rest of the body."""
    release = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"
        await release.wait()
        yield b"\x00" * 16

    started = time.monotonic()
    task = asyncio.create_task(
        client.post(url, headers={**headers, "Content-Type": content_type}, content=stalled())
    )
    done, _ = await asyncio.wait([task], timeout=3)
    release.set()
    answer = await task
    assert done, f"POST {url}: no answer in {time.monotonic() - started:.1f} s, the body waited for"
    return answer


def code_of(app: Any, serial: str) -> int:
    """A unit serial's code id (its batch number and index in one bigint)."""
    batch_no, index, _ = app.state.scheme.verify(serial)
    return int(batch_no << 32 | index)
