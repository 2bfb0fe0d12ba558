"""Members' WeChat bindings: which openid of a brand's service account is which member.

An openid is a member of one brand (``PRIMARY KEY (brand_id, openid)``: an openid is per app,
and a brand has one app) and a member has one openid (``member_id`` unique: a member is of one
brand). ``bind`` is given the app id the openid came from and binds it only while it is the
brand's account's (the account's row held FOR SHARE: a save with another app id deletes the
brand's bindings). ``bind`` runs on the member's row locked: of two binds of one member at once
the second sees the first; of two members binding one openid at once, the primary key lets one
in and the other gets nothing (``ON CONFLICT DO NOTHING``: the openid stays the first's). A
member binding another openid (a new WeChat account) replaces its old one: they proved the
phone just now, in this WeChat — the old one is deleted and the new one inserted under a
savepoint, so a member who loses the openid to another at that moment keeps its old binding.
``unbind`` is the member's own (the profile page); erasure (``app.members.erasure``) calls
``erase``, which deletes the binding and wipes the openid from the member's template messages
(those not sent are failed). Binding and unbinding are audited without the openid (the audit
log is read by staff).
"""

from __future__ import annotations

from typing import Any

import psycopg

from app import audit
from app.db import Conn

ERASED = "membership erased"


def masked(openid: str | None) -> str | None:
    """An openid as the delivery log shows it: its ends only."""
    if not openid:
        return None
    return openid[:4] + "***" + openid[-4:] if len(openid) > 10 else "***"


async def member_of(conn: Conn, brand_id: int, openid: str) -> int | None:
    """The member of ``brand_id`` bound to ``openid``, if any."""
    row = await (
        await conn.execute(
            "SELECT member_id FROM wechat_bindings WHERE brand_id = %s AND openid = %s",
            (brand_id, openid),
        )
    ).fetchone()
    return int(row["member_id"]) if row else None


async def openid_of(conn: Conn, member_id: int) -> str | None:
    row = await (
        await conn.execute("SELECT openid FROM wechat_bindings WHERE member_id = %s", (member_id,))
    ).fetchone()
    return str(row["openid"]) if row else None


async def _bindable(conn: Conn, brand_id: int, member_id: int, app_id: str) -> bool:
    """Whether an openid of ``app_id`` may be bound to the member: of the brand, not erased, and
    ``app_id`` the brand's account's. The member's row is locked (FOR NO KEY UPDATE), then the
    account's FOR SHARE, held to the end: a save with another app id (``app.wechat.account``:
    its lock, the account's row, then the brand's bindings) waits for this bind and deletes its
    binding, or this bind waits for the save and sees the new app id."""
    member = await (
        await conn.execute(
            "SELECT status FROM members WHERE id = %s AND brand_id = %s FOR NO KEY UPDATE",
            (member_id, brand_id),
        )
    ).fetchone()
    if member is None or member["status"] == "erased":
        return False
    account = await (
        await conn.execute(
            "SELECT app_id FROM wechat_accounts WHERE brand_id = %s FOR SHARE", (brand_id,)
        )
    ).fetchone()
    return account is not None and account["app_id"] == app_id


async def bind(
    conn: Conn,
    brand_id: int,
    member_id: int,
    openid: str,
    unionid: str | None = None,
    *,
    app_id: str,
) -> bool:
    """Bind ``openid``, given by the app ``app_id``, to the member (of ``brand_id``); whether the
    member now holds it (False: the openid is another member's, the member is not of the brand
    or erased, or ``app_id`` is not the brand's account's — an openid of an app the brand left,
    waiting in a sign-in begun before the switch, means nothing to the new app: a review)."""
    if not await _bindable(conn, brand_id, member_id, app_id):
        return False
    current = await openid_of(conn, member_id)
    if current == openid:
        return True
    holder = await member_of(conn, brand_id, openid)
    if holder is not None:  # another member's: theirs stays
        return False
    # the old binding goes only with the new one in: another member taking the openid at the
    # same moment (its insert not yet committed when ``holder`` was read) rolls the savepoint
    # back and this member keeps its old one (a review: it lost it and got False)
    async with conn.transaction() as replacing:
        if current is not None:
            await conn.execute("DELETE FROM wechat_bindings WHERE member_id = %s", (member_id,))
        row = await (
            await conn.execute(
                """INSERT INTO wechat_bindings (brand_id, openid, member_id, unionid)
                   VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING member_id""",
                (brand_id, openid, member_id, unionid),
            )
        ).fetchone()
        if row is None:
            raise psycopg.Rollback(replacing)
    if row is None:
        return False
    await audit.record(
        conn,
        None,
        "bind",
        "wechat_binding",
        member_id,
        after={"replaced": current is not None},
        org_id=brand_id,
    )
    return True


async def unbind(conn: Conn, brand_id: int, member_id: int) -> bool:
    """The member's binding removed; whether there was one."""
    gone = await (
        await conn.execute(
            "DELETE FROM wechat_bindings WHERE member_id = %s AND brand_id = %s RETURNING 1",
            (member_id, brand_id),
        )
    ).fetchone()
    if gone is not None:
        await audit.record(conn, None, "unbind", "wechat_binding", member_id, org_id=brand_id)
    return gone is not None


async def erase(conn: Conn, member_id: int) -> None:
    """An erased member's WeChat: the binding deleted, its messages' openid and data wiped,
    those not sent failed — one being sent too: the sender's record of it is fenced on
    ``sending`` (``app.wechat.sender``) and wrote the openid it had read back (a probe)."""
    await conn.execute("DELETE FROM wechat_bindings WHERE member_id = %s", (member_id,))
    await conn.execute(
        """UPDATE wechat_messages
              SET openid = NULL, data = '{}', url = NULL,
                  state = CASE WHEN state IN ('pending', 'sending') THEN 'failed' ELSE state END,
                  last_error = CASE WHEN state IN ('pending', 'sending') THEN %s
                                    ELSE last_error END
            WHERE member_id = %s""",
        (ERASED, member_id),
    )


EXPORT_BINDING = """SELECT openid, unionid, created_at FROM wechat_bindings
                     WHERE member_id = %(member)s"""
EXPORT_MESSAGES = """SELECT id, kind, state, data, created_at, sent_at FROM wechat_messages
                      WHERE member_id = %(member)s ORDER BY id LIMIT %(limit)s"""


async def export(conn: Conn, member_id: int, limit: int) -> dict[str, Any]:
    """The member's WeChat for their copy (``app.members.erasure.export``)."""
    params = {"member": member_id, "limit": limit}
    binding = await (await conn.execute(EXPORT_BINDING, params)).fetchone()
    messages = await (await conn.execute(EXPORT_MESSAGES, params)).fetchall()
    return {"wechat_binding": binding, "wechat_messages": messages}
