"""HTTP routes of the brand's WeChat service account and its delivery log (the back office's
side; the member's pages are ``app.web.wechat_pages``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, put
from litestar.params import Parameter, QueryParameter

from app.auth.principal import Principal
from app.config import Settings
from app.db import Conn
from app.paging import Page, PageNo, PerPage
from app.wechat import account
from app.wechat.schemas import AccountIn, AccountOut, Kind, MessageOut, MessageState


class WechatController(Controller):
    path = "/wechat"
    tags = ["wechat"]

    @get("/account")
    async def get_account(self, conn: Conn, principal: Principal) -> AccountOut:
        """The brand's WeChat service account (``wechat.manage``, brand staff): app id, template
        ids, enabled; the secret only as ``secret_set``. ``configured: false`` when none is set."""
        return await account.get_account(conn, principal)

    @put("/account")
    async def put_account(
        self, data: AccountIn, conn: Conn, principal: Principal, settings: Settings
    ) -> AccountOut:
        """Set the account. ``app_secret`` is write-only (stored sealed, never answered); left
        out, the one kept stays — required the first time and with a new ``app_id`` (400
        ``validation_failed``). Audited without the secret."""
        return await account.put_account(conn, settings, principal, data)

    @delete("/account")
    async def delete_account(self, conn: Conn, principal: Principal) -> None:
        """Remove the account: WeChat sign-in and template messages stop (messages waiting fail
        as they come up). 404 ``wechat_not_configured`` when none is set. Audited."""
        await account.delete_account(conn, principal)

    @get("/messages")
    async def list_messages(
        self,
        conn: Conn,
        principal: Principal,
        message_state: Annotated[
            MessageState | None, QueryParameter(name="state", required=False)
        ] = None,
        kind: Kind | None = None,
        member_id: Annotated[int | None, Parameter(ge=1, le=2**63 - 1)] = None,
        page: PageNo = 1,
        per_page: PerPage = 50,
    ) -> Page[MessageOut]:
        """The brand's template messages, newest first: state (pending, sending, sent, failed,
        dead), attempts, WeChat's msgid or errcode and error; openids masked."""
        return await account.list_messages(
            conn, principal, message_state, kind, member_id, page, per_page
        )


route_handlers = [WechatController]
