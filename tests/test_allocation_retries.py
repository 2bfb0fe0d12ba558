"""Serial allocation retries and re-fetches (issue 19 item 4): a line system that lost the answer
of ``POST /allocations`` sends it again with its ``client_id`` and gets the same codes, never a
second range; an allocation's codes can be fetched again, scoped as the allocation is; a
passphrase asks for a file, never plain lines."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
from Crypto.PublicKey import RSA
from psycopg.types.json import Jsonb

from app.codes import printfile
from app.codes.scheme import load_scheme
from tests.field_support import other_brand_admin
from tests.helpers import assert_error, issue_units, scheme_for_tests

SCHEME = scheme_for_tests()
PASSPHRASE = "line 7 night shift"


async def _allocate(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> Any:
    return await client.post("/allocations", headers=headers, json=body)


def _client_id() -> str:
    return f"line-7/run-{secrets.token_hex(4)}"


def _serials(text: str) -> list[tuple[int, int]]:
    """(batch_no, index) of each ``SERIAL,PIN`` line, every PIN checked."""
    found = []
    for line in text.splitlines():
        serial, pin = line.split(",")
        assert SCHEME.check_pin(serial, pin)
        found.append(SCHEME.verify(serial)[:2])
    return found


async def _allocated(conn: Any, batch_no: int) -> int:
    row = await (
        await conn.execute("SELECT allocated FROM code_batches WHERE batch_no = %s", (batch_no,))
    ).fetchone()
    return int(row["allocated"])


async def _audit(conn: Any, allocation_id: str) -> list[str]:
    rows = await (
        await conn.execute(
            "SELECT action FROM audit_log WHERE entity = 'code_allocation' AND entity_id = %s "
            "ORDER BY id",
            (allocation_id,),
        )
    ).fetchall()
    return [r["action"] for r in rows]


async def test_a_retry_after_a_lost_answer_gives_the_same_codes_and_no_second_range(
    client: httpx.AsyncClient, login: Any, demo: Any, conn: Any
) -> None:
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 30)
    client_id = _client_id()
    first = await _allocate(client, planner, batch_no=batch_no, count=10, client_id=client_id)
    assert first.status_code == 201, first.text
    assert first.headers["x-allocation-replayed"] == "false"
    # the answer is lost on the way: the line system sends the same request again
    retry = await _allocate(client, planner, batch_no=batch_no, count=10, client_id=client_id)
    assert retry.status_code == 200, retry.text
    assert retry.headers["x-allocation-replayed"] == "true"
    assert retry.headers["x-allocation-id"] == first.headers["x-allocation-id"]
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["x-allocation-count"] == "10"
    assert retry.content == first.content
    assert _serials(retry.text) == [(batch_no, i) for i in range(10)]
    assert await _allocated(conn, batch_no) == 10  # nothing more given out

    # the next allocation continues after the first range; the record names the client id
    following = await _allocate(client, planner, batch_no=batch_no, count=5)
    assert _serials(following.text) == [(batch_no, i) for i in range(10, 15)]
    record = await client.get(first.headers["location"], headers=planner)
    assert record.json()["client_id"] == client_id
    found = await client.get("/allocations", headers=planner, params={"client_id": client_id})
    assert [a["id"] for a in found.json()["items"]] == [first.headers["x-allocation-id"]]
    assert await _audit(conn, first.headers["x-allocation-id"]) == ["allocate", "replay"]


async def _waiting(count: int) -> None:
    """Until ``count`` backends of the test database wait for a lock (10 s at most)."""
    async with await psycopg.AsyncConnection.connect(
        os.environ["TRACECODE_DATABASE_URL"], autocommit=True
    ) as watcher:
        for _ in range(200):
            row = await (
                await watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).fetchone()
            if row is not None and row[0] >= count:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{count} requests never waited together")


async def test_concurrent_retries_with_one_client_id_make_one_allocation(
    client: httpx.AsyncClient, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """The batch row is held while the retries arrive, so they all overlap: the first waits on
    the row, the others on the client id; released, one allocation is made and 11 replay it."""
    printer = await login("printer")
    batch_no, _ = await issue_units(client, login, demo, 100)
    client_id = _client_id()
    async with app.state.pool.connection() as holder:
        await holder.execute(
            "SELECT 1 FROM code_batches WHERE batch_no = %s FOR UPDATE", (batch_no,)
        )
        sent = [
            asyncio.create_task(
                _allocate(client, printer, batch_no=batch_no, count=7, client_id=client_id)
            )
            for _ in range(12)
        ]
        await _waiting(12)
        await holder.commit()
    answers = await asyncio.gather(*sent)
    assert sorted(a.status_code for a in answers) == [200] * 11 + [201], [a.text for a in answers]
    assert len({a.headers["x-allocation-id"] for a in answers}) == 1
    assert len({a.content for a in answers}) == 1
    assert _serials(answers[0].text) == [(batch_no, i) for i in range(7)]
    assert await _allocated(conn, batch_no) == 7
    listed = await client.get("/allocations", headers=printer, params={"batch_no": batch_no})
    assert listed.json()["total"] == 1


async def test_the_same_client_id_with_another_request_is_409(
    client: httpx.AsyncClient, login: Any, demo: Any, conn: Any
) -> None:
    planner, admin = await login("planner"), await login("admin")
    batch_no, _ = await issue_units(client, login, demo, 40)
    client_id = _client_id()
    first = await _allocate(
        client, planner, batch_no=batch_no, count=4, client_id=client_id, note="night shift"
    )
    assert first.status_code == 201, first.text
    changes: list[dict[str, Any]] = [
        {"count": 5},
        {"note": "day shift"},
        {"pins": False},
        {"partial": True},
        {"format": "file", "passphrase": PASSPHRASE},
    ]
    for change in changes:
        body = {"batch_no": batch_no, "count": 4, "note": "night shift", **change}
        error = assert_error(
            await _allocate(client, planner, client_id=client_id, **body), 409, "client_id_reused"
        )
        assert error["details"]["allocation_id"] == first.headers["x-allocation-id"]
    assert await _allocated(conn, batch_no) == 4

    # a client id is the caller's own: another organisation's same id is another allocation
    other = await _allocate(
        client, admin, batch_no=batch_no, count=4, client_id=client_id, note="night shift"
    )
    assert other.status_code == 201, other.text
    assert _serials(other.text) == [(batch_no, i) for i in range(4, 8)]

    # a file under a passphrase: the same passphrase replays it, another is another request
    file_id = _client_id()
    body = {"batch_no": batch_no, "count": 3, "format": "file", "client_id": file_id}
    made = await _allocate(client, planner, passphrase=PASSPHRASE, **body)
    assert made.status_code == 201, made.text
    again = await _allocate(client, planner, passphrase=PASSPHRASE, **body)
    assert again.status_code == 200, again.text
    assert _plain(again.content) == _plain(made.content)
    assert_error(
        await _allocate(client, planner, passphrase="another passphrase", **body),
        409,
        "client_id_reused",
    )
    assert await _allocated(conn, batch_no) == 11


def _plain(content: bytes) -> list[tuple[int, int]]:
    return _serials(
        b"".join(printfile.decrypt(io.BytesIO(content), passphrase=PASSPHRASE)).decode()
    )


async def test_fetching_the_codes_again_equals_the_first_answer(
    client: httpx.AsyncClient, login: Any, demo: Any, conn: Any
) -> None:
    printer = await login("printer")
    batch_no, _ = await issue_units(client, login, demo, 30)
    first = await _allocate(client, printer, batch_no=batch_no, count=12, pins=False)
    assert first.status_code == 201, first.text
    uri = f"{first.headers['location']}/codes"
    refetched = await client.get(uri, headers=printer)
    assert refetched.status_code == 200, refetched.text
    assert refetched.content == first.content
    assert refetched.headers["content-type"] == first.headers["content-type"]
    assert refetched.headers["x-allocation-count"] == "12"
    assert refetched.headers["x-allocation-replayed"] == "false"
    # HEAD answers the same checks and streams nothing (and is no fetch: not audited)
    head = await client.head(uri, headers=printer)
    assert head.status_code == 200 and head.content == b""
    assert await _audit(conn, first.headers["x-allocation-id"]) == ["allocate", "fetch_codes"]

    # an encrypted file made again opens with the same passphrase, for the same codes
    made = await _allocate(
        client, printer, batch_no=batch_no, count=6, format="file", passphrase=PASSPHRASE
    )
    assert made.status_code == 201, made.text
    file_again = await client.get(f"{made.headers['location']}/codes", headers=printer)
    assert file_again.status_code == 200, file_again.text
    assert file_again.headers["content-disposition"] == made.headers["content-disposition"]
    assert (
        _plain(file_again.content) == _plain(made.content) == [(batch_no, i) for i in range(12, 18)]
    )
    first_header, _ = printfile.read_header(io.BytesIO(made.content))
    header, _ = printfile.read_header(io.BytesIO(file_again.content))
    assert header["ranges"] == first_header["ranges"] == [[batch_no, 12, 17]]
    assert header["wrap"] == first_header["wrap"]
    assert await _allocated(conn, batch_no) == 18  # fetching gives nothing out

    # a file made before keys were kept cannot be made again
    await conn.execute(
        "UPDATE code_allocations SET wrap = NULL, key_version = NULL WHERE id = %s",
        (made.headers["x-allocation-id"],),
    )
    await conn.commit()
    assert_error(
        await client.get(f"{made.headers['location']}/codes", headers=printer),
        409,
        "refetch_unavailable",
    )


def _export_decrypt(sealed: Path, plain: Path) -> subprocess.CompletedProcess[str]:
    """``tracecode export decrypt`` as a printer runs it (README), with ``PASSPHRASE``."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "export", "decrypt", str(sealed),
         "--passphrase-env", "PASS", "--out", str(plain)],
        env={**os.environ, "PASS": PASSPHRASE}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def test_every_file_made_of_an_allocation_has_a_nonce_prefix_of_its_own(
    client: httpx.AsyncClient, login: Any, demo: Any, conn: Any, tmp_path: Path
) -> None:
    """A review: every file of an allocation (its answer, a retry's, each fetch) is sealed under
    the same data key, and each took a random 4-byte GCM nonce prefix: after ~2^16 fetches two
    were likely to share one. README: the prefix is the file's number among the allocation's
    files (0 the answer, then 1, 2, … — a HEAD makes none), in the TCPF1 format the printers'
    ``tracecode export decrypt`` already opens."""
    printer = await login("printer")
    batch_no, _ = await issue_units(client, login, demo, 10)
    body = {"batch_no": batch_no, "count": 4, "format": "file", "passphrase": PASSPHRASE}
    client_id = _client_id()
    made = await _allocate(client, printer, client_id=client_id, **body)
    assert made.status_code == 201, made.text
    uri = f"{made.headers['location']}/codes"
    assert (await client.head(uri, headers=printer)).status_code == 200
    files = [made.content]
    for _ in range(2):
        fetched = await client.get(uri, headers=printer)
        assert fetched.status_code == 200, fetched.text
        files.append(fetched.content)
    replayed = await _allocate(client, printer, client_id=client_id, **body)
    assert replayed.status_code == 200, replayed.text
    files.append(replayed.content)
    headers = [printfile.read_header(io.BytesIO(f))[0] for f in files]
    prefixes = [base64.b64decode(h["nonce_prefix"]) for h in headers]
    assert prefixes == [n.to_bytes(4, "big") for n in range(4)], prefixes
    assert len({h["wrap"]["wrapped_key"] for h in headers}) == 1  # one key, one passphrase
    for number, content in enumerate(files):  # each opens with the documented tool
        sealed, plain = tmp_path / f"{number}.tcpf", tmp_path / f"{number}.csv"
        sealed.write_bytes(content)
        done = await asyncio.to_thread(_export_decrypt, sealed, plain)
        assert done.returncode == 0, done.stderr
        assert _serials(plain.read_text()) == [(batch_no, i) for i in range(4)]
    counted = await (
        await conn.execute(
            "SELECT files_made FROM code_allocations WHERE id = %s",
            (made.headers["x-allocation-id"],),
        )
    ).fetchone()
    assert counted["files_made"] == 4


