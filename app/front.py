"""The one layer in front of every HTTP request: request id, edge check, metrics, access log,
HEAD bodies.

``Tracecode`` is the app's Litestar, whose ``__call__`` does per request, around Litestar's own
routing and handling:

* the request id: the caller's ``X-Request-ID`` when it is short and plain (ASCII letters,
  digits and dashes, at most 64), else a new one (this process's random 64-bit prefix and a
  counter, 32 hex digits); it is in ``request_id_var`` (every log line of the request, audit
  rows, the 500 answer) and in the ``X-Request-ID`` response header;
* the edge check of the ``Host`` header, the path and the query (``app.edge.check_edge``): 400
  ``invalid_host`` or ``invalid_character`` before routing — each Host is checked
  (``app.edge.host_ok``) in the one pass over the headers that finds the request id; those
  refusals, and a 404 or 405 of a path or method no route has, take the shape of their path
  prefix's errors (``refusals``: problem+json under ``/epcis``); under the consumer pages'
  prefixes the edge check's refusal is a page to a browser (``pages``: a scanned link with a
  stray invisible character answered routing's English JSON to a phone, a probe);
* the body of every HEAD answer dropped, headers kept (``app.head``);
* ``Cache-Control: no-store`` on every answer to a request with credentials (an
  ``Authorization`` or ``X-API-Key`` header, or cookies: the pages' sessions) whose route set no
  ``Cache-Control`` of its own: such answers are the caller's — a member's own record and its
  PIPL copy, the staff directory's CSV (a probe: none said how long a browser, or the H5 shell's
  WebView, might keep them on disk). Found in the one pass over the headers; the public answers
  (``/v1/verify``, ``/ping``) are untouched, and so are routes that chose (pages, assets, docs);
* Litestar's app-level exception layer is this one: an exception raised before the answer
  started is answered here by Litestar's own handling (``ExceptionHandlerMiddleware``: the
  route's exception handlers, or the app's when routing failed), so Litestar's layer — a scope
  state look-up, a closure and a coroutine per message sent — is not run per request;
* a route marked ``opt={"fast_lane": True}`` — a plain ASGI handler at a fixed path, without
  guards (``POST /v1/verify``) — is called here directly, with the handler's exception
  handlers for its errors: Litestar's routing and its scope copy are skipped, the answers
  (errors included) are the same;
* afterwards, in one call to the Rust core (``app.logs.requests``), the request counted for
  ``/metrics`` per method, route template and status (``app.ops.request_metrics``) and its
  access log line written into the log writer's buffer: every answer of 400 or more, and
  ``TRACECODE_ACCESS_LOG_SAMPLE`` of the others. An answer that started and never ended is
  logged as 499 (``CUT_OFF``, the client hung up on it) or, after an error, 500;
* an exception raised after the answer started (a CSV export whose query fails midway) is
  logged here as every other error — one ERROR line of ``tracecode.errors`` with the request id,
  method, path, route and traceback — and not raised on: the call returns with the answer
  unended, which the server turns into a cut answer (granian closes the HTTP/1.1 connection
  without the last chunk, or resets the HTTP/2 stream: the client sees a broken download, not a
  whole one). Raised on, it reached granian, which printed it again as a multi-line plain-text
  traceback of its own, without the request id (a probe).

Why one layer in front rather than Litestar middleware and a before-send hook: route middleware
makes Litestar put a second exception-handling layer between it and each handler, and a
before-send hook wraps ``send`` once more; with the logging module's access line and
prometheus_client's locked counters, that machinery cost about as much as Litestar's own work
for ``/ping`` (bench/RESULTS.md, issue 21). The counts and the line in Python (a dict look-up,
a bisection, a struct per line encoded by the writer thread) were still ~12k instructions a
request; in Rust, one call. Unmatched paths (404) are now counted and logged
too, under the route ``unmatched``.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from time import perf_counter
from typing import Any, cast

from litestar import Litestar, Request
from litestar.exceptions import HTTPException
from litestar.middleware._internal.exceptions import ExceptionHandlerMiddleware
from litestar.routes import ASGIRoute
from litestar.utils.scope.state import ScopeState

from app.edge import RESOLVER_PREFLIGHT, InvalidHost, check_edge, host_ok, refuse
from app.errors import (
    cut_off,
    error_body,
    handle_http_exception,
    log_cut_off,
    log_unexpected,
)
from app.logs import logged_path, request_id_var, requests, writer
from app.textguard import InvalidCharacter

_access_log = logging.getLogger("tracecode.access")
CUT_OFF = 499  # the status logged of an answer the client hung up on (nginx's convention)
_INFO = logging.INFO


_HEX3 = [f"{i:03x}" for i in range(4096)]
# request headers that make the answer the caller's own (an API key's too; cookies: the pages')
_CREDENTIALS = frozenset((b"authorization", b"x-api-key", b"cookie"))
_NO_STORE = (b"cache-control", b"no-store")
# errors answered before routing, shaped for a path prefix: (method, status, the project's error
# object) -> body, media type, extra headers
Refusal = Callable[[str, int, dict[str, Any]], tuple[dict[str, Any], str, dict[str, str]]]
# the edge check's refusal as a page, for a path prefix: (scope, status, the project's error
# object) -> an ASGI answer (a page, to a client that asks for one), or None: the JSON error
PageRefusal = Callable[[Any, int, dict[str, Any]], Any]


class _Ids:
    """New request ids: a random prefix per process (made again in a forked child) and a
    counter, 32 hex digits — unique, and cheaper than random bytes from the kernel per request.
    The counter's last three digits come from a table; the rest is formatted once every 4,096
    ids (formatting the whole number cost ~4k instructions a request, the table a quarter)."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()
        self.high = ""

    def new(self) -> str:
        n = next(self.counter)
        low = n & 0xFFF
        if not low:
            self.high = f"{self.prefix}{n >> 12:013x}"
        return self.high + _HEX3[low]


