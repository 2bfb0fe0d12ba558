"""Serial allocation (issue 19 item 4): numbers for line systems and partners' serialization
servers, from a batch or a pool that rolls over, given out once even under concurrent requests,
streamed or encrypted, and every code traceable to the allocation that received it."""

from __future__ import annotations

import asyncio
import io
import secrets
from typing import Any

import httpx
import pytest
from Crypto.PublicKey import RSA

from app.codes import printfile
from app.codes.allocation_stream import STEP
from tests.field_support import other_brand_admin
from tests.helpers import activate, assert_error, issue_units, key_of, scheme_for_tests
from tests.race_support import lock_waiters
from tests.stream_support import Paused

SCHEME = scheme_for_tests()


async def _allocate(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> Any:
    return await client.post("/allocations", headers=headers, json=body)


def _codes(response: httpx.Response, pins: bool = True) -> list[tuple[int, int]]:
    """(batch_no, index) of every streamed line, each serial verified and its PIN checked."""
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "text/plain; charset=us-ascii"  # one charset
    found = []
    for line in response.text.splitlines():
        if pins:
            serial, pin = line.split(",")
            assert SCHEME.check_pin(serial, pin)
        else:
            serial = line
        batch_no, index, _ = SCHEME.verify(serial)
        found.append((batch_no, index))
    assert len(found) == int(response.headers["x-allocation-count"])
    return found


def _ranges(body: dict[str, Any]) -> list[tuple[int, int]]:
    return [
        (r["batch_no"], i)
        for r in body["ranges"]
        for i in range(r["first_index"], r["last_index"] + 1)
    ]


async def _recorded(client: httpx.AsyncClient, headers: dict[str, str], response: Any) -> Any:
    found = await client.get(response.headers["location"], headers=headers)
    assert found.status_code == 200, found.text
    return found.json()


async def test_100_concurrent_allocations_of_one_batch_are_disjoint_and_cover_it(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    printer = await login("printer")  # the printer of the batch allocates from it
    counts = [1 + i % 23 for i in range(100)]
    batch_no, _ = await issue_units(client, login, demo, sum(counts))
    responses = await asyncio.gather(
        *(_allocate(client, printer, batch_no=batch_no, count=n) for n in counts)
    )
    seen: set[tuple[int, int]] = set()
    for n, response in zip(counts, responses, strict=True):
        codes = _codes(response)
        assert len(codes) == n
        assert not seen & set(codes)  # no code given out twice
        seen |= set(codes)
        recorded = await _recorded(client, printer, response)
        assert _ranges(recorded) == codes  # the stream is exactly the recorded range
        assert recorded["total"] == n and recorded["requested"] == n
    assert seen == {(batch_no, i) for i in range(sum(counts))}  # all of it, nothing beyond
    error = assert_error(
        await _allocate(client, printer, batch_no=batch_no, count=1), 409, "not_enough_codes"
    )
    assert error["details"]["remaining"] == 0
    batch = await client.get(f"/batches/{batch_no}", headers=await login("planner"))
    assert batch.json()["state"] == "exported"


async def test_a_pool_made_through_an_api_key_names_its_maker(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: a printer's serialization server (an API key the admin made for the printer,
    ``codes.issue`` and ``codes.allocate``) pooled a batch addressed to it, and the pool's
    ``created_by`` was null — a pool made by nobody. It names the person behind the key now
    (``Principal.person``)."""
    batch_no, _ = await issue_units(client, login, demo, 5)
    admin = await login("admin")
    key = await key_of(client, admin, ["codes.issue", "codes.allocate"], demo["PRINTER-SH"])
    pool = await client.post(
        "/pools", headers=key, json={"name": f"key-{batch_no}", "batches": [batch_no]}
    )
    assert pool.status_code == 201, pool.text
    maker = (await client.get("/auth/me", headers=admin)).json()["user_id"]
    assert pool.json()["created_by"] == maker, pool.json()


async def test_a_pool_rolls_over_to_its_next_batch_and_refuses_or_serves_partially(
    client: httpx.AsyncClient, login: Any, demo: Any, conn: Any
) -> None:
    planner = await login("planner")
    first, _ = await issue_units(client, login, demo, 20)
    second, _ = await issue_units(client, login, demo, 30)
    pool = await client.post(
        "/pools", headers=planner, json={"name": f"line-7-{first}", "batches": [first, second]}
    )
    assert pool.status_code == 201, pool.text
    pool_id = pool.json()["id"]
    assert pool.json()["remaining"] == 50

    rolled = await _allocate(client, planner, pool_id=pool_id, count=25, pins=False)
    codes = _codes(rolled, pins=False)
    assert codes == [(first, i) for i in range(20)] + [(second, i) for i in range(5)]
    recorded = await _recorded(client, planner, rolled)
    assert [(r["batch_no"], r["first_index"], r["last_index"]) for r in recorded["ranges"]] == [
        (first, 0, 19),
        (second, 0, 4),
    ]
    assert recorded["pool_id"] == pool_id and recorded["with_pins"] is False

    error = assert_error(
        await _allocate(client, planner, pool_id=pool_id, count=26), 409, "not_enough_codes"
    )
    assert error["details"] == {"remaining": 25, "requested": 26}
    partial = await _allocate(client, planner, pool_id=pool_id, count=26, partial=True)
    assert _codes(partial) == [(second, i) for i in range(5, 30)]
    assert (await _recorded(client, planner, partial))["requested"] == 26
    left = await client.get(f"/pools/{pool_id}", headers=planner)
    assert left.json()["remaining"] == 0
    assert [b["allocated"] for b in left.json()["batches"]] == [20, 30]
    assert_error(
        await _allocate(client, planner, pool_id=pool_id, count=1, partial=True),
        409,
        "not_enough_codes",
    )
    listed = await client.get("/pools", headers=planner, params={"per_page": 200})
    assert pool_id in [p["id"] for p in listed.json()["items"]]

    # every code traces to the allocation that received it, and the allocation is audited
    serial = SCHEME.serial(second, 7)
    traced = await client.get(f"/codes/{serial}/allocation", headers=planner)
    assert traced.status_code == 200, traced.text
    assert traced.json()["allocation"]["id"] == partial.headers["x-allocation-id"]
    assert traced.json()["allocation"]["recipient_org_id"] == demo["FACTORY-SZ"]
    assert traced.json()["index"] == 7
    row = await (
        await conn.execute(
            "SELECT after FROM audit_log WHERE entity = 'code_allocation' AND entity_id = %s "
            "AND action = 'allocate'",
            (partial.headers["x-allocation-id"],),
        )
    ).fetchone()
    assert row["after"]["ranges"] == [[second, 5, 29]]


async def test_a_partner_key_allocates_an_encrypted_file_from_its_shared_pool_only(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    admin, planner = await login("admin"), await login("planner")
    # a contract printer of its own (the demo printer's key is other tests' business)
    org = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "printer",
            "name": "Serialbox partner",
            "erp_code": f"SBX-{secrets.token_hex(3)}",
            "parent_id": demo["BRAND-LUMI"],
        },
    )
    assert org.status_code == 201, org.text
    printer = org.json()["id"]
    key = RSA.generate(2048)
    registered = await client.put(
        f"/printers/{printer}/public-key",
        headers=admin,
        json={"public_key_pem": key.public_key().export_key().decode()},
    )
    assert registered.status_code == 204, registered.text
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": "serialbox", "permissions": ["codes.allocate"], "org_id": printer},
    )
    assert made.status_code == 201, made.text
    partner = {"X-API-Key": made.json()["key"]}
    shared_batch, _ = await issue_units(client, login, demo, 40)
    other_batch, _ = await issue_units(client, login, demo, 10)
    shared = await client.post(
        "/pools",
        headers=planner,
        json={
            "name": f"partner-{shared_batch}",
            "batches": [shared_batch],
            "recipient_org_id": printer,
        },
    )
    private = await client.post(
        "/pools", headers=planner, json={"name": f"own-{other_batch}", "batches": [other_batch]}
    )
    assert shared.status_code == private.status_code == 201

    listed = await client.get("/pools", headers=partner)
    assert [p["id"] for p in listed.json()["items"]] == [shared.json()["id"]]
    answer = await _allocate(client, partner, pool_id=shared.json()["id"], count=12, format="file")
    assert answer.status_code == 201, answer.text
    assert answer.headers["content-type"] == "application/octet-stream"
    plain = b"".join(
        printfile.decrypt(io.BytesIO(answer.content), private_key_pem=key.export_key().decode())
    ).decode()
    lines = [line.split(",") for line in plain.splitlines()]
    assert [SCHEME.verify(s)[:2] for s, _ in lines] == [(shared_batch, i) for i in range(12)]
    assert all(SCHEME.check_pin(s, pin) for s, pin in lines)
    header, _ = printfile.read_header(io.BytesIO(answer.content))
    assert header["ranges"] == [[shared_batch, 0, 11]]
    recorded = await _recorded(client, partner, answer)
    assert recorded["recipient_org_id"] == printer and recorded["format"] == "file"

    # a partner reaches neither other pools nor batches directly
    assert_error(
        await _allocate(client, partner, pool_id=private.json()["id"], count=1), 404, "unknown_pool"
    )
    assert_error(
        await _allocate(client, partner, batch_no=shared_batch, count=1), 403, "pool_required"
    )
    # a wrong key does not open the file
    try:
        b"".join(
            printfile.decrypt(
                io.BytesIO(answer.content),
                private_key_pem=RSA.generate(2048).export_key().decode(),
            )
        )
        raise AssertionError("a wrong key opened the file")
    except printfile.WrongKey:
        pass


async def test_a_passphrase_file_decrypts_as_the_printer_files_do(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 5)
    assert_error(  # FACTORY-SZ has no RSA key: a passphrase is needed
        await _allocate(client, planner, batch_no=batch_no, count=3, format="file"),
        400,
        "no_wrapping_key",
    )
    passphrase = "correct horse battery"
    answer = await _allocate(
        client, planner, batch_no=batch_no, count=3, format="file", passphrase=passphrase
    )
    assert answer.status_code == 201, answer.text
    plain = b"".join(printfile.decrypt(io.BytesIO(answer.content), passphrase=passphrase))
    serials = [line.split(b",")[0].decode() for line in plain.splitlines()]
    assert serials == [SCHEME.serial(batch_no, i) for i in range(3)]


async def test_another_brand_and_callers_without_the_permission_get_nothing(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 10)
    pool = await client.post(
        "/pools", headers=planner, json={"name": f"guarded-{batch_no}", "batches": [batch_no]}
    )
    given = await _allocate(client, planner, batch_no=batch_no, count=2)
    assert given.status_code == 201
    stranger = await other_brand_admin(client, login)
    assert_error(
        await _allocate(client, stranger, batch_no=batch_no, count=1), 404, "unknown_batch"
    )
    assert_error(
        await _allocate(client, stranger, pool_id=pool.json()["id"], count=1), 404, "unknown_pool"
    )
    assert_error(await client.get(given.headers["location"], headers=stranger), 404)
    assert_error(
        await client.get(f"/pools/{pool.json()['id']}", headers=stranger), 404, "unknown_pool"
    )
    serial = SCHEME.serial(batch_no, 0)
    assert_error(
        await client.get(f"/codes/{serial}/allocation", headers=stranger), 404, "not_allocated"
    )
    assert (await client.get("/pools", headers=stranger)).json()["items"] == []
    analyst = await login("analyst")
    assert_error(
        await _allocate(client, analyst, batch_no=batch_no, count=1), 403, "permission_denied"
    )
    # nothing more was given out by the refused calls
    left = await client.get(f"/pools/{pool.json()['id']}", headers=planner)
    assert left.json()["remaining"] == 8
    # a code of the batch not yet given out traces to no allocation
    unallocated = SCHEME.serial(batch_no, 5)
    assert_error(
        await client.get(f"/codes/{unallocated}/allocation", headers=planner), 404, "not_allocated"
    )


async def test_a_pool_is_made_by_a_role_holding_codes_issue_and_codes_allocate(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: the README said ``POST /pools`` needs ``codes.issue``, while ``create_pool``
    has always asked for ``codes.allocate`` too (a pool is made to be allocated from). The
    README now says both: a role of ``codes.issue`` alone issues batches but is refused the
    pool, 403 naming ``codes.allocate``; the same role given ``codes.allocate`` makes it."""
    admin = await login("admin")
    name = f"issuer{secrets.token_hex(3)}"
    role = await client.post(
        "/roles",
        headers=admin,
        json={"name": name, "permissions": ["orgs.read", "catalog.read", "codes.issue"]},
    )
    assert role.status_code == 201, role.text
    password = secrets.token_urlsafe(16)
    user = await client.post(
        "/users",
        headers=admin,
        json={"org_id": demo["BRAND-LUMI"], "username": name, "password": password,
              "roles": [name]},
    )  # fmt: skip
    assert user.status_code == 201, user.text
    token = await client.post("/auth/login", json={"username": name, "password": password})
    issuer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    batch = await client.post(
        "/batches", headers=issuer, json={"size": 10, "printer_id": demo["PRINTER-SH"]}
    )
    assert batch.status_code == 201, batch.text
    pool = {"name": f"pool-{name}", "batches": [batch.json()["batch_no"]]}
    refused = assert_error(
        await client.post("/pools", headers=issuer, json=pool), 403, "permission_denied"
    )
    assert refused["details"] == {"missing": ["codes.allocate"]}, refused
    both = {"permissions": ["orgs.read", "catalog.read", "codes.issue", "codes.allocate"]}
    granted = await client.patch(f"/roles/{role.json()['id']}", headers=admin, json=both)
    assert granted.status_code == 200, granted.text
    made = await client.post("/pools", headers=issuer, json=pool)
    assert made.status_code == 201, made.text
    assert made.json()["remaining"] == 10


async def test_bad_requests_are_refused_with_stable_codes(
    client: httpx.AsyncClient, login: Any, demo: Any, settings: Any
) -> None:
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 10)
    for count in (0, -5):
        assert_error(
            await _allocate(client, planner, batch_no=batch_no, count=count),
            400,
            "validation_failed",
        )
    error = assert_error(
        await _allocate(client, planner, batch_no=batch_no, count=settings.allocation_max + 1),
        400,
        "count_over_maximum",
    )
    assert error["details"]["maximum"] == settings.allocation_max
    assert_error(
        await _allocate(client, planner, batch_no=4_000_000_000, count=1), 404, "unknown_batch"
    )
    assert_error(await _allocate(client, planner, count=1), 400, "batch_or_pool")
    assert_error(
        await _allocate(client, planner, batch_no=batch_no, pool_id=1, count=1),
        400,
        "batch_or_pool",
    )
    assert_error(
        await _allocate(client, planner, batch_no=batch_no, count=11), 409, "not_enough_codes"
    )
    assert_error(
        await client.post(
            "/pools", headers=planner, json={"name": "twice", "batches": [batch_no, batch_no]}
        ),
        400,
        "duplicate_batch",
    )

    # an allocated batch is not exported, and an exported batch is not allocated
    taken = await _allocate(client, planner, batch_no=batch_no, count=1)
    assert taken.status_code == 201
    export = {"outer": {"passphrase": "a long passphrase"}, "inner": {"passphrase": "another one!"}}
    assert_error(
        await client.post(f"/batches/{batch_no}/exports", headers=planner, json=export),
        409,
        "batch_allocated",
    )
    printed, _ = await issue_units(client, login, demo, 4)
    exported = await client.post(f"/batches/{printed}/exports", headers=planner, json=export)
    assert exported.status_code == 201, exported.text
    assert_error(await _allocate(client, planner, batch_no=printed, count=1), 409, "batch_exported")

    voided = await client.post(
        f"/batches/{batch_no}/void", headers=planner, json={"reason": "labels spoiled"}
    )
    assert voided.status_code == 200, voided.text
    assert_error(await _allocate(client, planner, batch_no=batch_no, count=1), 422, "batch_void")
    assert_error(
        await client.post("/pools", headers=planner, json={"name": "void", "batches": [batch_no]}),
        422,
        "batch_void",
    )


async def test_a_number_in_a_time_filter_is_refused(client: httpx.AsyncClient, login: Any) -> None:
    """A probe: a filter ``from=20261201`` (the compact date of the document numbers) or
    ``from=2026`` listed the allocations from 1970-08-23 (or 1970-01-01T00:33:46Z): the number was
    read as Unix seconds. ``from`` and ``to`` are ISO 8601 date-times (``app.bodies.QueryTime``),
    documented as before: anything else is a 400 ``validation_failed``."""
    planner = await login("planner")
    period = {"from": "2026-12-01T00:00:00+08:00", "to": "2027-01-01T00:00:00"}
    assert (await client.get("/allocations", headers=planner, params=period)).status_code == 200
    for name in ("from", "to"):
        for value in ("20261201", "2026", "-5", "1.8e9", "2026-12-01"):
            answer = await client.get(
                "/allocations", headers=planner, params={**period, name: value}
            )
            assert_error(answer, 400, "validation_failed")
            assert answer.json()["error"]["details"][0]["field"] == name, answer.text
    doc = (await client.get("/schema/openapi.json")).json()
    for p in doc["paths"]["/allocations"]["get"]["parameters"]:
        if p["name"] in ("from", "to"):
            assert p["schema"]["oneOf"] == [
                {"type": "string", "format": "date-time"},
                {"type": "null"},
            ], p


async def test_a_batch_whose_codes_reached_a_line_another_way_is_not_allocated(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """Codes made with the master key by hand (here: serials of a new batch scanned on the line
    without an export or allocation) are in circulation: allocating them would hand out live
    codes and their PINs again. Codes an allocation gave out and the line then activated do not
    stop the batch: only a unit at or past its next index does."""
    planner = await login("planner")
    batch_no, product_id = await issue_units(client, login, demo, 10)
    await activate(client, login, [SCHEME.serial(batch_no, 7)], product_id)
    assert_error(await _allocate(client, planner, batch_no=batch_no, count=1), 409, "batch_in_use")
    assert_error(
        await client.post("/pools", headers=planner, json={"name": "live", "batches": [batch_no]}),
        409,
        "batch_in_use",
    )

    allocated, product_id = await issue_units(client, login, demo, 10)
    spare, _ = await issue_units(client, login, demo, 3)
    pool = await client.post(
        "/pools", headers=planner, json={"name": "rolls over", "batches": [allocated, spare]}
    )
    assert pool.status_code == 201, pool.text
    first = _codes(await _allocate(client, planner, batch_no=allocated, count=4))
    await activate(client, login, [SCHEME.serial(b, i) for b, i in first], product_id)
    assert _codes(await _allocate(client, planner, batch_no=allocated, count=2)) == [
        (allocated, 4),
        (allocated, 5),
    ]
    # a unit of the spare batch activated by hand: the pool skips that batch, not the other
    await activate(client, login, [SCHEME.serial(spare, 0)], product_id)
    pool_id = pool.json()["id"]
    left = await client.get(f"/pools/{pool_id}", headers=planner)
    assert left.json()["remaining"] == 4  # indexes 6..9 of the first batch, none of the spare
    assert _codes(await _allocate(client, planner, pool_id=pool_id, count=4)) == [
        (allocated, i) for i in range(6, 10)
    ]
    assert_error(
        await _allocate(client, planner, pool_id=pool_id, count=1), 409, "not_enough_codes"
    )


async def test_an_export_and_an_allocation_of_one_batch_at_once_never_both_succeed(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """The defect (probe H1): the allocation read "has the batch an export?" in the statement
    that waited for the batch's lock, with the snapshot from before the wait: an export that
    committed meanwhile was missed, and the same codes were printed and handed out (7 of 8)."""
    planner, printer = await login("planner"), await login("printer")
    export = {"outer": {"passphrase": "a long passphrase"}, "inner": {"passphrase": "another one!"}}
    for _ in range(6):
        batch_no, _ = await issue_units(client, login, demo, 20)
        exported, allocated = await asyncio.gather(
            client.post(f"/batches/{batch_no}/exports", headers=planner, json=export),
            _allocate(client, printer, batch_no=batch_no, count=5),
        )
        statuses = (exported.status_code, allocated.status_code)
        assert statuses in ((201, 409), (409, 201)), (exported.text, allocated.text)
        loser = allocated if statuses == (201, 409) else exported
        assert_error(loser, 409, "batch_exported" if statuses == (201, 409) else "batch_allocated")


async def test_retired_and_void_batches_give_out_no_codes(
    client: httpx.AsyncClient, login: Any, demo: Any, conn: Any
) -> None:
    """Probes: a batch of a retired key version was allocated (its range counted as given out)
    and the stream then broke after its 201; a pool took from it. A void batch's codes and PINs
    were served again by a re-fetch and by a retry of the same client id."""
    planner = await login("planner")
    retired, _ = await issue_units(client, login, demo, 10)
    live, _ = await issue_units(client, login, demo, 10)
    pool = await client.post(
        "/pools", headers=planner, json={"name": f"rot-{retired}", "batches": [retired, live]}
    )
    assert pool.status_code == 201, pool.text
    await conn.execute("UPDATE code_batches SET key_version = 7 WHERE batch_no = %s", (retired,))
    await conn.commit()
    assert_error(
        await _allocate(client, planner, batch_no=retired, count=3), 422, "key_version_retired"
    )
    shown = await client.get(f"/pools/{pool.json()['id']}", headers=planner)
    assert shown.json()["remaining"] == 10  # the live batch's only
    rolled = await _allocate(client, planner, pool_id=pool.json()["id"], count=4)
    assert _codes(rolled) == [(live, i) for i in range(4)]
    taken = await conn.execute(
        "SELECT batch_no, allocated FROM code_batches WHERE batch_no = ANY(%s) ORDER BY batch_no",
        ([retired, live],),
    )
    assert [(r["batch_no"], r["allocated"]) for r in await taken.fetchall()] == [
        (retired, 0),
        (live, 4),
    ]
    assert_error(
        await client.post(
            "/pools", headers=planner, json={"name": f"r2-{retired}", "batches": [retired]}
        ),
        422,
        "key_version_retired",
    )

    body = {"batch_no": live, "count": 2, "client_id": f"run-{live}"}
    given = await _allocate(client, planner, **body)
    assert given.status_code == 201, given.text
    voided = await client.post(f"/batches/{live}/void", headers=planner, json={"reason": "recall"})
    assert voided.status_code == 200, voided.text
    again = await client.get(f"{given.headers['location']}/codes", headers=planner)
    assert_error(again, 422, "batch_void")
    assert_error(await _allocate(client, planner, **body), 422, "batch_void")


@pytest.mark.parametrize(
    "shape",
    [{"pins": True}, {"pins": False}, {"format": "file", "passphrase": "a-long-passphrase"}],
    ids=["lines", "serials", "file"],
)
async def test_a_void_cuts_off_an_allocation_stream_under_way(
    client: httpx.AsyncClient, login: Any, demo: Any, app: Any, shape: dict[str, Any]
) -> None:
    """A probe: ``POST /allocations`` commits, then streams the codes a step of 131,072 at a
    time (an allocation of 100,000,000 codes takes tens of seconds); a void of the batch
    answered 200 while the stream was under way did not stop it: every remaining step — serials
    and PINs of labels "to be destroyed" — was still sent, and the answer ended as a whole one.
    Now its batches are asked before each piece: nothing is sent after the void, and the answer
    is cut off (its last body message never comes)."""
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 3 * STEP)
    paused = Paused()
    body = {"batch_no": batch_no, "count": 3 * STEP, **shape}
    await paused.start(app, "POST", "/allocations", planner, body)
    assert paused.status == 201
    before = paused.received()
    voided = await client.post(f"/batches/{batch_no}/void", headers=planner, json={"reason": "x"})
    assert voided.status_code == 200, voided.text
    whole = await paused.resume()
    assert len(whole) == before, f"{len(whole) - before} bytes sent after the void answered"
    assert not paused.ended, "the answer should be cut off, not end as a whole one"


async def test_a_void_cuts_off_an_allocations_codes_fetched_again(
    client: httpx.AsyncClient, login: Any, demo: Any, app: Any
) -> None:
    """A probe: ``GET /allocations/{id}/codes`` refused a void batch (422 ``batch_void``) only
    when it started: a void answered while the codes streamed let the rest — 262,144 serials and
    PINs here — go out after it. Cut off there now; a fetch after it is 422."""
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 3 * STEP)
    made = await _allocate(client, planner, batch_no=batch_no, count=3 * STEP)
    assert made.status_code == 201, made.text
    url = f"/allocations/{made.headers['x-allocation-id']}/codes"
    paused = Paused()
    await paused.start(app, "GET", url, planner)
    assert paused.status == 200
    before = paused.received()
    voided = await client.post(f"/batches/{batch_no}/void", headers=planner, json={"reason": "x"})
    assert voided.status_code == 200, voided.text
    late = (await paused.resume())[before:].decode().splitlines()
    assert not late, f"{len(late)} codes and PINs of the void batch sent after its void"
    assert not paused.ended
    assert_error(await client.get(url, headers=planner), 422, "batch_void")


@pytest.mark.parametrize("blank", [" ", "\u200b", "\ufeff", "\u3000"], ids=repr)
async def test_a_pool_name_of_blanks_alone_is_refused(
    client: httpx.AsyncClient, login: Any, demo: Any, blank: str
) -> None:
    """A probe: pools named " ", U+200B, U+FEFF and U+3000 were made side by side — names the
    partners a pool is shared with read in ``GET /pools``. README: a name others read needs one
    visible character (400 ``validation_failed``)."""
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 5)
    refused = await client.post(
        "/pools", headers=planner, json={"name": blank * 3, "batches": [batch_no]}
    )
    assert_error(refused, 400, "validation_failed")
    made = await client.post(
        "/pools",
        headers=planner,
        json={"name": f"{blank}line {batch_no}{blank}", "batches": [batch_no]},
    )
    assert made.status_code == 201, made.text


