"""Inspection summaries (SPEC D4): a middleware thread in each worker process folds inspection
deltas into ``inspection_summary`` every second; ``rollup_inspections`` does it on demand. One
roller runs at a time across processes (an advisory lock); each delta is consumed exactly once.
"""

from __future__ import annotations

import asyncio
import logging

import dramatiq

from app.inspect.summaries import rollup_alone
from app.jobs import RETRIES
from workers.periodic import PeriodicRollup, run_now

log = logging.getLogger("tracecode.inspect")


class InspectionRoller(PeriodicRollup):
    def __init__(self) -> None:
        super().__init__("inspect", rollup_alone)


@dramatiq.actor(**RETRIES)
def rollup_inspections() -> None:
    """Roll inspection summaries up now (waits for a roller already running). Idempotent:
    deltas are consumed once, so a second run finds nothing left."""
    log.info("rolled up %s inspection deltas", asyncio.run(run_now(rollup_alone)))
