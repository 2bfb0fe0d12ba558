"""The event chain's worker side (SPEC B7): a middleware thread in each worker process chains
committed events every ``TRACECODE_CHAIN_INTERVAL_SECONDS`` and anchors moved heads when due
(``app.chain``); ``chain_events`` does a pass now. Several processes at once are safe: each
batch locks its brand's head row and skips a brand another process is chaining, and a head is
anchored once. A brand that cannot be chained is recorded on its head (one error log line) and
left out of the passes after it until its error is cleared (``tracecode chain run`` after a
repair)."""

from __future__ import annotations

import asyncio
import logging

import dramatiq

from app.chain.anchors import anchor_due
from app.chain.chainer import chain_all
from app.db import Conn
from app.jobs import RETRIES, settings
from workers.periodic import PeriodicRollup, connect

log = logging.getLogger("tracecode.chain")


async def chain_pass(conn: Conn) -> int:
    """Chain every brand's committed events, then anchor the heads that are due."""
    done = await chain_all(conn)
    await anchor_due(conn, settings)
    return done.appended


class ChainRoller(PeriodicRollup):
    def __init__(self) -> None:
        super().__init__("chain", chain_pass, interval=settings.chain_interval_seconds)


@dramatiq.actor(**RETRIES)
def chain_events() -> None:
    """Chain committed events now. Idempotent: a link is appended once, after the head."""

    async def run() -> int:
        async with await connect() as conn:
            return await chain_pass(conn)

    log.info("chained %s events", asyncio.run(run()))
