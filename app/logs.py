"""Structured JSON logs with a request id, written off the request path.

Every line is one JSON object (``JsonFormatter``): time, level, logger, message, the request id
of the request it belongs to, extras. ``configure_logging`` installs one handler on the root
logger that formats a record where it is logged (so the request id is the caller's) and hands the
line to ``LogWriter``, a thread that writes what has gathered to standard error in one write
every ``FLUSH_SECONDS`` (at once for an error, and at exit): a request never waits for a
terminal, a pipe or a disk.

Lines gather in ``requests`` (``app._core.RequestLog``, in Rust), which the writer takes. The
access log (``tracecode.access``, one line per request: method, path, status, ms) does not go
through ``logging`` at all: the request layer (``app.front``) hands each answered request to
``requests.done``, which counts it for ``/metrics`` and writes its line (the same JSON shape as
every other line) into the buffer, in one call. The logging module's record, handler and
formatter cost ~40 µs a request on this service's core; the call, well under one.
``TRACECODE_ACCESS_LOG_SAMPLE`` keeps a fraction of the answers below 400 (for peaks); every 4xx
and 5xx answer is logged.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
from contextvars import ContextVar
from typing import IO, Any

import msgspec

from app._core import RequestLog

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

FLUSH_SECONDS = 0.2  # the longest a line waits in memory before it is written
WAKE_BYTES = 256 * 1024  # lines gathered that wake the writer early

# This process's request metrics and gathered log lines, in the order they were produced.
requests = RequestLog(WAKE_BYTES)

# U+0085, U+2028 and U+2029: line ends to Python's str.splitlines (and the last two to
# JavaScript), which JSON lets a string hold raw; non-ASCII characters occur only in strings.
_LINE_ENDS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


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
        line = msgspec.json.encode(entry, enc_hook=str).decode()
        # the line ends JSON leaves raw, escaped as the access line escapes them (a probe:
        # str.splitlines and JavaScript split a line at them); an ASCII line has none
        return line if line.isascii() else line.translate(_LINE_ENDS)


class LogWriter:
    """The one writer of the process's log lines: a daemon thread, woken every
    ``FLUSH_SECONDS`` (or early: an error, a full buffer, exit), that writes what has gathered
    in one call. Producers only add to ``requests`` (one call each)."""

    def __init__(self) -> None:
        self.stream: IO[str] = sys.stderr
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one flush at a time (the thread, flush(), exit)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
            self._thread.start()

    def put(self, line: str, urgent: bool = False) -> None:
        if requests.put(line) or urgent:
            self._wake.set()

    def wake(self) -> None:
        """Write soon (the lines gathered reached ``WAKE_BYTES``)."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a closed or broken stream: drop the lines, keep the thread
                pass

    def flush(self) -> None:
        """Write every line gathered so far (the caller's thread; safe from any thread)."""
        with self._lock:
            data = requests.take()
            if not data:
                return
            stream = self.stream
            raw = getattr(stream, "buffer", None)  # sys.stderr: write the bytes underneath
            fd = _fileno(raw)
            if fd is not None and raw is not None:  # (a file number implies a raw stream)
                stream.flush()
                raw.flush()
                for chunk in whole_lines(data):
                    while chunk:
                        chunk = chunk[os.write(fd, chunk) :]
            elif raw is not None:  # a stream in memory (a test's capture)
                stream.flush()
                raw.write(data)
                raw.flush()
            else:
                stream.write(data.decode())
                stream.flush()


def _fileno(raw: Any) -> int | None:
    try:
        return int(raw.fileno()) if raw is not None else None
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


PIPE_BUF = 4096  # POSIX: a write to a pipe of at most this many bytes is never interleaved


def whole_lines(data: bytes) -> list[bytes]:
    """``data`` (whole lines) as writes of whole lines, each at most ``PIPE_BUF`` bytes where
    its lines allow: the API's worker processes share one standard error, and a larger write
    to a pipe can be split by another's — torn, invalid JSON lines under a slow reader (probe
    S). A line longer than that is written alone."""
    chunks, start = [], 0
    while len(data) - start > PIPE_BUF:
        cut = data.rfind(b"\n", start, start + PIPE_BUF)
        if cut < start:  # one line longer than PIPE_BUF
            cut = data.find(b"\n", start)
            cut = len(data) - 1 if cut < 0 else cut
        chunks.append(data[start : cut + 1])
        start = cut + 1
    if start < len(data):
        chunks.append(data[start:])
    return chunks


writer = LogWriter()
atexit.register(writer.flush)


class WriterHandler(logging.Handler):
    """A logging handler that formats in the caller's thread and leaves the write to ``writer``
    (an error is written within the writer's next wake-up, without waiting out the interval)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        writer.put(line, urgent=record.levelno >= logging.ERROR)


def logged_path(scope: Any) -> str:
    """A request's path as the logs show it: its route's template where the path's parameters
    are personal data (a route with ``opt={"private_path": True}``, as the phone of
    ``/sms/opt-outs/{phone}``: probe N found whole phones in the access log) — on one handler
    of the path, for every method of it (``_private_route``)."""
    handler = scope.get("route_handler")
    if handler is not None:
        private = handler.opt.get("private_path")
        if private is None:  # decided once per handler, kept in its opt
            private = handler.opt["private_path"] = _private_route(scope.get("app"), handler)
        if private:
            return str(scope.get("path_template", ""))
        return str(scope["path"])
    path = str(scope["path"])  # not routed (405, a refused path): by the prefix, slashes
    # run together as the router runs them (``/sms//opt-outs/…`` is routed there: probe S)
    folded = re.sub("/{2,}", "/", path)
    for prefix in PRIVATE_PREFIXES:
        if folded.startswith(prefix):
            return prefix + "…"
    return path


def _private_route(app: Any, handler: Any) -> bool:
    """Whether another handler of a route ``handler`` serves marks the route's path private:
    the ``OPTIONS`` handler Litestar generates for a route has no ``opt`` of its own (a probe: a
    CORS preflight on ``/sms/opt-outs/{phone}`` logged the whole phone)."""
    for route in getattr(app, "routes", ()):
        handlers = getattr(route, "route_handlers", ())  # an HTTP route's, one per method
        if any(other is handler for other in handlers):
            if any(other.opt.get("private_path") for other in handlers):
                return True
    return False


#: Paths whose rest is personal data, for requests answered before routing (review R2: a 405
#: on ``/sms/opt-outs/{phone}`` logged the phone).
PRIVATE_PREFIXES = ("/sms/opt-outs/",)


def quiet_libraries() -> None:
    """Libraries' own chatter down to warnings, in the API and in the workers: the pool's, and
    httpx's line per request, which names the whole URL — a webhook endpoint's or the SMS
    gateway's, query string and whatever credential it carries included (probe K)."""
    for noisy in ("psycopg.pool", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def configure_logging(level: str = "INFO") -> None:
    writer.flush()  # what was gathered goes to the stream it was meant for
    writer.stream = sys.stderr
    writer.start()
    handler = WriterHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()
    # What the formatter never writes, the logging module need not collect for every record
    # (the logging HOWTO's "Optimization"): the caller's frame, thread and process names.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
