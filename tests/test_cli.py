"""The `tracecode` command, including `tracecode run` (README command 1) end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app import embedded
from tests.conftest import ROOT
from tests.servers import free_port


def test_keygen_prints_a_fresh_32_byte_key() -> None:
    out = [
        subprocess.run(
            [sys.executable, "-m", "app.cli", "keygen"], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert all(len(bytes.fromhex(k)) == 32 for k in out) and out[0] != out[1]


def test_configuration_errors_are_reported_not_raised() -> None:
    env = {**os.environ, "TRACECODE_PORT": "nope"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "migrate"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "TRACECODE_PORT" in done.stderr and "Traceback" not in done.stderr


def _cli(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *argv],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_refuses_bad_keys_and_files_before_it_starts_anything(tmp_path: Path) -> None:
    """The defect: the banner, then each child crashing with a traceback for ~35 s (a bad key),
    or every verification without GPS a 500 (a missing IP table)."""
    base = {"TRACECODE_VAR_DIR": str(tmp_path / "var"), "TRACECODE_PORT": str(free_port())}
    cases = [
        ({"TRACECODE_MASTER_KEY": "short"}, "TRACECODE_MASTER_KEY"),
        ({"TRACECODE_JWT_SECRET": "short"}, "TRACECODE_JWT_SECRET"),
        ({"TRACECODE_IP_REGIONS_FILE": str(tmp_path / "none.csv")}, "TRACECODE_IP_REGIONS_FILE"),
        ({"TRACECODE_SMS_GATEWAY": "http"}, "TRACECODE_SMS_GATEWAY_URL"),
    ]
    for env, named in cases:
        done = _cli("run", "--no-demo", **base, **env)
        assert done.returncode == 2, (env, done.stdout, done.stderr)
        assert named in done.stderr and "Traceback" not in done.stderr, (env, done.stderr)
        assert "is starting" not in done.stdout


def test_an_ip_table_that_is_not_one_stops_the_api_at_start_up(
    tmp_path: Path, settings: Any
) -> None:
    import msgspec

    from app.config import SettingsError
    from app.main import create_app

    bad = tmp_path / "bad.csv"
    bad.write_text("not-a-network,33,3301\n")
    with pytest.raises(SettingsError, match="TRACECODE_IP_REGIONS_FILE"):
        create_app(msgspec.structs.replace(settings, ip_regions_file=str(bad)))


def test_unreachable_servers_and_missing_files_are_one_line_not_a_traceback(
    tmp_path: Path,
) -> None:
    gone = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    for argv, env in (
        (("db", "migrate"), {"TRACECODE_DATABASE_URL": gone}),
        (("db", "migrate"), {"TRACECODE_DATABASE_URL": "not-a-url"}),
        (
            ("export", "decrypt", str(tmp_path / "f.zip"), "--passphrase-file", "/nonexistent"),
            {},
        ),
        (
            ("codes", "list", "--api", f"http://127.0.0.1:{free_port()}", "--user", "planner"),
            {"TRACECODE_API_PASSWORD": "x"},
        ),
        (  # a passphrase the API's schema refuses, checked before any database work
            ("codes", "export", "1", "--out", str(tmp_path), "--passphrase-env", "SHORT"),
            {"SHORT": "short"},
        ),
    ):
        done = _cli(*argv, **env)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.startswith("tracecode: ") and "Traceback" not in done.stderr, (
            argv,
            done.stderr,
        )


def test_services_up_shows_passwords_as_stars() -> None:
    done = _cli(
        "services",
        "up",
        TRACECODE_DATABASE_URL="postgresql://postgres:SECRET-PG@127.0.0.1:5432/postgres",
        TRACECODE_REDIS_URL="redis://:SECRET-RD@127.0.0.1:6379/0",
    )
    assert done.returncode == 0, done.stderr
    assert "SECRET" not in done.stdout + done.stderr and done.stdout.count("***") == 2, done.stdout


def test_db_migrate_reports_an_up_to_date_database(client: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "migrate"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


def test_run_serves_the_api_with_a_worker_and_stops_on_ctrl_c(client: Any, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TRACECODE_PORT": str(port),
        "TRACECODE_SCHED_BATCH": "true",
        "TRACECODE_VAR_DIR": str(tmp_path / "var"),  # a run locks its var dir: not the shared one
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                if health.get("workers", {}).get("status") == "ok":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert health.get("status") == "ok" and health["workers"]["status"] == "ok", health
        # TRACECODE_SCHED_BATCH: the API server (granian's supervisor, its worker, every thread)
        # runs under SCHED_BATCH.
        threads = [
            int(tid)
            for pid in _descendants(process.pid)
            if b"granian" in Path(f"/proc/{pid}/cmdline").read_bytes()
            for tid in os.listdir(f"/proc/{pid}/task")
        ]
        assert len(threads) >= 3, threads  # supervisor, worker's Python and I/O threads
        assert {os.sched_getscheduler(tid) for tid in threads} == {os.SCHED_BATCH}
        login = httpx.post(
            f"http://127.0.0.1:{port}/auth/login",
            json={"username": "admin", "password": "tracecode-demo"},
            timeout=10,
        )
        assert login.status_code == 200
        _issue_and_export_through_the_api(port, env)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Demo logins" in output and f"http://127.0.0.1:{port}/schema" in output
    assert "Tracecode stopped." in output
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the API still listens after Ctrl-C"


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # ended meanwhile
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _tracecode(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env or dict(os.environ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _decrypt(path: Path, env: dict[str, str]) -> list[str]:
    plain = path.with_suffix(".csv")
    done = _tracecode(
        "export", "decrypt", str(path), "--passphrase-env", "PASS", "--out", str(plain), env=env
    )
    assert done.returncode == 0, done.stderr
    return plain.read_text().splitlines()


def _issue_and_export_through_the_api(port: int, env: dict[str, str]) -> None:
    import json
    import tempfile

    env = {**env, "TRACECODE_API_PASSWORD": "tracecode-demo", "PASS": "a-long-passphrase"}
    api = ["--api", f"http://127.0.0.1:{port}", "--user", "planner"]
    issued = _tracecode("codes", "issue", "--size", "300", "--printer", "PRINTER-SH", *api, env=env)
    assert issued.returncode == 0, issued.stderr
    batch = json.loads(issued.stdout)
    with tempfile.TemporaryDirectory() as tmp:
        exported = _tracecode(
            "codes",
            "export",
            str(batch["batch_no"]),
            "--out",
            tmp,
            "--passphrase-env",
            "PASS",
            *api,
            env=env,
        )
        assert exported.returncode == 0, exported.stderr
        outer = _decrypt(Path(tmp) / "outer.tcpf", env)
        inner = _decrypt(Path(tmp) / "inner.tcpf", env)
    assert len(outer) == len(inner) == 300
    assert outer[0].startswith("1,") and inner[-1].startswith("300,")


def test_codes_issue_and_export_directly_on_the_database(
    client: Any, demo: Any, tmp_path: Path
) -> None:
    import json

    from app.codes.scheme import Scheme

    env = {**os.environ, "PASS": "a-long-passphrase"}
    issued = _tracecode(
        "codes",
        "issue",
        "--size",
        "250",
        "--printer",
        "PRINTER-SH",
        "--as",
        "planner",
        "--request-key",
        "cli-1",
        env=env,
    )
    assert issued.returncode == 0, issued.stderr
    batch = json.loads(issued.stdout)
    again = _tracecode(
        "codes",
        "issue",
        "--size",
        "250",
        "--printer",
        "PRINTER-SH",
        "--as",
        "planner",
        "--request-key",
        "cli-1",
        env=env,
    )
    assert json.loads(again.stdout)["batch_no"] == batch["batch_no"]
    exported = _tracecode(
        "codes",
        "export",
        str(batch["batch_no"]),
        "--out",
        str(tmp_path),
        "--passphrase-env",
        "PASS",
        "--start",
        "50",
        "--end",
        "150",
        env=env,
    )
    assert exported.returncode == 0, exported.stderr
    assert "export [" in exported.stderr and "100.0%" in exported.stderr  # the progress bar
    outer = _decrypt(tmp_path / "outer.tcpf", env)
    inner = _decrypt(tmp_path / "inner.tcpf", env)
    scheme = Scheme(bytes.fromhex(os.environ["TRACECODE_MASTER_KEY"]), [1], 1)
    assert len(outer) == 100 and outer[0].split(",")[:2] == [
        "51",
        scheme.serial(batch["batch_no"], 50),
    ]
    assert inner[0] == f"51,{scheme.pin(scheme.serial(batch['batch_no'], 50))}"
    # the files were taken as the API's downloads are: audited (a probe: no download rows)
    export_id = exported.stdout.split()[1].rstrip(":")
    with psycopg.connect(os.environ["TRACECODE_DATABASE_URL"]) as conn:
        actions = conn.execute(
            "SELECT action FROM audit_log WHERE entity = 'code_export' AND entity_id = %s "
            "ORDER BY action",
            (export_id,),
        ).fetchall()
    assert [a for (a,) in actions] == ["create", "download", "download"], actions
    bad = _tracecode(
        "codes",
        "export",
        str(batch["batch_no"]),
        "--out",
        str(tmp_path / "refused"),
        "--passphrase-env",
        "PASS",
        "--end",
        "999",
        env=env,
    )
    assert (
        bad.returncode == 2
        and "range_outside_batch" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    assert not (tmp_path / "refused").exists()  # a probe: a refused export left its folder
    unknown = _tracecode("codes", "issue", "--size", "5", "--printer", "NOPE", env=env)
    assert unknown.returncode == 2 and "NOPE" in unknown.stderr


async def test_a_second_cli_export_into_the_same_folder_never_writes_into_the_first(
    client: Any, login: Any, demo: Any, tmp_path: Path
) -> None:
    """A probe: ``tracecode codes export B1 --out DIR`` hard-linked DIR/outer.tcpf to the
    server's stored file of export 1; ``tracecode codes export B2 --out DIR`` (the same names)
    found the name taken and its ``shutil.copyfile`` fallback wrote export 2's bytes through the
    link INTO export 1's stored file: the printer downloading export 1 through the API got
    batch B2's labels (same passphrase: it opened) and the recorded digest no longer matched.
    The CLI copies the files and renames them onto their names: the folder holds the latest
    export, the server's files are untouched, and nothing is left beside them."""
    import asyncio
    import io

    from app.codes import printfile

    planner = await login("planner")
    batches = []
    for size in (5, 6):
        made = await client.post(
            "/batches", headers=planner, json={"size": size, "printer_id": demo["PRINTER-SH"]}
        )
        assert made.status_code == 201, made.text
        batches.append(made.json()["batch_no"])
    out = tmp_path / "out"
    env = {**os.environ, "PASS": "a-long-passphrase"}
    ids = []
    for batch_no in batches:
        done = await asyncio.to_thread(
            _tracecode,
            "codes", "export", str(batch_no), "--out", str(out), "--passphrase-env", "PASS",
            env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.split()[1].rstrip(":"))
    printer = await login("printer")
    for export_id, size in zip(ids, (5, 6), strict=True):
        got = await client.get(f"/exports/{export_id}/files/outer", headers=printer)
        assert got.status_code == 200, got.text
        header, _ = printfile.read_header(io.BytesIO(got.content))
        assert header["export_id"] == export_id, header  # 1: export 2's file under its name
        plain = printfile.decrypt(io.BytesIO(got.content), passphrase="a-long-passphrase")
        assert len(b"".join(plain).decode().splitlines()) == size
    assert len(_decrypt(out / "outer.tcpf", env)) == 6  # the folder: the latest export
    assert (out / "outer.tcpf").stat().st_nlink == 1  # a copy, not the server's file
    assert sorted(p.name for p in out.iterdir()) == ["inner.tcpf", "outer.csv", "outer.tcpf"]