async def _contract_printer(client: httpx.AsyncClient, admin: dict[str, str], demo: Any) -> int:
    org = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "printer",
            "name": f"Contract printer {secrets.token_hex(3)}",
            "erp_code": f"CP-{secrets.token_hex(3)}",
            "parent_id": demo["BRAND-LUMI"],
        },
    )
    assert org.status_code == 201, org.text
    return int(org.json()["id"])


async def _issuing_key(
    client: httpx.AsyncClient, admin: dict[str, str], org_id: int
) -> dict[str, str]:
    """A contract printer's serialization server: it issues the batches it then allocates."""
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={"name": "serialbox", "permissions": ["codes.allocate", "codes.issue"],
              "org_id": org_id},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    return {"X-API-Key": made.json()["key"]}


async def test_a_partner_key_holding_codes_issue_sees_only_what_its_organisation_received(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: who sees an allocation was decided by the caller's permissions, not where it
    sits: every holder of ``codes.issue`` counted as brand staff, so a contract printer's API
    key with ``codes.allocate`` and ``codes.issue`` read, listed and traced another partner's
    allocation and streamed its SERIAL,PIN lines again (200), while ``GET /pools/{id}`` of the
    same pool answered it 404. A partner's key sees only what its organisation received:
    404 ``unknown_allocation`` for the allocation and its codes, ``not_allocated`` for the
    serial, and the list without it."""
    admin, planner = await login("admin"), await login("planner")
    ours = await _contract_printer(client, admin, demo)
    theirs = await _contract_printer(client, admin, demo)
    key = await _issuing_key(client, admin, ours)
    batch_no, _ = await issue_units(client, login, demo, 10)
    pool = await client.post(
        "/pools",
        headers=planner,
        json={"name": f"theirs-{batch_no}", "batches": [batch_no], "recipient_org_id": theirs},
    )
    assert pool.status_code == 201, pool.text
    given = await _allocate(client, planner, pool_id=pool.json()["id"], count=3)
    assert given.status_code == 201, given.text
    assert_error(await client.get(f"/pools/{pool.json()['id']}", headers=key), 404, "unknown_pool")

    location = given.headers["location"]
    assert_error(await client.get(f"{location}/codes", headers=key), 404, "unknown_allocation")
    assert_error(await client.get(location, headers=key), 404, "unknown_allocation")
    serial = SCHEME.serial(batch_no, 0)
    assert_error(await client.get(f"/codes/{serial}/allocation", headers=key), 404, "not_allocated")
    listed = await client.get("/allocations", headers=key, params={"per_page": 200})
    assert given.headers["x-allocation-id"] not in [a["id"] for a in listed.json()["items"]]
    # the brand's planner still sees it
    assert (await client.get(location, headers=planner)).status_code == 200


async def test_a_pool_is_not_shared_with_a_closed_organisation(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: ``POST /pools`` shared a pool with a deactivated printer (201), where
    ``POST /batches`` refuses that printer (422 ``printer_inactive``): 422 ``org_inactive``,
    nothing made; the same pool for it once it is active again is made."""
    admin, planner = await login("admin"), await login("planner")
    printer = await _contract_printer(client, admin, demo)
    batch_no, _ = await issue_units(client, login, demo, 3)
    off = await client.post(f"/orgs/{printer}/deactivate", headers=admin)
    assert off.status_code == 200, off.text
    body = {"name": f"closed-{batch_no}", "batches": [batch_no], "recipient_org_id": printer}
    assert_error(await client.post("/pools", headers=planner, json=body), 422, "org_inactive")
    listed = await client.get("/pools", headers=planner, params={"per_page": 200})
    assert body["name"] not in [p["name"] for p in listed.json()["items"]]
    assert (await client.post(f"/orgs/{printer}/activate", headers=admin)).status_code == 200
    made = await client.post("/pools", headers=planner, json=body)
    assert made.status_code == 201, made.text


async def test_an_allocation_from_a_pool_shared_with_an_organisation_closed_since_is_refused(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: a pool cannot be shared with a closed organisation (422 ``org_inactive``), but
    once the pool's recipient was deactivated, the brand's planner allocating from the pool on
    its behalf was given the codes and PINs (201), recorded as received by the closed
    organisation (``allocate`` never looked at it). 422 ``org_inactive`` naming ``pool_id``,
    nothing given out; the pool allocates again once the organisation is active again."""
    admin, planner = await login("admin"), await login("planner")
    printer = await _contract_printer(client, admin, demo)
    batch_no, _ = await issue_units(client, login, demo, 10)
    pool = await client.post(
        "/pools",
        headers=planner,
        json={"name": f"closed-{batch_no}", "batches": [batch_no], "recipient_org_id": printer},
    )
    assert pool.status_code == 201, pool.text
    pool_id = pool.json()["id"]
    assert (await client.post(f"/orgs/{printer}/deactivate", headers=admin)).status_code == 200
    error = assert_error(await _allocate(client, planner, pool_id=pool_id, count=2), 422)
    assert error["code"] == "org_inactive" and error["details"]["field"] == "pool_id", error
    left = await client.get(f"/pools/{pool_id}", headers=planner)
    assert left.json()["remaining"] == 10, left.text
    listed = await client.get("/allocations", headers=planner, params={"pool_id": pool_id})
    assert listed.json()["total"] == 0, listed.text
    assert (await client.post(f"/orgs/{printer}/activate", headers=admin)).status_code == 200
    given = await _allocate(client, planner, pool_id=pool_id, count=2)
    assert given.status_code == 201, given.text


async def test_an_allocations_codes_are_not_fetched_again_once_its_recipient_is_closed(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: a new allocation for a closed recipient is 422 ``org_inactive``, but the brand's
    planner fetched an earlier allocation's codes and PINs again (``GET /allocations/{id}/codes``,
    200; a retry of its ``POST`` under the same client id likewise) after its recipient was
    deactivated. 422 ``org_inactive`` (GET and HEAD naming ``allocation_id``, the retry
    ``client_id``), nothing audited; the codes come again once it is active again."""
    admin, planner = await login("admin"), await login("planner")
    printer = await _contract_printer(client, admin, demo)
    batch_no, _ = await issue_units(client, login, demo, 10)
    pool = await client.post(
        "/pools",
        headers=planner,
        json={"name": f"refetch-{batch_no}", "batches": [batch_no], "recipient_org_id": printer},
    )
    assert pool.status_code == 201, pool.text
    body = {"pool_id": pool.json()["id"], "count": 2, "client_id": f"refetch-{batch_no}"}
    given = await _allocate(client, planner, **body)
    assert len(_codes(given)) == 2
    location = given.headers["location"]
    assert (await client.get(f"{location}/codes", headers=planner)).status_code == 200
    assert (await client.post(f"/orgs/{printer}/deactivate", headers=admin)).status_code == 200
    refused = await client.get(f"{location}/codes", headers=planner)
    error = assert_error(refused, 422)
    assert error["code"] == "org_inactive" and error["details"]["field"] == "allocation_id", error
    head = await client.head(f"{location}/codes", headers=planner)
    assert head.status_code == 422 and not head.content
    retry = assert_error(await _allocate(client, planner, **body), 422)
    assert retry["code"] == "org_inactive" and retry["details"]["field"] == "client_id", retry
    assert (await client.post(f"/orgs/{printer}/activate", headers=admin)).status_code == 200
    again = await client.get(f"{location}/codes", headers=planner)
    assert again.status_code == 200 and again.text == given.text, again.text
    replayed = await _allocate(client, planner, **body)
    assert replayed.status_code == 200 and replayed.text == given.text, replayed.text


async def test_a_recipients_deactivation_waits_for_an_allocation_to_it(
    client: httpx.AsyncClient, login: Any, demo: Any, app: Any
) -> None:
    """An allocation past its check of the pool's recipient holds the recipient's row
    (``FOR SHARE``) to its commit: a deactivation sent meanwhile waits for it and comes after
    (unlocked, it committed at once and the codes went to a closed organisation), and the next
    allocation is refused. (The allocation is held after its check by a transaction holding the
    pool's batch.)"""
    admin, planner = await login("admin"), await login("planner")
    printer = await _contract_printer(client, admin, demo)
    batch_no, _ = await issue_units(client, login, demo, 10)
    pool = await client.post(
        "/pools",
        headers=planner,
        json={"name": f"race-{batch_no}", "batches": [batch_no], "recipient_org_id": printer},
    )
    assert pool.status_code == 201, pool.text
    pool_id = pool.json()["id"]
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute(
            "SELECT 1 FROM code_batches WHERE batch_no = %s FOR UPDATE", (batch_no,)
        )
        giving = asyncio.ensure_future(_allocate(client, planner, pool_id=pool_id, count=2))
        assert await lock_waiters(watch, 1), "the allocation should wait for the held batch"
        closing = asyncio.ensure_future(client.post(f"/orgs/{printer}/deactivate", headers=admin))
        waited = await lock_waiters(watch, 2)
        await holder.commit()
        given, closed = await asyncio.wait_for(asyncio.gather(giving, closing), 60)
    assert waited, "the deactivation should wait for the allocation holding the recipient"
    assert given.status_code == 201, given.text
    assert closed.status_code == 200, closed.text
    again = await _allocate(client, planner, pool_id=pool_id, count=2)
    assert_error(again, 422, "org_inactive")


async def test_a_printer_user_allocating_without_download_reaches_only_its_printer(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: a user counted as a printer's only when its role held ``codes.download``, so a
    contract printer's line-system account given a role of ``codes.allocate`` alone counted as
    brand staff: it allocated from a batch addressed to another printer (201, codes and PINs
    streamed) and fetched again the codes the brand's planner allocated. A user at a printer
    organisation is that printer's whatever its role: 404 ``unknown_batch`` for the other
    printer's batch, 404 ``unknown_allocation`` for the planner's allocation."""
    admin, planner = await login("admin"), await login("planner")
    printer = await _contract_printer(client, admin, demo)
    name = f"linesys{secrets.token_hex(3)}"
    role = await client.post(
        "/roles", headers=admin, json={"name": name, "permissions": ["codes.allocate"]}
    )
    assert role.status_code == 201, role.text
    password = secrets.token_urlsafe(16)
    user = await client.post(
        "/users",
        headers=admin,
        json={"org_id": printer, "username": name, "password": password, "roles": [name]},
    )
    assert user.status_code == 201, user.text
    token = await client.post("/auth/login", json={"username": name, "password": password})
    line_system = {"Authorization": f"Bearer {token.json()['access_token']}"}

    batch_no, _ = await issue_units(client, login, demo, 10)  # addressed to PRINTER-SH
    given = await _allocate(client, planner, batch_no=batch_no, count=2)
    assert given.status_code == 201, given.text
    assert_error(
        await client.get(f"{given.headers['location']}/codes", headers=line_system),
        404,
        "unknown_allocation",
    )
    assert_error(
        await _allocate(client, line_system, batch_no=batch_no, count=2), 404, "unknown_batch"
    )


async def test_a_partner_pools_only_the_batches_addressed_to_its_organisation(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe (found fixing the two above): ``POST /pools`` took any batch of the brand from
    whoever held ``codes.issue`` and ``codes.allocate``, so a contract printer's key pooled a
    batch addressed to another printer, shared the pool with itself and took its codes and
    PINs (201). A printer or partner pools only the batches addressed to its organisation
    (another: 404 ``unknown_batch``), shared with its own organisation (another recipient: 404
    ``unknown_org``; none: its own), and allocates from that pool."""
    admin = await login("admin")
    ours = await _contract_printer(client, admin, demo)
    key = await _issuing_key(client, admin, ours)
    theirs, _ = await issue_units(client, login, demo, 10)  # addressed to PRINTER-SH
    grab = {"name": f"grab-{theirs}", "batches": [theirs], "recipient_org_id": ours}
    assert_error(await client.post("/pools", headers=key, json=grab), 404, "unknown_batch")

    batch = await client.post("/batches", headers=key, json={"size": 10, "printer_id": ours})
    assert batch.status_code == 201, batch.text
    own = batch.json()["batch_no"]
    elsewhere = {"name": f"away-{own}", "batches": [own], "recipient_org_id": demo["PRINTER-SH"]}
    assert_error(await client.post("/pools", headers=key, json=elsewhere), 404, "unknown_org")
    pool = await client.post("/pools", headers=key, json={"name": f"own-{own}", "batches": [own]})
    assert pool.status_code == 201, pool.text
    assert pool.json()["recipient_org_id"] == ours
    taken = await _allocate(client, key, pool_id=pool.json()["id"], count=2)
    assert _codes(taken) == [(own, 0), (own, 1)]


async def test_a_pool_name_clashes_only_with_pools_the_caller_sees(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A probe: a printer's serialization server (a key at PRINTER-SH with ``codes.issue`` and
    ``codes.allocate``) does not see a planner's unshared pool in ``GET /pools``, yet its own
    pool under that name was 409 ``pool_name_taken``: an oracle of the names of pools it may not
    see, and a name it took first refused the planner's later pool. README: a name is unique
    among the pools shared with one organisation (the brand's unshared ones count as one)."""
    planner, admin = await login("planner"), await login("admin")
    printer = await key_of(client, admin, ["codes.issue", "codes.allocate"], demo["PRINTER-SH"])
    hidden, _ = await issue_units(client, login, demo, 3)
    name = f"brand-only-{hidden}"
    made = await client.post("/pools", headers=planner, json={"name": name, "batches": [hidden]})
    assert made.status_code == 201, made.text
    listed = (await client.get("/pools", headers=printer)).json()["items"]
    assert name not in [p["name"] for p in listed]
    own, _ = await issue_units(client, login, demo, 3)  # addressed to PRINTER-SH
    mine = await client.post("/pools", headers=printer, json={"name": name, "batches": [own]})
    assert mine.status_code == 201, mine.text
    assert mine.json()["recipient_org_id"] == demo["PRINTER-SH"]
    # the printer's name is its own: taken again by it, or by the planner for the printer, 409
    again, _ = await issue_units(client, login, demo, 3)
    body = {"name": name, "batches": [again]}
    assert_error(await client.post("/pools", headers=printer, json=body), 409, "pool_name_taken")
    shared = {**body, "recipient_org_id": demo["PRINTER-SH"]}
    assert_error(await client.post("/pools", headers=planner, json=shared), 409, "pool_name_taken")
    # a name the printer took first no longer refuses the planner's unshared pool of that name
    squatted = f"squat-{own}"
    first = await client.post("/pools", headers=printer, json={"name": squatted, "batches": [own]})
    assert first.status_code == 201, first.text
    later = await client.post(
        "/pools", headers=planner, json={"name": squatted, "batches": [again]}
    )
    assert later.status_code == 201, later.text
    assert_error(await client.post("/pools", headers=planner, json=body), 409, "pool_name_taken")
    # two at once: one is made, the other meets the unique key (the same 409, not ``conflict``)
    race = {"name": f"race-{again}", "batches": [again], "recipient_org_id": demo["PRINTER-SH"]}
    answers = await asyncio.gather(
        *(client.post("/pools", headers=h, json=race) for h in (planner, planner))
    )
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    assert_error(next(a for a in answers if a.status_code == 409), 409, "pool_name_taken")


async def test_the_brands_own_warehouse_is_brand_staff_and_an_agent_a_partner(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    """A review: the first rule of where a caller sits counted the brand's organisation and
    anything below a factory as brand staff, so a line system at a warehouse right under the
    brand was a partner (403 ``pool_required``). The brand's own side is everything with no
    organisation of the sales channel on its path; a user below an agent is a partner."""
    admin = await login("admin")
    name = f"whline{secrets.token_hex(3)}"
    role = await client.post(
        "/roles", headers=admin, json={"name": name, "permissions": ["codes.allocate"]}
    )
    assert role.status_code == 201, role.text

    async def user_at(parent: int, kind: str) -> dict[str, str]:
        tag = secrets.token_hex(3)
        org = await client.post(
            "/orgs",
            headers=admin,
            json={
                "kind": kind,
                "name": f"Site {tag}",
                "erp_code": f"ST-{tag}",
                "parent_id": parent,
            },
        )
        assert org.status_code == 201, org.text
        username, password = f"{name}{tag}", secrets.token_urlsafe(16)
        made = await client.post(
            "/users",
            headers=admin,
            json={"org_id": org.json()["id"], "username": username, "password": password,
                  "roles": [name]},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        token = await client.post("/auth/login", json={"username": username, "password": password})
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    batch_no, _ = await issue_units(client, login, demo, 10)
    own_side = await user_at(demo["BRAND-LUMI"], "warehouse")
    given = await _allocate(client, own_side, batch_no=batch_no, count=2)
    assert given.status_code == 201, given.text
    channel = await user_at(demo["AGENT-ZJ"], "warehouse")
    assert_error(await _allocate(client, channel, batch_no=batch_no, count=2), 403, "pool_required")


async def test_a_count_over_2_pow_32_is_count_over_maximum_like_any_count_over_the_maximum(
    client: httpx.AsyncClient, login: Any, demo: Any, settings: Any
) -> None:
    """A probe: a line system asks ``POST /allocations`` for more codes than the deployment allows.
    Just over ``TRACECODE_ALLOCATION_MAX`` it gets 400 ``count_over_maximum`` with
    ``details.maximum`` (the documented code a client reacts to by splitting its request); a
    count above 4,294,967,296 (5 billion, say) gets 400 ``validation_failed`` ("Expected `int`
    <= 4294967296") instead, with no maximum, although it is over the maximum just the same
    (``allocation_max`` is at most 2**32 by config). README "Serial allocation": "over
    ``TRACECODE_ALLOCATION_MAX`` (400 ``count_over_maximum``)" — one refusal, one code, whatever
    the size (with or without ``partial``)."""
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 10)
    just_over = await client.post(
        "/allocations",
        headers=planner,
        json={"batch_no": batch_no, "count": settings.allocation_max + 1},
    )
    error = assert_error(just_over, 400, "count_over_maximum")
    assert error["details"]["maximum"] == settings.allocation_max
    for partial in (False, True):
        far_over = await client.post(
            "/allocations",
            headers=planner,
            json={"batch_no": batch_no, "count": 5_000_000_000, "partial": partial},
        )
        error = assert_error(far_over, 400, "count_over_maximum")
        assert error["details"]["maximum"] == settings.allocation_max
