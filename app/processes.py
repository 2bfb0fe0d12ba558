"""The commands of Tracecode's processes: the API server and a worker (``tracecode run``, the
rehearsal, the tests and the benchmarks start them the same way)."""

from __future__ import annotations

import sys


def server_command(host: str, port: int, workers: int) -> list[str]:
    """The API server: granian serving ``app.main:create_app``, ``workers`` processes."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "app.main:create_app",
    ]


def worker_command() -> list[str]:
    """One dramatiq worker process with four threads, running every actor of ``workers``."""
    return [sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1", "--threads", "4"]
