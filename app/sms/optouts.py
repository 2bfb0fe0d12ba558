"""The brand's marketing opt-out list (``sms_opt_outs``) and the member's own switch
(``members.marketing_opt_out``), changed together: by a ``TD`` reply and staff
(``app.sms.service``) and by the member turning marketing back on (``app.members.profile``) —
the list's row first, then the member's, in every path, each change of one phone's under its
lock (``lock_phone``): a ``TD`` reply racing the member's switch-on otherwise left the phone on
the list and the switch off (the switch-on's delete did not see the reply's uncommitted row).
"""

from __future__ import annotations

from app import audit, locks
from app.db import Conn
from app.members.mask import mask_phone
from app.sms.outbox import OPTED_OUT, drop_marketing


async def lock_phone(conn: Conn, brand_id: int, phone: str) -> None:
    """Wait for ``phone``'s opt-out lock in ``brand_id``, held to the transaction's end: the
    list's row and the member's switch are read and written by one transaction at a time."""
    await locks.xact_lock(conn, locks.Lock.SMS_OPT_OUT, f"{brand_id}:{phone}")


async def set_opt_out(conn: Conn, brand_id: int, phone: str, opted_out: bool, source: str) -> int:
    """Opt ``phone`` out of (or back into) ``brand_id``'s marketing; the member's own switch
    (``members.marketing_opt_out``) follows. Returns 1 when something changed, else 0."""
    changed = await list_and_switch(conn, brand_id, phone, opted_out, source)
    if opted_out:  # after the member's row, as an erasure and the member's own switch lock them
        await drop_marketing(conn, brand_id, phone, OPTED_OUT)
    return changed


async def member_opted_in(conn: Conn, brand_id: int, phone: str) -> None:
    """The member's own switch turned back on (``PATCH /members/me``, ``app.members.profile``):
    the phone leaves the brand's list as staff's ``DELETE /sms/opt-outs/{phone}`` takes it (the
    list, then the member's row), audited as that is, by nobody: the member (a probe: a member
    who had answered TD was told 200 ``marketing_opt_out`` false, and every campaign still
    skipped them)."""
    if await set_opt_out(conn, brand_id, phone, False, "member"):
        await audit.record(
            conn,
            None,
            "sms.opt_in",
            "sms_opt_out",
            mask_phone(phone),
            after={"brand_id": brand_id},
            org_id=brand_id,
        )


async def list_and_switch(
    conn: Conn, brand_id: int, phone: str, opted_out: bool, source: str
) -> int:
    """``set_opt_out``'s list row and member's switch, without the queued marketing."""
    await lock_phone(conn, brand_id, phone)
    if opted_out:
        cur = await conn.execute(
            """INSERT INTO sms_opt_outs (brand_id, phone, source) VALUES (%s, %s, %s)
               ON CONFLICT DO NOTHING RETURNING phone""",
            (brand_id, phone, source),
        )
    else:
        cur = await conn.execute(
            "DELETE FROM sms_opt_outs WHERE brand_id = %s AND phone = %s RETURNING phone",
            (brand_id, phone),
        )
    changed = len(await cur.fetchall())
    members = await conn.execute(
        """UPDATE members SET marketing_opt_out = %s, updated_at = now()
            WHERE brand_id = %s AND phone = %s AND marketing_opt_out <> %s RETURNING id""",
        (opted_out, brand_id, phone, opted_out),
    )
    switched = await members.fetchall()
    return 1 if changed or switched else 0
