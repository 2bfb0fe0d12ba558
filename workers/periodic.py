"""Roll-ups that run all the time in every worker process: a middleware thread calls a
``work(conn)`` coroutine every ``interval`` seconds on its own autocommit connection, keeps going
after a database hiccup, and stops with the worker. The work itself makes sure only one process
runs it at a time (``app.locks.run_alone``)."""

from __future__ import annotations

import asyncio
import logging
import threading
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
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await connect()
                await self.work(conn)
            except Exception:  # keep rolling up after a database hiccup
                self.log.exception("%s roll-up failed", self.name)
                if conn is not None:
                    await conn.close()
                conn = None
            self._stop.wait(self.interval)
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
