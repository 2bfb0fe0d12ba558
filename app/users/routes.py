"""HTTP routes of users, roles and permissions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, patch, post
from litestar.params import QueryParameter

from app import localtime, tabular
from app.auth.limits import login_limiter
from app.auth.principal import Principal
from app.db import Conn
from app.paging import Page, PageNo, PerPage
from app.users import service
from app.users.schemas import (
    PermissionOut,
    RoleIn,
    RoleOut,
    RolePatch,
    Status,
    UserIn,
    UserOut,
    UserPatch,
)


def _download(rows: list[list[Any]], fmt: str) -> tabular.Download:
    batches = tabular.one_batch(rows)
    if fmt == "xlsx":
        chunks = tabular.xlsx_chunks("users", service.EXPORT_COLUMNS, batches)
    else:
        chunks = tabular.csv_chunks(service.EXPORT_COLUMNS, batches)
    return tabular.download(chunks, fmt, f"users-{localtime.today()}.{fmt}")


class UserController(Controller):
    path = "/users"

    @post("/")
    async def create(self, data: UserIn, conn: Conn, principal: Principal) -> UserOut:
        return await service.create_user(conn, principal, data)

    @get("/")
    async def list_users(
        self,
        request: Request[Any, Any, Any],
        conn: Conn,
        principal: Principal,
        org_id: int | None = None,
        status: Status | None = None,
        q: str | None = None,
        fmt: Annotated[
            Literal["json", "csv", "xlsx"],
            QueryParameter(name="format", description="json (a page), csv or xlsx (every match)"),
        ] = "json",
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[UserOut]:
        """Users of the caller's subtree (``users.read``) by organisation, status and a keyword
        in the username or name. ``?format=csv|xlsx`` exports every match (audited; its HEAD,
        which sends nothing, is not)."""
        if fmt != "json":
            rows = await service.export_users(
                conn,
                principal,
                org_id=org_id,
                status=status,
                q=q,
                audited=request.method != "HEAD",
            )
            return _download(rows, fmt)  # type: ignore[return-value]
        return await service.list_users(
            conn, principal, org_id=org_id, status=status, q=q, page=page, per_page=per_page
        )

    @get("/{user_id:int}")
    async def get_one(self, user_id: int, conn: Conn, principal: Principal) -> UserOut:
        return await service.get_user(conn, principal, user_id)

    @patch("/{user_id:int}")
    async def update(
        self,
        request: Request[Any, Any, Any],
        user_id: int,
        data: UserPatch,
        conn: Conn,
        principal: Principal,
    ) -> UserOut:
        """Change profile, roles, status (deactivate) or reset the password (which lifts the
        login locks) of a user who holds no permission the caller lacks (else 403
        ``stronger_account``)."""
        limiter = login_limiter(request.app.state)
        return await service.update_user(conn, principal, user_id, data, limiter)


class RoleController(Controller):
    path = "/roles"

    @get("/")
    async def list_roles(
        self, conn: Conn, principal: Principal, page: PageNo = 1, per_page: PerPage = 50
    ) -> Page[RoleOut]:
        """Built-in roles first, then the custom roles the caller can use or manage."""
        return await service.list_roles(conn, principal, page, per_page)

    @post("/")
    async def create(self, data: RoleIn, conn: Conn, principal: Principal) -> RoleOut:
        return await service.create_role(conn, principal, data)

    @patch("/{role_id:int}")
    async def update(
        self, role_id: int, data: RolePatch, conn: Conn, principal: Principal
    ) -> RoleOut:
        return await service.update_role(conn, principal, role_id, data)

    @delete("/{role_id:int}")
    async def remove(self, role_id: int, conn: Conn, principal: Principal) -> None:
        await service.delete_role(conn, principal, role_id)


@get("/permissions")
async def list_permissions(
    principal: Principal, page: PageNo = 1, per_page: PerPage = 50
) -> Page[PermissionOut]:
    """Every permission a role can hold, with its description."""
    return service.list_permissions(page, per_page)
