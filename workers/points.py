"""Redemption expiry (M4): codes past their date that were never fulfilled give their points
and stock back. A middleware thread in each worker process runs it every minute; the API sends
``expire_redemptions`` by name (``app.jobs.send``) when staff meet a due code. Idempotent and
safe in parallel: a redemption moves from issued to expired once (``FOR UPDATE SKIP LOCKED``) and
the ledger holds one refund per redemption.
"""

from __future__ import annotations

import asyncio
import logging

import dramatiq

from app.db import Conn
from app.jobs import RETRIES
from app.members.redemptions import expire_due
from workers.periodic import PeriodicRollup, connect

log = logging.getLogger("tracecode.points")

EXPIRY_INTERVAL = 60.0  # seconds between sweeps


async def _expire(conn: Conn) -> int:
    expired = await expire_due(conn)
    if expired:
        log.info("expired %s redemptions and refunded their points", expired)
    return expired


class RedemptionExpirer(PeriodicRollup):
    def __init__(self) -> None:
        super().__init__("redemption-expiry", _expire, interval=EXPIRY_INTERVAL)


async def _expire_now() -> int:
    async with await connect() as conn:
        return await _expire(conn)


@dramatiq.actor(**RETRIES)
def expire_redemptions() -> None:
    """Expire the due redemptions now and refund them. Idempotent: each redemption moves from
    issued to expired once, in the transaction that refunds it, so a second delivery finds
    nothing due (a killed run's transaction rolled back: the next run or sweep redoes it)."""
    asyncio.run(_expire_now())
