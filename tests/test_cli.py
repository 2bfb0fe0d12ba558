"""The `tracecode` command, including `tracecode run` (README command 1) end to end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def test_db_migrate_reports_an_up_to_date_database(client: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "migrate"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


def test_run_serves_the_api_with_a_worker_and_stops_on_ctrl_c(client: Any) -> None:
    port = _free_port()
    env = {**os.environ, "TRACECODE_PORT": str(port)}
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
        login = httpx.post(
            f"http://127.0.0.1:{port}/auth/login",
            json={"username": "admin", "password": "tracecode-demo"},
            timeout=10,
        )
        assert login.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "Demo logins" in output and f"http://127.0.0.1:{port}/schema" in output
    assert "Tracecode stopped." in output
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the API still listens after Ctrl-C"
