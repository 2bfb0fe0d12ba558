"""Roll-ups that run all the time in every worker process: a middleware thread calls a
``work(conn)`` coroutine every ``interval`` seconds on its own autocommit connection, keeps going
after a database hiccup (waiting longer after each failure in a row, up to ``MAX_RETRY_SECONDS``;
the first failure logged with its traceback, the next ones once a minute), and stops with the
worker. The work itself makes sure only one process
runs it at a time (``app.locks.run_alone``)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import psycopg
from dramatiq.middleware import Middleware
from psycopg.rows import dict_row

from app.db import Conn
from app.embedded import start_postgres
from app.jobs import settings

Work = Callable[[Conn], Awaitable[object]]
QUIET_SECONDS = 60.0  # a roll-up failing again and again logs a line this often, not each time
MAX_RETRY_SECONDS = 10.0  # the longest wait between tries while it fails


async def connect() -> Conn:
    """An autocommit connection to the configured (or embedded) database."""
    url = settings.database_url or start_postgres(settings.var_path)
    return await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)


class Failing:
    """A background loop's failures in a row: the first is logged with its traceback, then one
    line every ``QUIET_SECONDS`` while it goes on, and one when it works again; while failing,
    the loop waits longer each time (an outage is not hammered)."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log, self.what = log, what
        self.count, self.told = 0, 0.0

    def failed(self, exc: BaseException) -> None:
        self.count += 1
        now = time.monotonic()
        if self.count == 1:
            self.log.exception("%s failed", self.what)
            self.told = now
        elif now - self.told >= QUIET_SECONDS:
            self.log.error(
                "%s still failing (%d times in a row): %s",
                self.what,
                self.count,
                f"{type(exc).__name__}: {exc}"[:300],
            )
            self.told = now

    def worked(self) -> None:
        if self.count:
            self.log.warning("%s works again after %d failures", self.what, self.count)
        self.count = 0

    def wait(self, interval: float) -> float:
        """The wait before the next try: ``interval``, doubled per failure up to a cap."""
        if not self.count:
            return interval
        return min(interval * 2 ** min(self.count, 10), MAX_RETRY_SECONDS)


class PeriodicRollup(Middleware):
    def __init__(self, name: str, work: Work, interval: float = 1.0) -> None:
        self.name = name
        self.work = work
        self.interval = interval
        self.log = logging.getLogger(f"tracecode.{name}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def _loop(self) -> None:
        conn: Conn | None = None
        failing = Failing(self.log, f"{self.name} roll-up")
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await connect()
                await self.work(conn)
                failing.worked()
            except Exception as exc:  # keep rolling up after a database hiccup
                failing.failed(exc)
                if conn is not None:
                    await conn.close()
                conn = None
            self._stop.wait(failing.wait(self.interval))
        if conn is not None:
            await conn.close()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._loop(),), name=f"tracecode-{self.name}", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


async def run_now(work: Callable[..., Awaitable[int | None]]) -> int | None:
    """Run a roll-up once on a fresh connection, waiting for a roller already running."""
    async with await connect() as conn:
        return await work(conn, wait=True)