def test_codes_list_show_and_void(client: Any, demo: Any) -> None:
    import json

    issued = json.loads(
        _tracecode("codes", "issue", "--size", "7", "--printer", "PRINTER-SH").stdout
    )
    listed = json.loads(_tracecode("codes", "list", "--limit", "5").stdout)
    assert issued["batch_no"] in [b["batch_no"] for b in listed["items"]]
    shown = json.loads(_tracecode("codes", "show", str(issued["batch_no"])).stdout)
    assert shown["size"] == 7 and shown["exports"] == []
    # a probe: directly, an empty reason voided the batch, and an escape sequence was stored
    for bad in (
        ("codes", "void", str(issued["batch_no"]), "--reason", ""),
        ("codes", "void", str(issued["batch_no"]), "--reason", "x" * 501),
        ("codes", "void", str(issued["batch_no"]), "--reason", "a\x1b[31mb"),
        ("codes", "issue", "--size", "2", "--printer", "PRINTER-SH", "--note", "x\u202ey"),
    ):
        refused = _tracecode(*bad)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        # one ``tracecode: CODE: message`` line, the API's code (a probe: the type's name)
        assert re.match(r"tracecode: (validation_failed|invalid_character): ", refused.stderr)
    shown = json.loads(_tracecode("codes", "show", str(issued["batch_no"])).stdout)
    assert shown["state"] != "void"
    voided = json.loads(
        _tracecode("codes", "void", str(issued["batch_no"]), "--reason", "test").stdout
    )
    assert voided["state"] == "void"
    denied = _tracecode(
        "codes", "void", str(issued["batch_no"]), "--reason", "x", "--as", "printer"
    )
    assert denied.returncode == 2 and "permission_denied" in denied.stderr