@contextlib.contextmanager
def _key_versions(app: Any, versions: list[int], current: int) -> Iterator[None]:
    """The API as a host restarted with ``TRACECODE_KEY_VERSIONS=versions`` and
    ``TRACECODE_CURRENT_KEY_VERSION=current`` (after a rotation)."""
    settings, scheme = app.state.settings, app.state.scheme
    app.state.settings = msgspec.structs.replace(
        settings, key_versions=",".join(map(str, versions)), current_key_version=current
    )
    app.state.scheme = load_scheme(
        settings.master_key_bytes(), versions, current, settings.pin_length
    )
    try:
        yield
    finally:
        app.state.settings, app.state.scheme = settings, scheme


async def test_a_file_allocated_under_a_version_retired_since_is_fetched_again(
    client: httpx.AsyncClient, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """A probe: a line system allocated an encrypted file from a batch of key version 1 while
    security had made version 2 current (``1,2``); version 2 was then rolled back (``1,3``).
    The batch's version 1 stays active and its codes verify, yet fetching the file again
    answered 422 ``not_genuine`` "not a genuine code": its data key was derived under the
    version current at allocation time, and the core's ``UnknownKeyVersion`` was mapped as a
    forged serial. The key now depends on no key version (as a case export's); a file recorded
    before under a version is made again while that version is active, and once it is retired
    the answer says so (422 ``key_version_retired``), as anything asked of a retired version."""
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 10)  # version 1
    body = {"batch_no": batch_no, "count": 3, "format": "file", "passphrase": PASSPHRASE}
    with _key_versions(app, [1, 2], 2):
        made = await _allocate(client, planner, **body)
        old = await _allocate(client, planner, **body)
    assert made.status_code == old.status_code == 201, made.text
    with _key_versions(app, [1, 3], 3):
        again = await client.get(f"{made.headers['location']}/codes", headers=planner)
    assert again.status_code == 200, again.text
    assert _plain(again.content) == [(batch_no, i) for i in range(3)]

    # a file recorded before: its key of version 2, then current
    old_id = old.headers["x-allocation-id"]
    with _key_versions(app, [1, 2], 2):
        key = app.state.scheme.derive(f"allocation.{uuid.UUID(old_id).hex}", 2)
    wrap = printfile.wrap_with_passphrase(key, PASSPHRASE)
    await conn.execute(
        "UPDATE code_allocations SET key_version = 2, wrap = %s WHERE id = %s",
        (Jsonb(wrap), old_id),
    )
    await conn.commit()
    with _key_versions(app, [1, 2], 2):
        active = await client.get(f"{old.headers['location']}/codes", headers=planner)
    assert active.status_code == 200, active.text
    assert _plain(active.content) == [(batch_no, i) for i in range(3, 6)]
    with _key_versions(app, [1, 3], 3):
        retired = await client.get(f"{old.headers['location']}/codes", headers=planner)
    assert_error(retired, 422, "key_version_retired")
    assert "key version 2" in retired.json()["error"]["message"]


