"""Shared by the tests of streamed answers changed while they are sent (an allocation's codes, a
printer file's download): a request driven straight through the ASGI app by a client that stops
reading after the answer's first body piece, as a slow client's (or network's) would, until it
is told to read on. httpx's ASGI transport collects a whole body before it answers, so it cannot
show what a stream sends after a change made while it is under way."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class Paused:
    """``start`` sends the request and returns once the first body piece arrived (the client
    then reads nothing more); ``resume`` reads the rest, however the answer ends: whole, or cut
    off (``ended`` says whether its last body message came)."""

    def __init__(self) -> None:
        self.status = 0
        self.pieces: list[bytes] = []
        self.ended = False
        self._first = asyncio.Event()
        self._go_on = asyncio.Event()
        self._done = asyncio.Event()
        self._task: asyncio.Future[Any] | None = None

    async def start(
        self, app: Any, method: str, path: str, headers: dict[str, str], body: Any = None
    ) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        sent = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        if body is not None:
            sent += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "headers": [(b"host", b"testserver"), *sent], "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"",
            "server": ("testserver", 80), "client": ("127.0.0.1", 40125), "root_path": "",
        }  # fmt: skip
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await self._done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    self.pieces.append(message["body"])
                if not message.get("more_body", False):
                    self.ended = True
                    self._first.set()
                    self._done.set()  # the client hangs up once the answer ended
                elif message.get("body") and not self._first.is_set():
                    self._first.set()
                    await self._go_on.wait()  # the client reads nothing more for now

        self._task = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.wait_for(self._first.wait(), 60)

    def received(self) -> int:
        """The bytes of the body received so far."""
        return sum(len(piece) for piece in self.pieces)

    async def resume(self) -> bytes:
        """The client reads on: the whole body received once the answer ended or was cut."""
        self._go_on.set()
        assert self._task is not None
        try:
            await asyncio.wait_for(self._task, 120)
        finally:
            self._done.set()
        return b"".join(self.pieces)
