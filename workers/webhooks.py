"""Webhook deliveries (I1): the sweeper every worker process runs.

``WebhookSender`` calls ``app.webhooks.sender.sweep`` every ``WEBHOOK_SWEEP_SECONDS``: deliveries
of senders that died go back to pending, then every due delivery is sent — new ones (written by
the database triggers with the change that caused them) and retries whose back-off has passed.
Concurrent sweepers of several worker processes claim disjoint deliveries (SKIP LOCKED). A bad
delivery is dead-lettered by the sender and the sweep goes on; a database hiccup only skips a
round (``PeriodicRollup`` reconnects).
"""

from __future__ import annotations

import logging

import httpx

from app.db import Conn
from app.jobs import settings
from app.webhooks import sender
from workers.periodic import PeriodicRollup

log = logging.getLogger("tracecode.webhooks")


class WebhookSender(PeriodicRollup):
    """Sends due webhook deliveries (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__("webhooks", self._sweep, interval=settings.webhook_sweep_seconds)
        self._client: httpx.AsyncClient | None = None

    async def _sweep(self, conn: Conn) -> None:
        if self._client is None:  # made in the sweeper's own event loop, kept for its life
            self._client = sender.make_client(settings)
        stats = await sender.sweep(conn, self._client, settings)
        if stats.claimed or stats.recovered:
            log.info(
                "webhooks: %d delivered, %d retried, %d dead, %d recovered",
                stats.delivered,
                stats.retried,
                stats.dead,
                stats.recovered,
            )
