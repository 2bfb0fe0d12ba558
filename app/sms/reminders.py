"""Reminders (M6): "your points are enough for a gift" by SMS, at most once per period.

The workers' SMS sweeper calls ``scan`` every ``SCAN_SECONDS``. A member is a candidate when it
is active, its balance changed since it was last looked at (``point_balances.updated_at`` after
``sms_reminders.checked_at``), its last reminder is older than ``SMS_REMINDER_PERIOD_DAYS``, and
its balance reaches the cheapest gift of its brand at all. For each candidate the points domain
decides (``app.members.points.balance``, ``app.members.gifts.cheapest_affordable``: offered in
the member's province, in stock, in its window); the reminder goes through the outbox as a
marketing message (so opt-out and the marketing interval apply: ``enqueue`` may skip it), and
``sms_reminders`` records the check and, when queued, the reminder — in the same transaction,
so a member is never reminded twice for one change, nor lost when the scan stops midway.
"""

from __future__ import annotations

from app.config import Settings
from app.db import Conn
from app.members.principal import Member

SCAN_SECONDS = 30.0
BATCH = 200

_CANDIDATES = """
SELECT m.id, m.brand_id, m.phone, m.status
  FROM point_balances b
  JOIN members m ON m.id = b.member_id
  LEFT JOIN sms_reminders r ON r.member_id = m.id
 WHERE m.status = 'active' AND b.balance > 0
   AND b.updated_at > coalesce(r.checked_at, '-infinity')
   AND (r.sent_at IS NULL OR r.sent_at < now() - make_interval(days => %(days)s))
   AND b.balance >= (SELECT min(g.points_cost) FROM gifts g
                      WHERE g.brand_id = m.brand_id AND g.deleted_at IS NULL AND g.stock > 0)
 ORDER BY b.updated_at
 LIMIT %(limit)s
 FOR UPDATE OF b SKIP LOCKED
"""


async def scan(conn: Conn, settings: Settings, limit: int = BATCH) -> int:
    """Queue the reminders due now (one transaction per batch); how many were queued.
    ``conn`` must be in autocommit mode."""
    from app.members.gifts import cheapest_affordable
    from app.members.points import balance
    from app.sms.outbox import after_commit, enqueue

    queued = 0
    while True:
        async with conn.transaction():
            cur = await conn.execute(
                _CANDIDATES, {"days": settings.sms_reminder_period_days, "limit": limit}
            )
            members = [Member(**row) for row in await cur.fetchall()]
            for member in members:
                gift = await cheapest_affordable(conn, member)
                outbox_id = 0
                if gift is not None:
                    outbox_id = await enqueue(
                        conn,
                        brand_id=member.brand_id,
                        phone=member.phone,
                        template="reminder",
                        variables={
                            "gift": gift.name,
                            "points": str(await balance(conn, member.id)),
                        },
                        purpose="reminder",
                        member_id=member.id,
                        settings=settings,
                    )
                await conn.execute(
                    """INSERT INTO sms_reminders (member_id, checked_at, sent_at, outbox_id)
                       VALUES (%(m)s, now(), CASE WHEN %(o)s > 0 THEN now() END,
                               nullif(%(o)s, 0))
                       ON CONFLICT (member_id) DO UPDATE SET checked_at = now(),
                         sent_at = coalesce(CASE WHEN %(o)s > 0 THEN now() END,
                                            sms_reminders.sent_at),
                         outbox_id = coalesce(nullif(%(o)s, 0), sms_reminders.outbox_id)""",
                    {"m": member.id, "o": outbox_id},
                )
                queued += outbox_id > 0
        await after_commit(conn)
        if len(members) < limit:
            return queued
