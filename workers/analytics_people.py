"""People analytics (issue 17, A4–A7): a middleware thread in each worker process folds the
queued members, points ledger rows and verification counts into the people summaries every
second (``PeopleRoller``); ``rollup_people`` rolls up on demand
(``app.jobs.send("rollup_people")``). One roller runs at a time across processes (an advisory
lock), and the roll-up itself consumes each queue row exactly once (``app.analytics.people``).
"""

from __future__ import annotations

import asyncio
import logging

import dramatiq

from app.analytics.people import rollup_count
from app.jobs import RETRIES
from workers.periodic import PeriodicRollup, run_now

log = logging.getLogger("tracecode.analytics")


class PeopleRoller(PeriodicRollup):
    def __init__(self) -> None:
        super().__init__("people", rollup_count)


@dramatiq.actor(**RETRIES)
def rollup_people() -> None:
    """Roll the people summaries up now (waits for a roller already running). Idempotent:
    queue rows are consumed once, so a second run finds nothing left."""
    log.info("rolled up %s people queue rows", asyncio.run(run_now(rollup_count)))
