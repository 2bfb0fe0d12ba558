"""A local webhook receiver for tests: a stdlib HTTP server in a process of its own.

Every ``POST`` to any path is recorded (path, headers, body, the status answered). What a path
answers follows its plan, set by ``POST /_plan {"path": "/x", "plan": ["500", "timeout", "ok"]}``:
``"500"`` (or any status) answers that status, ``"timeout"`` holds the request for
``--hold`` seconds (longer than the sender's time-out) and then answers 200, ``"ok"`` answers 200;
when the plan is used up the path answers 200. ``GET /_log`` returns every recorded request.

Run: ``python -m tests.webhook_receiver --port 8090 --hold 3``.
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_lock = threading.Lock()
_plans: dict[str, list[str]] = {}
_log: list[dict[str, Any]] = []
HOLD = 3.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes = b"{}") -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the sender gave up (time-out): nothing to answer
            pass

    def do_GET(self) -> None:
        with _lock:
            body = json.dumps(_log).encode()
        self._answer(200, body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/_plan":
            order = json.loads(body)
            with _lock:
                _plans[order["path"]] = list(order["plan"])
            self._answer(200)
            return
        with _lock:
            plan = _plans.get(self.path) or []
            step = plan.pop(0) if plan else "ok"
        answered = 200 if step in ("ok", "timeout") else int(step)
        entry = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": base64.b64encode(body).decode(),
            "step": step,
            "status": answered,
        }
        with _lock:
            _log.append(entry)
        if step == "timeout":
            time.sleep(HOLD)
        self._answer(answered)


def main() -> None:
    global HOLD
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hold", type=float, default=3.0)
    args = parser.parse_args()
    HOLD = args.hold
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
