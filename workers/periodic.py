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
        failures, told = 0, 0.0  # failures in a row; when the last one was logged
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await connect()
                await self.work(conn)
                if failures:
                    self.log.warning(
                        "%s roll-up works again after %d failures", self.name, failures
                    )
                failures = 0
            except Exception as exc:  # keep rolling up after a database hiccup
                failures += 1
                now = time.monotonic()
                if failures == 1:  # the first with its traceback, then a line now and then
                    self.log.exception("%s roll-up failed", self.name)
                    told = now
                elif now - told >= QUIET_SECONDS:
                    self.log.error(
                        "%s roll-up still failing (%d times in a row): %s",
                        self.name,
                        failures,
                        f"{type(exc).__name__}: {exc}"[:300],
                    )
                    told = now
                if conn is not None:
                    await conn.close()
                conn = None
            # while failing, wait longer each time (a database outage is not hammered)
            self._stop.wait(min(self.interval * 2 ** min(failures, 10), MAX_RETRY_SECONDS))
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
