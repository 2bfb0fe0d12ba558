"""A real local WeChat for tests: an HTTP server (a thread of the test process) speaking the
parts of WeChat's protocol Tracecode uses (app/wechat/gateway.py).

* ``GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state`` — the
  page WeChat shows inside its browser; here the user is whoever the ``X-Wechat-User`` header
  names (an openid). It answers 302 to ``redirect_uri?code=…&state=…``, as WeChat does for
  ``snsapi_base``; an unknown app id or a bad ``response_type``/``scope`` is a 400 page.
* ``GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`` — the code's
  openid; a wrong secret 40125 (40013 unknown app), an unknown code 40029, a used one 40163.
* ``POST /cgi-bin/stable_token`` ``{grant_type, appid, secret, force_refresh}`` — the app's
  token (the same one until it expires, or a new one when forced; the old then stops working).
* ``POST /cgi-bin/message/template/send?access_token=…`` — 40001 for a token that is not the
  app's current one; 43004 for a user in ``unsubscribed``, 43101 in ``refusing``, 40003 for an
  openid it never issued; else ``{"errcode": 0, "msgid"}`` and the message is recorded.

Errors come as HTTP 200 with ``{"errcode", "errmsg"}``, as WeChat's do. Tests steer it through
attributes (under ``lock``): ``send_errors`` (errcodes the next sends answer, in order),
``http_status`` (statuses the next sends answer instead of JSON), ``delay`` (seconds each send
waits: longer than the client's time-out is a time-out), ``unsubscribed``/``refusing``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


class FakeWechat:
    """The server's state, read and steered by tests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.apps: dict[str, str] = {}  # app id -> secret
        self.tokens: dict[str, tuple[str, float]] = {}  # app id -> (token, expires at)
        self.codes: dict[str, tuple[str, str, bool]] = {}  # code -> (app id, openid, used)
        self.openids: set[str] = set()  # issued by the OAuth page
        self.unsubscribed: set[str] = set()
        self.refusing: set[str] = set()
        self.send_errors: list[int] = []
        self.http_status: list[int] = []
        self.delay = 0.0
        self.token_calls: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.sends = 0
        self.expires_in = 7200
        self.server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_app(self, app_id: str, secret: str) -> None:
        with self.lock:
            self.apps[app_id] = secret

    def user(self, openid: str) -> str:
        """An openid the fake knows (as if its user had opened the OAuth page once)."""
        with self.lock:
            self.openids.add(openid)
        return openid

    def expire_tokens(self) -> None:
        """Every token stops working (WeChat's 40001 for the token a client cached)."""
        with self.lock:
            self.tokens.clear()

    def sent_to(self, openid: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.sent if m["touser"] == openid]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeWechat

    def log_message(self, *args: Any) -> None:
        return None

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

    def _error(self, errcode: int, errmsg: str) -> None:
        self._json({"errcode": errcode, "errmsg": errmsg})

    def _query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return None

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/connect/oauth2/authorize":
            self._authorize()
        elif path == "/sns/oauth2/access_token":
            self._oauth_token()
        else:
            self._json({"errcode": 404, "errmsg": "not found"}, 404)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/cgi-bin/stable_token":
            self._stable_token()
        elif path == "/cgi-bin/message/template/send":
            self._send()
        else:
            self._json({"errcode": 404, "errmsg": "not found"}, 404)

    def _authorize(self) -> None:
        f, q = self.fake, self._query()
        user = self.headers.get("X-Wechat-User") or ""
        with f.lock:
            known = q.get("appid") in f.apps
        if not known or q.get("response_type") != "code" or not user:
            self._json({"error": "bad authorize request"}, 400)
            return
        if q.get("scope") not in ("snsapi_base", "snsapi_userinfo"):
            self._json({"error": "bad scope"}, 400)
            return
        code = secrets.token_hex(16)
        with f.lock:
            f.codes[code] = (q["appid"], user, False)
            f.openids.add(user)
        target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _oauth_token(self) -> None:
        f, q = self.fake, self._query()
        with f.lock:
            secret = f.apps.get(q.get("appid", ""))
            found = f.codes.get(q.get("code", ""))
            if secret is None:
                return self._error(40013, "invalid appid")
            if q.get("secret") != secret:
                return self._error(40125, "invalid appsecret")
            if q.get("grant_type") != "authorization_code":
                return self._error(40002, "invalid grant_type")
            if found is None or found[0] != q["appid"]:
                return self._error(40029, "invalid code")
            if found[2]:
                return self._error(40163, "code been used")
            f.codes[q["code"]] = (found[0], found[1], True)
        self._json(
            {
                "access_token": "oauth-" + secrets.token_hex(8),
                "expires_in": 7200,
                "refresh_token": "r-" + secrets.token_hex(8),
                "openid": found[1],
                "scope": "snsapi_base",
            }
        )

    def _stable_token(self) -> None:
        f, body = self.fake, self._body() or {}
        with f.lock:
            f.token_calls.append({k: v for k, v in body.items() if k != "secret"})
            secret = f.apps.get(body.get("appid", ""))
            if body.get("grant_type") != "client_credential":
                return self._error(40002, "invalid grant_type")
            if secret is None:
                return self._error(40013, "invalid appid")
            if body.get("secret") != secret:
                return self._error(40125, "invalid appsecret")
            current = f.tokens.get(body["appid"])
            if body.get("force_refresh") or current is None or current[1] < time.time():
                current = ("tok-" + secrets.token_hex(12), time.time() + f.expires_in)
                f.tokens[body["appid"]] = current
            expires = max(1, int(current[1] - time.time()))
        self._json({"access_token": current[0], "expires_in": expires})

    def _send(self) -> None:
        f, token, body = self.fake, self._query().get("access_token", ""), self._body()
        with f.lock:
            f.sends += 1
            delay = f.delay
            status = f.http_status.pop(0) if f.http_status else None
            # decided on arrival: a send the client gave up on while it slept must not take the
            # errcode meant for a later one
            forced = f.send_errors.pop(0) if f.send_errors and status is None else None
        if delay:
            time.sleep(delay)
        if status is not None:
            self._json({"error": "failing on purpose"}, status)
            return
        with f.lock:
            app = next((a for a, (t, _) in f.tokens.items() if t == token), None)
            if app is None:
                return self._error(40001, "invalid credential, access_token is invalid")
            if forced is not None:
                return self._error(forced, "forced by the test")
            if not isinstance(body, dict) or not body.get("template_id"):
                return self._error(47001, "data format error")
            user = body.get("touser", "")
            if user not in f.openids:
                return self._error(40003, "invalid openid")
            if user in f.unsubscribed:
                return self._error(43004, "require subscribe")
            if user in f.refusing:
                return self._error(43101, "user refuse to accept the msg")
            msgid = len(f.sent) + 1000
            f.sent.append({**body, "app_id": app, "msgid": msgid})
        self._json({"errcode": 0, "errmsg": "ok", "msgid": msgid})


@contextmanager
def running_wechat() -> Iterator[FakeWechat]:
    """A fake WeChat on a free port of 127.0.0.1 for the block."""
    fake = FakeWechat()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    fake.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
