"""Inspection summaries (SPEC D4): a middleware thread in each worker process folds inspection
deltas into ``inspection_summary`` every second; ``rollup_inspections`` does it on demand. One
roller runs at a time across processes (an advisory lock); each delta is consumed exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import dramatiq
import psycopg
from dramatiq.middleware import Middleware
from psycopg.rows import dict_row

from app.db import Conn
from app.embedded import start_postgres
from app.inspect.summaries import rollup_alone
from workers.broker import settings

log = logging.getLogger("tracecode.inspect")
INTERVAL = 1.0


async def _connect() -> Conn:
    url = settings.database_url or start_postgres(settings.var_path)
    return await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row)


class InspectionRoller(Middleware):
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def _loop(self) -> None:
        conn: Conn | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await _connect()
                await rollup_alone(conn)
            except Exception:  # keep rolling up after a database hiccup
                log.exception("inspection roll-up failed")
                if conn is not None:
                    await conn.close()
                conn = None
            self._stop.wait(INTERVAL)
        if conn is not None:
            await conn.close()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._loop(),), name="tracecode-inspect", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


async def _rollup_now() -> int | None:
    async with await _connect() as conn:
        return await rollup_alone(conn, wait=True)


@dramatiq.actor(max_retries=3, min_backoff=1000)
def rollup_inspections() -> None:
    """Roll inspection summaries up now (waits for a roller already running). Idempotent:
    deltas are consumed once, so a second run finds nothing left."""
    moved = asyncio.run(_rollup_now())
    log.info("rolled up %s inspection deltas", moved)
