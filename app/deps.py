"""Litestar dependencies: settings, a database connection per request, the caller (loaded
before the body by the app's ``before_request`` hook, ``caller_first``), and the connection of
lag-tolerant reads (``read_conn``: the read replica's or the request's own, decided
in one place, ``app.replica``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide
from psycopg_pool import AsyncConnectionPool

from app import replica
from app.auth.principal import Principal
from app.auth.service import (
    password_change_required,
    principal_from_headers,
    require_credentials,
)
from app.codes.scheme import Scheme
from app.config import Settings
from app.db import Conn
from app.members.principal import provide_member
from app.redisconn import RedisClient
from app.sms import outbox
from app.wechat import outbox as wechat_outbox


def provide_settings(state: State) -> Settings:
    return state.settings  # type: ignore[no-any-return]


def provide_scheme(state: State) -> Scheme:
    return state.scheme  # type: ignore[no-any-return]


def provide_redis(state: State) -> RedisClient:
    return state.redis  # type: ignore[no-any-return]


_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# what a user whose password someone else chose may do before replacing it (refresh and sign-out
# take no caller): replace it, and read who it is (the console and the app ask, then show the form)
PASSWORD_CHANGE_PATHS = frozenset({"/auth/password", "/auth/me"})


async def provide_conn(state: State, request: Request[Any, Any, Any]) -> AsyncIterator[Conn]:
    """One pooled connection and one transaction per request; rolled back on any error.

    The request's body is read first (within its route's size limit; the handler gets it from
    Litestar's cache): a client trickling a body in holds no connection while it does. Taken
    before, the connection sat idle in its transaction for as long as the upload took, and a
    handful of slow uploads left every other request 503 (probe G). For a route that takes the
    caller, the caller came before, in ``caller_first``.

    SMS and WeChat messages the request put into their outboxes are handed to the workers after
    the commit (``app.sms.outbox``, ``app.wechat.outbox``), never before: a rolled-back request
    sends nothing. With a read replica, a committed change (any method but GET/HEAD) sends its
    author's reads to the primary for a while (read-your-writes, ``app.replica``)."""
    if request.method in _WITH_BODY:
        await request.body()
    async with state.pool.connection() as conn:
        try:
            yield conn
        except BaseException:
            outbox.discard(conn)
            wechat_outbox.discard(conn)
            raise
        # the commit happens as the block ends; a failed commit leaves nothing to send
        try:
            await conn.commit()
        except BaseException:
            outbox.discard(conn)
            wechat_outbox.discard(conn)
            raise
    await outbox.after_commit(conn)
    await wechat_outbox.after_commit(conn)
    standby: replica.Replica | None = state.replica
    if standby is not None and request.method not in ("GET", "HEAD"):
        principal = request.state.get("principal")
        if principal is not None:
            await standby.note_write(state.redis, principal)


async def caller_first(request: Request[Any, Any, Any]) -> None:
    """The app's ``before_request`` hook: for a request with a body to a route that takes the
    caller, the caller comes first — before Litestar reads and decodes the body into the
    handler's ``data``, which it does before any dependency. Without credentials it is 401
    ``unauthorized`` at once, whatever its body (a probe: an anonymous bad body was 400, and an
    anonymous client trickling 9 MB in was waited for); with bad ones, 401 too, the caller
    loaded on a connection of its own given back at once (review R: 64 MB buffered per
    anonymous capture). ``provide_principal`` loads the caller again once the body is in; any
    other request pays a set and a dict look-up or two here. A member's routes the same way (a
    probe: an anonymous malformed ``PATCH /members/me`` was 400 about its body, not 401). A
    route whose body is an upload names the permissions it takes (any of them) in its ``opt``,
    ``permission``: a caller holding none is refused here too (``require_any``'s 403; a probe: a
    signed-in store clerk's stalled 50 MB upload was waited for, and buffered, before its 403).
    A rule of such a route beyond a permission is named in its ``opt`` too, ``before_body``: a
    function of the ``Principal`` that raises to refuse it, run here (a probe: a factory's key
    holding ``catalog.write`` stalled a catalogue upload, waited for, before its 403
    ``brand_staff_only``; an API key's photo, before its 400 ``user_required``)."""
    if request.method not in _WITH_BODY:
        return
    handler = request.route_handler
    parameters = handler.parsed_fn_signature.parameters
    if "principal" in parameters:
        headers = request.headers
        require_credentials(headers.get("authorization"), headers.get("x-api-key"))
        state = request.app.state
        async with state.pool.connection() as first:
            principal = await _caller(request, first, state.settings)
        opt = handler.opt
        needed = opt.get("permission")
        if needed:
            principal.require_any(*needed)
        check = opt.get("before_body")
        if check is not None:
            check(principal)
    elif "member" in parameters:
        state = request.app.state
        async with state.pool.connection() as first:
            await provide_member(request, first, state.settings)


async def provide_principal(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Principal:
    """The caller, loaded on the request's connection once its body is in — again, for a request
    ``caller_first`` let in: a client can hold its body back for as long as it likes, and a
    caller found before it ran the request as it was then (a probe: a token deactivated, a key
    revoked meanwhile still created an administrator). One more look-up per request with a
    body; the hot ones (verification, claims) do not take a ``principal``."""
    return await _caller(request, conn, settings)


async def _caller(request: Request[Any, Any, Any], conn: Conn, settings: Settings) -> Principal:
    principal = await principal_from_headers(
        conn,
        settings,
        request.headers.get("authorization"),
        request.headers.get("x-api-key"),
        request.app.state.pool,  # an API key's last use: written on a connection of its own
    )
    if principal.password_change_due and request.scope["path"] not in PASSWORD_CHANGE_PATHS:
        raise password_change_required()
    request.state.principal = principal  # whose change a commit is (read-your-writes)
    return principal


async def provide_read_pool(
    state: State, redis: RedisClient, principal: Principal
) -> AsyncConnectionPool[Conn]:
    """The pool of this request's lag-tolerant reads: the replica's or the primary's
    (``Replica.pool_for`` decides). For reads that open connections of their own (streamed
    files); ``read_conn`` for the rest."""
    standby: replica.Replica | None = state.replica
    if standby is None:
        return state.pool  # type: ignore[no-any-return]
    return await standby.pool_for(redis, principal) or state.pool


async def provide_read_conn(
    state: State, conn: Conn, read_pool: AsyncConnectionPool[Conn]
) -> AsyncIterator[Conn]:
    """The connection of reads that tolerate the replica's short lag (trace, management center,
    analytics, list reads, EPCIS query): a standby connection when the replica may serve this
    caller now, else the request's own ``conn``. Never write through it."""
    if state.replica is None:
        yield conn
        return
    async with replica.read_connection(None if read_pool is state.pool else read_pool, conn) as rc:
        yield rc


dependencies = {
    "settings": Provide(provide_settings, sync_to_thread=False),
    "redis": Provide(provide_redis, sync_to_thread=False),
    "scheme": Provide(provide_scheme, sync_to_thread=False),
    "conn": Provide(provide_conn),
    "principal": Provide(provide_principal),
    "read_pool": Provide(provide_read_pool),
    "read_conn": Provide(provide_read_conn),
    "member": Provide(provide_member),
}
