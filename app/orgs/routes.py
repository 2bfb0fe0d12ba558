"""HTTP routes of the organisation tree."""

from __future__ import annotations

from litestar import Controller, get, patch, post

from app.auth.principal import Principal
from app.db import Conn
from app.orgs import service
from app.orgs.schemas import Kind, MoveIn, OrgIn, OrgOut, OrgPatch
from app.paging import Page, PageNo, PerPage
from app.users.schemas import Status


class OrgController(Controller):
    path = "/orgs"

    @post("/")
    async def create(self, data: OrgIn, conn: Conn, principal: Principal) -> OrgOut:
        return await service.create_org(conn, principal, data)

    @get("/")
    async def list_orgs(
        self,
        conn: Conn,
        principal: Principal,
        root_id: int | None = None,
        kind: Kind | None = None,
        status: Status | None = None,
        q: str | None = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[OrgOut]:
        """The caller's subtree, or the subtree of ``root_id``, in tree order."""
        return await service.list_orgs(
            conn,
            principal,
            root_id=root_id,
            kind=kind,
            status=status,
            q=q,
            page=page,
            per_page=per_page,
        )

    @get("/{org_id:int}")
    async def get_one(self, org_id: int, conn: Conn, principal: Principal) -> OrgOut:
        return await service.get_org(conn, principal, org_id)

    @patch("/{org_id:int}")
    async def update(self, org_id: int, data: OrgPatch, conn: Conn, principal: Principal) -> OrgOut:
        return await service.update_org(conn, principal, org_id, data)

    @post("/{org_id:int}/deactivate", status_code=200)
    async def deactivate(self, org_id: int, conn: Conn, principal: Principal) -> OrgOut:
        return await service.set_status(conn, principal, org_id, "inactive")

    @post("/{org_id:int}/activate", status_code=200)
    async def activate(self, org_id: int, conn: Conn, principal: Principal) -> OrgOut:
        return await service.set_status(conn, principal, org_id, "active")

    @post("/{org_id:int}/move", status_code=200)
    async def move(self, org_id: int, data: MoveIn, conn: Conn, principal: Principal) -> OrgOut:
        return await service.move_org(conn, principal, org_id, data.parent_id)
