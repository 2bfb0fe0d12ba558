"""Analytics (issue 17): a middleware thread in each worker process folds the sales queued in
``sales_queue`` into the sales summaries every second (``SalesRoller``), another counts the
dashboard's closed days every minute (``DashboardCounter``); ``rollup_sales`` rolls up on
demand (``app.jobs.send("rollup_sales")``). One roller runs at a time across processes (an
advisory lock), and the roll-up itself consumes each queued sale exactly once. The people
statistics (A4–A7) add their rollers here.
"""

from __future__ import annotations

import asyncio
import logging

import dramatiq

from app.analytics.dashboard import refresh
from app.analytics.sales import rollup_alone
from app.jobs import RETRIES
from workers.periodic import PeriodicRollup, run_now

log = logging.getLogger("tracecode.analytics")


class SalesRoller(PeriodicRollup):
    def __init__(self) -> None:
        super().__init__("sales", rollup_alone)


class DashboardCounter(PeriodicRollup):
    def __init__(self) -> None:
        # recounts, not folds: two processes counting the same day write the same row twice
        super().__init__("dashboard", refresh, interval=60.0)


@dramatiq.actor(**RETRIES)
def rollup_sales() -> None:
    """Roll the sales summaries up now (waits for a roller already running). Idempotent:
    queued sales are consumed once, so a second run finds nothing left."""
    log.info("rolled up %s sales", asyncio.run(run_now(rollup_alone)))
