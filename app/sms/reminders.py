"""Reminders (M6): "your points are enough for a gift" by SMS, at most once per period.

The workers' SMS sweeper calls ``scan`` every ``SCAN_SECONDS``. A member is a candidate when it
and its brand are active (a probe: a brand turned off, whose members cannot even sign in, still
had them reminded in its name; the sender fails such a brand's marketing already queued,
``app.sms.sender``), its balance changed since it was last looked at (``point_balances.updated_at``
after ``sms_reminders.checked_at``) or its brand's offer did (a gift created, its cost, provinces
or window changed, or its stock back from none: ``gifts.offer_changed_at``, migration 0138 — not
``updated_at``, which every redemption moves: a review found members re-reminded each period for
the same balance — or one whose ``valid_from`` has passed, after ``checked_at``; read once per
pass: a probe, a member whose points already covered a gift
launched on a later date was looked at before the launch, found nothing offered, and was never
reminded until its balance happened to move), its last reminder is older than
``SMS_REMINDER_PERIOD_DAYS``, and its balance reaches the cheapest gift offered to it now (in
stock, in its window, in its province). For each candidate the points domain decides
(``app.members.points.balance``, ``app.members.gifts.cheapest_affordable``: offered in the
member's province, in stock, in its window); the reminder goes through the outbox as a marketing
message (so opt-out and the marketing interval apply: ``enqueue`` may skip it), and
``sms_reminders`` records the check and, when queued, the reminder — in the same
transaction, so a member is never reminded twice for one change, nor lost when the scan stops
midway. ``checked_at`` is the scan's ``now()`` (its transaction's start), so a balance moved by a
transaction that began earlier but wrote after the scan read must carry the time it was written:
``app.members.points`` stamps ``updated_at`` with ``clock_timestamp()`` (a probe: with ``now()``
such a change was older than the check, and never looked at).

A reminder the outbox refuses for a reason of its data (a gift's name with a character it does
not send, a member's phone it cannot read) is one member's, never the batch's: each member is
reminded in a savepoint, and a refused one is set aside in the dead letters (queue
``sms_reminders``: its member, brand and gift ids — nothing personal — and the reason) and
recorded as checked, so it is not looked at again before its balance or its brand's offer
changes (a probe: a gift named with U+202E rolled every scan's batch back, and no member of any
brand was reminded again).
Any other failure (the database is down) rolls the batch back, to be scanned again.

A member bound to the brand's WeChat gets the reminder as a WeChat template message too, queued
in the same savepoint (``app.wechat.outbox.points_reminder``, keyed by the SMS's id).
"""

from __future__ import annotations

import logging

import msgspec

from app.config import Settings
from app.db import Conn
from app.deadletters import abury, is_poison, reason_of
from app.errors import BadRequest, ValidationFailed
from app.members.principal import Member
from app.members.schemas_points import Gift

log = logging.getLogger("tracecode.sms")

SCAN_SECONDS = 30.0
BATCH = 200
QUEUE = "sms_reminders"  # the dead-letter queue of reminders the outbox refused

# Each brand's offer, last changed: a gift created, its cost, provinces or window changed, or
# its stock back from none (``offer_changed_at``, the table's trigger), or one whose
# ``valid_from`` has passed. Read once per pass.
_OFFERS = """
SELECT brand_id,
       greatest(max(offer_changed_at), max(valid_from) FILTER (WHERE valid_from <= now()))
           AS changed_at
  FROM gifts WHERE deleted_at IS NULL
 GROUP BY brand_id
"""

