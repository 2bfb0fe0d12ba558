"""Rebate rankings (R3): a middleware thread in each worker process folds the claims queued in
``rebate_tally_queue`` into ``rebate_totals`` every second; ``rollup_rebates`` does it on demand
(``app.jobs.send("rollup_rebates")``). One roller runs at a time across processes (an advisory
lock), and the roll-up itself consumes each queued claim exactly once.
"""

from __future__ import annotations

import asyncio
import logging

import dramatiq

from app.jobs import RETRIES
from app.rebates.ranking import rollup_alone
from workers.periodic import PeriodicRollup, run_now

log = logging.getLogger("tracecode.rebates")


class RebateRoller(PeriodicRollup):
    def __init__(self) -> None:
        super().__init__("rebates", rollup_alone)


@dramatiq.actor(**RETRIES)
def rollup_rebates() -> None:
    """Roll the rebate ranking totals up now (waits for a roller already running). Idempotent:
    queued claims are consumed once, so a second run finds nothing left."""
    log.info("rolled up %s rebate claims", asyncio.run(run_now(rollup_alone)))