def test_a_cli_argument_that_is_not_utf8_is_one_line_not_a_traceback(
    client: Any, demo: Any
) -> None:
    """A probe: `tracecode codes issue … --note 测试` typed in a GBK terminal (a Chinese
    Windows/SSH session whose bytes are not UTF-8) reaches Python as lone surrogates
    (surrogateescape); the direct mode handed them to psycopg, whose ``UnicodeEncodeError`` was
    a traceback and exit status 1 — for ``--note``, ``--printer`` and ``--as`` alike (only
    control characters were checked, by ``codes`` alone). Now every command's arguments are
    checked as they are read: one ``tracecode: …`` line naming the option, exit 2, nothing
    issued."""
    gbk = "测试".encode("gbk").decode("utf-8", "surrogateescape")
    with psycopg.connect(os.environ["TRACECODE_DATABASE_URL"]) as conn:
        count = "SELECT count(*) FROM code_batches"
        (before,) = conn.execute(count).fetchone()  # type: ignore[misc]
        for extra, option in (
            (["--printer", "PRINTER-SH", "--note", gbk], "--note"),
            (["--printer", f"PRINTER-{gbk}"], "--printer"),
            (["--printer", "PRINTER-SH", "--as", f"planner{gbk}"], "--as"),
        ):
            done = _tracecode("codes", "issue", "--size", "3", *extra)
            assert "Traceback" not in done.stderr, (extra, done.stderr[-400:])
            assert done.returncode == 2, (extra, done.returncode, done.stderr[-400:])
            assert done.stderr.startswith("tracecode: ") and option in done.stderr, done.stderr
            assert len(done.stderr.splitlines()) == 1, done.stderr
        (after,) = conn.execute(count).fetchone()  # type: ignore[misc]
    assert after == before


