"""Structured JSON logs with a request id, and the request middleware that sets it."""

from __future__ import annotations

import logging
import os
import sys
import time
from contextvars import ContextVar
from typing import Any

import msgspec
from prometheus_client import Counter, Histogram

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

REQUESTS = Counter("tracecode_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "tracecode_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        fields = record.__dict__
        for key in fields.keys() - _STD_ATTRS:  # the extras
            if not key.startswith("_"):
                entry[key] = fields[key]
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("psycopg.pool", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # What the formatter never writes, the logging module need not collect for every record
    # (the logging HOWTO's "Optimization"): the caller's frame, thread and process names.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


access_log = logging.getLogger("tracecode.access")


class _Metrics:
    """The request counter and latency histogram of one (method, route, status)."""

    __slots__ = ("count", "latency")

    def __init__(self, method: str, route: str, status: int) -> None:
        self.count = REQUESTS.labels(method, route, str(status))
        self.latency = LATENCY.labels(method, route)


_metrics: dict[tuple[str, str, int], _Metrics] = {}


def request_context_middleware(app: Any) -> Any:
    """ASGI middleware: request id (from X-Request-ID or new), access log line, metrics."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        rid = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")[:64]
                if candidate.replace("-", "").isalnum():
                    rid = candidate
                break
        rid = rid or os.urandom(16).hex()
        token = request_id_var.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or _route_of(scope)
            key = (scope["method"], route, status)
            metrics = _metrics.get(key)
            if metrics is None:
                metrics = _metrics[key] = _Metrics(*key)
            metrics.count.inc()
            metrics.latency.observe(elapsed)
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)

    return middleware


def _route_of(scope: Any) -> str:
    handler = scope.get("route_handler")
    if handler is not None:
        try:
            return next(iter(handler.paths))
        except (StopIteration, AttributeError):
            pass
    return "unmatched"
