"""SMS sending (I2): the ``send_sms`` job and the sweeper every worker process runs.

``send_sms(ids)`` is queued by the API after the commit that wrote the rows
(``app.sms.outbox``); it claims those of the rows still pending and sends them
(``app.sms.sender``). It is safe to run twice or concurrently: a row is claimed by one sender.
A gateway fault does not fail the job: the row itself is rescheduled with exponential back-off
and the sweeper sends it when due. The job fails (and dramatiq retries it with its own
exponential back-off, then dead-letters it) only when the database is unreachable.

``SmsSweeper`` runs ``sender.sweep`` every ``SMS_SWEEP_SECONDS`` in every worker process: rows
of senders that died go back to pending (or are failed, see ``SMS_RESEND_UNCONFIRMED``), and
every due row is sent — those whose job was lost or never queued, and those due for a retry.
Every ``reminders.SCAN_SECONDS`` it first queues the points reminders that are due (M6).
"""

from __future__ import annotations

import asyncio
import logging
import time

import dramatiq

from app.config import Settings
from app.db import Conn
from app.deadletters import POISON
from app.jobs import settings
from app.sms import reminders, sender
from app.sms.gateway import Gateway, gateway_from_settings
from workers.periodic import PeriodicRollup, connect

log = logging.getLogger("tracecode.sms")


@dramatiq.actor(
    actor_name="send_sms",
    max_retries=8,
    min_backoff=1_000,
    max_backoff=120_000,
    time_limit=max(5, settings.sms_lease_seconds - 5) * 1000,
    throws=POISON,
)
def send_sms(ids: list[int]) -> None:
    """Send the outbox rows ``ids`` that are still pending. Idempotent under at-least-once
    delivery: a row is claimed (with a lease) by one sender, so a second delivery skips what the
    first sent or holds; rows of a sender that died are the sweeper's once their lease ends."""
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise TypeError("send_sms takes a list of outbox row ids")
    stats = asyncio.run(_send(ids, settings))
    log.debug("sms job: %s", stats)


async def _send(ids: list[int], job_settings: Settings) -> sender.Stats:
    gateway = gateway_from_settings(job_settings)
    try:
        async with await connect() as conn:
            return await sender.drain(conn, gateway, job_settings, ids=ids)
    finally:
        await gateway.aclose()


class SmsSweeper(PeriodicRollup):
    """Recovers and sends what the jobs did not (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__("sms", self._sweep, interval=settings.sms_sweep_seconds)
        self._gateway: Gateway | None = None
        self._next_scan = 0.0

    async def _sweep(self, conn: Conn) -> None:
        if self._gateway is None:  # made in the sweeper's own event loop, kept for its life
            self._gateway = gateway_from_settings(settings)
        if time.monotonic() >= self._next_scan:  # reminders (M6) queued for this sweep to send
            self._next_scan = time.monotonic() + reminders.SCAN_SECONDS
            try:
                await reminders.scan(conn, settings)
            except Exception:  # a failed scan never holds up the sending below
                log.exception("sms reminder scan failed")
        stats = await sender.sweep(conn, self._gateway, settings)
        if stats.claimed or stats.recovered:
            log.info(
                "sms sweep: %d sent, %d retried, %d failed, %d recovered",
                stats.sent,
                stats.retried,
                stats.failed,
                stats.recovered,
            )