def test_the_development_key_is_announced_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A probe: the first `tracecode demo codes > codes.csv` put the key's announcement in the
    file of codes, as its first line."""
    from app.cli import ensure_dev_master_key
    from app.config import load_settings

    for name in ("TRACECODE_MASTER_KEY", "TRACECODE_MASTER_KEY_FILE"):
        monkeypatch.setenv(name, "")  # recorded, so that the test's end puts back what was
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRACECODE_VAR_DIR", str(tmp_path))
    settings = ensure_dev_master_key(load_settings())
    assert settings.master_key_file == str(tmp_path / "master.key")
    said = capsys.readouterr()
    assert said.out == "" and "Created a development master key" in said.err


def test_a_development_key_others_may_read_is_refused_not_reused(tmp_path: Path) -> None:
    """``var/master.key`` (``tracecode run`` makes it 0600) copied or restored under umask 022
    is readable by every user of the host: the CLI's direct mode and ``tracecode run`` refuse
    it in one line naming the file, as a configured key file, rather than use it in silence."""
    (tmp_path / "master.key").write_text("ab" * 32 + "\n")
    (tmp_path / "master.key").chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACECODE_MASTER_KEY")}
    env["TRACECODE_VAR_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "codes", "list", "--limit", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("tracecode: ") and "0644" in done.stderr, done.stderr
    assert str(tmp_path / "master.key") in done.stderr and "ab" * 32 not in done.stderr


async def test_demo_codes_are_activated_and_verify(client: Any, tmp_path: Path) -> None:
    """`tracecode demo codes` prints serial,pin,url,story of units a consumer can verify: the
    ones shipped to the demo store answer genuine on the first check, the ones that never left
    the factory suspicious (never_shipped); twice is the same list (idempotent)."""
    import asyncio

    out = tmp_path / "codes.csv"
    run = await asyncio.to_thread(_tracecode, "demo", "codes", "--count", "1200", "--out", str(out))
    assert run.returncode == 0, run.stderr
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert len(rows) == 1200 and len({r[0] for r in rows}) == 1200
    stories = [r[3] for r in rows]
    assert stories[:10] == ["shipped:STORE-HZ-01"] * 10 and stories[10:20] == ["never_shipped"] * 10
    assert stories.count("shipped:STORE-HZ-01") == 500 and stories[1000:] == ["never_shipped"] * 200
    for row in (rows[0], rows[990], rows[10], rows[1100]):
        serial, pin, url, story = row
        assert url.endswith(f"/c/{serial}")
        answer = (await client.post("/v1/verify", json={"serial": serial, "pin": pin})).json()
        expected = (
            ("genuine", "first_query")
            if story != "never_shipped"
            else ("suspicious", "never_shipped")
        )
        assert (answer["result"], answer["reason"]) == expected, (story, answer)
        assert answer["lot"] == "DEMO-LOT-1"
    again = await asyncio.to_thread(_tracecode, "demo", "codes", "--count", "3")
    assert again.stdout.splitlines() == [",".join(r) for r in rows[:3]]
    public = {"TRACECODE_PUBLIC_SCHEME": "https", "TRACECODE_RESOLVER_HOST": "v.example.com"}
    https = await asyncio.to_thread(
        _tracecode, "demo", "codes", "--count", "1", env={**os.environ, **public}
    )
    assert https.stdout.split(",")[2] == f"https://v.example.com/c/{rows[0][0]}"  # a probe: http
    for count in ("0", "1000001"):  # a probe: past the demo batch it wrote fewer, said more
        refused = await asyncio.to_thread(_tracecode, "demo", "codes", "--count", count)
        assert refused.returncode != 0 and "--count" in refused.stderr


def test_decrypt_writes_plain_text_only_for_a_whole_file_and_never_over_another(
    tmp_path: Path,
) -> None:
    """The defects (probe H5, H6, H9, H13): to stdout the verified chunks came out before the
    damage was found; ``--out`` was opened (truncated) before the key was checked, so a wrong
    passphrase deleted an existing file and ``--out`` = the input destroyed it; a damaged header
    was a traceback; the plain file (PINs) was readable by everyone."""
    from app.codes import printfile

    passphrase = "a long passphrase"
    lines = [f"{i},{i:06d}\n".encode() for i in range(60_000)]  # several chunks
    sealed = tmp_path / "inner.tcpf"
    with sealed.open("wb") as out:
        printfile.write_file(out, lines, {"part": "inner"}, passphrase=passphrase)
    env = {"PASS": passphrase, "WRONG": "not the passphrase"}
    ok = tmp_path / "plain.csv"
    done = _cli(
        "export", "decrypt", str(sealed), "--passphrase-env", "PASS", "--out", str(ok), **env
    )
    assert done.returncode == 0, done.stderr
    assert ok.read_bytes() == b"".join(lines) and ok.stat().st_mode & 0o077 == 0
    data = sealed.read_bytes()
    damaged = tmp_path / "damaged.tcpf"
    for broken in (data[: len(data) // 2], data[:-40] + bytes(40)):
        damaged.write_bytes(broken)
        done = _cli("export", "decrypt", str(damaged), "--passphrase-env", "PASS", **env)
        assert done.returncode == 2 and done.stdout == "", (done.stdout[:80], done.stderr)
    existing = tmp_path / "existing.csv"
    existing.write_text("keep me\n")
    done = _cli(
        "export", "decrypt", str(sealed), "--passphrase-env", "WRONG", "--out", str(existing), **env
    )
    assert done.returncode == 2 and existing.read_text() == "keep me\n", done.stderr
    done = _cli(
        "export", "decrypt", str(sealed), "--passphrase-env", "PASS", "--out", str(sealed), **env
    )
    assert done.returncode == 2 and sealed.read_bytes() == data, done.stderr
    damaged.write_bytes(data.replace(b'"nonce"', b'"nonce":"","x"', 1))  # an empty nonce
    done = _cli("export", "decrypt", str(damaged), "--passphrase-env", "PASS", **env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    folder = tmp_path / "a-folder"  # a probe: the whole plain text was left beside it
    folder.mkdir()
    done = _cli(
        "export", "decrypt", str(sealed), "--passphrase-env", "PASS", "--out", str(folder), **env
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tracecode-")]


def test_a_passphrase_file_saved_with_a_bom_on_windows_decrypts(tmp_path: Path) -> None:
    """A probe: a printer on Windows saves the passphrase it was given with PowerShell
    (``"…" | Out-File pass.txt -Encoding utf8``) or Notepad's "UTF-8", both writing a byte-order
    mark before the text and CRLF after it, then runs ``tracecode export decrypt outer.tcpf
    --passphrase-file pass.txt``. The CRLF was stripped, the BOM kept (U+FEFF is no blank), and
    the answer was "wrong passphrase" to the printer holding the right one. The file is read as
    UTF-8 without its BOM now (``--inner-passphrase-file`` and ``--password-file`` alike)."""
    from app.cli import main
    from app.codes import printfile

    passphrase = "a long printer passphrase"
    lines = [f"{i},{i:06d}\n".encode() for i in range(3)]
    sealed = tmp_path / "outer.tcpf"
    with sealed.open("wb") as out:
        printfile.write_file(out, lines, {"part": "outer"}, passphrase=passphrase)
    saved = tmp_path / "pass.txt"
    saved.write_bytes(b"\xef\xbb\xbf" + passphrase.encode() + b"\r\n")
    plain = tmp_path / "outer.csv"
    code = main(
        ["export", "decrypt", str(sealed), "--out", str(plain), "--passphrase-file", str(saved)]
    )
    assert code == 0
    assert plain.read_bytes() == b"".join(lines)


def test_decrypt_out_a_pipe_or_a_symlink_writes_through_it(tmp_path: Path) -> None:
    """A probe's ``--out /dev/null``, run as root, renamed the plain file onto the device: the
    machine's /dev/null became a regular file (and every later ``> /dev/null`` failed). A pipe
    or a device is written into and stays what it was; a symlink stays a link, its file
    replaced. (A FIFO stands in for the device: no test makes device nodes.)"""
    import threading

    from app.codes import printfile

    lines = [f"{i},{i:06d}\n".encode() for i in range(20_000)]
    sealed = tmp_path / "inner.tcpf"
    with sealed.open("wb") as out:
        printfile.write_file(out, lines, {"part": "inner"}, passphrase="a long passphrase")
    env = {"PASS": "a long passphrase"}
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_bytes()), daemon=True)
    reader.start()
    done = _cli(
        "export", "decrypt", str(sealed), "--passphrase-env", "PASS", "--out", str(pipe), **env
    )
    reader.join(30)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(pipe.stat().st_mode) and got == [b"".join(lines)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inner.tcpf", "pipe"]
    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("old\n")
    link.symlink_to(real)
    done = _cli(
        "export", "decrypt", str(sealed), "--passphrase-env", "PASS", "--out", str(link), **env
    )
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and real.read_bytes() == b"".join(lines)


def test_a_printer_shows_its_batch_with_the_cli_as_through_the_api(client: Any, demo: Any) -> None:
    """A probe: README: every ``codes`` subcommand works directly on the database (``--as USER``) or
    through the API. ``GET /batches/{no}`` shows a printer its batch (without exports);
    ``tracecode codes show N --as printer`` failed with ``permission_denied``."""
    issued = subprocess.run(
        [sys.executable, "-m", "app.cli", "codes", "issue", "--size", "4",
         "--printer", "PRINTER-SH"],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=120,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    batch_no = json.loads(issued.stdout)["batch_no"]
    shown = subprocess.run(
        [sys.executable, "-m", "app.cli", "codes", "show", str(batch_no), "--as", "printer"],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["batch_no"] == batch_no
    assert json.loads(shown.stdout)["exports"] == []


# 32 random-looking bytes that are not UTF-8: what `head -c 32 /dev/urandom > master.key` writes
RAW_KEY = bytes.fromhex("aa" * 16 + "ff" * 16)


def _refused_cleanly(done: subprocess.CompletedProcess[str], named: str) -> None:
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert named in done.stderr, done.stderr


def test_a_binary_master_key_file_is_a_configuration_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    """A probe: an operator writes 32 raw bytes into the key file (instead of hex or base64);
    every command died with a UnicodeDecodeError traceback naming no setting."""
    key = tmp_path / "master.key"
    key.write_bytes(RAW_KEY)
    key.chmod(0o600)  # refused for what it holds, not for its mode
    env = {"TRACECODE_MASTER_KEY": "", "TRACECODE_MASTER_KEY_FILE": str(key)}  # "" is unset
    for argv in (
        ("codes", "list"),
        (
            "run",
            "--no-demo",
            "--no-worker",
        ),
    ):
        done = _cli(
            *argv,
            **env,
            TRACECODE_VAR_DIR=str(tmp_path / "var"),
            TRACECODE_PORT=str(free_port()),
        )
        _refused_cleanly(done, "TRACECODE_MASTER_KEY_FILE")


def test_a_passphrase_or_password_file_that_is_not_text_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    """A probe: `--passphrase-file` / `--password-file` naming a binary file (a .tcpf, a key in
    DER) gave a traceback."""
    binary = tmp_path / "secret.bin"
    binary.write_bytes(RAW_KEY)
    printer_file = tmp_path / "outer.tcpf"
    printer_file.write_bytes(b"TCPF" + RAW_KEY)
    for argv in (
        ("export", "decrypt", str(printer_file), "--passphrase-file", str(binary)),
        ("codes", "export", "1", "--out", str(tmp_path / "out"), "--passphrase-file", str(binary)),
        ("codes", "list", "--api", "http://127.0.0.1:1", "--user", "planner",
         "--password-file", str(binary)),
    ):  # fmt: skip
        done = _cli(*argv)
        _refused_cleanly(done, str(binary))


def test_a_redis_url_with_a_bad_option_is_a_configuration_error(tmp_path: Path) -> None:
    """A probe: TRACECODE_REDIS_URL passed the start-up check, then redis-py refused its query option:
    `tracecode run` and `tracecode redis rebuild` die with a traceback naming no variable."""
    url = os.environ["TRACECODE_REDIS_URL"].split("?")[0] + "?socket_timeout=abc"
    for argv in (("redis", "rebuild", "--no-jobs"), ("run", "--no-demo", "--no-worker")):
        done = _cli(
            *argv,
            TRACECODE_REDIS_URL=url,
            TRACECODE_VAR_DIR=str(tmp_path / "var"),
            TRACECODE_PORT=str(free_port()),
        )
        _refused_cleanly(done, "TRACECODE_REDIS_URL")


def test_a_redis_url_with_an_option_redis_py_does_not_take_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    """A probe: TRACECODE_REDIS_URL with an option redis-py's connection does not take (a typo,
    `?socket_timout=5`; a TLS option on `redis://`, `?ssl_cert_reqs=none`) passed the settings
    (`parse_url` passes unknown options on); `tracecode redis rebuild` then died with a
    TypeError naming no variable, and a worker restarted its consumer for ever."""
    base = os.environ["TRACECODE_REDIS_URL"].split("?")[0]
    for option in ("socket_timout=5", "ssl_cert_reqs=none"):
        done = _cli(
            "redis",
            "rebuild",
            "--no-jobs",
            TRACECODE_REDIS_URL=f"{base}?{option}",
            TRACECODE_VAR_DIR=str(tmp_path / "var"),
        )
        assert done.returncode == 2, (option, done.stderr)
        _refused_cleanly(done, "TRACECODE_REDIS_URL")


def test_codes_export_to_an_out_that_is_not_a_folder_is_refused_before_any_work(
    client: Any, demo: Any, tmp_path: Path
) -> None:
    """A probe: `tracecode codes export B --out FILE` (an existing file, /dev/null) created the
    export, encrypted every code and audited both files as downloaded, and only then failed
    with "FileExistsError" — the audit log said the planner held the printer files, though no
    copy had left the server. An `--out` that exists and is not a folder is now refused before
    any database work, as a passphrase the schema refuses is."""
    env = {"PASS": "a-long-passphrase-for-probe"}
    issued = _cli("codes", "issue", "--size", "20", "--printer", "PRINTER-SH", **env)
    assert issued.returncode == 0, issued.stderr
    batch_no = json.loads(issued.stdout.strip().splitlines()[-1])["batch_no"]
    not_a_folder = tmp_path / "codes.txt"
    not_a_folder.write_text("a file, not a folder\n")
    for out in (str(not_a_folder), "/dev/null"):
        done = _cli(
            "codes", "export", str(batch_no), "--out", out, "--passphrase-env", "PASS", **env
        )
        assert done.returncode == 2, done.stderr
        _refused_cleanly(done, out)
    assert not_a_folder.read_text() == "a file, not a folder\n"
    with psycopg.connect(os.environ["TRACECODE_DATABASE_URL"]) as conn:
        made = conn.execute(
            "SELECT count(*) FROM code_exports WHERE batch_no = %s", (batch_no,)
        ).fetchone()
    assert made == (0,)  # no export made, so no download audited


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html><body>Welcome to nginx!</body></html>"),
        ("application/json", b'{"status": "ok"}'),
    ],
    ids=["html", "json-without-token"],
)
def test_codes_api_mode_against_a_server_that_is_not_the_api_is_one_line(
    tmp_path: Path, content_type: str, body: bytes
) -> None:
    """A probe: ``tracecode codes list --api URL`` where URL answers 200 with something that is
    not the API's log-in answer (a mistyped port, a reverse proxy's default page) died with a
    traceback — ``JSONDecodeError`` from ``_Api.__init__``'s ``response.json()``, or a
    ``KeyError`` for JSON without ``access_token`` — exit 1. Now one line saying the server
    is not the Tracecode API, exit 2."""
    import http.server
    import threading

    class NotTheApi(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    password = tmp_path / "pw"
    password.write_text("tracecode-demo\n")
    server = http.server.HTTPServer(("127.0.0.1", 0), NotTheApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        done = _cli("codes", "list", "--api", url, "--user", "planner", "--password-file",
                    str(password))  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.startswith("tracecode: ") and "is not the Tracecode API" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://127.0.0.1:80x0", "http://u:s3cretpw@127.0.0.1:abc/"],
    ids=["open-bracket", "port-typo", "port-with-password"],
)
def test_codes_api_mode_with_a_malformed_url_is_one_line_without_its_password(
    tmp_path: Path, url: str
) -> None:
    """A probe: ``tracecode codes list --api URL`` with a malformed URL (typed by hand: a
    bracket left open, a port that is no number) died with a traceback — ``httpx.InvalidURL``
    is no ``httpx.HTTPError`` — exit 1. Now one ``tracecode:`` line naming ``--api``, exit 2,
    the URL's password left out."""
    password = tmp_path / "pw"
    password.write_text("tracecode-demo\n")
    done = _cli("codes", "list", "--api", url, "--user", "planner", "--password-file",
                str(password))  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.startswith("tracecode: ") and "--api" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "s3cretpw" not in done.stderr + done.stdout


