"""Stock roll-up (SPEC L9): a middleware thread in each worker process folds stock deltas into
``stock`` every second; ``rollup_stock`` does it on demand. One roller runs at a time across
processes (a PostgreSQL advisory lock), and the roll-up itself consumes each delta exactly once.
"""

from __future__ import annotations

import asyncio
import logging

import dramatiq

from app.jobs import RETRIES
from app.logistics.rollup import rollup_alone
from workers.periodic import PeriodicRollup, run_now

log = logging.getLogger("tracecode.stock")


class StockRoller(PeriodicRollup):
    def __init__(self) -> None:
        super().__init__("stock", rollup_alone)


@dramatiq.actor(**RETRIES)
def rollup_stock() -> None:
    """Roll stock up now (waits for a roller already running). Idempotent: deltas are consumed
    once, so a second run finds nothing left."""
    log.info("rolled up %s stock deltas", asyncio.run(run_now(rollup_alone)))