async def test_a_partner_fetches_its_rsa_file_again_and_nobody_else_sees_it(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    admin, planner, printer = await login("admin"), await login("planner"), await login("printer")
    org = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "printer",
            "name": "Serialbox retry partner",
            "erp_code": f"SBR-{secrets.token_hex(3)}",
            "parent_id": demo["BRAND-LUMI"],
        },
    )
    assert org.status_code == 201, org.text
    key = RSA.generate(2048)
    registered = await client.put(
        f"/printers/{org.json()['id']}/public-key",
        headers=admin,
        json={"public_key_pem": key.public_key().export_key().decode()},
    )
    assert registered.status_code == 204, registered.text
    keys = []
    for name in ("serialbox-a", "serialbox-b"):
        made = await client.post(
            "/api-keys",
            headers=admin,
            json={"name": name, "permissions": ["codes.allocate"], "org_id": org.json()["id"]},
        )
        assert made.status_code == 201, made.text
        keys.append({"X-API-Key": made.json()["key"]})
    batch_no, _ = await issue_units(client, login, demo, 20)
    pool = await client.post(
        "/pools",
        headers=planner,
        json={
            "name": f"retry-{batch_no}",
            "batches": [batch_no],
            "recipient_org_id": org.json()["id"],
        },
    )
    assert pool.status_code == 201, pool.text
    client_id = _client_id()
    body = {"pool_id": pool.json()["id"], "count": 5, "format": "file", "client_id": client_id}
    first = await _allocate(client, keys[0], **body)
    assert first.status_code == 201, first.text
    # the other key of the organisation has client ids of its own
    second = await _allocate(client, keys[1], **body)
    assert second.status_code == 201, second.text
    assert second.headers["x-allocation-id"] != first.headers["x-allocation-id"]

    pem = key.export_key().decode()
    fetched = await client.get(f"{first.headers['location']}/codes", headers=keys[0])
    assert fetched.status_code == 200, fetched.text
    plain = b"".join(printfile.decrypt(io.BytesIO(fetched.content), private_key_pem=pem))
    first_plain = b"".join(printfile.decrypt(io.BytesIO(first.content), private_key_pem=pem))
    assert plain == first_plain
    assert _serials(plain.decode()) == [(batch_no, i) for i in range(5)]
    # the organisation received both; so the other key sees the first too
    assert (await client.get(first.headers["location"], headers=keys[1])).status_code == 200

    stranger = await other_brand_admin(client, login)
    uri = f"{first.headers['location']}/codes"
    for outsider in (stranger, printer):  # another brand; another organisation of the brand
        assert_error(await client.get(uri, headers=outsider), 404, "unknown_allocation")
        assert_error(
            await client.get(first.headers["location"], headers=outsider),
            404,
            "unknown_allocation",
        )
        listed = await client.get("/allocations", headers=outsider, params={"per_page": 200})
        assert first.headers["x-allocation-id"] not in [a["id"] for a in listed.json()["items"]]
    # a stranger's same client id and request is nothing of the partner's
    assert_error(await _allocate(client, stranger, **body), 404, "unknown_pool")
    assert_error(await client.get(uri, headers=await login("analyst")), 403, "permission_denied")
    # brand staff see it, and fetch the codes again too
    assert (await client.get(uri, headers=planner)).status_code == 200