async def test_a_platform_starts_without_the_demo_from_a_brand_and_its_administrator(
    client: Any, settings: Any
) -> None:
    """A probe: without the demo nobody could sign in (creating a brand through the API needs a
    platform operator, and only the demo had one). ``tracecode brand create`` makes a brand
    and its first administrator, the password read from standard input; with
    ``--platform-operator`` that administrator onboards further brands through the API."""
    import secrets

    tag = secrets.token_hex(3).upper()
    password = secrets.token_urlsafe(16)

    def create(
        *extra: str, stdin: str = password + "\n", url: str = settings.database_url
    ) -> subprocess.CompletedProcess[str]:
        argv = ["brand", "create", "--name", f"Nova {tag}", "--erp-code", f"NV{tag}", *extra]
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *argv],
            input=stdin,
            env={**os.environ, "TRACECODE_DATABASE_URL": url},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    # a new database, as a new platform has: no role written yet (the API's start writes them)
    name = f"tracecode_brand_{tag.lower()}"
    fresh = embedded.ensure_database(settings.database_url, name)
    try:
        first = create("--admin", f"nv-{tag}", "--gs1-company-prefix", "691234567", url=fresh)
        assert first.returncode == 0, first.stderr
        with psycopg.connect(fresh) as conn:
            prefix = conn.execute(
                "SELECT gs1_company_prefix FROM orgs WHERE name = %s", (f"Nova {tag}",)
            ).fetchone()
            assert prefix == ("691234567",), prefix
            roles = conn.execute(
                "SELECT r.name FROM users u JOIN user_roles ur ON ur.user_id = u.id"
                " JOIN roles r ON r.id = ur.role_id WHERE u.username = %s",
                (f"nv-{tag}",),
            ).fetchall()
        assert roles == [("brand_admin",)], roles
        # a tenant's administrator replaces the password the operator typed (its first sign-in)
        assert "changed at the first sign-in" in first.stdout, first.stdout
        with psycopg.connect(fresh) as conn:
            due = conn.execute(
                "SELECT must_change_password FROM users WHERE username = %s", (f"nv-{tag}",)
            ).fetchone()
        assert due == (True,), due
    finally:
        embedded.drop_database(settings.database_url, name)

    # a control character, refused as every argument is (``_bad_argument``; the later --name)
    hostile = create("--admin", f"nv-{tag}", "--name", "Nova\x1b[2J")
    assert hostile.returncode == 2 and "control character" in hostile.stderr, hostile.stderr
    short = create("--admin", f"nv-{tag}", stdin="short\n")  # the API's password rule
    assert short.returncode == 2 and "Traceback" not in short.stderr, short.stderr
    assert short.stderr.startswith("tracecode: invalid value"), short.stderr
    done = create("--admin", f"nv-{tag}", "--platform-operator")
    assert done.returncode == 0, done.stderr
    assert f"Nova {tag}" in done.stdout and password not in done.stdout + done.stderr
    again = create("--admin", f"nv2-{tag}")  # the brand exists now: nothing more is created
    assert again.returncode == 2 and again.stderr.startswith("tracecode: "), again.stderr
    signed = await client.post("/auth/login", json={"username": f"nv-{tag}", "password": password})
    assert signed.status_code == 200, signed.text
    headers = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    me = (await client.get("/auth/me", headers=headers)).json()
    assert me["must_change_password"] is False  # the operator typed its own
    brand = (await client.get(f"/orgs/{me['org_id']}", headers=headers)).json()
    assert (brand["kind"], brand["name"]) == ("brand", f"Nova {tag}")
    other = {"kind": "brand", "name": f"Vega {tag}", "erp_code": f"VG{tag}"}
    assert (await client.post("/orgs", headers=headers, json=other)).status_code == 201
    users = (await client.get("/users", headers=headers, params={"q": f"nv2-{tag}"})).json()
    assert users["total"] == 0  # the refused second run made no administrator


