"""Litestar dependencies: settings, a database connection per request, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide
from redis.asyncio import Redis

from app.auth.principal import Principal
from app.auth.service import principal_from_headers
from app.codes.scheme import Scheme
from app.config import Settings
from app.db import Conn
from app.members.principal import provide_member
from app.sms import outbox


def provide_settings(state: State) -> Settings:
    return state.settings  # type: ignore[no-any-return]


def provide_scheme(state: State) -> Scheme:
    return state.scheme  # type: ignore[no-any-return]


def provide_redis(state: State) -> Redis:
    return state.redis  # type: ignore[no-any-return]


async def provide_conn(state: State) -> AsyncIterator[Conn]:
    """One pooled connection and one transaction per request; rolled back on any error.

    SMS messages the request put into the outbox are handed to the workers after the commit
    (``app.sms.outbox``), never before: a rolled-back request sends nothing."""
    async with state.pool.connection() as conn:
        try:
            yield conn
        except BaseException:
            outbox.discard(conn)
            raise
        # the commit happens as the block ends; a failed commit leaves nothing to send
        try:
            await conn.commit()
        except BaseException:
            outbox.discard(conn)
            raise
    await outbox.after_commit(conn)


async def provide_principal(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Principal:
    return await principal_from_headers(
        conn,
        settings,
        request.headers.get("authorization"),
        request.headers.get("x-api-key"),
    )


dependencies = {
    "settings": Provide(provide_settings, sync_to_thread=False),
    "redis": Provide(provide_redis, sync_to_thread=False),
    "scheme": Provide(provide_scheme, sync_to_thread=False),
    "conn": Provide(provide_conn),
    "principal": Provide(provide_principal),
    "member": Provide(provide_member),
}