# A member looked at before the brand's offer changed is looked at again, as one whose balance
# changed; its balance must reach a gift offered now (``app.members.gifts.OFFERED``: in stock,
# in its window, in the member's province), so that most members, who afford nothing, are not.
_CANDIDATES = """
SELECT m.id, m.brand_id, m.phone, m.status
  FROM point_balances b
  JOIN members m ON m.id = b.member_id
  JOIN orgs o ON o.id = m.brand_id AND o.status = 'active'  -- a brand turned off: none (a probe)
  LEFT JOIN sms_reminders r ON r.member_id = m.id
  LEFT JOIN unnest(%(brands)s::bigint[], %(changed)s::timestamptz[]) AS f(brand_id, changed_at)
         ON f.brand_id = m.brand_id
 WHERE m.status = 'active' AND b.balance > 0
   AND (b.updated_at > coalesce(r.checked_at, '-infinity') OR f.changed_at > r.checked_at)
   AND (r.sent_at IS NULL OR r.sent_at < now() - make_interval(days => %(days)s))
   AND b.balance >= (SELECT min(g.points_cost) FROM gifts g
                      WHERE g.brand_id = m.brand_id AND g.deleted_at IS NULL AND g.stock > 0
                        AND (g.valid_from IS NULL OR g.valid_from <= now())
                        AND (g.valid_to IS NULL OR g.valid_to > now())
                        AND (g.provinces = '{}' OR m.province = ANY (g.provinces)))
 ORDER BY b.updated_at
 LIMIT %(limit)s
 FOR UPDATE OF b SKIP LOCKED
"""


_CHECKED = """
INSERT INTO sms_reminders (member_id, checked_at, sent_at, outbox_id)
VALUES (%(m)s, now(), CASE WHEN %(o)s > 0 THEN now() END, nullif(%(o)s, 0))
ON CONFLICT (member_id) DO UPDATE SET checked_at = now(),
  sent_at = coalesce(CASE WHEN %(o)s > 0 THEN now() END, sms_reminders.sent_at),
  outbox_id = coalesce(nullif(%(o)s, 0), sms_reminders.outbox_id)
"""


async def scan(conn: Conn, settings: Settings, limit: int = BATCH) -> int:
    """Queue the reminders due now (one transaction per batch); how many were queued.
    ``conn`` must be in autocommit mode."""
    from app.sms.outbox import after_commit
    from app.wechat import outbox as wechat_outbox

    offers = await (await conn.execute(_OFFERS)).fetchall()
    params = {
        "days": settings.sms_reminder_period_days,
        "limit": limit,
        "brands": [row["brand_id"] for row in offers],
        "changed": [row["changed_at"] for row in offers],
    }
    queued = 0
    while True:
        async with conn.transaction():
            cur = await conn.execute(_CANDIDATES, params)
            members = [Member(**row) for row in await cur.fetchall()]
            for member in members:
                outbox_id = await _remind_or_set_aside(conn, member, settings)
                await conn.execute(_CHECKED, {"m": member.id, "o": outbox_id})
                queued += outbox_id > 0
        await after_commit(conn)
        await wechat_outbox.after_commit(conn)
        if len(members) < limit:
            return queued


async def _remind_or_set_aside(conn: Conn, member: Member, settings: Settings) -> int:
    """The member's reminder queued, in a savepoint of the batch: its outbox id, or 0 when none
    is due (no gift it can afford, a marketing message skipped) or the outbox refused it for a
    reason of its data — then it is dead-lettered, and the batch goes on."""
    from app.members.gifts import cheapest_affordable
    from app.members.points import balance
    from app.sms.outbox import enqueue
    from app.wechat.outbox import points_reminder

    gift: Gift | None = None
    try:
        async with conn.transaction():
            gift = await cheapest_affordable(conn, member)
            if gift is None:
                return 0
            points = str(await balance(conn, member.id))
            sms_id = await enqueue(
                conn,
                brand_id=member.brand_id,
                phone=member.phone,
                template="reminder",
                variables={"gift": gift.name, "points": points},
                purpose="reminder",
                member_id=member.id,
                settings=settings,
            )
            if sms_id:  # its WeChat twin, for a member bound to the brand's WeChat
                await points_reminder(
                    conn,
                    settings,
                    brand_id=member.brand_id,
                    member_id=member.id,
                    sms_id=sms_id,
                    gift=gift.name,
                    points=points,
                )
            return sms_id
    except Exception as exc:
        if not (is_poison(exc) or isinstance(exc, BadRequest | ValidationFailed)):
            raise
        what: dict[str, int | None] = {"member_id": member.id, "brand_id": member.brand_id}
        what["gift_id"] = gift.id if gift else None
        await abury(conn, QUEUE, msgspec.json.encode(what), reason_of(exc))
        log.warning("reminder of member %d set aside: %s", member.id, reason_of(exc))
        return 0