def test_brand_create_with_a_password_that_is_not_utf8_creates_nothing(client: Any) -> None:
    """A probe: ``brand create`` with a password on standard input that is not UTF-8 (a GBK
    terminal, a binary secret file) was argon2's ``UnicodeEncodeError`` traceback, raised
    inside the brand and administrator's transaction. It is refused as every argument that is
    not UTF-8 is, in one ``bad_encoding`` line, exit 2, before anything is done — standard
    input decoded leniently (lone surrogates) or strictly (``UnicodeDecodeError``)."""
    import secrets

    tag = secrets.token_hex(4).upper()
    for errors in ("surrogateescape", "strict"):
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "brand", "create", "--name", f"Gbk {tag}",
             "--erp-code", f"GB-{tag}", "--admin", f"gb-{tag.lower()}"],
            input=b"\xff\xfe-Passw0rd-long-enough\n",
            env={**os.environ, "PYTHONIOENCODING": f"utf-8:{errors}"},
            cwd=ROOT,
            capture_output=True,
            timeout=120,
        )  # fmt: skip
        err = done.stderr.decode(errors="replace")
        assert done.returncode == 2 and "Traceback" not in err, (errors, done.returncode, err)
        assert err == "tracecode: bad_encoding: the password is not UTF-8 text\n", (errors, err)
    with psycopg.connect(os.environ["TRACECODE_DATABASE_URL"]) as conn:
        made = conn.execute(
            "SELECT (SELECT count(*) FROM orgs WHERE erp_code = %s),"
            " (SELECT count(*) FROM users WHERE username = %s)",
            (f"GB-{tag}", f"gb-{tag.lower()}"),
        ).fetchone()
    assert made == (0, 0), made


