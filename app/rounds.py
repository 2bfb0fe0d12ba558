"""Coalescing: requests that arrive while a round is out wait for the next one.

The verifier and the points claimer serve concurrent requests in rounds — one database query
(and one Redis call) for every request in flight — through this one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar


class Waiting(Protocol):
    done: asyncio.Future[Any]


W = TypeVar("W", bound=Waiting)


async def serve_rounds(
    waiting: list[W], size: int, serve: Callable[[list[W]], Awaitable[None]]
) -> None:
    """Serve ``waiting`` ``size`` at a time until none are left. A round that fails fails its
    own requests only (their futures get the exception); the next round goes on, except after
    a ``BaseException`` (cancellation), which is raised again."""
    while waiting:
        group = waiting[:size]
        del waiting[:size]
        try:
            await serve(group)
        except BaseException as exc:
            for pending in group:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
