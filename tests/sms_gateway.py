"""A real local SMS gateway for tests: a small HTTP server in a process of its own.

It speaks the HTTP adapter's protocol (app/sms/gateway.py): ``POST /send`` with
``{"messages": [{"key", "phone", "sign", "template_id", "params", "text"}]}`` answers
``{"results": [{"key", "status", "message_id", "error"}]}``. It records every message it
delivers and counts every request per idempotency key; a key seen before is answered with the
first message id and not delivered again (as a provider that deduplicates does; ``dedup=False``
turns that off). On demand (``control``) it fails the next N requests with a status (5xx),
delays each request (longer than the client's timeout: a timeout), or rejects given phones.
Stopping it is a real outage: connections are refused until it is started again.

Use from tests::

    from tests.sms_gateway import LocalGateway, last_code, sms_gateway  # fixture

    async def test_x(client, sms_gateway):  # gateway process + an in-test sender running
        await client.post("/members/otp", json={...})
        code = last_code("13812341234")

``sms_gateway`` (a fixture) starts the gateway once per session and, for the test that uses it,
a sender thread draining the outbox to it (``app.sms.sender.sweep`` every 50 ms, the workers'
own code with the HTTP adapter). ``last_code(phone)`` waits for the newest message to that
phone and returns its ``code`` variable.

Run alone: ``python -m tests.sms_gateway --port 8025``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# -- the server (runs in its own process) ------------------------------------------------------


class _State:
    def __init__(self, user: str | None, password: str | None) -> None:
        self.lock = threading.Lock()
        self.auth = (
            "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            if user
            else None
        )
        self.reset()

    def reset(self) -> None:
        self.delivered: list[dict[str, Any]] = []
        self.by_key: dict[str, str] = {}
        self.requests: dict[str, int] = {}
        self.fail_next = 0
        self.fail_status = 503
        self.delay = 0.0
        self.reject: set[str] = set()
        self.dedup = True
        self.posts = 0
        self.prefix = os.urandom(4).hex()  # message ids unique across restarts


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold every answer back ~40 ms on a kept-alive connection
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: Any) -> None:  # quiet
        return None

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client went away (timed out, killed): nothing to tell it
            pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:
        s = self.state
        if self.path == "/_messages":
            with s.lock:
                body = {
                    "messages": list(s.delivered),
                    "requests": dict(s.requests),
                    "posts": s.posts,
                }
            self._answer(200, body)
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        s = self.state
        body = self._body()
        if self.path == "/_control":
            with s.lock:
                for name in ("fail_next", "fail_status", "delay", "dedup"):
                    if name in body:
                        setattr(s, name, body[name])
                if "reject" in body:
                    s.reject = set(body["reject"])
            self._answer(200, {"ok": True})
            return
        if self.path == "/_reset":
            with s.lock:
                s.reset()
            self._answer(200, {"ok": True})
            return
        if self.path != "/send":
            self._answer(404, {"error": "not found"})
            return
        if s.auth and self.headers.get("Authorization") != s.auth:
            self._answer(401, {"error": "bad credentials"})
            return
        with s.lock:
            s.posts += 1
            failing = s.fail_next > 0
            if failing:
                s.fail_next -= 1
            delay = s.delay
        if failing:
            self._answer(s.fail_status, {"error": "failing on purpose"})
            return
        if delay:
            time.sleep(delay)  # the message is taken after the delay, answered or not
        results = []
        with s.lock:
            for m in body.get("messages", []):
                key = m["key"]
                s.requests[key] = s.requests.get(key, 0) + 1
                if m["phone"] in s.reject:
                    results.append({"key": key, "status": "rejected", "error": "bad number"})
                    continue
                if s.dedup and key in s.by_key:
                    results.append({"key": key, "status": "accepted", "message_id": s.by_key[key]})
                    continue
                mid = f"gw-{s.prefix}-{len(s.delivered) + 1}"
                s.by_key.setdefault(key, mid)
                s.delivered.append({**m, "message_id": mid, "at": time.time()})
                results.append({"key": key, "status": "accepted", "message_id": mid})
        self._answer(200, {"results": results})


def serve(port: int, user: str | None, password: str | None) -> None:
    _Handler.state = _State(user, password)
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    server.serve_forever()


# -- the test side ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalGateway:
    """The gateway process: start, stop (a real outage), control, read what it recorded."""

    def __init__(
        self, port: int | None = None, user: str | None = None, password: str = ""
    ) -> None:
        self.port = port or free_port()
        self.user, self.password = user, password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """What ``TRACECODE_SMS_GATEWAY_URL`` is set to."""
        return f"{self.base}/send"

    def start(self) -> LocalGateway:
        args = [sys.executable, "-m", "tests.sms_gateway", "--port", str(self.port)]
        if self.user:
            args += ["--user", self.user, "--password", self.password]
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.messages()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the local SMS gateway did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _call(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method="POST" if data else "GET"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def control(self, **changes: Any) -> None:
        """``fail_next=N, fail_status=503``, ``delay=seconds``, ``reject=[phones]``, ``dedup``."""
        self._call("/_control", changes)

    def reset(self) -> None:
        self._call("/_reset", {})

    def messages(self, phone: str | None = None) -> list[dict[str, Any]]:
        """Messages delivered (each idempotency key once, unless dedup is off), oldest first."""
        found: list[dict[str, Any]] = self._call("/_messages")["messages"]
        return [m for m in found if phone is None or m["phone"] == phone]

    def requests(self) -> dict[str, int]:
        """How many times each idempotency key was posted (re-sends included)."""
        return dict(self._call("/_messages")["requests"])

    def settings(self, base: Any, **changes: Any) -> Any:
        """``base`` settings pointed at this gateway (fast retries for tests)."""
        import msgspec

        values = {
            "sms_gateway": "http",
            "sms_gateway_url": self.url,
            "sms_gateway_key": self.user,
            "sms_gateway_secret": self.password,
            "sms_gateway_timeout": 2.0,
            "sms_backoff_seconds": 0.05,
            "sms_backoff_max_seconds": 0.2,
        }
        return msgspec.structs.replace(base, **(values | changes))


_current: LocalGateway | None = None


def last_code(phone: str, timeout: float = 10.0, after: float = 0.0) -> str:
    """The ``code`` of the newest message to ``phone`` at the session's gateway (waits for one
    delivered after ``after``, a ``time.time()``)."""
    if _current is None:
        raise RuntimeError("no local SMS gateway: use the sms_gateway fixture")
    deadline = time.monotonic() + timeout
    while True:
        found = [
            m for m in _current.messages(phone) if m["at"] > after and "code" in m.get("params", {})
        ]
        if found:
            return str(found[-1]["params"]["code"])
        if time.monotonic() > deadline:
            raise AssertionError(f"no code reached the gateway for {phone} in {timeout} s")
        time.sleep(0.05)


class Sender:
    """The workers' sweep (``app.sms.sender.sweep``) in a thread of the test process."""

    def __init__(self, settings: Any, interval: float = 0.05) -> None:
        self.settings = settings
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        import psycopg
        from psycopg.rows import dict_row

        from app.sms import sender
        from app.sms.gateway import gateway_from_settings

        gateway = gateway_from_settings(self.settings)
        conn = None
        try:
            while not self._stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(
                            self.settings.database_url, autocommit=True, row_factory=dict_row
                        )
                    await sender.sweep(conn, gateway, self.settings)
                except Exception:  # keep sending, as the workers do
                    conn = None
                await asyncio.sleep(self.interval)
        finally:
            await gateway.aclose()
            if conn is not None:
                await conn.close()

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


_session_gateway: LocalGateway | None = None


def session_gateway() -> LocalGateway:
    global _session_gateway
    if _session_gateway is None:
        _session_gateway = LocalGateway().start()
    return _session_gateway


def _pytest_fixture() -> Any:
    import pytest

    @pytest.fixture
    def sms_gateway(settings: Any) -> Iterator[LocalGateway]:
        """The session's local gateway, with a sender draining the outbox to it during the
        test; ``last_code(phone)`` reads it."""
        global _current
        gateway = session_gateway()
        if gateway.process is None or gateway.process.poll() is not None:
            gateway.start()
        gateway.control(fail_next=0, delay=0, reject=[], dedup=True)
        _current = gateway
        with Sender(gateway.settings(settings)):
            yield gateway
        _current = None

    return sms_gateway


if "pytest" in sys.modules:
    sms_gateway = _pytest_fixture()


def _stop_session_gateway() -> None:
    if _session_gateway is not None:
        _session_gateway.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8025")))
    parser.add_argument("--user")
    parser.add_argument("--password")
    options = parser.parse_args()
    serve(options.port, options.user, options.password)
else:
    import atexit

    atexit.register(_stop_session_gateway)
