"""HTTP routes of login, tokens and API keys.

``POST /auth/login`` and ``POST /auth/password`` take no request connection
(``app.deps.provide_conn``, held to the answer): the service takes the pool for its short
transactions and holds none while argon2 runs (``app.auth.service.password_checks``; a probe: a
burst of right-password log-ins held every pooled connection and the rest of the API answered
503). So never add ``conn`` to them.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import Provide

from app.auth import service
from app.auth.limits import login_limiter
from app.auth.principal import Principal
from app.auth.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    LoginIn,
    MeOut,
    PasswordChangeIn,
    RefreshIn,
    TokenOut,
)
from app.auth.tokens import TOKENS_NOT_KEPT
from app.config import Settings
from app.db import Conn
from app.paging import Page, PageNo, PerPage


async def first_caller(
    request: Request[Any, Any, Any], state: State, settings: Settings
) -> Principal:
    """The caller as ``app.deps.caller_first`` loaded it before the body, on a connection given
    back at once (else loaded so here): not on the request's connection, which these routes do
    not take. ``change_password`` loads it again once its turn of the checks has come."""
    loaded: Principal | None = request.state.get("principal")
    if loaded is not None:
        return loaded
    async with state.pool.connection() as conn:
        return await _load_principal(request, conn, settings)


async def _load_principal(
    request: Request[Any, Any, Any], conn: Conn, settings: Settings
) -> Principal:
    """``app.deps.provide_principal``, imported when called: ``app.deps`` imports the members'
    routes, whose claims import ``app.auth`` — at import time, a cycle."""
    from app.deps import provide_principal

    return await provide_principal(request, conn, settings)


class AuthController(Controller):
    path = "/auth"

    @post("/login", status_code=200, cache_control=TOKENS_NOT_KEPT)
    async def login(
        self, request: Request[Any, Any, Any], data: LoginIn, state: State, settings: Settings
    ) -> TokenOut:
        """Password login; returns a short-lived access token and a refresh token.

        Failed logins are limited per client IP (429 ``rate_limited``) and per account and
        client IP (429 ``login_locked``), both with ``Retry-After``."""
        client_ip = request.client.host if request.client else "unknown"
        limiter = login_limiter(state)
        return await service.login(
            state.pool, settings, limiter, client_ip, data.username, data.password
        )

    @post("/password", status_code=200, dependencies={"principal": Provide(first_caller)})
    async def change_password(
        self,
        request: Request[Any, Any, Any],
        data: PasswordChangeIn,
        state: State,
        settings: Settings,
        principal: Principal,
    ) -> TokenOut:
        """Change your own password (any signed-in user; 422 ``wrong_password``, limited as
        log-ins are). Every session of yours ends; the answer is this one's new token pair."""
        client_ip = request.client.host if request.client else "unknown"

        async def reload(conn: Conn) -> Principal:
            return await _load_principal(request, conn, settings)

        pair = await service.change_password(
            state.pool, settings, login_limiter(state), client_ip, principal, data, reload=reload
        )
        if state.replica is not None:  # read-your-writes, as ``provide_conn`` marks a change
            await state.replica.note_write(state.redis, principal)
        return pair

    @post("/refresh", status_code=200, cache_control=TOKENS_NOT_KEPT)
    async def refresh(self, data: RefreshIn, conn: Conn, settings: Settings) -> TokenOut:
        """Spend a refresh token for a new pair (rotation: each refresh token works once)."""
        return await service.refresh(conn, settings, data.refresh_token)

    @post("/logout", status_code=204)
    async def logout(self, data: RefreshIn, conn: Conn, settings: Settings) -> None:
        await service.logout(conn, settings, data.refresh_token)

    @get("/me")
    async def me(self, principal: Principal, conn: Conn) -> MeOut:
        """Who the caller is: its organisation (id and name), permissions, whether it is of the
        brand organisation itself, and whether its password is to be replaced first."""
        row = await (
            await conn.execute("SELECT name FROM orgs WHERE id = %s", (principal.org_id,))
        ).fetchone()
        return MeOut(
            org_id=principal.org_id,
            permissions=sorted(principal.permissions),
            user_id=principal.user_id,
            username=principal.username,
            api_key_id=principal.api_key_id,
            brand_staff=principal.org_id == principal.brand_id,
            must_change_password=principal.password_change_due,
            org_name=row["name"] if row else "",
        )


class ApiKeyController(Controller):
    path = "/api-keys"

    @post("/")
    async def create(self, data: ApiKeyIn, conn: Conn, principal: Principal) -> ApiKeyCreated:
        """Create an API key for a partner system; the key is shown only in this answer."""
        return await service.create_api_key(conn, principal, data)

    @get("/")
    async def list_keys(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[ApiKeyOut]:
        """The API keys of the caller's organisation and below (no secrets), oldest first."""
        return await service.list_api_keys(conn, principal, page, per_page)

    @post("/{key_id:int}/revoke", status_code=200)
    async def revoke(self, key_id: int, conn: Conn, principal: Principal) -> ApiKeyOut:
        return await service.revoke_api_key(conn, principal, key_id)
