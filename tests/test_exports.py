"""Printer files (C3), case codes (C4), export jobs (C6) and code lifecycle (issue 4)."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from Crypto.PublicKey import RSA

from app import jobs
from app._core import is_valid_sscc
from app.codes import exports, printfile
from tests.conftest import ROOT
from tests.helpers import (
    activate,
    assert_error,
    issue_cases,
    issue_units,
    key_of,
    scheme_for_tests,
)
from tests.race_support import audit_rows, lock_waiters
from tests.stream_support import Paused

PASS_OUT = "outer-passphrase-1"
PASS_IN = "inner-passphrase-2"


async def _batch(client: Any, login: Any, demo: Any, size: int, **extra: Any) -> dict[str, Any]:
    response = await client.post(
        "/batches",
        headers=await login("planner"),
        json={"size": size, "printer_id": demo["PRINTER-SH"], **extra},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _download(client: Any, headers: dict[str, str], export_id: str, part: str) -> bytes:
    response = await client.get(f"/exports/{export_id}/files/{part}", headers=headers)
    assert response.status_code == 200, response.text
    return response.content  # type: ignore[no-any-return]


def _plain(blob: bytes, **key: Any) -> str:
    return b"".join(printfile.decrypt(io.BytesIO(blob), **key)).decode()


async def test_export_round_trip_equals_the_generator(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    planner = await login("planner")
    product = (await client.get("/products", headers=planner, params={"q": "LM-HY-50"})).json()[
        "items"
    ][0]
    batch = await _batch(client, login, demo, 1000, product_id=product["id"])
    made = await client.post(
        f"/batches/{batch['batch_no']}/exports",
        headers=planner,
        json={"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}},
    )
    assert made.status_code == 201, made.text
    export = made.json()
    assert export["state"] == "done" and export["progress"] == export["total"] == 1000
    printer = await login("printer")
    outer = _plain(await _download(client, printer, export["id"], "outer"), passphrase=PASS_OUT)
    inner = _plain(await _download(client, printer, export["id"], "inner"), passphrase=PASS_IN)
    scheme = app.state.scheme
    records = scheme.generate(batch["batch_no"], 0, 1000, with_pins=True)
    root = app.state.settings.public_url  # TRACECODE_PUBLIC_SCHEME://TRACECODE_RESOLVER_HOST
    outer_lines, inner_lines = outer.splitlines(), inner.splitlines()
    assert len(outer_lines) == len(inner_lines) == 1000
    for i in range(1000):
        serial, pin = (
            records[26 * i : 26 * i + 20].decode(),
            records[26 * i + 20 : 26 * i + 26].decode(),
        )
        assert outer_lines[i] == f"{i + 1},{serial},{root}/01/{product['gtin']}/21/{serial}"
        assert inner_lines[i] == f"{i + 1},{pin}"
    # no single file holds both the serial and the PIN
    assert pin not in outer and serial not in inner
    assert "plain_sha256" in export["files"]["outer"]
    assert "plain_sha256" not in export["files"]["inner"]  # the PINs: no digest to try them on
    shown = await client.get(f"/batches/{batch['batch_no']}", headers=planner)
    assert shown.json()["state"] == "exported"
    assert [e["id"] for e in shown.json()["exports"]] == [export["id"]]
    audit = (
        await client.get(
            "/audit",
            headers=await login("admin"),
            params={"entity": "code_export", "entity_id": export["id"]},
        )
    ).json()
    actions = [(a["action"], (a["after"] or {}).get("part")) for a in audit["items"]]
    assert actions == [("download", "inner"), ("download", "outer"), ("create", None)]
    assert audit["items"][0]["after"]["range"] == [0, 1000]
    assert PASS_OUT not in str(audit) and PASS_IN not in str(audit)


async def test_an_export_made_through_an_api_key_names_its_maker(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the brand's print-ordering tool (an API key the admin made, ``codes.export``)
    made a batch's printer files, and the export's ``created_by`` was null — files of serials
    and PINs made by nobody. It names the person behind the key now (``Principal.person``)."""
    batch = await _batch(client, login, demo, 10)
    admin = await login("admin")
    key = await key_of(client, admin, ["codes.export"])
    made = await client.post(
        f"/batches/{batch['batch_no']}/exports",
        headers=key,
        json={"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}},
    )
    assert made.status_code == 201, made.text
    maker = (await client.get("/auth/me", headers=admin)).json()["user_id"]
    assert made.json()["created_by"] == maker, made.json()


async def test_range_export_and_bad_ranges(client: Any, login: Any, demo: Any, app: Any) -> None:
    planner = await login("planner")
    batch = await _batch(client, login, demo, 500)
    no = batch["batch_no"]
    made = await client.post(
        f"/batches/{no}/exports",
        headers=planner,
        json={
            "start": 100,
            "end": 200,
            "outer": {"passphrase": PASS_OUT},
            "inner": {"passphrase": PASS_IN},
        },
    )
    assert made.status_code == 201, made.text
    outer = _plain(
        await _download(client, planner, made.json()["id"], "outer"), passphrase=PASS_OUT
    )
    lines = outer.splitlines()
    assert len(lines) == 100 and lines[0].startswith("101,") and lines[-1].startswith("200,")
    assert lines[0].split(",")[1] == app.state.scheme.serial(no, 100)
    assert lines[0].split(",")[2].endswith("/c/" + app.state.scheme.serial(no, 100))
    body = {"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}}
    for bad in ({"start": 400, "end": 501}, {"start": 300, "end": 300}, {"start": 500}):
        assert_error(
            await client.post(f"/batches/{no}/exports", headers=planner, json={**body, **bad}),
            400,
            "range_outside_batch",
        )
    assert_error(
        await client.post(f"/batches/{no}/exports", headers=planner, json={**body, "start": -1}),
        400,
    )
    assert_error(await client.post("/batches/999999/exports", headers=planner, json=body), 404)
    short = {"outer": {"passphrase": "short"}, "inner": {"passphrase": PASS_IN}}
    assert_error(
        await client.post(f"/batches/{no}/exports", headers=planner, json=short),
        400,
        "validation_failed",
    )
    from app.codes.exports import MAX_CODES

    huge = await _batch(client, login, demo, MAX_CODES + 1)  # one row, whatever its size
    too_large = await client.post(
        f"/batches/{huge['batch_no']}/exports", headers=planner, json=body
    )
    assert_error(too_large, 400, "export_too_large")
    in_range = {**body, "start": 0, "end": 10}
    assert (
        await client.post(f"/batches/{huge['batch_no']}/exports", headers=planner, json=in_range)
    ).status_code in (201, 202)
    for blank in ("  padded passphrase  ", " " * 12):  # a passphrase file could never open it
        padded = {"outer": {"passphrase": blank}, "inner": {"passphrase": PASS_IN}}
        assert_error(
            await client.post(f"/batches/{no}/exports", headers=planner, json=padded),
            400,
            "validation_failed",
        )
    assert_error(
        await client.post(f"/batches/{no}/exports", headers=planner, json={}),
        400,
        "no_wrapping_key",
    )
    for not_an_id in (0, -3):  # a probe: 0 was taken for the batch's printer
        zero = {**body, "inner": {"printer_id": not_an_id, "passphrase": PASS_IN}}
        assert_error(
            await client.post(f"/batches/{no}/exports", headers=planner, json=zero),
            400,
            "validation_failed",
        )
    unknown = {**body, "inner": {"printer_id": 999999, "passphrase": PASS_IN}}
    assert_error(
        await client.post(f"/batches/{no}/exports", headers=planner, json=unknown),
        404,
        "unknown_printer",
    )
    await client.post(f"/batches/{no}/void", headers=planner, json={"reason": "test"})
    assert_error(
        await client.post(f"/batches/{no}/exports", headers=planner, json=body), 422, "batch_void"
    )
    assert_error(
        await client.post(f"/batches/{no}/exports", headers=await login("printer"), json=body), 403
    )


async def test_tampered_truncated_and_wrong_key_files_fail_clearly(
    client: Any, login: Any, demo: Any
) -> None:
    planner = await login("planner")
    batch = await _batch(client, login, demo, 30_000)  # ~1.3 MB outer file: two chunks
    export = (
        await client.post(
            f"/batches/{batch['batch_no']}/exports",
            headers=planner,
            json={"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}},
        )
    ).json()
    blob = await _download(client, planner, export["id"], "outer")
    assert _plain(blob, passphrase=PASS_OUT).count("\n") == 30_000
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    header_end = (
        len(printfile.MAGIC)
        + 4
        + int.from_bytes(blob[len(printfile.MAGIC) : len(printfile.MAGIC) + 4], "big")
    )
    first_chunk_end = header_end + 4 + printfile.CHUNK_SIZE + 16
    header_edit = bytearray(blob)
    header_edit[header_end - 3] ^= 0x01
    cases = {
        "altered": bytes(flipped),
        "cut mid-chunk": blob[:-100],
        "cut at a chunk boundary": blob[:first_chunk_end],
        "header altered": bytes(header_edit),
        "not a printer file": b"hello world",
    }
    for name, damaged in cases.items():
        with pytest.raises(printfile.PrintFileError):
            _plain(damaged, passphrase=PASS_OUT)
        assert name
    with pytest.raises(printfile.WrongKey, match="wrong passphrase"):
        _plain(blob, passphrase="not-the-passphrase")
    with pytest.raises(printfile.WrongKey):
        _plain(blob, private_key_pem=RSA.generate(2048).export_key().decode())


@pytest.fixture
async def printer_key_forgotten(app: Any, demo: Any) -> AsyncIterator[None]:
    """PRINTER-SH's public key forgotten when the test ends, passed or not: other tests expect
    the demo printer without a key (its files unwrapped)."""
    yield
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE orgs SET public_key_pem = NULL WHERE id = %s", (demo["PRINTER-SH"],)
        )


async def test_rsa_wrapped_files_open_only_with_the_printers_key(
    client: Any, login: Any, demo: Any, tmp_path: Path, printer_key_forgotten: None
) -> None:
    key = RSA.generate(2048)
    printer = await login("printer")
    registered = await client.put(
        f"/printers/{demo['PRINTER-SH']}/public-key",
        headers=printer,
        json={"public_key_pem": key.public_key().export_key().decode()},
    )
    assert registered.status_code == 204, registered.text
    # probe T: the ERP partner (orgs.write, no codes.export) re-keyed the printer to its own key
    # and read the next printer files; a printer's key is set by the printer or code staff
    stolen = await client.put(
        f"/printers/{demo['PRINTER-SH']}/public-key",
        headers=await login("partner"),
        json={"public_key_pem": RSA.generate(2048).public_key().export_key().decode()},
    )
    assert_error(stolen, 403, "permission_denied")
    bad_key = await client.put(
        f"/printers/{demo['PRINTER-SH']}/public-key",
        headers=printer,
        json={"public_key_pem": "x" * 200},
    )
    assert_error(bad_key, 400, "invalid_public_key")
    # probe H3/H4: a private key pasted by mistake (it was stored and shown in the audit log), a
    # modulus or an exponent that cost the API seconds per use, an even exponent nobody can use
    huge = secrets.randbits(16384) | (1 << 16383) | 1
    for pem in (
        key.export_key().decode(),
        RSA.construct((huge, 65537), consistency_check=False).export_key().decode(),
        RSA.construct((key.n, (1 << 4000) + 1), consistency_check=False).export_key().decode(),
        RSA.construct((key.n, 4), consistency_check=False).export_key().decode(),
    ):
        refused = await client.put(
            f"/printers/{demo['PRINTER-SH']}/public-key",
            headers=printer,
            json={"public_key_pem": pem},
        )
        assert_error(refused, 400, "invalid_public_key")
    audit = await client.get("/audit", headers=await login("admin"), params={"per_page": 200})
    assert "PRIVATE" not in audit.text
    planner = await login("planner")
    batch = await _batch(client, login, demo, 20)
    export = (
        await client.post(f"/batches/{batch['batch_no']}/exports", headers=planner, json={})
    ).json()
    assert export["parts"]["outer"]["method"] == "rsa-oaep-sha256"
    blob = await _download(client, printer, export["id"], "outer")
    assert _plain(blob, private_key_pem=key.export_key().decode()).count("\n") == 20
    with pytest.raises(printfile.WrongKey, match="wrong RSA private key"):
        _plain(blob, private_key_pem=RSA.generate(2048).export_key().decode())
    # the printer's own tool: tracecode export decrypt
    encrypted, pem, plain = (
        tmp_path / "outer.tcpf",
        tmp_path / "printer.pem",
        tmp_path / "plain.csv",
    )
    encrypted.write_bytes(blob)
    pem.write_text(key.export_key().decode())
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "app.cli",
            "export",
            "decrypt",
            str(encrypted),
            "--key",
            str(pem),
            "--out",
            str(plain),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert plain.read_text().count("\n") == 20
    encrypted.write_bytes(blob[:-5])
    failed = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "app.cli",
            "export",
            "decrypt",
            str(encrypted),
            "--key",
            str(pem),
            "--out",
            str(plain),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert (
        failed.returncode == 2 and "truncated" in failed.stderr and "Traceback" not in failed.stderr
    )
    # the failure wrote nothing: the file of the good run is as it was, no partial file beside it
    assert plain.read_text().count("\n") == 20
    leftovers = await asyncio.to_thread(lambda: list(tmp_path.glob(".tracecode-*")))
    assert leftovers == []


async def test_printers_get_only_their_own_files(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    from app.orgs.schemas import OrgIn
    from app.orgs.service import create_org
    from app.users.schemas import UserIn
    from app.users.service import create_user

    async with app.state.pool.connection() as c:
        pin_printer = await create_org(
            c,
            None,
            OrgIn(
                kind="printer",
                name="PIN printer",
                erp_code="PRINTER-PIN",
                parent_id=demo["BRAND-LUMI"],
            ),
        )
        await create_user(
            c,
            None,
            UserIn(
                org_id=pin_printer.id,
                username="pin_printer",
                password="password-123",
                roles=["printer"],
            ),
        )
    planner = await login("planner")
    batch = await _batch(client, login, demo, 10)
    export = (
        await client.post(
            f"/batches/{batch['batch_no']}/exports",
            headers=planner,
            json={
                "outer": {"passphrase": PASS_OUT},
                "inner": {"printer_id": pin_printer.id, "passphrase": PASS_IN},
            },
        )
    ).json()
    outer_printer = await login("printer")
    inner_printer = await login("pin_printer", "password-123")
    assert (
        await client.get(f"/exports/{export['id']}/files/outer", headers=outer_printer)
    ).status_code == 200
    assert_error(
        await client.get(f"/exports/{export['id']}/files/inner", headers=outer_printer), 404
    )
    assert (
        await client.get(f"/exports/{export['id']}/files/inner", headers=inner_printer)
    ).status_code == 200
    assert_error(
        await client.get(f"/exports/{export['id']}/files/outer", headers=inner_printer), 404
    )
    assert_error(await client.get(f"/exports/{export['id']}/files/bogus", headers=planner), 400)
    assert_error(
        await client.get(f"/exports/{export['id']}", headers=await login("agent_admin")), 403
    )
    assert_error(await client.get("/exports/not-a-uuid", headers=planner), 404)
    # each printer sees the digest of its own file only: the inner file's (a few PINs) let the
    # outer printer, which holds the serials, find the PINs by trying them all (probe H2)
    for headers, mine in ((outer_printer, "outer"), (inner_printer, "inner")):
        shown = await client.get(f"/exports/{export['id']}", headers=headers)
        assert set(shown.json()["files"]) == {mine}, shown.json()["files"]
    assert set((await client.get(f"/exports/{export['id']}", headers=planner)).json()["files"]) == {
        "outer",
        "inner",
    }
    # a void batch's labels are destroyed, not printed: its files are no longer handed out
    voided = await client.post(
        f"/batches/{batch['batch_no']}/void", headers=planner, json={"reason": "labels lost"}
    )
    assert voided.status_code == 200, voided.text
    assert_error(
        await client.get(f"/exports/{export['id']}/files/outer", headers=outer_printer),
        422,
        "batch_void",
    )


async def test_a_printer_lists_the_exports_addressed_to_it(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: README (printer files): anyone else than brand staff "sees, lists and downloads
    only the files addressed to it". The printer's user (role ``printer``, ``codes.download``)
    read an export by id and downloaded its file, but ``GET /batches/{no}/exports`` of its own
    batch answered 403 (``page_exports`` required ``codes.export`` while ``_visible`` takes
    ``codes.download``): it had no way to find the files addressed to it. Now 200: the exports
    with a file addressed to its printer, each with its own files only."""
    admin = await login("admin")
    pin_printer = await _new_printer(client, admin, demo, "PIN")
    batch_no, _ = await issue_units(client, login, demo, 5)  # addressed to PRINTER-SH
    planner = await login("planner")
    made = []
    for outer in (None, pin_printer):  # the first's outer file is PRINTER-SH's, the second none
        export = await client.post(
            f"/batches/{batch_no}/exports",
            headers=planner,
            json={
                "outer": {"printer_id": outer, "passphrase": PASS_OUT},
                "inner": {"printer_id": pin_printer, "passphrase": PASS_IN},
            },
        )
        assert export.status_code == 201, export.text
        made.append(export.json()["id"])
    printer = await login("printer")
    listed = await client.get(f"/batches/{batch_no}/exports", headers=printer)
    assert listed.status_code == 200, listed.text
    assert [e["id"] for e in listed.json()["items"]] == made[:1]
    assert set(listed.json()["items"][0]["files"]) == {"outer"}
    every = (await client.get(f"/batches/{batch_no}/exports", headers=planner)).json()["items"]
    assert [e["id"] for e in every] == made
    # the batch's detail shows the printer the same exports (it showed none)
    detail = (await client.get(f"/batches/{batch_no}", headers=printer)).json()
    assert [(e["id"], set(e["files"])) for e in detail["exports"]] == [(made[0], {"outer"})]


async def test_a_contract_printers_exporting_key_gets_no_file_of_another_printers_batch(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a contract printer's key with ``codes.export`` and ``codes.download`` (a
    printer that makes its own files) was scoped by the shape of its permissions, not by where
    it sits (``exports._visible``, ``file_for_download``, ``create_unit_export``: any
    ``codes.export`` holder was brand staff): it exported a batch addressed to ANOTHER printer,
    both parts to itself under its own passphrase, and downloaded the serials and their PINs
    (SPEC C3: "no single printer holds both"; README: printers get "only the files addressed to
    them"); it also downloaded the PIN file the planner addressed to the other printer. Now a
    printer's caller reaches only its own printer's batches and files, as allocation
    (``allocation_records.place``) decides: 404 for the other's, and the other's exports are
    not listed to it."""
    admin, planner = await login("admin"), await login("planner")
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
    ours = org.json()["id"]
    made = await client.post(
        "/api-keys",
        headers=admin,
        json={
            "name": "serialbox",
            "permissions": ["codes.download", "codes.export"],
            "org_id": ours,
        },
    )
    assert made.status_code == 201, made.text
    key = {"X-API-Key": made.json()["key"]}
    batch_no = (await _batch(client, login, demo, 10))["batch_no"]  # addressed to PRINTER-SH
    theirs = await client.post(
        f"/batches/{batch_no}/exports",
        headers=planner,
        json={"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}},
    )
    assert theirs.status_code == 201, theirs.text
    pins = await client.get(f"/exports/{theirs.json()['id']}/files/inner", headers=key)
    mine = await client.post(
        f"/batches/{batch_no}/exports",
        headers=key,
        json={
            "outer": {"printer_id": ours, "passphrase": PASS_OUT},
            "inner": {"printer_id": ours, "passphrase": PASS_OUT},
        },
    )
    assert mine.status_code == 404, mine.text  # 201: the other printer's codes and PINs
    assert pins.status_code == 404, pins.text
    assert_error(await client.get(f"/exports/{theirs.json()['id']}", headers=key), 404)
    # not even an empty list (``test_another_printers_batch_has_no_export_list_for_a_printer``)
    assert_error(await client.get(f"/batches/{batch_no}/exports", headers=key), 404, "not_found")


@pytest.fixture
def jobs_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs taken by the broker at once and delivered to no worker: a test runs them by hand."""

    async def handed(name: str, *args: Any) -> bool:
        return True

    monkeypatch.setattr(jobs, "hand_over", handed)


@pytest.fixture
def queued_exports(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Exports of 100 codes or more go to a job, written in steps of 1,000 codes; the app's
    settings as they were."""
    monkeypatch.setattr(exports, "STEP", 1000)
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, export_async_threshold=100)
    yield settings
    app.state.settings = settings


async def _queue_export(client: Any, login: Any, demo: Any) -> tuple[Any, Any, Any]:
    """A batch of 5,000 codes and its export, queued: (planner's headers, batch, response)."""
    planner = await login("planner")
    batch = await _batch(client, login, demo, 5000)
    body = {"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}}
    queued = await client.post(f"/batches/{batch['batch_no']}/exports", headers=planner, json=body)
    assert queued.status_code == 202, queued.text
    return planner, batch, queued


async def test_a_killed_job_is_retried_to_the_same_content_and_one_batch(
    client: Any, login: Any, demo: Any, app: Any, queued_exports: Any
) -> None:
    """The 202 job path on a real dramatiq worker; a run killed mid-way, then retried."""
    from dramatiq import Worker

    from app.jobs import broker
    from workers import codes  # noqa: F401 - declares run_export_job, as a worker does

    settings = queued_exports
    planner, batch, queued = await _queue_export(client, login, demo)
    assert queued.headers["location"] == f"/exports/{queued.json()['id']}"
    assert queued.json()["state"] == "queued"
    export_id = queued.json()["id"]

    # A first run dies after two steps (as if the worker were killed).
    def die(done: int, total: int) -> None:
        if done >= 2000:
            raise KeyboardInterrupt("worker killed")

    with pytest.raises(KeyboardInterrupt):
        await asyncio.to_thread(
            exports.run_export, app.state.db_url, settings, app.state.scheme, export_id, die
        )
    half = (await client.get(f"/exports/{export_id}", headers=planner)).json()
    assert half["progress"] == 2000 and half["state"] != "done"
    assert not exports.export_file(settings, export_id, "outer").exists()

    # The queued job (the retry) now runs on a real worker and completes.
    worker = Worker(broker, worker_threads=1)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        done = half
        while done["state"] != "done" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            done = (await client.get(f"/exports/{export_id}", headers=planner)).json()
    finally:
        worker.stop()
    assert done["state"] == "done" and done["progress"] == 5000 and done["attempts"] == 2

    # Running it again changes nothing; the plain content equals a direct generation.
    assert exports.run_export(app.state.db_url, settings, app.state.scheme, export_id) == "done"
    outer = _plain(await _download(client, planner, export_id, "outer"), passphrase=PASS_OUT)
    expected = app.state.scheme.print_lines(
        batch["batch_no"], 0, 5000, "outer", f"{settings.public_url}/c/"
    )
    assert outer.encode() == expected
    import hashlib

    assert hashlib.sha256(expected).hexdigest() == done["files"]["outer"]["plain_sha256"]
    batches = (await client.get("/batches", headers=planner, params={"per_page": 200})).json()
    assert sum(1 for b in batches["items"] if b["batch_no"] == batch["batch_no"]) == 1
    exported = (await client.get(f"/batches/{batch['batch_no']}/exports", headers=planner)).json()
    assert [e["id"] for e in exported["items"]] == [export_id]
    assert exported["total"] == 1 and exported["page"] == 1


async def test_an_export_failed_by_its_run_stays_failed_and_its_job_is_not_retried(
    client: Any,
    login: Any,
    demo: Any,
    app: Any,
    queued_exports: Any,
    jobs_by_hand: None,
) -> None:
    """A probe: a queued export's run fails for a reason that is no batch void (a full disk, a
    bug): the export was ``failed`` — the download 409 ``export_failed`` "export the batch
    again", the CLI's poll ended on it (README: "its file never comes: export again") — and
    the error re-raised, so dramatiq retried the job (``OTHER_RETRIES``), whose run took up
    any export not done: the export the planner was told to redo became ``done`` with files
    after all, two sets of printer files of one range. ``failed`` is final: the job is not
    retried, and a delivery all the same (at least once) leaves the export failed."""
    settings, scheme, db_url = queued_exports, app.state.scheme, app.state.db_url
    planner, _, queued = await _queue_export(client, login, demo)
    export_id = queued.json()["id"]
    url = f"/exports/{export_id}/files/outer"

    def broken(done: int, total: int) -> None:
        raise RuntimeError("disk trouble")

    with pytest.raises(RuntimeError) as raised:
        await asyncio.to_thread(exports.run_export, db_url, settings, scheme, export_id, broken)
    failed = (await client.get(f"/exports/{export_id}", headers=planner)).json()
    assert failed["state"] == "failed" and "disk trouble" in failed["error"], failed
    assert_error(await client.get(url, headers=planner), 409, "export_failed")
    # the job delivered again all the same (a worker killed before acknowledging it)
    again = await asyncio.to_thread(exports.run_export, db_url, settings, scheme, export_id)
    later = (await client.get(f"/exports/{export_id}", headers=planner)).json()
    assert again == "failed" and later["state"] == "failed" and not later["files"], later
    assert later["attempts"] == 1 and later["error"] == failed["error"], later
    assert not (settings.export_path / export_id).exists()
    assert_error(await client.get(url, headers=planner), 409, "export_failed")
    assert not jobs.retry_when(0, raised.value)  # the job: dead-lettered at once


async def test_an_export_failed_after_its_files_were_renamed_leaves_no_file(
    client: Any,
    login: Any,
    demo: Any,
    app: Any,
    queued_exports: Any,
    monkeypatch: pytest.MonkeyPatch,
    jobs_by_hand: None,
) -> None:
    """A review probe: a run failing for good after its ``*.partial`` files were renamed (the
    last step, recording the files, fails: a bug) left whole printer files of the failed export
    on the disk for good — only a later delivery's run removed them, and none comes: its job is
    dead-lettered at once. The export's folder goes when it fails."""
    settings, scheme, db_url = queued_exports, app.state.scheme, app.state.db_url
    planner, _, queued = await _queue_export(client, login, demo)
    export_id = queued.json()["id"]
    renamed: list[bool] = []

    def jsonb(_: Any) -> Any:  # called once the files are renamed, recording them
        renamed.append(exports.export_file(settings, export_id, "outer").exists())
        raise RuntimeError("bug in the final step")

    monkeypatch.setattr(exports, "Jsonb", jsonb)
    with pytest.raises(RuntimeError) as raised:
        await asyncio.to_thread(exports.run_export, db_url, settings, scheme, export_id)
    assert renamed == [True] and not jobs.retry_when(0, raised.value)  # no second delivery
    failed = (await client.get(f"/exports/{export_id}", headers=planner)).json()
    assert failed["state"] == "failed" and "final step" in failed["error"], failed
    assert not (settings.export_path / export_id).exists()


async def test_an_export_run_failing_for_a_passing_reason_is_finished_by_its_retry(
    client: Any,
    login: Any,
    demo: Any,
    app: Any,
    queued_exports: Any,
    jobs_by_hand: None,
) -> None:
    """A run that fails for a passing reason (its transaction rolled back: a deadlock, a
    serialization failure; PostgreSQL gone) does not fail the export: its job is retried
    (``app.jobs.retry_when``) — or the orphan sweeper sends it, for a run inside a request that
    answered 503 "a worker will finish it" — and the retry writes it. Meanwhile the export is
    ``running``, its error shown."""
    import psycopg

    settings, scheme, db_url = queued_exports, app.state.scheme, app.state.db_url
    planner, _, queued = await _queue_export(client, login, demo)
    export_id = queued.json()["id"]

    def rolled_back(done: int, total: int) -> None:
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    with pytest.raises(psycopg.errors.DeadlockDetected) as raised:
        await asyncio.to_thread(
            exports.run_export, db_url, settings, scheme, export_id, rolled_back
        )
    assert jobs.retry_when(0, raised.value)
    waiting = (await client.get(f"/exports/{export_id}", headers=planner)).json()
    assert waiting["state"] == "running" and "deadlock" in waiting["error"], waiting
    assert await asyncio.to_thread(exports.run_export, db_url, settings, scheme, export_id) == (
        "done"
    )
    done = (await client.get(f"/exports/{export_id}", headers=planner)).json()
    assert done["state"] == "done" and done["error"] is None and done["attempts"] == 2, done


@pytest.mark.parametrize("pause_at", [2000, 5000])
async def test_a_batch_voided_while_its_export_runs_stops_the_run(
    client: Any, login: Any, demo: Any, app: Any, queued_exports: Any, pause_at: int
) -> None:
    """Probe AB: a batch voided during its export's run (hours, for tens of millions of codes)
    left the run to write every file. The run checks the batch at every step, and once more as
    it ends (a void after the last step: review): it stops, removes what it wrote and fails
    with the reason."""
    import threading

    settings = queued_exports
    planner, batch, queued = await _queue_export(client, login, demo)
    export_id = queued.json()["id"]
    paused, resume = threading.Event(), threading.Event()

    def pause(done: int, total: int) -> None:
        if done == pause_at:  # steps written: the planner voids the batch now
            paused.set()
            assert resume.wait(30)

    run = asyncio.create_task(
        asyncio.to_thread(
            exports.run_export, app.state.db_url, settings, app.state.scheme, export_id, pause
        )
    )
    assert await asyncio.to_thread(paused.wait, 30)
    voided = await client.post(
        f"/batches/{batch['batch_no']}/void", headers=planner, json={"reason": "misprint"}
    )
    assert voided.status_code == 200, voided.text
    resume.set()
    assert await asyncio.wait_for(run, 60) == "failed"
    failed = (await client.get(f"/exports/{export_id}", headers=planner)).json()
    assert failed["state"] == "failed" and failed["error"] == "the batch is void"
    assert failed["progress"] == min(pause_at + 1000, 5000)
    directory = settings.export_path / export_id
    assert not directory.exists() or list(directory.iterdir()) == []


@pytest.mark.parametrize("kind", ["batches", "case-batches"])
async def test_an_export_whose_batch_is_voided_during_its_inline_run_is_not_answered_201(
    client: Any, login: Any, demo: Any, app: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A probe: a small export runs inside its request; a void committed during that run
    stopped it (``failed``, "the batch is void"), and the request still answered 201 Created
    with the failed export, as if the printer files had been made. It is refused as an export
    asked after the void is: 422 ``batch_void``. Here the run (steps of 1,000 codes) pauses
    after its first step, the void is made through the API, and the run goes on."""
    import threading

    monkeypatch.setattr(exports, "STEP", 1000)
    planner = await login("planner")
    made = await client.post(
        f"/{kind}",
        headers=planner,
        json={"size": 3000, "printer_id": demo["PRINTER-SH"]}
        | ({"level": "inner"} if kind == "case-batches" else {}),
    )
    assert made.status_code == 201, made.text
    batch = made.json()["batch_no" if kind == "batches" else "id"]
    body = (
        {"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}}
        if kind == "batches"
        else {"cases": {"passphrase": PASS_OUT}}
    )
    paused, resume = threading.Event(), threading.Event()
    steps = exports._steps

    def pausing(start: int, end: int) -> Iterator[tuple[int, int]]:
        for n, step in enumerate(steps(start, end)):
            if n == 1:  # the first step is written: the batch is voided now
                paused.set()
                assert resume.wait(30)
            yield step

    monkeypatch.setattr(exports, "_steps", pausing)
    exporting = asyncio.create_task(
        client.post(f"/{kind}/{batch}/exports", headers=planner, json=body)
    )
    assert await asyncio.to_thread(paused.wait, 30)  # the export runs inline, not as a job
    voided = await client.post(f"/{kind}/{batch}/void", headers=planner, json={"reason": "lost"})
    assert voided.status_code == 200, voided.text
    resume.set()
    refused = assert_error(await asyncio.wait_for(exporting, 60), 422, "batch_void")
    export_id = refused["details"]["export_id"]
    failed = (await client.get(f"/exports/{export_id}", headers=planner)).json()
    assert failed["state"] == "failed" and failed["error"] == "the batch is void", failed
    assert failed["progress"] == 2000 and not failed["files"]
    directory = app.state.settings.export_path / export_id
    assert not directory.exists() or list(directory.iterdir()) == []
    # and as when the void lands before the request
    again = await client.post(f"/{kind}/{batch}/exports", headers=planner, json=body)
    assert_error(again, 422, "batch_void")


async def test_case_code_batches_are_consecutive_valid_ssccs(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    planner = await login("planner")
    first = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "inner", "size": 5, "printer_id": demo["PRINTER-SH"]},
    )
    second = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "pallet", "size": 3, "printer_id": demo["PRINTER-SH"]},
    )
    assert first.status_code == second.status_code == 201, first.text
    a, b = first.json(), second.json()
    assert a["extension_digit"] == 1 and b["extension_digit"] == 3
    assert b["first_ref"] == a["first_ref"] + 5
    prefix = app.state.settings.gs1_company_prefix
    assert a["first_sscc"].startswith("1" + prefix) and is_valid_sscc(a["first_sscc"])
    export = await client.post(
        f"/case-batches/{a['id']}/exports",
        headers=planner,
        json={"cases": {"passphrase": PASS_OUT}},
    )
    assert export.status_code == 201, export.text
    plain = _plain(
        await _download(client, planner, export.json()["id"], "cases"), passphrase=PASS_OUT
    )
    lines = [line.split(",") for line in plain.splitlines()]
    assert [int(seq) for seq, _, _ in lines] == [1, 2, 3, 4, 5]
    assert lines[0][1] == a["first_sscc"] and lines[-1][1] == a["last_sscc"]
    assert all(is_valid_sscc(sscc) and url.endswith("/00/" + sscc) for _, sscc, url in lines)
    assert len({sscc for _, sscc, _ in lines}) == 5
    again = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "master", "size": 2, "printer_id": demo["PRINTER-SH"], "request_key": "k1"},
    )
    retry = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "master", "size": 2, "printer_id": demo["PRINTER-SH"], "request_key": "k1"},
    )
    assert (
        again.status_code == 201
        and retry.status_code == 200
        and retry.json()["id"] == again.json()["id"]
    )
    assert_error(
        await client.post(
            "/case-batches",
            headers=planner,
            json={"level": "crate", "size": 2, "printer_id": demo["PRINTER-SH"]},
        ),
        400,
    )
    assert_error(
        await client.post(
            "/case-batches",
            headers=await login("operator"),
            json={"level": "inner", "size": 2, "printer_id": demo["PRINTER-SH"]},
        ),
        403,
    )


async def test_code_status_follows_the_batch_lifecycle(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    planner = await login("planner")
    scheme = app.state.scheme
    batch = await _batch(client, login, demo, 10)
    serial = scheme.serial(batch["batch_no"], 3)
    status = (await client.get(f"/codes/{serial.lower()}/status", headers=planner)).json()
    assert status == {
        "serial": serial,
        "status": "issued_not_active",
        "batch_no": batch["batch_no"],
        "index": 3,
        "key_version": 1,
    }
    outside = scheme.serial(batch["batch_no"], 10)  # index >= size: never issued
    assert (await client.get(f"/codes/{outside}/status", headers=planner)).json()[
        "status"
    ] == "unknown"
    nobatch = scheme.serial(4_000_000_000, 0)
    assert (await client.get(f"/codes/{nobatch}/status", headers=planner)).json()[
        "status"
    ] == "unknown"
    await client.post(
        f"/batches/{batch['batch_no']}/void", headers=planner, json={"reason": "recall"}
    )
    assert (await client.get(f"/codes/{serial}/status", headers=planner)).json()["status"] == "void"
    forged = serial[:-1] + ("0" if serial[-1] != "0" else "1")
    assert_error(await client.get(f"/codes/{forged}/status", headers=planner), 422, "not_genuine")
    assert_error(await client.get("/codes/SHORT/status", headers=planner), 400, "malformed_serial")
    assert_error(
        await client.get(f"/codes/{'A' * 100}/status", headers=planner), 400, "malformed_serial"
    )


async def test_a_batch_of_a_retired_key_version_is_refused_as_such(
    client: Any, login: Any, demo: Any, app: Any, conn: Any
) -> None:
    """It answered 422 ``not_genuine``: "not a genuine code", for a planner's export request."""
    from app.auth.service import load_user
    from app.codes import exports
    from app.codes.schemas import ExportIn, PartIn
    from app.errors import Unprocessable

    batch = await _batch(client, login, demo, 5)  # made under the current key version, 1
    row = await (await conn.execute("SELECT id FROM users WHERE username = 'planner'")).fetchone()
    planner = await load_user(conn, row["id"])
    retired = msgspec.structs.replace(app.state.settings, key_versions="2", current_key_version=2)
    data = ExportIn(outer=PartIn(passphrase=PASS_OUT), inner=PartIn(passphrase=PASS_IN))
    with pytest.raises(Unprocessable) as refused:
        await exports.create_unit_export(
            conn, planner, retired, app.state.scheme, batch["batch_no"], data
        )
    assert refused.value.code == "key_version_retired"
    await conn.rollback()


async def _queued(
    client: Any, app: Any, headers: dict[str, str], path: str, body: dict[str, Any]
) -> str:
    """An export queued as a job (``POST {path}``, 202), not run: its id."""
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, export_async_threshold=0)
    try:
        queued = await client.post(path, headers=headers, json=body)
    finally:
        app.state.settings = settings
    assert queued.status_code == 202, queued.text
    return queued.json()["id"]  # type: ignore[no-any-return]


def _retired(app: Any) -> tuple[Any, Any]:
    """The settings and scheme of a host after key version 1 was retired (2 current)."""
    from app.codes.scheme import load_scheme

    settings = app.state.settings
    retired = msgspec.structs.replace(settings, key_versions="2", current_key_version=2)
    return retired, load_scheme(settings.master_key_bytes(), [2], 2, settings.pin_length)


async def test_a_case_export_queued_before_a_version_is_retired_still_runs(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: a case batch's export (SSCC labels: no key version is in them) recorded the key
    version current when it was asked for, and its data key was derived under it
    (``create_case_export``: ``settings.current_key_version``). Queued before version 1 was
    retired and run after (a worker, the orphan sweeper or ``tracecode redis rebuild`` sending
    it again), the run failed ``UnknownKeyVersion`` and the export was ``failed``, though the
    labels depend on no key. Its data key now depends on no key version (``NO_KEY_VERSION``):
    the files are written, and open with the passphrase given."""
    planner = await login("planner")
    made = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "inner", "size": 3, "printer_id": demo["PRINTER-SH"]},
    )
    assert made.status_code == 201, made.text
    path = f"/case-batches/{made.json()['id']}/exports"
    export_id = await _queued(client, app, planner, path, {"cases": {"passphrase": PASS_OUT}})
    settings, scheme = _retired(app)
    run = exports.run_export
    assert await asyncio.to_thread(run, app.state.db_url, settings, scheme, export_id) == "done"
    blob = await _download(client, planner, export_id, "cases")
    lines = [line.split(",") for line in _plain(blob, passphrase=PASS_OUT).splitlines()]
    assert len(lines) == 3 and all(is_valid_sscc(sscc) for _, sscc, _ in lines)
    assert (lines[0][1], lines[-1][1]) == (made.json()["first_sscc"], made.json()["last_sscc"])


async def test_an_export_queued_before_its_key_version_is_retired_fails_saying_so(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A unit export queued before its batch's key version was retired, and a case export
    recorded under a key version (before ``NO_KEY_VERSION``: its data key was wrapped under
    it), cannot be written after: each run failed ``UnknownKeyVersion`` with a traceback in
    the log (a worker's job retried it). Now the export is ``failed`` with a stable reason
    naming the version, nothing is written, and the run returns."""
    planner = await login("planner")
    batch = await _batch(client, login, demo, 5)  # key version 1
    body = {"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}}
    unit = await _queued(client, app, planner, f"/batches/{batch['batch_no']}/exports", body)
    cases = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "inner", "size": 2, "printer_id": demo["PRINTER-SH"]},
    )
    path = f"/case-batches/{cases.json()['id']}/exports"
    case = await _queued(client, app, planner, path, {"cases": {"passphrase": PASS_OUT}})
    async with app.state.pool.connection() as conn:  # as one recorded before
        await conn.execute("UPDATE code_exports SET key_version = 1 WHERE id = %s", (case,))
    settings, scheme = _retired(app)
    for export_id, again in ((unit, "its codes are no longer made"), (case, "export the case")):
        run = exports.run_export
        state = await asyncio.to_thread(run, app.state.db_url, settings, scheme, export_id)
        assert state == "failed"
        got = (await client.get(f"/exports/{export_id}", headers=planner)).json()
        assert got["state"] == "failed", got
        assert got["error"].startswith("the key version 1 is retired") and again in got["error"]
        assert not (app.state.settings.export_path / export_id).exists()
    # no file will come of a failed export: not "not ready" (a probe: a printer's tool polled on)
    failed = await client.get(f"/exports/{case}/files/cases", headers=planner)
    assert "export the batch again" in assert_error(failed, 409, "export_failed")["message"]


async def test_a_queued_export_of_a_batch_voided_since_writes_nothing(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """Probe C: the worker wrote the serial and PIN files of a batch voided after the export
    was queued, and a failed run left its ``*.partial`` files behind."""
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, export_async_threshold=100)
    try:
        planner = await login("planner")
        body = {"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}}
        exports_of = []
        for _ in range(2):
            batch = await _batch(client, login, demo, 500)
            queued = await client.post(
                f"/batches/{batch['batch_no']}/exports", headers=planner, json=body
            )
            assert queued.status_code == 202, queued.text
            exports_of.append((batch["batch_no"], queued.json()["id"]))
    finally:
        app.state.settings = settings
    (void_no, voided), (_, broken) = exports_of
    await client.post(f"/batches/{void_no}/void", headers=planner, json={"reason": "recall"})
    run = exports.run_export
    assert await asyncio.to_thread(run, app.state.db_url, settings, app.state.scheme, voided) == (
        "failed"
    )
    state = (await client.get(f"/exports/{voided}", headers=planner)).json()
    assert state["state"] == "failed" and "void" in state["error"], state
    assert not list((settings.export_path / voided).glob("*"))
    async with app.state.pool.connection() as conn:  # a part the runner cannot write
        await conn.execute(
            """UPDATE code_exports SET parts = jsonb_set(parts, '{outer}', '5') WHERE id = %s""",
            (broken,),
        )
    with pytest.raises(TypeError):
        await asyncio.to_thread(run, app.state.db_url, settings, app.state.scheme, broken)
    assert not list((settings.export_path / broken).glob("*.partial"))


async def test_the_files_of_a_retired_key_version_are_not_handed_out(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: after the key version was retired an export of the batch was refused, but the
    printer still downloaded its earlier files — labels whose codes no longer verify."""
    planner, printer = await login("planner"), await login("printer")
    batch = await _batch(client, login, demo, 10)  # key version 1
    made = await client.post(
        f"/batches/{batch['batch_no']}/exports",
        headers=planner,
        json={"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}},
    )
    assert made.status_code == 201, made.text
    url = f"/exports/{made.json()['id']}/files/outer"
    assert (await client.get(url, headers=printer)).status_code == 200
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, key_versions="2", current_key_version=2)
    try:
        assert_error(await client.get(url, headers=printer), 422, "key_version_retired")
        assert (await client.head(url, headers=printer)).status_code == 422
    finally:
        app.state.settings = settings


async def test_a_broken_printer_file_download_resumes_with_a_byte_range(
    client: Any, login: Any, demo: Any
) -> None:
    """A left-out of an earlier session: a printer file of a large batch is gigabytes, and a
    download that broke near its end started again from nothing (no ``Range``). One span is
    served (206, ``Content-Range``), by the file's ``ETag`` in ``If-Range``; several ranges, a
    malformed one or another version of the file: the whole file; past its end: 416
    ``range_not_satisfiable`` with the size."""
    planner, printer = await login("planner"), await login("printer")
    batch = await _batch(client, login, demo, 50)
    made = await client.post(
        f"/batches/{batch['batch_no']}/exports",
        headers=planner,
        json={"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}},
    )
    assert made.status_code == 201, made.text
    url = f"/exports/{made.json()['id']}/files/outer"
    whole = await client.get(url, headers=printer)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    blob, etag, size = whole.content, whole.headers["etag"], len(whole.content)
    assert size > 100 and etag.startswith('"')

    async def ranged(spec: str, **more: str) -> Any:
        return await client.get(url, headers={**printer, "Range": spec.encode(), **more})

    part = await ranged("bytes=10-99")
    assert part.status_code == 206, part.text
    assert part.content == blob[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{size}"
    assert part.headers["content-length"] == "90" and part.headers["etag"] == etag
    rest = await ranged(f"bytes={size - 5}-", **{"If-Range": etag})
    assert (rest.status_code, rest.content) == (206, blob[-5:])
    assert (await ranged("bytes=-16")).content == blob[-16:]
    assert (await ranged(f"bytes=0-{size * 2}")).content == blob  # the end cut to the file's
    for whole_again in (
        await ranged("bytes=0-1,5-6"),
        await ranged("bytes=9-2"),
        await ranged("bytes=٣-"),  # an Arabic-Indic digit
        await ranged("items=0-1"),
        await ranged("bytes=" + "9" * 5000 + "-"),  # no int of 5,000 digits (a 500)
        await ranged("bytes=10-", **{"If-Range": '"another"'}),
    ):
        assert (whole_again.status_code, whole_again.content) == (200, blob)
    past = await ranged(f"bytes={size}-")
    error = assert_error(past, 416, "range_not_satisfiable")
    assert error["details"] == {"size": size}
    assert past.headers["content-range"] == f"bytes */{size}"
    assert_error(await ranged("bytes=-0"), 416, "range_not_satisfiable")
    head = await client.head(url, headers={**printer, "Range": "bytes=0-9"})
    assert (head.status_code, head.content) == (206, b"")
    assert head.headers["content-length"] == "10"


@pytest.mark.parametrize("span", [None, "bytes=100-"], ids=["whole", "range"])
async def test_a_void_cuts_off_a_printer_file_download_under_way(
    client: Any, login: Any, demo: Any, app: Any, span: str | None
) -> None:
    """A probe: ``GET /exports/{id}/files/outer`` checked the batch once, then sent the whole
    file (a large batch's is gigabytes: minutes); a void answered 200 during the download left
    the rest of the file to go to the printer. The batch is asked before each piece of 4 MiB now
    (a resumed download's ``Range`` too): nothing is sent after the void, and the answer is cut
    off, fewer bytes than its ``Content-Length``."""
    planner, printer = await login("planner"), await login("printer")
    batch = await _batch(client, login, demo, 150_000)  # an outer file of ~13 MiB
    made = await client.post(
        f"/batches/{batch['batch_no']}/exports",
        headers=planner,
        json={"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}},
    )
    assert made.status_code == 201, made.text
    url = f"/exports/{made.json()['id']}/files/outer"
    paused = Paused()
    await paused.start(app, "GET", url, {**printer, **({"Range": span} if span else {})})
    assert paused.status == (206 if span else 200)
    before = paused.received()
    voided = await client.post(
        f"/batches/{batch['batch_no']}/void", headers=planner, json={"reason": "stolen"}
    )
    assert voided.status_code == 200, voided.text
    whole = await paused.resume()
    assert len(whole) == before, f"{len(whole) - before} bytes sent after the void answered"
    assert not paused.ended, "the download should be cut off, not end as a whole one"
    assert_error(await client.get(url, headers=printer), 422, "batch_void")


async def test_the_file_of_an_export_whose_batch_was_voided_before_it_ran_is_batch_void(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: an export queued as a job (202), its batch voided before it ran: the download
    answered 409 ``export_not_ready`` ("not done yet": poll again) while queued, and still once
    the run had failed it ("the export is failed, not done") — a printer's tool kept polling for
    a file that never comes. A void batch's file is 422 ``batch_void`` whatever the export's
    state (README)."""
    planner, printer = await login("planner"), await login("printer")
    batch = await _batch(client, login, demo, 50)
    body = {"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}}
    export_id = await _queued(client, app, planner, f"/batches/{batch['batch_no']}/exports", body)
    url = f"/exports/{export_id}/files/outer"
    voided = await client.post(
        f"/batches/{batch['batch_no']}/void", headers=planner, json={"reason": "recall"}
    )
    assert voided.status_code == 200, voided.text
    assert_error(await client.get(url, headers=printer), 422, "batch_void")  # queued
    run = exports.run_export
    settings, scheme = app.state.settings, app.state.scheme
    assert await asyncio.to_thread(run, app.state.db_url, settings, scheme, export_id) == "failed"
    assert_error(await client.get(url, headers=printer), 422, "batch_void")  # failed
    assert (await client.head(url, headers=printer)).status_code == 422


async def test_an_export_that_cannot_write_its_files_names_no_server_path(
    client: Any, login: Any, demo: Any, app: Any, tmp_path: Any
) -> None:
    """A probe: an unwritable export folder answered (and kept, for the printer to read) the
    OS error with the server's absolute path."""
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    planner = await login("planner")
    batch = await _batch(client, login, demo, 10)
    settings = app.state.settings
    app.state.settings = msgspec.structs.replace(settings, export_dir=str(blocker / "sub"))
    try:
        made = await client.post(
            f"/batches/{batch['batch_no']}/exports",
            headers=planner,
            json={"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}},
        )
    finally:
        app.state.settings = settings
    error = assert_error(made, 500, "export_failed")
    assert str(tmp_path) not in made.text and "NotADirectoryError" in error["message"], made.text
    listed = await client.get(f"/batches/{batch['batch_no']}/exports", headers=planner)
    failed = [e for e in listed.json()["items"] if e["state"] == "failed"]
    assert failed and str(tmp_path) not in str(failed), failed
    # a probe (integrator): the OpenAPI document listed no 500 for the operations that answer it
    spec = (await client.get("/schema/openapi.json")).json()
    for path in ("/batches/{batch_no}/exports", "/case-batches/{batch_id}/exports"):
        documented = sorted(spec["paths"][path]["post"]["responses"])
        assert "500" in documented, (path, documented)


async def test_an_export_whose_runs_keep_killing_their_worker_is_not_run_for_ever(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: an export whose run kills its worker every time (OOM-killed, a crash in the
    core) is delivered again by the broker each time (README "At least once"), and
    ``run_export`` started it again whatever its count of runs — the 6th, the 7th, … for ever:
    the ``MAX_RUNS`` bound of ``app.ops.orphans`` held only for the sweeper's copies, and the
    next delivery even turned the sweeper's ``failed`` back into ``running``. Past ``MAX_RUNS``
    runs a delivery fails the export with the sweeper's error and starts nothing."""
    from app.ops.orphans import MAX_RUNS

    batch = await _batch(client, login, demo, 3)
    made = await client.post(
        f"/batches/{batch['batch_no']}/exports",
        headers=await login("planner"),
        json={"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}},
    )
    assert made.status_code == 201, made.text
    export_id = made.json()["id"]
    settings, scheme, db_url = app.state.settings, app.state.scheme, app.state.db_url
    async with app.state.pool.connection() as conn:
        await conn.execute(
            "UPDATE code_exports SET state = 'queued', attempts = 0 WHERE id = %s", (export_id,)
        )
    runs = 0

    def killed(done: int, total: int) -> None:  # the worker dies mid-run
        nonlocal runs
        runs += 1
        raise KeyboardInterrupt("worker killed")

    for _ in range(MAX_RUNS):  # MAX_RUNS deliveries, each run killing its worker
        with pytest.raises(KeyboardInterrupt):
            await asyncio.to_thread(exports.run_export, db_url, settings, scheme, export_id, killed)
    assert runs == MAX_RUNS
    try:  # the broker delivers the job once more: the export is not started again
        again = await asyncio.to_thread(
            exports.run_export, db_url, settings, scheme, export_id, killed
        )
    except KeyboardInterrupt:
        again = "started"
    async with app.state.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT state, attempts, error FROM code_exports WHERE id = %s", (export_id,)
            )
        ).fetchone()
        # leave no export 'running' for later tests' orphan sweepers
        await conn.execute(
            "UPDATE code_exports SET state = 'failed', error = 'probe' "
            "WHERE id = %s AND state <> 'failed'",
            (export_id,),
        )
    assert runs == MAX_RUNS and again == "failed", f"run {runs + 1} started: {row}"
    assert row["state"] == "failed" and row["attempts"] == MAX_RUNS, row
    assert row["error"] == f"its runs died {MAX_RUNS} times", row


async def test_a_case_of_units_of_a_retired_key_version_is_traced_and_unpacked(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """A probe: once a key rotation retired the version that made a case's units, the case's
    trace (``GET /trace/{sscc}``) and its unpacking answered 422 ``not_genuine`` ("not a genuine
    code"), as did an EPCIS query of its events (and a movement refusing them would have): their serials were rendered from the code ids
    (``serials_of``), and the scheme no longer holds that key. Now such units are named by
    their code ids."""
    from app.codes.scheme import load_scheme
    from app.logistics.movements import refuse

    batch_no, product_id = await issue_units(client, login, demo, 2)
    units = [scheme_for_tests().serial(batch_no, i) for i in range(2)]
    await activate(client, login, units, product_id, line="RK1")
    box = (await issue_cases(client, login, demo, "inner", 1))[0]
    operator = await login("operator")
    scan = {"id": f"rk-{box}", "code": box, "at": "2026-11-01T09:00:00+08:00", "children": units}
    packed = await client.post("/lines/RK1/scans", headers=operator, json={"scans": [scan]})
    assert packed.status_code == 200 and packed.json()["scans"][0]["result"] == "ok", packed.text
    ids = [str(batch_no << 32 | i) for i in range(2)]
    kept, s = app.state.scheme, app.state.settings
    version = kept.current_version
    app.state.scheme = load_scheme(s.master_key_bytes(), [version + 1], version + 1, s.pin_length)
    try:
        traced = await client.get(f"/trace/{box}", headers=await login("admin"))
        assert traced.status_code == 200, traced.text
        assert sorted(c["code"] for c in traced.json()["contents"]) == ids
        events = await client.get(
            "/epcis/events",
            headers=await login("admin"),
            params={"MATCH_parentID": f"https://id.gs1.org/00/{box}"},
        )
        assert events.status_code == 200, events.text
        body = events.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        assert any(e.get("childEPCs") for e in body), body
        unpacked = await client.post(
            "/packing/unpack", headers=operator, json={"parent": box, "reason": "relabel"}
        )
        assert unpacked.status_code == 200, unpacked.text
        assert sorted(unpacked.json()["codes"]) == ids
        async with app.state.pool.connection() as conn:  # a movement's refusal names them too
            refused = await refuse(conn, app.state.scheme, "not_held", "-", [int(i) for i in ids])
        assert refused.details == {"count": 2, "codes": ids}
    finally:
        app.state.scheme = kept


async def test_a_printer_key_registered_again_writes_no_audit_row(
    client: Any, app: Any, login: Any, demo: Any
) -> None:
    """A probe: ``PUT /printers/{id}/public-key`` with the key the printer has already (a
    retry, the same file uploaded again) wrote a ``set_public_key`` row each time. README: a
    call that changes nothing writes no row; another key still writes one."""
    admin = await login("admin")
    printer = await _new_printer(client, admin, demo, "SKP")
    url = f"/printers/{printer}/public-key"
    pem = RSA.generate(2048).public_key().export_key().decode()
    for sent in (pem, pem + "\n"):  # the same key, in the stored spelling or not
        answer = await client.put(url, headers=admin, json={"public_key_pem": sent})
        assert answer.status_code == 204, answer.text
    assert len(await audit_rows(app, "org", printer, "set_public_key")) == 1
    other = RSA.generate(2048).public_key().export_key().decode()
    assert (await client.put(url, headers=admin, json={"public_key_pem": other})).status_code == 204
    assert len(await audit_rows(app, "org", printer, "set_public_key")) == 2


async def _new_printer(client: Any, admin: dict[str, str], demo: Any, tag: str) -> int:
    """A contract printer of its own under the brand: its id."""
    org = await client.post(
        "/orgs",
        headers=admin,
        json={
            "kind": "printer",
            "name": f"{tag} printer {secrets.token_hex(3)}",
            "erp_code": f"{tag}-{secrets.token_hex(3)}",
            "parent_id": demo["BRAND-LUMI"],
        },
    )
    assert org.status_code == 201, org.text
    return int(org.json()["id"])


async def test_the_exports_of_a_batch_that_does_not_exist_are_404(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: ``GET /batches/{no}`` of a batch that does not exist (or is not the caller's) is 404,
    and the document lists 404 for ``GET /batches/{batch_no}/exports`` too; but the exports of
    such a batch answer 200 with an empty page, as if the batch existed with no files — a typo
    in an ERP's batch number reads as "not exported yet". Expected: 404 ``not_found``, as the
    batch's own page answers (``app/codes/exports.py:page_exports`` looks the batch up only
    through its exports)."""
    planner = await login("planner")
    missing = 987_654_321
    assert (await client.get(f"/batches/{missing}", headers=planner)).status_code == 404
    answer = await client.get(f"/batches/{missing}/exports", headers=planner)
    assert_error(answer, 404, "not_found")


async def test_another_printers_batch_has_no_export_list_for_a_printer(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a printer's user reaches only the batches addressed to its organisation; another
    printer's batch answers as if it did not exist (README: "others 404"), and ``GET
    /batches/{no}`` does answer it 404. ``GET /batches/{no}/exports`` of that batch, though,
    answered 200 with an empty page while a batch number nobody has answered 404: the printer
    learnt which batch numbers the brand gave other printers (``page_exports`` checked the
    batch against the brand, not against what the caller may see: ``visible_sql``). Still
    listed: an export of such a batch with a file addressed to the caller (it knows the batch).
    Case batches' export lists (``GET /case-batches/{id}/exports``) answer the same."""
    admin, planner, printer = await login("admin"), await login("planner"), await login("printer")
    other = await _new_printer(client, admin, demo, "OTHER")
    product = (await client.get("/products", headers=admin, params={"q": "LM-SC-30"})).json()
    own_no = (await _batch(client, login, demo, 3))["batch_no"]  # addressed to PRINTER-SH
    other_batch = await client.post(
        "/batches",
        headers=planner,
        json={"size": 3, "printer_id": other, "product_id": product["items"][0]["id"]},
    )
    assert other_batch.status_code == 201, other_batch.text
    batch_no = other_batch.json()["batch_no"]
    both = {"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}}
    exported = await client.post(f"/batches/{batch_no}/exports", headers=planner, json=both)
    assert exported.status_code in (201, 202), exported.text

    assert_error(await client.get(f"/batches/{batch_no}", headers=printer), 404)
    assert_error(await client.get("/batches/999999999/exports", headers=printer), 404, "not_found")
    assert_error(
        await client.get(f"/batches/{batch_no}/exports", headers=printer), 404, "not_found"
    )
    # the brand's planner lists it; the printer its own batch's (empty) list
    listed = await client.get(f"/batches/{batch_no}/exports", headers=planner)
    assert [e["id"] for e in listed.json()["items"]] == [exported.json()["id"]], listed.text
    own = await client.get(f"/batches/{own_no}/exports", headers=printer)
    assert own.status_code == 200 and own.json()["items"] == [], own.text
    # a file of the other's batch addressed to the printer: listed (a later page too)
    ours = {
        "outer": {"passphrase": PASS_OUT},
        "inner": {"printer_id": demo["PRINTER-SH"], "passphrase": PASS_IN},
    }
    addressed = await client.post(f"/batches/{batch_no}/exports", headers=planner, json=ours)
    assert addressed.status_code in (201, 202), addressed.text
    mine = await client.get(f"/batches/{batch_no}/exports", headers=printer)
    assert [e["id"] for e in mine.json()["items"]] == [addressed.json()["id"]], mine.text
    assert set(mine.json()["items"][0]["files"]) == {"inner"}
    later = await client.get(f"/batches/{batch_no}/exports", headers=printer, params={"page": 2})
    assert later.status_code == 200 and later.json()["items"] == [], later.text


async def test_a_short_export_keeps_no_digest_its_pins_can_be_found_from(
    client: Any, login: Any, demo: Any, conn: Any
) -> None:
    """A probe: a one-label reprint export kept, in ``code_exports.files`` (and answered as
    ``files.inner.plain_sha256``), the SHA-256 of its inner file's plain text ``1,<PIN>``: a
    reader of the database found the PIN by trying the million PINs (under a second), without
    the master key or the passphrase. The inner part keeps no digest; migration 0099 drops
    those kept before."""
    import hashlib

    planner = await login("planner")
    batch_no = (await _batch(client, login, demo, 10))["batch_no"]
    export = await client.post(
        f"/batches/{batch_no}/exports",
        headers=planner,
        json={
            "start": 0,
            "end": 1,
            "outer": {"passphrase": PASS_OUT},
            "inner": {"passphrase": PASS_IN},
        },
    )
    assert export.status_code == 201, export.text
    export_id = export.json()["id"]
    pin = scheme_for_tests().pin(scheme_for_tests().serial(batch_no, 0))
    digest = hashlib.sha256(f"1,{pin}\n".encode()).hexdigest()

    async def kept() -> dict[str, Any]:
        row = await (
            await conn.execute("SELECT files FROM code_exports WHERE id = %s", (export_id,))
        ).fetchone()
        await conn.commit()
        return row["files"]  # type: ignore[no-any-return]

    assert digest not in msgspec.json.encode(await kept()).decode()
    assert "plain_sha256" not in export.json()["files"]["inner"]
    # one kept before: the migration drops it, and only it
    await conn.execute(
        "UPDATE code_exports SET files = jsonb_set(files, '{inner,plain_sha256}', to_jsonb(%s::text)) "
        "WHERE id = %s",
        (digest, export_id),
    )
    outer = (await kept())["outer"]
    await conn.execute((ROOT / "app/migrations/0099_exports_no_pin_digest.sql").read_text())
    await conn.commit()
    after = await kept()
    assert "plain_sha256" not in after["inner"] and after["outer"] == outer


class _FullDisk(io.FileIO):
    """A file on a disk with no space left: every write to the OS fails ENOSPC (as on a full
    tmpfs: Python's buffered writer keeps a small file's bytes until its flush)."""

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_an_export_that_fills_the_disk_at_its_last_flush_leaves_no_partial_file(
    client: Any, login: Any, demo: Any, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe: the export disk fills up while a short export (a reprint slice of a 50M batch)
    is written; the API answered 500 ``export_failed`` and the export was ``failed``, but
    ``outer.tcpf.partial`` and ``inner.tcpf.partial`` stayed in its folder for good (found on a
    real 2 MiB tmpfs: the full disk's error came from the final flush, the cleanup's close
    raised it again and skipped the unlink). No partial file is left, and a retry once space is
    freed is written."""
    planner = await login("planner")
    batch = await _batch(client, login, demo, 50_000_000)
    no = batch["batch_no"]

    def full_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        assert mode == "wb"
        return io.BufferedWriter(_FullDisk(path, "wb"))

    monkeypatch.setattr(exports, "open", full_open, raising=False)
    body = {
        "start": 49_999_990,
        "end": 50_000_000,
        "outer": {"passphrase": PASS_OUT},
        "inner": {"passphrase": PASS_IN},
    }
    failed = await asyncio.wait_for(
        client.post(f"/batches/{no}/exports", headers=planner, json=body), 60
    )
    error = assert_error(failed, 500, "export_failed")
    assert "No space left on device" in error["message"], error
    listed = (await client.get(f"/batches/{no}/exports", headers=planner)).json()["items"]
    assert [e["state"] for e in listed] == ["failed"], listed
    folder = app.state.settings.export_path / listed[0]["id"]
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert left == [], f"files left by the failed export: {left}"
    monkeypatch.undo()  # space freed: the retry is written
    again = await client.post(f"/batches/{no}/exports", headers=planner, json=body)
    assert again.status_code == 201 and again.json()["state"] == "done", again.text


async def test_a_cli_export_stopped_by_a_void_shows_its_real_progress_and_the_reason(
    client: Any, login: Any, demo: Any, app: Any, tmp_path: Path
) -> None:
    """A probe: ``tracecode codes export B --out DIR`` (directly on the database) of 20M codes,
    the batch voided while it runs: the run stopped after ~500k codes (``failed``, "the batch is
    void"), yet the CLI's bar jumped to ``100.0% 20,000,000/20,000,000 … ETA 0s`` and the error
    read ``export_not_ready: the export is failed, not done``. As with ``--api``, the bar ends at
    the codes written and the line says the batch is void."""
    planner = await login("planner")
    batch = await _batch(client, login, demo, 50_000_000)
    no = batch["batch_no"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "codes", "export", str(no), "--out",
        str(tmp_path / "out"), "--passphrase-env", "PASS", "--start", "0", "--end", "20000000",
        env={**os.environ, "PASS": "a-long-passphrase"},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(600):
            await asyncio.sleep(0.1)
            items = (await client.get(f"/batches/{no}/exports", headers=planner)).json()["items"]
            if items and items[0]["progress"] > 0:
                break
        voided = await client.post(
            f"/batches/{no}/void", headers=planner, json={"reason": "misprint"}
        )
        assert voided.status_code == 200, voided.text
        _, raw = await asyncio.wait_for(proc.communicate(), 300)
        err = raw.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
    items = (await client.get(f"/batches/{no}/exports", headers=planner)).json()["items"]
    assert items[0]["state"] == "failed" and items[0]["progress"] < 20_000_000, items
    assert proc.returncode == 2, err
    assert "20,000,000/20,000,000" not in err and "100.0%" not in err, err
    assert "void" in err.splitlines()[-1], err


async def test_a_batchs_exports_list_newest_first_when_asked_page_by_page(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: the console's files dialog read ``GET /batches/{no}/exports?per_page=200``,
    oldest first: once a batch printed in runs held 200 exports, the export just made was not
    in the list and its files could not be downloaded. ``order=newest`` lists the newest
    first; the pages (the id breaking a tie of times) neither repeat nor skip an export, and
    the default stays oldest first."""
    planner = await login("planner")
    batch_no = (await _batch(client, login, demo, 10))["batch_no"]
    body = {"outer": {"passphrase": PASS_OUT}, "inner": {"passphrase": PASS_IN}}
    made = []
    for start in range(5):
        export = await client.post(
            f"/batches/{batch_no}/exports",
            headers=planner,
            json={**body, "start": start, "end": start + 1},
        )
        assert export.status_code == 201, export.text
        made.append(export.json()["id"])
    path = f"/batches/{batch_no}/exports"
    paged = []
    for page in (1, 2, 3):
        answer = await client.get(
            path, headers=planner, params={"order": "newest", "page": page, "per_page": 2}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["total"] == 5
        paged += [e["id"] for e in answer.json()["items"]]
    assert paged == made[::-1]
    oldest = (await client.get(path, headers=planner, params={"per_page": 2})).json()["items"]
    assert [e["id"] for e in oldest] == made[:2]
    assert_error(await client.get(path, headers=planner, params={"order": "latest"}), 400)


async def test_a_case_batchs_exports_are_listed_to_the_planner_and_its_printer(
    client: Any, login: Any, demo: Any
) -> None:
    """A probe: a unit batch's files are found again through ``GET /batches/{no}/exports``, but
    a case batch's had no list (``GET /case-batches/{id}/exports`` was 405, and the case batch
    names none): the printer, and a planner whose 201 answer was lost, could not find the
    export id the SSCC file is downloaded by. Listed as a unit batch's: paged, oldest first
    (``order=newest``: newest first); brand staff every export, a printer those with a file
    addressed to it, and a case batch the caller cannot see (or none) is 404."""
    admin, planner, printer = await login("admin"), await login("planner"), await login("printer")
    other = await _new_printer(client, admin, demo, "CASES")
    made = await client.post(
        "/case-batches",
        headers=planner,
        json={"level": "inner", "size": 3, "printer_id": demo["PRINTER-SH"]},
    )
    assert made.status_code == 201, made.text
    case_batch = made.json()["id"]
    path = f"/case-batches/{case_batch}/exports"
    empty = await client.get(path, headers=planner)
    assert empty.status_code == 200 and empty.json()["total"] == 0, empty.text
    ids = []
    for part in ({"passphrase": PASS_OUT}, {"printer_id": other, "passphrase": PASS_OUT}):
        export = await client.post(path, headers=planner, json={"cases": part})
        assert export.status_code == 201, export.text
        ids.append(export.json()["id"])
    listed = await client.get(path, headers=planner)
    assert [e["id"] for e in listed.json()["items"]] == ids, listed.text
    assert listed.json()["items"][0]["case_batch_id"] == case_batch
    newest = await client.get(path, headers=planner, params={"order": "newest", "per_page": 1})
    assert [e["id"] for e in newest.json()["items"]] == ids[1:], newest.text
    assert newest.json()["total"] == 2
    mine = await client.get(path, headers=printer)  # the file addressed to the other: not its
    assert mine.status_code == 200, mine.text
    assert [e["id"] for e in mine.json()["items"]] == ids[:1]
    assert set(mine.json()["items"][0]["files"]) == {"cases"}
    theirs = await client.post(
        "/case-batches", headers=planner, json={"level": "pallet", "size": 2, "printer_id": other}
    )
    assert theirs.status_code == 201, theirs.text
    other_path = f"/case-batches/{theirs.json()['id']}/exports"
    assert (await client.get(other_path, headers=planner)).status_code == 200
    assert_error(await client.get(other_path, headers=printer), 404, "not_found")
    assert_error(await client.get("/case-batches/987654321/exports", headers=planner), 404)
    assert_error(await client.get(path, headers=planner, params={"order": "latest"}), 400)


async def test_a_printers_deactivation_waits_for_an_export_addressed_to_it(
    client: Any, login: Any, demo: Any, app: Any
) -> None:
    """An export past its check of a file's printer holds the printer's row (``FOR SHARE``) to
    its commit: a deactivation sent meanwhile waits for it (read unlocked, the deactivation
    committed at once and the file was made for a closed printer); the next export to it is
    refused, 422 ``printer_inactive``. (The export is held after its check by a transaction
    holding the planner's user row, which the insert's foreign key check waits for.)"""
    admin, planner = await login("admin"), await login("planner")
    other = await _new_printer(client, admin, demo, "RACE")
    batch_no = (await _batch(client, login, demo, 4))["batch_no"]
    path = f"/batches/{batch_no}/exports"
    body = {
        "outer": {"printer_id": other, "passphrase": PASS_OUT},
        "inner": {"passphrase": PASS_IN},
        "end": 2,
    }
    async with app.state.pool.connection() as holder, app.state.pool.connection() as watch:
        await holder.execute("SELECT 1 FROM users WHERE username = 'planner' FOR UPDATE")
        exporting = asyncio.ensure_future(client.post(path, headers=planner, json=body))
        assert await lock_waiters(watch, 1), "the export should wait for the held user"
        closing = asyncio.ensure_future(client.post(f"/orgs/{other}/deactivate", headers=admin))
        waited = await lock_waiters(watch, 2)
        await holder.commit()
        exported, closed = await asyncio.wait_for(asyncio.gather(exporting, closing), 60)
    assert waited, "the deactivation should wait for the export holding the printer"
    assert exported.status_code == 201, exported.text
    assert closed.status_code == 200, closed.text
    again = await client.post(path, headers=planner, json={**body, "start": 2, "end": 4})
    assert_error(again, 422, "printer_inactive")
