"""Verification write-behind: each worker process drains the Redis record queue into PostgreSQL.

A middleware thread flushes every half second while the queue is empty, a fifth of a second
after a pass that found fewer than a full batch (a peak's records gather into batches of
thousands: every statement, commit and Redis round trip of a pass is paid per pass), at once
again while the queue is longer than a batch, and once more when the worker stops. Flushing is
idempotent and one flusher takes a queue at a time (Redis lock).
The queue is in the Redis of hot state (``app.jobs.redis_client``), whichever broker carries
the jobs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
import psycopg
from dramatiq.middleware import Middleware

from app.embedded import start_postgres
from app.jobs import redis_client, settings
from app.verify.records import flush
from workers.periodic import Failing

log = logging.getLogger("tracecode.flusher")
INTERVAL = 0.5  # seconds between passes while there is nothing to flush
GATHER = 0.2  # seconds after a pass of fewer than BATCH records
BATCH = 5000  # records a pass takes at most (``flush``'s limit)


class VerificationFlusher(Middleware):
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self, client: Any) -> None:
        db_url = settings.database_url or start_postgres(settings.var_path)
        conn: psycopg.Connection[Any] | None = None
        failing = Failing(log, "flushing verification records")
        while True:
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(db_url, autocommit=True)
                moved = flush(client, conn, settings.redis_namespace, BATCH)
                failing.worked()
            except Exception as exc:  # keep flushing after a database or Redis hiccup
                failing.failed(exc)
                if conn is not None:
                    conn.close()
                moved, conn = 0, None
            if self._stop.is_set() and moved == 0:
                break
            if moved == 0:
                self._stop.wait(failing.wait(INTERVAL))
            elif moved < BATCH and not self._stop.is_set():
                self._stop.wait(GATHER)
        if conn is not None:
            conn.close()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(redis_client,), name="tracecode-flusher", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
