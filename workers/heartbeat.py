"""Worker heartbeat: each worker process refreshes a Redis key that /health reads.

The key and how long it stays fresh are named app-side (``app.jobs``), where ``/health`` reads them.
The key lives in the Redis of hot state (``app.jobs.redis_client``), so the heartbeat is the same
whether the jobs travel on Redis or on RabbitMQ.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from app.jobs import beat as send_beat
from app.jobs import heartbeat_key, redis_client, stop_beating

BEAT_EVERY_SECONDS = 5


class Heartbeat(Middleware):
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.key = heartbeat_key(namespace, socket.gethostname(), os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        client = redis_client
        self.key = heartbeat_key(self.namespace, socket.gethostname(), os.getpid())  # forked
        self._stop.clear()

        def beat() -> None:
            while not self._stop.is_set():
                try:
                    send_beat(client, self.namespace, self.key)
                except Exception:  # a Redis hiccup must not kill the worker; try next beat
                    pass
                self._stop.wait(BEAT_EVERY_SECONDS)

        self._thread = threading.Thread(target=beat, name="tracecode-heartbeat", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            stop_beating(redis_client, self.namespace, self.key)
        except Exception:
            pass
