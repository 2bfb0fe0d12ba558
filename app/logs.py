"""Structured JSON logs with a request id, written off the request path.

Every line is one JSON object (``JsonFormatter``): time, level, logger, message, the request id
of the request it belongs to, extras. ``configure_logging`` installs one handler on the root
logger that formats a record where it is logged (so the request id is the caller's) and hands the
line to ``LogWriter``, a thread that writes what has gathered to standard error in one write
every ``FLUSH_SECONDS`` (at once for an error, and at exit): a request never waits for a
terminal, a pipe or a disk.

The access log (``tracecode.access``, one line per request: method, path, status, ms) does not
go through ``logging`` at all: the request layer (``app.front``) calls ``access()``, which makes
an ``AccessLine`` struct (the same JSON shape as every other line) in one C call, and the writer
thread encodes each run of them in one more. The logging module's record, handler and formatter
cost ~40 µs a request on this service's core; the struct costs well under one.
``TRACECODE_ACCESS_LOG_SAMPLE`` keeps a fraction of the answers below 400 (for peaks); every 4xx
and 5xx answer is logged.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from itertools import groupby
from typing import IO, Any

import msgspec

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

FLUSH_SECONDS = 0.2  # the longest a line waits in memory before it is written
_WAKE_AT = 2000  # lines gathered before the writer is woken early


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


class AccessLine(msgspec.Struct, gc=False):
    """An access log line, in the shape ``JsonFormatter`` gives every line."""

    ts: float
    level: str
    logger: str
    msg: str
    request_id: str
    method: str
    path: str
    status: int
    ms: float


_encode_lines = msgspec.json.Encoder().encode_lines
# x + _ROUND - _ROUND is x rounded to an integer (half to even) for |x| < 2**51: the sum's
# last bit is worth 1. Time in ms is ~2**40.
_ROUND = 1.5 * 2**52


class LogWriter:
    """The one writer of the process's log lines: a daemon thread, woken every
    ``FLUSH_SECONDS`` (or early: an error, a full buffer, exit), that writes what has gathered
    in one call. Producers only append to a list (atomic under the GIL, no lock)."""

    def __init__(self) -> None:
        self.stream: IO[str] = sys.stderr
        # Formatted lines (str) and access lines, in the order they were produced.
        self._items: list[Any] = []
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one flush at a time (the thread, flush(), exit)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
            self._thread.start()

    def put(self, line: str, urgent: bool = False) -> None:
        items = self._items
        items.append(line)
        if urgent or len(items) >= _WAKE_AT:
            self._wake.set()

    def put_access(self, line: AccessLine) -> None:
        items = self._items
        items.append(line)
        if len(items) >= _WAKE_AT:
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
            items, self._items = self._items, []
            if not items:
                return
            data = b"".join(_lines(items))
            stream = self.stream
            raw = getattr(stream, "buffer", None)  # sys.stderr: write the bytes underneath
            if raw is not None:
                stream.flush()
                raw.write(data)
                raw.flush()
            else:
                stream.write(data.decode())
                stream.flush()


def _lines(items: list[Any]) -> Iterator[bytes]:
    """The JSON lines of ``items``; each run of access lines encoded by one C call."""
    for kind, run in groupby(items, type):
        if kind is str:
            for line in run:
                yield line.encode() + b"\n"
        else:
            yield _encode_lines(list(run))


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


def configure_logging(level: str = "INFO") -> None:
    writer.flush()  # what was gathered goes to the stream it was meant for
    writer.stream = sys.stderr
    writer.start()
    handler = WriterHandler()
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


def access(rid: str, method: str, path: str, status: int, seconds: float) -> None:
    """One access log line (written later by ``writer``; ``time.time()`` is the line's ts).

    The line is built here, one C call; the writer thread only encodes runs of lines. The
    numbers are rounded (to ms, to 10 µs) by adding and taking away ``_ROUND``: float additions
    only, where ``round(x, n)`` formats through decimal text and ``round(x)`` calls a method."""
    writer.put_access(
        AccessLine(
            (time.time() * 1000 + _ROUND - _ROUND) / 1000,
            "INFO",
            "tracecode.access",
            "request",
            rid,
            method,
            path,
            status,
            (seconds * 100_000 + _ROUND - _ROUND) / 100,
        )
    )
