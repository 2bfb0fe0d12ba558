"""WeChat template messages (W5): the ``send_wechat`` job and the sweep every worker runs.

``send_wechat(ids)`` is queued by the API after the commit that wrote the rows
(``app.wechat.outbox``); it claims those still pending and sends them (``app.wechat.sender``).
Safe to run twice or at once: a row is claimed by one sender. A WeChat fault does not fail the
job: the row is rescheduled with back-off and the sweep sends it when due; the job fails (and
dramatiq retries it) only when the database is unreachable.

``WechatSweeper`` runs ``sender.sweep`` every ``WECHAT_SWEEP_SECONDS`` in every worker process:
rows of senders that died go back to pending, and every due row is sent. Each process keeps
one gateway (its HTTP client) and the Redis client the access tokens are cached in.
"""

from __future__ import annotations

import asyncio
import logging

import dramatiq

from app.config import Settings
from app.db import Conn
from app.deadletters import POISON
from app.embedded import redis_url
from app.jobs import settings
from app.redisconn import connect as connect_redis
from app.wechat import sender
from app.wechat.gateway import WechatGateway
from workers.periodic import PeriodicRollup, connect

log = logging.getLogger("tracecode.wechat")


def gateway_for(job_settings: Settings) -> WechatGateway:
    """A gateway on this process's Redis of hot state (the access tokens' cache)."""
    url = job_settings.redis_url or redis_url(job_settings.var_path)
    return WechatGateway(job_settings, connect_redis(url))


@dramatiq.actor(
    actor_name="send_wechat",
    max_retries=8,
    min_backoff=1_000,
    max_backoff=120_000,
    time_limit=max(5, settings.wechat_lease_seconds - 5) * 1000,
    throws=POISON,
)
def send_wechat(ids: list[int]) -> None:
    """Send the template messages ``ids`` still pending (idempotent: claimed with a lease)."""
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise TypeError("send_wechat takes a list of message ids")
    stats = asyncio.run(_send(ids, settings))
    log.debug("wechat job: %s", stats)


async def _send(ids: list[int], job_settings: Settings) -> sender.Stats:
    gateway = gateway_for(job_settings)
    try:
        async with await connect() as conn:
            return await sender.drain(conn, gateway, job_settings, ids=ids)
    finally:
        await gateway.aclose()
        await gateway.redis.aclose()


class WechatSweeper(PeriodicRollup):
    """Recovers and sends what the jobs did not (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__("wechat", self._sweep, interval=settings.wechat_sweep_seconds)
        self._gateway: WechatGateway | None = None

    async def _sweep(self, conn: Conn) -> None:
        if self._gateway is None:  # made in the sweeper's own event loop, kept for its life
            self._gateway = gateway_for(settings)
        stats = await sender.sweep(conn, self._gateway, settings)
        if stats.claimed or stats.recovered:
            log.info(
                "wechat sweep: %d sent, %d retried, %d failed, %d dead, %d recovered",
                stats.sent,
                stats.retried,
                stats.failed,
                stats.dead,
                stats.recovered,
            )
