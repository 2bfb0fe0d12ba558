"""The app under a real granian server, for the tests that need a socket (one way to start it)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from app.cli import server_command

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.base = f"http://127.0.0.1:{port}"


@contextmanager
def granian_server(
    log_dir: Path, env: dict[str, str] | None = None, workers: int = 1, timeout: float = 90
) -> Iterator[Server]:
    """Start granian on a free port with this session's TRACECODE_* plus ``env``, wait for
    ``/ping`` (a loaded 2-core machine takes seconds to import the app), stop it afterwards."""
    port = free_port()
    full_env = {
        **os.environ,
        "TRACECODE_HOST": "127.0.0.1",
        "TRACECODE_PORT": str(port),
        **(env or {}),
    }
    server = Server(port, log_dir / "server.log")
    with server.log.open("wb") as out:
        process = subprocess.Popen(
            server_command("127.0.0.1", port, workers),
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"granian exited with {process.returncode}:\n{server.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{server.base}/ping", timeout=10) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"granian did not answer within {timeout:.0f} s:\n{server.log.read_text()}"
                )
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def worker_process(env: dict[str, str] | None = None, threads: int = 1) -> Iterator[None]:
    """One real worker process (``dramatiq workers.main``: every actor and roll-up) on this
    session's database and Redis, stopped (SIGTERM, then SIGKILL) afterwards."""
    import signal
    import sys

    command = [sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1"]
    process = subprocess.Popen(
        [*command, "--threads", str(threads)],
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        process_group=0,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


Upstream = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@asynccontextmanager
async def _silent(upstream: Upstream) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A TCP proxy on 127.0.0.1 to what ``upstream`` opens: (its port, an event that, set, makes
    it swallow everything both ways — a server frozen or partitioned away — until cleared)."""
    silent = asyncio.Event()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if silent.is_set():  # swallowed: a server that no longer answers
                continue
            writer.write(data)
            await writer.drain()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await upstream()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with proxy:
        yield proxy.sockets[0].getsockname()[1], silent


@asynccontextmanager
async def silent_proxy(database_url: str) -> AsyncIterator[tuple[str, asyncio.Event]]:
    """``_silent`` in front of PostgreSQL: (the proxy's URL, the event)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    target = conninfo_to_dict(database_url)
    host, port = target.get("host") or "127.0.0.1", int(target.get("port") or 5432)

    async def upstream() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if host.startswith("/"):  # the embedded server's socket directory
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(host, port)

    async with _silent(upstream) as (proxy_port, silent):
        yield make_conninfo(database_url, host="127.0.0.1", port=proxy_port), silent


@asynccontextmanager
async def silent_redis_proxy(redis_url: str) -> AsyncIterator[tuple[str, asyncio.Event]]:
    """``_silent`` in front of a single Redis (a unix socket or TCP): (the proxy's URL, with
    the original's database number, and the event)."""
    from redis.asyncio.connection import parse_url

    target = parse_url(redis_url)

    async def upstream() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if "path" in target:
            return await asyncio.open_unix_connection(target["path"])
        return await asyncio.open_connection(target.get("host", "127.0.0.1"), target["port"])

    async with _silent(upstream) as (proxy_port, silent):
        yield f"redis://127.0.0.1:{proxy_port}/{target.get('db', 0)}", silent