@pytest.fixture
def blank_db(settings: Any) -> Any:
    """A database created empty, as an operator's new or not yet migrated one; dropped after."""
    from tests.conftest import SESSION

    name = f"tracecode_blank_{SESSION}"
    url = embedded.ensure_database(settings.database_url, name)
    yield url
    embedded.drop_database(settings.database_url, name)


def _migrated(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return row == (True,)


def test_codes_direct_mode_applies_pending_migrations_first(blank_db: str) -> None:
    """A probe: README "Deployment: many hosts" says every `tracecode` command that opens the
    database applies pending migrations, but `tracecode codes list` in direct mode read the
    unmigrated schema as it was (`UndefinedTable: relation "users" does not exist`, nothing
    migrated); on an older release's schema `codes issue`/`export` would run this release's SQL.
    """
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "codes", "list"],
        env={**os.environ, "TRACECODE_DATABASE_URL": blank_db},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert _migrated(blank_db), (done.returncode, done.stderr)
    assert "UndefinedTable" not in done.stderr, done.stderr  # no user yet: that is all it says


def test_after_restore_applies_pending_migrations_first(blank_db: str, tmp_path: Path) -> None:
    """`tracecode db after-restore` on a backup of an older release: the schema is brought to
    this release's (the migrations applied) before its sequences and `sscc_refs` are moved;
    it moved them on the old schema, or failed on a table the old one lacks."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "after-restore"],
        env={
            **os.environ,
            "TRACECODE_DATABASE_URL": blank_db,
            "TRACECODE_EXPORT_DIR": str(tmp_path),
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _migrated(blank_db)
    assert done.stdout.startswith("applied: "), done.stdout
    assert "allocations: 0 batches" in done.stdout, done.stdout