_ids = _Ids()


def given_request_id(value: bytes) -> str | None:
    """The value of the caller's ``X-Request-ID`` header when it is acceptable, else None."""
    if len(value) > 64:  # replaced, not cut: two ids cut to one prefix were one (probe S)
        return None
    candidate = value.decode("latin-1")
    if candidate.isascii() and candidate.replace("-", "").isalnum():
        return candidate
    return None


async def _preflight(send: Any) -> None:
    """The GS1 resolver's CORS preflight answer (204), for a path the edge check refuses: the
    resolver answers its preflights before reading the URI (a review: a web scanner's preflight
    of such a path got the 400, which a browser takes as a CORS failure, never seeing it)."""
    headers = [(k.lower().encode(), v.encode()) for k, v in RESOLVER_PREFLIGHT.items()]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


class Tracecode(Litestar):
    """Litestar with the request layer of this module in front of it.

    ``access_log_sample``: the fraction of answers below 400 that get an access log line.
    ``refusals``: per path prefix, how errors answered before a route is found (the edge
    check's, a path or method no route has) are shaped there — the EPCIS binding's
    problem+json; elsewhere the project's JSON error. ``pages``: per path prefix, the page a
    browser gets for the edge check's refusal there (the consumer pages'), else as above."""

    def __init__(
        self,
        *args: Any,
        access_log_sample: float = 1.0,
        refusals: dict[str, Refusal] | None = None,
        pages: dict[str, PageRefusal] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.access_log_sample = access_log_sample
        self.refusals = refusals or {}
        self.pages = pages or {}
        # Litestar's app-level exception layer: this layer catches what it would and hands it
        # to its handling (``_exception``), unless Litestar wraps the router in more (CORS, ...)
        outer = self.asgi_handler
        self._router: Any
        if isinstance(outer, ExceptionHandlerMiddleware) and outer.app is self.asgi_router:
            self._exceptions, self._router = outer, self.asgi_router
        else:
            self._exceptions, self._router = ExceptionHandlerMiddleware(outer, None), outer
        self._lanes: dict[str, tuple[Any, Any, Any]] = {}
        for route in self.routes:
            if isinstance(route, ASGIRoute) and not route.path_parameters:
                handler = route.route_handler
                if handler.opt.get("fast_lane") and not handler.resolve_guards():
                    handlers = handler.resolve_exception_handlers()
                    self._lanes[route.path] = (handler, handlers, handler.fn)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        started = perf_counter()
        given = bad_host = None  # the first X-Request-ID; a Host that is no host[:port]
        private = False  # credentials came with it: the answer is not to be stored
        for name, value in scope["headers"]:
            if name == b"host":
                if not host_ok(value):
                    bad_host = value
            elif name == b"x-request-id" and given is None:
                given = value
            elif name in _CREDENTIALS:
                private = True
        rid = None if given is None else given_request_id(given)
        if rid is None:
            rid = _ids.new()
        rid_header = (b"x-request-id", rid.encode())
        head = scope["method"] == "HEAD"
        status = 0  # the answer's, once it has started
        ended = broken = False  # its last body message sent; an error raised after its start

        def front_send(message: Any) -> Any:  # returns send's awaitable: no coroutine of its own
            nonlocal status, ended
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", ())
                if private and all(k != b"cache-control" for k, _ in headers):
                    message["headers"] = [*headers, rid_header, _NO_STORE]
                else:  # header names come lower-case (Litestar's, and the plain handlers')
                    message["headers"] = [*headers, rid_header]
            elif message["type"] == "http.response.body":
                ended = not message.get("more_body", False)
                if head:
                    message["body"] = b""  # HEAD: the headers of GET (Content-Length too)
            return send(message)

        # Litestar's before-send hooks wrap it once more (create_app has none)
        out = self._wrap_send(front_send, scope) if self.before_send else front_send
        token = request_id_var.set(rid)
        lane = None
        try:
            # the full check only for a bad Host, a query string or a path with a character that
            # is not printable (every control character is not): most requests have none
            if bad_host is not None or scope.get("query_string") or not scope["path"].isprintable():
                try:
                    check_edge(scope, bad_host)
                except (InvalidHost, InvalidCharacter) as exc:
                    error = error_body(exc.code, exc.message, exc.details)["error"]
                    page = self._page(scope, exc.status, error)
                    if page is not None:  # a browser on the consumer pages: a page
                        await page(scope, receive, front_send)
                    elif bad_host is None and exc.headers and scope["method"] == "OPTIONS":
                        await _preflight(front_send)  # a resolver path's: a browser's needs a 2xx
                    else:
                        headers = exc.headers or {}  # a GS1 resolver path's: its CORS
                        await self._refuse(scope, front_send, exc.status, error, headers)
                    return
            scope["app"] = scope["litestar_app"] = self
            if "state" not in scope:
                scope["state"] = {}
            lane = self._lanes.get(scope["path"])
            if lane is None:
                await self._router(scope, receive, out)
            else:  # as Litestar's router would set it up, without routing
                handler, _, fn = lane
                scope["route_handler"], scope["path_template"] = handler, scope["path"]
                scope.setdefault("path_params", {})
                await fn(scope, receive, out)
        except Exception as exc:
            if status:  # too late for an error answer: logged here, the answer left unended
                if (purpose := cut_off(exc)) is not None:  # counted as cut off, no fault
                    log_cut_off(scope, purpose)
                    return
                broken = True
                log_unexpected(scope, exc, "unhandled error after the answer started")
                return
            if isinstance(exc, HTTPException) and "route_handler" not in scope:  # no route
                shaped = self._shape(scope["path"])
                if shaped is not None:
                    plain = handle_http_exception(Request(scope, receive), exc)
                    headers = dict(plain.headers)
                    # app.errors answers through its _response, which always sets a status
                    answered = cast(int, plain.status_code)
                    await self._refuse(scope, out, answered, plain.content["error"], headers)
                    return
            await self._exception(scope, receive, out, exc, lane)
        finally:
            request_id_var.reset(token)
            # counted, and logged: every answer of 400 or more, a sample of the rest
            if requests.done(
                rid,
                scope["method"],
                logged_path(scope),
                scope.get("path_template", "unmatched"),
                # nothing answered, or an error after the start: the server's 500; an answer
                # started and never ended without one (a download the client hung up on:
                # Litestar's stream stops at the disconnect): 499, "client closed request"
                status if ended else 500 if broken or not status else CUT_OFF,
                perf_counter() - started,
                self.access_log_sample,
                _access_log.isEnabledFor(_INFO),
            ):
                writer.wake()

    def _page(self, scope: Any, status: int, error: dict[str, Any]) -> Any:
        """The page (an ASGI answer) a client asking for one gets for the edge check's refusal
        under a consumer page prefix (``pages``); None: the JSON shape."""
        path = scope["path"]
        make = next((f for prefix, f in self.pages.items() if path.startswith(prefix)), None)
        if make is None:
            return None
        scope["app"] = scope["litestar_app"] = self  # the page's request reads the app's state
        scope.setdefault("state", {})
        return make(scope, status, error)

    def _shape(self, path: str) -> Refusal | None:
        return next((f for prefix, f in self.refusals.items() if path.startswith(prefix)), None)

    async def _refuse(
        self, scope: Any, send: Any, status: int, error: dict[str, Any], headers: dict[str, str]
    ) -> None:
        """An error answered before routing: shaped for its path (``refusals``) or plain."""
        shape = self._shape(scope["path"])
        if shape is None:
            await refuse(send, status, {"error": error}, "application/json", headers)
        else:
            content, media, extra = shape(scope["method"], status, error)
            await refuse(send, status, content, media, {**headers, **extra})

    async def _exception(
        self, scope: Any, receive: Any, send: Any, exc: Exception, lane: Any
    ) -> None:
        """Answer an exception raised before the answer started, as Litestar's app-level
        exception layer (``ExceptionHandlerMiddleware``) does: its logging and hooks, then the
        answer of the exception handler for it — the route's (a fast lane's are set here), or
        the app's when routing failed. Called from within the ``except`` block (the logging
        reads ``sys.exc_info()``)."""
        if lane is not None:
            ScopeState.from_scope(scope).exception_handlers = lane[1]
        layer = self._exceptions
        if self.logging_config and (logger := self.logger):
            layer.handle_exception_logging(logger, self.logging_config, scope)
        for hook in self.after_exception:
            await hook(exc, scope)
        if self.pdb_on_exception:
            self.debugger_module.post_mortem()
        await layer.handle_request_exception(self, scope, receive, send, exc)
