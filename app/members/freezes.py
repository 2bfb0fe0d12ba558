"""A freeze that outlives the erasure of its membership, without the phone.

Erasing a frozen member (its right, PIPL) used to shed the freeze: the same phone signed up again
a minute later as an active member (a probe). The erasure keeps, per brand, a keyed hash of the
member's normalised phone with the freeze's reason (``member_phone_freezes``, migration 0081):
HMAC-SHA256 under ``Settings.subkey("member-frozen-phone")`` — the master key never enters the
database, so the table alone names no phone, and the erased membership is not linked to it.
A sign-up of a phone whose hash is kept starts frozen with that reason (``carry_over``; the row
then names the new membership, which the staff's member view shows as ``freeze_carried_over``);
unfreezing that member deletes the row (``release``); erasing it while still frozen keeps the
hash again (``keep``).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from app import audit
from app.config import Settings
from app.db import Conn


def phone_hash(settings: Settings, brand_id: int, phone: str) -> bytes:
    """HMAC-SHA256 of a normalised phone (``app.members.phones``), bound to its brand."""
    message = f"{brand_id}:{phone}".encode()
    return hmac.digest(settings.subkey("member-frozen-phone"), message, hashlib.sha256)


async def keep(
    conn: Conn, settings: Settings, brand_id: int, phone: str, reason: str | None
) -> None:
    """Keep the freeze of a member being erased (its row locked by the erasure) by its phone's
    hash; a hash kept already takes this freeze's reason and names no membership any more."""
    await conn.execute(
        """INSERT INTO member_phone_freezes (brand_id, phone_hash, reason)
           VALUES (%s, %s, %s)
           ON CONFLICT (brand_id, phone_hash)
           DO UPDATE SET reason = EXCLUDED.reason, member_id = NULL""",
        (brand_id, phone_hash(settings, brand_id, phone), reason),
    )


async def carry_over(
    conn: Conn, settings: Settings, brand_id: int, phone: str, member_id: int
) -> dict[str, Any] | None:
    """Freeze a membership just signed up when its phone's hash is kept (audited as a freeze by
    nobody, ``carried_over``); the member's row then, else None. Its own statement after the
    sign-up's: one that waited for the erasure of the phone's last member sees the hash it kept."""
    row = await (
        await conn.execute(
            """WITH kept AS (
                   UPDATE member_phone_freezes SET member_id = %(member)s
                    WHERE brand_id = %(brand)s AND phone_hash = %(hash)s
                   RETURNING reason)
               UPDATE members m SET status = 'frozen', frozen_reason = kept.reason,
                      frozen_by = NULL, frozen_at = now(), updated_at = now()
                 FROM kept
                WHERE m.id = %(member)s AND m.status = 'active'
               RETURNING m.*""",
            {"member": member_id, "brand": brand_id, "hash": phone_hash(settings, brand_id, phone)},
        )
    ).fetchone()
    if row is not None:
        await audit.record(
            conn,
            None,
            "freeze",
            "member",
            member_id,
            before={"status": "active", "reasoned": False},  # no words (``admin.set_frozen``)
            after={
                "status": "frozen",
                "reasoned": row["frozen_reason"] is not None,
                "carried_over": True,
            },
            org_id=brand_id,
        )
    return row


async def release(conn: Conn, member_id: int) -> bool:
    """Forget the kept freeze a member being unfrozen (its row locked) took on; whether it had."""
    gone = await (
        await conn.execute(
            "DELETE FROM member_phone_freezes WHERE member_id = %s RETURNING brand_id",
            (member_id,),
        )
    ).fetchall()
    return bool(gone)


async def carried_over(conn: Conn, member_id: int) -> bool:
    """Whether the member's freeze is one kept from an erased membership of its phone."""
    row = await (
        await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM member_phone_freezes WHERE member_id = %s) AS kept",
            (member_id,),
        )
    ).fetchone()
    return bool(row and row["kept"])
