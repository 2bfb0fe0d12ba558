"""Worker heartbeat: each worker process refreshes a Redis key that /health reads."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

WORKER_STALE_SECONDS = 30
BEAT_EVERY_SECONDS = 5


def heartbeat_pattern(namespace: str) -> str:
    return f"{namespace}:worker:*"


class Heartbeat(Middleware):
    def __init__(self, namespace: str) -> None:
        self.key = f"{namespace}:worker:{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        client = broker.client  # type: ignore[attr-defined]
        self.key = self.key.rsplit(":", 1)[0] + f":{os.getpid()}"
        self._stop.clear()

        def beat() -> None:
            while not self._stop.is_set():
                try:
                    client.set(self.key, str(time.time()), ex=WORKER_STALE_SECONDS)
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
            broker.client.delete(self.key)  # type: ignore[attr-defined]
        except Exception:
            pass