async def test_a_passphrase_with_the_text_format_is_refused(
    client: httpx.AsyncClient, login: Any, demo: Any, conn: Any
) -> None:
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 5)
    for body in ({}, {"format": "text"}):
        error = assert_error(
            await _allocate(
                client, planner, batch_no=batch_no, count=2, passphrase=PASSPHRASE, **body
            ),
            400,
            "passphrase_needs_file",
        )
        assert error["details"] == {"field": "passphrase"}
    assert await _allocated(conn, batch_no) == 0  # nothing was given out in plain text


async def test_bad_client_ids_are_refused(
    client: httpx.AsyncClient, login: Any, demo: Any, conn: Any
) -> None:
    planner = await login("planner")
    batch_no, _ = await issue_units(client, login, demo, 5)
    # too long, empty, a space, a line break or tab, not ASCII: the field's own rule (a final
    # line feed too: a pattern's $ matches before it, the database's check does not)
    for bad in ("x" * 65, "", "run 7", "run\n7", "run7\n", "run\t7", "run\r", "批次-7"):
        error = assert_error(
            await _allocate(client, planner, batch_no=batch_no, count=1, client_id=bad),
            400,
            "validation_failed",
        )
        assert error["details"][0]["field"] == "client_id"
    # other control characters (and a raw DEL) stop at the edge, as in every body and query
    for bad in ("run\x07bell", "run\x1b[0m", "run\x00", "run\x7f"):
        assert_error(
            await _allocate(client, planner, batch_no=batch_no, count=1, client_id=bad),
            400,
            "invalid_character",
        )
    for bad, code in (("x" * 65, "validation_failed"), ("run 7", "validation_failed"),
                      ("run\x07", "invalid_character")):  # fmt: skip
        error = assert_error(
            await client.get("/allocations", headers=planner, params={"client_id": bad}), 400, code
        )
        assert error["details"][0]["field"] == "client_id"
    assert await _allocated(conn, batch_no) == 0
    longest = "~" * 64
    made = await _allocate(client, planner, batch_no=batch_no, count=1, client_id=longest)
    assert made.status_code == 201, made.text


