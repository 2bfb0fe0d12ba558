"""EPCIS capture jobs: documents larger than ``TRACECODE_EPCIS_INLINE_EVENTS`` events."""

from __future__ import annotations

import asyncio
import logging
from functools import cache

import dramatiq
import psycopg
from psycopg.rows import dict_row

from app.codes.scheme import Scheme, scheme_from_settings
from app.deadletters import POISON
from app.embedded import start_postgres
from app.epcis import capture
from app.jobs import RETRIES, settings

log = logging.getLogger("tracecode.epcis")


@cache
def _context() -> tuple[str, Scheme]:
    db_url = settings.database_url or start_postgres(settings.var_path)
    return db_url, scheme_from_settings(settings)


async def _run(capture_id: str) -> str:
    db_url, scheme = _context()
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row) as conn:
        state = await capture.run(conn, scheme, capture_id)  # type: ignore[arg-type]
        await conn.commit()
        return state


@dramatiq.actor(**RETRIES, time_limit=3600 * 1000, throws=POISON)
def capture_job(capture_id: str) -> None:
    """Apply one capture job, all or nothing. Idempotent under at-least-once delivery: a
    finished job is left alone, a second delivery while it runs leaves it to its runner after a
    short wait for the job row's lock (``capture.RUN_LOCK_GRACE``), and a job whose worker died
    runs again from the start (its transaction was never committed); events are stored once by
    eventID in any case. A job
    whose id is no text is dead-lettered, one of a capture that no longer exists dropped with a
    warning."""
    if not isinstance(capture_id, str):  # uuid.UUID(123) raises AttributeError: retried (a probe)
        raise TypeError("capture_job takes a capture id")
    if asyncio.run(_run(capture_id)) == "missing":
        log.warning("capture job dropped: no capture %s", capture_id)