async def test_allocations_are_listed_paged_filtered_and_scoped(
    client: httpx.AsyncClient, login: Any, demo: Any
) -> None:
    planner, printer = await login("planner"), await login("printer")
    first, _ = await issue_units(client, login, demo, 20)
    second, _ = await issue_units(client, login, demo, 20)
    pool = await client.post(
        "/pools", headers=planner, json={"name": f"listed-{first}", "batches": [second]}
    )
    assert pool.status_code == 201, pool.text
    mine = [await _allocate(client, printer, batch_no=first, count=2) for _ in range(3)]
    pooled = await _allocate(client, planner, pool_id=pool.json()["id"], count=4)
    assert all(a.status_code == 201 for a in [*mine, pooled])
    ids = [a.headers["x-allocation-id"] for a in mine]

    by_batch = await client.get("/allocations", headers=planner, params={"batch_no": first})
    assert [a["id"] for a in by_batch.json()["items"]] == ids[::-1]  # newest first
    paged = await client.get(
        "/allocations", headers=planner, params={"batch_no": first, "per_page": 2, "page": 2}
    )
    assert paged.json()["total"] == 3 and [a["id"] for a in paged.json()["items"]] == ids[:1]
    by_pool = await client.get(
        "/allocations", headers=planner, params={"pool_id": pool.json()["id"]}
    )
    (only,) = by_pool.json()["items"]
    assert only["id"] == pooled.headers["x-allocation-id"]
    assert only["ranges"] == [{"batch_no": second, "first_index": 0, "last_index": 3, "count": 4}]

    made_at = [
        (await client.get(a.headers["location"], headers=planner)).json()["created_at"]
        for a in mine
    ]
    window = await client.get(
        "/allocations",
        headers=planner,
        params={"batch_no": first, "from": made_at[1], "to": made_at[2]},
    )
    assert [a["id"] for a in window.json()["items"]] == ids[1:2]
    assert_error(
        await client.get("/allocations", headers=planner, params={"from": "yesterday"}),
        400,
        "validation_failed",
    )
    # the printer sees what it received, not the planner's pool allocation
    seen = await client.get("/allocations", headers=printer, params={"per_page": 200})
    seen_ids = [a["id"] for a in seen.json()["items"]]
    assert set(ids) <= set(seen_ids) and pooled.headers["x-allocation-id"] not in seen_ids
    assert_error(await client.get("/allocations", headers=await login("analyst")), 403)
